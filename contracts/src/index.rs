//! `_index.parquet`: one row per key — what a reader needs to list keys, find
//! a key's file and plan a split by date without opening any key file.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, Int64Array, RecordBatch, RecordBatchReader, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use crate::atomic::AtomicFile;
use crate::error::ContractError;
use crate::keys;
use crate::manifest::{FileFormat, INDEX_FILE};
use crate::types::ColumnType;

/// One key of a dataset. Dates are in the date column's unit: days since the
/// epoch for `date32`, microseconds for `timestamp_us`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub key: String,
    /// File name relative to the dataset directory.
    pub file: String,
    pub rows: u64,
    pub first_date: i64,
    pub last_date: i64,
    pub bytes: u64,
}

/// The index file name for `key` in a dataset stored as `format`.
pub fn key_file_name(key: &str, format: FileFormat) -> String {
    format!("{}.{}", keys::file_stem(key), format.extension())
}

pub fn index_schema(date_type: ColumnType) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("first_date", date_type.arrow(), false),
        Field::new("last_date", date_type.arrow(), false),
        Field::new("bytes", DataType::Int64, false),
    ]))
}

fn date_array(values: impl Iterator<Item = i64>, date_type: ColumnType) -> ArrayRef {
    match date_type {
        ColumnType::TimestampUs => Arc::new(TimestampMicrosecondArray::from_iter_values(values)),
        _ => Arc::new(Date32Array::from_iter_values(values.map(|d| d as i32))),
    }
}

/// Write the index, sorted by key, atomically into `dir`.
pub fn write_index(
    dir: &Path,
    entries: &mut [IndexEntry],
    date_type: ColumnType,
) -> Result<(), ContractError> {
    entries.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    write_index_with_extra(dir, entries, date_type, Vec::new())
}

/// Write the index with producer columns appended after the contract's six
/// (`entries` already sorted by key; each extra column one value per entry,
/// in that order). Readers that do not know a column ignore it.
pub fn write_index_with_extra(
    dir: &Path,
    entries: &[IndexEntry],
    date_type: ColumnType,
    extra: Vec<(Field, ArrayRef)>,
) -> Result<(), ContractError> {
    let path = dir.join(INDEX_FILE);
    debug_assert!(entries.windows(2).all(|w| w[0].key < w[1].key));
    let mut fields: Vec<Field> = index_schema(date_type)
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            entries.iter().map(|e| &e.key),
        )),
        Arc::new(StringArray::from_iter_values(
            entries.iter().map(|e| &e.file),
        )),
        Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|e| e.rows as i64),
        )),
        date_array(entries.iter().map(|e| e.first_date), date_type),
        date_array(entries.iter().map(|e| e.last_date), date_type),
        Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|e| e.bytes as i64),
        )),
    ];
    for (field, values) in extra {
        fields.push(field);
        columns.push(values);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch =
        RecordBatch::try_new(schema.clone(), columns).map_err(|source| ContractError::Arrow {
            path: path.clone(),
            source,
        })?;
    let mut out = AtomicFile::create(&path)?;
    let parquet_err = |source| ContractError::Parquet {
        path: path.clone(),
        source,
    };
    let mut writer = ArrowWriter::try_new(out.take_file(), schema, None).map_err(parquet_err)?;
    writer.write(&batch).map_err(parquet_err)?;
    let file = writer.into_inner().map_err(parquet_err)?;
    out.commit_file(file)
}

/// One producer column of the index in `dir` (see [`write_index_with_extra`]),
/// in key order, or `None` when the index has no such column.
pub fn read_index_column(dir: &Path, name: &str) -> Result<Option<ArrayRef>, ContractError> {
    let path = dir.join(INDEX_FILE);
    let bad = |reason: String| ContractError::BadIndex {
        path: path.clone(),
        reason,
    };
    let file = File::open(&path).map_err(|e| ContractError::io(&path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
    let Ok(root) = builder.schema().index_of(name) else {
        return Ok(None);
    };
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [root]);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let batch =
        arrow::compute::concat_batches(&schema, &batches).map_err(|e| bad(e.to_string()))?;
    Ok(Some(batch.column(0).clone()))
}

/// Read and validate the index of the dataset in `dir`.
pub fn read_index(
    dir: &Path,
    date_type: ColumnType,
    format: FileFormat,
) -> Result<Vec<IndexEntry>, ContractError> {
    let path = dir.join(INDEX_FILE);
    let bad = |reason: String| ContractError::BadIndex {
        path: path.clone(),
        reason,
    };
    let file = File::open(&path).map_err(|e| ContractError::io(&path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| bad(e.to_string()))?;
    let expected = index_schema(date_type);
    let mut entries = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        for field in expected.fields() {
            let col = batch
                .column_by_name(field.name())
                .ok_or_else(|| bad(format!("no column '{}'", field.name())))?;
            if col.data_type() != field.data_type() {
                return Err(bad(format!(
                    "column '{}' has type {}, expected {}",
                    field.name(),
                    col.data_type(),
                    field.data_type()
                )));
            }
            if col.null_count() > 0 {
                return Err(bad(format!("column '{}' has nulls", field.name())));
            }
        }
        let col = |name: &str| batch.column_by_name(name).expect("checked above").clone();
        let strings = |name: &str| {
            col(name)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("checked")
                .clone()
        };
        let ints = |name: &str| {
            col(name)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("checked")
                .clone()
        };
        let dates = |name: &str| -> Vec<i64> {
            let c = col(name);
            match date_type {
                ColumnType::TimestampUs => c
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .expect("checked")
                    .values()
                    .to_vec(),
                _ => c
                    .as_any()
                    .downcast_ref::<Date32Array>()
                    .expect("checked")
                    .values()
                    .iter()
                    .map(|&d| i64::from(d))
                    .collect(),
            }
        };
        let (key, file, rows, bytes) =
            (strings("key"), strings("file"), ints("rows"), ints("bytes"));
        let (first, last) = (dates("first_date"), dates("last_date"));
        for i in 0..batch.num_rows() {
            entries.push(IndexEntry {
                key: key.value(i).to_owned(),
                file: file.value(i).to_owned(),
                rows: u64::try_from(rows.value(i))
                    .map_err(|_| bad(format!("row {i}: negative rows")))?,
                first_date: first[i],
                last_date: last[i],
                bytes: u64::try_from(bytes.value(i))
                    .map_err(|_| bad(format!("row {i}: negative bytes")))?,
            });
        }
    }
    for (i, e) in entries.iter().enumerate() {
        // The file name must be exactly what the key encodes to: this is what
        // keeps a tampered index from pointing outside the directory.
        if !keys::is_contained_file_name(&e.file) || e.file != key_file_name(&e.key, format) {
            return Err(bad(format!(
                "row {i}: file '{}' is not the file name of key '{}'",
                e.file, e.key
            )));
        }
        if e.first_date > e.last_date {
            return Err(bad(format!(
                "row {i}: first_date after last_date for key '{}'",
                e.key
            )));
        }
        if i > 0 && entries[i - 1].key >= e.key {
            return Err(bad(format!(
                "keys not sorted and unique at row {i} ('{}' after '{}')",
                e.key,
                entries[i - 1].key
            )));
        }
    }
    Ok(entries)
}
