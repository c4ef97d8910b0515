//! A stage's own output directory — a cache it updates run after run: made
//! by one producer, updated by one run at a time, with hidden siblings
//! (`.NAME.SUFFIX`) for its lock and scratch.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::atomic::StagingDir;
use crate::error::{ContractError, IoContext};
use crate::KeyedDataset;

/// Why a directory cannot be used as `producer`'s output.
#[derive(Debug, thiserror::Error)]
pub enum OwnedError {
    /// It holds something else, or another run holds it: one line, to be
    /// prefixed with the directory.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Contract(#[from] ContractError),
}

/// `.NAME.SUFFIX` beside the directory `dir`.
pub fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parent.join(format!(".{name}.{suffix}"))
}

/// Open `dir` as a dataset made by `producer`: `None` when it does not
/// exist or is an empty directory; a conflict when it is anything else.
pub fn open_owned(dir: &Path, producer: &str) -> Result<Option<KeyedDataset>, OwnedError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ContractError::io(dir, e).into()),
        Ok(m) if !m.is_dir() => {
            return Err(OwnedError::Conflict("exists and is not a directory".into()));
        }
        Ok(_) => {}
    }
    match KeyedDataset::open(dir) {
        Ok(ds) if ds.manifest().producer.name == producer => Ok(Some(ds)),
        Ok(ds) => Err(OwnedError::Conflict(format!(
            "is a dataset made by {}, not a {producer} cache; choose another --out",
            ds.manifest().producer.name
        ))),
        Err(ContractError::NotADataset { .. }) => {
            if std::fs::read_dir(dir).at(dir)?.next().is_none() {
                Ok(None)
            } else {
                Err(OwnedError::Conflict(format!(
                    "is a directory with other files, not a {producer} cache; choose another --out"
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Hold `dir` for one run of `producer` (an advisory lock on
/// `.NAME.PRODUCER.lock`, released when the file is dropped).
pub fn lock_for_run(dir: &Path, producer: &str) -> Result<File, OwnedError> {
    let path = sibling(dir, &format!("{producer}.lock"));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).at(parent)?;
    }
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .at(&path)?;
    if lock.try_lock().is_err() {
        return Err(OwnedError::Conflict(format!(
            "another {producer} run is updating this cache"
        )));
    }
    Ok(lock)
}

/// Make `to` a hard link to `from` unless it already is one (a staging
/// copy taking a file it keeps from the published dataset).
pub fn relink(from: &Path, to: &Path) -> Result<(), ContractError> {
    use std::os::unix::fs::MetadataExt;
    let inode = |p: &Path| std::fs::symlink_metadata(p).ok().map(|m| m.ino());
    if let Some(ino) = inode(to) {
        if Some(ino) == inode(from) {
            return Ok(());
        }
        std::fs::remove_file(to).at(to)?;
    }
    std::fs::hard_link(from, to).at(from)
}

/// Remove a whole dataset directory: renamed aside in one step first, so
/// it vanishes whole, then deleted.
pub fn remove_dataset(dir: &Path) -> Result<(), ContractError> {
    let aside = StagingDir::create(dir)?;
    std::fs::remove_dir(aside.path()).at(aside.path())?;
    std::fs::rename(dir, aside.path()).at(dir)?;
    drop(aside); // removes the moved directory
    Ok(())
}
