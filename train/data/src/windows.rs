//! Which rows of one key's series end a usable window.
//!
//! A window of length T ending at row `e` is rows `e-T+1 ..= e` of one key
//! (never two keys: each series is handled alone); its target is the target
//! row `e`.

use std::ops::Range;

use serde::Serialize;

use crate::config::GapPolicy;

#[derive(Debug, Clone, Copy)]
pub struct WindowRules {
    pub window: usize,
    pub input_gaps: GapPolicy,
    /// Largest step between consecutive dates inside a window.
    pub max_step: Option<i64>,
    /// Skip windows whose every target is missing (training, eval); predict
    /// keeps them.
    pub need_target: bool,
}

/// Windows not produced, by first reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SkipCounts {
    /// Every target at the window's last step is missing.
    pub missing_target: u64,
    /// An input value inside the window is missing (input_gaps: skip).
    pub missing_input: u64,
    /// Two consecutive rows inside the window are more than max_step apart.
    pub date_gap: u64,
}

impl SkipCounts {
    pub fn add(&mut self, o: &SkipCounts) {
        self.missing_target += o.missing_target;
        self.missing_input += o.missing_input;
        self.date_gap += o.date_gap;
    }

    pub fn total(&self) -> u64 {
        self.missing_target + self.missing_input + self.date_gap
    }
}

/// Per-row facts the window rules need, computed once per series.
#[derive(Debug, Default)]
pub struct RowFlags {
    /// Some input value of the row is missing.
    pub input_missing: Vec<bool>,
    /// Every target value of the row is missing.
    pub target_missing: Vec<bool>,
}

/// Append to `out` every row in `ends` that ends a usable window.
///
/// Rows before `window - 1` cannot end a window and are not counted as
/// skipped: they are warm-up, not data loss.
pub fn valid_ends(
    rules: &WindowRules,
    dates: &[i64],
    flags: &RowFlags,
    ends: Range<usize>,
    out: &mut Vec<u32>,
    skips: &mut SkipCounts,
) {
    let rows = dates.len();
    let t = rules.window;
    if rows < t || ends.end < t {
        return;
    }
    // Prefix counts make each window's check O(1): rows with a missing input
    // before row i, and date steps too large among rows 1..=i.
    let mut missing = vec![0u32; rows + 1];
    if rules.input_gaps == GapPolicy::Skip {
        for i in 0..rows {
            missing[i + 1] = missing[i] + u32::from(flags.input_missing[i]);
        }
    }
    let mut gaps = vec![0u32; rows + 1];
    if let Some(max_step) = rules.max_step {
        for i in 1..rows {
            gaps[i + 1] = gaps[i] + u32::from(dates[i] - dates[i - 1] > max_step);
        }
    }
    let first = ends.start.max(t - 1);
    for e in first..ends.end.min(rows) {
        if rules.need_target && flags.target_missing[e] {
            skips.missing_target += 1;
        } else if missing[e + 1] - missing[e + 1 - t] > 0 {
            skips.missing_input += 1;
        } else if gaps[e + 1] - gaps[e + 2 - t] > 0 {
            skips.date_gap += 1;
        } else {
            out.push(e as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(window: usize) -> WindowRules {
        WindowRules {
            window,
            input_gaps: GapPolicy::Skip,
            max_step: Some(1),
            need_target: true,
        }
    }

    /// The same decision made the slow, obvious way.
    #[allow(clippy::needless_range_loop)]
    fn brute(r: &WindowRules, dates: &[i64], x: &[f32], y: &[f32]) -> (Vec<u32>, SkipCounts) {
        let (mut out, mut s) = (Vec::new(), SkipCounts::default());
        for e in r.window - 1..dates.len() {
            let rows = e + 1 - r.window..=e;
            if r.need_target && y[e].is_nan() {
                s.missing_target += 1;
            } else if rows.clone().any(|i| x[i].is_nan()) {
                s.missing_input += 1;
            } else if rows.clone().skip(1).any(|i| dates[i] - dates[i - 1] > 1) {
                s.date_gap += 1;
            } else {
                out.push(e as u32);
            }
        }
        (out, s)
    }

    #[test]
    fn prefix_counts_agree_with_brute_force() {
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as f64 / (1u64 << 31) as f64
        };
        for _ in 0..50 {
            let n = 1 + (next() * 60.0) as usize;
            let mut day = 0i64;
            let dates: Vec<i64> = (0..n)
                .map(|_| {
                    day += if next() < 0.1 { 3 } else { 1 };
                    day
                })
                .collect();
            let x: Vec<f32> = (0..n)
                .map(|i| if next() < 0.05 { f32::NAN } else { i as f32 })
                .collect();
            let y: Vec<f32> = (0..n)
                .map(|i| if next() < 0.3 { f32::NAN } else { i as f32 })
                .collect();
            for w in [1, 2, 5, 10] {
                let r = rules(w);
                let flags = RowFlags {
                    input_missing: x.iter().map(|v| v.is_nan()).collect(),
                    target_missing: y.iter().map(|v| v.is_nan()).collect(),
                };
                let (mut got, mut s) = (Vec::new(), SkipCounts::default());
                valid_ends(&r, &dates, &flags, 0..n, &mut got, &mut s);
                assert_eq!((got, s), brute(&r, &dates, &x, &y), "n={n} w={w}");
            }
        }
    }

    #[test]
    fn ends_range_restricts_without_losing_lookback() {
        let dates: Vec<i64> = (0..20).collect();
        let flags = RowFlags {
            input_missing: vec![false; 20],
            target_missing: vec![false; 20],
        };
        let (mut got, mut s) = (Vec::new(), SkipCounts::default());
        valid_ends(&rules(5), &dates, &flags, 12..16, &mut got, &mut s);
        assert_eq!(got, vec![12, 13, 14, 15]);
        got.clear();
        valid_ends(&rules(5), &dates, &flags, 0..3, &mut got, &mut s);
        assert!(got.is_empty());
        assert_eq!(s.total(), 0);
    }
}
