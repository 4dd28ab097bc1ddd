//! Fuzzes HPKE unwrapping of untrusted encapsulated keys and ciphertexts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealcam_format::ConsumerSecretKey;

fuzz_target!(|data: &[u8]| {
    // A fixed recipient key; the input supplies enc (65 bytes), then ciphertext.
    let Ok(key) = ConsumerSecretKey::from_scalar(&[0x11; 32]) else { return };
    let (enc, ct) = data.split_at(data.len().min(65));
    let _ = key.hpke_open(enc, ct, b"sealcam.v1.data-key\0", &key.public().id().0);
});
