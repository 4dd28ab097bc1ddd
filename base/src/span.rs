//! Durations as operators write them: `30d`, `12h`, `10m`, `90s`.

use std::time::Duration;

/// Parses a lifetime such as `30d`, `12h`, `90s`.
pub fn parse_lifetime(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a lifetime; write e.g. 30d, 12h, 10m or 90s"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: a lifetime ends in s, m, h or d")),
    };
    n.checked_mul(unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}
