//! TPM attestation at enrollment (issue 23), with the real programs and
//! swtpm as the TPM: the camera proves that its device key lives in the TPM
//! whose EK certificate a maker CA issued; the CA keeps the evidence, and
//! the owner's roster records it after an offline check.
//!
//! The adversaries: a camera without a TPM, a TPM from a maker the fleet
//! does not trust, and a client that talks to the enrollment port itself
//! (with a real TPM) to have another key certified, or to skip or replay
//! the challenge.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use sealcam_api::{ChallengeRequest, ChallengeResponse, EnrollAttestation, EnrollRequest, Route};
use sealcam_hal::attest::AttestationKey;
use sealcam_hal::tpm::{TpmConfig, TpmError, TpmKey};
use sealcam_system_tests::swtpm::Swtpm;
use sealcam_system_tests::*;
use sealcam_transport::{pem, tls};

fn evidence_files(w: &World, device: &str) -> usize {
    std::fs::read_dir(w.path().join("ca/evidence/device").join(device))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_tpm_camera_enrolls_with_attestation_and_the_owner_records_its_evidence() {
    let w = World::new();
    let (tpm, maker) =
        Swtpm::start_with_ek(&w.path().join("tpm-state"), &w.path().join("tpm-maker-ca"));
    let maker = maker.to_str().unwrap();
    w.restart_ca_with(&["--require-ek-ca", maker]);
    let ingest = w.start_ingest();
    let token = w.device_add("cam1", "1h");
    let cfg = w.write_config(
        "cam1",
        &ingest.url(),
        10,
        1000,
        &World::tpm_identity("cam1", &tpm.tcti()),
    );
    let out = enroll(&w, &cfg, &ingest.enroll_url(), &token, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("enrolled"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(evidence_files(&w, "cam1"), 1);

    // The operator exports the evidence; the owner checks it offline
    // against the maker's CA and records the key as TPM-resident.
    let out = run_ok(
        "sealcam-ca",
        &[
            "device",
            "evidence",
            "--name",
            "cam1",
            "--dir",
            "ca",
            "--out",
            "cam1.evidence",
        ],
        w.path(),
    );
    assert!(text(&out.stdout).contains("TPM evidence of device cam1 key"));
    // The world's owner key (`World::new`); no roster yet.
    let add = |ca: &str, new: bool| {
        let mut args = vec![
            "roster",
            "add",
            "--owner-key",
            "owner.key",
            "--roster",
            "roster.sdr",
            "--device",
            "cam1",
            "--key",
            "cam1/device.crt",
            "--evidence",
            "cam1.evidence",
            "--tpm-ca",
            ca,
        ];
        if new {
            args.push("--new");
        }
        run("sealcam", &args, w.path())
    };
    // A maker CA the owner does not trust: refused, nothing written.
    let (_other_tpm, other_maker) =
        Swtpm::start_with_ek(&w.path().join("other-state"), &w.path().join("other-ca"));
    let out = add(other_maker.to_str().unwrap(), true);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("does not chain to a configured TPM manufacturer CA"),
        "{}",
        text(&out.stderr)
    );
    assert!(!w.path().join("roster.sdr").exists());
    let out = add(maker, true);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("TPM-resident key"),
        "{}",
        text(&out.stdout)
    );
    let show = run_ok(
        "sealcam",
        &["roster", "show", "roster.sdr", "--owner", "owner.pub"],
        w.path(),
    );
    assert!(text(&show.stdout).contains("TPM-resident key"));

    // Footage verifies against the roster, which reports the key as held
    // in a TPM, with its evidence checked again offline.
    run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    w.fetch(&ingest, "cam1", "fetched");
    let anchored = [
        "verify",
        "fetched",
        "--owner",
        "owner.pub",
        "--roster",
        "roster.sdr",
    ];
    let mut with_ca = anchored.to_vec();
    with_ca.extend_from_slice(&["--tpm-ca", maker]);
    let out = run_ok("sealcam", &with_ca, w.path());
    assert!(
        text(&out.stdout).contains("TPM-resident key"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("the TPM evidence of 1 key(s) holds"),
        "{}",
        text(&out.stderr)
    );
    let mut foreign = anchored.to_vec();
    foreign.extend_from_slice(&["--tpm-ca", other_maker.to_str().unwrap()]);
    let out = run("sealcam", &foreign, w.path());
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("TPM evidence for device cam1"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_software_key_or_a_foreign_tpm_is_refused_where_the_fleet_requires_a_tpm() {
    let w = World::new();
    let (_tpm, maker) =
        Swtpm::start_with_ek(&w.path().join("tpm-state"), &w.path().join("tpm-maker-ca"));
    w.restart_ca_with(&["--require-ek-ca", maker.to_str().unwrap()]);
    let ingest = w.start_ingest();

    // A TPM whose EK certificate another maker issued.
    let (foreign, _) = Swtpm::start_with_ek(
        &w.path().join("foreign-state"),
        &w.path().join("foreign-ca"),
    );
    let token = w.device_add("cam2", "1h");
    let cfg = w.write_config(
        "cam2",
        &ingest.url(),
        10,
        1000,
        &World::tpm_identity("cam2", &foreign.tcti()),
    );
    let out = enroll(&w, &cfg, &ingest.enroll_url(), &token, &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("403"), "{err}");
    assert!(
        err.contains("does not chain to a configured TPM manufacturer CA"),
        "{err}"
    );
    assert!(!w.path().join("cam2/device.crt").exists());

    // A software key, with a valid token.
    let token = w.device_add("cam3", "1h");
    let cfg = w.write_camera_config("cam3", &ingest.url(), 10, 1000);
    let out = enroll(
        &w,
        &cfg,
        &ingest.enroll_url(),
        &token,
        &["--insecure-software-key"],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("this fleet requires a genuine TPM"), "{err}");
    assert!(!w.path().join("cam3/device.crt").exists());
    assert_eq!(evidence_files(&w, "cam2") + evidence_files(&w, "cam3"), 0);
}

#[test]
fn a_software_key_enrolls_as_software_where_the_fleet_does_not_require_a_tpm() {
    let w = World::new();
    let ingest = w.start_ingest();
    let token = w.device_add("cam1", "1h");
    let cfg = w.write_camera_config("cam1", &ingest.url(), 10, 1000);
    let out = enroll(
        &w,
        &cfg,
        &ingest.enroll_url(),
        &token,
        &["--insecure-software-key"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(evidence_files(&w, "cam1"), 0);
    let out = run(
        "sealcam-ca",
        &[
            "device", "evidence", "--name", "cam1", "--dir", "ca", "--out", "e",
        ],
        w.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no TPM evidence is kept for device cam1"),
        "{}",
        text(&out.stderr)
    );
}

/// The adversary's TPM, opened in this process once `sealcamd provision`
/// (a process, which holds the simulator's one connection) has gone.
fn open_tpm(tcti: &str) -> TpmKey {
    let cfg = TpmConfig {
        tcti: tcti.to_owned(),
        handle: 0x8100_0100,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match TpmKey::open(&cfg) {
            Ok(k) => return k,
            Err(TpmError::Open { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("{e}"),
        }
    }
}

struct Adversary {
    client: reqwest::blocking::Client,
    url: String,
    tpm: TpmKey,
    ek_certificate: Vec<u8>,
    ak: AttestationKey,
}

impl Adversary {
    fn challenge(&self) -> ChallengeResponse {
        let resp = self
            .client
            .post(format!("{}{}", self.url, Route::EnrollChallenge.path()))
            .json(&ChallengeRequest {
                ek_certificate: self.ek_certificate.clone(),
                attestation_key: self.ak.public.clone(),
            })
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().unwrap());
        resp.json().unwrap()
    }

    /// The evidence of a certify with `nonce` as qualifying data.
    fn certify(&self, issued_unix: u64, nonce: &[u8]) -> EnrollAttestation {
        let c = self.tpm.certify(&self.ak, nonce).unwrap();
        EnrollAttestation {
            issued_unix,
            attestation_key: self.ak.public.clone(),
            key_public: c.key_public,
            certify_info: c.certify_info,
            certify_signature: c.signature,
        }
    }

    /// Posts an enrollment with the token's proof for `csr`; the status
    /// and the refusal's text.
    fn enroll(&self, csr: &str, token: &str, a: EnrollAttestation) -> (u16, String) {
        self.enroll_with_proof(csr, &sealcam_api::token::token_proof(token, csr), a)
    }

    /// Posts an enrollment with the token proof `proof`, whatever CSR it
    /// was made for.
    fn enroll_with_proof(&self, csr: &str, proof: &str, a: EnrollAttestation) -> (u16, String) {
        use base64::Engine as _;
        let resp = self
            .client
            .post(format!("{}{}", self.url, Route::Enroll.path()))
            .json(&EnrollRequest {
                token_proof: Some(proof.to_owned()),
                csr: csr.to_owned(),
                ek_certificate: Some(
                    base64::engine::general_purpose::STANDARD.encode(&self.ek_certificate),
                ),
                attestation: Some(a),
            })
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    }
}

#[test]
fn another_key_a_forged_secret_or_a_replayed_challenge_is_refused() {
    let w = World::new();
    let (tpm, maker) =
        Swtpm::start_with_ek(&w.path().join("tpm-state"), &w.path().join("tpm-maker-ca"));
    w.restart_ca_with(&["--require-ek-ca", maker.to_str().unwrap()]);
    let ingest = w.start_ingest();
    // The TPM's device key and its CSR, made by the real camera program.
    let cfg = w.write_config(
        "cam1",
        &ingest.url(),
        10,
        1000,
        &World::tpm_identity("cam1", &tpm.tcti()),
    );
    run_ok(
        "sealcamd",
        &["provision", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    let tpm_csr = std::fs::read_to_string(w.path().join("cam1/device.csr")).unwrap();
    // A key the adversary holds in a file, with a CSR for the same device.
    let soft_cam1 = w.write_camera_config("cam1-soft", &ingest.url(), 10, 1000);
    let text_cfg = std::fs::read_to_string(&soft_cam1)
        .unwrap()
        .replace("device_id = \"cam1-soft\"", "device_id = \"cam1\"");
    std::fs::write(&soft_cam1, text_cfg).unwrap();
    w.provision_software_key(&soft_cam1);
    let soft_csr = std::fs::read_to_string(w.path().join("cam1-soft/device.csr")).unwrap();
    assert!(soft_csr.contains("CERTIFICATE REQUEST"));

    let tpm_key = open_tpm(&tpm.tcti());
    let endorsement = tpm_key.endorsement().unwrap();
    let ak = tpm_key.create_attestation_key(endorsement.kind).unwrap();
    let roots = pem::load_roots(&w.path().join("pki/ca.crt")).unwrap();
    let client = reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls::enrollment_client_config(roots).unwrap())
        .build()
        .unwrap();
    let adversary = Adversary {
        client,
        url: ingest.enroll_url(),
        ek_certificate: endorsement.certificate.unwrap(),
        tpm: tpm_key,
        ak,
    };
    let token = w.device_add("cam1", "1h");
    let challenge = adversary.challenge();
    let secret = adversary
        .tpm
        .activate_credential(
            &adversary.ak,
            &challenge.id_object,
            &challenge.encrypted_secret,
        )
        .unwrap();
    let honest = adversary.certify(challenge.issued_unix, &secret);

    // The TPM's key certified, a software key's CSR sent.
    let (status, body) = adversary.enroll(&soft_csr, &token, honest.clone());
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("the certified TPM key is not the device key being enrolled"),
        "{body}"
    );
    // A certify whose qualifying data is not the secret: the credential
    // was never activated.
    let forged = adversary.certify(challenge.issued_unix, &[0x42; 32]);
    let (status, body) = adversary.enroll(&tpm_csr, &token, forged);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("did not activate the credential"), "{body}");
    // The evidence presented as an answer to another challenge.
    let mut moved = honest.clone();
    moved.issued_unix += 1;
    let (status, body) = adversary.enroll(&tpm_csr, &token, moved);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("did not activate the credential"), "{body}");
    // A challenge from long ago.
    let mut old = honest.clone();
    old.issued_unix -= 3600;
    let (status, body) = adversary.enroll(&tpm_csr, &token, old);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("ask for a new challenge"), "{body}");
    // The proof of the token a camera sent with another CSR (what a
    // hostile ingest that passes requests on sees): it enrolls nothing
    // else. The token itself never crosses the ingest.
    let captured = sealcam_api::token::token_proof(&token, &soft_csr);
    let (status, body) = adversary.enroll_with_proof(&tpm_csr, &captured, honest.clone());
    assert_eq!(status, 401, "{body}");
    assert_eq!(evidence_files(&w, "cam1"), 0);

    // The same TPM, honest: enrolled, with its evidence kept (and the
    // refusals above did not use up the token).
    let (status, body) = adversary.enroll(&tpm_csr, &token, honest.clone());
    assert_eq!(status, 200, "{body}");
    assert_eq!(evidence_files(&w, "cam1"), 1);
    // The same request again: the token is spent.
    let (status, body) = adversary.enroll(&tpm_csr, &token, honest);
    assert_eq!(status, 401, "{body}");
}
