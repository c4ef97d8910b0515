//! Per-column standardization fitted in one streaming pass.
//!
//! Welford's update per value and Chan et al.'s merge for partial results, in
//! f64, so millions of rows with a large mean lose no precision (the naive
//! sum-of-squares formula cancels catastrophically there). Population
//! standard deviation (ddof 0), as scikit-learn's StandardScaler.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunningStats {
    pub count: u64,
    pub mean: f64,
    m2: f64,
}

impl RunningStats {
    /// Add one value; NaN (a missing value) is ignored.
    #[inline]
    pub fn push(&mut self, x: f64) {
        if x.is_nan() {
            return;
        }
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    pub fn merge(&mut self, other: &RunningStats) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let n = (self.count + other.count) as f64;
        let delta = other.mean - self.mean;
        self.mean += delta * other.count as f64 / n;
        self.m2 += other.m2 + delta * delta * self.count as f64 * other.count as f64 / n;
        self.count += other.count;
    }

    pub fn std(&self) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        (self.m2 / self.count as f64).sqrt()
    }
}

/// How one column is standardized: `(x - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnScale {
    pub name: String,
    pub mean: f64,
    /// The divisor used: the fitted std, or 1 for a constant column.
    pub std: f64,
    /// Values the fit saw (missing values excluded).
    pub count: u64,
    /// The column was constant on the training data (std 0): it becomes 0
    /// everywhere after scaling, which the model can ignore.
    pub constant: bool,
}

impl ColumnScale {
    pub fn from_stats(name: &str, stats: &RunningStats) -> Self {
        let std = stats.std();
        // Relative to the mean's magnitude: 1e-12 of it is float noise.
        let constant = std.is_nan() || std <= 1e-12 * stats.mean.abs().max(1.0);
        Self {
            name: name.to_owned(),
            mean: stats.mean,
            std: if constant { 1.0 } else { std },
            count: stats.count,
            constant,
        }
    }

    #[inline]
    pub fn scale(&self, x: f64) -> f32 {
        ((x - self.mean) / self.std) as f32
    }

    #[inline]
    pub fn unscale(&self, z: f64) -> f64 {
        z * self.std + self.mean
    }
}

/// Everything eval/predict need to feed the model what training fed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub features: Vec<ColumnScale>,
    pub targets: Vec<ColumnScale>,
    pub attributes: Vec<ColumnScale>,
}

impl Scaler {
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("scaler serializes");
        kiln_contracts::atomic::write_atomic(path, &json)?;
        Ok(())
    }

    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| TrainError::data(path, format!("not a Kiln scaler: {e}")))
    }

    /// Same columns and, to 1e-12 relative, the same numbers (JSON text
    /// need not round-trip every last bit of an f64).
    pub fn matches(&self, other: &Scaler) -> bool {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1e-300);
        let same = |a: &[ColumnScale], b: &[ColumnScale]| {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| {
                    x.name == y.name
                        && x.count == y.count
                        && x.constant == y.constant
                        && close(x.mean, y.mean)
                        && close(x.std, y.std)
                })
        };
        same(&self.features, &other.features)
            && same(&self.targets, &other.targets)
            && same(&self.attributes, &other.attributes)
    }

    /// Names of constant columns, for the warning.
    pub fn constant_columns(&self) -> Vec<&str> {
        self.features
            .iter()
            .chain(&self.attributes)
            .filter(|c| c.constant)
            .map(|c| c.name.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welford_matches_two_pass_even_with_a_large_offset() {
        let xs: Vec<f64> = (0..10_000)
            .map(|i| 1e9 + ((i * 7919) % 1000) as f64 * 0.001)
            .collect();
        // Reference computed on the offset-free values (exact in f64).
        let small: Vec<f64> = xs.iter().map(|x| x - 1e9).collect();
        let small_mean = small.iter().sum::<f64>() / xs.len() as f64;
        let mean = 1e9 + small_mean;
        let var = small.iter().map(|x| (x - small_mean).powi(2)).sum::<f64>() / xs.len() as f64;
        let (mut a, mut b) = (RunningStats::default(), RunningStats::default());
        for (i, x) in xs.iter().enumerate() {
            if i % 3 == 0 {
                a.push(*x)
            } else {
                b.push(*x)
            }
        }
        a.merge(&b);
        a.push(f64::NAN);
        assert_eq!(a.count, 10_000);
        assert!((a.mean - mean).abs() < 1e-4, "{} vs {mean}", a.mean);
        assert!(
            (a.std() - var.sqrt()).abs() / var.sqrt() < 1e-6,
            "{} vs {}",
            a.std(),
            var.sqrt()
        );
    }

    #[test]
    fn constant_column_scales_to_zero() {
        let mut s = RunningStats::default();
        for _ in 0..5 {
            s.push(3.5);
        }
        let c = ColumnScale::from_stats("flat", &s);
        assert!(c.constant);
        assert_eq!(c.scale(3.5), 0.0);
    }
}
