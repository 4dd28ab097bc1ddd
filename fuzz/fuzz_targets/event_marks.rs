//! Fuzzes reading an events record's plaintext (a consumer reads it after
//! decrypting a fragment; the camera that sealed it is trusted for it, but
//! a reader must still never panic or loop on any bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sealcam_format::events::Events::decode(data);
});
