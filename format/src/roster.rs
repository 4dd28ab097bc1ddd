//! Device rosters: which key spoke for which camera, and when; signed by
//! the owner.
//!
//! A certificate that the ingest hands out is a hint, never the anchor: the
//! ingest could mint one for a key of its own. What decides which device
//! key recorded a clip is the roster, a document that the owner signs
//! offline with the key that also signs recipient sets (`sealcam owner
//! init`). For every device it lists each key the device has had, the time
//! from which the key counts, how its key is held (in a TPM, with the
//! evidence, or in software), and, once the key is rotated or revoked, the
//! time from which its signatures no longer count. Records are never
//! removed, so footage verifies against the key that was valid when it was
//! recorded, however many keys and certificates came since. A roster's
//! version only goes up, so a verifier that keeps the newest it has seen
//! can refuse an older one (without a revocation) passed off as current.
//!
//! ```text
//! magic      8 bytes  89 53 44 52 0d 0a 1a 0a ("\x89SDR\r\n\x1a\n")
//! body_len   u32
//! body       format u16 = 1 | suite u16 = 1 | version u64 | issued_unix u64
//!            | count u32 | count x record
//! record     device str16 | key bytes16 (SEC1 uncompressed P-256)
//!            | valid_from_unix_ns u64
//!            | end u8 (0 none, 1 rotated, 2 revoked) | end_unix_ns u64 (0 with none)
//!            | origin u8 (0 software, 1 TPM)
//!            | TPM only: ek_certificate bytes16 | attestation_key bytes16
//!              | key_public bytes16 | certify_info bytes16 | certify_signature bytes16
//! signature  64 bytes, ECDSA P-256 r || s over "sealcam device roster v1\0" || body
//! ```

use std::collections::HashMap;

use crate::codec::{Reader, Writer};
use crate::keys::DeviceVerifyingKey;
use crate::owner_signed::{self, Envelope, Kind};
use crate::{FormatError, Name, SealError};

pub const MAGIC: &[u8; 8] = b"\x89SDR\r\n\x1a\n";
pub const SIGNING_CONTEXT: &[u8] = b"sealcam device roster v1\0";
const KIND: Kind = Kind {
    magic: MAGIC,
    context: SIGNING_CONTEXT,
    what: "device roster",
};

/// The most key records a roster holds (10,000 cameras rotating their keys
/// for years fit many times over).
pub const MAX_KEYS: usize = 1_000_000;

/// The fewest bytes one record takes (one-character name, a key, software).
const MIN_RECORD_LEN: usize = 2 + 1 + 2 + 65 + 8 + 1 + 8 + 1;

/// Why a key stopped counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Replaced by a newer key of the same device (re-keyed, replaced TPM).
    Rotated,
    /// Revoked: the device was lost, stolen or retired.
    Revoked,
}

/// The time from which a key's signatures no longer count, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyEnd {
    pub at_unix_ns: u64,
    pub reason: EndReason,
}

/// How a device key is held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    /// A file on the device (the development key): nothing proves where it
    /// lives, and every report says so.
    Software,
    /// Resident in a TPM, with the evidence that a verifier can check
    /// offline.
    Tpm(TpmEvidence),
}

/// Evidence that a device key lives in a genuine TPM: the TPM's
/// endorsement-key certificate (from its maker), an attestation key that
/// the enrolling authority activated against that endorsement key
/// (TPM2_MakeCredential / TPM2_ActivateCredential), and TPM2_Certify of the
/// device key by the attestation key. The fields are the TPM's own
/// encodings; this crate keeps them, the attestation module checks them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TpmEvidence {
    /// The EK certificate, DER.
    pub ek_certificate: Vec<u8>,
    /// The attestation key's TPM2B_PUBLIC.
    pub attestation_key: Vec<u8>,
    /// The device key's TPM2B_PUBLIC.
    pub key_public: Vec<u8>,
    /// TPM2_Certify's TPM2B_ATTEST (names the device key).
    pub certify_info: Vec<u8>,
    /// The attestation key's TPMT_SIGNATURE over `certify_info`.
    pub certify_signature: Vec<u8>,
}

/// One key of one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub device: Name,
    pub key: DeviceVerifyingKey,
    /// Signatures count from this time (Unix ns, the time in a manifest).
    pub valid_from_unix_ns: u64,
    /// Where the key stopped counting, if it has.
    pub end: Option<KeyEnd>,
    pub origin: KeyOrigin,
}

impl KeyRecord {
    /// Whether a manifest stamped `at_unix_ns` may be signed by this key.
    pub fn valid_at(&self, at_unix_ns: u64) -> bool {
        at_unix_ns >= self.valid_from_unix_ns && self.end.is_none_or(|e| at_unix_ns < e.at_unix_ns)
    }
}

/// The owner's list of device keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRoster {
    /// Goes up with every change; starts at 1.
    pub version: u64,
    pub issued_unix: u64,
    pub keys: Vec<KeyRecord>,
}

/// A roster as read from a file, signature not yet checked.
pub struct SignedDeviceRoster<'a> {
    pub roster: DeviceRoster,
    envelope: Envelope<'a>,
}

impl DeviceRoster {
    /// The keys of `device` that were valid at `at_unix_ns`, newest first
    /// (two overlap while a device is re-keyed).
    pub fn keys_at<'a>(
        &'a self,
        device: &'a Name,
        at_unix_ns: u64,
    ) -> impl Iterator<Item = &'a KeyRecord> + 'a {
        self.keys
            .iter()
            .rev()
            .filter(move |k| k.device == *device && k.valid_at(at_unix_ns))
    }

    /// Every key `device` has had, oldest first.
    pub fn history<'a>(&'a self, device: &'a Name) -> impl Iterator<Item = &'a KeyRecord> + 'a {
        self.keys.iter().filter(move |k| k.device == *device)
    }

    /// What is wrong with the roster, if anything: checked when it is
    /// signed and when it is read, so a signed roster always holds.
    fn check(&self) -> Result<(), String> {
        if self.version == 0 {
            return Err("roster version 0 is not allowed; versions start at 1".into());
        }
        if self.keys.len() > MAX_KEYS {
            return Err(format!(
                "a roster holds at most {MAX_KEYS} keys, not {}",
                self.keys.len()
            ));
        }
        // Each key speaks for one device, in one record: a key listed under
        // two names would stay valid under the other after one is revoked.
        let mut seen = HashMap::new();
        for k in &self.keys {
            if let Some(end) = k.end {
                if end.at_unix_ns <= k.valid_from_unix_ns {
                    return Err(format!(
                        "key {} of device {} ends ({} ns) before it starts ({} ns)",
                        k.key.fingerprint(),
                        k.device,
                        end.at_unix_ns,
                        k.valid_from_unix_ns
                    ));
                }
            }
            if let Some(first) = seen.insert(k.key.fingerprint(), &k.device) {
                return Err(if *first == k.device {
                    format!(
                        "key {} of device {} is listed twice; change its record instead",
                        k.key.fingerprint(),
                        k.device
                    )
                } else {
                    format!(
                        "key {} is listed for device {first} and for device {}; a key speaks for one device only",
                        k.key.fingerprint(),
                        k.device
                    )
                });
            }
        }
        Ok(())
    }

    fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        owner_signed::put_header(&mut out);
        out.put_u64(self.version);
        out.put_u64(self.issued_unix);
        out.put_u32(self.keys.len() as u32);
        for k in &self.keys {
            out.put_bytes16(k.device.as_str().as_bytes());
            out.put_bytes16(k.key.0.to_encoded_point(false).as_bytes());
            out.put_u64(k.valid_from_unix_ns);
            match k.end {
                None => {
                    out.put_u8(0);
                    out.put_u64(0);
                }
                Some(end) => {
                    out.put_u8(match end.reason {
                        EndReason::Rotated => 1,
                        EndReason::Revoked => 2,
                    });
                    out.put_u64(end.at_unix_ns);
                }
            }
            match &k.origin {
                KeyOrigin::Software => out.put_u8(0),
                KeyOrigin::Tpm(e) => {
                    out.put_u8(1);
                    for field in [
                        &e.ek_certificate,
                        &e.attestation_key,
                        &e.key_public,
                        &e.certify_info,
                        &e.certify_signature,
                    ] {
                        out.put_bytes16(field);
                    }
                }
            }
        }
        out
    }

    /// Checks the roster and signs it with the owner key; returns the file.
    pub fn sign(&self, owner: &p256::ecdsa::SigningKey) -> Result<Vec<u8>, SealError> {
        self.check().map_err(SealError::Key)?;
        if let Some(k) = self.keys.iter().find(|k| match &k.origin {
            KeyOrigin::Software => false,
            KeyOrigin::Tpm(e) => [
                &e.ek_certificate,
                &e.attestation_key,
                &e.key_public,
                &e.certify_info,
                &e.certify_signature,
            ]
            .iter()
            .any(|f| f.len() > usize::from(u16::MAX)),
        }) {
            return Err(SealError::Key(format!(
                "the TPM evidence of device {} has a field over 65535 bytes",
                k.device
            )));
        }
        Ok(owner_signed::sign(&KIND, &self.encode_body(), owner))
    }
}

impl<'a> SignedDeviceRoster<'a> {
    /// Parses a roster file. Never panics on any input.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let (envelope, mut b) = Envelope::parse(&KIND, bytes)?;
        let version = b.u64()?;
        let issued_unix = b.u64()?;
        let offset = b.position();
        let n = b.u32()? as usize;
        if n > MAX_KEYS || n > b.remaining() / MIN_RECORD_LEN {
            return Err(FormatError::Invalid {
                what: KIND.what,
                offset,
                reason: format!(
                    "key count {n} exceeds {MAX_KEYS} or what the roster's {} bytes can hold",
                    b.remaining()
                ),
            });
        }
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            keys.push(read_record(&mut b)?);
        }
        let end = b.position();
        b.finish()?;
        let roster = DeviceRoster {
            version,
            issued_unix,
            keys,
        };
        roster.check().map_err(|reason| FormatError::Invalid {
            what: KIND.what,
            offset: end,
            reason,
        })?;
        Ok(Self { roster, envelope })
    }

    /// Checks the owner's signature; returns the roster only if it holds.
    pub fn verify(self, owner: &DeviceVerifyingKey) -> Result<DeviceRoster, SealError> {
        self.envelope.verify(&KIND, owner)?;
        Ok(self.roster)
    }
}

fn read_record(b: &mut Reader<'_>) -> Result<KeyRecord, FormatError> {
    let invalid = |offset, reason: String| FormatError::Invalid {
        what: KIND.what,
        offset,
        reason,
    };
    let offset = b.position();
    let device = Name::new(b.str16()?).map_err(|e| invalid(offset, e.to_string()))?;
    let offset = b.position();
    let key =
        DeviceVerifyingKey::from_sec1(b.bytes16()?).map_err(|e| invalid(offset, e.to_string()))?;
    let valid_from_unix_ns = b.u64()?;
    let offset = b.position();
    let (end_kind, end_at) = (b.u8()?, b.u64()?);
    let end = match (end_kind, end_at) {
        (0, 0) => None,
        (1, at) => Some(KeyEnd {
            at_unix_ns: at,
            reason: EndReason::Rotated,
        }),
        (2, at) => Some(KeyEnd {
            at_unix_ns: at,
            reason: EndReason::Revoked,
        }),
        (0, _) => {
            return Err(invalid(
                offset,
                "a key without an end has an end time".into(),
            ))
        }
        (k, _) => return Err(invalid(offset, format!("unknown key end {k}"))),
    };
    let offset = b.position();
    let origin = match b.u8()? {
        0 => KeyOrigin::Software,
        1 => KeyOrigin::Tpm(TpmEvidence {
            ek_certificate: b.bytes16()?.to_vec(),
            attestation_key: b.bytes16()?.to_vec(),
            key_public: b.bytes16()?.to_vec(),
            certify_info: b.bytes16()?.to_vec(),
            certify_signature: b.bytes16()?.to_vec(),
        }),
        o => return Err(invalid(offset, format!("unknown key origin {o}"))),
    };
    Ok(KeyRecord {
        device,
        key,
        valid_from_unix_ns,
        end,
        origin,
    })
}

/// The magic of a TPM evidence file: what the fleet CA keeps per issued
/// key, and what the owner passes to `sealcam roster add --evidence`.
pub const EVIDENCE_MAGIC: &[u8; 8] = b"\x89SDE\r\n\x1a\n";
const EVIDENCE: &str = "TPM evidence file";

impl TpmEvidence {
    fn fields(&self) -> [&Vec<u8>; 5] {
        [
            &self.ek_certificate,
            &self.attestation_key,
            &self.key_public,
            &self.certify_info,
            &self.certify_signature,
        ]
    }

    /// The evidence as a file:
    ///
    /// ```text
    /// magic   8 bytes  89 53 44 45 0d 0a 1a 0a ("\x89SDE\r\n\x1a\n")
    /// format  u16 = 1
    /// ek_certificate bytes16 | attestation_key bytes16 | key_public bytes16
    ///   | certify_info bytes16 | certify_signature bytes16
    /// ```
    ///
    /// Unsigned: what it claims is checked against the TPM makers' CAs
    /// before the owner signs it into a roster.
    pub fn to_file(&self) -> Result<Vec<u8>, FormatError> {
        let mut out = EVIDENCE_MAGIC.to_vec();
        out.put_u16(crate::FORMAT_VERSION);
        for (i, field) in self.fields().into_iter().enumerate() {
            if field.len() > usize::from(u16::MAX) {
                return Err(FormatError::Invalid {
                    what: EVIDENCE,
                    offset: i,
                    reason: format!("field {i} has {} bytes; at most 65535 fit", field.len()),
                });
            }
            out.put_bytes16(field);
        }
        Ok(out)
    }

    /// Reads an evidence file ([`TpmEvidence::to_file`]). Never panics.
    pub fn from_file(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut b = Reader::new(bytes, EVIDENCE);
        if b.take(EVIDENCE_MAGIC.len())? != EVIDENCE_MAGIC {
            return Err(FormatError::Invalid {
                what: EVIDENCE,
                offset: 0,
                reason: "bad magic bytes: not a TPM evidence file (`sealcam-ingest device evidence` writes one)".into(),
            });
        }
        let version = b.u16()?;
        if version != crate::FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let evidence = Self {
            ek_certificate: b.bytes16()?.to_vec(),
            attestation_key: b.bytes16()?.to_vec(),
            key_public: b.bytes16()?.to_vec(),
            certify_info: b.bytes16()?.to_vec(),
            certify_signature: b.bytes16()?.to_vec(),
        };
        b.finish()?;
        Ok(evidence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY_NS: u64 = 86_400 * 1_000_000_000;

    fn key() -> (p256::ecdsa::SigningKey, DeviceVerifyingKey) {
        let k = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let v = DeviceVerifyingKey(*k.verifying_key());
        (k, v)
    }

    fn record(device: &str, key: DeviceVerifyingKey, from: u64, end: Option<KeyEnd>) -> KeyRecord {
        KeyRecord {
            device: Name::new(device).unwrap(),
            key,
            valid_from_unix_ns: from,
            end,
            origin: KeyOrigin::Software,
        }
    }

    /// cam1 re-keyed on day 10 (its old key revoked, say, after theft on
    /// day 12 would be another record); cam2 in a TPM.
    fn roster() -> DeviceRoster {
        let (_, old) = key();
        let (_, new) = key();
        let (_, tpm) = key();
        let mut tpm_record = record("cam2", tpm, DAY_NS, None);
        tpm_record.origin = KeyOrigin::Tpm(TpmEvidence {
            ek_certificate: vec![0x30, 0x82, 1, 2],
            attestation_key: vec![1; 90],
            key_public: vec![2; 88],
            certify_info: vec![3; 120],
            certify_signature: vec![4; 72],
        });
        DeviceRoster {
            version: 3,
            issued_unix: 1_790_000_000,
            keys: vec![
                record(
                    "cam1",
                    old,
                    0,
                    Some(KeyEnd {
                        at_unix_ns: 10 * DAY_NS,
                        reason: EndReason::Rotated,
                    }),
                ),
                record("cam1", new, 10 * DAY_NS - 60_000_000_000, None),
                tpm_record,
            ],
        }
    }

    #[test]
    fn a_signed_roster_reads_back_only_under_the_owner_key() {
        let (owner, owner_pub) = key();
        let (server, _) = key();
        let r = roster();
        let file = r.sign(&owner).unwrap();
        let read = SignedDeviceRoster::parse(&file)
            .unwrap()
            .verify(&owner_pub)
            .unwrap();
        assert_eq!(read, r);
        // Signed by anyone else (the ingest, say): refused.
        let forged = r.sign(&server).unwrap();
        let err = SignedDeviceRoster::parse(&forged)
            .unwrap()
            .verify(&owner_pub)
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("device roster is not signed by the owner key"));
    }

    #[test]
    fn a_recipient_set_signature_is_not_a_roster_signature() {
        // Same owner key, other kind: the magic and the signing context
        // differ, so neither file passes for the other.
        let (owner, owner_pub) = key();
        let file = roster().sign(&owner).unwrap();
        let mut relabelled = file.clone();
        relabelled[..8].copy_from_slice(crate::recipients::MAGIC);
        let accepted = crate::recipients::SignedRecipientSet::parse(&relabelled)
            .map(|s| s.verify(&owner_pub).is_ok())
            .unwrap_or(false);
        assert!(!accepted);
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let (owner, owner_pub) = key();
        let file = roster().sign(&owner).unwrap();
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            let ok = SignedDeviceRoster::parse(&bad)
                .map(|p| p.verify(&owner_pub).is_ok())
                .unwrap_or(false);
            assert!(!ok, "flip at {i} accepted");
        }
    }

    #[test]
    fn the_key_valid_at_a_time_is_found_across_a_rotation() {
        let r = roster();
        let cam1 = Name::new("cam1").unwrap();
        let before: Vec<_> = r.keys_at(&cam1, DAY_NS).map(|k| &k.key).collect();
        assert_eq!(before, [&r.keys[0].key]);
        // The minute of overlap: the new key first, the old one still counts.
        let overlap: Vec<_> = r.keys_at(&cam1, 10 * DAY_NS - 1).map(|k| &k.key).collect();
        assert_eq!(overlap, [&r.keys[1].key, &r.keys[0].key]);
        let after: Vec<_> = r.keys_at(&cam1, 40 * DAY_NS).map(|k| &k.key).collect();
        assert_eq!(after, [&r.keys[1].key]);
        let cam2 = Name::new("cam2").unwrap();
        assert_eq!(r.keys_at(&cam2, 0).count(), 0, "before cam2's key counts");
        assert_eq!(r.history(&cam1).count(), 2);
        let unknown = Name::new("cam9").unwrap();
        assert_eq!(r.keys_at(&unknown, DAY_NS).count(), 0);
    }

    #[test]
    fn inconsistent_rosters_are_neither_signed_nor_read() {
        let (owner, _) = key();
        let mut zero = roster();
        zero.version = 0;
        assert!(zero.sign(&owner).is_err());
        let mut twice = roster();
        twice.keys.push(twice.keys[2].clone());
        let err = twice.sign(&owner).unwrap_err().to_string();
        assert!(err.contains("listed twice"), "{err}");
        let mut two_names = roster();
        let mut renamed = two_names.keys[2].clone();
        renamed.device = Name::new("cam3").unwrap();
        two_names.keys.push(renamed);
        let err = two_names.sign(&owner).unwrap_err().to_string();
        assert!(err.contains("speaks for one device only"), "{err}");
        let mut backwards = roster();
        backwards.keys[0].end = Some(KeyEnd {
            at_unix_ns: 0,
            reason: EndReason::Revoked,
        });
        let err = backwards.sign(&owner).unwrap_err().to_string();
        assert!(err.contains("ends"), "{err}");
    }

    #[test]
    fn a_huge_count_is_refused_before_anything_is_allocated() {
        let (owner, _) = key();
        let mut file = roster().sign(&owner).unwrap();
        // The count follows magic, length, format, suite, version, issued.
        let at = 8 + 4 + 2 + 2 + 8 + 8;
        file[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = SignedDeviceRoster::parse(&file).err().unwrap().to_string();
        assert!(err.contains("key count"), "{err}");
    }

    proptest! {
        #[test]
        fn parsing_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = SignedDeviceRoster::parse(&bytes);
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&bytes);
            let _ = SignedDeviceRoster::parse(&framed);
        }

        #[test]
        fn any_valid_record_round_trips(
            from in 0u64..u64::MAX / 2,
            len in 1u64..u64::MAX / 2,
            end in 0u8..3,
            tpm in any::<bool>(),
            blob in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let (owner, owner_pub) = key();
            let (_, k) = key();
            let mut rec = record("cam-x", k, from, match end {
                0 => None,
                1 => Some(KeyEnd { at_unix_ns: from + len, reason: EndReason::Rotated }),
                _ => Some(KeyEnd { at_unix_ns: from + len, reason: EndReason::Revoked }),
            });
            if tpm {
                rec.origin = KeyOrigin::Tpm(TpmEvidence {
                    ek_certificate: blob.clone(),
                    certify_info: blob,
                    ..TpmEvidence::default()
                });
            }
            let r = DeviceRoster { version: 1, issued_unix: 0, keys: vec![rec] };
            let file = r.sign(&owner).unwrap();
            let read = SignedDeviceRoster::parse(&file).unwrap().verify(&owner_pub).unwrap();
            prop_assert_eq!(read, r);
        }
    }

    fn field() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..200)
    }

    proptest! {
        #[test]
        fn evidence_files_round_trip_and_refuse_every_cut(
            a in field(), b in field(), c in field(), d in field(), e in field(),
        ) {
            let evidence = TpmEvidence {
                ek_certificate: a, attestation_key: b, key_public: c, certify_info: d, certify_signature: e,
            };
            let file = evidence.to_file().unwrap();
            prop_assert_eq!(TpmEvidence::from_file(&file).unwrap(), evidence);
            for at in 0..file.len() {
                prop_assert!(TpmEvidence::from_file(&file[..at]).is_err());
            }
            let mut longer = file.clone();
            longer.push(0);
            prop_assert!(TpmEvidence::from_file(&longer).is_err());
        }

        #[test]
        fn any_bytes_never_panic_the_evidence_reader(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = TpmEvidence::from_file(&data);
            let mut file = EVIDENCE_MAGIC.to_vec();
            file.extend_from_slice(&data);
            let _ = TpmEvidence::from_file(&file);
        }
    }

    #[test]
    fn an_evidence_file_of_another_kind_is_named_as_such() {
        let err = TpmEvidence::from_file(b"\x89SDR\r\n\x1a\n\0\x01").unwrap_err();
        assert!(err.to_string().contains("not a TPM evidence file"), "{err}");
        let too_long = TpmEvidence {
            certify_info: vec![0; 70_000],
            ..TpmEvidence::default()
        };
        assert!(too_long.to_file().is_err());
    }
}
