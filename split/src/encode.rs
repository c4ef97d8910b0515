//! Turning one input row (a CSV record or a parquet row) into a spilled row,
//! with an error that names the line and column when a field is bad.

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Float32Array, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};
use kiln_contracts::{dates, keys, ColumnType};

use crate::schema::{is_null_token, TablePlan};
use crate::spill::{bucket_of, RowWriter, SpillWriter};

/// What to do with a key that is not a safe file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsafeKeys {
    Encode,
    Error,
}

/// A row that cannot be taken as it is.
#[derive(Debug, Clone)]
pub struct RowError {
    pub line: u64,
    /// 0-based column index, when one field is to blame.
    pub column: Option<usize>,
    pub message: String,
    /// Not the row's fault (the spill could not be written): never skipped.
    pub fatal: bool,
}

/// Filters and policies applied while encoding.
#[derive(Debug, Clone)]
pub struct EncodeRules {
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub unsafe_keys: UnsafeKeys,
}

/// Counters a worker keeps.
#[derive(Debug, Default, Clone, Copy)]
pub struct EncodeStats {
    pub rows: u64,
    pub filtered: u64,
    pub rejected: u64,
}

/// The outcome of one row.
pub enum Outcome {
    Kept,
    Filtered,
}

fn show(field: &[u8]) -> String {
    let text = String::from_utf8_lossy(field);
    if text.chars().count() > 40 {
        format!("{:?}…", text.chars().take(40).collect::<String>())
    } else {
        format!("{text:?}")
    }
}

pub struct Encoder<'a> {
    pub plan: &'a TablePlan,
    pub rules: &'a EncodeRules,
    value_types: Vec<ColumnType>,
    buckets: usize,
}

impl<'a> Encoder<'a> {
    pub fn new(plan: &'a TablePlan, rules: &'a EncodeRules, buckets: usize) -> Self {
        Self {
            plan,
            rules,
            value_types: plan.value_types(),
            buckets,
        }
    }

    fn err(&self, line: u64, column: usize, message: String) -> RowError {
        let c = &self.plan.columns[column];
        RowError {
            line,
            column: Some(column),
            message: format!("column '{}' (field {}): {message}", c.name, column + 1),
            fatal: false,
        }
    }

    fn type_err(&self, line: u64, column: usize, field: &[u8]) -> RowError {
        let c = &self.plan.columns[column];
        let what = if std::str::from_utf8(field).is_err() {
            format!("{} is not valid UTF-8", show(field))
        } else {
            format!("{} is not a {}", show(field), c.ty)
        };
        let hint = if c.inferred {
            format!(
                " (type inferred from the first {} rows; override with --type {}=string or another type)",
                self.plan.sample_rows, c.name
            )
        } else {
            String::new()
        };
        self.err(line, column, format!("{what}{hint}"))
    }

    fn check_key(&self, line: u64, key: &[u8]) -> Result<(), RowError> {
        let k = self.plan.key_idx;
        if key.is_empty() {
            return Err(self.err(line, k, "empty key".into()));
        }
        let Ok(text) = std::str::from_utf8(key) else {
            return Err(self.err(line, k, format!("key {} is not valid UTF-8", show(key))));
        };
        if key.len() > u16::MAX as usize {
            return Err(self.err(line, k, "key longer than 65535 bytes".into()));
        }
        if self.rules.unsafe_keys == UnsafeKeys::Error && !keys::is_plain(text) {
            return Err(self.err(
                line,
                k,
                format!(
                    "key {} is not a safe file name (allowed: letters, digits, '.', '_', '-', starting with a letter or digit; drop --unsafe-keys error to encode it)",
                    show(key)
                ),
            ));
        }
        Ok(())
    }

    fn in_range(&self, date: i64) -> bool {
        self.rules.start.is_none_or(|s| date >= s) && self.rules.end.is_none_or(|e| date <= e)
    }

    fn parse_date(&self, line: u64, field: &[u8]) -> Result<i64, RowError> {
        let col = self.plan.date_idx;
        let f = field.trim_ascii();
        if is_null_token(f) {
            return Err(self.err(line, col, "empty date".into()));
        }
        let parsed = match self.plan.date_type() {
            ColumnType::TimestampUs => dates::parse_timestamp_us(f),
            _ => dates::parse_date(f).map(i64::from),
        };
        parsed.ok_or_else(|| {
            self.err(
                line,
                col,
                format!(
                    "{} is not a {} (expected YYYY-MM-DD{})",
                    show(field),
                    if self.plan.date_type() == ColumnType::TimestampUs {
                        "timestamp"
                    } else {
                        "date"
                    },
                    if self.plan.date_type() == ColumnType::TimestampUs {
                        " HH:MM:SS"
                    } else {
                        ""
                    }
                ),
            )
        })
    }

    /// Encode one CSV record into the spill.
    pub fn csv_record(
        &self,
        line: u64,
        record: &csv::ByteRecord,
        spill: &mut SpillWriter,
    ) -> Result<Outcome, RowError> {
        let plan = self.plan;
        if record.len() != plan.columns.len() {
            return Err(RowError {
                line,
                column: None,
                message: format!(
                    "expected {} fields, found {}",
                    plan.columns.len(),
                    record.len()
                ),
                fatal: false,
            });
        }
        let key = &record[plan.key_idx];
        self.check_key(line, key)?;
        let date = self.parse_date(line, &record[plan.date_idx])?;
        if !self.in_range(date) {
            return Ok(Outcome::Filtered);
        }
        let bucket = bucket_of(key, self.buckets, 0);
        let n = plan.value_idx.len();
        let mut row = RowWriter::begin(spill.buffer(bucket), line, date, key, n);
        for (vi, (&col, &ty)) in plan.value_idx.iter().zip(&self.value_types).enumerate() {
            let raw = &record[col];
            let field = raw.trim_ascii();
            if is_null_token(field) {
                row.null(vi);
                continue;
            }
            let ok = match ty {
                ColumnType::Float64 => fast_float2::parse::<f64, _>(field)
                    .map(|v| row.put(&v.to_le_bytes()))
                    .is_ok(),
                ColumnType::Float32 => fast_float2::parse::<f32, _>(field)
                    .map(|v| row.put(&v.to_le_bytes()))
                    .is_ok(),
                ColumnType::Int64 => std::str::from_utf8(field)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .map(|v| row.put(&v.to_le_bytes()))
                    .is_some(),
                ColumnType::Date32 => dates::parse_date(field)
                    .map(|v| row.put(&v.to_le_bytes()))
                    .is_some(),
                ColumnType::TimestampUs => dates::parse_timestamp_us(field)
                    .map(|v| row.put(&v.to_le_bytes()))
                    .is_some(),
                ColumnType::Utf8 => std::str::from_utf8(raw).map(|_| row.put_str(raw)).is_ok(),
            };
            if !ok {
                row.abort();
                return Err(self.type_err(line, col, raw));
            }
        }
        let len = row.finish();
        spill.added(bucket, len).map_err(|e| RowError {
            line,
            column: None,
            message: format!("writing spill: {e}"),
            fatal: true,
        })?;
        Ok(Outcome::Kept)
    }

    /// Cast a parquet batch's columns to the planned types.
    pub fn cast_batch(
        &self,
        first_row: u64,
        batch: &arrow::array::RecordBatch,
    ) -> Result<Vec<ArrayRef>, RowError> {
        let mut out = Vec::with_capacity(batch.num_columns());
        for (i, c) in self.plan.columns.iter().enumerate() {
            let col = batch.column(i);
            let target = match c.ty {
                ColumnType::TimestampUs => DataType::Timestamp(TimeUnit::Microsecond, None),
                t => t.arrow(),
            };
            let cast = arrow::compute::cast(col, &target).map_err(|e| RowError {
                line: first_row,
                column: Some(i),
                message: format!(
                    "column '{}': cannot convert {} to {}: {e}",
                    c.name,
                    col.data_type(),
                    c.ty
                ),
                fatal: false,
            })?;
            // A cast that turned values into nulls lost data: report the row.
            if cast.null_count() > col.null_count() {
                let row = (0..col.len())
                    .find(|&r| cast.is_null(r) && !col.is_null(r))
                    .unwrap_or(0);
                return Err(RowError {
                    line: first_row + row as u64,
                    column: Some(i),
                    message: format!(
                        "column '{}' (field {}): value does not convert to {}",
                        c.name,
                        i + 1,
                        c.ty
                    ),
                    fatal: false,
                });
            }
            out.push(cast);
        }
        Ok(out)
    }

    /// Encode row `r` of a cast parquet batch.
    pub fn batch_row(
        &self,
        row_number: u64,
        columns: &[ArrayRef],
        r: usize,
        spill: &mut SpillWriter,
    ) -> Result<Outcome, RowError> {
        let plan = self.plan;
        let keys_col: &StringArray = columns[plan.key_idx].as_string();
        if keys_col.is_null(r) {
            return Err(self.err(row_number, plan.key_idx, "empty key".into()));
        }
        let key = keys_col.value(r).as_bytes();
        self.check_key(row_number, key)?;
        let date_col = &columns[plan.date_idx];
        if date_col.is_null(r) {
            return Err(self.err(row_number, plan.date_idx, "empty date".into()));
        }
        let date = match plan.date_type() {
            ColumnType::TimestampUs => date_col
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("cast")
                .value(r),
            _ => i64::from(
                date_col
                    .as_any()
                    .downcast_ref::<Date32Array>()
                    .expect("cast")
                    .value(r),
            ),
        };
        if !self.in_range(date) {
            return Ok(Outcome::Filtered);
        }
        let bucket = bucket_of(key, self.buckets, 0);
        let mut row = RowWriter::begin(
            spill.buffer(bucket),
            row_number,
            date,
            key,
            plan.value_idx.len(),
        );
        for (vi, (&col, &ty)) in plan.value_idx.iter().zip(&self.value_types).enumerate() {
            let a = &columns[col];
            if a.is_null(r) {
                row.null(vi);
                continue;
            }
            let any = a.as_any();
            match ty {
                ColumnType::Float64 => {
                    let v = any.downcast_ref::<Float64Array>().expect("cast").value(r);
                    if v.is_nan() {
                        row.null(vi)
                    } else {
                        row.put(&v.to_le_bytes())
                    }
                }
                ColumnType::Float32 => {
                    let v = any.downcast_ref::<Float32Array>().expect("cast").value(r);
                    if v.is_nan() {
                        row.null(vi)
                    } else {
                        row.put(&v.to_le_bytes())
                    }
                }
                ColumnType::Int64 => row.put(
                    &any.downcast_ref::<Int64Array>()
                        .expect("cast")
                        .value(r)
                        .to_le_bytes(),
                ),
                ColumnType::Date32 => row.put(
                    &any.downcast_ref::<Date32Array>()
                        .expect("cast")
                        .value(r)
                        .to_le_bytes(),
                ),
                ColumnType::TimestampUs => row.put(
                    &any.downcast_ref::<TimestampMicrosecondArray>()
                        .expect("cast")
                        .value(r)
                        .to_le_bytes(),
                ),
                ColumnType::Utf8 => row.put_str(a.as_string::<i32>().value(r).as_bytes()),
            }
        }
        let len = row.finish();
        spill.added(bucket, len).map_err(|e| RowError {
            line: row_number,
            column: None,
            message: format!("writing spill: {e}"),
            fatal: true,
        })?;
        Ok(Outcome::Kept)
    }
}
