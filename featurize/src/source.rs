//! One symbol's klines from the input dataset, checked for what the
//! indicators assume: no missing OHLCV value, positive finite prices,
//! non-negative volume, dates strictly increasing.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, TimestampMicrosecondType};
use arrow::row::{RowConverter, SortField};
use kiln_contracts::dates::format_value;
use kiln_contracts::{ColumnType, IndexEntry, KeyedDataset};
use xxhash_rust::xxh3::Xxh3;

use crate::indicators::Klines;
use crate::spec::InputColumns;

/// A symbol's rows: every source column (passed through) and the five
/// indicator inputs as f64.
pub struct SymbolKlines {
    pub batch: RecordBatch,
    pub open: Vec<f64>,
    pub high: Vec<f64>,
    pub low: Vec<f64>,
    pub close: Vec<f64>,
    pub volume: Vec<f64>,
}

impl SymbolKlines {
    pub fn klines(&self) -> Klines<'_> {
        Klines {
            open: &self.open,
            high: &self.high,
            low: &self.low,
            close: &self.close,
            volume: &self.volume,
        }
    }

    pub fn rows(&self) -> usize {
        self.close.len()
    }
}

/// Numeric column types the indicators can read.
pub fn is_numeric(t: ColumnType) -> bool {
    matches!(
        t,
        ColumnType::Float64 | ColumnType::Float32 | ColumnType::Int64
    )
}

fn date_values(col: &ArrayRef) -> Vec<i64> {
    match col.data_type() {
        DataType::Date32 => col
            .as_primitive::<Date32Type>()
            .values()
            .iter()
            .map(|&d| i64::from(d))
            .collect(),
        _ => col
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .to_vec(),
    }
}

/// Read and check one symbol. The error is one line naming the file, the
/// row (1-based, in file order), its date and the column.
pub fn load(
    ds: &KeyedDataset,
    entry: &IndexEntry,
    inputs: &InputColumns,
) -> Result<SymbolKlines, String> {
    let path = ds.path_of(entry);
    let batch = ds.read_entry(entry, None).map_err(|e| e.to_string())?;
    let manifest = ds.manifest();
    let date_type = manifest.date_type();
    let dates = date_values(
        batch
            .column_by_name(&manifest.date_column)
            .expect("read_entry checked the columns"),
    );
    let show_date = |d: i64| format_value(d, date_type);
    let at = |row: usize| {
        format!(
            "{}: row {} ({})",
            path.display(),
            row + 1,
            show_date(dates[row])
        )
    };
    for row in 1..dates.len() {
        if dates[row] <= dates[row - 1] {
            let what = if dates[row] == dates[row - 1] {
                "duplicates the previous row's date".to_owned()
            } else {
                format!(
                    "comes before the previous row's {}",
                    show_date(dates[row - 1])
                )
            };
            return Err(format!(
                "{}: {} {what}; dates must increase",
                at(row),
                manifest.date_column
            ));
        }
    }
    let column = |name: &str, positive: bool| -> Result<Vec<f64>, String> {
        let col = batch
            .column_by_name(name)
            .expect("checked against the manifest");
        let col = cast(col, &DataType::Float64)
            .map_err(|e| format!("{}: {name}: {e}", path.display()))?;
        let values = col.as_primitive::<arrow::datatypes::Float64Type>();
        if let Some(row) = (0..values.len()).find(|&i| values.is_null(i)) {
            return Err(format!("{}: {name} is missing", at(row)));
        }
        let values = values.values().to_vec();
        let bad = |v: f64| !v.is_finite() || if positive { v <= 0.0 } else { v < 0.0 };
        if let Some(row) = values.iter().position(|&v| bad(v)) {
            let must = if positive {
                "prices must be positive"
            } else {
                "volume must not be negative"
            };
            return Err(format!("{}: {name} is {}; {must}", at(row), values[row]));
        }
        Ok(values)
    };
    Ok(SymbolKlines {
        open: column(&inputs.open, true)?,
        high: column(&inputs.high, true)?,
        low: column(&inputs.low, true)?,
        close: column(&inputs.close, true)?,
        volume: column(&inputs.volume, false)?,
        batch,
    })
}

/// Content hashes of a batch's rows: of the first `prefix` rows (when
/// `prefix` ≤ rows) and of all rows. Every column counts, nulls included,
/// so any revision of an old row shows.
pub fn row_hashes(batch: &RecordBatch, prefix: usize) -> (Option<u64>, u64) {
    let fields = batch
        .schema()
        .fields()
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields).expect("contract types are row-encodable");
    let rows = converter
        .convert_columns(batch.columns())
        .expect("columns match their fields");
    let mut hasher = Xxh3::new();
    let mut at_prefix = (prefix == 0).then(|| hasher.digest());
    for i in 0..rows.num_rows() {
        let row = rows.row(i);
        let bytes = row.as_ref();
        hasher.update(&(bytes.len() as u32).to_le_bytes());
        hasher.update(bytes);
        if i + 1 == prefix {
            at_prefix = Some(hasher.digest());
        }
    }
    (at_prefix, hasher.digest())
}
