//! sealcamd: the sealcam camera daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sealcamd::config::Config;

#[derive(Parser)]
#[command(
    name = "sealcamd",
    version,
    about = "sealcam camera daemon: capture, seal, sign, spool, upload"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Capture, seal and upload until stopped (or until a bounded test source ends).
    Run {
        #[arg(long, default_value = "/etc/sealcam/sealcamd.toml")]
        config: PathBuf,
    },
    /// Create the device key (or reuse it) and write a certificate signing request.
    Provision {
        #[arg(long, default_value = "/etc/sealcam/sealcamd.toml")]
        config: PathBuf,
        /// Keep the device key in a file. Development only: it can be copied off the camera.
        #[arg(long)]
        insecure_software_key: bool,
        /// Where to write the CSR (default: the certificate path with .csr).
        #[arg(long)]
        csr_out: Option<PathBuf>,
    },
    /// Check the config, the device key and its certificate, then exit.
    Check {
        #[arg(long, default_value = "/etc/sealcam/sealcamd.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    sealcam_base::init_logging("info");
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sealcamd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            let cfg = Config::load(&config)?;
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async {
                let stop = Arc::new(AtomicBool::new(false));
                let signal_stop = stop.clone();
                tokio::spawn(async move {
                    sealcam_base::stop_signal().await;
                    signal_stop.store(true, Ordering::Relaxed);
                });
                let report = sealcamd::daemon::run(cfg, stop).await?;
                tracing::info!(
                    fragments = report.recorded.fragments,
                    frames = report.recorded.frames,
                    uploaded = report.uplink.uploaded,
                    rejected = report.uplink.rejected,
                    "sealcamd finished"
                );
                if report.uplink.rejected > 0 {
                    anyhow::bail!("{} fragments were refused by the ingest (kept in the spool's rejected/ folder)", report.uplink.rejected);
                }
                Ok(())
            })
        }
        Command::Provision {
            config,
            insecure_software_key,
            csr_out,
        } => {
            if !insecure_software_key {
                anyhow::bail!("this build can only provision a software device key: pass --insecure-software-key (development only)");
            }
            let cfg = Config::load(&config)?;
            let p = sealcamd::provision::provision(&cfg, csr_out.as_deref())?;
            eprintln!(
                "WARNING: {} is a software key; anyone who copies it can impersonate this camera.",
                p.key_description
            );
            println!("device:      {}", p.device);
            println!(
                "key:         {} ({})",
                p.key_description,
                if p.created {
                    "created"
                } else {
                    "existing, reused"
                }
            );
            println!("fingerprint: {}", p.fingerprint);
            println!("csr:         {}", p.csr_path.display());
            Ok(())
        }
        Command::Check { config } => {
            let cfg = Config::load(&config)?;
            sealcamd::daemon::load_identity(&cfg)?;
            println!(
                "config {} is valid; device key and certificate match",
                config.display()
            );
            Ok(())
        }
    }
}
