//! What a run reads: the usable keys, which part (train/val/test) each window
//! belongs to, the attributes of each key, and the one streaming pass that
//! fits the scaler and counts windows before training starts.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use kiln_contracts::{ColumnType, KeyedDataset};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::attributes::AttributeTable;
use crate::config::{MissingAttributes, SplitSpec, TrainConfig};
use crate::error::{Result, TrainError};
use crate::scaler::{ColumnScale, RunningStats, Scaler};
use crate::series::{read_series, ColumnSet, RawSeries};
use crate::windows::{valid_ends, SkipCounts, WindowRules};

pub const PART_NAMES: [&str; 3] = ["train", "val", "test"];
pub const TRAIN: usize = 0;
pub const VAL: usize = 1;

const MICROS_PER_DAY: i64 = 86_400_000_000;

#[derive(Debug)]
pub struct Plan {
    pub ds: Arc<KeyedDataset>,
    pub columns: ColumnSet,
    pub split: SplitSpec,
    /// Entry indices of the keys used (keys without attributes dropped).
    pub keys: Vec<usize>,
    /// Per dataset entry: its part under a key split.
    key_part: Vec<u8>,
    /// Per dataset entry: raw attribute values (empty without attributes).
    pub raw_attributes: Vec<Vec<f64>>,
    pub attribute_names: Vec<String>,
    /// Keys dropped for want of attributes.
    pub dropped_keys: usize,
    pub date_type: ColumnType,
}

impl Plan {
    pub fn new(
        ds: KeyedDataset,
        columns: ColumnSet,
        split: SplitSpec,
        seed: u64,
        attributes: Option<(&AttributeTable, MissingAttributes)>,
    ) -> Result<Self> {
        columns.check(&ds)?;
        let n = ds.entries().len();
        if n == 0 {
            return Err(TrainError::data(ds.dir(), "the dataset has no keys"));
        }
        let mut keys: Vec<usize> = (0..n).collect();
        let mut raw_attributes = vec![Vec::new(); n];
        let mut dropped_keys = 0;
        let mut attribute_names = Vec::new();
        if let Some((table, policy)) = attributes {
            attribute_names = table.columns.clone();
            let mut missing = Vec::new();
            keys.retain(|&i| {
                let key = &ds.entries()[i].key;
                match table.rows.get(key) {
                    Some(v) => {
                        raw_attributes[i] = v.clone();
                        true
                    }
                    None => {
                        missing.push(key.clone());
                        false
                    }
                }
            });
            if !missing.is_empty() {
                let examples = missing
                    .iter()
                    .take(5)
                    .map(|k| format!("{k:?}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                if policy == MissingAttributes::Error {
                    return Err(TrainError::data(
                        &table.path,
                        format!(
                            "{} of {n} keys of the dataset have no row here (e.g. {examples}); \
                             add them, or set missing_attributes: drop to train without them",
                            missing.len()
                        ),
                    ));
                }
                tracing::warn!(
                    "dropping {} of {n} keys that have no attributes row in {} (e.g. {examples})",
                    missing.len(),
                    table.path.display()
                );
                dropped_keys = missing.len();
            }
            if keys.is_empty() {
                return Err(TrainError::data(
                    &table.path,
                    "no key of the dataset has attributes here",
                ));
            }
            let blanks: usize = keys
                .iter()
                .map(|&i| raw_attributes[i].iter().filter(|v| v.is_nan()).count())
                .sum();
            if blanks > 0 {
                tracing::warn!(
                    "{blanks} missing attribute values in {}: filled with the training mean",
                    table.path.display()
                );
            }
        }
        let mut key_part = vec![0u8; n];
        if let SplitSpec::Key { fractions } = &split {
            let mut order = keys.clone();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            let total = order.len();
            let mut bounds = Vec::new();
            let mut acc = 0.0;
            for f in &fractions[..fractions.len() - 1] {
                acc += f;
                bounds.push(((acc * total as f64).round() as usize).clamp(1, total));
            }
            for (pos, &entry) in order.iter().enumerate() {
                key_part[entry] = bounds.iter().filter(|&&b| pos >= b).count() as u8;
            }
        }
        let date_type = ds.manifest().date_type();
        Ok(Self {
            ds: Arc::new(ds),
            columns,
            split,
            keys,
            key_part,
            raw_attributes,
            attribute_names,
            dropped_keys,
            date_type,
        })
    }

    /// Keys that have rows in `part` (`None`: every part).
    pub fn keys_of(&self, part: Option<usize>) -> Vec<usize> {
        match (&self.split, part) {
            (SplitSpec::Key { .. }, Some(p)) => self
                .keys
                .iter()
                .copied()
                .filter(|&e| usize::from(self.key_part[e]) == p)
                .collect(),
            _ => self.keys.clone(),
        }
    }

    /// Rows of a key whose windows belong to `part` (`None`: all rows).
    pub fn end_rows(&self, entry: usize, dates: &[i64], part: Option<usize>) -> Range<usize> {
        let n = dates.len();
        let Some(p) = part else { return 0..n };
        match &self.split {
            SplitSpec::Key { .. } => {
                if usize::from(self.key_part[entry]) == p {
                    0..n
                } else {
                    0..0
                }
            }
            SplitSpec::TimeFractions { fractions } => {
                let bound = |k: usize| -> usize {
                    let acc: f64 = fractions[..k].iter().sum();
                    ((acc * n as f64).round() as usize).min(n)
                };
                let hi = if p + 1 == fractions.len() {
                    n
                } else {
                    bound(p + 1)
                };
                bound(p)..hi
            }
            SplitSpec::TimeRanges { ranges } => {
                let Some(r) = ranges.get(p) else { return 0..0 };
                let micros = self.date_type == ColumnType::TimestampUs;
                let lo = r.first.map_or(i64::MIN, |d| {
                    if micros {
                        i64::from(d) * MICROS_PER_DAY
                    } else {
                        i64::from(d)
                    }
                });
                let hi = r.last.map_or(i64::MAX, |d| {
                    if micros {
                        (i64::from(d) + 1) * MICROS_PER_DAY - 1
                    } else {
                        i64::from(d)
                    }
                });
                dates.partition_point(|&d| d < lo)..dates.partition_point(|&d| d <= hi)
            }
        }
    }
}

/// Windows of each part and why others were skipped.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WindowCounts {
    pub windows: Vec<u64>,
    pub skipped: Vec<SkipCounts>,
    /// Longest series seen, for "window longer than every series".
    pub longest_series: usize,
}

/// Results of the fitting pass.
#[derive(Debug)]
pub struct Fit {
    pub scaler: Scaler,
    pub counts: WindowCounts,
}

/// One streaming pass over every key: fit mean/std of features and targets on
/// the training rows, of attributes on the training keys, and count windows.
///
/// Keys are read by `threads` workers over contiguous slices and merged in
/// key order, so the result is identical whatever the thread count.
pub fn fit(plan: &Plan, rules: &WindowRules, threads: usize) -> Result<Fit> {
    let parts = plan.split.parts();
    let nf = plan.columns.features.len();
    let nt = plan.columns.targets.len();
    #[derive(Default, Clone)]
    struct Partial {
        features: Vec<RunningStats>,
        targets: Vec<RunningStats>,
        counts: WindowCounts,
    }
    let empty = || Partial {
        features: vec![RunningStats::default(); nf],
        targets: vec![RunningStats::default(); nt],
        counts: WindowCounts {
            windows: vec![0; parts],
            skipped: vec![SkipCounts::default(); parts],
            longest_series: 0,
        },
    };
    let work = |keys: &[usize]| -> Result<Partial> {
        let mut p = empty();
        let mut ends = Vec::new();
        for &entry in keys {
            let s: RawSeries = read_series(&plan.ds, entry, &plan.columns)?;
            p.counts.longest_series = p.counts.longest_series.max(s.rows());
            let train_rows = plan.end_rows(entry, &s.dates, Some(TRAIN));
            for (st, col) in p.features.iter_mut().zip(&s.features) {
                col[train_rows.clone()].iter().for_each(|v| st.push(*v));
            }
            for (st, col) in p.targets.iter_mut().zip(&s.targets) {
                col[train_rows.clone()].iter().for_each(|v| st.push(*v));
            }
            let flags = s.flags();
            for part in 0..parts {
                let rows = plan.end_rows(entry, &s.dates, Some(part));
                ends.clear();
                valid_ends(
                    rules,
                    &s.dates,
                    &flags,
                    rows,
                    &mut ends,
                    &mut p.counts.skipped[part],
                );
                p.counts.windows[part] += ends.len() as u64;
            }
        }
        Ok(p)
    };
    let keys = &plan.keys;
    let threads = threads.clamp(1, keys.len());
    let chunk = keys.len().div_ceil(threads);
    let partials: Vec<Result<Partial>> = std::thread::scope(|scope| {
        let handles: Vec<_> = keys
            .chunks(chunk)
            .map(|c| scope.spawn(move || work(c)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("fit worker panicked"))
            .collect()
    });
    let mut total = empty();
    for p in partials {
        let p = p?;
        total
            .features
            .iter_mut()
            .zip(&p.features)
            .for_each(|(a, b)| a.merge(b));
        total
            .targets
            .iter_mut()
            .zip(&p.targets)
            .for_each(|(a, b)| a.merge(b));
        for part in 0..parts {
            total.counts.windows[part] += p.counts.windows[part];
            total.counts.skipped[part].add(&p.counts.skipped[part]);
        }
        total.counts.longest_series = total.counts.longest_series.max(p.counts.longest_series);
    }
    let dir = plan.ds.dir();
    // A part with no rows at all is the clearest message; then columns
    // without values; then windows all skipped for some other reason.
    for part in [TRAIN, VAL] {
        if total.counts.windows[part] == 0 && total.counts.skipped[part].total() == 0 {
            return Err(TrainError::data(
                dir,
                no_windows_reason(&total.counts, part, rules.window),
            ));
        }
    }
    for (name, st) in plan.columns.targets.iter().zip(&total.targets) {
        if st.count == 0 {
            return Err(TrainError::data(
                dir,
                format!("target {name:?} has no observed value in the training part"),
            ));
        }
    }
    for (name, st) in plan.columns.features.iter().zip(&total.features) {
        if st.count == 0 {
            return Err(TrainError::data(
                dir,
                format!("feature {name:?} has no value in the training part"),
            ));
        }
    }
    for part in [TRAIN, VAL] {
        if total.counts.windows[part] == 0 {
            return Err(TrainError::data(
                dir,
                no_windows_reason(&total.counts, part, rules.window),
            ));
        }
    }
    let mut attribute_stats = vec![RunningStats::default(); plan.attribute_names.len()];
    for &entry in &plan.keys_of(Some(TRAIN)) {
        for (st, v) in attribute_stats.iter_mut().zip(&plan.raw_attributes[entry]) {
            st.push(*v);
        }
    }
    let scales = |names: &[String], stats: &[RunningStats]| -> Vec<ColumnScale> {
        names
            .iter()
            .zip(stats)
            .map(|(n, s)| ColumnScale::from_stats(n, s))
            .collect()
    };
    Ok(Fit {
        scaler: Scaler {
            features: scales(&plan.columns.features, &total.features),
            targets: scales(&plan.columns.targets, &total.targets),
            attributes: scales(&plan.attribute_names, &attribute_stats),
        },
        counts: total.counts,
    })
}

/// Explain why a part has no windows.
pub fn no_windows_reason(counts: &WindowCounts, part: usize, window: usize) -> String {
    let name = PART_NAMES[part];
    if counts.longest_series < window {
        return format!(
            "no {name} windows: the window ({window} steps) is longer than every series (the longest has {} rows)",
            counts.longest_series
        );
    }
    let s = &counts.skipped[part];
    if s.total() == 0 {
        return format!("no {name} windows: the {name} part holds no rows (check the split)");
    }
    format!(
        "no {name} windows: all {} candidates were skipped ({} missing target, {} missing input, {} date gap)",
        s.total(),
        s.missing_target,
        s.missing_input,
        s.date_gap
    )
}

/// Open `dataset` with the columns, attributes and split of `cfg`.
pub fn open_plan(dataset: &Path, cfg: &TrainConfig) -> Result<Plan> {
    let ds = KeyedDataset::open(dataset)?;
    let columns = ColumnSet {
        date: ds.manifest().date_column.clone(),
        features: cfg.features.clone(),
        targets: cfg.targets.clone(),
    };
    let table = match &cfg.attributes {
        Some(path) => {
            let key = cfg
                .attribute_key
                .clone()
                .unwrap_or_else(|| ds.manifest().key_column.clone());
            Some(AttributeTable::read(path, &key, &cfg.attribute_features)?)
        }
        None => None,
    };
    Plan::new(
        ds,
        columns,
        cfg.split.clone(),
        cfg.seed,
        table.as_ref().map(|t| (t, cfg.missing_attributes)),
    )
}

pub fn rules(cfg: &TrainConfig, need_target: bool) -> WindowRules {
    WindowRules {
        window: cfg.window,
        input_gaps: cfg.input_gaps,
        max_step: cfg.max_step,
        need_target,
    }
}

/// Threads for the loader's file reads: the cores libtorch leaves over,
/// at least one.
pub fn reader_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .div_ceil(2)
}
