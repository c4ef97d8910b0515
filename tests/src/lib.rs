//! Deterministic synthetic data shared by `make demo`, the tests and the
//! benchmarks, so that all three exercise the same shapes of data.
//!
//! The keyed table imitates a hydrology export: `N keys × D days`, written
//! date-major (every key interleaved with every other, as a date-by-date export
//! is), `F` smooth seasonal features with autocorrelated noise, and sparse
//! targets that are a known function of recent inputs plus a static attribute
//! — so a model trained on it has something real to learn.
//!
//! [`klines`] imitates a stock kline table (`stock_kline_data`) for
//! kiln-preheat and kiln-featurize, as a CSV dump or, through
//! [`kline_mysql`], a MySQL/MariaDB table.

pub mod dataset;
pub mod keyed;
pub mod kline_dataset;
pub mod kline_mysql;
pub mod klines;
pub mod rng;

pub use keyed::{KeyStyle, KeyedSpec, Row};
