//! Keeping the spare copy updatable in place.
//!
//! A run's staging copy is the cache's previous version (the spare), whose
//! files the writers update in place. A key the run does not rewrite (its
//! symbol unchanged at the source, or not due) must hold the published
//! version when the copy is published. A hard link to the published file
//! does that at once, but the copy's file is then shared: once this copy
//! is the spare again, the next refresh of that key cannot write through
//! the link and creates a new file instead — after a night with nothing
//! new (a weekend), every one of them (ext4: new inodes, the old ones
//! freed; 4.8 s against 0.6 s for 5,000 symbols). [`catch_up`] makes the
//! copy's own file equal to the published one instead, writing only the
//! bytes after their common base row group.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use kiln_contracts::append::BaseGroup;
use kiln_contracts::owned;

use crate::error::PreheatError;

/// A key file's base row group and length, as an index records them.
pub type FileState = (BaseGroup, u64);

/// Make `to` (a staging copy's file that holds `staged`, by the spare's
/// index) byte for byte the published `from` (which holds `published`),
/// writing only the pages from the one where their common base group ends
/// on (whole: a page partly written is first read) — nothing when that is
/// already equal. `false`, with `to` untouched, when this cannot be done:
/// the base groups differ, or `to` is not a private regular file of the
/// recorded length (missing, linked, or left otherwise by a killed run).
/// Not fsynced: the caller syncs the copy before publishing it.
pub fn catch_up(
    from: &Path,
    published: FileState,
    to: &Path,
    staged: FileState,
) -> Result<bool, PreheatError> {
    let ((base, from_len), (staged_base, to_len)) = (published, staged);
    if base != staged_base || from_len < base.end {
        return Ok(false);
    }
    let Ok(target) = OpenOptions::new().read(true).write(true).open(to) else {
        return Ok(false);
    };
    let meta = target.metadata().map_err(|e| PreheatError::io(to, e))?;
    if !meta.is_file() || meta.nlink() != 1 || meta.len() != to_len {
        return Ok(false);
    }
    let start = base.end - base.end % rustix::param::page_size() as u64;
    let suffix = read_at(
        &File::open(from).map_err(|e| PreheatError::io(from, e))?,
        from,
        start,
        from_len,
    )?;
    if to_len == from_len && read_at(&target, to, start, to_len)? == suffix {
        return Ok(true);
    }
    target
        .write_all_at(&suffix, start)
        .map_err(|e| PreheatError::io(to, e))?;
    if to_len > from_len {
        target
            .set_len(from_len)
            .map_err(|e| PreheatError::io(to, e))?;
    }
    Ok(true)
}

/// Make `to` the published `from`: caught up in place ([`catch_up`]) where
/// both files' states are known and allow it, else a hard link to `from`.
/// `true` when caught up.
pub fn take_published(
    from: &Path,
    published: Option<FileState>,
    to: &Path,
    staged: Option<FileState>,
) -> Result<bool, PreheatError> {
    if let (Some(published), Some(staged)) = (published, staged) {
        if catch_up(from, published, to, staged)? {
            return Ok(true);
        }
    }
    owned::relink(from, to)?;
    Ok(false)
}

/// Bytes `start..end` of `file`.
fn read_at(file: &File, path: &Path, start: u64, end: u64) -> Result<Vec<u8>, PreheatError> {
    let mut bytes = vec![0; (end - start) as usize];
    file.read_exact_at(&mut bytes, start)
        .map_err(|e| PreheatError::io(path, e))?;
    Ok(bytes)
}
