//! kiln-memhog is the workload kiln-monitor's tests trust to use exactly the
//! memory it says; check that it does. (Being an integration test also makes
//! `cargo test --workspace` build the binary for the monitor's tests.)

use std::process::Command;

#[derive(Debug)]
struct Step {
    pid: u32,
    step: u64,
    rss: u64,
}

fn steps(stdout: &[u8]) -> Vec<Step> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.contains("\"step\""))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Step {
                pid: v["pid"].as_u64().unwrap() as u32,
                step: v["step"].as_u64().unwrap(),
                rss: v["rss"].as_u64().unwrap(),
            }
        })
        .collect()
}

#[test]
fn rss_grows_by_each_step() {
    let out = Command::new(assert_cmd::cargo::cargo_bin("kiln-memhog"))
        .args([
            "--step",
            "32MiB",
            "--steps",
            "4",
            "--every",
            "10ms",
            "--exit-code",
            "5",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    let steps = steps(&out.stdout);
    assert_eq!(steps.len(), 4);
    for pair in steps.windows(2) {
        let grown = pair[1].rss as i64 - pair[0].rss as i64;
        assert!(
            (grown - (32 << 20)).abs() < 2 << 20,
            "grew {grown} bytes, not 32 MiB"
        );
    }
}

#[test]
fn tree_of_copies() {
    let out = Command::new(assert_cmd::cargo::cargo_bin("kiln-memhog"))
        .args([
            "--children",
            "2",
            "--depth",
            "2",
            "--steps",
            "1",
            "--step",
            "1MiB",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let steps = steps(&out.stdout);
    let mut pids: Vec<u32> = steps.iter().map(|s| s.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 7, "1 + 2 children + 4 grandchildren");
    assert!(steps.iter().all(|s| s.step == 1));
}
