//! Deterministic test vectors for the sealed-fragment format v1.
//!
//! Shared by the `vectors` test (which regenerates and compares them with
//! `docs/ref/format-vectors.json`) and the `test-vectors` example (which writes
//! that file).

use p256::ecdsa::signature::Signer;
use rand::SeedableRng;
use sealcam_format::events::{EventKind, EventMark, Events};
use sealcam_format::{
    suite, Closing, ConsumerSecretKey, DeclaredGap, FragmentSealer, Frame, GapReason, ManifestHash,
    Name, SealedFragment, TrackConfig,
};
use sha2::{Digest, Sha256};

/// Fixed inputs: nothing here is secret outside these tests.
pub const DEVICE_KEY_HEX: &str = "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721";
pub const CONSUMER_KEY_HEX: &str =
    "0f2a8b1e6c4d3a5b7e9f1c2d4e6a8b0c1d3e5f7a9b0c2d4e6f8a0b1c3d5e7f9a";
pub const RNG_SEED: [u8; 32] = [7; 32];

fn secret(hex_str: &str) -> p256::SecretKey {
    let bytes = hex::decode(hex_str).expect("fixed hex");
    p256::SecretKey::from_slice(&bytes).expect("fixed scalar")
}

/// Builds the vectors, one per suite, as pretty JSON.
pub fn generate() -> String {
    let json = serde_json::json!({
        "description": "sealcam sealed-fragment format v1 test vectors, one per algorithm suite, and one with an events record; see docs/ref/format.md",
        "vectors": [
            one(suite::SUITE_V2, None),
            one(suite::SUITE_V1, None),
            one(suite::SUITE_V2, Some(door())),
        ],
    });
    let mut s = serde_json::to_string_pretty(&json).expect("json");
    s.push('\n');
    s
}

/// The marks of the events vector: a trigger at the second frame.
fn door() -> Events {
    Events::of(&[EventMark {
        kind: EventKind::Trigger,
        at_ns: 1_033_333_333,
        label: "door".into(),
    }])
}

/// The vector of one suite, with an events record when `events` is given:
/// the same inputs and random draws for each.
fn one(suite: u16, events: Option<Events>) -> serde_json::Value {
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(RNG_SEED);
    let device = p256::ecdsa::SigningKey::from(secret(DEVICE_KEY_HEX));
    let consumer_pem = {
        use p256::pkcs8::EncodePrivateKey;
        secret(CONSUMER_KEY_HEX)
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .expect("encode")
    };
    let consumer = ConsumerSecretKey::from_pem(&consumer_pem).expect("consumer key");
    let track = TrackConfig {
        codec: sealcam_format::seal::CODEC_H264_AVC,
        width: 320,
        height: 240,
        framerate_num: 30,
        framerate_den: 1,
        codec_private: vec![
            0x01, 0x64, 0x00, 0x0d, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x0d,
        ],
    };
    let frames: Vec<Frame> = (0..3u64)
        .map(|i| Frame {
            pts_ns: 1_000_000_000 + i * 33_333_333,
            duration_ns: 33_333_333,
            key_frame: i == 0,
            data: vec![
                0x00,
                0x00,
                0x00,
                0x04,
                0x65 - (i as u8 > 0) as u8 * 0x24,
                0x88,
                0x84,
                i as u8,
            ],
        })
        .collect();
    let mut sealer = FragmentSealer::with_suite(
        Name::new("cam-0001").expect("name"),
        Name::new("front").expect("name"),
        42,
        &track,
        suite,
        &mut rng,
    )
    .expect("sealer");
    for f in &frames {
        sealer.push_frame(f).expect("push");
    }
    if let Some(events) = &events {
        sealer.seal_events(events).expect("events");
    }
    let prev = ManifestHash([0xab; 32]);
    let unsigned = sealer
        .finish(
            Closing {
                prev,
                start_unix_ns: 1_790_000_000_000_000_000,
                end_unix_ns: 1_790_000_000_100_000_000,
                recipients: &[consumer.public().clone()],
                recipient_set_version: 3,
                gaps: vec![DeclaredGap {
                    reason: GapReason::Crash,
                    first_sequence: 42,
                    sequence_count: 0,
                    start_unix_ns: 1_789_999_990_000_000_000,
                    end_unix_ns: 1_790_000_000_000_000_000,
                }],
            },
            &mut rng,
        )
        .expect("finish");
    let message = unsigned.signing_message();
    let sig: p256::ecdsa::Signature = device.sign(&message);
    let file = unsigned.into_file(&sig.to_bytes().into());
    let parsed = SealedFragment::parse(&file).expect("parse");

    let mut vector = serde_json::json!({
        "suite": suite,
        "inputs": {
            "device_private_key_scalar": DEVICE_KEY_HEX,
            "device_public_key_sec1": hex::encode(device.verifying_key().to_encoded_point(false).as_bytes()),
            "consumer_private_key_scalar": CONSUMER_KEY_HEX,
            "consumer_key_id": consumer.public().id().to_string(),
            "rng": "ChaCha20Rng seeded with 32 bytes of 0x07; draws: data key (32 bytes), then the HPKE ephemeral key",
            "device": "cam-0001",
            "stream": "front",
            "sequence": 42,
            "prev_manifest_hash": prev.to_string(),
            "start_unix_ns": 1_790_000_000_000_000_000u64,
            "end_unix_ns": 1_790_000_000_100_000_000u64,
            "track_codec_private": hex::encode(&track.codec_private),
            "frames": frames.iter().map(|f| serde_json::json!({
                "pts_ns": f.pts_ns,
                "duration_ns": f.duration_ns,
                "key_frame": f.key_frame,
                "data": hex::encode(&f.data),
            })).collect::<Vec<_>>(),
        },
        "outputs": {
            "manifest_body": hex::encode(parsed.manifest_body),
            "manifest_hash": parsed.manifest_hash().to_string(),
            "signing_message_sha256": hex::encode(Sha256::digest(&message)),
            "signature": hex::encode(parsed.signature),
            "payload_hash": hex::encode(parsed.manifest.payload_hash),
            "fragment": hex::encode(&file),
        }
    });
    if let Some(events) = events {
        vector["inputs"]["events"] = serde_json::json!(events
            .marks
            .iter()
            .map(|m| serde_json::json!({
                "kind": m.kind as u8,
                "at_ns": m.at_ns,
                "label": m.label,
            }))
            .collect::<Vec<_>>());
    }
    vector
}
