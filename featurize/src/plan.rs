//! Per symbol: fresh (keep), check the source (unchanged or new days), or
//! compute in full — and which cached symbols leave the cache.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use arrow::array::RecordBatchReader;
use kiln_contracts::{IndexEntry, KeyedDataset};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::cache::KeyState;
use crate::compute::{Resume, SavedState};
use crate::error::FeaturizeError;
use crate::spec::Spec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The source file changed on disk: read it; its rows decide between
    /// unchanged, incremental and full.
    Check,
    /// Compute in full, for this reason.
    Full(&'static str),
}

#[derive(Debug, Clone)]
pub struct Work {
    pub source: IndexEntry,
    pub cached: Option<KeyState>,
    pub decision: Decision,
    /// The source file's fingerprint now.
    pub fingerprint: String,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub work: Vec<Work>,
    /// Cached symbols kept as they are (fresh, or not selected this run).
    pub keep: Vec<KeyState>,
    pub fresh: u64,
    pub selected: u64,
    /// Asked for but not in the input.
    pub missing: Vec<String>,
    /// Cached symbols that leave the cache.
    pub dropped: Vec<String>,
}

pub struct PlanInput<'a> {
    pub input: &'a KeyedDataset,
    pub cached: &'a BTreeMap<String, KeyState>,
    pub symbols: Option<&'a [String]>,
    pub limit: Option<usize>,
    pub spec_hash: &'a str,
    /// The cache's columns are the ones this run writes.
    pub same_layout: bool,
    pub ttl: Option<Duration>,
    pub force: bool,
    pub now_us: i64,
}

/// Size, modification time (ns) and inode of a source file: cheap to read
/// for thousands of files, and any rewrite changes it. Equal fingerprints
/// skip without reading; different ones are settled by the content hash.
pub fn fingerprint(path: &Path) -> Result<String, FeaturizeError> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| FeaturizeError::io(path, e))?;
    Ok(format!(
        "{}:{}.{:09}:{}",
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino()
    ))
}

/// Whether something computed at `computed_at_us` is still within `ttl`.
pub fn is_fresh(computed_at_us: i64, now_us: i64, ttl: Option<Duration>) -> bool {
    match ttl {
        None => true,
        Some(ttl) => now_us.saturating_sub(computed_at_us) < ttl.as_micros() as i64,
    }
}

pub fn plan(p: &PlanInput) -> Result<Plan, FeaturizeError> {
    let mut out = Plan::default();
    let wanted: Option<BTreeSet<&str>> = p.symbols.map(|s| s.iter().map(String::as_str).collect());
    if let Some(w) = &wanted {
        out.missing = w
            .iter()
            .filter(|s| p.input.entry(s).is_none())
            .map(|s| (*s).to_owned())
            .collect();
    }
    let mut selected: Vec<&IndexEntry> = p
        .input
        .entries()
        .iter()
        .filter(|e| wanted.as_ref().is_none_or(|w| w.contains(e.key.as_str())))
        .collect();
    if let Some(limit) = p.limit {
        selected.truncate(limit);
    }
    let chosen: BTreeSet<&str> = selected.iter().map(|e| e.key.as_str()).collect();
    out.selected = selected.len() as u64;
    let usable = |c: &KeyState| p.same_layout && c.spec_hash == p.spec_hash;
    for entry in selected {
        let fingerprint = fingerprint(&p.input.path_of(entry))?;
        let cached = p.cached.get(&entry.key);
        let decision = match cached {
            _ if p.force => Decision::Full("forced"),
            None => Decision::Full("new"),
            Some(_) if !p.same_layout => Decision::Full("columns changed"),
            Some(c) if c.spec_hash != p.spec_hash => Decision::Full("spec changed"),
            Some(c) if !is_fresh(c.computed_at_us, p.now_us, p.ttl) => {
                Decision::Full("older than the TTL")
            }
            Some(c) if c.source_fingerprint == fingerprint => {
                out.fresh += 1;
                out.keep.push(c.clone());
                continue;
            }
            Some(_) => Decision::Check,
        };
        out.work.push(Work {
            source: entry.clone(),
            cached: cached.filter(|c| usable(c)).cloned(),
            decision,
            fingerprint,
        });
    }
    for (key, c) in p.cached {
        if chosen.contains(key.as_str()) {
            continue;
        }
        if p.input.entry(key).is_some() && usable(c) {
            out.keep.push(c.clone());
        } else {
            out.dropped.push(key.clone());
        }
    }
    Ok(out)
}

/// The feature columns and saved states of a cached file, for an
/// incremental computation; `None` when it cannot serve as one.
pub fn read_resume(path: &Path, spec: &Spec) -> Option<Resume> {
    // Read whole and decoded from memory: through a `File` the reader
    // makes a read call per page header and page, thousands per night.
    // With O_DIRECT: the file was written that way and is not cached.
    let bytes = kiln_contracts::direct::read_file(path).ok()?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).ok()?;
    let state: SavedState = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|kv| kv.key == crate::META_STATE)
        .and_then(|kv| kv.value.as_deref())
        .and_then(|v| serde_json::from_str(v).ok())?;
    let schema = builder.schema().clone();
    let roots = spec
        .columns()
        .iter()
        .map(|c| schema.index_of(c).ok())
        .collect::<Option<Vec<_>>>()?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(1 << 20)
        .build()
        .ok()?;
    let out_schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().ok()?;
    let features = arrow::compute::concat_batches(&out_schema, &batches).ok()?;
    Some(Resume { features, state })
}
