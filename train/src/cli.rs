//! Command line: `kiln-train fit | eval | predict | scan`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{DeviceChoice, GapPolicy, MissingAttributes, SplitSpec, TrainConfig};
use crate::error::{Result, TrainError};
use crate::infer::Subset;

const EXAMPLES: &str = "\
Examples:
  # train on a kiln-split dataset with static attributes
  kiln-train fit data/split --run runs/lstm1 --config train.yaml
  kiln-train fit data/split --run runs/lstm1 --features feat_01,feat_02,feat_03 \\
      --targets target_1 --attributes attributes.csv \\
      --attribute-features area_km2,slope --epochs 20 --window 10
  # continue a stopped or finished run (here: up to 40 epochs)
  kiln-train fit data/split --run runs/lstm1 --resume --epochs 40
  # scores per key, and predictions as parquet
  kiln-train eval runs/lstm1 data/split --subset val
  kiln-train predict runs/lstm1 data/split --out preds.parquet
  # check a dataset against a config and time the loader, no model
  kiln-train scan data/split --config train.yaml

Exit status: 0 ok, 1 failure (I/O, libtorch), 2 usage, 3 bad config or data,
4 the run directory already holds a run (use --resume or --force).
Logs go to stderr (-v, RUST_LOG); --json prints the summary on stdout.";

#[derive(Debug, Parser)]
#[command(name = "kiln-train", version, about = "Streaming LSTM training with libtorch over any Kiln keyed dataset, memory flat as data grows", after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print the summary as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// No human summary or per-epoch lines on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model; writes the run directory (docs/TRAIN.md).
    Fit(FitArgs),
    /// NSE, KGE, RMSE and MAE per key and overall for a trained run.
    Eval(ApplyArgs),
    /// Predictions as parquet: key, date, prediction, observed.
    Predict(ApplyArgs),
    /// Fit the scaler and stream every window once without a model.
    Scan(ScanArgs),
}

#[derive(Debug, Args)]
pub struct FitArgs {
    /// Keyed dataset directory (kiln-split, kiln-featurize, kiln-preheat output).
    pub dataset: PathBuf,
    /// Run directory to write.
    #[arg(long)]
    pub run: PathBuf,
    /// Continue the run in --run from its last checkpoint (its config.yaml is
    /// used; only --epochs, --patience, --device and --threads may change).
    #[arg(long)]
    pub resume: bool,
    /// Replace a run that is already in --run.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    pub dataset: PathBuf,
    /// Threads reading key files (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub readers: usize,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Run directory written by `kiln-train fit`.
    pub run: PathBuf,
    /// Keyed dataset to apply the model to.
    pub dataset: PathBuf,
    /// Windows to use: all, or the train/val/test part of the run's split.
    #[arg(long, value_enum, default_value_t = Subset::All)]
    pub subset: Subset,
    /// Output file (default: RUN/eval.csv or RUN/predictions.parquet).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Attributes table to use instead of the run's (for new keys).
    #[arg(long)]
    pub attributes: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,
    #[arg(long)]
    pub batch_size: Option<usize>,
}

/// Every key of the YAML config, as a flag that overrides it.
#[derive(Debug, Args, Default)]
pub struct ConfigArgs {
    /// YAML training config (docs/TRAIN.md); flags below override its keys.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    #[arg(long, value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    #[arg(long, value_delimiter = ',')]
    pub targets: Option<Vec<String>>,
    /// Static attributes table (CSV or parquet), one row per key.
    #[arg(long)]
    pub attributes: Option<PathBuf>,
    #[arg(long, value_delimiter = ',')]
    pub attribute_features: Option<Vec<String>>,
    #[arg(long)]
    pub attribute_key: Option<String>,
    #[arg(long, value_enum)]
    pub missing_attributes: Option<MissingAttributes>,
    #[arg(long)]
    pub window: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub keys_per_load: Option<usize>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub patience: Option<usize>,
    #[arg(long)]
    pub hidden_size: Option<i64>,
    #[arg(long)]
    pub layers: Option<i64>,
    #[arg(long)]
    pub dropout: Option<f64>,
    #[arg(long)]
    pub attribute_hidden: Option<i64>,
    #[arg(long)]
    pub clip_grad: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,
    #[arg(long, value_enum)]
    pub input_gaps: Option<GapPolicy>,
    /// Largest date step inside a window (days for dates); 0 = no limit.
    #[arg(long)]
    pub max_step: Option<i64>,
    /// key:0.8,0.2 | time:0.6,0.2,0.2 | time:FIRST..LAST,FIRST..LAST[,FIRST..]
    #[arg(long)]
    pub split: Option<SplitSpec>,
    #[arg(long)]
    pub threads: Option<usize>,
}

impl ConfigArgs {
    /// The config file (or `base`), with every given flag applied.
    pub fn resolve(&self, base: Option<TrainConfig>) -> Result<TrainConfig> {
        let mut c = match (&self.config, base) {
            (_, Some(b)) => b,
            (Some(path), None) => TrainConfig::read(path)?,
            (None, None) => TrainConfig::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = v.clone(); } )* };
        }
        set!(
            features,
            targets,
            attribute_features,
            missing_attributes,
            window,
            batch_size,
            keys_per_load,
            epochs,
            lr,
            patience,
            hidden_size,
            layers,
            dropout,
            attribute_hidden,
            clip_grad,
            seed,
            device,
            input_gaps,
            split,
            threads
        );
        if let Some(a) = &self.attributes {
            c.attributes = Some(a.clone());
        }
        if let Some(k) = &self.attribute_key {
            c.attribute_key = Some(k.clone());
        }
        if let Some(s) = self.max_step {
            c.max_step = (s > 0).then_some(s);
        }
        Ok(c)
    }
}

impl FitArgs {
    pub fn into_options(self, progress: bool, quiet: bool) -> Result<crate::training::FitOptions> {
        let config = if self.resume {
            let run = crate::rundir::RunDir::new(&self.run);
            let saved = TrainConfig::read(&run.require(run.config())?)?;
            if self.config.config.is_some() {
                return Err(TrainError::Config(
                    "--resume uses the run's config.yaml; drop --config".into(),
                ));
            }
            let wanted = self.config.resolve(Some(saved.clone()))?;
            let comparable = |c: &TrainConfig| TrainConfig {
                epochs: 0,
                patience: 0,
                device: DeviceChoice::Auto,
                threads: 0,
                ..c.clone()
            };
            if comparable(&wanted) != comparable(&saved) {
                return Err(TrainError::Config(
                    "only --epochs, --patience, --device and --threads may change on --resume; \
                     start a new run to change anything else"
                        .into(),
                ));
            }
            wanted
        } else {
            self.config.resolve(None)?
        };
        Ok(crate::training::FitOptions {
            dataset: self.dataset,
            run: self.run,
            config,
            resume: self.resume,
            force: self.force,
            progress,
            quiet,
        })
    }
}

impl ApplyArgs {
    pub fn into_options(self) -> crate::infer::ApplyOptions {
        crate::infer::ApplyOptions {
            run: self.run,
            dataset: self.dataset,
            subset: self.subset,
            out: self.out,
            attributes: self.attributes,
            device: self.device,
            batch_size: self.batch_size,
        }
    }
}
