//! Fuzzes the stored key-object decoder (a manifest and its signature, kept
//! apart from the payload by the ingest); whatever parses re-joins with an
//! empty payload only if the manifest says the payload is empty.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = sealcam_format::SignedManifest::parse(data) {
        assert_eq!(m.manifest.encode(), m.body);
        let _ = sealcam_format::fragment::join(data, &[]);
    }
});
