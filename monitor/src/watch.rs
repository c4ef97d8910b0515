//! `kiln-monitor watch --pid N`: the same watch for a process already running.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use rustix::process::{Pid, Signal};

use crate::error::MonitorError;
use crate::sampler::{Sampler, Tree};
use crate::summary::Summary;
use crate::watchdog::{self, Ending, Settings, Target, Wake};

struct Watched {
    pid: Pid,
    /// Signalled as a group too when the process leads its own group.
    leads_group: bool,
    signals: Receiver<i32>,
}

impl Target for Watched {
    fn pid(&self) -> u32 {
        self.pid.as_raw_nonzero().get() as u32
    }

    fn wait(&mut self, timeout: Duration) -> Wake {
        match self.signals.recv_timeout(timeout) {
            Ok(signal) => Wake::Signal(signal),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                if crate::sampler::running(self.pid()) {
                    Wake::Tick
                } else {
                    Wake::Ended(Ending::Gone)
                }
            }
        }
    }

    fn signal_tree(&mut self, signal: Signal, pids: &[u32]) {
        // Not the group unless the process leads it: the group of a process
        // started from a shell script may hold the script too.
        if self.leads_group {
            let _ = rustix::process::kill_process_group(self.pid, signal);
        }
        for pid in pids.iter().filter_map(|&p| Pid::from_raw(p as i32)) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    fn forward(&mut self, _signal: i32) -> bool {
        // Interrupting the watcher detaches it; the watched process is not
        // ours to interrupt.
        false
    }
}

pub fn watch_pid(pid: u32, settings: &Settings) -> Result<Summary, MonitorError> {
    let raw = Pid::from_raw(pid as i32).filter(|_| pid > 0 && crate::sampler::running(pid));
    let Some(pid_handle) = raw else {
        return Err(MonitorError::NoSuchProcess(pid));
    };
    let leads_group =
        rustix::process::getpgid(Some(pid_handle)).is_ok_and(|group| group == pid_handle);
    let log = crate::run::open_log(settings)?;
    let (tx, signals) = mpsc::channel();
    crate::run::deliver_signals(tx, |signal| signal)?;
    let command = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|&b| b == 0)
                .filter(|w| !w.is_empty())
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut target = Watched {
        pid: pid_handle,
        leads_group,
        signals,
    };
    let mut sampler = Sampler::new(Tree::RootedAt(pid));
    Ok(watchdog::watch(
        &mut target,
        &mut sampler,
        settings,
        log,
        "watch",
        &command,
    ))
}
