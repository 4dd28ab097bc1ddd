//! `sealcam card write`: a provisioning bundle onto a camera's card.

use std::path::PathBuf;

use anyhow::Context;
use sealcam_hal::board::Board;
use sealcamd::firstboot::bundle::{self, Bundle, Sources};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["boot", "image"])))]
#[command(group(clap::ArgGroup::new("token_from").required(true).args(["token", "token_file"])))]
pub struct WriteArgs {
    /// The camera's config (sealcamd.toml): names recipients.rset,
    /// owner.pub and fleet-ca.crt as installed in the config directory.
    #[arg(long)]
    pub config: PathBuf,
    /// The fleet CA's certificate (PEM).
    #[arg(long)]
    pub ca: PathBuf,
    /// The owner's public key (`sealcam owner init`).
    #[arg(long)]
    pub owner_pub: PathBuf,
    /// The recipient set signed with the owner's key (`sealcam recipients sign`).
    #[arg(long)]
    pub recipients: PathBuf,
    /// The ingest's enrollment URL, https://host:port.
    #[arg(long)]
    pub enroll_url: String,
    /// The one-time enrollment token (`sealcam-ca device add`).
    #[arg(long)]
    pub token: Option<String>,
    /// A file holding the token (keeps it out of the shell's history).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The card's boot partition, mounted.
    #[arg(long)]
    pub boot: Option<PathBuf>,
    /// An uncompressed disk image (written in place, no root needed).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// The camera's config directory, for the check of the config's paths.
    #[arg(long, default_value = "/etc/sealcam")]
    pub config_dir: PathBuf,
}

fn token(args: &WriteArgs) -> anyhow::Result<String> {
    match (&args.token, &args.token_file) {
        (Some(t), _) => Ok(t.clone()),
        (None, Some(path)) => {
            let bytes = bundle::read_capped(path)?;
            String::from_utf8(bytes).with_context(|| format!("{} is not text", path.display()))
        }
        (None, None) => anyhow::bail!("give the token with --token or --token-file"),
    }
}

pub fn write(args: WriteArgs) -> anyhow::Result<()> {
    let sources = Sources {
        config: args.config.clone(),
        ca: args.ca.clone(),
        owner: args.owner_pub.clone(),
        recipients: args.recipients.clone(),
    };
    let read = Bundle::read(&sources, &args.enroll_url, &token(&args)?)?;
    let checked = bundle::check(read, &args.config_dir, Board::Generic)
        .context("the bundle is refused, nothing was written")?;
    let files = checked.bundle.files();
    let device = &checked.device;
    let where_ = match (&args.boot, &args.image) {
        (Some(boot), _) => {
            let dir = crate::card::write_dir(boot, &files)
                .with_context(|| format!("writing the bundle into {}", boot.display()))?;
            dir.display().to_string()
        }
        (None, Some(image)) => {
            let part = crate::card::write_image_file(image, &files)
                .with_context(|| format!("writing the bundle into image {}", image.display()))?;
            format!(
                "{}: partition {} ({:?}, offset {} bytes), {}/",
                image.display(),
                part.number,
                part.table,
                part.start,
                bundle::DIR_NAME
            )
        }
        (None, None) => anyhow::bail!("give --boot DIR or --image FILE"),
    };
    println!(
        "bundle for camera {device} written to {where_}; on first boot the camera enrolls at {} and deletes the token",
        checked.bundle.enroll_url
    );
    Ok(())
}
