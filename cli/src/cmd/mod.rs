//! The subcommands of `sealcam`.

pub mod decrypt;
pub mod fetch;
pub mod keygen;
pub mod verify;

/// Formats Unix nanoseconds as RFC 3339 UTC, for reports.
pub(crate) fn rfc3339(unix_ns: u64) -> String {
    let ts = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ns));
    ts.ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{unix_ns} ns"))
}
