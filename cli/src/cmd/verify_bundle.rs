//! `sealcam verify-bundle`: checks an evidence bundle offline and says, in
//! words a non-expert can follow, what it proves: which camera, under
//! which key, which span, what is missing and who could have caused it,
//! what was disclosed, to whom and by whom.
//!
//! It runs the same verification as `sealcam verify` on the bundle (the
//! bundle is laid out as a fetched directory), and adds: every file
//! against the bundle manifest's SHA-256, the recipient sets the bundle
//! carries, and that each disclosed key opens exactly its fragment.

use std::collections::BTreeSet;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sealcam_format::bundle::{BundleManifest, DisclosedKeys, Disclosure, FragmentId};
use sealcam_format::mkv::MkvWriter;
use sealcam_format::verify::{ChainReport, Failure};
use sealcam_format::{ConsumerSecretKey, GapReason, OpenedFragment, SealedFragment};

use super::export::{KEYS_FILE, MANIFEST_FILE, RECIPIENTS_DIR};
use crate::anchor::{Anchor, AnchorArgs};
use crate::fragdir::FragmentDir;

#[derive(clap::Args)]
pub struct Args {
    /// The bundle directory (from `sealcam export`).
    pub bundle: PathBuf,
    /// Your private key (from `sealcam keygen`), if the keys are wrapped to
    /// you: checks that each disclosed key opens its fragment, and is
    /// needed for --mkv.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The keys file, if it was handed over apart from the bundle
    /// (default: BUNDLE/keys.sdk).
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// Write the decrypted range as a playable MKV here (only if every
    /// check passes).
    #[arg(long)]
    pub mkv: Option<PathBuf>,
    /// Write the decrypted range as MP4 here (remuxed from the MKV with
    /// GStreamer's mp4mux; only if every check passes).
    #[arg(long)]
    pub mp4: Option<PathBuf>,
    #[command(flatten)]
    pub anchor: AnchorArgs,
    /// Accept declared gaps of this reason that the server could have
    /// caused (as `sealcam verify --accept-gap`).
    #[arg(long = "accept-gap", value_name = "REASON", value_parser = super::verify::gap_reason)]
    pub accept_gaps: Vec<GapReason>,
}

fn fail(label: impl Into<String>, reason: impl Into<String>) -> Failure {
    Failure {
        label: label.into(),
        reason: reason.into(),
    }
}

/// "file 00000000000000000003.scf (fragment 3)" for a fragment file.
fn name_file(path: &str) -> String {
    match path
        .strip_suffix(".scf")
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(seq) => format!("file {path} (fragment {seq})"),
        None => format!("file {path}"),
    }
}

/// Every regular file of the bundle (the root and one level below), by
/// relative path; anything else (a link, a deeper directory) is a failure.
fn list_files(dir: &Path, failures: &mut Vec<Failure>) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let read = |p: &Path| std::fs::read_dir(p).with_context(|| format!("reading {}", p.display()));
    for entry in read(dir)? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", entry.path().display()))?;
        if kind.is_file() {
            out.insert(name);
        } else if kind.is_dir() {
            for sub in read(&entry.path())? {
                let sub = sub.with_context(|| format!("reading {}", entry.path().display()))?;
                let path = format!("{name}/{}", sub.file_name().to_string_lossy());
                if sub.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    out.insert(path);
                } else {
                    failures.push(fail(
                        format!("file {path}"),
                        "not a regular file; a bundle holds files only",
                    ));
                }
            }
        } else {
            failures.push(fail(
                format!("file {name}"),
                "not a regular file (a link?); a bundle holds files only",
            ));
        }
    }
    out.remove(MANIFEST_FILE);
    Ok(out)
}

/// Checks every file against the manifest; returns the keys file's bytes
/// if it matched.
fn check_files(
    args: &Args,
    manifest: &BundleManifest,
    failures: &mut Vec<Failure>,
) -> anyhow::Result<Option<Vec<u8>>> {
    let mut present = list_files(&args.bundle, failures)?;
    let mut keys = None;
    for entry in &manifest.files {
        let path = if entry.path == KEYS_FILE {
            args.keys
                .clone()
                .unwrap_or_else(|| args.bundle.join(KEYS_FILE))
        } else {
            args.bundle.join(&entry.path)
        };
        present.remove(&entry.path);
        let bytes = match read_regular(&path, entry.size) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let hint = if entry.path == KEYS_FILE {
                    " (pass the keys file handed over apart with --keys)"
                } else {
                    ""
                };
                failures.push(fail(
                    name_file(&entry.path),
                    format!("listed in the bundle manifest but missing{hint}"),
                ));
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                failures.push(fail(name_file(&entry.path), e.to_string()));
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if !entry.matches(&bytes) {
            failures.push(fail(
                name_file(&entry.path),
                "its SHA-256 differs from the one in the bundle manifest: it was altered after export",
            ));
            continue;
        }
        if entry.path == KEYS_FILE {
            keys = Some(bytes);
        }
    }
    for extra in present {
        failures.push(fail(
            name_file(&extra),
            "not listed in the bundle manifest: it was added after export",
        ));
    }
    Ok(keys)
}

/// The most bytes of a bundle manifest read (2^20 entries of short paths).
const MAX_MANIFEST_BYTES: u64 = 256 << 20;

/// A bundle file's bytes: refused unless it is a regular file (a link to
/// `/dev/zero` or a FIFO would hang or exhaust the verifier), and read no
/// further than one byte past the size the manifest gives it.
fn read_regular(path: &Path, size: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file (a link?); a bundle holds files only",
        ));
    }
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(size.saturating_add(1))
        .read_to_end(&mut out)?;
    Ok(out)
}

pub fn run(args: Args) -> anyhow::Result<bool> {
    let anchor = args.anchor.resolve()?;
    let recipient_key = match &args.key {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading consumer key {}", path.display()))?;
            Some(
                ConsumerSecretKey::from_pem(&pem)
                    .with_context(|| format!("consumer key {}", path.display()))?,
            )
        }
        None => None,
    };
    let manifest_path = args.bundle.join(MANIFEST_FILE);
    let manifest_bytes = read_regular(&manifest_path, MAX_MANIFEST_BYTES).with_context(|| {
        format!(
            "reading {}: is {} a bundle from `sealcam export`?",
            manifest_path.display(),
            args.bundle.display()
        )
    })?;
    let read = match BundleManifest::read(&manifest_bytes) {
        Ok(r) => r,
        Err(e) => {
            println!("bundle:    {}", args.bundle.display());
            println!("FAILED:    file {MANIFEST_FILE} (the bundle manifest): {e}");
            println!("result:    FAILED");
            return Ok(false);
        }
    };
    let m = &read.manifest;
    let mut failures = Vec::new();

    println!(
        "bundle:    {}: {}/{}, fragments {}..={}, range asked {} .. {}",
        args.bundle.display(),
        m.device,
        m.stream,
        m.first_sequence,
        m.last_sequence,
        if m.from_unix_ns == 0 {
            "start".to_owned()
        } else {
            super::rfc3339(m.from_unix_ns)
        },
        if m.to_unix_ns == u64::MAX {
            "end".to_owned()
        } else {
            super::rfc3339(m.to_unix_ns)
        }
    );
    let signer = match (&read.signed_by, &anchor) {
        (None, _) => {
            "NOT signed: who exported and when are the exporter's word only".to_owned()
        }
        (Some(k), Anchor::Owner(o)) if k.fingerprint() == o.fingerprint => {
            format!("signed by the owner key {}", o.fingerprint)
        }
        (Some(k), _) => format!(
            "signed by key {}, which is NOT the owner's key: who exported and when are that key holder's word",
            k.fingerprint()
        ),
    };
    println!(
        "exported:  {} by {:?}; {signer}",
        super::rfc3339(m.created_unix_ns),
        m.exporter
    );
    match &m.disclosure {
        Disclosure::Wrapped { recipient, label } => println!(
            "disclosed: the data keys of the bundle's fragments, wrapped to key {recipient} ({label:?}); only that key's holder can decrypt, and only these fragments"
        ),
        Disclosure::Plaintext => println!(
            "disclosed: the data keys of the bundle's fragments, in PLAINTEXT: whoever holds the keys file can decrypt these fragments (and no others)"
        ),
    }

    let keys_bytes = check_files(&args, m, &mut failures)?;
    if failures.is_empty() {
        println!(
            "files:     {} files, each matches its SHA-256 in the bundle manifest",
            m.files.len()
        );
    }

    // Anything but regular files, and verification reads nothing more: it
    // would follow the links.
    if failures
        .iter()
        .any(|f| f.reason.starts_with("not a regular file"))
    {
        for f in &failures {
            println!("FAILED:    {}: {}", f.label, f.reason);
        }
        println!("result:    FAILED");
        return Ok(false);
    }

    // The same verification as `sealcam verify`. If it cannot even start
    // (a roster that fails its signature, say), what was found so far is
    // reported with it.
    let verified = FragmentDir::read(&args.bundle)
        .map_err(anyhow::Error::from)
        .and_then(|dir| Ok((super::verify::verify_dir(&anchor, &dir)?, dir)));
    let (mut report, dir) = match verified {
        Ok(v) => v,
        Err(e) => {
            for f in &failures {
                println!("FAILED:    {}: {}", f.label, f.reason);
            }
            println!("FAILED:    {}", sealcam_base::error_chain(e.as_ref()));
            println!("result:    FAILED");
            return Ok(false);
        }
    };
    for v in &report.verified {
        if v.sequence < m.first_sequence || v.sequence > m.last_sequence {
            failures.push(fail(
                name_file(&v.label),
                format!(
                    "outside the fragments {}..={} the bundle manifest names",
                    m.first_sequence, m.last_sequence
                ),
            ));
        }
    }
    let other_stream = |name: Option<&sealcam_format::Name>, want| name.is_some_and(|n| n != want);
    if other_stream(report.device.as_ref(), &m.device)
        || other_stream(report.stream.as_ref(), &m.stream)
    {
        failures.push(fail(
            MANIFEST_FILE,
            format!(
                "names {}/{}, but the fragments are of another stream",
                m.device, m.stream
            ),
        ));
    }

    // The recipient sets the bundle carries.
    let sets: Vec<PathBuf> = m
        .files
        .iter()
        .filter(|f| f.path.starts_with(&format!("{RECIPIENTS_DIR}/")))
        .map(|f| args.bundle.join(&f.path))
        .filter(|p| p.exists())
        .collect();
    if !sets.is_empty() {
        if let Err(e) = super::verify::check_recipients(&anchor, &sets, &dir, &mut report) {
            failures.push(fail(
                format!("files {RECIPIENTS_DIR}/*"),
                sealcam_base::error_chain(e.as_ref()),
            ));
        }
    }

    // Each disclosed key opens exactly its fragment.
    let opened = match keys_bytes {
        Some(bytes) => check_keys(
            &bytes,
            m,
            recipient_key.as_ref(),
            &dir,
            &report,
            &mut failures,
        ),
        None => Vec::new(),
    };
    report.failures.extend(failures);
    let ok = super::verify::print_report(&report, &args.accept_gaps);
    if report.verified.is_empty() {
        println!("result:    FAILED");
    }
    if ok {
        let who = match (&read.signed_by, &anchor) {
            (Some(k), Anchor::Owner(o)) if k.fingerprint() == o.fingerprint => {
                "; the owner signed who exported it and when"
            }
            _ => "; who exported it and when is not proven by the owner's signature",
        };
        println!(
            "meaning:   camera {} recorded these {} frames under a key its owner listed; every gap is listed above with who could have caused it; no file changed since the export{who}",
            m.device,
            report.frame_count(),
        );
    }
    for (out, mp4) in [(&args.mkv, false), (&args.mp4, true)] {
        let Some(out) = out else {
            continue;
        };
        if !ok {
            bail!(
                "refusing to write {}: the bundle did not verify",
                out.display()
            );
        }
        if opened.len() != report.verified.len() {
            bail!(
                "cannot write {}: the keys are wrapped to a recipient; pass its private key with --key",
                out.display()
            );
        }
        let frames = write_video(out, &opened, mp4)?;
        println!("written:   {} ({frames} frames)", out.display());
    }
    Ok(ok)
}

/// Checks the keys file: each key for a fragment of the bundle, bound to
/// its manifest, and (when it can be opened) authenticating every record
/// of exactly that fragment. Returns the fragments opened, in order.
fn check_keys(
    bytes: &[u8],
    m: &BundleManifest,
    key: Option<&ConsumerSecretKey>,
    dir: &FragmentDir,
    report: &ChainReport,
    failures: &mut Vec<Failure>,
) -> Vec<OpenedFragment> {
    let label = format!("file {KEYS_FILE}");
    let keys = match DisclosedKeys::decode(bytes) {
        Ok(k) => k,
        Err(e) => {
            failures.push(fail(label, e.to_string()));
            return Vec::new();
        }
    };
    let expected = match &m.disclosure {
        Disclosure::Wrapped { recipient, .. } => Some(*recipient),
        Disclosure::Plaintext => None,
    };
    if keys.recipient != expected {
        failures.push(fail(
            label,
            "its keys are not disclosed as the bundle manifest says",
        ));
        return Vec::new();
    }
    if let (Some(want), Some(k)) = (expected, key) {
        if k.public().id() != want {
            failures.push(fail(
                format!("--key {}", k.public().id()),
                format!("the keys are wrapped to key {want}, not to this one; pass that key's private half"),
            ));
            return Vec::new();
        }
    }
    let can_open = expected.is_none() || key.is_some();
    // The fragments the bundle holds, verified or not (a fragment that
    // failed is named by the chain check already).
    let held: BTreeSet<u64> = dir
        .files
        .iter()
        .filter_map(|(n, _)| n.strip_suffix(".scf")?.parse().ok())
        .chain(report.verified.iter().map(|v| v.sequence))
        .collect();
    for k in &keys.keys {
        if !held.contains(&k.sequence) {
            failures.push(fail(
                label.clone(),
                format!(
                    "discloses a key for fragment {}, which the bundle does not hold",
                    k.sequence
                ),
            ));
        }
    }
    let mut opened = Vec::new();
    for v in &report.verified {
        let Some(k) = keys.keys.iter().find(|k| k.sequence == v.sequence) else {
            failures.push(fail(
                name_file(&v.label),
                "the bundle discloses no key for it",
            ));
            continue;
        };
        if !can_open {
            continue;
        }
        let Some(bytes) = dir
            .files
            .iter()
            .find(|(n, _)| *n == v.label)
            .map(|(_, b)| b.as_slice())
        else {
            continue;
        };
        let id = FragmentId {
            device: &m.device,
            stream: &m.stream,
            sequence: v.sequence,
            manifest_hash: v.manifest_hash,
        };
        let result = k
            .data_key(&id, key)
            .and_then(|dk| SealedFragment::parse(bytes)?.open_with_data_key(&dk));
        match result {
            Ok(o) => opened.push(o),
            Err(e) => failures.push(fail(
                name_file(&v.label),
                format!("its disclosed key in {KEYS_FILE} does not open it: {e}"),
            )),
        }
    }
    if !can_open {
        println!(
            "keys:      not opened: they are wrapped to a recipient; pass its private key with --key to check that each opens its fragment"
        );
    } else if opened.len() == report.verified.len() && !report.verified.is_empty() {
        println!(
            "keys:      each of the {} disclosed keys opens exactly its fragment (every record authenticates under it)",
            opened.len()
        );
    }
    opened
}

/// Writes the opened fragments as one MKV, or remuxed to MP4; returns the
/// frame count. The file takes its name only when whole.
fn write_video(out: &Path, opened: &[OpenedFragment], mp4: bool) -> anyhow::Result<u64> {
    let Some(first) = opened.first() else {
        bail!("no fragment to write");
    };
    if let Some(o) = opened.iter().find(|o| o.track != first.track) {
        bail!(
            "the track configuration changes within the bundle ({}x{} to {}x{}); one file cannot hold both",
            first.track.width,
            first.track.height,
            o.track.width,
            o.track.height
        );
    }
    let file = super::decrypt::create_output(out)?;
    let tmp = file.temporary_path().to_owned();
    let mut w = MkvWriter::new(BufWriter::new(file), &first.track)?;
    for o in opened {
        w.write_fragment(&o.frames)
            .with_context(|| format!("writing {}", tmp.display()))?;
    }
    let frames = w.frames_written();
    let mut file = w
        .finish()?
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", tmp.display()))?;
    if mp4 {
        // The temporary MKV goes when `file` is dropped.
        file.file()
            .sync_all()
            .with_context(|| format!("writing {}", tmp.display()))?;
        super::decrypt::remux_to_mp4(&tmp, out)?;
    } else {
        file.commit()?;
    }
    Ok(frames)
}
