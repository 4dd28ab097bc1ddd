//! The ingest's consumer API, as the CLI uses it (see `docs/ref/protocol.md`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use sealcam_api::{
    CertificateEntry, FragmentEntry, FragmentQuery, RosterReceipt, RosterUpload, Route, StreamEntry,
};
use sealcam_format::Name;
use sealcam_transport::{pem, tls};

/// How to reach the ingest as a consumer.
#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    /// Ingest base URL, https://host:port
    #[arg(long)]
    pub server: String,
    /// Fleet CA certificate (verifies the ingest and the device certificate).
    #[arg(long)]
    pub ca: PathBuf,
    /// Consumer TLS certificate (from `sealcam-ca consumer issue`).
    #[arg(long)]
    pub cert: PathBuf,
    /// Consumer TLS key.
    #[arg(long)]
    pub tls_key: PathBuf,
}

/// The stream a command acts on, and how to reach the ingest.
#[derive(clap::Args, Clone, Debug)]
pub struct StreamArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The stream, as DEVICE/STREAM.
    pub stream: String,
}

/// The largest signed head read from the ingest.
pub const MAX_HEAD_BYTES: u64 = 4096;

pub struct Api {
    client: reqwest::Client,
    base: String,
}

/// Splits `DEVICE/STREAM`.
pub fn parse_stream(s: &str) -> anyhow::Result<(Name, Name)> {
    let (device, stream) = s
        .split_once('/')
        .context("the stream is given as DEVICE/STREAM, e.g. cam1/front")?;
    Ok((Name::new(device)?, Name::new(stream)?))
}

/// How many times a request refused with `429` is sent again.
const MAX_RETRIES: u32 = 20;

/// How long a `429` asks to wait (`Retry-After`, in seconds; at most a
/// minute, one second when it does not say).
fn retry_after(resp: &reqwest::Response) -> Duration {
    let secs = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1);
    Duration::from_secs(secs.clamp(1, 60))
}

impl Api {
    pub fn connect(args: &ServerArgs) -> anyhow::Result<Self> {
        let roots = pem::load_roots(&args.ca)?;
        let chain = pem::load_certs(&args.cert)?;
        let key = pem::load_private_key(&args.tls_key)?;
        let config = tls::consumer_client_config(roots, chain, key)?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            client,
            base: args.server.trim_end_matches('/').to_owned(),
        })
    }

    async fn get(&self, route: &Route, query: &FragmentQuery) -> anyhow::Result<reqwest::Response> {
        let req = self
            .client
            .get(format!("{}{}", self.base, route.path()))
            .query(query);
        self.send(req).await
    }

    /// Sends `req`; over this consumer's limits (`429`), waits as long as
    /// the ingest says and sends it again, a few times, so that a long
    /// fetch is paced rather than failed.
    async fn send_paced(
        &self,
        mut req: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let mut retries = 0;
        loop {
            // A request without a body can be sent again.
            let again = req.try_clone();
            let resp = req
                .send()
                .await
                .with_context(|| format!("cannot reach the ingest at {}", self.base))?;
            match again {
                Some(next)
                    if resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS
                        && retries < MAX_RETRIES =>
                {
                    retries += 1;
                    tokio::time::sleep(retry_after(&resp)).await;
                    req = next;
                }
                _ => return Ok(resp),
            }
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = self.send_paced(req).await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let url = resp.url().clone();
        let body = read_limited(resp, limit::ERROR, "an error answer")
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        bail!("{url}: ingest answered {status}: {body}")
    }

    /// A JSON answer of at most `max` bytes.
    async fn json<T: serde::de::DeserializeOwned>(
        resp: reqwest::Response,
        max: usize,
        what: &str,
    ) -> anyhow::Result<T> {
        let bytes = read_limited(resp, max, what).await?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("the ingest's answer with {what} is not the expected JSON"))
    }

    /// The streams the ingest lets this consumer read.
    pub async fn streams(&self) -> anyhow::Result<Vec<StreamEntry>> {
        let resp = self
            .get(&Route::ListStreams, &FragmentQuery::default())
            .await?;
        Self::json(resp, limit::LISTING, "the streams").await
    }

    /// A route's JSON answer (a listing, read up to [`limit::LISTING`]).
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        route: &Route,
    ) -> anyhow::Result<T> {
        let resp = self.get(route, &FragmentQuery::default()).await?;
        Self::json(resp, limit::LISTING, "a listing").await
    }

    /// Fragments of a stream matching `query`.
    pub async fn list(
        &self,
        device: &Name,
        stream: &Name,
        query: &FragmentQuery,
    ) -> anyhow::Result<Vec<FragmentEntry>> {
        let route = Route::ListFragments {
            device: device.clone(),
            stream: stream.clone(),
        };
        let resp = self.get(&route, query).await?;
        Self::json(resp, limit::LISTING, "a fragment listing").await
    }

    pub async fn fragment(
        &self,
        device: &Name,
        stream: &Name,
        sequence: u64,
    ) -> anyhow::Result<Bytes> {
        let route = Route::ReadFragment {
            device: device.clone(),
            stream: stream.clone(),
            sequence,
        };
        let resp = self.get(&route, &FragmentQuery::default()).await?;
        read_limited(resp, limit::FRAGMENT, "a fragment").await
    }

    /// The newest signed head the ingest holds for a stream, or `None`
    /// when it holds none (404). Unchecked: the caller parses and verifies.
    pub async fn head(&self, device: &Name, stream: &Name) -> anyhow::Result<Option<Bytes>> {
        let route = Route::ReadHead {
            device: device.clone(),
            stream: stream.clone(),
        };
        let resp = self
            .send_paced(self.client.get(format!("{}{}", self.base, route.path())))
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let status = resp.status();
        if !status.is_success() {
            let body = read_limited(resp, limit::ERROR, "an error answer")
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            bail!("the ingest answered {status} for the head of {device}/{stream}: {body}");
        }
        let what = format!("the head of {device}/{stream} (not a head)");
        Ok(Some(
            read_limited(resp, MAX_HEAD_BYTES as usize, &what).await?,
        ))
    }

    /// The device's certificate, PEM.
    pub async fn device_cert(&self, device: &Name) -> anyhow::Result<String> {
        let route = Route::DeviceCertificate {
            device: device.clone(),
        };
        let resp = self.get(&route, &FragmentQuery::default()).await?;
        let bytes = read_limited(resp, limit::CERTIFICATE, "a certificate").await?;
        String::from_utf8(bytes.to_vec())
            .context("the device certificate the ingest sent is not text (PEM)")
    }

    /// Every certificate the device has used.
    pub async fn device_certs(&self, device: &Name) -> anyhow::Result<Vec<CertificateEntry>> {
        let route = Route::DeviceCertificates {
            device: device.clone(),
        };
        let resp = self.get(&route, &FragmentQuery::default()).await?;
        Self::json(resp, limit::LISTING, "the certificate history").await
    }

    /// The newest roster the ingest holds for the owner key with this
    /// fingerprint (unchecked: the caller checks it against the key).
    pub async fn roster(&self, owner_fingerprint: &str) -> anyhow::Result<Bytes> {
        let route = Route::ReadRoster {
            owner: Name::new(owner_fingerprint)?,
        };
        let resp = self.get(&route, &FragmentQuery::default()).await?;
        read_limited(resp, limit::ROSTER, "a roster").await
    }

    /// Publishes a roster for verifiers.
    pub async fn publish_roster(&self, upload: &RosterUpload) -> anyhow::Result<RosterReceipt> {
        let route = Route::PublishRoster;
        let req = self
            .client
            .request(route.method(), format!("{}{}", self.base, route.path()))
            .json(upload);
        Self::json(self.send(req).await?, limit::ERROR, "a roster receipt").await
    }
}

/// The most bytes the CLI reads of one answer of each kind: a hostile
/// ingest must not be able to exhaust the consumer's memory with an
/// endless answer.
pub mod limit {
    /// A listing (fragments, streams, certificates).
    pub const LISTING: usize = 64 << 20;
    /// A sealed fragment (the ingest's default cap is 64 MiB).
    pub const FRAGMENT: usize = 256 << 20;
    /// A certificate, PEM.
    pub const CERTIFICATE: usize = 1 << 20;
    /// A roster (the ingest takes up to 16 MiB).
    pub const ROSTER: usize = 16 << 20;
    /// An error answer or a receipt.
    pub const ERROR: usize = 64 << 10;
}

/// Reads an answer's body, refusing one above `max` bytes (by its
/// `Content-Length` before reading, or as it arrives).
pub async fn read_limited(
    mut resp: reqwest::Response,
    max: usize,
    what: &str,
) -> anyhow::Result<Bytes> {
    let too_big = || {
        anyhow::anyhow!(
            "the ingest sent more than {max} bytes for {what}: refused (a hostile or broken server)"
        )
    };
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_big());
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .with_context(|| format!("reading {what} from the ingest"))?
    {
        if out.len() + chunk.len() > max {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::io::{Read, Write};

    /// A one-shot HTTP server answering with `body` (and, if `length`,
    /// a Content-Length; else chunked without end until the client goes).
    fn server(length: bool, body_len: usize) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            if length {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {body_len}\r\n\r\n");
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&vec![b'x'; body_len.min(1 << 16)]);
            } else {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
                let chunk = format!("{:x}\r\n{}\r\n", 4096, "x".repeat(4096));
                while s.write_all(chunk.as_bytes()).is_ok() {}
            }
        });
        format!("http://{addr}/")
    }

    async fn fetch(url: &str, max: usize) -> anyhow::Result<Bytes> {
        let tls = sealcam_transport::tls::enrollment_client_config(rustls::RootCertStore::empty())
            .unwrap();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap();
        let resp = client.get(url).send().await.unwrap();
        read_limited(resp, max, "a test body").await
    }

    #[tokio::test]
    async fn an_endless_answer_is_cut_at_the_limit() {
        let err = fetch(&server(false, 0), 1 << 20).await.unwrap_err();
        assert!(err.to_string().contains("more than 1048576 bytes"), "{err}");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let err = fetch(&server(true, 1 << 30), 1 << 20).await.unwrap_err();
        assert!(err.to_string().contains("for a test body"), "{err}");
        let ok = fetch(&server(true, 100), 1 << 20).await.unwrap();
        assert_eq!(ok.len(), 100);
    }
}
