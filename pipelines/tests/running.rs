//! Running: a failure blocks its dependents only and is reported with its
//! exit status and log tail; independent stages run in parallel; a stage
//! over its memory limit is stopped by the watchdog and reported as such;
//! timeouts; a second run of the same manifest is refused.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_failure_blocks_its_dependents_and_the_rest_still_run() {
    let p = Project::new();
    p.manifest(
        r#"
name: t
stages:
  prepare:
    cmd: [sh, -c, "echo ok > a.txt"]
    outs: [a.txt]
  bad:
    cmd: [sh, -c, "echo reading a.txt; echo 'boom: column close is missing' >&2; exit 7"]
    deps: [a.txt]
    outs: [b.txt]
  after-bad:
    cmd: [sh, -c, "cp b.txt c.txt"]
    deps: [b.txt]
    outs: [c.txt]
  after-after:
    cmd: [sh, -c, "cp c.txt d.txt"]
    deps: [c.txt]
    outs: [d.txt]
  independent:
    cmd: [sh, -c, "echo fine > e.txt"]
    outs: [e.txt]
"#,
    );
    let (out, r) = p.run(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(status_of(&r, "prepare"), "ran");
    assert_eq!(status_of(&r, "bad"), "failed");
    assert_eq!(stage_of(&r, "bad")["exit_status"], 7);
    assert_eq!(stage_of(&r, "bad")["stopped_by_watchdog"], false);
    assert_eq!(status_of(&r, "after-bad"), "blocked");
    assert_eq!(status_of(&r, "after-after"), "blocked");
    assert_eq!(status_of(&r, "independent"), "ran");
    assert_eq!(r["status"], "failed");
    assert!(
        err.contains("stage 'bad' failed: exit status 7; not stopped by the memory watchdog"),
        "{err}"
    );
    assert!(err.contains("  | boom: column close is missing"), "{err}");
    assert!(err.contains("  | reading a.txt"), "{err}");
    assert!(
        err.contains("blocked: upstream stage 'bad' failed"),
        "{err}"
    );
    assert!(err.contains("1 failed, 2 blocked"), "{err}");
    assert!(!p.path("c.txt").exists());

    // The log file holds the whole output; the lock has no entry for the
    // failed stage, so it runs again next time (and the others do not).
    let log = p.path(stage_of(&r, "bad")["log"].as_str().unwrap());
    assert!(std::fs::read_to_string(log).unwrap().contains("boom"));
    let lock: serde_json::Value = serde_json::from_str(&p.read(".kiln/t/lock.json")).unwrap();
    assert!(lock["stages"].get("bad").is_none());
    assert!(lock["stages"].get("prepare").is_some());
    let (out, r) = p.run(&[]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(status_of(&r, "prepare"), "skipped");
    assert_eq!(status_of(&r, "bad"), "failed");
    assert_eq!(stage_of(&r, "bad")["reason"], "exit status 7");

    // Fixed: the blocked stages run.
    p.manifest(&p.read("p.yaml").replace("exit 7", "echo b > b.txt"));
    let r = p.run_ok(&[]);
    assert_eq!(status_of(&r, "after-after"), "ran");
    assert_eq!(p.read("d.txt"), "b\n");
}

#[test]
fn retries_then_succeeds() {
    let p = Project::new();
    p.manifest(
        r#"
name: t
stages:
  flaky:
    # Fails until its third attempt.
    cmd: [sh, -c, "echo x >> tries; [ $(wc -l < tries) -ge 3 ] && echo ok > out.txt"]
    outs: [out.txt]
    retries: 2
"#,
    );
    let r = p.run_ok(&[]);
    assert_eq!(status_of(&r, "flaky"), "ran");
    assert_eq!(stage_of(&r, "flaky")["attempts"], 3);
}

#[test]
fn independent_stages_run_in_parallel_up_to_jobs() {
    let p = Project::new();
    // Each stage writes its start and end time (ns) and sleeps between.
    let stage = |name: &str| {
        format!(
            "  {name}:\n    cmd: [sh, -c, \"date +%s%N > {name}.start; sleep 1; date +%s%N > {name}.end\"]\n    outs: [{name}.end]\n"
        )
    };
    p.manifest(&format!(
        "name: t\nstages:\n{}{}{}",
        stage("a"),
        stage("b"),
        stage("c")
    ));
    let t = |f: &str| p.read(f).trim().parse::<u128>().unwrap();
    let overlap = |x: &str, y: &str| {
        t(&format!("{x}.start")) < t(&format!("{y}.end"))
            && t(&format!("{y}.start")) < t(&format!("{x}.end"))
    };
    p.run_ok(&["--jobs", "2"]);
    // Two at a time: a and b together, c after one of them.
    assert!(
        overlap("a", "b"),
        "a and b ran one after the other with --jobs 2"
    );
    assert!(
        !(overlap("a", "c") && overlap("b", "c")),
        "three ran at once with --jobs 2"
    );

    p.run_ok(&["--jobs", "1", "--force"]);
    assert!(!overlap("a", "b") && !overlap("b", "c") && !overlap("a", "c"));
}

#[test]
fn a_stage_over_its_memory_limit_is_stopped_and_reported_as_such() {
    let p = Project::new();
    let memhog = sibling("kiln-memhog");
    p.manifest(&format!(
        r#"
name: t
stages:
  hog:
    cmd: ["{}", --step, 32MiB, --steps, 20, --every, 50ms, --hold, 20s]
    outs: [never.txt]
    memory_limit: 150MiB
    retries: 3
  after:
    cmd: [sh, -c, "cp never.txt x"]
    deps: [never.txt]
    outs: [x]
"#,
        memhog.display()
    ));
    let started = Instant::now();
    let (out, r) = p.run(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the hog was not stopped early"
    );
    let hog = stage_of(&r, "hog");
    assert_eq!(hog["status"], "failed");
    assert_eq!(hog["stopped_by_watchdog"], true, "{r}");
    assert_eq!(hog["exit_status"], 124);
    assert_eq!(hog["attempts"], 1, "a memory kill is not retried");
    let peak = hog["peak_rss_bytes"].as_u64().unwrap();
    assert!((100 << 20..400 << 20).contains(&peak), "peak {peak}");
    assert!(
        err.contains("stopped by the memory watchdog (memory_limit 150MiB)"),
        "{err}"
    );
    assert_eq!(status_of(&r, "after"), "blocked");
}

#[test]
fn a_stage_past_its_timeout_is_stopped() {
    let p = Project::new();
    p.manifest(
        r#"
name: t
stages:
  slow:
    cmd: [sleep, "30"]
    outs: [never.txt]
    timeout: 1s
"#,
    );
    let started = Instant::now();
    let (out, r) = p.run(&[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(stage_of(&r, "slow")["timed_out"], true);
    assert_eq!(stage_of(&r, "slow")["reason"], "stopped: timeout reached");
    assert!(stderr(&out).contains("stage 'slow' failed: stopped: timeout reached"));
}

#[test]
fn a_second_run_of_the_same_manifest_is_refused() {
    let p = Project::new();
    p.manifest("name: t\nstages:\n  wait:\n    cmd: [sleep, \"3\"]\n    outs: [x]\n");
    let mut first = std::process::Command::new(assert_cmd::cargo::cargo_bin("kiln-pipeline"))
        .current_dir(p.dir.path())
        .args(["run", "p.yaml", "-q"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Logs are created once the run holds its lock.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.path(".kiln/t/logs").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = p.cmd(&["run", "p.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("another kiln-pipeline run of this manifest is in progress"));
    // The first run is unaffected (it fails only because sleep writes no out).
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(3));
}

#[test]
fn a_stage_that_does_not_write_its_out_fails() {
    let p = Project::new();
    p.manifest("name: t\nstages:\n  lazy:\n    cmd: [\"true\"]\n    outs: [promised.txt]\n");
    let (out, r) = p.run(&[]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stage_of(&r, "lazy")["reason"],
        "stage 'lazy' succeeded but did not produce its out 'promised.txt'"
    );
}
