//! `sealcam follow`: a stream live, verified and decrypted, as a growing
//! MKV (a file, or stdout for `ffplay -`) or in a window.
//!
//! It long-polls the ingest for fragments after the last one it has, checks
//! each one's signature under the key the owner's roster lists for its
//! device at its time (with `--trust-server` only, under the device
//! certificate the ingest serves) and its place in the hash chain, reports gaps
//! (declared by the camera or not), and decrypts with the consumer key.
//! It watches the camera's signed heads too ([`crate::head_watch`]): a
//! head naming a fragment the server does not list shows fragments
//! withheld, and a head that stops advancing a camera offline or heads
//! held back. A fragment that does not follow the last one shown is
//! accepted as a new epoch only under the camera's signed restart record
//! ([`crate::restarts::beginning`]).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use sealcam_format::mkv::MkvWriter;
use sealcam_format::{ManifestHash, SealedFragment, TrackConfig};
use sealcam_transport::{identity, pem, Role};

use sealcam_api::FragmentQuery;

use sealcam_format::verify::{DeviceKeys, KeyChecker};

use crate::anchor::{Anchor, AnchorArgs, TRUST_SERVER_REPORT};
use crate::api::{parse_stream, Api, StreamArgs};
use crate::head_watch::{HeadWatch, Viewed};

/// Longest wait of one long poll, in seconds (the ingest caps it too).
const POLL_S: u64 = 25;
/// A feed with no new fragment for this many fragment durations is
/// reported as frozen, and a fragment recorded this many durations ago as
/// not live.
const FROZEN_AFTER: u64 = 3;
/// The fragment duration assumed until the first fragment shows it.
const DEFAULT_FRAGMENT_NS: u64 = 2_000_000_000;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: StreamArgs,
    /// Consumer private key (from `sealcam keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// Write the growing MKV here; `-` is stdout (`sealcam follow ... --out - | ffplay -`).
    #[arg(long, required_unless_present = "play")]
    pub out: Option<PathBuf>,
    /// Show the video in a window (GStreamer).
    #[arg(long, conflicts_with = "out")]
    pub play: bool,
    /// The GStreamer video sink of --play.
    #[arg(long, default_value = "autovideosink")]
    pub sink: String,
    /// Start after this sequence number instead of at the newest fragment.
    #[arg(long)]
    pub after: Option<u64>,
    /// Stop after this many fragments (default: until interrupted).
    #[arg(long)]
    pub fragments: Option<u64>,
    #[command(flatten)]
    pub anchor: AnchorArgs,
}

type Output = Box<dyn Write + Send>;

pub async fn run(args: Args) -> anyhow::Result<()> {
    let (device, stream) = parse_stream(&args.target.stream)?;
    let api = Api::connect(&args.target.server)?;
    let consumer = super::consumer_key(&args.key)?;

    // Each fragment under the key the owner's roster lists for it (the
    // roster from --roster or the ingest, checked against the owner key);
    // only with --trust-server under the device certificate the ingest
    // serves (issued by the fleet CA, naming this device).
    let anchor = args.anchor.resolve()?;
    let (roster, device_key) = match &anchor {
        Anchor::Owner(owner) => {
            let roster = match &owner.roster_file {
                Some(path) => owner.accept_file(path)?.0,
                None => {
                    let bytes = api.roster(&owner.fingerprint).await?;
                    owner.accept(
                        &bytes,
                        &format!("the ingest at {}", args.target.server.server),
                    )?
                }
            };
            eprintln!("{}", owner.describe(&roster));
            (Some(roster), None)
        }
        Anchor::TrustServer => {
            eprintln!("{TRUST_SERVER_REPORT}");
            (
                None,
                Some(served_device_key(&api, &device, &args.target.server.ca).await?),
            )
        }
    };
    let keys = match (&roster, &device_key) {
        (Some(r), _) => DeviceKeys::Roster(r),
        (None, Some(k)) => DeviceKeys::Single(k),
        (None, None) => bail!("no device key to verify with"),
    };
    let mut checker = KeyChecker::new(keys);
    let mut heads = HeadWatch::new();
    let mut last_end: Option<u64> = None;

    let mut after = match args.after {
        Some(a) => Some(a),
        // Live: start with the newest fragment, or at the beginning.
        None => api
            .list(&device, &stream, &FragmentQuery::default())
            .await?
            .last()
            .and_then(|e| e.sequence.checked_sub(1)),
    };
    let mut out = Sink::new(&args)?;
    let mut prev: Option<(u64, ManifestHash)> = None;
    let mut shown = 0u64;
    let stop = sealcam_base::stop_signal();
    tokio::pin!(stop);
    let mut failures = 0u32;
    let mut fresh = Freshness::new();
    'follow: loop {
        fresh.check();
        let query = FragmentQuery {
            wait_s: Some(fresh.poll_s()),
            after,
            ..FragmentQuery::default()
        };
        let listed = tokio::select! {
            _ = &mut stop => break,
            r = api.list(&device, &stream, &query) => r,
        };
        let entries = match listed {
            Ok(e) => {
                failures = 0;
                e
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    eprintln!("warning: {e:#}; retrying");
                }
                let wait = Duration::from_secs(u64::from(failures.min(5)));
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        if heads.due(fresh.fragment_ns) {
            let viewed = Viewed {
                after,
                last_end,
                fragment_ns: fresh.fragment_ns,
            };
            heads.check(&api, &device, &stream, keys, viewed).await;
        }
        for e in entries {
            // Only what comes after the last fragment shown: a server that
            // offers an older one again is passing old footage off as live.
            if let Some((ps, _)) = prev {
                if e.sequence <= ps {
                    eprintln!(
                        "refused: the ingest offered fragment {} again after {ps} was shown (old footage replayed as live); not shown",
                        e.sequence
                    );
                    continue;
                }
            }
            let bytes = api.fragment(&device, &stream, e.sequence).await?;
            let frag = SealedFragment::parse(&bytes)
                .with_context(|| format!("fragment {} is malformed", e.sequence))?;
            let m = &frag.manifest;
            if m.device != device || m.stream != stream || m.sequence != e.sequence {
                bail!(
                    "the ingest answered for fragment {} with another fragment",
                    e.sequence
                );
            }
            if let Err(reason) = checker.check(&frag) {
                bail!("fragment {} fails verification: {reason}", e.sequence);
            }
            if let Some((ps, ph)) = prev {
                let follows = e.sequence == ps + 1 && m.prev == ph;
                // A fragment that does not follow the last one shown may
                // begin a new epoch (the camera lost its state); only the
                // camera's signed restart record says so.
                let restart = match follows {
                    true => None,
                    false => crate::restarts::beginning(&api, keys, m).await?,
                };
                match restart {
                    Some(r) => report_restart(ps, ph, &r),
                    None if e.sequence == ps + 1 && !follows => bail!(
                        "the chain is broken at fragment {}: it does not follow {ps}, and no restart record of the camera's begins it",
                        e.sequence
                    ),
                    None if e.sequence > ps + 1 => report_gap(ps + 1, e.sequence - 1, &frag),
                    None => {}
                }
            }
            let opened = frag
                .open(&consumer)
                .with_context(|| format!("fragment {}", e.sequence))?;
            out.write(&opened.track, &opened.frames, e.sequence)?;
            let behind_ns = now_unix_ns().saturating_sub(m.end_unix_ns);
            eprintln!(
                "fragment {}: {} frames, {} ms behind the camera",
                e.sequence,
                m.frame_count,
                behind_ns / 1_000_000
            );
            fresh.shown(m.end_unix_ns.saturating_sub(m.start_unix_ns));
            if behind_ns > FROZEN_AFTER * fresh.fragment_ns {
                eprintln!(
                    "warning: fragment {} was recorded {} s ago: this is not live (the server held it back, or the camera uploaded it late from its spool)",
                    e.sequence,
                    behind_ns / 1_000_000_000
                );
            }
            prev = Some((e.sequence, frag.manifest_hash()));
            last_end = Some(m.end_unix_ns);
            after = Some(e.sequence);
            shown += 1;
            if args.fragments.is_some_and(|n| shown >= n) {
                break 'follow;
            }
        }
    }
    out.finish()?;
    eprintln!("followed {shown} fragments of {device}/{stream}");
    Ok(())
}

fn now_unix_ns() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0)
}

/// Whether the feed keeps up: when the last new fragment came, and how
/// long fragments last.
struct Freshness {
    last_new: std::time::Instant,
    fragment_ns: u64,
    /// The freeze in progress has been reported.
    frozen: bool,
}

impl Freshness {
    fn new() -> Self {
        Self {
            last_new: std::time::Instant::now(),
            fragment_ns: DEFAULT_FRAGMENT_NS,
            frozen: false,
        }
    }

    /// How long one long poll may wait: short enough to notice a freeze.
    fn poll_s(&self) -> u64 {
        (FROZEN_AFTER * self.fragment_ns)
            .div_ceil(1_000_000_000)
            .clamp(1, POLL_S)
    }

    /// A new fragment lasting `duration_ns` was shown.
    fn shown(&mut self, duration_ns: u64) {
        if self.frozen {
            eprintln!(
                "feed resumed after {} s without a new fragment",
                self.last_new.elapsed().as_secs()
            );
        }
        self.frozen = false;
        self.last_new = std::time::Instant::now();
        if duration_ns > 0 {
            self.fragment_ns = duration_ns;
        }
    }

    /// Reports, once per freeze, a feed with no new fragment for
    /// [`FROZEN_AFTER`] fragment durations.
    fn check(&mut self) {
        let quiet = self.last_new.elapsed();
        if !self.frozen && quiet.as_nanos() > u128::from(FROZEN_AFTER * self.fragment_ns) {
            self.frozen = true;
            eprintln!(
                "warning: the feed is frozen: no new fragment for {} s ({FROZEN_AFTER} fragment durations); the camera is offline, or the server is holding fragments back",
                quiet.as_secs()
            );
        }
    }
}

/// A new epoch begins after fragment `ps` (hash `ph`), the last shown:
/// what the camera's record says about the end of the previous one.
fn report_restart(ps: u64, ph: ManifestHash, r: &sealcam_format::restart::Restart) {
    eprintln!(
        "chain restart at fragment {}: {} (signed by the camera)",
        r.first_sequence,
        r.reason.describe()
    );
    match r.previous {
        None => eprintln!(
            "warning: the camera does not know where its previous epoch ended: fragments it recorded after {ps} may have existed and cannot be accounted for"
        ),
        Some(p) if p.sequence > ps => eprintln!(
            "warning: sequences {}..={} of the previous epoch missing (the camera's record says it ended at {}): not shown",
            ps + 1,
            p.sequence,
            p.sequence
        ),
        Some(p) if p.sequence == ps && p.hash != ph => eprintln!(
            "warning: the camera's record names another fragment {ps} ({}) than the one shown ({ph}) as the end of its previous epoch",
            p.hash
        ),
        Some(p) if p.sequence < ps => eprintln!(
            "warning: fragments {}..={ps} were shown after the end of their epoch that the camera's record names ({})",
            p.sequence + 1,
            p.sequence
        ),
        Some(_) => {}
    }
}

fn report_gap(first: u64, last: u64, next: &SealedFragment<'_>) {
    let declared = next.manifest.gaps.iter().find(|g| {
        g.first_sequence <= first && g.first_sequence.saturating_add(g.sequence_count) > last
    });
    match declared {
        Some(g) if g.reason.server_can_cause() => eprintln!(
            "warning: sequences {first}..={last} missing, declared by the camera ({}), a gap the server could have caused: {}",
            g.reason.describe(),
            g.reason.who_could_cause()
        ),
        Some(g) => eprintln!(
            "gap: sequences {first}..={last} missing, declared by the camera ({})",
            g.reason.describe()
        ),
        None => eprintln!(
            "warning: sequences {first}..={last} missing and NOT declared by the camera (withheld or deleted in between)"
        ),
    }
}

/// Where decrypted video goes.
struct Sink {
    /// The output, until the first fragment's track lets the MKV header
    /// be written.
    pending: Option<Output>,
    writer: Option<(MkvWriter<Output>, TrackConfig)>,
    player: Option<play::Player>,
}

impl Sink {
    fn new(args: &Args) -> anyhow::Result<Self> {
        let mut player = None;
        let out: Output = if args.play {
            let p = play::Player::start(&args.sink)?;
            let feed = Box::new(p.writer());
            player = Some(p);
            feed
        } else {
            match args.out.as_deref() {
                Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdout()),
                Some(p) => Box::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                ),
                None => bail!("give --out FILE, --out - (stdout) or --play"),
            }
        };
        Ok(Self {
            pending: Some(out),
            writer: None,
            player,
        })
    }

    fn write(
        &mut self,
        track: &TrackConfig,
        frames: &[sealcam_format::Frame],
        sequence: u64,
    ) -> anyhow::Result<()> {
        let (w, first) = match &mut self.writer {
            Some(w) => w,
            None => {
                let out = self.pending.take().context("the output is gone")?;
                self.writer
                    .insert((MkvWriter::new(out, track)?, track.clone()))
            }
        };
        if first != track {
            bail!(
                "the camera's video changes at fragment {sequence} ({}x{} to {}x{}); follow again from there",
                first.width,
                first.height,
                track.width,
                track.height
            );
        }
        w.write_fragment(frames)?;
        w.flush().context("writing the output")?;
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        if let Some((w, _)) = self.writer {
            w.finish()?;
        }
        if let Some(p) = self.player {
            p.finish()?;
        }
        Ok(())
    }
}

mod play {
    //! Shows a growing MKV byte stream with GStreamer:
    //! `appsrc ! matroskademux ! h264parse ! avdec_h264 ! videoconvert ! SINK`.

    use anyhow::Context;
    use gstreamer as gst;
    use gstreamer::prelude::*;
    use gstreamer_app as gst_app;

    pub struct Player {
        pipeline: gst::Pipeline,
        src: gst_app::AppSrc,
    }

    /// Feeds bytes to the player's appsrc.
    pub struct Feed(gst_app::AppSrc);

    impl std::io::Write for Feed {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .push_buffer(gst::Buffer::from_slice(buf.to_vec()))
                .map_err(|e| std::io::Error::other(format!("the player stopped: {e:?}")))?;
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Player {
        pub fn start(sink: &str) -> anyhow::Result<Self> {
            gst::init().context("starting GStreamer")?;
            let desc = format!(
                "appsrc name=src is-live=true block=true max-bytes=67108864 caps=video/x-matroska \
                 ! matroskademux ! h264parse ! avdec_h264 ! videoconvert ! {sink}"
            );
            let pipeline = gst::parse::launch(&desc)
                .with_context(|| format!("building the player ({desc}); needs gstreamer1.0-libav and the sink's plugin"))?
                .downcast::<gst::Pipeline>()
                .map_err(|_| anyhow::anyhow!("the player is not a pipeline"))?;
            let src = pipeline
                .by_name("src")
                .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
                .context("the player has no appsrc")?;
            pipeline
                .set_state(gst::State::Playing)
                .context("starting the player")?;
            Ok(Self { pipeline, src })
        }

        pub fn writer(&self) -> Feed {
            Feed(self.src.clone())
        }

        /// Ends the stream and waits (up to 10 s) for the sink to show it all.
        pub fn finish(self) -> anyhow::Result<()> {
            let _ = self.src.end_of_stream();
            let bus = self.pipeline.bus().context("the player has no bus")?;
            let result = match bus.timed_pop_filtered(
                gst::ClockTime::from_seconds(10),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            ) {
                Some(msg) => match msg.view() {
                    gst::MessageView::Error(e) => {
                        Err(anyhow::anyhow!("the player failed: {}", e.error()))
                    }
                    _ => Ok(()),
                },
                None => Ok(()),
            };
            let _ = self.pipeline.set_state(gst::State::Null);
            result
        }
    }
}

/// The device key from the certificate the ingest serves, checked to be
/// issued by the fleet CA and to name `device` (a hint, not an anchor).
async fn served_device_key(
    api: &Api,
    device: &sealcam_format::Name,
    ca: &std::path::Path,
) -> anyhow::Result<sealcam_format::DeviceVerifyingKey> {
    let cert_der = pem::parse_first_cert(&api.device_cert(device).await?)?;
    let ca = pem::load_certs(ca)?;
    let ca_der = ca.first().context("the CA file holds no certificate")?;
    identity::verify_issued_by(&cert_der, ca_der.as_ref())
        .context("the device certificate the ingest gave is not issued by the fleet CA")?;
    match identity::summarize(&cert_der)?.identity {
        Some(i) if i.role == Role::Device && i.name == *device => {}
        _ => bail!("the certificate the ingest gave for {device} does not name that device"),
    }
    Ok(identity::device_key_from_cert_der(&cert_der)?)
}
