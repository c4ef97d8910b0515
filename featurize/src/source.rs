//! One symbol's klines from the input dataset, checked for what the
//! indicators assume: no missing OHLCV value, positive finite prices,
//! non-negative volume, dates strictly increasing.

use std::ops::Range;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, TimestampMicrosecondType};
use arrow::util::display::{ArrayFormatter, FormatOptions};
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
/// so any revision of an old row shows. The hash of a batch's first
/// `prefix` rows equals the full hash of a batch holding just those rows.
///
/// Column by column, each over two streams: the values of its non-null rows
/// in order (a string as its length and bytes) and the positions of its
/// nulls; a column without nulls is one contiguous slice. The version tag
/// ([`HASH_VERSION`]) lets a cache written with another scheme tell itself
/// apart from revised klines.
pub fn row_hashes(batch: &RecordBatch, prefix: usize) -> (Option<String>, String) {
    let rows = batch.num_rows();
    let cut = prefix.min(rows);
    let mut at_prefix = Xxh3::new();
    let mut full = Xxh3::new();
    for column in batch.columns() {
        let mut values = Xxh3::new();
        let mut nulls = Xxh3::new();
        hash_rows(column.as_ref(), 0..cut, &mut values, &mut nulls);
        at_prefix.update(&values.digest().to_le_bytes());
        at_prefix.update(&nulls.digest().to_le_bytes());
        hash_rows(column.as_ref(), cut..rows, &mut values, &mut nulls);
        full.update(&values.digest().to_le_bytes());
        full.update(&nulls.digest().to_le_bytes());
    }
    let tag = |h: &Xxh3| format!("{HASH_VERSION}{:016x}", h.digest());
    ((prefix <= rows).then(|| tag(&at_prefix)), tag(&full))
}

/// Prefix of [`row_hashes`]' results: the scheme they were made with.
pub const HASH_VERSION: &str = "c1:";

/// Bytes for an [`Xxh3`] stream, handed over in blocks: a stream's hash
/// does not depend on how its bytes are cut, and one update per row (a
/// string column's value, a nullable column's valid value) costs more than
/// hashing the row.
struct Chunked<'a> {
    stream: &'a mut Xxh3,
    buf: Vec<u8>,
}

impl<'a> Chunked<'a> {
    const BLOCK: usize = 8 * 1024;

    fn new(stream: &'a mut Xxh3) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(Self::BLOCK + 256),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > Self::BLOCK {
            self.stream.update(&self.buf);
            self.buf.clear();
        }
        if bytes.len() > Self::BLOCK {
            self.stream.update(bytes);
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }
}

impl Drop for Chunked<'_> {
    fn drop(&mut self) {
        self.stream.update(&self.buf);
    }
}

/// Feed rows `range` of `column` to the two streams of [`row_hashes`].
fn hash_rows(column: &dyn Array, range: Range<usize>, values: &mut Xxh3, nulls: &mut Xxh3) {
    let valid = |i: usize| column.is_valid(i);
    if column.null_count() > 0 {
        let mut nulls = Chunked::new(nulls);
        for i in range.clone().filter(|&i| !valid(i)) {
            nulls.push(&(i as u64).to_le_bytes());
        }
    }
    let mut values = Chunked::new(values);
    if let Some(strings) = column.as_string_opt::<i32>() {
        for i in range.filter(|&i| valid(i)) {
            let s = strings.value(i).as_bytes();
            values.push(&(s.len() as u32).to_le_bytes());
            values.push(s);
        }
        return;
    }
    let Some(width) = column.data_type().primitive_width() else {
        // Not a contract type (the dataset's reader refuses those): hash
        // each value's text.
        let text = ArrayFormatter::try_new(column, &FormatOptions::default());
        for i in range.filter(|&i| valid(i)) {
            let s = text
                .as_ref()
                .map(|t| t.value(i).to_string())
                .unwrap_or_default();
            values.push(&(s.len() as u32).to_le_bytes());
            values.push(s.as_bytes());
        }
        return;
    };
    let data = column.to_data();
    let bytes = &data.buffers()[0].as_slice()[data.offset() * width..];
    if column.null_count() == 0 {
        values.push(&bytes[range.start * width..range.end * width]);
    } else {
        for i in range.filter(|&i| valid(i)) {
            values.push(&bytes[i * width..(i + 1) * width]);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, StringArray};

    use super::*;

    fn batch(close: Vec<Option<f64>>, symbol: &str) -> RecordBatch {
        let n = close.len();
        RecordBatch::try_from_iter([
            (
                "symbol",
                Arc::new(StringArray::from(vec![symbol; n])) as ArrayRef,
            ),
            ("date", Arc::new(Date32Array::from_iter_values(0..n as i32))),
            ("close", Arc::new(Float64Array::from(close))),
            (
                "volume",
                Arc::new(Int64Array::from_iter_values(0..n as i64)),
            ),
        ])
        .unwrap()
    }

    fn closes(n: usize) -> Vec<Option<f64>> {
        (0..n)
            .map(|i| (i % 5 != 3).then_some(i as f64 + 0.5))
            .collect()
    }

    /// The scheme as documented, byte stream by byte stream, with one
    /// update per piece: how the bytes are handed over must not matter
    /// (caches hashed before hold these values).
    #[test]
    fn the_hash_is_the_documented_scheme() {
        let n = 3000;
        let mut close = closes(n);
        close[7] = None;
        close[2500] = None;
        let b = batch(close, "600519");
        let mut full = Xxh3::new();
        for column in b.columns() {
            let (mut values, mut nulls) = (Xxh3::new(), Xxh3::new());
            for i in 0..n {
                if column.is_null(i) {
                    nulls.update(&(i as u64).to_le_bytes());
                } else if let Some(s) = column.as_string_opt::<i32>() {
                    values.update(&(s.value(i).len() as u32).to_le_bytes());
                    values.update(s.value(i).as_bytes());
                } else if let Some(f) = column.as_primitive_opt::<arrow::datatypes::Float64Type>() {
                    values.update(&f.value(i).to_le_bytes());
                } else if let Some(d) = column.as_primitive_opt::<Date32Type>() {
                    values.update(&d.value(i).to_le_bytes());
                } else {
                    let v = column.as_primitive::<arrow::datatypes::Int64Type>();
                    values.update(&v.value(i).to_le_bytes());
                }
            }
            full.update(&values.digest().to_le_bytes());
            full.update(&nulls.digest().to_le_bytes());
        }
        let expected = format!("{HASH_VERSION}{:016x}", full.digest());
        assert_eq!(row_hashes(&b, n).1, expected);
    }

    #[test]
    fn a_prefix_hashes_like_a_batch_of_just_those_rows() {
        let long = batch(closes(40), "600519");
        for prefix in [0, 1, 3, 4, 17, 40] {
            let short = batch(closes(prefix), "600519");
            let (at_prefix, _) = row_hashes(&long, prefix);
            assert_eq!(at_prefix, Some(row_hashes(&short, 0).1), "prefix {prefix}");
            // A slice (arrays not starting at 0) hashes the same.
            let (_, sliced) = row_hashes(&long.slice(0, prefix), 0);
            assert_eq!(at_prefix, Some(sliced));
        }
        assert_eq!(row_hashes(&long, 41).0, None);
        assert!(row_hashes(&long, 0).1.starts_with(HASH_VERSION));
    }

    #[test]
    fn any_revised_value_or_null_changes_the_hash() {
        let base = row_hashes(&batch(closes(40), "600519"), 40).1;
        let mut revised = closes(40);
        revised[10] = Some(10.25);
        let mut nulled = closes(40);
        nulled[11] = None;
        let mut moved = closes(40);
        moved.swap(2, 3); // a null moves, the values stay in order
        for other in [
            batch(revised, "600519"),
            batch(nulled, "600519"),
            batch(moved, "600519"),
            batch(closes(40), "600518"),
            batch(closes(41), "600519").slice(1, 40),
        ] {
            assert_ne!(row_hashes(&other, 40).1, base);
        }
        // What lies under a null is not data.
        let under_null: ArrayRef = Arc::new(Float64Array::new(
            (0..40)
                .map(|i| if i % 5 == 3 { -7.0 } else { i as f64 + 0.5 })
                .collect(),
            Some((0..40).map(|i| i % 5 != 3).collect()),
        ));
        let b = batch(closes(40), "600519");
        let mut columns = b.columns().to_vec();
        columns[2] = under_null;
        let same = RecordBatch::try_new(b.schema(), columns).unwrap();
        assert_eq!(row_hashes(&same, 40).1, base);
    }
}
