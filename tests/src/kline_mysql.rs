//! Loading generated klines into a MySQL/MariaDB table, for kiln-preheat's
//! tests and benchmark: the conventional `stock_kline_data` layout plus an
//! `updated_at DATETIME` column (an extra column that must pass through).

use mysql_async::prelude::Queryable;

use crate::klines::{Kline, KlineSpec};

/// The table's definition; `name` is quoted by the caller's rules (tests use
/// plain identifiers).
pub fn create_table_sql(name: &str) -> String {
    format!(
        "CREATE TABLE `{name}` (
            symbol VARCHAR(16) NOT NULL,
            trade_date DATE NOT NULL,
            open DECIMAL(12,2) NOT NULL,
            high DECIMAL(12,2) NOT NULL,
            low DECIMAL(12,2) NOT NULL,
            close DECIMAL(12,2) NOT NULL,
            volume BIGINT NOT NULL,
            amount DECIMAL(20,2) NOT NULL,
            turnover DECIMAL(10,4) NULL,
            updated_at DATETIME NOT NULL,
            PRIMARY KEY (symbol, trade_date)
        ) ENGINE=InnoDB"
    )
}

/// `updated_at` of a generated row: its trade date at 15:30:00.
pub fn updated_at(k: &Kline) -> String {
    format!(
        "{} 15:30:00",
        kiln_contracts::dates::format_date(k.trade_date)
    )
}

/// One row of a multi-row INSERT. Every value is quoted (MySQL converts a
/// quoted decimal exactly); the generated text is digits, dates and
/// symbols only, so inline values are safe.
fn values(k: &Kline) -> String {
    let quoted = k
        .text_fields()
        .map(|field| field.map_or("NULL".to_string(), |v| format!("'{v}'")));
    format!("({},'{}')", quoted.join(","), updated_at(k))
}

/// Inserts rows in multi-row statements of `batch` rows.
pub async fn insert_rows(
    conn: &mut mysql_async::Conn,
    table: &str,
    rows: impl IntoIterator<Item = Kline>,
    batch: usize,
) -> mysql_async::Result<u64> {
    let mut sql = String::new();
    let mut pending = 0;
    let mut total = 0;
    for k in rows {
        if pending == 0 {
            sql = format!("INSERT INTO `{table}` VALUES ");
        } else {
            sql.push(',');
        }
        sql.push_str(&values(&k));
        pending += 1;
        total += 1;
        if pending == batch {
            conn.query_drop(&sql).await?;
            pending = 0;
        }
    }
    if pending > 0 {
        conn.query_drop(&sql).await?;
    }
    Ok(total)
}

/// Creates `table` and loads the whole spec into it. An existing table is
/// an error (the server's "already exists") unless `replace`.
pub async fn load(
    url: &str,
    table: &str,
    spec: &KlineSpec,
    replace: bool,
) -> mysql_async::Result<u64> {
    let mut conn = mysql_async::Conn::from_url(url).await?;
    if replace {
        conn.query_drop(format!("DROP TABLE IF EXISTS `{table}`"))
            .await?;
    }
    conn.query_drop(create_table_sql(table)).await?;
    let rows = (0..spec.symbols).flat_map(|i| spec.symbol_rows(i));
    let total = insert_rows(&mut conn, table, rows, 2000).await?;
    conn.disconnect().await?;
    Ok(total)
}
