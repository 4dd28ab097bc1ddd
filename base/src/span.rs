//! Durations as operators write them: `30d`, `12h`, `10m`, `90s`.

use std::time::Duration;

/// Parses a lifetime such as `30d`, `12h`, `90s`.
pub fn parse_lifetime(s: &str) -> Result<Duration, String> {
    let (num, unit) = split_unit(s);
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

/// Splits `s` before its last character (not its last byte: `"7é"` ends
/// in a two-byte character, and splitting inside it would panic).
pub fn split_unit(s: &str) -> (&str, &str) {
    let at = s.char_indices().next_back().map_or(0, |(i, _)| i);
    s.split_at(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn multibyte_last_character_is_an_error_not_a_panic() {
        assert!(parse_lifetime("7é").is_err());
        assert!(parse_lifetime("é").is_err());
        assert!(parse_lifetime("").is_err());
        assert_eq!(split_unit("7é"), ("7", "é"));
    }

    #[test]
    fn units() {
        assert_eq!(parse_lifetime("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_lifetime("2d"), Ok(Duration::from_secs(172_800)));
    }

    proptest! {
        #[test]
        fn no_string_panics(s in "\\PC*") {
            let _ = parse_lifetime(&s);
        }

        #[test]
        fn digits_then_any_char_never_panics(n in 0u64..1_000_000, c in any::<char>()) {
            let _ = parse_lifetime(&format!("{n}{c}"));
        }
    }
}
