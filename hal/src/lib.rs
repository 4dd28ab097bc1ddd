//! Hardware access for sealcamd.
//!
//! * [`board`]: which board this is, and the source, encoder and picture
//!   its profile chooses.
//! * [`pipeline`]: the capture graph as plain data (source, decoder,
//!   converter, encoder), and the config's names of sources, formats and
//!   encoders.
//! * [`capture`]: the camera through GStreamer: a plan built and run,
//!   delivering encoded frames.
//! * [`tpm`]: the device key in the TPM, behind the
//!   [`sealcam_transport::ExternalSigner`] interface, on a thread of its own.
//! * [`identity`]: the development key in a file, behind the same interface.
//! * [`nv`]: high-water marks in TPM NV memory (the recipient-set floor),
//!   which deleting files on the camera's disk cannot lower.
//! * [`attest`]: the TPM's side of attestation at enrollment: the EK, an
//!   attestation key, TPM2_ActivateCredential and TPM2_Certify.

pub mod attest;
pub mod board;
pub mod capture;
pub mod identity;
pub mod nv;
pub mod pipeline;
pub mod tpm;
