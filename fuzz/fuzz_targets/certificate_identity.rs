//! Fuzzes reading identities and device keys from certificates.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sealcam_transport::Identity::from_cert_der(data);
    let _ = sealcam_transport::identity::device_key_from_cert_der(data);
});
