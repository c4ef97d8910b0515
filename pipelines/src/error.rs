//! kiln-pipeline's errors and exit statuses (docs/PIPELINES.md).

use std::path::PathBuf;

use crate::lock::LockError;
use crate::manifest::ManifestError;

pub mod exit {
    /// Every selected stage is up to date or ran successfully.
    pub const OK: i32 = 0;
    /// kiln-pipeline itself failed (I/O on its state, a corrupt lock).
    pub const ERROR: i32 = 1;
    /// The manifest or the command line is wrong; nothing ran.
    pub const INVALID: i32 = 2;
    /// A stage failed (its dependents were not run).
    pub const STAGE_FAILED: i32 = 3;
    /// Another kiln-pipeline run of the same manifest holds its lock.
    pub const BUSY: i32 = 4;
    // Interrupted by signal N: 128 + N (130 for Ctrl-C).
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Setup(String),
    #[error("another kiln-pipeline run of this manifest is in progress (it holds {})", .0.display())]
    Busy(PathBuf),
    #[error("{0}")]
    Lock(#[from] LockError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Contract(#[from] kiln_contracts::ContractError),
}

impl PipelineError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PipelineError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            PipelineError::Manifest(_) | PipelineError::Usage(_) | PipelineError::Setup(_) => {
                exit::INVALID
            }
            PipelineError::Busy(_) => exit::BUSY,
            PipelineError::Lock(_) | PipelineError::Io { .. } | PipelineError::Contract(_) => {
                exit::ERROR
            }
        }
    }
}
