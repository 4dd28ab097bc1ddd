//! Goals and verdicts: whether a figure meets the target it is held to.

use std::fmt;

/// A figure's target: at least or at most a limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

/// Whether a figure met its goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Met,
    NotMet,
}

impl Goal {
    pub fn judge(self, value: f64) -> Verdict {
        Verdict::from(match self {
            Goal::AtLeast(limit) => value >= limit,
            Goal::AtMost(limit) => value <= limit,
        })
    }

    /// "≥ LIMIT" or "≤ LIMIT", the limit shown as `shown` (e.g. "0.80",
    /// "250 ms").
    pub fn describe(self, shown: &str) -> String {
        match self {
            Goal::AtLeast(_) => format!("≥ {shown}"),
            Goal::AtMost(_) => format!("≤ {shown}"),
        }
    }
}

impl From<bool> for Verdict {
    fn from(met: bool) -> Self {
        if met {
            Verdict::Met
        } else {
            Verdict::NotMet
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Met => "met",
            Verdict::NotMet => "not met",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_include_their_limit() {
        assert_eq!(Goal::AtLeast(0.80).judge(0.80), Verdict::Met);
        assert_eq!(Goal::AtLeast(0.80).judge(0.763), Verdict::NotMet);
        assert_eq!(Goal::AtMost(250.0).judge(250.0), Verdict::Met);
        assert_eq!(Goal::AtMost(1.05).judge(1.2), Verdict::NotMet);
        assert_eq!(Verdict::NotMet.to_string(), "not met");
        assert_eq!(Goal::AtMost(250.0).describe("250 ms"), "≤ 250 ms");
    }
}
