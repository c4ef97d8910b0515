//! Rewriting a key file with new rows at its end without re-encoding the
//! rows it keeps: the kept row groups' column chunks are copied as bytes
//! (no decompression, no decoding), the new rows become one more row group.
//! A nightly refresh that adds one day per key then costs a copy, not a
//! re-encode, of the data.

use std::io::BufWriter;
use std::path::Path;

use arrow::array::RecordBatch;
use parquet::arrow::arrow_writer::compute_leaves;
use parquet::arrow::ArrowWriter;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{KeyValue, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;

use crate::atomic::AtomicFile;
use crate::dataset::{date_range, KeyFileWriter};
use crate::error::{ContractError, IoContext};
use crate::index::{self, IndexEntry};
use crate::FileFormat;

/// Rows and date range of one row group of a key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroupDates {
    pub rows: u64,
    pub min: i64,
    pub max: i64,
}

/// A key file read into memory with its footer parsed. Key files are
/// small (one key's rows); one read beats the dozens of seeks and reads
/// of copying column chunks from the file.
pub struct KeyFileFooter {
    path: std::path::PathBuf,
    bytes: bytes::Bytes,
    metadata: ParquetMetaData,
}

impl KeyFileFooter {
    pub fn open(path: &Path) -> Result<Self, ContractError> {
        let bytes = bytes::Bytes::from(std::fs::read(path).at(path)?);
        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(&bytes)
            .map_err(|source| ContractError::Parquet {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            metadata,
        })
    }

    /// The rows of row groups `from..`, decoded, in the file's schema.
    pub fn read_from_row_group(&self, from: usize) -> Result<RecordBatch, ContractError> {
        let perr = |source| ContractError::Parquet {
            path: self.path.clone(),
            source,
        };
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            self.bytes.clone(),
        )
        .map_err(perr)?
        .with_row_groups((from..self.row_groups()).collect())
        .build()
        .map_err(perr)?;
        let schema = arrow::array::RecordBatchReader::schema(&reader);
        let batches =
            reader
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| ContractError::Arrow {
                    path: self.path.clone(),
                    source,
                })?;
        arrow::compute::concat_batches(&schema, &batches).map_err(|source| ContractError::Arrow {
            path: self.path.clone(),
            source,
        })
    }

    pub fn row_groups(&self) -> usize {
        self.metadata.num_row_groups()
    }

    /// Each row group's date range from the date column's statistics, or
    /// `None` when a row group has none (a file from another writer).
    pub fn row_group_dates(&self, date_column: &str) -> Option<Vec<RowGroupDates>> {
        let schema = self.metadata.file_metadata().schema_descr();
        let column = (0..schema.num_columns()).find(|&i| schema.column(i).name() == date_column)?;
        self.metadata
            .row_groups()
            .iter()
            .map(|rg| {
                let (min, max) = match rg.column(column).statistics()? {
                    Statistics::Int32(s) => (i64::from(*s.min_opt()?), i64::from(*s.max_opt()?)),
                    Statistics::Int64(s) => (*s.min_opt()?, *s.max_opt()?),
                    _ => return None,
                };
                Some(RowGroupDates {
                    rows: rg.num_rows() as u64,
                    min,
                    max,
                })
            })
            .collect()
    }
}

impl KeyFileWriter {
    /// Write `key`'s file into `dir`: the first `keep` row groups of `old`
    /// copied as they are, then `tail` (rows dated after them, in order)
    /// as a new row group. `old` must hold the same schema. Parquet only.
    pub fn write_appending(
        &self,
        dir: &Path,
        key: &str,
        old: &KeyFileFooter,
        keep: usize,
        tail: &RecordBatch,
        metadata: &[(String, String)],
    ) -> Result<IndexEntry, ContractError> {
        let file_name = index::key_file_name(key, FileFormat::Parquet);
        let path = dir.join(&file_name);
        let kept = &old.metadata.row_groups()[..keep];
        let kept_dates = old
            .row_group_dates(self.date_column())
            .map(|d| d[..keep].to_vec())
            .unwrap_or_default();
        let first_kept = kept_dates.first().map(|g| g.min);
        let last_kept = kept_dates.last().map(|g| g.max);
        let (tail_first, tail_last) = date_range(tail, self.date_column(), self.date_type())
            .map_or((None, None), |(a, b)| (Some(a), Some(b)));
        let (Some(first_date), Some(last_date)) = (
            if keep > 0 { first_kept } else { tail_first },
            tail_last.or(last_kept),
        ) else {
            return Err(ContractError::BadColumn {
                path,
                column: self.date_column().to_owned(),
                reason: "no rows to write, or no date statistics in the kept file".into(),
            });
        };

        let encode = |sink| self.append_into(sink, &path, key, old, keep, tail, metadata);
        if self.is_durable() {
            let mut out = AtomicFile::create(&path)?;
            let sink = BufWriter::with_capacity(256 * 1024, out.take_file());
            let file = encode(sink)?
                .into_inner()
                .map_err(|e| ContractError::io(&path, e.into_error()))?;
            out.commit_file(file)?;
        } else if self.reuses_files() {
            let bytes = self.append_into(Vec::new(), &path, key, old, keep, tail, metadata)?;
            let file = crate::dataset::write_changed_pages(&path, &bytes)?;
            self.finished(&path, file)?;
        } else {
            let sink =
                BufWriter::with_capacity(256 * 1024, std::fs::File::create(&path).at(&path)?);
            let file = encode(sink)?
                .into_inner()
                .map_err(|e| ContractError::io(&path, e.into_error()))?;
            self.finished(&path, file)?;
        }
        let rows = kept.iter().map(|rg| rg.num_rows() as u64).sum::<u64>() + tail.num_rows() as u64;
        let bytes = std::fs::metadata(&path).at(&path)?.len();
        Ok(IndexEntry {
            key: key.to_owned(),
            file: file_name,
            rows,
            first_date,
            last_date,
            bytes,
        })
    }
    /// The parquet bytes of [`KeyFileWriter::write_appending`], into `sink`.
    #[allow(clippy::too_many_arguments)]
    fn append_into<W: std::io::Write + Send>(
        &self,
        sink: W,
        path: &Path,
        key: &str,
        old: &KeyFileFooter,
        keep: usize,
        tail: &RecordBatch,
        metadata: &[(String, String)],
    ) -> Result<W, ContractError> {
        let perr = |source| ContractError::Parquet {
            path: path.to_path_buf(),
            source,
        };
        let kept = &old.metadata.row_groups()[..keep];
        let mut writer = ArrowWriter::try_new(sink, tail.schema(), Some(self.properties().clone()))
            .map_err(perr)?;
        writer.append_key_value_metadata(KeyValue::new("kiln.key".into(), key.to_owned()));
        writer.append_key_value_metadata(KeyValue::new(
            "kiln.key_column".into(),
            self.key_column().to_owned(),
        ));
        for (k, v) in metadata {
            writer.append_key_value_metadata(KeyValue::new(k.clone(), v.clone()));
        }
        let (mut file_writer, factory) = writer.into_serialized_writer().map_err(perr)?;
        for rg in kept {
            let mut rg_writer = file_writer.next_row_group().map_err(perr)?;
            for column in rg.columns() {
                let close = ColumnCloseResult {
                    bytes_written: column.compressed_size() as u64,
                    rows_written: rg.num_rows() as u64,
                    metadata: column.clone(),
                    bloom_filter: None,
                    column_index: None,
                    offset_index: None,
                };
                rg_writer.append_column(&old.bytes, close).map_err(perr)?;
            }
            rg_writer.close().map_err(perr)?;
        }
        if tail.num_rows() > 0 {
            let mut columns = factory.create_column_writers(keep).map_err(perr)?;
            for ((field, array), column) in tail
                .schema()
                .fields()
                .iter()
                .zip(tail.columns())
                .zip(columns.iter_mut())
            {
                for leaf in compute_leaves(field, array).map_err(perr)? {
                    column.write(&leaf).map_err(perr)?;
                }
            }
            let mut rg_writer = file_writer.next_row_group().map_err(perr)?;
            for column in columns {
                column
                    .close()
                    .map_err(perr)?
                    .append_to_row_group(&mut rg_writer)
                    .map_err(perr)?;
            }
            rg_writer.close().map_err(perr)?;
        }
        file_writer.into_inner().map_err(perr)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Date32Array, Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use std::fs::File;

    use super::*;
    use crate::dataset::Codec;
    use crate::types::ColumnType;

    fn batch(days: std::ops::Range<i32>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("d", DataType::Date32, false),
            Field::new("x", DataType::Float64, true),
        ]));
        let n = days.len();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a"; n])),
                Arc::new(Date32Array::from_iter_values(days.clone())),
                Arc::new(Float64Array::from_iter(
                    days.map(|d| (d % 7 != 0).then_some(f64::from(d) * 0.5)),
                )),
            ],
        )
        .unwrap()
    }

    fn read_all(path: &Path) -> RecordBatch {
        let file = File::open(path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let schema = arrow::array::RecordBatchReader::schema(&reader);
        let batches: Vec<_> = reader.map(Result::unwrap).collect();
        arrow::compute::concat_batches(&schema, &batches).unwrap()
    }

    #[test]
    fn appended_files_equal_a_rewrite_and_keep_row_groups_as_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let writer = KeyFileWriter::new(
            FileFormat::Parquet,
            Codec::Snappy,
            "k",
            "d",
            ColumnType::Date32,
            false,
        );
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        writer.write(&a, "a", &batch(0..100), &[]).unwrap();
        // Append twice: 0..100 | 100..103 | 103..110.
        let mut dir_in = a.clone();
        for (i, days) in [(0, 100..103), (1, 103..110)] {
            let out = dir.path().join(format!("step{i}"));
            std::fs::create_dir_all(&out).unwrap();
            let old = KeyFileFooter::open(&dir_in.join("a.parquet")).unwrap();
            let keep = old.row_groups();
            let entry = writer
                .write_appending(
                    &out,
                    "a",
                    &old,
                    keep,
                    &batch(days),
                    &[("m".into(), "v".into())],
                )
                .unwrap();
            assert_eq!(entry.first_date, 0);
            dir_in = out;
            assert_eq!(entry.rows, if i == 0 { 103 } else { 110 });
        }
        let appended = read_all(&dir_in.join("a.parquet"));
        assert_eq!(appended, batch(0..110));
        let footer = KeyFileFooter::open(&dir_in.join("a.parquet")).unwrap();
        let dates = footer.row_group_dates("d").unwrap();
        assert_eq!(
            dates,
            [
                RowGroupDates {
                    rows: 100,
                    min: 0,
                    max: 99
                },
                RowGroupDates {
                    rows: 3,
                    min: 100,
                    max: 102
                },
                RowGroupDates {
                    rows: 7,
                    min: 103,
                    max: 109
                },
            ]
        );
        // Keep only the first row group: the tail replaces the rest.
        let entry = writer
            .write_appending(&b, "a", &footer, 1, &batch(100..105), &[])
            .unwrap();
        assert_eq!((entry.rows, entry.last_date), (105, 104));
        assert_eq!(read_all(&b.join("a.parquet")), batch(0..105));
    }
}
