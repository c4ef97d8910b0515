//! The feature spec: which indicators, with which parameters, from which
//! source columns. YAML (docs/FEATURIZE.md); the built-in default is
//! `featurize/specs/default.yaml`. Its hash — together with
//! [`DEFINITIONS_VERSION`] — is stored with every output file, so features
//! computed by another spec or by older formulas are never served as fresh.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::FeaturizeError;

/// Bumped whenever a formula changes, so caches made by an older
/// kiln-featurize are recomputed rather than trusted (the feature code is
/// part of what a cached value depends on).
pub const DEFINITIONS_VERSION: u32 = 1;

/// The spec `kiln-featurize` uses without `--spec`.
pub const DEFAULT_SPEC: &str = include_str!("../specs/default.yaml");

/// Source column names the indicators read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputColumns {
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: String,
}

impl Default for InputColumns {
    fn default() -> Self {
        Self {
            open: "open".into(),
            high: "high".into(),
            low: "low".into(),
            close: "close".into(),
            volume: "volume".into(),
        }
    }
}

/// One entry of `features:`. Output column names are derived from the kind
/// and parameters (see [`Feature::columns`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Feature {
    /// Simple moving average of close: `ma_N`.
    Ma { periods: Vec<usize> },
    /// Exponential moving average of close: `ema_N`.
    Ema { periods: Vec<usize> },
    /// `macd_dif`, `macd_dea`, `macd_hist`.
    Macd {
        fast: usize,
        slow: usize,
        signal: usize,
    },
    /// Wilder's relative strength index: `rsi_N`.
    Rsi { periods: Vec<usize> },
    /// `boll_upper`, `boll_middle`, `boll_lower`, `boll_width`.
    Bollinger { period: usize, k: f64 },
    /// `kdj_k`, `kdj_d`, `kdj_j`.
    Kdj { n: usize, m1: usize, m2: usize },
    /// Average true range: `atr_N`.
    Atr { periods: Vec<usize> },
    /// On-balance volume: `obv`.
    Obv {},
    /// Simple return over N days: `return_N`.
    Return { periods: Vec<usize> },
    /// One-day log return: `log_return`.
    LogReturn {},
    /// (high − low) / previous close: `amplitude`.
    Amplitude {},
    /// Rate of change in percent over N days: `roc_N`.
    Roc { periods: Vec<usize> },
    /// Volume over the mean volume of the previous N days: `volume_ratio_N`.
    VolumeRatio { period: usize },
    /// Return over the next N days (a training label): `label_return_N`.
    ForwardReturn { periods: Vec<usize> },
}

impl Feature {
    /// Output column names, in order.
    pub fn columns(&self) -> Vec<String> {
        let each = |prefix: &str, periods: &[usize]| {
            periods
                .iter()
                .map(|p| format!("{prefix}_{p}"))
                .collect::<Vec<_>>()
        };
        let fixed = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        match self {
            Feature::Ma { periods } => each("ma", periods),
            Feature::Ema { periods } => each("ema", periods),
            Feature::Macd { .. } => fixed(&["macd_dif", "macd_dea", "macd_hist"]),
            Feature::Rsi { periods } => each("rsi", periods),
            Feature::Bollinger { .. } => {
                fixed(&["boll_upper", "boll_middle", "boll_lower", "boll_width"])
            }
            Feature::Kdj { .. } => fixed(&["kdj_k", "kdj_d", "kdj_j"]),
            Feature::Atr { periods } => each("atr", periods),
            Feature::Obv {} => fixed(&["obv"]),
            Feature::Return { periods } => each("return", periods),
            Feature::LogReturn {} => fixed(&["log_return"]),
            Feature::Amplitude {} => fixed(&["amplitude"]),
            Feature::Roc { periods } => each("roc", periods),
            Feature::VolumeRatio { period } => vec![format!("volume_ratio_{period}")],
            Feature::ForwardReturn { periods } => each("label_return", periods),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Feature::Ma { .. } => "ma",
            Feature::Ema { .. } => "ema",
            Feature::Macd { .. } => "macd",
            Feature::Rsi { .. } => "rsi",
            Feature::Bollinger { .. } => "bollinger",
            Feature::Kdj { .. } => "kdj",
            Feature::Atr { .. } => "atr",
            Feature::Obv {} => "obv",
            Feature::Return { .. } => "return",
            Feature::LogReturn {} => "log_return",
            Feature::Amplitude {} => "amplitude",
            Feature::Roc { .. } => "roc",
            Feature::VolumeRatio { .. } => "volume_ratio",
            Feature::ForwardReturn { .. } => "forward_return",
        }
    }

    /// Parameter ranges: periods a formula is defined for.
    fn check(&self) -> Result<(), String> {
        let at_least = |what: &str, v: usize, min: usize| {
            if v < min || v > 100_000 {
                Err(format!(
                    "{}: {what} must be between {min} and 100000, got {v}",
                    self.kind()
                ))
            } else {
                Ok(())
            }
        };
        let all = |periods: &[usize], min: usize| -> Result<(), String> {
            if periods.is_empty() {
                return Err(format!("{}: periods is empty", self.kind()));
            }
            periods
                .iter()
                .try_for_each(|&p| at_least("a period", p, min))
        };
        match self {
            Feature::Ma { periods } | Feature::Ema { periods } | Feature::Rsi { periods } => {
                all(periods, 2)
            }
            Feature::Atr { periods }
            | Feature::Return { periods }
            | Feature::Roc { periods }
            | Feature::ForwardReturn { periods } => all(periods, 1),
            Feature::Macd { fast, slow, signal } => {
                at_least("fast", *fast, 2)?;
                at_least("slow", *slow, 2)?;
                at_least("signal", *signal, 1)?;
                if fast >= slow {
                    return Err(format!("macd: fast ({fast}) must be below slow ({slow})"));
                }
                Ok(())
            }
            Feature::Bollinger { period, k } => {
                at_least("period", *period, 2)?;
                if !(k.is_finite() && *k > 0.0) {
                    return Err(format!("bollinger: k must be a positive number, got {k}"));
                }
                Ok(())
            }
            Feature::Kdj { n, m1, m2 } => {
                at_least("n", *n, 1)?;
                at_least("m1", *m1, 1)?;
                at_least("m2", *m2, 1)
            }
            Feature::VolumeRatio { period } => at_least("period", *period, 1),
            Feature::Obv {} | Feature::LogReturn {} | Feature::Amplitude {} => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub inputs: InputColumns,
    pub features: Vec<Feature>,
}

impl Spec {
    /// The built-in spec.
    pub fn default_spec() -> Self {
        Self::parse(DEFAULT_SPEC, Path::new("<built-in default spec>"))
            .expect("the built-in spec is valid")
    }

    /// Read and check a spec file.
    pub fn load(path: &Path) -> Result<Self, FeaturizeError> {
        let text = std::fs::read_to_string(path).map_err(|e| FeaturizeError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parse and check spec text; errors name `path`, line and column.
    pub fn parse(text: &str, path: &Path) -> Result<Self, FeaturizeError> {
        let spec: Spec = serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            FeaturizeError::Spec(format!("{}{at}: {e}", path.display()))
        })?;
        spec.check()
            .map_err(|m| FeaturizeError::Spec(format!("{}: {m}", path.display())))?;
        Ok(spec)
    }

    fn check(&self) -> Result<(), String> {
        if self.features.is_empty() {
            return Err("features is empty".into());
        }
        let mut seen = BTreeSet::new();
        for f in &self.features {
            f.check()?;
            for c in f.columns() {
                if !seen.insert(c.clone()) {
                    return Err(format!("two features write the column {c}"));
                }
            }
        }
        Ok(())
    }

    /// Every output column, in order.
    pub fn columns(&self) -> Vec<String> {
        self.features.iter().flat_map(Feature::columns).collect()
    }

    /// Hex SHA-256 (first 16 digits) of the spec as data and the formulas'
    /// version: equal hashes mean equal feature values for equal klines.
    pub fn hash(&self) -> String {
        let canonical = serde_json::to_string(self).expect("a spec serializes");
        let mut h = Sha256::new();
        h.update(format!("kiln-featurize definitions v{DEFINITIONS_VERSION}\n").as_bytes());
        h.update(canonical.as_bytes());
        h.finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_spec_names_the_documented_columns() {
        let spec = Spec::default_spec();
        let cols = spec.columns();
        for want in [
            "ma_5",
            "ma_60",
            "ema_12",
            "ema_26",
            "macd_dif",
            "macd_dea",
            "macd_hist",
            "rsi_6",
            "rsi_14",
            "boll_width",
            "kdj_j",
            "atr_14",
            "obv",
            "return_1",
            "return_5",
            "log_return",
            "amplitude",
            "roc_10",
            "volume_ratio_5",
            "label_return_1",
        ] {
            assert!(cols.iter().any(|c| c == want), "{want} in {cols:?}");
        }
    }

    #[test]
    fn bad_specs_say_where() {
        let p = Path::new("s.yaml");
        let e = Spec::parse("features:\n  - kind: ma\n    period: [5]\n", p).unwrap_err();
        assert!(e.to_string().starts_with("s.yaml:"), "{e}");
        assert!(e.to_string().contains("period"), "{e}");
        let e = Spec::parse("features:\n  - kind: median\n", p).unwrap_err();
        assert!(e.to_string().contains("median"), "{e}");
        let e = Spec::parse("features:\n  - {kind: ma, periods: [5, 5]}\n", p).unwrap_err();
        assert!(e.to_string().contains("ma_5"), "{e}");
        let e = Spec::parse(
            "features:\n  - {kind: macd, fast: 26, slow: 12, signal: 9}\n",
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("fast"), "{e}");
        let e = Spec::parse("featurez: []\n", p).unwrap_err();
        assert!(e.to_string().contains("featurez"), "{e}");
    }

    #[test]
    fn the_hash_follows_parameters_not_layout() {
        let p = Path::new("s.yaml");
        let a = Spec::parse("features:\n  - {kind: ma, periods: [5]}\n", p).unwrap();
        let b = Spec::parse("# comment\nfeatures:\n  - kind: ma\n    periods: [5]\n", p).unwrap();
        let c = Spec::parse("features:\n  - {kind: ma, periods: [6]}\n", p).unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
    }
}
