//! `scripts/bench`, parts 1 and 2: sealing and opening throughput against
//! OpenSSL's AES-256-GCM on one core, and the device-key signature time.

use super::parse::{criterion_time, criterion_time_lines};
use super::stats::share;
use super::{spread, Goal, Record, ReportError, Row};

/// Sealing must reach this share (%) of OpenSSL's AES-256-GCM.
pub const SEAL_GOAL: Goal = Goal::AtLeast(60.0);

/// The sealing figures from runs of `before= seal= open= after=` (bytes per
/// second; OpenSSL measured before and after, its reference the mean):
/// each run's log line, and the rows.
pub fn sealing(runs: &[Record]) -> Result<(Vec<String>, Vec<Row>), ReportError> {
    let mut lines = Vec::new();
    let (mut seal_shares, mut open_shares) = (Vec::new(), Vec::new());
    let gb = |v: f64| v / 1e9;
    for (i, r) in runs.iter().enumerate() {
        let reference = (r.num("before")? + r.num("after")?) / 2.0;
        let (seal, open) = (r.num("seal")?, r.num("open")?);
        lines.push(format!(
            "   run {}: openssl {:.2} GB/s, seal {:.2} GB/s, open {:.2} GB/s",
            i + 1,
            gb(reference),
            gb(seal),
            gb(open)
        ));
        seal_shares.push(share(seal, reference));
        open_shares.push(share(open, reference));
    }
    let seal = spread(&seal_shares, "sealing shares")?;
    let open = spread(&open_shares, "opening shares")?;
    let rows = vec![
        Row::judged(
            "sealing 64 KiB frames (AES-256-GCM, framing, BLAKE3), share of openssl's AES-256-GCM, one core",
            seal.range("%"),
            SEAL_GOAL.describe("60%"),
            SEAL_GOAL.judge(seal.median),
        ),
        Row::note(
            "opening 64 KiB frames (the consumer's side), share of openssl",
            open.range("%"),
        ),
    ];
    Ok((lines, rows))
}

/// The device-key signature figures from criterion's output of
/// `hal/benches/tpm_sign.rs`: its time lines, and the rows.
pub fn tpm_sign(output: &str) -> (Vec<String>, Vec<Row>) {
    let lines = criterion_time_lines(output).map(str::to_owned).collect();
    let time = |name| criterion_time(output, name).unwrap_or_default();
    let rows = vec![
        Row::note(
            "one manifest signature by the device key in swtpm (criterion, 95% interval)",
            time("tpm_sign_manifest_swtpm"),
        ),
        Row::note(
            "the same with the insecure software key, for scale",
            time("software_sign_manifest"),
        ),
    ];
    (lines, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_share_is_judged_on_the_median() {
        let runs: Vec<Record> = [
            "before=4e9 after=4e9 seal=2.6e9 open=3e9",
            "before=4e9 after=4e9 seal=2.2e9 open=3e9",
            "before=3.9e9 after=4.1e9 seal=2.4e9 open=3e9",
        ]
        .iter()
        .map(|s| Record::parse(s))
        .collect();
        let (lines, rows) = sealing(&runs).unwrap();
        assert_eq!(
            lines[0],
            "   run 1: openssl 4.00 GB/s, seal 2.60 GB/s, open 3.00 GB/s"
        );
        assert_eq!(rows[0].result, "60% (55–65)");
        assert_eq!(
            (rows[0].goal.as_str(), rows[0].verdict.as_str()),
            ("≥ 60%", "met")
        );
        let slow = [Record::parse("before=4e9 after=4e9 seal=2e9 open=3e9")];
        assert_eq!(sealing(&slow).unwrap().1[0].verdict, "not met");
        assert_eq!(rows[1].verdict, "—");
    }
}
