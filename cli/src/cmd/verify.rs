//! `sealcam verify`: provenance and completeness of fetched fragments.

use std::path::PathBuf;

use anyhow::Context;
use sealcam_format::verify::{ChainReport, DeviceKeys};
use sealcam_format::GapReason;
use sealcam_transport::{identity, pem};

use crate::anchor::{Anchor, AnchorArgs, TRUST_SERVER_REPORT};
use crate::fragdir::FragmentDir;

#[derive(clap::Args)]
pub struct Args {
    /// Directory written by `sealcam fetch`.
    pub dir: PathBuf,
    /// Also check that the device certificate was issued by this fleet CA.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    #[command(flatten)]
    pub anchor: AnchorArgs,
    /// Accept declared gaps of this reason that the server could have
    /// caused (`refused-by-ingest`, `spool-evicted`); without it they fail
    /// verification. Repeat for several.
    #[arg(long = "accept-gap", value_name = "REASON", value_parser = gap_reason)]
    pub accept_gaps: Vec<GapReason>,
    /// Owner-signed recipient set (from `sealcam recipients sign`): check
    /// that each fragment is wrapped to exactly the keys of the set version
    /// its manifest names. Repeat for a range that spans several versions.
    /// Needs --owner.
    #[arg(long = "recipients", value_name = "SET")]
    pub recipients: Vec<PathBuf>,
}

/// A gap reason by its name (`GapReason::name`).
pub fn gap_reason(name: &str) -> Result<GapReason, String> {
    GapReason::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = GapReason::ALL.iter().map(|r| r.name()).collect();
        format!("unknown gap reason {name:?}; one of: {}", names.join(", "))
    })
}

/// Prints the report; returns whether everything verified, with the
/// declared gaps a server could have caused failing unless their reason is
/// in `accepted`.
pub fn print_report(report: &ChainReport, accepted: &[GapReason]) -> bool {
    let (Some(first), Some(last)) = (report.verified.first(), report.verified.last()) else {
        println!("verified:  no fragment verified");
        for f in &report.failures {
            println!("FAILED:    {}: {}", f.label, f.reason);
        }
        return false;
    };
    println!(
        "stream:    device {} stream {}",
        report.device.as_ref().map(|d| d.as_str()).unwrap_or("?"),
        report.stream.as_ref().map(|s| s.as_str()).unwrap_or("?")
    );
    println!(
        "verified:  {} fragments (sequence {}..={}), {} frames, {} .. {}",
        report.verified.len(),
        first.sequence,
        last.sequence,
        report.frame_count(),
        super::rfc3339(first.start_unix_ns),
        super::rfc3339(last.end_unix_ns)
    );
    let versions: Vec<String> = report
        .recipient_set_versions
        .iter()
        .map(|v| {
            if *v == 0 {
                "0 (development list)".to_owned()
            } else {
                v.to_string()
            }
        })
        .collect();
    println!("recipients: set version {}", versions.join(", "));
    for k in &report.keys {
        let sequences = ranges(
            report
                .verified
                .iter()
                .filter(|v| v.key == *k)
                .map(|v| v.sequence),
        );
        match &k.record {
            Some(r) => println!(
                "key:       {} (roster version {}, record {} from {}; {}): fragments {sequences}",
                k.fingerprint,
                r.roster_version,
                r.index,
                super::rfc3339(r.valid_from_unix_ns),
                if r.in_tpm {
                    "TPM-resident key"
                } else {
                    "software key, no TPM evidence"
                }
            ),
            None => println!(
                "key:       {} (from the device certificate the ingest served; NOT anchored: --trust-server): fragments {sequences}",
                k.fingerprint
            ),
        }
    }
    for d in &report.declared {
        let g = &d.gap;
        let seqs = super::missing_sequences(g.first_sequence, g.sequence_count);
        println!(
            "declared:  {} .. {}: {} ({seqs}; signed in fragment {}); could be caused by {}",
            super::rfc3339(g.start_unix_ns),
            super::rfc3339(g.end_unix_ns),
            g.reason.describe(),
            d.declared_by,
            g.reason.who_could_cause()
        );
    }
    for r in &report.restarts {
        println!(
            "restart:   {} (signed by key {}{})",
            r.describe().replacen(
                &format!("at {} ns", r.restart.signed_at_unix_ns),
                &format!("at {}", super::rfc3339(r.restart.signed_at_unix_ns)),
                1
            ),
            &r.key.fingerprint[..16],
            if r.first_fragment_present {
                ""
            } else {
                "; its first fragment is not among these"
            }
        );
    }
    let unaccepted: Vec<_> = report.unaccepted(accepted).collect();
    for d in &unaccepted {
        println!(
            "GAP:       the gap declared in fragment {} ({}) is one the server could have caused; it fails verification unless you accept it with --accept-gap {}",
            d.declared_by,
            d.gap.reason.describe(),
            d.gap.reason.name()
        );
    }
    for r in accepted {
        if report.declared.iter().any(|d| d.gap.reason == *r) {
            println!(
                "accepted:  {} gaps (--accept-gap {})",
                r.describe(),
                r.name()
            );
        }
    }
    if report.gaps.is_empty() {
        println!("undeclared gaps: none");
    }
    for g in &report.gaps {
        println!(
            "GAP:       sequences {}..={} are missing and no signed manifest explains why (undeclared: deleted or withheld)",
            g.first_missing, g.last_missing
        );
    }
    for f in &report.failures {
        println!("FAILED:    {}: {}", f.label, f.reason);
    }
    let ok = report.is_ok() && unaccepted.is_empty();
    println!("result:    {}", if ok { "OK" } else { "FAILED" });
    ok
}

/// Sequence numbers, ascending, as runs: `0..=3, 7, 9..=10`.
fn ranges(sequences: impl Iterator<Item = u64>) -> String {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for s in sequences {
        match runs.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(s) => *last = s,
            _ => runs.push((s, s)),
        }
    }
    runs.iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}..={b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run(args: Args) -> anyhow::Result<bool> {
    let anchor = args.anchor.resolve()?;
    let dir = FragmentDir::read(&args.dir)?;
    if let Some(ca) = &args.ca {
        let ca_der = pem::load_certs(ca)?;
        identity::verify_issued_by(dir.device_cert()?, ca_der[0].as_ref())
            .with_context(|| format!("device certificate in {}", args.dir.display()))?;
        println!("device certificate: issued by {}", ca.display());
    }
    let mut report = verify_dir(&anchor, &dir)?;
    check_recipients(&anchor, &args.recipients, &dir, &mut report)?;
    Ok(print_report(&report, &args.accept_gaps))
}

/// With recipient sets given, checks every fragment of `dir` against them
/// (see [`crate::recipient_check`]): a mismatch becomes a failure of the
/// report, naming the fragment.
pub fn check_recipients(
    anchor: &Anchor,
    sets: &[PathBuf],
    dir: &FragmentDir,
    report: &mut ChainReport,
) -> anyhow::Result<()> {
    if sets.is_empty() {
        return Ok(());
    }
    let Anchor::Owner(owner) = anchor else {
        anyhow::bail!(
            "--recipients needs the owner's key (--owner OWNER.pub) to check the sets' signatures"
        );
    };
    let sets = crate::recipient_check::load(sets, &owner.key)?;
    let failures = crate::recipient_check::check(&sets, &dir.files);
    if failures.is_empty() {
        println!("{}", crate::recipient_check::describe(&sets));
    }
    report.failures.extend(failures);
    Ok(())
}

/// Verifies a fetched directory under the anchor, printing which one.
///
/// Then checks the range evidence (`crate::range`): the recorded query,
/// the camera's signed heads, coverage at both ends; what fails is added
/// to the report's failures.
pub fn verify_dir(anchor: &Anchor, dir: &FragmentDir) -> anyhow::Result<ChainReport> {
    let query = crate::range::read_query(&dir.dir)?;
    let heads = crate::range::read_heads(&dir.dir)?;
    Ok(match anchor {
        Anchor::Owner(owner) => {
            let roster = owner.roster_for_dir(&dir.dir)?;
            println!("{}", owner.describe(&roster));
            let mut report = dir.verify(Some(&roster))?;
            crate::range::check(
                query.as_ref(),
                &heads,
                DeviceKeys::Roster(&roster),
                &mut report,
            );
            report
        }
        Anchor::TrustServer => {
            println!("{TRUST_SERVER_REPORT}");
            let mut report = dir.verify(None)?;
            let key = dir.device_key()?;
            crate::range::check(
                query.as_ref(),
                &heads,
                DeviceKeys::Single(&key),
                &mut report,
            );
            report
        }
    })
}

#[cfg(test)]
mod tests {
    use super::ranges;

    #[test]
    fn sequences_print_as_runs() {
        assert_eq!(
            ranges([0, 1, 2, 3, 7, 9, 10].into_iter()),
            "0..=3, 7, 9..=10"
        );
        assert_eq!(ranges([5].into_iter()), "5");
        assert_eq!(
            ranges([u64::MAX - 1, u64::MAX].into_iter()),
            format!("{}..={}", u64::MAX - 1, u64::MAX)
        );
        assert_eq!(ranges(std::iter::empty()), "");
    }
}
