//! The device key in a real TPM 2.0 (swtpm, one private instance per test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::str::FromStr;
use std::time::Duration;

use p256::ecdsa::signature::Verifier;
use sealcam_hal::tpm::{provision, Provisioned, TpmConfig, TpmError, TpmKey};
use sealcam_system_tests::swtpm::Swtpm;
use sealcam_transport::ExternalSigner;

const HANDLE: u32 = 0x8100_0100;

fn config(tpm: &Swtpm) -> TpmConfig {
    TpmConfig {
        tcti: tpm.tcti(),
        handle: HANDLE,
    }
}

fn key_of(p: Provisioned) -> p256::ecdsa::VerifyingKey {
    match p {
        Provisioned::Created(k) | Provisioned::Reused(k) => k,
    }
}

/// Opens the key, retrying while a previous owner thread still holds the
/// simulator's single connection (the connection is refused, or breaks at
/// the first command: both are `TpmError::Open`). A loaded machine can take
/// seconds to let go.
fn open(cfg: &TpmConfig) -> TpmKey {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match TpmKey::open(cfg) {
            Ok(k) => return k,
            Err(TpmError::Open { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn signs(key: &TpmKey) {
    let msg = b"manifest bytes";
    let sig = key.sign(msg).unwrap();
    key.verifying_key().verify(msg, &sig).unwrap();
}

#[test]
fn provision_creates_then_reuses_and_force_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(dir.path());
    let cfg = config(&tpm);
    let first = provision(&cfg, false).unwrap();
    assert!(matches!(first, Provisioned::Created(_)));
    let again = provision(&cfg, false).unwrap();
    assert!(matches!(again, Provisioned::Reused(_)));
    let (first, again) = (key_of(first), key_of(again));
    assert_eq!(first, again);
    let replaced = provision(&cfg, true).unwrap();
    assert!(matches!(replaced, Provisioned::Created(_)));
    assert_ne!(key_of(replaced), first);
}

#[test]
fn key_persists_across_tpm_restarts_and_the_owner_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let mut tpm = Swtpm::start(dir.path());
    let cfg = config(&tpm);
    let created = key_of(provision(&cfg, false).unwrap());
    tpm.restart();
    let key = open(&cfg);
    assert_eq!(key.verifying_key(), created);
    signs(&key);
    // The simulator dies under a running key: the owner thread reconnects.
    tpm.restart();
    signs(&key);
}

#[test]
fn open_without_provisioning_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(dir.path());
    let err = TpmKey::open(&config(&tpm)).err().unwrap();
    assert!(matches!(err, TpmError::NoKey { .. }));
    assert!(err.to_string().contains("sealcamd provision"), "{err}");
}

#[test]
fn the_private_key_cannot_be_exported() {
    use tss_esapi::handles::{ObjectHandle, PersistentTpmHandle, TpmHandle};
    use tss_esapi::structures::SymmetricDefinitionObject;
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(dir.path());
    provision(&config(&tpm), false).unwrap();
    let mut ctx =
        tss_esapi::Context::new(tss_esapi::tcti_ldr::TctiNameConf::from_str(&tpm.tcti()).unwrap())
            .unwrap();
    let key = ctx
        .execute_without_session(|c| {
            c.tr_from_tpm_public(TpmHandle::Persistent(
                PersistentTpmHandle::new(HANDLE).unwrap(),
            ))
        })
        .unwrap();
    let (public, _, _) = ctx.read_public(key.into()).unwrap();
    let attrs = public.object_attributes();
    assert!(
        attrs.fixed_tpm() && attrs.fixed_parent() && attrs.sensitive_data_origin() && attrs.no_da()
    );
    // TPM2_Duplicate is the only way a key leaves a TPM; it is refused.
    let exported = ctx.execute_with_nullauth_session(|c| {
        c.duplicate(
            key,
            ObjectHandle::Null,
            None,
            SymmetricDefinitionObject::Null,
        )
    });
    assert!(
        exported.is_err(),
        "the TPM let the device key be duplicated"
    );
}

#[test]
fn fifty_unclean_stops_do_not_lock_the_key_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut tpm = Swtpm::start(dir.path());
    let cfg = config(&tpm);
    provision(&cfg, false).unwrap();
    for i in 0..50 {
        let key = open(&cfg);
        // Sign in the background and cut the power under it.
        let worker = std::thread::spawn(move || {
            let _ = key.sign(format!("fragment {i}").as_bytes());
            key
        });
        std::thread::sleep(Duration::from_millis((i % 5) as u64));
        tpm.restart();
        drop(worker.join().unwrap());
    }
    let key = open(&cfg);
    signs(&key);
}
