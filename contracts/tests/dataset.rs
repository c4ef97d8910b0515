//! A reader of the keyed-dataset contract says exactly what is wrong with a
//! directory that violates it.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Date32Array, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use kiln_contracts::dataset::{Codec, KeyFileWriter};
use kiln_contracts::index::{write_index, IndexEntry};
use kiln_contracts::manifest::{Column, Producer, Statistics, FORMAT_NAME, FORMAT_VERSION};
use kiln_contracts::{ColumnType, ContractError, FileFormat, KeyedDataset, Manifest};

fn manifest(keys: u64) -> Manifest {
    Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        producer: Producer {
            name: "test".into(),
            version: "0".into(),
            command: vec![],
        },
        created_at: "2026-01-01T00:00:00Z".into(),
        key_column: "id".into(),
        date_column: "date".into(),
        file_format: FileFormat::Parquet,
        columns: vec![
            Column {
                name: "id".into(),
                column_type: ColumnType::Utf8,
            },
            Column {
                name: "date".into(),
                column_type: ColumnType::Date32,
            },
            Column {
                name: "x".into(),
                column_type: ColumnType::Float64,
            },
        ],
        statistics: Statistics {
            keys,
            ..Default::default()
        },
        extra: Default::default(),
    }
}

fn batch(key: &str, days: &[i32]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("x", DataType::Float64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(days.iter().map(|_| key))),
            Arc::new(Date32Array::from(days.to_vec())),
            Arc::new(Float64Array::from_iter(
                days.iter().map(|&d| Some(d as f64)),
            )),
        ],
    )
    .unwrap()
}

/// A valid two-key dataset in `dir`.
fn build(dir: &Path) -> Vec<IndexEntry> {
    let w = KeyFileWriter::new(
        FileFormat::Parquet,
        Codec::Snappy,
        "id",
        "date",
        ColumnType::Date32,
        true,
    );
    let mut entries = vec![
        w.write(dir, "01022500", &batch("01022500", &[10, 11, 12]), &[])
            .unwrap(),
        w.write(dir, "../up", &batch("../up", &[5]), &[]).unwrap(),
    ];
    write_index(dir, &mut entries, ColumnType::Date32).unwrap();
    manifest(2).write(dir).unwrap();
    entries
}

#[test]
fn valid_dataset_reads_keys_ranges_and_projections() {
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path());
    let ds = KeyedDataset::open(tmp.path()).unwrap();
    assert_eq!(ds.keys().collect::<Vec<_>>(), ["../up", "01022500"]);
    let e = ds.entry("01022500").unwrap();
    assert_eq!((e.rows, e.first_date, e.last_date), (3, 10, 12));
    let b = ds.read_key("../up", Some(&["x"])).unwrap();
    assert_eq!(b.num_columns(), 1);
    assert!(ds
        .path_of(ds.entry("../up").unwrap())
        .starts_with(tmp.path()));
    assert!(matches!(
        ds.read_key("nope", None),
        Err(ContractError::UnknownKey { .. })
    ));
    let err = ds
        .read_key("01022500", Some(&["y"]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no column 'y'") && err.contains("id, date, x"),
        "{err}"
    );
}

fn open_err(dir: &Path) -> String {
    KeyedDataset::open(dir).unwrap_err().to_string()
}

#[test]
fn missing_or_bad_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(open_err(tmp.path()).contains("not a Kiln keyed dataset"));
    build(tmp.path());
    let mut m = manifest(2);
    m.format_version = FORMAT_VERSION + 1;
    m.write(tmp.path()).unwrap();
    assert!(open_err(tmp.path()).contains("newer than this build understands"));
    let mut m = manifest(2);
    m.columns[0].column_type = ColumnType::Int64;
    m.write(tmp.path()).unwrap();
    assert!(open_err(tmp.path()).contains("key column 'id' has type int64, must be string"));
    std::fs::write(tmp.path().join("_dataset.json"), "{not json").unwrap();
    assert!(open_err(tmp.path()).contains("invalid manifest"));
    manifest(3).write(tmp.path()).unwrap();
    assert!(open_err(tmp.path()).contains("2 keys in the index, 3 in the manifest"));
}

#[test]
fn tampered_or_corrupt_index() {
    let tmp = tempfile::tempdir().unwrap();
    let mut entries = build(tmp.path());
    // An index row pointing outside the directory is refused.
    entries[0].file = "../../etc/passwd".into();
    write_index(tmp.path(), &mut entries, ColumnType::Date32).unwrap();
    let e = open_err(tmp.path());
    assert!(
        e.contains("corrupt index") && e.contains("is not the file name of key"),
        "{e}"
    );
    // Truncated index file.
    std::fs::write(tmp.path().join("_index.parquet"), b"PAR1garbage").unwrap();
    assert!(open_err(tmp.path()).contains("corrupt index"));
}

#[test]
fn key_file_disagreeing_with_index_or_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let mut entries = build(tmp.path());
    entries.iter_mut().for_each(|e| e.rows += 1);
    write_index(tmp.path(), &mut entries, ColumnType::Date32).unwrap();
    let ds = KeyedDataset::open(tmp.path()).unwrap();
    let e = ds.read_key("01022500", None).unwrap_err().to_string();
    assert!(e.contains("has 3 rows, the index says 4"), "{e}");
    std::fs::write(tmp.path().join("01022500.parquet"), b"truncated").unwrap();
    let e = ds.read_key("01022500", None).unwrap_err().to_string();
    assert!(e.contains("01022500.parquet"), "{e}");
    let mut m = manifest(2);
    m.columns[2].column_type = ColumnType::Float32;
    m.write(tmp.path()).unwrap();
    let ds = KeyedDataset::open(tmp.path()).unwrap();
    let e = ds.read_key("../up", None).unwrap_err().to_string();
    assert!(
        e.contains("column 'x' has type Float64 in the file, the manifest says float32"),
        "{e}"
    );
}
