//! The device key held in a TPM 2.0.
//!
//! The key is an ECDSA P-256 signing key created inside the TPM in the owner
//! hierarchy and made persistent at a configured handle. Its attributes make
//! it impossible to export (`fixedTPM`, `fixedParent`,
//! `sensitiveDataOrigin`) and immune to dictionary-attack lockout (`noDA`:
//! cameras lose power abruptly, and a lockout would brick them).
//!
//! One thread owns the TPM context. [`TpmKey`] sends it requests over a
//! channel and waits with a timeout, so a hung TPM cannot hang the daemon.
//! If the TPM connection breaks (the resource manager restarted, swtpm was
//! restarted), the thread reopens it once per request before failing.

use std::str::FromStr;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use p256::ecdsa::VerifyingKey;
use sealcam_transport::{ExternalSigner, SignerError};
use sha2::{Digest as _, Sha256};
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::{KeyHandle, ObjectHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::structures::{
    Digest, EccParameter, EccPoint, EccScheme, HashScheme, HashcheckTicket, Public, PublicBuilder,
    PublicEccParametersBuilder, Signature, SignatureScheme,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use tss_esapi::Context;

/// The production TCTI: the kernel's TPM resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";
/// The default persistent handle of the device key (owner range).
pub const DEFAULT_HANDLE: u32 = 0x8100_0100;
/// How long a caller waits for the TPM thread.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the device key lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpmConfig {
    /// TSS2 TCTI configuration, e.g. `device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=2321`.
    pub tcti: String,
    /// Persistent handle, 0x81000000..=0x817FFFFF.
    pub handle: u32,
}

/// One variant per TPM operation, each with the TSS/TPM response.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    #[error("invalid TCTI {tcti:?}: {source}; use e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321")]
    Tcti {
        tcti: String,
        #[source]
        source: tss_esapi::Error,
    },
    #[error("cannot open the TPM via {tcti}: {source} (is the TPM present and is this user in group 'tss'?)")]
    Open {
        tcti: String,
        #[source]
        source: tss_esapi::Error,
    },
    #[error("persistent handle {handle:#010x} is outside the owner range 0x81000000..=0x817fffff")]
    BadHandle { handle: u32 },
    #[error("no device key at TPM handle {handle:#010x}; run `sealcamd provision` first")]
    NoKey { handle: u32 },
    #[error("TPM handle {handle:#010x} already holds a key; pass --force to replace it (the old identity is lost)")]
    KeyExists { handle: u32 },
    #[error("the object at TPM handle {handle:#010x} is not a non-exportable P-256 signing key")]
    NotOurKey { handle: u32 },
    #[error("TPM {op} failed: {source}")]
    Command {
        op: &'static str,
        #[source]
        source: tss_esapi::Error,
    },
    #[error("the TPM thread did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the TPM thread has stopped")]
    Gone,
}

impl TpmError {
    /// The TPM or TSS response code, when the TPM answered with one.
    pub fn response_code(&self) -> Option<tss_esapi::constants::response_code::Tss2ResponseCode> {
        match self {
            TpmError::Open { source, .. }
            | TpmError::Command { source, .. }
            | TpmError::Tcti { source, .. } => match source {
                tss_esapi::Error::Tss2Error(rc) => Some(*rc),
                tss_esapi::Error::WrapperError(_) => None,
            },
            _ => None,
        }
    }
}

fn cmd(op: &'static str) -> impl FnOnce(tss_esapi::Error) -> TpmError {
    move |source| TpmError::Command { op, source }
}

fn persistent(handle: u32) -> Result<PersistentTpmHandle, TpmError> {
    if !(0x8100_0000..=0x817F_FFFF).contains(&handle) {
        return Err(TpmError::BadHandle { handle });
    }
    PersistentTpmHandle::new(handle).map_err(|_| TpmError::BadHandle { handle })
}

fn open_context(tcti: &str) -> Result<Context, TpmError> {
    let conf = TctiNameConf::from_str(tcti).map_err(|source| TpmError::Tcti {
        tcti: tcti.to_owned(),
        source,
    })?;
    Context::new(conf).map_err(|source| TpmError::Open {
        tcti: tcti.to_owned(),
        source,
    })
}

/// The template of the device key: P-256 ECDSA/SHA-256, unrestricted,
/// non-exportable, no dictionary-attack protection. `unique` makes each
/// created key distinct (primary keys derive from the template).
fn template(unique: [u8; 32]) -> Result<Public, TpmError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_sign_encrypt(true)
        .with_decrypt(false)
        .with_restricted(false)
        .build()
        .map_err(cmd("key template"))?;
    let params = PublicEccParametersBuilder::new_unrestricted_signing_key(
        EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)),
        EccCurve::NistP256,
    )
    .build()
    .map_err(cmd("key template"))?;
    let x = EccParameter::try_from(unique.to_vec()).map_err(cmd("key template"))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(params)
        .with_ecc_unique_identifier(EccPoint::new(x, EccParameter::default()))
        .build()
        .map_err(cmd("key template"))
}

/// The key at `handle`, if any.
/// Whether the TPM has an object (persistent key, NV index) at `raw`.
///
/// Asked with TPM2_GetCapability before `Esys_TR_FromTPMPublic`, because the
/// latter's failure path for an absent handle has corrupted the heap of
/// tpm2-tss 3.2 (seen as "double free or corruption" at context close).
pub(crate) fn handle_exists(ctx: &mut Context, raw: u32) -> Result<bool, TpmError> {
    let (data, _) = ctx
        .execute_without_session(|c| {
            c.get_capability(tss_esapi::constants::CapabilityType::Handles, raw, 1)
        })
        .map_err(cmd("list handles"))?;
    Ok(match data {
        tss_esapi::structures::CapabilityData::Handles(list) => list
            .into_inner()
            .into_iter()
            .any(|h| tss_esapi::tss2_esys::TPM2_HANDLE::from(h) == raw),
        _ => false,
    })
}

fn find_key(ctx: &mut Context, handle: u32) -> Result<Option<KeyHandle>, TpmError> {
    if !handle_exists(ctx, handle)? {
        return Ok(None);
    }
    let tpm_handle = TpmHandle::Persistent(persistent(handle)?);
    match ctx.execute_without_session(|c| c.tr_from_tpm_public(tpm_handle)) {
        Ok(obj) => Ok(Some(KeyHandle::from(obj))),
        Err(tss_esapi::Error::Tss2Error(rc)) if rc.kind() == Some(Tss2ResponseCodeKind::Handle) => {
            Ok(None)
        }
        Err(e) => Err(cmd("load persistent key")(e)),
    }
}

/// Whether `e` is a response code that is not the TPM's own: one from a
/// lower layer of the TSS (TCTI, resource manager), which tss-esapi does
/// not decode.
fn unanswered(e: &tss_esapi::Error) -> bool {
    matches!(e, tss_esapi::Error::Tss2Error(rc) if rc.kind().is_none())
}

fn left_pad32(v: &[u8]) -> Option<[u8; 32]> {
    if v.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out[32 - v.len()..].copy_from_slice(v);
    Some(out)
}

/// Reads the key's public point and checks its attributes.
fn public_key(ctx: &mut Context, key: KeyHandle, handle: u32) -> Result<VerifyingKey, TpmError> {
    let (public, _, _) = ctx
        .execute_without_session(|c| c.read_public(key))
        .map_err(cmd("read public key"))?;
    let Public::Ecc {
        object_attributes,
        parameters,
        unique,
        ..
    } = public
    else {
        return Err(TpmError::NotOurKey { handle });
    };
    let safe = object_attributes.fixed_tpm()
        && object_attributes.fixed_parent()
        && object_attributes.sensitive_data_origin()
        && object_attributes.sign_encrypt()
        && !object_attributes.decrypt();
    if !safe || parameters.ecc_curve() != EccCurve::NistP256 {
        return Err(TpmError::NotOurKey { handle });
    }
    let (Some(x), Some(y)) = (
        left_pad32(unique.x().value()),
        left_pad32(unique.y().value()),
    ) else {
        return Err(TpmError::NotOurKey { handle });
    };
    let mut sec1 = [0u8; 65];
    sec1[0] = 4;
    sec1[1..33].copy_from_slice(&x);
    sec1[33..].copy_from_slice(&y);
    VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| TpmError::NotOurKey { handle })
}

fn create_key(ctx: &mut Context, handle: u32) -> Result<KeyHandle, TpmError> {
    let unique: [u8; 32] = rand::random();
    let public = template(unique)?;
    let created = ctx
        .execute_with_nullauth_session(|c| {
            c.create_primary(Hierarchy::Owner, public, None, None, None, None)
        })
        .map_err(cmd("create key"))?;
    let transient: ObjectHandle = created.key_handle.into();
    let persisted = ctx.execute_with_nullauth_session(|c| {
        c.evict_control(
            Provision::Owner,
            transient,
            Persistent::Persistent(persistent(handle).map_err(|_| {
                tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::InvalidParam)
            })?),
        )
    });
    // The transient copy is no longer needed either way.
    let _ = ctx.flush_context(transient);
    let persisted = persisted.map_err(cmd("make key persistent"))?;
    Ok(KeyHandle::from(persisted))
}

fn evict_key(ctx: &mut Context, key: KeyHandle, handle: u32) -> Result<(), TpmError> {
    ctx.execute_with_nullauth_session(|c| {
        c.evict_control(
            Provision::Owner,
            key.into(),
            Persistent::Persistent(persistent(handle).map_err(|_| {
                tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::InvalidParam)
            })?),
        )
    })
    .map(|_| ())
    .map_err(cmd("remove old key"))
}

fn sign_digest(
    ctx: &mut Context,
    key: KeyHandle,
    digest: &[u8; 32],
) -> Result<p256::ecdsa::Signature, TpmError> {
    let ticket = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    })
    .map_err(cmd("sign"))?;
    let digest = Digest::try_from(digest.to_vec()).map_err(cmd("sign"))?;
    let scheme = SignatureScheme::EcDsa {
        hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
    };
    let sig = ctx
        .execute_with_nullauth_session(|c| c.sign(key, digest, scheme, ticket))
        .map_err(cmd("sign"))?;
    let Signature::EcDsa(ecc) = sig else {
        return Err(TpmError::Command {
            op: "sign",
            source: tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::WrongValueFromTpm),
        });
    };
    let bad = || TpmError::Command {
        op: "sign",
        source: tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::WrongValueFromTpm),
    };
    let r = left_pad32(ecc.signature_r().value()).ok_or_else(bad)?;
    let s = left_pad32(ecc.signature_s().value()).ok_or_else(bad)?;
    let sig = p256::ecdsa::Signature::from_scalars(r, s).map_err(|_| bad())?;
    // Low-S form: equally valid, and the only form some verifiers accept.
    Ok(sig.normalize_s().unwrap_or(sig))
}

/// What `provision` did.
#[derive(Debug)]
pub enum Provisioned {
    Created(VerifyingKey),
    Reused(VerifyingKey),
}

/// Creates the device key at the configured handle, or reuses the one there.
/// An existing key is replaced only with `force`.
pub fn provision(cfg: &TpmConfig, force: bool) -> Result<Provisioned, TpmError> {
    let mut ctx = open_context(&cfg.tcti)?;
    if let Some(key) = find_key(&mut ctx, cfg.handle)? {
        if !force {
            return public_key(&mut ctx, key, cfg.handle).map(Provisioned::Reused);
        }
        evict_key(&mut ctx, key, cfg.handle)?;
    }
    let key = create_key(&mut ctx, cfg.handle)?;
    public_key(&mut ctx, key, cfg.handle).map(Provisioned::Created)
}

enum Request {
    Sign {
        digest: [u8; 32],
        reply: mpsc::SyncSender<Result<p256::ecdsa::Signature, TpmError>>,
    },
    EkCertificate {
        reply: mpsc::SyncSender<Result<Option<Vec<u8>>, TpmError>>,
    },
    /// Work of another module (attestation, [`crate::attest`]) that needs
    /// the context and the device key; it sends its own reply.
    Job(Job),
}

/// A job for the TPM thread, see [`TpmKey::run`].
type Job = Box<dyn FnOnce(&mut Context, KeyHandle) + Send>;

/// NV indices where TPM makers store endorsement-key certificates (TCG EK
/// Credential Profile): ECC P-256, ECC P-384, RSA 2048.
pub const EK_CERT_NV_INDICES: [u32; 3] = [0x01c0_000a, 0x01c0_0016, 0x01c0_0002];

/// The TPM's endorsement-key certificate, if its maker stored one.
fn read_ek_certificate(ctx: &mut Context) -> Result<Option<Vec<u8>>, TpmError> {
    for index in EK_CERT_NV_INDICES {
        if let Some(der) = read_ek_certificate_at(ctx, index)? {
            return Ok(Some(der));
        }
    }
    Ok(None)
}

/// The EK certificate at NV `index`, if there is one.
pub(crate) fn read_ek_certificate_at(
    ctx: &mut Context,
    index: u32,
) -> Result<Option<Vec<u8>>, TpmError> {
    use tss_esapi::handles::NvIndexTpmHandle;
    use tss_esapi::interface_types::resource_handles::NvAuth;
    let Ok(handle) = NvIndexTpmHandle::new(index) else {
        return Ok(None);
    };
    if !handle_exists(ctx, index)? {
        return Ok(None);
    }
    match ctx.execute_with_nullauth_session(|c| {
        tss_esapi::abstraction::nv::read_full(c, NvAuth::Owner, handle)
    }) {
        Ok(der) if !der.is_empty() => Ok(Some(der)),
        Ok(_) => Ok(None),
        Err(tss_esapi::Error::Tss2Error(rc)) if rc.kind() == Some(Tss2ResponseCodeKind::Handle) => {
            Ok(None)
        }
        Err(e) => Err(cmd("read EK certificate")(e)),
    }
}

/// The device key in the TPM, usable from any thread.
pub struct TpmKey {
    requests: Mutex<mpsc::Sender<Request>>,
    public: VerifyingKey,
    cfg: TpmConfig,
    timeout: Duration,
    /// Signalled by the owner thread once it has closed its TPM context.
    closed: Mutex<mpsc::Receiver<()>>,
}

/// How long dropping a [`TpmKey`] waits for the TPM context to close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

impl Drop for TpmKey {
    /// Ends the owner thread and waits until it has closed the TPM context.
    /// Left to itself, that close could overlap with the process's exit,
    /// where the TSS's crypto library tears down its own state: a race that
    /// has aborted a process with "double free or corruption".
    fn drop(&mut self) {
        if let Ok(mut tx) = self.requests.lock() {
            // Replacing the only sender ends the owner's request loop.
            *tx = mpsc::channel().0;
        }
        if let Ok(closed) = self.closed.lock() {
            let _ = closed.recv_timeout(CLOSE_WAIT);
        }
    }
}

/// The state the TPM thread owns.
struct Owner {
    cfg: TpmConfig,
    ctx: Context,
    key: KeyHandle,
}

impl Owner {
    fn connect(cfg: &TpmConfig) -> Result<(Self, VerifyingKey), TpmError> {
        let mut ctx = open_context(&cfg.tcti)?;
        let key = match find_key(&mut ctx, cfg.handle) {
            // No TPM response code to the first command: the connection
            // failed (a TCTI or resource-manager error, say while the TPM
            // or its simulator restarts), not the TPM. That is a failure to
            // open, which callers may retry.
            Err(TpmError::Command { source, .. }) if unanswered(&source) => {
                return Err(TpmError::Open {
                    tcti: cfg.tcti.clone(),
                    source,
                })
            }
            found => found?.ok_or(TpmError::NoKey { handle: cfg.handle })?,
        };
        let public = public_key(&mut ctx, key, cfg.handle)?;
        Ok((
            Self {
                cfg: cfg.clone(),
                ctx,
                key,
            },
            public,
        ))
    }

    fn sign(&mut self, digest: &[u8; 32]) -> Result<p256::ecdsa::Signature, TpmError> {
        match sign_digest(&mut self.ctx, self.key, digest) {
            Ok(s) => Ok(s),
            Err(first) => {
                // The connection may have broken (resource manager or
                // simulator restarted): reconnect once, then retry.
                tracing::warn!(error = %first, "TPM sign failed; reconnecting once");
                let (fresh, _) = Owner::connect(&self.cfg)?;
                *self = fresh;
                sign_digest(&mut self.ctx, self.key, digest)
            }
        }
    }

    fn run(mut self, requests: mpsc::Receiver<Request>) {
        while let Ok(req) = requests.recv() {
            match req {
                Request::Sign { digest, reply } => {
                    let _ = reply.send(self.sign(&digest));
                }
                Request::EkCertificate { reply } => {
                    let _ = reply.send(read_ek_certificate(&mut self.ctx));
                }
                Request::Job(job) => job(&mut self.ctx, self.key),
            }
        }
    }
}

impl TpmKey {
    /// Opens the provisioned key and starts the thread that owns the TPM.
    pub fn open(cfg: &TpmConfig) -> Result<Self, TpmError> {
        let (owner, public) = Owner::connect(cfg)?;
        let (tx, rx) = mpsc::channel();
        let (closed_tx, closed_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("tpm".into())
            .spawn(move || {
                // `run` owns the context and closes it when it returns.
                owner.run(rx);
                let _ = closed_tx.send(());
            })
            .map_err(|_| TpmError::Gone)?;
        Ok(Self {
            requests: Mutex::new(tx),
            public,
            cfg: cfg.clone(),
            timeout: DEFAULT_TIMEOUT,
            closed: Mutex::new(closed_rx),
        })
    }

    pub fn handle(&self) -> u32 {
        self.cfg.handle
    }

    /// Sends a request to the owner thread and waits for its answer.
    fn ask<T>(
        &self,
        make: impl FnOnce(mpsc::SyncSender<Result<T, TpmError>>) -> Request,
    ) -> Result<T, TpmError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.requests
            .lock()
            .map_err(|_| TpmError::Gone)?
            .send(make(reply))
            .map_err(|_| TpmError::Gone)?;
        match answer.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(TpmError::Timeout(self.timeout)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(TpmError::Gone),
        }
    }

    /// Runs `f` on the TPM thread with the context and the device key, and
    /// waits for its answer with the usual timeout.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Context, KeyHandle) -> Result<T, TpmError> + Send + 'static,
    ) -> Result<T, TpmError> {
        self.ask(|reply| {
            Request::Job(Box::new(move |ctx, key| {
                let _ = reply.send(f(ctx, key));
            }))
        })
    }

    /// Signs a SHA-256 digest inside the TPM.
    pub fn sign_digest(&self, digest: [u8; 32]) -> Result<p256::ecdsa::Signature, TpmError> {
        self.ask(|reply| Request::Sign { digest, reply })
    }

    /// The endorsement-key certificate the TPM's maker stored, if any (DER).
    pub fn ek_certificate(&self) -> Result<Option<Vec<u8>>, TpmError> {
        self.ask(|reply| Request::EkCertificate { reply })
    }
}

impl ExternalSigner for TpmKey {
    fn sign(&self, message: &[u8]) -> Result<p256::ecdsa::Signature, SignerError> {
        let digest: [u8; 32] = Sha256::digest(message).into();
        self.sign_digest(digest)
            .map_err(|e| SignerError::Failed(e.to_string()))
    }

    fn verifying_key(&self) -> VerifyingKey {
        self.public
    }

    fn describe(&self) -> String {
        format!(
            "TPM key at handle {:#010x} via {}",
            self.cfg.handle, self.cfg.tcti
        )
    }
}
