//! `sealcam list`: what the ingest says exists, before fetching it.
//!
//! Without a stream: the streams this consumer may read. With one: its
//! fragments over a time or sequence range as runs, the holes between them
//! and the gaps their manifests declare. Everything here is the server's
//! index, which a hostile server can shape at will, so every line is
//! marked unverified: `sealcam fetch` checks the fragments themselves.

use anyhow::Context;
use sealcam_api::FragmentEntry;
use sealcam_format::GapReason;

use crate::api::{parse_stream, Api, ServerArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The stream, as DEVICE/STREAM; without it, the streams you may read.
    pub stream: Option<String>,
    #[command(flatten)]
    pub range: super::RangeArgs,
    /// Print the listing as JSON (one object per line) instead of a report.
    #[arg(long)]
    pub json: bool,
}

/// What every line of a listing is: the server's word.
const UNVERIFIED: &str = "unverified";

pub async fn run(args: Args) -> anyhow::Result<()> {
    let api = Api::connect(&args.server)?;
    let Some(stream) = &args.stream else {
        let streams = api.streams().await?;
        if streams.is_empty() && !args.json {
            println!("no stream you may read is stored on {}", args.server.server);
        }
        for s in streams {
            if args.json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!("{UNVERIFIED}  {}/{}", s.device, s.stream);
            }
        }
        return Ok(());
    };
    let (device, stream) = parse_stream(stream)?;
    let query = args.range.query()?;
    let mut entries = api
        .list(&device, &stream, &query)
        .await
        .with_context(|| format!("listing {device}/{stream}"))?;
    entries.sort_by_key(|e| e.sequence);
    if args.json {
        for e in &entries {
            println!("{}", serde_json::to_string(e)?);
        }
        return Ok(());
    }
    println!(
        "{device}/{stream} on {}: the server's index, not checked; `sealcam fetch` verifies",
        args.server.server
    );
    if entries.is_empty() {
        println!("{UNVERIFIED}  no fragment in this range");
        return Ok(());
    }
    for line in listing(&entries) {
        println!("{UNVERIFIED}  {line}");
    }
    Ok(())
}

/// A listing as report lines: runs of consecutive fragments, the sequence
/// holes between them, and the gaps the fragments declare.
pub fn listing(entries: &[FragmentEntry]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let first = &entries[i];
        for g in &first.gaps {
            lines.push(declared(first.sequence, g));
        }
        let mut j = i;
        while j + 1 < entries.len()
            && entries[j].sequence.checked_add(1) == Some(entries[j + 1].sequence)
            && entries[j + 1].gaps.is_empty()
        {
            j += 1;
        }
        let run = &entries[i..=j];
        let last = &entries[j];
        let frames: u64 = run
            .iter()
            .fold(0u64, |n, e| n.saturating_add(u64::from(e.frame_count)));
        let bytes: u64 = run.iter().fold(0u64, |n, e| n.saturating_add(e.bytes));
        let seqs = if first.sequence == last.sequence {
            format!("fragment {}", first.sequence)
        } else {
            format!(
                "fragments {}..={} ({})",
                first.sequence,
                last.sequence,
                run.len()
            )
        };
        lines.push(format!(
            "{seqs}: {} .. {}, {frames} frames, {}",
            super::rfc3339(first.start_unix_ns),
            super::rfc3339(last.end_unix_ns),
            human_bytes(bytes)
        ));
        if let Some(next) = entries.get(j + 1) {
            let missing_from = last.sequence.saturating_add(1);
            if next.sequence > missing_from && !declares(next, missing_from, next.sequence - 1) {
                lines.push(format!(
                    "hole: sequences {missing_from}..={} are not listed and no listed manifest declares why ({} .. {})",
                    next.sequence - 1,
                    super::rfc3339(last.end_unix_ns),
                    super::rfc3339(next.start_unix_ns)
                ));
            }
        }
        i = j + 1;
    }
    lines
}

/// Whether `entry`'s gaps together declare every sequence of
/// `first..=last` missing (walked by gap, not by sequence: a server's
/// listing may name any counts).
fn declares(entry: &FragmentEntry, first: u64, last: u64) -> bool {
    let mut gaps: Vec<(u64, u64)> = entry
        .gaps
        .iter()
        .filter(|g| g.sequence_count > 0)
        .map(|g| {
            (
                g.first_sequence,
                g.first_sequence.saturating_add(g.sequence_count - 1),
            )
        })
        .collect();
    gaps.sort_unstable();
    let mut next = first;
    for (a, b) in gaps {
        if a > next {
            break;
        }
        if b >= last {
            return true;
        }
        next = next.max(b.saturating_add(1));
    }
    false
}

fn declared(sequence: u64, g: &sealcam_api::GapEntry) -> String {
    let (what, who) = match GapReason::from_name(&g.reason) {
        Some(r) => (r.describe(), r.who_could_cause()),
        None => ("a reason this sealcam does not know", "unknown"),
    };
    let seqs = super::missing_sequences(g.first_sequence, g.sequence_count);
    format!(
        "declared gap (in fragment {sequence}): {} .. {}: {what} ({seqs}); could be caused by {who}",
        super::rfc3339(g.start_unix_ns),
        super::rfc3339(g.end_unix_ns)
    )
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealcam_api::GapEntry;

    fn entry(sequence: u64, gaps: Vec<GapEntry>) -> FragmentEntry {
        FragmentEntry {
            sequence,
            start_unix_ns: sequence * 2_000_000_000,
            end_unix_ns: (sequence + 1) * 2_000_000_000,
            frame_count: 60,
            bytes: 1000,
            gaps,
        }
    }

    fn gap(first: u64, count: u64) -> GapEntry {
        GapEntry {
            reason: "crash".into(),
            first_sequence: first,
            sequence_count: count,
            start_unix_ns: 0,
            end_unix_ns: 1,
        }
    }

    #[test]
    fn consecutive_fragments_are_one_run() {
        let lines = listing(&[entry(0, vec![]), entry(1, vec![]), entry(2, vec![])]);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("fragments 0..=2 (3): "), "{lines:?}");
        assert!(lines[0].contains("180 frames"), "{lines:?}");
    }

    #[test]
    fn an_unexplained_hole_is_named() {
        let lines = listing(&[entry(0, vec![]), entry(3, vec![])]);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[1].starts_with("hole: sequences 1..=2 "), "{lines:?}");
    }

    #[test]
    fn a_declared_gap_is_not_a_hole_and_starts_a_run() {
        let lines = listing(&[
            entry(0, vec![]),
            entry(3, vec![gap(1, 2)]),
            entry(4, vec![]),
        ]);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[1].starts_with("declared gap (in fragment 3)"),
            "{lines:?}"
        );
        assert!(lines[1].contains("sequences 1..=2 missing"), "{lines:?}");
        assert!(lines[2].starts_with("fragments 3..=4 (2)"), "{lines:?}");
    }

    #[test]
    fn a_listing_with_absurd_counts_answers_at_once() {
        let mut big = entry(100, vec![gap(1, u64::MAX)]);
        big.bytes = u64::MAX;
        let lines = listing(&[entry(0, vec![]), big]);
        assert!(lines[1].starts_with("declared gap"), "{lines:?}");
        assert!(!lines.iter().any(|l| l.starts_with("hole")), "{lines:?}");
        // Two gaps that together cover a hole; one that leaves a sequence.
        let covered = entry(9, vec![gap(1, 4), gap(5, 4)]);
        assert!(!listing(&[entry(0, vec![]), covered])
            .iter()
            .any(|l| l.starts_with("hole")));
        let short = entry(9, vec![gap(1, 4), gap(6, 3)]);
        assert!(listing(&[entry(0, vec![]), short])
            .iter()
            .any(|l| l.starts_with("hole")));
    }

    #[test]
    fn a_gap_of_an_unknown_reason_is_still_shown() {
        let mut g = gap(1, 1);
        g.reason = "martian".into();
        let lines = listing(&[entry(0, vec![]), entry(2, vec![g])]);
        assert!(
            lines[1].contains("a reason this sealcam does not know"),
            "{lines:?}"
        );
    }
}
