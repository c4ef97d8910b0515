//! The MySQL/MariaDB source: validates the table before any work, lists
//! symbols, and streams rows ordered by (symbol, date) over `--jobs`
//! connections, one batch of symbols per query, retrying transient errors.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use kiln_contracts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, Value};

use crate::columns::{ColumnMap, KlineSchema};
use crate::error::PreheatError;
use crate::group::{Group, Message, Sender};
use crate::plan::{Bounds, Fetch};
use crate::redact::redact;
use crate::rows::{symbol_text, GroupBuilder};

#[derive(Debug, Clone)]
pub struct MysqlOptions {
    pub url: String,
    /// Overrides the URL's password (`KILN_MYSQL_PASSWORD`).
    pub password: Option<String>,
    /// `table` or `database.table`.
    pub table: String,
    pub jobs: usize,
    pub batch_symbols: usize,
    pub retries: u32,
    pub retry_delay: Duration,
    pub connect_timeout: Duration,
}

/// Counters of one fetch.
#[derive(Debug, Default)]
pub struct FetchStats {
    pub queries: AtomicU64,
    pub retries: AtomicU64,
    pub rows: AtomicU64,
}

pub struct MysqlSource {
    runtime: tokio::runtime::Runtime,
    pool: Pool,
    secret: Option<String>,
    /// `mysql://user@host:port/db`, never with the password.
    pub display: String,
    /// `db.table`.
    pub table: String,
    quoted_table: String,
    pub schema: KlineSchema,
    options: MysqlOptions,
}

/// Identifier quoting: a backticked name with backticks doubled.
fn quote(identifier: &str) -> String {
    format!("`{}`", identifier.replace('`', "``"))
}

fn server_message(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("{} (MySQL error {})", s.message, s.code),
        mysql_async::Error::Io(io) => format!("connection lost: {io}"),
        mysql_async::Error::Driver(d) => d.to_string(),
        other => other.to_string(),
    }
}

/// Errors worth a retry: the connection broke, the server restarts, or a
/// lock/deadlock/too-many-connections condition that passes.
fn is_transient(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(d) => matches!(
            d,
            mysql_async::DriverError::ConnectionClosed | mysql_async::DriverError::PoolDisconnected
        ),
        mysql_async::Error::Server(s) => {
            matches!(
                s.code,
                1040 | 1053 | 1205 | 1213 | 1317 | 1927 | 2006 | 2013 | 1158..=1161
            )
        }
        _ => false,
    }
}

/// The cache type of a column from `information_schema.COLUMNS`.
fn column_type(data_type: &str, column_type: &str) -> Result<ColumnType, String> {
    Ok(match data_type.to_ascii_lowercase().as_str() {
        "decimal" | "float" | "double" | "real" => ColumnType::Float64,
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
            ColumnType::Int64
        }
        "date" => ColumnType::Date32,
        "datetime" | "timestamp" => ColumnType::TimestampUs,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" => {
            ColumnType::Utf8
        }
        _ => {
            return Err(format!(
                "has type {column_type}, which the cache cannot hold"
            ))
        }
    })
}

impl MysqlSource {
    /// Connect, check the table and the column mapping. Every failure is one
    /// line without the password.
    pub fn connect(options: MysqlOptions, map: &ColumnMap) -> Result<Self, PreheatError> {
        let secret_in_url = Opts::from_url(&options.url)
            .ok()
            .and_then(|o| o.pass().map(str::to_owned));
        let secret = options.password.clone().or(secret_in_url);
        let hide = |text: String| redact(&text, secret.as_deref());
        let opts = Opts::from_url(&options.url)
            .map_err(|e| PreheatError::Usage(hide(format!("invalid MySQL URL: {e}"))))?;
        let display = format!(
            "mysql://{}@{}:{}/{}",
            opts.user().unwrap_or(""),
            opts.ip_or_hostname(),
            opts.tcp_port(),
            opts.db_name().unwrap_or("")
        );
        let (db, name) = match options.table.split_once('.') {
            Some((db, name)) => (db.to_owned(), name.to_owned()),
            None => (
                opts.db_name()
                    .ok_or_else(|| {
                        PreheatError::Usage(format!(
                            "--table {}: no database; name it as DB.TABLE or in the URL ({display}DB)",
                            options.table
                        ))
                    })?
                    .to_owned(),
                options.table.clone(),
            ),
        };
        // Connections stay open for the whole run (a pool with no minimum
        // closes idle ones at once, and every batch would reconnect).
        let constraints =
            PoolConstraints::new(options.jobs.max(1), options.jobs.max(1)).expect("min <= max");
        let mut builder = OptsBuilder::from_opts(opts)
            .pool_opts(PoolOpts::new().with_constraints(constraints))
            // DATETIME and TIMESTAMP are read as UTC wall-clock values.
            .init(vec!["SET time_zone = '+00:00'"]);
        if let Some(p) = &options.password {
            builder = builder.pass(Some(p.clone()));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| PreheatError::io("tokio runtime", e))?;
        let pool = Pool::new(builder);
        let table = format!("{db}.{name}");
        let quoted_table = format!("{}.{}", quote(&db), quote(&name));
        let described = runtime.block_on(async {
            let mut conn = tokio::time::timeout(options.connect_timeout, pool.get_conn())
                .await
                .map_err(|_| {
                    format!(
                        "cannot connect to {display}: no answer in {}",
                        humantime::format_duration(options.connect_timeout)
                    )
                })?
                .map_err(|e| format!("cannot connect to {display}: {}", server_message(&e)))?;
            let rows: Vec<(String, String, String)> = conn
                .exec(
                    "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                    (&db, &name),
                )
                .await
                .map_err(|e| format!("{display}: {}", server_message(&e)))?;
            Ok::<_, String>(rows)
        });
        let described = described.map_err(|m| PreheatError::Source(hide(m)))?;
        if described.is_empty() {
            return Err(PreheatError::Source(format!(
                "{display}: no table {table} (or no privilege to read it)"
            )));
        }
        let described = described
            .into_iter()
            .map(|(name, data_type, full)| {
                let ty = column_type(&data_type, &full);
                (name, ty)
            })
            .collect();
        let schema = KlineSchema::resolve(&format!("table {table}"), described, map)?;
        Ok(Self {
            runtime,
            pool,
            secret,
            display,
            table,
            quoted_table,
            schema,
            options,
        })
    }

    pub fn jobs(&self) -> usize {
        self.options.jobs.max(1)
    }

    pub fn batch_symbols(&self) -> usize {
        self.options.batch_symbols.max(1)
    }

    fn hide(&self, text: String) -> String {
        redact(&text, self.secret.as_deref())
    }

    /// Every distinct symbol of the table, sorted.
    pub fn list_symbols(&self) -> Result<Vec<String>, PreheatError> {
        let sql = format!(
            "SELECT DISTINCT {} FROM {}",
            quote(&self.schema.columns[self.schema.symbol].source),
            self.quoted_table
        );
        let values: Result<Vec<Value>, _> = self.runtime.block_on(async {
            let mut conn = self.pool.get_conn().await?;
            conn.query(sql).await
        });
        let values = values.map_err(|e| {
            PreheatError::Source(self.hide(format!("{}: {}", self.display, server_message(&e))))
        })?;
        let mut symbols: Vec<String> = values.iter().filter_map(symbol_text).collect();
        symbols.sort_unstable();
        symbols.dedup();
        Ok(symbols)
    }

    /// The SELECT for a batch: `symbols` placeholders (none: the whole
    /// table), then the date limits that apply.
    fn select(&self, symbols: Option<usize>, after: bool, bounds: Bounds) -> String {
        let cols = &self.schema.columns;
        let symbol = quote(&cols[self.schema.symbol].source);
        let date = quote(&cols[self.schema.date].source);
        let list = cols
            .iter()
            .map(|c| quote(&c.source))
            .collect::<Vec<_>>()
            .join(", ");
        let mut conditions = Vec::new();
        if let Some(n) = symbols {
            conditions.push(format!("{symbol} IN ({})", vec!["?"; n].join(",")));
        }
        if bounds.start.is_some() {
            conditions.push(format!("{date} >= ?"));
        }
        if after {
            conditions.push(format!("{date} > ?"));
        }
        if bounds.end.is_some() {
            conditions.push(format!("{date} < ?"));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        format!(
            "SELECT {list} FROM {}{filter} ORDER BY {symbol}, {date}",
            self.quoted_table
        )
    }

    fn date_param(&self, value: i64) -> Value {
        match self.schema.date_type() {
            ColumnType::TimestampUs => {
                let dt = chrono::DateTime::from_timestamp_micros(value)
                    .unwrap_or_default()
                    .naive_utc();
                use chrono::{Datelike, Timelike};
                Value::Date(
                    dt.year() as u16,
                    dt.month() as u8,
                    dt.day() as u8,
                    dt.hour() as u8,
                    dt.minute() as u8,
                    dt.second() as u8,
                    dt.nanosecond() / 1000,
                )
            }
            _ => {
                let d = chrono::NaiveDate::from_num_days_from_ce_opt(value as i32 + 719_163)
                    .unwrap_or_default();
                use chrono::Datelike;
                Value::Date(d.year() as u16, d.month() as u8, d.day() as u8, 0, 0, 0, 0)
            }
        }
    }

    /// Fetch `tasks` (sorted by symbol) and send one message per symbol:
    /// its rows (possibly none) or why it failed. `whole_table` reads the
    /// table in one ordered scan instead of batches of symbols (every
    /// symbol of the table is a task with [`Fetch::Full`]).
    pub fn fetch(
        &self,
        tasks: Vec<(String, Fetch)>,
        bounds: Bounds,
        whole_table: bool,
        out: &Sender,
        stats: &FetchStats,
    ) {
        let mut by_fetch: BTreeMap<Option<i64>, Vec<String>> = BTreeMap::new();
        for (symbol, fetch) in tasks {
            let key = match fetch {
                Fetch::Full => None,
                Fetch::After(d) => Some(d),
            };
            by_fetch.entry(key).or_default().push(symbol);
        }
        let mut queue = VecDeque::new();
        for (after, symbols) in by_fetch {
            if whole_table && after.is_none() {
                queue.push_back(Batch {
                    symbols,
                    after,
                    whole_table: true,
                });
                continue;
            }
            for chunk in symbols.chunks(self.options.batch_symbols.max(1)) {
                queue.push_back(Batch {
                    symbols: chunk.to_vec(),
                    after,
                    whole_table: false,
                });
            }
        }
        let shared = Shared {
            queue: Mutex::new(queue),
            abandoned: AtomicBool::new(false),
            gave_up: AtomicBool::new(false),
            give_up_reason: Mutex::new(String::new()),
        };
        // One thread per connection, each driving its own worker: decoding
        // rows is the client's real work and should use every core.
        std::thread::scope(|scope| {
            for _ in 0..self.options.jobs.max(1) {
                scope.spawn(|| {
                    self.runtime
                        .block_on(self.worker(&shared, bounds, out, stats))
                });
            }
        });
    }

    async fn worker(&self, shared: &Shared, bounds: Bounds, out: &Sender, stats: &FetchStats) {
        loop {
            if shared.abandoned.load(Ordering::Relaxed) {
                return;
            }
            let Some(batch) = shared.queue.lock().expect("queue").pop_front() else {
                return;
            };
            self.run_batch(batch, shared, bounds, out, stats).await;
        }
    }

    /// One batch with retries: symbols completed before an error are kept;
    /// the rest are asked for again after a backoff.
    async fn run_batch(
        &self,
        batch: Batch,
        shared: &Shared,
        bounds: Bounds,
        out: &Sender,
        stats: &FetchStats,
    ) {
        let fetch = batch.after.map_or(Fetch::Full, Fetch::After);
        let mut remaining = batch.symbols;
        let mut whole_table = batch.whole_table;
        let mut attempt = 0;
        let mut delay = self.options.retry_delay;
        loop {
            if shared.gave_up.load(Ordering::Relaxed) {
                let reason = shared.give_up_reason.lock().expect("reason").clone();
                for symbol in remaining {
                    let _ = out.send(Message::Failed {
                        symbol,
                        error: format!("not fetched: {reason}"),
                    });
                }
                return;
            }
            let mut done = HashSet::new();
            let result = self
                .stream(
                    &remaining,
                    whole_table,
                    fetch,
                    bounds,
                    &mut done,
                    out,
                    stats,
                )
                .await;
            let error = match result {
                Ok(true) => return,
                Ok(false) => {
                    shared.abandoned.store(true, Ordering::Relaxed);
                    return;
                }
                Err(error) => error,
            };
            remaining.retain(|s| !done.contains(s));
            // After a failure the remaining symbols are asked for by name.
            whole_table = false;
            let message = self.hide(server_message(&error));
            if remaining.is_empty() {
                return;
            }
            if is_transient(&error) && attempt < self.options.retries {
                attempt += 1;
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    attempt,
                    symbols = remaining.len(),
                    "{message}; retrying in {}",
                    humantime::format_duration(delay)
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
                continue;
            }
            let error = if is_transient(&error) {
                let reason = format!("{message} (gave up after {attempt} retries)");
                *shared.give_up_reason.lock().expect("reason") = reason.clone();
                shared.gave_up.store(true, Ordering::Relaxed);
                reason
            } else {
                message
            };
            for symbol in remaining {
                let _ = out.send(Message::Failed {
                    symbol,
                    error: error.clone(),
                });
            }
            return;
        }
    }

    /// One query; a symbol counts as done once its last row arrived (the
    /// next symbol began or the result ended). `false` when nobody receives
    /// the symbols any more: the rest of the result is not read.
    #[allow(clippy::too_many_arguments)]
    async fn stream(
        &self,
        symbols: &[String],
        whole_table: bool,
        fetch: Fetch,
        bounds: Bounds,
        done: &mut HashSet<String>,
        out: &Sender,
        stats: &FetchStats,
    ) -> Result<bool, mysql_async::Error> {
        let after = match fetch {
            Fetch::Full => None,
            Fetch::After(d) => Some(d),
        };
        let sql = self.select(
            (!whole_table).then_some(symbols.len()),
            after.is_some(),
            bounds,
        );
        let mut params: Vec<Value> = Vec::new();
        if !whole_table {
            params.extend(symbols.iter().map(|s| Value::from(s.as_str())));
        }
        params.extend(bounds.start.map(|d| self.date_param(d)));
        params.extend(after.map(|d| self.date_param(d)));
        params.extend(bounds.end.map(|d| self.date_param(d)));
        let wanted: HashMap<&str, ()> = symbols.iter().map(|s| (s.as_str(), ())).collect();

        let mut conn = self.pool.get_conn().await?;
        let statement = conn.prep(sql).await?;
        stats.queries.fetch_add(1, Ordering::Relaxed);
        let mut result = conn
            .exec_iter(&statement, Params::Positional(params))
            .await?;
        let schema = &self.schema;
        let mut builder = GroupBuilder::new(schema);
        let mut current: Option<String> = None;
        let mut poisoned = false;
        let mut rows = 0u64;
        let finish = |symbol: String,
                      builder: &mut GroupBuilder,
                      poisoned: bool,
                      done: &mut HashSet<String>| {
            let batch = builder.finish();
            let received = poisoned
                || out
                    .send(Message::Group(Group {
                        symbol: symbol.clone(),
                        fetch,
                        batch,
                    }))
                    .is_ok();
            done.insert(symbol);
            received
        };
        while let Some(row) = result.next().await? {
            rows += 1;
            let mut values = row.unwrap_raw();
            let symbol = values[schema.symbol]
                .take()
                .as_ref()
                .and_then(symbol_text)
                .unwrap_or_default();
            if current.as_deref() != Some(symbol.as_str()) {
                if let Some(previous) = current.take() {
                    if !finish(previous, &mut builder, poisoned, done) {
                        return Ok(false);
                    }
                }
                poisoned = false;
                // A collation that equates symbols (case, trailing spaces)
                // can return rows of a symbol nobody asked for here.
                if !wanted.contains_key(symbol.as_str()) || done.contains(&symbol) {
                    builder.finish();
                    poisoned = true;
                    continue;
                }
                current = Some(symbol.clone());
            }
            if poisoned {
                continue;
            }
            values[schema.symbol] = Some(Value::from(symbol.as_str()));
            if let Err(why) = builder.push(values, schema) {
                poisoned = true;
                let failed = Message::Failed {
                    symbol: symbol.clone(),
                    error: format!("row {} of the symbol: {why}", builder.rows() + 1),
                };
                if out.send(failed).is_err() {
                    return Ok(false);
                }
            }
        }
        if let Some(previous) = current.take() {
            if !finish(previous, &mut builder, poisoned, done) {
                return Ok(false);
            }
        }
        stats.rows.fetch_add(rows, Ordering::Relaxed);
        drop(result);
        // Symbols without rows (none in the range, or not in the table).
        for symbol in symbols {
            if !done.contains(symbol) {
                let empty = Message::Group(Group {
                    symbol: symbol.clone(),
                    fetch,
                    batch: arrow::array::RecordBatch::new_empty(schema.arrow()),
                });
                if out.send(empty).is_err() {
                    return Ok(false);
                }
                done.insert(symbol.clone());
            }
        }
        Ok(true)
    }

    /// Close the connections politely.
    pub fn disconnect(self) {
        let MysqlSource { runtime, pool, .. } = self;
        let _ = runtime.block_on(pool.disconnect());
    }
}

struct Batch {
    symbols: Vec<String>,
    after: Option<i64>,
    whole_table: bool,
}

struct Shared {
    queue: Mutex<VecDeque<Batch>>,
    /// Nobody receives any more (the run ended early): ask for nothing more.
    abandoned: AtomicBool,
    gave_up: AtomicBool,
    give_up_reason: Mutex<String>,
}
