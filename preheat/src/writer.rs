//! Turning one fetched symbol into its cache file: check the rows, merge an
//! incremental fetch over the cached rows, write into the staging copy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use arrow::array::RecordBatch;
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
}

impl WriteContext {
    pub fn handle(&self, message: Message) -> Outcome {
        match message {
            Message::Failed { symbol, error } => Outcome::Failed { symbol, error },
            Message::Group(group) => {
                let symbol = group.symbol.clone();
                self.write(group)
                    .unwrap_or_else(|error| Outcome::Failed { symbol, error })
            }
        }
    }

    fn write(&self, group: Group) -> Result<Outcome, String> {
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
        let entry = self.store(&symbol, &merged, old_entry.is_some())?;
        Ok(Outcome::Written {
            symbol,
            entry,
            nulls,
            rows_fetched,
            incremental,
        })
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

    fn store(&self, symbol: &str, batch: &RecordBatch, linked: bool) -> Result<IndexEntry, String> {
        let staging = self.staging.read().expect("staging lock");
        let file_name =
            kiln_contracts::index::key_file_name(symbol, kiln_contracts::FileFormat::Parquet);
        let path = staging.join(&file_name);
        // The staging copy holds a hard link to the published file: writing
        // through it would change the published file too.
        if linked {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        let last = date_values(batch, self.schema.date)
            .last()
            .copied()
            .flatten()
            .map(|d| format_date_value(d, self.schema.date_type()))
            .unwrap_or_default();
        let mut metadata = self.metadata.clone();
        metadata.push(("kiln.preheat.last_date".into(), last));
        self.writer
            .write(&staging, symbol, batch, &metadata)
            .map_err(|e| e.to_string())
    }
}
