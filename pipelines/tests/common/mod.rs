//! Helpers for kiln-pipeline's integration tests: a manifest in a temp dir,
//! the real binary run on it, its run record read back.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

/// A built workspace binary (kiln-monitor, kiln-memhog, kiln-split, …):
/// `cargo test --workspace` builds them all beside kiln-pipeline.
pub fn sibling(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is not built: run the workspace's tests (`cargo test --workspace`, as `make test` does)",
        path.display()
    );
    path
}

/// Every stage binary the shipped manifests run.
pub fn stage_binaries() {
    for stage in [
        "kiln-gen",
        "kiln-split",
        "kiln-train",
        "kiln-preheat",
        "kiln-featurize",
    ] {
        sibling(stage);
    }
}

pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        sibling("kiln-monitor");
        Project {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    pub fn manifest(&self, text: &str) -> PathBuf {
        self.write("p.yaml", text);
        self.path("p.yaml")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::cargo_bin("kiln-pipeline").unwrap();
        cmd.current_dir(self.dir.path()).args(args);
        cmd
    }

    /// `kiln-pipeline run p.yaml ARGS --json`: the output and the record.
    pub fn run(&self, args: &[&str]) -> (Output, Value) {
        let mut all = vec!["run", "p.yaml", "--json"];
        all.extend_from_slice(args);
        let out = self.cmd(&all).output().unwrap();
        let record = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out, record)
    }

    /// Waits until files written now are older than kiln-pipeline's racy
    /// window, so that their stats are trusted (see fingerprint.rs).
    pub fn settle(&self) {
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }

    /// Like [`run`], asserting success.
    pub fn run_ok(&self, args: &[&str]) -> Value {
        let (out, record) = self.run(args);
        assert!(
            out.status.success(),
            "kiln-pipeline {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        record
    }
}

/// Each stage's status in a run record, by name.
pub fn statuses(record: &Value) -> Vec<(String, String)> {
    record["stages"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").to_string(),
                s["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

pub fn status_of(record: &Value, stage: &str) -> String {
    stage_of(record, stage)["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

pub fn stage_of<'a>(record: &'a Value, stage: &str) -> &'a Value {
    record["stages"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == stage))
        .unwrap_or_else(|| panic!("no stage {stage} in {record}"))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Sets a file's mtime `secs_ago` seconds into the past, as a touch or a
/// restore from backup would change it.
pub fn set_mtime(path: &Path, secs_ago: u64) {
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(secs_ago);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}
