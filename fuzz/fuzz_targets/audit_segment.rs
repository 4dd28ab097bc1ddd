//! Fuzzes verifying audit segments and reading audit heads: segments are
//! read back from the storage, which is untrusted; a head file comes from
//! wherever the operator kept it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]) {
        let _ = sealcam_ingest::audit::verify_segment("a", 1, 0, data, key.verifying_key());
    }
    let _ = serde_json::from_slice::<sealcam_ingest::audit::HeadFile>(data);
});
