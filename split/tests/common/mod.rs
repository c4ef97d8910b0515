//! Helpers shared by kiln-split's integration tests: run the real binary,
//! and read back inputs and outputs independently of kiln-split's own code.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, Float32Type, Float64Type};
use assert_cmd::Command;
use kiln_contracts::KeyedDataset;

pub fn kiln_split() -> Command {
    Command::cargo_bin("kiln-split").expect("binary built")
}

/// `kiln-split INPUT --key COMID --date date --out OUT`, for kiln-gen tables;
/// callers add flags after it.
pub fn split_generated(input: impl AsRef<std::ffi::OsStr>, out: &Path) -> Command {
    let mut cmd = kiln_split();
    cmd.arg(input)
        .args(["--key", "COMID", "--date", "date", "--out"])
        .arg(out);
    cmd
}

/// One row as text: the date and every value column in input order, with
/// missing values as `None`.
pub type TextRow = (String, Vec<Option<String>>);

/// Parse a CSV with the csv crate, grouping rows by key, in input order.
pub fn csv_by_key(
    path: &Path,
    key: &str,
    date: &str,
) -> (Vec<String>, BTreeMap<String, Vec<TextRow>>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let ki = header.iter().position(|h| h == key).unwrap();
    let di = header.iter().position(|h| h == date).unwrap();
    let mut out: BTreeMap<String, Vec<TextRow>> = BTreeMap::new();
    for rec in reader.records() {
        let rec = rec.unwrap();
        let values = rec
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != ki && *i != di)
            .map(|(_, v)| (!v.is_empty()).then(|| v.to_owned()))
            .collect();
        out.entry(rec[ki].to_owned())
            .or_default()
            .push((rec[di].to_owned(), values));
    }
    let values = header
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != ki && *i != di)
        .map(|(_, h)| h.clone())
        .collect();
    (values, out)
}

/// Days since the epoch → YYYY-MM-DD, computed without kiln's date code.
pub fn iso_date(days: i32) -> String {
    let d = chrono_free_civil(days);
    format!("{:04}-{:02}-{:02}", d.0, d.1, d.2)
}

/// Howard Hinnant's civil_from_days.
fn chrono_free_civil(z: i32) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A value column of a batch as optional f64 (float32 widened).
pub fn floats(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    let col = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    match col.data_type() {
        DataType::Float64 => col.as_primitive::<Float64Type>().iter().collect(),
        DataType::Float32 => col
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| v.map(f64::from))
            .collect(),
        other => panic!("{name}: unexpected type {other}"),
    }
}

pub fn date_strings(batch: &RecordBatch, name: &str) -> Vec<String> {
    batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Date32Type>()
        .values()
        .iter()
        .map(|&d| iso_date(d))
        .collect()
}

/// Assert the dataset holds exactly the CSV's rows: every key, every row
/// once, values equal, rows in date order; index consistent with the files.
pub fn assert_dataset_equals_csv(dir: &Path, csv: &Path, key: &str, date: &str) {
    let (value_names, expected) = csv_by_key(csv, key, date);
    let ds = KeyedDataset::open(dir).unwrap();
    let keys: Vec<&str> = ds.keys().collect();
    let expected_keys: Vec<&str> = expected.keys().map(String::as_str).collect();
    assert_eq!(keys, expected_keys, "same keys, exactly as written");
    let mut total = 0;
    for entry in ds.entries() {
        let batch = ds.read_key(&entry.key, None).unwrap();
        let mut rows = expected[&entry.key].clone();
        rows.sort_by(|a, b| a.0.cmp(&b.0)); // ISO dates sort as text
        assert_eq!(batch.num_rows(), rows.len(), "rows of key {}", entry.key);
        assert_eq!(entry.rows as usize, rows.len());
        let dates = date_strings(&batch, date);
        let want_dates: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(dates, want_dates, "dates of key {}", entry.key);
        assert_eq!(iso_date(entry.first_date as i32), dates[0]);
        assert_eq!(iso_date(entry.last_date as i32), *dates.last().unwrap());
        let keys_col = batch.column_by_name(key).unwrap().as_string::<i32>();
        assert!(keys_col.iter().all(|k| k == Some(entry.key.as_str())));
        for (vi, name) in value_names.iter().enumerate() {
            let got = floats(&batch, name);
            for (r, (g, row)) in got.iter().zip(&rows).enumerate() {
                let want = row.1[vi].as_ref().map(|t| t.parse::<f64>().unwrap());
                let same = match (g, want) {
                    (None, None) => true,
                    (Some(a), Some(b)) => {
                        if batch.column_by_name(name).unwrap().data_type() == &DataType::Float32 {
                            *a as f32 == b as f32
                        } else {
                            *a == b
                        }
                    }
                    _ => false,
                };
                assert!(
                    same,
                    "key {} row {r} column {name}: got {g:?}, want {want:?}",
                    entry.key
                );
            }
        }
        assert_eq!(
            entry.bytes,
            std::fs::metadata(ds.path_of(entry)).unwrap().len(),
            "index bytes"
        );
        total += rows.len();
    }
    assert_eq!(ds.manifest().statistics.rows as usize, total);
    let expected_total: usize = expected.values().map(Vec::len).sum();
    assert_eq!(total, expected_total, "every input row exactly once");
}

/// Entries of a directory, for asserting nothing else was left behind.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Write the generated table for `spec` to `dir/daily.csv`.
pub fn generate(dir: &Path, spec: &kiln_testkit::KeyedSpec) -> PathBuf {
    let path = dir.join("daily.csv");
    spec.write_csv(std::fs::File::create(&path).unwrap())
        .unwrap();
    path
}

pub fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}
