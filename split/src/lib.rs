//! kiln-split: one huge keyed table (CSV, `.csv.gz` or parquet) into a keyed
//! dataset — one file per key plus `_index.parquet` and `_dataset.json` — in
//! bounded memory, whatever the row order and the number of keys.
//!
//! Two passes over an external partition:
//! 1. [`partition`]: read the input once, parse and check every row on all
//!    cores, append rows to key-hash buckets spilled to disk;
//! 2. [`assemble`]: per bucket, sort by (key, date, input line), resolve
//!    duplicate dates, write one file per key.
//!
//! Everything is built in a staging directory published by one rename, so a
//! killed run leaves the previous output or none.

pub mod assemble;
pub mod cli;
pub mod encode;
pub mod error;
pub mod input;
pub mod partition;
pub mod schema;
pub mod spill;
pub mod summary;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_contracts::atomic::{BackgroundSync, StagingDir};
use kiln_contracts::dataset::{Codec, KeyFileWriter};
use kiln_contracts::manifest::{self, Column, Producer, Statistics};
use kiln_contracts::{dates, index, ColumnType, FileFormat, Manifest};

pub use assemble::Duplicates;
pub use encode::UnsafeKeys;
pub use error::SplitError;
pub use summary::Summary;

use crate::encode::EncodeRules;
use crate::input::{CsvSource, InputKind, ParquetSource};
use crate::partition::{Chunk, Source};
use crate::schema::TypeOptions;

/// Everything a split needs to know; [`cli::Args`] builds one from the command line.
#[derive(Debug, Clone)]
pub struct SplitOptions {
    pub input: PathBuf,
    pub out: PathBuf,
    pub types: TypeOptions,
    pub format: FileFormat,
    pub codec: Codec,
    pub delimiter: u8,
    pub duplicates: Duplicates,
    pub start: Option<String>,
    pub end: Option<String>,
    pub skip_bad_rows: bool,
    pub unsafe_keys: UnsafeKeys,
    pub memory_budget: u64,
    /// How the budget was chosen (`--memory`, default, or memory pressure).
    pub memory_budget_reason: String,
    pub workers: usize,
    pub force: bool,
    pub tmp_dir: Option<PathBuf>,
    pub progress: bool,
    /// Force the number of buckets (tests use it to exercise re-splitting).
    pub buckets: Option<usize>,
    /// Force the largest bucket loaded whole (tests: exercise re-splitting).
    pub bucket_limit: Option<u64>,
    /// The command line, recorded in the manifest.
    pub command: Vec<String>,
}

/// Sizes derived from the memory budget. See docs/SPLIT.md for the model.
#[derive(Debug, Clone, Copy)]
pub struct MemoryPlan {
    pub chunk_size: usize,
    pub buffer_cap: usize,
    pub block_size: usize,
    pub bucket_limit: u64,
    pub buckets: usize,
}

/// Memory the binary, allocator slack, thread stacks and the index take
/// whatever the input.
const RESERVED: u64 = 40 << 20;

impl MemoryPlan {
    pub fn new(budget: u64, workers: usize, estimated_spill: u64) -> Self {
        let usable = budget.saturating_sub(RESERVED).max(16 << 20);
        let chunk_size = (usable / 48).clamp(1 << 20, 8 << 20) as usize;
        let buffer_cap = (usable / 12 / workers as u64).clamp(1 << 20, 64 << 20) as usize;
        // Pass 2 holds one bucket per worker plus ~40 % for its sort keys,
        // key arrays and the encoder's buffers (measured: see bench/RESULTS.md).
        let bucket_limit = (usable / workers as u64 / 2).max(4 << 20);
        // Aim the mean bucket at a third of the limit: hashing spreads keys
        // unevenly, and small buckets balance the workers at the end.
        let buckets = estimated_spill
            .div_ceil(bucket_limit / 3)
            .clamp(workers as u64 * 4, 1 << 16) as usize;
        Self {
            chunk_size,
            buffer_cap,
            block_size: 256 << 10,
            bucket_limit,
            buckets,
        }
    }
}

fn parse_bound(
    value: &Option<String>,
    ty: ColumnType,
    flag: &str,
) -> Result<Option<i64>, SplitError> {
    let Some(v) = value else { return Ok(None) };
    let parsed = match ty {
        ColumnType::TimestampUs => dates::parse_timestamp_us(v.as_bytes()),
        _ => dates::parse_date(v.as_bytes()).map(i64::from),
    };
    parsed
        .map(Some)
        .ok_or_else(|| SplitError::Usage(format!("{flag} {v}: not a date (expected YYYY-MM-DD)")))
}

fn progress_bar(enabled: bool, len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Rows sampled for type inference (at most; the first chunk bounds it too).
const SAMPLE_ROWS: usize = 100_000;

/// Split `opts.input` into a keyed dataset at `opts.out`.
pub fn run(opts: &SplitOptions) -> Result<Summary, SplitError> {
    let started = Instant::now();
    if opts.workers == 0 {
        return Err(SplitError::Usage("--threads must be at least 1".into()));
    }
    if opts.out.exists() && !opts.force {
        return Err(kiln_contracts::ContractError::OutputExists {
            path: opts.out.clone(),
        }
        .into());
    }
    if opts.out.exists() {
        kiln_contracts::atomic::ensure_replaceable(&opts.out)?;
    }
    let kind = input::detect(&opts.input)?;
    let input_bytes = std::fs::metadata(&opts.input).map(|m| m.len()).unwrap_or(0);
    let bytes_read = Arc::new(AtomicU64::new(0));

    // Open the input and decide the columns' types.
    let (source, first, plan) = match kind {
        InputKind::Csv | InputKind::CsvGz => {
            let probe_chunk = MemoryPlan::new(opts.memory_budget, opts.workers, 0).chunk_size;
            let (header, mut src) = CsvSource::open(
                &opts.input,
                kind,
                opts.delimiter,
                probe_chunk,
                bytes_read.clone(),
            )?;
            let first = src.next_chunk()?;
            let mut sample = Vec::new();
            if let Some(c) = &first {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .delimiter(opts.delimiter)
                    .from_reader(&c.data[..]);
                for rec in reader.byte_records().take(SAMPLE_ROWS) {
                    match rec {
                        Ok(r) => sample.push(r),
                        Err(_) => break, // pass 1 reports it with its line
                    }
                }
            }
            let plan = schema::infer_csv(&header, sample.iter(), &opts.types).map_err(|m| {
                SplitError::BadFile {
                    path: opts.input.clone(),
                    message: m,
                }
            })?;
            if first.is_none() {
                return Err(SplitError::BadFile {
                    path: opts.input.clone(),
                    message: "no data rows after the header".into(),
                });
            }
            (Source::Csv(src), first.map(Chunk::Csv), plan)
        }
        InputKind::Parquet => {
            let src = ParquetSource::open(&opts.input, 8192)?;
            let plan =
                schema::plan(&src.header, src.natural.clone(), 0, &opts.types).map_err(|m| {
                    SplitError::BadFile {
                        path: opts.input.clone(),
                        message: m,
                    }
                })?;
            if src.rows == 0 {
                return Err(SplitError::BadFile {
                    path: opts.input.clone(),
                    message: "no data rows".into(),
                });
            }
            (Source::Parquet(src), None, plan)
        }
    };
    let rules = EncodeRules {
        start: parse_bound(&opts.start, plan.date_type(), "--start")?,
        end: parse_bound(&opts.end, plan.date_type(), "--end")?,
        unsafe_keys: opts.unsafe_keys,
    };
    tracing::info!(
        columns = plan.columns.len(),
        sample_rows = plan.sample_rows,
        "types: {}",
        plan.columns
            .iter()
            .map(|c| format!("{}={}", c.name, c.ty))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let estimated_spill = match kind {
        _ if opts.input.as_os_str() == "-" => 64 << 30,
        InputKind::Csv => input_bytes,
        InputKind::CsvGz => input_bytes * 5,
        InputKind::Parquet => input_bytes * 3,
    };
    let mut mem = MemoryPlan::new(opts.memory_budget, opts.workers, estimated_spill);
    if let Some(b) = opts.buckets {
        mem.buckets = b.max(1);
    }
    if let Some(l) = opts.bucket_limit {
        mem.bucket_limit = l.max(1);
    }
    tracing::info!(?mem, "memory plan");

    let mut staging = StagingDir::create(&opts.out)?;
    staging.set_files_synced(true);
    if staging.stale_removed() > 0 {
        tracing::warn!(
            "removed {} staging dir(s) left by a killed run",
            staging.stale_removed()
        );
    }
    let spill_guard = SpillDir::create(match &opts.tmp_dir {
        Some(dir) => dir.as_path(),
        None => staging.path(),
    })?;
    let spill_dir = spill_guard.path();

    // Pass 1.
    let bar = progress_bar(
        opts.progress,
        input_bytes,
        "{spinner} reading   [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    );
    let pass_one = partition::run(
        source,
        first,
        &partition::PassOneConfig {
            input: &opts.input,
            plan: &plan,
            rules: &rules,
            delimiter: opts.delimiter,
            buckets: mem.buckets,
            workers: opts.workers,
            spill_dir,
            block_size: mem.block_size,
            buffer_cap: mem.buffer_cap,
            skip_bad_rows: opts.skip_bad_rows,
            progress: &bar,
            bytes_read: &bytes_read,
        },
    )?;
    bar.finish_and_clear();
    let stats = pass_one.stats;
    tracing::info!(
        rows = stats.rows,
        spill_bytes = pass_one.spill.total_bytes(),
        "pass 1 done"
    );
    if stats.rows == 0 {
        let why = if stats.filtered > 0 {
            format!(
                "no rows left after the date filter ({} filtered out)",
                stats.filtered
            )
        } else {
            format!("no valid rows ({} rejected)", stats.rejected)
        };
        return Err(SplitError::BadFile {
            path: opts.input.clone(),
            message: why,
        });
    }

    // Pass 2. Files are fsynced in the background as they are written.
    let syncer = BackgroundSync::start();
    let writer = KeyFileWriter::new(
        opts.format,
        opts.codec,
        plan.key_name(),
        plan.date_name(),
        plan.date_type(),
        false,
    )
    .with_sync_queue(syncer.queue());
    let bar = progress_bar(
        opts.progress,
        pass_one.spill.buckets() as u64,
        "{spinner} writing   [{bar:30}] {pos}/{len} buckets eta {eta}",
    );
    let assembled = assemble::run(
        &pass_one.spill,
        &assemble::AssembleConfig {
            input: &opts.input,
            plan: &plan,
            out_dir: staging.path(),
            spill_dir,
            writer: &writer,
            duplicates: opts.duplicates,
            workers: opts.workers,
            bucket_limit: mem.bucket_limit,
            progress: &bar,
        },
    )?;
    bar.finish_and_clear();
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        peak_rss = kiln_contracts::mem::peak_rss_bytes(),
        "pass 2 done"
    );
    drop(writer);
    syncer.finish()?;
    let spill_bytes = pass_one.spill.total_bytes();
    pass_one.spill.remove_files();

    let rejects_file = if pass_one.rejects.is_empty() {
        None
    } else {
        partition::merge_rejects(&pass_one.rejects, &staging.path().join("_rejects.csv"))?;
        Some(opts.out.join("_rejects.csv"))
    };
    for p in &pass_one.rejects {
        let _ = std::fs::remove_file(p);
    }
    drop(spill_guard);

    let mut entries = assembled.entries;
    let output_bytes: u64 = entries.iter().map(|e| e.bytes).sum();
    let format_date = |v: i64| dates::format_value(v, plan.date_type());
    let first_date = entries.iter().map(|e| e.first_date).min().map(format_date);
    let last_date = entries.iter().map(|e| e.last_date).max().map(format_date);
    let null_counts: BTreeMap<String, u64> = plan
        .columns
        .iter()
        .zip(&assembled.null_counts)
        .filter(|(_, &n)| n > 0)
        .map(|(c, &n)| (c.name.clone(), n))
        .collect();
    let keys = entries.len() as u64;
    index::write_index(staging.path(), &mut entries, plan.date_type())?;
    let mut extra = serde_json::Map::new();
    extra.insert("source".into(), opts.input.display().to_string().into());
    extra.insert("source_bytes".into(), input_bytes.into());
    extra.insert("rejected_rows".into(), stats.rejected.into());
    extra.insert("filtered_rows".into(), stats.filtered.into());
    extra.insert(
        "duplicates_dropped".into(),
        assembled.duplicates_dropped.into(),
    );
    let manifest = Manifest {
        format: manifest::FORMAT_NAME.into(),
        format_version: manifest::FORMAT_VERSION,
        producer: Producer {
            name: "kiln-split".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            command: opts.command.clone(),
        },
        created_at: manifest::now_rfc3339(),
        key_column: plan.key_name().into(),
        date_column: plan.date_name().into(),
        file_format: opts.format,
        columns: plan
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                column_type: c.ty,
            })
            .collect(),
        statistics: Statistics {
            keys,
            rows: assembled.rows,
            bytes: output_bytes,
            first_date: first_date.clone(),
            last_date: last_date.clone(),
            null_counts,
        },
        extra,
    };
    manifest.write(staging.path())?;
    staging.publish(opts.force)?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "published");

    let rows = assembled.rows;
    Ok(Summary {
        input: opts.input.clone(),
        output: opts.out.clone(),
        format: opts.format.extension().into(),
        keys,
        rows,
        rejected_rows: stats.rejected,
        filtered_rows: stats.filtered,
        duplicates_dropped: assembled.duplicates_dropped,
        input_bytes,
        output_bytes,
        compression_ratio: if output_bytes > 0 {
            input_bytes as f64 / output_bytes as f64
        } else {
            0.0
        },
        avg_rows_per_key: if keys > 0 {
            rows as f64 / keys as f64
        } else {
            0.0
        },
        first_date,
        last_date,
        elapsed_seconds: started.elapsed().as_secs_f64(),
        peak_rss_bytes: kiln_contracts::mem::peak_rss_bytes(),
        memory_budget_bytes: opts.memory_budget,
        memory_budget_reason: opts.memory_budget_reason.clone(),
        workers: opts.workers,
        buckets: mem.buckets,
        resplit_buckets: assembled.resplit_buckets,
        spill_bytes,
        rejects_file,
    })
}

/// The spill directory: inside the staging directory by default, or under
/// `--tmp-dir`; removed when dropped, whether the run succeeded or not.
struct SpillDir(PathBuf);

impl SpillDir {
    fn create(parent: &Path) -> Result<Self, SplitError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = parent.join(format!(
            ".kiln-split-spill.{}.{nanos:x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| SplitError::io(&dir, e))?;
        Ok(Self(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
