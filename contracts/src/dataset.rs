//! Reading and writing the files of a keyed dataset.
//!
//! A reader opens a dataset with [`KeyedDataset::open`] (manifest + index, no
//! key file touched), lists keys and their date ranges from the index, and
//! reads one key's rows — already in date order — with only the columns it
//! asks for via [`KeyedDataset::read_key`].

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, Date32Array, RecordBatch, RecordBatchReader, TimestampMicrosecondArray};
use arrow::datatypes::{Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::append::FooterSchema;
use crate::atomic::AtomicFile;
use crate::error::{ContractError, IoContext};
use crate::index::{self, IndexEntry};
use crate::manifest::{FileFormat, Manifest};
use crate::types::ColumnType;

/// An opened keyed dataset: manifest and index in memory, key files on disk.
#[derive(Debug)]
pub struct KeyedDataset {
    dir: PathBuf,
    manifest: Manifest,
    entries: Vec<IndexEntry>,
    by_key: HashMap<String, usize>,
    schema: SchemaRef,
}

impl KeyedDataset {
    /// Open `dir`, validating the manifest and the index. Opens no key file.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, ContractError> {
        let dir = dir.as_ref().to_path_buf();
        let manifest = Manifest::read(&dir)?;
        let entries = index::read_index(&dir, manifest.date_type(), manifest.file_format)?;
        if entries.len() as u64 != manifest.statistics.keys {
            return Err(ContractError::BadIndex {
                path: dir.join(crate::manifest::INDEX_FILE),
                reason: format!(
                    "{} keys in the index, {} in the manifest",
                    entries.len(),
                    manifest.statistics.keys
                ),
            });
        }
        let by_key = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key.clone(), i))
            .collect();
        let schema = Arc::new(Schema::new(
            manifest
                .columns
                .iter()
                .map(|c| {
                    let nullable = c.name != manifest.key_column && c.name != manifest.date_column;
                    Field::new(&c.name, c.column_type.arrow(), nullable)
                })
                .collect::<Vec<_>>(),
        ));
        Ok(Self {
            dir,
            manifest,
            entries,
            by_key,
            schema,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The full schema of every key file.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Index entries, sorted by key.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.key.as_str())
    }

    pub fn entry(&self, key: &str) -> Option<&IndexEntry> {
        self.by_key.get(key).map(|&i| &self.entries[i])
    }

    /// A producer column of the index (e.g. kiln-preheat's `fetched_at`),
    /// aligned with [`KeyedDataset::entries`]; `None` when absent.
    pub fn index_column(
        &self,
        name: &str,
    ) -> Result<Option<arrow::array::ArrayRef>, ContractError> {
        index::read_index_column(&self.dir, name)
    }

    pub fn path_of(&self, entry: &IndexEntry) -> PathBuf {
        self.dir.join(&entry.file)
    }

    /// Check that every requested column exists.
    pub fn check_columns(&self, columns: &[&str]) -> Result<(), ContractError> {
        for c in columns {
            if self.manifest.column(c).is_none() {
                return Err(ContractError::UnknownColumn {
                    path: self.dir.clone(),
                    column: (*c).to_owned(),
                    available: self.manifest.column_names().join(", "),
                });
            }
        }
        Ok(())
    }

    /// One key's rows in date order; `columns` (in the order given) or all.
    pub fn read_key(
        &self,
        key: &str,
        columns: Option<&[&str]>,
    ) -> Result<RecordBatch, ContractError> {
        let entry = self.entry(key).ok_or_else(|| ContractError::UnknownKey {
            path: self.dir.clone(),
            key: key.to_owned(),
        })?;
        self.read_entry(entry, columns)
    }

    /// Like [`KeyedDataset::read_key`] for an entry of this dataset's index.
    pub fn read_entry(
        &self,
        entry: &IndexEntry,
        columns: Option<&[&str]>,
    ) -> Result<RecordBatch, ContractError> {
        let all = self.manifest.column_names();
        let wanted: Vec<&str> = columns.map(<[&str]>::to_vec).unwrap_or(all);
        self.check_columns(&wanted)?;
        let path = self.path_of(entry);
        let batch = match self.manifest.file_format {
            FileFormat::Parquet => read_parquet(&path, &wanted)?,
            FileFormat::Arrow => read_arrow_ipc(&path, &wanted)?,
            FileFormat::Csv => read_csv(&path, &self.schema, &wanted)?,
        };
        for name in &wanted {
            let expected = self.manifest.column(name).expect("checked").column_type;
            let col = batch
                .column_by_name(name)
                .ok_or_else(|| ContractError::BadColumn {
                    path: path.clone(),
                    column: (*name).to_owned(),
                    reason: "is missing from the file".into(),
                })?;
            if col.data_type() != &expected.arrow() {
                return Err(ContractError::BadColumn {
                    path: path.clone(),
                    column: (*name).to_owned(),
                    reason: format!(
                        "has type {} in the file, the manifest says {}",
                        col.data_type(),
                        expected
                    ),
                });
            }
        }
        if batch.num_rows() as u64 != entry.rows {
            return Err(ContractError::BadFile {
                path,
                reason: format!(
                    "has {} rows, the index says {}",
                    batch.num_rows(),
                    entry.rows
                ),
            });
        }
        Ok(batch)
    }
}

fn project_in_order(
    batch: RecordBatch,
    wanted: &[&str],
    path: &Path,
) -> Result<RecordBatch, ContractError> {
    let schema = batch.schema();
    let indices = wanted
        .iter()
        .map(|name| {
            schema.index_of(name).map_err(|_| ContractError::BadColumn {
                path: path.to_path_buf(),
                column: (*name).to_owned(),
                reason: "is missing from the file".into(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    batch
        .project(&indices)
        .map_err(|source| ContractError::Arrow {
            path: path.to_path_buf(),
            source,
        })
}

fn concat(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    path: &Path,
) -> Result<RecordBatch, ContractError> {
    arrow::compute::concat_batches(&schema, &batches).map_err(|source| ContractError::Arrow {
        path: path.to_path_buf(),
        source,
    })
}

/// Files up to this size are read with one `read` and decoded from memory:
/// through a `File`, the parquet reader issues a read per page header, and
/// for the small files of a keyed dataset those syscalls cost more than
/// the decoding (a fifth of kiln-featurize's time).
const READ_WHOLE_MAX: u64 = 64 << 20;

fn read_parquet(path: &Path, wanted: &[&str]) -> Result<RecordBatch, ContractError> {
    let file = File::open(path).at(path)?;
    let len = file.metadata().at(path)?.len();
    if len <= READ_WHOLE_MAX {
        use std::io::Read;
        let mut buf = Vec::with_capacity(len as usize);
        (&file)
            .take(READ_WHOLE_MAX)
            .read_to_end(&mut buf)
            .at(path)?;
        return read_parquet_from(bytes::Bytes::from(buf), path, wanted);
    }
    read_parquet_from(file, path, wanted)
}

fn read_parquet_from<R: parquet::file::reader::ChunkReader + 'static>(
    reader: R,
    path: &Path,
    wanted: &[&str],
) -> Result<RecordBatch, ContractError> {
    let perr = |source| ContractError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(reader).map_err(perr)?;
    let file_schema = builder.schema().clone();
    let mut roots = Vec::with_capacity(wanted.len());
    for name in wanted {
        match file_schema.index_of(name) {
            Ok(i) => roots.push(i),
            Err(_) => {
                return Err(ContractError::BadColumn {
                    path: path.to_path_buf(),
                    column: (*name).to_owned(),
                    reason: "is missing from the file".into(),
                })
            }
        }
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(perr)?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ContractError::Arrow {
            path: path.to_path_buf(),
            source,
        })?;
    project_in_order(concat(schema, batches, path)?, wanted, path)
}

fn read_arrow_ipc(path: &Path, wanted: &[&str]) -> Result<RecordBatch, ContractError> {
    let aerr = |source| ContractError::Arrow {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).at(path)?;
    let probe = arrow::ipc::reader::FileReader::try_new(file, None).map_err(aerr)?;
    let file_schema = probe.schema();
    let indices = wanted
        .iter()
        .map(|name| file_schema.index_of(name).ok())
        .collect::<Option<Vec<_>>>();
    let Some(indices) = indices else {
        return project_in_order(RecordBatch::new_empty(file_schema), wanted, path);
    };
    let file = File::open(path).at(path)?;
    let reader = arrow::ipc::reader::FileReader::try_new(file, Some(indices)).map_err(aerr)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(aerr)?;
    project_in_order(concat(schema, batches, path)?, wanted, path)
}

fn read_csv(
    path: &Path,
    schema: &SchemaRef,
    wanted: &[&str],
) -> Result<RecordBatch, ContractError> {
    let aerr = |source| ContractError::Arrow {
        path: path.to_path_buf(),
        source,
    };
    let indices = wanted
        .iter()
        .map(|n| schema.index_of(n).expect("checked against the manifest"))
        .collect::<Vec<_>>();
    let file = File::open(path).at(path)?;
    let reader = arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(true)
        .with_projection(indices)
        .with_batch_size(64 * 1024)
        .build(file)
        .map_err(aerr)?;
    let out_schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(aerr)?;
    project_in_order(concat(out_schema, batches, path)?, wanted, path)
}

/// Parquet compression codecs a producer may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Snappy,
    Lz4,
    Zstd(i32),
}

impl Codec {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.to_ascii_lowercase();
        Some(match s.as_str() {
            "none" | "uncompressed" => Codec::None,
            "snappy" => Codec::Snappy,
            "lz4" => Codec::Lz4,
            "zstd" => Codec::Zstd(1),
            _ => {
                let level: i32 = s.strip_prefix("zstd:")?.parse().ok()?;
                ZstdLevel::try_new(level).ok()?;
                Codec::Zstd(level)
            }
        })
    }

    fn parquet(self) -> Compression {
        match self {
            Codec::None => Compression::UNCOMPRESSED,
            Codec::Snappy => Compression::SNAPPY,
            Codec::Lz4 => Compression::LZ4_RAW,
            Codec::Zstd(l) => Compression::ZSTD(ZstdLevel::try_new(l).unwrap_or_default()),
        }
    }
}

/// Writes key files in one dataset's format.
#[derive(Debug, Clone)]
pub struct KeyFileWriter {
    format: FileFormat,
    key_column: String,
    date_column: String,
    date_type: ColumnType,
    pub(crate) props: WriterProperties,
    /// fsync + rename each file (writing into a live dataset). Off inside a
    /// staging directory, which is made durable as a whole before publishing.
    durable: bool,
    /// Where finished files go to be fsynced in the background (staging).
    sync_queue: Option<crate::atomic::SyncQueue>,
    /// Update existing files in place (see [`crate::rewrite::write_changed_pages`]).
    reuse_files: bool,
    /// Write new files with O_DIRECT (see [`crate::direct`]).
    direct_io: bool,
    /// Writer options with the parquet schema and the encoded arrow schema
    /// already made, for the last schema written (a writer of thousands of
    /// small files writes one schema).
    prepared: Arc<std::sync::Mutex<Option<Prepared>>>,
}

/// What every file of one schema is written with.
#[derive(Debug)]
struct Prepared {
    schema: SchemaRef,
    options: ArrowWriterOptions,
    /// `options`, uncompressed (see [`KeyFileWriter::tail_writer`]).
    uncompressed: ArrowWriterOptions,
    footer: FooterSchema,
}

/// The length of a whole parquet file's trailer: the footer (the file's
/// metadata, through which readers find every column chunk by offset), its
/// length and the closing magic.
pub(crate) fn parquet_trailer_len(file: &[u8]) -> usize {
    use parquet::file::{metadata::FooterTail, FOOTER_SIZE};
    let tail = file
        .last_chunk::<FOOTER_SIZE>()
        .and_then(|t| FooterTail::try_new(t).ok())
        .expect("a whole parquet file, just encoded");
    tail.metadata_length() + FOOTER_SIZE
}

impl KeyFileWriter {
    pub fn new(
        format: FileFormat,
        codec: Codec,
        key_column: &str,
        date_column: &str,
        date_type: ColumnType,
        durable: bool,
    ) -> Self {
        // Dictionary pages help the key column (one value per file) and cost
        // time and bytes on float columns, whose values rarely repeat.
        // Statistics only where a reader filters: the key and the date (the
        // index already holds date ranges; float min/max cost 2 % of a split).
        let props = WriterProperties::builder()
            .set_compression(codec.parquet())
            .set_dictionary_enabled(false)
            .set_column_dictionary_enabled(ColumnPath::from(key_column), true)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_column_statistics_enabled(ColumnPath::from(key_column), EnabledStatistics::Chunk)
            .set_column_statistics_enabled(ColumnPath::from(date_column), EnabledStatistics::Chunk)
            .set_offset_index_disabled(true)
            .set_created_by(format!("kiln {}", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            format,
            key_column: key_column.to_owned(),
            date_column: date_column.to_owned(),
            date_type,
            props,
            durable,
            sync_queue: None,
            reuse_files: false,
            direct_io: false,
            prepared: Arc::default(),
        }
    }

    /// Hand each finished file to a [`crate::atomic::BackgroundSync`] instead
    /// of leaving it to a final sync of the whole directory.
    pub fn with_sync_queue(mut self, queue: crate::atomic::SyncQueue) -> Self {
        self.sync_queue = Some(queue);
        self
    }

    /// Write each file with O_DIRECT, past the page cache (see
    /// [`crate::direct`]). Parquet files in a staging directory only.
    pub fn with_direct_io(mut self) -> Self {
        self.direct_io = self.format == FileFormat::Parquet && !self.durable;
        self
    }

    /// Update existing files in place where that is safe (a private
    /// staging directory being updated), see [`crate::rewrite::write_changed_pages`].
    /// Parquet only.
    pub fn with_file_reuse(mut self) -> Self {
        self.reuse_files = self.format == FileFormat::Parquet;
        self
    }

    /// An `ArrowWriter` for files of `schema` into `sink`, every key file
    /// of every format path made the same way.
    pub(crate) fn arrow_writer<W: std::io::Write + Send>(
        &self,
        sink: W,
        schema: &SchemaRef,
    ) -> Result<ArrowWriter<W>, parquet::errors::ParquetError> {
        let options = self.prepared(schema, |p| p.options.clone())?;
        ArrowWriter::try_new_with_options(sink, schema.clone(), options)
    }

    /// [`KeyFileWriter::arrow_writer`] for a file whose row groups after
    /// the first are a key's tail group (see [`crate::append`]), which is
    /// written uncompressed whatever the codec: a few dozen rows of prices
    /// compress little, and compressing and decompressing them again every
    /// night in thousands of files cost more than the bytes they save.
    pub(crate) fn tail_writer<W: std::io::Write + Send>(
        &self,
        sink: W,
        schema: &SchemaRef,
    ) -> Result<ArrowWriter<W>, parquet::errors::ParquetError> {
        let options = self.prepared(schema, |p| p.uncompressed.clone())?;
        ArrowWriter::try_new_with_options(sink, schema.clone(), options)
    }

    /// What the footer of every parquet file this writer makes of `schema`
    /// holds alike, for reading such files back faster
    /// ([`crate::append::KeyFileTail::open_expecting`]).
    pub fn footer_schema(
        &self,
        schema: &SchemaRef,
    ) -> Result<FooterSchema, parquet::errors::ParquetError> {
        self.prepared(schema, |p| p.footer.clone())
    }

    /// `pick` of what files of `schema` are written with (made once per
    /// schema; only the part a file needs is cloned for it).
    fn prepared<T>(
        &self,
        schema: &SchemaRef,
        pick: impl FnOnce(&Prepared) -> T,
    ) -> Result<T, parquet::errors::ParquetError> {
        let mut prepared = self.prepared.lock().expect("prepared options");
        if let Some(p) = prepared.as_ref().filter(|p| &p.schema == schema) {
            return Ok(pick(p));
        }
        // What `ArrowWriter::try_new` would do for each file.
        let mut props = self.props.clone();
        parquet::arrow::add_encoded_arrow_schema_to_metadata(schema, &mut props);
        let parquet_schema = ArrowSchemaConverter::new()
            .with_coerce_types(props.coerce_types())
            .convert(schema)?;
        let arrow_schema = crate::append::arrow_schema_in(props.key_value_metadata())
            .unwrap_or_default()
            .to_owned();
        let footer = FooterSchema {
            descr: Arc::new(parquet_schema.clone()),
            arrow_schema,
        };
        let options_of = |props: WriterProperties| {
            ArrowWriterOptions::new()
                .with_properties(props)
                .with_skip_arrow_metadata(true)
                .with_parquet_schema(parquet_schema.clone())
        };
        let uncompressed = options_of(
            props
                .clone()
                .into_builder()
                .set_compression(Compression::UNCOMPRESSED)
                .build(),
        );
        let p = Prepared {
            schema: schema.clone(),
            options: options_of(props),
            uncompressed,
            footer,
        };
        let picked = pick(&p);
        *prepared = Some(p);
        Ok(picked)
    }

    /// Footer metadata every key file gets: its key, the key column, and
    /// the producer's `metadata`.
    pub(crate) fn describe<W: std::io::Write + Send>(
        &self,
        writer: &mut ArrowWriter<W>,
        key: &str,
        metadata: &[(String, String)],
    ) {
        writer.append_key_value_metadata(KeyValue::new("kiln.key".into(), key.to_owned()));
        writer.append_key_value_metadata(KeyValue::new(
            "kiln.key_column".into(),
            self.key_column.clone(),
        ));
        for (k, v) in metadata {
            writer.append_key_value_metadata(KeyValue::new(k.clone(), v.clone()));
        }
    }

    pub fn key_column(&self) -> &str {
        &self.key_column
    }

    pub fn date_column(&self) -> &str {
        &self.date_column
    }

    pub fn date_type(&self) -> ColumnType {
        self.date_type
    }

    /// A file written without `durable`: hand it to the sync queue, if any.
    pub(crate) fn finished(&self, path: &Path, file: File) -> Result<(), ContractError> {
        if let Some(queue) = &self.sync_queue {
            queue.send((path.to_path_buf(), file)).map_err(|_| {
                ContractError::io(path, std::io::Error::other("sync thread stopped"))
            })?;
        }
        Ok(())
    }

    /// Write `batch` (one key's rows, in date order) into `dir` and return
    /// its index entry. `metadata` lands in the parquet footer.
    pub fn write(
        &self,
        dir: &Path,
        key: &str,
        batch: &RecordBatch,
        metadata: &[(String, String)],
    ) -> Result<IndexEntry, ContractError> {
        let file_name = index::key_file_name(key, self.format);
        let path = dir.join(&file_name);
        let (first_date, last_date) = date_range(batch, &self.date_column, self.date_type)
            .ok_or_else(|| ContractError::BadColumn {
                path: path.clone(),
                column: self.date_column.clone(),
                reason: "is empty or has nulls".into(),
            })?;
        // The length, where the bytes were in hand; else asked of the file.
        let len = if self.durable {
            let mut out = AtomicFile::create(&path)?;
            let file = self.encode(out.take_file(), &path, key, batch, metadata)?;
            out.commit_file(file)?;
            None
        } else {
            let (file, len) = if self.direct_io {
                let mut buf = self.encode_parquet(
                    crate::direct::AlignedBuf::default(),
                    &path,
                    key,
                    batch,
                    metadata,
                )?;
                buf.pad_before_tail(parquet_trailer_len(buf.as_ref()));
                let len = buf.len() as u64;
                (crate::direct::write_file(&path, buf)?, Some(len))
            } else if self.reuse_files {
                let bytes = self.encode_parquet(Vec::new(), &path, key, batch, metadata)?;
                (
                    crate::rewrite::write_changed_pages(&path, &bytes)?,
                    Some(bytes.len() as u64),
                )
            } else {
                let file = File::create(&path).at(&path)?;
                (self.encode(file, &path, key, batch, metadata)?, None)
            };
            self.finished(&path, file)?;
            len
        };
        let bytes = match len {
            Some(len) => len,
            None => std::fs::metadata(&path).at(&path)?.len(),
        };
        Ok(IndexEntry {
            key: key.to_owned(),
            file: file_name,
            rows: batch.num_rows() as u64,
            first_date,
            last_date,
            bytes,
        })
    }

    fn encode_parquet<W: std::io::Write + Send>(
        &self,
        sink: W,
        path: &Path,
        key: &str,
        batch: &RecordBatch,
        metadata: &[(String, String)],
    ) -> Result<W, ContractError> {
        let perr = |source| ContractError::Parquet {
            path: path.to_path_buf(),
            source,
        };
        let mut writer = self.arrow_writer(sink, &batch.schema()).map_err(perr)?;
        self.describe(&mut writer, key, metadata);
        // ArrowWriter's own row-group limits (by default 1 Mi rows, no byte
        // limit) decide when a batch is more than one row group; for an
        // empty batch it writes none.
        let one_group = self.props.max_row_group_bytes().is_none()
            && self
                .props
                .max_row_group_row_count()
                .is_none_or(|n| batch.num_rows() <= n);
        if !one_group || batch.num_rows() == 0 {
            writer.write(batch).map_err(perr)?;
            return writer.into_inner().map_err(perr);
        }
        let (mut file_writer, factory) = writer.into_serialized_writer().map_err(perr)?;
        crate::encode::append_row_group(&mut file_writer, &factory, batch).map_err(perr)?;
        file_writer.into_inner().map_err(perr)
    }

    fn encode(
        &self,
        file: File,
        path: &Path,
        key: &str,
        batch: &RecordBatch,
        metadata: &[(String, String)],
    ) -> Result<File, ContractError> {
        let aerr = |source| ContractError::Arrow {
            path: path.to_path_buf(),
            source,
        };
        match self.format {
            FileFormat::Parquet => {
                // Buffered: the writer emits each page and footer part as its
                // own small write, thousands of syscalls over a dataset.
                let sink = BufWriter::with_capacity(256 * 1024, file);
                self.encode_parquet(sink, path, key, batch, metadata)?
                    .into_inner()
                    .map_err(|e| ContractError::io(path, e.into_error()))
            }
            FileFormat::Arrow => {
                let mut writer =
                    arrow::ipc::writer::FileWriter::try_new(BufWriter::new(file), &batch.schema())
                        .map_err(aerr)?;
                writer.write(batch).map_err(aerr)?;
                writer.finish().map_err(aerr)?;
                writer
                    .into_inner()
                    .map_err(aerr)?
                    .into_inner()
                    .map_err(|e| ContractError::io(path, e.into_error()))
            }
            FileFormat::Csv => {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(BufWriter::new(file));
                writer.write(batch).map_err(aerr)?;
                writer
                    .into_inner()
                    .into_inner()
                    .map_err(|e| ContractError::io(path, e.into_error()))
            }
        }
    }
}

/// First and last value of the date column (rows are in date order).
pub fn date_range(
    batch: &RecordBatch,
    date_column: &str,
    date_type: ColumnType,
) -> Option<(i64, i64)> {
    let col = batch.column_by_name(date_column)?;
    if col.is_empty() || col.null_count() > 0 {
        return None;
    }
    let values: Vec<i64> = match date_type {
        ColumnType::TimestampUs => {
            let a = col.as_any().downcast_ref::<TimestampMicrosecondArray>()?;
            vec![a.value(0), a.value(a.len() - 1)]
        }
        _ => {
            let a = col.as_any().downcast_ref::<Date32Array>()?;
            vec![i64::from(a.value(0)), i64::from(a.value(a.len() - 1))]
        }
    };
    Some((values[0], values[1]))
}
