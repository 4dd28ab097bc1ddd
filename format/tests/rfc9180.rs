//! Independent cross-check of the data-key wrapping: RFC 9180's known-answer
//! vectors for exactly our suite (base mode, DHKEM(P-256, HKDF-SHA256),
//! HKDF-SHA256, AES-256-GCM), opened through sealcam's own key handling.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_format::ConsumerSecretKey;

const VECTORS: &str = include_str!("data/rfc9180-base-p256-sha256-aes256gcm.json");

fn hex(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn rfc9180_known_answers_open_through_our_keys() {
    let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    assert_eq!(
        (
            v["mode"].as_u64(),
            v["kem_id"].as_u64(),
            v["kdf_id"].as_u64(),
            v["aead_id"].as_u64()
        ),
        (Some(0), Some(16), Some(1), Some(2))
    );
    let sk = ConsumerSecretKey::from_scalar(&hex(&v["skRm"])).unwrap();
    // Our public key encoding is the RFC's.
    assert_eq!(sk.public().sec1().as_bytes(), hex(&v["pkRm"]).as_slice());
    let enc = hex(&v["enc"]);
    let info = hex(&v["info"]);
    // The first encryption of a context is what single-shot sealing produces.
    let first = &v["encryptions"][0];
    let pt = sk
        .hpke_open(&enc, &hex(&first["ct"]), &info, &hex(&first["aad"]))
        .unwrap();
    assert_eq!(pt, hex(&first["pt"]));
    // A changed byte anywhere fails.
    let mut ct = hex(&first["ct"]);
    ct[0] ^= 1;
    assert!(sk.hpke_open(&enc, &ct, &info, &hex(&first["aad"])).is_err());
}
