//! TPM attestation at enrollment: the CA's half of the proof that a
//! camera's device key is resident in the TPM whose endorsement-key (EK)
//! certificate it sends, as rust-keylime and cloud device provisioning do.
//!
//! 1. `POST /v1/enroll/challenge` ([`FleetCa::attestation_challenge`]):
//!    the camera sends its EK certificate and a fresh attestation key's
//!    (AK) public area. The CA checks the certificate against the fleet's
//!    TPM maker CAs, rebuilds the EK from it (TCG default template), and
//!    answers with TPM2_MakeCredential of a secret for the AK's Name: only
//!    the TPM holding that EK releases it, and only to that AK.
//! 2. The camera activates the credential and has the AK TPM2_Certify its
//!    device key with the secret as qualifying data.
//! 3. `POST /v1/enroll` ([`FleetCa::enroll_request`]) carries the CSR, the
//!    token and that evidence. The CA recomputes the secret, and checks the
//!    AK's signature, that the certified key is the CSR's key and cannot
//!    leave the TPM, that the AK is a restricted key under the certificate's
//!    EK, and the EK chain, before anything is issued.
//!
//! The challenge is stateless: the secret is an HMAC, under a key only the
//! CA holds (`<pki>/attest.key`), of the EK certificate, the AK and the
//! time it was made. Nothing is stored between the two steps, so an
//! anonymous client can make the CA write nothing, and any process of the
//! CA (or any ingest passing requests through to it) can answer step 3.
//! A challenge counts for [`CHALLENGE_VALIDITY_S`].
//!
//! The evidence of every key issued is kept as
//! `<pki>/evidence/device/<device>/<key fingerprint>.evidence` (the file of
//! [`TpmEvidence::to_file`]) for the owner's roster
//! (`sealcam-ingest device evidence`, then `sealcam roster add --evidence`).

use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
use base64::Engine as _;
use sealcam_api::{ChallengeRequest, ChallengeResponse, EnrollAttestation, EnrollRequest};
use sealcam_attest::public::attr;
use sealcam_attest::{
    ek_from_certificate, make_credential, verify_evidence, verify_evidence_unanchored, AttestError,
    TpmPublic,
};
use sealcam_format::roster::TpmEvidence;
use sealcam_format::{DeviceVerifyingKey, Name};
use sha2::{Digest, Sha256};

use crate::enroll::unix_now;
use crate::files::{create_dir, read, replace, write_new};
use crate::{check_csr, Approval, CsrError, EkPolicy, EkRefusal, EnrollError, FleetCa, PkiError};

/// How long after it was made a challenge is answered, in seconds: long
/// enough for a slow TPM and an operator's approval, short enough that an
/// old answer is worthless.
pub const CHALLENGE_VALIDITY_S: u64 = 900;
/// How far in the future a challenge's time may be (clock steps between
/// several CA processes).
const CLOCK_SKEW_S: u64 = 60;
/// The CA's challenge key, hex; 0600.
pub const CHALLENGE_KEY: &str = "attest.key";
const CONTEXT: &[u8] = b"sealcam enrollment challenge v1\0";

/// Why a camera's TPM attestation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AttestRefusal {
    #[error("{0}")]
    Evidence(#[from] AttestError),
    #[error("the attestation key did not certify the device key with this challenge's secret: it did not activate the credential (a forged or replayed challenge, or another TPM); ask for a new challenge")]
    WrongSecret,
    #[error("the challenge was made at unix {issued_unix}, and counts for {CHALLENGE_VALIDITY_S} s (now: {now}); ask for a new challenge")]
    Expired { issued_unix: u64, now: u64 },
    #[error("the attestation comes without the endorsement-key certificate of its TPM")]
    NoEkCertificate,
    #[error("the attestation key is not a restricted, fixedTPM signing key; create it as an AK under the endorsement key")]
    NotAnAttestationKey,
}

impl From<AttestRefusal> for EnrollError {
    fn from(r: AttestRefusal) -> Self {
        EnrollError::Attestation(r)
    }
}

fn attest_error(e: AttestError) -> EnrollError {
    EnrollError::Attestation(AttestRefusal::Evidence(e))
}

fn evidence_dir(dir: &Path, device: &Name) -> PathBuf {
    dir.join("evidence").join("device").join(device.as_str())
}

impl FleetCa {
    /// The challenge key, made on first use. Several processes may race to
    /// make it: the first file written wins, and the others read it.
    fn challenge_key(&self) -> Result<hmac::Key, PkiError> {
        let path = self.dir.join(CHALLENGE_KEY);
        let text = match read(&path) {
            Ok(text) => text,
            Err(PkiError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let fresh = hex::encode(rand::random::<[u8; 32]>());
                match write_new(&path, &fresh, 0o600) {
                    Ok(()) => fresh,
                    Err(PkiError::Exists { .. }) => read(&path)?,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        match hex::decode(text.trim()) {
            Ok(key) if key.len() == 32 => Ok(hmac::Key::new(hmac::HMAC_SHA256, &key)),
            _ => Err(PkiError::BadFile {
                path,
                reason: "not 32 bytes of hex; remove it (challenges in flight then fail) and it is made again".into(),
            }),
        }
    }

    /// The secret of the challenge made at `issued_unix` for this EK
    /// certificate and attestation key.
    fn challenge_secret(
        &self,
        issued_unix: u64,
        ek_certificate: &[u8],
        attestation_key: &[u8],
    ) -> Result<[u8; 32], PkiError> {
        let key = self.challenge_key()?;
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(CONTEXT);
        ctx.update(&issued_unix.to_be_bytes());
        ctx.update(&Sha256::digest(ek_certificate));
        ctx.update(&Sha256::digest(attestation_key));
        let mut secret = [0u8; 32];
        secret.copy_from_slice(ctx.sign().as_ref());
        Ok(secret)
    }

    /// `POST /v1/enroll/challenge`: the credential the camera's TPM must
    /// activate (see the module documentation). Writes nothing but, once,
    /// the challenge key.
    pub fn attestation_challenge(
        &self,
        policy: &EkPolicy,
        req: &ChallengeRequest,
    ) -> Result<ChallengeResponse, EnrollError> {
        let roots = (!policy.required_issuers.is_empty()).then_some(&policy.required_issuers[..]);
        let ek = ek_from_certificate(&req.ek_certificate, roots).map_err(attest_error)?;
        let ak = TpmPublic::decode(&req.attestation_key).map_err(attest_error)?;
        if !ak.has(attr::RESTRICTED | attr::SIGN_ENCRYPT | attr::FIXED_TPM) || ak.has(attr::DECRYPT)
        {
            return Err(AttestRefusal::NotAnAttestationKey.into());
        }
        let issued_unix = unix_now();
        let secret =
            self.challenge_secret(issued_unix, &req.ek_certificate, &req.attestation_key)?;
        let credential = make_credential(&ek, &ak.name(), &secret).map_err(attest_error)?;
        Ok(ChallengeResponse {
            id_object: credential.id_object,
            encrypted_secret: credential.encrypted_secret,
            issued_unix,
            valid_s: CHALLENGE_VALIDITY_S,
        })
    }

    /// Checks an enrollment's TPM evidence for the CSR's `key`: the
    /// evidence to keep, `None` for a software key where the fleet allows
    /// one.
    pub(crate) fn check_attestation(
        &self,
        policy: &EkPolicy,
        key: &DeviceVerifyingKey,
        ek_certificate: Option<&[u8]>,
        attestation: Option<&EnrollAttestation>,
        now: u64,
    ) -> Result<Option<TpmEvidence>, EnrollError> {
        let required = !policy.required_issuers.is_empty();
        let (a, ek_certificate) = match (attestation, ek_certificate) {
            (None, None) if required => return Err(EnrollError::Ek(EkRefusal::Missing)),
            (None, Some(_)) if required => return Err(EnrollError::Ek(EkRefusal::NoAttestation)),
            (None, _) => return Ok(None),
            (Some(_), None) => return Err(AttestRefusal::NoEkCertificate.into()),
            (Some(a), Some(ek)) => (a, ek),
        };
        if now > a.issued_unix.saturating_add(CHALLENGE_VALIDITY_S)
            || a.issued_unix > now.saturating_add(CLOCK_SKEW_S)
        {
            return Err(AttestRefusal::Expired {
                issued_unix: a.issued_unix,
                now,
            }
            .into());
        }
        let secret = self.challenge_secret(a.issued_unix, ek_certificate, &a.attestation_key)?;
        let evidence = TpmEvidence {
            ek_certificate: ek_certificate.to_vec(),
            attestation_key: a.attestation_key.clone(),
            key_public: a.key_public.clone(),
            certify_info: a.certify_info.clone(),
            certify_signature: a.certify_signature.clone(),
        };
        let checked = if required {
            verify_evidence(&evidence, key, Some(&secret), &policy.required_issuers)
        } else {
            verify_evidence_unanchored(&evidence, key, Some(&secret))
        };
        match checked {
            Ok(()) => Ok(Some(evidence)),
            Err(AttestError::NonceMismatch) => Err(AttestRefusal::WrongSecret.into()),
            Err(e) => Err(attest_error(e)),
        }
    }

    /// `POST /v1/enroll`, whole: the TPM evidence (or its absence, where
    /// the fleet allows a software key), then the token or an operator's
    /// approval; keeps the evidence of the key once it is issued.
    pub fn enroll_request(
        &self,
        req: &EnrollRequest,
        policy: &EkPolicy,
        lifetime: std::time::Duration,
        pending: &crate::PendingQueue,
    ) -> Result<Approval, EnrollError> {
        let ek = match &req.ek_certificate {
            Some(b64) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|_| EnrollError::Malformed("ek_certificate is not base64".into()))?,
            ),
            None => None,
        };
        let csr = check_csr(&req.csr).map_err(EnrollError::BadCsr)?;
        let key = DeviceVerifyingKey::from_spki_der(&csr.spki_der)
            .map_err(|e| EnrollError::BadCsr(CsrError::Unreadable(e.to_string())))?;
        let evidence = self.check_attestation(
            policy,
            &key,
            ek.as_deref(),
            req.attestation.as_ref(),
            unix_now(),
        )?;
        let approval = match &req.token_proof {
            Some(proof) => self
                .enroll(&req.csr, proof, (policy, ek.as_deref()), lifetime)
                .map(|(device, certificate)| Approval::Issued {
                    device,
                    certificate,
                })?,
            None => self.request_approval(&req.csr, (policy, ek.as_deref()), pending)?,
        };
        if let (Approval::Issued { device, .. }, Some(evidence)) = (&approval, &evidence) {
            self.keep_evidence(device, &key, evidence)?;
        }
        Ok(approval)
    }

    /// Keeps the TPM evidence of an issued key.
    fn keep_evidence(
        &self,
        device: &Name,
        key: &DeviceVerifyingKey,
        evidence: &TpmEvidence,
    ) -> Result<(), PkiError> {
        let dir = evidence_dir(&self.dir, device);
        create_dir(&dir)?;
        let path = dir.join(format!("{}.evidence", key.fingerprint()));
        let file = evidence.to_file().map_err(|e| PkiError::BadFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        replace(&path, file, 0o644)
    }

    /// The TPM evidence kept for `device`'s key whose fingerprint starts
    /// with `fingerprint` (any key, if the device has had only one): the
    /// key's fingerprint and the evidence file.
    pub fn device_evidence(
        &self,
        device: &Name,
        fingerprint: Option<&str>,
    ) -> Result<(String, Vec<u8>), PkiError> {
        let dir = evidence_dir(&self.dir, device);
        let wanted = fingerprint.unwrap_or("").trim().to_ascii_lowercase();
        let mut found: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.strip_suffix(".evidence").map(str::to_owned)
                    })
                    .filter(|fp| !fp.starts_with('.') && fp.starts_with(&wanted))
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        match found.as_slice() {
            [fp] => {
                let path = dir.join(format!("{fp}.evidence"));
                let bytes = std::fs::read(&path).map_err(|source| PkiError::Io {
                    op: "read",
                    path,
                    source,
                })?;
                Ok((fp.clone(), bytes))
            }
            [] => Err(PkiError::NoEvidence {
                device: device.clone(),
            }),
            several => Err(PkiError::AmbiguousEvidence {
                device: device.clone(),
                fingerprints: several.join(", "),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DeviceVerifyingKey {
        let k = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        DeviceVerifyingKey(*k.verifying_key())
    }

    #[test]
    fn the_challenge_key_is_made_once_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = FleetCa::new(tmp.path());
        let a = ca.challenge_secret(1, b"ek", b"ak").unwrap();
        assert_eq!(a, ca.challenge_secret(1, b"ek", b"ak").unwrap());
        // Each input changes the secret.
        for other in [
            ca.challenge_secret(2, b"ek", b"ak").unwrap(),
            ca.challenge_secret(1, b"EK", b"ak").unwrap(),
            ca.challenge_secret(1, b"ek", b"AK").unwrap(),
        ] {
            assert_ne!(a, other);
        }
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(tmp.path().join(CHALLENGE_KEY))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o077, 0);
        std::fs::write(tmp.path().join(CHALLENGE_KEY), "short").unwrap();
        assert!(matches!(
            ca.challenge_secret(1, b"ek", b"ak"),
            Err(PkiError::BadFile { .. })
        ));
    }

    #[test]
    fn what_each_policy_asks_of_an_enrollment_without_or_with_stale_evidence() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = FleetCa::new(tmp.path());
        let open = EkPolicy::default();
        let strict = EkPolicy {
            required_issuers: vec![b"a maker CA".to_vec()],
        };
        let k = key();
        assert!(ca
            .check_attestation(&open, &k, None, None, 100)
            .unwrap()
            .is_none());
        assert!(ca
            .check_attestation(&open, &k, Some(b"ek"), None, 100)
            .unwrap()
            .is_none());
        let missing = ca.check_attestation(&strict, &k, None, None, 100);
        assert!(matches!(missing, Err(EnrollError::Ek(EkRefusal::Missing))));
        let unproven = ca.check_attestation(&strict, &k, Some(b"ek"), None, 100);
        assert!(matches!(
            unproven,
            Err(EnrollError::Ek(EkRefusal::NoAttestation))
        ));
        let a = EnrollAttestation {
            issued_unix: 100,
            ..EnrollAttestation::default()
        };
        let no_ek = ca.check_attestation(&open, &k, None, Some(&a), 100);
        assert!(matches!(
            no_ek,
            Err(EnrollError::Attestation(AttestRefusal::NoEkCertificate))
        ));
        for now in [100 + CHALLENGE_VALIDITY_S + 1, 100 - CLOCK_SKEW_S - 1] {
            let stale = ca.check_attestation(&open, &k, Some(b"ek"), Some(&a), now);
            assert!(
                matches!(
                    stale,
                    Err(EnrollError::Attestation(AttestRefusal::Expired { .. }))
                ),
                "{now}: {stale:?}"
            );
        }
        // In time, but not a TPM's evidence at all.
        let garbage = ca.check_attestation(&open, &k, Some(b"ek"), Some(&a), 100);
        assert!(matches!(
            garbage,
            Err(EnrollError::Attestation(AttestRefusal::Evidence(_)))
        ));
        assert!(!tmp.path().join("evidence").exists());
    }
}
