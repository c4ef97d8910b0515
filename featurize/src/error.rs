use std::path::PathBuf;

use kiln_contracts::ContractError;

/// Why a run could not start or finish. A symbol whose klines are bad is
/// not an error of the run: it is listed in the summary (exit status 3).
#[derive(Debug, thiserror::Error)]
pub enum FeaturizeError {
    #[error("{0}")]
    Usage(String),
    /// The feature spec is malformed or asks for something undefined.
    #[error("{0}")]
    Spec(String),
    /// The input dataset cannot be featurized (not a dataset, no close…).
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    /// The output directory cannot be used by this run.
    #[error("{path}: {message}")]
    Output { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Contract(#[from] ContractError),
}

/// Exit statuses, documented in `docs/FEATURIZE.md`.
pub mod exit {
    pub const OK: u8 = 0;
    /// The input or the output could not be used; nothing was changed.
    pub const FAILURE: u8 = 1;
    /// Bad command line or feature spec (also clap's own status).
    pub const USAGE: u8 = 2;
    /// Some symbols failed (bad klines); the others were written.
    pub const SYMBOLS_FAILED: u8 = 3;
    /// The output belongs to another input, or another run holds it.
    pub const OUTPUT_CONFLICT: u8 = 4;
}

impl FeaturizeError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub fn output(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Output {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The output directory is not ours to use (or not now).
    pub fn owned(path: &std::path::Path, e: kiln_contracts::owned::OwnedError) -> Self {
        match e {
            kiln_contracts::owned::OwnedError::Conflict(message) => Self::output(path, message),
            kiln_contracts::owned::OwnedError::Contract(c) => Self::Contract(c),
        }
    }

    pub fn input(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Input {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            FeaturizeError::Usage(_) | FeaturizeError::Spec(_) => exit::USAGE,
            FeaturizeError::Output { .. }
            | FeaturizeError::Contract(ContractError::NotReplaceable { .. }) => {
                exit::OUTPUT_CONFLICT
            }
            _ => exit::FAILURE,
        }
    }
}
