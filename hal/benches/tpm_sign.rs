//! Latency of one device-key signature in the TPM (swtpm here; real TPMs
//! take tens to hundreds of milliseconds, which is why sealcam signs once per
//! fragment and resumes TLS sessions). Also the software key, for scale.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use sealcam_hal::identity::SoftwareKey;
use sealcam_hal::tpm::{provision, TpmConfig, TpmKey};
use sealcam_system_tests::swtpm::Swtpm;
use sealcam_transport::ExternalSigner;

fn sign(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&dir.path().join("tpm"));
    let cfg = TpmConfig {
        tcti: tpm.tcti(),
        handle: 0x8100_0100,
    };
    provision(&cfg, false).unwrap();
    let key = TpmKey::open(&cfg).unwrap();
    let manifest = vec![0x5a; 400];
    c.bench_function("tpm_sign_manifest_swtpm", |b| {
        b.iter(|| key.sign(&manifest).unwrap())
    });
    let soft = SoftwareKey::create(&dir.path().join("soft.key")).unwrap();
    c.bench_function("software_sign_manifest", |b| {
        b.iter(|| soft.sign(&manifest).unwrap())
    });
}

criterion_group!(benches, sign);
criterion_main!(benches);
