//! What a dep or out looked like: per file its size, mtime and inode, and a
//! content hash (xxh3-128). A file whose size, mtime and inode all match
//! the lock keeps its recorded hash without being read, so "nothing
//! changed" costs one stat per file; when the stat changed but the bytes
//! may not have (a touch, a restore, a copy), the file is hashed and only
//! the bytes decide.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
    /// xxh3-128 of the contents, hex.
    pub hash: String,
    /// Modified less than [`RACY_WINDOW_NS`] before it was fingerprinted: a
    /// write in the same timestamp tick could leave size, mtime and inode
    /// as they were, so the stat is not trusted next time (git's "racy
    /// clean" problem).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub racy: bool,
}

/// Wider than any file system's mtime granularity Kiln expects (ext4, xfs,
/// btrfs: ns stamps from a clock that ticks every few ms; NFS: the server's).
pub const RACY_WINDOW_NS: i64 = 1_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PathState {
    Missing,
    File(FileState),
    /// Every file below the directory, by relative path.
    Dir {
        files: BTreeMap<String, FileState>,
    },
}

/// Counts what fingerprinting read, for `--json` and the benchmark.
#[derive(Debug, Default)]
pub struct Hashing {
    pub files_stat: AtomicU64,
    pub files_hashed: AtomicU64,
    pub bytes_hashed: AtomicU64,
}

impl Hashing {
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.files_stat.load(Ordering::Relaxed),
            self.files_hashed.load(Ordering::Relaxed),
            self.bytes_hashed.load(Ordering::Relaxed),
        )
    }
}

fn hash_file(path: &Path, counters: &Hashing) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        counters.bytes_hashed.fetch_add(n as u64, Ordering::Relaxed);
    }
    counters.files_hashed.fetch_add(1, Ordering::Relaxed);
    Ok(format!("{:032x}", hasher.digest128()))
}

fn file_state(
    path: &Path,
    meta: &std::fs::Metadata,
    previous: Option<&FileState>,
    counters: &Hashing,
) -> io::Result<FileState> {
    counters.files_stat.fetch_add(1, Ordering::Relaxed);
    let mtime_ns = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
    let (size, inode) = (meta.len(), meta.ino());
    let racy = now_ns() - mtime_ns < RACY_WINDOW_NS;
    if let Some(p) = previous {
        if p.size == size && p.mtime_ns == mtime_ns && p.inode == inode && !p.racy {
            return Ok(p.clone());
        }
    }
    Ok(FileState {
        size,
        mtime_ns,
        inode,
        hash: hash_file(path, counters)?,
        racy,
    })
}

/// The state of `path` now; `previous` (from the lock) spares reading files
/// whose stat did not change.
pub fn state(
    path: &Path,
    previous: Option<&PathState>,
    counters: &Hashing,
) -> io::Result<PathState> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PathState::Missing),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        let prev = match previous {
            Some(PathState::File(f)) => Some(f),
            _ => None,
        };
        return Ok(PathState::File(file_state(path, &meta, prev, counters)?));
    }
    let prev_files = match previous {
        Some(PathState::Dir { files }) => Some(files),
        _ => None,
    };
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(path).sort_by_file_name() {
        let entry = entry.map_err(io::Error::other)?;
        if entry.file_type().is_dir() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(path)
            .unwrap_or(entry.path())
            .to_string_lossy()
            .into_owned();
        let meta = match entry.path().metadata() {
            Ok(m) => m,
            // A dangling link or a file removed while walking.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let prev = prev_files.and_then(|f| f.get(&rel));
        files.insert(rel, file_state(entry.path(), &meta, prev, counters)?);
    }
    Ok(PathState::Dir { files })
}

/// How `now` differs in content from `before`, or None when the bytes are
/// the same (stat-only differences do not count).
pub fn content_change(before: &PathState, now: &PathState) -> Option<String> {
    match (before, now) {
        (PathState::Missing, PathState::Missing) => None,
        (_, PathState::Missing) => Some("is gone".into()),
        (PathState::Missing, _) => Some("appeared".into()),
        (PathState::File(a), PathState::File(b)) => {
            if a.hash == b.hash {
                None
            } else if a.size != b.size {
                Some(format!("changed (size {} → {})", a.size, b.size))
            } else {
                Some("changed (same size, other bytes)".into())
            }
        }
        (PathState::Dir { files: a }, PathState::Dir { files: b }) => {
            let added: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).collect();
            let removed: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).collect();
            let changed: Vec<&String> = a
                .iter()
                .filter(|(k, f)| b.get(*k).is_some_and(|g| g.hash != f.hash))
                .map(|(k, _)| k)
                .collect();
            if added.is_empty() && removed.is_empty() && changed.is_empty() {
                return None;
            }
            let first = changed.first().or(added.first()).or(removed.first());
            Some(format!(
                "changed ({} changed, {} added, {} removed; first {})",
                changed.len(),
                added.len(),
                removed.len(),
                first.map(|s| s.as_str()).unwrap_or("?")
            ))
        }
        (PathState::File(_), PathState::Dir { .. }) => Some("became a directory".into()),
        (PathState::Dir { .. }, PathState::File(_)) => Some("became a file".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_stat_is_not_read_and_touch_keeps_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.csv");
        std::fs::write(&f, b"x,y\n1,2\n").unwrap();
        set_mtime(&f, -30);
        let c = Hashing::default();
        let first = state(&f, None, &c).unwrap();
        assert_eq!(c.snapshot().1, 1);
        let again = state(&f, Some(&first), &c).unwrap();
        assert_eq!(again, first);
        assert_eq!(c.snapshot().1, 1, "an unchanged stat must not be hashed");

        set_mtime(&f, -20);
        let touched = state(&f, Some(&first), &c).unwrap();
        assert_eq!(c.snapshot().1, 2);
        assert_ne!(touched, first);
        assert_eq!(content_change(&first, &touched), None);

        std::fs::write(&f, b"x,y\n1,3\n").unwrap();
        let edited = state(&f, Some(&touched), &c).unwrap();
        assert_eq!(
            content_change(&touched, &edited).as_deref(),
            Some("changed (same size, other bytes)")
        );
        // Just written: racy, so even an identical stat is read again.
        let PathState::File(file) = &edited else {
            panic!()
        };
        assert!(file.racy);
        let hashed = c.snapshot().1;
        state(&f, Some(&edited), &c).unwrap();
        assert_eq!(c.snapshot().1, hashed + 1);
    }

    fn set_mtime(path: &Path, secs_from_now: i64) {
        let now = std::time::SystemTime::now();
        let d = std::time::Duration::from_secs(secs_from_now.unsigned_abs());
        let t = if secs_from_now < 0 { now - d } else { now + d };
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn directories_list_their_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), b"1").unwrap();
        std::fs::write(dir.path().join("b"), b"2").unwrap();
        let c = Hashing::default();
        let s = state(dir.path(), None, &c).unwrap();
        let PathState::Dir { files } = &s else {
            panic!()
        };
        assert_eq!(files.keys().collect::<Vec<_>>(), ["b", "sub/a"]);
        std::fs::write(dir.path().join("c"), b"3").unwrap();
        let t = state(dir.path(), Some(&s), &c).unwrap();
        assert_eq!(
            content_change(&s, &t).as_deref(),
            Some("changed (0 changed, 1 added, 0 removed; first c)")
        );
    }
}
