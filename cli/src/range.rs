//! Range evidence in a fetched directory: what `fetch` asked for
//! (`query.json`), the camera's signed heads it got (`heads/`), and
//! whether the fragments cover the range at both ends
//! ([`sealcam_format::coverage`]).
//!
//! ```text
//! <dir>/query.json                   device, stream, the range asked for, when,
//!                                    from which ingest
//! <dir>/heads/<signed_at:020>.sch    signed heads (docs/ref/format.md)
//! ```
//!
//! A directory without `query.json` (an older fetch, or one put together by
//! hand) is judged as a request for the whole stream up to now.

use std::collections::BTreeMap;
use std::path::Path;

use sealcam_format::coverage::{self, Coverage, End, HeadSeen, Requested, Span, Start};
use sealcam_format::head::SignedHead;
use sealcam_format::verify::{ChainReport, DeviceKeys, Failure};
use sealcam_format::ManifestHash;
use serde::{Deserialize, Serialize};

use crate::cmd::rfc3339;

/// The record of the request, beside the fragments.
pub const QUERY_FILE: &str = "query.json";
/// The directory of signed heads.
pub const HEADS_DIR: &str = "heads";
/// The largest signed head file read (a head is about 160 bytes).
pub const MAX_HEAD_FILE: u64 = 4096;
/// How many head files a directory may hold.
pub const MAX_HEADS: usize = 64;
/// A head older than this many head intervals (or fragment durations,
/// whichever is longer) at the time of the request is stale.
pub const STALE_HEAD_FRAGMENTS: u64 = 3;
/// How often a camera signs a head, as far as a verifier assumes: the
/// default of `upload.head_interval_s`.
pub const ASSUMED_HEAD_INTERVAL_NS: u64 = 10_000_000_000;

/// What `fetch` asked the ingest for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRecord {
    pub device: String,
    pub stream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_seq: Option<u64>,
    /// When fetch asked (the consumer's clock, Unix ns).
    pub asked_at_unix_ns: u64,
    /// The ingest's base URL.
    pub server: String,
}

impl QueryRecord {
    pub fn requested(&self) -> Requested {
        Requested {
            from_ns: self.from_ns,
            to_ns: self.to_ns,
            from_seq: self.from_seq,
            to_seq: self.to_seq,
            asked_at_unix_ns: self.asked_at_unix_ns,
        }
    }

    /// How the request reads in a report.
    pub fn describe(&self) -> String {
        let bound = |ns: Option<u64>, seq: Option<u64>, open: &str| match (ns, seq) {
            (Some(t), _) => rfc3339(t),
            (None, Some(s)) => format!("sequence {s}"),
            (None, None) => open.to_owned(),
        };
        format!(
            "{}/{} {} .. {}, asked {} of {}",
            self.device,
            self.stream,
            bound(self.from_ns, self.from_seq, "the stream's start"),
            bound(self.to_ns, self.to_seq, "now"),
            rfc3339(self.asked_at_unix_ns),
            self.server
        )
    }
}

/// The labels of the failures [`check`] adds.
pub const RANGE_START: &str = "range start";
pub const RANGE_END: &str = "range end";

/// Whether a failure is about the range or the heads (what is missing or
/// what the camera said), not about a fragment held: the fragments held
/// are still authentic.
pub fn is_range_failure(f: &Failure) -> bool {
    f.label == RANGE_START
        || f.label == RANGE_END
        || f.label == QUERY_FILE
        || f.label.starts_with(&format!("{HEADS_DIR}/"))
}

/// Now, Unix ns.
pub fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// Checks the heads and the range of a verified run, printing what they
/// mean; adds a failure to `report` for a forked head, a head of another
/// stream or a bad signature, and for a range not covered at either end.
pub fn check(
    query: Option<&QueryRecord>,
    heads: &[(String, Vec<u8>)],
    keys: DeviceKeys<'_>,
    report: &mut ChainReport,
) {
    let newest = check_heads(heads, keys, report);
    let requested = match query {
        Some(q) => {
            println!("requested: {}", q.describe());
            if let (Some(d), Some(s)) = (&report.device, &report.stream) {
                if d.as_str() != q.device || s.as_str() != q.stream {
                    report.failures.push(Failure {
                        label: QUERY_FILE.into(),
                        reason: format!(
                            "{}/{} was asked for, but the fragments are of {d}/{s}",
                            q.device, q.stream
                        ),
                    });
                }
            }
            q.requested()
        }
        None => {
            println!("requested: not recorded ({QUERY_FILE} absent): judged as the whole stream up to now");
            Requested {
                asked_at_unix_ns: now_unix_ns(),
                ..Requested::default()
            }
        }
    };
    let spans: Vec<Span> = report
        .verified
        .iter()
        .map(|v| Span {
            sequence: v.sequence,
            start_unix_ns: v.start_unix_ns,
            end_unix_ns: v.end_unix_ns,
            prev: v.prev,
            declared_restart: report
                .restarts
                .iter()
                .any(|r| r.first_fragment_present && r.restart.first_sequence == v.sequence),
        })
        .collect();
    let seen = newest.map(|h| HeadSeen {
        sequence: h.sequence,
        fragment_end_unix_ns: h.fragment_end_unix_ns,
        signed_at_unix_ns: h.signed_at_unix_ns,
    });
    if let Some(h) = &seen {
        report_head(h, &spans, requested.asked_at_unix_ns);
    } else {
        println!("head:      none: the camera's signed statement of its newest fragment was not fetched, so a withheld tail cannot be detected");
    }
    let Some(c) = coverage::judge(&requested, &spans, seen.as_ref()) else {
        return;
    };
    print_coverage(&c, report);
}

/// A head as the report uses it.
struct NewestHead {
    sequence: u64,
    fragment_end_unix_ns: u64,
    signed_at_unix_ns: u64,
}

/// Verifies every head; returns the newest that verified (by signed_at).
fn check_heads(
    heads: &[(String, Vec<u8>)],
    keys: DeviceKeys<'_>,
    report: &mut ChainReport,
) -> Option<NewestHead> {
    let by_seq: BTreeMap<u64, ManifestHash> = report
        .verified
        .iter()
        .map(|v| (v.sequence, v.manifest_hash))
        .collect();
    let mut newest: Option<NewestHead> = None;
    for (label, bytes) in heads {
        let label = format!("{HEADS_DIR}/{label}");
        let mut fail = |reason: String| {
            report.failures.push(Failure {
                label: label.clone(),
                reason,
            })
        };
        let signed = match SignedHead::parse(bytes) {
            Ok(h) => h,
            Err(e) => {
                fail(e.to_string());
                continue;
            }
        };
        let h = &signed.head;
        if report.device.as_ref().is_some_and(|d| *d != h.device)
            || report.stream.as_ref().is_some_and(|s| *s != h.stream)
        {
            fail(format!(
                "a head of {}/{}, not of the fragments' stream",
                h.device, h.stream
            ));
            continue;
        }
        if let Err(e) = signed.verify_with(keys) {
            fail(e);
            continue;
        }
        if let Some(held) = by_seq.get(&h.sequence) {
            if *held != h.manifest_hash {
                fail(format!(
                    "forked history: the camera signed fragment {} as manifest {}, but the fragment held has {held}",
                    h.sequence, h.manifest_hash
                ));
                continue;
            }
        }
        if newest
            .as_ref()
            .is_none_or(|n| h.signed_at_unix_ns > n.signed_at_unix_ns)
        {
            newest = Some(NewestHead {
                sequence: h.sequence,
                fragment_end_unix_ns: h.fragment_end_unix_ns,
                signed_at_unix_ns: h.signed_at_unix_ns,
            });
        }
    }
    newest
}

/// The newest head, and what its age says about the tail.
fn report_head(h: &HeadSeen, spans: &[Span], asked_at: u64) {
    println!(
        "head:      the camera's newest signed head names sequence {} (ending {}), signed {}",
        h.sequence,
        rfc3339(h.fragment_end_unix_ns),
        rfc3339(h.signed_at_unix_ns)
    );
    let duration = typical_duration(spans).max(ASSUMED_HEAD_INTERVAL_NS);
    let age = asked_at.saturating_sub(h.signed_at_unix_ns);
    if age > STALE_HEAD_FRAGMENTS.saturating_mul(duration) {
        let newest_fragment_end = spans.last().map(|s| s.end_unix_ns).unwrap_or_default();
        let why = if newest_fragment_end > h.signed_at_unix_ns.saturating_add(duration) {
            "the camera recorded after it, so the server holds its newer heads back"
        } else {
            "the camera went offline then, or the server holds its heads back"
        };
        println!(
            "head:      it was {} s old when fetched: {why}",
            age / 1_000_000_000
        );
    }
}

/// The median fragment duration, ns.
fn typical_duration(spans: &[Span]) -> u64 {
    let mut d: Vec<u64> = spans
        .iter()
        .map(|s| s.end_unix_ns.saturating_sub(s.start_unix_ns))
        .collect();
    d.sort_unstable();
    d.get(d.len() / 2).copied().unwrap_or_default()
}

fn print_coverage(c: &Coverage, report: &mut ChainReport) {
    let at = |ns: Option<u64>, seq: Option<u64>| match (ns, seq) {
        (Some(t), _) => rfc3339(t),
        (None, Some(s)) => format!("sequence {s}"),
        (None, None) => "now".to_owned(),
    };
    match c.start {
        Start::Covered {
            sequence,
            start_unix_ns,
        } => println!(
            "range:     start covered: fragment {sequence} starts {}",
            rfc3339(start_unix_ns)
        ),
        Start::ChainStart { sequence } => println!(
            "range:     start covered: fragment {sequence} is the stream's first, or the first of a declared epoch (see restart:)"
        ),
        Start::Open {
            sequence,
            start_unix_ns,
        } => println!(
            "range:     start open: the oldest fragment the server gave is {sequence} ({}), not the stream's first (older ones expired or were not offered)",
            rfc3339(start_unix_ns)
        ),
        Start::Missing {
            requested_ns,
            requested_seq,
            sequence,
            start_unix_ns,
        } => report.failures.push(Failure {
            label: RANGE_START.into(),
            reason: format!(
                "requested from {}, but the first fragment is {sequence}, starting {}: the server withheld {} (fetch again; the fragment before {sequence} must be there)",
                at(requested_ns, requested_seq),
                rfc3339(start_unix_ns),
                match (requested_seq, requested_ns) {
                    (Some(s), _) => format!("sequences {s}..={}", sequence.saturating_sub(1)),
                    (None, Some(t)) => format!("{}..{}", rfc3339(t), rfc3339(start_unix_ns)),
                    (None, None) => "what lies before it".to_owned(),
                }
            ),
        }),
    }
    match c.end {
        End::Reached {
            sequence,
            end_unix_ns,
        } => println!(
            "range:     end covered: fragment {sequence} ends {}",
            rfc3339(end_unix_ns)
        ),
        End::NewestSigned { sequence, head } => println!(
            "range:     end covered: fragment {sequence} is the newest the camera had signed a head for (head signed {})",
            rfc3339(head.signed_at_unix_ns)
        ),
        End::Unproven {
            sequence,
            end_unix_ns,
        } => println!(
            "range:     end unproven: the last fragment is {sequence} ({}); without a signed head nothing shows whether newer ones exist",
            rfc3339(end_unix_ns)
        ),
        End::Withheld {
            sequence,
            end_unix_ns,
            head,
            requested_ns,
            requested_seq,
        } => report.failures.push(Failure {
            label: RANGE_END.into(),
            reason: format!(
                "requested up to {}, fragments reach {sequence} ending {}; the camera's newest signed head names sequence {} ending {}: the server withheld sequences {}..={} ({}..{})",
                at(requested_ns, requested_seq),
                rfc3339(end_unix_ns),
                head.sequence,
                rfc3339(head.fragment_end_unix_ns),
                sequence.saturating_add(1),
                head.sequence,
                rfc3339(end_unix_ns),
                rfc3339(head.fragment_end_unix_ns)
            ),
        }),
        End::Short {
            sequence,
            end_unix_ns,
            requested_ns,
            requested_seq,
        } => report.failures.push(Failure {
            label: RANGE_END.into(),
            reason: format!(
                "requested up to {}, but the last fragment is {sequence}, ending {}: {}..{} is missing and no signed head shows the camera recorded nothing newer",
                at(requested_ns, requested_seq),
                rfc3339(end_unix_ns),
                rfc3339(end_unix_ns),
                at(requested_ns, requested_seq)
            ),
        }),
    }
}

/// Reads `query.json` from a fetched directory, if there is one.
pub fn read_query(dir: &Path) -> anyhow::Result<Option<QueryRecord>> {
    use anyhow::Context;
    let path = dir.join(QUERY_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let q = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a fetch query record", path.display()))?;
    Ok(Some(q))
}

/// Reads `heads/*.sch` from a fetched directory, by name.
pub fn read_heads(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    use anyhow::Context;
    let heads = dir.join(HEADS_DIR);
    let entries = match std::fs::read_dir(&heads) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", heads.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", heads.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".sch") {
            continue;
        }
        let path = entry.path();
        let len = entry.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        if len > MAX_HEAD_FILE {
            anyhow::bail!(
                "{} is {len} bytes, not a signed head (at most {MAX_HEAD_FILE}); remove it",
                path.display()
            );
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        out.push((name, bytes));
        if out.len() > MAX_HEADS {
            anyhow::bail!(
                "{} holds more than {MAX_HEADS} heads; keep the newest",
                heads.display()
            );
        }
    }
    out.sort();
    Ok(out)
}
