//! The feature cache: a keyed dataset (docs/CONTRACTS.md) whose index also
//! records, per symbol, what its features were computed from — the source
//! file's fingerprint and content hash, the spec hash and the time. A run
//! builds the next version in a staging directory (hard links for the files
//! it keeps) and publishes it with one atomic exchange: a killed run leaves
//! the previous cache, whole.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, TimeUnit};
use kiln_contracts::atomic::StagingDir;
use kiln_contracts::manifest::{self, Column, Manifest, Producer, Statistics};
use kiln_contracts::owned;
use kiln_contracts::{index, ColumnType, IndexEntry, KeyedDataset};
use serde::{Deserialize, Serialize};

use crate::error::FeaturizeError;

pub const PRODUCER: &str = "kiln-featurize";
/// Index columns: what a symbol's features were computed from.
pub const SOURCE_FINGERPRINT: &str = "source_fingerprint";
pub const SOURCE_ROWS: &str = "source_rows";
pub const SOURCE_HASH: &str = "source_hash";
pub const SPEC_HASH: &str = "spec_hash";
pub const COMPUTED_AT: &str = "computed_at";
/// Index column: the key file's null count per column, as a JSON object,
/// so the manifest's totals stay exact when only some files are rewritten.
pub const NULL_COUNTS: &str = "null_counts";

/// What a cache is made from; a run into an existing cache must match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The input dataset, as an absolute path.
    pub input: String,
    pub spec_hash: String,
    pub spec: serde_json::Value,
}

/// A cached symbol and what it was computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyState {
    pub entry: IndexEntry,
    pub source_fingerprint: String,
    pub source_rows: u64,
    pub source_hash: String,
    pub spec_hash: String,
    pub computed_at_us: i64,
    pub nulls: BTreeMap<String, u64>,
}

pub fn identity_of(manifest: &Manifest) -> Option<Identity> {
    manifest
        .extra
        .get("featurize")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// An existing feature cache (checking it is one), or `None`.
pub fn open_dataset(out: &Path) -> Result<Option<KeyedDataset>, FeaturizeError> {
    owned::open_owned(out, PRODUCER).map_err(|e| FeaturizeError::owned(out, e))
}

fn strings(ds: &KeyedDataset, name: &str) -> Result<Option<StringArray>, FeaturizeError> {
    Ok(ds
        .index_column(name)?
        .and_then(|a| a.as_any().downcast_ref::<StringArray>().cloned()))
}

/// The per-symbol state from a cache's index.
pub fn key_states(ds: &KeyedDataset) -> Result<BTreeMap<String, KeyState>, FeaturizeError> {
    let fingerprints = strings(ds, SOURCE_FINGERPRINT)?;
    let hashes = strings(ds, SOURCE_HASH)?;
    let specs = strings(ds, SPEC_HASH)?;
    let nulls = strings(ds, NULL_COUNTS)?;
    let rows = ds.index_column(SOURCE_ROWS)?;
    let rows = rows
        .as_ref()
        .and_then(|a| a.as_any().downcast_ref::<Int64Array>());
    let computed = ds.index_column(COMPUTED_AT)?;
    let computed = computed
        .as_ref()
        .and_then(|a| a.as_any().downcast_ref::<TimestampMicrosecondArray>());
    let text = |a: &Option<StringArray>, i: usize| {
        a.as_ref()
            .filter(|a| a.is_valid(i))
            .map(|a| a.value(i).to_owned())
            .unwrap_or_default()
    };
    let mut keys = BTreeMap::new();
    for (i, entry) in ds.entries().iter().enumerate() {
        keys.insert(
            entry.key.clone(),
            KeyState {
                entry: entry.clone(),
                source_fingerprint: text(&fingerprints, i),
                source_rows: rows.map_or(0, |a| a.value(i).max(0) as u64),
                source_hash: text(&hashes, i),
                spec_hash: text(&specs, i),
                computed_at_us: computed.map_or(0, |a| a.value(i)),
                nulls: serde_json::from_str(&text(&nulls, i)).unwrap_or_default(),
            },
        );
    }
    Ok(keys)
}

/// The output directory of a run, locked for its life.
pub struct Cache {
    pub out: PathBuf,
    _lock: File,
    pub dataset: Option<Arc<KeyedDataset>>,
    pub keys: BTreeMap<String, KeyState>,
}

impl Cache {
    pub fn open(out: &Path) -> Result<Self, FeaturizeError> {
        let lock = owned::lock_for_run(out, PRODUCER).map_err(|e| FeaturizeError::owned(out, e))?;
        let dataset = open_dataset(out)?;
        let keys = match &dataset {
            Some(ds) => key_states(ds)?,
            None => BTreeMap::new(),
        };
        Ok(Self {
            out: out.to_path_buf(),
            _lock: lock,
            dataset: dataset.map(Arc::new),
            keys,
        })
    }

    pub fn identity(&self) -> Option<Identity> {
        self.dataset
            .as_ref()
            .and_then(|d| identity_of(d.manifest()))
    }
}

/// How a published cache's manifest is made.
pub struct ManifestSpec {
    pub columns: Vec<Column>,
    pub key_column: String,
    pub date_column: String,
    pub date_type: ColumnType,
    pub identity: Identity,
    pub command: Vec<String>,
}

/// Totals of `keys` for the manifest and the summary.
pub fn totals(keys: &BTreeMap<String, KeyState>) -> (u64, u64) {
    (
        keys.values().map(|s| s.entry.rows).sum(),
        keys.values().map(|s| s.entry.bytes).sum(),
    )
}

/// Write `_index.parquet` (with the provenance columns) and `_dataset.json`.
pub fn write_index_and_manifest(
    dir: &Path,
    keys: &BTreeMap<String, KeyState>,
    spec: &ManifestSpec,
) -> Result<(), FeaturizeError> {
    let entries: Vec<IndexEntry> = keys.values().map(|s| s.entry.clone()).collect();
    let string_column = |f: fn(&KeyState) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(keys.values().map(f)))
    };
    let null_json: ArrayRef =
        Arc::new(StringArray::from_iter_values(keys.values().map(|s| {
            serde_json::to_string(&s.nulls).expect("a map serializes")
        })));
    let extra = vec![
        (
            Field::new(SOURCE_FINGERPRINT, DataType::Utf8, false),
            string_column(|s| &s.source_fingerprint),
        ),
        (
            Field::new(SOURCE_ROWS, DataType::Int64, false),
            Arc::new(Int64Array::from_iter_values(
                keys.values().map(|s| s.source_rows as i64),
            )) as ArrayRef,
        ),
        (
            Field::new(SOURCE_HASH, DataType::Utf8, false),
            string_column(|s| &s.source_hash),
        ),
        (
            Field::new(SPEC_HASH, DataType::Utf8, false),
            string_column(|s| &s.spec_hash),
        ),
        (
            Field::new(
                COMPUTED_AT,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    keys.values().map(|s| s.computed_at_us),
                )
                .with_timezone("UTC"),
            ) as ArrayRef,
        ),
        (Field::new(NULL_COUNTS, DataType::Utf8, false), null_json),
    ];
    index::write_index_with_extra(dir, &entries, spec.date_type, extra)?;
    let (rows, bytes) = totals(keys);
    let mut null_counts: BTreeMap<String, u64> = BTreeMap::new();
    for s in keys.values() {
        for (c, n) in &s.nulls {
            *null_counts.entry(c.clone()).or_default() += n;
        }
    }
    let format = |v: i64| kiln_contracts::dates::format_value(v, spec.date_type);
    let mut extra = serde_json::Map::new();
    extra.insert(
        "featurize".into(),
        serde_json::to_value(&spec.identity).expect("identity serializes"),
    );
    let manifest = Manifest {
        format: manifest::FORMAT_NAME.into(),
        format_version: manifest::FORMAT_VERSION,
        producer: Producer {
            name: PRODUCER.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            command: spec.command.clone(),
        },
        created_at: manifest::now_rfc3339(),
        key_column: spec.key_column.clone(),
        date_column: spec.date_column.clone(),
        file_format: kiln_contracts::FileFormat::Parquet,
        columns: spec.columns.clone(),
        statistics: Statistics {
            keys: keys.len() as u64,
            rows,
            bytes,
            first_date: keys.values().map(|s| s.entry.first_date).min().map(format),
            last_date: keys.values().map(|s| s.entry.last_date).max().map(format),
            null_counts,
        },
        extra,
    };
    manifest.write(dir)?;
    Ok(())
}

/// Where the previous version of a cache is kept between runs: the next
/// run's staging copy, whose files are rewritten in place.
pub fn spare_path(out: &Path) -> PathBuf {
    owned::sibling(out, "kiln-spare")
}

/// Make `dir/name` a hard link to `out/name` (a file this run keeps),
/// replacing what the staging copy held under that name.
pub fn link_kept(out: &Path, dir: &Path, name: &str) -> Result<(), FeaturizeError> {
    Ok(owned::relink(&out.join(name), &dir.join(name))?)
}

/// The staging directory of a run: the previous version of the cache (the
/// spare) when there is one — its files are rewritten in place, which on
/// ext4 costs a fraction of creating files and deleting the old ones — or
/// a new directory.
pub fn staging_copy(out: &Path) -> Result<StagingDir, FeaturizeError> {
    let spare = spare_path(out);
    if out.is_dir() && spare.is_dir() {
        return Ok(StagingDir::adopt(out, &spare)?);
    }
    if spare.exists() {
        std::fs::remove_dir_all(&spare).map_err(|e| FeaturizeError::io(&spare, e))?;
    }
    Ok(StagingDir::create(out)?)
}

/// Remove the files of a staging copy that no key of `keys` points at
/// (an older version's, or a failed or dropped symbol's), then publish it
/// as the cache and keep the replaced version as the next spare.
pub fn publish(
    staging: StagingDir,
    out: &Path,
    keys: &BTreeMap<String, KeyState>,
    spec: &ManifestSpec,
) -> Result<(), FeaturizeError> {
    let dir = staging.path().to_path_buf();
    let wanted: std::collections::HashSet<&str> =
        keys.values().map(|s| s.entry.file.as_str()).collect();
    for entry in std::fs::read_dir(&dir).map_err(|e| FeaturizeError::io(&dir, e))? {
        let entry = entry.map_err(|e| FeaturizeError::io(&dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !wanted.contains(name.as_str()) {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(|e| FeaturizeError::io(&p, e))?;
        }
    }
    write_index_and_manifest(&dir, keys, spec)?;
    staging.publish_keeping(true, &spare_path(out))?;
    Ok(())
}
