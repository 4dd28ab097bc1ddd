//! Validated device and stream names.
//!
//! Names appear in file paths on the camera and on the ingest, in URLs and in
//! the authenticated data of every frame, so they are restricted to a small,
//! safe alphabet.

use std::fmt;

/// A device id or stream name: 1 to 64 characters of `A-Z a-z 0-9 . _ -`,
/// not starting with `.` or `-`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

/// Why a string is not a valid [`Name`].
#[derive(Debug, thiserror::Error)]
#[error("invalid name {given:?}: use 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-', not starting with '.' or '-'")]
pub struct InvalidName {
    pub given: String,
}

impl Name {
    pub const MAX_LEN: usize = 64;

    pub fn new(s: &str) -> Result<Self, InvalidName> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && !s.starts_with(['.', '-'])
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidName {
                given: s.to_owned(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Name {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_safe_names() {
        for n in ["cam1", "front-door", "a.b_c", "X"] {
            assert!(Name::new(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn refuses_path_tricks_and_empties() {
        for n in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "-rf",
            "a b",
            &"x".repeat(65),
            "é",
        ] {
            assert!(Name::new(n).is_err(), "{n}");
        }
    }
}
