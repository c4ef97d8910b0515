//! The column types a keyed dataset may hold, and their Arrow equivalents.

use arrow::datatypes::{DataType, TimeUnit};
use serde::{Deserialize, Serialize};

/// A column's type in the contract. Deliberately few: numbers are real floats
/// (or 64-bit integers when asked for), dates are real dates, text is UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnType {
    #[serde(rename = "float64")]
    Float64,
    #[serde(rename = "float32")]
    Float32,
    #[serde(rename = "int64")]
    Int64,
    /// Days since 1970-01-01 (Arrow `Date32`).
    #[serde(rename = "date32")]
    Date32,
    /// Microseconds since 1970-01-01T00:00:00, no time zone (Arrow
    /// `Timestamp(Microsecond, None)`).
    #[serde(rename = "timestamp_us")]
    TimestampUs,
    #[serde(rename = "string")]
    Utf8,
}

impl ColumnType {
    pub const ALL: [ColumnType; 6] = [
        ColumnType::Float64,
        ColumnType::Float32,
        ColumnType::Int64,
        ColumnType::Date32,
        ColumnType::TimestampUs,
        ColumnType::Utf8,
    ];

    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Float32 => DataType::Float32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Date32 => DataType::Date32,
            ColumnType::TimestampUs => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::Utf8 => DataType::Utf8,
        }
    }

    pub fn from_arrow(dt: &DataType) -> Option<Self> {
        Self::ALL.into_iter().find(|t| &t.arrow() == dt)
    }

    /// The name used in manifests and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Float64 => "float64",
            ColumnType::Float32 => "float32",
            ColumnType::Int64 => "int64",
            ColumnType::Date32 => "date32",
            ColumnType::TimestampUs => "timestamp_us",
            ColumnType::Utf8 => "string",
        }
    }

    /// Parse a type name as users write it (`float`, `f32`, `date`, `str`…).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "float64" | "f64" | "double" | "float" => ColumnType::Float64,
            "float32" | "f32" | "single" => ColumnType::Float32,
            "int64" | "i64" | "int" | "integer" => ColumnType::Int64,
            "date32" | "date" => ColumnType::Date32,
            "timestamp_us" | "timestamp" | "datetime" => ColumnType::TimestampUs,
            "string" | "str" | "utf8" | "text" => ColumnType::Utf8,
            _ => return None,
        })
    }

    pub fn is_temporal(self) -> bool {
        matches!(self, ColumnType::Date32 | ColumnType::TimestampUs)
    }

    pub fn is_float(self) -> bool {
        matches!(self, ColumnType::Float64 | ColumnType::Float32)
    }
}

impl std::fmt::Display for ColumnType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
