use std::path::PathBuf;

use kiln_contracts::ContractError;

/// Why a split failed. Every variant prints as one line naming the file and,
/// for bad data, the line (or row) and column.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// The input violates what a keyed table must be; nothing was written.
    #[error("{path}:{line}: {message}")]
    BadInput {
        path: PathBuf,
        /// 1-based physical line of a CSV record, or 1-based row of parquet input.
        line: u64,
        message: String,
    },
    /// A problem with the input as a whole (empty file, missing column).
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Contract(#[from] ContractError),
    #[error("{0}")]
    Internal(String),
}

/// Exit statuses, documented in `docs/SPLIT.md`.
pub mod exit {
    pub const OK: i32 = 0;
    /// I/O failure or another error not caused by the input's content.
    pub const FAILURE: i32 = 1;
    /// Bad command line (also clap's own status).
    pub const USAGE: i32 = 2;
    /// The input data is bad (line and column given).
    pub const BAD_INPUT: i32 = 3;
    /// The output exists and `--force` was not given.
    pub const OUTPUT_EXISTS: i32 = 4;
}

impl SplitError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            SplitError::BadInput { .. } | SplitError::BadFile { .. } => exit::BAD_INPUT,
            SplitError::Usage(_) => exit::USAGE,
            SplitError::Contract(
                ContractError::OutputExists { .. } | ContractError::NotReplaceable { .. },
            ) => exit::OUTPUT_EXISTS,
            _ => exit::FAILURE,
        }
    }
}
