//! Fuzzes the evidence-bundle decoders: the bundle manifest and the
//! disclosed-keys file (`sealcam verify-bundle` reads both from whoever
//! handed over the bundle).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(read) = sealcam_format::bundle::BundleManifest::read(data) {
        assert!(read
            .manifest
            .files
            .iter()
            .all(|f| sealcam_format::bundle::is_safe_path(&f.path)));
    }
    let _ = sealcam_format::bundle::DisclosedKeys::decode(data);
});
