//! Fuzzes reading signed restart records (a consumer reads them from the
//! ingest, and the ingest from a device; neither trusts the other).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sealcam_format::restart::SignedRestart::parse(data);
});
