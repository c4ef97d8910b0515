//! Turning one fetched symbol into its cache file: check the rows, merge an
//! incremental fetch over the cached rows, write into the staging copy.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use arrow::array::RecordBatch;
use kiln_contracts::append::{BaseGroup, FooterSchema, KeyFileTail, StagedFile};
use kiln_contracts::dataset::KeyFileWriter;
use kiln_contracts::{IndexEntry, KeyedDataset};

use crate::cache::StagingView;
use crate::columns::KlineSchema;
use crate::group::{Group, Message};
use crate::plan::{days_as, Fetch};
use crate::prefetch::{Opened, Prefetch};
use crate::rows::{date_values, filter_dates, format_date_value, null_counts};

/// What became of one symbol.
#[derive(Debug)]
pub enum Outcome {
    Written {
        symbol: String,
        entry: IndexEntry,
        nulls: BTreeMap<String, u64>,
        base: Option<BaseGroup>,
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
    pub staging: Arc<RwLock<StagingView>>,
    pub writer: KeyFileWriter,
    /// What the footers of the files `writer` makes hold alike.
    pub footer: Option<FooterSchema>,
    /// Footer metadata every file gets.
    pub metadata: Vec<(String, String)>,
    /// Null counts of the cached files (from the index).
    pub cached_nulls: HashMap<String, BTreeMap<String, u64>>,
    /// Base groups of the cached files (from the index): where a refresh
    /// starts reading them.
    pub cached_bases: HashMap<String, BaseGroup>,
    /// `--overlap-days`: rows this recent go to a file's tail row group, so
    /// the next refresh (which refetches them) keeps the base as bytes.
    pub overlap_days: u32,
    /// Files the prefetch opened for incremental symbols.
    pub prefetch: Arc<Prefetch>,
}

/// Rows a file's tail row group may gather from nightly refreshes before
/// the file is rewritten as one base group: the overlap window plus 64–127
/// (a quarter to half a year of trading days), spread by symbol so rewrites
/// do not all fall on one night. Decoding a tail of that size costs little
/// more than a tail of one row; a rewrite costs ten nights.
fn tail_limit(symbol: &str, overlap_days: u32) -> usize {
    let spread = symbol
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    overlap_days as usize + 64 + (spread % 64) as usize
}

impl WriteContext {
    /// One message into `staging` (the caller holds the staging lock for
    /// reading until it has passed the outcome on: a checkpoint then never
    /// publishes a file whose outcome it has not recorded).
    pub fn handle(&self, message: Message, staging: &StagingView) -> Outcome {
        match message {
            Message::Failed { symbol, error } => {
                self.prefetch.take(&symbol, staging.generation);
                Outcome::Failed { symbol, error }
            }
            Message::Group(group) => {
                let symbol = group.symbol.clone();
                let opened = match group.fetch {
                    Fetch::After(_) => self.prefetch.take(&symbol, staging.generation),
                    Fetch::Full => None,
                };
                self.write(group, opened, staging)
                    .unwrap_or_else(|error| Outcome::Failed { symbol, error })
            }
        }
    }

    fn write(
        &self,
        group: Group,
        opened: Option<Opened>,
        staging: &StagingView,
    ) -> Result<Outcome, String> {
        let Group {
            symbol,
            fetch,
            batch,
        } = group;
        let rows_fetched = batch.num_rows() as u64;
        self.check_dates(&batch)?;
        let old_entry = self.cached.as_ref().and_then(|c| c.entry(&symbol).cloned());
        let (merged, incremental) = match (fetch, &old_entry) {
            // Nothing after the last cached day (a weekend's or a holiday's
            // run): every cached row is kept as it is, so the merge would
            // rewrite nothing. Reading 5,000 files to find that out was most
            // of a quiet night's CPU.
            (Fetch::After(after), Some(entry))
                if batch.num_rows() == 0 && after >= entry.last_date =>
            {
                return Ok(Outcome::Unchanged {
                    symbol,
                    rows_fetched,
                });
            }
            (Fetch::After(after), Some(entry)) => {
                if let Some(outcome) =
                    self.append(&symbol, entry, after, &batch, opened, staging)?
                {
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
        let (entry, base) = self.store(&symbol, &merged, staging)?;
        Ok(Outcome::Written {
            symbol,
            entry,
            nulls,
            base: Some(base),
            rows_fetched,
            incremental,
        })
    }

    /// The incremental fast path: the cached file's base row group stays
    /// bytes (it ends on or before `after`), its small tail group is
    /// decoded, and the rows it keeps plus the new ones become the new tail
    /// group. `None` when the file should be rewritten whole instead (no
    /// base group, the overlap reaches into the base, or the tail has grown
    /// long enough to fold into the base).
    fn append(
        &self,
        symbol: &str,
        entry: &IndexEntry,
        after: i64,
        batch: &RecordBatch,
        opened: Option<Opened>,
        staging: &StagingView,
    ) -> Result<Option<Outcome>, String> {
        let cached = self.cached.as_ref().expect("entry implies cache");
        let path = cached.path_of(entry);
        let Opened { published, staged } = opened.unwrap_or_default();
        let base = self.cached_bases.get(symbol).copied();
        let old = KeyFileTail::of_file(&path, published, self.footer.as_ref(), base)
            .map_err(|e| format!("cannot read the cached file: {e}"))?;
        let date_name = &self.schema.columns[self.schema.date].name;
        let (Some(_), Some(groups)) = (old.base_group(), old.row_group_dates(date_name)) else {
            return Ok(None);
        };
        if groups[0].max > after {
            return Ok(None);
        }
        // The tail group (rows after the base), decoded.
        let rest = old
            .read_row_groups(1..groups.len(), &self.schema.arrow())
            .map_err(|e| format!("cannot read the cached file: {e}"))?;
        let rest_kept = filter_dates(&rest, self.schema.date, |d| d <= after);
        let replaced = rest.slice(rest_kept.num_rows(), rest.num_rows() - rest_kept.num_rows());
        if replaced.columns() == batch.columns() {
            return Ok(Some(Outcome::Unchanged {
                symbol: symbol.to_owned(),
                rows_fetched: batch.num_rows() as u64,
            }));
        }
        // The new tail group: the kept rows, then the fetched ones.
        let tail = [rest_kept, batch.clone()];
        if tail.iter().map(RecordBatch::num_rows).sum::<usize>()
            > tail_limit(symbol, self.overlap_days)
        {
            return Ok(None);
        }
        // Null counts without decoding the base: the cache's count for the
        // old file, less the old tail's, plus the new tail's.
        let mut nulls = self.cached_nulls.get(symbol).cloned().unwrap_or_default();
        for (column, n) in null_counts(&rest) {
            let left = nulls.get(&column).copied().unwrap_or(0).saturating_sub(n);
            nulls.insert(column, left);
        }
        for (column, n) in tail.iter().flat_map(null_counts) {
            *nulls.entry(column).or_default() += n;
        }
        nulls.retain(|_, n| *n > 0);
        let metadata = self.metadata_for(&tail, groups[0].max);
        let staged = staging
            .spare
            .get(&entry.file)
            .map(|&(base, len)| StagedFile {
                base,
                len,
                file: staged,
            });
        let (written, base) = self
            .writer
            .write_after_base(&staging.dir, symbol, &old, staged, &tail, &metadata)
            .map_err(|e| e.to_string())?;
        Ok(Some(Outcome::Written {
            symbol: symbol.to_owned(),
            entry: written,
            nulls,
            base: Some(base),
            rows_fetched: batch.num_rows() as u64,
            incremental: true,
        }))
    }

    /// Footer metadata of a file whose last row is the last of `tail`'s
    /// batches (or, for an empty tail, dated `last_kept`).
    fn metadata_for(&self, tail: &[RecordBatch], last_kept: i64) -> Vec<(String, String)> {
        let last = tail
            .iter()
            .rev()
            .find_map(|part| {
                date_values(part, self.schema.date)
                    .last()
                    .copied()
                    .flatten()
            })
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
        staging: &StagingView,
    ) -> Result<(IndexEntry, BaseGroup), String> {
        let metadata = self.metadata_for(std::slice::from_ref(batch), 0);
        // The overlap window goes to the tail group: the next refresh
        // refetches it and keeps the base as bytes.
        let dates = date_values(batch, self.schema.date);
        let last = dates.last().copied().flatten().unwrap_or(i64::MIN);
        let overlap = days_as(i64::from(self.overlap_days), self.schema.date_type());
        let base_rows = dates
            .iter()
            .take_while(|d| d.is_some_and(|d| d <= last - overlap))
            .count();
        self.writer
            .write_split(
                &staging.dir,
                symbol,
                batch,
                base_rows,
                &metadata,
                staging.twin.as_deref(),
            )
            .map_err(|e| e.to_string())
    }
}
