//! What a run did, for humans (stderr) and for scripts (`--json`, stdout).

use std::fmt::Write as _;
use std::path::PathBuf;

use kiln_contracts::mem::human_bytes;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub input: PathBuf,
    pub output: PathBuf,
    pub format: String,
    pub keys: u64,
    pub rows: u64,
    pub rejected_rows: u64,
    pub filtered_rows: u64,
    pub duplicates_dropped: u64,
    pub input_bytes: u64,
    pub output_bytes: u64,
    /// input bytes / output bytes.
    pub compression_ratio: f64,
    pub avg_rows_per_key: f64,
    pub first_date: Option<String>,
    pub last_date: Option<String>,
    pub elapsed_seconds: f64,
    pub peak_rss_bytes: Option<u64>,
    pub memory_budget_bytes: u64,
    pub memory_budget_reason: String,
    pub workers: usize,
    pub buckets: usize,
    pub resplit_buckets: u64,
    pub spill_bytes: u64,
    pub rejects_file: Option<PathBuf>,
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Summary {
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "kiln-split: done in {:.1} s", self.elapsed_seconds);
        let _ = writeln!(s, "  keys           {}", thousands(self.keys));
        let _ = writeln!(
            s,
            "  rows           {} (rejected {}, filtered {}, duplicates dropped {})",
            thousands(self.rows),
            thousands(self.rejected_rows),
            thousands(self.filtered_rows),
            thousands(self.duplicates_dropped)
        );
        let _ = writeln!(s, "  avg rows/key   {:.0}", self.avg_rows_per_key);
        if let (Some(a), Some(b)) = (&self.first_date, &self.last_date) {
            let _ = writeln!(s, "  dates          {a} .. {b}");
        }
        let _ = writeln!(s, "  input          {}", human_bytes(self.input_bytes));
        let _ = writeln!(
            s,
            "  output         {} {} (compression ratio {:.2}x)",
            human_bytes(self.output_bytes),
            self.format,
            self.compression_ratio
        );
        let peak = self.peak_rss_bytes.map_or("n/a".into(), human_bytes);
        let _ = writeln!(
            s,
            "  peak RSS       {peak} (budget {}, {} workers, {} buckets)",
            self.memory_budget_reason, self.workers, self.buckets
        );
        if let Some(r) = &self.rejects_file {
            let _ = writeln!(s, "  rejects        {}", r.display());
        }
        let _ = writeln!(s, "  output dir     {}", self.output.display());
        s
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
        assert_eq!(super::thousands(1234567), "1,234,567");
    }
}
