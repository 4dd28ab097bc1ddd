//! Storage of sealed fragments through `object_store`: a local directory (the
//! default, zero setup) or any S3-compatible bucket (for fleets).
//!
//! ```text
//! devices/<device>/certs/<serial>.pem            device certificates, for verifiers:
//!                                                every one a device has used
//! rosters/<owner fingerprint>/<version:020>.sdr  owner-signed device rosters, as published
//! heads/<device>/<stream>/<hour:010>/<signed_at:020>.sch  signed heads, by hour signed
//! streams/<device>/<stream>/keys/<seq:020>       signed manifest: names the fragment and
//!                                                holds its wrapped data keys
//! streams/<device>/<stream>/data/<seq:020>       sealed payload: the ciphertext
//! streams/<device>/<stream>/times/<end>-<seq>-<start>  empty: the time index
//! streams/<device>/<stream>/indexed              empty: the time index is complete
//! audit/<instance>/<epoch:020>/<segment:010>     the audit trail (see `audit/`)
//! holds/<device>/<stream>/<id>.json              legal holds, kept from retention
//! bundles/<sha256>.raucb                         update bundles, by their hash
//! updates/<compatible>/<sha256>.json             published updates: version, size, hash
//! ```
//!
//! A fragment is stored as two objects so that its keys can be destroyed
//! apart from its ciphertext (deletion by key destruction, `retention.rs`).
//! Every object is written create-only (`If-None-Match: *` on S3, a hard link
//! on a local disk), so several ingest instances can share one bucket: a
//! repeat of the same bytes is recognised, different bytes for a stored
//! sequence are refused, nothing is ever overwritten. A fragment counts as
//! stored once its key object exists; the data object is written first.
//! The local backend has each file's data and its directory on disk before a
//! put returns.
//!
//! * `config.rs`: the `[storage]` section.
//! * `objects.rs`: the generic object layer ([`Store`]: create-only put,
//!   read, list, delete), over `object_store` or the local disk thread.
//! * `layout.rs`: the paths above.
//! * `fragments.rs`: what the objects mean: fragments stored in their hash
//!   chain, read back, their keys destroyed apart from their ciphertext;
//!   device certificates.
//! * `rosters.rs`: owner-signed device rosters, one object per version.
//! * `heads.rs`: cameras' signed heads, one object per head.
//! * `index.rs`: listings by sequence and by time that read what they
//!   return, through the time index.
//! * `holds.rs`: legal holds on streams or time ranges, one object each.
//! * `updates.rs`: update bundles and the index of what is offered.
//! * `disk.rs`: the local backend's disk thread, writing in batches that
//!   share their syncs (group commit).
//! * `create.rs`: how it makes new files durably, create-only.

use sealcam_format::Name;

mod config;
mod create;
mod disk;
mod fragments;
mod heads;
mod holds;
mod index;
mod layout;
mod objects;
mod restarts;
mod rosters;
mod updates;

pub use config::{LocalConfig, S3Config, StorageConfig};
pub use create::direct_io_alignment;
pub use fragments::{parse_signed_manifest, ChainBreak, ChainError, FragmentStream, PutOutcome};
pub use heads::HeadPut;
pub use holds::Hold;
pub use index::{Found, MAX_SPAN_NS};
pub use objects::{Listed, Store};
pub use rosters::RosterPut;
pub use updates::{bundle_path, BundleRange, Published};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage ({store}): {op} {path} failed: {source}")]
    Backend {
        store: String,
        op: &'static str,
        path: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("cannot open storage {store}: {reason}")]
    Open { store: String, reason: String },
    #[error("fragment {device}/{stream}/{sequence} is already stored with different content")]
    Conflict {
        device: Name,
        stream: Name,
        sequence: u64,
    },
    #[error("a roster of version {stored} signed by owner key {owner} is stored already; version {offered} cannot replace it")]
    StaleRoster {
        owner: Name,
        stored: u64,
        offered: u64,
    },
    #[error("version {version} of the roster signed by owner key {owner} is already stored with different content")]
    RosterConflict { owner: Name, version: u64 },
    #[error("a restart record for {device}/{stream} at sequence {first_sequence} is already stored with different content")]
    RestartConflict {
        device: Name,
        stream: Name,
        first_sequence: u64,
    },
    #[error(
        "a different head of {device}/{stream} signed at {signed_at_unix_ns} ns is already stored"
    )]
    HeadConflict {
        device: Name,
        stream: Name,
        signed_at_unix_ns: u64,
    },
    #[error("stored object {path} is damaged: {reason}")]
    Damaged { path: String, reason: String },
}
