//! Fuzzes the recipient-set parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sealcam_format::recipients::SignedRecipientSet::parse(data);
});
