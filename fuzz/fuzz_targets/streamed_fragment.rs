//! Fuzzes the decoder of fragments uploaded as they are recorded (payload,
//! then the signed manifest and its length): whatever joins is a fragment
//! that parses, and splits back into the same two parts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = sealcam_format::fragment::join_streamed(data) {
        let f = sealcam_format::SealedFragment::parse(&file).expect("a joined fragment parses");
        let (signed, payload) = sealcam_format::fragment::split_streamed(data).expect("split");
        assert_eq!(f.payload, payload);
        assert_eq!(f.signed_manifest(), signed);
    }
});
