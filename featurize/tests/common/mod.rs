//! Shared helpers of kiln-featurize's integration tests: kline datasets of
//! chosen shapes, the real binary, outputs read back through the contract.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use assert_cmd::Command;
use kiln_contracts::KeyedDataset;
use kiln_testkit::kline_dataset::{write_kline_dataset, Bar};
use kiln_testkit::klines::KlineSpec;

pub fn featurize(input: &Path, out: &Path) -> Command {
    let mut cmd = Command::cargo_bin("kiln-featurize").unwrap();
    cmd.arg("--input").arg(input).arg("--out").arg(out);
    cmd
}

/// The summary of a `--json` run.
pub fn run_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "kiln-featurize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Realistic symbols from the kline generator: limit moves, suspensions,
/// late listings.
pub fn generated(symbols: usize, days: usize) -> Vec<(String, Vec<Bar>)> {
    let spec = KlineSpec {
        symbols,
        days,
        ..Default::default()
    };
    (0..symbols)
        .map(|i| {
            let rows = spec.symbol_rows(i);
            (spec.symbol(i), rows.iter().map(Bar::from).collect())
        })
        .collect()
}

fn bar(date: i32, o: f64, h: f64, l: f64, c: f64, v: i64) -> Bar {
    Bar {
        date,
        open: o,
        high: h,
        low: l,
        close: c,
        volume: v,
        turnover: None,
    }
}

/// Deterministic wiggle in [-1, 1].
fn wiggle(i: usize) -> f64 {
    ((i as f64) * 1.618_033_988_75).sin()
}

/// Series shaped to catch edge cases: long flat stretches (zero range, zero
/// gains and losses, zero variance), zero volume, calendar gaps, extreme
/// price levels and moves, series shorter than every warm-up.
pub fn edge_cases() -> Vec<(String, Vec<Bar>)> {
    let mut out = Vec::new();
    // Moves, then 40 identical days, then moves again; zero volume inside.
    let mut flat = Vec::new();
    let mut price = 12.34;
    for i in 0..160 {
        if (50..90).contains(&i) {
            flat.push(bar(
                19_000 + i as i32,
                12.34,
                12.34,
                12.34,
                12.34,
                if i < 70 { 0 } else { 500 },
            ));
            price = 12.34;
            continue;
        }
        let next = (price * (1.0 + 0.03 * wiggle(i))).max(0.01);
        flat.push(bar(
            19_000 + i as i32,
            price,
            price.max(next) * 1.01,
            price.min(next) * 0.99,
            next,
            1000 + (i as i64 * 37) % 900,
        ));
        price = next;
    }
    out.push(("flat".to_owned(), flat));
    // Calendar gaps of up to two months between rows.
    let mut gaps = Vec::new();
    let (mut date, mut price) = (18_000, 50.0);
    for i in 0..120 {
        date += 1 + ((i * 7919) % 60) as i32;
        let next = price * (1.0 + 0.05 * wiggle(i + 3));
        gaps.push(bar(
            date,
            price,
            price.max(next) + 0.5,
            price.min(next) - 0.5,
            next,
            10_000 + i as i64,
        ));
        price = next;
    }
    out.push(("gaps".to_owned(), gaps));
    // Extremes: a price near 1e6 moving ±10 % a day with 1e12 volumes, and
    // penny prices at the tick.
    let mut high_price = Vec::new();
    let mut price = 987_654.32;
    for i in 0..200 {
        let next = price * if wiggle(i + 11) > 0.0 { 1.1 } else { 0.9 };
        high_price.push(bar(
            19_000 + i as i32,
            price,
            price.max(next) * 1.05,
            price.min(next) * 0.95,
            next,
            1_000_000_000_000 + i as i64,
        ));
        price = next;
    }
    out.push(("extreme_high".to_owned(), high_price));
    let mut penny = Vec::new();
    for i in 0..200usize {
        let c = 0.01 + 0.01 * ((i * 13) % 4) as f64;
        penny.push(bar(
            19_000 + i as i32,
            c,
            c + 0.01,
            0.01,
            c,
            1 + (i as i64 % 3),
        ));
    }
    out.push(("penny".to_owned(), penny));
    // Shorter than the warm-ups: 3 rows (every MA null), 30 rows (MACD null).
    for len in [3usize, 30] {
        let rows = (0..len)
            .map(|i| {
                let c = 20.0 + wiggle(i);
                bar(19_000 + i as i32, c, c + 0.3, c - 0.3, c, 700)
            })
            .collect();
        out.push((format!("short{len}"), rows));
    }
    out
}

pub fn write(dir: &Path, series: &[(String, Vec<Bar>)]) {
    write_kline_dataset(dir, series).unwrap();
}

/// Every column of one key, as f64 bit patterns (`None` for null) for the
/// float columns, so equal means bit-for-bit equal.
pub fn float_bits(batch: &RecordBatch) -> Vec<(String, Vec<Option<u64>>)> {
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter_map(|(f, c)| {
            let a = c.as_primitive_opt::<Float64Type>()?;
            Some((
                f.name().clone(),
                (0..a.len())
                    .map(|i| a.is_valid(i).then(|| a.value(i).to_bits()))
                    .collect(),
            ))
        })
        .collect()
}

pub fn read_all(dir: &Path) -> Vec<(String, RecordBatch)> {
    let ds = KeyedDataset::open(dir).unwrap();
    ds.entries()
        .iter()
        .map(|e| (e.key.clone(), ds.read_entry(e, None).unwrap()))
        .collect()
}

/// Files in `dir` whose names are not part of a dataset (temp files).
pub fn stray_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with('.')
        })
        .collect()
}

/// The Python venv with TA-Lib and pyarrow (scripts/python-env.sh); built
/// when KILN_PYTHON is not set — the reference test never skips.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("KILN_PYTHON") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(root.join("scripts/python-env.sh"))
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
