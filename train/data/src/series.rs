//! Reading one key's series from a keyed dataset into flat arrays.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, Float64Type, TimestampMicrosecondType};
use kiln_contracts::{ColumnType, KeyedDataset};

use crate::error::{Result, TrainError};
use crate::scaler::ColumnScale;
use crate::windows::RowFlags;

/// The columns a run reads from every key file.
#[derive(Debug, Clone)]
pub struct ColumnSet {
    pub date: String,
    pub features: Vec<String>,
    pub targets: Vec<String>,
}

impl ColumnSet {
    /// Check the columns exist with types a model can take.
    pub fn check(&self, ds: &KeyedDataset) -> Result<()> {
        let wanted: Vec<&str> = self
            .features
            .iter()
            .chain(&self.targets)
            .map(String::as_str)
            .collect();
        ds.check_columns(&wanted)?;
        let m = ds.manifest();
        for name in &wanted {
            let t = m.column(name).expect("checked").column_type;
            if !(t.is_float() || t == ColumnType::Int64) {
                return Err(TrainError::data(
                    ds.dir(),
                    format!("column {name:?} has type {t}; features and targets must be numeric"),
                ));
            }
            if *name == m.key_column || *name == m.date_column {
                return Err(TrainError::data(
                    ds.dir(),
                    format!("column {name:?} is the dataset's key or date column, not a feature"),
                ));
            }
        }
        Ok(())
    }

    fn projection(&self) -> Vec<&str> {
        std::iter::once(self.date.as_str())
            .chain(self.features.iter().map(String::as_str))
            .chain(self.targets.iter().map(String::as_str))
            .collect()
    }
}

/// One key's rows, column-major, unscaled, missing values NaN.
#[derive(Debug, Default)]
pub struct RawSeries {
    /// Days since the epoch (date32) or microseconds (timestamp).
    pub dates: Vec<i64>,
    pub features: Vec<Vec<f64>>,
    pub targets: Vec<Vec<f64>>,
}

impl RawSeries {
    pub fn rows(&self) -> usize {
        self.dates.len()
    }

    pub fn flags(&self) -> RowFlags {
        let n = self.rows();
        let mut flags = RowFlags {
            input_missing: vec![false; n],
            target_missing: vec![true; n],
        };
        for col in &self.features {
            for (m, v) in flags.input_missing.iter_mut().zip(col) {
                *m |= v.is_nan();
            }
        }
        for col in &self.targets {
            for (m, v) in flags.target_missing.iter_mut().zip(col) {
                *m &= v.is_nan();
            }
        }
        flags
    }
}

pub fn read_series(ds: &KeyedDataset, entry: usize, cols: &ColumnSet) -> Result<RawSeries> {
    let entry = &ds.entries()[entry];
    let batch = ds.read_entry(entry, Some(&cols.projection()))?;
    let path = ds.path_of(entry);
    let to_f64 = |name: &str| -> Result<Vec<f64>> {
        let col: &ArrayRef = batch.column_by_name(name).expect("projected");
        let col = cast(col, &DataType::Float64)
            .map_err(|e| TrainError::data(&path, format!("column {name:?}: {e}")))?;
        let a = col.as_primitive::<Float64Type>();
        Ok(if a.null_count() == 0 {
            a.values().to_vec()
        } else {
            a.iter().map(|v| v.unwrap_or(f64::NAN)).collect()
        })
    };
    let date_col = batch.column_by_name(&cols.date).expect("projected");
    let dates: Vec<i64> = match date_col.data_type() {
        DataType::Date32 => date_col
            .as_primitive::<Date32Type>()
            .values()
            .iter()
            .map(|&d| i64::from(d))
            .collect(),
        DataType::Timestamp(_, _) => date_col
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .to_vec(),
        other => {
            return Err(TrainError::data(
                &path,
                format!("date column {:?} has type {other}", cols.date),
            ));
        }
    };
    if dates.windows(2).any(|w| w[0] >= w[1]) {
        return Err(TrainError::data(
            &path,
            format!("dates of key {:?} are not strictly increasing; the keyed-dataset contract requires one row per date in order", entry.key),
        ));
    }
    Ok(RawSeries {
        dates,
        features: cols
            .features
            .iter()
            .map(|c| to_f64(c))
            .collect::<Result<_>>()?,
        targets: cols
            .targets
            .iter()
            .map(|c| to_f64(c))
            .collect::<Result<_>>()?,
    })
}

/// `[rows × columns]` scaled f32, row-major, missing values left NaN.
pub fn scale_row_major(columns: &[Vec<f64>], scales: &[ColumnScale]) -> Vec<f32> {
    let cols = columns.len();
    let rows = columns.first().map_or(0, Vec::len);
    let mut out = vec![0f32; rows * cols];
    for (j, (col, s)) in columns.iter().zip(scales).enumerate() {
        for (i, v) in col.iter().enumerate() {
            out[i * cols + j] = s.scale(*v);
        }
    }
    out
}

/// Shared, read-only handle for loader threads.
pub type SharedDataset = Arc<KeyedDataset>;
