//! The device's half of TPM attestation (issue 23): what the TPM must do
//! so that an enrolling authority can check, with `sealcam-attest`, that
//! the device key lives in a genuine TPM.
//!
//! 1. [`TpmKey::endorsement`]: the EK, created from the TCG default template
//!    that matches an EK certificate in NV (ECC P-256, else ECC P-384, else
//!    RSA 2048; or the [`EkKind`] asked for), as its TPM2B_PUBLIC, with the
//!    certificate.
//! 2. [`TpmKey::create_attestation_key`]: a restricted ECC P-256 signing
//!    key under that EK in the endorsement hierarchy (as rust-keylime's
//!    agent makes it). The TPM keeps nothing: the caller holds the key's
//!    public and (TPM-encrypted) private parts and passes them back.
//! 3. [`TpmKey::activate_credential`]: TPM2_ActivateCredential with the
//!    EK's PolicySecret(endorsement) session (the high-range templates set
//!    userWithAuth, and an empty password serves); the TPM returns the
//!    secret only if the credential was made for this AK's Name and this EK.
//! 4. [`TpmKey::certify`]: TPM2_Certify of the device key by the AK with
//!    the verifier's nonce, as TPM2B_ATTEST and TPMT_SIGNATURE.
//!
//! Every step runs on the thread that owns the TPM context (see
//! [`crate::tpm`]) with its timeout, and flushes the transient EK, AK and
//! sessions it loaded before it answers.
//! Each step creates the EK again (a primary key is derived, not stored):
//! quick for ECC, but an RSA EK takes a slow TPM seconds to derive.

use tss_esapi::abstraction::{ak, ek, AsymmetricAlgorithmSelection};
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Data, EncryptedSecret, IdObject, Private, Public, SignatureScheme, SymmetricDefinition,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::{Context, WrapperErrorKind};
use zeroize::Zeroizing;

use crate::tpm::{TpmError, TpmKey};

/// Which of the TCG default endorsement keys (TCG EK Credential Profile:
/// template and certificate NV index). A TPM may have several; swtpm has
/// RSA 2048 and ECC P-384.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EkKind {
    /// Template L-2, certificate at 0x01c0000a.
    EccP256,
    /// Template H-3, certificate at 0x01c00016.
    EccP384,
    /// Template L-1, certificate at 0x01c00002.
    Rsa2048,
}

impl EkKind {
    /// In the order the TPM's EK certificate is looked for (ECC first).
    pub const ALL: [EkKind; 3] = [EkKind::EccP256, EkKind::EccP384, EkKind::Rsa2048];

    /// The NV index of this EK's certificate.
    pub fn certificate_index(self) -> u32 {
        match self {
            EkKind::EccP256 => 0x01c0_000a,
            EkKind::EccP384 => 0x01c0_0016,
            EkKind::Rsa2048 => 0x01c0_0002,
        }
    }

    fn selection(self) -> AsymmetricAlgorithmSelection {
        match self {
            EkKind::EccP256 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
            EkKind::EccP384 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP384),
            EkKind::Rsa2048 => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
        }
    }
}

/// The TPM's endorsement key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endorsement {
    pub kind: EkKind,
    /// TPM2B_PUBLIC, to make credentials for.
    pub public: Vec<u8>,
    /// The EK certificate (DER) from NV, if the TPM's maker stored one.
    pub certificate: Option<Vec<u8>>,
}

/// An attestation key, held by the caller between the steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationKey {
    /// The endorsement key it was created under, and is loaded under.
    pub ek: EkKind,
    /// TPM2B_PUBLIC.
    pub public: Vec<u8>,
    /// TPM2B_PRIVATE's contents, encrypted by the TPM under the EK: only
    /// this TPM can load it.
    pub private: Vec<u8>,
    /// The key's Name as the TPM computes it (nameAlg ‖ H(TPMT_PUBLIC)).
    pub name: Vec<u8>,
}

/// TPM2_Certify's answer, marshalled, with the device key it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certification {
    /// The device key's TPM2B_PUBLIC.
    pub key_public: Vec<u8>,
    /// TPM2B_ATTEST.
    pub certify_info: Vec<u8>,
    /// TPMT_SIGNATURE by the attestation key over the TPMS_ATTEST.
    pub signature: Vec<u8>,
}

fn cmd(op: &'static str) -> impl FnOnce(tss_esapi::Error) -> TpmError {
    move |source| TpmError::Command { op, source }
}

fn invalid(op: &'static str) -> TpmError {
    TpmError::Command {
        op,
        source: tss_esapi::Error::WrapperError(WrapperErrorKind::InvalidParam),
    }
}

/// `bytes` with a u16 size in front: the TPM2B form of a structure.
fn sized(op: &'static str, bytes: Vec<u8>) -> Result<Vec<u8>, TpmError> {
    let n = u16::try_from(bytes.len()).map_err(|_| invalid(op))?;
    let mut out = n.to_be_bytes().to_vec();
    out.extend(bytes);
    Ok(out)
}

/// The contents of a TPM2B whose size covers exactly the rest.
fn contents<'a>(op: &'static str, bytes: &'a [u8]) -> Result<&'a [u8], TpmError> {
    match bytes {
        [hi, lo, rest @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) == rest.len() => {
            Ok(rest)
        }
        _ => Err(invalid(op)),
    }
}

fn marshall_public(op: &'static str, public: &Public) -> Result<Vec<u8>, TpmError> {
    sized(op, public.marshall().map_err(cmd(op))?)
}

/// The EK whose certificate the maker stored, the first in
/// [`EkKind::ALL`] (ECC P-256 when there is none).
fn preferred_ek(ctx: &mut Context) -> Result<EkKind, TpmError> {
    for kind in EkKind::ALL {
        if crate::tpm::handle_exists(ctx, kind.certificate_index())? {
            return Ok(kind);
        }
    }
    Ok(EkKind::EccP256)
}

/// Runs `f` with the EK loaded, then flushes the EK.
/// The EK is a primary key: the same template gives the same key.
fn with_ek<T>(
    ctx: &mut Context,
    kind: EkKind,
    f: impl FnOnce(&mut Context, KeyHandle) -> Result<T, TpmError>,
) -> Result<T, TpmError> {
    let ek = ek::create_ek_object_2(ctx, kind.selection(), None)
        .map_err(cmd("create endorsement key"))?;
    let out = f(ctx, ek);
    let _ = ctx.flush_context(ek.into());
    out
}

/// Runs `f` with the EK and the AK loaded, then flushes both.
fn with_ak<T>(
    ctx: &mut Context,
    key: &AttestationKey,
    f: impl FnOnce(&mut Context, KeyHandle, KeyHandle) -> Result<T, TpmError>,
) -> Result<T, TpmError> {
    const OP: &str = "load attestation key";
    let public = Public::unmarshall(contents(OP, &key.public)?).map_err(cmd(OP))?;
    let private = Private::try_from(key.private.clone()).map_err(cmd(OP))?;
    with_ek(ctx, key.ek, |ctx, ek| {
        let ak = ak::load_ak(ctx, ek, None, private, public).map_err(cmd(OP))?;
        let out = f(ctx, ek, ak);
        let _ = ctx.flush_context(ak.into());
        out
    })
}

fn endorsement(ctx: &mut Context, kind: Option<EkKind>) -> Result<Endorsement, TpmError> {
    let kind = match kind {
        Some(kind) => kind,
        None => preferred_ek(ctx)?,
    };
    let public = with_ek(ctx, kind, |ctx, ek| {
        let (public, _, _) = ctx
            .execute_without_session(|c| c.read_public(ek))
            .map_err(cmd("read endorsement key"))?;
        marshall_public("read endorsement key", &public)
    })?;
    let certificate = crate::tpm::read_ek_certificate_at(ctx, kind.certificate_index())?;
    Ok(Endorsement {
        kind,
        public,
        certificate,
    })
}

fn create_attestation_key(ctx: &mut Context, kind: EkKind) -> Result<AttestationKey, TpmError> {
    const OP: &str = "create attestation key";
    let created = with_ek(ctx, kind, |ctx, ek| {
        ak::create_ak_2(
            ctx,
            ek,
            HashingAlgorithm::Sha256,
            AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
            SignatureSchemeAlgorithm::EcDsa,
            None,
            None,
        )
        .map_err(cmd(OP))
    })?;
    let mut key = AttestationKey {
        ek: kind,
        public: marshall_public(OP, &created.out_public)?,
        private: created.out_private.value().to_vec(),
        name: Vec::new(),
    };
    // The TPM's own Name of the key, read back from the loaded key.
    key.name = with_ak(ctx, &key, |ctx, _, ak| {
        let (_, name, _) = ctx
            .execute_without_session(|c| c.read_public(ak))
            .map_err(cmd(OP))?;
        Ok(name.value().to_vec())
    })?;
    Ok(key)
}

/// Starts a policy session satisfied by PolicySecret(endorsement), the
/// EK's policy in the default templates.
fn endorsement_policy(ctx: &mut Context) -> Result<AuthSession, TpmError> {
    const OP: &str = "endorsement policy session";
    let session = ctx
        .start_auth_session(
            None,
            None,
            None,
            SessionType::Policy,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(cmd(OP))?
        .ok_or_else(|| invalid(OP))?;
    let policy = PolicySession::try_from(session).map_err(cmd(OP))?;
    let satisfied = ctx.execute_with_nullauth_session(|c| {
        c.policy_secret(
            policy,
            AuthHandle::Endorsement,
            Default::default(),
            Default::default(),
            Default::default(),
            None,
        )
    });
    if let Err(e) = satisfied {
        flush_session(ctx, session);
        return Err(cmd(OP)(e));
    }
    Ok(session)
}

fn flush_session(ctx: &mut Context, session: AuthSession) {
    let handle: SessionHandle = session.into();
    let _ = ctx.flush_context(ObjectHandle::from(handle));
}

fn activate_credential(
    ctx: &mut Context,
    key: &AttestationKey,
    id_object: &[u8],
    encrypted_secret: &[u8],
) -> Result<Zeroizing<Vec<u8>>, TpmError> {
    const OP: &str = "activate credential";
    let id = IdObject::try_from(contents(OP, id_object)?.to_vec()).map_err(cmd(OP))?;
    let secret =
        EncryptedSecret::try_from(contents(OP, encrypted_secret)?.to_vec()).map_err(cmd(OP))?;
    with_ak(ctx, key, |ctx, ek, ak| {
        let (public, _, _) = ctx
            .execute_without_session(|c| c.read_public(ek))
            .map_err(cmd(OP))?;
        // The low-range templates (RSA 2048, ECC P-256) leave userWithAuth
        // clear: the EK is used only through its policy,
        // PolicySecret(endorsement). The high-range ones set it, and an
        // empty password authorises the EK.
        let session = if public.object_attributes().user_with_auth() {
            None
        } else {
            Some(endorsement_policy(ctx)?)
        };
        let out = ctx.execute_with_sessions(
            (
                Some(AuthSession::Password),
                Some(session.unwrap_or(AuthSession::Password)),
                None,
            ),
            |c| c.activate_credential(ak, ek, id, secret),
        );
        if let Some(session) = session {
            flush_session(ctx, session);
        }
        Ok(Zeroizing::new(out.map_err(cmd(OP))?.value().to_vec()))
    })
}

fn certify(
    ctx: &mut Context,
    device_key: KeyHandle,
    key: &AttestationKey,
    nonce: &[u8],
) -> Result<Certification, TpmError> {
    const OP: &str = "certify device key";
    let nonce = Data::try_from(nonce.to_vec()).map_err(cmd(OP))?;
    let (public, _, _) = ctx
        .execute_without_session(|c| c.read_public(device_key))
        .map_err(cmd(OP))?;
    let key_public = marshall_public(OP, &public)?;
    with_ak(ctx, key, |ctx, _, ak| {
        let (attest, signature) = ctx
            .execute_with_sessions(
                (
                    Some(AuthSession::Password),
                    Some(AuthSession::Password),
                    None,
                ),
                |c| c.certify(device_key.into(), ak, nonce, SignatureScheme::Null),
            )
            .map_err(cmd(OP))?;
        Ok(Certification {
            key_public,
            certify_info: sized(OP, attest.marshall().map_err(cmd(OP))?)?,
            signature: signature.marshall().map_err(cmd(OP))?,
        })
    })
}

impl TpmKey {
    /// The TPM's endorsement key, the first kind in [`EkKind::ALL`] whose
    /// certificate is in NV, with that certificate.
    pub fn endorsement(&self) -> Result<Endorsement, TpmError> {
        self.run(|ctx, _| endorsement(ctx, None))
    }

    /// The endorsement key of `kind`, with its certificate if there is one.
    pub fn endorsement_of(&self, kind: EkKind) -> Result<Endorsement, TpmError> {
        self.run(move |ctx, _| endorsement(ctx, Some(kind)))
    }

    /// Creates a fresh attestation key under the EK of `kind`.
    pub fn create_attestation_key(&self, ek: EkKind) -> Result<AttestationKey, TpmError> {
        self.run(move |ctx, _| create_attestation_key(ctx, ek))
    }

    /// TPM2_ActivateCredential: the secret in the credential (TPM2B_ID_OBJECT
    /// and TPM2B_ENCRYPTED_SECRET), which the TPM releases only if it was
    /// made for this TPM's EK and `key`'s Name.
    pub fn activate_credential(
        &self,
        key: &AttestationKey,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        let (key, id, secret) = (key.clone(), id_object.to_vec(), encrypted_secret.to_vec());
        self.run(move |ctx, _| activate_credential(ctx, &key, &id, &secret))
    }

    /// TPM2_Certify of the device key by `key`, with the verifier's `nonce`
    /// (at most 64 bytes) as qualifying data.
    pub fn certify(&self, key: &AttestationKey, nonce: &[u8]) -> Result<Certification, TpmError> {
        let (key, nonce) = (key.clone(), nonce.to_vec());
        self.run(move |ctx, device_key| certify(ctx, device_key, &key, &nonce))
    }
}
