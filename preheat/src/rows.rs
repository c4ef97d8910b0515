//! Building one symbol's rows into an Arrow batch of the cache's schema.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Date32Builder, Float64Builder, Int64Builder,
    RecordBatch, StringBuilder, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use kiln_contracts::{dates, ColumnType};
use mysql_async::Value;

use crate::columns::KlineSchema;

enum Builder {
    F64(Float64Builder),
    I64(Int64Builder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
    Str(StringBuilder),
}

impl Builder {
    fn new(ty: ColumnType) -> Self {
        match ty {
            ColumnType::Float64 | ColumnType::Float32 => Builder::F64(Float64Builder::new()),
            ColumnType::Int64 => Builder::I64(Int64Builder::new()),
            ColumnType::Date32 => Builder::Date(Date32Builder::new()),
            ColumnType::TimestampUs => Builder::Ts(TimestampMicrosecondBuilder::new()),
            ColumnType::Utf8 => Builder::Str(StringBuilder::new()),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Ts(b) => Arc::new(b.finish()),
            Builder::Str(b) => Arc::new(b.finish()),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::F64(b) => b.append_null(),
            Builder::I64(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Ts(b) => b.append_null(),
            Builder::Str(b) => b.append_null(),
        }
    }

    /// Append one value as the MySQL binary protocol delivers it.
    fn append_mysql(&mut self, value: Value) -> Result<(), String> {
        if value == Value::NULL {
            self.append_null();
            return Ok(());
        }
        match self {
            Builder::F64(b) => b.append_value(match value {
                // DECIMAL arrives as its exact text; the nearest f64 is what
                // pandas' read_sql would give too.
                Value::Bytes(text) => fast_float2::parse(&text)
                    .map_err(|_| format!("'{}' is not a number", String::from_utf8_lossy(&text)))?,
                Value::Double(v) => v,
                Value::Float(v) => f64::from(v),
                Value::Int(v) => v as f64,
                Value::UInt(v) => v as f64,
                other => return Err(format!("{other:?} is not a number")),
            }),
            Builder::I64(b) => b.append_value(match value {
                Value::Int(v) => v,
                Value::UInt(v) => i64::try_from(v)
                    .map_err(|_| format!("{v} does not fit a signed 64-bit integer"))?,
                Value::Bytes(text) => std::str::from_utf8(&text)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| {
                        format!("'{}' is not an integer", String::from_utf8_lossy(&text))
                    })?,
                other => return Err(format!("{other:?} is not an integer")),
            }),
            Builder::Date(b) => b.append_value(match value {
                Value::Date(y, m, d, ..) => {
                    dates::days_from_civil(i32::from(y), m.into(), d.into())
                        .ok_or_else(|| format!("{y:04}-{m:02}-{d:02} is not a date"))?
                }
                Value::Bytes(text) => dates::parse_date(&text)
                    .ok_or_else(|| format!("'{}' is not a date", String::from_utf8_lossy(&text)))?,
                other => return Err(format!("{other:?} is not a date")),
            }),
            Builder::Ts(b) => b.append_value(match value {
                Value::Date(y, m, d, hh, mm, ss, us) => {
                    let day = dates::days_from_civil(i32::from(y), m.into(), d.into())
                        .ok_or_else(|| format!("{y:04}-{m:02}-{d:02} is not a date"))?;
                    let seconds = i64::from(day) * 86_400
                        + i64::from(hh) * 3600
                        + i64::from(mm) * 60
                        + i64::from(ss);
                    seconds * 1_000_000 + i64::from(us)
                }
                Value::Bytes(text) => dates::parse_timestamp_us(&text).ok_or_else(|| {
                    format!(
                        "'{}' is not a date and time",
                        String::from_utf8_lossy(&text)
                    )
                })?,
                other => return Err(format!("{other:?} is not a date and time")),
            }),
            Builder::Str(b) => match value {
                Value::Bytes(text) => b.append_value(
                    std::str::from_utf8(&text).map_err(|_| "is not valid UTF-8".to_string())?,
                ),
                Value::Int(v) => b.append_value(v.to_string()),
                Value::UInt(v) => b.append_value(v.to_string()),
                other => return Err(format!("{other:?} is not text")),
            },
        }
        Ok(())
    }
}

/// The rows of one symbol as they arrive from MySQL.
pub struct GroupBuilder {
    schema: SchemaRef,
    builders: Vec<Builder>,
    rows: usize,
}

impl GroupBuilder {
    pub fn new(schema: &KlineSchema) -> Self {
        Self {
            schema: schema.arrow(),
            builders: schema.columns.iter().map(|c| Builder::new(c.ty)).collect(),
            rows: 0,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Append one row (values in schema order). On error the message names
    /// the column; the builder is then unusable for this group.
    pub fn push(&mut self, values: Vec<Option<Value>>, schema: &KlineSchema) -> Result<(), String> {
        for ((builder, value), column) in self.builders.iter_mut().zip(values).zip(&schema.columns)
        {
            builder
                .append_mysql(value.unwrap_or(Value::NULL))
                .map_err(|why| format!("column {}: {why}", column.source))?;
        }
        self.rows += 1;
        Ok(())
    }

    /// The rows so far as a batch; the builder starts over empty.
    pub fn finish(&mut self) -> RecordBatch {
        self.rows = 0;
        let columns = self.builders.iter_mut().map(Builder::finish).collect();
        RecordBatch::try_new(self.schema.clone(), columns).expect("builders follow the schema")
    }
}

/// The text of a symbol value.
pub fn symbol_text(value: &Value) -> Option<String> {
    match value {
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(v) => Some(v.to_string()),
        Value::UInt(v) => Some(v.to_string()),
        _ => None,
    }
}

/// The date column as i64 in its unit (days or microseconds).
pub fn date_values(batch: &RecordBatch, column: usize) -> Vec<Option<i64>> {
    let col = batch.column(column);
    if let Some(a) = col.as_any().downcast_ref::<Date32Array>() {
        a.iter().map(|v| v.map(i64::from)).collect()
    } else if let Some(a) = col.as_any().downcast_ref::<TimestampMicrosecondArray>() {
        a.iter().collect()
    } else {
        vec![None; col.len()]
    }
}

/// Rows whose date satisfies `keep`.
pub fn filter_dates(batch: &RecordBatch, column: usize, keep: impl Fn(i64) -> bool) -> RecordBatch {
    let mask: BooleanArray = date_values(batch, column)
        .into_iter()
        .map(|d| Some(d.is_some_and(&keep)))
        .collect();
    arrow::compute::filter_record_batch(batch, &mask).expect("mask has the batch's length")
}

/// A date value of the column's unit, for messages.
pub fn format_date_value(value: i64, ty: ColumnType) -> String {
    dates::format_value(value, ty)
}

/// Null count of every column that has nulls.
pub fn null_counts(batch: &RecordBatch) -> std::collections::BTreeMap<String, u64> {
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(_, c)| c.null_count() > 0)
        .map(|(f, c)| (f.name().clone(), c.null_count() as u64))
        .collect()
}
