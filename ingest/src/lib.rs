//! sealcam-ingest, the receiving service.
//!
//! * [`audit`]: the tamper-evident audit trail of every call: its record
//!   format, the writer task, verification, the audit key.
//! * [`config`]: the configuration file.
//! * [`store`]: create-only storage of sealed fragments through
//!   `object_store` (a local directory or an S3-compatible bucket), keys
//!   apart from ciphertext: objects, fragments in their chain, path layout,
//!   the local disk thread and its file creation, one file each.
//! * [`limits`]: per-device upload limits.
//! * [`metrics`]: Prometheus metrics, health and readiness.
//! * [`retention`]: expiry and deletion by destroying keys first.
//! * [`legal_hold`]: the operator's legal holds, which retention respects.
//! * [`service`]: the service supervisor: configuration resolved,
//!   listeners bound, background tasks (CRL watch, retention, audit flush)
//!   run until it stops.
//! * [`http`]: the mutual-TLS HTTP API (`docs/ref/protocol.md`, as types in
//!   `sealcam-api`), one file per concern (routes, errors, audit layer,
//!   connections, upload, read, enroll, the body buffer): devices upload
//!   their own streams, consumers read; every fragment is checked before it
//!   is stored.
//!
//! * [`ca_client`]: the CA service (`sealcam-ca serve`), which enrolls and
//!   renews devices: the ingest passes enrollment through and asks for
//!   renewals; it holds no CA key and cannot issue a certificate.
//! * [`crl_sync`]: the revocation list fetched from the CA service on the
//!   poll interval, checked against the fleet CA, never rolled back,
//!   cached in the instance's own directory.
//!
//! The CA's operator commands (`init`, `device add`, `consumer issue`,
//! ...) are `sealcam-ca`'s, run as the CA's user; the ingest's binary has
//! none (`docs/design/device-identity.md`).
//!
//! The ingest never holds a key that decrypts video: it checks structure,
//! signatures and the hash chain, all of which are public.

pub mod audit;
pub mod ca_client;
pub mod config;
pub mod crl_sync;
pub mod http;
pub mod legal_hold;
pub mod limits;
pub mod metrics;
pub mod retention;
pub mod service;
pub mod store;
