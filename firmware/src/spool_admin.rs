//! `sealcamd spool`: what waits in the spool, and the operator's decision
//! on fragments the ingest kept refusing (`pipeline/spool/held.rs`). Safe
//! while the daemon runs: moves are renames, and gaps are declared under
//! the spool's gap lock.

use std::fmt;

use crate::config::Config;
use crate::pipeline::spool::{Held, Spool, SpoolError};

/// What the spool of the configured stream holds.
#[derive(Debug)]
pub struct SpoolReport {
    pub dir: std::path::PathBuf,
    /// Fragments waiting for upload.
    pub queued: Vec<u64>,
    pub held: Vec<Held>,
    /// Gaps to be declared, signed, in the next manifest.
    pub gaps_pending: usize,
}

/// The spool of `cfg`'s stream.
pub fn open(cfg: &Config) -> Result<Spool, SpoolError> {
    Spool::inspect(&cfg.spool_dir, &cfg.stream)
}

/// `sealcamd spool list`.
pub fn list(cfg: &Config) -> Result<SpoolReport, SpoolError> {
    let spool = open(cfg)?;
    Ok(SpoolReport {
        dir: spool.dir().to_owned(),
        queued: spool.pending()?.iter().map(|s| s.sequence).collect(),
        held: spool.held()?,
        gaps_pending: spool.pending_gaps()?.len(),
    })
}

impl fmt::Display for SpoolReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "spool:   {}", self.dir.display())?;
        match (self.queued.first(), self.queued.last()) {
            (Some(a), Some(b)) => writeln!(
                f,
                "queued:  {} fragments ({a}..={b}), uploading",
                self.queued.len()
            )?,
            _ => writeln!(f, "queued:  none")?,
        }
        writeln!(
            f,
            "gaps:    {} to declare in the next manifest",
            self.gaps_pending
        )?;
        if self.held.is_empty() {
            return write!(f, "held:    none");
        }
        writeln!(
            f,
            "held:    {} fragments the ingest kept refusing; no gap is declared for them until you decide:",
            self.held.len()
        )?;
        for h in &self.held {
            writeln!(f, "  {}  {}", h.sequence, h.why)?;
        }
        write!(
            f,
            "`sealcamd spool retry --sequence N` sends one again (after fixing the cause); `sealcamd spool drop --sequence N` gives it up and declares a RefusedByIngest gap, signed"
        )
    }
}
