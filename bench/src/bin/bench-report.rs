//! bench-report: the statistics, verdicts and tables of the benchmark
//! scripts. The scripts start the servers and processes and hand over each
//! run's raw measurements; this prints each run's figures, appends the
//! rows (medians with min and max, goals, verdicts) to the table file
//! `SEALCAM_BENCH_TABLE`, and prints that table as Markdown.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sealcam_bench::report::{
    camera, ingest, latency, parse, sealing, system, table, Record, ReportError, Row,
};

#[derive(Parser)]
struct Args {
    /// The table file rows are appended to.
    #[arg(long, env = "SEALCAM_BENCH_TABLE")]
    table: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bytes per second from `openssl speed -evp aes-256-gcm` on stdin.
    OpensslGcm,
    /// Bytes per second from criterion's throughput output on stdin.
    CriterionRate,
    /// Sealing against OpenSSL: runs of `before= seal= open= after=`.
    Sealing { runs: Vec<String> },
    /// The device-key signature rows from criterion's output on stdin.
    TpmSign,
    /// The ECDSA verification row from `openssl speed ecdsap256` on stdin.
    Ecdsa,
    /// CPU counters in seconds as PREFIX_busy= PREFIX_idle= [PREFIX_process=].
    Counters {
        prefix: String,
        #[arg(long)]
        pid: Option<u32>,
    },
    /// The log lines of one throughput run (records of ingest-load's
    /// summary, counters and the load's CPU).
    ThroughputRun {
        #[arg(long)]
        run: usize,
        #[arg(long)]
        ingest: String,
        #[arg(long)]
        nginx: String,
    },
    /// The rows of one throughput configuration over its runs.
    Throughput {
        #[arg(long)]
        fragment_bytes: u64,
        #[arg(long)]
        connections: u32,
        #[arg(long)]
        secs: u32,
        #[arg(long)]
        disk: String,
        #[arg(long)]
        ingest: Vec<String>,
        #[arg(long)]
        nginx: Vec<String>,
    },
    /// Many cameras' time to a durable ack, from ingest-load's output files.
    Cameras {
        #[arg(long)]
        cameras: u32,
        #[arg(long)]
        secs: u32,
        #[arg(long)]
        disk: String,
        outputs: Vec<PathBuf>,
    },
    /// Honest cameras with and without slow clients on every port.
    SlowClients {
        #[arg(long)]
        cameras: u32,
        #[arg(long)]
        held: u32,
        #[arg(long)]
        secs: u32,
        /// ingest-load's output without the slow clients (once per run).
        #[arg(long)]
        calm: Vec<PathBuf>,
        /// ingest-load's output with them (once per run).
        #[arg(long)]
        attacked: Vec<PathBuf>,
        /// The ingest's VmHWM under the attack, in KiB (once per run).
        #[arg(long)]
        peak_kib: Vec<f64>,
    },
    /// sealcamd against gst-launch at one frame size: runs of `gst_user=
    /// gst_system= gst_peak_kib= cam_user= cam_system= cam_peak_kib=`.
    Cpu {
        #[arg(long)]
        size: String,
        #[arg(long)]
        secs: u32,
        runs: Vec<String>,
    },
    /// Glass-to-durable latency from each run's directory of key objects.
    Latency {
        #[arg(long)]
        fragment_ms: u32,
        #[arg(long)]
        secs: u32,
        keys: Vec<PathBuf>,
    },
    /// Backlog drain: runs of `t0= t1= b0= b1= stored= recorded=`.
    Drain {
        /// The link's rate, bytes per second.
        #[arg(long)]
        rate: f64,
        runs: Vec<String>,
    },
    /// Resident memory of PIDS at MARK seconds: prints MARK:MIB,MIB,...
    RssSample { mark: String, pids: Vec<u32> },
    /// Bytes PID wrote and the sealed bytes in its SPOOL: written= sealed=.
    WearSample { pid: u32, spool: PathBuf },
    /// Memory through an outage and write amplification.
    Outage {
        /// MARK:MIB,MIB,... as rss-sample printed them.
        #[arg(long)]
        sample: Vec<String>,
        /// written= sealed= as wear-sample printed them, one per camera.
        #[arg(long)]
        wear: Vec<String>,
    },
    /// TPM signatures from sealcamd's log on stdin.
    TpmSignatures {
        #[arg(long)]
        secs: u32,
    },
    /// A TCP port on 127.0.0.1 that was free a moment ago.
    FreePort,
    /// Touches most of the available memory once (see system::touch_memory).
    TouchMemory,
    /// The table so far as Markdown, under the heading TITLE.
    Table { title: String },
}

fn stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    // Read to the end: leaving early would break the pipe of the tool.
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading stdin")?;
    Ok(s)
}

fn records(texts: &[String]) -> Vec<Record> {
    texts.iter().map(|t| Record::parse(t)).collect()
}

fn print_lines(lines: &[String]) {
    for l in lines {
        println!("{l}");
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let table = args.table;
    let rows = |rows: Vec<Row>| -> anyhow::Result<()> {
        let path = table
            .as_deref()
            .context("no table file: set SEALCAM_BENCH_TABLE or --table")?;
        table::append(path, &rows).with_context(|| format!("appending to {}", path.display()))
    };
    let found = |v: Option<f64>, what: &'static str| v.ok_or(ReportError::NotInOutput { what });
    match args.command {
        Command::OpensslGcm => println!(
            "{:.0}",
            found(parse::openssl_gcm(&stdin()?), "AES-256-GCM")?
        ),
        Command::CriterionRate => {
            println!("{:.0}", found(parse::criterion_rate(&stdin()?), "thrpt")?)
        }
        Command::Sealing { runs } => {
            let (lines, r) = sealing::sealing(&records(&runs))?;
            print_lines(&lines);
            rows(r)?;
        }
        Command::TpmSign => {
            let (lines, r) = sealing::tpm_sign(&stdin()?);
            print_lines(&lines);
            rows(r)?;
        }
        Command::Ecdsa => rows(vec![ingest::ecdsa_row(parse::openssl_ecdsa_verifies(
            &stdin()?,
        ))])?,
        Command::Counters { prefix, pid } => println!("{}", system::cpu_counters(&prefix, pid)?),
        Command::ThroughputRun { run, ingest, nginx } => {
            let pair = ingest::Pair {
                ingest: ingest::ServerRun::from_record(&Record::parse(&ingest))?,
                nginx: ingest::ServerRun::from_record(&Record::parse(&nginx))?,
            };
            println!("{}", pair.log(run));
        }
        Command::Throughput {
            fragment_bytes,
            connections,
            secs,
            disk,
            ingest: i,
            nginx: n,
        } => {
            let pairs = records(&i)
                .iter()
                .zip(records(&n).iter())
                .map(|(i, n)| {
                    Ok(ingest::Pair {
                        ingest: ingest::ServerRun::from_record(i)?,
                        nginx: ingest::ServerRun::from_record(n)?,
                    })
                })
                .collect::<Result<Vec<_>, ReportError>>()?;
            let t = ingest::Throughput {
                fragment_bytes,
                connections,
                secs,
                disk,
            };
            rows(t.rows(&pairs)?)?;
        }
        Command::Cameras {
            cameras,
            secs,
            disk,
            outputs,
        } => {
            let texts = outputs
                .iter()
                .map(|p| {
                    std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            rows(ingest::many_cameras(cameras, secs, &disk, &texts)?)?;
        }
        Command::SlowClients {
            cameras,
            held,
            secs,
            calm,
            attacked,
            peak_kib,
        } => {
            let read = |paths: &[PathBuf]| {
                paths
                    .iter()
                    .map(|p| {
                        std::fs::read_to_string(p)
                            .with_context(|| format!("reading {}", p.display()))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            };
            rows(ingest::under_slow_clients(
                cameras,
                held,
                secs,
                &read(&calm)?,
                &read(&attacked)?,
                &peak_kib,
            )?)?;
        }
        Command::Cpu { size, secs, runs } => {
            let (lines, r) = camera::cpu(&size, secs, &records(&runs))?;
            print_lines(&lines);
            rows(r)?;
        }
        Command::Latency {
            fragment_ms,
            secs,
            keys,
        } => {
            let mut runs = Vec::new();
            for dir in &keys {
                runs.extend(latency::glass_to_durable(dir)?);
            }
            let (lines, r) = camera::latency(fragment_ms, secs, &runs)?;
            print_lines(&lines);
            rows(r)?;
        }
        Command::Drain { rate, runs } => {
            let (lines, r) = camera::drain(rate, &records(&runs))?;
            print_lines(&lines);
            rows(r)?;
        }
        Command::RssSample { mark, pids } => {
            let rss = pids
                .iter()
                .map(|&p| system::rss_mib(p))
                .collect::<Result<Vec<_>, _>>()?;
            let shown: Vec<String> = rss.iter().map(f64::to_string).collect();
            eprintln!("   {mark} s: {} MiB", shown.join(" "));
            println!("{mark}:{}", shown.join(","));
        }
        Command::WearSample { pid, spool } => println!(
            "written={} sealed={}",
            system::written_bytes(pid)?,
            system::sealed_bytes(&spool)?
        ),
        Command::Outage { sample, wear } => rows(camera::outage(&sample, &records(&wear))?)?,
        Command::TpmSignatures { secs } => {
            let log = stdin()?;
            let finished = log
                .lines()
                .find(|l| l.contains("sealcamd finished"))
                .map(Record::parse)
                .unwrap_or_default();
            rows(vec![camera::tpm_signatures(secs, &finished)])?;
        }
        Command::FreePort => println!("{}", system::free_port().context("binding a port")?),
        Command::TouchMemory => {
            system::touch_memory()?;
        }
        Command::Table { title } => {
            let path = table.context("no table file: set SEALCAM_BENCH_TABLE or --table")?;
            let r = table::read(&path).with_context(|| format!("reading {}", path.display()))?;
            print!("{}", table::markdown(&title, &r));
        }
    }
    Ok(())
}
