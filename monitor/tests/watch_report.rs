//! `kiln-monitor watch`, `report`, `--hard`, and what bad arguments say.

mod common;

use std::process::{Command, Stdio};

use common::*;

#[test]
fn watch_stops_a_running_process() {
    let mut hog = Command::new(memhog())
        .args(["--step", "16MiB", "--steps", "1000", "--every", "50ms"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let out = monitor()
        .args([
            "watch", "--json", "-q", "--limit", "128MiB", "--grace", "2s", "--pid",
        ])
        .arg(hog.id().to_string())
        .output()
        .unwrap();
    let status = hog.wait().unwrap();
    assert_eq!(out.status.code(), Some(124), "{}", stderr_of(&out));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(15), "the watched process got SIGTERM");
    let summary = json_of(&out);
    assert_eq!(summary["mode"], "watch");
    assert_eq!(summary["pid"], hog.id());
    assert!(summary["command"][0]
        .as_str()
        .unwrap()
        .ends_with("kiln-memhog"));
    assert!(summary["peak_tree_rss_bytes"].as_u64().unwrap() >= 128 * MIB);
}

#[test]
fn watch_follows_a_process_to_its_end() {
    let mut sleeper = Command::new("sleep").arg("1").spawn().unwrap();
    let out = monitor()
        .args(["watch", "--json", "-q", "--pid"])
        .arg(sleeper.id().to_string())
        .output()
        .unwrap();
    sleeper.wait().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let summary = json_of(&out);
    assert!(summary["duration_s"].as_f64().unwrap() > 0.5);
    assert_eq!(summary["stopped_by_watchdog"], false);

    let out = monitor()
        .args(["watch", "--pid", "999999999"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr_of(&out).contains("no process with pid 999999999"));
}

#[test]
fn report_rebuilds_the_summary_and_draws_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mem.jsonl");
    let out = monitor_memhog(
        &[
            "run",
            "--json",
            "-q",
            "--limit",
            "80MiB",
            "--grace",
            "1s",
            "--log",
            log.to_str().unwrap(),
        ],
        "--step 16MiB --steps 100 --every 60ms",
    );
    assert_eq!(out.status.code(), Some(124));
    let mut live = json_of(&out);

    let png = dir.path().join("mem.png");
    let report = monitor()
        .args(["report", "--json"])
        .arg(&log)
        .arg("--png")
        .arg(&png)
        .output()
        .unwrap();
    assert!(report.status.success(), "{}", stderr_of(&report));
    let rebuilt = json_of(&report);
    for own in ["monitor_cpu_s", "monitor_peak_rss_bytes"] {
        assert!(live[own].is_number(), "a live run reports {own}");
        live.as_object_mut().unwrap().remove(own);
    }
    assert_eq!(live, rebuilt, "report says what the run said");
    let human = stderr_of(&report);
    assert!(
        human.contains("stopped by the watchdog") && human.contains("limit 80.0 MiB"),
        "{human}"
    );

    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let (w, h) = (
        u32::from_be_bytes(bytes[16..20].try_into().unwrap()),
        u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (1000, 520));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn report_names_a_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mem.jsonl");
    std::fs::write(
        &log,
        "{\"event\":\"warn\",\"t\":1.0,\"unix_ms\":1,\"tree_rss\":5,\"threshold\":4}\n{\"event\":\"sample\",\"t\":oops}\n",
    )
    .unwrap();
    let out = monitor().arg("report").arg(&log).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&format!("{}:2:", log.display())),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn hard_limit_or_a_clear_fallback() {
    // Where cgroup v2 delegates the memory controller, the kernel stops the
    // command at memory.max long before the watchdog's next sample (1 s);
    // elsewhere kiln-monitor says why there is no hard limit, and the
    // watchdog still enforces --limit.
    let out = monitor_memhog(
        &[
            "run",
            "--json",
            "-q",
            "--limit",
            "64MiB",
            "--hard",
            "--hard-limit",
            "96MiB",
            "--interval",
            "1s",
            "--grace",
            "1s",
        ],
        "--step 16MiB --steps 20 --every 20ms --hold 5s",
    );
    let stderr = stderr_of(&out);
    let summary = json_of(&out);
    assert_eq!(out.status.code(), Some(124), "{stderr}");
    if stderr.contains("--hard is not available") {
        assert!(
            stderr.contains("cgroup v2")
                || stderr.contains("memory controller")
                || stderr.contains("cannot"),
            "{stderr}"
        );
        assert!(summary["hard_limit_bytes"].is_null());
        assert!(summary["reason"]
            .as_str()
            .unwrap()
            .contains("reached the limit"));
    } else {
        assert_eq!(summary["hard_limit_bytes"], 96 * MIB);
        assert!(
            summary["reason"]
                .as_str()
                .unwrap()
                .contains("--hard cgroup limit"),
            "{summary}"
        );
        assert!(summary["duration_s"].as_f64().unwrap() < 0.9);
    }

    // A root that is not cgroup v2 at all.
    let fake = tempfile::tempdir().unwrap();
    let out = monitor()
        .env("KILN_CGROUP_ROOT", fake.path())
        .args(["run", "--limit", "1GiB", "--hard", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr_of(&out).contains("is not a cgroup v2 filesystem"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn bad_arguments_say_what_is_wrong() {
    for (args, says) in [
        (&["run"][..], "required arguments were not provided"),
        (
            &["run", "--limit", "0", "--", "true"][..],
            "'0' must be more than 0",
        ),
        (
            &["run", "--limit", "150%", "--", "true"][..],
            "more than 100%",
        ),
        (
            &["run", "--limit", "5XB", "--", "true"][..],
            "use a size like",
        ),
        (
            &["run", "--limit", "1GiB", "--warn", "2GiB", "--", "true"][..],
            "must be below --limit",
        ),
        (
            &["run", "--interval", "1ms", "--", "true"][..],
            "outside 10ms..1min",
        ),
        (&["run", "--hard", "--", "true"][..], "--hard needs --limit"),
        (
            &["run", "--log", "/nonexistent/dir/mem.jsonl", "--", "true"][..],
            "does not exist",
        ),
        (&["report", "/nonexistent.jsonl"][..], "/nonexistent.jsonl"),
    ] {
        let out = monitor().args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(125),
            "{args:?}: {}",
            stderr_of(&out)
        );
        assert!(
            stderr_of(&out).contains(says),
            "{args:?}: {}",
            stderr_of(&out)
        );
    }
    let out = monitor()
        .args(["run", "--", "no-such-command-kiln"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr_of(&out).contains("cannot run `no-such-command-kiln`"));
    let out = monitor()
        .args(["run", "--", "/etc/hostname"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126), "{}", stderr_of(&out));
    let help = monitor().args(["run", "--help"]).output().unwrap();
    assert_eq!(help.status.code(), Some(0));
}

#[test]
fn a_log_that_cannot_be_written_never_leaves_the_command_unwatched() {
    // Cannot be created: nothing starts.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let out = monitor()
        .args([
            "run",
            "--log",
            "/proc/kiln-monitor-test.jsonl",
            "--",
            "touch",
        ])
        .arg(&marker)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("creating the log /proc/kiln-monitor-test.jsonl"));
    assert!(!marker.exists(), "the command must not have started");

    // Fills up mid-run: one warning, and the watch and the status go on.
    let out = monitor_memhog(
        &["run", "-q", "--log", "/dev/full", "--limit", "64MiB"],
        "--step 16MiB --steps 40 --every 30ms",
    );
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(124), "{stderr}");
    assert_eq!(
        stderr.matches("logging stops, watching goes on").count(),
        1,
        "{stderr}"
    );
}
