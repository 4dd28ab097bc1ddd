//! The provisioning bundle: the files an owner puts in `sealcam/` on the
//! camera's boot partition (`docs/ref/provisioning.md`), and the one check
//! both `sealcamd firstboot` (before it touches anything) and `sealcam card
//! write` (before it writes anything) make of them.
//!
//! The check is whole: the config parses and is valid as it will be once
//! installed in the config directory, names the bundle's own CA, owner key
//! and recipient set there, and keeps the device key in the TPM; the CA file
//! holds certificates; the recipient set verifies under the owner's key; the
//! enrollment URL is `https`; the token is one printable word.

use std::path::{Path, PathBuf};

use sealcam_format::recipients::SignedRecipientSet;
use sealcam_format::Name;
use sealcam_hal::board::Board;

use crate::config::{Config, ConfigError, KeySource, RecipientSource, ENV_PREFIX};

/// The bundle's directory on the boot partition.
pub const DIR_NAME: &str = "sealcam";
/// The camera's config, installed as `<config dir>/sealcamd.toml`.
pub const CONFIG: &str = "sealcamd.toml";
/// The fleet CA's certificate (PEM), installed as `<config dir>/fleet-ca.crt`.
pub const CA: &str = "fleet-ca.crt";
/// The owner's public key (PEM), installed as `<config dir>/owner.pub`.
pub const OWNER: &str = "owner.pub";
/// The owner-signed recipient set, installed as `<config dir>/recipients.rset`.
pub const RECIPIENTS: &str = "recipients.rset";
/// The ingest's enrollment URL, one line; not installed.
pub const ENROLL_URL: &str = "enroll-url";
/// The one-time enrollment token, one line; deleted after first boot.
pub const TOKEN: &str = "token";
/// The files a bundle holds.
pub const FILES: [&str; 6] = [CONFIG, CA, OWNER, RECIPIENTS, ENROLL_URL, TOKEN];
/// The files installed into the config directory.
pub const INSTALLED: [&str; 4] = [CONFIG, CA, OWNER, RECIPIENTS];
/// No bundle file is larger (a recipient set of many consumers is a few KiB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// No token is longer.
const MAX_TOKEN_CHARS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is larger than {MAX_FILE_BYTES} bytes: not a bundle file", path.display())]
    TooLarge { path: PathBuf },
    #[error("{CONFIG}: {0}")]
    Config(#[from] ConfigError),
    #[error("{CONFIG}: {0}")]
    ConfigRule(String),
    #[error("{CA}: {0}")]
    Ca(String),
    #[error("{RECIPIENTS}: {0}")]
    Recipients(String),
    #[error("{ENROLL_URL}: {0}")]
    Url(String),
    #[error("{TOKEN}: {0}")]
    Token(String),
}

/// Where the owner's four files are read from: a bundle directory, or the
/// files `sealcam card write` is given.
#[derive(Debug, Clone)]
pub struct Sources {
    pub config: PathBuf,
    pub ca: PathBuf,
    pub owner: PathBuf,
    pub recipients: PathBuf,
}

impl Sources {
    /// The files of a bundle directory.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            config: dir.join(CONFIG),
            ca: dir.join(CA),
            owner: dir.join(OWNER),
            recipients: dir.join(RECIPIENTS),
        }
    }
}

/// A bundle's contents, read but not yet checked.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Where the files were read (absolute), for the config check.
    pub sources: Sources,
    pub config: Vec<u8>,
    pub ca: Vec<u8>,
    pub owner: Vec<u8>,
    pub recipients: Vec<u8>,
    pub enroll_url: String,
    pub token: String,
}

/// Reads a file of at most [`MAX_FILE_BYTES`].
pub fn read_capped(path: &Path) -> Result<Vec<u8>, BundleError> {
    use std::io::Read;
    let read_err = |source| BundleError::Read {
        path: path.to_owned(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(BundleError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

fn absolute(path: &Path) -> Result<PathBuf, BundleError> {
    std::path::absolute(path).map_err(|source| BundleError::Read {
        path: path.to_owned(),
        source,
    })
}

impl Bundle {
    /// Reads the owner's files from `sources`, with the URL and token given.
    pub fn read(sources: &Sources, enroll_url: &str, token: &str) -> Result<Self, BundleError> {
        let sources = Sources {
            config: absolute(&sources.config)?,
            ca: absolute(&sources.ca)?,
            owner: absolute(&sources.owner)?,
            recipients: absolute(&sources.recipients)?,
        };
        Ok(Self {
            config: read_capped(&sources.config)?,
            ca: read_capped(&sources.ca)?,
            owner: read_capped(&sources.owner)?,
            recipients: read_capped(&sources.recipients)?,
            enroll_url: enroll_url.trim().to_owned(),
            token: token.trim().to_owned(),
            sources,
        })
    }

    /// Reads the bundle directory `dir` (all six files).
    pub fn read_dir(dir: &Path) -> Result<Self, BundleError> {
        let line = |name: &str| -> Result<String, BundleError> {
            let path = dir.join(name);
            let bytes = read_capped(&path)?;
            String::from_utf8(bytes).map_err(|_| BundleError::Read {
                path,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
            })
        };
        let url = line(ENROLL_URL)?;
        let token = line(TOKEN)?;
        Self::read(&Sources::in_dir(dir), &url, &token)
    }

    /// The bundle's files by name, as written onto a card (URL and token
    /// end with a newline).
    pub fn files(&self) -> [(&'static str, Vec<u8>); 6] {
        [
            (CONFIG, self.config.clone()),
            (CA, self.ca.clone()),
            (OWNER, self.owner.clone()),
            (RECIPIENTS, self.recipients.clone()),
            (ENROLL_URL, format!("{}\n", self.enroll_url).into_bytes()),
            (TOKEN, format!("{}\n", self.token).into_bytes()),
        ]
    }
}

/// A bundle that passed [`check`].
pub struct Checked {
    pub bundle: Bundle,
    /// The config as checked: paths into the config directory, except the
    /// CA, owner key and recipient set, which are the bundle's files.
    pub config: Config,
    pub device: Name,
}

/// The string at `section.key` of a TOML table.
fn named<'t>(table: &'t toml::Table, section: &str, key: &str) -> Option<&'t toml::Value> {
    table.get(section)?.as_table()?.get(key)
}

/// Checks that the config names `<config dir>/<file>` at `section.key`.
fn names_installed(
    table: &toml::Table,
    section: &str,
    key: &str,
    file: &str,
    config_dir: &Path,
) -> Result<(), BundleError> {
    let want = config_dir.join(file);
    let rule = || {
        BundleError::ConfigRule(format!(
            "{section}.{key} must name the bundle's {file} as installed: \"{file}\" or \"{}\"",
            want.display()
        ))
    };
    let value = named(table, section, key).ok_or_else(rule)?;
    let path = Path::new(value.as_str().ok_or_else(rule)?);
    let resolved = if path.is_absolute() {
        path.to_owned()
    } else {
        config_dir.join(path)
    };
    if resolved == want {
        Ok(())
    } else {
        Err(rule())
    }
}

fn check_config(
    bundle: &Bundle,
    config_dir: &Path,
    detected: Board,
) -> Result<Config, BundleError> {
    let text = std::str::from_utf8(&bundle.config)
        .map_err(|_| BundleError::ConfigRule("not UTF-8 text".into()))?;
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        BundleError::ConfigRule(format!(
            "not valid TOML: {}",
            e.to_string().trim().replace('\n', " ")
        ))
    })?;
    if named(&table, "recipients", "public_keys").is_some() {
        return Err(BundleError::ConfigRule(
            "recipients.public_keys is for development; a card's camera seals to the owner-signed set (recipients.set and recipients.owner_public_key)".into(),
        ));
    }
    names_installed(&table, "recipients", "set", RECIPIENTS, config_dir)?;
    names_installed(&table, "recipients", "owner_public_key", OWNER, config_dir)?;
    names_installed(&table, "upload", "ca", CA, config_dir)?;
    // Validated as it will be installed, except that the three files it
    // names are read from where the bundle has them.
    let overrides = [
        ("RECIPIENTS__SET", &bundle.sources.recipients),
        ("RECIPIENTS__OWNER_PUBLIC_KEY", &bundle.sources.owner),
        ("UPLOAD__CA", &bundle.sources.ca),
    ]
    .map(|(k, v)| (format!("{ENV_PREFIX}{k}"), v.display().to_string()));
    let config = Config::parse_with(&config_dir.join(CONFIG), text, overrides, detected)?;
    // First boot writes the certificate as root: in the config directory,
    // nowhere else.
    let certificate = &config.identity.certificate;
    if certificate.parent() != Some(config_dir) || certificate.file_name().is_none() {
        return Err(BundleError::ConfigRule(format!(
            "identity.certificate must name a file in {} (\"device.crt\")",
            config_dir.display()
        )));
    }
    if let KeySource::InsecureSoftware(_) = config.identity.key {
        return Err(BundleError::ConfigRule(
            "identity.insecure_software_key is for development; a provisioned camera keeps its key in the TPM".into(),
        ));
    }
    Ok(config)
}

fn check_url(url: &str) -> Result<(), BundleError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| BundleError::Url(format!("{url:?} is not a URL ({e})")))?;
    if parsed.scheme() != "https" {
        return Err(BundleError::Url(format!(
            "{url:?} is not https://: the camera enrolls only over TLS"
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(BundleError::Url(format!("{url:?} names no host")));
    }
    Ok(())
}

fn check_token(token: &str) -> Result<(), BundleError> {
    if token.is_empty() {
        return Err(BundleError::Token(
            "empty: give the token from `sealcam-ca device add`".into(),
        ));
    }
    if token.chars().count() > MAX_TOKEN_CHARS || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(BundleError::Token(
            "not one printable word: give the token `sealcam-ca device add` printed".into(),
        ));
    }
    Ok(())
}

/// Checks the whole bundle, as it will be installed in `config_dir`, on a
/// machine detected as `detected`. Reads only the bundle's files.
pub fn check(bundle: Bundle, config_dir: &Path, detected: Board) -> Result<Checked, BundleError> {
    check_url(&bundle.enroll_url)?;
    check_token(&bundle.token)?;
    let config = check_config(&bundle, config_dir, detected)?;
    sealcam_transport::pem::load_roots(&bundle.sources.ca)
        .map_err(|e| BundleError::Ca(sealcam_base::error_chain(&e)))?;
    let RecipientSource::Signed { owner, .. } = &config.recipients else {
        return Err(BundleError::ConfigRule(
            "recipients.set is required: the owner-signed recipient set".into(),
        ));
    };
    SignedRecipientSet::parse(&bundle.recipients)
        .map_err(|e| BundleError::Recipients(e.to_string()))?
        .verify(owner)
        .map_err(|e| {
            BundleError::Recipients(format!(
                "it does not verify under the owner key in {OWNER} ({e}): sign it with that owner's key (`sealcam recipients sign`)"
            ))
        })?;
    let device = config.device.clone();
    Ok(Checked {
        bundle,
        config,
        device,
    })
}
