//! The `--log` file: one JSON object per line, samples and events, in the
//! order they happened. `kiln-monitor report` rebuilds the summary from it.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::MonitorError;
use crate::sampler::TopProcess;

/// One line of the log. `t` is seconds since the watch started; `unix_ms`
/// is wall-clock time, for lining the log up with other logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Record {
    Start {
        t: f64,
        unix_ms: u64,
        /// `run` or `watch`.
        mode: String,
        pid: u32,
        command: Vec<String>,
        interval_ms: u64,
        grace_ms: u64,
        total_memory: u64,
        limit: Option<u64>,
        warn: Option<u64>,
        min_available: Option<u64>,
        /// `memory.max` of the `--hard` cgroup, when one is in place.
        hard_limit: Option<u64>,
    },
    Sample {
        t: f64,
        unix_ms: u64,
        tree_rss: u64,
        processes: usize,
        top: Option<TopProcess>,
        system_used: u64,
        system_available: u64,
    },
    Warn {
        t: f64,
        unix_ms: u64,
        tree_rss: u64,
        threshold: u64,
    },
    /// The watchdog signalled the tree (`SIGTERM`, then `SIGKILL`).
    Kill {
        t: f64,
        unix_ms: u64,
        signal: String,
        reason: String,
        tree_rss: u64,
        pids: Vec<u32>,
    },
    /// A signal kiln-monitor received and passed on to the command.
    Forward {
        t: f64,
        unix_ms: u64,
        signal: String,
    },
    Exit {
        t: f64,
        unix_ms: u64,
        /// The command's own exit code, when it exited.
        code: Option<i32>,
        /// The signal that ended it, when one did.
        signal: Option<i32>,
        /// What kiln-monitor exits with.
        status: i32,
        stopped_by_watchdog: bool,
        reason: Option<String>,
        /// The kernel's high-water RSS of the largest single process of the
        /// tree (`getrusage`, what `/usr/bin/time` reports); `run` only.
        #[serde(default)]
        max_process_rss: Option<u64>,
    },
}

/// Appends records to the log, one line each, flushed per line so that a
/// killed kiln-monitor leaves every sample it took.
pub struct LogWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl LogWriter {
    pub fn create(path: &Path) -> Result<Self, MonitorError> {
        let file = File::create(path).map_err(|source| MonitorError::Io {
            what: format!("creating the log {}", path.display()),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    pub fn write(&mut self, record: &Record) -> Result<(), MonitorError> {
        serde_json::to_writer(&mut self.out, record).expect("records serialize");
        self.out
            .write_all(b"\n")
            .and_then(|()| self.out.flush())
            .map_err(|source| MonitorError::Io {
                what: format!("writing the log {}", self.path.display()),
                source,
            })
    }
}

/// Reads a whole log; a line that is not a record is an error naming it.
pub fn read_log(path: &Path) -> Result<Vec<Record>, MonitorError> {
    let io = |source| MonitorError::Io {
        what: format!("reading {}", path.display()),
        source,
    };
    let reader = BufReader::new(File::open(path).map_err(io)?);
    let mut records = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|e| MonitorError::BadLog {
            path: path.to_path_buf(),
            line: n + 1,
            column: e.column(),
            message: e.to_string(),
        })?;
        records.push(record);
    }
    Ok(records)
}
