//! Writeback while a stage writes, so that publishing waits for little.
//!
//! A stage that writes thousands of small files into a staging directory
//! and then syncs it once (see [`crate::atomic::StagingDir`]) leaves the
//! disk idle while it encodes, then waits for all of it at the end: for
//! kiln-preheat's nightly refresh (a page or two in each of 5,000 files)
//! that final sync was a sixth of the run. [`Writeback`] syncs the
//! filesystem every [`DEFAULT_INTERVAL`] on a thread of its own, so the
//! final sync finds only the last moments' writes.
//!
//! A writeback error is reported by the first sync that meets it, and not
//! through a directory opened after that: the background sync keeps it,
//! and [`Writeback::quiet`] — called before a publish syncs — hands it
//! over, so a publish never succeeds over a write the disk lost.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{ContractError, IoContext};

/// How often a [`Writeback`] syncs: often enough that the final sync has
/// little left, seldom enough that the syncs' journal commits stay cheap.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);

/// The first error a background sync met, if any.
type FirstError = Mutex<Option<io::Error>>;

/// Syncs the filesystem holding a directory, every interval, until
/// dropped.
pub struct Writeback {
    dir: PathBuf,
    first_error: Arc<FirstError>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Held while no background sync runs (see [`Writeback::quiet`]).
pub struct Quiet<'a> {
    _held: MutexGuard<'a, Option<io::Error>>,
}

impl Writeback {
    /// Start syncing the filesystem of `dir` every `interval`.
    pub fn start(dir: &Path, interval: Duration) -> Result<Self, ContractError> {
        let fs = File::open(dir).at(dir)?;
        let first_error: Arc<FirstError> = Arc::default();
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = first_error.clone();
        let thread = std::thread::Builder::new()
            .name("kiln-writeback".into())
            .spawn(move || {
                while stopped.recv_timeout(interval) == Err(RecvTimeoutError::Timeout) {
                    let mut first = shared.lock().expect("writeback lock");
                    if first.is_none() {
                        *first = sync_filesystem(&fs).err();
                    }
                }
            })
            .at(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            first_error,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Wait for a background sync in flight and hold off the next while
    /// the returned guard lives (a publish syncs and renames meanwhile).
    /// An error if a background sync failed: what it failed to write would
    /// not be reported again.
    pub fn quiet(&self) -> Result<Quiet<'_>, ContractError> {
        let first = self.first_error.lock().expect("writeback lock");
        match first.as_ref() {
            Some(e) => Err(ContractError::io(
                &self.dir,
                io::Error::new(e.kind(), format!("writing back: {e}")),
            )),
            None => Ok(Quiet { _held: first }),
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(target_os = "linux")]
fn sync_filesystem(fs: &File) -> io::Result<()> {
    rustix::fs::syncfs(fs).map_err(io::Error::from)
}

/// Elsewhere the publish's own sync does all of it.
#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_fs: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Instant;

    use super::*;

    #[test]
    fn quiet_waits_for_no_sync_and_stops_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let writeback = Writeback::start(dir.path(), Duration::from_millis(1)).unwrap();
        for i in 0..20 {
            let mut f = File::create(dir.path().join(format!("f{i}"))).unwrap();
            f.write_all(&[7; 8192]).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(writeback.quiet().unwrap());
        let started = Instant::now();
        drop(writeback);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = Writeback::start(&missing, DEFAULT_INTERVAL)
            .err()
            .expect("no such directory");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
