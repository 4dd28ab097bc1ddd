//! `sealcam fetch`: download a stream's fragments for a time range, with
//! what verifies them later, offline, and verify them.
//!
//! Beside the fragments it saves the owner's roster (`roster.sdr`, from
//! `--roster` or the ingest, checked against `--owner` and the pinned
//! version first), every certificate the device has used
//! (`certs/<serial>.crt`, hints) and the newest one (`device.crt`, a hint
//! that only `--trust-server` trusts).

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use sealcam_api::FragmentQuery;
use sealcam_base::durable;

use crate::anchor::{Anchor, AnchorArgs, ROSTER_FILE};
use crate::api::{parse_stream, Api, StreamArgs};
use crate::fragdir::{FragmentDir, CERTS_DIR, DEVICE_CERT};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: StreamArgs,
    /// Start of the range: RFC 3339 time, or a duration ago such as 10m, 2h, 1d.
    #[arg(long)]
    pub from: Option<String>,
    /// End of the range: RFC 3339 time, or a duration ago.
    #[arg(long)]
    pub to: Option<String>,
    /// First sequence number to fetch.
    #[arg(long)]
    pub from_seq: Option<u64>,
    /// Last sequence number to fetch.
    #[arg(long)]
    pub to_seq: Option<u64>,
    /// Directory to write fragments, the roster and the device's
    /// certificates into.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub anchor: AnchorArgs,
    /// Accept declared gaps of this reason that the server could have
    /// caused (as `sealcam verify --accept-gap`).
    #[arg(long = "accept-gap", value_name = "REASON", value_parser = super::verify::gap_reason)]
    pub accept_gaps: Vec<sealcam_format::GapReason>,
}

/// Fetches, then verifies what it fetched; returns whether it verified.
pub async fn run(args: Args) -> anyhow::Result<bool> {
    let anchor = args.anchor.resolve()?;
    let (device, stream) = parse_stream(&args.target.stream)?;
    let api = Api::connect(&args.target.server)?;
    // The roster first: a roster that fails its checks stops the fetch
    // before anything is written.
    let roster_bytes = match &anchor {
        Anchor::Owner(owner) => Some(match &owner.roster_file {
            Some(path) => owner.accept_file(path)?.1,
            None => {
                let bytes = api.roster(&owner.fingerprint).await.context(
                    "fetching the owner's roster from the ingest (the owner publishes it with `sealcam roster publish`, or pass --roster)",
                )?;
                owner.accept(
                    &bytes,
                    &format!("the ingest at {}", args.target.server.server),
                )?;
                bytes.to_vec()
            }
        }),
        Anchor::TrustServer => None,
    };
    let query = FragmentQuery {
        from_ns: args.from.as_deref().map(super::parse_time).transpose()?,
        to_ns: args.to.as_deref().map(super::parse_time).transpose()?,
        from_seq: args.from_seq,
        to_seq: args.to_seq,
        ..FragmentQuery::default()
    };
    let entries = api.list(&device, &stream, &query).await?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    if let Some(bytes) = &roster_bytes {
        durable::replace(&args.out.join(ROSTER_FILE), bytes)?;
    }
    let history = api.device_certs(&device).await?;
    let certs = args.out.join(CERTS_DIR);
    std::fs::create_dir_all(&certs).with_context(|| format!("creating {}", certs.display()))?;
    for c in &history {
        if c.serial.is_empty() || !c.serial.bytes().all(|b| b.is_ascii_hexdigit()) {
            anyhow::bail!(
                "the ingest named a certificate of {device} {:?}, not a hex serial number",
                c.serial
            );
        }
        durable::replace(
            &certs.join(format!("{}.crt", c.serial)),
            c.certificate.as_bytes(),
        )?;
    }
    let cert = api.device_cert(&device).await?;
    durable::replace(&args.out.join(DEVICE_CERT), cert.as_bytes())?;

    let total: u64 = entries.iter().map(|e| e.bytes).sum();
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for (i, e) in entries.iter().enumerate() {
        let body = api.fragment(&device, &stream, e.sequence).await?;
        let path = args.out.join(format!("{:020}.scf", e.sequence));
        durable::replace(&path, &body)?;
        bar.set_message(format!("{}/{} fragments", i + 1, entries.len()));
        bar.inc(e.bytes);
    }
    bar.finish_and_clear();
    let restarts = crate::restarts::fetch(&api, &device, &stream, &args.out).await?;
    if restarts > 0 {
        println!("fetched {restarts} chain restart records of {device}/{stream}");
    }
    println!(
        "fetched {} fragments of {device}/{stream} and {} certificates into {}",
        entries.len(),
        history.len(),
        args.out.display()
    );
    if entries.is_empty() {
        return Ok(true);
    }
    let dir = FragmentDir::read(&args.out)?;
    let report = super::verify::verify_dir(&anchor, &dir)?;
    Ok(super::verify::print_report(&report, &args.accept_gaps))
}
