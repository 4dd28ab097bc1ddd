//! ingest-load: simulated cameras uploading real sealed fragments over
//! mutual TLS, each on its own connection, reporting acknowledgement
//! latency and throughput. Used by `scripts/bench` against sealcam-ingest
//! and, with the same bodies, against nginx.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use p256::pkcs8::DecodePrivateKey;
use sealcam_api::Route;
use sealcam_bench::{summarize, Camera};
use sealcam_format::{ConsumerPublicKey, Name};
use sealcam_transport::{pem, tls};

#[derive(Parser)]
struct Args {
    /// The ingest to upload to (`https://host:port`): each fragment goes to
    /// its upload route.
    #[arg(long, required_unless_present = "url", conflicts_with = "url")]
    ingest: Option<String>,
    /// Another server's upload URL, with {device}, {stream} and {seq}
    /// placeholders (nginx, for reference).
    #[arg(long)]
    url: Option<String>,
    #[arg(long)]
    ca: PathBuf,
    /// The device certificate and its (software) key.
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// The device id the certificate names.
    #[arg(long)]
    device: String,
    /// A consumer public key to seal to.
    #[arg(long)]
    recipient: PathBuf,
    /// Simulated cameras, each with its own stream and connection.
    #[arg(long, default_value_t = 10)]
    cameras: usize,
    /// Time between a camera's uploads; 0: as fast as answers come.
    #[arg(long, default_value_t = 2000)]
    interval_ms: u64,
    #[arg(long, default_value_t = 20)]
    duration_s: u64,
    /// Size of each fragment (a 2 s fragment at 500 kbit/s is 125000).
    #[arg(long, default_value_t = 125_000)]
    fragment_bytes: usize,
    /// Upload as sealcamd uploads the fragment it is recording (payload,
    /// then the signed manifest; `application/vnd.sealcam.fragment-stream`),
    /// in pieces of a body of unknown length (chunked), rather than as a
    /// whole fragment file (its backlog) of known length.
    #[arg(long)]
    streamed: bool,
}

/// A streamed upload's pieces: the size of a TLS record, about two video
/// frames at the default 2000 kbit/s.
const PIECE: usize = 16 * 1024;

/// The body of an upload: a streamed one in pieces, without a length.
fn body_of(body: Vec<u8>, streamed: bool) -> reqwest::Body {
    if !streamed {
        return reqwest::Body::from(body);
    }
    let body = bytes::Bytes::from(body);
    let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = (0..body.len())
        .step_by(PIECE)
        .map(|at| Ok(body.slice(at..(at + PIECE).min(body.len()))))
        .collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
}

/// The upload of `file` (a fragment file): its media type and body.
fn upload(file: Vec<u8>, streamed: bool) -> anyhow::Result<(&'static str, Vec<u8>)> {
    use sealcam_api::media::{FRAGMENT, FRAGMENT_STREAM};
    use sealcam_format::fragment::streamed_tail;
    if !streamed {
        return Ok((FRAGMENT, file));
    }
    let f = sealcam_format::SealedFragment::parse(&file)?;
    let mut body = Vec::with_capacity(file.len());
    body.extend_from_slice(f.payload);
    body.extend_from_slice(&streamed_tail(&f.signed_manifest()));
    Ok((FRAGMENT_STREAM, body))
}

/// Where camera `cam`'s fragment `seq` goes.
fn upload_url(args: &Args, cam: &Camera, seq: u64) -> String {
    match (&args.ingest, &args.url) {
        (Some(ingest), _) => {
            let route = Route::Upload {
                device: cam.device().clone(),
                stream: cam.stream().clone(),
                sequence: seq,
            };
            format!("{}{}", ingest.trim_end_matches('/'), route.path())
        }
        (None, Some(url)) => url
            .replace("{device}", cam.device().as_str())
            .replace("{stream}", cam.stream().as_str())
            .replace("{seq}", &seq.to_string()),
        (None, None) => String::new(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let signing = p256::ecdsa::SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(&args.key).context("reading the device key")?,
    )
    .context("the device key is not a PKCS#8 P-256 key")?;
    let recipient = ConsumerPublicKey::from_pem(&std::fs::read_to_string(&args.recipient)?)?;
    let config = tls::consumer_client_config(
        pem::load_roots(&args.ca)?,
        pem::load_certs(&args.cert)?,
        pem::load_private_key(&args.key)?,
    )?;
    let device = Name::new(&args.device)?;
    let deadline = Instant::now() + Duration::from_secs(args.duration_s);
    let interval = Duration::from_millis(args.interval_ms);
    let args = Arc::new(args);
    let mut tasks = Vec::new();
    for i in 0..args.cameras {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(config.clone())
            .pool_max_idle_per_host(1)
            .build()?;
        let mut cam = Camera::new(
            device.clone(),
            Name::new(&format!("s{i}"))?,
            signing.clone(),
            recipient.clone(),
            args.fragment_bytes,
        );
        let args = args.clone();
        // Spread the cameras over one interval, as real ones drift apart.
        let offset = interval.mul_f64(i as f64 / args.cameras as f64);
        tasks.push(tokio::spawn(async move {
            // The first upload of each camera also opens its connection
            // (TLS handshake, client certificate): reported apart.
            let mut latencies = Vec::new();
            let mut first = None;
            let (mut errors, mut bytes) = (0u64, 0u64);
            tokio::time::sleep(offset).await;
            let mut next = Instant::now();
            while Instant::now() < deadline {
                let made = cam
                    .next_fragment()
                    .and_then(|(seq, file)| Ok((seq, upload(file, args.streamed)?)));
                let (seq, (media_type, body)) = match made {
                    Ok(f) => f,
                    Err(e) => {
                        eprintln!("sealing failed: {e}");
                        errors += 1;
                        break;
                    }
                };
                let url = upload_url(&args, &cam, seq);
                let len = body.len() as u64;
                let started = Instant::now();
                let put = client
                    .put(&url)
                    .header(reqwest::header::CONTENT_TYPE, media_type)
                    .body(body_of(body, args.streamed));
                match put.send().await {
                    Ok(r) if r.status().is_success() => {
                        if first.is_none() {
                            first = Some(started.elapsed());
                        } else {
                            latencies.push(started.elapsed());
                        }
                        bytes += len;
                    }
                    Ok(r) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("{url}: {}", r.status());
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("{url}: {e}");
                        }
                    }
                }
                next += interval;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
            }
            (latencies, first, errors, bytes)
        }));
    }
    let started = Instant::now();
    let (mut all, mut firsts, mut errors, mut bytes) = (Vec::new(), Vec::new(), 0u64, 0u64);
    for t in tasks {
        let (l, f, e, b) = t.await?;
        all.extend(l);
        firsts.extend(f);
        errors += e;
        bytes += b;
    }
    let secs = started.elapsed().as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if let Some(f) = summarize(firsts) {
        println!(
            "first uploads, with connection setup: count={} p50_ms={:.1} p99_ms={:.1} max_ms={:.1}",
            f.count,
            ms(f.p50),
            ms(f.p99),
            ms(f.max)
        );
    }
    match summarize(all) {
        Some(s) => println!(
            "uploads={} errors={errors} bytes={bytes} seconds={secs:.1} p50_ms={:.1} p90_ms={:.1} p99_ms={:.1} max_ms={:.1}",
            s.count,
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.max)
        ),
        None => println!("uploads=0 errors={errors} bytes=0 seconds={secs:.1}"),
    }
    Ok(())
}
