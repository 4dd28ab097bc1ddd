//! `sealcam recipients sign|show`: owner-signed recipient sets.

use std::path::PathBuf;

use anyhow::{bail, Context};
use sealcam_format::recipients::{Recipient, RecipientSet, SignedRecipientSet};
use sealcam_format::ConsumerPublicKey;

use crate::owner_key;

#[derive(clap::Args)]
pub struct SignArgs {
    /// The owner's private key (from `sealcam owner init`).
    #[arg(long)]
    pub owner_key: PathBuf,
    /// The set's version: higher than every set these cameras have seen.
    #[arg(long)]
    pub version: u64,
    /// A consumer public key (from `sealcam keygen`), as FILE or LABEL=FILE; repeatable.
    #[arg(long = "add", required = true)]
    pub keys: Vec<String>,
    /// The signed set to write.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    pub file: PathBuf,
    /// Check the signature with the owner's public key.
    #[arg(long)]
    pub owner: Option<PathBuf>,
}

pub fn sign(args: SignArgs) -> anyhow::Result<()> {
    let owner = owner_key::load_private(&args.owner_key)?;
    let mut recipients = Vec::new();
    for spec in &args.keys {
        let (label, path) = match spec.split_once('=') {
            Some((l, p)) => (l.to_owned(), PathBuf::from(p)),
            None => {
                let p = PathBuf::from(spec);
                let label = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (label, p)
            }
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let key = ConsumerPublicKey::from_pem(&text).with_context(|| path.display().to_string())?;
        if recipients
            .iter()
            .any(|r: &Recipient| r.key.id() == key.id())
        {
            bail!("key {} ({}) is listed twice", key.id(), path.display());
        }
        recipients.push(Recipient { label, key });
    }
    let issued_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let set = RecipientSet {
        version: args.version,
        issued_unix,
        recipients,
    };
    let file = set.sign(&owner)?;
    std::fs::write(&args.out, file).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "signed recipient set version {} with {} keys: {}",
        set.version,
        set.recipients.len(),
        args.out.display()
    );
    Ok(())
}

pub fn show(args: ShowArgs) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let parsed =
        SignedRecipientSet::parse(&bytes).with_context(|| args.file.display().to_string())?;
    let set = match &args.owner {
        Some(path) => {
            let owner = owner_key::load_public(path)?;
            let set = parsed.verify(&owner)?;
            println!("signature: valid, by owner {}", owner.fingerprint());
            set
        }
        None => {
            println!("signature: not checked (pass --owner OWNER.pub)");
            parsed.set
        }
    };
    println!("version:   {}", set.version);
    println!(
        "issued:    {}",
        super::rfc3339(set.issued_unix.saturating_mul(1_000_000_000))
    );
    for r in &set.recipients {
        println!("recipient: {}  {}", r.key.id(), r.label);
    }
    Ok(())
}
