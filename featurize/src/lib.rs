//! kiln-featurize: technical indicators per symbol from a kline keyed
//! dataset (kiln-preheat's cache, or any dataset with OHLCV columns) into a
//! feature cache that is always either fresh or recomputed. See
//! docs/FEATURIZE.md.
//!
//! * [`spec`] — the YAML feature spec and its hash.
//! * [`indicators`] — the formulas, as resumable state machines.
//! * [`source`] — reading and checking one symbol's klines.
//! * [`compute`] — one symbol's output rows, full or incremental.
//! * [`plan`] — fresh, unchanged, incremental or full, per symbol.
//! * [`cache`] — the output dataset, published atomically.
//! * [`manage`] — `info` and `clear`.

pub mod cache;
pub mod cli;
pub mod compute;
pub mod error;
pub mod indicators;
pub mod manage;
pub mod plan;
pub mod source;
pub mod spec;
pub mod summary;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln_contracts::dataset::{Codec, KeyFileWriter};
use kiln_contracts::manifest::Column;
use kiln_contracts::{ColumnType, FileFormat, KeyedDataset};
use rayon::prelude::*;

use crate::cache::{Cache, Identity, KeyState, ManifestSpec};
use crate::compute::{output_schema, Computed};
pub use crate::error::FeaturizeError;
use crate::plan::{Decision, Work};
use crate::spec::Spec;
use crate::summary::{FailedSymbol, Summary};

#[derive(Debug, Clone)]
pub struct FeaturizeOptions {
    pub input: PathBuf,
    pub out: PathBuf,
    pub spec: Spec,
    /// Only these symbols (`None`: all of the input).
    pub symbols: Option<Vec<String>>,
    pub limit: Option<usize>,
    /// Recompute features older than this; `None`: never expire.
    pub ttl: Option<Duration>,
    pub force: bool,
    pub jobs: usize,
    pub codec: Codec,
    pub progress: bool,
    /// The command line, for the manifest.
    pub command: Vec<String>,
}

/// Footer metadata keys of a feature file.
pub const META_SPEC_HASH: &str = "kiln.featurize.spec_hash";
pub const META_SOURCE_HASH: &str = "kiln.featurize.source_hash";
pub const META_STATE: &str = "kiln.featurize.state";

/// Check that the input can be featurized with `spec`: the five input
/// columns exist and are numeric, no feature name is already a column.
fn check_input(ds: &KeyedDataset, spec: &Spec) -> Result<(), FeaturizeError> {
    let m = ds.manifest();
    let inputs = &spec.inputs;
    for name in [
        &inputs.open,
        &inputs.high,
        &inputs.low,
        &inputs.close,
        &inputs.volume,
    ] {
        match m.column(name) {
            None => {
                return Err(FeaturizeError::input(
                    ds.dir(),
                    format!(
                        "has no column {name} (columns: {}); map it in the spec's inputs",
                        m.column_names().join(", ")
                    ),
                ))
            }
            Some(c) if !source::is_numeric(c.column_type) => {
                return Err(FeaturizeError::input(
                    ds.dir(),
                    format!("column {name} is {}, not numeric", c.column_type),
                ))
            }
            Some(_) => {}
        }
    }
    for c in spec.columns() {
        if m.column(&c).is_some() {
            return Err(FeaturizeError::input(
                ds.dir(),
                format!("already has a column {c}, which a feature of the spec would write"),
            ));
        }
    }
    Ok(())
}

fn absolute(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// What happened to one symbol of the work list.
enum Outcome {
    Written {
        state: KeyState,
        incremental: bool,
        reason: &'static str,
    },
    Unchanged(KeyState),
    Failed(String),
}

struct Context<'a> {
    input: &'a KeyedDataset,
    out: &'a Path,
    staging: &'a Path,
    spec: &'a Spec,
    spec_hash: &'a str,
    schema: arrow::datatypes::SchemaRef,
    writer: KeyFileWriter,
    now_us: i64,
}

impl Context<'_> {
    fn process(&self, work: &Work) -> Outcome {
        match self.try_process(work) {
            Ok(o) => o,
            Err(e) => Outcome::Failed(e),
        }
    }

    fn try_process(&self, work: &Work) -> Result<Outcome, String> {
        let entry = &work.source;
        let klines = source::load(self.input, entry, &self.spec.inputs)?;
        let cached = work.cached.as_ref();
        let prefix = cached.map_or(0, |c| c.source_rows as usize);
        let (prefix_hash, full_hash) = source::row_hashes(&klines.batch, prefix);
        let mut reason = match work.decision {
            Decision::Full(reason) => Some(reason),
            _ => None,
        };
        let mut resume = None;
        if let (None, Some(c)) = (reason, cached) {
            let same_prefix = prefix_hash.as_ref() == Some(&c.source_hash);
            if same_prefix && klines.rows() == prefix {
                let mut kept = c.clone();
                kept.source_fingerprint = work.fingerprint.clone();
                cache::link_kept(self.out, self.staging, &c.entry.file)
                    .map_err(|e| e.to_string())?;
                return Ok(Outcome::Unchanged(kept));
            }
            if same_prefix && klines.rows() > prefix {
                resume = plan::read_resume(&self.out.join(&c.entry.file), self.spec);
            }
            if resume.is_none() {
                reason = Some(if same_prefix {
                    "cached file unreadable"
                } else if !c.source_hash.starts_with(source::HASH_VERSION) {
                    "cached by an older kiln-featurize"
                } else {
                    "klines revised"
                });
            }
        }
        let computed = resume
            .as_ref()
            .and_then(|r| compute::compute(self.spec, &self.schema, &klines, Some(r)));
        let incremental = computed.is_some();
        let Computed { batch, state } = match computed {
            Some(c) => c,
            None => {
                reason.get_or_insert("saved state unusable");
                compute::compute(self.spec, &self.schema, &klines, None)
                    .ok_or_else(|| format!("{}: cannot assemble the output", entry.key))?
            }
        };
        let metadata = vec![
            (META_SPEC_HASH.to_owned(), self.spec_hash.to_owned()),
            (META_SOURCE_HASH.to_owned(), full_hash.clone()),
            (
                META_STATE.to_owned(),
                serde_json::to_string(&state).expect("state serializes"),
            ),
        ];
        let written = self
            .writer
            .write(self.staging, &entry.key, &batch, &metadata)
            .map_err(|e| e.to_string())?;
        let nulls = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(_, c)| c.null_count() > 0)
            .map(|(f, c)| (f.name().clone(), c.null_count() as u64))
            .collect();
        Ok(Outcome::Written {
            state: KeyState {
                entry: written,
                source_fingerprint: work.fingerprint.clone(),
                source_rows: klines.rows() as u64,
                source_hash: full_hash,
                spec_hash: self.spec_hash.to_owned(),
                computed_at_us: self.now_us,
                nulls,
            },
            incremental,
            reason: reason.unwrap_or("new days"),
        })
    }
}

/// Featurize the input into the cache. Symbols with bad klines are listed
/// in the summary's `failed` (and left out of the cache); other problems
/// are errors and leave the cache as it was.
pub fn run(opts: &FeaturizeOptions) -> Result<Summary, FeaturizeError> {
    let started = Instant::now();
    let input = KeyedDataset::open(&opts.input)
        .map_err(|e| FeaturizeError::input(&opts.input, e.to_string()))?;
    check_input(&input, &opts.spec)?;
    let spec_hash = opts.spec.hash();
    let cache = Cache::open(&opts.out)?;
    let identity = Identity {
        input: absolute(&opts.input),
        spec_hash: spec_hash.clone(),
        spec: serde_json::to_value(&opts.spec).expect("a spec serializes"),
    };
    if let Some(cached) = cache.identity() {
        if cached.input != identity.input {
            return Err(FeaturizeError::output(
                &opts.out,
                format!(
                    "holds features of {}, this run reads {}; run `kiln-featurize clear --out {}` first, or choose another --out",
                    cached.input,
                    identity.input,
                    opts.out.display()
                ),
            ));
        }
    }
    let schema = output_schema(&input.schema(), &opts.spec);
    let columns: Vec<Column> = schema
        .fields()
        .iter()
        .map(|f| Column {
            name: f.name().clone(),
            column_type: ColumnType::from_arrow(f.data_type()).expect("contract types"),
        })
        .collect();
    let same_layout = cache
        .dataset
        .as_ref()
        .is_some_and(|d| d.manifest().columns == columns);
    let now = now_us();
    let plan = plan::plan(&plan::PlanInput {
        input: &input,
        cached: &cache.keys,
        symbols: opts.symbols.as_deref(),
        limit: opts.limit,
        spec_hash: &spec_hash,
        same_layout,
        ttl: opts.ttl,
        force: opts.force,
        now_us: now,
    })?;

    if plan.work.is_empty() && plan.dropped.is_empty() && same_layout {
        // Everything is fresh: no staging copy, nothing published — but
        // what killed runs left beside the cache goes.
        kiln_contracts::atomic::clean_stale(&opts.out)?;
        let (rows, bytes) = cache::totals(&cache.keys);
        return Ok(Summary {
            input: opts.input.clone(),
            out: opts.out.clone(),
            spec_hash,
            features: opts.spec.columns().len() as u64,
            selected: plan.selected,
            skipped_fresh: plan.fresh,
            failed: missing_failures(&plan),
            symbols: cache.keys.len() as u64,
            rows,
            bytes,
            seconds: started.elapsed().as_secs_f64(),
            peak_rss_bytes: kiln_contracts::mem::peak_rss_bytes(),
            ..Default::default()
        });
    }
    let staging = cache::staging_copy(&opts.out)?;
    let mut keys: BTreeMap<String, KeyState> = BTreeMap::new();
    for state in &plan.keep {
        cache::link_kept(&opts.out, staging.path(), &state.entry.file)?;
        keys.insert(state.entry.key.clone(), state.clone());
    }
    let ctx = Context {
        input: &input,
        out: &opts.out,
        staging: staging.path(),
        spec: &opts.spec,
        spec_hash: &spec_hash,
        schema,
        writer: KeyFileWriter::new(
            FileFormat::Parquet,
            opts.codec,
            &input.manifest().key_column,
            &input.manifest().date_column,
            input.manifest().date_type(),
            false,
        )
        .with_direct_io(),
        now_us: now,
    };
    let bar = progress_bar(opts.progress, plan.work.len() as u64);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .build()
        .map_err(|e| FeaturizeError::Usage(format!("--jobs: {e}")))?;
    let outcomes: Vec<Outcome> = pool.install(|| {
        plan.work
            .par_iter()
            .map(|w| {
                let o = ctx.process(w);
                bar.inc(1);
                o
            })
            .collect()
    });
    bar.finish_and_clear();
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        symbols = plan.work.len(),
        "computed and written"
    );

    let mut summary = Summary {
        input: opts.input.clone(),
        out: opts.out.clone(),
        spec_hash: spec_hash.clone(),
        features: opts.spec.columns().len() as u64,
        selected: plan.selected,
        skipped_fresh: plan.fresh,
        dropped: plan.dropped.clone(),
        failed: missing_failures(&plan),
        ..Default::default()
    };
    for (work, outcome) in plan.work.iter().zip(outcomes) {
        match outcome {
            Outcome::Written {
                state,
                incremental,
                reason,
            } => {
                if incremental {
                    summary.computed_incremental += 1;
                } else {
                    summary.computed_full += 1;
                    *summary.full_reasons.entry(reason.to_owned()).or_default() += 1;
                }
                summary.rows_computed += state.entry.rows;
                summary.files_written += 1;
                summary.bytes_written += state.entry.bytes;
                keys.insert(state.entry.key.clone(), state);
            }
            Outcome::Unchanged(state) => {
                summary.unchanged += 1;
                keys.insert(state.entry.key.clone(), state);
            }
            Outcome::Failed(error) => summary.failed.push(FailedSymbol {
                symbol: work.source.key.clone(),
                error,
            }),
        }
    }
    let changed = summary.files_written > 0
        || summary.unchanged > 0
        || !summary.dropped.is_empty()
        || summary
            .failed
            .iter()
            .any(|f| cache.keys.contains_key(&f.symbol))
        || cache.dataset.is_none()
        || !same_layout;
    if changed {
        let spec = ManifestSpec {
            columns,
            key_column: input.manifest().key_column.clone(),
            date_column: input.manifest().date_column.clone(),
            date_type: input.manifest().date_type(),
            identity,
            command: opts.command.clone(),
        };
        cache::publish(staging, &opts.out, &keys, &spec)?;
        tracing::info!(seconds = started.elapsed().as_secs_f64(), "published");
    }
    let (rows, bytes) = cache::totals(&keys);
    summary.symbols = keys.len() as u64;
    summary.rows = rows;
    summary.bytes = bytes;
    summary.seconds = started.elapsed().as_secs_f64();
    summary.peak_rss_bytes = kiln_contracts::mem::peak_rss_bytes();
    tracing::info!(
        computed = summary.computed_full + summary.computed_incremental,
        seconds = summary.seconds,
        "featurize finished"
    );
    Ok(summary)
}

/// Symbols asked for by name that the input does not have.
fn missing_failures(plan: &plan::Plan) -> Vec<FailedSymbol> {
    plan.missing
        .iter()
        .map(|s| FailedSymbol {
            symbol: s.clone(),
            error: "not in the input dataset".into(),
        })
        .collect()
}

fn progress_bar(on: bool, len: u64) -> indicatif::ProgressBar {
    if !on {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} featurizing [{bar:30}] {pos}/{len} symbols {per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}
