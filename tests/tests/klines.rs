//! The kline generator against the real MariaDB: a loaded table holds
//! exactly the generated rows, DECIMALs to the cent, NULLs as NULL.

use mysql_async::prelude::Queryable;

use kiln_testkit::kline_mysql;
use kiln_testkit::klines::{decimal, KlineSpec};

/// The test server (README: MariaDB on 127.0.0.1:3306, root, database test).
fn url() -> String {
    std::env::var("KILN_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_loaded_table_holds_exactly_the_generated_rows() {
    let spec = KlineSpec {
        symbols: 12,
        days: 60,
        suspended_share: 0.05,
        null_turnover_share: 0.05,
        ..KlineSpec::default()
    };
    let table = format!("kiln_testkit_klines_{}", std::process::id());
    runtime().block_on(async {
        let loaded = kline_mysql::load(&url(), &table, &spec, true)
            .await
            .unwrap_or_else(|e| panic!("MariaDB at {} is needed for this test: {e}", url()));
        let expected: Vec<_> = (0..spec.symbols)
            .flat_map(|i| spec.symbol_rows(i))
            .collect();
        assert_eq!(loaded, expected.len() as u64);

        let mut conn = mysql_async::Conn::from_url(url()).await.unwrap();
        // Text protocol: the server's own rendering of each value.
        let rows: Vec<mysql_async::Row> = conn
            .query(format!(
                "SELECT symbol, CAST(trade_date AS CHAR), CAST(open AS CHAR), CAST(high AS CHAR), \
                 CAST(low AS CHAR), CAST(close AS CHAR), volume, CAST(amount AS CHAR), \
                 CAST(turnover AS CHAR), CAST(updated_at AS CHAR) \
                 FROM `{table}` ORDER BY symbol, trade_date"
            ))
            .await
            .unwrap();
        let mut expected = expected;
        expected.sort_by(|a, b| (&a.symbol, a.trade_date).cmp(&(&b.symbol, b.trade_date)));
        assert_eq!(rows.len(), expected.len());
        for (row, k) in rows.iter().zip(&expected) {
            let text = |i: usize| row.get::<Option<String>, _>(i).unwrap();
            assert_eq!(text(0).as_deref(), Some(k.symbol.as_str()));
            assert_eq!(
                text(1),
                Some(kiln_contracts::dates::format_date(k.trade_date))
            );
            for (i, cents) in [
                (2, k.open),
                (3, k.high),
                (4, k.low),
                (5, k.close),
                (7, k.amount),
            ] {
                assert_eq!(text(i), Some(decimal(cents, 2)), "{} column {i}", k.symbol);
            }
            assert_eq!(row.get::<i64, _>(6), Some(k.volume));
            assert_eq!(text(8), k.turnover.map(|t| decimal(t, 4)));
            assert_eq!(text(9), Some(kline_mysql::updated_at(k)));
        }
        assert!(
            expected.iter().any(|k| k.turnover.is_none()),
            "NULLs were exercised"
        );

        // A table that exists is not replaced by accident.
        let again = kline_mysql::load(&url(), &table, &spec, false).await;
        assert!(again.unwrap_err().to_string().contains("already exists"));
        conn.query_drop(format!("DROP TABLE `{table}`"))
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
    });
}

#[test]
fn the_dump_parses_back_to_the_generated_rows() {
    let spec = KlineSpec {
        symbols: 8,
        days: 40,
        null_turnover_share: 0.1,
        ..KlineSpec::default()
    };
    let mut dump = Vec::new();
    let rows = spec.write_csv(&mut dump).unwrap();
    let text = String::from_utf8(dump).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("symbol,trade_date,open,high,low,close,volume,amount,turnover")
    );
    // Fixed-point text back to integers: "60.92" -> 6092, "0.1350" -> 1350.
    let fixed = |s: &str, places: usize| -> i64 {
        let (whole, frac) = s.split_once('.').expect("a decimal point");
        assert_eq!(frac.len(), places, "{s}");
        format!("{whole}{frac}").parse().unwrap()
    };
    let expected: Vec<_> = (0..spec.symbols)
        .flat_map(|i| spec.symbol_rows(i))
        .collect();
    assert_eq!(rows as usize, expected.len());
    for (line, k) in lines.zip(&expected) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 9, "{line}");
        assert_eq!(f[0], k.symbol);
        let date = kiln_contracts::dates::parse_date(f[1].as_bytes()).unwrap();
        assert_eq!(date, k.trade_date);
        let prices: Vec<i64> = f[2..6].iter().map(|p| fixed(p, 2)).collect();
        assert_eq!(prices, [k.open, k.high, k.low, k.close]);
        assert_eq!(f[6].parse::<i64>().unwrap(), k.volume);
        assert_eq!(fixed(f[7], 2), k.amount);
        assert_eq!((!f[8].is_empty()).then(|| fixed(f[8], 4)), k.turnover);
    }
}
