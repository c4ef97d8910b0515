//! `kiln-featurize info` and `kiln-featurize clear`: both read the index.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_contracts::mem::human_bytes;
use kiln_contracts::KeyedDataset;
use serde::Serialize;

use crate::cache::{self, Cache, KeyState, ManifestSpec};
use crate::error::FeaturizeError;
use crate::plan::{fingerprint, is_fresh};

#[derive(Debug, Clone, Serialize)]
pub struct SymbolInfo {
    pub symbol: String,
    pub rows: u64,
    pub bytes: u64,
    pub computed_at: String,
    pub age_seconds: i64,
    /// Older than the TTL.
    pub expired: bool,
    /// The source file differs from the one the features were computed from
    /// (`None`: the input is not there to compare).
    pub source_changed: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub out: PathBuf,
    pub input: Option<String>,
    pub spec_hash: Option<String>,
    pub symbols: u64,
    pub rows: u64,
    pub bytes: u64,
    pub first_date: Option<String>,
    pub last_date: Option<String>,
    pub features: Vec<String>,
    pub ttl_seconds: Option<u64>,
    /// Symbols the next run recomputes or re-checks: expired or source changed.
    pub stale: u64,
    pub expired: u64,
    pub source_changed: u64,
    pub oldest_computed: Option<String>,
    pub newest_computed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_symbol: Option<Vec<SymbolInfo>>,
}

fn rfc3339(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let days = secs.div_euclid(86_400) as i32;
    let rem = secs.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        kiln_contracts::dates::format_date(days),
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

pub fn info(out: &Path, ttl: Option<Duration>, per_symbol: bool) -> Result<Info, FeaturizeError> {
    let ds = cache::open_dataset(out)?
        .ok_or_else(|| FeaturizeError::output(out, "no kiln-featurize cache here"))?;
    let keys = cache::key_states(&ds)?;
    let manifest = ds.manifest();
    let identity = cache::identity_of(manifest);
    let input = identity
        .as_ref()
        .and_then(|i| KeyedDataset::open(&i.input).ok());
    let now = crate::now_us();
    let changed = |s: &KeyState| {
        let input = input.as_ref()?;
        Some(match input.entry(&s.entry.key) {
            Some(e) => fingerprint(&input.path_of(e)).ok() != Some(s.source_fingerprint.clone()),
            None => true,
        })
    };
    let rows: Vec<SymbolInfo> = keys
        .values()
        .map(|s| SymbolInfo {
            symbol: s.entry.key.clone(),
            rows: s.entry.rows,
            bytes: s.entry.bytes,
            computed_at: rfc3339(s.computed_at_us),
            age_seconds: (now - s.computed_at_us) / 1_000_000,
            expired: !is_fresh(s.computed_at_us, now, ttl),
            source_changed: changed(s),
        })
        .collect();
    let feature_names = identity
        .as_ref()
        .and_then(|i| serde_json::from_value::<crate::spec::Spec>(i.spec.clone()).ok())
        .map(|s| s.columns())
        .unwrap_or_default();
    Ok(Info {
        out: out.to_path_buf(),
        input: identity.as_ref().map(|i| i.input.clone()),
        spec_hash: identity.map(|i| i.spec_hash),
        symbols: keys.len() as u64,
        rows: manifest.statistics.rows,
        bytes: manifest.statistics.bytes,
        first_date: manifest.statistics.first_date.clone(),
        last_date: manifest.statistics.last_date.clone(),
        features: feature_names,
        ttl_seconds: ttl.map(|t| t.as_secs()),
        stale: rows
            .iter()
            .filter(|r| r.expired || r.source_changed == Some(true))
            .count() as u64,
        expired: rows.iter().filter(|r| r.expired).count() as u64,
        source_changed: rows
            .iter()
            .filter(|r| r.source_changed == Some(true))
            .count() as u64,
        oldest_computed: keys.values().map(|s| s.computed_at_us).min().map(rfc3339),
        newest_computed: keys.values().map(|s| s.computed_at_us).max().map(rfc3339),
        per_symbol: per_symbol.then_some(rows),
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
            "  input: {}\n  spec: {} ({} features: {})\n",
            self.input.as_deref().unwrap_or("?"),
            self.spec_hash.as_deref().unwrap_or("?"),
            self.features.len(),
            self.features.join(", ")
        );
        s += &format!(
            "  computed: oldest {}, newest {}; {} stale ({} older than {}, {} with a changed source)\n",
            self.oldest_computed.as_deref().unwrap_or("-"),
            self.newest_computed.as_deref().unwrap_or("-"),
            self.stale,
            self.expired,
            self.ttl_seconds
                .map(|t| humantime::format_duration(Duration::from_secs(t)).to_string())
                .unwrap_or_else(|| "the TTL (never)".into()),
            self.source_changed
        );
        for sym in self.per_symbol.iter().flatten() {
            s += &format!(
                "  {:<12} {:>7} rows {:>10}  computed {}{}{}\n",
                sym.symbol,
                sym.rows,
                human_bytes(sym.bytes),
                sym.computed_at,
                if sym.expired { " (expired)" } else { "" },
                if sym.source_changed == Some(true) {
                    " (source changed)"
                } else {
                    ""
                }
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

/// Remove some symbols (published atomically, like a run) or, with none
/// given, the whole cache.
pub fn clear(out: &Path, symbols: &[String]) -> Result<Cleared, FeaturizeError> {
    let cache = Cache::open(out)?;
    let Some(ds) = &cache.dataset else {
        return Err(FeaturizeError::output(out, "no kiln-featurize cache here"));
    };
    if symbols.is_empty() {
        let removed: Vec<String> = cache.keys.keys().cloned().collect();
        kiln_contracts::owned::remove_dataset(out)?;
        let spare = cache::spare_path(out);
        if spare.exists() {
            std::fs::remove_dir_all(&spare).map_err(|e| FeaturizeError::io(&spare, e))?;
        }
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
        let identity = cache.identity().ok_or_else(|| {
            FeaturizeError::output(
                out,
                "the manifest does not say what the cache was made from",
            )
        })?;
        let spec = ManifestSpec {
            columns: manifest.columns.clone(),
            key_column: manifest.key_column.clone(),
            date_column: manifest.date_column.clone(),
            date_type: manifest.date_type(),
            identity,
            command: manifest.producer.command.clone(),
        };
        let staging = cache::staging_copy(out)?;
        for state in keys.values() {
            cache::link_kept(out, staging.path(), &state.entry.file)?;
        }
        cache::publish(staging, out, &keys, &spec)?;
    }
    Ok(Cleared {
        out: out.to_path_buf(),
        removed,
        not_cached,
        remaining: keys.len() as u64,
    })
}
