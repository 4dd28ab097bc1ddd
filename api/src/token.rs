//! The enrollment token never crosses the ingest. A camera proves it holds
//! the one-time token from `sealcam-ca device add` with an HMAC over the
//! very CSR it sends, keyed with the token's SHA-256 (what the CA keeps of
//! it). An ingest that passes the request on learns the proof, which is
//! good for that CSR only: it cannot swap in a CSR for a key of its own.

use aws_lc_rs::{digest, hmac};

/// What the proof's HMAC covers before the CSR.
pub const TOKEN_PROOF_CONTEXT: &[u8] = b"sealcam enrollment token v1\0";

/// The token's SHA-256: the proof's key, and what the CA stores.
pub fn token_digest(token: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, token.trim().as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn key(digest: &[u8; 32]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, digest)
}

/// The proof a camera sends with `csr` (hex).
pub fn token_proof(token: &str, csr: &str) -> String {
    let tag = hmac::sign(
        &key(&token_digest(token)),
        &[TOKEN_PROOF_CONTEXT, csr.as_bytes()].concat(),
    );
    hex::encode(tag.as_ref())
}

/// Whether `proof` (hex) is the proof for `csr` under the token whose
/// digest is `digest`; compared in constant time.
pub fn check_token_proof(digest: &[u8; 32], csr: &str, proof: &str) -> bool {
    let Ok(tag) = hex::decode(proof.trim()) else {
        return false;
    };
    hmac::verify(
        &key(digest),
        &[TOKEN_PROOF_CONTEXT, csr.as_bytes()].concat(),
        &tag,
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_holds_for_its_csr_and_token_only() {
        let d = token_digest("tok");
        let proof = token_proof("tok", "CSR A");
        assert!(check_token_proof(&d, "CSR A", &proof));
        assert!(!check_token_proof(&d, "CSR B", &proof));
        assert!(!check_token_proof(&token_digest("other"), "CSR A", &proof));
        assert!(!check_token_proof(&d, "CSR A", "not hex"));
        assert!(!check_token_proof(&d, "CSR A", ""));
        // The token's surrounding whitespace (a pasted line) does not count.
        assert_eq!(token_digest(" tok\n"), d);
    }
}
