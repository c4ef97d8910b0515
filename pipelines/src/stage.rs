//! One stage within a run: up to date (skipped, its lock entry refreshed
//! when only stats changed), or run under kiln-monitor with its retries,
//! then recorded in the lock — or reported as failed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::exec::{self, Ending, Job};
use crate::fingerprint::PathState;
use crate::lock::{self, StageLock};
use crate::record::{self, human_bytes, StageRecord, StageStatus};
use crate::run::{Outcome, Shared};

/// Lines of a failed stage's log printed with the failure.
const TAIL_LINES: usize = 20;

pub(crate) fn work(sh: &Shared, i: usize, entry: Option<StageLock>) -> Outcome {
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
    deps: BTreeMap<String, PathState>,
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
    let mut text = if rec.stopped_by_watchdog {
        format!(
            "kiln-pipeline: stage '{}' failed: stopped by the memory watchdog (memory_limit {}){}",
            rec.name,
            rec.memory_limit.as_deref().unwrap_or("none"),
            rec.watchdog_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        )
    } else {
        format!(
            "kiln-pipeline: stage '{}' failed: {what}; not stopped by the memory watchdog",
            rec.name
        )
    };
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
