//! Pass 1: read the input once, parse and check every row on all cores, and
//! spill rows into key-hash buckets. Memory: a few chunks in flight plus each
//! worker's capped bucket buffers, whatever the input size or key count.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_channel::bounded;
use indicatif::ProgressBar;

use crate::encode::{EncodeRules, EncodeStats, Encoder, Outcome, RowError};
use crate::error::SplitError;
use crate::input::{BatchChunk, CsvChunk, CsvSource, ParquetSource};
use crate::schema::TablePlan;
use crate::spill::{spill_path, Spill, SpillFile, SpillWriter};

pub enum Source {
    Csv(CsvSource),
    Parquet(ParquetSource),
}

pub enum Chunk {
    Csv(CsvChunk),
    Batch(BatchChunk),
}

impl Chunk {
    fn index(&self) -> u64 {
        match self {
            Chunk::Csv(c) => c.index,
            Chunk::Batch(b) => b.index,
        }
    }
}

impl Source {
    fn next_chunk(&mut self) -> Result<Option<Chunk>, SplitError> {
        Ok(match self {
            Source::Csv(s) => s.next_chunk()?.map(Chunk::Csv),
            Source::Parquet(s) => s.next_chunk()?.map(Chunk::Batch),
        })
    }
}

pub struct PassOneConfig<'a> {
    pub input: &'a Path,
    pub plan: &'a TablePlan,
    pub rules: &'a EncodeRules,
    pub delimiter: u8,
    pub buckets: usize,
    pub workers: usize,
    pub spill_dir: &'a Path,
    pub block_size: usize,
    pub buffer_cap: usize,
    pub skip_bad_rows: bool,
    pub progress: &'a ProgressBar,
    pub bytes_read: &'a AtomicU64,
}

pub struct PassOne {
    pub spill: Spill,
    pub stats: EncodeStats,
    /// Per-worker rejects files, each in increasing line order.
    pub rejects: Vec<PathBuf>,
}

struct WorkerOut {
    spill: SpillFile,
    stats: EncodeStats,
    rejects: Option<PathBuf>,
}

/// Shared between workers: the earliest failing row seen so far and the chunk
/// index after which nothing more needs reading.
struct Failure {
    first: Mutex<Option<RowError>>,
    stop_after: AtomicU64,
}

impl Failure {
    fn record(&self, chunk: u64, err: RowError) {
        let mut first = self.first.lock().expect("poisoned");
        if first.as_ref().is_none_or(|f| err.line < f.line) {
            *first = Some(err);
        }
        self.stop_after.fetch_min(chunk, Ordering::SeqCst);
    }

    fn stopped_before(&self, chunk: u64) -> bool {
        chunk > self.stop_after.load(Ordering::SeqCst)
    }
}

pub fn run(
    mut source: Source,
    first: Option<Chunk>,
    cfg: &PassOneConfig<'_>,
) -> Result<PassOne, SplitError> {
    let failure = Failure {
        first: Mutex::new(None),
        stop_after: AtomicU64::new(u64::MAX),
    };
    let (tx, rx) = bounded::<Chunk>(cfg.workers);
    let encoder = Encoder::new(cfg.plan, cfg.rules, cfg.buckets);
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..cfg.workers)
            .map(|w| {
                let rx = rx.clone();
                let (encoder, failure) = (&encoder, &failure);
                scope.spawn(move || -> Result<WorkerOut, SplitError> {
                    let path = spill_path(cfg.spill_dir, w);
                    let mut spill = SpillWriter::create(
                        path.clone(),
                        cfg.buckets,
                        cfg.block_size,
                        cfg.buffer_cap,
                    )
                    .map_err(|e| SplitError::io(&path, e))?;
                    let mut stats = EncodeStats::default();
                    let mut rejects = Rejects::new(cfg.spill_dir.join(format!("rejects-{w}.csv")));
                    for chunk in rx.iter() {
                        let index = chunk.index();
                        if failure.stopped_before(index) {
                            continue;
                        }
                        let mut on_bad =
                            |err: RowError, raw: &dyn Fn() -> String| -> Result<bool, SplitError> {
                                if cfg.skip_bad_rows && !err.fatal {
                                    stats.rejected += 1;
                                    rejects
                                        .push(&err, &raw())
                                        .map_err(|e| SplitError::io(&rejects.path, e))?;
                                    Ok(true)
                                } else {
                                    failure.record(index, err);
                                    Ok(false)
                                }
                            };
                        match chunk {
                            Chunk::Csv(c) => {
                                let mut reader = csv::ReaderBuilder::new()
                                    .has_headers(false)
                                    .flexible(true)
                                    .delimiter(cfg.delimiter)
                                    .from_reader(&c.data[..]);
                                let mut record = csv::ByteRecord::new();
                                loop {
                                    match reader.read_byte_record(&mut record) {
                                        Ok(false) => break,
                                        Ok(true) => {}
                                        Err(e) => {
                                            let line = e.position().map_or(c.first_line, |p| {
                                                c.first_line + p.line() - 1
                                            });
                                            failure.record(
                                                index,
                                                RowError {
                                                    line,
                                                    column: None,
                                                    message: format!("cannot parse CSV: {e}"),
                                                    fatal: false,
                                                },
                                            );
                                            break;
                                        }
                                    }
                                    let line = c.first_line
                                        + record.position().map_or(1, |p| p.line())
                                        - 1;
                                    match encoder.csv_record(line, &record, &mut spill) {
                                        Ok(Outcome::Kept) => stats.rows += 1,
                                        Ok(Outcome::Filtered) => stats.filtered += 1,
                                        Err(err) => {
                                            let joined = || {
                                                record
                                                    .iter()
                                                    .map(|f| {
                                                        String::from_utf8_lossy(f).into_owned()
                                                    })
                                                    .collect::<Vec<_>>()
                                                    .join(&(cfg.delimiter as char).to_string())
                                            };
                                            if !on_bad(err, &joined)? {
                                                break;
                                            }
                                        }
                                    }
                                }
                            }
                            Chunk::Batch(b) => {
                                let columns = match encoder.cast_batch(b.first_row, &b.batch) {
                                    Ok(c) => c,
                                    Err(err) => {
                                        failure.record(index, err);
                                        continue;
                                    }
                                };
                                for r in 0..b.batch.num_rows() {
                                    let row_number = b.first_row + r as u64;
                                    match encoder.batch_row(row_number, &columns, r, &mut spill) {
                                        Ok(Outcome::Kept) => stats.rows += 1,
                                        Ok(Outcome::Filtered) => stats.filtered += 1,
                                        Err(err) => {
                                            if !on_bad(err, &|| format!("row {row_number}"))? {
                                                break;
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    let spill = spill.finish().map_err(|e| SplitError::io(&path, e))?;
                    let rejects = rejects
                        .finish()
                        .map_err(|e| SplitError::io(cfg.spill_dir, e))?;
                    Ok(WorkerOut {
                        spill,
                        stats,
                        rejects,
                    })
                })
            })
            .collect();
        drop(rx);
        let mut reader_result = Ok(());
        let mut next = first;
        loop {
            let chunk = match next.take() {
                Some(c) => c,
                None => match source.next_chunk() {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(e) => {
                        reader_result = Err(e);
                        break;
                    }
                },
            };
            cfg.progress
                .set_position(cfg.bytes_read.load(Ordering::Relaxed));
            if failure.stop_after.load(Ordering::SeqCst) != u64::MAX || tx.send(chunk).is_err() {
                break;
            }
        }
        drop(tx);
        let outs: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect();
        (reader_result, outs)
    });
    let (reader_result, outs) = results;
    let mut files = Vec::new();
    let mut stats = EncodeStats::default();
    let mut rejects = Vec::new();
    let mut worker_error = None;
    for out in outs {
        match out {
            Ok(o) => {
                stats.rows += o.stats.rows;
                stats.filtered += o.stats.filtered;
                stats.rejected += o.stats.rejected;
                rejects.extend(o.rejects);
                files.push(o.spill);
            }
            Err(e) => worker_error = Some(e),
        }
    }
    if let Some(err) = failure.first.into_inner().expect("poisoned") {
        return Err(SplitError::BadInput {
            path: cfg.input.to_path_buf(),
            line: err.line,
            message: err.message,
        });
    }
    reader_result?;
    if let Some(e) = worker_error {
        return Err(e);
    }
    Ok(PassOne {
        spill: Spill::new(files, cfg.buckets),
        stats,
        rejects,
    })
}

/// A worker's rejected rows, written as they come (never held in memory).
struct Rejects {
    path: PathBuf,
    writer: Option<csv::Writer<File>>,
}

impl Rejects {
    fn new(path: PathBuf) -> Self {
        Self { path, writer: None }
    }

    fn push(&mut self, err: &RowError, raw: &str) -> io::Result<()> {
        if self.writer.is_none() {
            self.writer = Some(csv::Writer::from_path(&self.path)?);
        }
        let w = self.writer.as_mut().expect("just set");
        let column = err.column.map(|c| (c + 1).to_string()).unwrap_or_default();
        w.write_record([err.line.to_string().as_str(), &column, &err.message, raw])?;
        Ok(())
    }

    fn finish(self) -> io::Result<Option<PathBuf>> {
        match self.writer {
            Some(mut w) => {
                w.flush()?;
                Ok(Some(self.path))
            }
            None => Ok(None),
        }
    }
}

/// Merge per-worker rejects files (each sorted by line) into `out` sorted by line.
pub fn merge_rejects(parts: &[PathBuf], out: &Path) -> Result<(), SplitError> {
    let mut readers = Vec::new();
    for p in parts {
        readers.push(
            csv::ReaderBuilder::new()
                .has_headers(false)
                .from_path(p)
                .map_err(|e| SplitError::Internal(format!("{}: {e}", p.display())))?,
        );
    }
    let mut heads: Vec<Option<csv::StringRecord>> = readers
        .iter_mut()
        .map(|r| r.records().next().and_then(Result::ok))
        .collect();
    let mut w = csv::Writer::from_path(out)
        .map_err(|e| SplitError::Internal(format!("{}: {e}", out.display())))?;
    let werr = |e: csv::Error| SplitError::Internal(format!("{}: {e}", out.display()));
    w.write_record(["line", "column", "error", "record"])
        .map_err(werr)?;
    loop {
        let best = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                h.as_ref()
                    .map(|r| (r[0].parse::<u64>().unwrap_or(u64::MAX), i))
            })
            .min();
        let Some((_, i)) = best else { break };
        let rec = heads[i].take().expect("present");
        w.write_record(&rec).map_err(werr)?;
        heads[i] = readers[i].records().next().and_then(Result::ok);
    }
    w.flush().map_err(|e| SplitError::io(out, e))?;
    File::open(out)
        .and_then(|f| f.sync_all())
        .map_err(|e| SplitError::io(out, e))
}
