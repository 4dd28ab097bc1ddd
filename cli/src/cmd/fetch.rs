//! `sealcam fetch`: download a stream's fragments for a time range.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use sealcam_transport::{pem, tls};
use serde::Deserialize;

use crate::fragdir::DEVICE_CERT;

#[derive(clap::Args)]
pub struct Args {
    /// Ingest base URL, https://host:port
    #[arg(long)]
    pub server: String,
    /// Fleet CA certificate (verifies the ingest).
    #[arg(long)]
    pub ca: PathBuf,
    /// Consumer TLS certificate (from `sealcam-ingest consumer issue`).
    #[arg(long)]
    pub cert: PathBuf,
    /// Consumer TLS key.
    #[arg(long)]
    pub tls_key: PathBuf,
    /// The stream, as DEVICE/STREAM.
    pub stream: String,
    /// Start of the range: RFC 3339 time, or a duration ago such as 10m, 2h, 1d.
    #[arg(long)]
    pub from: Option<String>,
    /// End of the range: RFC 3339 time, or a duration ago.
    #[arg(long)]
    pub to: Option<String>,
    /// Directory to write fragments and the device certificate into.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Deserialize)]
struct Entry {
    sequence: u64,
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
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("{s:?}: durations end in s, m, h or d"),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let at = now.saturating_sub(Duration::from_secs(secs));
    Ok(u64::try_from(at.as_nanos()).unwrap_or(u64::MAX))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let (device, stream) = args
        .stream
        .split_once('/')
        .context("the stream is given as DEVICE/STREAM, e.g. cam1/front")?;
    let device = sealcam_format::Name::new(device)?;
    let stream = sealcam_format::Name::new(stream)?;
    let roots = pem::load_roots(&args.ca)?;
    let chain = pem::load_certs(&args.cert)?;
    let key = pem::load_private_key(&args.tls_key)?;
    let config = tls::consumer_client_config(roots, chain, key)?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let base = args.server.trim_end_matches('/');
    let mut query = Vec::new();
    if let Some(f) = &args.from {
        query.push(("from_ns", parse_time(f)?.to_string()));
    }
    if let Some(t) = &args.to {
        query.push(("to_ns", parse_time(t)?.to_string()));
    }
    let list_url = format!("{base}/v1/streams/{device}/{stream}/fragments");
    let resp = client
        .get(&list_url)
        .query(&query)
        .send()
        .await
        .with_context(|| format!("cannot reach the ingest at {base}"))?;
    let entries: Vec<Entry> = checked(resp).await?.json().await?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let cert_resp = client
        .get(format!("{base}/v1/devices/{device}/certificate"))
        .send()
        .await?;
    let cert = checked(cert_resp).await?.text().await?;
    std::fs::write(args.out.join(DEVICE_CERT), cert)?;

    let total = entries.len();
    let mut bytes = 0usize;
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    for (i, e) in entries.iter().enumerate() {
        let resp = client
            .get(format!(
                "{base}/v1/streams/{device}/{stream}/fragments/{}",
                e.sequence
            ))
            .send()
            .await?;
        let body = checked(resp).await?.bytes().await?;
        bytes += body.len();
        let path = args.out.join(format!("{:020}.scf", e.sequence));
        let tmp = path.with_extension("scf.partial");
        std::fs::write(&tmp, &body).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)?;
        if progress {
            eprint!(
                "\rfetched {}/{} fragments, {} KiB",
                i + 1,
                total,
                bytes / 1024
            );
        }
    }
    if progress && total > 0 {
        eprintln!();
    }
    println!(
        "fetched {total} fragments of {device}/{stream} into {}",
        args.out.display()
    );
    Ok(())
}

async fn checked(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let url = resp.url().clone();
    let body = resp.text().await.unwrap_or_default();
    bail!("{url}: ingest answered {status}: {body}")
}
