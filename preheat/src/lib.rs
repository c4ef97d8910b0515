//! kiln-preheat: daily klines from MySQL/MariaDB (or a dump file) into a
//! per-symbol parquet cache that is a keyed dataset (docs/CONTRACTS.md),
//! refreshed incrementally. See docs/PREHEAT.md.
//!
//! * [`mysql`] / [`file_source`] — the sources; both hand one symbol's rows
//!   at a time ([`group`]) to the writers.
//! * [`plan`] — fresh, full or incremental per symbol.
//! * [`writer`] — check, merge, write one symbol.
//! * [`cache`] — the cache directory, copy-on-write with atomic publishes.
//! * [`manage`] — `info` and `clear`.

pub mod cache;
pub mod cli;
pub mod columns;
pub mod error;
pub mod file_source;
pub mod group;
pub mod manage;
pub mod mysql;
pub mod plan;
pub mod prefetch;
pub mod redact;
pub mod rows;
pub mod spare;
pub mod summary;
pub mod writer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_contracts::append::BaseGroup;
use kiln_contracts::dataset::{Codec, KeyFileWriter};
use kiln_contracts::{ColumnType, FileFormat};

use crate::cache::{Cache, Identity, KeyState, ManifestSpec, RunFiles, Staging};
use crate::columns::{ColumnMap, KlineSchema};
pub use crate::error::PreheatError;
use crate::file_source::FileSource;
use crate::mysql::{FetchStats, MysqlOptions, MysqlSource};
use crate::plan::{Bounds, Decision, Fetch, Planner};
use crate::prefetch::{Prefetch, Wanted};
use crate::summary::{FailedSymbol, Summary};
use crate::writer::{Outcome, WriteContext};

/// Where the klines come from.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    Mysql(MysqlOptions),
    File {
        path: PathBuf,
        types: Vec<(String, ColumnType)>,
    },
}

/// Which symbols a run is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    List(Vec<String>),
}

/// How the MySQL source reads the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One ordered scan when every symbol of the table is fetched in full
    /// over one connection, batches of symbols otherwise.
    Auto,
    /// Batches of `--batch-symbols` symbols over `--jobs` connections.
    Batched,
}

#[derive(Debug, Clone)]
pub struct PreheatOptions {
    pub source: SourceSpec,
    pub map: ColumnMap,
    pub selection: Selection,
    pub limit: Option<usize>,
    /// Days since 1970, inclusive.
    pub start_date: Option<i32>,
    pub end_date: Option<i32>,
    pub out: PathBuf,
    pub ttl: Duration,
    pub overlap_days: u32,
    pub force_refresh: bool,
    pub writers: usize,
    pub checkpoint: Duration,
    pub codec: Codec,
    pub shape: Shape,
    pub progress: bool,
    /// The command line, password removed, for the manifest.
    pub command: Vec<String>,
}

enum Source {
    Mysql(Box<MysqlSource>),
    File(FileSource),
}

impl Source {
    fn open(spec: &SourceSpec, map: &ColumnMap) -> Result<Self, PreheatError> {
        Ok(match spec {
            SourceSpec::Mysql(o) => Source::Mysql(Box::new(MysqlSource::connect(o.clone(), map)?)),
            SourceSpec::File { path, types } => Source::File(FileSource::open(path, map, types)?),
        })
    }

    fn schema(&self) -> &KlineSchema {
        match self {
            Source::Mysql(m) => &m.schema,
            Source::File(f) => &f.schema,
        }
    }

    fn display(&self) -> String {
        match self {
            Source::Mysql(m) => m.display.clone(),
            Source::File(f) => f.display.clone(),
        }
    }

    fn table(&self) -> Option<String> {
        match self {
            Source::Mysql(m) => Some(m.table.clone()),
            Source::File(_) => None,
        }
    }

    fn list_symbols(&self) -> Result<Vec<String>, PreheatError> {
        match self {
            Source::Mysql(m) => m.list_symbols(),
            Source::File(f) => f.list_symbols(),
        }
    }
}

fn format_day(day: Option<i32>) -> Option<String> {
    day.map(kiln_contracts::dates::format_date)
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Fetch what the selection needs into the cache. Failures of single
/// symbols are in the summary's `failed`; an `Err` means nothing of this
/// run was published (except checkpoints of symbols already complete).
pub fn run(opts: &PreheatOptions) -> Result<Summary, PreheatError> {
    let started = Instant::now();
    let source = Source::open(&opts.source, &opts.map)?;
    let schema = source.schema().clone();
    let identity = Identity {
        source: source.display(),
        table: source.table(),
        columns: schema.manifest_columns(),
        mapping: opts.map.describe(),
        start_date: format_day(opts.start_date),
    };
    tracing::info!(source = %source.display(), "source ready");
    let cache = Cache::open(&opts.out)?;
    cache.check_identity(&identity, opts.force_refresh)?;

    // A refresh of every symbol does not wait for the table's symbol list
    // (a query that is slow for a while after a bulk load): the cached
    // symbols are fetched at once while the list is read, and symbols new
    // to the cache follow (see `fetch_and_publish`).
    let planner = Planner {
        cached: cache.planner_view(),
        now_us: now_us(),
        ttl: opts.ttl,
        force: opts.force_refresh,
        overlap_days: opts.overlap_days,
        date_type: schema.date_type(),
    };
    // Only when some cached symbol is due: with none, the list is all there
    // is to wait for (and a run that changes nothing publishes nothing).
    let list_later = opts.selection == Selection::All
        && opts.limit.is_none()
        && !opts.force_refresh
        && matches!(source, Source::Mysql(_))
        && cache
            .keys
            .keys()
            .any(|s| matches!(planner.decide(s), Decision::Fetch(_)));
    let mut symbols = match &opts.selection {
        Selection::All if list_later => cache.keys.keys().cloned().collect(),
        Selection::All => source.list_symbols()?,
        Selection::List(list) => {
            let mut list = list.clone();
            list.sort_unstable();
            list.dedup();
            list
        }
    };
    if let Some(n) = opts.limit {
        symbols.truncate(n);
    }
    let mut tasks = Vec::new();
    let mut summary = Summary {
        source: source.display(),
        table: source.table(),
        out: opts.out.clone(),
        selected: symbols.len() as u64,
        ..Summary::default()
    };
    let mut fresh = Vec::new();
    for symbol in &symbols {
        match planner.decide(symbol) {
            Decision::Fresh => fresh.push(symbol.clone()),
            Decision::Fetch(f) => tasks.push((symbol.clone(), f)),
        }
    }
    summary.skipped_fresh = fresh.len() as u64;
    tracing::info!(
        selected = symbols.len(),
        to_fetch = tasks.len(),
        fresh = summary.skipped_fresh,
        "planned"
    );
    let bounds = Bounds::from_days(opts.start_date, opts.end_date, schema.date_type());
    let spec = ManifestSpec {
        columns: schema.manifest_columns(),
        date_type: schema.date_type(),
        identity,
        command: opts.command.clone(),
    };
    let mut keys = cache.keys.clone();
    let listed = if !tasks.is_empty() {
        fetch_and_publish(
            opts,
            &source,
            &cache,
            tasks,
            list_later,
            bounds,
            &spec,
            &mut keys,
            &mut summary,
        )?
    } else {
        None
    };
    if let Some(listed) = listed {
        // What the table holds is what was selected: cached symbols it no
        // longer has were left as they are, like any unselected symbol.
        summary.selected = listed.len() as u64;
        summary.skipped_fresh = fresh.iter().filter(|s| listed.contains(*s)).count() as u64;
    }
    if let Source::Mysql(m) = source {
        (*m).disconnect();
    }
    summary.cache = cache::totals(&keys, schema.date_type());
    summary.failed.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    summary.missing.sort();
    summary.seconds = started.elapsed().as_secs_f64();
    summary.peak_rss_bytes = kiln_contracts::mem::peak_rss_bytes();
    Ok(summary)
}

/// Source thread → writer threads → this thread, which records outcomes
/// and publishes the staging copy at checkpoints and at the end.
///
/// With `list_later`, `tasks` are the cached symbols and the table's symbol
/// list is read meanwhile: its new symbols are fetched in full after the
/// tasks, and outcomes wait until it is known, so that a cached symbol the
/// table no longer has is left as it is (never counted, never rewritten).
/// Returns that list.
#[allow(clippy::too_many_arguments)]
fn fetch_and_publish(
    opts: &PreheatOptions,
    source: &Source,
    cache: &Cache,
    tasks: Vec<(String, Fetch)>,
    list_later: bool,
    bounds: Bounds,
    spec: &ManifestSpec,
    keys: &mut BTreeMap<String, KeyState>,
    summary: &mut Summary,
) -> Result<Option<HashSet<String>>, PreheatError> {
    let schema = source.schema();
    // Files of symbols about to be fetched are not linked into the staging
    // copy (most are rewritten); the rest are linked in before publishing.
    let mut pending: HashSet<String> = tasks
        .iter()
        .filter_map(|(s, _)| keys.get(s).map(|k| k.entry.file.clone()))
        .collect();
    let mut files = RunFiles::default();
    let fetched_at = now_us();
    let mut metadata = vec![
        ("kiln.preheat.source".to_string(), source.display()),
        (
            "kiln.preheat.fetched_at".to_string(),
            kiln_contracts::manifest::now_rfc3339(),
        ),
    ];
    if let Some(t) = source.table() {
        metadata.push(("kiln.preheat.table".to_string(), t));
    }
    // Where each cached file's base group ends (the index's record): its
    // refresh reads the file from there.
    let cached_bases: HashMap<String, BaseGroup> = keys
        .iter()
        .filter_map(|(k, s)| Some((k.clone(), s.base?)))
        .collect();
    // What each incremental fetch will read of the published file, asked
    // of the disk at once (its staging file, which it overwrites in whole
    // pages, is only opened for it).
    let wanted: Vec<Wanted> = match &cache.dataset {
        Some(cached) => tasks
            .iter()
            .filter(|(_, fetch)| matches!(fetch, Fetch::After(_)))
            .filter_map(|(symbol, _)| {
                cached.entry(symbol).map(|e| Wanted {
                    symbol: symbol.clone(),
                    published: cached.path_of(e),
                    file: e.file.clone(),
                    len: e.bytes,
                    base: cached_bases.get(symbol).copied(),
                })
            })
            .collect(),
        None => Vec::new(),
    };
    let prefetch = Arc::new(if wanted.is_empty() {
        Prefetch::none()
    } else {
        Prefetch::within_limits()
    });
    let writer = KeyFileWriter::new(
        FileFormat::Parquet,
        opts.codec,
        columns::SYMBOL,
        columns::DATE,
        schema.date_type(),
        false,
    )
    .with_file_reuse();
    let footer = writer.footer_schema(&schema.arrow()).ok();
    let cached_nulls = keys
        .iter()
        .map(|(k, s)| (k.clone(), s.nulls.clone()))
        .collect();
    let total = tasks.len() as u64;
    let whole_table = opts.shape == Shape::Auto
        && opts.selection == Selection::All
        && opts.limit.is_none()
        && tasks.iter().all(|(_, f)| *f == Fetch::Full)
        && summary.skipped_fresh == 0;
    let stats = FetchStats::default();
    summary.shape = match (source, whole_table) {
        (Source::File(_), _) => "one pass over the dump".into(),
        (Source::Mysql(m), true) if m.jobs() == 1 => "one ordered scan".into(),
        (Source::Mysql(m), _) => format!(
            "batches of {} symbols over {} connection(s)",
            m.batch_symbols(),
            m.jobs()
        ),
    };
    let (work_tx, work_rx) = crossbeam_channel::bounded(64);
    // Unbounded: a writer sends while holding the staging lock, and must
    // never wait for the coordinator, which may be waiting for that lock.
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Outcome>();
    let bar = progress_bar(opts.progress, total);
    let mut last_publish = Instant::now();
    let mut changed = 0usize;
    // The symbol list, when read during the run: list thread → fetch
    // thread (which fetches its new symbols) → this thread.
    let (list_tx, list_rx) = crossbeam_channel::bounded::<Result<Vec<String>, PreheatError>>(1);
    let (listed_tx, listed_rx) =
        crossbeam_channel::bounded::<Result<HashSet<String>, PreheatError>>(1);
    let cached: HashSet<String> = keys.keys().cloned().collect();
    let fetch_bar = bar.clone();
    let mut listed: Option<HashSet<String>> = None;
    // Outside the scope: dropped (and removed, after an error) only once
    // no writer is left to write into it.
    let mut staging: Option<Staging> = None;
    let result = std::thread::scope(|scope| -> Result<(), PreheatError> {
        let stats = &stats;
        // Owned here: should this closure return early, the fetch finds
        // nobody receiving and stops.
        let work_rx = work_rx;
        if list_later {
            scope.spawn(move || {
                let listing = source.list_symbols();
                if let Ok(all) = &listing {
                    tracing::info!(symbols = all.len(), "symbol list read");
                }
                let _ = list_tx.send(listing);
            });
        }
        let fetching = scope.spawn(move || -> Result<u64, PreheatError> {
            let out = work_tx;
            match source {
                Source::Mysql(m) => {
                    m.fetch(tasks, bounds, whole_table && m.jobs() == 1, &out, stats);
                    if list_later {
                        let listing = list_rx.recv().expect("the list thread sends once");
                        let new: Vec<(String, Fetch)> = match &listing {
                            Ok(all) => all
                                .iter()
                                .filter(|s| !cached.contains(*s))
                                .map(|s| (s.clone(), Fetch::Full))
                                .collect(),
                            Err(_) => Vec::new(),
                        };
                        let _ = listed_tx.send(listing.map(|all| all.into_iter().collect()));
                        if !new.is_empty() {
                            fetch_bar.inc_length(new.len() as u64);
                            tracing::info!(new = new.len(), "symbols new to the cache");
                            m.fetch(new, bounds, false, &out, stats);
                        }
                    }
                    Ok(stats.rows.load(Ordering::Relaxed))
                }
                Source::File(f) => {
                    let tasks: HashMap<String, Fetch> = tasks.into_iter().collect();
                    f.fetch(&tasks, bounds, &out)
                }
            }
        });
        // The staging copy is made while the server runs the first queries:
        // two directory listings and two index reads, ~15 ms of a night's
        // serial start.
        let staging = staging.insert(Staging::begin(&opts.out, &pending)?);
        tracing::info!("staging copy ready");
        let context = Arc::new(WriteContext {
            schema: schema.clone(),
            cached: cache.dataset.clone(),
            staging: staging.view.clone(),
            footer,
            writer,
            metadata,
            cached_nulls,
            cached_bases,
            overlap_days: opts.overlap_days,
            prefetch: prefetch.clone(),
        });
        if !wanted.is_empty() {
            let view = staging.view.clone();
            scope.spawn(move || prefetch.run(wanted, &view));
        }
        for _ in 0..opts.writers.max(1) {
            let (rx, tx, context) = (work_rx.clone(), done_tx.clone(), context.clone());
            scope.spawn(move || {
                for message in rx {
                    let staging = context.staging.read().expect("staging lock");
                    let outcome = context.handle(message, &staging);
                    if tx.send(outcome).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        drop(work_rx);
        let mut apply = |outcome: Outcome,
                         keys: &mut BTreeMap<String, KeyState>,
                         pending: &mut HashSet<String>,
                         files: &mut RunFiles| {
            bar.inc(1);
            let file = kiln_contracts::index::key_file_name(outcome.symbol(), FileFormat::Parquet);
            pending.remove(&file);
            match outcome {
                Outcome::Written { .. } => files.written.insert(file),
                Outcome::Unchanged { .. } => files.unchanged.insert(file),
                Outcome::Missing { .. } | Outcome::Failed { .. } => false,
            };
            record(outcome, fetched_at, keys, summary)
        };
        let mut admission = Admission {
            list_later,
            listed: None,
            waiting: Vec::new(),
            listed_rx,
        };
        for outcome in &done_rx {
            for outcome in admission.admit(outcome)? {
                changed += apply(outcome, keys, &mut pending, &mut files);
            }
            if changed > 0 && last_publish.elapsed() >= opts.checkpoint {
                // With the lock held no writer is between writing a file
                // and sending its outcome: record every outcome sent so far,
                // so each file in the copy is in the index being published.
                let lock = staging.view.clone();
                let mut view = lock.write().expect("staging lock");
                for outcome in done_rx.try_iter() {
                    for outcome in admission.admit(outcome)? {
                        changed += apply(outcome, keys, &mut pending, &mut files);
                    }
                }
                staging.publish_locked(&mut view, keys, &files, spec, Some(&pending))?;
                tracing::info!(symbols = keys.len(), "checkpoint published");
                last_publish = Instant::now();
                changed = 0;
            }
        }
        for outcome in admission.finish()? {
            changed += apply(outcome, keys, &mut pending, &mut files);
        }
        listed = admission.listed;
        let rows = fetching.join().expect("source thread panicked")?;
        tracing::info!(rows, "fetched and written");
        summary.rows_fetched = rows;
        Ok(())
    });
    bar.finish_and_clear();
    summary.queries = stats.queries.load(Ordering::Relaxed);
    summary.retries = stats.retries.load(Ordering::Relaxed);
    result?;
    let mut staging = staging.expect("made before the run's first write");
    if changed > 0 || staging.publishes == 0 {
        staging.prune(keys)?;
        staging.publish(keys, &files, spec, None)?;
        tracing::info!("published");
    }
    summary.publishes = staging.publishes as u64;
    Ok(listed)
}

/// Which outcomes the coordinator records: every one, or — when the
/// table's symbol list is read during the run — those of symbols on it,
/// held back until it is known.
struct Admission {
    list_later: bool,
    listed: Option<HashSet<String>>,
    waiting: Vec<Outcome>,
    listed_rx: crossbeam_channel::Receiver<Result<HashSet<String>, PreheatError>>,
}

impl Admission {
    /// The outcomes to record now (possibly earlier ones that waited).
    fn admit(&mut self, outcome: Outcome) -> Result<Vec<Outcome>, PreheatError> {
        if !self.list_later {
            return Ok(vec![outcome]);
        }
        self.waiting.push(outcome);
        if self.listed.is_none() {
            match self.listed_rx.try_recv() {
                Ok(listing) => self.listed = Some(listing?),
                Err(_) => return Ok(Vec::new()),
            }
        }
        Ok(self.release())
    }

    /// After the last outcome: wait for the list, if it is still to come.
    fn finish(&mut self) -> Result<Vec<Outcome>, PreheatError> {
        if self.list_later && self.listed.is_none() {
            let listing = self
                .listed_rx
                .recv()
                .expect("the fetch thread sends the list");
            self.listed = Some(listing?);
        }
        Ok(self.release())
    }

    /// The waiting outcomes of listed symbols, in the order they came.
    fn release(&mut self) -> Vec<Outcome> {
        let Some(all) = &self.listed else {
            return Vec::new();
        };
        std::mem::take(&mut self.waiting)
            .into_iter()
            .filter(|o| all.contains(o.symbol()))
            .collect()
    }
}

/// Apply one outcome; returns 1 when the cache changed.
fn record(
    outcome: Outcome,
    fetched_at: i64,
    keys: &mut BTreeMap<String, KeyState>,
    summary: &mut Summary,
) -> usize {
    match outcome {
        Outcome::Written {
            symbol,
            entry,
            nulls,
            base,
            incremental,
            ..
        } => {
            if incremental {
                summary.fetched_incremental += 1;
            } else {
                summary.fetched_full += 1;
            }
            summary.files_written += 1;
            summary.bytes_written += entry.bytes;
            summary.rows_written += entry.rows;
            keys.insert(
                symbol,
                KeyState {
                    entry,
                    fetched_at_us: fetched_at,
                    nulls,
                    base,
                },
            );
            1
        }
        Outcome::Unchanged { symbol, .. } => {
            summary.unchanged += 1;
            match keys.get_mut(&symbol) {
                Some(state) => {
                    state.fetched_at_us = fetched_at;
                    1
                }
                None => 0,
            }
        }
        Outcome::Missing { symbol } => {
            summary.missing.push(symbol);
            0
        }
        Outcome::Failed { symbol, error } => {
            tracing::warn!(symbol, "{error}");
            summary.failed.push(FailedSymbol { symbol, error });
            0
        }
    }
}

fn progress_bar(show: bool, total: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} symbols ({per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}
