//! `sealcam events`: the event marks (motion, triggers) sealed in fetched
//! fragments, numbered for `sealcam decrypt --from-event`.
//!
//! The marks are inside the sealed payload, so only a recipient sees them:
//! the fragments are verified first (as `decrypt` does), then each one's
//! events record is opened with the consumer key.

use std::path::PathBuf;

use crate::anchor::AnchorArgs;
use crate::fragdir::FragmentDir;

#[derive(clap::Args)]
pub struct Args {
    /// Directory written by `sealcam fetch`.
    pub dir: PathBuf,
    /// Consumer private key (from `sealcam keygen`).
    #[arg(long)]
    pub key: PathBuf,
    #[command(flatten)]
    pub anchor: AnchorArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let key = super::consumer_key(&args.key)?;
    let anchor = args.anchor.resolve()?;
    let dir = FragmentDir::read(&args.dir)?;
    let report = super::verify::verify_dir(&anchor, &dir)?;
    super::decrypt::refuse_failures(&report, "read events")?;
    let found = crate::events::find(&report, &dir, &key)?;
    if found.with_record == 0 {
        println!(
            "no event marks: none of the {} fragments carries an events record (the camera's [events] enabled is off)",
            report.verified.len()
        );
        return Ok(());
    }
    for m in &found.marks {
        println!(
            "event {}: {} {:?} at {}, fragment {} ({}.{:03} s in)",
            m.number,
            m.mark.kind.as_str(),
            m.mark.label,
            super::rfc3339(m.unix_ns),
            m.sequence,
            m.offset_ns / 1_000_000_000,
            m.offset_ns / 1_000_000 % 1000
        );
    }
    if found.dropped > 0 {
        eprintln!(
            "warning: the camera could not fit {} more marks into their fragments (16 per fragment)",
            found.dropped
        );
    }
    println!(
        "{} event marks in {} fragments ({} of them carry an events record)",
        found.marks.len(),
        report.verified.len(),
        found.with_record
    );
    Ok(())
}
