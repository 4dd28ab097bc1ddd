//! Linking each run (epoch) of an instance's trail to the run before it.
//!
//! The first record of every epoch is an `epoch-start` record whose `link`
//! names the previous epoch's last sealed segment: its instance, epoch,
//! segment number and the SHA-256 of the segment's exact bytes (`null` for
//! the first run of an instance). Deleting a whole run, or the tail of one,
//! then leaves a link that names what is no longer there, and the verifier
//! reports it ([`check_links`]). What no later run names (the newest
//! segments) is covered by an exported head (`head.rs`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Record;
use crate::store::{Store, StoreError};

/// The action of the record that begins every epoch.
pub const EPOCH_START: &str = "epoch-start";

/// What an `epoch-start` record names: the previous run's last sealed
/// segment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub instance: String,
    pub epoch: u64,
    pub segment: u64,
    /// SHA-256 (hex) of the segment object's bytes.
    pub hash: String,
}

/// The SHA-256 (hex) of a segment object's bytes, as links and heads name it.
pub fn segment_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The newest sealed segment of `instance` in the store, if any: the link
/// a new epoch begins with. Lists the instance's epochs, then only the
/// newest one's segments (not the whole trail).
pub async fn newest_segment(store: &Store, instance: &str) -> Result<Option<Link>, StoreError> {
    let mut epochs: Vec<u64> = store
        .list_children(&format!("audit/{instance}"))
        .await?
        .iter()
        .filter_map(|e| e.as_str().parse().ok())
        .collect();
    epochs.sort_unstable();
    let mut newest: Option<(u64, u64, String)> = None;
    // Newest first; an epoch with no segment left passes to the one before.
    for epoch in epochs.into_iter().rev() {
        for l in store.list(&format!("audit/{instance}/{epoch:020}")).await? {
            let Some((e, segment)) = parse_segment_path(&l.path, instance) else {
                continue;
            };
            if newest
                .as_ref()
                .is_none_or(|(ne, s, _)| (e, segment) > (*ne, *s))
            {
                newest = Some((e, segment, l.path));
            }
        }
        if newest.is_some() {
            break;
        }
    }
    let Some((epoch, segment, path)) = newest else {
        return Ok(None);
    };
    let Some(bytes) = store.read(&path).await? else {
        return Err(StoreError::Damaged {
            path,
            reason: "the newest audit segment vanished while it was read".into(),
        });
    };
    Ok(Some(Link {
        instance: instance.to_owned(),
        epoch,
        segment,
        hash: segment_hash(&bytes),
    }))
}

/// `audit/<instance>/<epoch>/<segment>.jsonl` → (epoch, segment).
pub fn parse_segment_path(path: &str, instance: &str) -> Option<(u64, u64)> {
    let rest = path.strip_prefix("audit/")?.strip_prefix(instance)?;
    let mut parts = rest.strip_prefix('/')?.split('/');
    let epoch = parts.next()?.parse().ok()?;
    let segment = parts.next()?.strip_suffix(".jsonl")?.parse().ok()?;
    parts.next().is_none().then_some((epoch, segment))
}

/// What the verifier knows of one epoch to check the links between runs.
#[derive(Debug)]
pub struct EpochEnd {
    pub epoch: u64,
    /// The first record, when segment 0 is there and verified.
    pub first: Option<Record>,
    /// The epoch's last segment present, and its hash.
    pub last: Option<(u64, String)>,
}

/// Checks that each epoch of one instance (in ascending order) begins by
/// naming the one before it exactly. Returns, per epoch, its problems.
///
/// Epochs written before runs were linked (no `epoch-start` record) are
/// accepted only before the first linked one, which then names the last of
/// them; after it, every epoch must be linked (an unlinked one cannot be
/// forged without the audit key, so none can appear later).
pub fn check_links(instance: &str, epochs: &[EpochEnd]) -> Vec<Vec<String>> {
    let mut out = Vec::with_capacity(epochs.len());
    let mut before: Option<&EpochEnd> = None;
    let mut linked = false;
    for e in epochs {
        let mut problems = Vec::new();
        if let Some(first) = &e.first {
            if first.action == EPOCH_START {
                linked = true;
                link_problem(
                    instance,
                    e.epoch,
                    first.link.as_ref(),
                    before,
                    &mut problems,
                );
            } else if linked {
                problems.push(format!(
                    "epoch {} does not begin with an {EPOCH_START} record naming the run before it",
                    e.epoch
                ));
            }
            // Otherwise written before runs were linked.
        }
        out.push(problems);
        before = Some(e);
    }
    out
}

fn link_problem(
    instance: &str,
    epoch: u64,
    link: Option<&Link>,
    before: Option<&EpochEnd>,
    problems: &mut Vec<String>,
) {
    let (link, before) = match (link, before) {
        (None, None) => return,
        (None, Some(b)) => {
            problems.push(format!(
                "epoch {epoch} says it is the first run of {instance}, but epoch {} precedes it",
                b.epoch
            ));
            return;
        }
        (Some(l), None) => {
            problems.push(format!(
                "epoch {epoch} follows epoch {} (up to segment {}), which is missing: a whole run was deleted",
                l.epoch, l.segment
            ));
            return;
        }
        (Some(l), Some(b)) => (l, b),
    };
    if link.instance != instance {
        problems.push(format!(
            "epoch {epoch} names instance {:?}, not {instance:?}",
            link.instance
        ));
    } else if link.epoch > before.epoch {
        problems.push(format!(
            "epoch {epoch} follows epoch {} (up to segment {}), which is missing: a whole run was deleted",
            link.epoch, link.segment
        ));
    } else if link.epoch < before.epoch {
        problems.push(format!(
            "epoch {epoch} follows epoch {}, but epoch {} lies between them (inserted)",
            link.epoch, before.epoch
        ));
    } else {
        match &before.last {
            None => problems.push(format!(
                "epoch {epoch} follows epoch {} up to segment {}, of which nothing is left",
                link.epoch, link.segment
            )),
            Some((last, _)) if *last < link.segment => problems.push(format!(
                "epoch {} ends at segment {last}, but the run after it saw segment {}: its tail was removed",
                link.epoch, link.segment
            )),
            Some((last, _)) if *last > link.segment => problems.push(format!(
                "epoch {} has segments after {}, the last one the run after it saw",
                link.epoch, link.segment
            )),
            Some((_, hash)) if *hash != link.hash => problems.push(format!(
                "epoch {} segment {} is not the one the run after it saw (changed)",
                link.epoch, link.segment
            )),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(epoch: u64, first: Option<(&str, Option<Link>)>, last: u64) -> EpochEnd {
        EpochEnd {
            epoch,
            first: first.map(|(action, link)| Record {
                n: 0,
                time: String::new(),
                actor: "ingest".into(),
                action: action.into(),
                target: None,
                addr: None,
                result: "ok".into(),
                detail: None,
                prev: String::new(),
                link,
            }),
            last: Some((last, format!("h{epoch}"))),
        }
    }

    fn link(epoch: u64, segment: u64) -> Option<Link> {
        Some(Link {
            instance: "a".into(),
            epoch,
            segment,
            hash: format!("h{epoch}"),
        })
    }

    #[test]
    fn runs_from_before_links_are_accepted_only_before_the_first_linked_one() {
        let epochs = [
            end(1, Some(("connect", None)), 3),
            end(2, Some(("read", None)), 0),
            end(3, Some((EPOCH_START, link(2, 0))), 1),
            end(4, Some((EPOCH_START, link(3, 1))), 0),
        ];
        let problems = check_links("a", &epochs);
        assert!(problems.iter().all(Vec::is_empty), "{problems:?}");
        let later = [
            end(3, Some((EPOCH_START, None)), 1),
            end(4, Some(("connect", None)), 0),
        ];
        let problems = check_links("a", &later);
        assert!(problems[1][0].contains("does not begin"), "{problems:?}");
        // The first linked run must name the last of the earlier ones.
        let cut = [
            end(1, Some(("connect", None)), 2),
            end(3, Some((EPOCH_START, link(1, 3))), 0),
        ];
        let problems = check_links("a", &cut);
        assert!(problems[1][0].contains("tail was removed"), "{problems:?}");
    }

    #[test]
    fn segment_paths_parse_only_for_their_instance() {
        assert_eq!(
            parse_segment_path("audit/a/00000000000000000007/0000000003.jsonl", "a"),
            Some((7, 3))
        );
        assert_eq!(
            parse_segment_path("audit/ab/00000000000000000007/0000000003.jsonl", "a"),
            None
        );
        assert_eq!(parse_segment_path("audit/a/x/0000000003.jsonl", "a"), None);
    }
}
