"""DuckDB's partitioned COPY: one directory per key (hive layout)."""
import sys

import duckdb

src, out, key = sys.argv[1:4]
duckdb.connect().execute(
    f"COPY (SELECT * FROM read_csv(?)) TO '{out}' (FORMAT parquet, PARTITION_BY (\"{key}\"))",
    [src],
)
