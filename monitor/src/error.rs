//! Errors and exit statuses.

use std::path::PathBuf;

/// Exit statuses of kiln-monitor itself (docs/MONITOR.md). Anything else is
/// the command's own status, with a command killed by signal N reported as
/// 128 + N, as shells do.
pub mod exit {
    pub const OK: i32 = 0;
    /// The watchdog stopped the command (memory limit, `--min-available`, or
    /// the `--hard` cgroup limit).
    pub const STOPPED: i32 = 124;
    /// kiln-monitor itself failed: bad arguments, unwritable log, no such pid.
    pub const MONITOR_ERROR: i32 = 125;
    /// The command was found but could not be executed.
    pub const CANNOT_EXECUTE: i32 = 126;
    /// The command was not found.
    pub const NOT_FOUND: i32 = 127;
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("no process with pid {0}")]
    NoSuchProcess(u32),
    #[error("{}:{line}:{column}: not a kiln-monitor log record: {message}", path.display())]
    BadLog {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Chart { path: PathBuf, message: String },
}

impl MonitorError {
    pub fn exit_code(&self) -> i32 {
        match self {
            MonitorError::Spawn { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => exit::NOT_FOUND,
                _ => exit::CANNOT_EXECUTE,
            },
            _ => exit::MONITOR_ERROR,
        }
    }
}
