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
/// `0-9 A-Z a-z . + - _ ~`, starting with a letter or digit and not ending
/// with `-` (an empty revision, which dpkg refuses and which would
/// compare equal to the version without it).
pub fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= MAX_VERSION_LEN
        && v.as_bytes()[0].is_ascii_alphanumeric()
        && !v.ends_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-' | b'_' | b'~'))
}

/// Whether `s` is a SHA-256 as the routes name bundles: 64 lowercase hex.
pub fn valid_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Compares two release versions as `dpkg --compare-versions` orders them
/// (our versions have no epoch): the upstream part, before the last `-`,
/// first, then the Debian revision after it. Within each part, runs of
/// digits compare as numbers (`1.9` < `1.10`, `1.02` = `1.2`) and the text
/// between them character by character, where `~` sorts before anything,
/// even the end (`1.2~rc1` < `1.2`: a pre-release is older than its
/// release), then the end, then letters, then the other characters (`1.2`
/// < `1.2.1`, `1.2a` < `1.2.1`).
///
/// This is a total order, as sorting requires: a comparison that is not
/// transitive for some mix of letters and digits would let a published
/// version list panic the sort or offer a camera an older release.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a_upstream, a_revision) = split_revision(a);
    let (b_upstream, b_revision) = split_revision(b);
    compare_part(a_upstream.as_bytes(), b_upstream.as_bytes())
        .then_with(|| compare_part(a_revision.as_bytes(), b_revision.as_bytes()))
}

/// `1.2-3` is upstream `1.2` with the revision `3`; without a `-` the
/// revision is empty (which compares as `0`).
fn split_revision(v: &str) -> (&str, &str) {
    v.rsplit_once('-').unwrap_or((v, ""))
}

/// dpkg's comparison of one part: alternately a run of non-digits, compared
/// character by character by [`weight`], and a run of digits, compared as a
/// number.
fn compare_part(mut a: &[u8], mut b: &[u8]) -> Ordering {
    while !a.is_empty() || !b.is_empty() {
        let (a_text, a_rest) = split_run(a, |c| !c.is_ascii_digit());
        let (b_text, b_rest) = split_run(b, |c| !c.is_ascii_digit());
        let longest = a_text.len().max(b_text.len());
        for i in 0..longest {
            let order = weight(a_text.get(i).copied()).cmp(&weight(b_text.get(i).copied()));
            if order != Ordering::Equal {
                return order;
            }
        }
        let (a_digits, a_rest) = split_run(a_rest, |c| c.is_ascii_digit());
        let (b_digits, b_rest) = split_run(b_rest, |c| c.is_ascii_digit());
        let order = compare_number(a_digits, b_digits);
        if order != Ordering::Equal {
            return order;
        }
        (a, b) = (a_rest, b_rest);
    }
    Ordering::Equal
}

/// The longest prefix of `s` whose bytes are all `pred`, and the rest.
fn split_run(s: &[u8], pred: impl Fn(u8) -> bool) -> (&[u8], &[u8]) {
    let n = s.iter().position(|&c| !pred(c)).unwrap_or(s.len());
    s.split_at(n)
}

/// Two runs of digits as the numbers they write (any length: no overflow).
fn compare_number(a: &[u8], b: &[u8]) -> Ordering {
    let trim = |s: &'_ [u8]| -> usize { s.iter().take_while(|&&c| c == b'0').count() };
    let (a, b) = (&a[trim(a)..], &b[trim(b)..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Where a character of a non-digit run sorts: `~` first, then the end of
/// the run (`None`), then letters, then everything else.
fn weight(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
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
        // Letters sort after the end and before other characters, as dpkg
        // has them.
        assert_eq!(compare_versions("1.2a", "1.2"), Ordering::Greater);
        assert_eq!(compare_versions("1.2a", "1.2.1"), Ordering::Less);
        assert_eq!(compare_versions("1.0", "1.0-0"), Ordering::Equal);
        // Once a cycle: 2 < 10 (numbers), 10 < 1a (text), 1a < 2 (text).
        assert_eq!(compare_versions("2", "10"), Ordering::Less);
        assert_eq!(compare_versions("1a", "10"), Ordering::Less);
        assert_eq!(compare_versions("1a", "2"), Ordering::Less);
        assert_eq!(
            compare_versions(&"9".repeat(63), &format!("1{}", "0".repeat(63))),
            Ordering::Less
        );
    }

    /// A published list of any versions sorts (a comparison that is not a
    /// total order may panic `sort_by`).
    #[test]
    fn a_list_of_mixed_versions_sorts() {
        let mut versions: Vec<String> = ["2", "10", "1a", "1.0~", "1.0", "1_0", "a", "1.0+b", "01"]
            .iter()
            .map(|v| (*v).to_owned())
            .collect();
        versions.sort_by(|a, b| compare_versions(a, b));
        for pair in versions.windows(2) {
            assert!(compare_versions(&pair[0], &pair[1]).is_le(), "{versions:?}");
        }
    }

    #[test]
    fn versions_and_hashes_are_checked() {
        assert!(valid_version("1.2.0+build.5"));
        assert!(!valid_version("1.2-"));
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
        fn comparison_is_transitive(
            a in "[0-9a-c.~+_-]{0,8}",
            b in "[0-9a-c.~+_-]{0,8}",
            c in "[0-9a-c.~+_-]{0,8}",
        ) {
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
