use std::path::PathBuf;

use kiln_contracts::ContractError;

/// Why a run could not start or finish. Failures of single symbols are not
/// errors: they are listed in the summary and give exit status 3.
#[derive(Debug, thiserror::Error)]
pub enum PreheatError {
    #[error("{0}")]
    Usage(String),
    /// The source cannot be used: connection, credentials, table, columns.
    /// Always one line, with any password already removed.
    #[error("{0}")]
    Source(String),
    /// A dump file violates what a kline table must be.
    #[error("{path}:{line}: {message}")]
    BadInput {
        path: PathBuf,
        line: u64,
        message: String,
    },
    /// The cache directory cannot be used by this run (another run holds it,
    /// it was filled from another source or with other columns).
    #[error("{path}: {message}")]
    Cache { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Contract(#[from] ContractError),
}

/// Exit statuses, documented in `docs/PREHEAT.md`.
pub mod exit {
    pub const OK: u8 = 0;
    /// The source or the cache could not be used; nothing was changed.
    pub const FAILURE: u8 = 1;
    /// Bad command line (also clap's own status).
    pub const USAGE: u8 = 2;
    /// Some symbols failed (the others were written), or a dump is malformed.
    pub const SYMBOLS_FAILED: u8 = 3;
    /// The cache belongs to another source, has other columns, or is in use.
    pub const CACHE_CONFLICT: u8 = 4;
}

impl PreheatError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub fn cache(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Cache {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The cache directory is not ours to use (or not now).
    pub fn owned(path: &std::path::Path, e: kiln_contracts::owned::OwnedError) -> Self {
        match e {
            kiln_contracts::owned::OwnedError::Conflict(message) => Self::cache(path, message),
            kiln_contracts::owned::OwnedError::Contract(c) => Self::Contract(c),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            PreheatError::Usage(_) => exit::USAGE,
            PreheatError::BadInput { .. } => exit::SYMBOLS_FAILED,
            PreheatError::Cache { .. }
            | PreheatError::Contract(ContractError::NotReplaceable { .. }) => exit::CACHE_CONFLICT,
            _ => exit::FAILURE,
        }
    }
}
