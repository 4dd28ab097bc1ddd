//! sealcam-ca: the fleet CA's service and its operator commands. Run as
//! the CA's own user (`sealcam-ca` on a packaged install): nothing else
//! may read the CA key.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sealcam_ca::service::{CaService, Listen, ServiceConfig};
use sealcam_ca::{
    parse_lifetime, replace_issued, write_issued, EkPolicy, FleetCa, PendingLimits, Role, CA_CERT,
    CRL,
};
use sealcam_format::Name;

#[derive(Parser)]
#[command(
    name = "sealcam-ca",
    version,
    about = "sealcam fleet CA: issues and revokes certificates; the ingest asks it, it never holds its key"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The CA's directory.
/// The CA in `dir`, as the operator running this command (recorded in the
/// CA's audit log as `operator:USER`).
fn operator_ca(dir: &Path) -> FleetCa {
    let user = std::env::var("USER")
        .ok()
        .and_then(|u| Name::new(&u).ok())
        .map_or_else(|| "operator".to_owned(), |u| format!("operator:{u}"));
    FleetCa::new(dir).with_actor(user)
}

#[derive(clap::Args)]
struct PendingDir {
    /// Where enrollment requests without a token wait (default: the CA's
    /// directory with `.pending` appended, beside it).
    #[arg(long, env = "SEALCAM_CA_PENDING_DIR")]
    pending_dir: Option<PathBuf>,
}

impl PendingDir {
    fn ca(&self, dir: &Path) -> FleetCa {
        match &self.pending_dir {
            Some(p) => operator_ca(dir).with_pending_dir(p),
            None => operator_ca(dir),
        }
    }
}

#[derive(clap::Args)]
struct Dir {
    /// The CA's directory (made by `sealcam-ca init`).
    #[arg(
        long,
        alias = "pki",
        env = "SEALCAM_CA_DIR",
        default_value = "/var/lib/sealcam-ca"
    )]
    dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Create the fleet CA (key, certificate, an empty revocation list).
    Init {
        #[command(flatten)]
        dir: Dir,
    },
    /// Answer the ingest instances: enrollment, renewal, the revocation list.
    Serve {
        #[command(flatten)]
        dir: Dir,
        /// unix:/path/to/ca.sock, or tls:ADDRESS:PORT (mutual TLS, ingest
        /// certificates of this CA only).
        #[arg(long, default_value = "unix:/run/sealcam-ca/ca.sock")]
        listen: Listen,
        /// Mode of the Unix socket, octal: its group may connect.
        #[arg(long, default_value = "660", value_parser = parse_mode)]
        socket_mode: u32,
        /// DNS names in the TLS listener's certificate (repeatable).
        #[arg(long = "tls-name")]
        tls_names: Vec<String>,
        /// IP addresses in the TLS listener's certificate (repeatable).
        #[arg(long = "tls-ip")]
        tls_ips: Vec<IpAddr>,
        /// Lifetime of device certificates issued at enrollment and renewal.
        #[arg(long, default_value = "30d", value_parser = parse_lifetime)]
        device_cert_lifetime: Duration,
        /// How long each revocation list the service signs stays current
        /// (its nextUpdate); it re-signs one when half of that is left.
        /// An ingest refuses every client once its list has expired, so
        /// this is also how long the ingests ride out a CA outage.
        #[arg(long, default_value = "7d", value_parser = parse_lifetime)]
        crl_lifetime: Duration,
        /// Enrollment requires a TPM endorsement-key certificate issued by
        /// one of the CA certificates in this PEM file.
        #[arg(long)]
        require_ek_ca: Option<PathBuf>,
        #[command(flatten)]
        pending: PendingDir,
        /// Requests without a token that may wait at once.
        #[arg(long, default_value_t = PendingLimits::default().max)]
        max_pending: usize,
        /// New requests without a token filed per minute, at most.
        #[arg(long, default_value_t = PendingLimits::default().per_minute)]
        pending_per_minute: u32,
    },
    /// Ingest instances: each has its own certificate and directory.
    Ingest {
        #[command(subcommand)]
        command: IngestCommand,
    },
    /// Device certificates.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Consumer certificates.
    Consumer {
        #[command(subcommand)]
        command: ConsumerCommand,
    },
    /// The CA's own audit log: every PKI operation, signed and chained.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum IngestCommand {
    /// Issue an ingest instance its certificate and key, and the fleet CA
    /// certificate, into its own directory (`pki` of its config).
    Issue {
        #[command(flatten)]
        dir: Dir,
        /// The instance's name (urn:sealcam:ingest:NAME).
        #[arg(long)]
        name: String,
        /// Writes ca.crt, server.crt and server.key here.
        #[arg(long)]
        out_dir: PathBuf,
        /// DNS names the cameras reach the instance by (repeatable).
        #[arg(long = "server-name", default_values = ["localhost"])]
        server_names: Vec<String>,
        /// IP addresses the cameras reach the instance at (repeatable).
        #[arg(long = "server-ip", default_values = ["127.0.0.1"])]
        server_ips: Vec<IpAddr>,
        #[arg(long, default_value = "825d", value_parser = parse_lifetime)]
        lifetime: Duration,
    },
    /// Revoke every certificate of an ingest instance: the CA service
    /// refuses it from its next connection on.
    Revoke {
        name: String,
        #[command(flatten)]
        dir: Dir,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Allow a device to enroll: prints a one-time enrollment token.
    Add {
        name: String,
        #[command(flatten)]
        dir: Dir,
        /// Streams the device may write (repeatable); none: any of its own.
        #[arg(long = "stream")]
        streams: Vec<String>,
        /// How long the token stays valid.
        #[arg(long, default_value = "1h", value_parser = parse_lifetime)]
        token_ttl: Duration,
    },
    /// Issue a device certificate from a CSR file (operator approval instead of a token).
    Issue {
        #[command(flatten)]
        dir: Dir,
        #[arg(long)]
        csr: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "30d", value_parser = parse_lifetime)]
        lifetime: Duration,
        /// Streams the device may write (repeatable); none: any of its own.
        #[arg(long = "stream")]
        streams: Vec<String>,
    },
    /// List enrollment requests waiting for approval (cameras enrolled without a token).
    Pending {
        #[command(flatten)]
        dir: Dir,
        #[command(flatten)]
        pending: PendingDir,
    },
    /// Approve a waiting request, naming the key fingerprint the camera shows.
    Approve {
        name: String,
        #[command(flatten)]
        dir: Dir,
        /// The fingerprint `sealcamd identity` prints on the camera.
        #[arg(long)]
        fingerprint: String,
        #[command(flatten)]
        pending: PendingDir,
        #[arg(long, default_value = "30d", value_parser = parse_lifetime)]
        lifetime: Duration,
        /// Streams the device may write (repeatable); none: any of its own.
        #[arg(long = "stream")]
        streams: Vec<String>,
    },
    /// Revoke every certificate of a device, for good; each ingest drops
    /// its connections at its next poll of the revocation list.
    Revoke {
        name: String,
        #[command(flatten)]
        dir: Dir,
    },
    /// Export the TPM evidence of a device's key (checked at enrollment)
    /// for the owner's roster: `sealcam roster add --evidence FILE`.
    Evidence {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        dir: Dir,
        /// The key's fingerprint, or a unique prefix; needed only when the
        /// device has enrolled several keys.
        #[arg(long)]
        fingerprint: Option<String>,
        /// Where to write the evidence file.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every record (numbering, links, signatures); prints the head.
    Verify {
        #[command(flatten)]
        dir: Dir,
        /// The log's public key (default: audit.pub in the CA's directory;
        /// better a copy kept elsewhere).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// List the records, oldest first.
    Show {
        #[command(flatten)]
        dir: Dir,
    },
}

#[derive(Subcommand)]
enum ConsumerCommand {
    /// Issue a consumer TLS certificate and key (read access).
    Issue {
        #[command(flatten)]
        dir: Dir,
        #[arg(long)]
        name: String,
        /// Writes NAME.crt and NAME.key here.
        #[arg(long)]
        out_dir: PathBuf,
        /// A stream this consumer may read, as DEVICE/STREAM (repeatable).
        #[arg(long = "stream", conflicts_with = "all_streams")]
        streams: Vec<String>,
        /// Every stream of every device, now and later, instead of --stream.
        #[arg(long)]
        all_streams: bool,
        /// Short by default: renew with `consumer renew` before it ends.
        #[arg(long, default_value = "30d", value_parser = parse_lifetime)]
        lifetime: Duration,
    },
    /// Renew a consumer's certificate before it ends: the same name and
    /// streams, a new key; replaces NAME.crt and NAME.key in --out-dir.
    Renew {
        #[command(flatten)]
        dir: Dir,
        #[arg(long)]
        name: String,
        /// Where NAME.crt and NAME.key are (as written by `consumer issue`).
        #[arg(long)]
        out_dir: PathBuf,
        #[arg(long, default_value = "30d", value_parser = parse_lifetime)]
        lifetime: Duration,
    },
    /// Revoke every certificate of a consumer, for good.
    Revoke {
        name: String,
        #[command(flatten)]
        dir: Dir,
    },
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal file mode such as 660"))
}

fn main() -> ExitCode {
    sealcam_base::init_logging("info");
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "sealcam-ca: error: {}",
                sealcam_base::error_chain(e.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

fn names(list: &[String]) -> anyhow::Result<Vec<Name>> {
    Ok(list
        .iter()
        .map(|s| Name::new(s))
        .collect::<Result<_, _>>()?)
}

fn revoked(role: Role, name: &Name, dir: &Path, n: usize) {
    let what = match role {
        Role::Device => "device",
        Role::Consumer => "consumer",
    };
    tracing::warn!(role = what, %name, certificates = n, "AUDIT: revoked");
    println!(
        "{what} {name} revoked: {n} certificates listed in {}",
        dir.join(CRL).display()
    );
}

fn real_main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Init { dir: Dir { dir } } => {
            FleetCa::init(&dir)?;
            println!(
                "fleet CA written to {}; next: `sealcam-ca ingest issue` for each ingest instance",
                dir.display()
            );
            Ok(())
        }
        Command::Serve {
            dir: Dir { dir },
            listen,
            socket_mode,
            tls_names,
            tls_ips,
            device_cert_lifetime,
            crl_lifetime,
            require_ek_ca,
            pending,
            max_pending,
            pending_per_minute,
        } => {
            let ek_policy = match &require_ek_ca {
                Some(path) => EkPolicy {
                    required_issuers: sealcam_transport::pem::load_certs(path)?
                        .into_iter()
                        .map(|c| c.as_ref().to_vec())
                        .collect(),
                },
                None => EkPolicy::default(),
            };
            if crl_lifetime < Duration::from_secs(2) {
                anyhow::bail!("--crl-lifetime must be at least 2s (the service re-signs the list when half of it is left)");
            }
            let cfg = ServiceConfig {
                dir,
                listen,
                socket_mode,
                tls_names,
                tls_ips,
                device_cert_lifetime,
                ek_policy,
                crl_lifetime,
                pending_dir: pending.pending_dir,
                pending: PendingLimits {
                    max: max_pending,
                    per_minute: pending_per_minute,
                },
            };
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async {
                let service = CaService::bind(&cfg).await?;
                let addr = service.local_addr();
                tracing::info!(%addr, dir = %cfg.dir.display(), "sealcam-ca listening");
                {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "listening on {addr}").and_then(|()| out.flush());
                }
                sealcam_base::service::ready();
                service
                    .serve(async {
                        sealcam_base::stop_signal().await;
                        sealcam_base::service::stopping();
                    })
                    .await;
                tracing::info!("sealcam-ca stopped");
                anyhow::Ok(())
            })
        }
        Command::Ingest {
            command:
                IngestCommand::Issue {
                    dir: Dir { dir },
                    name,
                    out_dir,
                    server_names,
                    server_ips,
                    lifetime,
                },
        } => {
            let name = Name::new(&name)?;
            let (cert, key) =
                operator_ca(&dir).issue_ingest(&name, &server_names, &server_ips, lifetime)?;
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("creating {}", out_dir.display()))?;
            let ca_cert = std::fs::read_to_string(dir.join(CA_CERT))
                .with_context(|| format!("reading {}", dir.join(CA_CERT).display()))?;
            write_issued(&out_dir.join(CA_CERT), &ca_cert, None)?;
            write_issued(
                &out_dir.join("server.crt"),
                &cert,
                Some((&out_dir.join("server.key"), &key)),
            )?;
            tracing::warn!(ingest = %name, "AUDIT: ingest certificate issued");
            println!(
                "ingest {name}: ca.crt, server.crt and server.key written to {}",
                out_dir.display()
            );
            Ok(())
        }
        Command::Ingest {
            command:
                IngestCommand::Revoke {
                    name,
                    dir: Dir { dir },
                },
        } => {
            let name = Name::new(&name)?;
            let n = operator_ca(&dir).revoke_ingest(&name)?;
            tracing::warn!(ingest = %name, certificates = n, "AUDIT: ingest revoked");
            println!(
                "ingest {name} revoked: {n} certificates listed in {}",
                dir.join(CRL).display()
            );
            Ok(())
        }
        Command::Device {
            command:
                DeviceCommand::Add {
                    name,
                    dir: Dir { dir },
                    streams,
                    token_ttl,
                },
        } => {
            let name = Name::new(&name)?;
            let token = operator_ca(&dir).add_device(&name, &names(&streams)?, token_ttl)?;
            eprintln!(
                "device {name} may enroll for {} s with this one-time token:",
                token_ttl.as_secs()
            );
            println!("{token}");
            Ok(())
        }
        Command::Device {
            command:
                DeviceCommand::Pending {
                    dir: Dir { dir },
                    pending,
                },
        } => {
            let pending = pending.ca(&dir).pending_requests()?;
            if pending.is_empty() {
                println!("no enrollment requests are waiting");
            }
            for p in pending {
                println!("{}\t{}", p.device, p.fingerprint);
            }
            Ok(())
        }
        Command::Device {
            command:
                DeviceCommand::Approve {
                    name,
                    dir: Dir { dir },
                    fingerprint,
                    lifetime,
                    streams,
                    pending,
                },
        } => {
            let name = Name::new(&name)?;
            pending
                .ca(&dir)
                .approve(&name, &fingerprint, &names(&streams)?, lifetime)?;
            tracing::warn!(device = %name, %fingerprint, "AUDIT: enrollment approved");
            println!("device {name} approved; it picks up its certificate at its next enrollment request");
            Ok(())
        }
        Command::Device {
            command:
                DeviceCommand::Revoke {
                    name,
                    dir: Dir { dir },
                },
        } => {
            let name = Name::new(&name)?;
            let n = operator_ca(&dir).revoke(Role::Device, &name)?;
            revoked(Role::Device, &name, &dir, n);
            Ok(())
        }
        Command::Device {
            command:
                DeviceCommand::Evidence {
                    name,
                    dir: Dir { dir },
                    fingerprint,
                    out,
                },
        } => {
            let name = Name::new(&name)?;
            let (fingerprint, file) =
                operator_ca(&dir).device_evidence(&name, fingerprint.as_deref())?;
            sealcam_base::durable::replace(&out, &file)?;
            println!(
                "TPM evidence of device {name} key {fingerprint} written to {}",
                out.display()
            );
            println!("the owner adds it with `sealcam roster add --device {name} --key CERT --evidence {} --tpm-ca MAKER.pem`", out.display());
            Ok(())
        }
        Command::Device {
            command:
                DeviceCommand::Issue {
                    dir: Dir { dir },
                    csr,
                    out,
                    lifetime,
                    streams,
                },
        } => {
            let (device, cert) =
                operator_ca(&dir).issue_device(&csr, &names(&streams)?, lifetime)?;
            write_issued(&out, &cert, None)?;
            println!(
                "certificate for device {device} written to {}",
                out.display()
            );
            Ok(())
        }
        Command::Consumer {
            command:
                ConsumerCommand::Issue {
                    dir: Dir { dir },
                    name,
                    out_dir,
                    lifetime,
                    streams,
                    all_streams,
                },
        } => {
            let name = Name::new(&name)?;
            if streams.is_empty() && !all_streams {
                anyhow::bail!("consumer {name}: name the streams it may read with --stream DEVICE/STREAM (repeatable), or pass --all-streams to grant every stream of every device");
            }
            let mut reads = Vec::new();
            for s in &streams {
                let (d, st) = s.split_once('/').with_context(|| {
                    format!("--stream {s:?}: write DEVICE/STREAM, e.g. cam1/front")
                })?;
                reads.push((Name::new(d)?, Name::new(st)?));
            }
            let (cert, key) = operator_ca(&dir).issue_consumer(&name, &reads, lifetime)?;
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("creating {}", out_dir.display()))?;
            let cert_path = out_dir.join(format!("{name}.crt"));
            let key_path = out_dir.join(format!("{name}.key"));
            write_issued(&cert_path, &cert, Some((&key_path, &key)))?;
            println!(
                "consumer {name}: {} and {}",
                cert_path.display(),
                key_path.display()
            );
            Ok(())
        }
        Command::Audit { command } => audit_command(command),
        Command::Consumer {
            command:
                ConsumerCommand::Renew {
                    dir: Dir { dir },
                    name,
                    out_dir,
                    lifetime,
                },
        } => renew_consumer(&dir, &Name::new(&name)?, &out_dir, lifetime),
        Command::Consumer {
            command:
                ConsumerCommand::Revoke {
                    name,
                    dir: Dir { dir },
                },
        } => {
            let name = Name::new(&name)?;
            let n = operator_ca(&dir).revoke(Role::Consumer, &name)?;
            revoked(Role::Consumer, &name, &dir, n);
            Ok(())
        }
    }
}

/// `consumer renew`: the current certificate must be this CA's, still
/// valid, and a consumer's of that name.
fn renew_consumer(
    dir: &Path,
    name: &Name,
    out_dir: &Path,
    lifetime: Duration,
) -> anyhow::Result<()> {
    use sealcam_transport::{identity::verify_issued_by, pem, Identity};
    let cert_path = out_dir.join(format!("{name}.crt"));
    let key_path = out_dir.join(format!("{name}.key"));
    let current = pem::load_certs(&cert_path)?;
    let current = current
        .first()
        .with_context(|| format!("{} holds no certificate", cert_path.display()))?;
    let ca = pem::load_certs(&dir.join(CA_CERT))?;
    let ca = ca
        .first()
        .with_context(|| format!("{} holds no certificate", dir.join(CA_CERT).display()))?;
    verify_issued_by(current, ca).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a valid certificate of this CA ({e}); once expired, issue a new one with `sealcam-ca consumer issue`",
            cert_path.display()
        )
    })?;
    let identity = Identity::from_cert_der(current)?;
    if identity.role != Role::Consumer || identity.name != *name {
        anyhow::bail!(
            "{} is {identity}'s certificate, not consumer {name}'s",
            cert_path.display()
        );
    }
    let (cert, key) = operator_ca(dir).renew_consumer(&identity, lifetime)?;
    replace_issued(&cert_path, &cert, &key_path, &key)?;
    println!(
        "consumer {name}: renewed for {}; {} and {}",
        humantime_days(lifetime),
        cert_path.display(),
        key_path.display()
    );
    Ok(())
}

fn humantime_days(d: Duration) -> String {
    let days = d.as_secs() / 86_400;
    if days > 0 {
        format!("{days} days")
    } else {
        format!("{} s", d.as_secs())
    }
}

/// `audit verify` and `audit show`: failing when any record does not verify.
fn audit_command(command: AuditCommand) -> anyhow::Result<()> {
    let (dir, key, show) = match command {
        AuditCommand::Verify {
            dir: Dir { dir },
            key,
        } => (dir, key, false),
        AuditCommand::Show { dir: Dir { dir } } => (dir, None, true),
    };
    let key_path = key.unwrap_or_else(|| dir.join(sealcam_ca::CA_AUDIT_PUB));
    let key = sealcam_ca::load_audit_pub(&key_path)?;
    let log = sealcam_ca::verify_log(&dir, &key);
    if show {
        for r in &log.records {
            println!(
                "{}  {:<3} {:<20} {:<18} {:<16} {}",
                r.time,
                r.n,
                r.actor,
                r.action,
                r.target.as_deref().unwrap_or("-"),
                r.detail.as_deref().unwrap_or("")
            );
        }
    } else {
        println!(
            "CA audit log: {} records, head {}: {}",
            log.records.len(),
            log.head.as_deref().unwrap_or("-"),
            if log.problems.is_empty() {
                "ok"
            } else {
                "FAILED"
            }
        );
    }
    for p in &log.problems {
        println!("  {p}");
    }
    if !log.problems.is_empty() {
        anyhow::bail!("the CA audit log of {} does not verify", dir.display());
    }
    Ok(())
}
