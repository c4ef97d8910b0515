//! Every input row arrives exactly once, with equal values, in date order.

mod common;

use common::*;
use kiln_contracts::{ColumnType, FileFormat, KeyedDataset};
use kiln_testkit::{KeyStyle, KeyedSpec};

#[test]
fn date_major_csv_round_trips_with_leading_zero_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = KeyedSpec {
        keys: 120,
        days: 40,
        features: 5,
        targets: 2,
        target_density: 0.1,
        key_style: KeyStyle::Padded,
        ..Default::default()
    };
    let csv = generate(tmp.path(), &spec);
    let out = tmp.path().join("split");
    let assert = kiln_split()
        .args([
            csv.to_str().unwrap(),
            "--key",
            "COMID",
            "--date",
            "date",
            "--out",
        ])
        .arg(&out)
        .arg("--json")
        .assert()
        .success();
    let summary: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(summary["keys"], 120);
    assert_eq!(summary["rows"], 120 * 40);
    assert!(summary["peak_rss_bytes"].as_u64().unwrap() > 0);
    assert_dataset_equals_csv(&out, &csv, "COMID", "date");

    let ds = KeyedDataset::open(&out).unwrap();
    assert!(
        ds.keys().all(|k| k.starts_with('0') && k.len() == 8),
        "leading zeros kept"
    );
    let m = ds.manifest();
    assert_eq!(m.column("COMID").unwrap().column_type, ColumnType::Utf8);
    assert_eq!(m.column("date").unwrap().column_type, ColumnType::Date32);
    assert_eq!(
        m.column("target_1").unwrap().column_type,
        ColumnType::Float64
    );
    assert!(
        m.statistics.null_counts["target_1"] > 0,
        "sparse targets stay null"
    );
    assert_eq!(m.statistics.first_date.as_deref(), Some("2000-01-01"));
    // Only the dataset's own files, no staging or spill leftovers next to it.
    assert_eq!(listing(tmp.path()), ["daily.csv", "split"]);
    assert!(listing(&out).iter().all(|f| !f.starts_with('.')));
}

#[test]
fn shuffled_rows_many_buckets_and_resplit_still_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = KeyedSpec {
        keys: 300,
        days: 30,
        features: 3,
        targets: 1,
        ..Default::default()
    };
    let ordered = generate(tmp.path(), &spec);
    // Reverse the data lines: dates descend, so every key must be re-sorted.
    let text = std::fs::read_to_string(&ordered).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let header = lines.remove(0);
    lines.reverse();
    let shuffled = tmp.path().join("shuffled.csv");
    std::fs::write(&shuffled, format!("{header}\n{}\n", lines.join("\n"))).unwrap();
    for (name, extra) in [
        ("many", vec!["--buckets", "97", "--threads", "3"]),
        // One bucket far over the smallest budget's bucket limit: re-split.
        (
            "resplit",
            vec![
                "--buckets",
                "1",
                "--bucket-limit",
                "20000",
                "--threads",
                "1",
            ],
        ),
    ] {
        let out = tmp.path().join(name);
        let a = split_generated(&shuffled, &out)
            .arg("--json")
            .args(&extra)
            .assert()
            .success();
        let summary: serde_json::Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
        if name == "resplit" {
            assert!(
                summary["resplit_buckets"].as_u64().unwrap() >= 2,
                "{summary}"
            );
        }
        assert_dataset_equals_csv(&out, &shuffled, "COMID", "date");
    }
}

#[test]
fn float32_csv_and_arrow_formats_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = KeyedSpec {
        keys: 7,
        days: 20,
        features: 2,
        targets: 1,
        ..Default::default()
    };
    let csv = generate(tmp.path(), &spec);
    for (format, extra) in [
        ("csv", vec![]),
        ("arrow", vec![]),
        ("parquet", vec!["--float32", "--compression", "zstd"]),
    ] {
        let out = tmp.path().join(format);
        kiln_split()
            .arg(&csv)
            .args([
                "--key", "COMID", "--date", "date", "--format", format, "--out",
            ])
            .arg(&out)
            .args(&extra)
            .assert()
            .success();
        assert_dataset_equals_csv(&out, &csv, "COMID", "date");
        let ds = KeyedDataset::open(&out).unwrap();
        let expected = match format {
            "csv" => FileFormat::Csv,
            "arrow" => FileFormat::Arrow,
            _ => FileFormat::Parquet,
        };
        assert_eq!(ds.manifest().file_format, expected);
        if format == "parquet" {
            assert_eq!(
                ds.manifest().column("feat_01").unwrap().column_type,
                ColumnType::Float32
            );
        }
        // Reading a subset of columns, in the order asked.
        let key = ds.keys().next().unwrap().to_owned();
        let b = ds.read_key(&key, Some(&["target_1", "date"])).unwrap();
        assert_eq!(b.schema().field(0).name(), "target_1");
        assert_eq!(b.num_columns(), 2);
    }
}

#[test]
fn gzip_stdin_and_parquet_inputs_give_the_same_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = KeyedSpec {
        keys: 11,
        days: 25,
        features: 3,
        targets: 1,
        key_style: KeyStyle::Padded,
        ..Default::default()
    };
    let csv = generate(tmp.path(), &spec);
    let gz = tmp.path().join("daily.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::copy(&mut std::fs::File::open(&csv).unwrap(), &mut enc).unwrap();
    enc.finish().unwrap();
    let from_gz = tmp.path().join("from_gz");
    split_generated(&gz, &from_gz).assert().success();
    assert_dataset_equals_csv(&from_gz, &csv, "COMID", "date");

    let from_stdin = tmp.path().join("from_stdin");
    split_generated("-", &from_stdin)
        .pipe_stdin(&csv)
        .unwrap()
        .assert()
        .success();
    assert_dataset_equals_csv(&from_stdin, &csv, "COMID", "date");

    // A parquet export of the same table (as one file), split again.
    let ds = KeyedDataset::open(&from_gz).unwrap();
    let batches: Vec<_> = ds.keys().map(|k| ds.read_key(k, None).unwrap()).collect();
    let table = arrow::compute::concat_batches(&ds.schema(), &batches).unwrap();
    let pq = tmp.path().join("export.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&pq).unwrap(),
        table.schema(),
        None,
    )
    .unwrap();
    w.write(&table).unwrap();
    w.close().unwrap();
    let from_pq = tmp.path().join("from_pq");
    split_generated(&pq, &from_pq).assert().success();
    assert_dataset_equals_csv(&from_pq, &csv, "COMID", "date");
}

#[test]
fn date_filter_and_duplicate_policies() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = write(
        &tmp.path().join("d.csv"),
        "id,date,x\na,2020-01-03,3\na,2020-01-01,1\nb,2020-01-02,20\na,2020-01-01,1.5\na,2020-01-05,5\n",
    );
    let run = |name: &str, args: &[&str]| {
        let out = tmp.path().join(name);
        let a = kiln_split()
            .arg(&csv)
            .args(["--key", "id", "--date", "date", "--out"])
            .arg(&out)
            .args(args)
            .arg("--json")
            .assert();
        (out, a)
    };
    let (_, a) = run("dup_error", &[]);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    a.code(3);
    assert!(
        err.contains("d.csv:5:")
            && err.contains("first seen on line 3")
            && err.contains("(a, 2020-01-01)"),
        "{err}"
    );

    for (policy, want) in [("keep-first", 1.0), ("keep-last", 1.5)] {
        let (out, a) = run(
            policy,
            &[
                "--duplicates",
                policy,
                "--start",
                "2020-01-01",
                "--end",
                "2020-01-03",
            ],
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&a.success().get_output().stdout).unwrap();
        assert_eq!(summary["duplicates_dropped"], 1);
        assert_eq!(summary["filtered_rows"], 1, "2020-01-05 is after --end");
        let ds = KeyedDataset::open(&out).unwrap();
        let b = ds.read_key("a", None).unwrap();
        assert_eq!(date_strings(&b, "date"), ["2020-01-01", "2020-01-03"]);
        assert_eq!(floats(&b, "x"), [Some(want), Some(3.0)]);
    }
}
