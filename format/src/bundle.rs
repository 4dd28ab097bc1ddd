//! Evidence bundles: what `sealcam export` hands a third party.
//!
//! A bundle is a directory laid out as `sealcam fetch` writes one (the
//! sealed fragments of a range, the owner's roster, the device's
//! certificates, signed heads if any) plus two files this module encodes:
//!
//! * the bundle manifest (`bundle.sbm`): who exported which range of which
//!   stream, when, how the fragment keys are disclosed and to whom, and the
//!   SHA-256 of every other file of the bundle; optionally signed by the
//!   exporter (with the owner key), always closed by a SHA-256 checksum;
//! * the disclosed keys (`keys.sdk`): the data key of each fragment of the
//!   range, HPKE-wrapped to one recipient named at export, or in plaintext.
//!
//! Both are untrusted input to whoever verifies a bundle: the decoders
//! never panic, and the manifest refuses any file path that could leave
//! the bundle directory. The byte layouts are in `docs/ref/format.md`.

use p256::ecdsa::signature::{Signer, Verifier};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::codec::{Reader, Writer};
use crate::keys::{ConsumerPublicKey, ConsumerSecretKey, DeviceVerifyingKey, KeyId};
use crate::manifest::ManifestHash;
use crate::name::Name;
use crate::{FormatError, SealError, FORMAT_VERSION};

/// Magic of a bundle manifest: "\x89SCB\r\n\x1a\n".
pub const MANIFEST_MAGIC: &[u8; 8] = b"\x89SCB\r\n\x1a\n";
/// Magic of a disclosed-keys file: "\x89SCK\r\n\x1a\n".
pub const KEYS_MAGIC: &[u8; 8] = b"\x89SCK\r\n\x1a\n";
/// What the exporter's signature covers, before the manifest body.
pub const SIGNING_CONTEXT: &[u8] = b"sealcam evidence bundle v1\0";
/// The HPKE `info` of a disclosed key starts with this.
const DISCLOSED_KEY_CONTEXT: &[u8] = b"sealcam.v1.disclosed-key\0";
/// At most this many files in a bundle, and keys in a keys file.
pub const MAX_FILES: usize = 1 << 20;
/// Longest file path in a bundle manifest.
const MAX_PATH: usize = 200;

const DISCLOSURE_WRAPPED: u8 = 1;
const DISCLOSURE_PLAINTEXT: u8 = 2;

/// How the fragments' data keys are disclosed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disclosure {
    /// HPKE-wrapped to one consumer key (from `sealcam keygen`).
    Wrapped { recipient: KeyId, label: String },
    /// In plaintext: whoever holds the keys file decrypts the range.
    Plaintext,
}

/// One file of a bundle, by its path relative to the bundle directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: [u8; 32],
}

impl FileEntry {
    pub fn of(path: String, bytes: &[u8]) -> Self {
        Self {
            path,
            size: bytes.len() as u64,
            sha256: Sha256::digest(bytes).into(),
        }
    }

    /// Whether `bytes` are this file as listed (size and SHA-256).
    pub fn matches(&self, bytes: &[u8]) -> bool {
        bytes.len() as u64 == self.size && Sha256::digest(bytes).as_slice() == self.sha256
    }
}

/// What a bundle holds and who made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleManifest {
    pub created_unix_ns: u64,
    /// Who exported, as they named themselves (a claim unless signed).
    pub exporter: String,
    pub device: Name,
    pub stream: Name,
    /// The range asked for at export (0 and `u64::MAX` when open).
    pub from_unix_ns: u64,
    pub to_unix_ns: u64,
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub disclosure: Disclosure,
    /// Every file of the bundle but the manifest itself.
    pub files: Vec<FileEntry>,
}

/// A bundle manifest as read: checksum checked, and the exporter's
/// signature checked if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadBundleManifest {
    pub manifest: BundleManifest,
    /// The key that signed it, if it is signed.
    pub signed_by: Option<DeviceVerifyingKey>,
}

/// Whether `path` is a safe relative path inside a bundle: one or two
/// components of `A-Z a-z 0-9 . _ -`, none empty, none starting with '.'.
pub fn is_safe_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    path.len() <= MAX_PATH
        && (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

fn invalid(what: &'static str, offset: usize, reason: impl Into<String>) -> FormatError {
    FormatError::Invalid {
        what,
        offset,
        reason: reason.into(),
    }
}

impl BundleManifest {
    fn encode_body(&self) -> Result<Vec<u8>, SealError> {
        if self.files.len() > MAX_FILES {
            return Err(SealError::TooLarge("more files than a bundle may hold"));
        }
        if let Some(f) = self.files.iter().find(|f| !is_safe_path(&f.path)) {
            return Err(SealError::Key(format!(
                "{:?} is not a file name a bundle may hold",
                f.path
            )));
        }
        if self.exporter.len() > 256 {
            return Err(SealError::TooLarge("exporter name longer than 256 bytes"));
        }
        let mut out = Vec::new();
        out.put_u16(FORMAT_VERSION);
        out.put_u64(self.created_unix_ns);
        out.put_bytes16(self.exporter.as_bytes());
        out.put_bytes16(self.device.as_str().as_bytes());
        out.put_bytes16(self.stream.as_str().as_bytes());
        out.put_u64(self.from_unix_ns);
        out.put_u64(self.to_unix_ns);
        out.put_u64(self.first_sequence);
        out.put_u64(self.last_sequence);
        match &self.disclosure {
            Disclosure::Wrapped { recipient, label } => {
                if label.len() > 256 {
                    return Err(SealError::TooLarge("recipient label longer than 256 bytes"));
                }
                out.put_u8(DISCLOSURE_WRAPPED);
                out.extend_from_slice(&recipient.0);
                out.put_bytes16(label.as_bytes());
            }
            Disclosure::Plaintext => out.put_u8(DISCLOSURE_PLAINTEXT),
        }
        out.put_u32(self.files.len() as u32);
        for f in &self.files {
            out.put_bytes16(f.path.as_bytes());
            out.put_u64(f.size);
            out.extend_from_slice(&f.sha256);
        }
        Ok(out)
    }

    /// The manifest file, signed with `signer` if given.
    pub fn encode(&self, signer: Option<&p256::ecdsa::SigningKey>) -> Result<Vec<u8>, SealError> {
        let body = self.encode_body()?;
        let mut out = MANIFEST_MAGIC.to_vec();
        out.put_u32(u32::try_from(body.len()).map_err(|_| SealError::TooLarge("bundle manifest"))?);
        out.extend_from_slice(&body);
        match signer {
            None => out.put_u8(0),
            Some(key) => {
                let mut msg = SIGNING_CONTEXT.to_vec();
                msg.extend_from_slice(&body);
                let sig: p256::ecdsa::Signature = key.sign(&msg);
                out.put_u8(1);
                out.put_bytes16(key.verifying_key().to_encoded_point(false).as_bytes());
                out.extend_from_slice(&sig.to_bytes());
            }
        }
        let sum: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&sum);
        Ok(out)
    }

    fn decode_body(body: &[u8]) -> Result<Self, FormatError> {
        const W: &str = "bundle manifest";
        let mut r = Reader::new(body, W);
        let version = r.u16()?;
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let created_unix_ns = r.u64()?;
        let exporter = r.str16()?.to_owned();
        let name = |r: &mut Reader<'_>| -> Result<Name, FormatError> {
            let offset = r.position();
            Name::new(r.str16()?).map_err(|e| invalid(W, offset, e.to_string()))
        };
        let device = name(&mut r)?;
        let stream = name(&mut r)?;
        let from_unix_ns = r.u64()?;
        let to_unix_ns = r.u64()?;
        let first_sequence = r.u64()?;
        let last_sequence = r.u64()?;
        let offset = r.position();
        let disclosure = match r.u8()? {
            DISCLOSURE_WRAPPED => Disclosure::Wrapped {
                recipient: KeyId(r.array()?),
                label: r.str16()?.to_owned(),
            },
            DISCLOSURE_PLAINTEXT => Disclosure::Plaintext,
            other => return Err(invalid(W, offset, format!("unknown disclosure {other}"))),
        };
        let offset = r.position();
        let n = r.u32()? as usize;
        // Each entry takes at least 2 + 1 + 8 + 32 bytes.
        if n > MAX_FILES || n.saturating_mul(43) > r.remaining() {
            return Err(invalid(W, offset, format!("file count {n} is impossible")));
        }
        let mut files = Vec::with_capacity(n);
        for _ in 0..n {
            let offset = r.position();
            let path = r.str16()?.to_owned();
            if !is_safe_path(&path) {
                return Err(invalid(
                    W,
                    offset,
                    format!("{path:?} is not a file name a bundle may hold (one subdirectory at most, no '..', no leading '.' or '/')"),
                ));
            }
            if files.iter().any(|f: &FileEntry| f.path == path) {
                return Err(invalid(W, offset, format!("{path:?} is listed twice")));
            }
            let size = r.u64()?;
            let sha256 = r.array()?;
            files.push(FileEntry { path, size, sha256 });
        }
        r.finish()?;
        Ok(Self {
            created_unix_ns,
            exporter,
            device,
            stream,
            from_unix_ns,
            to_unix_ns,
            first_sequence,
            last_sequence,
            disclosure,
            files,
        })
    }

    /// Reads a manifest file: its checksum, its structure, and its
    /// signature if it is signed. Never panics on any input.
    pub fn read(bytes: &[u8]) -> Result<ReadBundleManifest, SealError> {
        const W: &str = "bundle manifest";
        let Some(split) = bytes.len().checked_sub(32) else {
            return Err(FormatError::Truncated {
                what: W,
                offset: 0,
                needed: 32,
                available: bytes.len(),
            }
            .into());
        };
        let (content, sum) = bytes.split_at(split);
        if Sha256::digest(content).as_slice() != sum {
            return Err(invalid(
                W,
                split,
                "its SHA-256 checksum does not match: the file was altered or damaged",
            )
            .into());
        }
        let mut r = Reader::new(content, W);
        if r.take(8)? != &MANIFEST_MAGIC[..] {
            return Err(FormatError::BadMagic {
                expected: MANIFEST_MAGIC,
            }
            .into());
        }
        let len = r.u32()? as usize;
        let body = r.take(len)?;
        let manifest = Self::decode_body(body)?;
        let offset = r.position();
        let signed_by = match r.u8()? {
            0 => None,
            1 => {
                let key = DeviceVerifyingKey::from_sec1(r.bytes16()?)?;
                let sig = p256::ecdsa::Signature::from_slice(&r.array::<64>()?)
                    .map_err(|_| SealError::BadSignature)?;
                let mut msg = SIGNING_CONTEXT.to_vec();
                msg.extend_from_slice(body);
                key.0
                    .verify(&msg, &sig)
                    .map_err(|_| SealError::BadSignature)?;
                Some(key)
            }
            other => return Err(invalid(W, offset, format!("unknown signer flag {other}")).into()),
        };
        r.finish()?;
        Ok(ReadBundleManifest {
            manifest,
            signed_by,
        })
    }
}

/// The data key of one fragment, as disclosed.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySecret {
    /// HPKE `enc` and ciphertext, to the keys file's recipient.
    Wrapped {
        enc: Vec<u8>,
        ciphertext: Vec<u8>,
    },
    Plaintext(Zeroizing<[u8; 32]>),
}

impl std::fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Wrapped { .. } => f.write_str("Wrapped"),
            Self::Plaintext(_) => f.write_str("Plaintext(..)"),
        }
    }
}

/// One fragment's data key, bound to the fragment by its manifest hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisclosedKey {
    pub sequence: u64,
    pub manifest_hash: ManifestHash,
    pub secret: KeySecret,
}

/// A keys file: the data keys of a bundle's fragments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisclosedKeys {
    /// The key they are wrapped to, or `None` for plaintext keys.
    pub recipient: Option<KeyId>,
    pub keys: Vec<DisclosedKey>,
}

/// The HPKE `info` of a disclosed key: it opens only for the fragment
/// named (device, stream, sequence, manifest hash).
fn disclosed_info(device: &Name, stream: &Name, sequence: u64, hash: &ManifestHash) -> Vec<u8> {
    let mut info = DISCLOSED_KEY_CONTEXT.to_vec();
    info.put_bytes16(device.as_str().as_bytes());
    info.put_bytes16(stream.as_str().as_bytes());
    info.put_u64(sequence);
    info.extend_from_slice(&hash.0);
    info
}

/// The fragment a disclosed key is for.
pub struct FragmentId<'a> {
    pub device: &'a Name,
    pub stream: &'a Name,
    pub sequence: u64,
    pub manifest_hash: ManifestHash,
}

impl DisclosedKey {
    /// Wraps `data_key` of fragment `id` to `to` (HPKE, as the camera
    /// wraps, with an `info` naming the fragment and its manifest hash).
    pub fn wrap<R: RngCore + CryptoRng>(
        id: &FragmentId<'_>,
        data_key: &[u8; 32],
        to: &ConsumerPublicKey,
        rng: &mut R,
    ) -> Result<Self, SealError> {
        let info = disclosed_info(id.device, id.stream, id.sequence, &id.manifest_hash);
        let (enc, ciphertext) = to.wrap(data_key, &info, rng)?;
        Ok(Self {
            sequence: id.sequence,
            manifest_hash: id.manifest_hash,
            secret: KeySecret::Wrapped { enc, ciphertext },
        })
    }

    /// The data key in plaintext.
    pub fn plaintext(id: &FragmentId<'_>, data_key: &[u8; 32]) -> Self {
        Self {
            sequence: id.sequence,
            manifest_hash: id.manifest_hash,
            secret: KeySecret::Plaintext(Zeroizing::new(*data_key)),
        }
    }

    /// The data key for fragment `id` (a wrapped key needs `key`, the
    /// recipient's). Refuses a key disclosed for another fragment.
    pub fn data_key(
        &self,
        id: &FragmentId<'_>,
        key: Option<&ConsumerSecretKey>,
    ) -> Result<Zeroizing<[u8; 32]>, SealError> {
        if self.sequence != id.sequence || self.manifest_hash != id.manifest_hash {
            return Err(SealError::Key(format!(
                "the key was disclosed for fragment {} (manifest {}), not this one",
                self.sequence, self.manifest_hash
            )));
        }
        match (&self.secret, key) {
            (KeySecret::Plaintext(k), _) => Ok(k.clone()),
            (KeySecret::Wrapped { enc, ciphertext }, Some(key)) => {
                let info = disclosed_info(id.device, id.stream, id.sequence, &id.manifest_hash);
                key.unwrap_key(enc, ciphertext, &info)
            }
            (KeySecret::Wrapped { .. }, None) => Err(SealError::Key(
                "the keys are wrapped to a recipient: pass the recipient's private key (--key)"
                    .into(),
            )),
        }
    }
}

impl DisclosedKeys {
    /// The keys file.
    pub fn encode(&self) -> Result<Vec<u8>, SealError> {
        if self.keys.len() > MAX_FILES {
            return Err(SealError::TooLarge("more keys than a bundle may hold"));
        }
        let mut out = KEYS_MAGIC.to_vec();
        out.put_u16(FORMAT_VERSION);
        match &self.recipient {
            Some(id) => {
                out.put_u8(DISCLOSURE_WRAPPED);
                out.extend_from_slice(&id.0);
            }
            None => out.put_u8(DISCLOSURE_PLAINTEXT),
        }
        out.put_u32(self.keys.len() as u32);
        for k in &self.keys {
            out.put_u64(k.sequence);
            out.extend_from_slice(&k.manifest_hash.0);
            match (&k.secret, self.recipient.is_some()) {
                (KeySecret::Wrapped { enc, ciphertext }, true) => {
                    out.put_bytes16(enc);
                    out.put_bytes16(ciphertext);
                }
                (KeySecret::Plaintext(key), false) => out.extend_from_slice(key.as_ref()),
                _ => {
                    return Err(SealError::Key(
                        "a keys file holds either wrapped or plaintext keys, not both".into(),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// Reads a keys file. Never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        const W: &str = "keys file";
        let mut r = Reader::new(bytes, W);
        if r.take(8)? != &KEYS_MAGIC[..] {
            return Err(FormatError::BadMagic {
                expected: KEYS_MAGIC,
            });
        }
        let version = r.u16()?;
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let offset = r.position();
        let recipient = match r.u8()? {
            DISCLOSURE_WRAPPED => Some(KeyId(r.array()?)),
            DISCLOSURE_PLAINTEXT => None,
            other => return Err(invalid(W, offset, format!("unknown disclosure {other}"))),
        };
        let offset = r.position();
        let n = r.u32()? as usize;
        // Each entry takes at least 8 + 32 + 4 bytes.
        if n > MAX_FILES || n.saturating_mul(44) > r.remaining() {
            return Err(invalid(W, offset, format!("key count {n} is impossible")));
        }
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            let offset = r.position();
            let sequence = r.u64()?;
            let manifest_hash = ManifestHash(r.array()?);
            if keys.iter().any(|k: &DisclosedKey| k.sequence == sequence) {
                return Err(invalid(
                    W,
                    offset,
                    format!("fragment {sequence} has two keys"),
                ));
            }
            let secret = match recipient {
                Some(_) => KeySecret::Wrapped {
                    enc: r.bytes16()?.to_vec(),
                    ciphertext: r.bytes16()?.to_vec(),
                },
                None => KeySecret::Plaintext(Zeroizing::new(r.array()?)),
            };
            keys.push(DisclosedKey {
                sequence,
                manifest_hash,
                secret,
            });
        }
        r.finish()?;
        Ok(Self { recipient, keys })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    fn manifest(files: Vec<FileEntry>, disclosure: Disclosure) -> BundleManifest {
        BundleManifest {
            created_unix_ns: 1_700_000_000_000_000_000,
            exporter: "alice".into(),
            device: Name::new("cam1").unwrap(),
            stream: Name::new("front").unwrap(),
            from_unix_ns: 0,
            to_unix_ns: u64::MAX,
            first_sequence: 3,
            last_sequence: 9,
            disclosure,
            files,
        }
    }

    fn files() -> Vec<FileEntry> {
        vec![
            FileEntry::of("00000000000000000003.scf".into(), b"fragment"),
            FileEntry::of("certs/0a1b.crt".into(), b"cert"),
            FileEntry::of("keys.sdk".into(), b"keys"),
        ]
    }

    #[test]
    fn signed_and_unsigned_manifests_round_trip_and_any_flip_is_caught() {
        let owner = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let wrapped = Disclosure::Wrapped {
            recipient: KeyId([5; 8]),
            label: "court".into(),
        };
        for (m, signer) in [
            (manifest(files(), wrapped), Some(&owner)),
            (manifest(files(), Disclosure::Plaintext), None),
        ] {
            let file = m.encode(signer).unwrap();
            let read = BundleManifest::read(&file).unwrap();
            assert_eq!(read.manifest, m);
            assert_eq!(
                read.signed_by.map(|k| k.fingerprint()),
                signer.map(|k| DeviceVerifyingKey(*k.verifying_key()).fingerprint())
            );
            for i in 0..file.len() {
                let mut bad = file.clone();
                bad[i] ^= 0x01;
                assert!(BundleManifest::read(&bad).is_err(), "flip at {i} accepted");
            }
        }
    }

    #[test]
    fn a_resigned_manifest_names_its_new_signer() {
        // Someone who edits a signed manifest can re-sign it only with
        // their own key, and the reader sees whose.
        let owner = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let mallory = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let m = manifest(files(), Disclosure::Plaintext);
        let read = BundleManifest::read(&m.encode(Some(&mallory)).unwrap()).unwrap();
        assert_ne!(
            read.signed_by.unwrap().fingerprint(),
            DeviceVerifyingKey(*owner.verifying_key()).fingerprint()
        );
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for p in [
            "../x",
            "/etc/passwd",
            "a/../../b",
            "a/b/c",
            ".hidden",
            "",
            "a//b",
            "a\\b",
            "certs/..",
            "bundle.sbm/",
        ] {
            assert!(!is_safe_path(p), "{p:?} accepted");
            let m = manifest(vec![FileEntry::of(p.into(), b"x")], Disclosure::Plaintext);
            assert!(m.encode(None).is_err(), "{p:?} encoded");
        }
        for p in [
            "roster.sdr",
            "certs/0a.crt",
            "heads/00000000000000000001.sdh",
        ] {
            assert!(is_safe_path(p), "{p:?} refused");
        }
    }

    fn id<'a>(device: &'a Name, stream: &'a Name, sequence: u64) -> FragmentId<'a> {
        FragmentId {
            device,
            stream,
            sequence,
            manifest_hash: ManifestHash([sequence as u8; 32]),
        }
    }

    #[test]
    fn a_wrapped_key_opens_for_its_recipient_and_fragment_only() {
        let mut rng = rand::thread_rng();
        let third = ConsumerSecretKey::generate(&mut rng);
        let other = ConsumerSecretKey::generate(&mut rng);
        let (d, s) = (Name::new("cam1").unwrap(), Name::new("front").unwrap());
        let k = DisclosedKey::wrap(&id(&d, &s, 4), &[9; 32], third.public(), &mut rng).unwrap();
        assert_eq!(*k.data_key(&id(&d, &s, 4), Some(&third)).unwrap(), [9; 32]);
        assert!(k.data_key(&id(&d, &s, 4), Some(&other)).is_err());
        assert!(k.data_key(&id(&d, &s, 4), None).is_err());
        assert!(k.data_key(&id(&d, &s, 5), Some(&third)).is_err());
        // The same key with its sequence edited to another fragment's: the
        // HPKE info no longer matches.
        let mut moved = k.clone();
        moved.sequence = 5;
        moved.manifest_hash = ManifestHash([5; 32]);
        assert!(moved.data_key(&id(&d, &s, 5), Some(&third)).is_err());
        let file = DisclosedKeys {
            recipient: Some(third.public().id()),
            keys: vec![k],
        }
        .encode()
        .unwrap();
        let back = DisclosedKeys::decode(&file).unwrap();
        assert_eq!(
            *back.keys[0].data_key(&id(&d, &s, 4), Some(&third)).unwrap(),
            [9; 32]
        );
    }

    fn arb_keys() -> impl Strategy<Value = DisclosedKeys> {
        let plain = proptest::collection::btree_map(any::<u64>(), any::<[u8; 32]>(), 0..6)
            .prop_map(|m| DisclosedKeys {
                recipient: None,
                keys: m
                    .into_iter()
                    .map(|(sequence, key)| DisclosedKey {
                        sequence,
                        manifest_hash: ManifestHash(key),
                        secret: KeySecret::Plaintext(Zeroizing::new(key)),
                    })
                    .collect(),
            });
        let wrapped = (
            any::<[u8; 8]>(),
            proptest::collection::btree_map(
                any::<u64>(),
                (
                    proptest::collection::vec(any::<u8>(), 0..80),
                    proptest::collection::vec(any::<u8>(), 0..60),
                ),
                0..6,
            ),
        )
            .prop_map(|(id, m)| DisclosedKeys {
                recipient: Some(KeyId(id)),
                keys: m
                    .into_iter()
                    .map(|(sequence, (enc, ciphertext))| DisclosedKey {
                        sequence,
                        manifest_hash: ManifestHash([1; 32]),
                        secret: KeySecret::Wrapped { enc, ciphertext },
                    })
                    .collect(),
            });
        prop_oneof![plain, wrapped]
    }

    fn arb_manifest() -> impl Strategy<Value = BundleManifest> {
        let path = "[a-z0-9_]{1,12}(/[a-z0-9_][a-z0-9._-]{0,19})?";
        (
            any::<u64>(),
            "[ -~]{0,40}",
            proptest::collection::btree_map(path, (any::<u64>(), any::<[u8; 32]>()), 0..8),
            proptest::option::of((any::<[u8; 8]>(), "[ -~]{0,20}")),
            any::<(u64, u64, u64, u64)>(),
        )
            .prop_map(
                |(created, exporter, files, wrapped, (a, b, c, d))| BundleManifest {
                    created_unix_ns: created,
                    exporter,
                    device: Name::new("cam1").unwrap(),
                    stream: Name::new("front").unwrap(),
                    from_unix_ns: a,
                    to_unix_ns: b,
                    first_sequence: c,
                    last_sequence: d,
                    disclosure: match wrapped {
                        Some((id, label)) => Disclosure::Wrapped {
                            recipient: KeyId(id),
                            label,
                        },
                        None => Disclosure::Plaintext,
                    },
                    files: files
                        .into_iter()
                        .map(|(path, (size, sha256))| FileEntry { path, size, sha256 })
                        .collect(),
                },
            )
    }

    proptest! {
        #[test]
        fn reading_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = BundleManifest::read(&bytes);
            let _ = DisclosedKeys::decode(&bytes);
        }

        #[test]
        fn manifests_round_trip(m in arb_manifest()) {
            let file = m.encode(None).unwrap();
            prop_assert_eq!(BundleManifest::read(&file).unwrap().manifest, m);
        }

        #[test]
        fn keys_files_round_trip_and_truncations_fail(k in arb_keys(), cut in any::<usize>()) {
            let file = k.encode().unwrap();
            prop_assert_eq!(&DisclosedKeys::decode(&file).unwrap(), &k);
            let cut = cut % file.len();
            prop_assert!(DisclosedKeys::decode(&file[..cut]).is_err());
        }

        #[test]
        fn a_manifest_with_a_checksum_fixed_after_an_edit_still_parses_only_if_sane(
            m in arb_manifest(),
            at in any::<usize>(),
            bit in 0u8..8,
        ) {
            // An attacker can recompute the checksum of an unsigned
            // manifest; the decoder must still hold up, and never
            // yield an unsafe path.
            let mut file = m.encode(None).unwrap();
            let body_end = file.len() - 32;
            let at = at % body_end;
            file[at] ^= 1 << bit;
            let sum: [u8; 32] = Sha256::digest(&file[..body_end]).into();
            file[body_end..].copy_from_slice(&sum);
            if let Ok(read) = BundleManifest::read(&file) {
                prop_assert!(read.manifest.files.iter().all(|f| is_safe_path(&f.path)));
            }
        }
    }
}
