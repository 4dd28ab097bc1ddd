//! `scripts/bench-ingest`: the ingest's throughput per CPU-second against
//! nginx receiving the same uploads, and many cameras' time to a durable
//! acknowledgement.

use super::{spread, Goal, Record, ReportError, Row};

/// At 500 kB fragments over 64 connections, the ingest's MiB per CPU-second
/// of the machine must be at least this share of nginx's.
pub const THROUGHPUT_GOAL: Goal = Goal::AtLeast(0.80);
/// The many cameras' p99 time to a durable acknowledgement, in ms.
pub const ACK_GOAL: Goal = Goal::AtMost(250.0);
/// Honest cameras' p99 time to a durable acknowledgement while slow
/// clients hold connections on every port, as a multiple of it without.
pub const SLOW_CLIENTS_GOAL: Goal = Goal::AtMost(1.5);

/// One server's run under `ingest-load`, from its record: the load's
/// summary (`bytes=`, `uploads=`), CPU counters in seconds before
/// (`start_*`), after (`end_*`) and after a closing sync (`synced_busy=`),
/// and the load generator's own CPU (`load_user=`, `load_system=`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServerRun {
    pub bytes: f64,
    pub uploads: f64,
    /// CPU seconds of the server process alone.
    pub process_cpu: f64,
    /// Busy CPU seconds of the machine, closing sync included, less the
    /// load generator's.
    pub machine_cpu: f64,
    /// The share (%) of the machine's CPU time left idle while the load ran.
    pub idle_percent: f64,
}

impl ServerRun {
    pub fn from_record(r: &Record) -> Result<Self, ReportError> {
        let busy = r.num("end_busy")? - r.num("start_busy")?;
        let idle = r.num("end_idle")? - r.num("start_idle")?;
        Ok(Self {
            bytes: r.num("bytes")?,
            uploads: r.num("uploads")?,
            process_cpu: r.num("end_process")? - r.num("start_process")?,
            machine_cpu: r.num("synced_busy")?
                - r.num("start_busy")?
                - r.num("load_user")?
                - r.num("load_system")?,
            idle_percent: 100.0 * idle / (idle + busy),
        })
    }

    /// MiB received per CPU-second of the process.
    pub fn per_process_cpu(&self) -> f64 {
        self.bytes / 1_048_576.0 / self.process_cpu
    }

    /// MiB received per CPU-second of the machine.
    pub fn per_machine_cpu(&self) -> f64 {
        self.bytes / 1_048_576.0 / self.machine_cpu
    }
}

/// One interleaved run: the ingest's and nginx's.
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    pub ingest: ServerRun,
    pub nginx: ServerRun,
}

impl Pair {
    pub fn by_process(&self) -> f64 {
        self.ingest.per_process_cpu() / self.nginx.per_process_cpu()
    }

    pub fn by_machine(&self) -> f64 {
        self.ingest.per_machine_cpu() / self.nginx.per_machine_cpu()
    }

    /// The run's log lines.
    pub fn log(&self, run: usize) -> String {
        let (i, n) = (&self.ingest, &self.nginx);
        format!(
            "run {run}: sealcam-ingest {} uploads, {:.1} MiB per process CPU-s, {:.1} per machine CPU-s, machine {:.0} % idle\n       \
             nginx          {} uploads, {:.1} MiB per process CPU-s, {:.1} per machine CPU-s, machine {:.0} % idle\n       \
             ratio: {:.2} by process, {:.2} by machine",
            i.uploads, i.per_process_cpu(), i.per_machine_cpu(), i.idle_percent,
            n.uploads, n.per_process_cpu(), n.per_machine_cpu(), n.idle_percent,
            self.by_process(), self.by_machine()
        )
    }
}

/// One throughput configuration: fragment size and connections, and how
/// it ran.
#[derive(Clone, Debug)]
pub struct Throughput {
    pub fragment_bytes: u64,
    pub connections: u32,
    pub secs: u32,
    /// Where the servers wrote ("a fresh ext4 with its journal", ...).
    pub disk: String,
}

impl Throughput {
    /// The goal applies where neither server leaves the machine idle: the
    /// default camera's 500 kB fragments over 64 connections.
    pub fn goal(&self) -> Option<Goal> {
        (self.fragment_bytes == 500_000 && self.connections == 64).then_some(THROUGHPUT_GOAL)
    }

    /// The configuration's three rows over its runs.
    pub fn rows(&self, runs: &[Pair]) -> Result<Vec<Row>, ReportError> {
        let collect = |f: fn(&Pair) -> f64| runs.iter().map(f).collect::<Vec<_>>();
        let machine = spread(&collect(Pair::by_machine), "ratios by machine")?;
        let process = spread(&collect(Pair::by_process), "ratios by process")?;
        let idle_i = spread(&collect(|p| p.ingest.idle_percent), "idle shares")?;
        let idle_n = spread(&collect(|p| p.nginx.idle_percent), "idle shares")?;
        let what = if self.fragment_bytes == 500_000 {
            "of the default camera profile (2000 kbit/s)"
        } else {
            "of a 500 kbit/s camera"
        };
        let figure = format!(
            "ingest ÷ nginx, {} kB fragments {what}, MiB received and on disk per CPU-second of the machine (server and the kernel work of its writes, closing sync), mutual TLS, {} connections, {} × {} s, each on {}",
            self.fragment_bytes / 1000,
            self.connections,
            runs.len(),
            self.secs,
            self.disk
        );
        let first = match self.goal() {
            Some(goal) => Row::judged(
                figure,
                machine.min_max(),
                goal.describe("0.80"),
                goal.judge(machine.median),
            ),
            None => Row::note(figure, machine.min_max()),
        };
        Ok(vec![
            first,
            Row::note(
                "the same per CPU-second of the server process alone (nginx's writeback is not charged to it)",
                process.min_max(),
            ),
            Row::note(
                "the machine's idle share during those runs, ingest / nginx",
                format!("{:.0} % / {:.0} %", idle_i.median, idle_n.median),
            ),
        ])
    }
}

/// The row of OpenSSL's ECDSA P-256 verifications per second, for scale.
pub fn ecdsa_row(verifies: Option<String>) -> Row {
    Row::note(
        "ECDSA P-256 verifications per second, OpenSSL, one core (the ingest makes one per fragment, nginx none)",
        verifies.unwrap_or_else(|| "?".into()),
    )
}

/// The many-cameras rows from each run's `ingest-load` output: p99 on open
/// connections (its summary line), and of each camera's first upload (its
/// `first uploads` line).
pub fn many_cameras(
    cameras: u32,
    secs: u32,
    disk: &str,
    outputs: &[String],
) -> Result<Vec<Row>, ReportError> {
    let mut open = Vec::new();
    let mut first = Vec::new();
    for out in outputs {
        for line in out.lines() {
            let r = Record::parse(line);
            if line.starts_with("first uploads") {
                first.push(r.num("p99_ms")?);
            } else if r.text("p99_ms").is_some() {
                open.push(r.num("p99_ms")?);
            }
        }
    }
    let open = spread(&open, "p99 on open connections")?;
    let first = match super::Spread::of(&first) {
        Some(s) => format!("p99 {}", s.range(" ms")),
        None => "?".into(),
    };
    Ok(vec![
        Row::judged(
            format!(
                "{cameras} cameras, a fragment every 2 s each: p99 time to durable ack, open connections, {} × {secs} s, on {disk}",
                outputs.len()
            ),
            open.range(" ms"),
            ACK_GOAL.describe("250 ms"),
            ACK_GOAL.judge(open.median),
        ),
        Row::note(
            "the same, each camera's first upload (opens its mutual-TLS connection)",
            first,
        ),
    ])
}

/// The p99 on open connections of each of ingest-load's outputs.
fn open_p99s(outputs: &[String]) -> Result<Vec<f64>, ReportError> {
    let mut p99 = Vec::new();
    for out in outputs {
        for line in out.lines().filter(|l| !l.starts_with("first uploads")) {
            let r = Record::parse(line);
            if r.text("p99_ms").is_some() {
                p99.push(r.num("p99_ms")?);
            }
        }
    }
    Ok(p99)
}

/// Honest cameras with and without slow clients holding `held`
/// connections on each port (`calm` and `attacked`: ingest-load's
/// outputs), and the ingest's peak resident memory under the attack.
pub fn under_slow_clients(
    cameras: u32,
    held: u32,
    secs: u32,
    calm: &[String],
    attacked: &[String],
    peaks_kib: &[f64],
) -> Result<Vec<Row>, ReportError> {
    let calm = spread(&open_p99s(calm)?, "p99 without slow clients")?;
    let attacked = spread(&open_p99s(attacked)?, "p99 with slow clients")?;
    let ratio = attacked.median / calm.median;
    let peak: Vec<f64> = peaks_kib.iter().map(|k| k / 1024.0).collect();
    Ok(vec![
        Row::judged(
            format!(
                "{cameras} cameras while slow clients hold {held} connections on each port: p99 time to durable ack, with / without, {secs} s"
            ),
            format!(
                "{ratio:.2} × ({} with, {} without)",
                attacked.range(" ms"),
                calm.range(" ms")
            ),
            SLOW_CLIENTS_GOAL.describe("1.5 ×"),
            SLOW_CLIENTS_GOAL.judge(ratio),
        ),
        Row::note(
            "the ingest's peak resident memory under that attack",
            spread(&peak, "peak resident memory")?.range(" MiB"),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_clients_are_judged_on_the_ratio_of_p99s() {
        use crate::report::Verdict;
        let out = |p99: f64| {
            format!("first uploads, with connection setup: count=5 p50_ms=1 p99_ms=900 max_ms=900\nuploads=10 errors=0 bytes=1 seconds=1 p50_ms=1 p90_ms=1 p99_ms={p99} max_ms=1\n")
        };
        let rows =
            under_slow_clients(500, 2000, 30, &[out(100.0)], &[out(140.0)], &[204_800.0]).unwrap();
        assert!(rows[0].result.starts_with("1.40 ×"), "{}", rows[0].result);
        assert_eq!(rows[0].verdict, Verdict::Met.to_string());
        assert!(rows[1].result.starts_with("200 MiB"), "{}", rows[1].result);
        let rows = under_slow_clients(1, 1, 1, &[out(100.0)], &[out(160.0)], &[1.0]).unwrap();
        assert_eq!(rows[0].verdict, Verdict::NotMet.to_string());
    }

    fn server(bytes: f64, process: f64, machine: f64) -> ServerRun {
        ServerRun {
            bytes,
            uploads: bytes / 500_000.0,
            process_cpu: process,
            machine_cpu: machine,
            idle_percent: 3.0,
        }
    }

    #[test]
    fn a_run_record_gives_cpu_and_idle_share() {
        let r = Record::parse(
            "uploads=100 errors=0 bytes=52428800 seconds=5.0 p50_ms=1 \
             start_busy=100 start_idle=50 start_process=10 \
             end_busy=108 end_idle=52 end_process=14 synced_busy=109 \
             load_user=2.5 load_system=0.5",
        );
        let s = ServerRun::from_record(&r).unwrap();
        assert_eq!(
            (s.process_cpu, s.machine_cpu, s.idle_percent),
            (4.0, 6.0, 20.0)
        );
        assert_eq!(s.per_process_cpu(), 12.5);
    }

    #[test]
    fn throughput_goal_only_at_64_connections_of_500_kb() {
        // 50 MiB per machine-second against 60: 0.833.
        let pair = Pair {
            ingest: server(50.0 * 1_048_576.0, 2.0, 1.0),
            nginx: server(60.0 * 1_048_576.0, 1.0, 1.0),
        };
        let mut t = Throughput {
            fragment_bytes: 500_000,
            connections: 64,
            secs: 15,
            disk: "the work directory".into(),
        };
        let rows = t.rows(&[pair]).unwrap();
        assert_eq!(rows[0].result, "0.833 (min 0.833, max 0.833)");
        assert_eq!(
            (rows[0].goal.as_str(), rows[0].verdict.as_str()),
            ("≥ 0.80", "met")
        );
        assert_eq!(rows[1].result, "0.417 (min 0.417, max 0.417)");
        assert_eq!(rows[2].result, "3 % / 3 %");
        let slow = Pair {
            nginx: server(70.0 * 1_048_576.0, 1.0, 1.0),
            ..pair
        };
        assert_eq!(t.rows(&[slow]).unwrap()[0].verdict, "not met");
        t.connections = 8;
        assert_eq!(t.rows(&[pair]).unwrap()[0].verdict, "—");
        assert!(pair
            .log(1)
            .contains("ratio: 0.42 by process, 0.83 by machine"));
    }

    #[test]
    fn many_cameras_judged_on_open_connections() {
        let out = |p99: f64, first: f64| {
            format!(
                "first uploads, with connection setup: count=100 p50_ms=30.0 p99_ms={first} max_ms=90.0\n\
                 uploads=500 errors=0 bytes=1 seconds=10.0 p50_ms=20.0 p90_ms=40.0 p99_ms={p99} max_ms=300.0\n"
            )
        };
        let rows = many_cameras(
            100,
            10,
            "d",
            &[out(120.4, 80.0), out(260.0, 85.0), out(130.0, 70.0)],
        )
        .unwrap();
        assert_eq!(rows[0].result, "130 ms (120–260)");
        assert_eq!(rows[0].verdict, "met");
        assert_eq!(rows[1].result, "p99 80 ms (70–85)");
        let rows = many_cameras(100, 10, "d", &[out(251.0, 80.0)]).unwrap();
        assert_eq!(rows[0].verdict, "not met");
    }
}
