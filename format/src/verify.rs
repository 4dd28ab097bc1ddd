//! Verifying a run of fragments: signatures, payload hashes, chain links, gaps.

use std::collections::{BTreeMap, BTreeSet};

use crate::fragment::SealedFragment;
use crate::keys::DeviceVerifyingKey;
use crate::manifest::{DeclaredGap, ManifestHash};
use crate::name::Name;

/// A fragment that failed a check, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Where the fragment came from (a file name).
    pub label: String,
    pub reason: String,
}

/// Sequence numbers missing between two fragments that are present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    pub first_missing: u64,
    pub last_missing: u64,
}

/// A fragment that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub label: String,
    pub recipient_set_version: u64,
    pub sequence: u64,
    pub frame_count: u32,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub manifest_hash: ManifestHash,
    pub prev: ManifestHash,
}

/// A gap the device explained, and the fragment whose manifest did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    pub gap: DeclaredGap,
    pub declared_by: u64,
}

/// The outcome of [`verify_chain`].
#[derive(Clone, Debug, Default)]
pub struct ChainReport {
    /// Fragments that verified, in sequence order.
    pub verified: Vec<Verified>,
    pub failures: Vec<Failure>,
    /// Undeclared gaps: sequence numbers absent with no signed explanation
    /// (deleted or withheld by someone between the camera and here).
    pub gaps: Vec<Gap>,
    /// Gaps the device explained in signed manifests.
    pub declared: Vec<Declared>,
    /// Versions of the owner-signed recipient sets the fragments used.
    pub recipient_set_versions: BTreeSet<u64>,
    pub device: Option<Name>,
    pub stream: Option<Name>,
}

impl ChainReport {
    /// No failure and no undeclared gap.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty() && self.gaps.is_empty()
    }

    pub fn frame_count(&self) -> u64 {
        self.verified.iter().map(|v| u64::from(v.frame_count)).sum()
    }
}

/// Verifies every fragment under `device_key` and checks that they form one
/// unbroken hash chain of one device and stream.
pub fn verify_chain<'a, I>(fragments: I, device_key: &DeviceVerifyingKey) -> ChainReport
where
    I: IntoIterator<Item = (String, &'a [u8])>,
{
    let mut report = ChainReport::default();
    let mut by_seq: BTreeMap<u64, Verified> = BTreeMap::new();
    // Decoded and checked once for all the fragments.
    let verifier = device_key.verifier().map_err(|e| e.to_string());
    for (label, bytes) in fragments {
        let fail = |reason: String| Failure {
            label: label.clone(),
            reason,
        };
        let frag = match SealedFragment::parse(bytes) {
            Ok(f) => f,
            Err(e) => {
                report.failures.push(fail(e.to_string()));
                continue;
            }
        };
        let verified = match &verifier {
            Ok(v) => frag.verify_with(v).map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        if let Err(e) = verified {
            report.failures.push(fail(e));
            continue;
        }
        if let Err(e) = frag.records() {
            report.failures.push(fail(e.to_string()));
            continue;
        }
        let m = &frag.manifest;
        let device = report.device.get_or_insert_with(|| m.device.clone());
        if *device != m.device {
            report.failures.push(fail(format!(
                "belongs to device {} but the others to {device}",
                m.device
            )));
            continue;
        }
        let stream = report.stream.get_or_insert_with(|| m.stream.clone());
        if *stream != m.stream {
            report.failures.push(fail(format!(
                "belongs to stream {} but the others to {stream}",
                m.stream
            )));
            continue;
        }
        if let Some(other) = by_seq.get(&m.sequence) {
            report.failures.push(fail(format!(
                "sequence {} appears twice (also in {})",
                m.sequence, other.label
            )));
            continue;
        }
        report
            .recipient_set_versions
            .insert(m.recipient_set_version);
        report.declared.extend(m.gaps.iter().map(|g| Declared {
            gap: *g,
            declared_by: m.sequence,
        }));
        by_seq.insert(
            m.sequence,
            Verified {
                label: label.clone(),
                recipient_set_version: m.recipient_set_version,
                sequence: m.sequence,
                frame_count: m.frame_count,
                start_unix_ns: m.start_unix_ns,
                end_unix_ns: m.end_unix_ns,
                manifest_hash: frag.manifest_hash(),
                prev: m.prev,
            },
        );
    }
    let verified: Vec<Verified> = by_seq.into_values().collect();
    for pair in verified.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.sequence == a.sequence + 1 {
            if b.prev != a.manifest_hash {
                report.failures.push(Failure {
                    label: b.label.clone(),
                    reason: format!(
                        "chain broken: names previous manifest {} but fragment {} has {}",
                        b.prev, a.sequence, a.manifest_hash
                    ),
                });
            }
        } else {
            let missing = Gap {
                first_missing: a.sequence + 1,
                last_missing: b.sequence - 1,
            };
            report
                .gaps
                .extend(undeclared_parts(missing, &report.declared));
        }
    }
    report.verified = verified;
    report
}

/// The parts of a run of missing sequence numbers that no declared gap covers.
fn undeclared_parts(missing: Gap, declared: &[Declared]) -> Vec<Gap> {
    let mut covers: Vec<(u64, u64)> = declared
        .iter()
        .filter(|d| d.gap.sequence_count > 0)
        .map(|d| {
            let first = d.gap.first_sequence;
            (first, first.saturating_add(d.gap.sequence_count - 1))
        })
        .collect();
    covers.sort_unstable();
    let mut out = Vec::new();
    let mut next = missing.first_missing;
    for (first, last) in covers {
        if next > missing.last_missing {
            break;
        }
        if last < next || first > missing.last_missing {
            continue;
        }
        if first > next {
            out.push(Gap {
                first_missing: next,
                last_missing: first - 1,
            });
        }
        next = next.max(last.saturating_add(1));
    }
    if next <= missing.last_missing {
        out.push(Gap {
            first_missing: next,
            last_missing: missing.last_missing,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ConsumerSecretKey;
    use crate::seal::{Closing, FragmentSealer, Frame, TrackConfig};
    use p256::ecdsa::signature::Signer;

    fn chain(n: u64) -> (Vec<Vec<u8>>, DeviceVerifyingKey) {
        let mut rng = rand::thread_rng();
        let dk = p256::ecdsa::SigningKey::random(&mut rng);
        let consumer = ConsumerSecretKey::generate(&mut rng);
        let track = TrackConfig {
            codec: 1,
            width: 2,
            height: 2,
            framerate_num: 1,
            framerate_den: 1,
            codec_private: vec![1],
        };
        let mut prev = ManifestHash::GENESIS;
        let mut out = Vec::new();
        for seq in 0..n {
            let mut s = FragmentSealer::new(
                Name::new("cam").unwrap(),
                Name::new("s").unwrap(),
                seq,
                &track,
                &mut rng,
            )
            .unwrap();
            s.push_frame(&Frame {
                pts_ns: seq,
                duration_ns: 1,
                key_frame: true,
                data: vec![1, 2, 3],
            })
            .unwrap();
            let u = s
                .finish(
                    Closing::simple(prev, seq, seq + 1, &[consumer.public().clone()]),
                    &mut rng,
                )
                .unwrap();
            prev = u.manifest_hash();
            let sig: p256::ecdsa::Signature = dk.sign(&u.signing_message());
            out.push(u.into_file(&sig.to_bytes().into()));
        }
        (out, DeviceVerifyingKey(*dk.verifying_key()))
    }

    fn labelled(files: &[Vec<u8>]) -> Vec<(String, &[u8])> {
        files
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("f{i}"), f.as_slice()))
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        let (files, key) = chain(4);
        let r = verify_chain(labelled(&files), &key);
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(r.verified.len(), 4);
    }

    #[test]
    fn removed_fragment_is_a_gap() {
        let (mut files, key) = chain(5);
        files.remove(2);
        let r = verify_chain(labelled(&files), &key);
        assert!(r.failures.is_empty());
        assert_eq!(
            r.gaps,
            vec![Gap {
                first_missing: 2,
                last_missing: 2
            }]
        );
    }

    #[test]
    fn declared_gaps_cover_exactly_what_they_declare() {
        let d = |first, count| Declared {
            gap: DeclaredGap {
                reason: crate::manifest::GapReason::SpoolEvicted,
                first_sequence: first,
                sequence_count: count,
                start_unix_ns: 0,
                end_unix_ns: 0,
            },
            declared_by: 99,
        };
        let gap = |a, b| Gap {
            first_missing: a,
            last_missing: b,
        };
        assert!(undeclared_parts(gap(3, 5), &[d(3, 3)]).is_empty());
        assert_eq!(
            undeclared_parts(gap(3, 8), &[d(4, 2)]),
            vec![gap(3, 3), gap(6, 8)]
        );
        assert_eq!(
            undeclared_parts(gap(3, 8), &[d(7, 1), d(3, 2)]),
            vec![gap(5, 6), gap(8, 8)]
        );
        assert_eq!(undeclared_parts(gap(3, 4), &[d(0, 0)]), vec![gap(3, 4)]);
    }

    #[test]
    fn fragment_from_another_chain_breaks_it() {
        let (mut files, key) = chain(3);
        let (other, _) = chain(3);
        files[1] = other[1].clone();
        let r = verify_chain(labelled(&files), &key);
        // Signed by another device key: signature failure, then a gap.
        assert!(!r.is_ok());
        assert_eq!(r.failures[0].label, "f1");
    }
}
