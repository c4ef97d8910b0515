//! kiln-train end to end: the real binary on generated datasets in temp dirs.

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::prelude::*;
use kiln_testkit::dataset::write_dataset;
use kiln_testkit::KeyedSpec;
use predicates::prelude::*;
use serde_json::Value;

fn kiln_train() -> Command {
    let mut c = Command::cargo_bin("kiln-train").unwrap();
    c.env_remove("RUST_LOG");
    c
}

fn spec(keys: usize, days: usize) -> KeyedSpec {
    KeyedSpec {
        keys,
        days,
        features: 4,
        targets: 1,
        target_density: 0.5,
        ..KeyedSpec::default()
    }
}

/// A dataset (and attributes table) in `dir`.
fn dataset(dir: &Path, spec: &KeyedSpec) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    write_dataset(&data, spec, &spec.series()).unwrap();
    let attrs = dir.join("attributes.csv");
    spec.write_attributes_csv(std::fs::File::create(&attrs).unwrap())
        .unwrap();
    (data, attrs)
}

const FEATURES: &str = "feat_01,feat_02,feat_03,feat_04";

fn fit(data: &Path, run: &Path, extra: &[&str]) -> Command {
    let mut c = kiln_train();
    c.args([
        "fit",
        data.to_str().unwrap(),
        "--run",
        run.to_str().unwrap(),
    ]);
    // Repeated list flags append (clap), so give the defaults only when the
    // test does not choose its own.
    for (flag, default) in [
        ("--features", FEATURES),
        ("--targets", "target_1"),
        ("--device", "cpu"),
    ] {
        if !extra.contains(&flag) {
            c.args([flag, default]);
        }
    }
    c.args(["--hidden-size", "16", "--batch-size", "64"])
        .args(["--threads", "1", "--json"])
        .args(extra);
    c
}

/// `kiln-train fit DATA --run RUN --resume` plus `extra`.
fn resume(data: &Path, run: &Path, extra: &[&str]) -> Command {
    let mut c = kiln_train();
    c.args([
        "fit",
        data.to_str().unwrap(),
        "--run",
        run.to_str().unwrap(),
        "--resume",
    ])
    .args(extra);
    c
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// metrics.csv without the columns that measure the machine.
fn learning_curve(run: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let header = r.headers().unwrap().clone();
    let keep: Vec<usize> = ["epoch", "train_loss", "val_loss", "val_nse", "val_rmse"]
        .iter()
        .map(|c| header.iter().position(|h| h == *c).unwrap())
        .collect();
    r.records()
        .map(|rec| {
            keep.iter()
                .map(|&i| rec.as_ref().unwrap()[i].to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn learns_a_known_function_then_evaluates_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let (data, attrs) = dataset(dir.path(), &spec(40, 500));
    let run = dir.path().join("run");
    let out = fit(
        &data,
        &run,
        &[
            "--attributes",
            attrs.to_str().unwrap(),
            "--attribute-features",
            "area_km2,slope",
        ],
    )
    .args(["--epochs", "12", "--lr", "0.003", "--patience", "4"])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = json_of(&out);
    let nse = summary["val_nse"].as_f64().unwrap();
    assert!(
        nse >= 0.9,
        "validation NSE {nse} < 0.9 on a learnable target"
    );
    for f in [
        "model.safetensors",
        "scaler.json",
        "config.yaml",
        "metrics.csv",
        "loss.png",
        "state.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let epochs = summary["epochs_run"].as_u64().unwrap() as usize;
    assert_eq!(learning_curve(&run).len(), epochs);
    assert!(run
        .join(format!("checkpoints/epoch-{epochs:04}.safetensors"))
        .is_file());

    // eval on the validation keys agrees with the training summary.
    let out = kiln_train()
        .args([
            "eval",
            run.to_str().unwrap(),
            data.to_str().unwrap(),
            "--subset",
            "val",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eval = json_of(&out);
    let eval_nse = eval["overall"][0]["nse"].as_f64().unwrap();
    assert!(
        (eval_nse - nse).abs() < 1e-6,
        "eval NSE {eval_nse} vs training's {nse}"
    );
    let per_key = std::fs::read_to_string(run.join("eval.csv")).unwrap();
    assert_eq!(
        per_key.lines().count() as u64 - 1,
        eval["keys"].as_u64().unwrap()
    );
    assert!(per_key.starts_with("key,target,n,nse,kge,rmse,mae"));

    // predict: one row per window with its observed value; NSE recomputed
    // here from the parquet equals eval's.
    let preds = dir.path().join("preds.parquet");
    kiln_train()
        .args([
            "predict",
            run.to_str().unwrap(),
            data.to_str().unwrap(),
            "--subset",
            "val",
        ])
        .args(["--out", preds.to_str().unwrap()])
        .assert()
        .success();
    let (obs, sim) = read_predictions(&preds);
    let pairs: Vec<(f64, f64)> = obs
        .iter()
        .zip(&sim)
        .filter_map(|(o, s)| o.map(|o| (o, *s)))
        .collect();
    assert!(
        pairs.len() < obs.len(),
        "predict also covers windows without an observed target"
    );
    let mean = pairs.iter().map(|p| p.0).sum::<f64>() / pairs.len() as f64;
    let sse: f64 = pairs.iter().map(|(o, s)| (s - o).powi(2)).sum();
    let sst: f64 = pairs.iter().map(|(o, _)| (o - mean).powi(2)).sum();
    assert!(((1.0 - sse / sst) - eval_nse).abs() < 1e-6);
}

/// The tensor data of a safetensors file (after its JSON header, whose
/// metadata records the config each run was started with).
fn tensor_bytes(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    bytes[8 + header..].to_vec()
}

fn read_predictions(path: &Path) -> (Vec<Option<f64>>, Vec<f64>) {
    use arrow::array::{AsArray, Float64Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let (mut obs, mut sim) = (Vec::new(), Vec::new());
    for b in reader {
        let b = b.unwrap();
        let o: &Float64Array = b.column_by_name("observed").unwrap().as_primitive();
        let p: &Float64Array = b.column_by_name("prediction").unwrap().as_primitive();
        obs.extend(o.iter());
        sim.extend(p.iter().map(Option::unwrap));
    }
    (obs, sim)
}

#[test]
fn same_seed_same_metrics_and_resume_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = dataset(dir.path(), &spec(16, 300));
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| dir.path().join(n));
    let common = ["--epochs", "4", "--patience", "10", "--dropout", "0.2"];
    fit(&data, &a, &common).assert().success();
    fit(&data, &b, &common).assert().success();
    assert_eq!(
        learning_curve(&a),
        learning_curve(&b),
        "same seed, same curve"
    );
    fit(
        &data,
        &c,
        &[
            "--epochs",
            "4",
            "--patience",
            "10",
            "--dropout",
            "0.2",
            "--seed",
            "7",
        ],
    )
    .assert()
    .success();
    assert_ne!(
        learning_curve(&a),
        learning_curve(&c),
        "another seed, another curve"
    );

    // Stop after 2 epochs, resume to 4: the same curve as 4 in one go.
    fit(
        &data,
        &d,
        &["--epochs", "2", "--patience", "10", "--dropout", "0.2"],
    )
    .assert()
    .success();
    assert_eq!(learning_curve(&d).len(), 2);
    resume(
        &data,
        &d,
        &["--epochs", "4", "--device", "cpu", "--threads", "1"],
    )
    .assert()
    .success();
    assert_eq!(learning_curve(&d), learning_curve(&a));
    assert!(
        tensor_bytes(&d.join("model.safetensors")) == tensor_bytes(&a.join("model.safetensors")),
        "resumed best weights differ from the uninterrupted run's"
    );

    // A run is never silently replaced, and resume refuses a changed config.
    fit(&data, &a, &common)
        .assert()
        .code(4)
        .stderr(predicate::str::contains("--resume"));
    resume(&data, &a, &["--window", "3"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("only --epochs"));
}

#[test]
fn pytorch_loads_the_model_and_predicts_the_same() {
    let python = std::env::var("KILN_TORCH_PYTHON").expect(
        "KILN_TORCH_PYTHON must point at the torch venv's python (make test sets it via scripts/libtorch-env.sh)",
    );
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = dataset(dir.path(), &spec(10, 200));
    let run = dir.path().join("run");
    fit(
        &data,
        &run,
        &["--epochs", "2", "--layers", "2", "--window", "7"],
    )
    .assert()
    .success();
    let preds = dir.path().join("preds.parquet");
    kiln_train()
        .args([
            "predict",
            run.to_str().unwrap(),
            data.to_str().unwrap(),
            "--out",
            preds.to_str().unwrap(),
        ])
        .assert()
        .success();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/py/check_torch_model.py");
    let out = Command::new(python)
        .arg(script)
        .args([&run, &data, &preds].map(|p| p.to_str().unwrap()))
        .arg("7")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Each bad input: exit status 3 and one line saying what is wrong.
#[test]
fn bad_inputs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(8, 120);
    let (data, attrs) = dataset(dir.path(), &spec);
    let run = dir.path().join("run");
    let fails = |extra: &[&str], message: &str| {
        let out = fit(&data, &run, extra).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{extra:?}: {stderr}");
        assert!(
            stderr.contains(message),
            "{extra:?}: expected {message:?} in {stderr}"
        );
        assert!(!run.join("model.safetensors").exists());
    };
    fails(&["--features", "feat_01,nope"], "nope");
    fails(&["--targets", "target_9"], "target_9");
    fails(&["--window", "500"], "longer than every series");
    fails(
        &["--split", "time:1990-01-01..1990-12-31,2000-01-01.."],
        "no train windows",
    );
    fails(&["--lr=-1"], "lr must be positive");
    // A malformed flag value is a usage error (clap's status 2).
    fit(&data, &run, &["--split", "rows:0.5"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("must start with key or time"));

    // Attributes missing for some keys: an error by default, or dropped.
    let partial = dir.path().join("partial.csv");
    let text = std::fs::read_to_string(&attrs).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&partial, lines[..lines.len() - 3].join("\n")).unwrap();
    let with = [
        "--attributes",
        partial.to_str().unwrap(),
        "--attribute-features",
        "area_km2",
    ];
    fails(&with, "3 of 8 keys");
    let out = fit(
        &data,
        &run,
        &[
            &with[..],
            &["--missing-attributes", "drop", "--epochs", "1"],
        ]
        .concat(),
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_of(&out)["dropped_keys"], 3);
    std::fs::remove_dir_all(&run).unwrap();
    let bad_value = dir.path().join("bad.csv");
    let mut bad_lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let mut fields: Vec<&str> = lines[2].split(',').collect();
    fields[1] = "12,5";
    bad_lines[2] = fields.join(",").replacen("12,5", "\"12,5\"", 1);
    std::fs::write(&bad_value, bad_lines.join("\n")).unwrap();
    fails(
        &[
            "--attributes",
            bad_value.to_str().unwrap(),
            "--attribute-features",
            "area_km2,elevation_m",
        ],
        "bad.csv:3: column area_km2: \"12,5\" is not a number",
    );

    // A target that is never observed.
    let mut series = spec.series();
    for (_, rows) in &mut series {
        for (_, r) in rows.iter_mut() {
            r.targets[0] = None;
        }
    }
    let empty_target = dir.path().join("no-target");
    write_dataset(&empty_target, &spec, &series).unwrap();
    let out = fit(&empty_target, &run, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("target \"target_1\" has no observed value")
    );

    // Corrupt key file and corrupt index.
    let key_file = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "parquet")
                && !p.file_name().unwrap().to_str().unwrap().starts_with('_')
        })
        .unwrap();
    let original = std::fs::read(&key_file).unwrap();
    std::fs::write(&key_file, &original[..original.len() / 2]).unwrap();
    fails(&[], key_file.file_name().unwrap().to_str().unwrap());
    std::fs::write(&key_file, &original).unwrap();
    let index = data.join("_index.parquet");
    let original = std::fs::read(&index).unwrap();
    std::fs::write(&index, b"not parquet").unwrap();
    fails(&[], "_index.parquet");
    std::fs::write(&index, &original).unwrap();

    // CUDA requested without a GPU.
    if !tch::Cuda::is_available() {
        fails(&["--device", "cuda"], "no CUDA GPU");
    }
}

/// kill -9 in the middle of training leaves only complete files, and
/// --resume then finishes with the same curve as a run never killed.
#[test]
fn a_killed_run_resumes_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = dataset(dir.path(), &spec(24, 400));
    let (whole, killed) = (dir.path().join("whole"), dir.path().join("killed"));
    let args = ["--epochs", "6", "--patience", "10"];
    fit(&data, &whole, &args).assert().success();
    let mut kills = 0;
    for attempt in 0..20 {
        let _ = std::fs::remove_dir_all(&killed);
        let mut child = fit(&data, &killed, &args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill somewhere after the first checkpoint, at a moment that moves
        // with the attempt.
        // Even attempts: as soon as the run is resumable (state.json, before
        // any epoch ends); odd ones: after the first checkpoint.
        let first = if attempt % 2 == 0 {
            killed.join("state.json")
        } else {
            killed.join("checkpoints/epoch-0001.safetensors")
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !first.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(15 * (attempt / 2)));
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap();
        child.wait().unwrap();
        if finished {
            continue;
        }
        kills += 1;
        // Every file under its final name is complete.
        for entry in walk(&killed) {
            let name = entry.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue; // an atomic write's temp file, removed by the next run
            }
            if name.ends_with(".safetensors") {
                let bytes = std::fs::read(&entry).unwrap();
                let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
                let meta: Value = serde_json::from_slice(&bytes[8..8 + header]).unwrap();
                let end = meta
                    .as_object()
                    .unwrap()
                    .values()
                    .filter_map(|t| t["data_offsets"][1].as_u64())
                    .max()
                    .unwrap();
                assert_eq!(bytes.len(), 8 + header + end as usize, "{name} truncated");
            }
            if name.ends_with(".json") {
                serde_json::from_slice::<Value>(&std::fs::read(&entry).unwrap()).unwrap();
            }
        }
        resume(&data, &killed, &["--device", "cpu", "--threads", "1"])
            .assert()
            .success();
        assert_eq!(
            learning_curve(&killed),
            learning_curve(&whole),
            "attempt {attempt}"
        );
        assert!(
            tensor_bytes(&killed.join("model.safetensors"))
                == tensor_bytes(&whole.join("model.safetensors")),
            "attempt {attempt}: best weights differ"
        );
        let leftovers: Vec<_> = walk(&killed)
            .into_iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        assert!(
            leftovers.is_empty(),
            "temp files left after resume: {leftovers:?}"
        );
        if kills == 4 {
            break;
        }
    }
    eprintln!("{kills} kills landed");
    assert!(kills >= 1, "no kill landed while training ran");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
