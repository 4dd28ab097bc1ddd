//! Verifying a run of fragments that spans chain restarts
//! ([`crate::restart`]): each restart record is checked under the key that
//! speaks for the device at its time, must begin the chain at its first
//! sequence (the fragment there names the record's hash as `prev`), and
//! turns the break before it into a declared one. What it cannot vouch
//! for (the previous epoch's end, when the camera did not know it) is
//! reported as unknown, never as verified.

use std::collections::BTreeMap;

use crate::restart::{Restart, RestartHash, SignedRestart};
use crate::verify::{
    undeclared_parts, verify_chain_with, ChainReport, DeviceKeys, Failure, Gap, KeyUsed, Verified,
};

/// A restart record that verified, and what it explains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartSeen {
    pub label: String,
    pub restart: Restart,
    pub hash: RestartHash,
    pub key: KeyUsed,
    /// Whether the epoch's first fragment is among those verified (and
    /// names this record as its predecessor).
    pub first_fragment_present: bool,
    /// The last fragment of the previous epoch among those verified, when
    /// the camera did not name the previous end: fragments after it may
    /// have existed, and nothing here says whether they did.
    pub unknown_after: Option<u64>,
}

impl RestartSeen {
    /// One line for reports: "chain restart at <time>: epoch 2 begins; the
    /// camera lost its state (previous epoch's end unknown)".
    pub fn describe(&self) -> String {
        let r = &self.restart;
        let epoch = if r.epoch == 0 {
            format!(
                "a new epoch begins at sequence {} (its number is unknown)",
                r.first_sequence
            )
        } else {
            format!("epoch {} begins at sequence {}", r.epoch, r.first_sequence)
        };
        let previous = match r.previous {
            Some(p) => format!(
                "previous epoch ended at sequence {} ({})",
                p.sequence, p.hash
            ),
            None => match self.unknown_after {
                Some(s) => format!(
                    "previous epoch's end unknown: fragments after sequence {s} may have existed and cannot be accounted for"
                ),
                None => "previous epoch's end unknown".to_owned(),
            },
        };
        format!(
            "chain restart at {} ns: {epoch}; {} ({previous})",
            r.signed_at_unix_ns,
            r.reason.describe()
        )
    }
}

/// Checks a restart record's signature under the key `keys` gives for its
/// device at its signing time.
fn check_restart(r: &SignedRestart, keys: DeviceKeys<'_>) -> Result<KeyUsed, String> {
    let restart = &r.restart;
    keys.check_signed_at(
        &restart.device,
        restart.signed_at_unix_ns,
        "at the restart's time",
        |v| {
            r.verify(v)
                .map(|_| ())
                .map_err(|e| format!("restart record signature: {e}"))
        },
    )
}

/// Whether `signed` is the restart record that begins the epoch whose
/// first fragment has manifest `first` (already verified): signed under
/// the key `keys` gives for its device at its time, of the same device and
/// stream, at `first`'s sequence, and named by `first` as its `prev`. For a
/// viewer that meets fragments one at a time (`sealcam follow`); a run of
/// fragments is checked by [`verify_chain_with_restarts`].
pub fn check_begins(
    signed: &SignedRestart,
    first: &crate::manifest::Manifest,
    keys: DeviceKeys<'_>,
) -> Result<KeyUsed, String> {
    let key = check_restart(signed, keys)?;
    let r = &signed.restart;
    if r.device != first.device || r.stream != first.stream {
        return Err(format!(
            "restart record of {}/{} offered for fragment {} of {}/{}",
            r.device, r.stream, first.sequence, first.device, first.stream
        ));
    }
    if r.first_sequence != first.sequence || first.prev != signed.hash().0 {
        return Err(format!(
            "restart record for sequence {} does not begin the chain at fragment {}: the fragment names previous {}, not this record ({})",
            r.first_sequence,
            first.sequence,
            first.prev,
            signed.hash()
        ));
    }
    Ok(key)
}

/// Verifies `fragments` as [`verify_chain_with`] does, and `restarts`
/// (restart records, each with a label) with them: a restart whose first
/// fragment names it turns the break before that fragment into a declared
/// one. A record that does not verify, names another device or stream, or
/// does not begin the chain at its first sequence is a failure.
pub fn verify_chain_with_restarts<'a, I, R>(
    fragments: I,
    restarts: R,
    keys: DeviceKeys<'_>,
) -> ChainReport
where
    I: IntoIterator<Item = (String, &'a [u8])>,
    R: IntoIterator<Item = (String, &'a [u8])>,
{
    let mut report = verify_chain_with(fragments, keys);
    let mut by_first: BTreeMap<u64, RestartSeen> = BTreeMap::new();
    for (label, bytes) in restarts {
        let fail = |reason: String| Failure {
            label: label.clone(),
            reason,
        };
        let signed = match SignedRestart::parse(bytes) {
            Ok(r) => r,
            Err(e) => {
                report.failures.push(fail(e.to_string()));
                continue;
            }
        };
        let key = match check_restart(&signed, keys) {
            Ok(k) => k,
            Err(e) => {
                report.failures.push(fail(e));
                continue;
            }
        };
        let r = &signed.restart;
        let device = report.device.get_or_insert_with(|| r.device.clone());
        let stream = report.stream.get_or_insert_with(|| r.stream.clone());
        if *device != r.device || *stream != r.stream {
            report.failures.push(fail(format!(
                "restart record of {}/{} among fragments of {device}/{stream}",
                r.device, r.stream
            )));
            continue;
        }
        if let Some(other) = by_first.get(&r.first_sequence) {
            report.failures.push(fail(format!(
                "a second restart record for sequence {} (also {})",
                r.first_sequence, other.label
            )));
            continue;
        }
        by_first.insert(
            r.first_sequence,
            RestartSeen {
                label: label.clone(),
                restart: r.clone(),
                hash: signed.hash(),
                key,
                first_fragment_present: false,
                unknown_after: None,
            },
        );
    }
    let verified = report.verified.clone();
    for seen in by_first.values_mut() {
        let first = seen.restart.first_sequence;
        let Some(at) = verified.iter().position(|v| v.sequence == first) else {
            continue;
        };
        let b = &verified[at];
        if b.prev != seen.hash.0 {
            report.failures.push(Failure {
                label: seen.label.clone(),
                reason: format!(
                    "restart record does not begin the chain at sequence {first}: fragment {first} ({}) names previous {}, not this record ({}); it was made up or replayed",
                    b.label, b.prev, seen.hash
                ),
            });
            continue;
        }
        seen.first_fragment_present = true;
        let Some(a) = at.checked_sub(1).map(|i| &verified[i]) else {
            continue;
        };
        declare_break(&mut report, seen, a, b);
    }
    report.restarts = by_first.into_values().collect();
    report
}

/// The break between `a`, the last fragment of the previous epoch present,
/// and `b`, the first of the epoch `seen` begins: what the chain check
/// called broken or missing there is replaced by what the record declares.
fn declare_break(report: &mut ChainReport, seen: &mut RestartSeen, a: &Verified, b: &Verified) {
    report
        .failures
        .retain(|f| !(f.label == b.label && f.reason.starts_with("chain broken")));
    report
        .gaps
        .retain(|g| !(g.first_missing > a.sequence && g.last_missing < b.sequence));
    let Some(p) = seen.restart.previous else {
        seen.unknown_after = Some(a.sequence);
        return;
    };
    if a.sequence > p.sequence {
        report.failures.push(Failure {
            label: a.label.clone(),
            reason: format!(
                "fragment {} lies after the end of its epoch that restart record {} names (sequence {})",
                a.sequence, seen.label, p.sequence
            ),
        });
    } else if a.sequence == p.sequence && a.manifest_hash != p.hash {
        report.failures.push(Failure {
            label: a.label.clone(),
            reason: format!(
                "restart record {} names {} as the previous epoch's last fragment, but fragment {} has {}",
                seen.label, p.hash, a.sequence, a.manifest_hash
            ),
        });
    } else if a.sequence < p.sequence {
        let missing = Gap {
            first_missing: a.sequence + 1,
            last_missing: p.sequence,
        };
        report
            .gaps
            .extend(undeclared_parts(missing, &report.declared));
        report.gaps.sort_by_key(|g| g.first_missing);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use p256::ecdsa::signature::Signer;

    use super::*;
    use crate::keys::{ConsumerSecretKey, DeviceVerifyingKey};
    use crate::manifest::ManifestHash;
    use crate::name::Name;
    use crate::restart::{PreviousEnd, RestartReason};
    use crate::roster::{DeviceRoster, KeyRecord};
    use crate::seal::{Closing, FragmentSealer, Frame, TrackConfig};

    /// Sealed fragments: sequence, manifest hash, file bytes.
    type Files = Vec<(u64, ManifestHash, Vec<u8>)>;

    struct Camera {
        key: p256::ecdsa::SigningKey,
        consumer: ConsumerSecretKey,
    }

    impl Camera {
        fn new() -> Self {
            let mut rng = rand::thread_rng();
            Self {
                key: p256::ecdsa::SigningKey::random(&mut rng),
                consumer: ConsumerSecretKey::generate(&mut rng),
            }
        }

        /// Fragments `seqs` of device "cam", chained from `prev`; fragment
        /// `seq` spans `seq` to `seq + 1` ns.
        fn fragments(&self, seqs: std::ops::Range<u64>, mut prev: ManifestHash) -> Files {
            let mut rng = rand::thread_rng();
            let track = TrackConfig {
                codec: 1,
                width: 2,
                height: 2,
                framerate_num: 1,
                framerate_den: 1,
                codec_private: vec![1],
            };
            let mut out = Vec::new();
            for seq in seqs {
                let mut s = FragmentSealer::new(
                    Name::new("cam").unwrap(),
                    Name::new("s").unwrap(),
                    seq,
                    &track,
                    &mut rng,
                )
                .unwrap();
                s.push_frame(&Frame {
                    pts_ns: 0,
                    duration_ns: 1,
                    key_frame: true,
                    data: vec![1, 2, 3],
                })
                .unwrap();
                let u = s
                    .finish(
                        Closing::simple(prev, seq, seq + 1, &[self.consumer.public().clone()]),
                        &mut rng,
                    )
                    .unwrap();
                prev = u.manifest_hash();
                let sig: p256::ecdsa::Signature = self.key.sign(&u.signing_message());
                out.push((seq, prev, u.into_file(&sig.to_bytes().into())));
            }
            out
        }

        fn restart(
            &self,
            first: u64,
            previous: Option<PreviousEnd>,
            at: u64,
        ) -> (Restart, Vec<u8>) {
            let r = Restart {
                device: Name::new("cam").unwrap(),
                stream: Name::new("s").unwrap(),
                epoch: 2,
                first_sequence: first,
                previous,
                reason: RestartReason::LostState,
                signed_at_unix_ns: at,
            };
            let sig: p256::ecdsa::Signature = self.key.sign(&r.signing_message());
            let bytes = r.to_signed(&sig.to_bytes().into());
            (r, bytes)
        }

        fn roster(&self) -> DeviceRoster {
            DeviceRoster {
                version: 1,
                issued_unix: 0,
                keys: vec![KeyRecord {
                    device: Name::new("cam").unwrap(),
                    key: DeviceVerifyingKey(*self.key.verifying_key()),
                    valid_from_unix_ns: 0,
                    end: None,
                    origin: crate::roster::KeyOrigin::Software,
                }],
            }
        }
    }

    fn labelled(files: &Files) -> Vec<(String, &[u8])> {
        files
            .iter()
            .map(|(s, _, f)| (format!("f{s}"), f.as_slice()))
            .collect()
    }

    /// Epoch 1: 0..4; the camera loses its state; epoch 2: 100..103,
    /// begun by a restart record signed at 50 ns.
    fn two_epochs(cam: &Camera, previous: Option<PreviousEnd>) -> (Files, Vec<u8>) {
        let mut files = cam.fragments(0..4, ManifestHash::GENESIS);
        let (r, bytes) = cam.restart(100, previous, 50);
        files.extend(cam.fragments(100..103, r.hash().0));
        (files, bytes)
    }

    #[test]
    fn a_restart_declares_the_break_and_says_what_is_unknown() {
        let cam = Camera::new();
        let roster = cam.roster();
        let (files, restart) = two_epochs(&cam, None);
        let without = verify_chain_with(labelled(&files), DeviceKeys::Roster(&roster));
        assert!(!without.is_ok(), "an undeclared break must fail");
        let r = verify_chain_with_restarts(
            labelled(&files),
            [("restart-100".to_owned(), restart.as_slice())],
            DeviceKeys::Roster(&roster),
        );
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(r.verified.len(), 7);
        assert_eq!(r.restarts.len(), 1);
        assert_eq!(r.restarts[0].unknown_after, Some(3));
        let line = r.restarts[0].describe();
        assert!(line.contains("epoch 2 begins"), "{line}");
        assert!(line.contains("the camera lost its state"), "{line}");
        assert!(line.contains("after sequence 3 may have existed"), "{line}");
    }

    #[test]
    fn a_known_previous_end_is_held_to_the_fragments() {
        let cam = Camera::new();
        let roster = cam.roster();
        let epoch1 = cam.fragments(0..4, ManifestHash::GENESIS);
        let last = PreviousEnd {
            sequence: 3,
            hash: epoch1[3].1,
        };
        let (files, restart) = two_epochs(&cam, Some(last));
        // The exact epoch 1 (fresh keys make fresh hashes): re-made with
        // its own fragments.
        let mut files = files;
        files.splice(0..4, epoch1);
        let verify = |files: &Files| {
            verify_chain_with_restarts(
                labelled(files),
                [("restart-100".to_owned(), restart.as_slice())],
                DeviceKeys::Roster(&roster),
            )
        };
        let r = verify(&files);
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(r.restarts[0].unknown_after, None);
        // The server drops the previous epoch's last fragment: named.
        let mut dropped = files.clone();
        dropped.remove(3);
        let r = verify(&dropped);
        assert_eq!(
            r.gaps,
            vec![Gap {
                first_missing: 3,
                last_missing: 3
            }]
        );
    }

    #[test]
    fn a_made_up_or_replayed_restart_fails_by_name() {
        let cam = Camera::new();
        let roster = cam.roster();
        let (files, _) = two_epochs(&cam, None);
        // Made up: signed by a key that is not the camera's.
        let server = Camera::new();
        let (_, forged) = server.restart(100, None, 50);
        let r = verify_chain_with_restarts(
            labelled(&files),
            [("restart-100".to_owned(), forged.as_slice())],
            DeviceKeys::Roster(&roster),
        );
        assert!(!r.is_ok());
        assert!(
            r.failures
                .iter()
                .any(|f| f.label == "restart-100" && f.reason.contains("does not verify")),
            "{r:?}"
        );
        // Replayed: a genuine record of the camera's that this epoch's
        // first fragment does not name.
        let (_, other) = cam.restart(100, None, 60);
        let r = verify_chain_with_restarts(
            labelled(&files),
            [("restart-100".to_owned(), other.as_slice())],
            DeviceKeys::Roster(&roster),
        );
        assert!(!r.is_ok());
        assert!(
            r.failures
                .iter()
                .any(|f| f.label == "restart-100" && f.reason.contains("made up or replayed")),
            "{r:?}"
        );
    }

    #[test]
    fn one_fragment_is_begun_only_by_its_own_genuine_record() {
        let cam = Camera::new();
        let roster = cam.roster();
        let keys = DeviceKeys::Roster(&roster);
        let (files, restart) = two_epochs(&cam, None);
        let manifest = |i: usize| crate::SealedFragment::parse(&files[i].2).unwrap().manifest;
        let signed = SignedRestart::parse(&restart).unwrap();
        assert!(check_begins(&signed, &manifest(4), keys).is_ok());
        // Not the epoch's first fragment, nor one of the first epoch.
        for i in [5, 0] {
            let e = check_begins(&signed, &manifest(i), keys).unwrap_err();
            assert!(e.contains("does not begin the chain"), "{e}");
        }
        // A genuine record the fragment does not name, and a forged one.
        let (_, other) = cam.restart(100, None, 60);
        let other = SignedRestart::parse(&other).unwrap();
        assert!(check_begins(&other, &manifest(4), keys).is_err());
        let (_, forged) = Camera::new().restart(100, None, 50);
        let forged = SignedRestart::parse(&forged).unwrap();
        let e = check_begins(&forged, &manifest(4), keys).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
    }

    #[test]
    fn a_restart_does_not_excuse_fragments_dropped_inside_an_epoch() {
        let cam = Camera::new();
        let roster = cam.roster();
        let (mut files, restart) = two_epochs(&cam, None);
        files.remove(5); // fragment 101, inside epoch 2
        files.remove(1); // fragment 1, inside epoch 1
        let r = verify_chain_with_restarts(
            labelled(&files),
            [("restart-100".to_owned(), restart.as_slice())],
            DeviceKeys::Roster(&roster),
        );
        let missing: Vec<u64> = r.gaps.iter().map(|g| g.first_missing).collect();
        assert_eq!(missing, [1, 101], "{r:?}");
    }
}
