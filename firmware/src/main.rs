//! sealcamd: the sealcam camera daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sealcamd::config::{Config, KeySource};

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
        /// Confirms a config with insecure_software_key = true: the key is a file. Development only.
        #[arg(long)]
        insecure_software_key: bool,
        /// Replace the key already in the TPM (the camera's old identity is lost).
        #[arg(long)]
        force: bool,
        /// Where to write the CSR (default: the certificate path with .csr).
        #[arg(long)]
        csr_out: Option<PathBuf>,
        /// Enroll at this ingest enrollment URL (https://host:port) and store the certificate.
        #[arg(long)]
        enroll: Option<String>,
        /// The one-time token from `sealcam-ca device add`; without one,
        /// the request waits for an operator's approval.
        #[arg(long, requires = "enroll")]
        token: Option<String>,
        /// How long to wait for an operator's approval, in seconds.
        #[arg(long, default_value_t = 600, requires = "enroll")]
        wait_s: u64,
    },
    /// First boot: provision from the bundle on the card's boot partition
    /// (config, fleet CA, owner key, recipient set, enrollment URL and
    /// token), enroll, delete the token; one line says how it went.
    Firstboot {
        /// The bundle directory (default: the first of /boot/firmware/sealcam, /boot/efi/sealcam).
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Where the camera's config is installed.
        #[arg(long, default_value = "/etc/sealcam")]
        config_dir: PathBuf,
        /// The group the installed files belong to (mode 0640).
        #[arg(long, default_value = "sealcam")]
        group: String,
        /// Root of the filesystem the board is detected from (tests use fake trees).
        #[arg(long, default_value = "/", hide = true)]
        sysroot: PathBuf,
    },
    /// Print the device id, key, public key fingerprint and certificate.
    Identity {
        #[arg(long, default_value = "/etc/sealcam/sealcamd.toml")]
        config: PathBuf,
    },
    /// What waits in the spool; send again or give up fragments the ingest kept refusing.
    Spool {
        #[command(subcommand)]
        command: SpoolCommand,
    },
    /// Mark an event (a trigger) in the video being recorded, sealed with it: for a GPIO watcher, a door contact, an operator.
    Event {
        #[arg(long, default_value = "/etc/sealcam/sealcamd.toml")]
        config: PathBuf,
        /// A short label sealed with the mark (at most 31 bytes are kept).
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List the cameras on this machine, with the formats, sizes and rates they offer.
    Cameras,
    /// Signed A/B updates: check and download, install (root).
    Update {
        #[command(subcommand)]
        command: UpdateCommand,
    },
    /// As root after boot (sealcam-health.service): if the booted slot is
    /// on trial, mark it good once the ingest has acknowledged a fragment
    /// in this boot, or bad (and reboot) after update.health_timeout_s.
    Health {
        #[arg(long, default_value = "/etc/sealcam/sealcamd.toml")]
        config: PathBuf,
        /// Reboot after marking the slot bad, so the bootloader falls back.
        #[arg(long)]
        reboot: bool,
    },
    /// Probe the config, board, capture graph, camera, device key, spool and ingest; print a report.
    Check {
        #[arg(long, default_value = "/etc/sealcam/sealcamd.toml")]
        config: PathBuf,
        /// Root of the filesystem the board is detected from (tests use fake trees).
        #[arg(long, default_value = "/", hide = true)]
        sysroot: PathBuf,
        /// Skip the probe of the ingest (a camera on the bench, without its network).
        #[arg(long)]
        offline: bool,
    },
}

#[derive(Subcommand)]
enum UpdateCommand {
    /// Ask for an update once and download what is offered into update.dir
    /// (what `run` does every update.interval_s when update.enabled).
    Check {
        #[arg(long, default_value = "/etc/sealcam/sealcamd.toml")]
        config: PathBuf,
    },
    /// As root (sealcam-install.service): install the bundle waiting in
    /// update.dir after checking its signature, compatible and version.
    Install {
        #[arg(long, default_value = "/etc/sealcam/sealcamd.toml")]
        config: PathBuf,
        /// Reboot into the new slot once it is installed.
        #[arg(long)]
        reboot: bool,
    },
    /// As root: note that RAUC's primary slot (or --slot) was just
    /// installed and is on trial, for a bundle installed by hand with
    /// `rauc install` (the installer notes its own).
    NoteTrial {
        #[arg(long, default_value = "/etc/sealcam/sealcamd.toml")]
        config: PathBuf,
        /// RAUC's slot name (rootfs.1); default: the primary slot.
        #[arg(long)]
        slot: Option<String>,
        /// The release version installed there, reported when it proves itself.
        #[arg(long)]
        version: Option<String>,
    },
}

#[derive(Subcommand)]
enum SpoolCommand {
    /// Fragments queued and held, and gaps still to declare.
    List {
        #[arg(long, default_value = "/etc/sealcam/sealcamd.toml")]
        config: PathBuf,
    },
    /// Put a held fragment back in the upload queue.
    Retry {
        #[arg(long, default_value = "/etc/sealcam/sealcamd.toml")]
        config: PathBuf,
        #[arg(long)]
        sequence: u64,
    },
    /// Give a held fragment up: it is deleted and the next manifest
    /// declares it, signed, as a RefusedByIngest gap.
    Drop {
        #[arg(long, default_value = "/etc/sealcam/sealcamd.toml")]
        config: PathBuf,
        #[arg(long)]
        sequence: u64,
    },
    /// Begin a new epoch of the chain (signed restart record), after the
    /// camera lost its storage and the ingest refuses its chain. Run with
    /// the daemon stopped.
    NewEpoch {
        #[arg(long, default_value = "/etc/sealcam/sealcamd.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    // The TSS libraries log to stderr by themselves; sealcamd reports TPM
    // errors itself, once, with their response codes.
    if std::env::var_os("TSS2_LOG").is_none() {
        std::env::set_var("TSS2_LOG", "all+NONE");
    }
    sealcam_base::init_logging("info");
    // Before any key or frame is in memory.
    if let Err(e) = sealcamd::core_dump::forbid() {
        eprintln!("sealcamd: error: cannot forbid core dumps ({e}); a crash could write frames and keys to disk");
        return ExitCode::FAILURE;
    }
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<AlreadyReported>() => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sealcamd: error: {}", sealcam_base::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// A failure the command has already reported in its own words.
#[derive(Debug)]
struct AlreadyReported;

impl std::fmt::Display for AlreadyReported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reported above")
    }
}

impl std::error::Error for AlreadyReported {}

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
                    key_signatures = report.key_signatures,
                    "sealcamd finished"
                );
                if report.uplink.rejected > 0 {
                    anyhow::bail!("the ingest kept refusing {} fragments; they are held in the spool's held/ folder, and no gap is declared for them: see `sealcamd spool list`", report.uplink.rejected);
                }
                Ok(())
            })
        }
        Command::Provision {
            config,
            insecure_software_key,
            force,
            csr_out,
            enroll,
            token,
            wait_s,
        } => {
            let cfg = Config::load(&config)?;
            let software = matches!(cfg.identity.key, KeySource::InsecureSoftware(_));
            if software && !insecure_software_key {
                anyhow::bail!(
                    "{} sets insecure_software_key = true: confirm with --insecure-software-key (development only), or remove it to use the TPM",
                    config.display()
                );
            }
            if !software && insecure_software_key {
                anyhow::bail!(
                    "{} keeps the device key in the TPM; drop --insecure-software-key",
                    config.display()
                );
            }
            let p = sealcamd::trust::provision::provision(&cfg, force, csr_out.as_deref())?;
            if software {
                eprintln!(
                    "WARNING: {} is a software key; anyone who copies it can impersonate this camera.",
                    p.key_description
                );
            }
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
            if matches!(cfg.identity.key, KeySource::Tpm(_)) {
                println!(
                    "ek cert:     {}",
                    if p.ek_certificate.is_some() {
                        "present (the device key is attested at enrollment)"
                    } else {
                        "none in this TPM"
                    }
                );
            }
            if let Some(url) = enroll {
                let signer = p.signer.clone();
                let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
                let how = sealcamd::trust::certificate::Enrollment {
                    url: &url,
                    token: token.as_deref(),
                    wait: std::time::Duration::from_secs(wait_s),
                    ca: &cfg.upload.ca,
                    ek_certificate: p.ek_certificate.as_deref(),
                    tpm: p.tpm.clone(),
                };
                let cert = rt.block_on(sealcamd::trust::certificate::enroll(
                    &how,
                    &cfg.device,
                    signer,
                    &cfg.identity.certificate,
                ))?;
                println!(
                    "certificate: {} (enrolled; valid until unix {})",
                    cfg.identity.certificate.display(),
                    cert.not_after
                );
            }
            Ok(())
        }
        Command::Firstboot {
            bundle,
            config_dir,
            group,
            sysroot,
        } => {
            let report = sealcamd::firstboot::run(&sealcamd::firstboot::Options {
                bundle,
                search: sealcamd::firstboot::DEFAULT_SEARCH
                    .iter()
                    .map(PathBuf::from)
                    .collect(),
                config_dir,
                group: Some(group),
                detected: sealcam_hal::board::Board::detect(&sysroot),
            });
            println!("{}", report.line());
            if report.success() {
                Ok(())
            } else {
                Err(AlreadyReported.into())
            }
        }
        Command::Cameras => {
            let cameras = sealcam_hal::capture::list_cameras()?;
            if cameras.is_empty() {
                println!("no cameras found (V4L2 cameras appear as /dev/video*: is the camera connected and its driver loaded?)");
            }
            for c in cameras {
                println!(
                    "{}  {}",
                    c.device.as_deref().unwrap_or("(no device node)"),
                    c.name
                );
                for f in c.formats {
                    println!("    {f}");
                }
            }
            Ok(())
        }
        Command::Spool { command } => match command {
            SpoolCommand::List { config } => {
                let cfg = Config::load(&config)?;
                println!("{}", sealcamd::spool_admin::list(&cfg)?);
                Ok(())
            }
            SpoolCommand::Retry { config, sequence } => {
                let cfg = Config::load(&config)?;
                sealcamd::spool_admin::open(&cfg)?.release(sequence)?;
                println!("fragment {sequence} is queued for upload again");
                Ok(())
            }
            SpoolCommand::Drop { config, sequence } => {
                let cfg = Config::load(&config)?;
                let gap = sealcamd::spool_admin::open(&cfg)?.give_up(sequence)?;
                println!(
                    "fragment {sequence} given up: the next manifest declares it, signed, as a {:?} gap",
                    gap.reason
                );
                Ok(())
            }
            SpoolCommand::NewEpoch { config } => {
                let cfg = Config::load(&config)?;
                let signer = sealcamd::daemon::load_identity(&cfg)?;
                let epoch = sealcamd::spool_admin::new_epoch(&cfg, signer.as_ref())?;
                println!("{}", sealcamd::spool_admin::NewEpochReport(&epoch));
                Ok(())
            }
        },
        Command::Event { config, label } => {
            let cfg = Config::load(&config)?;
            if !cfg.mark_events {
                anyhow::bail!(
                    "{}: [events] enabled is not set, so this camera seals no event marks; set it and restart sealcamd",
                    config.display()
                );
            }
            let inbox = sealcamd::pipeline::events::EventInbox::open(
                &cfg.spool_dir.join(cfg.stream.as_str()),
            )?;
            let at_unix_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .unwrap_or(0);
            inbox.post(&sealcamd::pipeline::events::PostedMark {
                kind: sealcam_format::events::EventKind::Trigger,
                at_unix_ns,
                label,
            })?;
            println!("event marked: sealcamd seals it into the fragment it is recording (a mark it does not take within a minute of recording is dropped)");
            Ok(())
        }
        Command::Update { command } => update_command(command),
        Command::Health { config, reboot } => {
            use sealcamd::update::health::{self, Ended};
            let update = Config::load_update(&config);
            match health::run(&update)? {
                Ended::NotOnTrial => println!("the booted slot is not on trial; nothing to check"),
                Ended::MarkedGood => println!("the booted slot proved itself: a fragment was acknowledged by the ingest; marked good"),
                Ended::MarkedBad => {
                    println!(
                        "the booted slot did not prove itself in {} s; marked bad",
                        update.health_timeout.as_secs()
                    );
                    if reboot {
                        reboot_now()?;
                    }
                }
            }
            Ok(())
        }
        Command::Identity { config } => {
            let cfg = Config::load(&config)?;
            println!("{}", sealcamd::trust::identity::report(&cfg)?);
            Ok(())
        }
        Command::Check {
            config,
            sysroot,
            offline,
        } => {
            let cfg = Config::load_on(&config, &sysroot)?;
            let detected = sealcam_hal::board::Board::detect(&sysroot);
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let probes = rt.block_on(sealcamd::check::run(&cfg, detected, !offline));
            for p in &probes {
                println!("{p}");
            }
            let failed = probes.iter().filter(|p| p.failed()).count();
            if failed > 0 {
                anyhow::bail!("{failed} of {} checks failed", probes.len());
            }
            println!("all {} checks passed", probes.len());
            Ok(())
        }
    }
}

fn update_command(command: UpdateCommand) -> anyhow::Result<()> {
    use sealcamd::update::{fetch, install};
    match command {
        UpdateCommand::Check { config } => {
            let cfg = Config::load(&config)?;
            let signer = sealcamd::daemon::load_identity(&cfg)?;
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let checked =
                rt.block_on(async { fetch::Updater::new(&cfg, signer)?.check().await })?;
            match checked {
                fetch::Checked::UpToDate => println!("no newer update is offered"),
                fetch::Checked::Waiting => println!("a bundle waits in {} for the installer", cfg.update.dir.display()),
                fetch::Checked::Ready { version, sha256 } => println!(
                    "version {version} downloaded and verified (sha256 {sha256}); handed to the installer as {}",
                    cfg.update.dir.join(sealcamd::update::READY).display()
                ),
                fetch::Checked::Declined { version, why, until } => println!(
                    "version {version} is offered ({why}): {}",
                    fetch::declined(until)
                ),
            }
            Ok(())
        }
        UpdateCommand::Install { config, reboot } => {
            let update = Config::load_update(&config);
            match install::run(&update)? {
                install::Installed::Nothing => {
                    println!("no bundle waits in {}", update.dir.display())
                }
                install::Installed::NotInstalled(o) => {
                    anyhow::bail!("the bundle was not installed: {}", o.line())
                }
                install::Installed::Installed(o) => {
                    println!("{}", o.line());
                    if reboot {
                        reboot_now()?;
                    }
                }
            }
            Ok(())
        }
        UpdateCommand::NoteTrial {
            config,
            slot,
            version,
        } => {
            let update = Config::load_update(&config);
            let slot = sealcamd::update::install::note_trial(&update, slot, version)?;
            println!("slot {slot} is on trial: sealcam-health.service marks it good once a fragment is acknowledged after it boots");
            Ok(())
        }
    }
}

/// Asks systemd to reboot.
fn reboot_now() -> anyhow::Result<()> {
    let status = std::process::Command::new("systemctl")
        .arg("reboot")
        .status()
        .context("running systemctl reboot")?;
    if !status.success() {
        anyhow::bail!("systemctl reboot failed ({status}); reboot the camera by hand");
    }
    Ok(())
}
