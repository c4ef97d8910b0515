use std::path::PathBuf;

/// Everything that can be wrong with a keyed dataset on disk, or with writing one.
///
/// Each variant names the file (and where it makes sense the column or key) so
/// that a stage can print one line a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a Kiln keyed dataset (no _dataset.json); produce it with kiln-split, kiln-preheat or kiln-featurize")]
    NotADataset { path: PathBuf },
    #[error("{path}: invalid manifest: {reason}")]
    BadManifest { path: PathBuf, reason: String },
    #[error("{path}: format version {found} is newer than this build understands ({supported}); upgrade Kiln")]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path}: corrupt index: {reason}")]
    BadIndex { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error("{path}: column '{column}' {reason}")]
    BadColumn {
        path: PathBuf,
        column: String,
        reason: String,
    },
    #[error("no key '{key}' in dataset {path}")]
    UnknownKey { path: PathBuf, key: String },
    #[error("{path}: no column '{column}' (columns: {available})")]
    UnknownColumn {
        path: PathBuf,
        column: String,
        available: String,
    },
    #[error("{path} already exists; pass --force to replace it")]
    OutputExists { path: PathBuf },
    #[error("{path} exists and is not a Kiln dataset (no _dataset.json); refusing to replace it even with --force")]
    NotReplaceable { path: PathBuf },
    #[error("{path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },
}

impl ContractError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Attach a path to an I/O result, the way every caller here wants it.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T, ContractError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T, ContractError> {
        self.map_err(|e| ContractError::io(path, e))
    }
}
