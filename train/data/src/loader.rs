//! The streaming data path: key batches read on a background thread (one
//! batch ahead of the model), windows built on the fly and shuffled across
//! the keys of a batch, minibatches assembled on a second thread.
//!
//! Memory is bounded by the batch sizes: at most three key batches (being
//! read, queued, being cut into minibatches) and a few minibatches exist at
//! once, whatever the size of the dataset.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, TrainError};
use crate::plan::Plan;
use crate::scaler::Scaler;
use crate::series::{read_series, scale_row_major};
use crate::windows::{valid_ends, SkipCounts, WindowRules};

/// Minibatches queued between the assembler and the model.
const QUEUED_MINIBATCHES: usize = 8;

#[derive(Debug, Clone)]
pub struct LoaderOptions {
    /// Which part's windows (`None`: all windows of every key).
    pub part: Option<usize>,
    pub rules: WindowRules,
    pub keys_per_load: usize,
    pub batch_size: usize,
    /// Shuffle keys and windows with this seed; `None` keeps key/date order.
    pub shuffle_seed: Option<u64>,
    /// Threads reading key files of one batch.
    pub readers: usize,
    /// Record (key, date) of every window, for predict/eval.
    pub with_refs: bool,
}

/// Where a window comes from: the dataset entry and the date of its last step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowRef {
    pub entry: u32,
    pub date: i64,
}

/// Model input for `size` windows: `x` is `[size × window × features]`,
/// `attributes` `[size × attributes]`, `y` `[size × targets]` (scaled, NaN
/// where a target is missing).
#[derive(Debug, Default)]
pub struct MiniBatch {
    pub size: usize,
    pub x: Vec<f32>,
    pub attributes: Vec<f32>,
    pub y: Vec<f32>,
    pub refs: Vec<WindowRef>,
    /// Unscaled targets `[size × targets]` (with refs only), NaN = missing.
    pub observed: Vec<f64>,
}

/// One key's rows, scaled, row-major; missing inputs already replaced by 0
/// (the training mean) — windows that must not see them were skipped.
struct ScaledSeries {
    entry: u32,
    dates: Vec<i64>,
    x: Vec<f32>,
    y: Vec<f32>,
    /// Unscaled targets, row-major (with refs only).
    y_raw: Vec<f64>,
    attributes: Vec<f32>,
}

struct KeyBatch {
    series: Vec<ScaledSeries>,
    /// (series index, end row) of every usable window.
    windows: Vec<(u32, u32)>,
    skipped: SkipCounts,
}

pub enum Item {
    Batch(MiniBatch),
    /// Sent once, after the last minibatch.
    Done {
        skipped: SkipCounts,
    },
}

pub struct Loader {
    rx: Receiver<Result<Item>>,
    threads: Vec<JoinHandle<()>>,
}

impl Loader {
    pub fn start(plan: Arc<Plan>, scaler: Arc<Scaler>, opts: LoaderOptions, epoch: u64) -> Self {
        let mut keys = plan.keys_of(opts.part);
        if let Some(seed) = opts.shuffle_seed {
            keys.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(seed, epoch, u64::MAX)));
        }
        let (batch_tx, batch_rx) = sync_channel::<Result<KeyBatch>>(1);
        let (item_tx, item_rx) = sync_channel::<Result<Item>>(QUEUED_MINIBATCHES);
        let reader = {
            let (plan, scaler, opts) = (plan.clone(), scaler.clone(), opts.clone());
            std::thread::Builder::new()
                .name("kiln-reader".into())
                .spawn(move || {
                    for chunk in keys.chunks(opts.keys_per_load) {
                        let batch = read_key_batch(&plan, &scaler, &opts, chunk);
                        let failed = batch.is_err();
                        if batch_tx.send(batch).is_err() || failed {
                            return;
                        }
                    }
                })
                .expect("spawn reader thread")
        };
        let assembler = std::thread::Builder::new()
            .name("kiln-batcher".into())
            .spawn(move || {
                let mut skipped = SkipCounts::default();
                for (index, batch) in batch_rx.into_iter().enumerate() {
                    let mut batch = match batch {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = item_tx.send(Err(e));
                            return;
                        }
                    };
                    skipped.add(&batch.skipped);
                    if let Some(seed) = opts.shuffle_seed {
                        let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, epoch, index as u64));
                        batch.windows.shuffle(&mut rng);
                    }
                    for chunk in batch.windows.chunks(opts.batch_size) {
                        let mb = assemble(&batch.series, chunk, &opts);
                        if item_tx.send(Ok(Item::Batch(mb))).is_err() {
                            return;
                        }
                    }
                }
                let _ = item_tx.send(Ok(Item::Done { skipped }));
            })
            .expect("spawn batcher thread");
        Self {
            rx: item_rx,
            threads: vec![reader, assembler],
        }
    }

    /// The next item; blocks while the background threads catch up.
    pub fn recv(&mut self) -> Option<Result<Item>> {
        self.rx.recv().ok()
    }

    /// Hand every minibatch to `each` until the last; stops at the first
    /// error, the loader's or `each`'s.
    pub fn for_each(mut self, mut each: impl FnMut(MiniBatch) -> Result<()>) -> Result<Streamed> {
        let mut waited = Duration::ZERO;
        loop {
            let wait_start = Instant::now();
            let item = self.recv();
            waited += wait_start.elapsed();
            match item {
                Some(Ok(Item::Batch(mb))) => each(mb)?,
                Some(Ok(Item::Done { skipped })) => return Ok(Streamed { skipped, waited }),
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(TrainError::Internal(
                        "the loader stopped without finishing".into(),
                    ))
                }
            }
        }
    }
}

/// What [`Loader::for_each`] saw besides the minibatches.
#[derive(Debug, Clone, Copy)]
pub struct Streamed {
    pub skipped: SkipCounts,
    /// Time spent blocked waiting for the next minibatch.
    pub waited: Duration,
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Dropping the receiver makes the threads' sends fail and return.
        let (_tx, rx) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, rx));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn mix(seed: u64, epoch: u64, index: u64) -> u64 {
    // SplitMix64's finalizer over the three inputs: distinct streams per
    // (seed, epoch, batch) without correlated seeds.
    let mut z = seed
        ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn read_key_batch(
    plan: &Plan,
    scaler: &Scaler,
    opts: &LoaderOptions,
    keys: &[usize],
) -> Result<KeyBatch> {
    let read_one = |entry: usize| -> Result<(ScaledSeries, Vec<u32>, SkipCounts)> {
        let raw = read_series(&plan.ds, entry, &plan.columns)?;
        let flags = raw.flags();
        let rows = plan.end_rows(entry, &raw.dates, opts.part);
        let (mut ends, mut skipped) = (Vec::new(), SkipCounts::default());
        valid_ends(
            &opts.rules,
            &raw.dates,
            &flags,
            rows,
            &mut ends,
            &mut skipped,
        );
        let mut x = scale_row_major(&raw.features, &scaler.features);
        x.iter_mut().filter(|v| v.is_nan()).for_each(|v| *v = 0.0);
        let y = scale_row_major(&raw.targets, &scaler.targets);
        let y_raw = if opts.with_refs {
            (0..raw.rows())
                .flat_map(|i| raw.targets.iter().map(move |c| c[i]))
                .collect()
        } else {
            Vec::new()
        };
        let attributes = plan.raw_attributes[entry]
            .iter()
            .zip(&scaler.attributes)
            .map(|(v, s)| if v.is_nan() { 0.0 } else { s.scale(*v) })
            .collect();
        let series = ScaledSeries {
            entry: entry as u32,
            dates: raw.dates,
            x,
            y,
            y_raw,
            attributes,
        };
        Ok((series, ends, skipped))
    };
    let readers = opts.readers.clamp(1, keys.len().max(1));
    let per = keys.len().div_ceil(readers).max(1);
    let parts: Vec<Result<Vec<_>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = keys
            .chunks(per)
            .map(|c| {
                scope.spawn(move || c.iter().map(|&e| read_one(e)).collect::<Result<Vec<_>>>())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reader panicked"))
            .collect()
    });
    let mut batch = KeyBatch {
        series: Vec::with_capacity(keys.len()),
        windows: Vec::new(),
        skipped: SkipCounts::default(),
    };
    for part in parts {
        for (series, ends, skipped) in part? {
            let i = batch.series.len() as u32;
            batch.windows.extend(ends.into_iter().map(|e| (i, e)));
            batch.skipped.add(&skipped);
            batch.series.push(series);
        }
    }
    Ok(batch)
}

fn assemble(series: &[ScaledSeries], windows: &[(u32, u32)], opts: &LoaderOptions) -> MiniBatch {
    let t = opts.rules.window;
    let mut mb = MiniBatch {
        size: windows.len(),
        ..MiniBatch::default()
    };
    for &(s, e) in windows {
        let s = &series[s as usize];
        let e = e as usize;
        let rows = s.dates.len();
        let f = s.x.len() / rows;
        let k = s.y.len() / rows;
        mb.x.extend_from_slice(&s.x[(e + 1 - t) * f..(e + 1) * f]);
        mb.y.extend_from_slice(&s.y[e * k..(e + 1) * k]);
        mb.attributes.extend_from_slice(&s.attributes);
        if opts.with_refs {
            mb.observed.extend_from_slice(&s.y_raw[e * k..(e + 1) * k]);
            mb.refs.push(WindowRef {
                entry: s.entry,
                date: s.dates[e],
            });
        }
    }
    mb
}
