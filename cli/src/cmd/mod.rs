//! The subcommands of `sealcam`.

pub mod decrypt;
pub mod export;
pub mod fetch;
pub mod follow;
pub mod keygen;
pub mod owner;
pub mod recipients;
pub mod roster;
pub mod verify;
pub mod verify_bundle;

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

/// Parses RFC 3339 or "<n>s|m|h|d" (that long before now) to Unix ns.
pub(crate) fn parse_time(s: &str) -> anyhow::Result<u64> {
    use anyhow::Context;
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return u64::try_from(t.unix_timestamp_nanos()).context("time before 1970");
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = num.parse().with_context(|| {
        format!(
            "{s:?} is neither an RFC 3339 time (2026-01-31T12:00:00Z) nor a duration (10m, 2h, 1d)"
        )
    })?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => anyhow::bail!("{s:?}: durations end in s, m, h or d"),
    };
    let secs = n
        .checked_mul(unit)
        .with_context(|| format!("{s:?} is too long ago"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let at = now.saturating_sub(std::time::Duration::from_secs(secs));
    Ok(u64::try_from(at.as_nanos()).unwrap_or(u64::MAX))
}
