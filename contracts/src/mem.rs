//! Memory readings: this process's RSS for stage summaries, and the memory
//! a stage may plan to use, so chunk sizes shrink under pressure.
//!
//! [`adaptive_budget`] is the seed's "dynamic threshold" made continuous: a
//! stage asks for its default budget and gets at most a share of what is
//! really available — the system's `MemAvailable`, the headroom under this
//! process's cgroup memory limit, and `KILN_MEMORY_LIMIT` (which kiln-monitor
//! sets for the command it watches) — never below the stage's floor.

use std::path::Path;

/// Environment variable through which a supervisor (kiln-monitor) tells a
/// stage how many bytes its whole process tree may use.
pub const MEMORY_LIMIT_ENV: &str = "KILN_MEMORY_LIMIT";

/// Share of the system's available memory a stage plans to use: the rest is
/// for other processes and the page cache the stage's own I/O relies on.
const AVAILABLE_SHARE: f64 = 0.5;
/// Share of a dedicated limit (cgroup, kiln-monitor): headroom for the
/// difference between a stage's estimate and its real peak.
const LIMIT_SHARE: f64 = 0.75;

/// What constrains memory right now, as read from the system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryReadings {
    /// `MemAvailable` from `/proc/meminfo`.
    pub system_available: Option<u64>,
    /// `memory.max - memory.current` of this process's cgroup (v2), or
    /// `limit_in_bytes - usage_in_bytes` (v1), when a limit is set.
    pub cgroup_headroom: Option<u64>,
    /// `KILN_MEMORY_LIMIT`, when set by a supervisor.
    pub supervisor_limit: Option<u64>,
}

impl MemoryReadings {
    /// Reads the current values from `/proc`, `/sys/fs/cgroup` and the
    /// environment. Anything unreadable is `None`, never an error: a stage
    /// then falls back to its default.
    pub fn read() -> Self {
        let supervisor_limit = std::env::var(MEMORY_LIMIT_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&v| v > 0);
        Self {
            system_available: meminfo_field("MemAvailable:"),
            cgroup_headroom: std::fs::read_to_string("/proc/self/cgroup")
                .ok()
                .and_then(|m| cgroup_headroom(Path::new("/sys/fs/cgroup"), &m)),
            supervisor_limit,
        }
    }
}

/// A memory budget and why it is what it is (for logs and summaries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub bytes: u64,
    pub reason: String,
}

/// The budget a stage should plan for when the user did not give one:
/// `default`, lowered to half of the available memory and to three quarters
/// of any cgroup or supervisor limit, but never below `floor`.
pub fn adaptive_budget(default: u64, floor: u64) -> Budget {
    adaptive_budget_from(default, floor, &MemoryReadings::read())
}

/// [`adaptive_budget`] on given readings (pure, for tests).
pub fn adaptive_budget_from(default: u64, floor: u64, readings: &MemoryReadings) -> Budget {
    let share = |bytes: u64, share: f64| (bytes as f64 * share) as u64;
    let caps = [
        readings.system_available.map(|b| {
            (
                share(b, AVAILABLE_SHARE),
                "half of the system's available memory",
                b,
            )
        }),
        readings.cgroup_headroom.map(|b| {
            (
                share(b, LIMIT_SHARE),
                "3/4 of the headroom under the cgroup limit",
                b,
            )
        }),
        readings
            .supervisor_limit
            .map(|b| (share(b, LIMIT_SHARE), "3/4 of KILN_MEMORY_LIMIT", b)),
    ];
    let tightest = caps.into_iter().flatten().min_by_key(|c| c.0);
    match tightest {
        Some((cap, what, of)) if cap < default => {
            let bytes = cap.max(floor);
            let reason = if cap < floor {
                format!(
                    "{} (the minimum; {what} would be {} of {})",
                    human_bytes(bytes),
                    human_bytes(cap),
                    human_bytes(of)
                )
            } else {
                format!("{} ({what}, {})", human_bytes(bytes), human_bytes(of))
            };
            Budget { bytes, reason }
        }
        _ => Budget {
            bytes: default,
            reason: format!("{} (default)", human_bytes(default)),
        },
    }
}

fn meminfo_field(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    kib_field(&text, name)
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Headroom under the memory limit of the cgroup named in `membership` (the
/// text of `/proc/self/cgroup`), v2 or v1, if one is set.
fn cgroup_headroom(root: &Path, membership: &str) -> Option<u64> {
    let read_u64 =
        |p: &Path| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        let (dir, max, current) = if controllers.is_empty() {
            (root.join(path), "memory.max", "memory.current")
        } else if controllers.split(',').any(|c| c == "memory") {
            (
                root.join("memory").join(path),
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            )
        } else {
            continue;
        };
        // "max" (v2) or a huge page-rounded number (v1) both mean no limit.
        let Some(limit) = read_u64(&dir.join(max)).filter(|&l| l < 1 << 60) else {
            continue;
        };
        let used = read_u64(&dir.join(current)).unwrap_or(0);
        return Some(limit.saturating_sub(used));
    }
    None
}

/// Peak resident set size of this process in bytes (`VmHWM`), where the
/// platform reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    status_field("VmHWM:")
}

/// Current resident set size of this process in bytes (`VmRSS`).
pub fn current_rss_bytes() -> Option<u64> {
    status_field("VmRSS:")
}

fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    kib_field(&status, name)
}

/// `1.5 GiB`-style rendering for humans.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Stop the kernel from backing this process's heap with transparent huge
/// pages. The allocator asks for them, and each first touch of a 2 MiB page
/// then costs zeroing all of it: for a short run that allocates a little
/// in many threads that is most of its system time (kiln-preheat's nightly
/// refresh: 0.2 s of 0.5 s), and half the peak RSS of a stage with a
/// worker per small file (kiln-featurize: 108 → 51 MiB, same wall time),
/// for no TLB gain. Call first thing in `main`.
pub fn avoid_transparent_huge_pages() {
    // Best effort: without it the process is only slower.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

#[cfg(test)]
mod tests {
    use super::{adaptive_budget_from, MemoryReadings};

    const MIB: u64 = 1 << 20;

    #[test]
    fn default_when_memory_is_plentiful() {
        let r = MemoryReadings {
            system_available: Some(20 << 30),
            ..Default::default()
        };
        let b = adaptive_budget_from(256 * MIB, 64 * MIB, &r);
        assert_eq!(b.bytes, 256 * MIB);
        assert!(b.reason.contains("default"), "{}", b.reason);
    }

    #[test]
    fn shrinks_to_the_tightest_constraint() {
        let r = MemoryReadings {
            system_available: Some(400 * MIB),
            cgroup_headroom: Some(1 << 30),
            supervisor_limit: Some(200 * MIB),
        };
        let b = adaptive_budget_from(256 * MIB, 32 * MIB, &r);
        assert_eq!(b.bytes, 150 * MIB);
        assert!(b.reason.contains("KILN_MEMORY_LIMIT"), "{}", b.reason);
        let r = MemoryReadings {
            system_available: Some(300 * MIB),
            ..r
        };
        let b = adaptive_budget_from(256 * MIB, 32 * MIB, &r);
        assert_eq!(b.bytes, 150 * MIB);
        assert!(b.reason.contains("available"), "{}", b.reason);
    }

    #[test]
    fn never_below_the_floor() {
        let r = MemoryReadings {
            system_available: Some(40 * MIB),
            ..Default::default()
        };
        let b = adaptive_budget_from(256 * MIB, 64 * MIB, &r);
        assert_eq!(b.bytes, 64 * MIB);
        assert!(b.reason.contains("minimum"), "{}", b.reason);
    }

    #[test]
    fn cgroup_v1_and_v2_limits() {
        let root = tempfile::tempdir().unwrap();
        let v2 = root.path().join("user.slice/job");
        let v1 = root.path().join("memory/batch/job");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v2.join("memory.max"), "max\n").unwrap();
        std::fs::write(v2.join("memory.current"), "1000\n").unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(v1.join("memory.usage_in_bytes"), "1000\n").unwrap();
        let v2_only = "0::/user.slice/job\n";
        let v1_only = "7:pids:/\n4:memory:/batch/job\n";
        let headroom = |m: &str| super::cgroup_headroom(root.path(), m);
        assert_eq!(headroom(v2_only), None, "memory.max = max is no limit");
        assert_eq!(
            headroom(v1_only),
            None,
            "v1's page-rounded i64::MAX is no limit"
        );
        std::fs::write(v2.join("memory.max"), "5000\n").unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "3000\n").unwrap();
        assert_eq!(headroom(v2_only), Some(4000));
        assert_eq!(headroom(v1_only), Some(2000));
        std::fs::write(v1.join("memory.usage_in_bytes"), "4000\n").unwrap();
        assert_eq!(headroom(v1_only), Some(0), "over the limit leaves nothing");
    }

    #[test]
    fn human() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(256 << 20), "256.0 MiB");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn peak_is_at_least_current() {
        let peak = super::peak_rss_bytes().unwrap();
        let cur = super::current_rss_bytes().unwrap();
        assert!(peak >= cur && cur > 0);
    }
}
