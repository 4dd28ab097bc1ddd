//! The ingest's consumer API, as the CLI uses it (see `docs/ref/protocol.md`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use sealcam_api::{
    CertificateEntry, FragmentEntry, FragmentQuery, RosterReceipt, RosterUpload, Route,
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

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the ingest at {}", self.base))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let url = resp.url().clone();
        let body = resp.text().await.unwrap_or_default();
        bail!("{url}: ingest answered {status}: {body}")
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
        Ok(self.get(&route, query).await?.json().await?)
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
        Ok(self
            .get(&route, &FragmentQuery::default())
            .await?
            .bytes()
            .await?)
    }

    /// The newest signed head the ingest holds for a stream, or `None`
    /// when it holds none (404). Unchecked: the caller parses and verifies.
    pub async fn head(&self, device: &Name, stream: &Name) -> anyhow::Result<Option<Bytes>> {
        let route = Route::ReadHead {
            device: device.clone(),
            stream: stream.clone(),
        };
        let resp = self
            .client
            .get(format!("{}{}", self.base, route.path()))
            .send()
            .await
            .with_context(|| format!("cannot reach the ingest at {}", self.base))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            bail!("the ingest answered {status} for the head of {device}/{stream}: {body}");
        }
        let len = resp.content_length().unwrap_or(0);
        if len > MAX_HEAD_BYTES {
            bail!("the ingest answered a head of {len} bytes for {device}/{stream}: not a head");
        }
        let bytes = resp.bytes().await?;
        if bytes.len() as u64 > MAX_HEAD_BYTES {
            bail!(
                "the ingest answered a head of {} bytes for {device}/{stream}: not a head",
                bytes.len()
            );
        }
        Ok(Some(bytes))
    }

    /// The device's certificate, PEM.
    pub async fn device_cert(&self, device: &Name) -> anyhow::Result<String> {
        let route = Route::DeviceCertificate {
            device: device.clone(),
        };
        Ok(self
            .get(&route, &FragmentQuery::default())
            .await?
            .text()
            .await?)
    }

    /// Every certificate the device has used.
    pub async fn device_certs(&self, device: &Name) -> anyhow::Result<Vec<CertificateEntry>> {
        let route = Route::DeviceCertificates {
            device: device.clone(),
        };
        Ok(self
            .get(&route, &FragmentQuery::default())
            .await?
            .json()
            .await?)
    }

    /// The newest roster the ingest holds for the owner key with this
    /// fingerprint (unchecked: the caller checks it against the key).
    pub async fn roster(&self, owner_fingerprint: &str) -> anyhow::Result<Bytes> {
        let route = Route::ReadRoster {
            owner: Name::new(owner_fingerprint)?,
        };
        Ok(self
            .get(&route, &FragmentQuery::default())
            .await?
            .bytes()
            .await?)
    }

    /// Publishes a roster for verifiers.
    pub async fn publish_roster(&self, upload: &RosterUpload) -> anyhow::Result<RosterReceipt> {
        let route = Route::PublishRoster;
        let req = self
            .client
            .request(route.method(), format!("{}{}", self.base, route.path()))
            .json(upload);
        Ok(self.send(req).await?.json().await?)
    }
}
