//! kiln-preheat against the real MariaDB: every test its own table.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;
use kiln_contracts::KeyedDataset;
use kiln_testkit::kline_mysql;
use kiln_testkit::klines::KlineSpec;

fn spec(symbols: usize, days: usize) -> KlineSpec {
    KlineSpec {
        symbols,
        days,
        suspended_share: 0.05,
        null_turnover_share: 0.05,
        ..KlineSpec::default()
    }
}

#[test]
fn a_full_fetch_equals_the_table_with_types_and_nulls() {
    let (url, table) = (url(), table("full"));
    let spec = spec(30, 80);
    load(&url, &table, &spec);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kline");
    let summary = run_ok(&url, &table, &out, &[]);
    let expected = expected_rows(&spec);
    let rows: usize = expected.values().map(Vec::len).sum();
    assert_eq!(summary["fetched_full"], 30);
    assert_eq!(summary["rows_fetched"], rows);
    assert_eq!(summary["failed"].as_array().unwrap().len(), 0);
    assert_eq!(
        cache_rows(&out),
        expected,
        "every row exactly once, values exact"
    );

    let ds = KeyedDataset::open(&out).unwrap();
    assert_eq!(
        column_types(&ds),
        [
            "symbol:string",
            "trade_date:date32",
            "open:float64",
            "high:float64",
            "low:float64",
            "close:float64",
            "volume:int64",
            "amount:float64",
            "turnover:float64",
            "updated_at:timestamp_us"
        ]
    );
    let nulls: usize = expected
        .values()
        .flatten()
        .filter(|r| r.turnover.is_none())
        .count();
    assert!(nulls > 0, "the spec has NULL turnovers");
    assert_eq!(
        ds.manifest().statistics.null_counts["turnover"],
        nulls as u64
    );
    assert_eq!(ds.manifest().statistics.rows, rows as u64);
    // Per-file metadata: source (no password), fetch time, last date.
    let file = std::fs::File::open(out.join("000001.parquet")).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    use parquet::file::reader::FileReader;
    let kv: std::collections::HashMap<String, String> = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        kv["kiln.preheat.source"],
        "mysql://root@127.0.0.1:3306/test"
    );
    assert_eq!(kv["kiln.preheat.table"], format!("test.{table}"));
    assert!(kv["kiln.preheat.fetched_at"].starts_with("20"));
    let last = expected["000001"].last().unwrap().trade_date;
    assert_eq!(
        kv["kiln.preheat.last_date"],
        kiln_contracts::dates::format_date(last)
    );
    assert!(ds.index_column("fetched_at").unwrap().is_some());
    assert_no_leftovers(&out);
    exec(&url, &format!("DROP TABLE `{table}`"));
}

#[test]
fn incremental_refresh_after_new_days_equals_a_full_fetch() {
    let (url, table) = (url(), table("incr"));
    let before = spec(25, 60);
    load(&url, &table, &before);
    let dir = tempfile::tempdir().unwrap();
    let (cache, fresh) = (dir.path().join("cache"), dir.path().join("fresh"));
    run_ok(&url, &table, &cache, &[]);

    // Ten more trading days for every symbol, plus a revised close inside
    // the overlap window and a new symbol.
    let after = KlineSpec {
        days: 70,
        ..spec(26, 70)
    };
    let cutoff = before.trading_day(before.days - 1);
    let new_rows = (0..after.symbols)
        .flat_map(|i| after.symbol_rows(i))
        .filter(|k| k.trade_date > cutoff || k.symbol == after.symbol(25));
    runtime().block_on(async {
        let mut conn = mysql_async::Conn::from_url(&url).await.unwrap();
        kline_mysql::insert_rows(&mut conn, &table, new_rows, 500)
            .await
            .unwrap();
    });
    let revised_day = kiln_contracts::dates::format_date(before.trading_day(before.days - 2));
    exec(
        &url,
        &format!("UPDATE `{table}` SET close = close + 0.01 WHERE symbol = '000001' AND trade_date = '{revised_day}'"),
    );

    let summary = run_ok(
        &url,
        &table,
        &cache,
        &["--ttl", "0s", "--overlap-days", "5"],
    );
    assert_eq!(summary["fetched_incremental"], 25, "{summary}");
    assert_eq!(summary["fetched_full"], 1, "the new symbol");
    let rows_fetched = summary["rows_fetched"].as_u64().unwrap();
    assert!(
        rows_fetched < 26 * 25,
        "only the tail was fetched: {rows_fetched}"
    );
    run_ok(&url, &table, &fresh, &[]);
    let (incremental, full) = (cache_rows(&cache), cache_rows(&fresh));
    assert_eq!(incremental.len(), 26);
    assert_eq!(incremental, full, "incremental == full fetch");
    // And the revision inside the overlap arrived.
    let revised = before.trading_day(before.days - 2);
    let generated = before.symbol_rows(before_index(&before, "000001"));
    if let Some(k) = generated.iter().find(|k| k.trade_date == revised) {
        let cached = incremental["000001"]
            .iter()
            .find(|r| r.trade_date == revised)
            .unwrap();
        assert_eq!(cached.close, (k.close + 1) as f64 / 100.0);
    }
    let ds = KeyedDataset::open(&cache).unwrap();
    assert_eq!(ds.manifest().statistics.keys, 26);
    assert_no_leftovers(&cache);

    // Two more nights: the previous version (kept as the spare) becomes the
    // staging copy and its files are overwritten in place. The published
    // cache must never change under a reader, and must equal a full fetch.
    let spare = dir.path().join(".cache.kiln-spare");
    assert!(spare.is_dir(), "the previous version is kept for reuse");
    for night in 0..2 {
        let published = cache_rows(&cache);
        let day = after.trading_day(after.days - 1) + 3 + 7 * night;
        let date = kiln_contracts::dates::format_date(day);
        exec(
            &url,
            &format!(
                "INSERT INTO `{table}` SELECT k.symbol, '{date}', k.open, k.high, k.low, k.close, \
                 k.volume, k.amount, k.turnover, k.updated_at FROM `{table}` k JOIN \
                 (SELECT symbol, MAX(trade_date) d FROM `{table}` GROUP BY symbol) m \
                 ON k.symbol = m.symbol AND k.trade_date = m.d WHERE k.symbol <> '000002'"
            ),
        );
        let snapshot: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect();
        let summary = run_ok(&url, &table, &cache, &["--ttl", "0s"]);
        assert!(
            summary["fetched_incremental"].as_u64().unwrap() > 0,
            "{summary}"
        );
        assert_eq!(summary["unchanged"], 1, "000002 got no new day: {summary}");
        // The files of the version published before are untouched: the
        // run wrote into the older spare, then moved this one aside.
        for (path, bytes) in &snapshot {
            let moved = spare.join(path.file_name().unwrap());
            assert_eq!(
                &std::fs::read(&moved).unwrap(),
                bytes,
                "{}",
                moved.display()
            );
        }
        let fresh = dir.path().join(format!("fresh{night}"));
        run_ok(&url, &table, &fresh, &[]);
        let now = cache_rows(&cache);
        assert_eq!(
            now,
            cache_rows(&fresh),
            "night {night}: incremental == full"
        );
        assert_ne!(now, published);
        assert_eq!(now["000002"], published["000002"]);
        assert_no_leftovers(&cache);
    }
    exec(&url, &format!("DROP TABLE `{table}`"));
}

/// Insert the rows of `spec` dated in `days` (trading-day indices).
fn insert_days(url: &str, table: &str, spec: &KlineSpec, days: std::ops::Range<usize>) {
    let (from, to) = (spec.trading_day(days.start), spec.trading_day(days.end - 1));
    let rows = (0..spec.symbols)
        .flat_map(|i| spec.symbol_rows(i))
        .filter(|k| k.trade_date >= from && k.trade_date <= to);
    runtime().block_on(async {
        let mut conn = mysql_async::Conn::from_url(url).await.unwrap();
        kline_mysql::insert_rows(&mut conn, table, rows, 500)
            .await
            .unwrap();
    });
}

/// `table` loaded with `all`'s first `days` trading days and preheated
/// into `cache` in a new temp dir: the dir, the cache and its spare.
fn preheated_first_days(
    url: &str,
    table: &str,
    all: &KlineSpec,
    days: usize,
) -> (tempfile::TempDir, PathBuf, PathBuf) {
    load(
        url,
        table,
        &KlineSpec {
            days,
            ..all.clone()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let spare = dir.path().join(".cache.kiln-spare");
    run_ok(url, table, &cache, &[]);
    (dir, cache, spare)
}

/// The rows of a full preheat of `table` into `out` (a new directory).
fn full_preheat(url: &str, table: &str, out: &Path) -> BTreeMap<String, Vec<Row>> {
    run_ok(url, table, out, &[]);
    cache_rows(out)
}

/// `spare` holds the same files as `cache`, byte for byte, none of them a
/// link to a published one, and the same index.
fn assert_spare_copies(cache: &Path, spare: &Path) {
    let mut files = 0;
    for entry in std::fs::read_dir(cache).unwrap() {
        let path = entry.unwrap().path();
        let copy = spare.join(path.file_name().unwrap());
        assert!(
            std::fs::read(&copy).unwrap() == std::fs::read(&path).unwrap(),
            "{}: not a copy of the published file",
            copy.display()
        );
        assert_eq!(std::fs::metadata(&copy).unwrap().nlink(), 1);
        files += 1;
    }
    assert_eq!(std::fs::read_dir(spare).unwrap().count(), files);
}

/// Row groups and base group of each cached file.
fn layouts(
    dir: &std::path::Path,
) -> Vec<(String, usize, Option<kiln_contracts::append::BaseGroup>)> {
    let ds = KeyedDataset::open(dir).unwrap();
    ds.entries()
        .iter()
        .map(|e| {
            let tail = kiln_contracts::append::KeyFileTail::open(&ds.path_of(e)).unwrap();
            (e.key.clone(), tail.row_groups(), tail.base_group())
        })
        .collect()
}

#[test]
fn a_symbol_gone_from_the_table_keeps_its_cached_file_and_new_ones_arrive() {
    let (url, table) = (url(), table("gone"));
    let all = spec(5, 40);
    load(
        &url,
        &table,
        &KlineSpec {
            days: 30,
            ..all.clone()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    run_ok(&url, &table, &cache, &[]);
    let gone = all.symbol(2);
    let file = cache.join(format!("{gone}.parquet"));
    let before = std::fs::read(&file).unwrap();
    // New days for the others, and a symbol the cache has never seen.
    insert_days(&url, &table, &all, 30..32);
    exec(
        &url,
        &format!("DELETE FROM `{table}` WHERE symbol = '{gone}'"),
    );
    exec(
        &url,
        &format!(
            "INSERT INTO `{table}` SELECT 'NEW1', trade_date, open, high, low, close, volume, \
             amount, turnover, updated_at FROM `{table}` WHERE symbol = '{}'",
            all.symbol(0)
        ),
    );
    // The symbols are listed while the cached ones are fetched; the
    // overlap window would cut the gone symbol's last days were it fetched.
    // A checkpoint after every outcome: its catch-up admits outcomes too.
    let summary = run_ok(
        &url,
        &table,
        &cache,
        &["--ttl", "0s", "--overlap-days", "5", "--checkpoint", "0s"],
    );
    assert_eq!(summary["selected"], 5, "{summary}");
    assert_eq!(summary["fetched_incremental"], 4, "{summary}");
    assert_eq!(summary["fetched_full"], 1, "NEW1: {summary}");
    assert_eq!(summary["unchanged"], 0, "{summary}");
    assert_eq!(std::fs::read(&file).unwrap(), before, "left as it was");
    let rows = cache_rows(&cache);
    assert_eq!(rows.len(), 6);
    assert_eq!(rows["NEW1"], rows[&all.symbol(0)]);
    assert_no_leftovers(&cache);
    exec(&url, &format!("DROP TABLE `{table}`"));
}

/// Checkpoints during nightly refreshes that update the spare in place. A
/// checkpoint moves the staging copy, so files the prefetch opened before
/// it are no longer the ones their names say: the writers drop them (and
/// the checkpoint has by then replaced the staging files of symbols still
/// to come by links, which are never written through). Every night's cache
/// must hold exactly the table's rows.
#[test]
fn checkpoints_during_nightly_refreshes_leave_every_file_right() {
    let (url, table) = (url(), table("checkpoint_nights"));
    let all = spec(40, 44);
    let first = 40;
    let (dir, cache, _spare) = preheated_first_days(&url, &table, &all, first);
    // Listed, not `all`: outcomes are recorded as they come (with `all`
    // they wait for the table's symbol list, often to the end).
    let symbols: Vec<String> = (0..all.symbols).map(|i| all.symbol(i)).collect();
    let symbols = symbols.join(",");
    let mut most_publishes = 0;
    for night in 0..4 {
        insert_days(&url, &table, &all, first + night..first + night + 1);
        // One query of one symbol at a time, a checkpoint after each
        // outcome: the prefetch opens every file at the start, and the
        // writers meet them after checkpoints.
        let summary = run_ok(
            &url,
            &table,
            &cache,
            &[
                "--symbols",
                &symbols,
                "--ttl",
                "0s",
                "--checkpoint",
                "0s",
                "--jobs",
                "1",
                "--batch-symbols",
                "1",
            ],
        );
        assert_eq!(summary["failed"].as_array().unwrap().len(), 0, "{summary}");
        most_publishes = most_publishes.max(summary["publishes"].as_u64().unwrap());
        let full = full_preheat(&url, &table, &dir.path().join(format!("full-{night}")));
        assert_eq!(cache_rows(&cache), full, "night {night}");
        assert_no_leftovers(&cache);
    }
    // Outcomes that arrive during a checkpoint are published with it: on
    // a slow disk one night may have few checkpoints, not all four.
    assert!(most_publishes > 2, "{most_publishes} publishes at most");
    exec(&url, &format!("DROP TABLE `{table}`"));
}

#[test]
fn nightly_refreshes_keep_the_base_as_bytes_and_fold_long_tails() {
    let (url, table) = (url(), table("nights"));
    let all = spec(6, 220);
    let first = 40;
    let (dir, cache, spare) = preheated_first_days(&url, &table, &all, first);
    for (symbol, groups, base) in layouts(&cache) {
        assert_eq!(groups, 1, "{symbol}: one base group after a full fetch");
        assert!(base.is_some(), "{symbol}");
    }
    // The first run also leaves the spare.
    assert_no_leftovers(&cache);
    assert_spare_copies(&cache, &spare);

    // Ten nights of one new day each.
    for night in 0..10 {
        insert_days(&url, &table, &all, first + night..first + night + 1);
        let published: Vec<(std::path::PathBuf, Vec<u8>)> = layouts(&cache)
            .into_iter()
            .map(|(s, _, _)| {
                let p = cache.join(format!("{s}.parquet"));
                (p.clone(), std::fs::read(&p).unwrap())
            })
            .collect();
        let spare_inode = std::fs::metadata(spare.join("000001.parquet"))
            .unwrap()
            .ino();
        let summary = run_ok(&url, &table, &cache, &["--ttl", "0s"]);
        assert_eq!(summary["failed"].as_array().unwrap().len(), 0, "{summary}");
        for (symbol, groups, base) in layouts(&cache) {
            assert!(groups <= 2, "night {night}, {symbol}: {groups} row groups");
            let base = base.unwrap_or_else(|| panic!("night {night}, {symbol}: no base"));
            // The base's bytes are the ones published before.
            let (_, before) = published
                .iter()
                .find(|(p, _)| p.ends_with(format!("{symbol}.parquet")))
                .unwrap();
            let now = std::fs::read(cache.join(format!("{symbol}.parquet"))).unwrap();
            let end = base.end as usize;
            assert_eq!(
                now[..end],
                before[..end],
                "night {night}, {symbol}: base kept"
            );
        }
        // Every night, the first too, the spare (the version before last,
        // or the first run's copy) was updated in place and published.
        let published = std::fs::metadata(cache.join("000001.parquet"))
            .unwrap()
            .ino();
        assert_eq!(
            published, spare_inode,
            "night {night}: the spare's file was reused"
        );
        assert_no_leftovers(&cache);
    }
    let full = |name: &str| full_preheat(&url, &table, &dir.path().join(name));
    assert_eq!(cache_rows(&cache), full("full-after-ten-nights"));

    // Half a year at once: every tail would pass its limit, so each file
    // is folded into one base group again.
    insert_days(&url, &table, &all, first + 10..first + 160);
    run_ok(&url, &table, &cache, &["--ttl", "0s"]);
    for (symbol, groups, base) in layouts(&cache) {
        assert_eq!(groups, 1, "{symbol}: folded");
        assert!(base.is_some());
    }
    assert_eq!(cache_rows(&cache), full("full-after-folding"));

    // An overlap window reaching into the base: rewritten with the window
    // in the tail group, then refreshed keeping the base, revisions inside
    // the window arriving.
    insert_days(&url, &table, &all, first + 160..first + 161);
    run_ok(
        &url,
        &table,
        &cache,
        &["--ttl", "0s", "--overlap-days", "5"],
    );
    for (symbol, groups, _) in layouts(&cache) {
        assert_eq!(groups, 2, "{symbol}: the overlap window in the tail");
    }
    let revised = kiln_contracts::dates::format_date(all.trading_day(first + 159));
    exec(
        &url,
        &format!("UPDATE `{table}` SET close = close + 0.01 WHERE trade_date = '{revised}'"),
    );
    insert_days(&url, &table, &all, first + 161..first + 162);
    let before = layouts(&cache);
    run_ok(
        &url,
        &table,
        &cache,
        &["--ttl", "0s", "--overlap-days", "5"],
    );
    for ((symbol, groups, base), (_, _, old_base)) in layouts(&cache).into_iter().zip(before) {
        assert_eq!(groups, 2, "{symbol}");
        assert_eq!(
            base, old_base,
            "{symbol}: base kept under the overlap window"
        );
    }
    assert_eq!(cache_rows(&cache), full("full-after-revision"));
    exec(&url, &format!("DROP TABLE `{table}`"));
}

/// A first run killed after its twin became the spare but before the cache
/// was published leaves a spare with no cache beside it, and maybe a dead
/// run's staging copy and twin. The next run must not trust that spare: it
/// starts over, clears the dead runs' directories and leaves a fresh spare.
/// A spare file whose length is not what the spare's index says (damaged,
/// or the index gone) is rewritten whole on the next night, never patched.
#[test]
fn an_orphan_spare_is_rebuilt_and_damaged_spare_files_are_rewritten_whole() {
    let (url, table) = (url(), table("orphan_spare"));
    let all = spec(5, 70);
    let first = 60;
    let (dir, cache, spare) = preheated_first_days(&url, &table, &all, first);
    let expected = cache_rows(&cache);

    // The state a kill between the two renames leaves: the cache never
    // published (its staging copy is a dead run's), a spare whose files
    // need not match anything, and a dead run's twin.
    std::fs::rename(&cache, dir.path().join(".cache.kiln-staging.dead")).unwrap();
    std::fs::write(spare.join("000001.parquet"), b"not the cached file").unwrap();
    let stale_twin = dir.path().join("..cache.kiln-spare.kiln-staging.dead");
    std::fs::create_dir(&stale_twin).unwrap();
    std::fs::write(stale_twin.join("000001.parquet"), b"half a file").unwrap();
    run_ok(&url, &table, &cache, &[]);
    assert_no_leftovers(&cache);
    assert!(!stale_twin.exists(), "the dead run's twin is removed");
    assert_eq!(cache_rows(&cache), expected);
    assert_spare_copies(&cache, &spare);

    let full = |name: &str| full_preheat(&url, &table, &dir.path().join(name));
    // Night 1: two spare files damaged (one longer, one cut short).
    insert_days(&url, &table, &all, first..first + 1);
    let mut key_files: Vec<_> = std::fs::read_dir(&spare)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('_'))
        .collect();
    key_files.sort();
    let (longer, shorter) = (&key_files[0], &key_files[1]);
    let mut bytes = std::fs::read(longer).unwrap();
    bytes.extend_from_slice(b"junk");
    std::fs::write(longer, bytes).unwrap();
    let len = std::fs::metadata(shorter).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(shorter)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let summary = run_ok(&url, &table, &cache, &["--ttl", "0s"]);
    assert_eq!(summary["failed"].as_array().unwrap().len(), 0, "{summary}");
    assert_eq!(cache_rows(&cache), full("full-night-1"));

    // Night 2: the spare's index gone; every file is rewritten whole.
    insert_days(&url, &table, &all, first + 1..first + 2);
    std::fs::remove_file(spare.join("_index.parquet")).unwrap();
    run_ok(&url, &table, &cache, &["--ttl", "0s"]);
    assert_eq!(cache_rows(&cache), full("full-night-2"));
    assert_no_leftovers(&cache);
    exec(&url, &format!("DROP TABLE `{table}`"));
}

/// Each key file of `dir` (not the index or manifest) and its inode.
fn key_file_inodes(dir: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('_'))
        .map(|e| {
            let ino = e.metadata().unwrap().ino();
            (e.file_name().to_string_lossy().into_owned(), ino)
        })
        .collect()
}

#[test]
fn a_night_after_nights_without_new_rows_still_updates_the_spare_in_place() {
    let (url, table) = (url(), table("quiet_nights"));
    let all = spec(5, 70);
    let first = 60;
    let (dir, cache, spare) = preheated_first_days(&url, &table, &all, first);
    insert_days(&url, &table, &all, first..first + 1);
    run_ok(&url, &table, &cache, &["--ttl", "0s"]);

    // A weekend: two runs that find nothing new. The cache's files and the
    // spare's stay copies of each other, none a link to the other.
    for _ in 0..2 {
        let summary = run_ok(&url, &table, &cache, &["--ttl", "0s"]);
        assert_eq!(summary["unchanged"], 5, "{summary}");
        for name in key_file_inodes(&cache).keys() {
            let (published, copy) = (cache.join(name), spare.join(name));
            assert!(std::fs::read(&copy).unwrap() == std::fs::read(&published).unwrap());
            assert_eq!(std::fs::metadata(&published).unwrap().nlink(), 1, "{name}");
        }
    }

    // The next night updates the spare's own files (it becomes the cache),
    // rather than creating new ones, and equals a full preheat.
    let spare_files = key_file_inodes(&spare);
    insert_days(&url, &table, &all, first + 1..first + 2);
    let summary = run_ok(&url, &table, &cache, &["--ttl", "0s"]);
    // (A symbol may have no row that day: unchanged.)
    let refreshed = summary["fetched_incremental"].as_u64().unwrap();
    assert!(refreshed >= 3, "{summary}");
    assert_eq!(summary["fetched_full"], 0, "{summary}");
    assert_eq!(key_file_inodes(&cache), spare_files, "written in place");
    assert_eq!(
        cache_rows(&cache),
        full_preheat(&url, &table, &dir.path().join("full"))
    );
    assert_no_leftovers(&cache);
    exec(&url, &format!("DROP TABLE `{table}`"));
}

fn before_index(spec: &KlineSpec, symbol: &str) -> usize {
    (0..spec.symbols)
        .find(|&i| spec.symbol(i) == symbol)
        .unwrap()
}

#[test]
fn fresh_symbols_are_skipped_and_force_refetches() {
    let (url, table) = (url(), table("ttl"));
    let spec = spec(12, 40);
    load(&url, &table, &spec);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kline");
    run_ok(&url, &table, &out, &[]);
    let inode = |s: &str| {
        std::fs::metadata(out.join(format!("{s}.parquet")))
            .unwrap()
            .ino()
    };
    let before = inode("000001");

    let again = run_ok(&url, &table, &out, &[]);
    assert_eq!(again["skipped_fresh"], 12);
    assert_eq!(again["queries"], 0);
    assert_eq!(again["files_written"], 0);
    assert_eq!(again["publishes"], 0, "nothing to publish");
    assert_eq!(inode("000001"), before, "a fresh cache is not touched");

    // Stale but unchanged in the source: asked, nothing rewritten (the
    // new version's file is the spare's, brought up to the same bytes).
    let bytes = |s: &str| std::fs::read(out.join(format!("{s}.parquet"))).unwrap();
    let cached = bytes("000001");
    let stale = run_ok(&url, &table, &out, &["--ttl", "0s"]);
    assert_eq!(stale["unchanged"], 12, "{stale}");
    assert_eq!(stale["files_written"], 0);
    assert!(bytes("000001") == cached);
    let published = inode("000001");

    let forced = run_ok(
        &url,
        &table,
        &out,
        &["--force-refresh", "--symbols", "000001,000002"],
    );
    assert_eq!(forced["fetched_full"], 2);
    assert_eq!(forced["selected"], 2);
    assert_ne!(
        inode("000001"),
        published,
        "refetched, never written through"
    );
    assert_eq!(cache_rows(&out), expected_rows(&spec));
    exec(&url, &format!("DROP TABLE `{table}`"));
}

#[test]
fn info_and_clear_read_the_index() {
    let (url, table) = (url(), table("info"));
    let spec = spec(8, 30);
    load(&url, &table, &spec);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kline");
    run_ok(&url, &table, &out, &["--limit", "5"]);

    let info = |extra: &[&str]| -> serde_json::Value {
        let o = preheat()
            .args(["info", "--json", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let i = info(&[]);
    let expected = expected_rows(&spec);
    let first5: Vec<&String> = expected.keys().take(5).collect();
    assert_eq!(i["symbols"], 5);
    assert_eq!(
        i["rows"],
        first5.iter().map(|k| expected[*k].len()).sum::<usize>()
    );
    assert_eq!(i["stale"], 0);
    assert_eq!(i["table"], format!("test.{table}"));
    assert_eq!(info(&["--ttl", "0s"])["stale"], 5);
    let per = info(&["--per-symbol"]);
    assert_eq!(per["per_symbol"].as_array().unwrap().len(), 5);

    let o = preheat()
        .args(["clear", "--json", "--out"])
        .arg(&out)
        .args(["--symbol", first5[0], "--symbol", "NOPE"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let cleared: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(cleared["removed"], serde_json::json!([first5[0]]));
    assert_eq!(cleared["not_cached"], serde_json::json!(["NOPE"]));
    let ds = KeyedDataset::open(&out).unwrap();
    assert_eq!(ds.manifest().statistics.keys, 4);
    assert!(!out.join(format!("{}.parquet", first5[0])).exists());
    assert_eq!(info(&[])["symbols"], 4);

    preheat()
        .args(["clear", "--out"])
        .arg(&out)
        .assert()
        .success();
    assert!(!out.exists());
    assert_no_leftovers(&out);
    preheat().args(["info", "--out"]).arg(&out).assert().code(4);
    exec(&url, &format!("DROP TABLE `{table}`"));
}

#[test]
fn injection_shaped_and_path_shaped_symbols_are_just_symbols() {
    let (url, table) = (url(), table("inject"));
    let spec = spec(3, 10);
    load(&url, &table, &spec);
    exec(
        &url,
        &format!(
            "INSERT INTO `{table}` SELECT '../etc', trade_date, open, high, low, close, volume, amount, turnover, updated_at \
             FROM `{table}` WHERE symbol = '000001'"
        ),
    );
    exec(
        &url,
        &format!(
            "INSERT INTO `{table}` SELECT 'a/b', trade_date, open, high, low, close, volume, amount, turnover, updated_at \
             FROM `{table}` WHERE symbol = '000001'"
        ),
    );
    let rows_before = count(&url, &table);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kline");
    let summary = run_ok(
        &url,
        &table,
        &out,
        &["--symbols", "x' OR '1'='1,000001,x'; DROP TABLE t; --"],
    );
    assert_eq!(summary["fetched_full"], 1);
    assert_eq!(
        summary["missing"],
        serde_json::json!(["x' OR '1'='1", "x'; DROP TABLE t; --"])
    );
    assert_eq!(count(&url, &table), rows_before, "the table is intact");
    assert_eq!(
        KeyedDataset::open(&out).unwrap().manifest().statistics.keys,
        1
    );

    let all = run_ok(&url, &table, &dir.path().join("all"), &[]);
    assert_eq!(all["fetched_full"], 5);
    let rows = cache_rows(&dir.path().join("all"));
    assert_eq!(rows["../etc"], rows["000001"]);
    assert_eq!(rows["a/b"], rows["000001"]);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            [
                "kline",
                "all",
                ".kline.kiln-preheat.lock",
                ".all.kiln-preheat.lock",
                ".kline.kiln-spare",
                ".all.kiln-spare"
            ]
            .contains(&name.as_str()),
            "{name} escaped"
        );
    }
    assert!(!dir.path().join("etc.parquet").exists() && !dir.path().join("etc").exists());
    // The spares (copies of the caches) hold the same, encoded, names.
    let names = |d: &std::path::Path| {
        let mut n: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    for cache in ["kline", "all"] {
        let spare = dir.path().join(format!(".{cache}.kiln-spare"));
        assert_eq!(names(&spare), names(&dir.path().join(cache)));
    }
    exec(&url, &format!("DROP TABLE `{table}`"));
}

#[test]
fn bad_credentials_tables_and_columns_fail_before_any_work() {
    let (url, table) = (url(), table("bad"));
    load(&url, &table, &spec(2, 5));
    let user = format!("kiln_t{}", std::process::id());
    exec(&url, &format!("DROP USER IF EXISTS '{user}'@'%'"));
    exec(
        &url,
        &format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'right-Pass-1'"),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kline");
    let secret = "Sup3r-Secret-Xyz";
    let bad_url = format!("mysql://{user}:{secret}@127.0.0.1:3306/test");
    let check = |cmd: &mut assert_cmd::Command, code: i32, wanted: &str| {
        let o = cmd.arg("--out").arg(&out).args(["-v"]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(code), "{err}");
        assert!(err.contains(wanted), "{wanted:?} not in {err}");
        assert!(!err.contains(secret), "the password leaked: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(!out.exists(), "nothing written");
    };
    check(
        preheat()
            .env("KILN_MYSQL_URL", &bad_url)
            .args(["--table", &table]),
        1,
        "Access denied",
    );
    // The password from KILN_MYSQL_PASSWORD is hidden too.
    check(
        preheat().env("KILN_MYSQL_PASSWORD", secret).args([
            "--url",
            &format!("mysql://{user}@127.0.0.1:3306/test"),
            "--table",
            &table,
        ]),
        1,
        "Access denied",
    );
    check(
        preheat().args(["--url", &url, "--table", "no_such_table"]),
        1,
        "no table test.no_such_table",
    );
    check(
        preheat().args([
            "--url",
            &url,
            "--table",
            &table,
            "--column",
            "close=closing",
        ]),
        1,
        "has no column 'closing'",
    );
    check(
        preheat().args(["--url", "mysql://root@127.0.0.1:1/test", "--table", &table]),
        1,
        "cannot connect",
    );
    exec(&url, &format!("DROP USER '{user}'@'%'"));
    exec(&url, &format!("DROP TABLE `{table}`"));
}

#[test]
fn datetime_dates_unsigned_and_text_columns_map_to_contract_types() {
    let (url, table) = (url(), table("types"));
    exec(&url, &format!("DROP TABLE IF EXISTS `{table}`"));
    exec(
        &url,
        &format!(
            "CREATE TABLE `{table}` (code CHAR(6) NOT NULL, ts DATETIME(3) NOT NULL, \
             open DOUBLE, high FLOAT, low DECIMAL(10,3), close DECIMAL(10,3), volume BIGINT UNSIGNED, \
             board ENUM('main','star'), note TEXT, blob_col BLOB, PRIMARY KEY (code, ts))"
        ),
    );
    exec(
        &url,
        &format!(
            "INSERT INTO `{table}` VALUES \
             ('000001', '2024-01-02 09:30:00.125', 1.5, 2.5, 0.125, 1.001, 100, 'main', 'a', 'x'), \
             ('000001', '2024-01-03 09:30:00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kline");
    let base = ["--column", "symbol=code", "--column", "trade_date=ts"];
    let o = preheat()
        .args(["--url", &url, "--table", &table, "--out"])
        .arg(&out)
        .args(base)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("blob_col") && err.contains("--exclude blob_col"),
        "{err}"
    );
    run_ok(
        &url,
        &table,
        &out,
        &[&base[..], &["--exclude", "blob_col"]].concat(),
    );
    let ds = KeyedDataset::open(&out).unwrap();
    assert_eq!(
        column_types(&ds),
        [
            "symbol:string",
            "trade_date:timestamp_us",
            "open:float64",
            "high:float64",
            "low:float64",
            "close:float64",
            "volume:int64",
            "board:string",
            "note:string"
        ]
    );
    let b = ds.read_key("000001", None).unwrap();
    use arrow::array::{Array, AsArray};
    let ts = b
        .column(1)
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    let day = i64::from(kiln_contracts::dates::parse_date(b"2024-01-02").unwrap());
    assert_eq!(
        ts.value(0),
        (day * 86_400 + 9 * 3600 + 30 * 60) * 1_000_000 + 125_000
    );
    let low = b.column(4).as_primitive::<arrow::datatypes::Float64Type>();
    assert_eq!(low.value(0), 0.125);
    for c in 2..b.num_columns() {
        assert!(b.column(c).is_null(1), "column {c} keeps its NULL");
    }
    exec(&url, &format!("DROP TABLE `{table}`"));
}

/// A run that ends early (the staging copy could not be made, a checkpoint
/// failed) drops its receiving side while the source may still have most
/// of the table to read: the fetch stops after the query under way.
#[test]
fn a_fetch_nobody_receives_stops_after_the_query_under_way() {
    use kiln_preheat::columns::ColumnMap;
    use kiln_preheat::mysql::{FetchStats, MysqlOptions, MysqlSource};
    use kiln_preheat::plan::{Bounds, Fetch};

    let (url, table) = (url(), table("abandoned"));
    let spec = spec(40, 5);
    load(&url, &table, &spec);
    let options = MysqlOptions {
        url: url.clone(),
        password: None,
        table: table.clone(),
        jobs: 1,
        batch_symbols: 1,
        retries: 0,
        retry_delay: std::time::Duration::from_millis(10),
        connect_timeout: std::time::Duration::from_secs(10),
    };
    let source = MysqlSource::connect(options, &ColumnMap::default()).unwrap();
    let tasks: Vec<(String, Fetch)> = (0..spec.symbols)
        .map(|i| (spec.symbol(i), Fetch::Full))
        .collect();
    let stats = FetchStats::default();
    let (tx, rx) = crossbeam_channel::bounded(1);
    drop(rx);
    source.fetch(tasks.clone(), Bounds::default(), false, &tx, &stats);
    let queries = stats.queries.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(queries, 1, "one query of {} asked", tasks.len());

    // Received, the same fetch asks for every batch.
    let (tx, rx) = crossbeam_channel::unbounded();
    let stats = FetchStats::default();
    source.fetch(tasks.clone(), Bounds::default(), false, &tx, &stats);
    drop(tx);
    assert_eq!(rx.iter().count(), tasks.len());
    assert_eq!(
        stats.queries.load(std::sync::atomic::Ordering::Relaxed),
        tasks.len() as u64
    );
    source.disconnect();
    exec(&url, &format!("DROP TABLE `{table}`"));
}
