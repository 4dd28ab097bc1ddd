//! `sealcam owner init`: the owner's key, which signs recipient sets.
//!
//! Keep it offline: whoever holds it decides who can decrypt the cameras'
//! video from the next fragment on.

use std::path::PathBuf;

use anyhow::Context;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use sealcam_format::DeviceVerifyingKey;

use super::write_private;

#[derive(clap::Args)]
pub struct InitArgs {
    /// Writes OUT.key (private, mode 0600; keep it offline) and OUT.pub (goes to the cameras).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn init(args: InitArgs) -> anyhow::Result<()> {
    let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let key_path = args.out.with_extension("key");
    let pub_path = args.out.with_extension("pub");
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding the owner key")?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .context("encoding the owner public key")?;
    write_private(&key_path, private.as_bytes())?;
    std::fs::write(&pub_path, public).with_context(|| format!("writing {}", pub_path.display()))?;
    println!(
        "owner fingerprint: {}",
        DeviceVerifyingKey(*key.verifying_key()).fingerprint()
    );
    println!(
        "private key: {} (keep it offline; it decides who can decrypt)",
        key_path.display()
    );
    println!(
        "public key:  {} (recipients.owner_public_key in each camera config)",
        pub_path.display()
    );
    Ok(())
}
