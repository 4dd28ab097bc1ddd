//! The statistics every figure shares: a median with its spread over runs,
//! and nearest-rank percentiles over samples.

use std::fmt;

/// The median of several runs, with their minimum and maximum.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none. The median of an
    /// even count is the mean of the two middle values.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.to_vec();
        v.sort_by(f64::total_cmp);
        let (first, last) = (*v.first()?, *v.last()?);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Some(Self {
            median,
            min: first,
            max: last,
        })
    }
}

/// "median min max", three decimals each.
impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3} {:.3} {:.3}", self.median, self.min, self.max)
    }
}

impl Spread {
    /// "M{unit} (MIN–MAX)" in whole units: "45% (44–47)", "120 ms (110–130)".
    pub fn range(&self, unit: &str) -> String {
        format!(
            "{}{unit} ({}–{})",
            whole(self.median),
            whole(self.min),
            whole(self.max)
        )
    }

    /// "M (min MIN, max MAX)", three decimals: a ratio.
    pub fn min_max(&self) -> String {
        format!(
            "{:.3} (min {:.3}, max {:.3})",
            self.median, self.min, self.max
        )
    }

    /// "M UNIT (min MIN, max MAX)" in whole units.
    pub fn min_max_in(&self, unit: &str) -> String {
        format!(
            "{} {unit} (min {}, max {})",
            whole(self.median),
            whole(self.min),
            whole(self.max)
        )
    }
}

/// A value in whole units, cut toward zero (12.9 ms is shown as 12 ms).
pub fn whole(v: f64) -> i64 {
    v.trunc() as i64
}

/// The value at quantile `q` of sorted `samples`: the sample at index
/// `q × n`, cut, at most the last.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let i = ((q * sorted.len() as f64) as usize).min(last);
    sorted.get(i).copied()
}

/// `part` as a percentage of `whole`.
pub fn share(part: f64, whole: f64) -> f64 {
    100.0 * part / whole
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        assert_eq!(
            Spread::of(&[0.8391]).unwrap().to_string(),
            "0.839 0.839 0.839"
        );
        assert!(Spread::of(&[]).is_none());
        let s = Spread::of(&[0.91, 0.839, 0.763]).unwrap();
        assert_eq!(s.min_max(), "0.839 (min 0.763, max 0.910)");
        let s = Spread::of(&[45.7, 44.2, 47.9]).unwrap();
        assert_eq!(s.range("%"), "45% (44–47)");
        assert_eq!(s.range(" ms"), "45 ms (44–47)");
        assert_eq!(s.min_max_in("MiB"), "45 MiB (min 44, max 47)");
    }

    #[test]
    fn whole_units_cut_toward_zero() {
        assert_eq!(whole(12.9), 12);
        assert_eq!(whole(250.0), 250);
    }

    #[test]
    fn percentiles_index_by_quantile() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(51.0));
        assert_eq!(percentile(&v, 0.99), Some(100.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(share(1.0, 4.0), 25.0);
    }
}
