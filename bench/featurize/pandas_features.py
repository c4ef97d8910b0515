"""What users do today: a loop over symbols, each read with pandas, the
indicators computed with rolling/ewm, written back with to_parquet.

Usage: pandas_features.py KLINE_DATASET OUT_DIR [--talib]

With --talib the indicators TA-Lib has come from TA-Lib (the common
"TA-Lib + pandas" script); KDJ, ratios and labels stay pandas either way.
The same 29 feature columns as kiln-featurize's built-in spec.
"""
import os
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

USE_TALIB = "--talib" in sys.argv
if USE_TALIB:
    import talib


def features_pandas(df):
    c, h, l, v = df["close"], df["high"], df["low"], df["volume"].astype(float)
    out = {}
    for n in (5, 10, 20, 60):
        out[f"ma_{n}"] = c.rolling(n).mean()
    ema = {n: c.ewm(span=n, adjust=False).mean() for n in (12, 26)}
    out["ema_12"], out["ema_26"] = ema[12], ema[26]
    dif = ema[12] - ema[26]
    dea = dif.ewm(span=9, adjust=False).mean()
    out["macd_dif"], out["macd_dea"], out["macd_hist"] = dif, dea, dif - dea
    delta = c.diff()
    gain, loss = delta.clip(lower=0), -delta.clip(upper=0)
    for n in (6, 12, 14):
        ag = gain.ewm(alpha=1 / n, adjust=False).mean()
        al = loss.ewm(alpha=1 / n, adjust=False).mean()
        out[f"rsi_{n}"] = 100 * ag / (ag + al)
    mid = c.rolling(20).mean()
    sd = c.rolling(20).std(ddof=0)
    out["boll_upper"], out["boll_middle"], out["boll_lower"] = mid + 2 * sd, mid, mid - 2 * sd
    out["boll_width"] = 4 * sd / mid
    prev = c.shift(1)
    tr = pd.concat([h - l, (h - prev).abs(), (l - prev).abs()], axis=1).max(axis=1)
    out["atr_14"] = tr.ewm(alpha=1 / 14, adjust=False).mean()
    out["obv"] = (np.sign(delta).fillna(0) * v).cumsum()
    return out


def features_talib(df):
    c = df["close"].to_numpy(np.float64)
    h = df["high"].to_numpy(np.float64)
    l = df["low"].to_numpy(np.float64)
    v = df["volume"].to_numpy(np.float64)
    out = {}
    for n in (5, 10, 20, 60):
        out[f"ma_{n}"] = talib.SMA(c, n)
    for n in (12, 26):
        out[f"ema_{n}"] = talib.EMA(c, n)
    out["macd_dif"], out["macd_dea"], out["macd_hist"] = talib.MACD(c, 12, 26, 9)
    for n in (6, 12, 14):
        out[f"rsi_{n}"] = talib.RSI(c, n)
    up, mid, lo = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    out["boll_upper"], out["boll_middle"], out["boll_lower"] = up, mid, lo
    out["boll_width"] = (up - lo) / mid
    out["atr_14"] = talib.ATR(h, l, c, 14)
    out["obv"] = talib.OBV(c, v)
    return out


def add_features(df):
    out = features_talib(df) if USE_TALIB else features_pandas(df)
    c, h, l, v = df["close"], df["high"], df["low"], df["volume"].astype(float)
    low9, high9 = l.rolling(9).min(), h.rolling(9).max()
    rsv = ((c - low9) / (high9 - low9) * 100).fillna(50)
    k = rsv.ewm(com=2, adjust=False).mean()
    d = k.ewm(com=2, adjust=False).mean()
    out["kdj_k"], out["kdj_d"], out["kdj_j"] = k, d, 3 * k - 2 * d
    out["return_1"] = c.pct_change(1)
    out["return_5"] = c.pct_change(5)
    out["log_return"] = np.log(c / c.shift(1))
    out["amplitude"] = (h - l) / c.shift(1)
    out["roc_10"] = c.pct_change(10) * 100
    out["volume_ratio_5"] = v / v.rolling(5).mean().shift(1)
    out["label_return_1"] = c.shift(-1) / c - 1
    out["label_return_5"] = c.shift(-5) / c - 1
    order = [
        "ma_5", "ma_10", "ma_20", "ma_60", "ema_12", "ema_26", "macd_dif", "macd_dea",
        "macd_hist", "rsi_6", "rsi_12", "rsi_14", "boll_upper", "boll_middle", "boll_lower",
        "boll_width", "kdj_k", "kdj_d", "kdj_j", "atr_14", "obv", "return_1", "return_5",
        "log_return", "amplitude", "roc_10", "volume_ratio_5", "label_return_1", "label_return_5",
    ]
    return pd.concat([df, pd.DataFrame({n: out[n] for n in order}, index=df.index)], axis=1)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(dst, exist_ok=True)
    index = pq.read_table(os.path.join(src, "_index.parquet")).to_pandas()
    rows = 0
    for name in index["file"]:
        df = pd.read_parquet(os.path.join(src, name))
        feats = add_features(df)
        feats.to_parquet(os.path.join(dst, name), index=False)
        rows += len(feats)
    print(f"{len(index)} symbols, {rows} rows", file=sys.stderr)


if __name__ == "__main__":
    main()
