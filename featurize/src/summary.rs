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
pub struct Summary {
    pub input: PathBuf,
    pub out: PathBuf,
    pub spec_hash: String,
    /// Feature columns per file.
    pub features: u64,
    pub selected: u64,
    /// Up to date (same source, same spec, younger than the TTL): untouched.
    pub skipped_fresh: u64,
    /// Source file touched or rewritten with the same rows: kept.
    pub unchanged: u64,
    pub computed_full: u64,
    /// Only new days computed, from the saved indicator states.
    pub computed_incremental: u64,
    /// Why symbols were computed in full: reason → count.
    pub full_reasons: std::collections::BTreeMap<String, u64>,
    pub failed: Vec<FailedSymbol>,
    /// Cached symbols no longer in the input (or no longer valid): removed.
    pub dropped: Vec<String>,
    pub rows_computed: u64,
    pub files_written: u64,
    pub bytes_written: u64,
    /// The cache after the run.
    pub symbols: u64,
    pub rows: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub peak_rss_bytes: Option<u64>,
}

impl Summary {
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "kiln-featurize: {} symbols from {} into {} (spec {}, {} features)",
            self.selected,
            self.input.display(),
            self.out.display(),
            self.spec_hash,
            self.features
        );
        let reasons = self
            .full_reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            "  computed: {} full{}, {} incremental; skipped: {} fresh, {} unchanged; failed: {}",
            self.computed_full,
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({reasons})")
            },
            self.computed_incremental,
            self.skipped_fresh,
            self.unchanged,
            self.failed.len()
        );
        let _ = writeln!(
            s,
            "  wrote {} files, {} rows, {}; cache: {} symbols, {} rows, {}",
            self.files_written,
            self.rows_computed,
            human_bytes(self.bytes_written),
            self.symbols,
            self.rows,
            human_bytes(self.bytes)
        );
        if !self.dropped.is_empty() {
            let _ = writeln!(
                s,
                "  removed {} symbol(s) no longer in the input: {}",
                self.dropped.len(),
                preview(&self.dropped)
            );
        }
        for f in &self.failed {
            let _ = writeln!(s, "  FAILED {}: {}", f.symbol, f.error);
        }
        let _ = writeln!(
            s,
            "  {:.2} s, peak RSS {}",
            self.seconds,
            self.peak_rss_bytes
                .map(human_bytes)
                .unwrap_or_else(|| "?".into())
        );
        s
    }
}

fn preview(items: &[String]) -> String {
    let shown: Vec<&str> = items.iter().take(10).map(String::as_str).collect();
    if items.len() > shown.len() {
        format!("{} … (+{})", shown.join(", "), items.len() - shown.len())
    } else {
        shown.join(", ")
    }
}
