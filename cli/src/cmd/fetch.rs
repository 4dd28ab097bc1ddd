//! `sealcam fetch`: download a stream's fragments for a time range.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use sealcam_api::FragmentQuery;
use sealcam_base::durable;

use crate::api::{parse_stream, Api, StreamArgs};
use crate::fragdir::DEVICE_CERT;

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
    /// Directory to write fragments and the device certificate into.
    #[arg(long)]
    pub out: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let (device, stream) = parse_stream(&args.target.stream)?;
    let api = Api::connect(&args.target.server)?;
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
    println!(
        "fetched {} fragments of {device}/{stream} into {}",
        entries.len(),
        args.out.display()
    );
    Ok(())
}
