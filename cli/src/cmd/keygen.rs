//! `sealcam keygen`: a consumer key pair for decrypting video.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
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
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .with_context(|| {
            format!(
                "creating {} (an existing key is never overwritten)",
                key_path.display()
            )
        })?;
    f.write_all(private.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", key_path.display()))?;
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
