//! slow-clients: hostile clients holding many slow connections on the
//! ingest's ports, for `scripts/bench-ingest`. Each connection comes from
//! one of several loopback addresses (so that the per-address cap does not
//! refuse them all), sends the first bytes of a TLS record one at a time,
//! and is opened again a moment after the ingest closes it. Prints how many
//! were held at most and how the ingest ended them. With `--flood-enroll`,
//! anonymous clients also send enrollment requests without a token as
//! fast as they are answered, each on a new TLS connection.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
struct Args {
    /// A port to hold connections on (`ADDRESS:PORT`); once per port.
    #[arg(long, required = true)]
    target: Vec<SocketAddr>,
    /// Connections held on each target.
    #[arg(long, default_value_t = 2000)]
    connections: usize,
    /// Loopback source addresses used, from 127.0.0.2 on.
    #[arg(long, default_value_t = 16)]
    sources: u8,
    #[arg(long, default_value_t = 30)]
    duration_s: u64,
    /// How often each connection sends its next byte.
    #[arg(long, default_value_t = 1000)]
    byte_every_ms: u64,
    /// The enrollment URL to flood (`https://HOST:PORT`), if any.
    #[arg(long, requires = "ca")]
    flood_enroll: Option<String>,
    /// Clients flooding enrollment at once.
    #[arg(long, default_value_t = 8)]
    flood_clients: usize,
    /// The fleet CA's certificate, to reach the enrollment port.
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
}

/// Enrollment requests without a token, each on a new connection, as fast
/// as they are answered: how many were answered and how many failed.
async fn flood(url: String, client: reqwest::Client, until: Instant) -> (u64, u64) {
    let (mut answered, mut failed) = (0, 0);
    while Instant::now() < until {
        let sent = client
            .post(format!("{url}/v1/enroll"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(r#"{"csr":"not a request"}"#)
            .send()
            .await;
        match sent {
            Ok(_) => answered += 1,
            Err(_) => {
                failed += 1;
                tokio::time::sleep(AGAIN_AFTER).await;
            }
        }
    }
    (answered, failed)
}

/// The start of a TLS handshake record (a ClientHello of 512 bytes),
/// never finished.
const HELLO_START: [u8; 9] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];

/// How long a client waits before it connects again.
const AGAIN_AFTER: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Counts {
    held: AtomicUsize,
    held_max: AtomicUsize,
    connects: AtomicU64,
    /// Closed by the ingest within a second of connecting (a cap).
    closed_at_once: AtomicU64,
    /// Closed by the ingest later (a timeout).
    closed_later: AtomicU64,
    connect_errors: AtomicU64,
}

async fn hold(target: SocketAddr, source: IpAddr, args: Arc<Args>, counts: Arc<Counts>) {
    let deadline = Instant::now() + Duration::from_secs(args.duration_s);
    let every = Duration::from_millis(args.byte_every_ms);
    while Instant::now() < deadline {
        let socket = match tokio::net::TcpSocket::new_v4() {
            Ok(s) => s,
            Err(_) => {
                counts.connect_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(AGAIN_AFTER).await;
                continue;
            }
        };
        let connected = match socket.bind(SocketAddr::new(source, 0)) {
            Ok(()) => socket.connect(target).await,
            Err(e) => Err(e),
        };
        let Ok(mut tcp) = connected else {
            counts.connect_errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(AGAIN_AFTER).await;
            continue;
        };
        counts.connects.fetch_add(1, Ordering::Relaxed);
        let now = counts.held.fetch_add(1, Ordering::Relaxed) + 1;
        counts.held_max.fetch_max(now, Ordering::Relaxed);
        let opened = Instant::now();
        let mut sent = 0;
        let mut sink = [0u8; 256];
        let closed = loop {
            if Instant::now() >= deadline {
                break false;
            }
            tokio::select! {
                r = tcp.read(&mut sink) => {
                    if matches!(r, Ok(0) | Err(_)) {
                        break true;
                    }
                }
                () = tokio::time::sleep(every) => {
                    let byte = HELLO_START[sent % HELLO_START.len()];
                    if tcp.write_all(&[byte]).await.is_err() {
                        break true;
                    }
                    sent += 1;
                }
            }
        };
        counts.held.fetch_sub(1, Ordering::Relaxed);
        if closed {
            if opened.elapsed() < Duration::from_secs(1) {
                counts.closed_at_once.fetch_add(1, Ordering::Relaxed);
            } else {
                counts.closed_later.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(AGAIN_AFTER).await;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let counts = Arc::new(Counts::default());
    let mut floods = Vec::new();
    if let (Some(url), Some(ca)) = (&args.flood_enroll, &args.ca) {
        let config = sealcam_transport::tls::enrollment_client_config(
            sealcam_transport::pem::load_roots(ca)?,
        )?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            // A new connection, and handshake, for every request.
            .pool_max_idle_per_host(0)
            .build()?;
        let until = Instant::now() + Duration::from_secs(args.duration_s);
        for _ in 0..args.flood_clients {
            floods.push(tokio::spawn(flood(url.clone(), client.clone(), until)));
        }
    }
    let mut tasks = Vec::new();
    for target in &args.target {
        for i in 0..args.connections {
            let n = u8::try_from(i % usize::from(args.sources.max(1))).unwrap_or(0);
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + n));
            tasks.push(tokio::spawn(hold(
                *target,
                source,
                args.clone(),
                counts.clone(),
            )));
        }
    }
    for t in tasks {
        t.await?;
    }
    let (mut answered, mut failed) = (0, 0);
    for f in floods {
        let (a, e) = f.await?;
        answered += a;
        failed += e;
    }
    let c = &counts;
    println!(
        "slow_clients targets={} per_target={} held_max={} connects={} closed_at_once={} closed_later={} connect_errors={} enroll_answered={answered} enroll_failed={failed}",
        args.target.len(),
        args.connections,
        c.held_max.load(Ordering::Relaxed),
        c.connects.load(Ordering::Relaxed),
        c.closed_at_once.load(Ordering::Relaxed),
        c.closed_later.load(Ordering::Relaxed),
        c.connect_errors.load(Ordering::Relaxed),
    );
    Ok(())
}
