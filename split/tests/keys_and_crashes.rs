//! Keys are data: unsafe keys stay inside the output directory and read back
//! exactly. A kill -9 at any moment leaves the previous output or none.

mod common;

use std::process::{Command as Std, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kiln_contracts::{keys, KeyedDataset};
use kiln_testkit::KeyedSpec;

#[test]
fn unsafe_keys_are_contained_and_read_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let long = "k".repeat(300);
    let nasty = [
        "../etc",
        "..",
        ".",
        "a/b",
        "/abs",
        "_index",
        ".hidden",
        "-rf",
        "tab\tkey",
        "ünï",
        "01022500",
        "%41",
        "a b",
        long.as_str(),
        "x' OR '1'='1",
    ];
    let mut text = String::from("id,date,x\n");
    for (i, k) in nasty.iter().enumerate() {
        let quoted = format!("\"{}\"", k.replace('"', "\"\""));
        text.push_str(&format!(
            "{quoted},2020-01-01,{i}\n{quoted},2020-01-02,{}\n",
            i + 100
        ));
    }
    let input = write(&tmp.path().join("in.csv"), &text);
    let sandbox = tmp.path().join("sandbox");
    std::fs::create_dir(&sandbox).unwrap();
    let out = sandbox.join("out");
    kiln_split()
        .arg(&input)
        .args(["--key", "id", "--date", "date", "--out"])
        .arg(&out)
        .assert()
        .success();
    assert_eq!(listing(&sandbox), ["out"], "nothing escaped the output dir");
    assert_eq!(listing(tmp.path()), ["in.csv", "sandbox"]);
    let ds = KeyedDataset::open(&out).unwrap();
    assert_eq!(ds.entries().len(), nasty.len());
    for (i, k) in nasty.iter().enumerate() {
        let entry = ds.entry(k).unwrap_or_else(|| panic!("key {k:?} missing"));
        assert!(keys::is_contained_file_name(&entry.file), "{}", entry.file);
        assert!(ds.path_of(entry).parent().unwrap().ends_with("out"));
        let b = ds.read_key(k, None).unwrap();
        assert_eq!(floats(&b, "x"), [Some(i as f64), Some(i as f64 + 100.0)]);
    }
    assert_eq!(ds.entry("01022500").unwrap().file, "01022500.parquet");
    for f in listing(&out) {
        assert!(!f.contains('/') && f != ".." && f != ".", "{f}");
    }
}

/// Start a split of `input` into `out`, kill it after `delay`.
fn kill_after(
    input: &std::path::Path,
    out: &std::path::Path,
    delay: Duration,
    force: bool,
) -> bool {
    let mut cmd = Std::new(assert_cmd::cargo::cargo_bin("kiln-split"));
    cmd.arg(input)
        .args(["--key", "COMID", "--date", "date", "--quiet", "--out"])
        .arg(out);
    if force {
        cmd.arg("--force");
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            return false; // finished before the kill
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    true
}

#[test]
fn kill_9_at_any_moment_leaves_previous_output_or_none() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = KeyedSpec {
        keys: 400,
        days: 250,
        features: 8,
        targets: 1,
        ..Default::default()
    };
    let input = generate(tmp.path(), &spec);
    let out = tmp.path().join("out");

    // How long a full run takes (the faster of two, the first being cold),
    // to spread the kills over it.
    let mut full = Duration::MAX;
    for _ in 0..2 {
        let _ = std::fs::remove_dir_all(&out);
        let t = Instant::now();
        split_generated(&input, &out).assert().success();
        full = full.min(t.elapsed());
    }
    assert_dataset_equals_csv(&out, &input, "COMID", "date");
    std::fs::remove_dir_all(&out).unwrap();

    // Seeded "random" moments across the whole run, until enough kills have
    // really landed in both situations (a run may finish before its moment
    // on a machine faster than the measurement; then another moment is drawn).
    const KILLS_EACH: u32 = 5;
    let mut state = 0x5eed_u64;
    let (mut killed_fresh, mut killed_over_previous) = (0u32, 0u32);
    let mut attempts = 0;
    while killed_fresh < KILLS_EACH || killed_over_previous < KILLS_EACH {
        attempts += 1;
        assert!(
            attempts <= 80,
            "only {killed_fresh} + {killed_over_previous} kills landed in 80 attempts"
        );
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let fraction = (state >> 33) as f64 / (1u64 << 31) as f64;
        let delay = full.mul_f64(fraction * 0.95);
        let with_previous = killed_over_previous < killed_fresh
            || (killed_over_previous == killed_fresh && attempts % 2 == 0);
        if with_previous && !out.exists() {
            split_generated(&input, &out).assert().success();
        }
        if !with_previous && out.exists() {
            // A fresh run must start without an output (it would otherwise
            // refuse at once, without --force, and never be killed).
            std::fs::remove_dir_all(&out).unwrap();
        }
        if kill_after(&input, &out, delay, with_previous) {
            if with_previous {
                killed_over_previous += 1;
            } else {
                killed_fresh += 1;
            }
        }
        if out.exists() {
            // Complete: the previous output, or a run that finished.
            assert_dataset_equals_csv(&out, &input, "COMID", "date");
        } else {
            assert!(
                !with_previous,
                "the previous output must survive a killed --force run"
            );
        }
        // Nothing but the input, the output and perhaps stale staging dirs.
        for f in listing(tmp.path()) {
            assert!(
                f == "daily.csv" || f == "out" || f.starts_with(".out.kiln-staging."),
                "{f}"
            );
        }
    }
    // The next run cleans up what the killed ones left.
    split_generated(&input, &out)
        .arg("--force")
        .assert()
        .success();
    assert_eq!(listing(tmp.path()), ["daily.csv", "out"]);
    assert_dataset_equals_csv(&out, &input, "COMID", "date");
}
