//! Shared by kiln-preheat's integration tests: the real MariaDB, generated
//! kline tables, and reading a cache back for comparison.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, Date32Array, Float64Array, Int64Array, TimestampMicrosecondArray};
use assert_cmd::Command;
use kiln_contracts::KeyedDataset;
use kiln_testkit::kline_mysql;
use kiln_testkit::klines::{Kline, KlineSpec};
use mysql_async::prelude::Queryable;

/// The test server (README: MariaDB on 127.0.0.1:3306, root, database
/// test). Tests fail, never skip, without it.
pub fn url() -> String {
    std::env::var("KILN_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string())
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A table name of its own for each test (and each test process).
pub fn table(test: &str) -> String {
    format!("preheat_{test}_{}", std::process::id())
}

/// Create `table` holding `spec`'s rows.
pub fn load(url: &str, table: &str, spec: &KlineSpec) {
    runtime().block_on(async {
        kline_mysql::load(url, table, spec, true)
            .await
            .unwrap_or_else(|e| panic!("MariaDB at {url} is needed for this test: {e}"));
    });
}

pub fn exec(url: &str, sql: &str) {
    runtime().block_on(async {
        let mut conn = mysql_async::Conn::from_url(url)
            .await
            .unwrap_or_else(|e| panic!("MariaDB at {url} is needed for this test: {e}"));
        conn.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.disconnect().await.unwrap();
    });
}

pub fn count(url: &str, table: &str) -> u64 {
    runtime().block_on(async {
        let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
        let n: Option<u64> = conn
            .query_first(format!("SELECT COUNT(*) FROM `{table}`"))
            .await
            .unwrap();
        n.unwrap()
    })
}

pub fn preheat() -> Command {
    let mut cmd = Command::cargo_bin("kiln-preheat").unwrap();
    cmd.env_remove("KILN_MYSQL_URL")
        .env_remove("KILN_MYSQL_PASSWORD")
        .env_remove("RUST_LOG");
    cmd
}

/// `kiln-preheat --url URL --table T --out DIR ARGS…`, asserting success;
/// returns the `--json` summary.
pub fn run_ok(url: &str, table: &str, out: &Path, args: &[&str]) -> serde_json::Value {
    let output = preheat()
        .args(["--url", url, "--table", table, "--out"])
        .arg(out)
        .args(["--json", "-q"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kiln-preheat failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// One cached row, in the generator's integer units where it has them.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub trade_date: i32,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
    pub amount: f64,
    pub turnover: Option<f64>,
    pub updated_at_us: i64,
}

/// What the cache must hold for a generated kline: DECIMAL → the nearest
/// f64 of the exact decimal (cents / 100 is correctly rounded to it).
pub fn expected_row(k: &Kline) -> Row {
    Row {
        trade_date: k.trade_date,
        open: k.open as f64 / 100.0,
        high: k.high as f64 / 100.0,
        low: k.low as f64 / 100.0,
        close: k.close as f64 / 100.0,
        volume: k.volume,
        amount: k.amount as f64 / 100.0,
        turnover: k.turnover.map(|t| t as f64 / 10_000.0),
        updated_at_us: (i64::from(k.trade_date) * 86_400 + 15 * 3600 + 30 * 60) * 1_000_000,
    }
}

pub fn expected_rows(spec: &KlineSpec) -> BTreeMap<String, Vec<Row>> {
    (0..spec.symbols)
        .map(|i| {
            let rows = spec.symbol_rows(i);
            (spec.symbol(i), rows.iter().map(expected_row).collect())
        })
        .collect()
}

/// Every row of a cache, read through the keyed-dataset contract.
pub fn cache_rows(dir: &Path) -> BTreeMap<String, Vec<Row>> {
    let ds = KeyedDataset::open(dir).unwrap();
    let mut all = BTreeMap::new();
    for key in ds.keys() {
        let b = ds.read_key(key, None).unwrap();
        let f = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap_or_else(|| panic!("{n} is not float64"))
                .clone()
        };
        let (open, high, low, close, amount, turnover) = (
            f("open"),
            f("high"),
            f("low"),
            f("close"),
            f("amount"),
            f("turnover"),
        );
        let dates = b
            .column_by_name("trade_date")
            .unwrap()
            .as_any()
            .downcast_ref::<Date32Array>()
            .expect("trade_date is date32")
            .clone();
        let volume = b
            .column_by_name("volume")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("volume is int64")
            .clone();
        let updated = b
            .column_by_name("updated_at")
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("updated_at is timestamp_us")
            .clone();
        let rows = (0..b.num_rows())
            .map(|i| Row {
                trade_date: dates.value(i),
                open: open.value(i),
                high: high.value(i),
                low: low.value(i),
                close: close.value(i),
                volume: volume.value(i),
                amount: amount.value(i),
                turnover: turnover.is_valid(i).then(|| turnover.value(i)),
                updated_at_us: updated.value(i),
            })
            .collect();
        all.insert(key.to_owned(), rows);
    }
    all
}

/// `name:type` of each column in the manifest.
pub fn column_types(ds: &KeyedDataset) -> Vec<String> {
    ds.manifest()
        .columns
        .iter()
        .map(|c| format!("{}:{}", c.name, c.column_type))
        .collect()
}

/// No staging copies, temp files or locks left beside or inside `dir`
/// except the cache's own lock file.
pub fn assert_no_leftovers(dir: &Path) {
    let parent = dir.parent().unwrap();
    for entry in std::fs::read_dir(parent).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.contains("kiln-staging") && !name.contains(".tmp."),
            "leftover {name} beside the cache"
        );
    }
    if dir.exists() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with('.'), "leftover {name} in the cache");
        }
    }
}
