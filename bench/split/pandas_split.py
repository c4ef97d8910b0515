"""What users do today (the seed's split_daily_data.py): read the whole CSV,
group by key, write one parquet file per key."""
import sys
from pathlib import Path

import pandas as pd

src, out, key, date = sys.argv[1:5]
df = pd.read_csv(src)
df[date] = pd.to_datetime(df[date])
Path(out).mkdir(parents=True)
for k, group in df.groupby(key):
    group.sort_values(date).to_parquet(f"{out}/{k}.parquet", index=False)
