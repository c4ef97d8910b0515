//! `kiln-train eval` and `kiln-train predict`: a trained run applied to a
//! keyed dataset (the one it trained on, or new keys / new dates).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use kiln_contracts::ColumnType;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use crate::config::{DeviceChoice, TrainConfig};
use crate::error::{Result, TrainError};
use crate::loader::LoaderOptions;
use crate::metrics::{Agreement, Scores};
use crate::model::BranchLstm;
use crate::plan::{self, Plan, PART_NAMES};
use crate::rundir::{load_tensors, RunDir, TrainState};
use crate::scaler::Scaler;
use crate::session::{self, predict_windows};
use crate::windows::SkipCounts;

/// Which windows of the dataset to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Subset {
    All,
    Train,
    Val,
    Test,
}

impl Subset {
    fn name(self) -> &'static str {
        self.part().map_or("all", |p| PART_NAMES[p])
    }

    fn part(self) -> Option<usize> {
        match self {
            Subset::All => None,
            Subset::Train => Some(0),
            Subset::Val => Some(1),
            Subset::Test => Some(2),
        }
    }
}

pub struct ApplyOptions {
    pub run: PathBuf,
    pub dataset: PathBuf,
    pub subset: Subset,
    /// Output file (eval CSV or predictions parquet).
    pub out: Option<PathBuf>,
    /// Use this attributes table instead of the run's.
    pub attributes: Option<PathBuf>,
    pub device: Option<DeviceChoice>,
    pub batch_size: Option<usize>,
}

/// A run loaded for inference.
struct Loaded {
    cfg: TrainConfig,
    plan: Arc<Plan>,
    scaler: Arc<Scaler>,
    model: BranchLstm,
}

fn load(opts: &ApplyOptions) -> Result<Loaded> {
    let run = RunDir::new(&opts.run);
    let mut cfg = TrainConfig::read(&run.require(run.config())?)?;
    if let Some(a) = &opts.attributes {
        cfg.attributes = Some(a.clone());
    }
    if let Some(d) = opts.device {
        cfg.device = d;
    }
    if let Some(b) = opts.batch_size {
        cfg.batch_size = b;
    }
    let scaler = Arc::new(Scaler::read(&run.require(run.scaler())?)?);
    let state = TrainState::read(&run.require(run.state())?)?;
    let device = session::select_device(cfg.device)?;
    let plan = Arc::new(plan::open_plan(&opts.dataset, &cfg)?);
    if let Some(p) = opts.subset.part() {
        if p >= plan.split.parts() {
            return Err(TrainError::Config(format!(
                "the run's split {} has no {} part",
                plan.split, PART_NAMES[p]
            )));
        }
    }
    let mut model = BranchLstm::new(state.model, device);
    let weights = run.require(run.model())?;
    model.load_tensors(&load_tensors(&weights)?, &weights)?;
    Ok(Loaded {
        cfg,
        plan,
        scaler,
        model,
    })
}

fn loader_options(l: &Loaded, subset: Subset, need_target: bool) -> LoaderOptions {
    LoaderOptions {
        part: subset.part(),
        rules: plan::rules(&l.cfg, need_target),
        keys_per_load: l.cfg.keys_per_load,
        batch_size: l.cfg.batch_size.max(1024),
        shuffle_seed: None,
        readers: plan::reader_threads(),
        with_refs: true,
    }
}

#[derive(Debug, Serialize)]
pub struct TargetScores {
    pub target: String,
    #[serde(flatten)]
    pub scores: Scores,
}

#[derive(Debug, Serialize)]
pub struct EvalSummary {
    pub run: PathBuf,
    pub dataset: PathBuf,
    pub subset: String,
    pub keys: usize,
    pub windows: u64,
    pub skipped: SkipCounts,
    /// Pooled over every window of every key.
    pub overall: Vec<TargetScores>,
    /// Median over keys of the per-key NSE (keys with a defined NSE).
    pub median_key_nse: Vec<f64>,
    pub out: PathBuf,
}

impl EvalSummary {
    pub fn human(&self) -> String {
        let mut s = format!(
            "kiln-train eval: {} keys, {} windows ({} subset, {} skipped)\n",
            self.keys,
            self.windows,
            self.subset,
            self.skipped.total()
        );
        for (t, median) in self.overall.iter().zip(&self.median_key_nse) {
            s += &format!(
                "  {}: NSE {:.3}  KGE {:.3}  RMSE {:.4}  MAE {:.4}  (n {}; median per-key NSE {:.3})\n",
                t.target, t.scores.nse, t.scores.kge, t.scores.rmse, t.scores.mae, t.scores.n, median
            );
        }
        s + &format!("  per key: {}\n", self.out.display())
    }
}

pub fn eval(opts: &ApplyOptions) -> Result<EvalSummary> {
    let l = load(opts)?;
    let k = l.scaler.targets.len();
    let mut per_key: BTreeMap<u32, Vec<Agreement>> = BTreeMap::new();
    let mut windows = 0u64;
    let skipped = predict_windows(
        &l.model,
        &l.plan,
        &l.scaler,
        loader_options(&l, opts.subset, true),
        |mb, pred| {
            windows += mb.size as u64;
            for (w, r) in mb.refs.iter().enumerate() {
                let acc = per_key
                    .entry(r.entry)
                    .or_insert_with(|| vec![Agreement::default(); k]);
                for (t, s) in l.scaler.targets.iter().enumerate() {
                    let obs = mb.observed[w * k + t];
                    if !obs.is_nan() {
                        acc[t].push(obs, s.unscale(f64::from(pred[w * k + t])));
                    }
                }
            }
        },
    )?;
    if windows == 0 {
        return Err(TrainError::data(
            &opts.dataset,
            format!(
                "no {} windows with an observed target to evaluate",
                opts.subset.name()
            ),
        ));
    }
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| opts.run.join("eval.csv"));
    let mut overall = vec![Agreement::default(); k];
    let mut nse_by_target: Vec<Vec<f64>> = vec![Vec::new(); k];
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| TrainError::Internal(format!("eval csv: {e}"));
    w.write_record(["key", "target", "n", "nse", "kge", "rmse", "mae"])
        .map_err(csv_err)?;
    let entries = l.plan.ds.entries();
    for (entry, accs) in &per_key {
        for (t, acc) in accs.iter().enumerate() {
            overall[t].merge(acc);
            let s = acc.scores();
            if s.n == 0 {
                continue;
            }
            if s.nse.is_finite() {
                nse_by_target[t].push(s.nse);
            }
            let f = |x: f64| {
                if x.is_finite() {
                    format!("{x:.6}")
                } else {
                    String::new()
                }
            };
            w.write_record([
                entries[*entry as usize].key.clone(),
                l.scaler.targets[t].name.clone(),
                s.n.to_string(),
                f(s.nse),
                f(s.kge),
                f(s.rmse),
                f(s.mae),
            ])
            .map_err(csv_err)?;
        }
    }
    let bytes = w
        .into_inner()
        .map_err(|e| TrainError::Internal(format!("eval csv: {e}")))?;
    kiln_contracts::atomic::write_atomic(&out, &bytes)?;
    Ok(EvalSummary {
        run: opts.run.clone(),
        dataset: opts.dataset.clone(),
        subset: opts.subset.name().into(),
        keys: per_key.len(),
        windows,
        skipped,
        overall: overall
            .iter()
            .zip(&l.scaler.targets)
            .map(|(a, s)| TargetScores {
                target: s.name.clone(),
                scores: a.scores(),
            })
            .collect(),
        median_key_nse: nse_by_target.into_iter().map(median).collect(),
        out,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[derive(Debug, Serialize)]
pub struct PredictSummary {
    pub run: PathBuf,
    pub dataset: PathBuf,
    pub subset: String,
    pub keys: usize,
    pub rows: u64,
    pub skipped: SkipCounts,
    pub out: PathBuf,
}

impl PredictSummary {
    pub fn human(&self) -> String {
        format!(
            "kiln-train predict: {} rows for {} keys ({} subset; {} windows skipped) -> {}\n",
            self.rows,
            self.keys,
            self.subset,
            self.skipped.total(),
            self.out.display()
        )
    }
}

/// Column names: `prediction`/`observed` for one target, else
/// `<target>_prediction`/`<target>_observed`.
pub fn prediction_columns(targets: &[String]) -> Vec<(String, String)> {
    if targets.len() == 1 {
        return vec![("prediction".into(), "observed".into())];
    }
    targets
        .iter()
        .map(|t| (format!("{t}_prediction"), format!("{t}_observed")))
        .collect()
}

pub fn predict(opts: &ApplyOptions) -> Result<PredictSummary> {
    let l = load(opts)?;
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| opts.run.join("predictions.parquet"));
    let k = l.scaler.targets.len();
    let key_col = l.plan.ds.manifest().key_column.clone();
    let date_col = l.plan.ds.manifest().date_column.clone();
    let date_type = match l.plan.date_type {
        ColumnType::TimestampUs => DataType::Timestamp(TimeUnit::Microsecond, None),
        _ => DataType::Date32,
    };
    let mut fields = vec![
        Field::new(&key_col, DataType::Utf8, false),
        Field::new(&date_col, date_type.clone(), false),
    ];
    for (p, o) in prediction_columns(&l.cfg.targets) {
        fields.push(Field::new(p, DataType::Float64, false));
        fields.push(Field::new(o, DataType::Float64, true));
    }
    let schema = Arc::new(Schema::new(fields));
    let mut file = kiln_contracts::atomic::AtomicFile::create(&out)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(file.take_file(), schema.clone(), Some(props))
        .map_err(|e| TrainError::Internal(format!("{}: {e}", out.display())))?;
    let entries = l.plan.ds.entries();
    let mut rows = 0u64;
    let mut keys = std::collections::HashSet::new();
    let mut failure: Option<TrainError> = None;
    let skipped = predict_windows(
        &l.model,
        &l.plan,
        &l.scaler,
        loader_options(&l, opts.subset, false),
        |mb, pred| {
            if failure.is_some() {
                return;
            }
            let key: StringArray = mb
                .refs
                .iter()
                .map(|r| Some(entries[r.entry as usize].key.as_str()))
                .collect();
            let date: ArrayRef = match date_type {
                DataType::Date32 => Arc::new(Date32Array::from_iter_values(
                    mb.refs.iter().map(|r| r.date as i32),
                )),
                _ => Arc::new(TimestampMicrosecondArray::from_iter_values(
                    mb.refs.iter().map(|r| r.date),
                )),
            };
            let mut columns: Vec<ArrayRef> = vec![Arc::new(key), date];
            for (t, s) in l.scaler.targets.iter().enumerate() {
                let p: Float64Array = (0..mb.size)
                    .map(|w| Some(s.unscale(f64::from(pred[w * k + t]))))
                    .collect();
                let o: Float64Array = (0..mb.size)
                    .map(|w| {
                        let v = mb.observed[w * k + t];
                        (!v.is_nan()).then_some(v)
                    })
                    .collect();
                columns.push(Arc::new(p));
                columns.push(Arc::new(o));
            }
            keys.extend(mb.refs.iter().map(|r| r.entry));
            rows += mb.size as u64;
            let result = RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| e.to_string())
                .and_then(|b| writer.write(&b).map_err(|e| e.to_string()));
            if let Err(e) = result {
                failure = Some(TrainError::Internal(format!("{}: {e}", out.display())));
            }
        },
    )?;
    if let Some(e) = failure {
        return Err(e);
    }
    let inner = writer
        .into_inner()
        .map_err(|e| TrainError::Internal(format!("{}: {e}", out.display())))?;
    file.commit_file(inner)?;
    Ok(PredictSummary {
        run: opts.run.clone(),
        dataset: opts.dataset.clone(),
        subset: opts.subset.name().into(),
        keys: keys.len(),
        rows,
        skipped,
        out,
    })
}
