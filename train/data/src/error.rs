use std::path::PathBuf;

use kiln_contracts::ContractError;

/// Why training, evaluation or prediction failed. Each variant prints as one
/// line naming the file (and row/column where there is one).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration or command line asks for something impossible.
    #[error("{0}")]
    Config(String),
    /// The data cannot be trained on as configured (unknown column, no
    /// windows, NaN-only target…).
    #[error("{path}: {message}")]
    BadData { path: PathBuf, message: String },
    /// A row of an input table (attributes) is bad.
    #[error("{path}:{line}: column {column}: {message}")]
    BadRow {
        path: PathBuf,
        line: u64,
        column: String,
        message: String,
    },
    /// The run directory already holds a run (and neither --resume nor --force).
    #[error("{0}")]
    RunExists(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// libtorch failed (message from tch).
    #[error("libtorch: {0}")]
    Torch(String),
    #[error("{0}")]
    Internal(String),
}

/// Exit statuses, documented in `docs/TRAIN.md`.
pub mod exit {
    pub const OK: i32 = 0;
    /// I/O failure, libtorch failure, or another error not caused by input.
    pub const FAILURE: i32 = 1;
    /// Bad command line (also clap's own status).
    pub const USAGE: i32 = 2;
    /// Bad configuration or data: unknown column, no windows, corrupt file,
    /// CUDA requested without a GPU.
    pub const BAD_INPUT: i32 = 3;
    /// The run directory holds a run; pass --resume or --force.
    pub const RUN_EXISTS: i32 = 4;
}

impl TrainError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::BadData {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            TrainError::Config(_) | TrainError::BadData { .. } | TrainError::BadRow { .. } => {
                exit::BAD_INPUT
            }
            // A dataset that violates its contract is bad input too.
            TrainError::Contract(e) if !matches!(e, ContractError::Io { .. }) => exit::BAD_INPUT,
            TrainError::RunExists(_) => exit::RUN_EXISTS,
            _ => exit::FAILURE,
        }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
