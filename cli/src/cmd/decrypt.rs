//! `sealcam decrypt`: verified fragments to a standard, playable MKV.

use std::io::BufWriter;
use std::path::PathBuf;

use anyhow::{bail, Context};
use sealcam_format::mkv::MkvWriter;
use sealcam_format::{ConsumerSecretKey, SealedFragment};

use crate::fragdir::FragmentDir;

#[derive(clap::Args)]
pub struct Args {
    /// Directory written by `sealcam fetch`.
    pub dir: PathBuf,
    /// Consumer private key (from `sealcam keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// Output file (Matroska, H.264).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let pem = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading consumer key {}", args.key.display()))?;
    let key = ConsumerSecretKey::from_pem(&pem)
        .with_context(|| format!("consumer key {}", args.key.display()))?;
    let dir = FragmentDir::read(&args.dir)?;
    let report = dir.verify()?;
    if !report.failures.is_empty() {
        let names: Vec<String> = report
            .failures
            .iter()
            .map(|f| format!("{}: {}", f.label, f.reason))
            .collect();
        bail!(
            "refusing to decrypt: verification failed for {}",
            names.join("; ")
        );
    }
    for g in &report.gaps {
        eprintln!(
            "warning: sequences {}..={} are missing; the clip jumps over them",
            g.first_missing, g.last_missing
        );
    }
    let tmp = args.out.with_extension("mkv.partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut writer: Option<MkvWriter<BufWriter<std::fs::File>>> = None;
    let mut file = Some(BufWriter::new(file));
    let mut track0 = None;
    for v in &report.verified {
        let bytes = dir
            .files
            .iter()
            .find(|(n, _)| *n == v.label)
            .map(|(_, b)| b.as_slice())
            .context("fragment vanished between verify and decrypt")?;
        let frag = SealedFragment::parse(bytes)?;
        let opened = frag
            .open(&key)
            .with_context(|| format!("fragment {}", v.label))?;
        match &track0 {
            None => track0 = Some(opened.track.clone()),
            Some(t) if *t != opened.track => bail!(
                "the track configuration changes at {} ({}x{} to {}x{}); decrypt the parts separately",
                v.label,
                t.width,
                t.height,
                opened.track.width,
                opened.track.height
            ),
            Some(_) => {}
        }
        if writer.is_none() {
            if let Some(f) = file.take() {
                writer = Some(MkvWriter::new(f, &opened.track)?);
            }
        }
        if let Some(w) = writer.as_mut() {
            w.write_fragment(&opened.frames)
                .with_context(|| format!("writing {}", tmp.display()))?;
        }
    }
    let Some(w) = writer else {
        bail!("no fragment to decrypt");
    };
    let frames = w.frames_written();
    let out = w.finish()?;
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("renaming to {}", args.out.display()))?;
    println!(
        "decrypted {} fragments, {} frames to {}",
        report.verified.len(),
        frames,
        args.out.display()
    );
    Ok(())
}
