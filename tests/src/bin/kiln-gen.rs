//! kiln-gen: deterministic synthetic datasets for Kiln's demo, tests and benchmarks.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use kiln_testkit::{KeyStyle, KeyedSpec};

#[derive(Parser)]
#[command(
    name = "kiln-gen",
    version,
    about = "Deterministic synthetic data for Kiln",
    after_help = "\
Examples:
  kiln-gen keyed --keys 200 --days 730 --out data/daily.csv --attributes data/attrs.csv
  kiln-gen keyed --keys 2000 --days 2700 --out big.csv.gz      # gzip by extension
  kiln-gen keyed --string-keys --keys 5 --days 3 --out -       # to stdout
  kiln-gen klines --symbols 5000 --days 750 --out klines.csv
  kiln-gen klines --symbols 100 --days 250 --mysql mysql://root@127.0.0.1/test --table klines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A daily keyed table (date-major, like a date-by-date export) and optionally its attributes.
    Keyed {
        #[arg(long, default_value_t = 100)]
        keys: usize,
        #[arg(long, default_value_t = 365)]
        days: usize,
        #[arg(long, default_value_t = 20)]
        features: usize,
        #[arg(long, default_value_t = 2)]
        targets: usize,
        /// Share of rows on which each target is observed.
        #[arg(long, default_value_t = 0.05)]
        target_density: f64,
        /// First date (YYYY-MM-DD).
        #[arg(long, default_value = "2000-01-01")]
        start: String,
        /// Zero-padded string keys (01000000) instead of COMID-like integers.
        #[arg(long)]
        string_keys: bool,
        #[arg(long, default_value = "COMID")]
        key_column: String,
        #[arg(long, default_value = "date")]
        date_column: String,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output CSV (`-` for stdout; `.gz` compresses).
        #[arg(long)]
        out: PathBuf,
        /// Also write the static attributes table here.
        #[arg(long)]
        attributes: Option<PathBuf>,
    },
    /// Daily stock klines (symbol, trade_date, OHLC, volume, amount, turnover):
    /// a CSV dump and/or a MySQL table.
    Klines {
        #[arg(long, default_value_t = 100)]
        symbols: usize,
        /// Trading days (Mon-Fri).
        #[arg(long, default_value_t = 250)]
        days: usize,
        /// First calendar date (YYYY-MM-DD).
        #[arg(long, default_value = "2021-01-04")]
        start: String,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Share of rows missing to suspensions.
        #[arg(long, default_value_t = 0.01)]
        suspended: f64,
        /// Share of rows whose turnover is NULL.
        #[arg(long, default_value_t = 0.002)]
        null_turnover: f64,
        /// Write a CSV dump here (`-` for stdout; `.gz` compresses).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Load into this MySQL/MariaDB (mysql://user:pass@host:port/db).
        /// Deliberately not read from KILN_MYSQL_URL: a generator must never
        /// touch a real database by accident.
        #[arg(long, requires = "table")]
        mysql: Option<String>,
        /// The table to create (refused if it exists, unless --replace).
        #[arg(long)]
        table: Option<String>,
        /// Drop and recreate --table if it exists.
        #[arg(long)]
        replace: bool,
    },
}

fn open_out(path: &Path) -> Result<Box<dyn Write>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdout().lock()));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        )))
    } else {
        Ok(Box::new(file))
    }
}

fn klines(
    spec: &kiln_testkit::klines::KlineSpec,
    out: Option<PathBuf>,
    mysql: Option<String>,
    table: &str,
    replace: bool,
) -> Result<()> {
    anyhow::ensure!(
        out.is_some() || mysql.is_some(),
        "give --out FILE, --mysql URL, or both"
    );
    if let Some(path) = out {
        let rows = spec
            .write_csv(open_out(&path)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "kiln-gen: {rows} kline rows ({} symbols) -> {}",
            spec.symbols,
            path.display()
        );
    }
    if let Some(url) = mysql {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let rows = runtime
            .block_on(kiln_testkit::kline_mysql::load(&url, table, spec, replace))
            // The URL may hold a password: name the table, never the URL.
            .with_context(|| format!("loading table `{table}`"))?;
        eprintln!(
            "kiln-gen: {rows} kline rows ({} symbols) -> table `{table}`",
            spec.symbols
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Klines {
            symbols,
            days,
            start,
            seed,
            suspended,
            null_turnover,
            out,
            mysql,
            table,
            replace,
        } => {
            let start_day = kiln_contracts::dates::parse_date(start.as_bytes())
                .with_context(|| format!("--start {start}: not a date (YYYY-MM-DD)"))?;
            let spec = kiln_testkit::klines::KlineSpec {
                symbols,
                days,
                start_day,
                seed,
                suspended_share: suspended,
                null_turnover_share: null_turnover,
            };
            klines(
                &spec,
                out,
                mysql,
                table.as_deref().unwrap_or_default(),
                replace,
            )?;
        }
        Command::Keyed {
            keys,
            days,
            features,
            targets,
            target_density,
            start,
            string_keys,
            key_column,
            date_column,
            seed,
            out,
            attributes,
        } => {
            let start_day = kiln_contracts::dates::parse_date(start.as_bytes())
                .with_context(|| format!("--start {start}: not a date (YYYY-MM-DD)"))?;
            let spec = KeyedSpec {
                keys,
                days,
                features,
                targets,
                target_density,
                start_day,
                key_style: if string_keys {
                    KeyStyle::Padded
                } else {
                    KeyStyle::Numeric
                },
                seed,
                key_column,
                date_column,
            };
            let rows = spec
                .write_csv(open_out(&out)?)
                .with_context(|| format!("writing {}", out.display()))?;
            if let Some(path) = attributes {
                spec.write_attributes_csv(open_out(&path)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            eprintln!(
                "kiln-gen: {rows} rows ({keys} keys x {days} days) -> {}",
                out.display()
            );
        }
    }
    Ok(())
}
