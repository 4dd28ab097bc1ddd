//! Verifying a run of fragments: signatures, payload hashes, chain links, gaps.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::fragment::SealedFragment;
use crate::keys::{DeviceVerifier, DeviceVerifyingKey};
use crate::manifest::{DeclaredGap, Manifest, ManifestHash};
use crate::name::Name;
use crate::roster::{DeviceRoster, KeyOrigin, KeyRecord};

/// What the fragments' signatures are checked against.
#[derive(Clone, Copy, Debug)]
pub enum DeviceKeys<'a> {
    /// One key for every fragment, taken on trust (a device certificate
    /// that the ingest served: a hint, not an anchor).
    Single(&'a DeviceVerifyingKey),
    /// The owner-signed roster: each fragment under a key that the roster
    /// lists for the fragment's device for the whole of its time span.
    Roster(&'a DeviceRoster),
}

impl DeviceKeys<'_> {
    /// Checks a statement `device` signed at one instant (a head, a restart
    /// record) with `check`: under the single key, or under each key the
    /// roster lists for `device` at `at_unix_ns`, newest first. `what` names
    /// the statement and its instant in the messages ("when the head was
    /// signed"). Returns the key that verified, or why none did.
    pub fn check_signed_at(
        self,
        device: &Name,
        at_unix_ns: u64,
        what: &str,
        check: impl Fn(&DeviceVerifier) -> Result<(), String>,
    ) -> Result<KeyUsed, String> {
        let roster = match self {
            DeviceKeys::Single(key) => {
                check(&key.verifier().map_err(|e| e.to_string())?)?;
                return Ok(KeyUsed {
                    fingerprint: key.fingerprint(),
                    record: None,
                });
            }
            DeviceKeys::Roster(roster) => roster,
        };
        let mut last = format!(
            "no key of device {device} in the owner's roster (version {}) was valid {what} ({at_unix_ns} ns)",
            roster.version
        );
        for (index, record) in roster.keys.iter().enumerate().rev() {
            if record.device != *device || !record.valid_at(at_unix_ns) {
                continue;
            }
            match record
                .key
                .verifier()
                .map_err(|e| e.to_string())
                .and_then(|v| check(&v))
            {
                Ok(()) => return Ok(KeyUsed::of_record(roster, index, record)),
                Err(e) => {
                    last = format!(
                        "{e} (checked with every key roster version {} lists for device {device} {what})",
                        roster.version
                    )
                }
            }
        }
        Err(last)
    }
}

/// The key a fragment verified under.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyUsed {
    /// SHA-256 of the key (`DeviceVerifyingKey::fingerprint`).
    pub fingerprint: String,
    /// From the roster: the record (its index) and how the key is held.
    pub record: Option<RecordUsed>,
}

impl KeyUsed {
    /// Record `index` of `roster`, the one that verified.
    fn of_record(roster: &DeviceRoster, index: usize, record: &KeyRecord) -> Self {
        Self {
            fingerprint: record.key.fingerprint(),
            record: Some(RecordUsed {
                index,
                roster_version: roster.version,
                valid_from_unix_ns: record.valid_from_unix_ns,
                in_tpm: matches!(record.origin, KeyOrigin::Tpm(_)),
            }),
        }
    }
}

/// The roster record a fragment was checked against.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordUsed {
    pub index: usize,
    pub roster_version: u64,
    pub valid_from_unix_ns: u64,
    pub in_tpm: bool,
}

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
    pub key: KeyUsed,
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
    /// The keys the fragments verified under.
    pub keys: BTreeSet<KeyUsed>,
    pub device: Option<Name>,
    pub stream: Option<Name>,
    /// Chain restarts that verified ([`crate::epochs`]).
    pub restarts: Vec<crate::epochs::RestartSeen>,
}

impl ChainReport {
    /// No failure and no undeclared gap.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty() && self.gaps.is_empty()
    }

    /// The declared gaps a server could have brought about
    /// ([`GapReason::server_can_cause`]) whose reason is not in `accepted`:
    /// a verifier counts them as failures unless the user accepts the
    /// reason by name.
    ///
    /// [`GapReason::server_can_cause`]: crate::GapReason::server_can_cause
    pub fn unaccepted<'a>(
        &'a self,
        accepted: &'a [crate::GapReason],
    ) -> impl Iterator<Item = &'a Declared> + 'a {
        self.declared
            .iter()
            .filter(|d| d.gap.reason.server_can_cause() && !accepted.contains(&d.gap.reason))
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
    verify_chain_with(fragments, DeviceKeys::Single(device_key))
}

/// Checks fragments one by one under the key [`DeviceKeys`] gives for
/// each, decoding each key once (for a live viewer; [`verify_chain_with`]
/// checks a whole run).
pub struct KeyChecker<'a> {
    keys: DeviceKeys<'a>,
    single: Option<Result<DeviceVerifier, String>>,
    by_record: HashMap<usize, Result<DeviceVerifier, String>>,
}

impl<'a> KeyChecker<'a> {
    pub fn new(keys: DeviceKeys<'a>) -> Self {
        let single = match keys {
            DeviceKeys::Single(k) => Some(k.verifier().map_err(|e| e.to_string())),
            DeviceKeys::Roster(_) => None,
        };
        Self {
            keys,
            single,
            by_record: HashMap::new(),
        }
    }

    /// Checks a fragment's signature and payload under the key that speaks
    /// for its device at its time; returns which key that was, or why none
    /// did.
    pub fn check(&mut self, frag: &SealedFragment) -> Result<KeyUsed, String> {
        let roster = match (self.keys, &self.single) {
            (DeviceKeys::Single(key), Some(v)) => {
                let v = v.as_ref().map_err(Clone::clone)?;
                frag.verify_with(v).map_err(|e| e.to_string())?;
                return Ok(KeyUsed {
                    fingerprint: key.fingerprint(),
                    record: None,
                });
            }
            (DeviceKeys::Roster(roster), _) => roster,
            (DeviceKeys::Single(_), None) => return Err("no device key".into()),
        };
        let m = &frag.manifest;
        let candidates: Vec<(usize, &KeyRecord)> = roster
            .keys
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, k)| covers(k, m))
            .collect();
        if candidates.is_empty() {
            return Err(no_key_reason(roster, m));
        }
        let mut last = String::new();
        for (index, record) in candidates {
            let verifier = self
                .by_record
                .entry(index)
                .or_insert_with(|| record.key.verifier().map_err(|e| e.to_string()));
            let outcome = match verifier {
                Ok(v) => frag.verify_with(v).map_err(|e| e.to_string()),
                Err(e) => Err(e.clone()),
            };
            match outcome {
                Ok(()) => return Ok(KeyUsed::of_record(roster, index, record)),
                Err(e) => last = e,
            }
        }
        Err(format!(
            "{last} (checked with every key roster version {} lists for device {} at the fragment's time)",
            roster.version, m.device
        ))
    }
}

/// Whether a roster record's key speaks for the manifest's device over the
/// whole of the fragment's time span, `[start, end)`: the key counts from
/// before its first frame until after its last frame ends.
fn covers(k: &KeyRecord, m: &Manifest) -> bool {
    k.device == m.device
        && k.valid_at(m.start_unix_ns)
        && k.end.is_none_or(|e| m.end_unix_ns <= e.at_unix_ns)
}

/// Why no roster key could have signed the manifest.
fn no_key_reason(roster: &DeviceRoster, m: &Manifest) -> String {
    let mut history = roster.history(&m.device).peekable();
    if history.peek().is_none() {
        return format!(
            "device {} is not in the owner's roster (version {}): its fragments cannot be attributed to it",
            m.device, roster.version
        );
    }
    let ended: Vec<String> = history
        .filter_map(|k| {
            k.end.map(|e| {
                format!(
                    "key {} {} at {} ns",
                    &k.key.fingerprint()[..16],
                    match e.reason {
                        crate::roster::EndReason::Rotated => "rotated",
                        crate::roster::EndReason::Revoked => "revoked",
                    },
                    e.at_unix_ns
                )
            })
        })
        .collect();
    format!(
        "no key of device {} in the owner's roster (version {}) was valid for the fragment's time ({}..{} ns){}",
        m.device,
        roster.version,
        m.start_unix_ns,
        m.end_unix_ns,
        if ended.is_empty() {
            String::new()
        } else {
            format!("; {}", ended.join(", "))
        }
    )
}

/// Verifies every fragment under the key `keys` gives for it and checks
/// that they form one unbroken hash chain of one device and stream.
pub fn verify_chain_with<'a, I>(fragments: I, keys: DeviceKeys<'_>) -> ChainReport
where
    I: IntoIterator<Item = (String, &'a [u8])>,
{
    let mut report = ChainReport::default();
    let mut by_seq: BTreeMap<u64, Verified> = BTreeMap::new();
    let mut verifiers = KeyChecker::new(keys);
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
        let key = match verifiers.check(&frag) {
            Ok(key) => key,
            Err(e) => {
                report.failures.push(fail(e));
                continue;
            }
        };
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
        report.keys.insert(key.clone());
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
                key,
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
pub(crate) fn undeclared_parts(missing: Gap, declared: &[Declared]) -> Vec<Gap> {
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
    use crate::roster::{EndReason, KeyEnd};
    use crate::seal::{Closing, FragmentSealer, Frame, TrackConfig};
    use p256::ecdsa::signature::Signer;

    fn chain(n: u64) -> (Vec<Vec<u8>>, DeviceVerifyingKey) {
        let dk = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let files = chain_signed(n, |_| &dk);
        (files, DeviceVerifyingKey(*dk.verifying_key()))
    }

    /// A chain of device "cam" whose fragment `seq` spans `seq` to `seq + 1`
    /// ns and is signed by `signer(seq)`.
    fn chain_signed<'k>(
        n: u64,
        signer: impl Fn(u64) -> &'k p256::ecdsa::SigningKey,
    ) -> Vec<Vec<u8>> {
        let mut rng = rand::thread_rng();
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
            let sig: p256::ecdsa::Signature = signer(seq).sign(&u.signing_message());
            out.push(u.into_file(&sig.to_bytes().into()));
        }
        out
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

    fn software(
        device: &str,
        key: &p256::ecdsa::SigningKey,
        from: u64,
        end: Option<KeyEnd>,
    ) -> KeyRecord {
        KeyRecord {
            device: Name::new(device).unwrap(),
            key: DeviceVerifyingKey(*key.verifying_key()),
            valid_from_unix_ns: from,
            end,
            origin: KeyOrigin::Software,
        }
    }

    fn ends(at_unix_ns: u64, reason: EndReason) -> Option<KeyEnd> {
        Some(KeyEnd { at_unix_ns, reason })
    }

    #[test]
    fn a_rekeyed_device_verifies_under_the_key_of_each_fragments_time() {
        let mut rng = rand::thread_rng();
        let (old, new) = (
            p256::ecdsa::SigningKey::random(&mut rng),
            p256::ecdsa::SigningKey::random(&mut rng),
        );
        // Fragments 0..3 under the old key, 3.. under the new one (re-keyed
        // at 3 ns; fragment 3 spans 3..4 ns).
        let files = chain_signed(6, |seq| if seq < 3 { &old } else { &new });
        let roster = DeviceRoster {
            version: 2,
            issued_unix: 0,
            keys: vec![
                software("cam", &old, 0, ends(3, EndReason::Rotated)),
                software("cam", &new, 3, None),
            ],
        };
        let r = verify_chain_with(labelled(&files), DeviceKeys::Roster(&roster));
        assert!(r.is_ok(), "{r:?}");
        let records: Vec<usize> = r
            .verified
            .iter()
            .filter_map(|v| v.key.record.as_ref().map(|k| k.index))
            .collect();
        assert_eq!(records, [0, 0, 0, 1, 1, 1]);
        assert_eq!(r.keys.len(), 2);
    }

    #[test]
    fn a_key_the_roster_does_not_list_for_the_device_is_refused() {
        let mut rng = rand::thread_rng();
        let (camera, server, other_camera) = (
            p256::ecdsa::SigningKey::random(&mut rng),
            p256::ecdsa::SigningKey::random(&mut rng),
            p256::ecdsa::SigningKey::random(&mut rng),
        );
        let roster = DeviceRoster {
            version: 1,
            issued_unix: 0,
            keys: vec![
                software("cam", &camera, 0, None),
                software("cam2", &other_camera, 0, None),
            ],
        };
        // Forged by a key of the server's, or by another camera of the
        // fleet naming this device: neither verifies.
        for forger in [&server, &other_camera] {
            let files = chain_signed(2, |_| forger);
            let r = verify_chain_with(labelled(&files), DeviceKeys::Roster(&roster));
            assert_eq!(r.failures.len(), 2, "{r:?}");
            assert!(r.failures[0].reason.contains("does not verify"), "{r:?}");
            assert!(r.verified.is_empty());
        }
    }

    #[test]
    fn signatures_after_a_revocation_and_unknown_devices_are_refused() {
        let mut rng = rand::thread_rng();
        let stolen = p256::ecdsa::SigningKey::random(&mut rng);
        let files = chain_signed(4, |_| &stolen);
        let roster = DeviceRoster {
            version: 3,
            issued_unix: 0,
            keys: vec![software("cam", &stolen, 0, ends(2, EndReason::Revoked))],
        };
        let r = verify_chain_with(labelled(&files), DeviceKeys::Roster(&roster));
        // 0..2 ns verify; fragment 2 spans 2..3 ns, after the revocation.
        assert_eq!(r.verified.len(), 2, "{r:?}");
        assert_eq!(r.failures.len(), 2);
        assert!(r.failures[0].reason.contains("revoked"), "{r:?}");
        let empty = DeviceRoster {
            version: 1,
            issued_unix: 0,
            keys: vec![software("other", &stolen, 0, None)],
        };
        let r = verify_chain_with(labelled(&files), DeviceKeys::Roster(&empty));
        assert!(
            r.failures[0].reason.contains("not in the owner's roster"),
            "{r:?}"
        );
    }
}
