//! The ingest's configuration file (`/etc/sealcam-ingest/ingest.toml`).
//!
//! Every field is optional; `docs/ref/ingest-config.md` documents them. Unknown fields
//! are refused, so a typo is an error rather than a silently ignored line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::ca_client::CaUrl;
use crate::store::StorageConfig;
use sealcam_base::parse_lifetime;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A duration written as `90s`, `10m`, `12h` or `30d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(pub Duration);

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_lifetime(&s)
            .map(Span)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// The mutual-TLS API for devices and consumers.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Enrollment (server-authenticated TLS, one-time tokens); off if absent.
    #[serde(default)]
    pub enroll_listen: Option<SocketAddr>,
    /// Prometheus metrics, `/healthz` and `/readyz` (plain HTTP); off if absent.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The instance's own directory: fleet CA certificate, server
    /// certificate and key, cached CRL, audit key. Never the CA key.
    #[serde(default = "default_pki")]
    pub pki: PathBuf,
    /// Where the CA service is.
    #[serde(default)]
    pub ca: CaConfig,
    #[serde(default = "default_storage")]
    pub storage: StorageConfig,
    #[serde(default)]
    pub devices: DevicesConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}

fn default_pki() -> PathBuf {
    PathBuf::from("/var/lib/sealcam-ingest/pki")
}

fn default_storage() -> StorageConfig {
    StorageConfig::local("/var/lib/sealcam-ingest/data")
}

/// The CA service (`sealcam-ca serve`), which holds the CA key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// `unix:/run/sealcam-ca/ca.sock` (same host) or `https://HOST:PORT`
    /// (mutual TLS with this instance's certificate).
    #[serde(default = "default_ca_url")]
    pub url: CaUrl,
}

fn default_ca_url() -> CaUrl {
    CaUrl::Unix(PathBuf::from("/run/sealcam-ca/ca.sock"))
}

impl Default for CaConfig {
    fn default() -> Self {
        Self {
            url: default_ca_url(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesConfig {
    /// How often the CRL is fetched from the CA service.
    #[serde(default = "default_crl_poll")]
    pub crl_poll: Span,
}

fn default_crl_poll() -> Span {
    Span(Duration::from_secs(1))
}

impl Default for DevicesConfig {
    fn default() -> Self {
        Self {
            crl_poll: default_crl_poll(),
        }
    }
}

/// How long fragments are kept. Without a rule, forever.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// For every stream without a rule of its own.
    #[serde(default)]
    pub default: Option<Span>,
    /// `"DEVICE/STREAM" = "7d"`, or `"DEVICE/*"` for all of a device's streams.
    #[serde(default)]
    pub streams: BTreeMap<String, Span>,
    /// How often expired fragments are looked for.
    #[serde(default)]
    pub sweep_interval: Option<Span>,
}

impl RetentionConfig {
    pub const DEFAULT_SWEEP: Duration = Duration::from_secs(60);

    /// The retention period of a stream, if it has one.
    pub fn period(&self, device: &str, stream: &str) -> Option<Duration> {
        self.streams
            .get(&format!("{device}/{stream}"))
            .or_else(|| self.streams.get(&format!("{device}/*")))
            .or(self.default.as_ref())
            .map(|s| s.0)
    }

    pub fn sweep_every(&self) -> Duration {
        self.sweep_interval
            .map_or(Self::DEFAULT_SWEEP, |s| s.0.max(Duration::from_secs(1)))
    }

    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.streams.is_empty()
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// This instance's name in the audit trail; the host name if absent.
    #[serde(default)]
    pub instance: Option<String>,
    /// Records are written to storage in batches at most this far apart.
    #[serde(default)]
    pub flush_interval: Option<Span>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest fragment accepted, in bytes.
    #[serde(default = "default_max_fragment")]
    pub max_fragment_bytes: usize,
    /// Uploads one device may have in progress at once.
    #[serde(default = "default_concurrent")]
    pub uploads_per_device: usize,
    /// Sustained uploads per second one device may make.
    #[serde(default = "default_rate")]
    pub uploads_per_second: f64,
    /// Uploads one device may make at once above the rate (a backlog after
    /// an outage drains at this burst, then at the rate).
    #[serde(default = "default_burst")]
    pub upload_burst: u32,
    /// A request's headers, and then its body, must each arrive completely
    /// within this time (slow senders are cut off).
    #[serde(default = "default_body_timeout")]
    pub body_timeout: Span,
    /// Requests one consumer may have in progress at once (a long poll
    /// counts until it is answered).
    #[serde(default = "default_consumer_concurrent")]
    pub consumer_requests_at_once: usize,
    /// Sustained requests per second one consumer may make.
    #[serde(default = "default_consumer_rate")]
    pub consumer_requests_per_second: f64,
    /// Requests one consumer may make at once above the rate.
    #[serde(default = "default_consumer_burst")]
    pub consumer_burst: u32,
    /// Connections the API port holds at once (from accept, before the TLS
    /// handshake); more are closed at once (`docs/design/ingest.md`).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections the enrollment port holds at once.
    #[serde(default = "default_max_enroll_connections")]
    pub max_enroll_connections: usize,
    /// Connections one IP address may hold at once on each port.
    #[serde(default = "default_connections_per_address")]
    pub connections_per_address: usize,
    /// A TLS handshake must complete within this.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: Span,
    /// A connection with no request in progress for this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Span,
    /// Bytes of upload bodies held in memory at once, across all uploads;
    /// an upload that would pass it is answered 503 before its body is read.
    #[serde(default = "default_buffered_bytes")]
    pub buffered_bytes: usize,
}

fn default_consumer_concurrent() -> usize {
    8
}
fn default_consumer_rate() -> f64 {
    20.0
}
fn default_consumer_burst() -> u32 {
    100
}

fn default_rate() -> f64 {
    20.0
}
fn default_burst() -> u32 {
    200
}

fn default_max_fragment() -> usize {
    64 * 1024 * 1024
}
fn default_concurrent() -> usize {
    4
}
fn default_body_timeout() -> Span {
    Span(Duration::from_secs(60))
}
/// With [`default_max_enroll_connections`], 21,000 sockets: within the
/// unit's `LimitNOFILE=65536` with room for storage files.
fn default_max_connections() -> usize {
    20_000
}
fn default_max_enroll_connections() -> usize {
    1_000
}
fn default_connections_per_address() -> usize {
    256
}
fn default_handshake_timeout() -> Span {
    Span(Duration::from_secs(10))
}
fn default_idle_timeout() -> Span {
    Span(Duration::from_secs(60))
}
fn default_buffered_bytes() -> usize {
    1024 * 1024 * 1024
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_fragment_bytes: default_max_fragment(),
            uploads_per_device: default_concurrent(),
            uploads_per_second: default_rate(),
            upload_burst: default_burst(),
            body_timeout: default_body_timeout(),
            consumer_requests_at_once: default_consumer_concurrent(),
            consumer_requests_per_second: default_consumer_rate(),
            consumer_burst: default_consumer_burst(),
            max_connections: default_max_connections(),
            max_enroll_connections: default_max_enroll_connections(),
            connections_per_address: default_connections_per_address(),
            handshake_timeout: default_handshake_timeout(),
            idle_timeout: default_idle_timeout(),
            buffered_bytes: default_buffered_bytes(),
        }
    }
}

impl IngestConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| ConfigError::Invalid {
            path: path.to_owned(),
            reason,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let cfg: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        for key in cfg.retention.streams.keys() {
            let ok = key.split_once('/').is_some_and(|(d, s)| {
                sealcam_format::Name::new(d).is_ok()
                    && (s == "*" || sealcam_format::Name::new(s).is_ok())
            });
            if !ok {
                return Err(format!(
                    "retention.streams: {key:?} is not DEVICE/STREAM or DEVICE/*"
                ));
            }
        }
        if cfg.limits.uploads_per_device == 0 {
            return Err("limits.uploads_per_device must be at least 1".into());
        }
        let l = &cfg.limits;
        if l.max_connections == 0 || l.max_enroll_connections == 0 || l.connections_per_address == 0
        {
            return Err("limits.max_connections, limits.max_enroll_connections and limits.connections_per_address must be at least 1".into());
        }
        // A body of unknown length growing to the limit holds its old
        // buffer and its new one for a moment.
        if l.buffered_bytes / 2 < l.max_fragment_bytes {
            return Err(format!(
                "limits.buffered_bytes ({}) must be at least twice limits.max_fragment_bytes ({}), or a fragment of the largest size could not be received",
                l.buffered_bytes, l.max_fragment_bytes
            ));
        }
        let rate = cfg.limits.uploads_per_second;
        if rate.is_nan() || rate <= 0.0 {
            return Err("limits.uploads_per_second must be above 0".into());
        }
        Ok(cfg)
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            enroll_listen: None,
            metrics_listen: None,
            pki: default_pki(),
            ca: CaConfig::default(),
            storage: default_storage(),
            devices: DevicesConfig::default(),
            retention: RetentionConfig::default(),
            audit: AuditConfig::default(),
            limits: LimitsConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = IngestConfig::parse("").unwrap();
        assert_eq!(c.listen, default_listen());
        assert_eq!(c.storage, default_storage());
        assert!(c.retention.is_empty());
        assert_eq!(c.ca.url, CaUrl::Unix("/run/sealcam-ca/ca.sock".into()));
    }

    #[test]
    fn retention_rules_pick_the_most_specific() {
        let c = IngestConfig::parse(
            "[retention]\ndefault = \"30d\"\n[retention.streams]\n\"cam1/front\" = \"7d\"\n\"cam2/*\" = \"1h\"\n",
        )
        .unwrap();
        let r = &c.retention;
        assert_eq!(
            r.period("cam1", "front"),
            Some(Duration::from_secs(7 * 86_400))
        );
        assert_eq!(
            r.period("cam1", "back"),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(r.period("cam2", "x"), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn the_example_config_is_valid() {
        let c =
            IngestConfig::parse(include_str!("../../configs/sealcam-ingest.example.toml")).unwrap();
        assert_eq!(
            c.metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        assert_eq!(
            c.retention.period("lobby-cam", "x"),
            Some(Duration::from_secs(7 * 86_400))
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            ("listne = \"0.0.0.0:1\"", "unknown field"),
            ("[retention]\ndefault = \"7 days\"", "lifetime"),
            ("[retention.streams]\n\"../x\" = \"1d\"", "DEVICE/STREAM"),
            ("[storage]\nkind = \"ftp\"", "ftp"),
            ("[limits]\nuploads_per_device = 0", "at least 1"),
            ("[limits]\nconnections_per_address = 0", "at least 1"),
            ("[limits]\nbuffered_bytes = 1000", "max_fragment_bytes"),
            ("[ca]\nurl = \"http://ca:80\"", "https://HOST:PORT"),
            // Moved to the CA service (`sealcam-ca serve`).
            ("[devices]\ncert_lifetime = \"30d\"", "unknown field"),
        ] {
            let e = IngestConfig::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
