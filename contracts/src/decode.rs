//! A few rows of a key file, decoded through parquet's typed column readers
//! instead of `ParquetRecordBatchReader`.
//!
//! kiln-preheat's nightly refresh decodes one small tail row group in each
//! of thousands of files. For that, the arrow reader's general machinery
//! (its reader plan, one array reader per column with growable record
//! buffers, a struct array around them) cost more than the values: a sixth
//! of the night's CPU. The contract's flat column types need none of it:
//! each column's values and definition levels are read into vectors and
//! made an array. The counterpart of [`crate::encode`].

use std::sync::Arc;

use arrow::array::{
    ArrayRef, ArrowPrimitiveType, PrimitiveArray, RecordBatch, StringArray, StringBuilder,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::TimestampMicrosecondType;
use arrow::datatypes::{Date32Type, Float32Type, Float64Type, Int64Type, SchemaRef};
use parquet::basic::{LogicalType, TimeUnit as ParquetTimeUnit, Type as PhysicalType};
use parquet::column::page::PageReader;
use parquet::column::reader::ColumnReaderImpl;
use parquet::data_type::{self as pq, ByteArray};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::ChunkReader;
use parquet::file::serialized_reader::SerializedPageReader;
use parquet::schema::types::{ColumnDescPtr, ColumnDescriptor};

use crate::ColumnType;

/// Whether [`read_row_group`] can decode a file of `schema`: columns of
/// the contract's types, as [`crate::encode`] writes them.
pub(crate) fn supported(schema: &SchemaRef) -> bool {
    schema
        .fields()
        .iter()
        .all(|f| ColumnType::from_arrow(f.data_type()).is_some())
}

/// Whether a parquet column holds `column_type` as Kiln's writers (and
/// `ArrowWriter`) store it: the physical type and the logical annotation
/// the arrow reader would map back to that type.
fn stored_as(descr: &ColumnDescriptor, column_type: ColumnType) -> bool {
    let logical = descr.logical_type_ref();
    match (descr.physical_type(), column_type) {
        (PhysicalType::DOUBLE, ColumnType::Float64)
        | (PhysicalType::FLOAT, ColumnType::Float32) => logical.is_none(),
        (PhysicalType::INT64, ColumnType::Int64) => match logical {
            None => true,
            Some(LogicalType::Integer(int)) => int.bit_width == 64 && int.is_signed,
            _ => false,
        },
        (PhysicalType::INT32, ColumnType::Date32) => matches!(logical, Some(LogicalType::Date)),
        (PhysicalType::INT64, ColumnType::TimestampUs) => match logical {
            Some(LogicalType::Timestamp(t)) => {
                t.unit == ParquetTimeUnit::MICROS && !t.is_adjusted_to_u_t_c
            }
            _ => false,
        },
        (PhysicalType::BYTE_ARRAY, ColumnType::Utf8) => {
            matches!(logical, Some(LogicalType::String))
        }
        _ => false,
    }
}

/// Row group `group` of the file `reader` holds (whose footer is
/// `metadata`), as a batch of `schema` — the file's columns in order, of
/// types [`supported`].
pub(crate) fn read_row_group<R: ChunkReader + 'static>(
    reader: &Arc<R>,
    metadata: &ParquetMetaData,
    group: usize,
    schema: &SchemaRef,
) -> Result<RecordBatch, ParquetError> {
    let rg = metadata.row_group(group);
    if rg.num_columns() != schema.fields().len() {
        return Err(ParquetError::General(format!(
            "row group {group} has {} columns, expected {}",
            rg.num_columns(),
            schema.fields().len()
        )));
    }
    let rows = rg.num_rows() as usize;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(rg.num_columns());
    for (i, field) in schema.fields().iter().enumerate() {
        let chunk = rg.column(i);
        let descr = chunk.column_descr_ptr();
        let column_type = ColumnType::from_arrow(field.data_type())
            .filter(|&t| stored_as(&descr, t))
            .ok_or_else(|| {
                ParquetError::General(format!(
                    "column {} is stored as {:?} ({:?}), not as {}",
                    descr.name(),
                    descr.physical_type(),
                    descr.logical_type_ref(),
                    field.data_type()
                ))
            })?;
        let column = Column {
            rows,
            pages: Box::new(SerializedPageReader::new(
                reader.clone(),
                chunk,
                rows,
                None,
            )?),
            descr,
        };
        columns.push(match column_type {
            ColumnType::Float64 => Arc::new(column.primitive::<pq::DoubleType, Float64Type>()?),
            ColumnType::Float32 => Arc::new(column.primitive::<pq::FloatType, Float32Type>()?),
            ColumnType::Int64 => Arc::new(column.primitive::<pq::Int64Type, Int64Type>()?),
            ColumnType::Date32 => Arc::new(column.primitive::<pq::Int32Type, Date32Type>()?),
            ColumnType::TimestampUs => {
                Arc::new(column.primitive::<pq::Int64Type, TimestampMicrosecondType>()?)
            }
            ColumnType::Utf8 => Arc::new(column.strings()?),
        });
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| ParquetError::General(e.to_string()))
}

/// A column chunk's non-null values and, for a nullable column, its
/// definition levels.
type Chunk<V> = (Vec<V>, Option<Vec<i16>>);

/// One column chunk, about to be read.
struct Column {
    rows: usize,
    descr: ColumnDescPtr,
    pages: Box<dyn PageReader>,
}

impl Column {
    /// The definition level of a row that holds a value.
    fn max_def(&self) -> i16 {
        self.descr.max_def_level()
    }

    /// Every value of the chunk (non-null ones only) and, for a nullable
    /// column, its definition levels.
    fn read<T: pq::DataType>(self) -> Result<Chunk<T::T>, ParquetError> {
        let (rows, max_def) = (self.rows, self.max_def());
        let mut reader = ColumnReaderImpl::<T>::new(self.descr, self.pages);
        let mut values = Vec::with_capacity(rows);
        let mut levels = (max_def > 0).then(|| Vec::with_capacity(rows));
        let mut read = 0;
        while read < rows {
            let (records, _, _) =
                reader.read_records(rows - read, levels.as_mut(), None, &mut values)?;
            if records == 0 {
                return Err(ParquetError::General(format!(
                    "a column chunk ends after {read} of its {rows} rows"
                )));
            }
            read += records;
        }
        // A corrupt page could leave values and levels disagreeing: never
        // shift values into the wrong rows.
        let present = levels
            .as_ref()
            .map_or(rows, |l| l.iter().filter(|&&d| d == max_def).count());
        if levels.as_ref().is_some_and(|l| l.len() != rows) || values.len() != present {
            return Err(ParquetError::General(format!(
                "a column chunk of {rows} rows holds {} values for {present} non-null rows",
                values.len()
            )));
        }
        Ok((values, levels))
    }

    /// A primitive column: parquet's `T` values as arrow's `A`, with a
    /// null where a row holds none.
    fn primitive<T, A>(self) -> Result<PrimitiveArray<A>, ParquetError>
    where
        T: pq::DataType,
        T::T: Copy + Default + Into<A::Native>,
        A: ArrowPrimitiveType,
    {
        let (rows, max_def) = (self.rows, self.max_def());
        let (dense, levels) = self.read::<T>()?;
        let (values, nulls): (Vec<A::Native>, _) = match levels {
            Some(levels) if dense.len() < rows => {
                let valid: Vec<bool> = levels.iter().map(|&l| l == max_def).collect();
                let mut dense = dense.into_iter();
                let values = valid
                    .iter()
                    .map(|&v| {
                        if v { dense.next() } else { None }
                            .unwrap_or_default()
                            .into()
                    })
                    .collect();
                (values, Some(NullBuffer::from(valid)))
            }
            _ => (dense.into_iter().map(Into::into).collect(), None),
        };
        Ok(PrimitiveArray::new(values.into(), nulls))
    }

    fn strings(self) -> Result<StringArray, ParquetError> {
        let (rows, max_def) = (self.rows, self.max_def());
        let (values, levels) = self.read::<pq::ByteArrayType>()?;
        let bytes = values.iter().map(ByteArray::len).sum();
        let mut out = StringBuilder::with_capacity(rows, bytes);
        let mut dense = values.iter();
        for row in 0..rows {
            let present = levels.as_ref().is_none_or(|l| l[row] == max_def);
            match if present { dense.next() } else { None } {
                Some(b) => out.append_value(b.as_utf8()?),
                None => out.append_null(),
            }
        }
        Ok(out.finish())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        Array, Date32Array, Float32Array, Float64Array, Int64Array, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::ParquetMetaDataReader;
    use parquet::file::properties::WriterProperties;

    use super::*;

    /// Every contract type, nullable and not, with nulls in odd places,
    /// in two row groups with more than one page each.
    fn sample() -> RecordBatch {
        let n = 300;
        let nth = |k: usize| (0..n).map(move |i| (i % k != 3).then_some(i));
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("d", DataType::Date32, false),
            Field::new("f64", DataType::Float64, true),
            Field::new("f32", DataType::Float32, true),
            Field::new("i64", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new(
                "ts_local",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("s", DataType::Utf8, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values((0..n).map(|_| "600519"))),
            Arc::new(Date32Array::from_iter_values(
                (0..n).map(|i| 19_000 + i as i32),
            )),
            Arc::new(Float64Array::from_iter(
                nth(7).map(|v| v.map(|i| i as f64 / 3.0)),
            )),
            Arc::new(Float32Array::from_iter(
                nth(5).map(|v| v.map(|i| i as f32 * 0.5)),
            )),
            Arc::new(Int64Array::from_iter(
                nth(11).map(|v| v.map(|i| i as i64 - 150)),
            )),
            Arc::new(TimestampMicrosecondArray::from_iter(
                nth(2).map(|v| v.map(|i| i as i64 * 86_400_000_000)),
            )),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                (0..n).map(|i| i as i64),
            )),
            Arc::new(StringArray::from_iter(
                nth(4).map(|v| v.map(|i| "é".repeat(i % 5))),
            )),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn parquet_of(batch: &RecordBatch) -> Bytes {
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(200))
            .set_data_page_row_count_limit(64)
            .set_write_batch_size(32)
            .build();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        out.into()
    }

    #[test]
    fn row_groups_decode_as_the_arrow_reader_decodes_them() {
        let batch = sample();
        let file = parquet_of(&batch);
        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .unwrap();
        assert_eq!(metadata.num_row_groups(), 2);
        assert!(supported(&batch.schema()));
        let reader = Arc::new(file.clone());
        let mut decoded = Vec::new();
        for g in 0..2 {
            decoded.push(read_row_group(&reader, &metadata, g, &batch.schema()).unwrap());
        }
        let expected: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .with_batch_size(200)
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(decoded, expected);
        let whole = arrow::compute::concat_batches(&batch.schema(), &decoded).unwrap();
        assert_eq!(whole, batch);
        assert!(whole.column(2).null_count() > 0 && whole.column(7).null_count() > 0);
        // Types outside the contract (a zoned timestamp) take the arrow reader.
        let zoned = Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        )]);
        assert!(!supported(&Arc::new(zoned)));
    }

    #[test]
    fn a_column_stored_as_another_type_is_an_error_naming_it() {
        let batch = sample();
        let file = parquet_of(&batch);
        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .unwrap();
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| (**f).clone())
            .collect();
        fields[4] = Field::new("i64", DataType::Float64, true);
        let wrong = Arc::new(Schema::new(fields));
        let err = read_row_group(&Arc::new(file), &metadata, 0, &wrong).unwrap_err();
        assert!(
            err.to_string().contains("column i64 is stored as INT64"),
            "{err}"
        );
    }
}
