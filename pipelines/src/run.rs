//! `kiln-pipeline run`: stages in dependency order, independent ones in
//! parallel up to `--jobs`, each skipped when up to date or run under
//! kiln-monitor; a failure blocks its dependents and nothing else.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{exit, PipelineError};
use crate::fingerprint::Hashing;
use crate::lock::{Lock, StageLock};
use crate::pipeline::Pipeline;
use crate::record::{self, Hashed, RunRecord, StageRecord, StageStatus};
use crate::status;
use crate::ui::Ui;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub only: Vec<String>,
    pub from: Option<String>,
    pub force: bool,
    pub dry_run: bool,
    pub jobs: usize,
    pub show_output: bool,
    pub keep_runs: usize,
    pub quiet: bool,
}

#[derive(Debug)]
pub struct RunOutcome {
    pub record: RunRecord,
    pub exit_code: i32,
    pub record_path: Option<PathBuf>,
}

/// Holds `.kiln/<name>/run.lock` (flock) for the whole run: two runs of
/// one manifest would race on its outs and its lock file.
struct RunLock {
    _file: File,
}

impl RunLock {
    fn acquire(state_dir: &Path) -> Result<RunLock, PipelineError> {
        std::fs::create_dir_all(state_dir).map_err(|e| PipelineError::io(state_dir, e))?;
        let path = state_dir.join("run.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| PipelineError::io(&path, e))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(RunLock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(PipelineError::Busy(path)),
            Err(e) => Err(PipelineError::io(&path, e.into())),
        }
    }
}

pub(crate) struct Shared<'a> {
    pub(crate) pipeline: &'a Pipeline,
    pub(crate) opts: &'a RunOptions,
    pub(crate) stop: &'a AtomicUsize,
    pub(crate) counters: &'a Hashing,
    pub(crate) ui: &'a Ui,
    pub(crate) logs_dir: PathBuf,
}

pub(crate) struct Outcome {
    pub(crate) record: StageRecord,
    pub(crate) lock_entry: Option<StageLock>,
}

pub fn run(
    p: &Pipeline,
    opts: &RunOptions,
    stop: &AtomicUsize,
) -> Result<RunOutcome, PipelineError> {
    let m = &p.manifest;
    let selected = p.select(&opts.only, opts.from.as_deref())?;
    p.check_sources(&selected)?;
    if opts.dry_run {
        return dry_run(p, opts, &selected);
    }
    let state_dir = p.state_dir.clone();
    let _run_lock = RunLock::acquire(&state_dir)?;
    let mut lock = Lock::load(&state_dir)?;

    let started = Instant::now();
    let id = record::new_run_id();
    let logs_dir = record::logs_dir(&state_dir, &id);
    std::fs::create_dir_all(&logs_dir).map_err(|e| PipelineError::io(&logs_dir, e))?;
    let stages = m
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let status = if selected.contains(&i) {
                StageStatus::Pending
            } else {
                StageStatus::NotSelected
            };
            StageRecord::new(&s.name, status)
        })
        .collect();
    let mut rec = new_record(p, opts, id, "running", stages);
    let record_path = rec.path(&state_dir);
    rec.save(&state_dir)?;

    let width = m.stages.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let ui = Ui::new(opts.quiet, selected.len(), width);
    ui.info(&format!(
        "kiln-pipeline {}: {} of {} stages, --jobs {}, logs in {}",
        m.name,
        selected.len(),
        m.stages.len(),
        opts.jobs,
        p.shown(&logs_dir)
    ));
    let counters = Hashing::default();
    let shared = Shared {
        pipeline: p,
        opts,
        stop,
        counters: &counters,
        ui: &ui,
        logs_dir,
    };

    let mut save_error = None;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Outcome)>();
        let mut running = 0usize;
        loop {
            if stop.load(Ordering::Relaxed) == 0 && save_error.is_none() {
                for &i in &p.dag.order {
                    if running >= opts.jobs.max(1) {
                        break;
                    }
                    if rec.stages[i].status != StageStatus::Pending {
                        continue;
                    }
                    let ready = p.dag.upstream[i].iter().all(|&u| {
                        !selected.contains(&u)
                            || matches!(
                                rec.stages[u].status,
                                StageStatus::Ran | StageStatus::Skipped
                            )
                    });
                    if !ready {
                        continue;
                    }
                    rec.stages[i].status = StageStatus::Running;
                    running += 1;
                    let entry = lock.stages.get(&m.stages[i].name).cloned();
                    let tx = tx.clone();
                    let shared = &shared;
                    scope.spawn(move || {
                        let outcome = crate::stage::work(shared, i, entry);
                        let _ = tx.send((i, outcome));
                    });
                }
            }
            if running == 0 {
                break;
            }
            // Wake now and then so that a signal stops the starting of stages.
            let Ok((i, outcome)) = rx.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            running -= 1;
            let name = m.stages[i].name.clone();
            if let Some(entry) = outcome.lock_entry {
                lock.stages.insert(name.clone(), entry);
                if let Err(e) = lock.save(&state_dir) {
                    ui.line(&format!("kiln-pipeline: cannot save the lock: {e}"));
                    save_error = Some(e);
                }
            }
            let failed = outcome.record.status == StageStatus::Failed;
            rec.stages[i] = outcome.record;
            if failed {
                for d in p.dag.downstream_closure(&[i]) {
                    if d != i && rec.stages[d].status == StageStatus::Pending {
                        rec.stages[d].status = StageStatus::Blocked;
                        rec.stages[d].reason = Some(format!("upstream stage '{name}' failed"));
                        ui.stage(
                            "-",
                            &m.stages[d].name,
                            &format!("blocked: upstream stage '{name}' failed"),
                        );
                    }
                }
            }
            let (s, h, b) = counters.snapshot();
            rec.fingerprints = Hashed {
                files_stat: s,
                files_hashed: h,
                bytes_hashed: b,
            };
            if let Err(e) = rec.save(&state_dir) {
                tracing::warn!("cannot save the run record: {e}");
            }
        }
    });
    ui.finish();

    let signal = stop.load(Ordering::Relaxed);
    for s in rec
        .stages
        .iter_mut()
        .filter(|s| s.status == StageStatus::Pending)
    {
        s.status = StageStatus::Interrupted;
        s.reason = Some("not started: the run was interrupted".into());
    }
    let (ran, skipped, failed, blocked) = rec.counts();
    let exit_code = if signal != 0 {
        128 + signal as i32
    } else if save_error.is_some() {
        exit::ERROR
    } else if failed > 0 {
        exit::STAGE_FAILED
    } else {
        exit::OK
    };
    rec.status = match exit_code {
        exit::OK => "ok",
        exit::STAGE_FAILED => "failed",
        exit::ERROR => "error",
        _ => "interrupted",
    }
    .into();
    rec.exit_code = exit_code;
    rec.finished_at = Some(record::now_rfc3339());
    rec.duration_s = started.elapsed().as_secs_f64();
    rec.save(&state_dir)?;
    record::prune(&state_dir, opts.keep_runs.max(1));

    let mut summary = format!(
        "kiln-pipeline {}: {ran} ran, {skipped} up to date, {failed} failed, {blocked} blocked in {:.1} s",
        m.name, rec.duration_s
    );
    if signal != 0 {
        summary.push_str(&format!("; interrupted by signal {signal}"));
    }
    summary.push_str(&format!(" (record {})", p.shown(&record_path)));
    if exit_code == exit::OK {
        ui.info(&summary);
    } else {
        ui.line(&summary);
    }
    if let Some(e) = save_error {
        return Err(e.into());
    }
    Ok(RunOutcome {
        record: rec,
        exit_code,
        record_path: Some(record_path),
    })
}

fn dry_run(
    p: &Pipeline,
    opts: &RunOptions,
    selected: &BTreeSet<usize>,
) -> Result<RunOutcome, PipelineError> {
    let m = &p.manifest;
    let plan = status::plan(p, &Lock::load(&p.state_dir)?, selected, opts.force)?;
    let width = m.stages.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let ui = Ui::new(opts.quiet, 0, width);
    ui.info(&format!(
        "kiln-pipeline {} (dry run): nothing is run or written",
        m.name
    ));
    let mut stages = Vec::new();
    for (i, stage) in m.stages.iter().enumerate() {
        let mut r = StageRecord::new(&stage.name, StageStatus::NotSelected);
        if let Some(reason) = &plan[i] {
            r.status = match reason {
                None => StageStatus::Skipped,
                Some(_) => StageStatus::WouldRun,
            };
            r.reason = reason.clone();
        }
        stages.push(r);
    }
    for &i in &p.dag.order {
        let r = &stages[i];
        let cmd = shlex::try_join(m.stages[i].argv.iter().map(String::as_str))
            .unwrap_or_else(|_| m.stages[i].argv.join(" "));
        match r.status {
            StageStatus::Skipped => ui.stage("=", &r.name, "up to date"),
            StageStatus::WouldRun => {
                ui.stage(
                    "▶",
                    &r.name,
                    &format!("would run: {}", r.reason.as_deref().unwrap_or("")),
                );
                ui.info(&format!("      $ {cmd}"));
            }
            _ => {}
        }
    }
    let record = new_record(p, opts, "dry-run".into(), "dry_run", stages);
    Ok(RunOutcome {
        record,
        exit_code: exit::OK,
        record_path: None,
    })
}

fn new_record(
    p: &Pipeline,
    opts: &RunOptions,
    id: String,
    status: &str,
    stages: Vec<StageRecord>,
) -> RunRecord {
    RunRecord {
        id,
        pipeline: p.manifest.name.clone(),
        manifest: p.manifest.file.display().to_string(),
        workdir: p.manifest.workdir.display().to_string(),
        started_at: record::now_rfc3339(),
        finished_at: None,
        duration_s: 0.0,
        status: status.into(),
        exit_code: 0,
        jobs: opts.jobs,
        force: opts.force,
        stages,
        fingerprints: Hashed::default(),
    }
}
