//! Reading the trail back: every chain in the store, verified against the
//! audit public key (hashes, numbering, seals), and each instance's chains
//! against each other (every epoch names the one before it, `link.rs`).

use std::collections::BTreeMap;

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use super::link::{check_links, segment_hash, EpochEnd};
use super::{seal_message, Record, SealLine};
use crate::store::{Store, StoreError};

/// One chain's verification result.
#[derive(Debug)]
pub struct ChainSummary {
    pub instance: String,
    pub epoch: u64,
    pub segments: u64,
    pub records: u64,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    pub problems: Vec<String>,
}

/// Every chain in the store, verified against the audit public key, with
/// their records in order.
pub async fn read_all(
    store: &Store,
    key: &VerifyingKey,
) -> Result<(Vec<ChainSummary>, Vec<Record>), StoreError> {
    let mut chains: BTreeMap<(String, u64), Vec<(u64, String)>> = BTreeMap::new();
    for l in store.list("audit").await? {
        let parts: Vec<&str> = l.path.split('/').collect();
        let [_, instance, epoch, file] = parts.as_slice() else {
            continue;
        };
        let (Ok(epoch), Some(segment)) = (
            epoch.parse::<u64>(),
            file.strip_suffix(".jsonl")
                .and_then(|s| s.parse::<u64>().ok()),
        ) else {
            continue;
        };
        chains
            .entry(((*instance).to_owned(), epoch))
            .or_default()
            .push((segment, l.path.clone()));
    }
    let mut summaries = Vec::new();
    let mut ends = Vec::new();
    let mut all = Vec::new();
    for ((instance, epoch), mut segments) in chains {
        segments.sort();
        let mut s = ChainSummary {
            instance: instance.clone(),
            epoch,
            segments: segments.len() as u64,
            records: 0,
            first_time: None,
            last_time: None,
            problems: Vec::new(),
        };
        let mut prev = [0u8; 32];
        let mut n = 0u64;
        let mut end = EpochEnd {
            epoch,
            first: None,
            last: None,
        };
        if let Some((segment, path)) = segments.last() {
            if let Some(bytes) = store.read(path).await? {
                end.last = Some((*segment, segment_hash(&bytes)));
            }
        }
        for (expected, (segment, path)) in segments.iter().enumerate() {
            if *segment != expected as u64 {
                s.problems.push(format!(
                    "segment {expected} is missing (next present: {segment})"
                ));
                break;
            }
            let Some(bytes) = store.read(path).await? else {
                s.problems.push(format!("{path} vanished while reading"));
                break;
            };
            match check_segment(&instance, epoch, *segment, &bytes, key, &mut prev, &mut n) {
                Ok(records) => {
                    if s.first_time.is_none() {
                        s.first_time = records.first().map(|r| r.time.clone());
                        end.first = records.first().cloned();
                    }
                    if let Some(r) = records.last() {
                        s.last_time = Some(r.time.clone());
                    }
                    s.records += records.len() as u64;
                    all.extend(records);
                }
                Err(problem) => {
                    s.problems.push(format!("{path}: {problem}"));
                    break;
                }
            }
        }
        summaries.push(s);
        ends.push(end);
    }
    link_epochs(&mut summaries, &ends);
    all.sort_by(|a, b| a.time.cmp(&b.time));
    Ok((summaries, all))
}

/// Adds to each chain's problems what its link to the run before it says
/// (`summaries` and `ends` in the same order, sorted by instance and epoch).
fn link_epochs(summaries: &mut [ChainSummary], ends: &[EpochEnd]) {
    let mut start = 0;
    while start < summaries.len() {
        let instance = summaries[start].instance.clone();
        let count = summaries[start..]
            .iter()
            .take_while(|s| s.instance == instance)
            .count();
        let problems = check_links(&instance, &ends[start..start + count]);
        for (s, p) in summaries[start..start + count].iter_mut().zip(problems) {
            s.problems.extend(p);
        }
        start += count;
    }
}

/// Checks one segment on its own, as the first of its epoch (records from
/// 0, chained from zeros): its records, or what is wrong with it. For
/// fuzzing and tools; [`read_all`] checks whole chains.
pub fn verify_segment(
    instance: &str,
    epoch: u64,
    segment: u64,
    bytes: &[u8],
    key: &VerifyingKey,
) -> Result<Vec<Record>, String> {
    let (mut prev, mut n) = ([0u8; 32], 0u64);
    check_segment(instance, epoch, segment, bytes, key, &mut prev, &mut n)
}

/// Checks one segment's chain and seal, continuing from `prev` and `n`.
fn check_segment(
    instance: &str,
    epoch: u64,
    segment: u64,
    bytes: &[u8],
    key: &VerifyingKey,
    prev: &mut [u8; 32],
    n: &mut u64,
) -> Result<Vec<Record>, String> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let Some(seal_line) = lines.pop() else {
        return Err("empty segment".into());
    };
    let seal: SealLine = serde_json::from_slice(seal_line)
        .map_err(|e| format!("the seal line is not valid: {e}"))?;
    let mut records = Vec::new();
    for line in lines {
        let r: Record =
            serde_json::from_slice(line).map_err(|e| format!("record {} is not valid: {e}", *n))?;
        if r.n != *n {
            return Err(format!("record {} is numbered {}", *n, r.n));
        }
        if r.prev != hex::encode(*prev) {
            return Err(format!(
                "record {} does not follow record {} (changed, removed or reordered)",
                r.n,
                r.n.saturating_sub(1)
            ));
        }
        *prev = Sha256::digest(line).into();
        *n += 1;
        records.push(r);
    }
    if seal.seal.records != records.len() as u64 || seal.seal.last_hash != hex::encode(*prev) {
        return Err("the seal does not match the records".into());
    }
    let sig = hex::decode(&seal.seal.signature)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or("the seal's signature is malformed")?;
    key.verify(
        &seal_message(instance, epoch, segment, records.len() as u64, prev),
        &sig,
    )
    .map_err(|_| "the seal's signature does not verify with the audit key".to_owned())?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::SigningKey;
    use proptest::prelude::*;

    use super::super::writer::seal_segment;
    use super::*;

    fn record(actor: &str, target: Option<String>, detail: Option<String>) -> Record {
        Record {
            n: 0,
            time: "2026-01-01T00:00:00Z".into(),
            actor: actor.into(),
            action: "read".into(),
            target,
            addr: None,
            result: "ok".into(),
            detail,
            prev: String::new(),
            link: None,
        }
    }

    fn key() -> SigningKey {
        SigningKey::from_slice(&[7u8; 32]).unwrap()
    }

    proptest! {
        /// Bytes from the (untrusted) storage never make the verifier panic,
        /// and never pass without the audit key's signature.
        #[test]
        fn arbitrary_bytes_never_verify(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let (mut prev, mut n) = ([0u8; 32], 0u64);
            let r = check_segment("a", 1, 0, &bytes, key().verifying_key(), &mut prev, &mut n);
            prop_assert!(r.is_err());
        }

        /// A sealed segment verifies, and flipping any one bit of it
        /// (lowest bit of any byte) is found.
        #[test]
        fn any_changed_byte_is_found(
            actors in proptest::collection::vec("[ -~]{0,24}", 1..5),
            detail in proptest::option::of("\\PC{0,40}"),
            at in any::<prop::sample::Index>(),
        ) {
            let records: Vec<Record> = actors
                .iter()
                .map(|a| record(a, Some("cam/front/1".into()), detail.clone()))
                .collect();
            let count = records.len() as u64;
            let (bytes, _, _) = seal_segment(&key(), ("a", 1, 0), records, 0, [0; 32]);
            let (mut prev, mut n) = ([0u8; 32], 0u64);
            let ok = check_segment("a", 1, 0, &bytes, key().verifying_key(), &mut prev, &mut n);
            prop_assert_eq!(ok.map(|r| r.len() as u64), Ok(count));
            let mut changed = bytes.clone();
            let i = at.index(changed.len());
            changed[i] ^= 1;
            let (mut prev, mut n) = ([0u8; 32], 0u64);
            let r = check_segment("a", 1, 0, &changed, key().verifying_key(), &mut prev, &mut n);
            prop_assert!(r.is_err(), "byte {} changed and still verified", i);
            // Nor does it verify as another segment or instance.
            let (mut prev, mut n) = ([0u8; 32], 0u64);
            prop_assert!(check_segment("a", 1, 1, &bytes, key().verifying_key(), &mut prev, &mut n).is_err());
        }

        /// Segment paths parse exactly when they are this instance's, with
        /// numbers where numbers go.
        #[test]
        fn segment_paths_parse_only_as_written(
            instance in "[ab]{1,2}",
            epoch in "[0-9x]{1,4}",
            segment in "[0-9x]{1,4}",
            tail in "(|/x)",
        ) {
            let path = format!("audit/{instance}/{epoch}/{segment}.jsonl{tail}");
            let parsed = super::super::link::parse_segment_path(&path, "a");
            let expected = (instance == "a" && tail.is_empty())
                .then(|| Some((epoch.parse::<u64>().ok()?, segment.parse::<u64>().ok()?)))
                .flatten();
            prop_assert_eq!(parsed, expected);
        }
    }
}
