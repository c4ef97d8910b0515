//! Pass 2: one bucket at a time per worker — load it, sort its rows by (key,
//! date, input order), resolve duplicate dates, and write one file per key.
//! A bucket larger than the memory allowed for it is first split again by a
//! reseeded hash, streaming, so pass 2 stays within budget too.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Date32Builder, Float32Builder, Float64Builder, Int64Builder,
    RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{Field, Schema, SchemaRef};
use indicatif::ProgressBar;
use kiln_contracts::dataset::KeyFileWriter;
use kiln_contracts::{dates, ColumnType, IndexEntry};
use xxhash_rust::xxh3::Xxh3Builder;

use crate::error::SplitError;
use crate::schema::{Role, TablePlan};
use crate::spill::{self, bucket_of, Spill, SpillWriter, ValueCursor};

/// What to do with two rows of one key on the same date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicates {
    Error,
    KeepFirst,
    KeepLast,
}

pub struct AssembleConfig<'a> {
    pub input: &'a Path,
    pub plan: &'a TablePlan,
    pub out_dir: &'a Path,
    pub spill_dir: &'a Path,
    pub writer: &'a KeyFileWriter,
    pub duplicates: Duplicates,
    pub workers: usize,
    /// Largest bucket (spilled bytes) loaded whole; larger ones are split again.
    pub bucket_limit: u64,
    pub progress: &'a ProgressBar,
}

#[derive(Debug, Default)]
pub struct Assembled {
    pub entries: Vec<IndexEntry>,
    pub rows: u64,
    pub duplicates_dropped: u64,
    /// Nulls per column, in plan order.
    pub null_counts: Vec<u64>,
    pub resplit_buckets: u64,
}

impl Assembled {
    fn merge(&mut self, other: Assembled) {
        self.entries.extend(other.entries);
        self.rows += other.rows;
        self.duplicates_dropped += other.duplicates_dropped;
        self.resplit_buckets += other.resplit_buckets;
        if self.null_counts.len() < other.null_counts.len() {
            self.null_counts.resize(other.null_counts.len(), 0);
        }
        for (a, b) in self.null_counts.iter_mut().zip(other.null_counts) {
            *a += b;
        }
    }
}

pub fn output_schema(plan: &TablePlan) -> SchemaRef {
    Arc::new(Schema::new(
        plan.columns
            .iter()
            .map(|c| Field::new(&c.name, c.ty.arrow(), c.role == Role::Value))
            .collect::<Vec<_>>(),
    ))
}

pub fn run(spill: &Spill, cfg: &AssembleConfig<'_>) -> Result<Assembled, SplitError> {
    let next = AtomicUsize::new(0);
    let schema = output_schema(cfg.plan);
    let results: Vec<Result<Assembled, SplitError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..cfg.workers)
            .map(|w| {
                let (next, schema) = (&next, schema.clone());
                scope.spawn(move || {
                    let mut acc = Assembled {
                        null_counts: vec![0; cfg.plan.columns.len()],
                        ..Default::default()
                    };
                    loop {
                        let b = next.fetch_add(1, Ordering::Relaxed);
                        if b >= spill.buckets() {
                            return Ok(acc);
                        }
                        process_bucket(spill, b, 0, w, &schema, cfg, &mut acc)?;
                        cfg.progress.inc(1);
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect()
    });
    let mut total = Assembled {
        null_counts: vec![0; cfg.plan.columns.len()],
        ..Default::default()
    };
    for r in results {
        total.merge(r?);
    }
    Ok(total)
}

const MAX_RESPLIT_LEVEL: u64 = 3;

fn process_bucket(
    spill: &Spill,
    bucket: usize,
    level: u64,
    worker: usize,
    schema: &SchemaRef,
    cfg: &AssembleConfig<'_>,
    acc: &mut Assembled,
) -> Result<(), SplitError> {
    let bytes = spill.bucket_bytes(bucket);
    if bytes > cfg.bucket_limit && level < MAX_RESPLIT_LEVEL {
        return resplit(spill, bucket, level, worker, schema, cfg, acc);
    }
    if bytes > cfg.bucket_limit {
        tracing::warn!(
            bytes,
            limit = cfg.bucket_limit,
            "a bucket still exceeds the memory budget after {MAX_RESPLIT_LEVEL} re-splits: \
             single keys hold more rows than --memory allows; loading it anyway"
        );
    }
    let data = spill
        .read_bucket(bucket)
        .map_err(|e| SplitError::io(cfg.spill_dir, e))?;
    assemble_rows(&data, schema, cfg, acc)
}

/// Split an oversized bucket into sub-buckets with a reseeded hash, then
/// process those.
fn resplit(
    spill: &Spill,
    bucket: usize,
    level: u64,
    worker: usize,
    schema: &SchemaRef,
    cfg: &AssembleConfig<'_>,
    acc: &mut Assembled,
) -> Result<(), SplitError> {
    let bytes = spill.bucket_bytes(bucket);
    let parts = (bytes.div_ceil(cfg.bucket_limit.max(1)) * 2).clamp(2, 4096) as usize;
    let path = cfg
        .spill_dir
        .join(format!("resplit-w{worker}-l{level}-b{bucket}.bin"));
    let ioerr = |e| SplitError::io(cfg.spill_dir, e);
    let mut writer = SpillWriter::create(path, parts, 256 << 10, (cfg.bucket_limit / 4) as usize)
        .map_err(ioerr)?;
    spill
        .for_each_block(bucket, |block| {
            for (at, head) in spill::rows(block) {
                let sub = bucket_of(head.key, parts, level + 1);
                writer
                    .buffer(sub)
                    .extend_from_slice(&block[at..at + head.len]);
                writer.added(sub, head.len)?;
            }
            Ok(())
        })
        .map_err(ioerr)?;
    let sub_spill = Spill::new(vec![writer.finish().map_err(ioerr)?], parts);
    acc.resplit_buckets += 1;
    for sub in 0..parts {
        process_bucket(&sub_spill, sub, level + 1, worker, schema, cfg, acc)?;
    }
    sub_spill.remove_files();
    Ok(())
}

/// A row's sort key and where it lies in the bucket buffer.
struct RowRef {
    key: u32,
    date: i64,
    seq: u64,
    at: usize,
    bitmap_at: u32,
}

fn assemble_rows(
    data: &[u8],
    schema: &SchemaRef,
    cfg: &AssembleConfig<'_>,
    acc: &mut Assembled,
) -> Result<(), SplitError> {
    // Interning runs once per row: SipHash (std's default) showed up in
    // profiles, and these keys come from our own spill, not from an attacker
    // who could aim at collisions.
    let mut key_ids: HashMap<&[u8], u32, Xxh3Builder> = HashMap::with_hasher(Xxh3Builder::new());
    let mut key_names: Vec<&[u8]> = Vec::new();
    let mut refs: Vec<RowRef> = Vec::new();
    for (at, head) in spill::rows(data) {
        let next_id = key_names.len() as u32;
        let id = *key_ids.entry(head.key).or_insert_with(|| {
            key_names.push(head.key);
            next_id
        });
        refs.push(RowRef {
            key: id,
            date: head.date,
            seq: head.seq,
            at,
            bitmap_at: head.bitmap_at as u32,
        });
    }
    drop(key_ids);
    refs.sort_unstable_by_key(|r| (r.key, r.date, r.seq));
    let mut start = 0;
    while start < refs.len() {
        let key_id = refs[start].key;
        let end = start + refs[start..].partition_point(|r| r.key == key_id);
        let group = &refs[start..end];
        let key = std::str::from_utf8(key_names[key_id as usize])
            .map_err(|_| SplitError::Internal("spilled key is not UTF-8".into()))?;
        let kept = resolve_duplicates(group, key, cfg)?;
        acc.duplicates_dropped += (group.len() - kept.len()) as u64;
        let batch = build_batch(data, &kept, key, schema, cfg.plan, &mut acc.null_counts)?;
        let entry = cfg.writer.write(cfg.out_dir, key, &batch, &[])?;
        acc.rows += entry.rows;
        acc.entries.push(entry);
        start = end;
    }
    Ok(())
}

fn resolve_duplicates<'r>(
    group: &'r [RowRef],
    key: &str,
    cfg: &AssembleConfig<'_>,
) -> Result<Vec<&'r RowRef>, SplitError> {
    let mut kept: Vec<&RowRef> = Vec::with_capacity(group.len());
    for r in group {
        match kept.last() {
            Some(prev) if prev.date == r.date => match cfg.duplicates {
                Duplicates::Error => {
                    let when = dates::format_value(r.date, cfg.plan.date_type());
                    return Err(SplitError::BadInput {
                        path: cfg.input.to_path_buf(),
                        line: r.seq,
                        message: format!(
                            "column '{}' (field {}): duplicate ({}, {}) = ({key}, {when}), first seen on line {}; choose --duplicates keep-first or keep-last",
                            cfg.plan.date_name(),
                            cfg.plan.date_idx + 1,
                            cfg.plan.key_name(),
                            cfg.plan.date_name(),
                            prev.seq
                        ),
                    });
                }
                Duplicates::KeepFirst => {}
                Duplicates::KeepLast => *kept.last_mut().expect("non-empty") = r,
            },
            _ => kept.push(r),
        }
    }
    Ok(kept)
}

enum Builder {
    F64(Float64Builder),
    F32(Float32Builder),
    I64(Int64Builder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
    Str(StringBuilder),
}

impl Builder {
    fn new(ty: ColumnType, n: usize) -> Self {
        match ty {
            ColumnType::Float64 => Builder::F64(Float64Builder::with_capacity(n)),
            ColumnType::Float32 => Builder::F32(Float32Builder::with_capacity(n)),
            ColumnType::Int64 => Builder::I64(Int64Builder::with_capacity(n)),
            ColumnType::Date32 => Builder::Date(Date32Builder::with_capacity(n)),
            ColumnType::TimestampUs => Builder::Ts(TimestampMicrosecondBuilder::with_capacity(n)),
            ColumnType::Utf8 => Builder::Str(StringBuilder::with_capacity(n, n * 8)),
        }
    }

    /// Append value `index` of the row under `cursor`; true if it was null.
    fn take(&mut self, cursor: &mut ValueCursor<'_>, index: usize) -> bool {
        if cursor.is_null(index) {
            match self {
                Builder::F64(b) => b.append_null(),
                Builder::F32(b) => b.append_null(),
                Builder::I64(b) => b.append_null(),
                Builder::Ts(b) => b.append_null(),
                Builder::Date(b) => b.append_null(),
                Builder::Str(b) => b.append_null(),
            }
            return true;
        }
        match self {
            Builder::F64(b) => b.append_value(f64::from_bits(cursor.take8())),
            Builder::F32(b) => b.append_value(f32::from_bits(cursor.take4())),
            Builder::I64(b) => b.append_value(cursor.take8() as i64),
            Builder::Ts(b) => b.append_value(cursor.take8() as i64),
            Builder::Date(b) => b.append_value(cursor.take4() as i32),
            Builder::Str(b) => {
                b.append_value(std::str::from_utf8(cursor.take_str()).expect("validated in pass 1"))
            }
        }
        false
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::F64(mut b) => Arc::new(b.finish()),
            Builder::F32(mut b) => Arc::new(b.finish()),
            Builder::I64(mut b) => Arc::new(b.finish()),
            Builder::Date(mut b) => Arc::new(b.finish()),
            Builder::Ts(mut b) => Arc::new(b.finish()),
            Builder::Str(mut b) => Arc::new(b.finish()),
        }
    }
}

fn build_batch(
    data: &[u8],
    rows: &[&RowRef],
    key: &str,
    schema: &SchemaRef,
    plan: &TablePlan,
    null_counts: &mut [u64],
) -> Result<RecordBatch, SplitError> {
    let n = rows.len();
    let value_types = plan.value_types();
    let mut values: Vec<Builder> = value_types.iter().map(|&t| Builder::new(t, n)).collect();
    let mut dates: Vec<i64> = Vec::with_capacity(n);
    for r in rows {
        let row = &data[r.at..];
        let mut cursor = ValueCursor::at(row, r.bitmap_at as usize, value_types.len());
        for (i, b) in values.iter_mut().enumerate() {
            if b.take(&mut cursor, i) {
                null_counts[plan.value_idx[i]] += 1;
            }
        }
        dates.push(r.date);
    }
    let mut values = values.into_iter();
    let mut date: Option<ArrayRef> = Some(match plan.date_type() {
        ColumnType::TimestampUs => Arc::new(TimestampMicrosecondArray::from(dates)),
        _ => Arc::new(Date32Array::from_iter_values(
            dates.iter().map(|&d| d as i32),
        )),
    });
    let columns: Vec<ArrayRef> = plan
        .columns
        .iter()
        .map(|c| match c.role {
            Role::Key => {
                Arc::new(StringArray::from_iter_values(std::iter::repeat_n(key, n))) as ArrayRef
            }
            Role::Date => date.take().expect("one date column"),
            Role::Value => values
                .next()
                .expect("one builder per value column")
                .finish(),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| SplitError::Internal(format!("building batch for key {key}: {e}")))
}
