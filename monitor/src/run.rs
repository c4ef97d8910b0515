//! `kiln-monitor run`: start the command in its own process group, adopt its
//! orphans, pass signals on, and watch it.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitOptions};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::cgroup::HardCgroup;
use crate::error::MonitorError;
use crate::record::LogWriter;
use crate::sampler::{Sampler, Tree};
use crate::summary::Summary;
use crate::watchdog::{self, Ending, Settings, Target, Wake};

/// Signals kiln-monitor passes on to the command.
pub const FORWARDED: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

enum Event {
    Ended(Ending),
    Signal(i32),
}

struct Spawned {
    pid: Pid,
    events: Receiver<Event>,
    hard: Option<HardCgroup>,
}

impl Target for Spawned {
    fn pid(&self) -> u32 {
        self.pid.as_raw_nonzero().get() as u32
    }

    fn wait(&mut self, timeout: Duration) -> Wake {
        match self.events.recv_timeout(timeout) {
            Ok(Event::Ended(ending)) => Wake::Ended(ending),
            Ok(Event::Signal(signal)) => Wake::Signal(signal),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => Wake::Tick,
        }
    }

    fn signal_tree(&mut self, signal: Signal, pids: &[u32]) {
        // The group catches what the sample missed (a fork since); each pid
        // catches descendants that left the group (setsid, job control).
        let _ = rustix::process::kill_process_group(self.pid, signal);
        for pid in pids.iter().filter_map(|&p| Pid::from_raw(p as i32)) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    fn forward(&mut self, signal: i32) -> bool {
        if let Some(signal) = Signal::from_named_raw(signal) {
            let _ = rustix::process::kill_process_group(self.pid, signal);
        }
        true
    }

    fn hard_limit_hit(&self) -> bool {
        self.hard.as_ref().is_some_and(HardCgroup::oom_killed)
    }

    fn max_process_rss(&self) -> Option<u64> {
        // Covers every descendant reaped so far: ours, the orphans we
        // adopted, and the ones they waited for. Linux reports KiB.
        let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN);
        usage.ok().map(|u| u.max_rss() as u64 * 1024)
    }
}

/// Runs `command` under watch; the summary's `exit_status` is kiln-monitor's.
pub fn run(
    command: &[String],
    settings: &Settings,
    hard: Option<HardCgroup>,
) -> Result<Summary, MonitorError> {
    let log = open_log(settings)?;
    let (tx, events) = mpsc::channel();
    // Before the spawn, so a Ctrl-C right after it is passed on, not lost.
    deliver_signals(tx.clone(), Event::Signal)?;
    // Orphaned grandchildren are reparented to us, so they stay in the tree
    // we sum and kill, and we reap them.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(|e| {
        MonitorError::Io {
            what: "becoming a child subreaper".into(),
            source: e.into(),
        }
    })?;
    let mut cmd = match &hard {
        // The trampoline moves itself into the cgroup, then execs the
        // command, so not one byte is charged outside the limit.
        Some(cgroup) => {
            let me = std::env::current_exe().map_err(|source| MonitorError::Io {
                what: "finding kiln-monitor's own path".into(),
                source,
            })?;
            let mut cmd = Command::new(me);
            cmd.arg(crate::cli::CGROUP_EXEC)
                .arg(cgroup.procs_file())
                .arg("--")
                .args(command);
            cmd
        }
        None => {
            let mut cmd = Command::new(&command[0]);
            cmd.args(&command[1..]);
            cmd
        }
    };
    cmd.process_group(0);
    if let Some(limit) = settings.thresholds.tree_limit {
        cmd.env(kiln_contracts::mem::MEMORY_LIMIT_ENV, limit.to_string());
    }
    let child = cmd.spawn().map_err(|source| MonitorError::Spawn {
        command: command[0].clone(),
        source,
    })?;
    let pid = Pid::from_raw(child.id() as i32).expect("a child's pid is positive");
    // We reap with wait(2) ourselves (the child and adopted orphans), so the
    // std handle is only dropped, never waited on.
    drop(child);
    reap_children(pid, tx);
    let mut target = Spawned { pid, events, hard };
    let mut sampler = Sampler::new(Tree::DescendantsOf(std::process::id()));
    let summary = watchdog::watch(&mut target, &mut sampler, settings, log, "run", command);
    if let Some(cgroup) = target.hard.take() {
        cgroup.remove();
    }
    Ok(summary)
}

/// The `--log` file, opened before anything is started or watched.
pub fn open_log(settings: &Settings) -> Result<Option<LogWriter>, MonitorError> {
    settings.log.as_deref().map(LogWriter::create).transpose()
}

/// Delivers the [`FORWARDED`] signals kiln-monitor receives to `tx`, as
/// `wrap(signal)`, from a thread of their own.
pub fn deliver_signals<T: Send + 'static>(
    tx: Sender<T>,
    wrap: fn(i32) -> T,
) -> Result<(), MonitorError> {
    let mut signals = Signals::new(FORWARDED).map_err(|source| MonitorError::Io {
        what: "installing signal handlers".into(),
        source,
    })?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if tx.send(wrap(signal)).is_err() {
                    break;
                }
            }
        })
        .map(drop)
        .map_err(|source| MonitorError::Io {
            what: "starting the signal thread".into(),
            source,
        })
}

fn reap_children(child: Pid, tx: Sender<Event>) {
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || loop {
            match rustix::process::wait(WaitOptions::empty()) {
                Ok(Some((pid, status))) if pid == child => {
                    let ending = match (status.exit_status(), status.terminating_signal()) {
                        (Some(code), _) => Ending::Exited(code),
                        (None, Some(sig)) => Ending::Signaled(sig),
                        (None, None) => continue,
                    };
                    let _ = tx.send(Event::Ended(ending));
                }
                // An adopted orphan, reaped so it does not linger as a zombie.
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                // ECHILD: nothing left to reap.
                Err(_) => break,
            }
        })
        .expect("start the reaper thread");
}
