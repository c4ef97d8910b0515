//! One attempt at one stage: the command under `kiln-monitor run` (with the
//! stage's memory limit and a JSONL memory log), its stdout and stderr
//! appended line by line to the stage's log file, a timeout, and a stop on
//! request (a signal to kiln-pipeline). SIGTERM first — kiln-monitor passes
//! it on to the command's process group — then SIGKILL to both groups.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// Between SIGTERM and SIGKILL when kiln-pipeline stops a stage.
pub const GRACE: Duration = Duration::from_secs(10);
/// kiln-monitor's status when its watchdog stopped the command.
pub const WATCHDOG_STATUS: i32 = 124;

pub struct Job<'a> {
    pub pipeline: &'a str,
    pub stage: &'a str,
    pub monitor: &'a Path,
    pub program: &'a Path,
    pub args: &'a [String],
    pub workdir: &'a Path,
    pub env: &'a std::collections::BTreeMap<String, String>,
    pub memory_limit: Option<&'a str>,
    pub timeout: Option<Duration>,
    pub log: &'a Path,
    pub memory_log: &'a Path,
    /// Echo the command's output on stderr, each line prefixed.
    pub echo: bool,
    pub stop: &'a AtomicUsize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// kiln-monitor's exit status: the command's own, 128+N for signal N.
    Exited(i32),
    /// The watchdog stopped it (over its memory limit).
    Watchdog,
    TimedOut,
    /// kiln-pipeline was asked to stop.
    Stopped,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub ending: Ending,
    pub duration: Duration,
    /// Largest RSS of the command's process tree seen (kiln-monitor's samples
    /// and the kernel's high-water mark of its largest process).
    pub peak_rss: Option<u64>,
    /// kiln-monitor's reason when its watchdog acted.
    pub watchdog_reason: Option<String>,
}

impl Attempt {
    pub fn succeeded(&self) -> bool {
        self.ending == Ending::Exited(0)
    }
}

/// What the memory log says about the attempt.
#[derive(Debug, Default)]
pub struct MemoryLog {
    pub command_pid: Option<i32>,
    pub peak_rss: Option<u64>,
    pub stopped_by_watchdog: bool,
    pub reason: Option<String>,
}

impl MemoryLog {
    pub fn read(path: &Path) -> MemoryLog {
        let mut log = MemoryLog::default();
        let Ok(text) = std::fs::read_to_string(path) else {
            return log;
        };
        let mut peak = None::<u64>;
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let num = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
            match v.get("event").and_then(|e| e.as_str()) {
                Some("start") => log.command_pid = num("pid").map(|p| p as i32),
                Some("sample") => peak = peak.max(num("tree_rss")),
                Some("kill") if log.reason.is_none() => {
                    log.reason = v.get("reason").and_then(|r| r.as_str()).map(String::from)
                }
                Some("exit") => {
                    peak = peak.max(num("max_process_rss"));
                    log.stopped_by_watchdog = v
                        .get("stopped_by_watchdog")
                        .and_then(|b| b.as_bool())
                        .unwrap_or(false);
                    if let Some(r) = v.get("reason").and_then(|r| r.as_str()) {
                        log.reason = Some(r.to_string());
                    }
                }
                _ => {}
            }
        }
        log.peak_rss = peak;
        log
    }
}

fn pump(
    from: impl Read + Send + 'static,
    log: Arc<Mutex<File>>,
    echo: Option<String>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            if let Ok(mut f) = log.lock() {
                let _ = f.write_all(&line);
            }
            if let Some(prefix) = &echo {
                let mut err = io::stderr().lock();
                let _ = err.write_all(prefix.as_bytes());
                let _ = err.write_all(&line);
            }
        }
    })
}

fn signal_group(pid: Option<i32>, signal: Signal) {
    if let Some(pid) = pid.and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// Runs one attempt and waits for it.
pub fn run(job: &Job, attempt_no: u32) -> io::Result<Attempt> {
    let mut log = File::options().create(true).append(true).open(job.log)?;
    let shown = std::iter::once(job.program.display().to_string())
        .chain(job.args.iter().cloned())
        .collect::<Vec<_>>();
    writeln!(
        log,
        "== kiln-pipeline {} stage {} attempt {attempt_no}, {}: {}",
        job.pipeline,
        job.stage,
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        shlex::try_join(shown.iter().map(String::as_str)).unwrap_or_else(|_| shown.join(" "))
    )?;
    let _ = std::fs::remove_file(job.memory_log);
    let mut cmd = Command::new(job.monitor);
    cmd.arg("run")
        .arg("--quiet")
        .arg("--log")
        .arg(job.memory_log);
    if let Some(limit) = job.memory_limit {
        cmd.arg("--limit").arg(limit);
    }
    cmd.arg("--grace")
        .arg(format!("{}s", GRACE.as_secs()))
        .arg("--")
        .arg(job.program)
        .args(job.args)
        .current_dir(job.workdir)
        .envs(job.env)
        .env("KILN_PIPELINE", job.pipeline)
        .env("KILN_STAGE", job.stage)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: a Ctrl-C on the terminal reaches kiln-pipeline,
        // which stops stages in order instead of all at once.
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let log = Arc::new(Mutex::new(log));
    let echo = job.echo.then(|| format!("[{}] ", job.stage));
    let readers = [
        pump(
            child.stdout.take().expect("piped"),
            log.clone(),
            echo.clone(),
        ),
        pump(child.stderr.take().expect("piped"), log.clone(), echo),
    ];
    let monitor_pid = child.id() as i32;
    let deadline = job.timeout.map(|t| started + t);
    let mut cause = None::<Ending>;
    let mut term_sent_at = None::<Instant>;
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if cause.is_none() {
            if job.stop.load(Ordering::Relaxed) != 0 {
                cause = Some(Ending::Stopped);
            } else if deadline.is_some_and(|d| Instant::now() >= d) {
                cause = Some(Ending::TimedOut);
            }
            if cause.is_some() {
                // kiln-monitor forwards SIGTERM to the command's group.
                if let Some(pid) = Pid::from_raw(monitor_pid) {
                    let _ = rustix::process::kill_process(pid, Signal::TERM);
                }
                term_sent_at = Some(Instant::now());
            }
        }
        if !killed && term_sent_at.is_some_and(|t| t.elapsed() >= GRACE + Duration::from_secs(2)) {
            let command_pid = MemoryLog::read(job.memory_log).command_pid;
            signal_group(command_pid, Signal::KILL);
            signal_group(Some(monitor_pid), Signal::KILL);
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let duration = started.elapsed();
    // A daemon the command left behind may hold the pipes open: give the
    // readers a moment, not forever.
    let until = Instant::now() + Duration::from_secs(2);
    for reader in readers {
        while !reader.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if reader.is_finished() {
            let _ = reader.join();
        }
    }
    let memory = MemoryLog::read(job.memory_log);
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let ending = match cause {
        Some(c) => c,
        None if memory.stopped_by_watchdog
            || (code == WATCHDOG_STATUS && memory.reason.is_some()) =>
        {
            Ending::Watchdog
        }
        None => Ending::Exited(code),
    };
    if let Ok(mut f) = log.lock() {
        let _ = writeln!(f, "== {}", describe(ending, memory.reason.as_deref()));
    }
    Ok(Attempt {
        ending,
        duration,
        peak_rss: memory.peak_rss,
        watchdog_reason: memory.reason.filter(|_| ending == Ending::Watchdog),
    })
}

pub fn describe(ending: Ending, reason: Option<&str>) -> String {
    match ending {
        Ending::Exited(0) => "exit status 0".into(),
        Ending::Exited(c) if c > 128 => format!("killed by signal {} (exit status {c})", c - 128),
        Ending::Exited(c) => format!("exit status {c}"),
        Ending::Watchdog => format!(
            "stopped by the memory watchdog (kiln-monitor){}",
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        ),
        Ending::TimedOut => "stopped: timeout reached".into(),
        Ending::Stopped => "stopped: kiln-pipeline was interrupted".into(),
    }
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// Log file names for a stage in a run's log dir.
pub fn log_paths(dir: &Path, stage: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{stage}.log")),
        dir.join(format!("{stage}.memory.jsonl")),
    )
}
