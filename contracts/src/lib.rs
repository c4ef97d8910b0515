//! On-disk contracts shared by every Kiln stage.
//!
//! Stages never import each other; they meet only through files. This crate is
//! the single definition of those files:
//!
//! * [`keys`] — how a key (a river segment id, a stock symbol) becomes a file
//!   name that can never escape its directory, reversibly.
//! * [`append`] — new rows at the end of a key file without re-encoding it.
//! * [`atomic`] — temp + fsync + rename for files, and staging directories that
//!   appear complete or not at all.
//! * [`direct`] — writing whole files past the page cache (O_DIRECT).
//! * [`owned`] — a stage's own output directory: owner, run lock, siblings.
//! * [`types`] — the column types a keyed dataset may hold.
//! * [`manifest`], [`index`], [`dataset`] — the keyed-dataset directory:
//!   `_dataset.json`, `_index.parquet`, one file per key.
//! * [`dates`] — parsing the date layouts users' exports contain.
//! * [`mem`] — peak resident memory of this process, for stage summaries, and
//!   the adaptive memory budget stages size their chunks from.
//!
//! The format is documented for humans in `docs/CONTRACTS.md`.

pub mod append;
pub mod atomic;
pub mod dataset;
pub mod dates;
mod decode;
pub mod direct;
mod encode;
pub mod error;
pub mod index;
pub mod keys;
pub mod logging;
pub mod manifest;
pub mod mem;
pub mod owned;
pub mod rewrite;
pub mod types;
pub mod writeback;

pub use dataset::KeyedDataset;
pub use error::ContractError;
pub use index::IndexEntry;
pub use manifest::{FileFormat, Manifest};
pub use types::ColumnType;
