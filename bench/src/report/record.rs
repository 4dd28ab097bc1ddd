//! Raw measurements as the scripts hand them over: one run as
//! `key=value` words (the form `ingest-load` and `sealcamd` print theirs
//! in), so that a figure's inputs are named, not positional.

use std::collections::HashMap;

use super::ReportError;

/// One run's measurements.
#[derive(Clone, Debug, Default)]
pub struct Record(HashMap<String, String>);

impl Record {
    /// The `key=value` words of `text`; other words are ignored (a log
    /// line's message, a unit).
    pub fn parse(text: &str) -> Self {
        Self(
            text.split_whitespace()
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_end_matches(',').to_owned()))
                .collect(),
        )
    }

    /// The text value of `key`, if there is one.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The number at `key`.
    pub fn num(&self, key: &str) -> Result<f64, ReportError> {
        let v = self.text(key).ok_or_else(|| ReportError::Missing {
            key: key.to_owned(),
        })?;
        v.parse().map_err(|_| ReportError::NotANumber {
            key: key.to_owned(),
            value: v.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_become_named_numbers() {
        let r = Record::parse("uploads=12 errors=0 bytes=6000000 seconds=5.0 sealcamd finished");
        assert_eq!(r.num("bytes").unwrap(), 6_000_000.0);
        assert!(matches!(r.num("p99_ms"), Err(ReportError::Missing { .. })));
        let r = Record::parse("x=abc");
        assert!(matches!(r.num("x"), Err(ReportError::NotANumber { .. })));
    }
}
