//! The benchmark report (`bench-report`): the statistics, verdicts and
//! tables of `scripts/bench`, `scripts/bench-ingest` and
//! `scripts/bench-camera`, computed from the raw measurements the scripts
//! take (the scripts start the servers and processes; this does the sums).
//!
//! ```text
//! stats.rs     medians with min and max, percentiles, shares
//! goal.rs      goals (at least / at most) and verdicts
//! table.rs     the one results table: rows to a file, Markdown at the end
//! record.rs    one run's raw measurements as key=value words
//! parse.rs     figures printed by openssl speed and criterion
//! system.rs    CPU and memory counters from /proc, spool sizes
//! sealing.rs   scripts/bench: sealing against openssl, TPM signature time
//! ingest.rs    scripts/bench-ingest: throughput against nginx, ack latency
//! camera.rs    scripts/bench-camera: CPU, memory, drain, wear, TPM
//! latency.rs   glass-to-durable latency from the ingest's key objects
//! ```

pub mod camera;
pub mod goal;
pub mod ingest;
pub mod latency;
pub mod parse;
pub mod record;
pub mod sealing;
pub mod stats;
pub mod system;
pub mod table;

use std::path::PathBuf;

pub use goal::{Goal, Verdict};
pub use record::Record;
pub use stats::Spread;
pub use table::Row;

/// What keeps a figure from being computed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("measurement {key} is missing")]
    Missing { key: String },
    #[error("measurement {key} is {value:?}, not a number")]
    NotANumber { key: String, value: String },
    #[error("no values for {what}")]
    NoValues { what: &'static str },
    #[error("{what} not found in the tool's output")]
    NotInOutput { what: &'static str },
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("decoding the key object {path}")]
    Format {
        path: PathBuf,
        #[source]
        source: sealcam_format::FormatError,
    },
}

/// The spread of `values`, or an error naming `what` had none.
pub fn spread(values: &[f64], what: &'static str) -> Result<Spread, ReportError> {
    Spread::of(values).ok_or(ReportError::NoValues { what })
}

/// Each record's number at `key`.
pub fn nums(records: &[Record], key: &str) -> Result<Vec<f64>, ReportError> {
    records.iter().map(|r| r.num(key)).collect()
}
