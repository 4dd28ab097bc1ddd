//! Algorithm suites: one identifier in every manifest names every algorithm
//! the fragment uses.
//!
//! Both suites share AES-256-GCM for records; HPKE DHKEM(P-256, HKDF-SHA256),
//! HKDF-SHA256, AES-256-GCM for data keys; ECDSA P-256 with SHA-256 for
//! signatures; and SHA-256 for the manifest chain. They differ only in the
//! hash that commits the manifest to the sealed payload:
//!
//! * suite 1: SHA-256;
//! * suite 2: BLAKE3-256, which a camera computes at several times the speed
//!   of SHA-256 on the same core (SIMD across 1 KiB chunks), so committing to
//!   the payload no longer costs more than encrypting it.
//!
//! Cameras write suite 2; readers verify both side by side.

/// SHA-256 payload commitment (the first suite).
pub const SUITE_V1: u16 = 1;

/// BLAKE3-256 payload commitment.
pub const SUITE_V2: u16 = 2;

/// The suite cameras write.
pub const DEFAULT_SUITE: u16 = SUITE_V2;

/// Every suite this build reads.
pub const KNOWN_SUITES: [u16; 2] = [SUITE_V1, SUITE_V2];

/// Whether this build knows `suite`.
pub fn is_known(suite: u16) -> bool {
    KNOWN_SUITES.contains(&suite)
}

/// The payload hash of `suite`, fed as the payload grows.
pub(crate) enum PayloadHasher {
    Sha256(aws_lc_rs::digest::Context),
    // Boxed: the BLAKE3 state holds a chunk stack of about 1.9 KB.
    Blake3(Box<blake3::Hasher>),
}

impl PayloadHasher {
    /// A hasher for `suite`, or `None` for a suite this build does not know.
    pub(crate) fn new(suite: u16) -> Option<Self> {
        match suite {
            SUITE_V1 => Some(Self::Sha256(aws_lc_rs::digest::Context::new(
                &aws_lc_rs::digest::SHA256,
            ))),
            SUITE_V2 => Some(Self::Blake3(Box::new(blake3::Hasher::new()))),
            _ => None,
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(c) => c.update(bytes),
            Self::Blake3(h) => {
                h.update(bytes);
            }
        }
    }

    pub(crate) fn finish(self) -> [u8; 32] {
        match self {
            Self::Sha256(c) => {
                let mut out = [0u8; 32];
                out.copy_from_slice(c.finish().as_ref());
                out
            }
            Self::Blake3(h) => *h.finalize().as_bytes(),
        }
    }
}

/// The payload hash of `suite` over `payload`, or `None` for an unknown suite.
pub fn payload_hash(suite: u16, payload: &[u8]) -> Option<[u8; 32]> {
    let mut h = PayloadHasher::new(suite)?;
    h.update(payload);
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_hashes_match_their_published_values() {
        // SHA-256("abc") from FIPS 180-2, BLAKE3("") from the BLAKE3 spec.
        assert_eq!(
            payload_hash(SUITE_V1, b"abc").map(hex::encode).as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            payload_hash(SUITE_V2, b"").map(hex::encode).as_deref(),
            Some("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262")
        );
        assert_eq!(payload_hash(3, b""), None);
    }

    #[test]
    fn incremental_hashing_equals_one_shot() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        for suite in KNOWN_SUITES {
            let mut h = PayloadHasher::new(suite).unwrap();
            for part in data.chunks(12_345) {
                h.update(part);
            }
            assert_eq!(Some(h.finish()), payload_hash(suite, &data));
        }
    }
}
