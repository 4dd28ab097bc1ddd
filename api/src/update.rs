//! Signed update delivery (`docs/ref/protocol.md`, Updates): what the
//! ingest offers a camera, the headers a camera reports with each check,
//! and how two release versions compare.
//!
//! The ingest does not vouch for a bundle: the camera's RAUC checks its
//! signature against the camera's own keyring (`docs/design/updates.md`).
//! The offer only says which bundle to fetch and what its bytes hash to.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// The version of the release a camera runs, sent with every check.
pub const INSTALLED_VERSION: &str = "sealcam-installed-version";

/// The outcome of the camera's last update (one line), sent with every
/// check once there is one.
pub const UPDATE_OUTCOME: &str = "sealcam-update-outcome";

/// The longest version string accepted.
pub const MAX_VERSION_LEN: usize = 64;

/// The longest outcome line kept.
pub const MAX_OUTCOME_LEN: usize = 200;

/// `GET /v1/updates/{compatible}`'s answer when a newer bundle is offered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateOffer {
    /// RAUC's `compatible` of the bundle (`sealcam-<board>`).
    pub compatible: String,
    /// The bundle's version, as its manifest says.
    pub version: String,
    /// The bundle's length in bytes.
    pub size: u64,
    /// SHA-256 of the bundle file, 64 lowercase hex digits; it is fetched
    /// from `GET /v1/bundles/{sha256}`.
    pub sha256: String,
}

/// Whether `v` may be a release version: 1 to [`MAX_VERSION_LEN`] of
/// `0-9 A-Z a-z . + - _ ~`, starting with a letter or digit.
pub fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= MAX_VERSION_LEN
        && v.as_bytes()[0].is_ascii_alphanumeric()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-' | b'_' | b'~'))
}

/// Whether `s` is a SHA-256 as the routes name bundles: 64 lowercase hex.
pub fn valid_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Compares two release versions as Debian orders them in the main: a
/// `~` starts a pre-release, older than the release it precedes
/// (`1.2~rc1` < `1.2`, `1.2~rc1` < `1.2~rc2`); the parts are compared
/// component by component (split at `.`, `-`, `+`, `_`): components of
/// digits only compare as numbers, any other pair as text, and a version
/// that is a prefix of another is the older (`1.2` < `1.2.1`, `1.9` <
/// `1.10`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a_release, a_pre) = split_pre_release(a);
    let (b_release, b_pre) = split_pre_release(b);
    compare_components(a_release, b_release).then_with(|| match (a_pre, b_pre) {
        (None, None) => Ordering::Equal,
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some(x), Some(y)) => compare_versions(x, y),
    })
}

/// `1.2~rc1` is `1.2` with the pre-release `rc1`.
fn split_pre_release(v: &str) -> (&str, Option<&str>) {
    match v.split_once('~') {
        Some((release, pre)) => (release, Some(pre)),
        None => (v, None),
    }
}

fn compare_components(a: &str, b: &str) -> Ordering {
    let split =
        |v: &str| -> Vec<String> { v.split(['.', '-', '+', '_']).map(str::to_owned).collect() };
    let (a, b) = (split(a), split(b));
    for (x, y) in a.iter().zip(b.iter()) {
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        let order = if numeric(x) && numeric(y) {
            let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        } else {
            x.cmp(y)
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// An outcome line as the ingest keeps it: at most [`MAX_OUTCOME_LEN`]
/// bytes of printable ASCII, anything else replaced by `?`.
pub fn clean_outcome(line: &str) -> String {
    line.chars()
        .take(MAX_OUTCOME_LEN)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn versions_compare_as_release_numbers() {
        assert_eq!(compare_versions("1.9", "1.10"), Ordering::Less);
        assert_eq!(compare_versions("1.2", "1.2.1"), Ordering::Less);
        assert_eq!(compare_versions("2.0.0", "2.0.0"), Ordering::Equal);
        assert_eq!(compare_versions("2.0.0", "1.99.99"), Ordering::Greater);
        assert_eq!(compare_versions("1.02", "1.2"), Ordering::Equal);
        assert_eq!(compare_versions("1.2-rc1", "1.2-rc2"), Ordering::Less);
        // A pre-release is older than its release: a camera on 1.2 is
        // never "updated" to 1.2~rc1.
        assert_eq!(compare_versions("1.2~rc1", "1.2"), Ordering::Less);
        assert_eq!(compare_versions("1.2~rc1", "1.2~rc2"), Ordering::Less);
        assert_eq!(compare_versions("1.2~rc2", "1.1.9"), Ordering::Greater);
        assert_eq!(compare_versions("0.1.0-1", "99.0"), Ordering::Less);
    }

    #[test]
    fn versions_and_hashes_are_checked() {
        assert!(valid_version("1.2.0+build.5"));
        assert!(!valid_version(""));
        assert!(!valid_version(".1"));
        assert!(!valid_version("1 2"));
        assert!(!valid_version(&"1".repeat(65)));
        assert!(valid_sha256(&"ab".repeat(32)));
        assert!(!valid_sha256(&"AB".repeat(32)));
        assert!(!valid_sha256("ab"));
    }

    #[test]
    fn outcome_lines_are_made_printable_and_short() {
        assert_eq!(clean_outcome("installed 1.2\n"), "installed 1.2?");
        assert_eq!(clean_outcome(&"x".repeat(500)).len(), MAX_OUTCOME_LEN);
    }

    proptest! {
        #[test]
        fn comparison_is_antisymmetric_and_reflexive(a in "[0-9a-z.+~-]{0,20}", b in "[0-9a-z.+~-]{0,20}") {
            prop_assert_eq!(compare_versions(&a, &a), Ordering::Equal);
            prop_assert_eq!(compare_versions(&a, &b), compare_versions(&b, &a).reverse());
        }

        #[test]
        fn comparison_is_transitive(a in "[0-9.~]{0,8}", b in "[0-9.~]{0,8}", c in "[0-9.~]{0,8}") {
            let le = |x: &str, y: &str| compare_versions(x, y) != Ordering::Greater;
            if le(&a, &b) && le(&b, &c) {
                prop_assert!(le(&a, &c), "{a} <= {b} <= {c} but not {a} <= {c}");
            }
        }

        #[test]
        fn any_offer_that_decodes_round_trips(text in "\\PC{0,200}", size in any::<u64>(), version in "[0-9.]{1,10}") {
            let _ = serde_json::from_str::<UpdateOffer>(&text);
            let offer = UpdateOffer { compatible: text, version, size, sha256: "ab".repeat(32) };
            let json = serde_json::to_string(&offer).unwrap();
            prop_assert_eq!(serde_json::from_str::<UpdateOffer>(&json).unwrap(), offer);
        }

        #[test]
        fn cleaning_never_panics(s in "\\PC{0,300}") {
            let c = clean_outcome(&s);
            prop_assert!(c.chars().count() <= MAX_OUTCOME_LEN);
        }
    }
}
