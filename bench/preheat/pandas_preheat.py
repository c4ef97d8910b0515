"""What users do today (the seed's preheat script): one read_sql query per
symbol through SQLAlchemy + PyMySQL, then DataFrame.to_parquet.

usage: pandas_preheat.py MYSQL_URL TABLE OUT_DIR
"""
import os
import sys

import pandas as pd
import sqlalchemy as sa

url, table, out = sys.argv[1:4]
os.makedirs(out, exist_ok=True)
engine = sa.create_engine(url.replace("mysql://", "mysql+pymysql://", 1))
with engine.connect() as conn:
    symbols = [r[0] for r in conn.execute(sa.text(f"SELECT DISTINCT symbol FROM {table}"))]
    ok = failed = rows = 0
    for symbol in sorted(symbols):
        try:
            df = pd.read_sql(
                sa.text(f"SELECT * FROM {table} WHERE symbol = :s ORDER BY trade_date"),
                conn,
                params={"s": symbol},
            )
            df.to_parquet(os.path.join(out, f"{symbol}.parquet"), compression="snappy")
            ok += 1
            rows += len(df)
        except Exception as e:  # the seed's script counts and goes on
            print(f"{symbol}: {e}", file=sys.stderr)
            failed += 1
print(f"{ok} symbols ({failed} failed), {rows} rows", file=sys.stderr)
