//! Helpers shared by kiln-monitor's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub const MIB: u64 = 1 << 20;

pub fn monitor() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("kiln-monitor"))
}

/// The allocating workload (kiln-testkit's `kiln-memhog`), built by
/// `cargo test --workspace`.
pub fn memhog() -> PathBuf {
    let path = assert_cmd::cargo::cargo_bin("kiln-memhog");
    assert!(
        path.exists(),
        "{} is missing: run the workspace's tests (`cargo test --workspace`), which build it",
        path.display()
    );
    path
}

/// `kiln-monitor <monitor_args> -- kiln-memhog <memhog_args>` (the latter
/// split on whitespace), run to completion.
pub fn monitor_memhog(monitor_args: &[&str], memhog_args: &str) -> std::process::Output {
    monitor()
        .args(monitor_args)
        .arg("--")
        .arg(memhog())
        .args(memhog_args.split_whitespace())
        .output()
        .unwrap()
}

/// One line kiln-memhog printed: before a step (`rss` is `None`) or after.
#[derive(Debug, Clone)]
pub struct Step {
    pub pid: u32,
    pub step: u64,
    pub rss: Option<u64>,
    pub unix_ms: u64,
}

/// Every line kiln-memhog printed, in order.
pub fn memhog_lines(stdout: &[u8]) -> Vec<Step> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with("{\"pid\""))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Step {
                pid: v["pid"].as_u64().unwrap() as u32,
                step: v["step"].as_u64().or(v["allocating"].as_u64()).unwrap(),
                rss: v["rss"].as_u64(),
                unix_ms: v["unix_ms"].as_u64().unwrap(),
            }
        })
        .collect()
}

/// The completed steps only.
pub fn memhog_steps(stdout: &[u8]) -> Vec<Step> {
    memhog_lines(stdout)
        .into_iter()
        .filter(|s| s.rss.is_some())
        .collect()
}

/// When a single kiln-memhog began the step that took it to `limit`: the
/// first completed step at or over it, or — killed halfway through it — the
/// last step it began. The crossing lies after this moment.
pub fn crossing_step_start(stdout: &[u8], limit: u64) -> u64 {
    let lines = memhog_lines(stdout);
    let step = lines
        .iter()
        .find(|s| s.rss.is_some_and(|r| r >= limit))
        .map_or_else(|| lines.last().expect("memhog printed").step, |s| s.step);
    lines
        .iter()
        .find(|s| s.rss.is_none() && s.step == step)
        .expect("every step is announced")
        .unix_ms
}

pub fn read_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn events<'a>(log: &'a [Value], kind: &str) -> Vec<&'a Value> {
    log.iter().filter(|r| r["event"] == kind).collect()
}

/// Whether `pid` is running (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat[stat.rfind(')').unwrap() + 1..]
                .split_whitespace()
                .next()
                .unwrap_or("X")
                .to_string();
            !matches!(state.as_str(), "Z" | "X" | "x")
        }
        Err(_) => false,
    }
}

pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `--json` summary: the last document on stdout, after whatever the
/// command itself printed there.
pub fn json_of(out: &std::process::Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let start = if text.starts_with("{\n") {
        0
    } else {
        text.rfind("\n{\n").map_or(0, |i| i + 1)
    };
    serde_json::from_str(&text[start..]).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            stderr_of(out)
        )
    })
}
