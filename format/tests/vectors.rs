//! The published test vectors (docs/ref/format-vectors.json) still come out of
//! this code byte for byte, and they open and verify.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use sealcam_format::{ConsumerSecretKey, DeviceVerifyingKey, SealedFragment};

const PUBLISHED: &str = include_str!("../../docs/ref/format-vectors.json");

#[test]
fn regenerated_vectors_match_the_published_ones() {
    let fresh = common::vectors::generate();
    assert!(
        fresh == PUBLISHED,
        "docs/ref/format-vectors.json is stale or the format changed; if the change is intended, \
         bump the format version and run `cargo run -p sealcam-format --example test-vectors > docs/ref/format-vectors.json`"
    );
}

#[test]
fn published_fragments_of_every_suite_verify_and_open() {
    let all: serde_json::Value = serde_json::from_str(PUBLISHED).unwrap();
    let vectors = all["vectors"].as_array().unwrap();
    let mut suites: Vec<u64> = vectors
        .iter()
        .filter(|v| v["inputs"]["events"].is_null())
        .map(|v| v["suite"].as_u64().unwrap())
        .collect();
    suites.sort();
    assert_eq!(suites, [1, 2], "one vector per known suite");
    assert_eq!(
        vectors
            .iter()
            .filter(|v| !v["inputs"]["events"].is_null())
            .count(),
        1,
        "one vector with an events record"
    );
    for v in vectors {
        published_fragment_verifies_and_opens(v);
    }
}

fn published_fragment_verifies_and_opens(v: &serde_json::Value) {
    let file = hex::decode(v["outputs"]["fragment"].as_str().unwrap()).unwrap();
    let frag = SealedFragment::parse(&file).unwrap();
    assert_eq!(u64::from(frag.manifest.suite), v["suite"].as_u64().unwrap());
    let pk = hex::decode(v["inputs"]["device_public_key_sec1"].as_str().unwrap()).unwrap();
    frag.verify(&DeviceVerifyingKey::from_sec1(&pk).unwrap())
        .unwrap();
    let scalar = hex::decode(v["inputs"]["consumer_private_key_scalar"].as_str().unwrap()).unwrap();
    let sk = {
        use p256::pkcs8::EncodePrivateKey;
        let k = p256::SecretKey::from_slice(&scalar).unwrap();
        ConsumerSecretKey::from_pem(&k.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).unwrap()).unwrap()
    };
    let opened = frag.open(&sk).unwrap();
    let frames = v["inputs"]["frames"].as_array().unwrap();
    assert_eq!(opened.frames.len(), frames.len());
    for (f, j) in opened.frames.iter().zip(frames) {
        assert_eq!(hex::encode(&f.data), j["data"].as_str().unwrap());
    }
    let marks: Vec<(u64, u64, String)> = opened
        .events
        .iter()
        .flat_map(|e| &e.marks)
        .map(|m| (m.kind as u64, m.at_ns, m.label.clone()))
        .collect();
    let published: Vec<(u64, u64, String)> = v["inputs"]["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m["kind"].as_u64().unwrap(),
                        m["at_ns"].as_u64().unwrap(),
                        m["label"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(marks, published);
    assert_eq!(opened.events.is_some(), !v["inputs"]["events"].is_null());
}
