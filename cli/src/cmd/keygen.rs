//! `sealcam keygen`: a consumer key pair for decrypting video.

use std::path::PathBuf;

use anyhow::Context;
use sealcam_format::ConsumerSecretKey;

#[derive(clap::Args)]
pub struct Args {
    /// Writes OUT.key (private, mode 0600) and OUT.pub (goes into the camera config).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let key = ConsumerSecretKey::generate(&mut rand::rngs::OsRng);
    let key_path = args.out.with_extension("key");
    let pub_path = args.out.with_extension("pub");
    let private = key.to_pem()?;
    let public = key.public().to_pem()?;
    super::write_private(&key_path, private.as_bytes())?;
    std::fs::write(&pub_path, public).with_context(|| format!("writing {}", pub_path.display()))?;
    println!("key id:      {}", key.public().id());
    println!(
        "private key: {} (keep it secret; it decrypts every fragment sealed to it)",
        key_path.display()
    );
    println!(
        "public key:  {} (add it to recipients.public_keys in the camera config)",
        pub_path.display()
    );
    Ok(())
}
