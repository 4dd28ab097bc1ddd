//! `sealcam fetch`: download a stream's fragments for a time range.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
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

/// Parses RFC 3339 or "<n>s|m|h|d" (that long before now) to Unix ns.
fn parse_time(s: &str) -> anyhow::Result<u64> {
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return u64::try_from(t.unix_timestamp_nanos()).context("time before 1970");
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = num.parse().with_context(|| {
        format!(
            "{s:?} is neither an RFC 3339 time (2026-01-31T12:00:00Z) nor a duration (10m, 2h, 1d)"
        )
    })?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("{s:?}: durations end in s, m, h or d"),
    };
    let secs = n
        .checked_mul(unit)
        .with_context(|| format!("{s:?} is too long ago"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let at = now.saturating_sub(Duration::from_secs(secs));
    Ok(u64::try_from(at.as_nanos()).unwrap_or(u64::MAX))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let (device, stream) = parse_stream(&args.target.stream)?;
    let api = Api::connect(&args.target.server)?;
    let query = FragmentQuery {
        from_ns: args.from.as_deref().map(parse_time).transpose()?,
        to_ns: args.to.as_deref().map(parse_time).transpose()?,
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
