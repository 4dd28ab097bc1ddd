//! Fuzzes the sealed-fragment parser and record splitter.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = sealcam_format::SealedFragment::parse(data) {
        let _ = f.records();
        let _ = f.manifest_hash();
    }
});
