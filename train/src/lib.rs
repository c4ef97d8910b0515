//! kiln-train: streaming LSTM training with libtorch over any keyed dataset.
//!
//! The data path lives in `kiln-train-data` (re-exported here), which has no
//! libtorch dependency; this crate adds the model ([`model`]), the training
//! loop ([`training`]), the run directory ([`rundir`]) and applying a run to
//! a dataset ([`infer`]). See docs/TRAIN.md.

pub use kiln_train_data::{
    attributes, config, error, loader, metrics, plan, scaler, scan, series, windows,
};

pub mod cli;
pub mod infer;
pub mod model;
pub mod plot;
pub mod rundir;
pub mod session;
pub mod training;

pub use config::TrainConfig;
pub use error::TrainError;
