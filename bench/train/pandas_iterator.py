"""The seed's streaming iterator, reimplemented in pandas as users run it:
load a batch of per-key parquet files, concat, build sliding windows per key
(skipping windows whose target is missing), scale with a fitted
StandardScaler-equivalent (mean/std), and yield (X, Y) arrays.

Windows are built with numpy's sliding_window_view per key — faster than the
seed's Python loop, so the comparison favours pandas.

usage: pandas_iterator.py DATASET_DIR WINDOW KEYS_PER_BATCH FEATURES TARGETS
prints: JSON {"windows": N, "seconds": S, "windows_per_s": ...}
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main(dataset, window, keys_per_batch, features, targets):
    dataset = Path(dataset)
    manifest = json.loads((dataset / "_dataset.json").read_text())
    key_col, date_col = manifest["key_column"], manifest["date_column"]
    index = pd.read_parquet(dataset / "_index.parquet")
    files = list(index["file"])
    cols = [key_col, date_col] + features + targets

    # Scaler fitted first (the seed fitted it on a sample / the full data).
    t0 = time.perf_counter()
    n, s, ss = 0, np.zeros(len(features)), np.zeros(len(features))
    for i in range(0, len(files), keys_per_batch):
        df = pd.concat([pd.read_parquet(dataset / f, columns=features) for f in files[i:i + keys_per_batch]])
        v = df.to_numpy(dtype=np.float64)
        n += len(v)
        s += np.nansum(v, axis=0)
        ss += np.nansum(v * v, axis=0)
    mean = s / n
    std = np.sqrt(ss / n - mean * mean)
    fit_seconds = time.perf_counter() - t0

    t1 = time.perf_counter()
    windows, checksum = 0, 0.0
    for i in range(0, len(files), keys_per_batch):
        batch = pd.concat([pd.read_parquet(dataset / f, columns=cols) for f in files[i:i + keys_per_batch]],
                          ignore_index=True)
        batch = batch.sort_values([key_col, date_col])
        xs, ys = [], []
        for _, g in batch.groupby(key_col, sort=False):
            x = g[features].to_numpy(dtype=np.float32)
            y = g[targets].to_numpy(dtype=np.float32)
            if len(x) < window:
                continue
            ends = np.arange(window - 1, len(x))
            keep = ~np.all(np.isnan(y[ends]), axis=1)
            view = np.lib.stride_tricks.sliding_window_view(x, window, axis=0)  # [n-w+1, F, w]
            xs.append(view[keep].transpose(0, 2, 1))
            ys.append(y[ends][keep])
        if not xs:
            continue
        X = np.concatenate(xs)
        X = ((X - mean) / std).astype(np.float32)
        Y = np.concatenate(ys)
        windows += len(X)
        checksum += float(X.sum())
        del batch, xs, ys, X, Y
    seconds = time.perf_counter() - t1
    print(json.dumps({"windows": windows, "fit_seconds": fit_seconds, "seconds": seconds,
                      "windows_per_s": windows / seconds, "checksum": checksum}))


if __name__ == "__main__":
    ds, w, k, f, t = sys.argv[1:6]
    main(ds, int(w), int(k), f.split(","), t.split(","))
