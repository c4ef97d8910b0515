//! `_dataset.json`: what a keyed dataset holds, who made it, and its totals.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ContractError;
use crate::types::ColumnType;

pub const MANIFEST_FILE: &str = "_dataset.json";
pub const INDEX_FILE: &str = "_index.parquet";
pub const FORMAT_NAME: &str = "kiln-keyed-dataset";
/// Bumped on any change a reader of the previous version would misread.
pub const FORMAT_VERSION: u32 = 1;

/// How each key's file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Parquet,
    Csv,
    /// Arrow IPC file format (Feather v2).
    Arrow,
}

impl FileFormat {
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::Csv => "csv",
            FileFormat::Arrow => "arrow",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Producer {
    pub name: String,
    pub version: String,
    /// The command line that produced the dataset, for provenance.
    #[serde(default)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Statistics {
    pub keys: u64,
    pub rows: u64,
    /// Bytes of all key files (not counting `_index.parquet`).
    pub bytes: u64,
    /// First and last value of the date column over all keys, ISO 8601.
    pub first_date: Option<String>,
    pub last_date: Option<String>,
    /// Nulls per column over all keys (columns with none are omitted).
    #[serde(default)]
    pub null_counts: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub producer: Producer,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub key_column: String,
    pub date_column: String,
    pub file_format: FileFormat,
    /// Every column of every key file, in file order.
    pub columns: Vec<Column>,
    pub statistics: Statistics,
    /// Producer-specific facts (source file, TTL, feature spec hash…).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Manifest {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn date_type(&self) -> ColumnType {
        self.column(&self.date_column)
            .map(|c| c.column_type)
            .unwrap_or(ColumnType::Date32)
    }

    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// Check the invariants every reader relies on.
    pub fn validate(&self, path: &Path) -> Result<(), ContractError> {
        let bad = |reason: String| ContractError::BadManifest {
            path: path.to_path_buf(),
            reason,
        };
        if self.format != FORMAT_NAME {
            return Err(bad(format!(
                "format is '{}', expected '{FORMAT_NAME}'",
                self.format
            )));
        }
        if self.format_version > FORMAT_VERSION {
            return Err(ContractError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: self.format_version,
                supported: FORMAT_VERSION,
            });
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.columns {
            if !seen.insert(c.name.as_str()) {
                return Err(bad(format!("column '{}' listed twice", c.name)));
            }
        }
        match self.column(&self.key_column) {
            None => {
                return Err(bad(format!(
                    "key column '{}' not among columns",
                    self.key_column
                )))
            }
            Some(c) if c.column_type != ColumnType::Utf8 => {
                return Err(bad(format!(
                    "key column '{}' has type {}, must be string",
                    c.name, c.column_type
                )))
            }
            Some(_) => {}
        }
        match self.column(&self.date_column) {
            None => Err(bad(format!(
                "date column '{}' not among columns",
                self.date_column
            ))),
            Some(c) if !c.column_type.is_temporal() => Err(bad(format!(
                "date column '{}' has type {}, must be date32 or timestamp_us",
                c.name, c.column_type
            ))),
            Some(_) => Ok(()),
        }
    }

    pub fn read(dir: &Path) -> Result<Self, ContractError> {
        let path = dir.join(MANIFEST_FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ContractError::NotADataset {
                    path: dir.to_path_buf(),
                })
            }
            Err(e) => return Err(ContractError::io(&path, e)),
        };
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|e| ContractError::BadManifest {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        manifest.validate(&path)?;
        Ok(manifest)
    }

    /// Write `_dataset.json` into `dir` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), ContractError> {
        let mut text = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        text.push(b'\n');
        crate::atomic::write_atomic(&dir.join(MANIFEST_FILE), &text)
    }
}

/// `created_at` for a manifest written now.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
