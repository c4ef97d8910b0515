//! Reading the input as a stream of chunks: CSV (plain, gzip, stdin) cut at
//! record boundaries with line numbers attached, or parquet record batches.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::RecordBatch;
use kiln_contracts::ColumnType;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::error::SplitError;

/// Records longer than this are taken for an unbalanced quote.
const MAX_RECORD: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Csv,
    CsvGz,
    Parquet,
}

/// Decide by extension, then by magic bytes.
pub fn detect(path: &Path) -> Result<InputKind, SplitError> {
    if path.as_os_str() == "-" {
        return Ok(InputKind::Csv);
    }
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".parquet") || name.ends_with(".pq") {
        return Ok(InputKind::Parquet);
    }
    if name.ends_with(".gz") {
        return Ok(InputKind::CsvGz);
    }
    let mut magic = [0u8; 4];
    let mut f = File::open(path).map_err(|e| SplitError::io(path, e))?;
    let n = f.read(&mut magic).map_err(|e| SplitError::io(path, e))?;
    Ok(match &magic[..n] {
        [b'P', b'A', b'R', b'1'] => InputKind::Parquet,
        [0x1f, 0x8b, ..] => InputKind::CsvGz,
        _ => InputKind::Csv,
    })
}

/// Counts bytes read from the underlying file (compressed bytes for gzip),
/// for the progress bar.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A run of whole CSV records.
pub struct CsvChunk {
    pub index: u64,
    /// 1-based physical line on which the chunk's first record starts.
    pub first_line: u64,
    pub data: Vec<u8>,
}

/// Cuts a CSV byte stream into chunks of whole records.
pub struct CsvSource {
    path: PathBuf,
    reader: Box<dyn Read + Send>,
    pending: Vec<u8>,
    eof: bool,
    next_line: u64,
    next_index: u64,
    chunk_size: usize,
    quote: u8,
}

/// End of the last complete record in `buf` (quote-aware), if any.
fn last_record_end(buf: &[u8], quote: u8) -> Option<usize> {
    if memchr::memchr(quote, buf).is_none() {
        return memchr::memrchr(b'\n', buf).map(|i| i + 1);
    }
    let mut in_quotes = false;
    let mut last = None;
    for i in memchr::memchr2_iter(quote, b'\n', buf) {
        if buf[i] == quote {
            in_quotes = !in_quotes;
        } else if !in_quotes {
            last = Some(i + 1);
        }
    }
    last
}

impl CsvSource {
    /// Open the input and read its header. Returns the header fields and the
    /// source positioned on the first data record.
    pub fn open(
        path: &Path,
        kind: InputKind,
        delimiter: u8,
        chunk_size: usize,
        counter: Arc<AtomicU64>,
    ) -> Result<(Vec<String>, Self), SplitError> {
        let raw: Box<dyn Read + Send> = if path.as_os_str() == "-" {
            Box::new(io::stdin())
        } else {
            Box::new(File::open(path).map_err(|e| SplitError::io(path, e))?)
        };
        let counted = Counting {
            inner: raw,
            count: counter,
        };
        let reader: Box<dyn Read + Send> = match kind {
            InputKind::CsvGz => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(
                counted,
            ))),
            _ => Box::new(counted),
        };
        let mut source = Self {
            path: path.to_path_buf(),
            reader,
            pending: Vec::new(),
            eof: false,
            next_line: 1,
            next_index: 0,
            chunk_size,
            quote: b'"',
        };
        let header = source.read_header(delimiter)?;
        Ok((header, source))
    }

    fn bad(&self, line: u64, message: impl Into<String>) -> SplitError {
        SplitError::BadInput {
            path: self.path.clone(),
            line,
            message: message.into(),
        }
    }

    /// Read until `pending` holds at least `want` bytes or the input ends.
    fn fill(&mut self, want: usize) -> Result<(), SplitError> {
        let have = self.pending.len();
        if self.eof || have >= want {
            return Ok(());
        }
        self.pending.reserve(want - have);
        // `read_to_end` on a `Take` reads into spare capacity without zeroing
        // it first, and stops at the limit or the end of the input.
        let n = (&mut self.reader)
            .take((want - have) as u64)
            .read_to_end(&mut self.pending)
            .map_err(|e| SplitError::io(&self.path, e))?;
        if have + n < want {
            self.eof = true;
        }
        Ok(())
    }

    fn read_header(&mut self, delimiter: u8) -> Result<Vec<String>, SplitError> {
        let mut want = 64 << 10;
        let end = loop {
            self.fill(want)?;
            if self.pending.starts_with(b"\xEF\xBB\xBF") {
                self.pending.drain(..3);
            }
            if let Some(end) = first_record_end(&self.pending, self.quote) {
                break end;
            }
            if self.eof {
                break self.pending.len();
            }
            if want >= MAX_RECORD {
                return Err(self.bad(1, "header line longer than 64 MiB (unbalanced quote?)"));
            }
            want *= 4;
        };
        if self.pending[..end].iter().all(|b| b.is_ascii_whitespace()) {
            return Err(SplitError::BadFile {
                path: self.path.clone(),
                message: "empty input: no header line".into(),
            });
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(delimiter)
            .from_reader(&self.pending[..end]);
        let mut record = csv::ByteRecord::new();
        reader
            .read_byte_record(&mut record)
            .map_err(|e| self.bad(1, format!("cannot parse header: {e}")))?;
        let mut header = Vec::with_capacity(record.len());
        for (i, field) in record.iter().enumerate() {
            let name = std::str::from_utf8(field)
                .map_err(|_| self.bad(1, format!("header field {} is not valid UTF-8", i + 1)))?;
            header.push(name.trim().to_owned());
        }
        self.next_line += memchr::memchr_iter(b'\n', &self.pending[..end]).count() as u64;
        self.pending.drain(..end);
        Ok(header)
    }

    /// The next chunk of whole records, or `None` at the end of the input.
    pub fn next_chunk(&mut self) -> Result<Option<CsvChunk>, SplitError> {
        let mut want = self.chunk_size;
        let end = loop {
            self.fill(want)?;
            if self.pending.is_empty() {
                return Ok(None);
            }
            if self.eof {
                if let Some(line) = unterminated_quote_line(&self.pending, self.quote) {
                    return Err(self.bad(
                        self.next_line + line,
                        "quoted field never closed before the end of the input",
                    ));
                }
                break self.pending.len();
            }
            if let Some(end) = last_record_end(&self.pending, self.quote) {
                break end;
            }
            if want >= MAX_RECORD {
                return Err(self.bad(
                    self.next_line,
                    "record longer than 64 MiB (unbalanced quote?)",
                ));
            }
            want *= 2;
        };
        let rest = self.pending[end..].to_vec();
        let mut data = std::mem::replace(&mut self.pending, rest);
        data.truncate(end);
        let chunk = CsvChunk {
            index: self.next_index,
            first_line: self.next_line,
            data,
        };
        self.next_index += 1;
        self.next_line += memchr::memchr_iter(b'\n', &chunk.data).count() as u64;
        Ok(Some(chunk))
    }
}

/// If `buf` (whole records from a record start) ends inside a quoted field,
/// the 0-based line offset where that field's quote opened.
fn unterminated_quote_line(buf: &[u8], quote: u8) -> Option<u64> {
    memchr::memchr(quote, buf)?;
    let (mut in_quotes, mut line, mut opened_at) = (false, 0u64, 0u64);
    for i in memchr::memchr2_iter(quote, b'\n', buf) {
        if buf[i] == quote {
            in_quotes = !in_quotes;
            if in_quotes {
                opened_at = line;
            }
        } else {
            line += 1;
        }
    }
    in_quotes.then_some(opened_at)
}

/// End of the first record in `buf` (quote-aware), if complete.
fn first_record_end(buf: &[u8], quote: u8) -> Option<usize> {
    let mut in_quotes = false;
    for i in memchr::memchr2_iter(quote, b'\n', buf) {
        if buf[i] == quote {
            in_quotes = !in_quotes;
        } else if !in_quotes {
            return Some(i + 1);
        }
    }
    None
}

/// A parquet input read batch by batch.
pub struct ParquetSource {
    pub header: Vec<String>,
    pub natural: Vec<ColumnType>,
    pub rows: u64,
    reader: ParquetRecordBatchReader,
    next_row: u64,
    next_index: u64,
    path: PathBuf,
}

/// A batch of parquet rows.
pub struct BatchChunk {
    pub index: u64,
    /// 1-based row number of the batch's first row.
    pub first_row: u64,
    pub batch: RecordBatch,
}

/// The contract type a parquet column naturally maps to.
fn natural_type(dt: &arrow::datatypes::DataType) -> Option<ColumnType> {
    use arrow::datatypes::DataType as D;
    Some(match dt {
        D::Float64
        | D::Decimal32(..)
        | D::Decimal64(..)
        | D::Decimal128(..)
        | D::Decimal256(..) => ColumnType::Float64,
        D::Float16 | D::Float32 => ColumnType::Float32,
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => {
            ColumnType::Int64
        }
        D::Boolean => ColumnType::Int64,
        D::Date32 | D::Date64 => ColumnType::Date32,
        D::Timestamp(..) => ColumnType::TimestampUs,
        D::Utf8 | D::LargeUtf8 | D::Utf8View => ColumnType::Utf8,
        D::Dictionary(_, v) => return natural_type(v),
        _ => return None,
    })
}

impl ParquetSource {
    pub fn open(path: &Path, batch_size: usize) -> Result<Self, SplitError> {
        let bad = |message: String| SplitError::BadFile {
            path: path.to_path_buf(),
            message,
        };
        let file = File::open(path).map_err(|e| SplitError::io(path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| bad(format!("not a readable parquet file: {e}")))?;
        let rows = builder.metadata().file_metadata().num_rows() as u64;
        let schema = builder.schema().clone();
        let mut header = Vec::new();
        let mut natural = Vec::new();
        for f in schema.fields() {
            header.push(f.name().clone());
            natural.push(natural_type(f.data_type()).ok_or_else(|| {
                bad(format!(
                    "column '{}' has type {}, which a keyed dataset cannot hold",
                    f.name(),
                    f.data_type()
                ))
            })?);
        }
        let reader = builder
            .with_batch_size(batch_size)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            header,
            natural,
            rows,
            reader,
            next_row: 1,
            next_index: 0,
            path: path.to_path_buf(),
        })
    }

    pub fn next_chunk(&mut self) -> Result<Option<BatchChunk>, SplitError> {
        match self.reader.next() {
            None => Ok(None),
            Some(Err(e)) => Err(SplitError::BadInput {
                path: self.path.clone(),
                line: self.next_row,
                message: format!("cannot decode parquet: {e}"),
            }),
            Some(Ok(batch)) => {
                let chunk = BatchChunk {
                    index: self.next_index,
                    first_row: self.next_row,
                    batch,
                };
                self.next_index += 1;
                self.next_row += chunk.batch.num_rows() as u64;
                Ok(Some(chunk))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ends_respect_quotes() {
        assert_eq!(last_record_end(b"a,b\nc,d\ne", b'"'), Some(8));
        assert_eq!(last_record_end(b"a,\"x\ny\"\nc", b'"'), Some(8));
        assert_eq!(last_record_end(b"a,\"x\ny", b'"'), None);
        assert_eq!(first_record_end(b"h,\"a\nb\"\nx\n", b'"'), Some(8));
        assert_eq!(unterminated_quote_line(b"a,b\nc,\"d\ne\n", b'"'), Some(1));
        assert_eq!(unterminated_quote_line(b"a,\"b\"\"\"\n", b'"'), None);
    }

    #[test]
    fn chunks_cover_input_with_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        let mut text = String::from("k,d\n");
        for i in 0..1000 {
            text.push_str(&format!("{i},\"multi\nline\"\n"));
        }
        std::fs::write(&path, &text).unwrap();
        let counter = Arc::new(AtomicU64::new(0));
        let (header, mut src) = CsvSource::open(&path, InputKind::Csv, b',', 100, counter).unwrap();
        assert_eq!(header, ["k", "d"]);
        let mut expected_line = 2;
        let mut total = 4;
        while let Some(c) = src.next_chunk().unwrap() {
            assert_eq!(c.first_line, expected_line);
            assert!(c.data.ends_with(b"\"\n"));
            expected_line += memchr::memchr_iter(b'\n', &c.data).count() as u64;
            total += c.data.len();
        }
        assert_eq!(total, text.len());
    }
}
