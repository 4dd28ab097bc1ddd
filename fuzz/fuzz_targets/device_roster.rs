//! Fuzzes reading owner-signed device rosters (a consumer reads them from
//! files or from the ingest, which is untrusted).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sealcam_format::roster::SignedDeviceRoster::parse(data);
});
