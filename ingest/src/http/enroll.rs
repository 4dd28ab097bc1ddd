//! A device's identity: enrollment on its own port (a one-time token, or an
//! operator's approval), renewal of a valid certificate, and `whoami`.

use std::net::SocketAddr;

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sealcam_api::{
    CertificateResponse, ChallengeRequest, EnrollRequest, PendingResponse, RenewRequest, RoleName,
    WhoAmI,
};
use sealcam_ca::{check_csr, Approval, EnrollError};
use sealcam_transport::{identity, Role};

use super::error::{ApiError, Note};
use super::{AppState, Peer};

/// `GET /v1/whoami`: who the ingest takes the caller for: a device or a
/// consumer checks its certificate is accepted, and what it grants, without
/// side effects.
pub fn whoami(peer: &Peer) -> Response {
    let id = &peer.identity;
    Json(WhoAmI {
        role: match id.role {
            Role::Device => RoleName::Device,
            Role::Consumer => RoleName::Consumer,
        },
        name: id.name.to_string(),
        streams: id.streams.iter().map(ToString::to_string).collect(),
        reads: id.reads.iter().map(|(d, s)| format!("{d}/{s}")).collect(),
        serial: peer.serial.to_string(),
    })
    .into_response()
}

fn task_failed(_: tokio::task::JoinError) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "task failed")
}

/// `POST /v1/enroll` on the enrollment port: a CSR with a one-time token
/// (answered with the certificate), or without one (filed for an operator's
/// approval: `202` until approved, then the certificate).
pub async fn enroll_device(
    state: &AppState,
    addr: Option<SocketAddr>,
    req: Request,
) -> Result<Response, ApiError> {
    let Json(req) = Json::<EnrollRequest>::from_request(req, state).await?;
    let (ca, lifetime, policy) = (
        state.ca.clone(),
        state.device_cert_lifetime,
        state.ek_policy.clone(),
    );
    let result = tokio::task::spawn_blocking(move || ca.enroll_request(&req, &policy, lifetime))
        .await
        .map_err(task_failed)?;
    let addr = addr.map(|a| a.to_string()).unwrap_or_default();
    match result {
        Ok(Approval::Issued {
            device,
            certificate,
        }) => {
            tracing::info!(%addr, %device, "device enrolled");
            let mut r = Json(CertificateResponse { certificate }).into_response();
            r.extensions_mut()
                .insert(Note(format!("certificate issued for device {device}")));
            Ok(r)
        }
        Ok(Approval::Pending { fingerprint }) => {
            tracing::info!(%addr, %fingerprint, "enrollment request waits for approval (`sealcam-ingest device pending`)");
            Ok((
                StatusCode::ACCEPTED,
                Json(PendingResponse::new(fingerprint)),
            )
                .into_response())
        }
        Err(e) => Err(refusal(e)),
    }
}

fn refusal(e: EnrollError) -> ApiError {
    let status = match e {
        EnrollError::UnknownToken | EnrollError::Expired => StatusCode::UNAUTHORIZED,
        EnrollError::Revoked(_) | EnrollError::Ek(_) | EnrollError::Attestation(_) => {
            StatusCode::FORBIDDEN
        }
        EnrollError::BadCsr(_) | EnrollError::Malformed(_) => StatusCode::BAD_REQUEST,
        EnrollError::Pki(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}

/// `POST /v1/enroll/challenge` on the enrollment port: the credential a
/// camera's TPM must activate before it enrolls with TPM evidence
/// (`sealcam_ca`'s `attest.rs`). Stateless: nothing is written.
pub async fn enroll_challenge(
    state: &AppState,
    addr: Option<SocketAddr>,
    req: Request,
) -> Result<Response, ApiError> {
    let Json(req) = Json::<ChallengeRequest>::from_request(req, state).await?;
    let (ca, policy) = (state.ca.clone(), state.ek_policy.clone());
    let answer = tokio::task::spawn_blocking(move || ca.attestation_challenge(&policy, &req))
        .await
        .map_err(task_failed)?;
    match answer {
        Ok(challenge) => Ok(Json(challenge).into_response()),
        Err(e) => {
            let addr = addr.map(|a| a.to_string()).unwrap_or_default();
            tracing::info!(%addr, error = %e, "attestation challenge refused");
            Err(refusal(e))
        }
    }
}

/// `POST /v1/renew`: a device with a valid certificate gets a fresh one for
/// the same key and identity.
pub async fn renew(state: &AppState, peer: &Peer, req: Request) -> Result<Response, ApiError> {
    let Json(req) = Json::<RenewRequest>::from_request(req, state).await?;
    let malformed = |reason: String| ApiError::new(StatusCode::BAD_REQUEST, reason);
    let csr = check_csr(&req.csr).map_err(|r| malformed(format!("certificate request: {r}")))?;
    if csr.device != peer.identity.name {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} may not renew the certificate of device {}",
                peer.identity, csr.device
            ),
        ));
    }
    let current =
        identity::device_key_from_cert_der(&peer.cert_der).map_err(|e| malformed(e.to_string()))?;
    let requested = sealcam_format::DeviceVerifyingKey::from_spki_der(&csr.spki_der)
        .map_err(|e| malformed(e.to_string()))?;
    if current != requested {
        return Err(malformed(
            "the request's key does not match the key of the current certificate (the device key lives in the TPM and does not change)".into(),
        ));
    }
    let (ca, lifetime) = (state.ca.clone(), state.device_cert_lifetime);
    let device = csr.device.clone();
    // The renewed certificate grants exactly what the current one does.
    let streams = peer.identity.streams.clone();
    if ca.is_revoked(&device) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("device {device} is revoked"),
        ));
    }
    let certificate = tokio::task::spawn_blocking(move || ca.renew(csr, &streams, lifetime))
        .await
        .map_err(task_failed)?
        .map_err(|e| {
            tracing::error!(error = %e, "issuing a renewed certificate failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not issue the certificate; try again",
            )
        })?;
    tracing::info!(peer = %peer.identity, "device certificate renewed");
    Ok(Json(CertificateResponse { certificate }).into_response())
}
