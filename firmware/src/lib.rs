//! sealcamd, the camera daemon.
//!
//! ```text
//! hal::capture ──frames──▶ recorder ──sealed fragments──▶ spool ──backlog──▶ uplink ──mTLS──▶ ingest
//!                        (fragment, seal,               (fsync file         (HTTP/2: live and
//!                         sign manifest) ──live records──────────────────▶   backlog; the ack
//!                                                                           deletes it)
//! ```
//!
//! ```text
//! src/
//!   pipeline/     the data flow, in the order above
//!     recorder/   frames -> key-frame-aligned fragments, sealed and signed;
//!                 the manifest chain
//!     spool/      the crash-safe on-disk queue, and its state files
//!     live.rs     sealed records handed to the uplink as they are made
//!     uplink/     the link's state machine (link.rs), the HTTP client
//!                 (client.rs), the live and backlog lanes (lanes.rs)
//!   trust/        the device's identity
//!     key.rs          opens the device key (TPM, or a development file)
//!     provision.rs    creates the device key and its certificate request
//!     certificate.rs  enrollment and renewal of the device certificate
//!     recipients.rs   whom fragments are sealed to (owner-signed set)
//!     identity.rs     `sealcamd identity`: the key and certificate shown
//!   config/       the TOML config, parsed once into validated types
//!   firstboot/    `sealcamd firstboot`: provisioning from the card's
//!                 bundle (bundle.rs: its files and their check, shared with
//!                 `sealcam card write`; install.rs: into the config dir)
//!   check.rs      `sealcamd check`: every dependency probed, with its fix
//!   core_dump.rs  no core files: plaintext and data keys never on disk
//!   answer.rs     the ingest's answers, read up to a ceiling
//!   spool_admin.rs `sealcamd spool`: the queue, and held fragments decided
//!   update/       signed A/B updates: the check and download, the root
//!                 installer step, the health check of a slot on trial
//!   daemon.rs     wires the parts together, runs them until told to stop
//!   metrics.rs    Prometheus metrics on a loopback endpoint (off by default)
//!   watchdog.rs   systemd's watchdog, fed only while frames flow
//!   main.rs       the binary: arguments, logging, exit codes
//! ```
//!
//! * [`pipeline`]: [`pipeline::recorder`], [`pipeline::spool`],
//!   [`pipeline::live`], [`pipeline::uplink`].
//! * [`trust`]: [`trust::key`], [`trust::provision`], [`trust::certificate`],
//!   [`trust::recipients`], [`trust::identity`].
//! * [`config`], [`core_dump`], [`check`], [`firstboot`], [`answer`], [`spool_admin`], [`daemon`], [`date`], [`metrics`],
//!   [`watchdog`].

pub mod answer;
pub mod check;
pub mod config;
pub mod core_dump;
pub mod daemon;
pub mod date;
pub mod firstboot;
pub mod metrics;
pub mod pipeline;
pub mod spool_admin;
pub mod trust;
pub mod update;
pub mod watchdog;
