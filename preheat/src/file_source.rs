//! The embedded source for users without MySQL (and `make demo`): a kline
//! dump as CSV or parquet, with the same column mapping. Rows must come
//! grouped by symbol (as `mysqldump`, `SELECT … ORDER BY symbol` or
//! `kiln-gen klines` write them); within a symbol any date order is fine.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use kiln_contracts::ColumnType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::columns::{ColumnMap, KlineSchema};
use crate::error::PreheatError;
use crate::group::{Group, Message, Sender};
use crate::plan::{Bounds, Fetch};
use crate::rows::{date_values, filter_dates, format_date_value};

const BATCH_ROWS: usize = 16 * 1024;
/// Rows sampled to infer a CSV column's type.
const INFER_ROWS: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Csv,
    Parquet,
}

/// Batches with the row number of their first row.
type NumberedBatches<'a> = Box<dyn Iterator<Item = Result<(u64, RecordBatch), PreheatError>> + 'a>;

pub struct FileSource {
    path: PathBuf,
    kind: Kind,
    /// Types the file is read with (CSV) before casting to the cache's.
    read_schema: SchemaRef,
    /// For each cache column, its position in the file.
    positions: Vec<usize>,
    pub schema: KlineSchema,
    /// `file:/absolute/path`.
    pub display: String,
}

/// The cache type for a column read as `dt`, or why there is none.
fn cache_type(dt: &DataType) -> Result<ColumnType, String> {
    Ok(match dt {
        DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnType::Float64,
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => ColumnType::Float64,
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => ColumnType::Int64,
        DataType::Date32 | DataType::Date64 => ColumnType::Date32,
        DataType::Timestamp(..) => ColumnType::TimestampUs,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
            ColumnType::Utf8
        }
        DataType::Dictionary(_, v) if v.is_string() => ColumnType::Utf8,
        other => return Err(format!("has type {other}, which the cache cannot hold")),
    })
}

impl FileSource {
    pub fn open(
        path: &Path,
        map: &ColumnMap,
        overrides: &[(String, ColumnType)],
    ) -> Result<Self, PreheatError> {
        let name = path.to_string_lossy().to_ascii_lowercase();
        let kind = if name.ends_with(".parquet") || name.ends_with(".pq") {
            Kind::Parquet
        } else if name.ends_with(".csv") {
            Kind::Csv
        } else {
            return Err(PreheatError::Usage(format!(
                "--source {}: expected a .csv or .parquet kline dump",
                path.display()
            )));
        };
        let file_schema: Schema = match kind {
            Kind::Parquet => {
                let file = File::open(path).map_err(|e| PreheatError::io(path, e))?;
                let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
                    PreheatError::BadInput {
                        path: path.to_path_buf(),
                        line: 0,
                        message: format!("not a readable parquet file: {e}"),
                    }
                })?;
                builder.schema().as_ref().clone()
            }
            Kind::Csv => {
                let file = File::open(path).map_err(|e| PreheatError::io(path, e))?;
                let (schema, _) = arrow::csv::reader::Format::default()
                    .with_header(true)
                    .infer_schema(file, Some(INFER_ROWS))
                    .map_err(|e| PreheatError::BadInput {
                        path: path.to_path_buf(),
                        line: 1,
                        message: e.to_string(),
                    })?;
                schema
            }
        };
        let mut described = Vec::new();
        for field in file_schema.fields() {
            let name = field.name().clone();
            let ty = match overrides.iter().rev().find(|(n, _)| *n == name) {
                Some((_, ty)) => Ok(*ty),
                None => cache_type(field.data_type()),
            };
            described.push((name, ty));
        }
        // Prices are prices even when the first rows happen to be whole.
        for (name, ty) in described.iter_mut() {
            let is_price = ["open", "high", "low", "close", "amount"]
                .iter()
                .any(|c| map.source_of(c) == name.as_str());
            if is_price && *ty == Ok(ColumnType::Int64) && !overrides.iter().any(|(n, _)| n == name)
            {
                *ty = Ok(ColumnType::Float64);
            }
        }
        let what = path.display().to_string();
        let schema = KlineSchema::resolve(&what, described, map)?;
        let positions = schema
            .columns
            .iter()
            .map(|c| {
                file_schema
                    .index_of(&c.source)
                    .expect("resolved from the file")
            })
            .collect::<Vec<_>>();
        // CSV is parsed straight into the cache's types.
        let read_schema = match kind {
            Kind::Parquet => Arc::new(file_schema.clone()),
            Kind::Csv => Arc::new(Schema::new(
                file_schema
                    .fields()
                    .iter()
                    .map(|f| {
                        let ty = schema
                            .columns
                            .iter()
                            .find(|c| &c.source == f.name())
                            .map_or(DataType::Utf8, |c| c.ty.arrow());
                        Field::new(f.name(), ty, true)
                    })
                    .collect::<Vec<_>>(),
            )),
        };
        let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(Self {
            path: path.to_path_buf(),
            kind,
            read_schema,
            positions,
            schema,
            display: format!("file:{}", absolute.display()),
        })
    }

    fn bad(&self, line: u64, message: impl Into<String>) -> PreheatError {
        PreheatError::BadInput {
            path: self.path.clone(),
            line,
            message: message.into(),
        }
    }

    /// The first line (CSV) or row (parquet) number of the `row`-th record.
    fn line_of(&self, row: u64) -> u64 {
        match self.kind {
            Kind::Csv => row + 2,
            Kind::Parquet => row + 1,
        }
    }

    /// Batches of the file in the cache's schema, with the row number of
    /// each batch's first row.
    fn batches(&self, only_symbol: bool) -> Result<NumberedBatches<'_>, PreheatError> {
        let file = File::open(&self.path).map_err(|e| PreheatError::io(&self.path, e))?;
        let projection: Vec<usize> = if only_symbol {
            vec![self.positions[self.schema.symbol]]
        } else {
            self.positions.clone()
        };
        let reader: Box<dyn Iterator<Item = Result<RecordBatch, String>>> = match self.kind {
            Kind::Csv => Box::new(
                arrow::csv::ReaderBuilder::new(self.read_schema.clone())
                    .with_header(true)
                    .with_batch_size(BATCH_ROWS)
                    .with_projection(projection.clone())
                    .build(file)
                    .map_err(|e| self.bad(1, e.to_string()))?
                    .map(|b| b.map_err(|e| e.to_string())),
            ),
            Kind::Parquet => {
                let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| self.bad(0, e.to_string()))?;
                let mask = parquet::arrow::ProjectionMask::roots(
                    builder.parquet_schema(),
                    projection.iter().copied(),
                );
                Box::new(
                    builder
                        .with_projection(mask)
                        .with_batch_size(BATCH_ROWS)
                        .build()
                        .map_err(|e| self.bad(0, e.to_string()))?
                        .map(|b| b.map_err(|e| e.to_string())),
                )
            }
        };
        let wanted: Vec<usize> = if only_symbol {
            vec![self.schema.symbol]
        } else {
            (0..self.schema.columns.len()).collect()
        };
        let mut row = 0u64;
        Ok(Box::new(reader.map(move |batch| {
            let batch = batch.map_err(|e| self.bad(self.line_of(row), e))?;
            let first = row;
            row += batch.num_rows() as u64;
            Ok((first, self.to_cache_types(&batch, &wanted, first)?))
        })))
    }

    /// Select, order and cast a read batch to the cache's schema (or the
    /// `wanted` columns of it).
    fn to_cache_types(
        &self,
        batch: &RecordBatch,
        wanted: &[usize],
        first_row: u64,
    ) -> Result<RecordBatch, PreheatError> {
        let schema = self.schema.arrow();
        let options = CastOptions {
            safe: false,
            ..Default::default()
        };
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for &i in wanted {
            let column = &self.schema.columns[i];
            let source = batch.column_by_name(&column.source).ok_or_else(|| {
                self.bad(
                    self.line_of(first_row),
                    format!("column {} is missing", column.source),
                )
            })?;
            let target = column.ty.arrow();
            let cast = if let DataType::Timestamp(_, Some(_)) = source.data_type() {
                cast_with_options(
                    source,
                    &DataType::Timestamp(TimeUnit::Microsecond, None),
                    &options,
                )
            } else {
                cast_with_options(source, &target, &options)
            }
            .map_err(|e| {
                self.bad(
                    self.line_of(first_row),
                    format!(
                        "column {}: {e} (in the {} rows from here)",
                        column.source,
                        batch.num_rows()
                    ),
                )
            })?;
            fields.push(schema.field(i).clone().with_nullable(true));
            columns.push(cast);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| self.bad(self.line_of(first_row), e.to_string()))
    }

    /// Every symbol of the dump, sorted; fails when a symbol's rows are
    /// not contiguous or a symbol is empty.
    pub fn list_symbols(&self) -> Result<Vec<String>, PreheatError> {
        let mut seen = HashSet::new();
        let mut current: Option<String> = None;
        for batch in self.batches(true)? {
            let (first, batch) = batch?;
            let symbols = symbols_of(&batch, 0);
            for i in 0..symbols.len() {
                let line = self.line_of(first + i as u64);
                if symbols.is_null(i) || symbols.value(i).is_empty() {
                    return Err(self.bad(
                        line,
                        format!("column {}: empty symbol", self.symbol_source()),
                    ));
                }
                let s = symbols.value(i);
                if current.as_deref() == Some(s) {
                    continue;
                }
                if !seen.insert(s.to_owned()) {
                    return Err(self.bad(
                        line,
                        format!(
                            "rows of symbol {s} appear again after other symbols; \
                             the dump must be grouped by symbol (sort it by symbol, date)"
                        ),
                    ));
                }
                current = Some(s.to_owned());
            }
        }
        let mut symbols: Vec<String> = seen.into_iter().collect();
        symbols.sort_unstable();
        Ok(symbols)
    }

    fn symbol_source(&self) -> &str {
        &self.schema.columns[self.schema.symbol].source
    }

    /// Stream the dump once, sending each task's rows within `bounds`
    /// (and after its `Fetch::After` date). Tasks the dump lacks get an
    /// empty group. Returns the rows read.
    pub fn fetch(
        &self,
        tasks: &HashMap<String, Fetch>,
        bounds: Bounds,
        out: &Sender,
    ) -> Result<u64, PreheatError> {
        let mut open: Option<OpenGroup> = None;
        let mut sent = HashSet::new();
        let mut rows_read = 0u64;
        for batch in self.batches(false)? {
            let (first, batch) = batch?;
            rows_read += batch.num_rows() as u64;
            let symbols = symbols_of(&batch, self.schema.symbol);
            let mut start = 0;
            while start < batch.num_rows() {
                let symbol = symbols.value(start);
                let mut end = start + 1;
                while end < batch.num_rows() && symbols.value(end) == symbol {
                    end += 1;
                }
                if open.as_ref().is_none_or(|g| g.symbol != symbol) {
                    if let Some(g) = open.take() {
                        if !self.close(g, bounds, out, &mut sent)? {
                            return Ok(rows_read);
                        }
                    }
                    open = Some(OpenGroup {
                        symbol: symbol.to_owned(),
                        fetch: tasks.get(symbol).copied(),
                        first_row: first + start as u64,
                        slices: Vec::new(),
                    });
                }
                let g = open.as_mut().expect("opened above");
                if g.fetch.is_some() {
                    g.slices.push(batch.slice(start, end - start));
                }
                start = end;
            }
        }
        if let Some(g) = open.take() {
            if !self.close(g, bounds, out, &mut sent)? {
                return Ok(rows_read);
            }
        }
        for (symbol, fetch) in tasks {
            if !sent.contains(symbol) {
                let _ = out.send(Message::Group(Group {
                    symbol: symbol.clone(),
                    fetch: *fetch,
                    batch: RecordBatch::new_empty(self.schema.arrow()),
                }));
            }
        }
        Ok(rows_read)
    }

    /// Sort a finished symbol by date, check it, keep the rows the task
    /// asks for, and send it. `false` when nobody receives any more (the
    /// run ended early): the rest of the dump is not read.
    fn close(
        &self,
        group: OpenGroup,
        bounds: Bounds,
        out: &Sender,
        sent: &mut HashSet<String>,
    ) -> Result<bool, PreheatError> {
        let Some(fetch) = group.fetch else {
            return Ok(true);
        };
        let schema = self.schema.arrow();
        // Slices are read with every column nullable; the cache's schema
        // applies once the dates are checked.
        let read_schema = group.slices[0].schema();
        let batch = arrow::compute::concat_batches(&read_schema, &group.slices)
            .map_err(|e| self.bad(self.line_of(group.first_row), e.to_string()))?;
        let dates = date_values(&batch, self.schema.date);
        let date_source = &self.schema.columns[self.schema.date].source;
        if let Some(i) = dates.iter().position(Option::is_none) {
            return Err(self.bad(
                self.line_of(group.first_row + i as u64),
                format!("column {date_source}: empty date"),
            ));
        }
        let mut order: Vec<usize> = (0..dates.len()).collect();
        order.sort_by_key(|&i| dates[i]);
        for pair in order.windows(2) {
            if dates[pair[0]] == dates[pair[1]] {
                let (a, b) = (pair[0].min(pair[1]), pair[0].max(pair[1]));
                return Err(self.bad(
                    self.line_of(group.first_row + b as u64),
                    format!(
                        "column {date_source}: symbol {} has {} twice (also line {})",
                        group.symbol,
                        format_date_value(dates[a].expect("checked"), self.schema.date_type()),
                        self.line_of(group.first_row + a as u64)
                    ),
                ));
            }
        }
        let indices = arrow::array::UInt32Array::from_iter_values(order.iter().map(|&i| i as u32));
        let sorted = arrow::compute::take_record_batch(&batch, &indices)
            .and_then(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
            .map_err(|e| self.bad(self.line_of(group.first_row), e.to_string()))?;
        let after = match fetch {
            Fetch::Full => None,
            Fetch::After(d) => Some(d),
        };
        let kept = filter_dates(&sorted, self.schema.date, |d| {
            bounds.contains(d) && after.is_none_or(|a| d > a)
        });
        sent.insert(group.symbol.clone());
        let group = Message::Group(Group {
            symbol: group.symbol,
            fetch,
            batch: kept,
        });
        Ok(out.send(group).is_ok())
    }
}

struct OpenGroup {
    symbol: String,
    /// `None`: not a task of this run; its rows are skipped.
    fetch: Option<Fetch>,
    first_row: u64,
    slices: Vec<RecordBatch>,
}

fn symbols_of(batch: &RecordBatch, column: usize) -> StringArray {
    batch
        .column(column)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("the symbol column is cast to text")
        .clone()
}
