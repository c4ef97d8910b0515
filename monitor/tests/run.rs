//! `kiln-monitor run` against real processes: what passes through, what is
//! summed, when and how a tree is stopped.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_well_behaved_command_passes_through_unchanged() {
    let out = monitor()
        .args(["run", "-q", "--limit", "1GiB", "--"])
        .args(["sh", "-c", "echo out; echo err >&2; cat; exit 3"])
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n", "-q leaves the command's stderr alone");

    // Options after the command belong to the command.
    let out = monitor()
        .args(["run", "-q", "echo", "--limit", "-x"])
        .output()
        .unwrap();
    assert_eq!(
        (out.status.code(), out.stdout.as_slice()),
        (Some(0), b"--limit -x\n".as_slice())
    );
}

#[test]
fn signals_map_to_128_plus_n() {
    for (signal, status) in [("KILL", 137), ("TERM", 143), ("SEGV", 139)] {
        let out = monitor()
            .args([
                "run",
                "--json",
                "--",
                "sh",
                "-c",
                &format!("kill -{signal} $$"),
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(status), "{}", stderr_of(&out));
        let summary = json_of(&out);
        assert_eq!(summary["exit_status"], status);
        assert_eq!(summary["signal"], status - 128);
        assert_eq!(summary["stopped_by_watchdog"], false);
    }
}

#[test]
fn the_command_learns_its_limit() {
    let out = monitor()
        .args([
            "run",
            "-q",
            "--limit",
            "64MiB",
            "--",
            "sh",
            "-c",
            "echo $KILN_MEMORY_LIMIT",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        (64 * MIB).to_string()
    );
}

#[test]
fn kill_lands_within_two_intervals_of_the_crossing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mem.jsonl");
    let limit = 96 * MIB;
    let out = monitor_memhog(
        &[
            "run",
            "--limit",
            "96MiB",
            "--interval",
            "100ms",
            "--grace",
            "5s",
            "--log",
            log.to_str().unwrap(),
        ],
        "--step 16MiB --steps 40 --every 250ms",
    );
    assert_eq!(out.status.code(), Some(124), "{}", stderr_of(&out));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("reached the limit 96.0 MiB"), "{stderr}");
    assert_eq!(
        stderr.matches("warning:").count(),
        1,
        "one warning line: {stderr}"
    );

    let crossing_ms = crossing_step_start(&out.stdout, limit);
    let log = read_log(&log);
    let kills = events(&log, "kill");
    assert_eq!(kills.len(), 1, "SIGTERM sufficed: {kills:?}");
    assert_eq!(kills[0]["signal"], "SIGTERM");
    let kill_ms = kills[0]["unix_ms"].as_u64().unwrap();
    // An upper bound: the crossing happened during that step, not before.
    let latency = kill_ms as i64 - crossing_ms as i64;
    assert!(
        (0..=200).contains(&latency),
        "killed {latency} ms after the crossing step began (limit: 2 intervals of 100 ms)"
    );
    let steps = memhog_lines(&out.stdout);
    assert!(
        !steps.iter().any(|s| s.unix_ms > kill_ms),
        "it stopped growing at the kill"
    );

    let warns = events(&log, "warn");
    assert_eq!(warns.len(), 1);
    assert_eq!(warns[0]["threshold"], (limit / 5 * 4));
    let exit = events(&log, "exit");
    assert_eq!(exit.len(), 1);
    assert_eq!(exit[0]["status"], 124);
    assert_eq!(exit[0]["signal"], 15);
    assert_eq!(exit[0]["stopped_by_watchdog"], true);
    let samples = events(&log, "sample");
    assert!(samples.len() >= 5);
    let first = samples[0]["t"].as_f64().unwrap();
    for pair in samples.windows(2) {
        let gap = pair[1]["t"].as_f64().unwrap() - pair[0]["t"].as_f64().unwrap();
        assert!(gap > 0.05 && gap < 0.3, "samples {gap} s apart at 10 Hz");
    }
    assert!(first < 0.05, "first sample at start, not after an interval");
}

#[test]
fn the_tree_is_summed() {
    // memhog + 2 children + 4 grandchildren, 48 MiB each.
    let out = monitor_memhog(
        &["run", "--json", "-q", "--interval", "50ms"],
        "--children 2 --depth 2 --step 16MiB --steps 3 --every 20ms --hold 1500ms",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let summary = json_of(&out);
    assert_eq!(memhog_steps(&out.stdout).len(), 7 * 3);
    let peak = summary["peak_tree_rss_bytes"].as_u64().unwrap();
    let each = 48 * MIB;
    assert!(
        peak >= 7 * each && peak < 7 * each + 7 * 8 * MIB,
        "peak {} MiB for 7 processes of 48 MiB",
        peak / MIB
    );
    let top = summary["peak_top"]["rss"].as_u64().unwrap();
    assert!(
        top >= each && top < each + 8 * MIB,
        "largest process {} MiB",
        top / MIB
    );
}

#[test]
fn grandchildren_die_too() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mem.jsonl");
    let started = Instant::now();
    let out = monitor_memhog(
        &[
            "run",
            "--limit",
            "160MiB",
            "--grace",
            "2s",
            "--log",
            log.to_str().unwrap(),
        ],
        "--children 2 --depth 2 --step 4MiB --steps 1000 --every 30ms",
    );
    assert_eq!(out.status.code(), Some(124), "{}", stderr_of(&out));
    let mut pids: Vec<u32> = memhog_lines(&out.stdout).iter().map(|s| s.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 7, "all 7 processes ran");
    let log = read_log(&log);
    let kill = events(&log, "kill")[0];
    assert_eq!(kill["pids"].as_array().unwrap().len(), 7, "{kill}");
    std::thread::sleep(Duration::from_millis(200));
    let survivors: Vec<u32> = pids.into_iter().filter(|&p| alive(p)).collect();
    assert!(survivors.is_empty(), "still running: {survivors:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn sigkill_follows_an_ignored_sigterm_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mem.jsonl");
    let out = monitor_memhog(
        &[
            "run",
            "--limit",
            "64MiB",
            "--grace",
            "700ms",
            "--log",
            log.to_str().unwrap(),
        ],
        "--ignore-sigterm --step 32MiB --steps 3 --hold 60s",
    );
    assert_eq!(out.status.code(), Some(124), "{}", stderr_of(&out));
    let log = read_log(&log);
    let kills = events(&log, "kill");
    let signals: Vec<&str> = kills
        .iter()
        .map(|k| k["signal"].as_str().unwrap())
        .collect();
    assert_eq!(signals, ["SIGTERM", "SIGKILL"]);
    // In whole milliseconds, as logged (float differences of the two
    // would put 0.7 s a hair below 0.7).
    let ms = |k: &serde_json::Value| (k["t"].as_f64().unwrap() * 1000.0).round() as i64;
    let gap_ms = ms(kills[1]) - ms(kills[0]);
    // SIGKILL goes out at the first sample after the grace (100 ms ticks).
    assert!(
        (700..1300).contains(&gap_ms),
        "SIGKILL {gap_ms} ms after SIGTERM (grace 700 ms)"
    );
    assert_eq!(events(&log, "exit")[0]["signal"], 9);
    assert!(stderr_of(&out).contains("SIGKILL"));
}

#[test]
fn sigint_is_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mem.jsonl");
    let child = monitor()
        .args(["run", "--log"])
        .arg(&log)
        .arg("--")
        .arg(memhog())
        .args(["--steps", "1", "--hold", "60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first sample: the command is running.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("\"sample\"")) {
        assert!(Instant::now() < deadline, "no sample within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    // To kiln-monitor only: the command is in its own process group.
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    let log = read_log(&log);
    assert_eq!(events(&log, "forward")[0]["signal"], "SIGINT");
    assert_eq!(events(&log, "exit")[0]["stopped_by_watchdog"], false);
}

#[test]
fn peak_matches_usr_bin_time() {
    let time = std::path::Path::new("/usr/bin/time");
    assert!(
        time.exists(),
        "/usr/bin/time is needed (Debian package `time`)"
    );
    let out = std::process::Command::new(time)
        .args(["-f", "maxrss_kib=%M"])
        .arg(assert_cmd::cargo::cargo_bin("kiln-monitor"))
        .args(["run", "--json", "-q", "--"])
        .arg(memhog())
        .args([
            "--step", "40MiB", "--steps", "5", "--every", "150ms", "--hold", "500ms",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let summary = json_of(&out);
    let stderr = stderr_of(&out);
    let kib: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kib="))
        .expect("time's line")
        .trim()
        .parse()
        .unwrap();
    // time reports the largest process among kiln-monitor and its children:
    // here memhog, the only large one.
    let reference = (kib * 1024) as f64;
    for field in ["peak_tree_rss_bytes", "max_process_rss_bytes"] {
        let ours = summary[field].as_u64().unwrap() as f64;
        let off = (ours - reference).abs() / reference;
        assert!(
            off <= 0.05,
            "{field} {ours} vs /usr/bin/time {reference}: {:.1} % off",
            off * 100.0
        );
    }
}

#[test]
fn min_available_stops_the_command_when_the_system_runs_low() {
    // Ask for more available memory than the machine has: the first sample
    // breaches it. (Deliberately low memory is not a thing a test can do to
    // a shared machine.)
    let out = monitor()
        .args([
            "run",
            "--json",
            "-q",
            "--min-available",
            "99%",
            "--grace",
            "1s",
            "--",
        ])
        .args(["sleep", "30"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(124));
    let summary = json_of(&out);
    let reason = summary["reason"].as_str().unwrap();
    assert!(reason.contains("fell below --min-available"), "{reason}");
    assert!(summary["duration_s"].as_f64().unwrap() < 2.0);
}
