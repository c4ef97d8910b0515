//! `kiln-train fit`: the training loop — streaming minibatches, Adam, masked
//! MSE, validation every epoch, early stopping, best weights kept, a
//! checkpoint per epoch and exact resume.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::loader::{Loader, LoaderOptions};
use crate::metrics::Agreement;
use crate::model::{masked_mse, Adam, BranchLstm, ModelShape};
use crate::plan::{self, Plan, TRAIN, VAL};
use crate::rundir::{load_tensors, save_tensors, RunDir, TrainState};
use crate::scaler::Scaler;
use crate::session::{self, predict_windows};
use crate::windows::SkipCounts;

pub struct FitOptions {
    pub dataset: PathBuf,
    pub run: PathBuf,
    pub config: TrainConfig,
    pub resume: bool,
    pub force: bool,
    pub progress: bool,
    /// No per-epoch lines on stderr.
    pub quiet: bool,
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    /// Mean over targets of the validation NSE, in original units.
    pub val_nse: f64,
    pub val_rmse: f64,
    pub lr: f64,
    pub windows_per_s: f64,
    /// Share of the epoch's training time spent waiting for the loader.
    pub data_wait_share: f64,
    pub peak_rss_mib: f64,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct FitSummary {
    pub run: PathBuf,
    pub device: String,
    pub keys: usize,
    pub dropped_keys: usize,
    pub train_windows: u64,
    pub val_windows: u64,
    pub skipped: SkipCounts,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best_val_loss: f64,
    pub val_nse: f64,
    pub val_rmse: f64,
    pub stopped_early: bool,
    pub seconds: f64,
    pub peak_rss_bytes: u64,
}

impl FitSummary {
    pub fn human(&self) -> String {
        format!(
            "kiln-train: {} epochs on {} ({} keys, {} train / {} val windows, {} skipped); best epoch {}: val loss {:.4}, NSE {:.3}, RMSE {:.4}{}; {:.1} s, peak RSS {}\n  run: {}\n",
            self.epochs_run,
            self.device,
            self.keys,
            self.train_windows,
            self.val_windows,
            self.skipped.total(),
            self.best_epoch,
            self.best_val_loss,
            self.val_nse,
            self.val_rmse,
            if self.stopped_early { " (stopped early)" } else { "" },
            self.seconds,
            kiln_contracts::mem::human_bytes(self.peak_rss_bytes),
            self.run.display()
        )
    }
}

fn mix_seed(seed: u64, epoch: usize) -> i64 {
    (seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64) & 0x7fff_ffff_ffff_ffff) as i64
}

pub fn fit(opts: &FitOptions) -> Result<FitSummary> {
    let started = Instant::now();
    let cfg = &opts.config;
    cfg.validate()?;
    let run = RunDir::new(&opts.run);
    if opts.resume {
        run.require(run.state())?;
    } else if run.holds_run() {
        if !opts.force {
            return Err(TrainError::RunExists(format!(
                "{} already holds a run; pass --resume to continue it or --force to replace it",
                run.path.display()
            )));
        }
        run.clear()?;
    }
    let device = session::select_device(cfg.device)?;
    if cfg.threads > 0 {
        tch::set_num_threads(cfg.threads as i32);
    }
    let plan = Arc::new(plan::open_plan(&opts.dataset, cfg)?);
    let rules = plan::rules(cfg, true);
    let fitted = plan::fit(&plan, &rules, plan::reader_threads() * 2)?;
    let constant = fitted.scaler.constant_columns();
    if !constant.is_empty() {
        tracing::warn!(
            "constant on the training data, scaled to 0: {}",
            constant.join(", ")
        );
    }
    let scaler = Arc::new(fitted.scaler);
    let shape = ModelShape {
        features: cfg.features.len() as i64,
        attributes: cfg.attribute_features.len() as i64,
        targets: cfg.targets.len() as i64,
        hidden: cfg.hidden_size,
        layers: cfg.layers,
        attribute_hidden: cfg.attribute_hidden,
        dropout: cfg.dropout,
    };
    tch::manual_seed(mix_seed(cfg.seed, 0));
    let mut model = BranchLstm::new(shape, device);
    let mut params = model.named_parameters();
    let mut adam = Adam::new(&params, cfg.lr, cfg.clip_grad);
    let mut history: Vec<EpochMetrics> = Vec::new();
    let mut state = TrainState {
        epochs_done: 0,
        best_epoch: 0,
        // Not infinity: JSON has no infinity, and state.json must round-trip.
        best_val_loss: f64::MAX,
        epochs_without_improvement: 0,
        adam_step: 0,
        model: shape,
        finished: false,
        stopped_early: false,
    };
    // Directories, and the temp files of a killed run's atomic writes gone.
    run.create()?;
    if opts.resume {
        state = TrainState::read(&run.state())?;
        let saved = Scaler::read(&run.require(run.scaler())?)?;
        if !saved.matches(&scaler) {
            return Err(TrainError::data(
                &opts.dataset,
                "the training data differs from the run's (the refitted scaler does not match scaler.json); \
                 resume with the dataset the run started on, or start a new run",
            ));
        }
        // epochs_done 0: killed before the first epoch ended; the seeded
        // initialization above is the state to start from.
        let tensors = if state.epochs_done > 0 {
            let ckpt = run.require(run.checkpoint(state.epochs_done))?;
            let tensors = load_tensors(&ckpt)?;
            model.load_tensors(&tensors, &ckpt)?;
            Some((ckpt, tensors))
        } else {
            None
        };
        for (i, (name, _)) in params.iter().enumerate() {
            let Some((ckpt, tensors)) = &tensors else {
                break;
            };
            for (prefix, slot) in [("adam.m.", &mut adam.m[i]), ("adam.v.", &mut adam.v[i])] {
                let t = tensors.get(&format!("{prefix}{name}")).ok_or_else(|| {
                    TrainError::data(ckpt, format!("no optimizer state {prefix}{name}"))
                })?;
                tch::no_grad(|| slot.copy_(t));
            }
        }
        adam.step = state.adam_step;
        // A kill between saving a better model and committing its epoch
        // leaves model.safetensors ahead of state.json: restore the best
        // committed epoch's weights from its checkpoint.
        if state.best_epoch > 0 {
            let ckpt = run.require(run.checkpoint(state.best_epoch))?;
            let best: Vec<(String, tch::Tensor)> = load_tensors(&ckpt)?
                .into_iter()
                .filter(|(name, _)| !name.starts_with("adam."))
                .collect();
            save_tensors(&run.model(), &best, model_metadata(cfg, state.best_epoch))?;
        }
        history = read_metrics(&run.metrics())?;
        history.retain(|m| m.epoch <= state.epochs_done);
        if state.finished && cfg.epochs <= state.epochs_done {
            tracing::warn!("the run had already finished; raise --epochs to train further");
        }
        state.finished = false;
        state.stopped_early = false;
        // Record the effective config (a raised --epochs, another device).
        kiln_contracts::atomic::write_atomic(&run.config(), cfg.to_yaml().as_bytes())?;
        tracing::info!("resuming after epoch {}", state.epochs_done);
    } else {
        kiln_contracts::atomic::write_atomic(&run.config(), cfg.to_yaml().as_bytes())?;
        scaler.write(&run.scaler())?;
        // From here on the run is resumable, even if killed in epoch 1.
        state.write(&run.state())?;
    }
    let train_windows = fitted.counts.windows[TRAIN];
    let loader_opts = |part, shuffle: Option<u64>| LoaderOptions {
        part: Some(part),
        rules,
        keys_per_load: cfg.keys_per_load,
        batch_size: cfg.batch_size,
        shuffle_seed: shuffle,
        readers: plan::reader_threads(),
        with_refs: false,
    };
    let mut plot_warned = false;
    for epoch in state.epochs_done + 1..=cfg.epochs {
        if state.epochs_without_improvement >= cfg.patience {
            state.stopped_early = true;
            break;
        }
        let epoch_start = Instant::now();
        tch::manual_seed(mix_seed(cfg.seed, epoch));
        let bar = progress_bar(opts.progress, train_windows, epoch, cfg.epochs);
        let (mut loss_sum, mut loss_count, mut windows) = (0f64, 0i64, 0u64);
        let streamed = Loader::start(
            plan.clone(),
            scaler.clone(),
            loader_opts(TRAIN, Some(cfg.seed)),
            epoch as u64,
        )
        .for_each(|mb| {
            let (x, a, y) = session::to_tensors(&mb, &model, cfg.window, device);
            Adam::zero_grad(&mut params);
            let pred = model.forward(&x, &a, true);
            let (loss, count) = masked_mse(&pred, &y);
            if count > 0 {
                loss.backward();
                adam.step(&mut params);
                let l = f64::try_from(&loss).unwrap_or(f64::NAN);
                loss_sum += l * count as f64;
                loss_count += count;
            }
            windows += mb.size as u64;
            bar.inc(mb.size as u64);
            Ok(())
        })?;
        bar.finish_and_clear();
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let train_loss = loss_sum / loss_count.max(1) as f64;
        if !train_loss.is_finite() {
            return Err(TrainError::Config(format!(
                "training diverged at epoch {epoch} (loss {train_loss}); lower lr (now {}) or clip_grad",
                cfg.lr
            )));
        }
        let (val_loss, agreements) = validate(&model, &plan, &scaler, loader_opts(VAL, None))?;
        let scores: Vec<_> = agreements.iter().map(Agreement::scores).collect();
        let mean = |f: fn(&crate::metrics::Scores) -> f64| {
            scores.iter().map(f).sum::<f64>() / scores.len() as f64
        };
        let metrics = EpochMetrics {
            epoch,
            train_loss,
            val_loss,
            val_nse: mean(|s| s.nse),
            val_rmse: mean(|s| s.rmse),
            lr: cfg.lr,
            windows_per_s: windows as f64 / train_seconds,
            data_wait_share: streamed.waited.as_secs_f64() / train_seconds,
            peak_rss_mib: kiln_contracts::mem::peak_rss_bytes().unwrap_or(0) as f64
                / (1024.0 * 1024.0),
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        let improved = val_loss < state.best_val_loss;
        if improved {
            state.best_val_loss = val_loss;
            state.best_epoch = epoch;
            state.epochs_without_improvement = 0;
            save_tensors(&run.model(), &params, model_metadata(cfg, epoch))?;
        } else {
            state.epochs_without_improvement += 1;
        }
        let mut checkpoint: Vec<(String, tch::Tensor)> = params
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        for (i, (name, _)) in params.iter().enumerate() {
            checkpoint.push((format!("adam.m.{name}"), adam.m[i].shallow_clone()));
            checkpoint.push((format!("adam.v.{name}"), adam.v[i].shallow_clone()));
        }
        save_tensors(
            &run.checkpoint(epoch),
            &checkpoint,
            model_metadata(cfg, epoch),
        )?;
        // state.json is the commit point: everything it refers to (the
        // checkpoint, the metrics row) is on disk before it says so.
        history.push(metrics.clone());
        write_metrics(&run.metrics(), &history)?;
        state.epochs_done = epoch;
        state.adam_step = adam.step;
        state.write(&run.state())?;
        if let Err(e) = crate::plot::loss_chart(&run.loss_png(), &history) {
            if !plot_warned {
                tracing::warn!("cannot draw {}: {e}", run.loss_png().display());
                plot_warned = true;
            }
        }
        if !opts.quiet {
            eprintln!(
            "epoch {epoch}/{}: train loss {:.4}, val loss {:.4}, val NSE {:.3}, RMSE {:.4}, {:.0} windows/s, data wait {:.1} %, {:.1} s{}",
            cfg.epochs,
            metrics.train_loss,
            metrics.val_loss,
            metrics.val_nse,
            metrics.val_rmse,
            metrics.windows_per_s,
            100.0 * metrics.data_wait_share,
            metrics.seconds,
            if improved { " *" } else { "" }
        );
        }
    }
    if state.epochs_without_improvement >= cfg.patience && state.epochs_done < cfg.epochs {
        state.stopped_early = true;
    }
    state.finished = true;
    state.write(&run.state())?;
    let best = history
        .iter()
        .find(|m| m.epoch == state.best_epoch)
        .cloned()
        .ok_or_else(|| TrainError::Internal("no epoch was recorded".into()))?;
    let summary = FitSummary {
        run: run.path.clone(),
        device: session::device_name(device),
        keys: plan.keys.len(),
        dropped_keys: plan.dropped_keys,
        train_windows,
        val_windows: fitted.counts.windows[VAL],
        skipped: fitted
            .counts
            .skipped
            .iter()
            .fold(SkipCounts::default(), |mut a, s| {
                a.add(s);
                a
            }),
        epochs_run: state.epochs_done,
        best_epoch: state.best_epoch,
        best_val_loss: state.best_val_loss,
        val_nse: best.val_nse,
        val_rmse: best.val_rmse,
        stopped_early: state.stopped_early,
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_bytes: kiln_contracts::mem::peak_rss_bytes().unwrap_or(0),
    };
    let json = serde_json::to_vec_pretty(&summary).expect("summary serializes");
    kiln_contracts::atomic::write_atomic(&run.summary(), &json)?;
    Ok(summary)
}

fn model_metadata(cfg: &TrainConfig, epoch: usize) -> HashMap<String, String> {
    HashMap::from([
        ("format".to_owned(), "kiln-train branch-lstm".to_owned()),
        ("epoch".to_owned(), epoch.to_string()),
        ("config".to_owned(), cfg.to_yaml()),
    ])
}

/// Validation loss (scaled units, masked MSE) and per-target agreement in
/// original units.
fn validate(
    model: &BranchLstm,
    plan: &Arc<Plan>,
    scaler: &Arc<Scaler>,
    opts: LoaderOptions,
) -> Result<(f64, Vec<Agreement>)> {
    let k = scaler.targets.len();
    let mut agreements = vec![Agreement::default(); k];
    let (mut sse, mut n) = (0f64, 0u64);
    predict_windows(model, plan, scaler, opts, |mb, pred| {
        for (i, (obs, sim)) in mb.y.iter().zip(pred).enumerate() {
            if obs.is_nan() {
                continue;
            }
            let d = f64::from(*sim) - f64::from(*obs);
            sse += d * d;
            n += 1;
            let s = &scaler.targets[i % k];
            agreements[i % k].push(s.unscale(f64::from(*obs)), s.unscale(f64::from(*sim)));
        }
    })?;
    Ok((sse / n.max(1) as f64, agreements))
}

fn progress_bar(enabled: bool, len: u64, epoch: usize, epochs: usize) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "epoch {msg} [{bar:30}] {pos}/{len} windows {per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(format!("{epoch}/{epochs}"));
    bar
}

pub fn write_metrics(path: &std::path::Path, rows: &[EpochMetrics]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)
            .map_err(|e| TrainError::Internal(format!("metrics: {e}")))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| TrainError::Internal(format!("metrics: {e}")))?;
    kiln_contracts::atomic::write_atomic(path, &bytes)?;
    Ok(())
}

pub fn read_metrics(path: &std::path::Path) -> Result<Vec<EpochMetrics>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut r = csv::Reader::from_path(path).map_err(|e| TrainError::data(path, e.to_string()))?;
    r.deserialize()
        .map(|row| row.map_err(|e| TrainError::data(path, e.to_string())))
        .collect()
}
