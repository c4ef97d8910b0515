//! Pass-1 spill: rows hashed by key into buckets, buffered per bucket and
//! written as blocks to one spill file per worker; pass 2 reads a bucket back
//! block by block. Whatever the number of buckets, a worker has one file open
//! and at most `cap` bytes buffered.
//!
//! Row encoding (little-endian), self-delimiting so pass 2 can walk a bucket:
//!
//! ```text
//! u32 row length (including these 4 bytes) | u64 seq (input line or row)
//! i64 date | u16 key length | key bytes | null bitmap (1 bit per value column)
//! non-null values in column order: f64/i64/timestamp 8 bytes, f32/date32
//! 4 bytes, string u32 length + bytes
//! ```

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64_with_seed;

pub const HEADER_FIXED: usize = 4 + 8 + 8 + 2;

/// Which bucket a key's rows go to. `level` reseeds the hash when an oversized
/// bucket is split again.
pub fn bucket_of(key: &[u8], buckets: usize, level: u64) -> usize {
    let h = xxh3_64_with_seed(key, 0x6b69_6c6e ^ level);
    ((u128::from(h) * buckets as u128) >> 64) as usize
}

pub fn bitmap_len(values: usize) -> usize {
    values.div_ceil(8)
}

/// Appends one row to a buffer; `abort` undoes it (a field failed to parse).
pub struct RowWriter<'b> {
    out: &'b mut Vec<u8>,
    start: usize,
    bitmap_at: usize,
}

impl<'b> RowWriter<'b> {
    pub fn begin(out: &'b mut Vec<u8>, seq: u64, date: i64, key: &[u8], values: usize) -> Self {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&date.to_le_bytes());
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key);
        let bitmap_at = out.len();
        out.resize(bitmap_at + bitmap_len(values), 0);
        Self {
            out,
            start,
            bitmap_at,
        }
    }

    pub fn null(&mut self, value_index: usize) {
        self.out[self.bitmap_at + value_index / 8] |= 1 << (value_index % 8);
    }

    pub fn put(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    pub fn put_str(&mut self, s: &[u8]) {
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s);
    }

    /// Finish the row; returns its encoded length.
    pub fn finish(self) -> usize {
        let len = self.out.len() - self.start;
        self.out[self.start..self.start + 4].copy_from_slice(&(len as u32).to_le_bytes());
        len
    }

    pub fn abort(self) {
        self.out.truncate(self.start);
    }
}

/// The fixed part of an encoded row.
#[derive(Debug, Clone, Copy)]
pub struct RowHead<'a> {
    pub len: usize,
    pub seq: u64,
    pub date: i64,
    pub key: &'a [u8],
    /// Offset (within the row) of the null bitmap.
    pub bitmap_at: usize,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Decode the head of the row starting at `row[0]`.
pub fn row_head(row: &[u8]) -> RowHead<'_> {
    let len = u32_at(row, 0) as usize;
    let seq = u64_at(row, 4);
    let date = u64_at(row, 12) as i64;
    let key_len = u16::from_le_bytes([row[20], row[21]]) as usize;
    RowHead {
        len,
        seq,
        date,
        key: &row[HEADER_FIXED..HEADER_FIXED + key_len],
        bitmap_at: HEADER_FIXED + key_len,
    }
}

/// Iterate the values of one encoded row in column order.
pub struct ValueCursor<'a> {
    row: &'a [u8],
    bitmap_at: usize,
    pos: usize,
}

impl<'a> ValueCursor<'a> {
    pub fn new(row: &'a [u8], head: &RowHead<'_>, values: usize) -> Self {
        Self::at(row, head.bitmap_at, values)
    }

    /// A cursor for a row whose null bitmap starts at `bitmap_at`.
    pub fn at(row: &'a [u8], bitmap_at: usize, values: usize) -> Self {
        Self {
            row,
            bitmap_at,
            pos: bitmap_at + bitmap_len(values),
        }
    }

    pub fn is_null(&self, index: usize) -> bool {
        self.row[self.bitmap_at + index / 8] & (1 << (index % 8)) != 0
    }

    /// The next 8-byte value (float64, int64, timestamp).
    pub fn take8(&mut self) -> u64 {
        let v = u64_at(self.row, self.pos);
        self.pos += 8;
        v
    }

    /// The next 4-byte value (float32, date32).
    pub fn take4(&mut self) -> u32 {
        let v = u32_at(self.row, self.pos);
        self.pos += 4;
        v
    }

    /// The next string's bytes.
    pub fn take_str(&mut self) -> &'a [u8] {
        let n = u32_at(self.row, self.pos) as usize;
        let s = &self.row[self.pos + 4..self.pos + 4 + n];
        self.pos += 4 + n;
        s
    }
}

/// Where one block of one bucket lies in a worker's spill file.
#[derive(Debug, Clone, Copy)]
pub struct Block {
    pub bucket: u32,
    pub offset: u64,
    pub len: u32,
}

/// One worker's spill file and its per-bucket buffers.
pub struct SpillWriter {
    path: PathBuf,
    file: File,
    offset: u64,
    blocks: Vec<Block>,
    buffers: Vec<Vec<u8>>,
    buffered: usize,
    block_size: usize,
    cap: usize,
}

impl SpillWriter {
    pub fn create(
        path: PathBuf,
        buckets: usize,
        block_size: usize,
        cap: usize,
    ) -> io::Result<Self> {
        // Read back in pass 2 through the same handle.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Ok(Self {
            path,
            file,
            offset: 0,
            blocks: Vec::new(),
            buffers: vec![Vec::new(); buckets],
            buffered: 0,
            block_size,
            cap,
        })
    }

    pub fn buckets(&self) -> usize {
        self.buffers.len()
    }

    pub fn buffer(&mut self, bucket: usize) -> &mut Vec<u8> {
        &mut self.buffers[bucket]
    }

    /// Account for `len` bytes just appended to `bucket`'s buffer, writing
    /// blocks out when a buffer is full or all of them together are.
    pub fn added(&mut self, bucket: usize, len: usize) -> io::Result<()> {
        self.buffered += len;
        if self.buffers[bucket].len() >= self.block_size {
            self.flush_bucket(bucket)?;
        }
        if self.buffered > self.cap {
            self.flush_all()?;
        }
        Ok(())
    }

    fn flush_bucket(&mut self, bucket: usize) -> io::Result<()> {
        let buf = &mut self.buffers[bucket];
        if buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(buf)?;
        self.blocks.push(Block {
            bucket: bucket as u32,
            offset: self.offset,
            len: buf.len() as u32,
        });
        self.offset += buf.len() as u64;
        self.buffered -= buf.len();
        // Release the allocation: capacity kept by thousands of idle buckets
        // would grow with the bucket count, i.e. with the input.
        *buf = Vec::new();
        Ok(())
    }

    pub fn flush_all(&mut self) -> io::Result<()> {
        for b in 0..self.buffers.len() {
            self.flush_bucket(b)?;
        }
        Ok(())
    }

    /// Flush everything and hand over the file's block list.
    pub fn finish(mut self) -> io::Result<SpillFile> {
        self.flush_all()?;
        self.file.flush()?;
        Ok(SpillFile {
            path: self.path,
            file: self.file,
            blocks: self.blocks,
            bytes: self.offset,
        })
    }
}

/// A finished spill file.
pub struct SpillFile {
    pub path: PathBuf,
    pub file: File,
    pub blocks: Vec<Block>,
    pub bytes: u64,
}

/// All spill files of a run, readable bucket by bucket.
pub struct Spill {
    files: Vec<SpillFile>,
    /// Per bucket: (file index, block) in write order.
    by_bucket: Vec<Vec<(usize, Block)>>,
}

impl Spill {
    pub fn new(files: Vec<SpillFile>, buckets: usize) -> Self {
        let mut by_bucket = vec![Vec::new(); buckets];
        for (fi, f) in files.iter().enumerate() {
            for b in &f.blocks {
                by_bucket[b.bucket as usize].push((fi, *b));
            }
        }
        Self { files, by_bucket }
    }

    pub fn buckets(&self) -> usize {
        self.by_bucket.len()
    }

    pub fn bucket_bytes(&self, bucket: usize) -> u64 {
        self.by_bucket[bucket]
            .iter()
            .map(|(_, b)| u64::from(b.len))
            .sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// Read one whole bucket into memory.
    pub fn read_bucket(&self, bucket: usize) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; self.bucket_bytes(bucket) as usize];
        let mut at = 0;
        for (fi, b) in &self.by_bucket[bucket] {
            let len = b.len as usize;
            self.files[*fi]
                .file
                .read_exact_at(&mut out[at..at + len], b.offset)?;
            at += len;
        }
        Ok(out)
    }

    /// Visit a bucket's blocks one at a time (for re-partitioning a bucket too
    /// large to load).
    pub fn for_each_block(
        &self,
        bucket: usize,
        mut f: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut buf = Vec::new();
        for (fi, b) in &self.by_bucket[bucket] {
            buf.resize(b.len as usize, 0);
            self.files[*fi].file.read_exact_at(&mut buf, b.offset)?;
            f(&buf)?;
        }
        Ok(())
    }

    pub fn remove_files(self) -> Vec<PathBuf> {
        let paths: Vec<PathBuf> = self.files.iter().map(|f| f.path.clone()).collect();
        drop(self.files);
        for p in &paths {
            let _ = std::fs::remove_file(p);
        }
        paths
    }
}

/// Iterate the rows of a buffer of whole encoded rows.
pub fn rows(buf: &[u8]) -> impl Iterator<Item = (usize, RowHead<'_>)> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= buf.len() {
            return None;
        }
        let head = row_head(&buf[at..]);
        let here = at;
        at += head.len;
        Some((here, head))
    })
}

pub fn spill_path(dir: &Path, worker: usize) -> PathBuf {
    dir.join(format!("spill-{worker}.bin"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_through_blocks() {
        let dir = tempfile::tempdir().unwrap();
        // Value columns: float64, string, date32, float32.
        let mut w = SpillWriter::create(spill_path(dir.path(), 0), 4, 64, 200).unwrap();
        for i in 0..100u64 {
            let key = format!("k{}", i % 7);
            let b = bucket_of(key.as_bytes(), 4, 0);
            let mut r = RowWriter::begin(w.buffer(b), i, i as i64 * 10, key.as_bytes(), 4);
            r.put(&(i as f64).to_le_bytes());
            if i % 3 == 0 {
                r.null(1);
            } else {
                r.put_str(b"txt");
            }
            r.put(&(i as i32).to_le_bytes());
            r.null(3);
            let len = r.finish();
            w.added(b, len).unwrap();
        }
        let spill = Spill::new(vec![w.finish().unwrap()], 4);
        let mut seen = Vec::new();
        for b in 0..4 {
            let buf = spill.read_bucket(b).unwrap();
            for (at, head) in rows(&buf) {
                assert_eq!(bucket_of(head.key, 4, 0), b);
                let mut c = ValueCursor::new(&buf[at..], &head, 4);
                assert_eq!(f64::from_bits(c.take8()), head.seq as f64);
                assert_eq!(c.is_null(1), head.seq % 3 == 0);
                if !c.is_null(1) {
                    assert_eq!(c.take_str(), b"txt");
                }
                assert_eq!(c.take4() as i32, head.seq as i32);
                assert!(c.is_null(3));
                seen.push(head.seq);
            }
        }
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }
}
