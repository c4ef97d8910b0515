//! The cache directory: a keyed dataset (docs/CONTRACTS.md) that kiln-preheat
//! updates copy-on-write. A run hard-links the published files into a
//! staging copy, writes the symbols it fetched there, and publishes the copy
//! with one atomic directory exchange — at the end and at checkpoints. A
//! killed run leaves the last published cache, whole; a reader never sees
//! a file that disagrees with the index.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use arrow::array::{Array, ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, TimeUnit};
use kiln_contracts::append::BaseGroup;
use kiln_contracts::atomic::StagingDir;
use kiln_contracts::manifest::{self, Column, Manifest, Producer, Statistics};
use kiln_contracts::owned;
use kiln_contracts::writeback::{self, Writeback};
use kiln_contracts::{index, ColumnType, IndexEntry, KeyedDataset};
use serde::{Deserialize, Serialize};

use crate::error::PreheatError;
use crate::plan::Cached;
use crate::rows::format_date_value;
use crate::spare::{self, FileState};
use crate::summary::CacheTotals;

pub const PRODUCER: &str = "kiln-preheat";
/// Index column: when the source was last asked for the key (UTC).
pub const FETCHED_AT: &str = "fetched_at";
/// Index column: the key file's null count per column, as a JSON object.
pub const NULL_COUNTS: &str = "null_counts";
/// Index column: the key file's base row group (`kiln_contracts::append`),
/// null for a file without one.
pub const BASE_GROUP: &str = "base_group";

/// Where a cache's rows come from; a run into an existing cache must match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub source: String,
    pub table: Option<String>,
    pub columns: Vec<Column>,
    pub mapping: serde_json::Value,
    pub start_date: Option<String>,
}

/// A cached symbol.
#[derive(Debug, Clone)]
pub struct KeyState {
    pub entry: IndexEntry,
    pub fetched_at_us: i64,
    pub nulls: BTreeMap<String, u64>,
    pub base: Option<BaseGroup>,
}

pub struct Cache {
    pub out: PathBuf,
    /// Held for the life of the run: one writer per cache.
    _lock: File,
    pub dataset: Option<Arc<KeyedDataset>>,
    pub identity: Option<Identity>,
    pub keys: BTreeMap<String, KeyState>,
}

/// Where a cache's manifest says its rows come from.
pub fn identity_of(manifest: &Manifest) -> Option<Identity> {
    manifest
        .extra
        .get("preheat")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Symbols, rows, bytes and date range of `keys`.
pub fn totals(keys: &BTreeMap<String, KeyState>, date_type: ColumnType) -> CacheTotals {
    let format = |v: i64| format_date_value(v, date_type);
    CacheTotals {
        symbols: keys.len() as u64,
        rows: keys.values().map(|s| s.entry.rows).sum(),
        bytes: keys.values().map(|s| s.entry.bytes).sum(),
        first_date: keys.values().map(|s| s.entry.first_date).min().map(format),
        last_date: keys.values().map(|s| s.entry.last_date).max().map(format),
    }
}

/// Open an existing cache's dataset (checking it is one of ours), or `None`.
pub fn open_dataset(out: &Path) -> Result<Option<KeyedDataset>, PreheatError> {
    owned::open_owned(out, PRODUCER).map_err(|e| PreheatError::owned(out, e))
}

/// The per-key state from a dataset's index.
pub fn key_states(ds: &KeyedDataset) -> Result<BTreeMap<String, KeyState>, PreheatError> {
    let fetched = ds.index_column(FETCHED_AT)?;
    let fetched = fetched
        .as_ref()
        .and_then(|a| a.as_any().downcast_ref::<TimestampMicrosecondArray>());
    let nulls = ds.index_column(NULL_COUNTS)?;
    let nulls = nulls
        .as_ref()
        .and_then(|a| a.as_any().downcast_ref::<StringArray>());
    let bases = ds.index_column(BASE_GROUP)?;
    let bases = bases
        .as_ref()
        .and_then(|a| a.as_any().downcast_ref::<StringArray>());
    let mut keys = BTreeMap::new();
    for (i, entry) in ds.entries().iter().enumerate() {
        let fetched_at_us = fetched.filter(|a| a.is_valid(i)).map_or(0, |a| a.value(i));
        let nulls = nulls
            .filter(|a| a.is_valid(i))
            .and_then(|a| serde_json::from_str(a.value(i)).ok())
            .unwrap_or_default();
        let base = bases
            .filter(|a| a.is_valid(i))
            .and_then(|a| BaseGroup::parse(a.value(i)));
        keys.insert(
            entry.key.clone(),
            KeyState {
                entry: entry.clone(),
                fetched_at_us,
                nulls,
                base,
            },
        );
    }
    Ok(keys)
}

impl Cache {
    /// Lock `out` for this run and read what it holds.
    pub fn open(out: &Path) -> Result<Self, PreheatError> {
        let lock = owned::lock_for_run(out, PRODUCER).map_err(|e| PreheatError::owned(out, e))?;
        let dataset = open_dataset(out)?;
        let (identity, keys) = match &dataset {
            Some(ds) => (identity_of(ds.manifest()), key_states(ds)?),
            None => (None, BTreeMap::new()),
        };
        Ok(Self {
            out: out.to_path_buf(),
            _lock: lock,
            dataset: dataset.map(Arc::new),
            identity,
            keys,
        })
    }

    /// Refuse to mix sources or schemas in one cache.
    pub fn check_identity(&self, run: &Identity, force: bool) -> Result<(), PreheatError> {
        let Some(cached) = &self.identity else {
            if self.dataset.is_some() {
                return Err(PreheatError::cache(
                    &self.out,
                    "the manifest does not say where the cache came from; clear it first",
                ));
            }
            return Ok(());
        };
        let clear_hint = format!(
            "run `kiln-preheat clear --out {}` first, or choose another --out",
            self.out.display()
        );
        if cached.source != run.source || cached.table != run.table {
            return Err(PreheatError::cache(
                &self.out,
                format!(
                    "was filled from {}{}, this run reads {}{}; {clear_hint}",
                    cached.source,
                    cached
                        .table
                        .as_deref()
                        .map(|t| format!(" table {t}"))
                        .unwrap_or_default(),
                    run.source,
                    run.table
                        .as_deref()
                        .map(|t| format!(" table {t}"))
                        .unwrap_or_default(),
                ),
            ));
        }
        if cached.columns != run.columns || cached.mapping != run.mapping {
            let describe = |cols: &[Column]| {
                cols.iter()
                    .map(|c| format!("{} {}", c.name, c.column_type))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(PreheatError::cache(
                &self.out,
                format!(
                    "holds columns ({}), the source now gives ({}); {clear_hint}",
                    describe(&cached.columns),
                    describe(&run.columns)
                ),
            ));
        }
        if cached.start_date != run.start_date && !force {
            return Err(PreheatError::cache(
                &self.out,
                format!(
                    "was filled from --start-date {}, this run asks for {}; add --force-refresh to refetch",
                    cached.start_date.as_deref().unwrap_or("(none)"),
                    run.start_date.as_deref().unwrap_or("(none)")
                ),
            ));
        }
        Ok(())
    }

    /// What the planner needs per cached symbol.
    pub fn planner_view(&self) -> HashMap<String, Cached> {
        self.keys
            .iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    Cached {
                        last_date: s.entry.last_date,
                        fetched_at_us: s.fetched_at_us,
                    },
                )
            })
            .collect()
    }
}

/// How the manifest of a published cache is made.
pub struct ManifestSpec {
    pub columns: Vec<Column>,
    pub date_type: ColumnType,
    pub identity: Identity,
    pub command: Vec<String>,
}

/// Where the previous version of a cache is kept between runs.
pub fn spare_path(out: &Path) -> PathBuf {
    owned::sibling(out, "kiln-spare")
}

/// What the index of a spare (a complete, published version of the cache)
/// says about its files. Anything unreadable only means that files are
/// written whole.
fn spare_files_of(dir: &Path) -> SpareFiles {
    let column = |name| index::read_index_column(dir, name).ok().flatten();
    let (Some(files), Some(bytes), Some(bases)) =
        (column("file"), column("bytes"), column(BASE_GROUP))
    else {
        return SpareFiles::new();
    };
    let (Some(files), Some(bytes), Some(bases)) = (
        files.as_any().downcast_ref::<StringArray>(),
        bytes.as_any().downcast_ref::<Int64Array>(),
        bases.as_any().downcast_ref::<StringArray>(),
    ) else {
        return SpareFiles::new();
    };
    (0..files.len())
        .filter(|&i| bases.is_valid(i))
        .filter_map(|i| {
            let base = BaseGroup::parse(bases.value(i))?;
            Some((files.value(i).to_owned(), (base, bytes.value(i) as u64)))
        })
        .collect()
}

/// Key file names of a directory (not the index, manifest or temp files).
fn key_files(dir: &Path) -> Result<Vec<String>, PreheatError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| PreheatError::io(dir, e))? {
        let entry = entry.map_err(|e| PreheatError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if kiln_contracts::keys::is_contained_file_name(&name) && name.ends_with(".parquet") {
            names.push(name);
        }
    }
    Ok(names)
}

/// What a staging copy's own files (older versions kept from the spare)
/// are known to hold, from the spare's index: base group and length, by
/// file name. Writers use it to write only what follows a base.
pub type SpareFiles = HashMap<String, FileState>;

/// Key files a run has dealt with so far.
#[derive(Debug, Default)]
pub struct RunFiles {
    /// Written into the staging copy.
    pub written: HashSet<String>,
    /// Asked of the source and found as cached: never touched by a writer.
    pub unchanged: HashSet<String>,
}

/// Where writers put files now; a checkpoint swaps it.
pub struct StagingView {
    pub dir: PathBuf,
    pub spare: SpareFiles,
    /// Where every file written whole also goes, while the cache has no
    /// published version (see [`Staging::begin`]).
    pub twin: Option<PathBuf>,
    /// How many times the run has published so far: a checkpoint moves the
    /// staging copy, and files opened before it may no longer be the ones
    /// `dir` names.
    pub generation: u64,
}

/// The staging copy of a cache being updated.
///
/// It is the previous version of the cache (kept as `.DIR.kiln-spare` by the
/// last publish) brought up to date with hard links, or a new directory of
/// hard links when there is none. Files about to be rewritten keep their
/// previous version there: the writers overwrite those in place, which on
/// ext4 costs a fraction of creating new files and deleting old ones.
///
/// A cache's first run (nothing published yet) writes every file twice:
/// into the staging copy and into a *twin* that its first publish makes the
/// spare. Without it the first refresh would have no spare and would create
/// every file it refreshes anew — as costly as copying the cache, which is
/// cheaper done while the files are written (the bytes are in memory, and
/// the full fetch waits on the server more than on the disk).
pub struct Staging {
    out: PathBuf,
    dir: Option<StagingDir>,
    /// Files of `dir` already made equal to the published ones.
    caught_up: HashSet<String>,
    twin: Option<StagingDir>,
    /// Shared with the writers, swapped at checkpoints.
    pub view: Arc<RwLock<StagingView>>,
    published_before: bool,
    pub publishes: usize,
    /// Writes back what the writers write while they write, when they
    /// update the spare's files in place (a page or two each): a publish's
    /// sync then waits for the last moments' writes only. Not while they
    /// create files: syncs amid thousands of new files cost the run more
    /// than the final sync they save (full preheat: +0.3 s of 4.8 s).
    writeback: Option<Writeback>,
}

impl Staging {
    /// A staging copy holding hard links to the cache's files, except
    /// `skip` (files about to be rewritten; linked later if they are not).
    pub fn begin(out: &Path, skip: &HashSet<String>) -> Result<Self, PreheatError> {
        // An empty directory made by the user is replaced like a cache.
        let published_before = out.exists();
        let (dir, spare, caught_up) = Self::copy_of(out, skip)?;
        let twin = if out.is_dir() {
            // Twins of killed first runs go, should a cache exist by now.
            kiln_contracts::atomic::clean_stale(&spare_path(out))?;
            None
        } else {
            // Creating one removes them too.
            Some(StagingDir::create(&spare_path(out))?)
        };
        let writeback = if spare.is_empty() {
            None
        } else {
            Some(Writeback::start(dir.path(), writeback::DEFAULT_INTERVAL)?)
        };
        let view = Arc::new(RwLock::new(StagingView {
            dir: dir.path().to_path_buf(),
            spare,
            twin: twin.as_ref().map(|t| t.path().to_path_buf()),
            generation: 0,
        }));
        Ok(Self {
            out: out.to_path_buf(),
            dir: Some(dir),
            caught_up,
            twin,
            view,
            published_before,
            publishes: 0,
            writeback,
        })
    }

    /// The staging copy of the cache at `out`: its spare (or a new
    /// directory) with every file but `skip` made the published version —
    /// in place where the spare's file has the same base group (see
    /// [`spare::catch_up`]; those are returned), else as a hard link.
    fn copy_of(
        out: &Path,
        skip: &HashSet<String>,
    ) -> Result<(StagingDir, SpareFiles, HashSet<String>), PreheatError> {
        let spare = spare_path(out);
        let mut caught_up = HashSet::new();
        if !out.is_dir() {
            let _ = std::fs::remove_dir_all(&spare);
            return Ok((StagingDir::create(out)?, SpareFiles::new(), caught_up));
        }
        let published = key_files(out)?;
        let mut spare_files = SpareFiles::new();
        let dir = if spare.is_dir() {
            let dir = StagingDir::adopt(out, &spare)?;
            spare_files = spare_files_of(dir.path());
            let wanted: HashSet<&String> = published.iter().collect();
            for name in key_files(dir.path())? {
                if !wanted.contains(&name) {
                    let p = dir.path().join(&name);
                    std::fs::remove_file(&p).map_err(|e| PreheatError::io(&p, e))?;
                }
            }
            dir
        } else {
            StagingDir::create(out)?
        };
        let current = if spare_files.is_empty() {
            SpareFiles::new()
        } else {
            spare_files_of(out)
        };
        for name in published.iter().filter(|name| !skip.contains(*name)) {
            let (from, to) = (out.join(name), dir.path().join(name));
            let now = current.get(name).copied();
            if spare::take_published(&from, now, &to, spare_files.get(name).copied())? {
                spare_files.insert(name.clone(), now.expect("caught up from a known state"));
                caught_up.insert(name.clone());
            }
        }
        Ok((dir, spare_files, caught_up))
    }

    /// Make every key's file that was not written by this run the
    /// published one (skipped files whose symbol turned out unchanged or
    /// failed still hold an older version, or nothing): an unchanged one
    /// caught up in place where it can be, the rest as hard links. A failed
    /// one may hold anything a writer left, so it is always linked.
    fn fill_in(
        &self,
        keys: &BTreeMap<String, KeyState>,
        files: &RunFiles,
        spare_files: &SpareFiles,
    ) -> Result<(), PreheatError> {
        let dir = self
            .dir
            .as_ref()
            .expect("staging present until the end")
            .path();
        for state in keys.values() {
            let name = &state.entry.file;
            if files.written.contains(name) || self.caught_up.contains(name) {
                continue;
            }
            let published = state.base.map(|base| (base, state.entry.bytes));
            let staged = spare_files
                .get(name)
                .copied()
                .filter(|_| files.unchanged.contains(name));
            spare::take_published(&self.out.join(name), published, &dir.join(name), staged)?;
        }
        Ok(())
    }

    /// Remove files of the staging copy that no key points at (written for
    /// a symbol that then failed, or an older version's leftovers). Only
    /// when no writer is running.
    pub fn prune(&self, keys: &BTreeMap<String, KeyState>) -> Result<(), PreheatError> {
        let dir = self
            .dir
            .as_ref()
            .expect("staging present until the end")
            .path();
        remove_unlisted(dir, keys)
    }

    /// Publish `keys` as the cache; `files` says what the run did to which.
    /// With `keep_going` (the files still to be rewritten), a new staging
    /// copy of the published cache takes this one's place (a checkpoint).
    pub fn publish(
        &mut self,
        keys: &BTreeMap<String, KeyState>,
        files: &RunFiles,
        spec: &ManifestSpec,
        keep_going: Option<&HashSet<String>>,
    ) -> Result<(), PreheatError> {
        let lock = self.view.clone();
        let mut view = lock.write().expect("staging lock");
        self.publish_locked(&mut view, keys, files, spec, keep_going)
    }

    /// [`Staging::publish`] for a caller already holding the staging lock
    /// for writing.
    pub fn publish_locked(
        &mut self,
        view: &mut StagingView,
        keys: &BTreeMap<String, KeyState>,
        files: &RunFiles,
        spec: &ManifestSpec,
        keep_going: Option<&HashSet<String>>,
    ) -> Result<(), PreheatError> {
        let started = std::time::Instant::now();
        self.fill_in(keys, files, &view.spare)?;
        let quiet = self.writeback.as_ref().map(Writeback::quiet).transpose()?;
        let dir = self.dir.take().expect("staging present until the end");
        write_index_and_manifest(dir.path(), keys, spec)?;
        if let Some(twin) = self.twin.take() {
            publish_twin(dir.path(), twin, keys)?;
            view.twin = None;
        }
        let indexed = started.elapsed();
        dir.publish_keeping(self.published_before, &spare_path(&self.out))?;
        tracing::debug!(
            index_ms = indexed.as_millis() as u64,
            sync_and_swap_ms = (started.elapsed() - indexed).as_millis() as u64,
            "publish"
        );
        drop(quiet);
        self.published_before = true;
        self.publishes += 1;
        if let Some(skip) = keep_going {
            let (next, spare, caught_up) = Self::copy_of(&self.out, skip)?;
            self.caught_up = caught_up;
            *view = StagingView {
                dir: next.path().to_path_buf(),
                spare,
                twin: None,
                generation: view.generation + 1,
            };
            self.dir = Some(next);
        }
        Ok(())
    }
}

/// Make `twin` the spare: a copy of the staging directory `staging` (its
/// key files were written twice, see [`Staging`]), made durable and renamed
/// into place before the cache itself is published (a spare without a
/// cache is removed by the next run).
fn publish_twin(
    staging: &Path,
    twin: StagingDir,
    keys: &BTreeMap<String, KeyState>,
) -> Result<(), PreheatError> {
    remove_unlisted(twin.path(), keys)?;
    // Every key file is there already, unless writing its copy failed after
    // the file itself was written.
    let copy = |name: &str| {
        let to = twin.path().join(name);
        std::fs::copy(staging.join(name), &to).map_err(|e| PreheatError::io(&to, e))
    };
    for state in keys.values() {
        let len = std::fs::metadata(twin.path().join(&state.entry.file)).map(|m| m.len());
        if len.ok() != Some(state.entry.bytes) {
            copy(&state.entry.file)?;
        }
    }
    copy(manifest::INDEX_FILE)?;
    copy(manifest::MANIFEST_FILE)?;
    twin.publish(true)?;
    Ok(())
}

/// Remove key files of `dir` that no key points at.
fn remove_unlisted(dir: &Path, keys: &BTreeMap<String, KeyState>) -> Result<(), PreheatError> {
    let wanted: HashSet<&str> = keys.values().map(|s| s.entry.file.as_str()).collect();
    for name in key_files(dir)? {
        if !wanted.contains(name.as_str()) {
            let p = dir.join(&name);
            std::fs::remove_file(&p).map_err(|e| PreheatError::io(&p, e))?;
        }
    }
    Ok(())
}

/// Write `_index.parquet` (with `fetched_at` and `null_counts`) and
/// `_dataset.json` for `keys` into `dir`.
pub fn write_index_and_manifest(
    dir: &Path,
    keys: &BTreeMap<String, KeyState>,
    spec: &ManifestSpec,
) -> Result<(), PreheatError> {
    let entries: Vec<IndexEntry> = keys.values().map(|s| s.entry.clone()).collect();
    let fetched: ArrayRef = Arc::new(
        TimestampMicrosecondArray::from_iter_values(keys.values().map(|s| s.fetched_at_us))
            .with_timezone("UTC"),
    );
    let nulls: ArrayRef =
        Arc::new(StringArray::from_iter_values(keys.values().map(|s| {
            serde_json::to_string(&s.nulls).expect("a map serializes")
        })));
    let bases: ArrayRef = Arc::new(StringArray::from_iter(
        keys.values().map(|s| s.base.map(|b| b.encode())),
    ));
    let extra = vec![
        (
            Field::new(
                FETCHED_AT,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            fetched,
        ),
        (Field::new(NULL_COUNTS, DataType::Utf8, false), nulls),
        (Field::new(BASE_GROUP, DataType::Utf8, true), bases),
    ];
    index::write_index_with_extra(dir, &entries, spec.date_type, extra)?;
    let mut null_counts: BTreeMap<String, u64> = BTreeMap::new();
    for s in keys.values() {
        for (c, n) in &s.nulls {
            *null_counts.entry(c.clone()).or_default() += n;
        }
    }
    let totals = totals(keys, spec.date_type);
    let mut extra = serde_json::Map::new();
    extra.insert(
        "preheat".into(),
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
        key_column: crate::columns::SYMBOL.into(),
        date_column: crate::columns::DATE.into(),
        file_format: kiln_contracts::FileFormat::Parquet,
        columns: spec.columns.clone(),
        statistics: Statistics {
            keys: totals.symbols,
            rows: totals.rows,
            bytes: totals.bytes,
            first_date: totals.first_date,
            last_date: totals.last_date,
            null_counts,
        },
        extra,
    };
    manifest.write(dir)?;
    Ok(())
}
