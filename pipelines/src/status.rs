//! `kiln-pipeline status` and `run --dry-run`: which stages would run and
//! why, without running or writing anything.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::PipelineError;
use crate::fingerprint::Hashing;
use crate::lock::{self, Lock};
use crate::pipeline::Pipeline;

/// Per stage: None when not selected, Some(None) when up to date, else the
/// reason it would run. A stage downstream of one that would run would run
/// too (its deps are about to change).
pub fn plan(
    p: &Pipeline,
    lock: &Lock,
    selected: &BTreeSet<usize>,
    force: bool,
) -> Result<Vec<Option<Option<String>>>, PipelineError> {
    let m = &p.manifest;
    let counters = Hashing::default();
    let mut plan: Vec<Option<Option<String>>> = vec![None; m.stages.len()];
    for &i in &p.dag.order {
        if !selected.contains(&i) {
            continue;
        }
        let stage = &m.stages[i];
        let verdict = lock::check(stage, lock.stages.get(&stage.name), &counters)?;
        let upstream = p.dag.upstream[i]
            .iter()
            .find(|&&u| matches!(plan[u], Some(Some(_))))
            .map(|&u| format!("upstream stage '{}' runs first", m.stages[u].name));
        let reason = if force {
            Some("--force".to_string())
        } else {
            verdict.stale.or(upstream)
        };
        plan[i] = Some(reason);
    }
    Ok(plan)
}

#[derive(Debug, Serialize)]
pub struct StageStatusLine {
    pub stage: String,
    pub up_to_date: bool,
    pub reason: Option<String>,
    pub last_finished_at: Option<String>,
    pub last_duration_s: Option<f64>,
}

pub fn status(p: &Pipeline) -> Result<Vec<StageStatusLine>, PipelineError> {
    let m = &p.manifest;
    let all: BTreeSet<usize> = (0..m.stages.len()).collect();
    let lock = Lock::load(&p.state_dir)?;
    let plan = plan(p, &lock, &all, false)?;
    Ok(p.dag
        .order
        .iter()
        .map(|&i| {
            let stage = &m.stages[i];
            let last = lock.stages.get(&stage.name);
            let reason = plan[i].clone().flatten();
            StageStatusLine {
                stage: stage.name.clone(),
                up_to_date: reason.is_none(),
                reason,
                last_finished_at: last.map(|l| l.finished_at.clone()),
                last_duration_s: last.map(|l| l.duration_s),
            }
        })
        .collect())
}

pub fn status_text(p: &Pipeline, lines: &[StageStatusLine]) -> String {
    let width = lines.iter().map(|l| l.stage.len()).max().unwrap_or(0);
    let stale = lines.iter().filter(|l| !l.up_to_date).count();
    let mut out = format!(
        "{} ({}): {stale} of {} stages stale\n",
        p.manifest.name,
        p.manifest.file.display(),
        lines.len()
    );
    for l in lines {
        let state = match &l.reason {
            None => "up to date".to_string(),
            Some(r) => format!("stale: {r}"),
        };
        let last = match (&l.last_finished_at, l.last_duration_s) {
            (Some(at), Some(d)) => format!("  (last ran {at}, {d:.1} s)"),
            _ => String::new(),
        };
        out.push_str(&format!("  {:<width$}  {state}{last}\n", l.stage));
    }
    out
}
