//! Bad klines fail their symbol with one line naming the file, the row and
//! the column; the other symbols are still done; nothing half-written is
//! ever under a final name, also when the run is killed.

mod common;

use std::time::Duration;

use common::*;
use kiln_testkit::kline_dataset::Bar;

fn failures(summary: &serde_json::Value) -> Vec<(String, String)> {
    summary["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["symbol"].as_str().unwrap().to_owned(),
                f["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn bad_klines_fail_their_symbol_only_and_say_where() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("kline"), tmp.path().join("features"));
    let mut series = generated(3, 60);
    let good = series[0].1.clone();
    let mut bad = |name: &str, edit: &dyn Fn(&mut Vec<Bar>)| {
        let mut bars = good.clone();
        edit(&mut bars);
        series.push((name.to_owned(), bars));
    };
    bad("dup_date", &|b| b[20].date = b[19].date);
    bad("out_of_order", &|b| b.swap(30, 31));
    bad("zero_close", &|b| b[40].close = 0.0);
    bad("negative_low", &|b| b[41].low = -1.0);
    bad("nan_high", &|b| b[42].high = f64::NAN);
    bad("negative_volume", &|b| b[43].volume = -5);
    write(&input, &series);

    // A truncated parquet file.
    let truncated = series[1].0.clone();
    let victim = input.join(format!("{truncated}.parquet"));
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();

    let out_run = featurize(&input, &out).arg("--json").output().unwrap();
    assert_eq!(out_run.status.code(), Some(3), "some symbols failed");
    let summary: serde_json::Value = serde_json::from_slice(&out_run.stdout).unwrap();
    let failed = failures(&summary);
    let error_of = |s: &str| {
        failed
            .iter()
            .find(|(k, _)| k == s)
            .unwrap_or_else(|| panic!("{s} not among the failures {failed:?}"))
            .1
            .clone()
    };
    let expect = [
        (
            "dup_date",
            "dup_date.parquet: row 21 (",
            "duplicates the previous row's date",
        ),
        (
            "out_of_order",
            "out_of_order.parquet: row 32 (",
            "comes before",
        ),
        (
            "zero_close",
            "zero_close.parquet: row 41 (",
            "close is 0; prices must be positive",
        ),
        (
            "negative_low",
            "row 42 (",
            "low is -1; prices must be positive",
        ),
        ("nan_high", "row 43 (", "high is NaN"),
        (
            "negative_volume",
            "row 44 (",
            "volume is -5; volume must not be negative",
        ),
    ];
    let e = error_of(&truncated);
    assert!(e.contains(&format!("{truncated}.parquet")), "{e}");
    for (symbol, at, what) in expect {
        let e = error_of(symbol);
        assert!(e.contains(at) && e.contains(what), "{symbol}: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
    assert_eq!(failed.len(), expect.len() + 1);
    // The good symbols are all there; the bad ones are not.
    let ds = kiln_contracts::KeyedDataset::open(&out).unwrap();
    let keys: Vec<&str> = ds.keys().collect();
    assert_eq!(keys, [series[0].0.as_str(), series[2].0.as_str()]);
    assert!(stray_files(tmp.path())
        .iter()
        .all(|p| p.ends_with(".features.kiln-featurize.lock")));
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 4);
}

#[test]
fn an_input_without_a_price_column_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("kline"), tmp.path().join("features"));
    write(&input, &generated(2, 40));
    let spec = tmp.path().join("spec.yaml");
    std::fs::write(
        &spec,
        "inputs: {close: settle}\nfeatures:\n  - {kind: ma, periods: [5]}\n",
    )
    .unwrap();
    featurize(&input, &out)
        .arg("--spec")
        .arg(&spec)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("has no column settle"));
    assert!(!out.exists());
}

#[test]
fn keys_that_are_not_file_names_stay_inside_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (
        tmp.path().join("in").join("kline"),
        tmp.path().join("in").join("features"),
    );
    let bars = generated(1, 40).remove(0).1;
    let rows = bars.len();
    let series = vec![
        ("../etc".to_owned(), bars.clone()),
        ("a/b".to_owned(), bars.clone()),
        ("x' OR '1'='1".to_owned(), bars),
    ];
    write(&input, &series);
    let s = run_json(&mut featurize(&input, &out));
    assert_eq!(s["computed_full"], 3);
    let ds = kiln_contracts::KeyedDataset::open(&out).unwrap();
    assert_eq!(
        ds.keys().collect::<Vec<_>>(),
        ["../etc", "a/b", "x' OR '1'='1"]
    );
    for e in ds.entries() {
        assert!(!e.file.contains('/'), "{}", e.file);
        assert_eq!(ds.read_entry(e, None).unwrap().num_rows(), rows);
    }
    let outside: Vec<_> = std::fs::read_dir(tmp.path().join("in"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(outside.len(), 2, "{outside:?}");
}

#[test]
fn a_killed_run_leaves_the_previous_cache_or_the_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("kline"), tmp.path().join("features"));
    write(&input, &generated(300, 260));
    run_json(&mut featurize(&input, &out));
    let previous = read_all(&out);
    let mut killed_mid_run = 0;
    for delay_ms in [5u64, 30, 80, 150, 300] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kiln-featurize"))
            .arg("--input")
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .args(["--force", "--jobs", "1", "-q"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        if stray_files(tmp.path())
            .iter()
            .any(|p| p.to_string_lossy().contains(".kiln-staging."))
        {
            killed_mid_run += 1;
        }
        // Whatever the moment, the cache opens and every file matches the
        // index — and holds the same values as before (same input).
        let now = read_all(&out);
        assert_eq!(now.len(), previous.len(), "killed after {delay_ms} ms");
        for ((k1, b1), (k2, b2)) in now.iter().zip(&previous) {
            assert_eq!(k1, k2);
            assert_eq!(float_bits(b1), float_bits(b2), "{k1} after {delay_ms} ms");
        }
    }
    assert!(killed_mid_run > 0, "no kill landed while a run was writing");
    // The next run cleans up what the killed ones left and completes.
    let s = run_json(&mut featurize(&input, &out));
    assert_eq!(s["failed"].as_array().unwrap().len(), 0);
    // Only the lock and, when one of the runs finished before its kill,
    // the version it replaced, kept as the spare — never a staging copy.
    let leftovers: Vec<_> = stray_files(tmp.path())
        .into_iter()
        .filter(|p| {
            let p = p.to_string_lossy();
            !p.ends_with(".kiln-featurize.lock") && !p.ends_with(".features.kiln-spare")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
