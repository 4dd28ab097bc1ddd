//! Where objects are: the path layout of a store (see the table in
//! `store/mod.rs`).

use sealcam_format::Name;

use super::Listed;

/// The sequence number a fragment object is named by.
pub(super) fn sequence_of(l: &Listed) -> Option<u64> {
    l.path.rsplit('/').next()?.parse().ok()
}

pub(super) fn seq_name(sequence: u64) -> String {
    format!("{sequence:020}")
}

pub(super) fn stream_prefix(device: &Name, stream: &Name) -> String {
    format!("streams/{device}/{stream}")
}

pub(super) fn key_path(device: &Name, stream: &Name, sequence: u64) -> String {
    format!(
        "{}/keys/{}",
        stream_prefix(device, stream),
        seq_name(sequence)
    )
}

pub(super) fn data_path(device: &Name, stream: &Name, sequence: u64) -> String {
    format!(
        "{}/data/{}",
        stream_prefix(device, stream),
        seq_name(sequence)
    )
}

/// The directory of a device's certificates.
pub(super) fn certs_prefix(device: &Name) -> String {
    format!("devices/{device}/certs")
}

/// A device certificate, by its serial number (hex).
pub(super) fn cert_path(device: &Name, serial_hex: &str) -> String {
    format!("{}/{serial_hex}.pem", certs_prefix(device))
}

/// The directory of the rosters signed by one owner key.
pub(super) fn rosters_prefix(owner_fingerprint: &Name) -> String {
    format!("rosters/{owner_fingerprint}")
}

/// One version of an owner's roster.
pub(super) fn roster_path(owner_fingerprint: &Name, version: u64) -> String {
    format!(
        "{}/{}.sdr",
        rosters_prefix(owner_fingerprint),
        seq_name(version)
    )
}

/// The directory of a stream's chain restart records.
pub(super) fn restarts_prefix(device: &Name, stream: &Name) -> String {
    format!("restarts/{device}/{stream}")
}

/// A chain restart record, by the sequence its epoch begins at.
pub(super) fn restart_path(device: &Name, stream: &Name, first_sequence: u64) -> String {
    format!(
        "{}/{}.scr",
        restarts_prefix(device, stream),
        seq_name(first_sequence)
    )
}

/// The directory of a stream's signed heads.
pub(super) fn heads_prefix(device: &Name, stream: &Name) -> String {
    format!("heads/{device}/{stream}")
}

/// An hour, in ns: heads are grouped by the hour they were signed in.
pub(super) const HOUR_NS: u64 = 3_600_000_000_000;

/// The heads of a stream signed in one hour (since the epoch).
pub(super) fn head_hour_prefix(device: &Name, stream: &Name, hour: u64) -> String {
    format!("{}/{hour:010}", heads_prefix(device, stream))
}

/// One signed head, by the time the camera signed it.
pub(super) fn head_path(device: &Name, stream: &Name, signed_at_unix_ns: u64) -> String {
    format!(
        "{}/{}.sch",
        head_hour_prefix(device, stream, signed_at_unix_ns / HOUR_NS),
        seq_name(signed_at_unix_ns)
    )
}

/// The directory of a stream's legal holds.
pub(super) fn holds_prefix(device: &Name, stream: &Name) -> String {
    format!("holds/{device}/{stream}")
}

/// One legal hold, by its id.
pub(super) fn hold_path(device: &Name, stream: &Name, id: &str) -> String {
    format!("{}/{id}.json", holds_prefix(device, stream))
}
