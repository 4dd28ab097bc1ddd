//! Request and response bodies (JSON), and the listing query.

use serde::{Deserialize, Serialize};

/// `POST /v1/enroll` on the enrollment port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// Proof of the one-time token from `sealcam-ca device add`, for this
    /// CSR ([`crate::token::token_proof`]); the token itself is never
    /// sent. Without one the request is filed for an operator's approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_proof: Option<String>,
    /// The certificate request (PEM), signed by the device key.
    pub csr: String,
    /// The TPM's endorsement-key certificate, base64 DER, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ek_certificate: Option<String>,
    /// The proof that the CSR's key lives in the TPM of `ek_certificate`:
    /// TPM2_Certify of the device key by an attestation key that activated
    /// the credential of `POST /v1/enroll/challenge`. Without it the key is
    /// enrolled as a software key, where the fleet allows one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<EnrollAttestation>,
}

/// TPM evidence sent with an enrollment: every field is the TPM's own
/// encoding, base64 in JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollAttestation {
    /// `issued_unix` of the challenge answered: with the EK certificate
    /// and the attestation key, what the enrolling authority recomputes the
    /// challenge's secret from (it keeps no state between the two steps).
    pub issued_unix: u64,
    /// The attestation key's TPM2B_PUBLIC, as sent to the challenge.
    #[serde(with = "b64")]
    pub attestation_key: Vec<u8>,
    /// The device key's TPM2B_PUBLIC.
    #[serde(with = "b64")]
    pub key_public: Vec<u8>,
    /// TPM2_Certify's TPM2B_ATTEST of the device key, whose qualifying
    /// data is the secret the credential released.
    #[serde(with = "b64")]
    pub certify_info: Vec<u8>,
    /// The attestation key's TPMT_SIGNATURE over `certify_info`.
    #[serde(with = "b64")]
    pub certify_signature: Vec<u8>,
}

/// `POST /v1/enroll/challenge` on the enrollment port: the first step of an
/// enrollment with TPM attestation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeRequest {
    /// The TPM's endorsement-key certificate, DER (base64). The endorsement
    /// key itself is rebuilt from it with the TCG default template.
    #[serde(with = "b64")]
    pub ek_certificate: Vec<u8>,
    /// A fresh attestation key's TPM2B_PUBLIC (base64), created under that
    /// endorsement key.
    #[serde(with = "b64")]
    pub attestation_key: Vec<u8>,
}

/// The answer to a [`ChallengeRequest`]: TPM2_MakeCredential's output,
/// which only the TPM holding the endorsement key releases, and only to
/// the attestation key, through TPM2_ActivateCredential.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// TPM2B_ID_OBJECT (base64).
    #[serde(with = "b64")]
    pub id_object: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET (base64).
    #[serde(with = "b64")]
    pub encrypted_secret: Vec<u8>,
    /// When the challenge was made; sent back in [`EnrollAttestation`].
    pub issued_unix: u64,
    /// For how many seconds after `issued_unix` the enrollment is accepted.
    pub valid_s: u64,
}

/// Bytes as standard base64 strings in JSON.
mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// `POST /v1/renew` on the mutual-TLS port, by a device for itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    /// The certificate request (PEM) for the same device and key.
    pub csr: String,
}

/// The answer to an enrollment or renewal that issued a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateResponse {
    /// The device certificate, PEM.
    pub certificate: String,
}

/// The answer (`202`) to an enrollment filed for an operator's approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingResponse {
    /// Always `pending`.
    pub status: PendingStatus,
    /// SHA-256 of the key, for the operator to compare with what the camera
    /// shows (`sealcamd identity`).
    pub fingerprint: String,
}

/// The one status of a [`PendingResponse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PendingStatus {
    Pending,
}

impl PendingResponse {
    pub fn new(fingerprint: String) -> Self {
        Self {
            status: PendingStatus::Pending,
            fingerprint,
        }
    }
}

/// What became of an upload the ingest accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UploadStatus {
    /// Stored durably now (`201`).
    Stored,
    /// The same bytes were stored before (`200`).
    AlreadyStored,
}

impl UploadStatus {
    /// The status as it is sent, and as the metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::AlreadyStored => "already-stored",
        }
    }
}

/// The answer to an accepted upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReceipt {
    pub status: UploadStatus,
    pub sequence: u64,
    /// The hash of the fragment's signed manifest.
    pub manifest: String,
}

/// The role a certificate gives its holder, as `whoami` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleName {
    Device,
    Consumer,
}

/// `GET /v1/whoami`: who the ingest takes the caller for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    pub role: RoleName,
    pub name: String,
    /// Devices: the streams the certificate allows (empty: any of its own).
    #[serde(default)]
    pub streams: Vec<String>,
    /// Consumers: the `device/stream` pairs the certificate may read
    /// (empty: all).
    #[serde(default)]
    pub reads: Vec<String>,
    /// The certificate's serial number.
    #[serde(default)]
    pub serial: String,
}

/// One entry of `GET /v1/streams`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEntry {
    pub device: String,
    pub stream: String,
}

/// One entry of `GET /v1/streams/{device}/{stream}/restarts`: a signed
/// chain restart record (`docs/ref/format.md`), as the device uploaded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartEntry {
    /// The sequence number the new epoch begins at.
    pub first_sequence: u64,
    /// The signed record, hex.
    pub record: String,
}

/// One entry of a fragment listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentEntry {
    pub sequence: u64,
    #[serde(default)]
    pub start_unix_ns: u64,
    #[serde(default)]
    pub end_unix_ns: u64,
    #[serde(default)]
    pub frame_count: u32,
    /// The stored size of the sealed fragment.
    #[serde(default)]
    pub bytes: u64,
    /// The gaps the fragment's manifest declares before it, as the
    /// ingest read them (unverified until the fragment is fetched).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<GapEntry>,
}

/// A gap a fragment's manifest declares, in a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapEntry {
    /// The reason's name (`crash`, `refused-by-ingest`, ...; see
    /// `GapReason::name`).
    pub reason: String,
    pub first_sequence: u64,
    pub sequence_count: u64,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
}

/// `PUT /v1/rosters`: an owner-signed device roster, published for
/// verifiers. The ingest checks that it parses and that `owner_key` signed
/// it, and keeps it under the key's fingerprint; it need not trust it, and
/// verifiers check it against the owner key they hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterUpload {
    /// The owner's public key (PEM, SubjectPublicKeyInfo).
    pub owner_key: String,
    /// The signed roster file (`roster.sdr`), standard base64.
    pub roster: String,
}

/// What became of a published roster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RosterStatus {
    /// Stored now (`201`).
    Stored,
    /// The same roster was stored before (`200`).
    AlreadyStored,
}

/// The answer to an accepted `PUT /v1/rosters`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterReceipt {
    pub status: RosterStatus,
    /// The owner key's fingerprint, which `GET /v1/rosters/{owner}` takes.
    pub owner: String,
    pub version: u64,
}

/// One entry of `GET /v1/devices/{device}/certificates`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateEntry {
    /// The serial number, hex, as the certificate carries it.
    pub serial: String,
    /// The certificate, PEM.
    pub certificate: String,
}

/// Longest long poll of the fragment list, in seconds.
pub const MAX_WAIT_S: u64 = 60;

/// The query of a fragment listing; every parameter optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentQuery {
    /// Only fragments that end after this time (Unix ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ns: Option<u64>,
    /// Only fragments that start before this time (Unix ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ns: Option<u64>,
    /// Only fragments with a sequence number above this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Only fragments with a sequence number at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_seq: Option<u64>,
    /// Only fragments with a sequence number at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_seq: Option<u64>,
    /// Long poll: if nothing matches, wait up to this many seconds (at most
    /// [`MAX_WAIT_S`]) for a fragment that does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_s: Option<u64>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..300)
    }

    proptest! {
        #[test]
        fn attestation_messages_round_trip(
            a in bytes(), b in bytes(), c in bytes(), d in bytes(), t in any::<u64>(),
        ) {
            let challenge = ChallengeRequest { ek_certificate: a.clone(), attestation_key: b.clone() };
            let text = serde_json::to_string(&challenge).unwrap();
            prop_assert_eq!(serde_json::from_str::<ChallengeRequest>(&text).unwrap(), challenge);
            let answer = ChallengeResponse { id_object: a.clone(), encrypted_secret: b.clone(), issued_unix: t, valid_s: 300 };
            let text = serde_json::to_string(&answer).unwrap();
            prop_assert_eq!(serde_json::from_str::<ChallengeResponse>(&text).unwrap(), answer);
            let enroll = EnrollRequest {
                token_proof: Some("t".into()),
                csr: "CSR".into(),
                ek_certificate: None,
                attestation: Some(EnrollAttestation {
                    issued_unix: t, attestation_key: a, key_public: b, certify_info: c, certify_signature: d,
                }),
            };
            let text = serde_json::to_string(&enroll).unwrap();
            prop_assert_eq!(serde_json::from_str::<EnrollRequest>(&text).unwrap(), enroll);
        }

        #[test]
        fn any_text_never_panics_the_attestation_decoders(text in "\\PC{0,200}") {
            let _ = serde_json::from_str::<ChallengeRequest>(&text);
            let _ = serde_json::from_str::<ChallengeResponse>(&text);
            let _ = serde_json::from_str::<EnrollRequest>(&text);
        }

        #[test]
        fn a_field_that_is_not_base64_is_refused(field in "[^A-Za-z0-9+/=]{1,20}") {
            let text = serde_json::json!({"ek_certificate": field, "attestation_key": ""}).to_string();
            prop_assert!(serde_json::from_str::<ChallengeRequest>(&text).is_err());
        }
    }

    #[test]
    fn attestation_bytes_are_sent_as_base64() -> Result<(), serde_json::Error> {
        let req = ChallengeRequest {
            ek_certificate: vec![0xff, 0],
            attestation_key: vec![],
        };
        assert_eq!(
            serde_json::to_string(&req)?,
            r#"{"ek_certificate":"/wA=","attestation_key":""}"#
        );
        Ok(())
    }

    #[test]
    fn an_enrollment_without_token_or_ek_sends_only_the_csr() -> Result<(), serde_json::Error> {
        let req = EnrollRequest {
            csr: "CSR".into(),
            ..EnrollRequest::default()
        };
        assert_eq!(serde_json::to_string(&req)?, r#"{"csr":"CSR"}"#);
        Ok(())
    }

    #[test]
    fn bodies_are_sent_as_documented() -> Result<(), serde_json::Error> {
        let pending = serde_json::to_value(PendingResponse::new("ab".into()))?;
        assert_eq!(
            pending,
            serde_json::json!({"status": "pending", "fingerprint": "ab"})
        );
        let receipt = serde_json::to_value(UploadReceipt {
            status: UploadStatus::AlreadyStored,
            sequence: 7,
            manifest: "h".into(),
        })?;
        assert_eq!(
            receipt,
            serde_json::json!({"status": "already-stored", "sequence": 7, "manifest": "h"})
        );
        let who: WhoAmI = serde_json::from_value(serde_json::json!({
            "role": "device", "name": "cam1", "streams": ["front"], "reads": [], "serial": "01"
        }))?;
        assert_eq!(who.role, RoleName::Device);
        Ok(())
    }

    #[test]
    fn roster_bodies_are_sent_as_documented() -> Result<(), serde_json::Error> {
        let receipt = serde_json::to_value(RosterReceipt {
            status: RosterStatus::AlreadyStored,
            owner: "ab".into(),
            version: 3,
        })?;
        assert_eq!(
            receipt,
            serde_json::json!({"status": "already-stored", "owner": "ab", "version": 3})
        );
        // A typo is an error, not a silently ignored field.
        let typo = serde_json::from_value::<RosterUpload>(serde_json::json!({
            "owner_key": "K", "roster": "R", "rooster": "x"
        }));
        assert!(typo.is_err());
        let certs: Vec<CertificateEntry> = serde_json::from_value(serde_json::json!([
            {"serial": "01", "certificate": "PEM"}
        ]))?;
        assert_eq!(certs[0].serial, "01");
        Ok(())
    }

    #[test]
    fn an_empty_query_has_no_parameters() -> Result<(), serde_json::Error> {
        assert_eq!(serde_json::to_string(&FragmentQuery::default())?, "{}");
        Ok(())
    }
}
