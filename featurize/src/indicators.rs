//! The indicators as state machines over one symbol's rows.
//!
//! Every kernel computes rows `from..len` of its columns from the klines and
//! its state after row `from − 1`, and leaves its state after the last row.
//! A full computation starts at row 0 with a fresh state; an incremental one
//! restores the state saved with the cached file and starts at the first new
//! row. Both run exactly the same operations in the same order, so the tail
//! is bit-for-bit what a full recomputation gives.
//!
//! The recurrences follow TA-Lib's C code operation by operation (running
//! sums for SMA and Bollinger, SMA-seeded EMAs, MACD's fast EMA seeded where
//! the slow one is, Wilder smoothing for RSI and ATR), so values agree with
//! TA-Lib to rounding. Formulas: docs/FEATURIZE.md. Warm-up rows are NaN
//! here and null in the files.

use ta::indicators::{Maximum, Minimum};
use ta::Next;

use crate::spec::Feature;

/// One symbol's input columns, all the same length, no NaN.
#[derive(Debug, Clone, Copy)]
pub struct Klines<'a> {
    pub open: &'a [f64],
    pub high: &'a [f64],
    pub low: &'a [f64],
    pub close: &'a [f64],
    pub volume: &'a [f64],
}

impl Klines<'_> {
    pub fn len(&self) -> usize {
        self.close.len()
    }

    pub fn is_empty(&self) -> bool {
        self.close.is_empty()
    }
}

/// TA-Lib's `PER_TO_K`.
fn per_to_k(period: usize) -> f64 {
    2.0 / ((period + 1) as f64)
}

/// TA-Lib's `TA_IS_ZERO`.
fn is_zero(v: f64) -> bool {
    -0.000_000_01 < v && v < 0.000_000_01
}

/// TA-Lib's `TRANGE` at row `t ≥ 1`.
fn true_range(k: &Klines, t: usize) -> f64 {
    let (h, l, prev_close) = (k.high[t], k.low[t], k.close[t - 1]);
    let mut greatest = h - l;
    let v2 = (prev_close - h).abs();
    if v2 > greatest {
        greatest = v2;
    }
    let v3 = (prev_close - l).abs();
    if v3 > greatest {
        greatest = v3;
    }
    greatest
}

/// One indicator with its parameters and running state.
#[derive(Debug, Clone)]
pub enum Kernel {
    Sma {
        n: usize,
        total: f64,
    },
    Ema {
        n: usize,
        sum: f64,
        prev: f64,
    },
    Macd {
        fast: usize,
        slow: usize,
        signal: usize,
        fast_sum: f64,
        slow_sum: f64,
        fast_ema: f64,
        slow_ema: f64,
        signal_sum: f64,
        signal_ema: f64,
    },
    Rsi {
        n: usize,
        gain: f64,
        loss: f64,
    },
    Bollinger {
        n: usize,
        k: f64,
        total: f64,
        total2: f64,
    },
    Kdj {
        n: usize,
        m1: usize,
        m2: usize,
        k: f64,
        d: f64,
    },
    Atr {
        n: usize,
        sum: f64,
        prev: f64,
    },
    Obv {
        prev: f64,
    },
    Return {
        n: usize,
    },
    LogReturn,
    Amplitude,
    Roc {
        n: usize,
    },
    VolumeRatio {
        n: usize,
    },
    ForwardReturn {
        n: usize,
    },
}

/// The kernels of a spec, one per output column group, in column order.
pub fn kernels(features: &[Feature]) -> Vec<Kernel> {
    let mut out = Vec::new();
    for f in features {
        match f {
            Feature::Ma { periods } => {
                out.extend(periods.iter().map(|&n| Kernel::Sma { n, total: 0.0 }))
            }
            Feature::Ema { periods } => out.extend(periods.iter().map(|&n| Kernel::Ema {
                n,
                sum: 0.0,
                prev: 0.0,
            })),
            Feature::Macd { fast, slow, signal } => out.push(Kernel::Macd {
                fast: *fast,
                slow: *slow,
                signal: *signal,
                fast_sum: 0.0,
                slow_sum: 0.0,
                fast_ema: 0.0,
                slow_ema: 0.0,
                signal_sum: 0.0,
                signal_ema: 0.0,
            }),
            Feature::Rsi { periods } => out.extend(periods.iter().map(|&n| Kernel::Rsi {
                n,
                gain: 0.0,
                loss: 0.0,
            })),
            Feature::Bollinger { period, k } => out.push(Kernel::Bollinger {
                n: *period,
                k: *k,
                total: 0.0,
                total2: 0.0,
            }),
            Feature::Kdj { n, m1, m2 } => out.push(Kernel::Kdj {
                n: *n,
                m1: *m1,
                m2: *m2,
                k: 50.0,
                d: 50.0,
            }),
            Feature::Atr { periods } => out.extend(periods.iter().map(|&n| Kernel::Atr {
                n,
                sum: 0.0,
                prev: 0.0,
            })),
            Feature::Obv {} => out.push(Kernel::Obv { prev: 0.0 }),
            Feature::Return { periods } => {
                out.extend(periods.iter().map(|&n| Kernel::Return { n }))
            }
            Feature::LogReturn {} => out.push(Kernel::LogReturn),
            Feature::Amplitude {} => out.push(Kernel::Amplitude),
            Feature::Roc { periods } => out.extend(periods.iter().map(|&n| Kernel::Roc { n })),
            Feature::VolumeRatio { period } => out.push(Kernel::VolumeRatio { n: *period }),
            Feature::ForwardReturn { periods } => {
                out.extend(periods.iter().map(|&n| Kernel::ForwardReturn { n }))
            }
        }
    }
    out
}

impl Kernel {
    /// How many output columns this kernel fills.
    pub fn width(&self) -> usize {
        match self {
            Kernel::Macd { .. } | Kernel::Kdj { .. } => 3,
            Kernel::Bollinger { .. } => 4,
            _ => 1,
        }
    }

    /// Rows before the first new row whose values change when rows are
    /// added (forward-looking labels); an incremental run recomputes them.
    pub fn lookahead(&self) -> usize {
        match self {
            Kernel::ForwardReturn { n } => *n,
            _ => 0,
        }
    }

    /// The running state, to be stored with the file.
    pub fn state(&self) -> Vec<f64> {
        match *self {
            Kernel::Sma { total, .. } => vec![total],
            Kernel::Ema { sum, prev, .. } | Kernel::Atr { sum, prev, .. } => vec![sum, prev],
            Kernel::Macd {
                fast_sum,
                slow_sum,
                fast_ema,
                slow_ema,
                signal_sum,
                signal_ema,
                ..
            } => vec![
                fast_sum, slow_sum, fast_ema, slow_ema, signal_sum, signal_ema,
            ],
            Kernel::Rsi { gain, loss, .. } => vec![gain, loss],
            Kernel::Bollinger { total, total2, .. } => vec![total, total2],
            Kernel::Kdj { k, d, .. } => vec![k, d],
            Kernel::Obv { prev } => vec![prev],
            _ => Vec::new(),
        }
    }

    /// Restore a state from [`Kernel::state`]; false if it does not fit.
    pub fn restore(&mut self, s: &[f64]) -> bool {
        if s.len() != self.state().len() {
            return false;
        }
        match self {
            Kernel::Sma { total, .. } => *total = s[0],
            Kernel::Ema { sum, prev, .. } | Kernel::Atr { sum, prev, .. } => {
                (*sum, *prev) = (s[0], s[1])
            }
            Kernel::Macd {
                fast_sum,
                slow_sum,
                fast_ema,
                slow_ema,
                signal_sum,
                signal_ema,
                ..
            } => {
                (*fast_sum, *slow_sum, *fast_ema) = (s[0], s[1], s[2]);
                (*slow_ema, *signal_sum, *signal_ema) = (s[3], s[4], s[5]);
            }
            Kernel::Rsi { gain, loss, .. } => (*gain, *loss) = (s[0], s[1]),
            Kernel::Bollinger { total, total2, .. } => (*total, *total2) = (s[0], s[1]),
            Kernel::Kdj { k, d, .. } => (*k, *d) = (s[0], s[1]),
            Kernel::Obv { prev } => *prev = s[0],
            _ => {}
        }
        true
    }

    /// Compute rows `from..len` of this kernel's columns (`out[c][t]`, each
    /// column `len` long) and leave the state after the last row. Each
    /// recurrence keeps its state in locals while it loops: through
    /// `&mut self` every row's value would make a round trip through
    /// memory, which doubles the latency of the chain of dependent
    /// operations a recurrence is.
    // Index loops: each step reads several inputs at t and t−n, as the
    // formulas are written.
    #[allow(clippy::needless_range_loop)]
    pub fn run(&mut self, x: &Klines, from: usize, out: &mut [Vec<f64>]) {
        let len = x.len();
        let c = x.close;
        match self {
            Kernel::Sma { n, total } => {
                let (n, mut sum) = (*n, *total);
                let ma = &mut out[0];
                for t in from..len {
                    sum += c[t];
                    if t + 1 >= n {
                        ma[t] = sum / n as f64;
                        sum -= c[t + 1 - n];
                    }
                }
                *total = sum;
            }
            Kernel::Ema { n, sum, prev } => {
                let (n, k) = (*n, per_to_k(*n));
                let (mut s, mut ema) = (*sum, *prev);
                let col = &mut out[0];
                for t in from..len {
                    if t + 1 < n {
                        s += c[t];
                    } else if t + 1 == n {
                        s += c[t];
                        ema = s / n as f64;
                        col[t] = ema;
                    } else {
                        ema = ((c[t] - ema) * k) + ema;
                        col[t] = ema;
                    }
                }
                (*sum, *prev) = (s, ema);
            }
            Kernel::Macd {
                fast,
                slow,
                signal,
                fast_sum,
                slow_sum,
                fast_ema,
                slow_ema,
                signal_sum,
                signal_ema,
            } => {
                let (f, s, g) = (*fast, *slow, *signal);
                let (kf, ks, kg) = (per_to_k(f), per_to_k(s), per_to_k(g));
                let (mut f_sum, mut s_sum, mut g_sum) = (*fast_sum, *slow_sum, *signal_sum);
                let (mut f_ema, mut s_ema, mut g_ema) = (*fast_ema, *slow_ema, *signal_ema);
                // TA-Lib seeds both EMAs at row slow−1: the slow one with
                // the mean of rows 0..slow, the fast one with the mean of
                // the `fast` rows ending there.
                let seed_at = s - 1;
                let first_out = seed_at + g - 1;
                let [difs, deas, hists] = out else {
                    unreachable!("MACD has three columns")
                };
                for t in from..len {
                    if t < seed_at {
                        s_sum += c[t];
                        if t + f > seed_at {
                            f_sum += c[t];
                        }
                        continue;
                    }
                    if t == seed_at {
                        s_sum += c[t];
                        f_sum += c[t];
                        s_ema = s_sum / s as f64;
                        f_ema = f_sum / f as f64;
                    } else {
                        s_ema = ((c[t] - s_ema) * ks) + s_ema;
                        f_ema = ((c[t] - f_ema) * kf) + f_ema;
                    }
                    let dif = f_ema - s_ema;
                    if t < first_out {
                        g_sum += dif;
                        continue;
                    }
                    if t == first_out {
                        g_sum += dif;
                        g_ema = g_sum / g as f64;
                    } else {
                        g_ema = ((dif - g_ema) * kg) + g_ema;
                    }
                    difs[t] = dif;
                    deas[t] = g_ema;
                    hists[t] = dif - g_ema;
                }
                (*fast_sum, *slow_sum, *signal_sum) = (f_sum, s_sum, g_sum);
                (*fast_ema, *slow_ema, *signal_ema) = (f_ema, s_ema, g_ema);
            }
            Kernel::Rsi { n, gain, loss } => {
                let n = *n;
                let (mut up, mut down) = (*gain, *loss);
                let rsi = |gain: f64, loss: f64| {
                    let total = gain + loss;
                    if is_zero(total) {
                        0.0
                    } else {
                        100.0 * (gain / total)
                    }
                };
                let col = &mut out[0];
                for t in from.max(1)..len {
                    let diff = c[t] - c[t - 1];
                    if t <= n {
                        if diff < 0.0 {
                            down -= diff;
                        } else {
                            up += diff;
                        }
                        if t == n {
                            down /= n as f64;
                            up /= n as f64;
                            col[t] = rsi(up, down);
                        }
                        continue;
                    }
                    down *= (n - 1) as f64;
                    up *= (n - 1) as f64;
                    if diff < 0.0 {
                        down -= diff;
                    } else {
                        up += diff;
                    }
                    down /= n as f64;
                    up /= n as f64;
                    col[t] = rsi(up, down);
                }
                (*gain, *loss) = (up, down);
            }
            Kernel::Bollinger {
                n,
                k,
                total,
                total2,
            } => {
                let (n, k) = (*n, *k);
                let (mut sum, mut sum2) = (*total, *total2);
                let [uppers, middles, lowers, widths] = out else {
                    unreachable!("Bollinger has four columns")
                };
                for t in from..len {
                    sum += c[t];
                    sum2 += c[t] * c[t];
                    if t + 1 < n {
                        continue;
                    }
                    let trailing = c[t + 1 - n];
                    let middle = sum / n as f64;
                    sum -= trailing;
                    let mut variance = sum2 / n as f64;
                    sum2 -= trailing * trailing;
                    variance -= middle * middle;
                    // TA_IS_ZERO_OR_NEG: rounding noise in a flat stretch is 0.
                    let sd = if variance < 0.000_000_01 {
                        0.0
                    } else {
                        variance.sqrt()
                    };
                    let band = sd * k;
                    let (upper, lower) = (middle + band, middle - band);
                    uppers[t] = upper;
                    middles[t] = middle;
                    lowers[t] = lower;
                    widths[t] = (upper - lower) / middle;
                }
                (*total, *total2) = (sum, sum2);
            }
            Kernel::Kdj { n, m1, m2, k, d } => {
                let (n, m1, m2) = (*n, *m1 as f64, *m2 as f64);
                let (mut kv, mut dv) = (*k, *d);
                // The `ta` crate's windowed extremes, fed the window's rows
                // before `from` when resuming.
                let mut highest = Maximum::new(n).expect("n >= 1");
                let mut lowest = Minimum::new(n).expect("n >= 1");
                for t in from.saturating_sub(n - 1)..from {
                    highest.next(x.high[t]);
                    lowest.next(x.low[t]);
                }
                let [ks, ds, js] = out else {
                    unreachable!("KDJ has three columns")
                };
                for t in from..len {
                    let hh = highest.next(x.high[t]);
                    let ll = lowest.next(x.low[t]);
                    if t + 1 < n {
                        continue;
                    }
                    let range = hh - ll;
                    let rsv = if range > 0.0 {
                        (c[t] - ll) / range * 100.0
                    } else {
                        50.0
                    };
                    kv = ((m1 - 1.0) * kv + rsv) / m1;
                    dv = ((m2 - 1.0) * dv + kv) / m2;
                    ks[t] = kv;
                    ds[t] = dv;
                    js[t] = 3.0 * kv - 2.0 * dv;
                }
                (*k, *d) = (kv, dv);
            }
            Kernel::Atr { n, sum, prev } => {
                let n = *n;
                let (mut s, mut atr) = (*sum, *prev);
                let col = &mut out[0];
                for t in from.max(1)..len {
                    let tr = true_range(x, t);
                    if t < n {
                        s += tr;
                    } else if t == n {
                        s += tr;
                        atr = s / n as f64;
                        col[t] = atr;
                    } else {
                        atr *= (n - 1) as f64;
                        atr += tr;
                        atr /= n as f64;
                        col[t] = atr;
                    }
                }
                (*sum, *prev) = (s, atr);
            }
            Kernel::Obv { prev } => {
                let mut obv = *prev;
                let col = &mut out[0];
                for t in from..len {
                    if t == 0 {
                        obv = x.volume[0];
                    } else if c[t] > c[t - 1] {
                        obv += x.volume[t];
                    } else if c[t] < c[t - 1] {
                        obv -= x.volume[t];
                    }
                    col[t] = obv;
                }
                *prev = obv;
            }
            Kernel::Return { n } => {
                for t in from.max(*n)..len {
                    let base = c[t - *n];
                    out[0][t] = (c[t] - base) / base;
                }
            }
            Kernel::LogReturn => {
                for t in from.max(1)..len {
                    out[0][t] = (c[t] / c[t - 1]).ln();
                }
            }
            Kernel::Amplitude => {
                for t in from.max(1)..len {
                    out[0][t] = (x.high[t] - x.low[t]) / c[t - 1];
                }
            }
            Kernel::Roc { n } => {
                for t in from.max(*n)..len {
                    out[0][t] = ((c[t] / c[t - *n]) - 1.0) * 100.0;
                }
            }
            Kernel::VolumeRatio { n } => {
                let n = *n;
                for t in from.max(n)..len {
                    let sum: f64 = x.volume[t - n..t].iter().sum();
                    let mean = sum / n as f64;
                    out[0][t] = if mean > 0.0 {
                        x.volume[t] / mean
                    } else {
                        f64::NAN
                    };
                }
            }
            Kernel::ForwardReturn { n } => {
                for t in from..len {
                    out[0][t] = match c.get(t + *n) {
                        Some(&ahead) => (ahead - c[t]) / c[t],
                        None => f64::NAN,
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(len: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let close: Vec<f64> = (0..len)
            .map(|i| 10.0 + ((i * 7919) % 23) as f64 * 0.37 - (i % 5) as f64 * 0.11)
            .collect();
        let high = close.iter().map(|c| c + 0.5).collect();
        let low = close.iter().map(|c| c - 0.4).collect();
        let volume = (0..len).map(|i| 1000.0 + (i % 13) as f64 * 10.0).collect();
        (close, high, low, volume)
    }

    #[test]
    fn resuming_from_a_saved_state_equals_running_through() {
        let spec = crate::spec::Spec::default_spec();
        let (close, high, low, volume) = series(200);
        let x = Klines {
            open: &close,
            high: &high,
            low: &low,
            close: &close,
            volume: &volume,
        };
        for split in [1, 5, 20, 33, 34, 120, 199] {
            let fresh = kernels(&spec.features);
            let mut whole = fresh.clone();
            let mut head_kernels = fresh.clone();
            for (i, (a, b)) in whole.iter_mut().zip(head_kernels.iter_mut()).enumerate() {
                let mut full = vec![vec![f64::NAN; 200]; a.width()];
                a.run(&x, 0, &mut full);
                let mut inc = vec![vec![f64::NAN; 200]; b.width()];
                let head = Klines {
                    open: &close[..split],
                    high: &high[..split],
                    low: &low[..split],
                    close: &close[..split],
                    volume: &volume[..split],
                };
                let mut head_out = vec![vec![f64::NAN; split]; b.width()];
                b.run(&head, 0, &mut head_out);
                // A new kernel given only the saved state.
                let mut resumed = fresh[i].clone();
                assert!(resumed.restore(&b.state()));
                let from = split - resumed.lookahead().min(split);
                for (c, col) in head_out.iter().enumerate() {
                    inc[c][..from].copy_from_slice(&col[..from]);
                }
                resumed.run(&x, from, &mut inc);
                assert_eq!(resumed.state(), a.state());
                for c in 0..a.width() {
                    for t in 0..200 {
                        assert_eq!(
                            full[c][t].to_bits(),
                            inc[c][t].to_bits(),
                            "{a:?} column {c} row {t} split {split}"
                        );
                    }
                }
            }
        }
    }
}
