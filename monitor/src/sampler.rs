//! One reading of a process tree's memory and the system's.
//!
//! Cost is the point: at 10 Hz a watchdog must stay under 1 % of a core.
//! A full sysinfo scan of `/proc` costs ~3 ms with 90 processes (3 % alone),
//! and sysinfo's per-process refresh ~35 µs (seven syscalls) — 1 % for a
//! 30-process tree. So the tree is walked from its root through Linux's
//! `/proc/<pid>/task/<tid>/children`, and each member costs one read of
//! `/proc/<pid>/stat`, which holds its state (zombies are skipped), thread
//! count, RSS and name. Both files stay open between samples and are re-read
//! with one `pread` each (a procfs file is bound to its process, so a reused
//! pid cannot alias it: reads of a dead one fail and it is dropped). sysinfo
//! reads the system's memory, and does the full scan on kernels without
//! `children` files.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sysinfo::{MemoryRefreshKind, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System};

/// The process using the most memory at one sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopProcess {
    pub pid: u32,
    pub name: String,
    pub rss: u64,
}

/// One sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Summed RSS of every live process in the tree.
    pub tree_rss: u64,
    /// Live (not zombie) processes in the tree.
    pub pids: Vec<u32>,
    pub top: Option<TopProcess>,
    pub system_used: u64,
    pub system_available: u64,
}

/// Which processes make up the watched tree.
#[derive(Debug, Clone, Copy)]
pub enum Tree {
    /// The descendants of `pid`, not `pid` itself: kiln-monitor's own
    /// children, including orphans it adopted as a child subreaper.
    DescendantsOf(u32),
    /// `pid` and its descendants (`watch --pid`).
    RootedAt(u32),
}

pub struct Sampler {
    system: System,
    tree: Tree,
    children_files: bool,
    samples: u64,
    page_size: u64,
    /// Open `/proc` files of the tree's processes, by pid.
    open: HashMap<u32, ProcFiles>,
    /// Reused for every `/proc` read.
    buf: Vec<u8>,
}

/// `/proc/<pid>/stat` and the main thread's `children`, kept open.
struct ProcFiles {
    stat: File,
    children: Option<File>,
    seen_in: u64,
}

impl Sampler {
    pub fn new(tree: Tree) -> Self {
        let me = std::process::id();
        Self {
            system: System::new(),
            tree,
            children_files: Path::new(&format!("/proc/{me}/task/{me}/children")).exists(),
            page_size: rustix::param::page_size() as u64,
            open: HashMap::new(),
            buf: vec![0; 64 << 10],
            samples: 0,
        }
    }

    pub fn sample(&mut self) -> Sample {
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let mut sample = Sample {
            tree_rss: 0,
            pids: Vec::new(),
            top: None,
            system_used: self.system.used_memory(),
            system_available: self.system.available_memory(),
        };
        if self.children_files {
            self.walk_children_files(&mut sample);
        } else {
            self.scan_all(&mut sample);
        }
        sample
    }

    fn walk_children_files(&mut self, sample: &mut Sample) {
        self.samples += 1;
        let (root, include_root) = root_of(self.tree);
        // Pids can be reused while we walk; `seen` keeps a reused pid from
        // looping the walk.
        let mut seen = HashSet::from([root]);
        let mut stack = vec![(root, include_root)];
        let mut kids = Vec::new();
        while let Some((pid, member)) = stack.pop() {
            let files = match self.open.entry(pid) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let Ok(stat) = File::open(format!("/proc/{pid}/stat")) else {
                        continue; // gone since its parent listed it
                    };
                    let children = File::open(format!("/proc/{pid}/task/{pid}/children")).ok();
                    e.insert(ProcFiles {
                        stat,
                        children,
                        seen_in: 0,
                    })
                }
            };
            files.seen_in = self.samples;
            let Some(stat) = read_at_start(&files.stat, &mut self.buf).and_then(parse_stat) else {
                self.open.remove(&pid);
                continue;
            };
            if stat.zombie {
                continue;
            }
            if member {
                let rss = stat.rss_pages * self.page_size;
                add(sample, pid, rss, || {
                    String::from_utf8_lossy(stat.name).into_owned()
                });
            }
            kids.clear();
            if stat.threads <= 1 {
                if let Some(text) = files
                    .children
                    .as_ref()
                    .and_then(|f| read_at_start(f, &mut self.buf))
                {
                    kids.extend(pids_in(text));
                }
            } else {
                threads_children(pid, &mut kids);
            }
            for &child in &kids {
                if seen.insert(child) {
                    stack.push((child, true));
                }
            }
        }
        let now = self.samples;
        self.open.retain(|_, files| files.seen_in == now);
    }

    fn scan_all(&mut self, sample: &mut Sample) {
        let kind = ProcessRefreshKind::nothing().with_memory().without_tasks();
        self.system
            .refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
        let (root, include_root) = root_of(self.tree);
        let mut frontier = HashSet::from([root]);
        let mut members = if include_root { vec![root] } else { Vec::new() };
        loop {
            let next: Vec<u32> = self
                .system
                .processes()
                .iter()
                .filter(|(pid, p)| {
                    !frontier.contains(&pid.as_u32())
                        && !members.contains(&pid.as_u32())
                        && p.parent().is_some_and(|pp| frontier.contains(&pp.as_u32()))
                })
                .map(|(pid, _)| pid.as_u32())
                .collect();
            if next.is_empty() {
                break;
            }
            members.extend(&next);
            frontier = next.into_iter().collect();
        }
        for pid in members {
            let Some(process) = self.system.process(sysinfo::Pid::from_u32(pid)) else {
                continue;
            };
            if !matches!(
                process.status(),
                ProcessStatus::Zombie | ProcessStatus::Dead
            ) {
                add(sample, pid, process.memory(), || {
                    process.name().to_string_lossy().into_owned()
                });
            }
        }
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn running(pid: u32) -> bool {
    let mut buf = vec![0; 4096];
    File::open(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|f| {
            read_at_start(&f, &mut buf)
                .and_then(parse_stat)
                .map(|s| !s.zombie)
        })
        .unwrap_or(false)
}

/// The machine's total memory, which percentages are shares of.
pub fn total_memory() -> u64 {
    let mut system = System::new();
    system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
    system.total_memory()
}

fn add(sample: &mut Sample, pid: u32, rss: u64, name: impl FnOnce() -> String) {
    sample.tree_rss += rss;
    sample.pids.push(pid);
    if sample.top.as_ref().is_none_or(|t| rss > t.rss) {
        sample.top = Some(TopProcess {
            pid,
            name: name(),
            rss,
        });
    }
}

fn root_of(tree: Tree) -> (u32, bool) {
    match tree {
        Tree::DescendantsOf(pid) => (pid, false),
        Tree::RootedAt(pid) => (pid, true),
    }
}

/// What one read of `/proc/<pid>/stat` tells.
struct Stat<'a> {
    name: &'a [u8],
    zombie: bool,
    threads: u32,
    rss_pages: u64,
}

/// The whole file, re-read from its start with one `pread`.
fn read_at_start<'b>(file: &File, buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let n = file.read_at(buf, 0).ok()?;
    (n > 0).then(|| &buf[..n])
}

fn parse_stat(text: &[u8]) -> Option<Stat<'_>> {
    // `pid (name) state ppid …`: the name may hold spaces and parentheses.
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(text.get(close + 2..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    // num_threads is field 20 and rss field 24 (state is field 3).
    let threads = fields.nth(16)?.parse().ok()?;
    let rss_pages = fields.nth(3)?.parse().ok()?;
    Some(Stat {
        name: &text[open + 1..close],
        zombie: matches!(state, "Z" | "X" | "x"),
        threads,
        rss_pages,
    })
}

fn pids_in(text: &[u8]) -> impl Iterator<Item = u32> + '_ {
    text.split(|b| b.is_ascii_whitespace())
        .filter_map(|w| std::str::from_utf8(w).ok()?.parse().ok())
}

/// Children of a multi-threaded process: each thread's `children` file (a
/// child hangs off the thread that forked it).
fn threads_children(pid: u32, out: &mut Vec<u32>) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read(task.path().join("children")) {
            out.extend(pids_in(&text));
        }
    }
}

/// CPU time this process has used so far, in seconds (utime + stime).
pub fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / rustix::param::clock_ticks_per_second() as f64)
}

#[cfg(test)]
mod tests {
    use super::{Sampler, Tree};
    use std::process::Command;

    #[test]
    fn finds_children_and_grandchildren_both_ways() {
        let mut shell = Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let tree = Tree::RootedAt(shell.id());
        let mut sampler = Sampler::new(tree);
        let fast = sampler.sample();
        assert_eq!(fast.pids.len(), 3, "sh and two sleeps: {:?}", fast.pids);
        assert!(fast.tree_rss > 0 && fast.system_available > 0);
        sampler.children_files = false;
        let slow = sampler.sample();
        let (mut a, mut b) = (fast.pids.clone(), slow.pids.clone());
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
        let mine = Sampler::new(Tree::DescendantsOf(std::process::id())).sample();
        assert!(mine.pids.contains(&shell.id()) && !mine.pids.contains(&std::process::id()));
        for pid in &fast.pids {
            Command::new("kill").arg(pid.to_string()).status().unwrap();
        }
        shell.wait().unwrap();
    }

    #[test]
    fn own_cpu_is_readable() {
        assert!(super::own_cpu_seconds().unwrap() >= 0.0);
    }
}
