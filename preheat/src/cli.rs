//! The command line, parsed by clap into [`crate::PreheatOptions`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kiln_contracts::dataset::Codec;
use kiln_contracts::ColumnType;

use crate::columns::ColumnMap;
use crate::mysql::MysqlOptions;
use crate::redact::redact_args;
use crate::{PreheatError, PreheatOptions, Selection, Shape, SourceSpec};

const AFTER_HELP: &str = "\
Examples:
  export KILN_MYSQL_URL=mysql://reader@db.internal:3306/market   # password: KILN_MYSQL_PASSWORD
  kiln-preheat --symbols all --start-date 2021-01-01
  kiln-preheat --symbols 000001,600519 --out data/cache/kline
  kiln-preheat --symbols @watchlist.txt --ttl 12h --overlap-days 3
  kiln-preheat --table quotes.daily --column symbol=code --column trade_date=day --exclude note
  kiln-preheat --source klines.csv --out data/cache/kline          # no MySQL needed
  kiln-preheat info --json
  kiln-preheat clear --symbol 000001

Refresh: a symbol fetched less than --ttl ago is skipped; an older one fetches only the rows
after its last cached date (minus --overlap-days) and merges them; --force-refresh refetches.
Output: DIR/<symbol>.parquet, DIR/_index.parquet, DIR/_dataset.json (docs/CONTRACTS.md).
Exit status: 0 ok, 1 source or cache unusable (nothing changed), 2 bad usage,
3 some symbols failed (the rest are cached; rerun to complete) or a malformed dump,
4 the cache belongs to another source or another run holds it.";

/// Preheat daily klines from MySQL/MariaDB (or a dump) into a per-symbol
/// parquet cache, incrementally.
#[derive(Debug, Parser)]
#[command(name = "kiln-preheat", version, after_help = AFTER_HELP, args_conflicts_with_subcommands = true)]
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
    /// Show what the cache holds: symbols, rows, bytes, dates, age, staleness
    Info(InfoArgs),
    /// Remove symbols from the cache (or the whole cache)
    Clear(ClearArgs),
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The cache directory
    #[arg(long, default_value = "data/cache/kline")]
    pub out: PathBuf,
    /// Age after which a symbol counts as stale
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// One line (or JSON object) per symbol
    #[arg(long)]
    pub per_symbol: bool,
    /// Print JSON on stdout instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ClearArgs {
    /// The cache directory
    #[arg(long, default_value = "data/cache/kline")]
    pub out: PathBuf,
    /// Symbols to remove (repeat or comma-separate); none: the whole cache
    #[arg(long = "symbol", value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Print JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ShapeArg {
    /// One ordered scan when the whole table is fetched over one connection
    Auto,
    /// Batches of --batch-symbols symbols over --jobs connections
    Batched,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// MySQL/MariaDB URL, mysql://user[:password]@host[:port]/database
    #[arg(
        long,
        env = "KILN_MYSQL_URL",
        hide_env_values = true,
        conflicts_with = "source"
    )]
    pub url: Option<String>,
    /// Read a kline dump (.csv or .parquet, grouped by symbol) instead of MySQL
    #[arg(long, value_name = "FILE")]
    pub source: Option<PathBuf>,
    /// Table, or DATABASE.TABLE
    #[arg(long, default_value = "stock_kline_data")]
    pub table: String,
    /// Map a kline column to the source's name for it (symbol, trade_date, open,
    /// high, low, close, volume, amount), e.g. --column symbol=code
    #[arg(long = "column", value_name = "KLINE=SOURCE")]
    pub columns: Vec<String>,
    /// Leave a source column out of the cache
    #[arg(long, value_name = "COLUMN")]
    pub exclude: Vec<String>,
    /// A dump column's type (float64, int64, date, timestamp, string), e.g. --type volume=float64
    #[arg(long = "type", value_name = "COLUMN=TYPE")]
    pub types: Vec<String>,
    /// `all`, a comma-separated list, or @FILE with one symbol per line
    #[arg(long, default_value = "all")]
    pub symbols: String,
    /// Only the first N symbols (sorted), for quick tests
    #[arg(long)]
    pub limit: Option<usize>,
    /// First date to cache (YYYY-MM-DD)
    #[arg(long)]
    pub start_date: Option<String>,
    /// Last date to cache (YYYY-MM-DD, inclusive)
    #[arg(long)]
    pub end_date: Option<String>,
    /// The cache directory
    #[arg(long, default_value = "data/cache/kline")]
    pub out: PathBuf,
    /// Symbols fetched less than this long ago are skipped
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Refetch this many days before the last cached date, to catch revisions
    #[arg(long, default_value_t = 0)]
    pub overlap_days: u32,
    /// Refetch every selected symbol in full
    #[arg(long)]
    pub force_refresh: bool,
    /// MySQL connections reading at once (more keep more of the server's
    /// page reads in flight when its buffer pool is cold)
    #[arg(long, default_value_t = 8)]
    pub jobs: usize,
    /// Symbols per query
    #[arg(long, default_value_t = 500)]
    pub batch_symbols: usize,
    /// How the table is read
    #[arg(long, value_enum, default_value = "auto")]
    pub shape: ShapeArg,
    /// Retries of a failing query (transient errors only), with doubling delays
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Delay before the first retry
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub retry_delay: Duration,
    /// Give up connecting after this long
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Threads writing parquet files (default: four per core, as a refresh
    /// whose files have left the page cache waits on the disk to read them)
    #[arg(long)]
    pub writers: Option<usize>,
    /// Publish what is complete at least this often during a long run
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub checkpoint: Duration,
    /// Parquet compression: lz4, snappy, zstd, zstd:N, none. The cache is
    /// read far more often than written: lz4 decodes faster than snappy
    /// (kiln-featurize: -5 % of its work) at the same size and write cost
    #[arg(long, default_value = "lz4", value_parser = parse_codec)]
    pub compression: Codec,
    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// No summary on stderr
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_codec(s: &str) -> Result<Codec, String> {
    Codec::parse(s).ok_or_else(|| format!("unknown compression '{s}'"))
}

fn parse_day(flag: &str, value: &Option<String>) -> Result<Option<i32>, PreheatError> {
    value
        .as_deref()
        .map(|v| {
            kiln_contracts::dates::parse_date(v.as_bytes())
                .ok_or_else(|| PreheatError::Usage(format!("{flag} {v}: expected YYYY-MM-DD")))
        })
        .transpose()
}

fn parse_selection(text: &str) -> Result<Selection, PreheatError> {
    if text == "all" {
        return Ok(Selection::All);
    }
    let list: Vec<String> = if let Some(path) = text.strip_prefix('@') {
        let body = std::fs::read_to_string(path)
            .map_err(|e| PreheatError::Usage(format!("--symbols @{path}: {e}")))?;
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
        return Err(PreheatError::Usage(format!("--symbols {text}: no symbols")));
    }
    Ok(Selection::List(list))
}

impl RunArgs {
    pub fn into_options(
        self,
        progress: bool,
        args: Vec<String>,
    ) -> Result<PreheatOptions, PreheatError> {
        let map = ColumnMap::new(&self.columns, self.exclude.clone())?;
        let password = std::env::var("KILN_MYSQL_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty());
        let url_password = self
            .url
            .as_deref()
            .and_then(|u| mysql_async::Opts::from_url(u).ok())
            .and_then(|o| o.pass().map(str::to_owned));
        let mut command = redact_args(&args, url_password.as_deref());
        command = redact_args(&command, password.as_deref());
        let source = match (&self.url, &self.source) {
            (_, Some(path)) => {
                let mut types = Vec::new();
                for t in &self.types {
                    let (col, ty) = t.split_once('=').ok_or_else(|| {
                        PreheatError::Usage(format!("--type {t}: expected COLUMN=TYPE"))
                    })?;
                    let ty = ColumnType::parse(ty.trim()).ok_or_else(|| {
                        PreheatError::Usage(format!("--type {t}: unknown type '{ty}'"))
                    })?;
                    types.push((col.trim().to_owned(), ty));
                }
                SourceSpec::File {
                    path: path.clone(),
                    types,
                }
            }
            (Some(url), None) => {
                if !self.types.is_empty() {
                    return Err(PreheatError::Usage(
                        "--type applies to --source dumps; MySQL columns have their own types"
                            .into(),
                    ));
                }
                SourceSpec::Mysql(MysqlOptions {
                    url: url.clone(),
                    password,
                    table: self.table.clone(),
                    jobs: self.jobs.max(1),
                    batch_symbols: self.batch_symbols.max(1),
                    retries: self.retries,
                    retry_delay: self.retry_delay,
                    connect_timeout: self.connect_timeout,
                })
            }
            (None, None) => {
                return Err(PreheatError::Usage(
                    "no source: give --url (or set KILN_MYSQL_URL), or --source FILE".into(),
                ))
            }
        };
        let start_date = parse_day("--start-date", &self.start_date)?;
        let end_date = parse_day("--end-date", &self.end_date)?;
        if let (Some(s), Some(e)) = (start_date, end_date) {
            if s > e {
                return Err(PreheatError::Usage(
                    "--start-date is after --end-date".into(),
                ));
            }
        }
        if self.limit == Some(0) {
            return Err(PreheatError::Usage("--limit 0 selects nothing".into()));
        }
        // A nightly refresh reads the end of every cached file and rewrites
        // it; after a day those pages are seldom still cached, and a writer
        // thread blocks on each read. More threads than cores keep several
        // reads in flight (5,000 symbols, 2 cores, files evicted: 2.2-2.4 s
        // with 2 writers, 1.7-1.8 s with 8; cached: 0.9 s either way; a
        // full preheat the same).
        let writers = self
            .writers
            .unwrap_or_else(|| 4 * std::thread::available_parallelism().map_or(2, |n| n.get()));
        Ok(PreheatOptions {
            source,
            map,
            selection: parse_selection(&self.symbols)?,
            limit: self.limit,
            start_date,
            end_date,
            out: self.out,
            ttl: self.ttl,
            overlap_days: self.overlap_days,
            force_refresh: self.force_refresh,
            writers: writers.max(1),
            checkpoint: self.checkpoint,
            codec: self.compression,
            shape: match self.shape {
                ShapeArg::Auto => Shape::Auto,
                ShapeArg::Batched => Shape::Batched,
            },
            progress,
            command,
        })
    }
}
