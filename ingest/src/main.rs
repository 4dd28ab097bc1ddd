//! sealcam-ingest: the receiving service and its development PKI.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sealcam_format::Name;
use sealcam_ingest::pki;
use sealcam_ingest::server::{ServeConfig, Server};

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
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: SocketAddr,
        /// Directory with ca.crt, server.crt and server.key.
        #[arg(long, default_value = "/etc/sealcam-ingest/pki")]
        pki: PathBuf,
        /// Where fragments are stored.
        #[arg(long, default_value = "/var/lib/sealcam-ingest")]
        data: PathBuf,
        /// Also serve enrollment (cameras with a one-time token) here.
        #[arg(long)]
        enroll_listen: Option<SocketAddr>,
        /// Lifetime of device certificates issued at enrollment and renewal.
        #[arg(long, default_value = "30d", value_parser = pki::parse_lifetime)]
        device_cert_lifetime: Duration,
        /// How often to look for a changed revocation list, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        crl_poll_ms: u64,
        /// Require enrolling cameras to show a TPM endorsement-key certificate
        /// issued by one of the CA certificates in this PEM file.
        #[arg(long)]
        require_ek_ca: Option<PathBuf>,
    },
    /// The fleet CA.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
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
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create the fleet CA and the ingest's server certificate (development PKI).
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// DNS names of the ingest (repeatable).
        #[arg(long = "server-name", default_values = ["localhost"])]
        server_names: Vec<String>,
        /// IP addresses of the ingest (repeatable).
        #[arg(long = "server-ip", default_values = ["127.0.0.1"])]
        server_ips: Vec<IpAddr>,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Allow a device to enroll: prints a one-time enrollment token.
    Add {
        name: String,
        #[arg(long)]
        pki: PathBuf,
        /// Streams the device may write (repeatable); none: any of its own.
        #[arg(long = "stream")]
        streams: Vec<String>,
        /// How long the token stays valid.
        #[arg(long, default_value = "1h", value_parser = pki::parse_lifetime)]
        token_ttl: Duration,
    },
    /// Issue a device certificate from a CSR file (operator approval instead of a token).
    Issue {
        #[arg(long)]
        pki: PathBuf,
        #[arg(long)]
        csr: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "30d", value_parser = pki::parse_lifetime)]
        lifetime: Duration,
        /// Streams the device may write (repeatable); none: any of its own.
        #[arg(long = "stream")]
        streams: Vec<String>,
    },
    /// List enrollment requests waiting for approval (cameras enrolled without a token).
    Pending {
        #[arg(long)]
        pki: PathBuf,
    },
    /// Approve a waiting request, naming the key fingerprint the camera shows.
    Approve {
        name: String,
        #[arg(long)]
        pki: PathBuf,
        /// The fingerprint `sealcamd identity` prints on the camera.
        #[arg(long)]
        fingerprint: String,
        #[arg(long, default_value = "30d", value_parser = pki::parse_lifetime)]
        lifetime: Duration,
        /// Streams the device may write (repeatable); none: any of its own.
        #[arg(long = "stream")]
        streams: Vec<String>,
    },
    /// Revoke every certificate of a device; a running ingest drops its connections.
    Revoke {
        name: String,
        #[arg(long)]
        pki: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConsumerCommand {
    /// Issue a consumer TLS certificate and key (read access).
    Issue {
        #[arg(long)]
        pki: PathBuf,
        #[arg(long)]
        name: String,
        /// Writes NAME.crt and NAME.key here.
        #[arg(long)]
        out_dir: PathBuf,
        /// A stream this consumer may read, as DEVICE/STREAM (repeatable); none: every stream.
        #[arg(long = "stream")]
        streams: Vec<String>,
        #[arg(long, default_value = "365d", value_parser = pki::parse_lifetime)]
        lifetime: Duration,
    },
}

fn main() -> ExitCode {
    sealcam_base::init_logging("info");
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sealcam-ingest: error: {e:#}");
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

fn real_main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve {
            listen,
            pki: dir,
            data,
            enroll_listen,
            device_cert_lifetime,
            crl_poll_ms,
            require_ek_ca,
        } => {
            let ek_policy = match require_ek_ca {
                Some(path) => pki::EkPolicy {
                    required_issuers: sealcam_transport::pem::load_certs(&path)?
                        .into_iter()
                        .map(|c| c.as_ref().to_vec())
                        .collect(),
                },
                None => pki::EkPolicy::default(),
            };
            let cfg = ServeConfig {
                listen,
                enroll_listen,
                pki: dir,
                data,
                device_cert_lifetime,
                crl_poll: Duration::from_millis(crl_poll_ms.max(50)),
                ek_policy,
            };
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async {
                let server = Server::bind(&cfg).await?;
                let addr = server.local_addr()?;
                tracing::info!(%addr, data = %cfg.data.display(), "sealcam-ingest listening");
                println!("listening on {addr}");
                if let Some(enroll) = server.enroll_addr() {
                    let enroll = enroll?;
                    tracing::info!(%enroll, "enrollment endpoint listening");
                    println!("enrollment on {enroll}");
                }
                std::io::stdout().flush()?;
                server.serve(sealcam_base::stop_signal()).await;
                tracing::info!("sealcam-ingest stopped");
                Ok(())
            })
        }
        Command::Ca {
            command:
                CaCommand::Init {
                    dir,
                    server_names,
                    server_ips,
                },
        } => {
            pki::init(&dir, &server_names, &server_ips)?;
            println!(
                "fleet CA and server certificate written to {}",
                dir.display()
            );
            Ok(())
        }
        Command::Device {
            command:
                DeviceCommand::Add {
                    name,
                    pki: dir,
                    streams,
                    token_ttl,
                },
        } => {
            let name = Name::new(&name)?;
            let token = pki::add_device(&dir, &name, &names(&streams)?, token_ttl)?;
            eprintln!(
                "device {name} may enroll for {} s with this one-time token:",
                token_ttl.as_secs()
            );
            println!("{token}");
            Ok(())
        }
        Command::Device {
            command: DeviceCommand::Pending { pki: dir },
        } => {
            let pending = pki::pending_requests(&dir)?;
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
                    pki: dir,
                    fingerprint,
                    lifetime,
                    streams,
                },
        } => {
            let name = Name::new(&name)?;
            pki::approve(&dir, &name, &fingerprint, &names(&streams)?, lifetime)?;
            tracing::warn!(device = %name, %fingerprint, "AUDIT: enrollment approved");
            println!("device {name} approved; it picks up its certificate at its next enrollment request");
            Ok(())
        }
        Command::Device {
            command: DeviceCommand::Revoke { name, pki: dir },
        } => {
            let name = Name::new(&name)?;
            let n = pki::revoke(&dir, &name)?;
            tracing::warn!(device = %name, certificates = n, "AUDIT: device revoked");
            println!(
                "device {name} revoked: {n} certificates listed in {}",
                dir.join(pki::CRL).display()
            );
            Ok(())
        }
        Command::Device {
            command:
                DeviceCommand::Issue {
                    pki: dir,
                    csr,
                    out,
                    lifetime,
                    streams,
                },
        } => {
            let (device, cert) = pki::issue_device(&dir, &csr, &names(&streams)?, lifetime)?;
            pki::write_issued(&out, &cert, None)?;
            println!(
                "certificate for device {device} written to {}",
                out.display()
            );
            Ok(())
        }
        Command::Consumer {
            command:
                ConsumerCommand::Issue {
                    pki: dir,
                    name,
                    out_dir,
                    lifetime,
                    streams,
                },
        } => {
            let name = Name::new(&name)?;
            let mut reads = Vec::new();
            for s in &streams {
                let (d, st) = s.split_once('/').with_context(|| {
                    format!("--stream {s:?}: write DEVICE/STREAM, e.g. cam1/front")
                })?;
                reads.push((Name::new(d)?, Name::new(st)?));
            }
            let (cert, key) = pki::issue_consumer(&dir, &name, &reads, lifetime)?;
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("creating {}", out_dir.display()))?;
            let cert_path = out_dir.join(format!("{name}.crt"));
            let key_path = out_dir.join(format!("{name}.key"));
            pki::write_issued(&cert_path, &cert, Some((&key_path, &key)))?;
            println!(
                "consumer {name}: {} and {}",
                cert_path.display(),
                key_path.display()
            );
            Ok(())
        }
    }
}
