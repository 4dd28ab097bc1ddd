//! The ingest's HTTP protocol as types: `docs/ref/protocol.md`, written once.
//!
//! The ingest serves these types and every client (the camera's uplink,
//! its certificate renewal and enrollment, `sealcamd check`, the consumer
//! CLI, the load generator) sends and reads them, so a field, a route or an
//! error code cannot drift between the two sides.
//!
//! * [`route`]: every request the ingest answers, decoded once from the
//!   method and path ([`Route::decode`]) and encoded the same way by clients
//!   ([`Route::path`]); the audit trail names a request by its route.
//! * [`error`]: the stable error codes ([`ErrorCode`]) and the JSON body of
//!   every refusal ([`ErrorBody`]).
//! * [`body`]: the request and response bodies, and the listing query.
//! * [`media`]: the media types of uploads and answers.
//! * [`ca`]: what an ingest asks the CA service (`sealcam-ca serve`).
//! * [`update`]: update offers, the headers a camera reports, versions.
//!
//! No I/O and no HTTP client or server: only what both ends must agree on.

pub mod body;
pub mod ca;
pub mod error;
pub mod media;
pub mod route;
pub mod token;
pub mod update;

pub use body::{
    CertificateEntry, CertificateResponse, ChallengeRequest, ChallengeResponse, EnrollAttestation,
    EnrollRequest, FragmentEntry, FragmentQuery, GapEntry, PendingResponse, PendingStatus,
    RenewRequest, RestartEntry, RoleName, RosterReceipt, RosterStatus, RosterUpload, StreamEntry,
    UploadReceipt, UploadStatus, WhoAmI, MAX_WAIT_S,
};
pub use ca::CaRenewRequest;
pub use error::{ErrorBody, ErrorCode};
pub use route::{Route, RouteError};
pub use update::UpdateOffer;
