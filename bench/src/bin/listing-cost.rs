//! listing-cost: what a consumer's listings cost the ingest's storage on a
//! stream of many fragments (issue 25), beside the previous listing as
//! reference. Used by `scripts/bench-listing`.
//!
//! It uploads `--fragments` fragments to one stream of a running ingest,
//! then, as a consumer, long-polls for a fragment that does not come and
//! asks for the last ten seconds by time, and reads the storage requests
//! each cost from the ingest's `listing_storage_reads` metric. The
//! reference is what the previous listing made, computed from the same
//! stream: every key object listed (one request per thousand) at every
//! look of a long poll (two a second), plus every manifest read for a time
//! filter.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use p256::pkcs8::DecodePrivateKey;
use sealcam_api::Route;
use sealcam_bench::Camera;
use sealcam_format::{ConsumerPublicKey, Name};
use sealcam_transport::{pem, tls};

#[derive(Parser)]
struct Args {
    /// The ingest (`https://host:port`).
    #[arg(long)]
    ingest: String,
    /// Its metrics (`http://host:port/metrics`).
    #[arg(long)]
    metrics: String,
    #[arg(long)]
    ca: PathBuf,
    /// The device certificate and its (software) key.
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    #[arg(long)]
    device: String,
    /// The consumer certificate and key that lists.
    #[arg(long)]
    consumer_cert: PathBuf,
    #[arg(long)]
    consumer_key: PathBuf,
    /// A consumer public key to seal to.
    #[arg(long)]
    recipient: PathBuf,
    /// Fragments in the stream.
    #[arg(long, default_value_t = 100_000)]
    fragments: u64,
    /// Uploads in flight while filling the stream.
    #[arg(long, default_value_t = 16)]
    parallel: usize,
    /// How long the long poll waits.
    #[arg(long, default_value_t = 10)]
    wait_s: u64,
    /// The table file rows are appended to (scripts/lib/bench.sh).
    #[arg(long, env = "SEALCAM_BENCH_TABLE")]
    table: Option<PathBuf>,
}

/// (sum, count) of the ingest's listing_storage_reads histogram.
async fn listing_reads(client: &reqwest::Client, url: &str) -> anyhow::Result<(f64, f64)> {
    let text = client.get(url).send().await?.text().await?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((
        value("sealcam_ingest_listing_storage_reads_sum "),
        value("sealcam_ingest_listing_storage_reads_count "),
    ))
}

fn client(ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<reqwest::Client> {
    let config = tls::consumer_client_config(
        pem::load_roots(ca)?,
        pem::load_certs(cert)?,
        pem::load_private_key(key)?,
    )?;
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .build()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let signing = p256::ecdsa::SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(&args.key).context("reading the device key")?,
    )
    .context("the device key is not a PKCS#8 P-256 key")?;
    let recipient = ConsumerPublicKey::from_pem(&std::fs::read_to_string(&args.recipient)?)?;
    let device = Name::new(&args.device)?;
    let stream = Name::new("many")?;
    let uploader = client(&args.ca, &args.cert, &args.key)?;
    let consumer = client(&args.ca, &args.consumer_cert, &args.consumer_key)?;
    // Plain HTTP, through a client that has a TLS provider set.
    let metrics = consumer.clone();
    let base = args.ingest.trim_end_matches('/').to_owned();

    // Fill the stream: small fragments, several uploads in flight (the
    // chain is checked against neighbours already stored, in any order).
    let mut cam = Camera::new(device.clone(), stream.clone(), signing, recipient, 256);
    let started = Instant::now();
    let mut pending = futures_util::stream::FuturesUnordered::new();
    use futures_util::StreamExt;
    for _ in 0..args.fragments {
        let (seq, bytes) = cam.next_fragment()?;
        let route = Route::Upload {
            device: device.clone(),
            stream: stream.clone(),
            sequence: seq,
        };
        let req = uploader
            .put(format!("{base}{}", route.path()))
            .header("content-type", sealcam_api::media::FRAGMENT)
            .body(bytes);
        pending.push(async move {
            let r = req.send().await?;
            anyhow::ensure!(r.status().is_success(), "upload {seq}: {}", r.status());
            anyhow::Ok(())
        });
        if pending.len() >= args.parallel {
            if let Some(done) = pending.next().await {
                done?;
            }
        }
    }
    while let Some(done) = pending.next().await {
        done?;
    }
    eprintln!(
        "{} fragments stored in {:.0} s",
        args.fragments,
        started.elapsed().as_secs_f64()
    );
    let n = args.fragments;
    let listing = format!("{base}/v1/streams/{device}/{stream}/fragments");

    // A long poll for a fragment that does not come.
    let (s0, c0) = listing_reads(&metrics, &args.metrics).await?;
    let polled = consumer
        .get(format!("{listing}?after={}&wait_s={}", n - 1, args.wait_s))
        .timeout(Duration::from_secs(args.wait_s + 30))
        .send()
        .await?;
    anyhow::ensure!(
        polled.status().is_success(),
        "long poll: {}",
        polled.status()
    );
    let (s1, c1) = listing_reads(&metrics, &args.metrics).await?;
    let poll_reads = s1 - s0;
    let looks = c1 - c0;

    // The last ten seconds, by time.
    let now = sealcam_bench::now_unix_ns();
    let recent = consumer
        .get(format!(
            "{listing}?from_ns={}&to_ns={}",
            now - 10_000_000_000,
            now
        ))
        .send()
        .await?;
    anyhow::ensure!(
        recent.status().is_success(),
        "time query: {}",
        recent.status()
    );
    let returned =
        serde_json::from_slice::<Vec<serde_json::Value>>(&recent.bytes().await?)?.len() as f64;
    let (s2, _) = listing_reads(&metrics, &args.metrics).await?;
    let time_reads = s2 - s1;

    // The previous listing: every key object listed (a page per thousand)
    // at each look, two looks a second and one at the start; a time filter
    // read every manifest too.
    let pages = n.div_ceil(1000).max(1) as f64;
    let ref_poll = (2 * args.wait_s + 1) as f64 * pages;
    let ref_time = pages + n as f64;

    let poll_row = format!("{poll_reads:.0} in {looks:.0} looks (previous listing: {ref_poll:.0})");
    let time_row =
        format!("{time_reads:.0} for {returned:.0} returned (previous listing: {ref_time:.0})");
    println!("long poll of {}s on {n} fragments: {poll_row}", args.wait_s);
    println!("time query of the last 10 s on {n} fragments: {time_row}");
    if let Some(table) = &args.table {
        use sealcam_bench::report::table::{append, Row};
        append(
            table,
            &[
                Row::note(
                    format!(
                        "storage requests per {} s long poll, stream of {n} fragments",
                        args.wait_s
                    ),
                    poll_row,
                ),
                Row::note(
                    format!("storage requests per time query (last 10 s), stream of {n} fragments"),
                    time_row,
                ),
            ],
        )?;
    }
    Ok(())
}
