//! `sealcam decrypt`: verified fragments to a standard, playable MKV.

use std::io::BufWriter;
use std::path::PathBuf;

use anyhow::{bail, Context};
use sealcam_base::durable::AtomicFile;
use sealcam_format::mkv::MkvWriter;
use sealcam_format::verify::ChainReport;
use sealcam_format::{ConsumerSecretKey, SealedFragment};

use crate::anchor::AnchorArgs;
use crate::fragdir::FragmentDir;

#[derive(clap::Args)]
pub struct Args {
    /// Directory written by `sealcam fetch`.
    pub dir: PathBuf,
    /// Consumer private key (from `sealcam keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// Output file (H.264 in Matroska, or MP4 with --format mp4).
    #[arg(long)]
    pub out: PathBuf,
    /// Container of the output.
    #[arg(long, value_enum, default_value_t = Container::Mkv)]
    pub format: Container,
    #[command(flatten)]
    pub anchor: AnchorArgs,
    /// Write the clip even where it jumps over sequences that are missing
    /// with no signed manifest explaining why (deleted or withheld between
    /// the camera and here); without it such a gap fails, as in `verify`.
    #[arg(long)]
    pub allow_undeclared_gaps: bool,
    /// Accept declared gaps of this reason that the server could have
    /// caused (as `sealcam verify --accept-gap`); without it they fail.
    #[arg(long = "accept-gap", value_name = "REASON", value_parser = super::verify::gap_reason)]
    pub accept_gaps: Vec<sealcam_format::GapReason>,
    /// Start the clip at event mark N (as `sealcam events` numbers them),
    /// from the key frame at or before it.
    #[arg(long, value_name = "N")]
    pub from_event: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Container {
    /// Matroska, written directly, one Cluster per fragment.
    Mkv,
    /// MP4, remuxed from the Matroska output with GStreamer's mp4mux.
    Mp4,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let key = super::consumer_key(&args.key)?;
    let anchor = args.anchor.resolve()?;
    let dir = FragmentDir::read(&args.dir)?;
    let report = super::verify::verify_dir(&anchor, &dir)?;
    refuse_failures(&report, "decrypt")?;
    refuse_gaps(&report, &args)?;
    let start = match args.from_event {
        None => None,
        Some(n) => Some(event_start(&report, &dir, &key, n)?),
    };
    // The MKV is written under a temporary name beside --out and takes its
    // name only when whole (an MP4 is remuxed from it).
    let file = create_output(&args.out)?;
    let tmp = file.temporary_path().to_owned();
    let mut writer: Option<MkvWriter<BufWriter<AtomicFile>>> = None;
    let mut file = Some(BufWriter::new(file));
    let mut track0 = None;
    let mut written = 0usize;
    for v in &report.verified {
        if start.is_some_and(|(sequence, _)| v.sequence < sequence) {
            continue;
        }
        let bytes = dir
            .files
            .iter()
            .find(|(n, _)| *n == v.label)
            .map(|(_, b)| b.as_slice())
            .context("fragment vanished between verify and decrypt")?;
        let frag = SealedFragment::parse(bytes)?;
        let mut opened = frag
            .open(&key)
            .with_context(|| format!("fragment {}", v.label))?;
        if let Some((sequence, at_ns)) = start {
            if v.sequence == sequence {
                from_key_frame_before(&mut opened.frames, at_ns);
            }
        }
        written += 1;
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
    let mut file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", tmp.display()))?;
    match args.format {
        Container::Mkv => file.commit()?,
        // The temporary MKV goes when `file` is dropped.
        Container::Mp4 => {
            file.file()
                .sync_all()
                .with_context(|| format!("writing {}", tmp.display()))?;
            remux_to_mp4(&tmp, &args.out)?;
        }
    }
    println!(
        "decrypted {written} fragments, {frames} frames to {}",
        args.out.display()
    );
    Ok(())
}

/// Refuses, for `what` ("decrypt"), fragments that failed verification. A
/// range not covered, or a head that fails, says something is missing or
/// contested; the fragments that verified are still the camera's, and go
/// on with a warning, like a gap.
pub(crate) fn refuse_failures(report: &ChainReport, what: &str) -> anyhow::Result<()> {
    let (range, fragments): (Vec<_>, Vec<_>) = report
        .failures
        .iter()
        .partition(|f| crate::range::is_range_failure(f));
    for f in &range {
        eprintln!("warning: {}: {}", f.label, f.reason);
    }
    if !fragments.is_empty() {
        let names: Vec<String> = fragments
            .iter()
            .map(|f| format!("{}: {}", f.label, f.reason))
            .collect();
        bail!(
            "refusing to {what}: verification failed for {}",
            names.join("; ")
        );
    }
    Ok(())
}

/// Where the clip of `--from-event n` starts: the mark's fragment and its
/// time on the stream clock.
fn event_start(
    report: &ChainReport,
    dir: &FragmentDir,
    key: &ConsumerSecretKey,
    n: usize,
) -> anyhow::Result<(u64, u64)> {
    let found = crate::events::find(report, dir, key)?;
    if found.with_record == 0 {
        bail!("--from-event: these fragments carry no event marks (the camera's [events] enabled is off)");
    }
    let Some(m) = n.checked_sub(1).and_then(|i| found.marks.get(i)) else {
        bail!(
            "--from-event {n}: the fragments hold {} event marks (`sealcam events` lists them)",
            found.marks.len()
        );
    };
    eprintln!(
        "from event {n}: {} {:?} in fragment {}",
        m.mark.kind.as_str(),
        m.mark.label,
        m.sequence
    );
    Ok((m.sequence, m.mark.at_ns))
}

/// Drops the frames before the last key frame at or before `at_ns` (a
/// fragment begins with a key frame, so one is always there).
fn from_key_frame_before(frames: &mut Vec<sealcam_format::Frame>, at_ns: u64) {
    let start = frames
        .iter()
        .rposition(|f| f.key_frame && f.pts_ns <= at_ns)
        .unwrap_or(0);
    frames.drain(..start);
}

/// Fails on an undeclared gap unless `--allow-undeclared-gaps`, and on a
/// declared gap the server could have caused unless its reason is accepted,
/// so that a script sees the failure `verify` would report; warns about the
/// gaps the user accepted.
fn refuse_gaps(report: &ChainReport, args: &Args) -> anyhow::Result<()> {
    if let Some(d) = report.unaccepted(&args.accept_gaps).next() {
        bail!(
            "refusing to decrypt: the gap declared in fragment {} ({}) is one the server could have caused; accept it with --accept-gap {}",
            d.declared_by,
            d.gap.reason.describe(),
            d.gap.reason.name()
        );
    }
    for g in &report.gaps {
        if !args.allow_undeclared_gaps {
            bail!(
                "refusing to decrypt: sequences {}..={} are missing and no signed manifest explains why (deleted or withheld); write the clip without them with --allow-undeclared-gaps",
                g.first_missing,
                g.last_missing
            );
        }
        eprintln!(
            "warning: sequences {}..={} are missing and no signed manifest explains why; the clip jumps over them (--allow-undeclared-gaps)",
            g.first_missing, g.last_missing
        );
    }
    Ok(())
}

/// Mode of decrypted video: the plaintext the whole system exists to keep
/// from others, so readable by its owner alone whatever the umask (as ssh
/// keeps private keys); the owner can widen it knowingly with `chmod`.
pub(crate) const PLAINTEXT_MODE: u32 = 0o600;

/// A file of decrypted video that will take the name `out` when whole:
/// written under a fresh temporary name beside it (created exclusively,
/// mode [`PLAINTEXT_MODE`]), renamed over `out` on commit, so a symlink at
/// `out` is replaced, never followed, and removed if anything fails first.
pub(crate) fn create_output(out: &std::path::Path) -> anyhow::Result<AtomicFile> {
    Ok(AtomicFile::create_with_mode(out, PLAINTEXT_MODE)?)
}

/// Remuxes a Matroska file to MP4 with GStreamer
/// (`filesrc ! matroskademux ! h264parse ! mp4mux ! filesink`), into a
/// temporary file from [`create_output`] that takes the name `mp4` only
/// when the remux succeeded.
pub(crate) fn remux_to_mp4(mkv: &std::path::Path, mp4: &std::path::Path) -> anyhow::Result<()> {
    let out = create_output(mp4)?;
    remux_into(mkv, out.temporary_path())?;
    out.commit()?;
    Ok(())
}

fn remux_into(mkv: &std::path::Path, mp4: &std::path::Path) -> anyhow::Result<()> {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    gst::init().context("starting GStreamer")?;
    let pipeline = gst::parse::launch(
        "filesrc name=src ! matroskademux ! h264parse ! mp4mux ! filesink name=sink",
    )
    .context("building the MP4 remux pipeline (needs gstreamer1.0-plugins-good and -bad)")?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow::anyhow!("the remux pipeline is not a pipeline"))?;
    let set = |name: &str, path: &std::path::Path| -> anyhow::Result<()> {
        pipeline
            .by_name(name)
            .context("remux pipeline element missing")?
            .set_property("location", path.display().to_string());
        Ok(())
    };
    set("src", mkv)?;
    set("sink", mp4)?;
    let bus = pipeline.bus().context("remux pipeline has no bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .context("starting the MP4 remux")?;
    let outcome = loop {
        let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(300),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) else {
            break Err(anyhow::anyhow!("MP4 remux made no progress for 5 minutes"));
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break Ok(()),
            gst::MessageView::Error(e) => {
                break Err(anyhow::anyhow!("MP4 remux failed: {}", e.error()))
            }
            _ => {}
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    outcome
}
