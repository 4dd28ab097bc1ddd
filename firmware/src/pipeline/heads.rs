//! The head signer: every `upload.head_interval_s`, the camera signs a
//! head of its stream (`sealcam_format::head`: the newest fragment it has
//! sealed, its manifest hash and end, and the time) with the device key
//! that signs its manifests, and sends it to the ingest.
//!
//! It runs beside recording and uploads and never holds either up: the
//! newest sealed fragment is read from the spool's chain state, signing
//! runs on a blocking thread (the key may be in a TPM), heads go over a
//! connection of their own (never queued behind, nor changing the pace of,
//! fragment uploads), and a head that cannot be sent is dropped,
//! superseded by the next one. Heads are sent
//! whether or not fragment uploads get through: a head naming fragments
//! the ingest does not serve is how a verifier tells they were withheld.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sealcam_api::{media, Route};
use sealcam_format::head::Head;
use sealcam_format::Name;
use sealcam_transport::ExternalSigner;

use super::spool::Spool;
use super::uplink::Uplink;

/// The longest a head upload may take before it is given up.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Why one head was not signed or sent (logged; the next one is tried).
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("reading the chain state: {0}")]
    State(#[from] super::spool::SpoolError),
    #[error("signing the head with the device key: {0}")]
    Sign(String),
    #[error("sending the head: {0}")]
    Send(String),
    #[error("the ingest refused the head: {status}: {body}")]
    Refused {
        status: reqwest::StatusCode,
        body: String,
    },
}

/// What the signer needs.
pub struct HeadSigner {
    pub device: Name,
    pub stream: Name,
    pub signer: Arc<dyn ExternalSigner>,
    pub spool: Arc<Spool>,
    pub interval: Duration,
    /// The fleet CA and the device certificate, for its own connection.
    pub ca: PathBuf,
    pub certificate: PathBuf,
    /// Its connection, made afresh after a failure (and so after a
    /// certificate renewal).
    pub client: Mutex<Option<reqwest::Client>>,
}

fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

impl HeadSigner {
    /// The head of what is sealed now, or `None` before the first fragment.
    fn current(&self) -> Result<Option<Head>, HeadError> {
        let state = self.spool.load_state()?;
        let Some(sequence) = state.next_sequence.checked_sub(1) else {
            return Ok(None);
        };
        Ok(Some(Head {
            device: self.device.clone(),
            stream: self.stream.clone(),
            sequence,
            manifest_hash: state.last_manifest,
            fragment_end_unix_ns: state.last_end_unix_ns,
            signed_at_unix_ns: now_unix_ns(),
        }))
    }

    /// Signs the current head; `None` before the first fragment.
    pub async fn sign(&self) -> Result<Option<Vec<u8>>, HeadError> {
        let Some(head) = self.current()? else {
            return Ok(None);
        };
        let signer = self.signer.clone();
        let message = head.signing_message();
        let sig = tokio::task::spawn_blocking(move || signer.sign(&message))
            .await
            .map_err(|e| HeadError::Sign(e.to_string()))?
            .map_err(|e| HeadError::Sign(e.to_string()))?;
        Ok(Some(head.to_signed(&sig.to_bytes().into())))
    }

    /// The head connection, made if there is none.
    fn client(&self) -> Result<reqwest::Client, HeadError> {
        let mut held = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = held.as_ref() {
            return Ok(c.clone());
        }
        let c = Uplink::device_client(&self.ca, &self.certificate, self.signer.clone())
            .map_err(|e| HeadError::Send(e.to_string()))?;
        *held = Some(c.clone());
        Ok(c)
    }

    /// Forgets the head connection: the next head makes a new one.
    fn drop_client(&self) {
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Signs and sends one head.
    pub async fn once(&self, uplink: &Uplink) -> Result<(), HeadError> {
        let result = self.send(uplink.base_url()).await;
        if result.is_err() {
            self.drop_client();
        }
        result
    }

    async fn send(&self, base: &str) -> Result<(), HeadError> {
        let Some(bytes) = self.sign().await? else {
            return Ok(());
        };
        let route = Route::UploadHead {
            device: self.device.clone(),
            stream: self.stream.clone(),
        };
        let resp = self
            .client()?
            .put(format!("{base}{}", route.path()))
            .header(reqwest::header::CONTENT_TYPE, media::HEAD)
            .timeout(SEND_TIMEOUT)
            .body(bytes)
            .send()
            .await
            .map_err(|e| HeadError::Send(sealcam_base::error_chain(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = crate::answer::text(resp).await;
        Err(HeadError::Refused { status, body })
    }

    /// Signs and sends a head every interval, forever.
    pub async fn run(&self, uplink: &Uplink) -> std::convert::Infallible {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.once(uplink).await {
                tracing::debug!(error = %e, "head not sent; the next one supersedes it");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sealcam_format::head::SignedHead;
    use sealcam_format::{DeviceVerifyingKey, ManifestHash};

    use super::*;
    use crate::pipeline::spool::ChainState;

    struct Key(p256::ecdsa::SigningKey);

    impl ExternalSigner for Key {
        fn sign(
            &self,
            message: &[u8],
        ) -> Result<p256::ecdsa::Signature, sealcam_transport::signer::SignerError> {
            use p256::ecdsa::signature::Signer;
            Ok(self.0.sign(message))
        }
        fn verifying_key(&self) -> p256::ecdsa::VerifyingKey {
            *self.0.verifying_key()
        }
        fn describe(&self) -> String {
            "test key".into()
        }
    }

    #[tokio::test]
    async fn the_head_names_the_newest_sealed_fragment_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let stream = Name::new("front").unwrap();
        let spool = Arc::new(Spool::open(dir.path(), &stream).unwrap());
        let key = p256::ecdsa::SigningKey::from_slice(&[3; 32]).unwrap();
        let signer = HeadSigner {
            device: Name::new("cam1").unwrap(),
            stream,
            signer: Arc::new(Key(key.clone())),
            spool: spool.clone(),
            interval: Duration::from_secs(1),
            ca: PathBuf::new(),
            certificate: PathBuf::new(),
            client: Mutex::new(None),
        };
        // Nothing sealed yet: nothing to state.
        assert!(signer.sign().await.unwrap().is_none());
        spool
            .save_state(&ChainState {
                next_sequence: 8,
                last_manifest: ManifestHash([5; 32]),
                last_end_unix_ns: 77,
                ..ChainState::default()
            })
            .unwrap();
        let bytes = signer.sign().await.unwrap().unwrap();
        let verifier = DeviceVerifyingKey(*key.verifying_key()).verifier().unwrap();
        let parsed = SignedHead::parse(&bytes).unwrap();
        let head = parsed.verify(&verifier).unwrap();
        assert_eq!(head.sequence, 7);
        assert_eq!(head.manifest_hash, ManifestHash([5; 32]));
        assert_eq!(head.fragment_end_unix_ns, 77);
        assert!(head.signed_at_unix_ns > 0);
    }
}
