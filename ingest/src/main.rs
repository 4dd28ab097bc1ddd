//! sealcam-ingest: the receiving service. Its certificates and revocations
//! come from the CA service (`sealcam-ca`); this binary holds no CA key.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sealcam_format::Name;
use sealcam_ingest::config::{IngestConfig, Span};
use sealcam_ingest::service::{ServeConfig, Server};
use sealcam_ingest::store::StorageConfig;

mod hold_cmd;
mod update_cmd;

/// mimalloc instead of glibc's malloc: each upload allocates and frees
/// buffers of its body's size on whichever runtime thread runs it, and
/// glibc's per-arena locking, chunk coalescing and trimming of them were
/// about 7 % of the ingest's CPU under load (`docs/history/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sealcam-ingest",
    version,
    about = "sealcam receiving service: verifies, stores and serves sealed fragments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve devices and consumers over mutual TLS.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Check the configuration and probe the storage, then exit.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Streams: delete one (keys destroyed first).
    Stream {
        #[command(subcommand)]
        command: StreamCommand,
    },
    /// Legal holds: keep a stream, or a time range of it, from retention.
    Hold {
        #[command(subcommand)]
        command: HoldCommand,
    },
    /// Update bundles for devices: publish, list, withdraw.
    Update {
        #[command(subcommand)]
        command: UpdateCommand,
    },
    /// The audit trail: verify its chains, show who did what.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// The configuration file, and flags that override single fields of it.
#[derive(clap::Args)]
struct ConfigArgs {
    /// The configuration file (see docs/ref/ingest-config.md); without it, defaults.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Overrides `listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Overrides `pki`: the directory with ca.crt, server.crt and server.key.
    #[arg(long)]
    pki: Option<PathBuf>,
    /// Overrides `[storage]` with a local directory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Overrides `enroll_listen`.
    #[arg(long)]
    enroll_listen: Option<SocketAddr>,
    /// Overrides `metrics_listen`.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Overrides `[ca] url`: unix:/path/to/ca.sock or https://HOST:PORT.
    #[arg(long)]
    ca_url: Option<sealcam_ingest::ca_client::CaUrl>,
    /// Overrides `devices.crl_poll`, in milliseconds.
    #[arg(long)]
    crl_poll_ms: Option<u64>,
}

impl ConfigArgs {
    fn resolve(self) -> anyhow::Result<IngestConfig> {
        let mut c = match &self.config {
            Some(path) => IngestConfig::load(path)?,
            None => IngestConfig::default(),
        };
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.pki {
            c.pki = v;
        }
        if let Some(v) = self.data {
            c.storage = StorageConfig::local(v);
        }
        if let Some(v) = self.enroll_listen {
            c.enroll_listen = Some(v);
        }
        if let Some(v) = self.metrics_listen {
            c.metrics_listen = Some(v);
        }
        if let Some(v) = self.crl_poll_ms {
            c.devices.crl_poll = Span(Duration::from_millis(v.max(50)));
        }
        if let Some(v) = self.ca_url {
            c.ca.url = v;
        }
        Ok(c)
    }
}

#[derive(Subcommand)]
enum StreamCommand {
    /// Destroy every stored fragment of DEVICE/STREAM: the wrapped keys
    /// first (no copy of the video can be decrypted after that), then the
    /// ciphertext. Recorded in the audit trail.
    Delete {
        /// DEVICE/STREAM
        stream: String,
        #[command(flatten)]
        config: ConfigArgs,
        /// Who asks (recorded in the audit trail as operator:NAME).
        #[arg(long, env = "USER", default_value = "unknown")]
        operator: String,
    },
}

#[derive(Subcommand)]
enum HoldCommand {
    /// Place a legal hold on DEVICE/STREAM: retention keeps what it covers
    /// (keys and ciphertext) until it is lifted. Recorded in the audit trail.
    Place {
        /// DEVICE/STREAM
        stream: String,
        /// The first instant held (RFC 3339, 2026-01-31T12:00:00Z); none: the stream's beginning.
        #[arg(long)]
        from: Option<String>,
        /// The last instant held (RFC 3339); none: everything after --from, and on.
        #[arg(long)]
        to: Option<String>,
        /// Why (a case number, a request): recorded with the hold.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        config: ConfigArgs,
        /// Who asks (recorded in the audit trail as operator:NAME).
        #[arg(long, env = "USER", default_value = "unknown")]
        operator: String,
    },
    /// Lift hold ID of DEVICE/STREAM: the next retention sweep may remove
    /// what it kept. Recorded in the audit trail.
    Lift {
        /// DEVICE/STREAM
        stream: String,
        /// The hold's id, as `hold place` and `hold list` show it.
        id: String,
        #[command(flatten)]
        config: ConfigArgs,
        /// Who asks (recorded in the audit trail as operator:NAME).
        #[arg(long, env = "USER", default_value = "unknown")]
        operator: String,
    },
    /// The holds on DEVICE/STREAM.
    List {
        /// DEVICE/STREAM
        stream: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand)]
enum UpdateCommand {
    /// Offer BUNDLE (a RAUC .raucb signed with the release key) to the
    /// devices of COMPATIBLE that run an older version. Recorded in the
    /// audit trail.
    Publish {
        /// The bundle file.
        bundle: PathBuf,
        /// RAUC's compatible of the bundle (its manifest's), e.g. sealcam-rpi4.
        #[arg(long)]
        compatible: String,
        /// The bundle's version (its manifest's), e.g. 1.4.0.
        #[arg(long)]
        version: String,
        #[command(flatten)]
        config: ConfigArgs,
        /// Who asks (recorded in the audit trail as operator:NAME).
        #[arg(long, env = "USER", default_value = "unknown")]
        operator: String,
    },
    /// The published bundles, newest version (the one offered) first.
    List {
        /// Only this compatible.
        #[arg(long)]
        compatible: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Stop offering version VERSION of COMPATIBLE (the next lower version
    /// published is offered instead). Recorded in the audit trail.
    Withdraw {
        #[arg(long)]
        compatible: String,
        #[arg(long)]
        version: String,
        #[command(flatten)]
        config: ConfigArgs,
        /// Who asks (recorded in the audit trail as operator:NAME).
        #[arg(long, env = "USER", default_value = "unknown")]
        operator: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every chain of the audit trail: hashes, numbering, signatures,
    /// and that each run names the run before it.
    Verify {
        #[command(flatten)]
        config: ConfigArgs,
        /// A head exported before (`audit head > FILE`): fail if anything it
        /// covers is gone or changed.
        #[arg(long, value_name = "FILE")]
        since_head: Option<PathBuf>,
    },
    /// Print the signed head of every instance's trail (JSON); keep it where
    /// the ingest cannot write, and pass it to `audit verify --since-head`.
    Head {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List audit records, oldest first.
    Show {
        #[command(flatten)]
        config: ConfigArgs,
        /// Only records about this stream (DEVICE/STREAM) or device.
        #[arg(long)]
        stream: Option<String>,
        /// Only records of this actor (e.g. consumer:alice).
        #[arg(long)]
        actor: Option<String>,
        /// Only records of this action (upload, read, list, connect, delete, ...).
        #[arg(long)]
        action: Option<String>,
    },
}

fn main() -> ExitCode {
    sealcam_base::init_logging("info");
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "sealcam-ingest: error: {}",
                sealcam_base::error_chain(e.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

/// Tells a supervising process (or a test) where the ingest listens. A
/// closed stdout is not an error: the addresses are in the log too.
fn announce(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn real_main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { config } => {
            let cfg = ServeConfig::from_config(config.resolve()?)?;
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async {
                let server = Server::bind(&cfg).await?;
                let addr = server.local_addr()?;
                tracing::info!(%addr, storage = %cfg.storage, "sealcam-ingest listening");
                announce(format_args!("listening on {addr}"));
                if let Some(enroll) = server.enroll_addr() {
                    let enroll = enroll?;
                    tracing::info!(%enroll, "enrollment endpoint listening");
                    announce(format_args!("enrollment on {enroll}"));
                }
                if let Some(ops) = server.ops_addr() {
                    let ops = ops?;
                    tracing::info!(metrics = %sealcam_ingest::metrics::describe(ops), "operations listener (metrics, /healthz, /readyz)");
                    announce(format_args!("metrics on {ops}"));
                }
                sealcam_base::service::ready();
                server
                    .serve(async {
                        sealcam_base::stop_signal().await;
                        sealcam_base::service::stopping();
                    })
                    .await;
                tracing::info!("sealcam-ingest stopped");
                Ok(())
            })
        }
        Command::Check { config } => {
            let cfg = ServeConfig::from_config(config.resolve()?)?;
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(sealcam_ingest::service::check(&cfg))?;
            println!(
                "configuration valid; PKI and storage ({}) usable",
                cfg.storage
            );
            Ok(())
        }
        Command::Audit { command } => audit_command(command),
        Command::Hold { command } => hold_cmd::run(command),
        Command::Update { command } => update_cmd::run(command),
        Command::Stream {
            command:
                StreamCommand::Delete {
                    stream,
                    config,
                    operator,
                },
        } => delete_stream(&stream, config, &operator),
    }
}

fn audit_command(command: AuditCommand) -> anyhow::Result<()> {
    use sealcam_ingest::audit;
    let (config, filter, since_head) = match command {
        AuditCommand::Verify { config, since_head } => (config, None, since_head),
        AuditCommand::Head { config } => return audit_head(config),
        AuditCommand::Show {
            config,
            stream,
            actor,
            action,
        } => (config, Some((stream, actor, action)), None),
    };
    let cfg = config.resolve()?;
    let store = sealcam_ingest::store::Store::open(&cfg.storage)?;
    let key = audit::load_verifying_key(&cfg.pki.join(audit::AUDIT_PUB))?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (chains, records) = rt.block_on(audit::read_all(&store, &key))?;
    let Some((stream, actor, action)) = filter else {
        let mut bad = 0;
        for c in &chains {
            println!(
                "chain {} epoch {}: {} records in {} segments, {} .. {}: {}",
                c.instance,
                c.epoch,
                c.records,
                c.segments,
                c.first_time.as_deref().unwrap_or("-"),
                c.last_time.as_deref().unwrap_or("-"),
                if c.problems.is_empty() {
                    "ok"
                } else {
                    "FAILED"
                }
            );
            for p in &c.problems {
                println!("  {p}");
            }
            bad += usize::from(!c.problems.is_empty());
        }
        if chains.is_empty() {
            println!("no audit records in {}", cfg.storage);
        }
        if let Some(path) = since_head {
            let heads = read_head_file(&path)?;
            let problems = rt.block_on(audit::check_heads(&store, &key, &heads))?;
            println!(
                "head {}: {}",
                path.display(),
                if problems.is_empty() { "ok" } else { "FAILED" }
            );
            for p in &problems {
                println!("  {p}");
            }
            if !problems.is_empty() {
                anyhow::bail!(
                    "the audit trail no longer holds what the head {} covers",
                    path.display()
                );
            }
        }
        if bad > 0 {
            anyhow::bail!("{bad} of {} audit chains failed verification", chains.len());
        }
        return Ok(());
    };
    for r in records.iter().filter(|r| {
        stream.as_deref().is_none_or(|s| {
            r.target
                .as_deref()
                .is_some_and(|t| t == s || t.starts_with(&format!("{s}/")))
        }) && actor.as_deref().is_none_or(|a| r.actor == a)
            && action.as_deref().is_none_or(|a| r.action == a)
    }) {
        println!(
            "{}  {:<20} {:<16} {:<28} {:<22} {:<8} {}",
            r.time,
            r.actor,
            r.action,
            r.target.as_deref().unwrap_or("-"),
            r.addr.as_deref().unwrap_or("-"),
            r.result,
            r.detail.as_deref().unwrap_or("")
        );
    }
    for c in chains.iter().filter(|c| !c.problems.is_empty()) {
        eprintln!(
            "warning: audit chain {} epoch {} failed verification: {}",
            c.instance,
            c.epoch,
            c.problems.join("; ")
        );
    }
    Ok(())
}

fn read_head_file(path: &std::path::Path) -> anyhow::Result<sealcam_ingest::audit::HeadFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the audit head {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not an audit head; make one with `sealcam-ingest audit head > FILE`",
            path.display()
        )
    })
}

/// `audit head`: refuses when the trail does not verify (a head of a
/// damaged trail would anchor the damage).
fn audit_head(config: ConfigArgs) -> anyhow::Result<()> {
    use sealcam_ingest::audit;
    let cfg = config.resolve()?;
    let store = sealcam_ingest::store::Store::open(&cfg.storage)?;
    let public = audit::load_verifying_key(&cfg.pki.join(audit::AUDIT_PUB))?;
    let key = audit::load_signing_key(&cfg.pki)?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (chains, _) = rt.block_on(audit::read_all(&store, &public))?;
    let bad: Vec<String> = chains
        .iter()
        .filter(|c| !c.problems.is_empty())
        .map(|c| format!("{} epoch {}", c.instance, c.epoch))
        .collect();
    if !bad.is_empty() {
        anyhow::bail!(
            "the audit trail does not verify ({}); run `sealcam-ingest audit verify` and resolve it before exporting a head",
            bad.join(", ")
        );
    }
    let heads = rt.block_on(audit::make_heads(&store, &key))?;
    println!("{}", serde_json::to_string_pretty(&heads)?);
    Ok(())
}

fn delete_stream(stream: &str, config: ConfigArgs, operator: &str) -> anyhow::Result<()> {
    use sealcam_ingest::{audit, retention, store::Store};
    let (device, stream) = stream
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("{stream:?}: write DEVICE/STREAM"))?;
    let (device, stream) = (Name::new(device)?, Name::new(stream)?);
    let cfg = config.resolve()?;
    let operator = Name::new(operator)
        .map(|n| format!("operator:{n}"))
        .unwrap_or_else(|_| "operator".into());
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let n = rt.block_on(async {
        let store = Store::open(&cfg.storage)?;
        let instance = format!("{}-cli", audit::host_name());
        let (log, task) =
            audit::AuditLog::start(store.clone(), &cfg.pki, &instance, Duration::from_secs(1))?;
        let n = retention::delete_stream(&store, &log, &operator, &device, &stream).await?;
        log.flush().await?;
        drop(log);
        let _ = task.await;
        anyhow::Ok(n)
    })?;
    println!("{device}/{stream}: {n} fragments destroyed (keys first, then ciphertext)");
    Ok(())
}
