//! The feature cache is always either fresh or recomputed: skips what is
//! up to date without rewriting it, computes only new days (bit-for-bit what
//! a full computation gives), and recomputes on revised klines, another
//! spec or an expired TTL.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use assert_cmd::Command;
use common::*;
use kiln_testkit::kline_dataset::Bar;

fn inode_and_mtime(path: &Path) -> (u64, i64, i64) {
    let m = std::fs::metadata(path).unwrap();
    (m.ino(), m.mtime(), m.mtime_nsec())
}

fn key_file(dir: &Path, key: &str) -> std::path::PathBuf {
    dir.join(kiln_contracts::index::key_file_name(
        key,
        kiln_contracts::FileFormat::Parquet,
    ))
}

fn assert_same_values(a: &Path, b: &Path) {
    let (a, b) = (read_all(a), read_all(b));
    assert_eq!(a.len(), b.len());
    for ((ka, ba), (kb, bb)) in a.iter().zip(&b) {
        assert_eq!(ka, kb);
        assert_eq!(ba.schema(), bb.schema(), "{ka}");
        assert_eq!(float_bits(ba), float_bits(bb), "{ka}: values differ");
        assert_eq!(ba, bb, "{ka}");
    }
}

#[test]
fn a_second_run_skips_everything_and_rewrites_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("kline"), tmp.path().join("features"));
    write(&input, &generated(8, 120));
    let first = run_json(&mut featurize(&input, &out));
    assert_eq!(first["computed_full"], 8);
    assert_eq!(first["full_reasons"]["new"], 8);
    let before = inode_and_mtime(&key_file(&out, "000001"));
    let index_before = std::fs::read(out.join("_index.parquet")).unwrap();

    let second = run_json(&mut featurize(&input, &out));
    assert_eq!(second["skipped_fresh"], 8);
    assert_eq!(second["computed_full"], 0);
    assert_eq!(second["computed_incremental"], 0);
    assert_eq!(second["files_written"], 0);
    assert_eq!(inode_and_mtime(&key_file(&out, "000001")), before);
    assert_eq!(
        std::fs::read(out.join("_index.parquet")).unwrap(),
        index_before
    );
}

#[test]
fn new_days_are_computed_incrementally_and_equal_a_full_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("kline"), tmp.path().join("features"));
    let mut series = generated(6, 300);
    series.extend(edge_cases());
    // Night 0: all but the last 10 days (the short series lose their tail).
    let head: Vec<(String, Vec<Bar>)> = series
        .iter()
        .map(|(k, bars)| {
            (
                k.clone(),
                bars[..bars.len().saturating_sub(10).max(1)].to_vec(),
            )
        })
        .collect();
    write(&input, &head);
    run_json(&mut featurize(&input, &out));

    // Night 1: the full series; one symbol revised an old close, one
    // symbol's file rewritten with the same rows.
    let mut night = series.clone();
    night[1].1[50].close *= 1.01;
    night[2].1 = head[2].1.clone();
    std::fs::remove_dir_all(&input).unwrap();
    write(&input, &night);
    let s = run_json(&mut featurize(&input, &out));
    let n = night.len() as u64;
    assert_eq!(s["computed_incremental"], n - 2, "{s}");
    assert_eq!(s["computed_full"], 1, "{s}");
    assert_eq!(s["full_reasons"]["klines revised"], 1, "{s}");
    assert_eq!(s["unchanged"], 1, "{s}");
    assert_eq!(s["failed"].as_array().unwrap().len(), 0);

    // The same input computed from scratch.
    let full = tmp.path().join("full");
    run_json(featurize(&input, &full).arg("--force"));
    assert_same_values(&out, &full);

    // Night 2, one more day each: still incremental, still identical.
    let mut later = night.clone();
    for (_, bars) in later.iter_mut() {
        let last = *bars.last().unwrap();
        bars.push(Bar {
            date: last.date + 1,
            close: last.close * 1.02,
            high: last.close * 1.03,
            ..last
        });
    }
    std::fs::remove_dir_all(&input).unwrap();
    write(&input, &later);
    let s = run_json(&mut featurize(&input, &out));
    assert_eq!(s["computed_incremental"], n, "{s}");
    let full2 = tmp.path().join("full2");
    run_json(featurize(&input, &full2).arg("--force"));
    assert_same_values(&out, &full2);
}

#[test]
fn a_touched_source_is_checked_not_recomputed() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("kline"), tmp.path().join("features"));
    let series = generated(3, 100);
    write(&input, &series);
    run_json(&mut featurize(&input, &out));
    let before = inode_and_mtime(&key_file(&out, "000001"));
    // Rewritten with identical rows: new inode and mtime, same content.
    std::fs::remove_dir_all(&input).unwrap();
    write(&input, &series);
    let s = run_json(&mut featurize(&input, &out));
    assert_eq!(s["unchanged"], 3, "{s}");
    assert_eq!(s["files_written"], 0);
    assert_eq!(inode_and_mtime(&key_file(&out, "000001")), before);
    // The new fingerprints were recorded: the next run skips outright.
    let s = run_json(&mut featurize(&input, &out));
    assert_eq!(s["skipped_fresh"], 3, "{s}");
}

#[test]
fn a_changed_spec_or_an_expired_ttl_recomputes() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("kline"), tmp.path().join("features"));
    write(&input, &generated(4, 100));
    run_json(&mut featurize(&input, &out));

    let spec = tmp.path().join("spec.yaml");
    std::fs::write(
        &spec,
        "features:\n  - {kind: ma, periods: [3, 7]}\n  - {kind: rsi, periods: [9]}\n",
    )
    .unwrap();
    let s = run_json(featurize(&input, &out).arg("--spec").arg(&spec));
    assert_eq!(s["full_reasons"]["columns changed"], 4, "{s}");
    let ds = kiln_contracts::KeyedDataset::open(&out).unwrap();
    let names = ds.manifest().column_names().join(",");
    assert!(names.ends_with("turnover,ma_3,ma_7,rsi_9"), "{names}");
    assert_eq!(
        ds.manifest().extra["featurize"]["spec_hash"],
        s["spec_hash"]
    );

    // Same columns, another parameter: the hash tells.
    std::fs::write(
        &spec,
        "features:\n  - {kind: ma, periods: [3, 7]}\n  - {kind: rsi, periods: [9]}\ninputs: {close: open}\n",
    )
    .unwrap();
    let s = run_json(featurize(&input, &out).arg("--spec").arg(&spec));
    assert_eq!(s["full_reasons"]["spec changed"], 4, "{s}");

    let s = run_json(featurize(&input, &out).arg("--spec").arg(&spec));
    assert_eq!(s["skipped_fresh"], 4, "{s}");
    let s = run_json(
        featurize(&input, &out)
            .arg("--spec")
            .arg(&spec)
            .args(["--ttl", "0s"]),
    );
    assert_eq!(s["full_reasons"]["older than the TTL"], 4, "{s}");
}

#[test]
fn a_bad_spec_is_refused_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("kline"), tmp.path().join("features"));
    write(&input, &generated(2, 50));
    let spec = tmp.path().join("bad.yaml");
    std::fs::write(
        &spec,
        "features:\n  - kind: ma\n    periods: [5]\n    window: 3\n",
    )
    .unwrap();
    featurize(&input, &out)
        .arg("--spec")
        .arg(&spec)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("bad.yaml:"))
        .stderr(predicates::str::contains("window"));
    assert!(!out.exists(), "nothing written");
}

#[test]
fn info_and_clear_read_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("kline"), tmp.path().join("features"));
    write(&input, &generated(5, 80));
    run_json(&mut featurize(&input, &out));
    let info = Command::cargo_bin("kiln-featurize")
        .unwrap()
        .args(["info", "--json", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(info.status.success());
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["symbols"], 5);
    assert_eq!(info["stale"], 0);
    assert_eq!(info["features"].as_array().unwrap().len(), 29);

    // A rewritten source shows as changed.
    std::fs::remove_dir_all(&input).unwrap();
    write(&input, &generated(5, 81));
    let info = Command::cargo_bin("kiln-featurize")
        .unwrap()
        .args(["info", "--json", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["source_changed"], 5, "{info}");

    Command::cargo_bin("kiln-featurize")
        .unwrap()
        .args(["clear", "--symbol", "000001,nope", "--out"])
        .arg(&out)
        .assert()
        .success()
        .stderr(predicates::str::contains("not in the cache: nope"));
    let ds = kiln_contracts::KeyedDataset::open(&out).unwrap();
    assert_eq!(ds.entries().len(), 4);
    assert!(ds.entry("000001").is_none());
    assert!(!key_file(&out, "000001").exists());
    Command::cargo_bin("kiln-featurize")
        .unwrap()
        .args(["clear", "--out"])
        .arg(&out)
        .assert()
        .success();
    assert!(!out.exists());
}
