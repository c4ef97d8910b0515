//! One key's rows as a parquet row group, written through parquet's typed
//! column writers instead of `ArrowWriter`.
//!
//! A key file is one flat batch of the contract's column types. For such a
//! batch `ArrowWriter` does general work it does not need: it computes
//! definition levels and a list of non-null row indices for every column
//! (nested types would need them), gathers the values through those
//! indices, and buffers each column chunk's pages to copy them into the file
//! afterwards. For kiln-featurize's 37 nullable float columns per file that
//! was a fifth of the run's CPU. Here a column's definition levels come
//! straight from its validity bits, a column without nulls is handed over
//! as it is, and pages go to the file as they are made. The bytes are
//! `ArrowWriter`'s, but for an optional size hint ArrowWriter adds to the
//! offset index of string columns (a test compares them).

use std::io::Write;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Date32Type, Field, Float32Type, Float64Type, Int64Type, TimestampMicrosecondType,
};
use bytes::Bytes;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowRowGroupWriterFactory};
use parquet::data_type::{self as pq, ByteArray};
use parquet::errors::ParquetError;
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};

use crate::ColumnType;

/// Whether [`write_row_group`] can write `batch`: flat columns of the
/// contract's types, no nulls where the schema says there are none, and
/// rows (for none, ArrowWriter writes no row group at all).
pub(crate) fn supported(batch: &RecordBatch) -> bool {
    batch.num_rows() > 0
        && batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .all(|(field, array)| {
                ColumnType::from_arrow(field.data_type()).is_some()
                    && (field.is_nullable() || array.null_count() == 0)
            })
}

/// Write `batch` as the next row group of `writer`, whose schema was made
/// from `batch`'s (as was `factory`, from the same `ArrowWriter`): with the
/// typed writers where [`supported`], else with ArrowWriter's own column
/// writers.
pub(crate) fn append_row_group<W: Write + Send>(
    writer: &mut SerializedFileWriter<W>,
    factory: &ArrowRowGroupWriterFactory,
    batch: &RecordBatch,
) -> Result<(), ParquetError> {
    append_row_group_of(writer, factory, std::slice::from_ref(batch))
}

/// [`append_row_group`] of the rows of `parts` (batches of one schema), in
/// order, as one row group, without copying them into one batch first (a
/// nightly refresh's tail group is the old tail's kept rows and the new
/// ones; concatenating them was 4 % of a night's CPU). The bytes are their
/// concatenation's unless a page limit falls inside a part (a page may
/// then end at another row).
pub(crate) fn append_row_group_of<W: Write + Send>(
    writer: &mut SerializedFileWriter<W>,
    factory: &ArrowRowGroupWriterFactory,
    parts: &[RecordBatch],
) -> Result<(), ParquetError> {
    let rows: Vec<&RecordBatch> = parts.iter().filter(|p| p.num_rows() > 0).collect();
    if !rows.is_empty() && rows.iter().all(|p| supported(p)) {
        return write_row_group(writer, &rows);
    }
    let mut columns = factory.create_column_writers(writer.flushed_row_groups().len())?;
    for part in parts {
        for ((field, array), column) in part
            .schema()
            .fields()
            .iter()
            .zip(part.columns())
            .zip(columns.iter_mut())
        {
            for leaf in compute_leaves(field, array)? {
                column.write(&leaf)?;
            }
        }
    }
    let mut row_group = writer.next_row_group()?;
    for column in columns {
        column.close()?.append_to_row_group(&mut row_group)?;
    }
    row_group.close()?;
    Ok(())
}

/// Write the rows of `parts` (of one schema, each [`supported`]) as the
/// next row group of `writer`, whose schema was made from theirs.
fn write_row_group<W: Write + Send>(
    writer: &mut SerializedFileWriter<W>,
    parts: &[&RecordBatch],
) -> Result<(), ParquetError> {
    let schema = parts[0].schema();
    let mut row_group = writer.next_row_group()?;
    for (i, field) in schema.fields().iter().enumerate() {
        let mut column = row_group
            .next_column()?
            .ok_or_else(|| ParquetError::General("fewer parquet columns than arrow".into()))?;
        for part in parts {
            write_array(&mut column, field, part.column(i))?;
        }
        column.close()?;
    }
    row_group.close()?;
    Ok(())
}

/// One batch's values of `field` into `column` (more may follow).
fn write_array(
    column: &mut SerializedColumnWriter<'_>,
    field: &Field,
    array: &ArrayRef,
) -> Result<(), ParquetError> {
    let nulls = field.is_nullable().then(|| array.logical_nulls());
    match field.data_type() {
        DataType::Float64 => {
            let values = array.as_primitive::<Float64Type>().values();
            write_column::<pq::DoubleType>(column, values, nulls)?;
        }
        DataType::Float32 => {
            let values = array.as_primitive::<Float32Type>().values();
            write_column::<pq::FloatType>(column, values, nulls)?;
        }
        DataType::Int64 => {
            let values = array.as_primitive::<Int64Type>().values();
            write_column::<pq::Int64Type>(column, values, nulls)?;
        }
        DataType::Timestamp(..) => {
            let values = array.as_primitive::<TimestampMicrosecondType>().values();
            write_column::<pq::Int64Type>(column, values, nulls)?;
        }
        DataType::Date32 => {
            let values = array.as_primitive::<Date32Type>().values();
            write_column::<pq::Int32Type>(column, values, nulls)?;
        }
        DataType::Utf8 => {
            let strings = array.as_string::<i32>();
            let offsets = strings.value_offsets();
            let (first, last) = (offsets[0] as usize, offsets[strings.len()] as usize);
            // One copy of the column's bytes; each value is a slice of it.
            let data = Bytes::copy_from_slice(&strings.value_data()[first..last]);
            let values: Vec<ByteArray> = offsets
                .windows(2)
                .map(|w| ByteArray::from(data.slice(w[0] as usize - first..w[1] as usize - first)))
                .collect();
            write_column::<pq::ByteArrayType>(column, &values, nulls)?;
        }
        other => {
            return Err(ParquetError::General(format!(
                "column {} has type {other}, not a key-file type",
                field.name()
            )))
        }
    }
    Ok(())
}

/// One column's values, one per row (a null row's value is ignored).
/// `nulls` is `None` for a required column, `Some(None)` for an optional
/// one without nulls.
fn write_column<T: pq::DataType>(
    column: &mut SerializedColumnWriter<'_>,
    values: &[T::T],
    nulls: Option<Option<NullBuffer>>,
) -> Result<(), ParquetError>
where
    T::T: Clone,
{
    let typed = column.typed::<T>();
    match nulls {
        None => typed.write_batch(values, None, None)?,
        Some(None) => {
            let levels = vec![1i16; values.len()];
            typed.write_batch(values, Some(&levels), None)?
        }
        Some(Some(nulls)) => {
            // Runs of valid rows, not rows one by one: a feature column is
            // null only for its warm-up rows, one run at its start.
            let runs: Vec<(usize, usize)> = nulls.valid_slices().collect();
            let mut levels = vec![0i16; values.len()];
            for &(start, end) in &runs {
                levels[start..end].fill(1);
            }
            match runs[..] {
                [(start, end)] => typed.write_batch(&values[start..end], Some(&levels), None)?,
                _ => {
                    let mut present = Vec::with_capacity(values.len() - nulls.null_count());
                    for &(start, end) in &runs {
                        present.extend_from_slice(&values[start..end]);
                    }
                    typed.write_batch(&present, Some(&levels), None)?
                }
            }
        }
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, Date32Array, Float32Array, Float64Array, Int64Array, StringArray,
        TimestampMicrosecondArray,
    };
    use arrow::datatypes::{Field, Schema, SchemaRef};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::ParquetMetaDataReader;
    use parquet::file::properties::WriterProperties;

    use super::*;
    use crate::dataset::{Codec, KeyFileWriter};
    use crate::{ColumnType, FileFormat};

    /// Every contract type, nullable and not, with nulls at the start, in
    /// runs and alone, and strings of varying length; a column null only at
    /// its start, and one all null.
    fn batch(rows: usize) -> RecordBatch {
        let gap = |i: usize| i < 3 || i.is_multiple_of(7) || (20..25).contains(&i);
        let f64s: Float64Array = (0..rows)
            .map(|i| (!gap(i)).then_some(i as f64 * 1.25 - 7.0))
            .collect();
        let f32s: Float32Array = (0..rows)
            .map(|i| (i % 5 != 1).then_some(i as f32 / 3.0))
            .collect();
        let ints: Int64Array = (0..rows)
            .map(|i| (i % 11 != 4).then_some(i as i64 * 1_000_003 - 5))
            .collect();
        let times: TimestampMicrosecondArray = (0..rows)
            .map(|i| (i % 13 != 2).then_some(i as i64 * 86_400_000_000))
            .collect();
        let names: StringArray = (0..rows)
            .map(|i| (i % 9 != 3).then(|| "x".repeat(i % 6)))
            .collect();
        let columns: Vec<(&str, ArrayRef, bool)> = vec![
            (
                "key",
                Arc::new(StringArray::from(vec!["600519"; rows])),
                false,
            ),
            (
                "date",
                Arc::new(Date32Array::from_iter_values(0..rows as i32)),
                false,
            ),
            (
                "close",
                Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))),
                false,
            ),
            ("feature", Arc::new(f64s), true),
            (
                "full",
                Arc::new(Float64Array::from_iter_values(
                    (0..rows).map(|i| 0.5 * i as f64),
                )),
                true,
            ),
            ("small", Arc::new(f32s), true),
            ("volume", Arc::new(ints), true),
            ("at", Arc::new(times), true),
            ("name", Arc::new(names), true),
            // Nulls only at the start (an indicator's warm-up), and only.
            (
                "warm_up",
                Arc::new(Float64Array::from_iter(
                    (0..rows).map(|i| (i >= 59).then_some(i as f64 / 7.0)),
                )),
                true,
            ),
            (
                "never",
                Arc::new(Float64Array::from(vec![None::<f64>; rows])),
                true,
            ),
        ];
        let schema = Schema::new(
            columns
                .iter()
                .map(|(name, array, nullable)| {
                    Field::new(*name, array.data_type().clone(), *nullable)
                })
                .collect::<Vec<_>>(),
        );
        RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|c| c.1).collect()).unwrap()
    }

    fn both(batch: &RecordBatch, props: WriterProperties) -> (Vec<u8>, Vec<u8>) {
        let mut arrow =
            ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props.clone())).unwrap();
        arrow.write(batch).unwrap();
        let by_arrow = arrow.into_inner().unwrap();
        let typed = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).unwrap();
        let (mut file, _) = typed.into_serialized_writer().unwrap();
        write_row_group(&mut file, &[batch]).unwrap();
        (by_arrow, file.into_inner().unwrap())
    }

    fn read_back(file: Vec<u8>, schema: &SchemaRef) -> RecordBatch {
        let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file))
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        arrow::compute::concat_batches(schema, &batches).unwrap()
    }

    #[test]
    fn writes_the_bytes_arrow_writer_writes() {
        let full = batch(1000);
        assert!(supported(&full));
        // Sliced batches: values, validity and string offsets not at 0.
        for b in [full.clone(), full.slice(0, 1), full.slice(17, 600)] {
            let kiln = KeyFileWriter::new(
                FileFormat::Parquet,
                Codec::None,
                "key",
                "date",
                ColumnType::Date32,
                false,
            );
            let mut props = vec![
                kiln.props.clone(),
                // Dictionaries and page statistics everywhere.
                WriterProperties::builder().build(),
            ];
            props.push(
                WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .set_dictionary_enabled(false)
                    .build(),
            );
            for p in props {
                // Strings aside (below), the very same bytes.
                let without_strings = b.project(&[1, 2, 3, 4, 5, 6, 7, 9, 10]).unwrap();
                let (a, t) = both(&without_strings, p.clone());
                let differ = a.iter().zip(&t).position(|(a, t)| a != t);
                assert!(
                    differ.is_none() && a.len() == t.len(),
                    "{} rows: first difference at byte {differ:?} of {} / {}",
                    b.num_rows(),
                    a.len(),
                    t.len()
                );
                // ArrowWriter adds an optional size hint for string pages
                // (unencoded bytes) to the offset index; the rest is equal.
                let (by_arrow, typed) = both(&b, p);
                let meta = |bytes: &Vec<u8>| {
                    ParquetMetaDataReader::new()
                        .parse_and_finish(&Bytes::from(bytes.clone()))
                        .unwrap()
                };
                let (ma, mt) = (meta(&by_arrow), meta(&typed));
                for (ca, ct) in ma.row_groups()[0]
                    .columns()
                    .iter()
                    .zip(mt.row_groups()[0].columns())
                {
                    assert_eq!(ca.statistics(), ct.statistics());
                    assert_eq!(ca.compressed_size(), ct.compressed_size());
                    assert_eq!(ca.num_values(), ct.num_values());
                }
                assert_eq!(read_back(typed, &b.schema()), b);
            }
        }
    }

    #[test]
    fn a_row_group_of_several_batches_is_that_of_their_concatenation() {
        let whole = batch(1000).slice(5, 900);
        let parts = [
            whole.slice(0, 1),
            whole.slice(1, 0),
            whole.slice(1, 299),
            whole.slice(300, 600),
        ];
        let kiln = KeyFileWriter::new(
            FileFormat::Parquet,
            Codec::None,
            "key",
            "date",
            ColumnType::Date32,
            false,
        );
        let small_pages = WriterProperties::builder()
            .set_data_page_row_count_limit(64)
            .set_write_batch_size(50)
            .build();
        let props = [
            kiln.props.clone(),
            WriterProperties::builder().build(),
            small_pages,
        ];
        for (i, p) in props.into_iter().enumerate() {
            let write = |batches: &[RecordBatch]| {
                let arrow =
                    ArrowWriter::try_new(Vec::new(), whole.schema(), Some(p.clone())).unwrap();
                let (mut file, factory) = arrow.into_serialized_writer().unwrap();
                append_row_group_of(&mut file, &factory, batches).unwrap();
                file.into_inner().unwrap()
            };
            let (of_parts, of_whole) = (write(&parts), write(std::slice::from_ref(&whole)));
            if i < 2 {
                assert!(of_parts == of_whole, "properties {i}: other bytes");
            }
            assert_eq!(read_back(of_parts, &whole.schema()), whole);
        }
        // Parts the typed writers cannot take (a type outside the
        // contract's) go through ArrowWriter's writers, in one row group.
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Boolean, true)]));
        let part = |v: Vec<Option<bool>>| {
            let array = arrow::array::BooleanArray::from(v);
            RecordBatch::try_new(schema.clone(), vec![Arc::new(array) as _]).unwrap()
        };
        let parts = [part(vec![Some(true), None]), part(vec![Some(false)])];
        assert!(!supported(&parts[0]));
        let arrow = ArrowWriter::try_new(Vec::new(), schema.clone(), None).unwrap();
        let (mut file, factory) = arrow.into_serialized_writer().unwrap();
        append_row_group_of(&mut file, &factory, &parts).unwrap();
        let bytes = file.into_inner().unwrap();
        let meta = ParquetMetaDataReader::new()
            .parse_and_finish(&Bytes::from(bytes.clone()))
            .unwrap();
        assert_eq!(meta.num_row_groups(), 1);
        assert_eq!(
            read_back(bytes, &schema),
            part(vec![Some(true), None, Some(false)])
        );
    }

    /// Columns split into many pages (where ArrowWriter may cut pages
    /// elsewhere: it batches columns without nulls differently) read back
    /// as written.
    #[test]
    fn small_pages_read_back_as_written() {
        let b = batch(5000).slice(3, 4000);
        let props = WriterProperties::builder()
            .set_data_page_row_count_limit(64)
            .set_write_batch_size(50)
            .set_dictionary_page_size_limit(256)
            .build();
        let (_, typed) = both(&b, props);
        assert_eq!(read_back(typed, &b.schema()), b);
    }

    #[test]
    fn nulls_in_a_required_column_are_not_supported() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, false)]));
        let array: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.0), None]));
        // RecordBatch refuses such a batch; an unchecked one is refused here.
        let options = arrow::array::RecordBatchOptions::new();
        let b = RecordBatch::try_new_with_options(schema, vec![array], &options);
        assert!(b.is_err() || !supported(&b.unwrap()));
        let unsupported = RecordBatch::try_from_iter([(
            "flag",
            Arc::new(arrow::array::BooleanArray::from(vec![true])) as ArrayRef,
        )])
        .unwrap();
        assert!(!supported(&unsupported));
        assert!(!supported(&batch(0)));
    }
}
