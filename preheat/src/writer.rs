//! Turning one fetched symbol into its cache file: check the rows, merge an
//! incremental fetch over the cached rows, write into the staging copy.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use arrow::array::RecordBatch;
use kiln_contracts::append::KeyFileFooter;
use kiln_contracts::dataset::KeyFileWriter;
use kiln_contracts::{IndexEntry, KeyedDataset};

use crate::columns::KlineSchema;
use crate::group::{Group, Message};
use crate::plan::Fetch;
use crate::rows::{date_values, filter_dates, format_date_value, null_counts};

/// What became of one symbol.
#[derive(Debug)]
pub enum Outcome {
    Written {
        symbol: String,
        entry: IndexEntry,
        nulls: BTreeMap<String, u64>,
        rows_fetched: u64,
        incremental: bool,
    },
    /// Asked the source; the cached rows are still exactly right.
    Unchanged {
        symbol: String,
        rows_fetched: u64,
    },
    /// The source has no rows for a symbol the cache does not hold.
    Missing {
        symbol: String,
    },
    Failed {
        symbol: String,
        error: String,
    },
}

impl Outcome {
    pub fn symbol(&self) -> &str {
        match self {
            Outcome::Written { symbol, .. }
            | Outcome::Unchanged { symbol, .. }
            | Outcome::Missing { symbol }
            | Outcome::Failed { symbol, .. } => symbol,
        }
    }
}

/// Everything a writer thread needs; shared by all of them.
pub struct WriteContext {
    pub schema: KlineSchema,
    /// The cache as it was when the run started (read for merges).
    pub cached: Option<Arc<KeyedDataset>>,
    /// Where files go now; a checkpoint swaps it while holding it for write.
    pub staging: Arc<RwLock<PathBuf>>,
    pub writer: KeyFileWriter,
    /// Footer metadata every file gets.
    pub metadata: Vec<(String, String)>,
    /// Null counts of the cached files (from the index).
    pub cached_nulls: HashMap<String, BTreeMap<String, u64>>,
}

/// Row groups a file may gather from nightly appends before it is rewritten
/// as one: 16–31, spread by symbol so compactions do not all fall on one night.
fn compaction_limit(symbol: &str) -> usize {
    let spread = symbol
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    16 + (spread % 16) as usize
}

impl WriteContext {
    /// One message into `staging` (the caller holds the staging lock for
    /// reading until it has passed the outcome on: a checkpoint then never
    /// publishes a file whose outcome it has not recorded).
    pub fn handle(&self, message: Message, staging: &Path) -> Outcome {
        match message {
            Message::Failed { symbol, error } => Outcome::Failed { symbol, error },
            Message::Group(group) => {
                let symbol = group.symbol.clone();
                self.write(group, staging)
                    .unwrap_or_else(|error| Outcome::Failed { symbol, error })
            }
        }
    }

    fn write(&self, group: Group, staging: &Path) -> Result<Outcome, String> {
        let Group {
            symbol,
            fetch,
            batch,
        } = group;
        let rows_fetched = batch.num_rows() as u64;
        self.check_dates(&batch)?;
        let old_entry = self.cached.as_ref().and_then(|c| c.entry(&symbol).cloned());
        let (merged, incremental) = match (fetch, &old_entry) {
            (Fetch::After(after), Some(entry)) => {
                if let Some(outcome) = self.append(&symbol, entry, after, &batch, staging)? {
                    return Ok(outcome);
                }
                let cached = self.cached.as_ref().expect("entry implies cache");
                let old = cached
                    .read_entry(entry, None)
                    .map_err(|e| format!("cannot read the cached file: {e}"))?;
                let kept = filter_dates(&old, self.schema.date, |d| d <= after);
                if kept.num_rows() + batch.num_rows() == old.num_rows()
                    && old.slice(kept.num_rows(), batch.num_rows()).columns() == batch.columns()
                {
                    return Ok(Outcome::Unchanged {
                        symbol,
                        rows_fetched,
                    });
                }
                let merged = arrow::compute::concat_batches(&self.schema.arrow(), [&kept, &batch])
                    .map_err(|e| e.to_string())?;
                (merged, true)
            }
            _ => {
                if batch.num_rows() == 0 {
                    return Ok(if old_entry.is_some() {
                        // Refetched, yet the source has nothing in range: keep
                        // what the cache holds rather than lose history.
                        Outcome::Unchanged {
                            symbol,
                            rows_fetched,
                        }
                    } else {
                        Outcome::Missing { symbol }
                    });
                }
                (batch, false)
            }
        };
        if merged.num_rows() == 0 {
            return Ok(Outcome::Unchanged {
                symbol,
                rows_fetched,
            });
        }
        let nulls = null_counts(&merged);
        let entry = self.store(&symbol, &merged, staging)?;
        Ok(Outcome::Written {
            symbol,
            entry,
            nulls,
            rows_fetched,
            incremental,
        })
    }

    /// The incremental fast path: keep the cached file's leading row groups
    /// that end on or before `after` as bytes, decode only what follows
    /// them, and write the new rows as one more row group. `None` when the
    /// file should be rewritten whole instead (no date statistics, nothing
    /// to keep, or enough row groups that it is time to compact).
    fn append(
        &self,
        symbol: &str,
        entry: &IndexEntry,
        after: i64,
        batch: &RecordBatch,
        staging: &Path,
    ) -> Result<Option<Outcome>, String> {
        let cached = self.cached.as_ref().expect("entry implies cache");
        let path = cached.path_of(entry);
        let footer =
            KeyFileFooter::open(&path).map_err(|e| format!("cannot read the cached file: {e}"))?;
        let date_name = &self.schema.columns[self.schema.date].name;
        let Some(groups) = footer.row_group_dates(date_name) else {
            return Ok(None);
        };
        let keep = groups.iter().take_while(|g| g.max <= after).count();
        if keep == 0 || keep + 1 > compaction_limit(symbol) {
            return Ok(None);
        }
        // Rows after the kept row groups (an overlap window): decoded.
        let rest = if keep < groups.len() {
            let rest = footer
                .read_from_row_group(keep)
                .map_err(|e| format!("cannot read the cached file: {e}"))?;
            RecordBatch::try_new(self.schema.arrow(), rest.columns().to_vec())
                .map_err(|e| format!("the cached file does not match the cache's schema: {e}"))?
        } else {
            RecordBatch::new_empty(self.schema.arrow())
        };
        let rest_kept = filter_dates(&rest, self.schema.date, |d| d <= after);
        let replaced = rest.slice(rest_kept.num_rows(), rest.num_rows() - rest_kept.num_rows());
        if replaced.columns() == batch.columns() {
            return Ok(Some(Outcome::Unchanged {
                symbol: symbol.to_owned(),
                rows_fetched: batch.num_rows() as u64,
            }));
        }
        let tail = arrow::compute::concat_batches(&self.schema.arrow(), [&rest_kept, batch])
            .map_err(|e| e.to_string())?;
        // Null counts without decoding the kept rows: the cache's count for
        // the old file, less the decoded rows', plus the new tail's.
        let mut nulls = self.cached_nulls.get(symbol).cloned().unwrap_or_default();
        for (column, n) in null_counts(&rest) {
            let left = nulls.get(&column).copied().unwrap_or(0).saturating_sub(n);
            nulls.insert(column, left);
        }
        for (column, n) in null_counts(&tail) {
            *nulls.entry(column).or_default() += n;
        }
        nulls.retain(|_, n| *n > 0);
        let metadata = self.metadata_for(&tail, groups[keep - 1].max);
        let written = self
            .writer
            .write_appending(staging, symbol, &footer, keep, &tail, &metadata)
            .map_err(|e| e.to_string())?;
        Ok(Some(Outcome::Written {
            symbol: symbol.to_owned(),
            entry: written,
            nulls,
            rows_fetched: batch.num_rows() as u64,
            incremental: true,
        }))
    }

    /// Footer metadata of a file whose last row is `tail`'s last (or, for
    /// an empty tail, dated `last_kept`).
    fn metadata_for(&self, tail: &RecordBatch, last_kept: i64) -> Vec<(String, String)> {
        let last = date_values(tail, self.schema.date)
            .last()
            .copied()
            .flatten()
            .unwrap_or(last_kept);
        let mut metadata = self.metadata.clone();
        metadata.push((
            "kiln.preheat.last_date".into(),
            format_date_value(last, self.schema.date_type()),
        ));
        metadata
    }

    /// Dates present and strictly increasing.
    fn check_dates(&self, batch: &RecordBatch) -> Result<(), String> {
        let dates = date_values(batch, self.schema.date);
        let name = &self.schema.columns[self.schema.date].source;
        let mut previous: Option<i64> = None;
        for (i, d) in dates.iter().enumerate() {
            let Some(d) = *d else {
                return Err(format!("row {} of the symbol: {name} is NULL", i + 1));
            };
            if previous.is_some_and(|p| p >= d) {
                return Err(format!(
                    "row {} of the symbol: {name} {} is not after the row before (duplicate date?)",
                    i + 1,
                    format_date_value(d, self.schema.date_type())
                ));
            }
            previous = Some(d);
        }
        Ok(())
    }

    fn store(
        &self,
        symbol: &str,
        batch: &RecordBatch,
        staging: &Path,
    ) -> Result<IndexEntry, String> {
        let metadata = self.metadata_for(batch, 0);
        self.writer
            .write(staging, symbol, batch, &metadata)
            .map_err(|e| e.to_string())
    }
}
