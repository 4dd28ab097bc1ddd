//! `sealcam fetch`: download a stream's fragments for a time range, with
//! what verifies them later, offline, and verify them.
//!
//! Beside the fragments it saves the owner's roster (`roster.sdr`, from
//! `--roster` or the ingest, checked against `--owner` and the pinned
//! version first), every certificate the device has used
//! (`certs/<serial>.crt`, hints) and the newest one (`device.crt`, a hint
//! that only `--trust-server` trusts).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use sealcam_api::FragmentQuery;
use sealcam_base::durable;
use sealcam_format::head::SignedHead;
use sealcam_format::restart::SignedRestart;
use sealcam_format::{ManifestHash, Name, SealedFragment};

use crate::anchor::{Anchor, AnchorArgs, ROSTER_FILE};
use crate::api::{parse_stream, Api, StreamArgs};
use crate::fragdir::{FragmentDir, CERTS_DIR, DEVICE_CERT};
use crate::range::{now_unix_ns, QueryRecord, HEADS_DIR, QUERY_FILE};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: StreamArgs,
    #[command(flatten)]
    pub range: super::RangeArgs,
    /// Directory to write fragments, the roster and the device's
    /// certificates into.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub anchor: AnchorArgs,
    /// Accept declared gaps of this reason that the server could have
    /// caused (as `sealcam verify --accept-gap`).
    #[arg(long = "accept-gap", value_name = "REASON", value_parser = super::verify::gap_reason)]
    pub accept_gaps: Vec<sealcam_format::GapReason>,
}

/// Fetches, then verifies what it fetched; returns whether it verified.
pub async fn run(args: Args) -> anyhow::Result<bool> {
    let anchor = args.anchor.resolve()?;
    let (device, stream) = parse_stream(&args.target.stream)?;
    let api = Api::connect(&args.target.server)?;
    // The roster first: a roster that fails its checks stops the fetch
    // before anything is written.
    let roster_bytes = match &anchor {
        Anchor::Owner(owner) => Some(match &owner.roster_file {
            Some(path) => owner.accept_file(path)?.1,
            None => {
                let bytes = api.roster(&owner.fingerprint).await.context(
                    "fetching the owner's roster from the ingest (the owner publishes it with `sealcam roster publish`, or pass --roster)",
                )?;
                owner.accept(
                    &bytes,
                    &format!("the ingest at {}", args.target.server.server),
                )?;
                bytes.to_vec()
            }
        }),
        Anchor::TrustServer => None,
    };
    let query = args.range.query()?;
    let asked_at = now_unix_ns();
    let entries = api.list(&device, &stream, &query).await?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    if let Some(bytes) = &roster_bytes {
        durable::replace(&args.out.join(ROSTER_FILE), bytes)?;
    }
    let history = api.device_certs(&device).await?;
    let certs = args.out.join(CERTS_DIR);
    std::fs::create_dir_all(&certs).with_context(|| format!("creating {}", certs.display()))?;
    for c in &history {
        if c.serial.is_empty() || !c.serial.bytes().all(|b| b.is_ascii_hexdigit()) {
            anyhow::bail!(
                "the ingest named a certificate of {device} {:?}, not a hex serial number",
                c.serial
            );
        }
        durable::replace(
            &certs.join(format!("{}.crt", c.serial)),
            c.certificate.as_bytes(),
        )?;
    }
    let cert = api.device_cert(&device).await?;
    durable::replace(&args.out.join(DEVICE_CERT), cert.as_bytes())?;

    let total: u64 = entries.iter().fold(0u64, |n, e| n.saturating_add(e.bytes));
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut held: BTreeMap<u64, Held> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        let body = api.fragment(&device, &stream, e.sequence).await?;
        let frag = checked_identity(&device, &stream, e.sequence, &body)?;
        durable::replace(&args.out.join(fragment_file(e.sequence)), &body)?;
        held.insert(e.sequence, frag);
        bar.set_message(format!("{}/{} fragments", i + 1, entries.len()));
        bar.inc(e.bytes);
    }
    bar.finish_and_clear();
    let restarts = crate::restarts::fetch(&api, &device, &stream, &args.out).await?;
    if restarts > 0 {
        println!("fetched {restarts} chain restart records of {device}/{stream}");
    }
    let head = fetch_head(&api, &device, &stream, &args.out).await?;
    let epochs = epoch_starts(&args.out)?;
    let ends = Ends {
        query: &query,
        head,
        epochs: &epochs,
    };
    let extra = complete_ends(&api, &device, &stream, &ends, &mut held, &args.out).await?;
    let record = QueryRecord {
        device: device.to_string(),
        stream: stream.to_string(),
        from_ns: query.from_ns,
        to_ns: query.to_ns,
        from_seq: query.from_seq,
        to_seq: query.to_seq,
        asked_at_unix_ns: asked_at,
        server: args.target.server.server.clone(),
    };
    durable::replace(
        &args.out.join(QUERY_FILE),
        &serde_json::to_vec_pretty(&record)?,
    )?;
    println!(
        "fetched {} fragments of {device}/{stream} and {} certificates into {}",
        entries.len() + extra,
        history.len(),
        args.out.display()
    );
    if held.is_empty() {
        return Ok(true);
    }
    let dir = FragmentDir::read(&args.out)?;
    let report = super::verify::verify_dir(&anchor, &dir)?;
    Ok(super::verify::print_report(&report, &args.accept_gaps))
}

/// How many fragments fetch asks for beyond the server's listing to cover
/// the range's ends, at most.
const MAX_EXTRA: u64 = 64;

/// What fetch keeps of a fragment it wrote.
#[derive(Clone, Copy)]
struct Held {
    start_unix_ns: u64,
    prev: ManifestHash,
}

fn fragment_file(sequence: u64) -> String {
    format!("{sequence:020}.scf")
}

/// Parses a fragment the ingest returned and checks that it is the one
/// asked for: that device, that stream, that sequence.
fn checked_identity(
    device: &Name,
    stream: &Name,
    sequence: u64,
    body: &[u8],
) -> anyhow::Result<Held> {
    let frag = SealedFragment::parse(body).with_context(|| {
        format!("the ingest answered fragment {sequence} of {device}/{stream} with bytes that are not a sealed fragment; refused")
    })?;
    let m = &frag.manifest;
    if m.device != *device || m.stream != *stream || m.sequence != sequence {
        anyhow::bail!(
            "the ingest answered a request for fragment {sequence} of {device}/{stream} with fragment {} of {}/{}; refused (a substituted fragment: the server is not to be trusted)",
            m.sequence,
            m.device,
            m.stream
        );
    }
    Ok(Held {
        start_unix_ns: m.start_unix_ns,
        prev: m.prev,
    })
}

/// Fetches the newest signed head of the stream into `heads/`, checking
/// that it parses and names the stream; returns the sequence it names.
async fn fetch_head(
    api: &Api,
    device: &Name,
    stream: &Name,
    out: &Path,
) -> anyhow::Result<Option<u64>> {
    let Some(bytes) = api.head(device, stream).await? else {
        eprintln!("the ingest holds no signed head of {device}/{stream}: a withheld tail cannot be detected");
        return Ok(None);
    };
    let signed = SignedHead::parse(&bytes).with_context(|| {
        format!("the ingest's head of {device}/{stream} is not a signed head; refused")
    })?;
    let h = &signed.head;
    if h.device != *device || h.stream != *stream {
        anyhow::bail!(
            "the ingest answered the head of {device}/{stream} with a head of {}/{}; refused",
            h.device,
            h.stream
        );
    }
    let dir = out.join(HEADS_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    durable::replace(
        &dir.join(format!("{:020}.sch", h.signed_at_unix_ns)),
        &bytes,
    )?;
    Ok(Some(h.sequence))
}

/// The restart records fetched into `out`, by the hash an epoch's first
/// fragment names as `prev`: the previous epoch's last sequence where the
/// record names it. For finding the way back across a restart only; the
/// records are verified by `verify`.
fn epoch_starts(out: &Path) -> anyhow::Result<HashMap<ManifestHash, Option<u64>>> {
    let mut starts = HashMap::new();
    for (label, bytes) in crate::restarts::read(out)? {
        let signed = SignedRestart::parse(&bytes)
            .with_context(|| format!("the ingest's restart record {label} is malformed"))?;
        starts.insert(signed.hash().0, signed.restart.previous.map(|p| p.sequence));
    }
    Ok(starts)
}

/// What `complete_ends` works towards.
struct Ends<'a> {
    query: &'a FragmentQuery,
    /// The sequence the camera's newest head names.
    head: Option<u64>,
    /// [`epoch_starts`].
    epochs: &'a HashMap<ManifestHash, Option<u64>>,
}

/// Asks for the fragments the listing should have held at the range's
/// ends, by sequence: before the first one while it starts after the
/// requested start (the fragment that straddles the start is evidence of
/// it; before an epoch's first fragment, the previous epoch's last one
/// that its restart record names), and after the last one up to the
/// requested last sequence or the one the camera's head names. What the
/// server will not give is left for `verify` to name. Returns how many it
/// added.
async fn complete_ends(
    api: &Api,
    device: &Name,
    stream: &Name,
    ends: &Ends<'_>,
    held: &mut BTreeMap<u64, Held>,
    out: &Path,
) -> anyhow::Result<usize> {
    let (query, head) = (ends.query, ends.head);
    let mut added = 0;
    let Some((&first, _)) = held.first_key_value() else {
        return Ok(0);
    };
    let mut seq = first;
    for _ in 0..MAX_EXTRA {
        let Some(h) = held.get(&seq).copied() else {
            break;
        };
        let before_start = query.from_ns.is_some_and(|t| h.start_unix_ns > t)
            || query.from_seq.is_some_and(|s| seq > s);
        if !before_start || seq == 0 || h.prev == ManifestHash::GENESIS {
            break;
        }
        seq = match ends.epochs.get(&h.prev) {
            // The first fragment of an epoch: the previous one ended there.
            Some(Some(previous)) if *previous < seq => *previous,
            // Its end is unknown: nothing to walk back to.
            Some(_) => break,
            None => seq - 1,
        };
        if held.contains_key(&seq) {
            break;
        }
        if !fetch_one(api, device, stream, seq, held, out).await? {
            break;
        }
        added += 1;
    }
    let Some((&last, _)) = held.last_key_value() else {
        return Ok(added);
    };
    let target = match (query.to_seq, head) {
        (Some(t), Some(h)) => t.min(h),
        (Some(t), None) => t,
        // Up to what the camera signed, unless a past end was asked for
        // (the listing answered that one).
        (None, Some(h)) if query.to_ns.is_none() => h,
        _ => last,
    };
    let mut seq = last;
    while seq < target && seq - last < MAX_EXTRA {
        seq += 1;
        if !fetch_one(api, device, stream, seq, held, out).await? {
            break;
        }
        added += 1;
    }
    Ok(added)
}

/// Fetches one fragment by sequence, checks it, writes it; `false` when
/// the ingest does not give it.
async fn fetch_one(
    api: &Api,
    device: &Name,
    stream: &Name,
    sequence: u64,
    held: &mut BTreeMap<u64, Held>,
    out: &Path,
) -> anyhow::Result<bool> {
    let body = match api.fragment(device, stream, sequence).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("fragment {sequence} of {device}/{stream}, needed to cover the range, could not be fetched: {e:#}");
            return Ok(false);
        }
    };
    let h = checked_identity(device, stream, sequence, &body)?;
    durable::replace(&out.join(fragment_file(sequence)), &body)?;
    held.insert(sequence, h);
    Ok(true)
}
