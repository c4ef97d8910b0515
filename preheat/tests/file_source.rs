//! `--source FILE`: a kline dump instead of MySQL (what `make demo` uses).

mod common;

use common::*;
use kiln_testkit::klines::KlineSpec;

fn dump(dir: &std::path::Path, spec: &KlineSpec) -> std::path::PathBuf {
    let path = dir.join("klines.csv");
    let file = std::fs::File::create(&path).unwrap();
    spec.write_csv(std::io::BufWriter::new(file)).unwrap();
    path
}

fn run_file(source: &std::path::Path, out: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let o = preheat()
        .arg("--source")
        .arg(source)
        .arg("--out")
        .arg(out)
        .args(["--json", "-q"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_csv_dump_fills_the_same_cache_as_the_table_and_refreshes_incrementally() {
    let spec = KlineSpec {
        symbols: 15,
        days: 50,
        suspended_share: 0.05,
        null_turnover_share: 0.05,
        ..KlineSpec::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kline");
    let older = KlineSpec {
        days: 40,
        ..spec.clone()
    };
    let csv = dump(dir.path(), &older);
    let first = run_file(&csv, &out, &[]);
    assert_eq!(first["fetched_full"], 15);
    let mut expected = expected_rows(&older);
    // The dump has no updated_at column: compare what it has.
    let strip = |m: &mut std::collections::BTreeMap<String, Vec<Row>>| {
        for rows in m.values_mut() {
            for r in rows.iter_mut() {
                r.updated_at_us = 0;
            }
        }
    };
    let cached = cache_rows_without_updated_at(&out);
    strip(&mut expected);
    assert_same(&cached, &expected);

    // Ten more days in a new dump: an incremental refresh equals the dump.
    let cutoff = older.trading_day(older.days - 1);
    let csv = dir.path().join("klines.csv"); // the nightly export, rewritten
    let mut text = String::from("symbol,trade_date,open,high,low,close,volume,amount,turnover\n");
    let mut rows_later = std::collections::BTreeMap::new();
    for i in 0..spec.symbols {
        let later: Vec<_> = older
            .symbol_rows(i)
            .into_iter()
            .chain(
                spec.symbol_rows(i)
                    .into_iter()
                    .filter(|k| k.trade_date > cutoff),
            )
            .collect();
        for k in &later {
            text += &k.csv_line();
            text.push('\n');
        }
        rows_later.insert(
            spec.symbol(i),
            later.iter().map(expected_row).collect::<Vec<_>>(),
        );
    }
    std::fs::write(&csv, text).unwrap();
    let second = run_file(&csv, &out, &["--ttl", "0s"]);
    assert_eq!(second["fetched_incremental"], 15, "{second}");
    let mut expected = rows_later;
    strip(&mut expected);
    assert_same(&cache_rows_without_updated_at(&out), &expected);
    assert_no_leftovers(&out);
}

/// Equal maps, or a panic naming the first differing row.
fn assert_same(
    got: &std::collections::BTreeMap<String, Vec<Row>>,
    want: &std::collections::BTreeMap<String, Vec<Row>>,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (symbol, rows) in want {
        let cached = &got[symbol];
        for (i, (g, w)) in cached.iter().zip(rows).enumerate() {
            assert_eq!(g, w, "{symbol} row {i}");
        }
        assert_eq!(cached.len(), rows.len(), "{symbol}");
    }
}

fn cache_rows_without_updated_at(
    dir: &std::path::Path,
) -> std::collections::BTreeMap<String, Vec<Row>> {
    // The dump's cache has no updated_at; read it through a copy of the
    // dataset's rows with that field zeroed.
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Float64Type, Int64Type};
    let ds = kiln_contracts::KeyedDataset::open(dir).unwrap();
    ds.keys()
        .map(|k| {
            let b = ds.read_key(k, None).unwrap();
            let f = |n: &str| {
                b.column_by_name(n)
                    .unwrap()
                    .as_primitive::<Float64Type>()
                    .clone()
            };
            let turnover = f("turnover");
            let rows = (0..b.num_rows())
                .map(|i| Row {
                    trade_date: b
                        .column_by_name("trade_date")
                        .unwrap()
                        .as_primitive::<Date32Type>()
                        .value(i),
                    open: f("open").value(i),
                    high: f("high").value(i),
                    low: f("low").value(i),
                    close: f("close").value(i),
                    volume: b
                        .column_by_name("volume")
                        .unwrap()
                        .as_primitive::<Int64Type>()
                        .value(i),
                    amount: f("amount").value(i),
                    turnover: turnover.is_valid(i).then(|| turnover.value(i)),
                    updated_at_us: 0,
                })
                .collect();
            (k.to_owned(), rows)
        })
        .collect()
}

#[test]
fn a_malformed_dump_names_file_line_and_column_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kline");
    let header = "symbol,trade_date,open,high,low,close,volume,amount,turnover\n";
    let cases = [
        (
            "interleaved.csv",
            "000001,2024-01-02,1,1,1,1,10,10,\n000002,2024-01-02,1,1,1,1,10,10,\n000001,2024-01-03,1,1,1,1,10,10,\n",
            "interleaved.csv:4: rows of symbol 000001 appear again",
        ),
        (
            "duplicate.csv",
            "000001,2024-01-02,1,1,1,1,10,10,\n000001,2024-01-02,1,1,1,1,10,10,\n",
            "duplicate.csv:3: column trade_date: symbol 000001 has 2024-01-02 twice (also line 2)",
        ),
        (
            "nodate.csv",
            "000001,2024-01-02,1,1,1,1,10,10,\n000001,,1,1,1,1,10,10,\n",
            "nodate.csv:3: column trade_date: empty date",
        ),
    ];
    for (name, body, wanted) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{header}{body}")).unwrap();
        let o = preheat()
            .arg("--source")
            .arg(&path)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{name}: {err}");
        assert!(err.contains(wanted), "{name}: {wanted:?} not in {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!out.exists(), "{name}: nothing written");
        assert_no_leftovers(&out);
    }
    let missing = dir.path().join("nocol.csv");
    std::fs::write(&missing, "symbol,trade_date,open\n000001,2024-01-02,1\n").unwrap();
    let o = preheat()
        .arg("--source")
        .arg(&missing)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no column 'high'"));
}
