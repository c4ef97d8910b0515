//! kiln-train's data path, free of libtorch: what the model is fed.
//!
//! [`plan`] decides which keys and rows a run reads (split, attributes) and
//! fits the [`scaler`] in one streaming pass; [`loader`] reads keys a batch at
//! a time through the dataset's index, builds [`windows`] on the fly and
//! shuffles them, so memory depends on the batch sizes, not on the data.
//! Kept apart from the model so that it builds, tests and is benchmarked
//! without libtorch's ~400 MiB of shared libraries (bench/train).

pub mod attributes;
pub mod config;
pub mod error;
pub mod loader;
pub mod metrics;
pub mod plan;
pub mod scaler;
pub mod scan;
pub mod series;
pub mod windows;

pub use config::TrainConfig;
pub use error::TrainError;
