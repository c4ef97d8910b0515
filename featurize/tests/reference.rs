//! Every indicator of the built-in spec equals an independent computation —
//! TA-Lib (from PyPI) where TA-Lib has the indicator, numpy following
//! docs/FEATURIZE.md otherwise — to 1e-9 relative, with the same warm-up
//! rows null, on realistic klines and on edge cases: flat stretches, zero
//! volume, calendar gaps, extreme prices, series shorter than the warm-ups.

mod common;

use common::*;

#[test]
fn indicators_equal_talib_and_the_documented_formulas() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("kline");
    let out = tmp.path().join("features");
    let mut series = generated(12, 400);
    series.extend(edge_cases());
    write(&input, &series);
    featurize(&input, &out).assert().success();

    let report = tmp.path().join("report.json");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/py/reference_features.py"
    );
    let run = std::process::Command::new(python())
        .arg(script)
        .arg(&input)
        .arg(&out)
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "reference script failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let mismatches = report["mismatches"].as_array().unwrap();
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first: {:#?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(10)]
    );
    assert_eq!(report["keys"], series.len());
    // Every feature column of the spec was compared on real values.
    let spec = kiln_featurize::spec::Spec::default_spec();
    let columns = report["columns"].as_object().unwrap();
    for name in spec.columns() {
        let stats = &columns[&name];
        assert!(
            stats["compared"].as_u64().unwrap() > 1000,
            "{name} compared on too few rows: {stats}"
        );
    }
    assert_eq!(columns.len(), spec.columns().len());
}
