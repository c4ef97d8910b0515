//! The static attributes table: one row per key (river segment area,
//! elevation…), CSV or parquet, read whole — it has one row per key, not per
//! day, so it is small next to the series.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::error::{Result, TrainError};

#[derive(Debug)]
pub struct AttributeTable {
    pub path: PathBuf,
    pub columns: Vec<String>,
    /// Raw values per key, in `columns` order; missing values NaN.
    pub rows: HashMap<String, Vec<f64>>,
}

impl AttributeTable {
    pub fn read(path: &Path, key_column: &str, columns: &[String]) -> Result<Self> {
        let is_parquet = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
        let rows = if is_parquet {
            read_parquet(path, key_column, columns)?
        } else {
            read_csv(path, key_column, columns)?
        };
        Ok(Self {
            path: path.to_owned(),
            columns: columns.to_vec(),
            rows,
        })
    }
}

fn missing_column(path: &Path, column: &str, available: &[String]) -> TrainError {
    TrainError::data(
        path,
        format!(
            "no column {column:?} in the attributes table (it has: {})",
            available.join(", ")
        ),
    )
}

fn duplicate_key(path: &Path, line: u64, column: &str, key: &str) -> TrainError {
    TrainError::BadRow {
        path: path.to_owned(),
        line,
        column: column.to_owned(),
        message: format!("key {key:?} appears twice; attributes must be one row per key"),
    }
}

fn read_csv(
    path: &Path,
    key_column: &str,
    columns: &[String],
) -> Result<HashMap<String, Vec<f64>>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| csv_error(path, e))?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| csv_error(path, e))?
        .iter()
        .map(str::to_owned)
        .collect();
    let find = |c: &str| {
        header
            .iter()
            .position(|h| h == c)
            .ok_or_else(|| missing_column(path, c, &header))
    };
    let key_at = find(key_column)?;
    let at: Vec<usize> = columns.iter().map(|c| find(c)).collect::<Result<_>>()?;
    let mut rows = HashMap::new();
    let mut record = csv::StringRecord::new();
    while reader
        .read_record(&mut record)
        .map_err(|e| csv_error(path, e))?
    {
        let line = record.position().map_or(0, |p| p.line());
        let key = record.get(key_at).unwrap_or("").to_owned();
        let mut values = Vec::with_capacity(at.len());
        for (&i, name) in at.iter().zip(columns) {
            let text = record.get(i).unwrap_or("").trim();
            let v = if text.is_empty() || text.eq_ignore_ascii_case("nan") || text == "NA" {
                f64::NAN
            } else {
                text.parse::<f64>().map_err(|_| TrainError::BadRow {
                    path: path.to_owned(),
                    line,
                    column: name.clone(),
                    message: format!("{text:?} is not a number"),
                })?
            };
            values.push(v);
        }
        if rows.insert(key.clone(), values).is_some() {
            return Err(duplicate_key(path, line, key_column, &key));
        }
    }
    Ok(rows)
}

fn csv_error(path: &Path, e: csv::Error) -> TrainError {
    match e.position() {
        Some(p) => TrainError::BadRow {
            path: path.to_owned(),
            line: p.line(),
            column: "-".into(),
            message: e.to_string(),
        },
        None => TrainError::data(path, e.to_string()),
    }
}

fn read_parquet(
    path: &Path,
    key_column: &str,
    columns: &[String],
) -> Result<HashMap<String, Vec<f64>>> {
    let file = File::open(path).map_err(|e| TrainError::io(path, e))?;
    let bad = |e: parquet::errors::ParquetError| {
        TrainError::data(path, format!("unreadable parquet: {e}"))
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(bad)?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let find = |c: &str| {
        names
            .iter()
            .position(|h| h == c)
            .ok_or_else(|| missing_column(path, c, &names))
    };
    let key_at = find(key_column)?;
    let at: Vec<usize> = columns.iter().map(|c| find(c)).collect::<Result<_>>()?;
    let mut leaves: Vec<usize> = at.clone();
    leaves.push(key_at);
    let mask = ProjectionMask::roots(builder.parquet_schema(), leaves);
    let reader = builder.with_projection(mask).build().map_err(bad)?;
    let mut rows = HashMap::new();
    let mut row_number = 0u64;
    for batch in reader {
        let batch =
            batch.map_err(|e| TrainError::data(path, format!("unreadable parquet: {e}")))?;
        let as_type = |name: &str, to: &DataType| {
            let col = batch.column_by_name(name).expect("projected");
            cast(col, to).map_err(|e| {
                TrainError::data(
                    path,
                    format!(
                        "column {name:?} ({}) cannot be read as {to}: {e}",
                        col.data_type()
                    ),
                )
            })
        };
        let keys = as_type(key_column, &DataType::Utf8)?;
        let keys = keys.as_string::<i32>();
        let values: Vec<_> = columns
            .iter()
            .map(|c| as_type(c, &DataType::Float64))
            .collect::<Result<_>>()?;
        for r in 0..batch.num_rows() {
            row_number += 1;
            if keys.is_null(r) {
                return Err(TrainError::BadRow {
                    path: path.to_owned(),
                    line: row_number,
                    column: key_column.to_owned(),
                    message: "the key is null".into(),
                });
            }
            let key = keys.value(r).to_owned();
            let v: Vec<f64> = values
                .iter()
                .map(|a| {
                    let a = a.as_primitive::<Float64Type>();
                    if a.is_null(r) {
                        f64::NAN
                    } else {
                        a.value(r)
                    }
                })
                .collect();
            if rows.insert(key.clone(), v).is_some() {
                return Err(duplicate_key(path, row_number, key_column, &key));
            }
        }
    }
    Ok(rows)
}
