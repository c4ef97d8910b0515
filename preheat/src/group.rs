//! What a source hands to the writers: one symbol's fetched rows at a time.

use arrow::array::RecordBatch;

use crate::plan::Fetch;

/// One symbol's rows in the cache's schema, dates ascending.
#[derive(Debug)]
pub struct Group {
    pub symbol: String,
    pub fetch: Fetch,
    pub batch: RecordBatch,
}

#[derive(Debug)]
pub enum Message {
    Group(Group),
    /// The source could not deliver this symbol (after its retries).
    Failed {
        symbol: String,
        error: String,
    },
}

pub type Sender = crossbeam_channel::Sender<Message>;
