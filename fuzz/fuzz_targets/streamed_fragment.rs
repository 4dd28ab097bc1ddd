//! Fuzzes the decoder of fragments uploaded as they are recorded (payload,
//! then the signed manifest and its length): whatever joins is a fragment
//! that parses, and splits back into the same two parts; and parsing it in
//! place (as the ingest does) accepts exactly that, with the same parts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealcam_format::SealedFragment;

fuzz_target!(|data: &[u8]| {
    let in_place = SealedFragment::parse_streamed(data);
    match sealcam_format::fragment::join_streamed(data) {
        Ok(file) => {
            let f = SealedFragment::parse(&file).expect("a joined fragment parses");
            let (signed, payload) = sealcam_format::fragment::split_streamed(data).expect("split");
            assert_eq!(f.payload, payload);
            assert_eq!(f.signed_manifest(), signed);
            let g = in_place.expect("what joins parses in place");
            assert_eq!(g.payload, f.payload);
            assert_eq!(g.manifest_body, f.manifest_body);
            assert_eq!(g.signature, f.signature);
        }
        Err(_) => assert!(in_place.is_err(), "parsed in place but does not join"),
    }
});
