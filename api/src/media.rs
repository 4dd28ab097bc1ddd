//! Media types on the wire (`Content-Type`).

/// A whole sealed fragment file (`PUT` of a spooled fragment, and what a
/// consumer's fragment read answers).
pub const FRAGMENT: &str = "application/vnd.sealcam.fragment";

/// A fragment sent while it is recorded: the payload record by record as
/// sealed, then the signed manifest and its length (`docs/ref/protocol.md`,
/// Upload; `sealcam_format::fragment::join_streamed` reads it).
pub const FRAGMENT_STREAM: &str = "application/vnd.sealcam.fragment-stream";

/// A device certificate (PEM).
pub const PEM: &str = "application/x-pem-file";

/// An owner-signed device roster file (`roster.sdr`), as `GET
/// /v1/rosters/{owner}` answers it.
pub const ROSTER: &str = "application/vnd.sealcam.roster";

/// A signed chain restart record (`sealcam_format::restart`), as a device
/// uploads it.
pub const RESTART: &str = "application/vnd.sealcam.restart";
/// A signed head (`docs/ref/format.md`, Signed heads).
pub const HEAD: &str = "application/vnd.sealcam.head";

/// A RAUC update bundle (`.raucb`), as `GET /v1/bundles/{sha256}` answers it.
pub const BUNDLE: &str = "application/vnd.sealcam.rauc-bundle";
