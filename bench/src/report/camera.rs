//! `scripts/bench-camera`: sealcamd against a bare gst-launch pipeline,
//! glass-to-durable latency, backlog drain, memory through an outage,
//! write amplification and TPM signatures.

use super::latency::Latency;
use super::stats::{share, whole};
use super::{nums, spread, Goal, Record, ReportError, Row};

/// sealcamd's CPU seconds against gst-launch's.
pub const CPU_GOAL: Goal = Goal::AtMost(1.05);
/// sealcamd's peak RSS over gst-launch's, MiB.
pub const RSS_GOAL: Goal = Goal::AtMost(32.0);
/// The share (%) of a throttled link a backlog drain fills.
pub const DRAIN_GOAL: Goal = Goal::AtLeast(90.0);
/// Bytes written per sealed byte spooled.
pub const WEAR_GOAL: Goal = Goal::AtMost(1.05);
/// Resident memory through an outage, MiB; and flat: the last sample at
/// most this factor of the first.
pub const OUTAGE_RSS_MIB: f64 = 32.0;
pub const OUTAGE_FLAT: f64 = 1.1;

/// CPU and memory at one frame size, from runs of `gst_user= gst_system=
/// gst_peak_kib= cam_user= cam_system= cam_peak_kib=`.
pub fn cpu(size: &str, secs: u32, runs: &[Record]) -> Result<(Vec<String>, Vec<Row>), ReportError> {
    let mut lines = Vec::new();
    let (mut ratios, mut overheads) = (Vec::new(), Vec::new());
    for (i, r) in runs.iter().enumerate() {
        let gst = r.num("gst_user")? + r.num("gst_system")?;
        let cam = r.num("cam_user")? + r.num("cam_system")?;
        let (gm, cm) = (r.num("gst_peak_kib")?, r.num("cam_peak_kib")?);
        lines.push(format!(
            "   {size} run {}: gst-launch {gst:.1} CPU s, {gm} KiB peak; sealcamd {cam:.1} CPU s, {cm} KiB peak",
            i + 1
        ));
        ratios.push(cam / gst);
        overheads.push(whole((cm - gm) / 1024.0) as f64);
    }
    let ratio = spread(&ratios, "CPU ratios")?;
    let overhead = spread(&overheads, "peak RSS differences")?;
    let rows = vec![
        Row::judged(
            format!(
                "CPU seconds, sealcamd ÷ gst-launch, {size}@30, {} × {secs} s",
                runs.len()
            ),
            ratio.min_max(),
            CPU_GOAL.describe("1.05"),
            CPU_GOAL.judge(ratio.median),
        ),
        Row::judged(
            format!("peak RSS, sealcamd − gst-launch, {size}@30"),
            overhead.min_max_in("MiB"),
            RSS_GOAL.describe("32 MiB"),
            RSS_GOAL.judge(overhead.median),
        ),
    ];
    Ok((lines, rows))
}

/// Glass-to-durable latency for one fragment length over runs: each run's
/// log line, and the row (judged on the p50, which must stay within 250 ms
/// of the fragment's length).
pub fn latency(
    fragment_ms: u32,
    secs: u32,
    runs: &[Latency],
) -> Result<(Vec<String>, Vec<Row>), ReportError> {
    let lines = runs
        .iter()
        .enumerate()
        .map(|(i, l)| {
            format!(
                "   {fragment_ms} ms fragments, run {}: p50 {:.0} ms, p99 {:.0} ms over {} frames",
                i + 1,
                l.p50,
                l.p99,
                l.frames
            )
        })
        .collect();
    // Whole ms, as each run shows them.
    let p50 = spread(
        &runs.iter().map(|l| l.p50.round()).collect::<Vec<_>>(),
        "p50s",
    )?;
    let p99 = spread(
        &runs.iter().map(|l| l.p99.round()).collect::<Vec<_>>(),
        "p99s",
    )?;
    let limit = f64::from(fragment_ms + 250);
    let goal = Goal::AtMost(limit);
    let row = Row::judged(
        format!(
            "glass-to-durable, {fragment_ms} ms fragments, {} × {secs} s",
            runs.len()
        ),
        format!("p50 {}, p99 {}", p50.range(" ms"), p99.range(" ms")),
        format!("p50 {}", goal.describe(&format!("{limit} ms"))),
        goal.judge(p50.median),
    );
    Ok((lines, vec![row]))
}

/// Fragments the newest stored one is behind the newest recorded: the
/// ingest's key object name (a zero-padded sequence) and the spool's file
/// name (`SEQ.scf`); 0 when either is missing.
pub fn fragments_behind(stored: Option<&str>, recorded: Option<&str>) -> u64 {
    let seq = |s: &str| s.split('.').next().and_then(|n| n.parse::<u64>().ok());
    let stored = stored.and_then(seq).unwrap_or(0);
    match recorded.and_then(seq) {
        Some(r) => r.saturating_sub(stored),
        None => 0,
    }
}

/// The backlog drain from runs of `t0= t1= b0= b1=` (seconds, bytes through
/// the link) and `stored= recorded=` (see [`fragments_behind`]) on a link
/// throttled to `rate` bytes per second.
pub fn drain(rate: f64, runs: &[Record]) -> Result<(Vec<String>, Vec<Row>), ReportError> {
    let mut lines = Vec::new();
    let (mut shares, mut behinds) = (Vec::new(), Vec::new());
    for (i, r) in runs.iter().enumerate() {
        let secs = r.num("t1")? - r.num("t0")?;
        let link = share(r.num("b1")? - r.num("b0")?, rate * secs);
        let behind = fragments_behind(r.text("stored"), r.text("recorded"));
        lines.push(format!(
            "   run {}: {link:.1}% of the link for {secs:.1} s; live {behind} fragments behind at the end",
            i + 1
        ));
        shares.push(link);
        behinds.push(behind as f64);
    }
    let link = spread(&shares, "link shares")?;
    let behind = spread(&behinds, "fragments behind")?;
    let row = Row::judged(
        format!(
            "backlog drain, 1 Mbit/s camera on a 3 Mbit/s link, {} runs",
            runs.len()
        ),
        format!(
            "{}% of the link ({}–{}); live at most {} fragment(s) behind",
            whole(link.median),
            whole(link.min),
            whole(link.max),
            whole(behind.max)
        ),
        DRAIN_GOAL.describe("90%"),
        DRAIN_GOAL.judge(link.median),
    );
    Ok((lines, vec![row]))
}

/// Memory through an outage and write amplification: `samples` are
/// "MARK:RSS,RSS,..." (seconds into the outage, each camera's MiB), `wear`
/// records of `written= sealed=` bytes per camera.
pub fn outage(samples: &[String], wear: &[Record]) -> Result<Vec<Row>, ReportError> {
    let mut series = Vec::new();
    for s in samples {
        let (mark, values) = s.split_once(':').unwrap_or((s, ""));
        let rss: Vec<f64> = values
            .split(',')
            .map(|v| {
                v.parse().map_err(|_| ReportError::NotANumber {
                    key: format!("RSS at {mark} s"),
                    value: v.to_owned(),
                })
            })
            .collect::<Result<_, _>>()?;
        series.push((mark.to_owned(), spread(&rss, "RSS samples")?.median));
    }
    let (first, peak) = match (series.first(), series.last()) {
        (Some(f), Some(l)) => (f.1, l.1),
        _ => {
            return Err(ReportError::NoValues {
                what: "RSS samples",
            })
        }
    };
    let flat = peak <= OUTAGE_RSS_MIB && peak <= first * OUTAGE_FLAT;
    let shown: Vec<String> = series
        .iter()
        .map(|(mark, mib)| format!("{mark} s {}", whole(*mib)))
        .collect();
    let amps: Vec<f64> = nums(wear, "written")?
        .iter()
        .zip(nums(wear, "sealed")?)
        .map(|(w, s)| w / s)
        .collect();
    let amp = spread(&amps, "write amplification")?;
    Ok(vec![
        Row::judged(
            format!(
                "sealcamd resident memory during an outage at 2 Mbit/s, median of {} (MiB)",
                wear.len()
            ),
            shown.join(", "),
            "≤ 32 MiB, flat",
            super::Verdict::from(flat),
        ),
        Row::judged(
            format!(
                "write amplification (bytes written ÷ sealed bytes spooled), {} cameras",
                wear.len()
            ),
            amp.min_max(),
            WEAR_GOAL.describe("1.05"),
            WEAR_GOAL.judge(amp.median),
        ),
    ])
}

/// TPM signatures over `secs` of streaming, from sealcamd's closing log
/// line (`fragments=`, `key_signatures=`): one per fragment and one per
/// connection.
pub fn tpm_signatures(secs: u32, finished: &Record) -> Row {
    let fragments = finished.num("fragments").ok();
    let signatures = finished.num("key_signatures").ok();
    let shown = |v: Option<f64>| v.map_or("?".to_owned(), |v| v.to_string());
    let per_hour = (signatures.unwrap_or(0.0) * 3600.0 / f64::from(secs)).round();
    let met = matches!((signatures, fragments), (Some(s), Some(f)) if s <= f + 1.0);
    Row::judged(
        format!("TPM signatures, {secs} s of streaming on swtpm"),
        format!(
            "{} for {} fragments and one connection (~{per_hour} per hour)",
            shown(signatures),
            shown(fragments)
        ),
        "one per fragment + one per connection",
        super::Verdict::from(met),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_against_gst_launch() {
        let runs = [Record::parse(
            "gst_user=9.0 gst_system=1.0 gst_peak_kib=40960 cam_user=10.0 cam_system=0.4 cam_peak_kib=61440",
        )];
        let (lines, rows) = cpu("1280x720", 60, &runs).unwrap();
        assert_eq!(lines[0], "   1280x720 run 1: gst-launch 10.0 CPU s, 40960 KiB peak; sealcamd 10.4 CPU s, 61440 KiB peak");
        assert_eq!(rows[0].result, "1.040 (min 1.040, max 1.040)");
        assert_eq!(rows[0].verdict, "met");
        assert_eq!(rows[1].result, "20 MiB (min 20, max 20)");
        assert_eq!(
            (rows[1].goal.as_str(), rows[1].verdict.as_str()),
            ("≤ 32 MiB", "met")
        );
    }

    #[test]
    fn latency_judged_on_p50_against_fragment_length() {
        let l = |p50, p99| Latency {
            p50,
            p99,
            frames: 300,
        };
        let (lines, rows) = latency(
            2000,
            60,
            &[l(2100.4, 2300.0), l(2260.0, 2500.0), l(2200.0, 2400.0)],
        )
        .unwrap();
        assert_eq!(
            lines[0],
            "   2000 ms fragments, run 1: p50 2100 ms, p99 2300 ms over 300 frames"
        );
        assert_eq!(
            rows[0].result,
            "p50 2200 ms (2100–2260), p99 2400 ms (2300–2500)"
        );
        assert_eq!(
            (rows[0].goal.as_str(), rows[0].verdict.as_str()),
            ("p50 ≤ 2250 ms", "met")
        );
        let (_, rows) = latency(500, 10, &[l(800.0, 900.0)]).unwrap();
        assert_eq!(rows[0].verdict, "not met");
    }

    #[test]
    fn drain_share_and_fragments_behind() {
        assert_eq!(
            fragments_behind(Some("00000000000000000012"), Some("14.scf")),
            2
        );
        assert_eq!(
            fragments_behind(Some("00000000000000000015"), Some("14.scf")),
            0
        );
        assert_eq!(fragments_behind(None, None), 0);
        let run = Record::parse(
            "t0=100 t1=110 b0=0 b1=3450000 stored=00000000000000000012 recorded=13.scf",
        );
        let (lines, rows) = drain(375_000.0, &[run]).unwrap();
        assert_eq!(
            lines[0],
            "   run 1: 92.0% of the link for 10.0 s; live 1 fragments behind at the end"
        );
        assert_eq!(
            rows[0].result,
            "92% of the link (92–92); live at most 1 fragment(s) behind"
        );
        assert_eq!(rows[0].verdict, "met");
    }

    #[test]
    fn outage_memory_must_stay_flat_and_small() {
        let wear = [Record::parse("written=1030 sealed=1000")];
        let rows = outage(&["5:20.5".into(), "10:21".into(), "20:22.0".into()], &wear).unwrap();
        assert_eq!(rows[0].result, "5 s 20, 10 s 21, 20 s 22");
        assert_eq!(rows[0].verdict, "met");
        assert_eq!(rows[1].result, "1.030 (min 1.030, max 1.030)");
        let rows = outage(&["5:20".into(), "20:23".into()], &wear).unwrap();
        assert_eq!(rows[0].verdict, "not met");
    }

    #[test]
    fn tpm_one_signature_per_fragment_and_connection() {
        let ok = Record::parse("INFO sealcamd finished fragments=30 key_signatures=31");
        let row = tpm_signatures(60, &ok);
        assert_eq!(
            row.result,
            "31 for 30 fragments and one connection (~1860 per hour)"
        );
        assert_eq!(row.verdict, "met");
        let bad = Record::parse("fragments=30 key_signatures=40");
        assert_eq!(tpm_signatures(60, &bad).verdict, "not met");
        assert_eq!(tpm_signatures(60, &Record::default()).verdict, "not met");
    }
}
