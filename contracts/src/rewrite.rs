//! Rewriting a file under a name that may already hold one.
//!
//! Writers of thousands of key files reuse what is there: an existing file
//! with no other link is rewritten in place (no inode to allocate, none to
//! free: on ext4 both slow down for minutes after mass deletes). Anything
//! else under the name — a hard link to a published file, a symlink — is
//! removed and a new file created, never written through.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use rustix::fs::OFlags;

use crate::error::{ContractError, IoContext};

/// Which is tried first: creating the file or opening what is there. The
/// right guess costs one path walk, the wrong one two.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A fresh output directory.
    New,
    /// A directory rewritten run after run.
    Existing,
}

/// `path` opened for writing (and reading, with `read`) with the extra
/// open `flags`, and the length of what it held where an existing file was
/// reused (`None`: created). The error is the open's own, unwrapped, so
/// that a caller can tell a flag the filesystem refuses (O_DIRECT:
/// `EINVAL`) from other faults.
pub(crate) fn open_rewritable(
    path: &Path,
    read: bool,
    flags: OFlags,
    expect: Expect,
) -> std::io::Result<(File, Option<u64>)> {
    let open = |create_new: bool| {
        OpenOptions::new()
            .read(read)
            .write(true)
            .create_new(create_new)
            // A symlink fails (ELOOP) rather than being followed; a FIFO
            // fails (ENXIO) rather than waiting for a reader.
            .custom_flags((flags | OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
            .open(path)
    };
    let reuse = || -> std::io::Result<Option<(File, u64)>> {
        match open(false) {
            Ok(file) => {
                let meta = file.metadata()?;
                if meta.is_file() && meta.nlink() == 1 {
                    return Ok(Some((file, meta.len())));
                }
                std::fs::remove_file(path)?;
                Ok(None)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) if is_not_a_plain_file(&e) => {
                std::fs::remove_file(path)?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    };
    if expect == Expect::New {
        match open(true) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            created => return created.map(|file| (file, None)),
        }
    }
    match reuse()? {
        Some((file, len)) => Ok((file, Some(len))),
        None => open(true).map(|file| (file, None)),
    }
}

/// The errors of opening a symlink with O_NOFOLLOW or a FIFO with
/// O_NONBLOCK: something under the name that is not a file of ours.
fn is_not_a_plain_file(e: &std::io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(rustix::io::Errno::LOOP.raw_os_error())
        || code == Some(rustix::io::Errno::NXIO.raw_os_error())
}

/// Make `path` hold exactly `bytes`. An existing file with no other link is
/// updated in place, writing only the 4 KiB pages that differ: a key file
/// rewritten with a few rows appended changes a page or two, and on ext4
/// that costs a fraction of a new file plus freeing the old one.
pub fn write_changed_pages(path: &Path, bytes: &[u8]) -> Result<File, ContractError> {
    const PAGE: usize = 4096;
    let (mut file, old_len) =
        open_rewritable(path, true, OFlags::empty(), Expect::Existing).at(path)?;
    let Some(old_len) = old_len else {
        file.write_all(bytes).at(path)?;
        return Ok(file);
    };
    let mut old = Vec::with_capacity(old_len as usize);
    file.read_to_end(&mut old).at(path)?;
    for (i, page) in bytes.chunks(PAGE).enumerate() {
        let at = i * PAGE;
        if old.get(at..at + page.len()) != Some(page) {
            file.write_all_at(page, at as u64).at(path)?;
        }
    }
    if old.len() != bytes.len() {
        file.set_len(bytes.len() as u64).at(path)?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn files_are_updated_in_place_and_links_are_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.parquet");
        let old: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &old).unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        // Same first pages, a changed tail, shorter.
        let mut new = old[..15_000].to_vec();
        new.extend_from_slice(b"tail");
        write_changed_pages(&path, &new).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), new);
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            ino,
            "updated in place"
        );
        // Longer again.
        let longer: Vec<u8> = new.iter().chain(old.iter()).copied().collect();
        write_changed_pages(&path, &longer).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), longer);

        // A hard link to a published file: replaced, the other name intact.
        let published = dir.path().join("published.parquet");
        std::fs::hard_link(&path, &published).unwrap();
        write_changed_pages(&path, b"new version").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new version");
        assert_eq!(std::fs::read(&published).unwrap(), longer);
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), ino);
        // A missing file is created.
        write_changed_pages(&dir.path().join("n.parquet"), b"x").unwrap();
        assert_eq!(std::fs::read(dir.path().join("n.parquet")).unwrap(), b"x");
    }

    #[test]
    fn what_is_not_a_file_of_ours_is_replaced_whatever_is_tried_first() {
        for expect in [Expect::New, Expect::Existing] {
            let dir = tempfile::tempdir().unwrap();
            // A symlink: replaced, its target left alone.
            let outside = dir.path().join("outside");
            std::fs::write(&outside, b"not yours").unwrap();
            let linked = dir.path().join("linked.parquet");
            std::os::unix::fs::symlink(&outside, &linked).unwrap();
            let (_, old) = open_rewritable(&linked, false, OFlags::empty(), expect).unwrap();
            assert_eq!(old, None);
            assert!(std::fs::symlink_metadata(&linked).unwrap().is_file());
            assert_eq!(std::fs::read(&outside).unwrap(), b"not yours");
            // A FIFO nobody reads: replaced, not waited on.
            let fifo = dir.path().join("fifo.parquet");
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &fifo,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .unwrap();
            let (_, old) = open_rewritable(&fifo, true, OFlags::empty(), expect).unwrap();
            assert_eq!(old, None);
            assert!(std::fs::symlink_metadata(&fifo).unwrap().is_file());
            // A file of ours: reused, its length told.
            let own = dir.path().join("own.parquet");
            std::fs::write(&own, b"12345").unwrap();
            let (_, old) = open_rewritable(&own, false, OFlags::empty(), expect).unwrap();
            assert_eq!(old, Some(5));
        }
    }
}
