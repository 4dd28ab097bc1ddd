//! Fuzzes reading TPM2B_PUBLIC (an enrolling camera sends its EK's, its
//! attestation key's and its device key's; a roster carries them) and
//! what is computed from one: its Name, its point, a credential for it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(public) = sealcam_attest::TpmPublic::decode(data) {
        let name = public.name();
        let _ = public.ecc_point();
        let _ = sealcam_attest::make_credential(&public, &name, b"secret");
    }
});
