"""Open a Kiln keyed dataset with pyarrow and DuckDB, as a user would, and
print what they see as JSON (the Rust test compares it with the input)."""
import json
import sys

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

root = sys.argv[1]
manifest = json.load(open(f"{root}/_dataset.json"))
key_col, date_col = manifest["key_column"], manifest["date_column"]
index = pq.read_table(f"{root}/_index.parquet")
files = [f"{root}/{f}" for f in index.column("file").to_pylist()]

# pyarrow reads the directory as a dataset (it skips _ and . files itself).
table = ds.dataset(root, format="parquet").to_table()
con = duckdb.connect()
duck = con.execute(
    f"SELECT count(*), count(DISTINCT \"{key_col}\"), min(\"{date_col}\"), max(\"{date_col}\"), "
    f"any_value(typeof(\"{date_col}\")), any_value(typeof(\"{key_col}\")) FROM read_parquet(?)",
    [files],
).fetchone()
print(json.dumps({
    "pyarrow_rows": table.num_rows,
    "pyarrow_types": {f.name: str(f.type) for f in table.schema},
    "pyarrow_keys": sorted(set(table.column(key_col).to_pylist())),
    "index_types": {f.name: str(f.type) for f in index.schema},
    "index_rows_sum": sum(index.column("rows").to_pylist()),
    "duckdb_rows": duck[0],
    "duckdb_keys": duck[1],
    "duckdb_first": str(duck[2]),
    "duckdb_last": str(duck[3]),
    "duckdb_date_type": duck[4],
    "duckdb_key_type": duck[5],
}))
