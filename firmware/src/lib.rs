//! sealcamd, the camera daemon.
//!
//! ```text
//! hal::capture ──frames──▶ recorder ──sealed fragments──▶ spool ──backlog──▶ uplink ──mTLS──▶ ingest
//!                        (fragment, seal,               (fsync file         (HTTP/2: live and
//!                         sign manifest) ──live records──────────────────▶   backlog; the ack
//!                                                                           deletes it)
//! ```
//!
//! * [`config`]: the TOML config, parsed once into validated types.
//! * [`recorder`]: groups frames into key-frame-aligned fragments, seals and
//!   signs them, keeps the manifest chain.
//! * [`spool`]: the crash-safe on-disk queue of sealed fragments.
//! * [`live`]: the recorder hands each sealed record to the uplink at once.
//! * [`uplink`]: the link's state machine; uploads the fragment being
//!   recorded as it is sealed, and the spooled backlog, over mutual TLS.
//! * [`provision`]: creates the device key and its certificate request.
//! * [`check`]: `sealcamd check`, every dependency probed with its fix.
//! * [`daemon`]: wires the parts together and runs them until told to stop.
//! * [`metrics`]: Prometheus metrics on a loopback endpoint (off by default).
//! * [`watchdog`]: systemd's watchdog, fed only while frames flow.

pub mod certificate;
pub mod check;
pub mod config;
pub mod daemon;
pub mod identity;
pub mod live;
pub mod metrics;
pub mod provision;
pub mod recipients;
pub mod recorder;
pub mod spool;
pub mod uplink;
pub mod watchdog;
