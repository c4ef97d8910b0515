//! The default memory budget follows the memory actually available: a
//! supervisor's limit (kiln-monitor sets KILN_MEMORY_LIMIT) shrinks it, an
//! explicit --memory wins, and the output is the same either way.

mod common;

use common::*;
use kiln_testkit::KeyedSpec;

const MIB: u64 = 1 << 20;

fn split_with(env_limit: Option<u64>, memory: Option<&str>) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let spec = KeyedSpec {
        keys: 30,
        days: 50,
        features: 3,
        ..Default::default()
    };
    let csv = generate(tmp.path(), &spec);
    let out = tmp.path().join("split");
    let mut cmd = split_generated(&csv, &out);
    cmd.arg("--json").env_remove("KILN_MEMORY_LIMIT");
    if let Some(limit) = env_limit {
        cmd.env("KILN_MEMORY_LIMIT", limit.to_string());
    }
    if let Some(memory) = memory {
        cmd.args(["--memory", memory]);
    }
    let assert = cmd.assert().success();
    assert_dataset_equals_csv(&out, &csv, "COMID", "date");
    serde_json::from_slice(&assert.get_output().stdout).unwrap()
}

#[test]
fn a_supervisor_limit_shrinks_the_default_budget() {
    let summary = split_with(Some(128 * MIB), None);
    assert_eq!(summary["memory_budget_bytes"], 96 * MIB, "3/4 of 128 MiB");
    let reason = summary["memory_budget_reason"].as_str().unwrap();
    assert!(reason.contains("KILN_MEMORY_LIMIT"), "{reason}");

    let summary = split_with(Some(40 * MIB), None);
    assert_eq!(
        summary["memory_budget_bytes"],
        64 * MIB,
        "never below the floor"
    );

    let summary = split_with(Some(10 << 30), None);
    assert_eq!(
        summary["memory_budget_bytes"],
        256 * MIB,
        "the default when memory is plentiful"
    );
}

#[test]
fn an_explicit_budget_wins() {
    let summary = split_with(Some(64 * MIB), Some("200MiB"));
    assert_eq!(summary["memory_budget_bytes"], 200 * MIB);
    assert!(summary["memory_budget_reason"]
        .as_str()
        .unwrap()
        .contains("--memory"));
}
