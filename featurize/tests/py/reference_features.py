"""Independent reference values for kiln-featurize's indicators.

Usage: reference_features.py INPUT_DATASET OUTPUT_DATASET REPORT.json

For every key of the input keyed dataset, computes each feature of the
built-in spec from the key's OHLCV — with TA-Lib (PyPI `TA-Lib`) where TA-Lib
has the indicator, with plain numpy following docs/FEATURIZE.md otherwise —
and compares it with the column kiln-featurize wrote: the same rows must be
null (TA-Lib's NaN warm-up), the others equal to 1e-9 relative. Writes a
JSON report; exits 0 even when values differ (the Rust test asserts on it).
"""
import json
import sys

import numpy as np
import pyarrow.parquet as pq
import talib

REL = 1e-9


def kdj(high, low, close, n=9, m1=3, m2=3):
    size = len(close)
    k_out = np.full(size, np.nan)
    d_out = np.full(size, np.nan)
    j_out = np.full(size, np.nan)
    k, d = 50.0, 50.0
    for t in range(n - 1, size):
        hh = high[t - n + 1 : t + 1].max()
        ll = low[t - n + 1 : t + 1].min()
        rsv = (close[t] - ll) / (hh - ll) * 100.0 if hh - ll > 0 else 50.0
        k = ((m1 - 1) * k + rsv) / m1
        d = ((m2 - 1) * d + k) / m2
        k_out[t], d_out[t], j_out[t] = k, d, 3.0 * k - 2.0 * d
    return k_out, d_out, j_out


def shifted_ratio(close, n):
    out = np.full(len(close), np.nan)
    out[n:] = (close[n:] - close[:-n]) / close[:-n]
    return out


def forward_return(close, n):
    out = np.full(len(close), np.nan)
    out[:-n] = (close[n:] - close[:-n]) / close[:-n]
    return out


def volume_ratio(volume, n):
    out = np.full(len(volume), np.nan)
    for t in range(n, len(volume)):
        mean = volume[t - n : t].sum() / n
        out[t] = volume[t] / mean if mean > 0 else np.nan
    return out


def reference(o, h, l, c, v):
    ref = {}
    for n in (5, 10, 20, 60):
        ref[f"ma_{n}"] = talib.SMA(c, n)
    for n in (12, 26):
        ref[f"ema_{n}"] = talib.EMA(c, n)
    ref["macd_dif"], ref["macd_dea"], ref["macd_hist"] = talib.MACD(c, 12, 26, 9)
    for n in (6, 12, 14):
        ref[f"rsi_{n}"] = talib.RSI(c, n)
    up, mid, lo = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    ref["boll_upper"], ref["boll_middle"], ref["boll_lower"] = up, mid, lo
    ref["boll_width"] = (up - lo) / mid
    ref["kdj_k"], ref["kdj_d"], ref["kdj_j"] = kdj(h, l, c)
    ref["atr_14"] = talib.ATR(h, l, c, 14)
    ref["obv"] = talib.OBV(c, v)
    ref["return_1"] = talib.ROCP(c, 1)
    ref["return_5"] = talib.ROCP(c, 5)
    log_ret = np.full(len(c), np.nan)
    log_ret[1:] = np.log(c[1:] / c[:-1])
    ref["log_return"] = log_ret
    amp = np.full(len(c), np.nan)
    amp[1:] = (h[1:] - l[1:]) / c[:-1]
    ref["amplitude"] = amp
    ref["roc_10"] = talib.ROC(c, 10)
    ref["volume_ratio_5"] = volume_ratio(v, 5)
    ref["label_return_1"] = forward_return(c, 1)
    ref["label_return_5"] = forward_return(c, 5)
    # Cross-checks of the numpy definitions against TA-Lib where it has one.
    assert np.allclose(shifted_ratio(c, 5), talib.ROCP(c, 5), equal_nan=True)
    return ref


def main():
    input_dir, output_dir, report_path = sys.argv[1:4]
    index = pq.read_table(f"{input_dir}/_index.parquet").to_pylist()
    out_index = {r["key"]: r for r in pq.read_table(f"{output_dir}/_index.parquet").to_pylist()}
    report = {"keys": 0, "rows": 0, "columns": {}, "mismatches": []}
    for entry in index:
        key = entry["key"]
        src = pq.read_table(f"{input_dir}/{entry['file']}")
        cols = {n: src.column(n).to_numpy().astype(np.float64) for n in ("open", "high", "low", "close", "volume")}
        ref = reference(cols["open"], cols["high"], cols["low"], cols["close"], cols["volume"])
        got_table = pq.read_table(f"{output_dir}/{out_index[key]['file']}")
        report["keys"] += 1
        report["rows"] += got_table.num_rows
        for name, want in ref.items():
            col = got_table.column(name)
            got = np.array([np.nan if x is None else x for x in col.to_pylist()], dtype=np.float64)
            stats = report["columns"].setdefault(name, {"compared": 0, "nulls": 0, "max_rel": 0.0})
            want_null = np.isnan(want)
            got_null = np.isnan(got)
            for t in np.nonzero(want_null != got_null)[0][:3]:
                report["mismatches"].append(
                    f"{key} {name} row {t + 1}: kiln {'null' if got_null[t] else got[t]!r}, "
                    f"reference {'NaN' if want_null[t] else want[t]!r}"
                )
            both = ~want_null & ~got_null
            a, b = got[both], want[both]
            scale = np.maximum(np.abs(a), np.abs(b))
            diff = np.abs(a - b)
            rel = np.where(scale > 0, diff / np.where(scale > 0, scale, 1.0), 0.0)
            stats["compared"] += int(both.sum())
            stats["nulls"] += int(want_null.sum())
            if rel.size:
                stats["max_rel"] = max(stats["max_rel"], float(rel.max()))
            rows = np.nonzero(both)[0]
            for i in np.nonzero(rel > REL)[0][:3]:
                report["mismatches"].append(
                    f"{key} {name} row {rows[i] + 1}: kiln {a[i]!r}, reference {b[i]!r} (rel {rel[i]:.3g})"
                )
    with open(report_path, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
