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
use crate::exec::{self, Ending, Job};
use crate::fingerprint::Hashing;
use crate::lock::{self, Lock, StageLock};
use crate::pipeline::Pipeline;
use crate::record::{self, human_bytes, Hashed, RunRecord, StageRecord, StageStatus};
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

/// Lines of a failed stage's log printed with the failure.
const TAIL_LINES: usize = 20;

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

struct Shared<'a> {
    pipeline: &'a Pipeline,
    opts: &'a RunOptions,
    stop: &'a AtomicUsize,
    counters: &'a Hashing,
    ui: &'a Ui,
    logs_dir: PathBuf,
}

struct Outcome {
    record: StageRecord,
    lock_entry: Option<StageLock>,
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
    let mut rec = RunRecord {
        id,
        pipeline: m.name.clone(),
        manifest: m.file.display().to_string(),
        workdir: m.workdir.display().to_string(),
        started_at: record::now_rfc3339(),
        finished_at: None,
        duration_s: 0.0,
        status: "running".into(),
        exit_code: 0,
        jobs: opts.jobs,
        force: opts.force,
        stages: m
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
            .collect(),
        fingerprints: Hashed::default(),
    };
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
                        let outcome = work(shared, i, entry);
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
    let plan = status::plan(p, selected, opts.force)?;
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
    let record = RunRecord {
        id: "dry-run".into(),
        pipeline: m.name.clone(),
        manifest: m.file.display().to_string(),
        workdir: m.workdir.display().to_string(),
        started_at: record::now_rfc3339(),
        finished_at: None,
        duration_s: 0.0,
        status: "dry_run".into(),
        exit_code: 0,
        jobs: opts.jobs,
        force: opts.force,
        stages,
        fingerprints: Hashed::default(),
    };
    Ok(RunOutcome {
        record,
        exit_code: exit::OK,
        record_path: None,
    })
}

fn work(sh: &Shared, i: usize, entry: Option<StageLock>) -> Outcome {
    let p = sh.pipeline;
    let stage = &p.manifest.stages[i];
    let mut rec = StageRecord::new(&stage.name, StageStatus::Failed);
    rec.memory_limit = stage.memory_limit.clone();
    let verdict = match lock::check(stage, entry.as_ref(), sh.counters) {
        Ok(v) => v,
        Err(e) => {
            rec.reason = Some(format!("cannot fingerprint: {e}"));
            sh.ui
                .stage("✗", &stage.name, rec.reason.as_deref().unwrap_or(""));
            return Outcome {
                record: rec,
                lock_entry: None,
            };
        }
    };
    let reason = if sh.opts.force {
        Some("--force".to_string())
    } else {
        verdict.stale.clone()
    };
    let Some(reason) = reason else {
        rec.status = StageStatus::Skipped;
        sh.ui.stage("=", &stage.name, "up to date");
        // Same bytes, new stats (a touch, a restore): remember the stats so
        // the next check needs no hashing.
        let refreshed = entry
            .filter(|e| e.deps != verdict.deps || e.outs != verdict.outs)
            .map(|mut e| {
                e.deps = verdict.deps;
                e.outs = verdict.outs;
                e
            });
        return Outcome {
            record: rec,
            lock_entry: refreshed,
        };
    };
    rec.reason = Some(reason.clone());
    sh.ui.stage("▶", &stage.name, &reason);
    sh.ui.started(&stage.name);
    let outcome = execute(sh, i, rec, verdict.deps);
    sh.ui.finished(&stage.name);
    outcome
}

fn execute(
    sh: &Shared,
    i: usize,
    mut rec: StageRecord,
    deps: std::collections::BTreeMap<String, crate::fingerprint::PathState>,
) -> Outcome {
    let p = sh.pipeline;
    let stage = &p.manifest.stages[i];
    for out in &stage.outs {
        if let Some(parent) = out.abs.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
    }
    let (log, memory_log) = exec::log_paths(&sh.logs_dir, &stage.name);
    rec.log = Some(p.shown(&log));
    rec.memory_log = Some(p.shown(&memory_log));
    rec.started_at = Some(record::now_rfc3339());
    let job = Job {
        pipeline: &p.manifest.name,
        stage: &stage.name,
        monitor: &p.monitor,
        program: &p.programs[i],
        args: &stage.argv[1..],
        workdir: &p.manifest.workdir,
        env: &stage.env,
        memory_limit: stage.memory_limit.as_deref(),
        timeout: stage.timeout,
        log: &log,
        memory_log: &memory_log,
        echo: sh.opts.show_output,
        stop: sh.stop,
    };
    let started = Instant::now();
    let attempts = stage.retries + 1;
    let mut last = None;
    for n in 1..=attempts {
        rec.attempts = n;
        let attempt = match exec::run(&job, n) {
            Ok(a) => a,
            Err(e) => {
                rec.reason = Some(format!("cannot start {}: {e}", p.monitor.display()));
                break;
            }
        };
        let retry = !attempt.succeeded()
            && n < attempts
            && matches!(attempt.ending, Ending::Exited(_) | Ending::TimedOut)
            && sh.stop.load(Ordering::Relaxed) == 0;
        if retry {
            let pause = Duration::from_secs((1u64 << (n - 1).min(6)).min(60));
            sh.ui.stage(
                "↻",
                &stage.name,
                &format!(
                    "{}; retry {n}/{} in {} s",
                    exec::describe(attempt.ending, attempt.watchdog_reason.as_deref()),
                    stage.retries,
                    pause.as_secs()
                ),
            );
            let until = Instant::now() + pause;
            while Instant::now() < until && sh.stop.load(Ordering::Relaxed) == 0 {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        last = Some(attempt);
        if !retry {
            break;
        }
    }
    let duration = started.elapsed().as_secs_f64();
    rec.duration_s = Some(duration);
    let Some(attempt) = last else {
        sh.ui
            .stage("✗", &stage.name, rec.reason.as_deref().unwrap_or("failed"));
        return Outcome {
            record: rec,
            lock_entry: None,
        };
    };
    rec.peak_rss_bytes = attempt.peak_rss;
    rec.stopped_by_watchdog = attempt.ending == Ending::Watchdog;
    rec.watchdog_reason = attempt.watchdog_reason.clone();
    rec.timed_out = attempt.ending == Ending::TimedOut;
    rec.exit_status = match attempt.ending {
        Ending::Exited(c) => Some(c),
        Ending::Watchdog => Some(exec::WATCHDOG_STATUS),
        _ => None,
    };
    let peak = attempt
        .peak_rss
        .map(|b| format!(", peak RSS {}", human_bytes(b)))
        .unwrap_or_default();
    if attempt.succeeded() {
        match lock::record(stage, deps, duration, sh.counters) {
            Ok(entry) => {
                rec.status = StageStatus::Ran;
                sh.ui
                    .stage("✓", &stage.name, &format!("ran in {duration:.1} s{peak}"));
                return Outcome {
                    record: rec,
                    lock_entry: Some(entry),
                };
            }
            Err(e) => {
                rec.reason = Some(e.to_string());
                sh.ui.stage("✗", &stage.name, &e.to_string());
                return Outcome {
                    record: rec,
                    lock_entry: None,
                };
            }
        }
    }
    let what = exec::describe(attempt.ending, attempt.watchdog_reason.as_deref());
    rec.status = if attempt.ending == Ending::Stopped {
        StageStatus::Interrupted
    } else {
        StageStatus::Failed
    };
    rec.reason = Some(what.clone());
    let attempts_text = if attempts > 1 {
        format!(" (attempt {}/{attempts})", rec.attempts)
    } else {
        String::new()
    };
    sh.ui.stage(
        "✗",
        &stage.name,
        &format!("{what} after {duration:.1} s{attempts_text}{peak}"),
    );
    if rec.status == StageStatus::Failed {
        report_failure(sh, &rec, &log, &what);
    }
    Outcome {
        record: rec,
        lock_entry: None,
    }
}

/// Which stage failed, how, whether the watchdog stopped it, and the end
/// of its log: what a person paged at night needs first.
fn report_failure(sh: &Shared, rec: &StageRecord, log: &Path, what: &str) {
    let p = sh.pipeline;
    let watchdog = if rec.stopped_by_watchdog {
        format!(
            "stopped by the memory watchdog (memory_limit {})",
            rec.memory_limit.as_deref().unwrap_or("none")
        )
    } else {
        "not stopped by the memory watchdog".to_string()
    };
    let mut text = format!(
        "kiln-pipeline: stage '{}' failed: {what}; {watchdog}",
        rec.name
    );
    let tail = exec::tail(log, TAIL_LINES);
    text.push_str(&format!(
        "\n  last {} lines of {}:",
        tail.len(),
        p.shown(log)
    ));
    for line in tail {
        text.push_str(&format!("\n  | {line}"));
    }
    sh.ui.line(&text);
}
