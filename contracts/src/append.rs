//! Key files that grow at their end (kiln-preheat's nightly refresh)
//! without rewriting what they already hold.
//!
//! Layout: a *base* row group with a key's rows up to some date, then at
//! most one small *tail* row group with the newest rows. The footer records
//! the base group's byte range and its xxh3-64 hash under
//! [`BASE_GROUP_KEY`]. A refresh reads a file from its end (footer and tail
//! group, one read), decodes only the tail, and writes the base's bytes
//! unchanged followed by the re-encoded tail. Where the file it writes over
//! (the staging copy's older version of the same key) already holds the
//! same base — same range, same hash — only the bytes after the base are
//! written: a page or two instead of the whole file. Readers see ordinary
//! parquet files.

use std::fs::File;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    KeyValue, ParquetMetaData, ParquetMetaDataOptions, ParquetMetaDataReader, RowGroupMetaData,
};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::statistics::Statistics;
use parquet::schema::types::SchemaDescPtr;

use crate::dataset::{date_range, KeyFileWriter};
use crate::encode::{append_row_group, append_row_group_of};
use crate::error::{ContractError, IoContext};
use crate::index::{self, IndexEntry};
use crate::rewrite::write_changed_pages;
use crate::FileFormat;

/// Footer key recording the base row group: `4..END xxh3:HASH`.
pub const BASE_GROUP_KEY: &str = "kiln.base_group";
/// Parquet's leading magic; the first row group starts right after it.
const MAGIC_LEN: u64 = 4;
/// Bytes read from a file's end at once when its base group's end is not
/// known beforehand: its footer and a tail group (of up to some 150 rows
/// of a dozen columns, uncompressed).
const TAIL_READ: u64 = 16 * 1024;
/// The most read at once from the page holding a known base group's end:
/// beyond it (a tail group far larger than a refresh leaves), the file is
/// read like one whose base is unknown.
const MAX_TAIL_READ: u64 = 256 * 1024;

/// The memory page size: the unit in which the page cache reads what a
/// write leaves partly covered.
fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// Where reading a key file of `len` bytes for a refresh starts: the page
/// holding its base group's end (`base`, as the index records it), so that
/// the tail group and footer are read and none of the base's pages before
/// it (a night's refresh wrote those pages of the file it refreshed, so
/// they are the ones likely still cached); else the last [`TAIL_READ`]
/// bytes. A wrong `base` costs only a second read.
fn tail_start(len: u64, base: Option<BaseGroup>) -> u64 {
    match base {
        Some(b) if b.end <= len && len - b.end <= MAX_TAIL_READ => b.end - b.end % page_size(),
        _ => len.saturating_sub(TAIL_READ),
    }
}

/// Rows and date range of one row group of a key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroupDates {
    pub rows: u64,
    pub min: i64,
    pub max: i64,
}

/// Where a file's base row group lies (`MAGIC_LEN..end`) and the hash of
/// its bytes: two files with equal `BaseGroup`s hold the same base bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseGroup {
    pub end: u64,
    pub hash: u64,
}

impl BaseGroup {
    fn of(file_start: &[u8]) -> Self {
        Self {
            end: file_start.len() as u64,
            hash: xxhash_rust::xxh3::xxh3_64(&file_start[MAGIC_LEN as usize..]),
        }
    }

    /// The footer value, `4..END xxh3:HASH`.
    pub fn encode(&self) -> String {
        format!("{MAGIC_LEN}..{} xxh3:{:016x}", self.end, self.hash)
    }

    pub fn parse(text: &str) -> Option<Self> {
        let (range, hash) = text.split_once(" xxh3:")?;
        let (start, end) = range.split_once("..")?;
        if start.parse::<u64>().ok()? != MAGIC_LEN {
            return None;
        }
        Some(Self {
            end: end.parse().ok()?,
            hash: u64::from_str_radix(hash, 16).ok()?,
        })
    }
}

/// A file read from its end: the last bytes held in memory, anything
/// before them read on demand.
#[derive(Clone)]
struct TailReader {
    file: Arc<File>,
    len: u64,
    tail_at: u64,
    tail: Bytes,
}

impl TailReader {
    /// `file` with its bytes from [`tail_start`] on read.
    fn new(file: File, base: Option<BaseGroup>) -> io::Result<Self> {
        let len = file.metadata()?.len();
        let tail_at = tail_start(len, base);
        let mut tail = vec![0; (len - tail_at) as usize];
        file.read_exact_at(&mut tail, tail_at)?;
        Ok(Self {
            file: Arc::new(file),
            len,
            tail_at,
            tail: tail.into(),
        })
    }

    fn bytes(&self, start: u64, length: usize) -> io::Result<Bytes> {
        if start + length as u64 > self.len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if start >= self.tail_at {
            let at = (start - self.tail_at) as usize;
            return Ok(self.tail.slice(at..at + length));
        }
        let mut buf = vec![0; length];
        self.file.read_exact_at(&mut buf, start)?;
        Ok(buf.into())
    }
}

impl Length for TailReader {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for TailReader {
    type T = TailRead;

    fn get_read(&self, start: u64) -> Result<TailRead, ParquetError> {
        Ok(TailRead {
            reader: self.clone(),
            pos: start,
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes, ParquetError> {
        Ok(self.bytes(start, length)?)
    }
}

/// A sequential read of a [`TailReader`].
struct TailRead {
    reader: TailReader,
    pos: u64,
}

impl Read for TailRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = &self.reader;
        let mut n = (buf.len() as u64).min(r.len.saturating_sub(self.pos)) as usize;
        if self.pos >= r.tail_at {
            let at = (self.pos - r.tail_at) as usize;
            buf[..n].copy_from_slice(&r.tail[at..at + n]);
        } else {
            n = n.min((r.tail_at - self.pos) as usize);
            r.file.read_exact_at(&mut buf[..n], self.pos)?;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Stands in for a base group's bytes that are not rewritten: whatever it
/// yields lands before the [`Suffix`] and is dropped.
struct Unread(u64);

impl Length for Unread {
    fn len(&self) -> u64 {
        self.0
    }
}

impl ChunkReader for Unread {
    type T = io::Take<io::Repeat>;

    fn get_read(&self, start: u64) -> Result<Self::T, ParquetError> {
        Ok(io::repeat(0).take(self.0.saturating_sub(start)))
    }

    fn get_bytes(&self, _start: u64, length: usize) -> Result<Bytes, ParquetError> {
        Ok(vec![0; length].into())
    }
}

/// A sink keeping the bytes of a file from offset `skip` on, after `head`.
struct Suffix {
    skip: u64,
    pos: u64,
    bytes: Vec<u8>,
}

impl Suffix {
    fn from(skip: u64) -> Self {
        Self::after(skip, &[])
    }

    /// The bytes from `skip` on, following `head` (bytes known to come
    /// before `skip`).
    fn after(skip: u64, head: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(head.len() + 8 * 1024);
        bytes.extend_from_slice(head);
        Self {
            skip,
            pos: 0,
            bytes,
        }
    }
}

impl Write for Suffix {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.pos + buf.len() as u64;
        if end > self.skip {
            let from = self.skip.saturating_sub(self.pos) as usize;
            self.bytes.extend_from_slice(&buf[from..]);
        }
        self.pos = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The encoded arrow schema in a footer's key-value metadata (a file's, or
/// the writer properties' that make one).
pub(crate) fn arrow_schema_in(key_values: Option<&Vec<KeyValue>>) -> Option<&str> {
    key_values?
        .iter()
        .find(|kv| kv.key == parquet::arrow::ARROW_SCHEMA_META_KEY)?
        .value
        .as_deref()
}

/// Start and end of a row group's bytes, when its column chunks are
/// contiguous.
fn group_range(rg: &RowGroupMetaData) -> Option<(u64, u64)> {
    let (mut start, mut end, mut total) = (u64::MAX, 0, 0);
    for column in rg.columns() {
        let (at, len) = column.byte_range();
        start = start.min(at);
        end = end.max(at + len);
        total += len;
    }
    (rg.num_columns() > 0 && total == end - start).then_some((start, end))
}

/// What the footers of all parquet files one [`KeyFileWriter`] makes of
/// one schema hold alike: the parquet schema and the encoded arrow schema
/// ([`KeyFileWriter::footer_schema`]).
#[derive(Debug, Clone)]
pub struct FooterSchema {
    pub(crate) descr: SchemaDescPtr,
    pub(crate) arrow_schema: String,
}

/// A key file's footer (and tail group), read from its end.
pub struct KeyFileTail {
    path: PathBuf,
    reader: TailReader,
    metadata: Arc<ParquetMetaData>,
}

/// Ask the kernel to start reading, in the background, what refreshing a
/// key file `len` bytes long will read of `path` ([`KeyFileTail::of_file`]
/// with the same `base`: its tail group and footer). Advice only: a file
/// that is gone or unreadable is left to the refresh to report. A nightly
/// refresh runs a day after the last one, when its files have often left
/// the page cache; reading them one at a time as each writer reaches its
/// file leaves the disk idle between reads and the writers waiting.
///
/// Returns the file, opened for reading: a refresh that takes it over
/// skips opening it again (two opens and two closes per symbol were ~5 %
/// of a night's CPU).
pub fn prefetch_tail(path: &Path, len: u64, base: Option<BaseGroup>) -> Option<File> {
    let file = File::open(path).ok()?;
    let start = tail_start(len, base);
    let _ = rustix::fs::fadvise(
        &file,
        start,
        std::num::NonZeroU64::new(len - start),
        rustix::fs::Advice::WillNeed,
    );
    Some(file)
}

impl KeyFileTail {
    pub fn open(path: &Path) -> Result<Self, ContractError> {
        Self::open_with(path, None)
    }

    /// [`KeyFileTail::open`] for a file expected to have been written with
    /// `footer`'s schema: its footer's schema is not decoded again (about
    /// a third of decoding a key file's footer, and a nightly refresh
    /// decodes thousands of footers of one schema). The file's encoded
    /// arrow schema must equal `footer`'s, else its footer is decoded
    /// whole, as by [`KeyFileTail::open`].
    pub fn open_expecting(path: &Path, footer: &FooterSchema) -> Result<Self, ContractError> {
        Self::open_with(path, Some(footer))
    }

    fn open_with(path: &Path, footer: Option<&FooterSchema>) -> Result<Self, ContractError> {
        Self::of_file(path, None, footer, None)
    }

    /// [`KeyFileTail::open`] (or, with `footer`,
    /// [`KeyFileTail::open_expecting`]) of `path` or, when given, `file`,
    /// already open, which is `path` (named in errors). With `base`, the
    /// base group an index records for the file, it is read from the page
    /// where that ends.
    pub fn of_file(
        path: &Path,
        file: Option<File>,
        footer: Option<&FooterSchema>,
        base: Option<BaseGroup>,
    ) -> Result<Self, ContractError> {
        let file = match file {
            Some(file) => file,
            None => File::open(path).at(path)?,
        };
        let reader = TailReader::new(file, base).at(path)?;
        let parse = |schema: Option<&SchemaDescPtr>| {
            let options = schema.map(|s| ParquetMetaDataOptions::new().with_schema(s.clone()));
            ParquetMetaDataReader::new()
                .with_metadata_options(options)
                .parse_and_finish(&reader)
        };
        let expected = footer.and_then(|f| {
            parse(Some(&f.descr)).ok().filter(|m| {
                arrow_schema_in(m.file_metadata().key_value_metadata())
                    == Some(f.arrow_schema.as_str())
            })
        });
        let metadata = match expected {
            Some(metadata) => metadata,
            None => parse(None).map_err(|source| ContractError::Parquet {
                path: path.to_path_buf(),
                source,
            })?,
        };
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            metadata: Arc::new(metadata),
        })
    }

    pub fn row_groups(&self) -> usize {
        self.metadata.num_row_groups()
    }

    /// The base group recorded in the footer, if it matches the first row
    /// group (a file from another writer, or an older Kiln, has none).
    pub fn base_group(&self) -> Option<BaseGroup> {
        let base = self
            .metadata
            .file_metadata()
            .key_value_metadata()?
            .iter()
            .find(|kv| kv.key == BASE_GROUP_KEY)?
            .value
            .as_deref()
            .and_then(BaseGroup::parse)?;
        let (start, end) = group_range(self.metadata.row_groups().first()?)?;
        (start == MAGIC_LEN && end == base.end).then_some(base)
    }

    /// Each row group's date range from the date column's statistics, or
    /// `None` when a row group has none.
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

    /// The rows of row groups `groups`, decoded into `schema` (the file's
    /// columns in order; names and types must match).
    pub fn read_row_groups(
        &self,
        groups: Range<usize>,
        schema: &SchemaRef,
    ) -> Result<RecordBatch, ContractError> {
        let perr = |source| ContractError::Parquet {
            path: self.path.clone(),
            source,
        };
        let aerr = |source| ContractError::Arrow {
            path: self.path.clone(),
            source,
        };
        if groups.is_empty() {
            return Ok(RecordBatch::new_empty(schema.clone()));
        }
        if crate::decode::supported(schema) {
            let reader = Arc::new(self.reader.clone());
            let mut batches = groups
                .map(|g| crate::decode::read_row_group(&reader, &self.metadata, g, schema))
                .collect::<Result<Vec<_>, _>>()
                .map_err(perr)?;
            return match batches.len() {
                1 => Ok(batches.pop().expect("one batch")),
                _ => arrow::compute::concat_batches(schema, &batches).map_err(aerr),
            };
        }
        // The caller's schema, not the footer's encoded one (decoding that
        // costs more than the few rows of a tail group).
        let options = ArrowReaderOptions::new()
            .with_skip_arrow_metadata(true)
            .with_schema(schema.clone());
        let meta = ArrowReaderMetadata::try_new(self.metadata.clone(), options).map_err(perr)?;
        // One batch of just these rows: the default (1,024 rows) reserves
        // buffers far larger than a tail group, in every column.
        let rows: i64 = groups
            .clone()
            .map(|g| self.metadata.row_group(g).num_rows())
            .sum();
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(self.reader.clone(), meta)
            .with_row_groups(groups.collect())
            .with_batch_size(rows.max(1) as usize)
            .build()
            .map_err(perr)?;
        let mut batches = Vec::new();
        for batch in reader {
            let batch = batch.map_err(aerr)?;
            batches.push(
                RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).map_err(aerr)?,
            );
        }
        arrow::compute::concat_batches(schema, &batches).map_err(aerr)
    }
}

/// What a file already in the directory [`KeyFileWriter::write_after_base`]
/// writes into is known to hold (an older version, e.g. in a reused
/// staging copy): its base group and length; and the file, when it is
/// already open for writing (see [`prefetch_tail`]).
#[derive(Debug)]
pub struct StagedFile {
    pub base: BaseGroup,
    pub len: u64,
    pub file: Option<File>,
}

impl From<(BaseGroup, u64)> for StagedFile {
    fn from((base, len): (BaseGroup, u64)) -> Self {
        Self {
            base,
            len,
            file: None,
        }
    }
}

/// `file_end`, the end of a whole parquet file from offset `at` on, with a
/// gap before its trailer (footer, length, magic) so that it ends on a page
/// boundary: readers find the footer from the file's end and everything
/// else by the offsets in it, so they never read the gap (parquet-mr pads
/// row groups the same way).
fn pad_to_page(file_end: &mut Vec<u8>, at: u64) {
    let len = file_end.len();
    let end = (at + len as u64).next_multiple_of(page_size());
    if end == at + len as u64 {
        return;
    }
    let trailer = crate::dataset::parquet_trailer_len(file_end);
    file_end.resize((end - at) as usize, 0);
    crate::direct::gap_before_tail(file_end, len, trailer);
}

/// A file in a staging directory that may be updated in place (a regular
/// file with no other link, never a hard link to a published file), and
/// its length.
fn reusable(path: &Path) -> Option<(File, u64)> {
    reusable_file(std::fs::OpenOptions::new().write(true).open(path).ok()?)
}

/// [`reusable`] of a file already open for writing.
fn reusable_file(file: File) -> Option<(File, u64)> {
    let meta = file.metadata().ok()?;
    (meta.is_file() && meta.nlink() == 1).then_some((file, meta.len()))
}

impl KeyFileWriter {
    /// Write `batch` (one key's rows, in date order) as `key`'s file in
    /// `dir`: rows `..base_rows` (at least one) as the base group, the rest
    /// as the tail group. For a private staging directory: an existing
    /// file with no other link is updated in place (see
    /// [`write_changed_pages`]), nothing is fsynced. With `copy_to`, the
    /// same bytes also go to a file of that name there (a second staging
    /// directory that becomes the spare copy a refresh updates in place).
    pub fn write_split(
        &self,
        dir: &Path,
        key: &str,
        batch: &RecordBatch,
        base_rows: usize,
        metadata: &[(String, String)],
        copy_to: Option<&Path>,
    ) -> Result<(IndexEntry, BaseGroup), ContractError> {
        let file_name = index::key_file_name(key, FileFormat::Parquet);
        let path = dir.join(&file_name);
        let (first_date, last_date) = date_range(batch, self.date_column(), self.date_type())
            .ok_or_else(|| ContractError::BadColumn {
                path: path.clone(),
                column: self.date_column().to_owned(),
                reason: "is empty or has nulls".into(),
            })?;
        let perr = |source| ContractError::Parquet {
            path: path.clone(),
            source,
        };
        let base_rows = base_rows.clamp(1, batch.num_rows());
        let mut writer = self
            .arrow_writer(Suffix::from(0), &batch.schema())
            .map_err(perr)?;
        self.describe(&mut writer, key, metadata);
        let (mut writer, factory) = writer.into_serialized_writer().map_err(perr)?;
        append_row_group(&mut writer, &factory, &batch.slice(0, base_rows)).map_err(perr)?;
        writer.flush().at(&path)?;
        let base = BaseGroup::of(&writer.inner().bytes);
        writer.append_key_value_metadata(KeyValue::new(BASE_GROUP_KEY.into(), base.encode()));
        if base_rows < batch.num_rows() {
            let tail = batch.slice(base_rows, batch.num_rows() - base_rows);
            append_row_group(&mut writer, &factory, &tail).map_err(perr)?;
        }
        let bytes = writer.into_inner().map_err(perr)?.bytes;
        for path in std::iter::once(path).chain(copy_to.map(|d| d.join(&file_name))) {
            let file = write_changed_pages(&path, &bytes)?;
            self.finished(&path, file)?;
        }
        let entry = IndexEntry {
            key: key.to_owned(),
            file: file_name,
            rows: batch.num_rows() as u64,
            first_date,
            last_date,
            bytes: bytes.len() as u64,
        };
        Ok((entry, base))
    }

    /// Write `key`'s file in `dir` as `old`'s base group (its bytes, not
    /// decoded) followed by the rows of `tail` (batches of rows dated after
    /// the base, in order) as the tail group. `staged` is what the file
    /// already in `dir` (an older version, e.g. in a reused staging copy)
    /// is known to hold. When its base is `old`'s and the file still has
    /// that length and no other link, only the pages from the one holding
    /// the base's end on are written, and the file is padded before its
    /// footer to end on a page boundary; otherwise the whole file is
    /// written. `old` must have a base group ([`KeyFileTail::base_group`])
    /// and the same schema.
    pub fn write_after_base(
        &self,
        dir: &Path,
        key: &str,
        old: &KeyFileTail,
        staged: Option<StagedFile>,
        tail: &[RecordBatch],
        metadata: &[(String, String)],
    ) -> Result<(IndexEntry, BaseGroup), ContractError> {
        let file_name = index::key_file_name(key, FileFormat::Parquet);
        let path = dir.join(&file_name);
        let bad = |reason: &str| ContractError::BadFile {
            path: old.path.clone(),
            reason: reason.into(),
        };
        let base = old
            .base_group()
            .ok_or_else(|| bad("has no base row group"))?;
        let base_dates = old
            .row_group_dates(self.date_column())
            .and_then(|d| d.first().copied())
            .ok_or_else(|| bad("has no date statistics"))?;
        let last_date = tail
            .iter()
            .rev()
            .find_map(|part| date_range(part, self.date_column(), self.date_type()))
            .map_or(base_dates.max, |(_, last)| last);

        let in_place = match staged {
            Some(staged) if staged.base == base => match staged.file {
                Some(file) => reusable_file(file),
                None => reusable(&path),
            }
            .filter(|(_, len)| *len == staged.len),
            _ => None,
        };
        let len = match in_place {
            Some((file, staged_len)) => {
                // Written in whole pages, from the one holding the base's
                // end (its base bytes are the same in both files, and were
                // read with the old file's tail) to the end, the gap
                // before the footer padded: a partly written page that is
                // not cached is first read from disk, and a night's staging
                // copy (the version before last) is mostly not.
                let from = base.end - base.end % page_size();
                let head = old.reader.bytes(from, (base.end - from) as usize);
                let mut bytes = self.encode_after_base(
                    &path,
                    key,
                    old,
                    base,
                    tail,
                    metadata,
                    &Unread(base.end),
                    Suffix::after(base.end, &head.at(&old.path)?),
                )?;
                pad_to_page(&mut bytes, from);
                file.write_all_at(&bytes, from).at(&path)?;
                let len = from + bytes.len() as u64;
                if staged_len > len {
                    file.set_len(len).at(&path)?;
                }
                self.finished(&path, file)?;
                len
            }
            None => {
                let bytes = self.encode_after_base(
                    &path,
                    key,
                    old,
                    base,
                    tail,
                    metadata,
                    &old.reader,
                    Suffix::from(0),
                )?;
                let file = write_changed_pages(&path, &bytes)?;
                self.finished(&path, file)?;
                bytes.len() as u64
            }
        };
        let entry = IndexEntry {
            key: key.to_owned(),
            file: file_name,
            rows: old.metadata.row_group(0).num_rows() as u64
                + tail.iter().map(|p| p.num_rows() as u64).sum::<u64>(),
            first_date: base_dates.min,
            last_date,
            bytes: len,
        };
        Ok((entry, base))
    }

    /// The bytes of [`KeyFileWriter::write_after_base`]'s file that `sink`
    /// keeps, copying the base's column chunks from `base_bytes` (which may
    /// be [`Unread`] when `sink` skips the base).
    #[allow(clippy::too_many_arguments)]
    fn encode_after_base<R: ChunkReader>(
        &self,
        path: &Path,
        key: &str,
        old: &KeyFileTail,
        base: BaseGroup,
        tail: &[RecordBatch],
        metadata: &[(String, String)],
        base_bytes: &R,
        sink: Suffix,
    ) -> Result<Vec<u8>, ContractError> {
        let perr = |source| ContractError::Parquet {
            path: path.to_path_buf(),
            source,
        };
        let schema =
            tail.first()
                .map(RecordBatch::schema)
                .ok_or_else(|| ContractError::BadFile {
                    path: path.to_path_buf(),
                    reason: "no tail batch to take the schema from".into(),
                })?;
        let mut writer = self.tail_writer(sink, &schema).map_err(perr)?;
        self.describe(&mut writer, key, metadata);
        writer.append_key_value_metadata(KeyValue::new(BASE_GROUP_KEY.into(), base.encode()));
        let (mut file_writer, factory) = writer.into_serialized_writer().map_err(perr)?;
        let rg = old.metadata.row_group(0);
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
            rg_writer.append_column(base_bytes, close).map_err(perr)?;
        }
        rg_writer.close().map_err(perr)?;
        if tail.iter().any(|p| p.num_rows() > 0) {
            append_row_group_of(&mut file_writer, &factory, tail).map_err(perr)?;
        }
        Ok(file_writer.into_inner().map_err(perr)?.bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{File, OpenOptions};
    use std::os::unix::fs::MetadataExt;

    use arrow::array::{Date32Array, Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::basic::Compression;

    use super::*;
    use crate::dataset::Codec;
    use crate::types::ColumnType;

    /// Key "a", days `days`, x = day / 2 (+ `shift`), every 7th x null.
    fn batch_with(days: Range<i32>, shift: f64) -> RecordBatch {
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
                    days.map(|d| (d % 7 != 0).then_some(f64::from(d) * 0.5 + shift)),
                )),
            ],
        )
        .unwrap()
    }

    fn batch(days: Range<i32>) -> RecordBatch {
        batch_with(days, 0.0)
    }

    fn writer(codec: Codec) -> KeyFileWriter {
        KeyFileWriter::new(
            FileFormat::Parquet,
            codec,
            "k",
            "d",
            ColumnType::Date32,
            false,
        )
        .with_file_reuse()
    }

    fn read_all(path: &Path) -> RecordBatch {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let schema = arrow::array::RecordBatchReader::schema(&reader);
        let batches: Vec<_> = reader.map(Result::unwrap).collect();
        arrow::compute::concat_batches(&schema, &batches).unwrap()
    }

    fn dirs(names: &[&str]) -> (tempfile::TempDir, Vec<PathBuf>) {
        let root = tempfile::tempdir().unwrap();
        let dirs = names
            .iter()
            .map(|n| {
                let d = root.path().join(n);
                std::fs::create_dir_all(&d).unwrap();
                d
            })
            .collect();
        (root, dirs)
    }

    #[test]
    fn split_files_hold_every_row_and_record_their_base() {
        let (_root, d) = dirs(&["a"]);
        let w = writer(Codec::Snappy);
        let (entry, base) = w
            .write_split(&d[0], "a", &batch(0..105), 100, &[], None)
            .unwrap();
        assert_eq!(
            (entry.rows, entry.first_date, entry.last_date),
            (105, 0, 104)
        );
        let path = d[0].join("a.parquet");
        assert_eq!(read_all(&path), batch(0..105));
        assert_eq!(entry.bytes, std::fs::metadata(&path).unwrap().len());
        let tail = KeyFileTail::open(&path).unwrap();
        assert_eq!(tail.row_groups(), 2);
        assert_eq!(tail.base_group(), Some(base));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(base, BaseGroup::of(&bytes[..base.end as usize]));
        assert_eq!(
            tail.row_group_dates("d").unwrap(),
            [
                RowGroupDates {
                    rows: 100,
                    min: 0,
                    max: 99
                },
                RowGroupDates {
                    rows: 5,
                    min: 100,
                    max: 104
                },
            ]
        );
        let schema = batch(0..0).schema();
        assert_eq!(
            tail.read_row_groups(1..2, &schema).unwrap(),
            batch(100..105)
        );
        assert_eq!(tail.read_row_groups(0..2, &schema).unwrap(), batch(0..105));
        // All rows in the base: one row group.
        w.write_split(&d[0], "a", &batch(0..105), 105, &[], None)
            .unwrap();
        assert_eq!(KeyFileTail::open(&path).unwrap().row_groups(), 1);
        // A file from the plain writer has no base group.
        let plain = KeyFileWriter::new(
            FileFormat::Parquet,
            Codec::Snappy,
            "k",
            "d",
            ColumnType::Date32,
            false,
        );
        plain.write(&d[0], "a", &batch(0..10), &[]).unwrap();
        assert_eq!(KeyFileTail::open(&path).unwrap().base_group(), None);
    }

    #[test]
    fn a_file_over_an_older_version_with_the_same_base_gets_only_its_new_bytes() {
        let (_root, d) = dirs(&["published", "staging", "fresh"]);
        let w = writer(Codec::Snappy);
        // Version 1 in the staging copy, version 2 published (one more day).
        w.write_split(&d[1], "a", &batch(0..100), 100, &[], None)
            .unwrap();
        let v1 = KeyFileTail::open(&d[1].join("a.parquet")).unwrap();
        w.write_after_base(&d[0], "a", &v1, None, &[batch(100..101)], &[])
            .unwrap();
        let v2_path = d[0].join("a.parquet");
        let v2 = KeyFileTail::open(&v2_path).unwrap();
        assert_eq!(v2.base_group(), v1.base_group());
        assert_eq!(read_all(&v2_path), batch(0..101));

        // Version 3 over version 1: in place, the base's bytes untouched.
        let staged = d[1].join("a.parquet");
        let before = std::fs::read(&staged).unwrap();
        let inode = std::fs::metadata(&staged).unwrap().ino();
        let tail = arrow::compute::concat_batches(
            &batch(0..0).schema(),
            &[batch(100..101), batch(101..103)],
        )
        .unwrap();
        // The tail's rows as two batches, and the staged file as opened by
        // the prefetch.
        let v1_file = StagedFile {
            base: v1.base_group().unwrap(),
            len: before.len() as u64,
            file: OpenOptions::new().write(true).open(&staged).ok(),
        };
        assert!(v1_file.file.is_some());
        let parts = [batch(100..101), batch(101..103)];
        let (entry, base) = w
            .write_after_base(&d[1], "a", &v2, Some(v1_file), &parts, &[])
            .unwrap();
        assert_eq!(Some(base), v2.base_group());
        assert_eq!(
            (entry.rows, entry.first_date, entry.last_date),
            (103, 0, 102)
        );
        assert_eq!(read_all(&staged), batch(0..103));
        assert_eq!(
            std::fs::metadata(&staged).unwrap().ino(),
            inode,
            "updated in place"
        );
        let after = std::fs::read(&staged).unwrap();
        let end = v2.base_group().unwrap().end as usize;
        assert_eq!(after[..end], before[..end]);
        assert_eq!(entry.bytes, after.len() as u64);
        // The same file, written whole where there is no older version,
        // from the rows in one batch; in place it ends on a page boundary,
        // padded before the footer.
        w.write_after_base(&d[2], "a", &v2, None, &[tail], &[])
            .unwrap();
        let whole = std::fs::read(d[2].join("a.parquet")).unwrap();
        assert_eq!(after, padded(&whole));
        // And shorter again (a tail replaced by fewer rows).
        let v3_file = Some((base, entry.bytes).into());
        w.write_after_base(&d[1], "a", &v2, v3_file, &[batch(100..101)], &[])
            .unwrap();
        assert_eq!(
            std::fs::read(&staged).unwrap(),
            padded(&std::fs::read(&v2_path).unwrap())
        );
        assert_eq!(read_all(&staged), batch(0..101));
    }

    /// `whole` (a parquet file) with zeros before its trailer up to the
    /// next page boundary: what an in-place write makes of it.
    fn padded(whole: &[u8]) -> Vec<u8> {
        let trailer = crate::dataset::parquet_trailer_len(whole);
        let gap = whole.len().next_multiple_of(page_size() as usize) - whole.len();
        let (body, trailer) = whole.split_at(whole.len() - trailer);
        [body, &vec![0; gap], trailer].concat()
    }

    #[test]
    fn only_the_pages_from_a_known_base_s_end_on_are_written_and_whole() {
        let (_root, d) = dirs(&["published", "staging", "fresh"]);
        let w = writer(Codec::None);
        // A base of a few pages.
        let (e1, b1) = w
            .write_split(&d[1], "a", &batch(0..2000), 2000, &[], None)
            .unwrap();
        let page = page_size() as usize;
        let from = b1.end as usize / page * page;
        assert!(from > 0, "a base past its first page");
        let v1 = KeyFileTail::open(&d[1].join("a.parquet")).unwrap();
        w.write_after_base(&d[0], "a", &v1, None, &[batch(2000..2001)], &[])
            .unwrap();
        let v2 = KeyFileTail::open(&d[0].join("a.parquet")).unwrap();
        // Mark a byte in a page before the one holding the base's end
        // (writing the whole file would put it right), and one in that page
        // (written whole, with the base's bytes read from the published
        // file).
        let staged = d[1].join("a.parquet");
        let mut marked = std::fs::read(&staged).unwrap();
        marked[10] ^= 0xff;
        marked[from] ^= 0xff;
        std::fs::write(&staged, &marked).unwrap();
        let known = Some((b1, e1.bytes).into());
        let (entry, _) = w
            .write_after_base(&d[1], "a", &v2, known, &[batch(2000..2002)], &[])
            .unwrap();
        w.write_after_base(&d[2], "a", &v2, None, &[batch(2000..2002)], &[])
            .unwrap();
        let (after, whole) = (
            std::fs::read(&staged).unwrap(),
            padded(&std::fs::read(d[2].join("a.parquet")).unwrap()),
        );
        assert_eq!(after[..from], marked[..from], "earlier pages not written");
        assert_eq!(after[from..], whole[from..]);
        assert_eq!(after.len(), whole.len());
        assert_eq!((entry.bytes as usize) % page, 0);
        assert_eq!(entry.bytes, after.len() as u64);
        // Unmarked, it reads back whole.
        std::fs::write(&staged, &whole).unwrap();
        assert_eq!(read_all(&staged), batch(0..2002));
    }

    #[test]
    fn an_older_version_whose_base_differs_only_in_its_bytes_is_rewritten_whole() {
        let (_root, d) = dirs(&["published", "staging"]);
        // Uncompressed: a revised value leaves every size and offset alike.
        let w = writer(Codec::None);
        w.write_split(&d[0], "a", &batch(0..100), 100, &[], None)
            .unwrap();
        w.write_split(&d[1], "a", &batch_with(0..100, 0.25), 100, &[], None)
            .unwrap();
        let published = KeyFileTail::open(&d[0].join("a.parquet")).unwrap();
        let staged = KeyFileTail::open(&d[1].join("a.parquet")).unwrap();
        let (p, s) = (
            published.base_group().unwrap(),
            staged.base_group().unwrap(),
        );
        assert_eq!(p.end, s.end, "same layout");
        assert_ne!(p.hash, s.hash);
        let len = std::fs::metadata(d[1].join("a.parquet")).unwrap().len();
        w.write_after_base(
            &d[1],
            "a",
            &published,
            Some((s, len).into()),
            &[batch(100..102)],
            &[],
        )
        .unwrap();
        assert_eq!(read_all(&d[1].join("a.parquet")), batch(0..102));
        // Told the staged file holds the same base, but it has another
        // length than it was said to have: written whole as well.
        w.write_split(&d[1], "a", &batch_with(0..100, 0.25), 100, &[], None)
            .unwrap();
        w.write_after_base(
            &d[1],
            "a",
            &published,
            Some((p, len + 1).into()),
            &[batch(100..102)],
            &[],
        )
        .unwrap();
        assert_eq!(read_all(&d[1].join("a.parquet")), batch(0..102));
    }

    #[test]
    fn a_hard_link_to_a_published_file_is_never_written_through() {
        let (_root, d) = dirs(&["published", "staging"]);
        let w = writer(Codec::Snappy);
        let published = d[0].join("a.parquet");
        w.write_split(&d[0], "a", &batch(0..100), 100, &[], None)
            .unwrap();
        std::fs::hard_link(&published, d[1].join("a.parquet")).unwrap();
        let before = std::fs::read(&published).unwrap();
        let old = KeyFileTail::open(&published).unwrap();
        let linked = Some((old.base_group().unwrap(), before.len() as u64).into());
        w.write_after_base(&d[1], "a", &old, linked, &[batch(100..101)], &[])
            .unwrap();
        assert_eq!(std::fs::read(&published).unwrap(), before);
        assert_eq!(read_all(&d[1].join("a.parquet")), batch(0..101));
        // Nor through a link the prefetch opened for writing.
        std::fs::remove_file(d[1].join("a.parquet")).unwrap();
        std::fs::hard_link(&published, d[1].join("a.parquet")).unwrap();
        let opened = StagedFile {
            base: old.base_group().unwrap(),
            len: before.len() as u64,
            file: OpenOptions::new()
                .write(true)
                .open(d[1].join("a.parquet"))
                .ok(),
        };
        assert!(opened.file.is_some());
        w.write_after_base(&d[1], "a", &old, Some(opened), &[batch(100..101)], &[])
            .unwrap();
        assert_eq!(std::fs::read(&published).unwrap(), before);
        assert_eq!(read_all(&d[1].join("a.parquet")), batch(0..101));
    }

    #[test]
    fn a_rewritten_tail_group_is_uncompressed_and_the_base_keeps_its_codec() {
        let (_root, d) = dirs(&["published", "staging"]);
        let w = writer(Codec::Zstd(3));
        w.write_split(&d[0], "a", &batch(0..100), 100, &[], None)
            .unwrap();
        let v1 = KeyFileTail::open(&d[0].join("a.parquet")).unwrap();
        w.write_after_base(&d[1], "a", &v1, None, &[batch(100..130)], &[])
            .unwrap();
        let path = d[1].join("a.parquet");
        assert_eq!(read_all(&path), batch(0..130));
        let v2 = KeyFileTail::open(&path).unwrap();
        let codecs = |g: usize| -> Vec<Compression> {
            let rg = v2.metadata.row_group(g);
            rg.columns().iter().map(|c| c.compression()).collect()
        };
        assert!(codecs(0).iter().all(|c| matches!(c, Compression::ZSTD(_))));
        assert!(codecs(1).iter().all(|c| *c == Compression::UNCOMPRESSED));
    }

    #[test]
    fn a_footer_read_with_the_expected_schema_is_the_footer_read_whole() {
        let (_root, d) = dirs(&["a"]);
        let w = writer(Codec::Snappy);
        w.write_split(&d[0], "a", &batch(0..100), 90, &[], None)
            .unwrap();
        let path = d[0].join("a.parquet");
        let footer = w.footer_schema(&batch(0..0).schema()).unwrap();
        let (whole, expecting) = (
            KeyFileTail::open(&path).unwrap(),
            KeyFileTail::open_expecting(&path, &footer).unwrap(),
        );
        assert_eq!(
            whole.metadata.file_metadata(),
            expecting.metadata.file_metadata()
        );
        assert_eq!(whole.metadata.row_groups(), expecting.metadata.row_groups());
        assert_eq!(
            expecting
                .read_row_groups(1..2, &batch(0..0).schema())
                .unwrap(),
            batch(90..100)
        );
        // The same from the file as the prefetch opened it, read from the
        // last TAIL_READ bytes, from the page of the base's end, or from
        // where a wrong base (the index of another version) says.
        let len = std::fs::metadata(&path).unwrap().len();
        let base = whole.base_group().unwrap();
        let wrong = |end| Some(BaseGroup { end, hash: 0 });
        for hint in [None, Some(base), wrong(len), wrong(len - 9), wrong(5)] {
            let opened = prefetch_tail(&path, len, hint).unwrap();
            let of_file = KeyFileTail::of_file(&path, Some(opened), Some(&footer), hint).unwrap();
            assert_eq!(
                of_file.metadata.file_metadata(),
                expecting.metadata.file_metadata()
            );
            assert_eq!(
                of_file.metadata.row_groups(),
                expecting.metadata.row_groups()
            );
            assert_eq!(
                of_file
                    .read_row_groups(1..2, &batch(0..0).schema())
                    .unwrap(),
                batch(90..100)
            );
        }

        // A file of another schema with as many columns (x as Int64): its
        // own schema is decoded, not the expected one.
        let other = RecordBatch::try_from_iter([
            ("k", Arc::new(StringArray::from(vec!["a"; 3])) as _),
            ("d", Arc::new(Date32Array::from(vec![1, 2, 3])) as _),
            (
                "x",
                Arc::new(arrow::array::Int64Array::from(vec![7, 8, 9])) as _,
            ),
        ])
        .unwrap();
        w.write_split(&d[0], "a", &other, 2, &[], None).unwrap();
        let tail = KeyFileTail::open_expecting(&path, &footer).unwrap();
        let x = tail.metadata.file_metadata().schema_descr().column(2);
        assert_eq!(x.physical_type(), parquet::basic::Type::INT64);
        assert_eq!(tail.read_row_groups(0..2, &other.schema()).unwrap(), other);
    }

    #[test]
    fn files_longer_than_one_read_from_the_end_read_back_whole() {
        let (_root, d) = dirs(&["a", "b"]);
        let w = writer(Codec::None);
        let days = 0..20_000;
        w.write_split(&d[0], "a", &batch(days.clone()), 19_990, &[], None)
            .unwrap();
        let path = d[0].join("a.parquet");
        assert!(std::fs::metadata(&path).unwrap().len() > 2 * TAIL_READ);
        let old = KeyFileTail::open(&path).unwrap();
        let schema = batch(0..0).schema();
        assert_eq!(old.read_row_groups(0..2, &schema).unwrap(), batch(days));
        w.write_after_base(&d[1], "a", &old, None, &[batch(19_990..20_001)], &[])
            .unwrap();
        assert_eq!(read_all(&d[1].join("a.parquet")), batch(0..20_001));
    }
}
