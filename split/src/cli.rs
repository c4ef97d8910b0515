//! The command line, parsed by clap into [`crate::SplitOptions`].

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use kiln_contracts::dataset::Codec;
use kiln_contracts::mem::human_bytes;
use kiln_contracts::FileFormat;

use crate::schema::{parse_type_overrides, TypeOptions};
use crate::{Duplicates, SplitError, SplitOptions, UnsafeKeys};

const AFTER_HELP: &str = "\
Examples:
  kiln-split daily.csv --key COMID --date date --out data/split
  kiln-split daily.csv.gz --key COMID --date date --out data/split --float32 --memory 512MiB
  kiln-split export.parquet --key gauge_id --date time --out gauges --start 2000-01-01 --end 2019-12-31
  kiln-split dirty.csv --key COMID --date date --out split --bad-rows skip --duplicates keep-last
  zcat daily.csv.gz | kiln-split - --key COMID --date date --out split --json > summary.json

Output: DIR/<key>.parquet per key, DIR/_index.parquet, DIR/_dataset.json (docs/CONTRACTS.md).
Exit status: 0 ok, 1 failure (I/O…), 2 bad usage, 3 bad input data, 4 output exists.";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Parquet,
    Csv,
    /// Arrow IPC file (Feather v2)
    #[value(alias = "feather")]
    Arrow,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DuplicatesArg {
    Error,
    KeepFirst,
    KeepLast,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BadRowsArg {
    /// Stop at the first bad row, writing nothing
    Error,
    /// Count bad rows, write them to DIR/_rejects.csv, keep the rest
    Skip,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum UnsafeKeysArg {
    /// Store keys that are not safe file names under a reversible escaped name
    Encode,
    /// Treat such a key as bad input
    Error,
}

/// Split one huge keyed table into one file per key, in bounded memory.
#[derive(Debug, Parser)]
#[command(name = "kiln-split", version, after_help = AFTER_HELP)]
pub struct Args {
    /// Input table: .csv, .csv.gz or .parquet; `-` reads CSV from stdin
    pub input: PathBuf,

    /// Column holding the key (stored as string, exactly as written)
    #[arg(long)]
    pub key: String,

    /// Column holding the date (or date-time)
    #[arg(long)]
    pub date: String,

    /// Output directory (must not exist unless --force)
    #[arg(long, short)]
    pub out: PathBuf,

    /// File format of each key's file
    #[arg(long, value_enum, default_value = "parquet")]
    pub format: FormatArg,

    /// Parquet compression: snappy, zstd, zstd:LEVEL, lz4 or none
    #[arg(long, default_value = "snappy", value_parser = parse_codec)]
    pub compression: Codec,

    /// Store float columns as float32 (half the bytes; what the LSTM uses anyway)
    #[arg(long)]
    pub float32: bool,

    /// Column type override, COL=TYPE (float64, float32, int64, date, timestamp, string); repeatable
    #[arg(long = "type", value_name = "COL=TYPE")]
    pub types: Vec<String>,

    /// CSV field delimiter (one byte; `\t` for tab)
    #[arg(long, default_value = ",")]
    pub delimiter: String,

    /// Two rows with the same key and date
    #[arg(long, value_enum, default_value = "error")]
    pub duplicates: DuplicatesArg,

    /// Keep only rows on or after this date
    #[arg(long)]
    pub start: Option<String>,

    /// Keep only rows on or before this date
    #[arg(long)]
    pub end: Option<String>,

    /// What to do with a row that cannot be parsed
    #[arg(long, value_enum, default_value = "error")]
    pub bad_rows: BadRowsArg,

    /// What to do with a key that is not a safe file name (`../x`, `a/b`)
    #[arg(long, value_enum, default_value = "encode")]
    pub unsafe_keys: UnsafeKeysArg,

    /// Peak memory budget (e.g. 256MiB, 1GiB) [default: 256MiB, less when
    /// memory is short: half the available memory, 3/4 of a cgroup or
    /// kiln-monitor limit, at least 64MiB]
    #[arg(long, value_parser = parse_bytes)]
    pub memory: Option<u64>,

    /// Worker threads (default: all cores)
    #[arg(long)]
    pub threads: Option<usize>,

    /// Replace DIR if it exists (only if it is a Kiln dataset or empty)
    #[arg(long)]
    pub force: bool,

    /// Where to spill intermediate data (default: inside the staging dir next to DIR)
    #[arg(long)]
    pub tmp_dir: Option<PathBuf>,

    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,

    /// More logs on stderr (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// No summary and no progress bar on stderr
    #[arg(short, long)]
    pub quiet: bool,

    /// Number of hash buckets (default: derived from --memory and the input size)
    #[arg(long, hide = true)]
    pub buckets: Option<usize>,

    /// Largest bucket in bytes loaded whole (default: derived from --memory)
    #[arg(long, hide = true)]
    pub bucket_limit: Option<u64>,
}

fn parse_codec(s: &str) -> Result<Codec, String> {
    Codec::parse(s)
        .ok_or_else(|| format!("unknown compression '{s}' (snappy, zstd, zstd:1..22, lz4, none)"))
}

/// `--memory` when memory is plentiful.
const DEFAULT_MEMORY: u64 = 256 << 20;
/// The least the default shrinks to under pressure: below this the chunks
/// get so small that throughput collapses (an explicit `--memory` may go to
/// 16 MiB).
const MIN_ADAPTIVE_MEMORY: u64 = 64 << 20;

pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let v = parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|e| format!("'{s}': {e} (use e.g. 256MiB or 1GiB)"))?;
    if v < (16 << 20) {
        return Err(format!("'{s}' is below the 16 MiB minimum"));
    }
    Ok(v)
}

fn parse_delimiter(s: &str) -> Result<u8, SplitError> {
    match s {
        "\\t" | "tab" => Ok(b'\t'),
        _ if s.len() == 1 => Ok(s.as_bytes()[0]),
        _ => Err(SplitError::Usage(format!(
            "--delimiter '{s}': must be a single byte (or \\t)"
        ))),
    }
}

impl Args {
    pub fn into_options(
        self,
        progress: bool,
        command: Vec<String>,
    ) -> Result<SplitOptions, SplitError> {
        let overrides = parse_type_overrides(&self.types).map_err(SplitError::Usage)?;
        let workers = self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        });
        let budget = match self.memory {
            Some(bytes) => kiln_contracts::mem::Budget {
                bytes,
                reason: format!("{} (--memory)", human_bytes(bytes)),
            },
            None => kiln_contracts::mem::adaptive_budget(DEFAULT_MEMORY, MIN_ADAPTIVE_MEMORY),
        };
        tracing::info!("memory budget {}", budget.reason);
        Ok(SplitOptions {
            input: self.input,
            out: self.out,
            types: TypeOptions {
                key: self.key,
                date: self.date,
                float32: self.float32,
                overrides,
            },
            format: match self.format {
                FormatArg::Parquet => FileFormat::Parquet,
                FormatArg::Csv => FileFormat::Csv,
                FormatArg::Arrow => FileFormat::Arrow,
            },
            codec: self.compression,
            delimiter: parse_delimiter(&self.delimiter)?,
            duplicates: match self.duplicates {
                DuplicatesArg::Error => Duplicates::Error,
                DuplicatesArg::KeepFirst => Duplicates::KeepFirst,
                DuplicatesArg::KeepLast => Duplicates::KeepLast,
            },
            start: self.start,
            end: self.end,
            skip_bad_rows: matches!(self.bad_rows, BadRowsArg::Skip),
            unsafe_keys: match self.unsafe_keys {
                UnsafeKeysArg::Encode => UnsafeKeys::Encode,
                UnsafeKeysArg::Error => UnsafeKeys::Error,
            },
            memory_budget: budget.bytes,
            memory_budget_reason: budget.reason,
            workers,
            force: self.force,
            tmp_dir: self.tmp_dir,
            progress: progress && !self.quiet,
            buckets: self.buckets,
            bucket_limit: self.bucket_limit,
            command,
        })
    }
}
