//! The `[storage]` section of the ingest's config.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// Where fragments go: `[storage]` in the ingest's config.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StorageConfig {
    /// A directory on a local disk.
    Local(LocalConfig),
    /// A bucket on any S3-compatible object store.
    S3(S3Config),
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    pub path: PathBuf,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// For stores other than AWS: `https://minio.example:9000`.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// Allows an `http://` endpoint (a store on loopback or a private link).
    #[serde(default)]
    pub allow_http: bool,
    /// Otherwise from `AWS_ACCESS_KEY_ID`, the instance profile, etc.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// A file holding the secret key (kept out of the config file).
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
}

impl StorageConfig {
    pub fn local(path: impl Into<PathBuf>) -> Self {
        Self::Local(LocalConfig { path: path.into() })
    }
}

impl fmt::Display for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(l) => write!(f, "local directory {}", l.path.display()),
            Self::S3(s) => match &s.endpoint {
                Some(e) => write!(f, "S3 bucket {} at {e}", s.bucket),
                None => write!(f, "S3 bucket {}", s.bucket),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_its_backend() {
        let c: StorageConfig = toml::from_str("kind = \"local\"\npath = \"/x\"").unwrap();
        assert_eq!(c, StorageConfig::local("/x"));
        let c: StorageConfig = toml::from_str(
            "kind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://h:1\"\nallow_http = true",
        )
        .unwrap();
        assert_eq!(c.to_string(), "S3 bucket b at http://h:1");
        let bad = toml::from_str::<StorageConfig>("kind = \"s3\"\nbucket = \"b\"\nbucket_typo = 1");
        assert!(bad.is_err());
    }
}
