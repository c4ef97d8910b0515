//! The output opens in pyarrow and DuckDB with the right types. Needs the
//! Python venv of scripts/python-env.sh (`make test` provides it through
//! KILN_PYTHON; without it the test builds the venv itself — it never skips).

mod common;

use std::path::PathBuf;
use std::process::Command as Std;

use common::*;
use kiln_testkit::{KeyStyle, KeyedSpec};

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("KILN_PYTHON") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Std::new(root.join("scripts/python-env.sh"))
        .arg("test")
        .output()
        .expect("run scripts/python-env.sh");
    assert!(
        out.status.success(),
        "python env setup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[test]
fn output_opens_in_pyarrow_and_duckdb_with_the_right_types() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = KeyedSpec {
        keys: 25,
        days: 60,
        features: 3,
        targets: 1,
        key_style: KeyStyle::Padded,
        ..Default::default()
    };
    let input = generate(tmp.path(), &spec);
    let out = tmp.path().join("split");
    split_generated(&input, &out).assert().success();

    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/py/check_keyed_dataset.py");
    let run = Std::new(python()).arg(script).arg(&out).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();

    let rows = (spec.keys * spec.days) as u64;
    assert_eq!(seen["pyarrow_rows"], rows);
    assert_eq!(seen["duckdb_rows"], rows);
    assert_eq!(seen["index_rows_sum"], rows);
    assert_eq!(seen["duckdb_keys"], spec.keys as u64);
    let types = &seen["pyarrow_types"];
    assert_eq!(types["COMID"], "string");
    assert_eq!(types["date"], "date32[day]");
    assert_eq!(types["feat_01"], "double");
    assert_eq!(types["target_1"], "double");
    assert_eq!(seen["index_types"]["first_date"], "date32[day]");
    assert_eq!(seen["duckdb_date_type"], "DATE");
    assert_eq!(seen["duckdb_key_type"], "VARCHAR");
    assert_eq!(seen["duckdb_first"], "2000-01-01");
    assert_eq!(seen["duckdb_last"], "2000-02-29");
    let keys: Vec<String> = (0..spec.keys).map(|i| spec.key(i)).collect();
    let py_keys: Vec<String> = serde_json::from_value(seen["pyarrow_keys"].clone()).unwrap();
    assert_eq!(py_keys, keys, "keys with leading zeros intact");
}
