//! The watch loop shared by `run` and `watch`: sample every interval, warn
//! once, stop the tree on a breach (SIGTERM, SIGKILL after the grace), log,
//! and turn the ending into kiln-monitor's exit status.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kiln_contracts::mem::human_bytes;
use rustix::process::Signal;

use crate::error::exit;
use crate::limits::Thresholds;
use crate::record::{LogWriter, Record};
use crate::sampler::{own_cpu_seconds, Sampler};
use crate::summary::{shell_words, Summary};

/// How a watched command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
    /// A watched (not spawned) process is gone; its status is its parent's.
    Gone,
    /// kiln-monitor received this signal while watching a process it did
    /// not start, and stopped watching.
    Detached(i32),
}

/// What interrupted a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The wait timed out: time for the next sample.
    Tick,
    Ended(Ending),
    /// kiln-monitor received a signal.
    Signal(i32),
}

/// The process tree under watch: something to wait on and to signal.
pub trait Target {
    fn pid(&self) -> u32;
    /// Waits at most `timeout` for the command to end or a signal to arrive.
    fn wait(&mut self, timeout: Duration) -> Wake;
    /// Sends `signal` to every process of the tree (`pids`, as last sampled).
    fn signal_tree(&mut self, signal: Signal, pids: &[u32]);
    /// Handles a signal kiln-monitor received: `true` when it was passed on
    /// to the command, `false` when the watch should stop.
    fn forward(&mut self, signal: i32) -> bool;
    /// Whether the kernel stopped the command at the `--hard` cgroup limit.
    fn hard_limit_hit(&self) -> bool {
        false
    }
    /// The kernel's high-water RSS of the largest process that has ended.
    fn max_process_rss(&self) -> Option<u64> {
        None
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub thresholds: Thresholds,
    pub interval: Duration,
    pub grace: Duration,
    pub log: Option<PathBuf>,
    pub hard_limit: Option<u64>,
    /// The machine's total memory (what percentages were resolved against).
    pub total_memory: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Watching,
    /// SIGTERM sent; SIGKILL at the deadline.
    Terminating {
        deadline: Instant,
    },
    Killed,
}

/// Records go to the summary and, with `--log`, to the file.
struct Journal {
    start: Instant,
    log: Option<LogWriter>,
    summary: Summary,
}

impl Journal {
    fn t(&self) -> f64 {
        self.t_at(Instant::now())
    }

    /// Seconds since the start at `at`, to the millisecond.
    fn t_at(&self, at: Instant) -> f64 {
        ((at - self.start).as_secs_f64() * 1000.0).round() / 1000.0
    }

    /// A log that cannot be written (disk full) is dropped with one
    /// warning: the watchdog must go on guarding the command regardless.
    fn emit(&mut self, record: Record) {
        self.summary.observe(&record);
        if let Some(log) = &mut self.log {
            if let Err(e) = log.write(&record) {
                eprintln!("kiln-monitor: warning: {e}; logging stops, watching goes on");
                self.log = None;
            }
        }
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Watches `target` until it ends; returns the summary, whose `exit_status`
/// is what kiln-monitor should exit with. `log` was opened by the caller
/// before the command started, so that no failure here leaves it unwatched.
pub fn watch(
    target: &mut dyn Target,
    sampler: &mut Sampler,
    settings: &Settings,
    log: Option<LogWriter>,
    mode: &str,
    command: &[String],
) -> Summary {
    let mut journal = Journal {
        start: Instant::now(),
        log,
        summary: Summary::default(),
    };
    let thresholds = settings.thresholds;
    let shown = shell_words(command);
    journal.emit(Record::Start {
        t: 0.0,
        unix_ms: unix_ms(),
        mode: mode.to_string(),
        pid: target.pid(),
        command: command.to_vec(),
        interval_ms: settings.interval.as_millis() as u64,
        grace_ms: settings.grace.as_millis() as u64,
        total_memory: settings.total_memory,
        limit: thresholds.tree_limit,
        warn: thresholds.warn,
        min_available: thresholds.min_available,
        hard_limit: settings.hard_limit,
    });
    let mut phase = Phase::Watching;
    let mut warned = false;
    let mut last_pids: Vec<u32>;
    let mut tick: u32 = 0;
    let ending = 'watch: loop {
        let sample = sampler.sample();
        journal.emit(Record::Sample {
            t: journal.t(),
            unix_ms: unix_ms(),
            tree_rss: sample.tree_rss,
            processes: sample.pids.len(),
            top: sample.top.clone(),
            system_used: sample.system_used,
            system_available: sample.system_available,
        });
        if let Some(threshold) = thresholds.warn.filter(|&w| !warned && sample.tree_rss >= w) {
            warned = true;
            let top = sample.top.as_ref().map_or(String::new(), |t| {
                format!(
                    "; largest: {} (pid {}) {}",
                    t.name,
                    t.pid,
                    human_bytes(t.rss)
                )
            });
            let limit = thresholds
                .tree_limit
                .map_or(String::new(), |l| format!(" (limit {})", human_bytes(l)));
            eprintln!(
                "kiln-monitor: warning: `{shown}` tree RSS {} passed {}{limit}{top}",
                human_bytes(sample.tree_rss),
                human_bytes(threshold)
            );
            journal.emit(Record::Warn {
                t: journal.t(),
                unix_ms: unix_ms(),
                tree_rss: sample.tree_rss,
                threshold,
            });
        }
        let now = Instant::now();
        match phase {
            Phase::Watching => {
                if let Some(reason) = thresholds.breach(sample.tree_rss, sample.system_available) {
                    eprintln!(
                        "kiln-monitor: stopping `{shown}`: {reason}; SIGTERM to {} process(es) \
                         (pids {}), SIGKILL in {}",
                        sample.pids.len(),
                        join_pids(&sample.pids),
                        humantime::format_duration(settings.grace)
                    );
                    target.signal_tree(Signal::TERM, &sample.pids);
                    // The grace runs from the SIGTERM as logged: the log's
                    // SIGKILL is never less than the grace after it.
                    let sent = Instant::now();
                    journal.emit(Record::Kill {
                        t: journal.t_at(sent),
                        unix_ms: unix_ms(),
                        signal: "SIGTERM".into(),
                        reason,
                        tree_rss: sample.tree_rss,
                        pids: sample.pids.clone(),
                    });
                    phase = Phase::Terminating {
                        deadline: sent + settings.grace,
                    };
                }
            }
            Phase::Terminating { deadline } if now >= deadline && !sample.pids.is_empty() => {
                kill_hard(
                    target,
                    &mut journal,
                    &sample.pids,
                    sample.tree_rss,
                    settings.grace,
                );
                phase = Phase::Killed;
            }
            Phase::Terminating { .. } => {}
            // Anything forked since the SIGKILL gets one too.
            Phase::Killed => target.signal_tree(Signal::KILL, &sample.pids),
        }
        last_pids = sample.pids;

        tick += 1;
        let next = journal.start + settings.interval * tick;
        loop {
            let now = Instant::now();
            if now >= next {
                // Behind schedule (a slow sample, a suspended machine): skip
                // the missed ticks instead of sampling in a burst.
                let behind = (now - journal.start).as_nanos() / settings.interval.as_nanos();
                tick = tick.max(behind as u32);
                break;
            }
            match target.wait(next - now) {
                Wake::Tick => {}
                Wake::Ended(ending) => break 'watch ending,
                Wake::Signal(signal) => {
                    let name = signal_name(signal);
                    if !target.forward(signal) {
                        break 'watch Ending::Detached(signal);
                    }
                    journal.emit(Record::Forward {
                        t: journal.t(),
                        unix_ms: unix_ms(),
                        signal: name,
                    });
                }
            }
        }
    };

    // The command has ended; once the watchdog has decided to stop the tree,
    // what is left of it (adopted orphans) gets the same grace, then SIGKILL.
    if let Phase::Terminating { deadline } = phase {
        let mut pids = last_pids;
        while !pids.is_empty() {
            let sample = sampler.sample();
            pids = sample.pids;
            if !pids.is_empty() && Instant::now() >= deadline {
                kill_hard(target, &mut journal, &pids, sample.tree_rss, settings.grace);
                break;
            }
            std::thread::sleep(settings.interval.min(Duration::from_millis(50)));
        }
    }
    let hard_hit = target.hard_limit_hit();
    let stopped = phase != Phase::Watching || hard_hit;
    let (code, signal) = match ending {
        Ending::Exited(code) => (Some(code), None),
        Ending::Signaled(sig) | Ending::Detached(sig) => (None, Some(sig)),
        Ending::Gone => (None, None),
    };
    let status = if stopped {
        exit::STOPPED
    } else {
        match ending {
            Ending::Exited(code) => code,
            Ending::Signaled(sig) | Ending::Detached(sig) => 128 + sig,
            Ending::Gone => 0,
        }
    };
    let reason = (hard_hit && phase == Phase::Watching).then(|| {
        format!(
            "the kernel stopped it at the --hard cgroup limit (memory.max {})",
            settings.hard_limit.map_or("?".into(), human_bytes)
        )
    });
    if let Some(reason) = &reason {
        eprintln!("kiln-monitor: `{shown}`: {reason}");
    }
    journal.emit(Record::Exit {
        t: journal.t(),
        unix_ms: unix_ms(),
        code,
        signal,
        status,
        stopped_by_watchdog: stopped,
        reason,
        max_process_rss: target.max_process_rss(),
    });
    let mut summary = journal.summary;
    summary.monitor_cpu_s = own_cpu_seconds();
    summary.monitor_peak_rss_bytes = kiln_contracts::mem::peak_rss_bytes();
    summary
}

fn kill_hard(
    target: &mut dyn Target,
    journal: &mut Journal,
    pids: &[u32],
    tree_rss: u64,
    grace: Duration,
) {
    eprintln!(
        "kiln-monitor: {} process(es) still running {} after SIGTERM (pids {}); SIGKILL",
        pids.len(),
        humantime::format_duration(grace),
        join_pids(pids)
    );
    target.signal_tree(Signal::KILL, pids);
    journal.emit(Record::Kill {
        t: journal.t(),
        unix_ms: unix_ms(),
        signal: "SIGKILL".into(),
        reason: format!(
            "still running {} after SIGTERM",
            humantime::format_duration(grace)
        ),
        tree_rss,
        pids: pids.to_vec(),
    });
}

fn join_pids(pids: &[u32]) -> String {
    const SHOWN: usize = 8;
    let mut text = pids
        .iter()
        .take(SHOWN)
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if pids.len() > SHOWN {
        text.push_str(&format!(", … {} more", pids.len() - SHOWN));
    }
    text
}

pub fn signal_name(signal: i32) -> String {
    match signal {
        signal_hook::consts::SIGINT => "SIGINT".into(),
        signal_hook::consts::SIGTERM => "SIGTERM".into(),
        signal_hook::consts::SIGHUP => "SIGHUP".into(),
        signal_hook::consts::SIGQUIT => "SIGQUIT".into(),
        other => format!("signal {other}"),
    }
}
