//! The run record (`.kiln/<name>/runs/<id>.json`): what one run did with
//! each stage — skipped or ran and why, how long, peak RSS, exit status,
//! whether the watchdog stopped it. Saved after every stage, so a killed
//! run still leaves what it finished.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Not reached yet.
    Pending,
    Running,
    /// Left out by --stage/--from.
    NotSelected,
    /// Up to date: not run.
    Skipped,
    Ran,
    Failed,
    /// An upstream stage failed.
    Blocked,
    /// kiln-pipeline was interrupted before or while it ran.
    Interrupted,
    /// --dry-run: would run.
    WouldRun,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub name: String,
    pub status: StageStatus,
    /// Why it ran (or would), was blocked, or failed.
    pub reason: Option<String>,
    pub started_at: Option<String>,
    pub duration_s: Option<f64>,
    pub attempts: u32,
    pub exit_status: Option<i32>,
    pub peak_rss_bytes: Option<u64>,
    pub stopped_by_watchdog: bool,
    pub watchdog_reason: Option<String>,
    pub timed_out: bool,
    pub memory_limit: Option<String>,
    /// The stage's output log, relative to the workdir.
    pub log: Option<String>,
    pub memory_log: Option<String>,
}

impl StageRecord {
    pub fn new(name: &str, status: StageStatus) -> Self {
        StageRecord {
            name: name.to_string(),
            status,
            reason: None,
            started_at: None,
            duration_s: None,
            attempts: 0,
            exit_status: None,
            peak_rss_bytes: None,
            stopped_by_watchdog: false,
            watchdog_reason: None,
            timed_out: false,
            memory_limit: None,
            log: None,
            memory_log: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Hashed {
    pub files_stat: u64,
    pub files_hashed: u64,
    pub bytes_hashed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub pipeline: String,
    pub manifest: String,
    pub workdir: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_s: f64,
    /// running, ok, failed, interrupted, dry_run.
    pub status: String,
    pub exit_code: i32,
    pub jobs: usize,
    pub force: bool,
    pub stages: Vec<StageRecord>,
    pub fingerprints: Hashed,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A run id that sorts by time: `20261201T053012.123Z`.
pub fn new_run_id() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string()
}

pub fn runs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("runs")
}

pub fn logs_dir(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("logs").join(id)
}

impl RunRecord {
    pub fn path(&self, state_dir: &Path) -> PathBuf {
        runs_dir(state_dir).join(format!("{}.json", self.id))
    }

    pub fn save(&self, state_dir: &Path) -> Result<PathBuf, kiln_contracts::ContractError> {
        let dir = runs_dir(state_dir);
        std::fs::create_dir_all(&dir).map_err(|e| kiln_contracts::ContractError::io(&dir, e))?;
        let path = self.path(state_dir);
        let mut bytes = serde_json::to_vec_pretty(self).expect("a run record serializes");
        bytes.push(b'\n');
        kiln_contracts::atomic::write_atomic(&path, &bytes)?;
        Ok(path)
    }

    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let n = |s: StageStatus| self.stages.iter().filter(|r| r.status == s).count();
        (
            n(StageStatus::Ran),
            n(StageStatus::Skipped),
            n(StageStatus::Failed),
            n(StageStatus::Blocked),
        )
    }
}

/// Keeps the newest `keep` run records and log directories.
pub fn prune(state_dir: &Path, keep: usize) {
    let listing = |dir: PathBuf| -> Vec<PathBuf> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        entries.retain(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        });
        entries.sort();
        entries
    };
    let runs = listing(runs_dir(state_dir));
    for old in runs.iter().take(runs.len().saturating_sub(keep)) {
        let _ = std::fs::remove_file(old);
    }
    let logs = listing(state_dir.join("logs"));
    for old in logs.iter().take(logs.len().saturating_sub(keep)) {
        let _ = std::fs::remove_dir_all(old);
    }
}

pub use kiln_contracts::mem::human_bytes;
