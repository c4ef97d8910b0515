//! `kiln-train scan`: the data path alone — fit the scaler, then stream every
//! window once exactly as training would, with no model. Checks a dataset
//! against a config and measures the loader (bench/train uses it).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::config::TrainConfig;
use crate::error::Result;
use crate::loader::{Loader, LoaderOptions};
use crate::plan::{self, WindowCounts};
use crate::windows::SkipCounts;

pub struct ScanOptions {
    pub dataset: PathBuf,
    pub config: TrainConfig,
    /// Reader threads (0: all cores, as there is no model to share them with).
    pub readers: usize,
}

#[derive(Debug, Serialize)]
pub struct ScanSummary {
    pub dataset: PathBuf,
    pub keys: usize,
    pub dropped_keys: usize,
    pub counts: WindowCounts,
    pub windows: u64,
    pub skipped: SkipCounts,
    pub fit_seconds: f64,
    pub stream_seconds: f64,
    pub windows_per_s: f64,
    /// Checksum of every streamed value, so the work cannot be skipped.
    pub checksum: f64,
    pub peak_rss_bytes: u64,
}

impl ScanSummary {
    pub fn human(&self) -> String {
        let parts: Vec<String> = self
            .counts
            .windows
            .iter()
            .zip(plan::PART_NAMES)
            .map(|(n, p)| format!("{n} {p}"))
            .collect();
        format!(
            "kiln-train scan: {} keys, windows {} ({} skipped: {} missing target, {} missing input, {} date gap)\n  fit {:.2} s; stream {} windows in {:.2} s = {:.0} windows/s; peak RSS {}\n",
            self.keys,
            parts.join(" / "),
            self.skipped.total(),
            self.skipped.missing_target,
            self.skipped.missing_input,
            self.skipped.date_gap,
            self.fit_seconds,
            self.windows,
            self.stream_seconds,
            self.windows_per_s,
            kiln_contracts::mem::human_bytes(self.peak_rss_bytes)
        )
    }
}

pub fn scan(opts: &ScanOptions) -> Result<ScanSummary> {
    let cfg = &opts.config;
    cfg.validate()?;
    let readers = if opts.readers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.readers
    };
    let plan = Arc::new(plan::open_plan(&opts.dataset, cfg)?);
    let rules = plan::rules(cfg, true);
    let t0 = Instant::now();
    let fitted = plan::fit(&plan, &rules, readers)?;
    let fit_seconds = t0.elapsed().as_secs_f64();
    let scaler = Arc::new(fitted.scaler);
    let t1 = Instant::now();
    let loader_opts = LoaderOptions {
        part: None,
        rules,
        keys_per_load: cfg.keys_per_load,
        batch_size: cfg.batch_size,
        shuffle_seed: Some(cfg.seed),
        readers,
        with_refs: false,
    };
    let (mut windows, mut checksum) = (0u64, 0f64);
    let skipped = Loader::start(plan.clone(), scaler, loader_opts, 1)
        .for_each(|mb| {
            windows += mb.size as u64;
            // Touch every value the model would get.
            checksum += mb.x.iter().map(|v| f64::from(*v)).sum::<f64>();
            checksum +=
                mb.y.iter()
                    .filter(|v| !v.is_nan())
                    .map(|v| f64::from(*v))
                    .sum::<f64>();
            Ok(())
        })?
        .skipped;
    let stream_seconds = t1.elapsed().as_secs_f64();
    Ok(ScanSummary {
        dataset: opts.dataset.clone(),
        keys: plan.keys.len(),
        dropped_keys: plan.dropped_keys,
        counts: fitted.counts,
        windows,
        skipped,
        fit_seconds,
        stream_seconds,
        windows_per_s: windows as f64 / stream_seconds.max(1e-9),
        checksum,
        peak_rss_bytes: kiln_contracts::mem::peak_rss_bytes().unwrap_or(0),
    })
}
