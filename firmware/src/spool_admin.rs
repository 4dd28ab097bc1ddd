//! `sealcamd spool`: what waits in the spool, and the operator's decision
//! on fragments the ingest kept refusing (`pipeline/spool/held.rs`). Safe
//! while the daemon runs: moves are renames, and gaps are declared under
//! the spool's gap lock.

use std::fmt;

use sealcam_format::restart::RestartReason;

use crate::config::Config;
use crate::pipeline::spool::{ChainState, Held, NewEpoch, Spool, SpoolError};

/// What the spool of the configured stream holds.
#[derive(Debug)]
pub struct SpoolReport {
    pub dir: std::path::PathBuf,
    /// Fragments waiting for upload.
    pub queued: Vec<u64>,
    pub held: Vec<Held>,
    /// Gaps to be declared, signed, in the next manifest.
    pub gaps_pending: usize,
    /// Where the manifest chain stands.
    pub chain: ChainState,
    /// Signed chain restart records waiting for upload (first sequences).
    pub restarts_pending: Vec<u64>,
    /// Fragments set aside by new epochs: directory, count.
    pub abandoned: Vec<(std::path::PathBuf, usize)>,
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
        chain: spool.load_state()?,
        restarts_pending: spool
            .pending_restarts()?
            .iter()
            .map(|r| r.first_sequence)
            .collect(),
        abandoned: spool.abandoned()?,
    })
}

/// `sealcamd spool new-epoch`: begins a new epoch of the chain, signed by
/// the device key (run with the daemon stopped).
pub fn new_epoch(
    cfg: &Config,
    signer: &dyn sealcam_transport::ExternalSigner,
) -> Result<NewEpoch, SpoolError> {
    let spool = Spool::open(&cfg.spool_dir, &cfg.stream)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    // A chain that began without state is what a camera that lost its
    // storage has: the operator confirms that is what happened.
    let reason = if spool.load_state()?.began_without_state {
        RestartReason::LostState
    } else {
        RestartReason::Operator
    };
    spool.begin_epoch(signer, &cfg.device, &cfg.stream, reason, now)
}

impl fmt::Display for NewEpochReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.0.restart;
        match r.previous {
            Some(p) => writeln!(
                f,
                "new epoch begins at sequence {}; the previous one ended at sequence {} ({})",
                r.first_sequence, p.sequence, p.hash
            )?,
            None => writeln!(
                f,
                "new epoch begins at sequence {}; the previous epoch's end is unknown to this camera (its chain began without state), and the restart record says so",
                r.first_sequence
            )?,
        }
        if !self.0.abandoned.is_empty() {
            writeln!(
                f,
                "{} fragments of the chain the ingest refused are kept in {} (they cannot be uploaded)",
                self.0.abandoned.len(),
                self.0.abandoned_dir.display()
            )?;
        }
        write!(
            f,
            "the signed restart record uploads first when the daemon starts: `systemctl start sealcamd`"
        )
    }
}

/// How `sealcamd spool new-epoch` reports what it did.
pub struct NewEpochReport<'a>(pub &'a NewEpoch);

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
        writeln!(
            f,
            "chain:   next sequence {}, epoch {}{}",
            self.chain.next_sequence,
            if self.chain.epoch == 0 {
                "unknown".to_owned()
            } else {
                self.chain.epoch.to_string()
            },
            if self.chain.began_without_state {
                " (began without state: a first start, or a camera that lost its storage)"
            } else {
                ""
            }
        )?;
        for first in &self.restarts_pending {
            writeln!(
                f,
                "restart: record for the epoch at sequence {first} waits for upload"
            )?;
        }
        for (dir, n) in &self.abandoned {
            writeln!(
                f,
                "abandoned: {n} fragments of a refused chain kept in {}",
                dir.display()
            )?;
        }
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
        if self.chain.began_without_state && self.held.iter().any(|h| h.why.starts_with("409")) {
            writeln!(
                f,
                "the ingest refuses this chain, which began without state: this camera probably lost its storage and the stream exists on the ingest. Stop the daemon, run `sealcamd spool new-epoch`, start it again (docs/guide/recovery.md)"
            )?;
        }
        write!(
            f,
            "`sealcamd spool retry --sequence N` sends one again (after fixing the cause); `sealcamd spool drop --sequence N` gives it up and declares a RefusedByIngest gap, signed"
        )
    }
}
