//! Fuzzes reading owner-signed device rosters and TPM evidence files (a consumer reads them from
//! files or from the ingest, which is untrusted).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sealcam_format::roster::SignedDeviceRoster::parse(data);
    // The TPM evidence file an owner passes to `sealcam roster add`.
    if let Ok(evidence) = sealcam_format::roster::TpmEvidence::from_file(data) {
        assert_eq!(evidence.to_file().ok().as_deref(), Some(data));
    }
});
