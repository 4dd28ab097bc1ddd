//! Fuzzes reading signed heads (a consumer reads them from the ingest,
//! which is untrusted).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sealcam_format::head::SignedHead::parse(data);
});
