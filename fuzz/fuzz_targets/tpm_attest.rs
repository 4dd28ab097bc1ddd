//! Fuzzes reading TPM2_Certify's TPM2B_ATTEST and TPMT_SIGNATURE (sent by
//! an enrolling camera, carried in rosters the ingest serves).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sealcam_attest::CertifyInfo::decode(data);
    let _ = sealcam_attest::TpmSignature::decode(data);
});
