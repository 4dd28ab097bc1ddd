//! Event marks in fetched fragments: found by opening each verified
//! fragment's events record ([`sealcam_format::events`]) with the consumer
//! key, numbered in recording order, for `sealcam events` and
//! `sealcam decrypt --from-event`.

use anyhow::Context;
use sealcam_format::events::EventMark;
use sealcam_format::verify::ChainReport;
use sealcam_format::{ConsumerSecretKey, SealedFragment};

use crate::fragdir::FragmentDir;

/// One mark, as found.
#[derive(Clone, Debug)]
pub struct FoundMark {
    /// From 1, in recording order.
    pub number: usize,
    /// The fragment it was sealed in.
    pub sequence: u64,
    pub mark: EventMark,
    /// Its wall-clock time: the fragment's start plus the mark's offset
    /// from the fragment's first frame.
    pub unix_ns: u64,
    /// Its offset from the fragment's first frame.
    pub offset_ns: u64,
}

/// What the fragments say about events.
#[derive(Debug, Default)]
pub struct Found {
    pub marks: Vec<FoundMark>,
    /// Verified fragments with an events record (the camera marks events).
    pub with_record: usize,
    /// Marks the camera could not fit into their fragments.
    pub dropped: u64,
}

/// Opens every verified fragment of `report` (from `dir`) with `key` and
/// collects the marks of their events records.
pub fn find(
    report: &ChainReport,
    dir: &FragmentDir,
    key: &ConsumerSecretKey,
) -> anyhow::Result<Found> {
    let mut found = Found::default();
    for v in &report.verified {
        let bytes = dir
            .files
            .iter()
            .find(|(n, _)| *n == v.label)
            .map(|(_, b)| b.as_slice())
            .context("fragment vanished between verify and reading its events")?;
        let frag = SealedFragment::parse(bytes)?;
        let opened = frag
            .open(key)
            .with_context(|| format!("fragment {}", v.label))?;
        let Some(events) = opened.events else {
            continue;
        };
        found.with_record += 1;
        found.dropped += u64::from(events.dropped);
        let first_pts = opened.frames.first().map_or(0, |f| f.pts_ns);
        for mark in events.marks {
            let offset_ns = mark.at_ns.saturating_sub(first_pts);
            found.marks.push(FoundMark {
                number: found.marks.len() + 1,
                sequence: v.sequence,
                unix_ns: frag.manifest.start_unix_ns.saturating_add(offset_ns),
                offset_ns,
                mark,
            });
        }
    }
    Ok(found)
}
