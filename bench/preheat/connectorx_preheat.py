"""What a user with ConnectorX does: read the kline table into Arrow in one
go, then write one parquet file per symbol with pyarrow.

usage: connectorx_preheat.py MYSQL_URL TABLE OUT_DIR
"""
import os
import sys

import connectorx as cx
import pyarrow.compute as pc
import pyarrow.parquet as pq

url, table, out = sys.argv[1:4]
os.makedirs(out, exist_ok=True)
data = cx.read_sql(url, f"SELECT * FROM {table} ORDER BY symbol, trade_date", return_type="arrow")
symbols = data.column("symbol").combine_chunks()
# Rows arrive ordered by symbol: one slice per run of equal symbols.
change = pc.not_equal(symbols[1:], symbols[:-1])
starts = [0] + [i + 1 for i in pc.indices_nonzero(change).to_pylist()] + [len(symbols)]
for a, b in zip(starts, starts[1:]):
    part = data.slice(a, b - a)
    pq.write_table(part, os.path.join(out, f"{symbols[a].as_py()}.parquet"), compression="snappy")
print(f"{len(starts) - 1} symbols, {data.num_rows} rows", file=sys.stderr)
