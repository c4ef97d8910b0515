//! Write generated series straight into a keyed dataset (the contract's
//! writer, no kiln-split), so stage tests can shape the data exactly: drop
//! days, blank values, add keys.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use kiln_contracts::dataset::{Codec, KeyFileWriter};
use kiln_contracts::index::{write_index, IndexEntry};
use kiln_contracts::manifest::{Column, Producer, Statistics, FORMAT_NAME, FORMAT_VERSION};
use kiln_contracts::{ColumnType, FileFormat, Manifest};

use crate::keyed::{KeyedSpec, Row};

/// Write `series` (as from [`KeyedSpec::series`], possibly edited) into
/// `dir` as a parquet keyed dataset with `spec`'s column names. A NaN
/// feature is written as null.
pub fn write_dataset(
    dir: &Path,
    spec: &KeyedSpec,
    series: &[(String, Vec<(i32, Row)>)],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut fields = vec![
        Field::new(&spec.key_column, DataType::Utf8, false),
        Field::new(&spec.date_column, DataType::Date32, false),
    ];
    let mut columns = vec![
        Column {
            name: spec.key_column.clone(),
            column_type: ColumnType::Utf8,
        },
        Column {
            name: spec.date_column.clone(),
            column_type: ColumnType::Date32,
        },
    ];
    let names: Vec<String> = (0..spec.features)
        .map(KeyedSpec::feature_name)
        .chain((0..spec.targets).map(KeyedSpec::target_name))
        .collect();
    for n in &names {
        fields.push(Field::new(n, DataType::Float64, true));
        columns.push(Column {
            name: n.clone(),
            column_type: ColumnType::Float64,
        });
    }
    let schema = Arc::new(Schema::new(fields));
    let writer = KeyFileWriter::new(
        FileFormat::Parquet,
        Codec::Snappy,
        &spec.key_column,
        &spec.date_column,
        ColumnType::Date32,
        true,
    );
    let mut entries: Vec<IndexEntry> = Vec::new();
    let mut rows_total = 0u64;
    let mut bytes = 0u64;
    for (key, rows) in series {
        if rows.is_empty() {
            continue;
        }
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|_| key.as_str()),
            )),
            Arc::new(Date32Array::from_iter_values(rows.iter().map(|(d, _)| *d))),
        ];
        for j in 0..spec.features {
            arrays.push(Arc::new(Float64Array::from_iter(
                rows.iter()
                    .map(|(_, r)| Some(r.features[j]).filter(|v| !v.is_nan())),
            )));
        }
        for j in 0..spec.targets {
            arrays.push(Arc::new(Float64Array::from_iter(
                rows.iter().map(|(_, r)| r.targets[j]),
            )));
        }
        let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(std::io::Error::other)?;
        let entry = writer
            .write(dir, key, &batch, &[])
            .map_err(std::io::Error::other)?;
        rows_total += entry.rows;
        bytes += entry.bytes;
        entries.push(entry);
    }
    write_index(dir, &mut entries, ColumnType::Date32).map_err(std::io::Error::other)?;
    let manifest = Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        producer: Producer {
            name: "kiln-testkit".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            command: vec![],
        },
        created_at: "2026-01-01T00:00:00Z".into(),
        key_column: spec.key_column.clone(),
        date_column: spec.date_column.clone(),
        file_format: FileFormat::Parquet,
        columns,
        statistics: Statistics {
            keys: entries.len() as u64,
            rows: rows_total,
            bytes,
            ..Default::default()
        },
        extra: Default::default(),
    };
    manifest.write(dir).map_err(std::io::Error::other)
}
