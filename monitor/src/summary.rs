//! The end-of-watch summary, built from the same records the log holds, so
//! `kiln-monitor report` on a log says exactly what the live run said.

use serde::Serialize;

use kiln_contracts::mem::human_bytes;

use crate::record::Record;
use crate::sampler::TopProcess;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub mode: String,
    pub command: Vec<String>,
    pub pid: u32,
    /// What kiln-monitor exited with (`None`: the log has no exit record).
    pub exit_status: Option<i32>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stopped_by_watchdog: bool,
    pub reason: Option<String>,
    pub peak_tree_rss_bytes: u64,
    /// Seconds after the start when the peak was sampled.
    pub peak_at_s: f64,
    /// The largest process at the peak.
    pub peak_top: Option<TopProcess>,
    /// The kernel's exact high-water RSS of the largest single process
    /// (`run` only): catches peaks between samples; equals `/usr/bin/time`'s.
    pub max_process_rss_bytes: Option<u64>,
    pub min_system_available_bytes: Option<u64>,
    pub duration_s: f64,
    pub samples: u64,
    pub warned: bool,
    pub limit_bytes: Option<u64>,
    pub warn_bytes: Option<u64>,
    pub min_available_bytes: Option<u64>,
    pub hard_limit_bytes: Option<u64>,
    /// Signals kiln-monitor passed on to the command.
    pub forwarded: Vec<String>,
    /// Signals the watchdog sent, in order.
    pub kills: Vec<String>,
    /// CPU seconds kiln-monitor itself used (live runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor_cpu_s: Option<f64>,
    /// kiln-monitor's own peak RSS (live runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor_peak_rss_bytes: Option<u64>,
}

impl Summary {
    pub fn observe(&mut self, record: &Record) {
        match record {
            Record::Start {
                mode,
                pid,
                command,
                limit,
                warn,
                min_available,
                hard_limit,
                ..
            } => {
                self.mode.clone_from(mode);
                self.pid = *pid;
                self.command.clone_from(command);
                self.limit_bytes = *limit;
                self.warn_bytes = *warn;
                self.min_available_bytes = *min_available;
                self.hard_limit_bytes = *hard_limit;
            }
            Record::Sample {
                t,
                tree_rss,
                top,
                system_available,
                ..
            } => {
                self.samples += 1;
                self.duration_s = self.duration_s.max(*t);
                if *tree_rss > self.peak_tree_rss_bytes || self.samples == 1 {
                    self.peak_tree_rss_bytes = *tree_rss;
                    self.peak_at_s = *t;
                    self.peak_top.clone_from(top);
                }
                let min = self.min_system_available_bytes.get_or_insert(u64::MAX);
                *min = (*min).min(*system_available);
            }
            Record::Warn { .. } => self.warned = true,
            Record::Kill {
                t, signal, reason, ..
            } => {
                self.duration_s = self.duration_s.max(*t);
                self.kills.push(signal.clone());
                self.stopped_by_watchdog = true;
                self.reason.get_or_insert_with(|| reason.clone());
            }
            Record::Forward { signal, .. } => self.forwarded.push(signal.clone()),
            Record::Exit {
                t,
                code,
                signal,
                status,
                stopped_by_watchdog,
                reason,
                max_process_rss,
                ..
            } => {
                self.max_process_rss_bytes = *max_process_rss;
                self.duration_s = self.duration_s.max(*t);
                self.exit_code = *code;
                self.signal = *signal;
                self.exit_status = Some(*status);
                self.stopped_by_watchdog = *stopped_by_watchdog;
                if reason.is_some() {
                    self.reason.clone_from(reason);
                }
            }
        }
    }

    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Self {
        let mut summary = Summary::default();
        for r in records {
            summary.observe(r);
        }
        summary
    }

    /// A few lines for stderr.
    pub fn human(&self) -> String {
        let command = shell_words(&self.command);
        let ending = match (self.exit_status, self.stopped_by_watchdog) {
            (None, _) => "did not record an end (kiln-monitor stopped first)".to_string(),
            (Some(status), true) => format!(
                "was stopped by the watchdog ({}; {}); exit status {status}",
                self.reason.as_deref().unwrap_or("memory"),
                self.kills.join(" then ")
            ),
            (Some(status), false) => match (self.exit_code, self.signal) {
                (_, Some(sig)) => format!("was killed by signal {sig}; exit status {status}"),
                (Some(code), None) => format!("exited with status {code}"),
                (None, None) => "ended".to_string(),
            },
        };
        let mut out = format!(
            "kiln-monitor: `{command}` (pid {}) {ending} after {:.1} s\n",
            self.pid, self.duration_s
        );
        let limit = self
            .limit_bytes
            .map_or(String::new(), |l| format!(", limit {}", human_bytes(l)));
        let top = self.peak_top.as_ref().map_or(String::new(), |t| {
            format!(
                ", largest {} (pid {}) {}",
                t.name,
                t.pid,
                human_bytes(t.rss)
            )
        });
        out.push_str(&format!(
            "  peak tree RSS {} at {:.1} s{limit}{top}; {} samples\n",
            human_bytes(self.peak_tree_rss_bytes),
            self.peak_at_s,
            self.samples
        ));
        if let Some(max) = self.max_process_rss_bytes {
            out.push_str(&format!(
                "  largest single-process peak (kernel) {}\n",
                human_bytes(max)
            ));
        }
        if let Some(min) = self.min_system_available_bytes {
            out.push_str(&format!(
                "  lowest system available memory {}\n",
                human_bytes(min)
            ));
        }
        out
    }
}

/// The command as a user could paste it back into a shell.
pub fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::{shell_words, Summary};
    use crate::record::Record;

    fn sample(t: f64, rss: u64, avail: u64) -> Record {
        Record::Sample {
            t,
            unix_ms: 0,
            tree_rss: rss,
            processes: 1,
            top: None,
            system_used: 0,
            system_available: avail,
        }
    }

    #[test]
    fn peak_minimum_and_ending() {
        let records = [
            sample(0.1, 10, 900),
            sample(0.2, 30, 700),
            sample(0.3, 20, 800),
            Record::Exit {
                t: 0.35,
                unix_ms: 0,
                code: Some(3),
                signal: None,
                status: 3,
                stopped_by_watchdog: false,
                reason: None,
                max_process_rss: None,
            },
        ];
        let s = Summary::from_records(&records);
        assert_eq!((s.peak_tree_rss_bytes, s.peak_at_s), (30, 0.2));
        assert_eq!(s.min_system_available_bytes, Some(700));
        assert_eq!((s.samples, s.exit_status, s.duration_s), (3, Some(3), 0.35));
        assert!(s.human().contains("exited with status 3"), "{}", s.human());
    }

    #[test]
    fn quoting() {
        assert_eq!(
            shell_words(&["echo".into(), "a b".into(), "it's".into()]),
            r"echo 'a b' 'it'\''s'"
        );
    }
}
