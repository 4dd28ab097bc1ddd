//! Release versions order as Debian's own tool orders them: every case is
//! compared by `dpkg --compare-versions` too (the test machine is Debian;
//! scripts/install-deps says so).

#![allow(clippy::panic)]

use std::cmp::Ordering;
use std::process::{Command, Stdio};

use proptest::prelude::*;
use sealcam_api::update::{compare_versions, valid_version};

/// dpkg's answer; `None` when dpkg refuses a version as malformed (an
/// empty revision, `1.0-`), which it then does not compare.
fn dpkg_says(a: &str, op: &str, b: &str) -> Option<bool> {
    let status = Command::new("dpkg")
        .args(["--compare-versions", a, op, b])
        .stderr(Stdio::null())
        .status();
    match status.map(|s| s.code()) {
        Ok(Some(0)) => Some(true),
        Ok(Some(1)) => Some(false),
        Ok(_) => None,
        Err(e) => panic!("dpkg --compare-versions cannot run ({e}): this test needs Debian's dpkg"),
    }
}

fn dpkg_order(a: &str, b: &str) -> Option<Ordering> {
    Some(if dpkg_says(a, "lt", b)? {
        Ordering::Less
    } else if dpkg_says(a, "eq", b)? {
        Ordering::Equal
    } else {
        Ordering::Greater
    })
}

#[test]
fn releases_and_pre_releases_order_as_dpkg_has_them() {
    let cases = [
        ("1.9", "1.10"),
        ("1.2~rc1", "1.2"),
        ("1.2~rc1", "1.2~rc2"),
        ("1.2a", "1.2.1"),
        ("1.0-1", "1.0a-1"),
        ("1.0", "1.0-0"),
        ("2", "1a"),
        ("0.1.0-1", "99.0"),
        ("1.2+b1", "1.2.0"),
    ];
    for (a, b) in cases {
        assert_eq!(Some(compare_versions(a, b)), dpkg_order(a, b), "{a} vs {b}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_two_versions_order_as_dpkg_has_them(
        a in "[0-9a-c][0-9a-cA.~+_-]{0,9}",
        b in "[0-9a-c][0-9a-cA.~+_-]{0,9}",
    ) {
        prop_assume!(valid_version(&a) && valid_version(&b));
        let dpkg = dpkg_order(&a, &b);
        prop_assume!(dpkg.is_some());
        prop_assert_eq!(Some(compare_versions(&a, &b)), dpkg, "{} vs {}", a, b);
    }
}
