//! Hardware access for sealcamd.
//!
//! * [`capture`]: the camera through GStreamer: source, encoder, parser and
//!   an appsink, built from typed settings, delivering encoded frames.
//! * [`identity`]: the device key. The development software key lives here
//!   today; the TPM-held key joins it behind the same
//!   [`sealcam_transport::ExternalSigner`] interface.
//! * [`tpm`]: the device key held in a TPM, behind one thread that owns
//!   the TPM context.
//! * [`attest`]: the TPM's side of attestation at enrollment: the EK, an
//!   attestation key, TPM2_ActivateCredential and TPM2_Certify.

pub mod attest;
pub mod board;
pub mod capture;
pub mod identity;
pub mod pipeline;
pub mod tpm;
