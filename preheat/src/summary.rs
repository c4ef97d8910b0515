//! What a run did, for people (stderr) and scripts (`--json`).

use std::fmt::Write as _;
use std::path::PathBuf;

use kiln_contracts::mem::human_bytes;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct FailedSymbol {
    pub symbol: String,
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheTotals {
    pub symbols: u64,
    pub rows: u64,
    pub bytes: u64,
    pub first_date: Option<String>,
    pub last_date: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub source: String,
    pub table: Option<String>,
    pub out: PathBuf,
    /// How rows were read: "one ordered scan" or "N batches over J connections".
    pub shape: String,
    pub selected: u64,
    /// Younger than the TTL: not asked for.
    pub skipped_fresh: u64,
    pub fetched_full: u64,
    pub fetched_incremental: u64,
    /// Asked for; the cached rows were already right.
    pub unchanged: u64,
    /// Not in the source (and not cached).
    pub missing: Vec<String>,
    pub failed: Vec<FailedSymbol>,
    pub rows_fetched: u64,
    pub rows_written: u64,
    pub files_written: u64,
    pub bytes_written: u64,
    pub queries: u64,
    pub retries: u64,
    /// Times the cache was published (checkpoints + the end).
    pub publishes: u64,
    pub cache: CacheTotals,
    pub seconds: f64,
    pub peak_rss_bytes: Option<u64>,
}

impl Summary {
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "kiln-preheat: {} symbols from {}{} into {}",
            self.selected,
            self.source,
            self.table
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default(),
            self.out.display()
        );
        let _ = writeln!(
            s,
            "  fetched {} in full, {} incrementally; {} unchanged, {} fresh (skipped), {} missing, {} failed",
            self.fetched_full,
            self.fetched_incremental,
            self.unchanged,
            self.skipped_fresh,
            self.missing.len(),
            self.failed.len()
        );
        let _ = writeln!(
            s,
            "  {} rows fetched ({}, {} queries, {} retries); {} files written ({}, {} rows)",
            self.rows_fetched,
            self.shape,
            self.queries,
            self.retries,
            self.files_written,
            human_bytes(self.bytes_written),
            self.rows_written
        );
        let _ = writeln!(
            s,
            "  cache: {} symbols, {} rows, {}, {} .. {}",
            self.cache.symbols,
            self.cache.rows,
            human_bytes(self.cache.bytes),
            self.cache.first_date.as_deref().unwrap_or("-"),
            self.cache.last_date.as_deref().unwrap_or("-")
        );
        let _ = writeln!(
            s,
            "  {:.2} s, peak RSS {}",
            self.seconds,
            self.peak_rss_bytes.map_or("?".into(), human_bytes)
        );
        if !self.missing.is_empty() {
            let shown: Vec<&str> = self.missing.iter().take(10).map(String::as_str).collect();
            let more = self.missing.len().saturating_sub(shown.len());
            let _ = writeln!(
                s,
                "  missing in the source: {}{}",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
        }
        for f in self.failed.iter().take(20) {
            let _ = writeln!(s, "  failed: {}: {}", f.symbol, f.error);
        }
        if self.failed.len() > 20 {
            let _ = writeln!(
                s,
                "  … and {} more failures (see --json)",
                self.failed.len() - 20
            );
        }
        s
    }
}
