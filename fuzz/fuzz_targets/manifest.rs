//! Fuzzes the manifest decoder; whatever decodes must re-encode identically.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = sealcam_format::Manifest::decode(data) {
        assert_eq!(m.encode(), data);
    }
});
