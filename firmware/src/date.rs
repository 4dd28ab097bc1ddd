//! Times in messages: RFC 3339, as the journal and the certificates' tools
//! write them.

/// `unix` (seconds) as RFC 3339 UTC; the bare number when out of range.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("unix {unix}"))
}

/// `unix` (seconds, unsigned) as RFC 3339 UTC; the bare number when out
/// of range.
pub fn rfc3339_u64(unix: u64) -> String {
    match i64::try_from(unix) {
        Ok(t) => rfc3339(t),
        Err(_) => format!("unix {unix}"),
    }
}

/// Now, in Unix seconds; 0 for a clock set before 1970.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_utc_and_absurd_ones_as_numbers() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), format!("unix {}", i64::MAX));
        assert_eq!(rfc3339_u64(86_400), "1970-01-02T00:00:00Z");
        assert_eq!(rfc3339_u64(u64::MAX), format!("unix {}", u64::MAX));
    }
}
