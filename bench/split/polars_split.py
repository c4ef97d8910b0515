"""Polars' streaming partitioned sink: one directory per key."""
import sys

import polars as pl

src, out, key = sys.argv[1:4]
pl.scan_csv(src).sink_parquet(pl.PartitionBy(out, key=key), mkdir=True)
