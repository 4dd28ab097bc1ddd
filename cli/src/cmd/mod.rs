//! The subcommands of `sealcam`.

pub mod card;
pub mod decrypt;
pub mod events;
pub mod export;
pub mod fetch;
pub mod follow;
pub mod keygen;
pub mod list;
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

/// Reads the consumer private key at `path` (from `sealcam keygen`).
pub(crate) fn consumer_key(
    path: &std::path::Path,
) -> anyhow::Result<sealcam_format::ConsumerSecretKey> {
    use anyhow::Context;
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading consumer key {}", path.display()))?;
    sealcam_format::ConsumerSecretKey::from_pem(&pem)
        .with_context(|| format!("consumer key {}", path.display()))
}

/// The sequences a declared gap says are missing, for reports:
/// `sequences 4..=6 missing`, or `no fragment missing`.
pub(crate) fn missing_sequences(first_sequence: u64, sequence_count: u64) -> String {
    if sequence_count == 0 {
        "no fragment missing".to_owned()
    } else {
        format!(
            "sequences {first_sequence}..={} missing",
            first_sequence.saturating_add(sequence_count - 1)
        )
    }
}

/// A range of a stream to act on, by time or by sequence number.
#[derive(clap::Args, Clone, Debug)]
pub struct RangeArgs {
    /// Start of the range: RFC 3339 time, or a duration ago such as 10m, 2h, 1d.
    #[arg(long)]
    pub from: Option<String>,
    /// End of the range: RFC 3339 time, or a duration ago.
    #[arg(long)]
    pub to: Option<String>,
    /// First sequence number of the range.
    #[arg(long)]
    pub from_seq: Option<u64>,
    /// Last sequence number of the range.
    #[arg(long)]
    pub to_seq: Option<u64>,
}

impl RangeArgs {
    /// The ingest's query for this range.
    pub fn query(&self) -> anyhow::Result<sealcam_api::FragmentQuery> {
        Ok(sealcam_api::FragmentQuery {
            from_ns: self.from.as_deref().map(parse_time).transpose()?,
            to_ns: self.to.as_deref().map(parse_time).transpose()?,
            from_seq: self.from_seq,
            to_seq: self.to_seq,
            ..sealcam_api::FragmentQuery::default()
        })
    }
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
    let (num, unit) = sealcam_base::split_unit(s);
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

#[cfg(test)]
mod tests {
    use super::parse_time;
    use proptest::prelude::*;

    #[test]
    fn multibyte_last_character_is_an_error_not_a_panic() {
        assert!(parse_time("10é").is_err());
        assert!(parse_time("é").is_err());
        assert!(parse_time("").is_err());
        assert!(parse_time("10m").is_ok());
    }

    proptest! {
        #[test]
        fn no_string_panics(s in "\\PC*") {
            let _ = parse_time(&s);
        }

        #[test]
        fn digits_then_any_char_never_panics(n in 0u64..1_000_000, c in any::<char>()) {
            let _ = parse_time(&format!("{n}{c}"));
        }
    }
}
