//! `kiln-preheat info` and `kiln-preheat clear`: both read the index.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_contracts::mem::human_bytes;
use serde::Serialize;

use crate::cache::{self, Cache, KeyState, ManifestSpec, Staging};
use crate::error::PreheatError;
use crate::rows::format_date_value;

#[derive(Debug, Clone, Serialize)]
pub struct SymbolInfo {
    pub symbol: String,
    pub rows: u64,
    pub bytes: u64,
    pub first_date: String,
    pub last_date: String,
    pub fetched_at: String,
    pub age_seconds: i64,
    pub stale: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub out: PathBuf,
    pub source: Option<String>,
    pub table: Option<String>,
    pub symbols: u64,
    pub rows: u64,
    pub bytes: u64,
    pub first_date: Option<String>,
    pub last_date: Option<String>,
    pub columns: Vec<String>,
    pub ttl_seconds: u64,
    /// Symbols older than the TTL: the next run asks the source for them.
    pub stale: u64,
    pub oldest_fetch: Option<String>,
    pub newest_fetch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_symbol: Option<Vec<SymbolInfo>>,
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub fn info(out: &Path, ttl: Duration, per_symbol: bool) -> Result<Info, PreheatError> {
    let ds = cache::open_dataset(out)?
        .ok_or_else(|| PreheatError::cache(out, "no kiln-preheat cache here"))?;
    let keys = cache::key_states(&ds)?;
    let manifest = ds.manifest();
    let date_type = manifest.date_type();
    let identity = cache::identity_of(manifest);
    let now = chrono::Utc::now().timestamp_micros();
    let stale = |s: &KeyState| !crate::plan::is_fresh(s.fetched_at_us, now, ttl);
    let symbols = per_symbol.then(|| {
        keys.values()
            .map(|s| SymbolInfo {
                symbol: s.entry.key.clone(),
                rows: s.entry.rows,
                bytes: s.entry.bytes,
                first_date: format_date_value(s.entry.first_date, date_type),
                last_date: format_date_value(s.entry.last_date, date_type),
                fetched_at: rfc3339(s.fetched_at_us),
                age_seconds: (now - s.fetched_at_us) / 1_000_000,
                stale: stale(s),
            })
            .collect()
    });
    Ok(Info {
        out: out.to_path_buf(),
        source: identity.as_ref().map(|i| i.source.clone()),
        table: identity.and_then(|i| i.table),
        symbols: keys.len() as u64,
        rows: manifest.statistics.rows,
        bytes: manifest.statistics.bytes,
        first_date: manifest.statistics.first_date.clone(),
        last_date: manifest.statistics.last_date.clone(),
        columns: manifest
            .column_names()
            .iter()
            .map(|c| (*c).to_owned())
            .collect(),
        ttl_seconds: ttl.as_secs(),
        stale: keys.values().filter(|s| stale(s)).count() as u64,
        oldest_fetch: keys.values().map(|s| s.fetched_at_us).min().map(rfc3339),
        newest_fetch: keys.values().map(|s| s.fetched_at_us).max().map(rfc3339),
        per_symbol: symbols,
    })
}

impl Info {
    pub fn human(&self) -> String {
        let mut s = format!(
            "{}: {} symbols, {} rows, {}, {} .. {}\n",
            self.out.display(),
            self.symbols,
            self.rows,
            human_bytes(self.bytes),
            self.first_date.as_deref().unwrap_or("-"),
            self.last_date.as_deref().unwrap_or("-"),
        );
        s += &format!(
            "  source: {}{}\n  fetched: oldest {}, newest {}; {} stale (older than {})\n  columns: {}\n",
            self.source.as_deref().unwrap_or("?"),
            self.table.as_deref().map(|t| format!(" table {t}")).unwrap_or_default(),
            self.oldest_fetch.as_deref().unwrap_or("-"),
            self.newest_fetch.as_deref().unwrap_or("-"),
            self.stale,
            humantime::format_duration(Duration::from_secs(self.ttl_seconds)),
            self.columns.join(", ")
        );
        for sym in self.per_symbol.iter().flatten() {
            s += &format!(
                "  {:<12} {:>7} rows {:>10}  {} .. {}  fetched {}{}\n",
                sym.symbol,
                sym.rows,
                human_bytes(sym.bytes),
                sym.first_date,
                sym.last_date,
                sym.fetched_at,
                if sym.stale { " (stale)" } else { "" }
            );
        }
        s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Cleared {
    pub out: PathBuf,
    pub removed: Vec<String>,
    pub not_cached: Vec<String>,
    pub remaining: u64,
}

/// Remove some symbols (atomically, like a run's publish) or, with none
/// given, the whole cache.
pub fn clear(out: &Path, symbols: &[String]) -> Result<Cleared, PreheatError> {
    let cache = Cache::open(out)?;
    let Some(ds) = &cache.dataset else {
        return Err(PreheatError::cache(out, "no kiln-preheat cache here"));
    };
    if symbols.is_empty() {
        let removed: Vec<String> = cache.keys.keys().cloned().collect();
        kiln_contracts::owned::remove_dataset(out)?;
        let _ = std::fs::remove_dir_all(cache::spare_path(out));
        return Ok(Cleared {
            out: out.to_path_buf(),
            removed,
            not_cached: Vec::new(),
            remaining: 0,
        });
    }
    let wanted: BTreeSet<&String> = symbols.iter().collect();
    let mut keys = cache.keys.clone();
    let mut removed = Vec::new();
    let mut not_cached = Vec::new();
    for s in wanted {
        if keys.remove(s).is_some() {
            removed.push(s.clone());
        } else {
            not_cached.push(s.clone());
        }
    }
    if !removed.is_empty() {
        let manifest = ds.manifest();
        let identity = cache.identity.clone().ok_or_else(|| {
            PreheatError::cache(out, "the manifest does not say where the cache came from")
        })?;
        let spec = ManifestSpec {
            columns: manifest.columns.clone(),
            date_type: manifest.date_type(),
            identity,
            command: manifest.producer.command.clone(),
        };
        let removed_files: std::collections::HashSet<String> = removed
            .iter()
            .map(|s| kiln_contracts::index::key_file_name(s, kiln_contracts::FileFormat::Parquet))
            .collect();
        let mut staging = Staging::begin(out, &removed_files)?;
        staging.prune(&keys)?;
        staging.publish(&keys, &Default::default(), &spec, None)?;
    }
    Ok(Cleared {
        out: out.to_path_buf(),
        removed,
        not_cached,
        remaining: keys.len() as u64,
    })
}
