//! The command line, parsed by clap into [`crate::FeaturizeOptions`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kiln_contracts::dataset::Codec;

use crate::spec::Spec;
use crate::{FeaturizeError, FeaturizeOptions};

const AFTER_HELP: &str = "\
Examples:
  kiln-featurize                                    # data/cache/kline -> data/cache/features
  kiln-featurize --input data/cache/kline --out data/cache/features --ttl 7d
  kiln-featurize --spec my-features.yaml --symbols 000001,600519
  kiln-featurize --print-spec > my-features.yaml    # the built-in spec, to edit
  kiln-featurize info --json
  kiln-featurize clear --symbol 000001

A symbol is skipped while its features are fresh: same source file, same spec, younger than
--ttl. A source file that only gained days is computed from the saved indicator states (the
result equals a full computation); revised rows, another spec or an expired TTL recompute it.
Output: DIR/<symbol>.parquet (source columns + features), DIR/_index.parquet, DIR/_dataset.json.
Exit status: 0 ok, 1 input or output unusable (nothing changed), 2 bad usage or spec,
3 some symbols failed (listed; the rest are cached), 4 the output belongs to another input
or another run holds it.";

/// Technical indicators per symbol from a kline dataset, cached as parquet
/// with a TTL and real invalidation.
#[derive(Debug, Parser)]
#[command(name = "kiln-featurize", version, after_help = AFTER_HELP, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
    /// More log detail on stderr (-v info, -vv debug; RUST_LOG overrides)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what the feature cache holds: symbols, rows, bytes, spec, age, staleness
    Info(InfoArgs),
    /// Remove symbols from the feature cache (or the whole cache)
    Clear(ClearArgs),
}

/// A TTL: `None` never expires.
#[derive(Debug, Clone, Copy)]
pub struct Ttl(pub Option<Duration>);

/// `never` or a duration like `7d`, `12h`.
pub fn parse_ttl(text: &str) -> Result<Ttl, String> {
    if text == "never" {
        return Ok(Ttl(None));
    }
    humantime::parse_duration(text)
        .map(|d| Ttl(Some(d)))
        .map_err(|e| format!("{e} (expected a duration like 7d or 12h, or `never`)"))
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The feature cache
    #[arg(long, default_value = "data/cache/features")]
    pub out: PathBuf,
    /// Age after which features count as stale (`never`: no expiry)
    #[arg(long, default_value = "7d", value_parser = parse_ttl)]
    pub ttl: Ttl,
    /// One line (or JSON object) per symbol
    #[arg(long)]
    pub per_symbol: bool,
    /// Print JSON on stdout instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ClearArgs {
    /// The feature cache
    #[arg(long, default_value = "data/cache/features")]
    pub out: PathBuf,
    /// Symbols to remove (repeat or comma-separate); none: the whole cache
    #[arg(long = "symbol", value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The kline dataset (kiln-preheat's cache or any keyed dataset with OHLCV)
    #[arg(long, default_value = "data/cache/kline")]
    pub input: PathBuf,
    /// The feature cache to create or refresh
    #[arg(long, default_value = "data/cache/features")]
    pub out: PathBuf,
    /// YAML feature spec (default: the built-in one, see --print-spec)
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Print the built-in feature spec and exit
    #[arg(long)]
    pub print_spec: bool,
    /// `all`, a comma-separated list, or @FILE with one symbol per line
    #[arg(long, default_value = "all")]
    pub symbols: String,
    /// Only the first N selected symbols (in key order), for quick tries
    #[arg(long)]
    pub limit: Option<usize>,
    /// Recompute features computed longer ago than this (`never`: no expiry)
    #[arg(long, default_value = "7d", value_parser = parse_ttl)]
    pub ttl: Ttl,
    /// Recompute every selected symbol in full
    #[arg(long)]
    pub force: bool,
    /// Worker threads (default: four per core, as writes block on the disk)
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Parquet compression: none, snappy, lz4, zstd or zstd:LEVEL. Features
    /// are full-precision floats that codecs barely shrink (snappy: 9 %)
    /// while costing a quarter of the run's CPU, hence none by default
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// No summary on stderr
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_symbols(text: &str) -> Result<Option<Vec<String>>, FeaturizeError> {
    if text == "all" {
        return Ok(None);
    }
    let list: Vec<String> = if let Some(path) = text.strip_prefix('@') {
        let body = std::fs::read_to_string(path)
            .map_err(|e| FeaturizeError::Usage(format!("--symbols @{path}: {e}")))?;
        body.lines()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    } else {
        text.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    if list.is_empty() {
        return Err(FeaturizeError::Usage(format!(
            "--symbols {text}: no symbols"
        )));
    }
    Ok(Some(list))
}

impl RunArgs {
    pub fn into_options(
        self,
        progress: bool,
        command: Vec<String>,
    ) -> Result<FeaturizeOptions, FeaturizeError> {
        let spec = match &self.spec {
            Some(path) => Spec::load(path)?,
            None => Spec::default_spec(),
        };
        let codec = Codec::parse(&self.compression).ok_or_else(|| {
            FeaturizeError::Usage(format!(
                "--compression {}: expected none, snappy, lz4, zstd or zstd:LEVEL",
                self.compression
            ))
        })?;
        if self.limit == Some(0) {
            return Err(FeaturizeError::Usage("--limit must be at least 1".into()));
        }
        // Files are written with O_DIRECT, which blocks the writing thread
        // until the device has the data: more threads than cores keep the
        // cores computing meanwhile (5,000-symbol benchmark, 2 cores:
        // 2.5 s with 2 threads, 2.05 s with 4, 1.9 s with 6 or 8).
        let jobs = self.jobs.unwrap_or_else(|| {
            4 * std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        });
        Ok(FeaturizeOptions {
            input: self.input,
            out: self.out,
            spec,
            symbols: parse_symbols(&self.symbols)?,
            limit: self.limit,
            ttl: self.ttl.0,
            force: self.force,
            jobs,
            codec,
            progress: progress && !self.quiet,
            command,
        })
    }
}
