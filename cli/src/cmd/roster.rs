//! `sealcam roster add|end|show|publish`: the owner-signed device roster,
//! which decides which key recorded a clip (`docs/ref/format.md`, Device
//! rosters).
//!
//! The roster is signed with the owner's offline key. Every change writes a
//! new version of the whole roster, one higher; records are never removed,
//! so old footage keeps the key it verifies under. A change is refused on a
//! copy older than the newest version pinned on this machine
//! ([`crate::pins`]): building on it would undo the changes since, a
//! revocation among them. `publish` puts the roster on the ingest, where
//! `fetch` and `follow` find it (and check it against the owner key).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sealcam_format::roster::{
    DeviceRoster, EndReason, KeyEnd, KeyOrigin, KeyRecord, SignedDeviceRoster, TpmEvidence,
};
use sealcam_format::{DeviceVerifyingKey, Name};
use sealcam_transport::{identity, pem, Role};

use crate::api::{Api, ServerArgs};
use crate::owner_key;
use crate::pins::Pins;

/// Where the roster is and who signs it.
#[derive(clap::Args)]
pub struct Signing {
    /// The owner's private key (from `sealcam owner init`).
    #[arg(long)]
    pub owner_key: PathBuf,
    /// The roster file; created by `add --new`.
    #[arg(long)]
    pub roster: PathBuf,
    #[command(flatten)]
    pub publish: PublishTo,
}

/// `--publish URL`: put the new version on the ingest in the same step,
/// as `roster publish` would.
#[derive(clap::Args)]
pub struct PublishTo {
    /// Also publish the new version on the ingest at this URL
    /// (https://host:port), as `sealcam roster publish` does; with --ca,
    /// --cert and --tls-key.
    #[arg(long = "publish", value_name = "URL", requires_all = ["ca", "cert", "tls_key"])]
    pub url: Option<String>,
    /// Fleet CA certificate (verifies the ingest), for --publish.
    #[arg(long, requires = "url")]
    pub ca: Option<PathBuf>,
    /// Consumer TLS certificate, for --publish.
    #[arg(long, requires = "url")]
    pub cert: Option<PathBuf>,
    /// Consumer TLS key, for --publish.
    #[arg(long, requires = "url")]
    pub tls_key: Option<PathBuf>,
}

impl PublishTo {
    fn server(&self) -> Option<ServerArgs> {
        Some(ServerArgs {
            server: self.url.clone()?,
            ca: self.ca.clone()?,
            cert: self.cert.clone()?,
            tls_key: self.tls_key.clone()?,
        })
    }
}

#[derive(clap::Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub signing: Signing,
    /// The device's id.
    #[arg(long)]
    pub device: String,
    /// The device's key: its certificate (PEM; it must name the device) or
    /// its public key (PEM). Compare the fingerprint printed with what
    /// `sealcamd identity` shows on the camera.
    #[arg(long)]
    pub key: PathBuf,
    /// From when its signatures count: RFC 3339, or a duration ago (10m,
    /// 2d). Default: the certificate's start of validity, or now for a bare
    /// key.
    #[arg(long)]
    pub from: Option<String>,
    /// Start a new roster: only where there is none (a missing file is
    /// never started afresh otherwise, which would drop every revocation).
    #[arg(long)]
    pub new: bool,
    /// The key's TPM evidence (`sealcam-ca device evidence`): its EK
    /// certificate chain and the certify signature are checked here against
    /// the TPM makers' CAs (`--tpm-ca`), then recorded, so the key is
    /// reported as TPM-resident. That the attestation key lived in that TPM
    /// was proven to the fleet CA at enrollment (credential activation),
    /// not here: trust the record as far as you trust the CA. Without it
    /// the key is recorded as a software key.
    #[arg(long, requires = "tpm_ca")]
    pub evidence: Option<PathBuf>,
    /// A TPM maker's CA certificate (PEM; repeatable) that the evidence's
    /// endorsement-key certificate must be issued by.
    #[arg(long = "tpm-ca", requires = "evidence")]
    pub tpm_ca: Vec<PathBuf>,
}

/// The DER certificates in the PEM files at `paths`.
fn read_maker_cas(paths: &[PathBuf]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut roots = Vec::new();
    for path in paths {
        let certs = pem::load_certs(path).with_context(|| path.display().to_string())?;
        roots.extend(certs.into_iter().map(|c| c.as_ref().to_vec()));
    }
    Ok(roots)
}

/// Reads the evidence at `path` and checks it offline for `key`.
fn read_evidence(
    path: &Path,
    key: &DeviceVerifyingKey,
    tpm_cas: &[PathBuf],
) -> anyhow::Result<TpmEvidence> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let evidence = TpmEvidence::from_file(&bytes).with_context(|| path.display().to_string())?;
    let roots = read_maker_cas(tpm_cas)?;
    sealcam_attest::verify_evidence(&evidence, key, None, &roots).with_context(|| {
        format!(
            "{}: the TPM evidence does not hold for key {}; nothing was written",
            path.display(),
            key.fingerprint()
        )
    })?;
    Ok(evidence)
}

#[derive(clap::Args)]
pub struct EndArgs {
    #[command(flatten)]
    pub signing: Signing,
    /// The device's id.
    #[arg(long)]
    pub device: String,
    /// The key's fingerprint, or a unique prefix of it (`roster show`).
    #[arg(long)]
    pub key_fingerprint: String,
    /// Why: `rotated` (replaced by a newer key) or `revoked` (lost,
    /// stolen, retired).
    #[arg(long, value_enum)]
    pub reason: Reason,
    /// From when its signatures no longer count: RFC 3339, or a duration
    /// ago. Default: now.
    #[arg(long)]
    pub at: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Reason {
    Rotated,
    Revoked,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    pub roster: PathBuf,
    /// Check the signature with the owner's public key.
    #[arg(long)]
    pub owner: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct PublishArgs {
    /// The roster file to publish.
    #[arg(long)]
    pub roster: PathBuf,
    /// The owner's public key (OWNER.pub), which must have signed it.
    #[arg(long)]
    pub owner: PathBuf,
    #[command(flatten)]
    pub server: ServerArgs,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Reads the roster at `path` (checked against the owner's key); with
/// `new`, an empty one where there is none yet.
fn read_or_new(path: &Path, owner: &DeviceVerifyingKey, new: bool) -> anyhow::Result<DeviceRoster> {
    let pins = Pins::load()?;
    let pinned = pins.pinned(&owner.fingerprint());
    match (std::fs::read(path), new) {
        (Ok(_), true) => bail!(
            "{} exists; --new starts a roster only where there is none",
            path.display()
        ),
        (Ok(bytes), false) => {
            let roster = read_verified(path, &bytes, owner)?;
            pins.check(&owner.fingerprint(), roster.version, &path.display().to_string())
                .context("refusing to build on an older copy of the roster: it would undo the changes since")?;
            Ok(roster)
        }
        (Err(e), true) if e.kind() == std::io::ErrorKind::NotFound && pinned.is_some() => bail!(
            "a roster signed by this owner key was seen at version {} (pinned in {}); --new would start over and drop its records, revocations included: use the newest copy (the ingest serves it to `sealcam fetch`)",
            pinned.unwrap_or_default(),
            pins.path().display()
        ),
        (Err(e), true) if e.kind() == std::io::ErrorKind::NotFound => Ok(DeviceRoster {
            version: 0,
            issued_unix: 0,
            keys: Vec::new(),
        }),
        (Err(e), false) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "there is no roster at {}; check the path, or pass --new to start one",
            path.display()
        ),
        (Err(e), _) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn read_verified(
    path: &Path,
    bytes: &[u8],
    owner: &DeviceVerifyingKey,
) -> anyhow::Result<DeviceRoster> {
    let parsed = SignedDeviceRoster::parse(bytes).with_context(|| path.display().to_string())?;
    parsed
        .verify(owner)
        .with_context(|| format!("{}: refusing to build on it", path.display()))
}

/// Signs the next version of the roster and writes it durably.
fn write_next(signing: &Signing, mut roster: DeviceRoster) -> anyhow::Result<DeviceRoster> {
    let owner = owner_key::load_private(&signing.owner_key)?;
    roster.version += 1;
    roster.issued_unix = now_ns() / 1_000_000_000;
    let file = roster.sign(&owner)?;
    sealcam_base::durable::replace(&signing.roster, &file)?;
    let public = DeviceVerifyingKey(*owner.verifying_key());
    Pins::load()?.check_and_raise(
        &public.fingerprint(),
        roster.version,
        &signing.roster.display().to_string(),
    )?;
    if let Some(server) = signing.publish.server() {
        use p256::pkcs8::EncodePublicKey;
        let owner_pem = owner
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding the owner's public key: {e}"))?;
        let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        rt.block_on(upload(&server, owner_pem, &file))
            .with_context(|| format!("version {} is written to {} but not published; run `sealcam roster publish` when the ingest is reachable", roster.version, signing.roster.display()))?;
    }
    Ok(roster)
}

fn owner_public(signing: &Signing) -> anyhow::Result<DeviceVerifyingKey> {
    let owner = owner_key::load_private(&signing.owner_key)?;
    Ok(DeviceVerifyingKey(*owner.verifying_key()))
}

/// A device key from a certificate (which must name `device`) or a public
/// key, and the time its certificate starts, if it came from one.
fn read_device_key(
    path: &Path,
    device: &Name,
) -> anyhow::Result<(DeviceVerifyingKey, Option<u64>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if text.contains("-----BEGIN CERTIFICATE-----") {
        let der = pem::parse_first_cert(&text).with_context(|| path.display().to_string())?;
        let summary = identity::summarize(&der).with_context(|| path.display().to_string())?;
        match &summary.identity {
            Some(id) if id.role == Role::Device && id.name == *device => {}
            other => bail!(
                "{} certifies {}, not device {device}",
                path.display(),
                other
                    .as_ref()
                    .map_or("no sealcam identity".into(), ToString::to_string)
            ),
        }
        let key = identity::device_key_from_cert_der(&der)?;
        let from = u64::try_from(summary.not_before)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000);
        return Ok((key, Some(from)));
    }
    let key = owner_key::public_from_pem(&text).with_context(|| {
        format!(
            "{}: neither a certificate nor a P-256 public key",
            path.display()
        )
    })?;
    Ok((key, None))
}

pub fn add(args: AddArgs) -> anyhow::Result<()> {
    let device = Name::new(&args.device)?;
    let owner = owner_public(&args.signing)?;
    let mut roster = read_or_new(&args.signing.roster, &owner, args.new)?;
    let (key, cert_from) = read_device_key(&args.key, &device)?;
    if let Some(k) = roster.keys.iter().find(|k| k.key == key) {
        bail!(
            "key {} is in the roster already, for device {} (valid from {}); \
             a key speaks for one device only; to end it, use `sealcam roster end`",
            key.fingerprint(),
            k.device,
            super::rfc3339(k.valid_from_unix_ns)
        );
    }
    let from = match &args.from {
        Some(t) => super::parse_time(t)?,
        None => cert_from.unwrap_or_else(now_ns),
    };
    let origin = match &args.evidence {
        Some(path) => KeyOrigin::Tpm(read_evidence(path, &key, &args.tpm_ca)?),
        None => KeyOrigin::Software,
    };
    let held = match origin {
        KeyOrigin::Software => "software key: no TPM evidence",
        KeyOrigin::Tpm(_) => "TPM-resident key: EK chain and certify checked against the maker CAs; residency as the fleet CA checked it at enrollment",
    };
    roster.keys.push(KeyRecord {
        device: device.clone(),
        key: key.clone(),
        valid_from_unix_ns: from,
        end: None,
        origin,
    });
    let roster = write_next(&args.signing, roster)?;
    println!(
        "roster version {}: device {device} key {} counts from {} ({held})",
        roster.version,
        key.fingerprint(),
        super::rfc3339(from)
    );
    println!("compare the fingerprint with `sealcamd identity` on the camera");
    Ok(())
}

pub fn end(args: EndArgs) -> anyhow::Result<()> {
    let device = Name::new(&args.device)?;
    let owner = owner_public(&args.signing)?;
    let mut roster = read_or_new(&args.signing.roster, &owner, false)?;
    let wanted = args.key_fingerprint.to_ascii_lowercase();
    let matching: Vec<usize> = roster
        .keys
        .iter()
        .enumerate()
        .filter(|(_, k)| k.device == device && k.key.fingerprint().starts_with(&wanted))
        .map(|(i, _)| i)
        .collect();
    let index = match matching.as_slice() {
        [i] => *i,
        [] => bail!(
            "device {device} has no key {wanted} in the roster; `sealcam roster show` lists them"
        ),
        _ => bail!(
            "{wanted} names {} keys of device {device}; give more of the fingerprint",
            matching.len()
        ),
    };
    let at = match &args.at {
        Some(t) => super::parse_time(t)?,
        None => now_ns(),
    };
    let reason = match args.reason {
        Reason::Rotated => EndReason::Rotated,
        Reason::Revoked => EndReason::Revoked,
    };
    let record = &mut roster.keys[index];
    if let Some(e) = record.end {
        // An end only moves earlier (or a rotation becomes a revocation at
        // the same time), and a revocation stays one: it is never lifted,
        // postponed or renamed.
        let now_revoked =
            at == e.at_unix_ns && e.reason == EndReason::Rotated && reason == EndReason::Revoked;
        let renamed = e.reason == EndReason::Revoked && reason == EndReason::Rotated;
        if (at >= e.at_unix_ns && !now_revoked) || renamed {
            bail!(
                "key {} of device {device} already ends at {} ({:?}); an end can only move earlier, and a revocation stays a revocation",
                record.key.fingerprint(),
                super::rfc3339(e.at_unix_ns),
                e.reason
            );
        }
    }
    record.end = Some(KeyEnd {
        at_unix_ns: at,
        reason,
    });
    let fingerprint = record.key.fingerprint();
    let roster = write_next(&args.signing, roster)?;
    println!(
        "roster version {}: device {device} key {fingerprint} {} from {}",
        roster.version,
        match reason {
            EndReason::Rotated => "rotated",
            EndReason::Revoked => "revoked",
        },
        super::rfc3339(at)
    );
    Ok(())
}

pub fn show(args: ShowArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.roster)
        .with_context(|| format!("reading {}", args.roster.display()))?;
    let roster = match &args.owner {
        Some(path) => {
            let owner = owner_key::load_public(path)?;
            let roster = read_verified(&args.roster, &bytes, &owner)?;
            println!("signature: valid, by owner {}", owner.fingerprint());
            roster
        }
        None => {
            println!("signature: not checked (pass --owner OWNER.pub)");
            SignedDeviceRoster::parse(&bytes)
                .with_context(|| args.roster.display().to_string())?
                .roster
        }
    };
    println!("version:   {}", roster.version);
    println!(
        "issued:    {}",
        super::rfc3339(roster.issued_unix.saturating_mul(1_000_000_000))
    );
    for k in &roster.keys {
        println!("{}", describe(k));
    }
    Ok(())
}

/// One line per key, for `show` and the verification report.
pub(crate) fn describe(k: &KeyRecord) -> String {
    let end = match k.end {
        None => "still valid".to_owned(),
        Some(e) => format!(
            "{} from {}",
            match e.reason {
                EndReason::Rotated => "rotated",
                EndReason::Revoked => "REVOKED",
            },
            super::rfc3339(e.at_unix_ns)
        ),
    };
    let origin = match k.origin {
        KeyOrigin::Software => "software key (no TPM evidence)",
        KeyOrigin::Tpm(_) => "TPM-resident key",
    };
    format!(
        "device:    {}  key {}  from {}, {end}; {origin}",
        k.device,
        k.key.fingerprint(),
        super::rfc3339(k.valid_from_unix_ns)
    )
}

pub async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let owner = owner_key::load_public(&args.owner)?;
    let bytes = std::fs::read(&args.roster)
        .with_context(|| format!("reading {}", args.roster.display()))?;
    let roster = read_verified(&args.roster, &bytes, &owner)?;
    Pins::load()?.check_and_raise(
        &owner.fingerprint(),
        roster.version,
        &args.roster.display().to_string(),
    )?;
    let owner_pem = std::fs::read_to_string(&args.owner)
        .with_context(|| format!("reading {}", args.owner.display()))?;
    upload(&args.server, owner_pem, &bytes).await
}

/// Puts a roster (already checked) on the ingest and says what it did.
async fn upload(server: &ServerArgs, owner_pem: String, bytes: &[u8]) -> anyhow::Result<()> {
    use base64::Engine as _;
    let api = Api::connect(server)?;
    let receipt = api
        .publish_roster(&sealcam_api::RosterUpload {
            owner_key: owner_pem,
            roster: base64::engine::general_purpose::STANDARD.encode(bytes),
        })
        .await?;
    println!(
        "roster version {} of owner {} published to {} ({})",
        receipt.version,
        receipt.owner,
        server.server,
        match receipt.status {
            sealcam_api::RosterStatus::Stored => "stored",
            sealcam_api::RosterStatus::AlreadyStored => "already there",
        }
    );
    Ok(())
}
