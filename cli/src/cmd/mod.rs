//! The subcommands of `sealcam`.

pub mod decrypt;
pub mod fetch;
pub mod follow;
pub mod keygen;
pub mod owner;
pub mod recipients;
pub mod verify;

/// Writes a private key file: mode 0600, never over an existing file, synced.
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    sealcam_base::durable::create_new(path, bytes, 0o600).with_context(|| {
        format!(
            "creating {} (an existing key is never overwritten)",
            path.display()
        )
    })
}

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
