//! Crash-safe writes: a killed stage leaves the previous complete output or
//! none, never a half file under a final name.
//!
//! * [`AtomicFile`] — write `.name.tmp.*` beside the target, fsync, rename,
//!   fsync the directory.
//! * [`StagingDir`] — build a whole output directory under a hidden sibling
//!   name, make it durable, then move it into place in one rename (on Linux an
//!   atomic exchange when replacing). Staging directories left by a killed run
//!   are found by their lock file and removed by the next run.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{ContractError, IoContext};
use crate::manifest::MANIFEST_FILE;

const STAGING_MARK: &str = ".kiln-staging.";

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}.{nanos:x}.{n}", std::process::id())
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name_of(path: &Path) -> Result<String, ContractError> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            ContractError::io(
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
            )
        })
}

/// fsync a directory so that renames and creations inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), ContractError> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// A file written under a temporary name and renamed into place by
/// [`AtomicFile::commit`]. Dropped without commit, the temp file is removed.
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    pub fn create(target: impl Into<PathBuf>) -> Result<Self, ContractError> {
        let target = target.into();
        let name = file_name_of(&target)?;
        let temp = parent_of(&target).join(format!(".{name}.tmp.{}", unique_suffix()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .at(&temp)?;
        Ok(Self {
            target,
            temp,
            file: Some(file),
        })
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("AtomicFile used after commit")
    }

    /// Hand the open file to a writer that takes ownership (parquet's
    /// `ArrowWriter`); give it back with [`AtomicFile::commit_file`].
    pub fn take_file(&mut self) -> File {
        self.file.take().expect("AtomicFile used after commit")
    }

    /// fsync, rename over the target, fsync the directory.
    pub fn commit(mut self) -> Result<(), ContractError> {
        let file = self.take_file();
        self.commit_file(file)
    }

    pub fn commit_file(mut self, file: File) -> Result<(), ContractError> {
        file.sync_all().at(&self.temp)?;
        drop(file);
        fs::rename(&self.temp, &self.target).at(&self.target)?;
        self.temp = PathBuf::new();
        sync_dir(&parent_of(&self.target))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Write `bytes` to `target` atomically.
pub fn write_atomic(target: &Path, bytes: &[u8]) -> Result<(), ContractError> {
    use std::io::Write;
    let mut f = AtomicFile::create(target)?;
    f.file().write_all(bytes).at(target)?;
    f.commit()
}

/// A directory built under a hidden sibling name and published in one rename.
///
/// Layout beside the final path `out/`:
/// `.out.kiln-staging.<pid>.<time>.<n>/` and its lock file `…<n>.lock`. The
/// lock (an advisory `flock`) is held for the life of this value; a staging
/// directory whose lock file is missing or not locked belongs to a dead run.
pub struct StagingDir {
    final_path: PathBuf,
    path: PathBuf,
    lock_path: PathBuf,
    lock: Option<File>,
    fsync_each: bool,
    files_synced: bool,
    stale_removed: usize,
}

impl StagingDir {
    /// Remove stale staging directories for `final_path`, then create a new one.
    pub fn create(final_path: &Path) -> Result<Self, ContractError> {
        let stale_removed = clean_stale(final_path)?;
        let name = file_name_of(final_path)?;
        let parent = parent_of(final_path);
        fs::create_dir_all(&parent).at(&parent)?;
        let base = format!(".{name}{STAGING_MARK}{}", unique_suffix());
        let lock_path = parent.join(format!("{base}.lock"));
        let path = parent.join(base);
        // Lock first, directory second: a directory without a lock file can
        // only belong to a run that already finished or died.
        let lock = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock_path)
            .at(&lock_path)?;
        lock.try_lock().map_err(|e| {
            ContractError::io(&lock_path, io::Error::other(format!("cannot lock: {e}")))
        })?;
        fs::create_dir(&path).at(&path)?;
        Ok(Self {
            final_path: final_path.to_path_buf(),
            path,
            lock_path,
            lock: Some(lock),
            fsync_each: false,
            files_synced: false,
            stale_removed,
        })
    }

    /// Where to write the directory's contents.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many staging directories of killed runs [`StagingDir::create`] removed.
    pub fn stale_removed(&self) -> usize {
        self.stale_removed
    }

    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Force per-file fsync instead of one `syncfs` (used by tests and where
    /// the filesystem is shared with heavy unrelated writers).
    pub fn set_fsync_each(&mut self, on: bool) {
        self.fsync_each = on;
    }

    /// Declare that every file in the directory was already fsynced (through a
    /// [`BackgroundSync`]), so publishing only needs to sync the directory.
    pub fn set_files_synced(&mut self, synced: bool) {
        self.files_synced = synced;
    }

    /// Make every file durable, then move the directory into place.
    ///
    /// With `replace`, an existing output is swapped out atomically and then
    /// deleted — but only when it is a Kiln dataset or an empty directory, so
    /// a mistyped `--out ~ --force` cannot delete a home directory.
    pub fn publish(self, replace: bool) -> Result<(), ContractError> {
        self.publish_as(replace, None)
    }

    /// Like [`StagingDir::publish`], but a replaced output is moved to
    /// `keep_as` instead of deleted (a stage that updates its output in
    /// place every run reuses it as its next staging directory, see
    /// [`StagingDir::adopt`]).
    pub fn publish_keeping(self, replace: bool, keep_as: &Path) -> Result<(), ContractError> {
        self.publish_as(replace, Some(keep_as))
    }

    /// A staging directory made of `existing` (moved under the staging
    /// name, with a lock), e.g. the previous output kept by
    /// [`StagingDir::publish_keeping`].
    pub fn adopt(final_path: &Path, existing: &Path) -> Result<Self, ContractError> {
        let dir = Self::create(final_path)?;
        fs::remove_dir(&dir.path).at(&dir.path)?;
        fs::rename(existing, &dir.path).at(existing)?;
        Ok(dir)
    }

    fn publish_as(mut self, replace: bool, keep_as: Option<&Path>) -> Result<(), ContractError> {
        if self.files_synced {
            sync_dir(&self.path)?;
        } else {
            sync_tree(&self.path, self.fsync_each)?;
        }
        let exists = fs::symlink_metadata(&self.final_path).is_ok();
        if exists {
            if !replace {
                return Err(ContractError::OutputExists {
                    path: self.final_path.clone(),
                });
            }
            ensure_replaceable(&self.final_path)?;
            exchange_or_swap(&self.path, &self.final_path)?;
            // `self.path` now holds the previous output.
            let kept = keep_as.is_some_and(|to| {
                let _ = fs::remove_dir_all(to);
                fs::rename(&self.path, to).is_ok()
            });
            if !kept {
                fs::remove_dir_all(&self.path).at(&self.path)?;
            }
        } else {
            rename_no_replace(&self.path, &self.final_path)?;
        }
        sync_dir(&parent_of(&self.final_path))?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.path);
        }
        let _ = fs::remove_file(&self.lock_path);
        self.lock.take();
    }
}

/// fsyncs files on a background thread while the caller writes the next ones,
/// so that making a whole directory durable overlaps with producing it.
/// Bounded: a writer that outruns the disk waits (and never holds more than a
/// few dozen open files).
pub struct BackgroundSync {
    tx: Option<std::sync::mpsc::SyncSender<(PathBuf, File)>>,
    handle: Option<std::thread::JoinHandle<Result<(), ContractError>>>,
}

/// The sending side of a [`BackgroundSync`], shareable between writer threads.
pub type SyncQueue = std::sync::mpsc::SyncSender<(PathBuf, File)>;

impl BackgroundSync {
    pub fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(PathBuf, File)>(32);
        let handle = std::thread::spawn(move || {
            let mut first_error = None;
            for (path, file) in rx {
                if first_error.is_none() {
                    if let Err(e) = file.sync_all() {
                        first_error = Some(ContractError::io(path, e));
                    }
                }
            }
            first_error.map_or(Ok(()), Err)
        });
        Self {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn queue(&self) -> SyncQueue {
        self.tx.clone().expect("queue taken after finish")
    }

    /// Wait until every submitted file is durable.
    pub fn finish(mut self) -> Result<(), ContractError> {
        self.tx.take();
        self.handle
            .take()
            .expect("finished once")
            .join()
            .expect("sync thread panicked")
    }
}

impl Drop for BackgroundSync {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Refuse to replace anything that is not a Kiln dataset or an empty directory.
pub fn ensure_replaceable(path: &Path) -> Result<(), ContractError> {
    let meta = fs::symlink_metadata(path).at(path)?;
    if meta.is_dir() {
        if path.join(MANIFEST_FILE).exists() {
            return Ok(());
        }
        let mut entries = fs::read_dir(path).at(path)?;
        if entries.next().is_none() {
            return Ok(());
        }
    }
    Err(ContractError::NotReplaceable {
        path: path.to_path_buf(),
    })
}

/// Remove staging directories (and their lock files) left next to
/// `final_path` by runs that died. Returns how many were removed.
pub fn clean_stale(final_path: &Path) -> Result<usize, ContractError> {
    let name = file_name_of(final_path)?;
    let parent = parent_of(final_path);
    let prefix = format!(".{name}{STAGING_MARK}");
    let entries = match fs::read_dir(&parent) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(ContractError::io(&parent, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.at(&parent)?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if !file_name.starts_with(&prefix) || file_name.ends_with(".lock") {
            continue;
        }
        let dir = entry.path();
        let lock_path = parent.join(format!("{file_name}.lock"));
        let alive = match OpenOptions::new().write(true).open(&lock_path) {
            Ok(lock) => lock.try_lock().is_err(),
            Err(_) => false,
        };
        if alive {
            continue;
        }
        fs::remove_dir_all(&dir).at(&dir)?;
        let _ = fs::remove_file(&lock_path);
        removed += 1;
    }
    // Lock files whose directory is gone (killed between the two removals).
    for entry in fs::read_dir(&parent).at(&parent)? {
        let entry = entry.at(&parent)?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Some(base) = file_name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".lock"))
        {
            let dir = parent.join(format!("{prefix}{base}"));
            if !dir.exists() {
                if let Ok(lock) = OpenOptions::new().write(true).open(entry.path()) {
                    if lock.try_lock().is_ok() {
                        let _ = fs::remove_file(entry.path());
                    }
                }
            }
        }
    }
    Ok(removed)
}

/// Make every file under `dir` durable.
fn sync_tree(dir: &Path, fsync_each: bool) -> Result<(), ContractError> {
    #[cfg(target_os = "linux")]
    if !fsync_each {
        // One syncfs flushes everything we wrote far faster than thousands of
        // fsyncs, and is just as durable for our files.
        let d = File::open(dir).at(dir)?;
        rustix::fs::syncfs(&d).map_err(|e| ContractError::io(dir, e.into()))?;
        return Ok(());
    }
    let _ = fsync_each;
    fsync_recursive(dir)
}

fn fsync_recursive(dir: &Path) -> Result<(), ContractError> {
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let path = entry.path();
        if entry.file_type().at(&path)?.is_dir() {
            fsync_recursive(&path)?;
        } else {
            File::open(&path).and_then(|f| f.sync_all()).at(&path)?;
        }
    }
    sync_dir(dir)
}

#[cfg(target_os = "linux")]
fn exchange_or_swap(staging: &Path, final_path: &Path) -> Result<(), ContractError> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, staging, CWD, final_path, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        // Filesystems without RENAME_EXCHANGE: fall back to two renames.
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            swap_with_two_renames(staging, final_path)
        }
        Err(e) => Err(ContractError::io(final_path, e.into())),
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange_or_swap(staging: &Path, final_path: &Path) -> Result<(), ContractError> {
    swap_with_two_renames(staging, final_path)
}

fn swap_with_two_renames(staging: &Path, final_path: &Path) -> Result<(), ContractError> {
    let aside = parent_of(staging).join(format!(
        "{}.old",
        staging.file_name().unwrap_or_default().to_string_lossy()
    ));
    fs::rename(final_path, &aside).at(final_path)?;
    fs::rename(staging, final_path).at(final_path)?;
    fs::rename(&aside, staging).at(staging)
}

#[cfg(target_os = "linux")]
fn rename_no_replace(from: &Path, to: &Path) -> Result<(), ContractError> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::EXIST => Err(ContractError::OutputExists {
            path: to.to_path_buf(),
        }),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            fs::rename(from, to).at(to)
        }
        Err(e) => Err(ContractError::io(to, e.into())),
    }
}

#[cfg(not(target_os = "linux"))]
fn rename_no_replace(from: &Path, to: &Path) -> Result<(), ContractError> {
    if to.exists() {
        return Err(ContractError::OutputExists {
            path: to.to_path_buf(),
        });
    }
    fs::rename(from, to).at(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_file_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.txt");
        {
            let mut f = AtomicFile::create(&target).unwrap();
            use std::io::Write;
            f.file().write_all(b"half").unwrap();
            // dropped without commit
        }
        assert!(!target.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "temp removed");
        write_atomic(&target, b"whole").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"whole");
    }

    #[test]
    fn staging_publishes_and_replaces_only_datasets() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let s = StagingDir::create(&out).unwrap();
        fs::write(s.path().join(MANIFEST_FILE), b"{}").unwrap();
        fs::write(s.path().join("k.parquet"), b"1").unwrap();
        s.publish(false).unwrap();
        assert_eq!(fs::read(out.join("k.parquet")).unwrap(), b"1");

        let s = StagingDir::create(&out).unwrap();
        fs::write(s.path().join("k.parquet"), b"2").unwrap();
        assert!(matches!(
            s.publish(false),
            Err(ContractError::OutputExists { .. })
        ));

        let s = StagingDir::create(&out).unwrap();
        fs::write(s.path().join(MANIFEST_FILE), b"{}").unwrap();
        fs::write(s.path().join("k.parquet"), b"2").unwrap();
        s.publish(true).unwrap();
        assert_eq!(fs::read(out.join("k.parquet")).unwrap(), b"2");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only out/ remains: {leftovers:?}");

        let precious = dir.path().join("home");
        fs::create_dir(&precious).unwrap();
        fs::write(precious.join("thesis.tex"), b"x").unwrap();
        let s = StagingDir::create(&precious).unwrap();
        assert!(matches!(
            s.publish(true),
            Err(ContractError::NotReplaceable { .. })
        ));
        assert!(precious.join("thesis.tex").exists());
    }

    #[test]
    fn stale_staging_of_dead_runs_is_cleaned_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let live = StagingDir::create(&out).unwrap();
        // A dead run: directory and an unlocked lock file.
        let dead = dir.path().join(".out.kiln-staging.1.2.3");
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join("half.parquet"), b"x").unwrap();
        fs::write(dir.path().join(".out.kiln-staging.1.2.3.lock"), b"").unwrap();
        assert_eq!(clean_stale(&out).unwrap(), 1);
        assert!(!dead.exists());
        assert!(live.path().exists(), "a live run's staging dir is kept");
        drop(live);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
