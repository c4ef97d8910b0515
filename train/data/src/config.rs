//! The training configuration: a YAML file whose every key can be overridden
//! on the command line. The effective configuration is saved in the run
//! directory as `config.yaml` and is what eval, predict and resume use.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Time-series input columns of the dataset.
    pub features: Vec<String>,
    /// Column(s) to predict, at the last step of each window.
    pub targets: Vec<String>,
    /// Static attributes table (CSV or parquet) keyed like the dataset.
    pub attributes: Option<PathBuf>,
    /// Columns of the attributes table fed to the attribute branch.
    pub attribute_features: Vec<String>,
    /// Key column of the attributes table (default: the dataset's key column).
    pub attribute_key: Option<String>,
    /// Keys of the dataset without an attributes row: `error` or `drop`.
    pub missing_attributes: MissingAttributes,
    /// Time steps per window (the seed's time_window).
    pub window: usize,
    /// Windows per optimizer step.
    pub batch_size: usize,
    /// Keys read per load batch; also the span of the shuffle buffer.
    pub keys_per_load: usize,
    pub epochs: usize,
    pub lr: f64,
    /// Epochs without a better validation loss before stopping.
    pub patience: usize,
    pub hidden_size: i64,
    pub layers: i64,
    /// Dropout between LSTM layers and in the head.
    pub dropout: f64,
    /// Width of the attribute branch.
    pub attribute_hidden: i64,
    /// Clip the global gradient norm to this (0 = off).
    pub clip_grad: f64,
    pub seed: u64,
    pub device: DeviceChoice,
    /// A missing (null/NaN) input value inside a window: `skip` the window or
    /// `fill` it with the feature's training mean.
    pub input_gaps: GapPolicy,
    /// Largest allowed step between consecutive dates inside a window, in
    /// the date column's unit (days for dates). `null`: consecutive rows are
    /// consecutive steps whatever their dates (trading days, the seed).
    pub max_step: Option<i64>,
    /// How windows are assigned to train/val(/test): see [`SplitSpec`].
    pub split: SplitSpec,
    /// libtorch intra-op threads (0 = libtorch's default).
    pub threads: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            features: Vec::new(),
            targets: Vec::new(),
            attributes: None,
            attribute_features: Vec::new(),
            attribute_key: None,
            missing_attributes: MissingAttributes::Error,
            window: 10,
            batch_size: 256,
            keys_per_load: 200,
            epochs: 20,
            lr: 1e-3,
            patience: 3,
            hidden_size: 64,
            layers: 1,
            dropout: 0.0,
            attribute_hidden: 16,
            clip_grad: 1.0,
            seed: 42,
            device: DeviceChoice::Auto,
            input_gaps: GapPolicy::Skip,
            max_step: None,
            split: SplitSpec::Key {
                fractions: vec![0.8, 0.2],
            },
            threads: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MissingAttributes {
    Error,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GapPolicy {
    Skip,
    Fill,
}

/// Train/validation(/test) assignment, written as a string in YAML and on the
/// command line:
///
/// * `key:0.8,0.2` — whole keys, shuffled with the seed (the seed's 80/20);
///   a third fraction makes a test set.
/// * `time:0.6,0.2,0.2` — each key's rows in date order (the seed's 6:2:2).
/// * `time:2000-01-01..2007-12-31,2008-01-01..2009-12-31[,2010-01-01..]` —
///   date ranges, inclusive, either end may be open.
///
/// A window belongs to the part that holds its last (target) step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SplitSpec {
    Key { fractions: Vec<f64> },
    TimeFractions { fractions: Vec<f64> },
    TimeRanges { ranges: Vec<DateRange> },
}

/// Inclusive range of days since the epoch; `None` is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub first: Option<i32>,
    pub last: Option<i32>,
}

impl DateRange {
    pub fn contains_day(&self, day: i64) -> bool {
        self.first.is_none_or(|f| day >= i64::from(f))
            && self.last.is_none_or(|l| day <= i64::from(l))
    }
}

fn format_range(r: &DateRange) -> String {
    let end = |d: Option<i32>| {
        d.map(kiln_contracts::dates::format_date)
            .unwrap_or_default()
    };
    format!("{}..{}", end(r.first), end(r.last))
}

impl std::str::FromStr for SplitSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("split {s:?}: {why} (e.g. key:0.8,0.2 or time:0.6,0.2,0.2 or time:2000-01-01..2007-12-31,2008-01-01..)")
        };
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        let fractions = |rest: &str, default: &[f64]| -> Result<Vec<f64>, String> {
            if rest.is_empty() {
                return Ok(default.to_vec());
            }
            let f: Vec<f64> = rest
                .split(',')
                .map(|x| {
                    x.trim()
                        .parse::<f64>()
                        .map_err(|_| bad(&format!("{x:?} is not a number")))
                })
                .collect::<Result<_, _>>()?;
            if f.len() == 1 && f[0] > 0.0 && f[0] < 1.0 {
                return Ok(vec![f[0], 1.0 - f[0]]);
            }
            if !(2..=3).contains(&f.len()) || f.iter().any(|x| x.is_nan() || *x <= 0.0) {
                return Err(bad("give 2 or 3 positive fractions: train, val[, test]"));
            }
            let sum: f64 = f.iter().sum();
            if (sum - 1.0).abs() > 1e-6 {
                return Err(bad(&format!("fractions sum to {sum}, not 1")));
            }
            Ok(f)
        };
        match kind {
            "key" => Ok(SplitSpec::Key {
                fractions: fractions(rest, &[0.8, 0.2])?,
            }),
            "time" if rest.contains("..") => {
                let ranges = rest
                    .split(',')
                    .map(|part| {
                        let (a, b) = part
                            .split_once("..")
                            .ok_or_else(|| bad(&format!("{part:?} is not FIRST..LAST")))?;
                        let day = |d: &str| -> Result<Option<i32>, String> {
                            let d = d.trim();
                            if d.is_empty() {
                                return Ok(None);
                            }
                            kiln_contracts::dates::parse_date(d.as_bytes())
                                .map(Some)
                                .ok_or_else(|| bad(&format!("{d:?} is not a YYYY-MM-DD date")))
                        };
                        let r = DateRange {
                            first: day(a)?,
                            last: day(b)?,
                        };
                        if let (Some(f), Some(l)) = (r.first, r.last) {
                            if f > l {
                                return Err(bad(&format!("{part:?} ends before it starts")));
                            }
                        }
                        Ok(r)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if !(2..=3).contains(&ranges.len()) {
                    return Err(bad("give 2 or 3 date ranges: train, val[, test]"));
                }
                Ok(SplitSpec::TimeRanges { ranges })
            }
            "time" => Ok(SplitSpec::TimeFractions {
                fractions: fractions(rest, &[0.6, 0.2, 0.2])?,
            }),
            _ => Err(bad("must start with key or time")),
        }
    }
}

impl TryFrom<String> for SplitSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<SplitSpec> for String {
    fn from(s: SplitSpec) -> String {
        s.to_string()
    }
}

impl std::fmt::Display for SplitSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let join = |v: &[f64]| v.iter().map(f64::to_string).collect::<Vec<_>>().join(",");
        match self {
            SplitSpec::Key { fractions } => write!(f, "key:{}", join(fractions)),
            SplitSpec::TimeFractions { fractions } => write!(f, "time:{}", join(fractions)),
            SplitSpec::TimeRanges { ranges } => {
                let r: Vec<String> = ranges.iter().map(format_range).collect();
                write!(f, "time:{}", r.join(","))
            }
        }
    }
}

impl SplitSpec {
    /// Number of parts: 2 (train, val) or 3 (train, val, test).
    pub fn parts(&self) -> usize {
        match self {
            SplitSpec::Key { fractions } | SplitSpec::TimeFractions { fractions } => {
                fractions.len()
            }
            SplitSpec::TimeRanges { ranges } => ranges.len(),
        }
    }
}

impl TrainConfig {
    /// Read a YAML config; unknown keys are errors (with line and column).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        serde_yaml_ng::from_str(&text)
            .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("config serializes")
    }

    /// Check what can be checked without the data.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(TrainError::Config(m));
        if self.features.is_empty() {
            return fail("no input features: set `features` in the config or --features".into());
        }
        if self.targets.is_empty() {
            return fail("no target: set `targets` in the config or --targets".into());
        }
        if self.attributes.is_some() == self.attribute_features.is_empty() {
            return fail(
                "attributes need both a table (`attributes`/--attributes) and its columns \
                 (`attribute_features`/--attribute-features)"
                    .into(),
            );
        }
        for (name, v) in [
            ("window", self.window),
            ("batch_size", self.batch_size),
            ("keys_per_load", self.keys_per_load),
            ("epochs", self.epochs),
        ] {
            if v == 0 {
                return fail(format!("{name} must be at least 1"));
            }
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return fail(format!("lr must be positive, got {}", self.lr));
        }
        if self.hidden_size < 1 || self.layers < 1 || self.attribute_hidden < 1 {
            return fail("hidden_size, layers and attribute_hidden must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return fail(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if self.clip_grad < 0.0 || !self.clip_grad.is_finite() {
            return fail(format!("clip_grad must be >= 0, got {}", self.clip_grad));
        }
        if self.max_step.is_some_and(|s| s < 1) {
            return fail("max_step must be at least 1 (or null)".into());
        }
        let mut seen = std::collections::HashSet::new();
        for c in self.features.iter().chain(&self.targets) {
            if !seen.insert(c) {
                return fail(format!("column {c:?} is listed twice in features/targets"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_specs_parse_and_print_back() {
        for s in [
            "key:0.8,0.2",
            "key:0.7,0.2,0.1",
            "time:0.6,0.2,0.2",
            "time:2000-01-01..2007-12-31,2008-01-01..2009-12-31,2010-01-01..",
        ] {
            let spec: SplitSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        assert_eq!(
            "key".parse::<SplitSpec>().unwrap().to_string(),
            "key:0.8,0.2"
        );
        assert_eq!("key:0.9".parse::<SplitSpec>().unwrap().parts(), 2);
        for bad in [
            "rows:0.5",
            "key:0.5,0.6",
            "key:a,b",
            "time:2001-01-01..2000-01-01,..",
            "key:1,0",
        ] {
            assert!(bad.parse::<SplitSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn yaml_rejects_unknown_keys_with_position() {
        let err = serde_yaml_ng::from_str::<TrainConfig>("features: [a]\nwindw: 3\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("windw") && msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn yaml_round_trips() {
        let c = TrainConfig {
            features: vec!["a".into()],
            targets: vec!["y".into()],
            split: "time:0.6,0.2,0.2".parse().unwrap(),
            max_step: Some(1),
            ..TrainConfig::default()
        };
        let back: TrainConfig = serde_yaml_ng::from_str(&c.to_yaml()).unwrap();
        assert_eq!(back, c);
    }
}
