//! The shipped manifests end to end on small generated data, with the real
//! stage binaries (built by `cargo test --workspace`): pipelines/demo.yaml
//! (both branches, two jobs at a time) and pipelines/hydro.yaml pointed at
//! generated data through --var.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn manifest(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn run(args: &[&str], envs: &[(&str, String)]) -> (std::process::Output, serde_json::Value) {
    let mut cmd = assert_cmd::Command::cargo_bin("kiln-pipeline").unwrap();
    cmd.args(args).arg("--json");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let record = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    assert!(
        out.status.success(),
        "kiln-pipeline {args:?}: {}\n{}",
        out.status,
        stderr(&out)
    );
    (out, record)
}

#[test]
fn demo_manifest_runs_end_to_end_then_skips() {
    stage_binaries();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let state = tmp.path().join("state");
    let envs = [
        ("KILN_DEMO_DATA", data.display().to_string()),
        ("KILN_DEMO_KEYS", "12".into()),
        ("KILN_DEMO_DAYS", "240".into()),
        ("KILN_DEMO_SYMBOLS", "6".into()),
        ("KILN_DEMO_KLINE_DAYS", "160".into()),
        ("KILN_DEMO_EPOCHS", "1".into()),
        ("KILN_PIPELINE_STATE", state.display().to_string()),
    ];
    let demo = manifest("demo.yaml");
    let (_, first) = run(&["run", demo.to_str().unwrap(), "-j", "2"], &envs);
    let names = [
        "generate",
        "split",
        "train",
        "eval",
        "predict",
        "klines",
        "preheat",
        "featurize",
        "train-klines",
    ];
    for name in names {
        assert_eq!(status_of(&first, name), "ran", "{name}: {first}");
        assert!(stage_of(&first, name)["peak_rss_bytes"].as_u64().unwrap() > 0);
    }
    for file in [
        "daily.csv",
        "split/_index.parquet",
        "split/_dataset.json",
        "run/model.safetensors",
        "eval.csv",
        "predictions.parquet",
        "cache/kline/_index.parquet",
        "cache/features/_index.parquet",
        "kline-run/model.safetensors",
    ] {
        assert!(data.join(file).exists(), "{file} is missing");
    }
    // Nothing was written into the repository: the state went to
    // KILN_PIPELINE_STATE and the data to KILN_DEMO_DATA.
    assert!(state.join("lock.json").exists());

    let (_, second) = run(&["run", demo.to_str().unwrap()], &envs);
    for name in names {
        assert_eq!(status_of(&second, name), "skipped", "{name}: {second}");
    }

    // More epochs: both trainings rerun (a param), and what reads their runs.
    let mut more = envs.to_vec();
    more[5].1 = "2".into();
    let (_, third) = run(&["run", demo.to_str().unwrap()], &more);
    for name in ["train", "eval", "predict", "train-klines"] {
        assert_eq!(status_of(&third, name), "ran", "{name}: {third}");
    }
    for name in ["generate", "split", "klines", "preheat", "featurize"] {
        assert_eq!(status_of(&third, name), "skipped", "{name}: {third}");
    }
    assert_eq!(
        stage_of(&third, "train")["reason"],
        "params changed: epochs"
    );
}

#[test]
fn hydro_manifest_runs_on_generated_data() {
    stage_binaries();
    let tmp = tempfile::tempdir().unwrap();
    let gen = |seed: &str| {
        let status = std::process::Command::new(sibling("kiln-gen"))
            .args([
                "keyed", "--keys", "10", "--days", "200", "--seed", seed, "--out",
            ])
            .arg(tmp.path().join("daily.csv"))
            .arg("--attributes")
            .arg(tmp.path().join("attributes.csv"))
            .status()
            .unwrap();
        assert!(status.success());
    };
    gen("1");
    let out = tmp.path().join("hydro");
    let var = |k: &str, v: &Path| format!("{k}={}", v.display());
    let args_owned = [
        "--var".to_string(),
        var("INPUT", &tmp.path().join("daily.csv")),
        "--var".into(),
        var("ATTRIBUTES", &tmp.path().join("attributes.csv")),
        "--var".into(),
        var("OUT", &out),
        "--state-dir".into(),
        tmp.path().join("state").display().to_string(),
    ];
    let hydro = manifest("hydro.yaml");
    let mut args = vec!["run", hydro.to_str().unwrap()];
    args.extend(args_owned.iter().map(String::as_str));
    let (_, first) = run(&args, &[]);
    for name in ["split", "train", "eval", "predict"] {
        assert_eq!(status_of(&first, name), "ran", "{name}: {first}");
    }
    let eval = std::fs::read_to_string(out.join("eval.csv")).unwrap();
    assert!(eval.lines().count() >= 2, "{eval}");
    assert!(out.join("predictions.parquet").exists());

    // New input bytes: everything downstream of it runs again.
    gen("2");
    let (_, second) = run(&args, &[]);
    for name in ["split", "train", "eval", "predict"] {
        assert_eq!(status_of(&second, name), "ran", "{name}: {second}");
    }
    assert!(
        stage_of(&second, "split")["reason"]
            .as_str()
            .unwrap()
            .starts_with("dep "),
        "{second}"
    );
}

/// The test server (README: MariaDB on 127.0.0.1:3306, root, database test).
fn mysql_url() -> String {
    std::env::var("KILN_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

#[test]
fn nightly_manifest_runs_against_mariadb_and_the_next_night_reuses_what_held() {
    stage_binaries();
    let tmp = tempfile::tempdir().unwrap();
    let table = format!("kiln_pipeline_nightly_{}", std::process::id());
    let status = std::process::Command::new(sibling("kiln-gen"))
        .args([
            "klines",
            "--symbols",
            "5",
            "--days",
            "120",
            "--replace",
            "--mysql",
        ])
        .arg(mysql_url())
        .args(["--table", &table])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "loading {table} into MariaDB at {} failed: the nightly test needs the server",
        mysql_url()
    );
    let envs = [
        ("KILN_MYSQL_URL", mysql_url()),
        ("KILN_KLINE_TABLE", table.clone()),
        ("KILN_CACHE", tmp.path().join("cache").display().to_string()),
        ("KILN_RUNS", tmp.path().join("runs").display().to_string()),
        (
            "KILN_PIPELINE_STATE",
            tmp.path().join("state").display().to_string(),
        ),
    ];
    let nightly = manifest("nightly.yaml");
    let (_, first) = run(&["run", nightly.to_str().unwrap()], &envs);
    for name in ["preheat", "featurize", "train"] {
        assert_eq!(status_of(&first, name), "ran", "{name}: {first}");
    }
    assert!(tmp.path().join("runs/nightly/model.safetensors").exists());
    // The lock keeps a hash of the URL, never the URL.
    let lock = std::fs::read_to_string(tmp.path().join("state/lock.json")).unwrap();
    assert!(!lock.contains("mysql://"), "{lock}");

    // The next night: preheat always runs (the database is outside the
    // manifest's view); nothing new arrived, so what it feeds is skipped.
    let (_, second) = run(&["run", nightly.to_str().unwrap()], &envs);
    assert_eq!(status_of(&second, "preheat"), "ran");
    assert_eq!(stage_of(&second, "preheat")["reason"], "always_run");
    assert_eq!(status_of(&second, "featurize"), "skipped", "{second}");
    assert_eq!(status_of(&second, "train"), "skipped", "{second}");

    let _ = std::process::Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-u", "root", "test", "-e"])
        .arg(format!("DROP TABLE IF EXISTS `{table}`"))
        .status();
}
