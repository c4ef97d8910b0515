//! `--hard`: a cgroup v2 with `memory.max` around the command, so that the
//! kernel enforces the limit even if the watchdog could not (a burst between
//! two samples, kiln-monitor itself stopped).
//!
//! The cgroup is created next to ours, as deep as the memory controller is
//! delegated to us; the command enters it through a trampoline (kiln-monitor
//! re-executed as `__cgroup-exec`) that moves itself in before it execs, so
//! every byte the command allocates is charged inside.

use std::path::{Path, PathBuf};

use kiln_contracts::mem::human_bytes;

/// `CGROUP2_SUPER_MAGIC` from linux/magic.h.
const CGROUP2_MAGIC: i64 = 0x6367_7270;

/// Where cgroup v2 is mounted; `KILN_CGROUP_ROOT` overrides it (tests).
fn cgroup_root() -> PathBuf {
    std::env::var_os("KILN_CGROUP_ROOT")
        .map_or_else(|| PathBuf::from("/sys/fs/cgroup"), PathBuf::from)
}

#[derive(Debug)]
pub struct HardCgroup {
    dir: PathBuf,
    pub max: u64,
}

impl HardCgroup {
    /// Creates the cgroup, or says why it cannot (the watchdog goes on alone).
    pub fn create(max: u64) -> Result<Self, String> {
        let root = cgroup_root();
        let fs = rustix::fs::statfs(&root)
            .map_err(|e| format!("cannot inspect {}: {e}", root.display()))?;
        if fs.f_type as i64 != CGROUP2_MAGIC {
            return Err(format!(
                "{} is not a cgroup v2 filesystem (this machine uses cgroup v1 or a hybrid layout)",
                root.display()
            ));
        }
        let membership = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let own = membership
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or("this process is not in the cgroup v2 hierarchy")?;
        let name = format!("kiln-monitor-{}", std::process::id());
        let mut parent = root.join(own.trim_start_matches('/'));
        let mut last_problem =
            String::from("no cgroup delegates the memory controller to this user");
        let dir = loop {
            let control =
                std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
            if control.split_ascii_whitespace().any(|c| c == "memory") {
                let dir = parent.join(&name);
                match std::fs::create_dir(&dir) {
                    Ok(()) => break dir,
                    Err(e) => last_problem = format!("cannot create {}: {e}", dir.display()),
                }
            }
            if parent == root || !parent.pop() {
                return Err(last_problem);
            }
        };
        let cgroup = Self { dir, max };
        if let Err(e) = cgroup.write("memory.max", &max.to_string()) {
            let message = format!("cannot set memory.max in {}: {e}", cgroup.dir.display());
            cgroup.remove();
            return Err(message);
        }
        // Without these the group could swap past the limit, and the kernel
        // would kill one process of the tree instead of all of it. Older
        // kernels lack them; memory.max alone still holds.
        let _ = cgroup.write("memory.swap.max", "0");
        let _ = cgroup.write("memory.oom.group", "1");
        Ok(cgroup)
    }

    fn write(&self, file: &str, value: &str) -> std::io::Result<()> {
        std::fs::write(self.dir.join(file), value)
    }

    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    pub fn describe(&self) -> String {
        format!(
            "{} (memory.max {})",
            self.dir.display(),
            human_bytes(self.max)
        )
    }

    /// Whether the kernel's OOM killer acted inside the cgroup.
    pub fn oom_killed(&self) -> bool {
        std::fs::read_to_string(self.dir.join("memory.events"))
            .map(|events| {
                events.lines().any(|l| {
                    let mut words = l.split_ascii_whitespace();
                    words.next() == Some("oom_kill") && words.next().is_some_and(|n| n != "0")
                })
            })
            .unwrap_or(false)
    }

    /// Removes the cgroup once its processes are gone (a few tries: the
    /// kernel frees it asynchronously after the last exit).
    pub fn remove(self) {
        for _ in 0..50 {
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
        tracing::warn!(
            "left the cgroup {} behind (processes still in it)",
            self.dir.display()
        );
    }
}

/// The trampoline: move this process into the cgroup, then become `command`.
/// Returns only on failure, with kiln-monitor's status for it.
pub fn exec_in_cgroup(procs_file: &Path, command: &[String]) -> i32 {
    use std::os::unix::process::CommandExt;
    if let Err(e) = std::fs::write(procs_file, "0") {
        eprintln!(
            "kiln-monitor: cannot enter the cgroup {}: {e}",
            procs_file.display()
        );
        return crate::error::exit::MONITOR_ERROR;
    }
    let error = std::process::Command::new(&command[0])
        .args(&command[1..])
        .exec();
    let err = crate::error::MonitorError::Spawn {
        command: command[0].clone(),
        source: error,
    };
    eprintln!("kiln-monitor: {err}");
    err.exit_code()
}
