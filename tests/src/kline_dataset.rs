//! Write kline series straight into a keyed dataset shaped like
//! kiln-preheat's cache (`symbol`, `trade_date`, OHLC float64, `volume`
//! int64, `amount` float64, `turnover` nullable float64), so kiln-featurize's
//! tests and benchmarks can shape the data exactly: gaps, flat stretches,
//! extreme prices, bad rows.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{Field, Schema};
use kiln_contracts::dataset::{Codec, KeyFileWriter};
use kiln_contracts::index::{write_index, IndexEntry};
use kiln_contracts::manifest::{Column, Producer, Statistics, FORMAT_NAME, FORMAT_VERSION};
use kiln_contracts::{ColumnType, FileFormat, Manifest};

use crate::klines::Kline;

/// One day of one symbol.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// Days since 1970-01-01.
    pub date: i32,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
    pub turnover: Option<f64>,
}

impl From<&Kline> for Bar {
    fn from(k: &Kline) -> Self {
        Self {
            date: k.trade_date,
            open: k.open as f64 / 100.0,
            high: k.high as f64 / 100.0,
            low: k.low as f64 / 100.0,
            close: k.close as f64 / 100.0,
            volume: k.volume,
            turnover: k.turnover.map(|t| t as f64 / 10_000.0),
        }
    }
}

const COLUMNS: [(&str, ColumnType); 9] = [
    ("symbol", ColumnType::Utf8),
    ("trade_date", ColumnType::Date32),
    ("open", ColumnType::Float64),
    ("high", ColumnType::Float64),
    ("low", ColumnType::Float64),
    ("close", ColumnType::Float64),
    ("volume", ColumnType::Int64),
    ("amount", ColumnType::Float64),
    ("turnover", ColumnType::Float64),
];

/// One symbol's rows as a record batch of the kline schema.
pub fn kline_batch(symbol: &str, bars: &[Bar]) -> RecordBatch {
    let fields: Vec<Field> = COLUMNS
        .iter()
        .map(|(n, t)| Field::new(*n, t.arrow(), !matches!(*n, "symbol" | "trade_date")))
        .collect();
    let f = |get: fn(&Bar) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(bars.iter().map(get)))
    };
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(bars.iter().map(|_| symbol))),
        Arc::new(Date32Array::from_iter_values(bars.iter().map(|b| b.date))),
        f(|b| b.open),
        f(|b| b.high),
        f(|b| b.low),
        f(|b| b.close),
        Arc::new(Int64Array::from_iter_values(bars.iter().map(|b| b.volume))),
        f(|b| b.volume as f64 * (b.open + b.high + b.low + b.close) / 4.0),
        Arc::new(Float64Array::from_iter(bars.iter().map(|b| b.turnover))),
    ];
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("kline schema")
}

/// Write `series` into `dir` (created) as a parquet keyed dataset.
pub fn write_kline_dataset(dir: &Path, series: &[(String, Vec<Bar>)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let writer = KeyFileWriter::new(
        FileFormat::Parquet,
        Codec::Snappy,
        "symbol",
        "trade_date",
        ColumnType::Date32,
        true,
    );
    let mut entries: Vec<IndexEntry> = Vec::new();
    for (symbol, bars) in series {
        if bars.is_empty() {
            continue;
        }
        let entry = writer
            .write(dir, symbol, &kline_batch(symbol, bars), &[])
            .map_err(std::io::Error::other)?;
        entries.push(entry);
    }
    write_index(dir, &mut entries, ColumnType::Date32).map_err(std::io::Error::other)?;
    let manifest = Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        producer: Producer {
            name: "kiln-testkit".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            command: vec![],
        },
        created_at: "2026-01-01T00:00:00Z".into(),
        key_column: "symbol".into(),
        date_column: "trade_date".into(),
        file_format: FileFormat::Parquet,
        columns: COLUMNS
            .iter()
            .map(|(n, t)| Column {
                name: (*n).into(),
                column_type: *t,
            })
            .collect(),
        statistics: Statistics {
            keys: entries.len() as u64,
            rows: entries.iter().map(|e| e.rows).sum(),
            bytes: entries.iter().map(|e| e.bytes).sum(),
            ..Default::default()
        },
        extra: Default::default(),
    };
    manifest.write(dir).map_err(std::io::Error::other)
}
