//! `sealcam export`: an evidence bundle of a time range of one stream, for
//! a third party who verifies it offline (`sealcam verify-bundle`) and
//! decrypts that range and nothing else.
//!
//! The bundle is a directory laid out as `sealcam fetch` writes one (so
//! `verify-bundle` runs the same checks as `verify`), plus the fragments'
//! data keys (`keys.sdk`, wrapped to the recipient named here, or in
//! plaintext) and the bundle manifest (`bundle.sbm`). See
//! `docs/ref/format.md`, Evidence bundles.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sealcam_base::durable;
use sealcam_format::bundle::{
    BundleManifest, DisclosedKey, DisclosedKeys, Disclosure, FileEntry, FragmentId,
};
use sealcam_format::{ConsumerPublicKey, SealedFragment};

use crate::anchor::{AnchorArgs, ROSTER_FILE};
use crate::fragdir::{FragmentDir, CERTS_DIR, DEVICE_CERT};
use crate::owner_key;

/// The bundle manifest's file name.
pub const MANIFEST_FILE: &str = "bundle.sbm";
/// The disclosed keys' file name (in the bundle, or named in its manifest
/// when written elsewhere).
pub const KEYS_FILE: &str = "keys.sdk";
/// Where the owner-signed recipient sets go in a bundle.
pub const RECIPIENTS_DIR: &str = "recipients";
/// Signed heads (`sealcam fetch` saves them when the ingest serves them).
const HEADS_DIR: &str = "heads";
/// The query a fetch asked (saved by `sealcam fetch` beside the heads).
const QUERY_FILE: &str = "query.json";

#[derive(clap::Args)]
pub struct Args {
    /// Directory written by `sealcam fetch`.
    pub dir: PathBuf,
    /// The bundle directory to create (must not exist yet).
    #[arg(long)]
    pub out: PathBuf,
    /// The range to export: fragments that overlap it.
    #[command(flatten)]
    pub range: super::RangeArgs,
    /// Your consumer private key (from `sealcam keygen`): it opens the
    /// fragments' data keys, which are then disclosed. It never goes into
    /// the bundle.
    #[arg(long)]
    pub key: PathBuf,
    /// The third party's public key (their `sealcam keygen` OUT.pub): the
    /// data keys of exactly the exported fragments are wrapped to it.
    #[arg(
        long,
        conflicts_with = "plaintext_keys",
        required_unless_present = "plaintext_keys"
    )]
    pub to_key: Option<PathBuf>,
    /// A name for the third party, shown in the report (default: the file
    /// name of --to-key).
    #[arg(long, requires = "to_key")]
    pub to_label: Option<String>,
    /// Disclose the data keys in plaintext, in this file (mode 0600; keep it
    /// apart from the bundle, or name BUNDLE/keys.sdk). Whoever holds it
    /// decrypts the exported range.
    #[arg(long)]
    pub plaintext_keys: Option<PathBuf>,
    /// Who exports, as shown in the report (default: $USER). A claim,
    /// unless the bundle is signed (--sign-key).
    #[arg(long)]
    pub exporter: Option<String>,
    /// Sign the bundle manifest with this key: the owner key (from `sealcam
    /// owner init`), so that who exported and when is the owner's word.
    #[arg(long)]
    pub sign_key: Option<PathBuf>,
    /// Owner-signed recipient set(s) to include, so that `verify-bundle`
    /// checks every fragment is wrapped to exactly the keys the owner
    /// listed. Repeatable.
    #[arg(long = "recipients", value_name = "SET")]
    pub recipients: Vec<PathBuf>,
    #[command(flatten)]
    pub anchor: AnchorArgs,
}

/// Where the data keys go.
enum Target {
    Wrapped {
        to: ConsumerPublicKey,
        label: String,
    },
    Plaintext(PathBuf),
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let key = super::consumer_key(&args.key)?;
    let target = match (&args.to_key, &args.plaintext_keys) {
        (Some(path), _) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let to = ConsumerPublicKey::from_pem(&pem).with_context(|| {
                format!(
                    "{}: the third party's public key from `sealcam keygen`",
                    path.display()
                )
            })?;
            let label = args.to_label.clone().unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            Target::Wrapped { to, label }
        }
        (None, Some(path)) => {
            if path.exists() {
                bail!(
                    "{} exists already; name a new file for the plaintext keys",
                    path.display()
                );
            }
            Target::Plaintext(path.clone())
        }
        (None, None) => bail!("name who may decrypt: --to-key THIRD.pub, or --plaintext-keys FILE"),
    };
    let signer = args
        .sign_key
        .as_deref()
        .map(owner_key::load_private)
        .transpose()?;
    let anchor = args.anchor.resolve()?;
    let mut sets = Vec::new();
    for path in &args.recipients {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        sets.push(bytes);
    }
    if let crate::anchor::Anchor::Owner(owner) = &anchor {
        crate::recipient_check::load(&args.recipients, &owner.key)?;
    }

    // Only verified fragments leave: the bundle is evidence.
    let dir = FragmentDir::read(&args.dir)?;
    let report = super::verify::verify_dir(&anchor, &dir)?;
    if !report.failures.is_empty() {
        let names: Vec<String> = report
            .failures
            .iter()
            .map(|f| format!("{}: {}", f.label, f.reason))
            .collect();
        bail!(
            "refusing to export: verification failed for {}",
            names.join("; ")
        );
    }
    let asked = args.range.query()?;
    let (from_ns, to_ns) = (asked.from_ns, asked.to_ns);
    let chosen: Vec<_> = report
        .verified
        .iter()
        .filter(|v| from_ns.is_none_or(|f| v.end_unix_ns >= f))
        .filter(|v| to_ns.is_none_or(|t| v.start_unix_ns <= t))
        .filter(|v| asked.from_seq.is_none_or(|s| v.sequence >= s))
        .filter(|v| asked.to_seq.is_none_or(|s| v.sequence <= s))
        .collect();
    let (Some(first), Some(last)) = (chosen.first(), chosen.last()) else {
        bail!(
            "no verified fragment of {} lies in the range asked; widen --from/--to or --from-seq/--to-seq",
            args.dir.display()
        );
    };
    let (Some(device), Some(stream)) = (report.device.clone(), report.stream.clone()) else {
        bail!("the fragments name no device or stream");
    };

    // The data keys, each checked to open its fragment before it is
    // disclosed.
    let mut rng = rand::rngs::OsRng;
    let mut keys = Vec::with_capacity(chosen.len());
    for v in &chosen {
        let bytes = dir
            .files
            .iter()
            .find(|(n, _)| *n == v.label)
            .map(|(_, b)| b.as_slice())
            .context("fragment vanished between verify and export")?;
        let frag = SealedFragment::parse(bytes)?;
        let data_key = frag
            .data_key(&key)
            .with_context(|| format!("fragment {}", v.label))?;
        frag.open_with_data_key(&data_key)
            .with_context(|| format!("fragment {}", v.label))?;
        let id = FragmentId {
            device: &device,
            stream: &stream,
            sequence: v.sequence,
            manifest_hash: v.manifest_hash,
        };
        keys.push(match &target {
            Target::Wrapped { to, .. } => DisclosedKey::wrap(&id, &data_key, to, &mut rng)?,
            Target::Plaintext(_) => DisclosedKey::plaintext(&id, &data_key),
        });
    }
    let keys_file = DisclosedKeys {
        recipient: match &target {
            Target::Wrapped { to, .. } => Some(to.id()),
            Target::Plaintext(_) => None,
        },
        keys,
    }
    .encode()?;

    // What goes in, by path in the bundle.
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for v in &chosen {
        if let Some((n, b)) = dir.files.iter().find(|(n, _)| *n == v.label) {
            files.push((n.clone(), b.clone()));
        }
    }
    for name in [ROSTER_FILE, DEVICE_CERT] {
        let path = args.dir.join(name);
        if path.exists() {
            files.push((name.to_owned(), read(&path)?));
        }
    }
    // The bundle's own range, not the fetch's: what was exported is
    // sequences first..=last of what was fetched, so that is what the
    // range check holds the bundle to (the manifest records it too).
    if let Some(fetched) = crate::range::read_query(&args.dir)? {
        let exported = crate::range::QueryRecord {
            from_ns: None,
            to_ns: None,
            from_seq: Some(first.sequence),
            to_seq: Some(last.sequence),
            ..fetched
        };
        files.push((QUERY_FILE.to_owned(), serde_json::to_vec_pretty(&exported)?));
    }
    for sub in [CERTS_DIR, HEADS_DIR, crate::restarts::RESTARTS_DIR] {
        files.extend(read_subdir(&args.dir, sub)?);
    }
    for (path, bytes) in args.recipients.iter().zip(sets) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.push((format!("{RECIPIENTS_DIR}/{name}"), bytes));
    }
    if let Some((p, _)) = files
        .iter()
        .find(|(p, _)| !sealcam_format::bundle::is_safe_path(p))
    {
        bail!("{p:?} cannot go into a bundle: rename it to letters, digits, '.', '_' and '-'");
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut entries: Vec<FileEntry> = files
        .iter()
        .map(|(p, b)| FileEntry::of(p.clone(), b))
        .collect();
    entries.push(FileEntry::of(KEYS_FILE.to_owned(), &keys_file));

    let manifest = BundleManifest {
        created_unix_ns: now_ns(),
        exporter: args
            .exporter
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unnamed".to_owned()),
        device: device.clone(),
        stream: stream.clone(),
        from_unix_ns: from_ns.unwrap_or(0),
        to_unix_ns: to_ns.unwrap_or(u64::MAX),
        first_sequence: first.sequence,
        last_sequence: last.sequence,
        disclosure: match &target {
            Target::Wrapped { to, label } => Disclosure::Wrapped {
                recipient: to.id(),
                label: label.clone(),
            },
            Target::Plaintext(_) => Disclosure::Plaintext,
        },
        files: entries,
    }
    .encode(signer.as_ref())?;

    // Written: a new directory, the files, the keys, the manifest last.
    if args.out.exists() {
        bail!(
            "{} exists already; name a new directory for the bundle",
            args.out.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for (path, bytes) in &files {
        let dest = args.out.join(path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        durable::create_new(&dest, bytes, 0o644)?;
    }
    match &target {
        Target::Wrapped { .. } => {
            durable::create_new(&args.out.join(KEYS_FILE), &keys_file, 0o644)?
        }
        Target::Plaintext(path) => super::write_private(path, &keys_file)?,
    }
    durable::create_new(&args.out.join(MANIFEST_FILE), &manifest, 0o644)?;

    println!(
        "exported {} fragments of {device}/{stream} (sequences {}..={}, {} .. {}) to {}",
        chosen.len(),
        first.sequence,
        last.sequence,
        super::rfc3339(first.start_unix_ns),
        super::rfc3339(last.end_unix_ns),
        args.out.display()
    );
    match &target {
        Target::Wrapped { to, label } => println!(
            "keys:     the data keys of exactly these fragments, wrapped to {} ({label}); only its private key opens them",
            to.id()
        ),
        Target::Plaintext(path) => println!(
            "keys:     the data keys of exactly these fragments, in PLAINTEXT in {}: whoever holds that file decrypts this range",
            path.display()
        ),
    }
    println!(
        "manifest: {} ({})",
        args.out.join(MANIFEST_FILE).display(),
        if signer.is_some() {
            "signed with the key given"
        } else {
            "not signed: who exported and when are a claim; pass --sign-key OWNER.key to sign"
        }
    );
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The regular files of `dir/sub`, as (`sub/name`, bytes), if it exists.
fn read_subdir(dir: &Path, sub: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let path = dir.join(sub);
    let mut out = Vec::new();
    if !path.is_dir() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(&path).with_context(|| format!("reading {}", path.display()))? {
        let entry = entry.with_context(|| format!("reading {}", path.display()))?;
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            let name = entry.file_name().to_string_lossy().into_owned();
            out.push((format!("{sub}/{name}"), read(&entry.path())?));
        }
    }
    Ok(out)
}
