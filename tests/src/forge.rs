//! A camera's uploads made by the test itself: fragments signed with a
//! provisioned device's own key and stamped with whatever times a test
//! needs (a camera clock in 1970 or in 2099), sent to the real ingest.

use p256::elliptic_curve::rand_core::OsRng;
use sealcam_format::{
    Closing, ConsumerSecretKey, FragmentSealer, Frame, ManifestHash, Name, SealedFragment,
    TrackConfig,
};

use crate::World;

pub const SECOND: u64 = 1_000_000_000;

/// Uploads the fragments of one device's stream "front", in sequence.
pub struct Forger {
    device: String,
    key: p256::ecdsa::SigningKey,
    client: reqwest::blocking::Client,
    consumer: ConsumerSecretKey,
    prev: ManifestHash,
    pub next: u64,
}

/// A provisioned device's key (the development software key of the world).
pub fn device_key(w: &World, device: &str) -> p256::ecdsa::SigningKey {
    use p256::pkcs8::DecodePrivateKey;
    let path = w.path().join(format!("{device}/device.key"));
    let der = sealcam_transport::pem::load_private_key(&path).unwrap();
    match der {
        rustls::pki_types::PrivateKeyDer::Pkcs8(k) => {
            p256::ecdsa::SigningKey::from_pkcs8_der(k.secret_pkcs8_der()).unwrap()
        }
        rustls::pki_types::PrivateKeyDer::Sec1(k) => p256::ecdsa::SigningKey::from(
            p256::SecretKey::from_sec1_der(k.secret_sec1_der()).unwrap(),
        ),
        other => panic!("unexpected key kind {other:?}"),
    }
}

impl Forger {
    /// For `device`, provisioned in `w` (see [`World::camera`]).
    pub fn new(w: &World, device: &str) -> Self {
        Self {
            device: device.to_owned(),
            key: device_key(w, device),
            client: w.client_with_cert(
                &format!("{device}/device.crt"),
                &format!("{device}/device.key"),
            ),
            consumer: ConsumerSecretKey::generate(&mut OsRng),
            prev: ManifestHash::GENESIS,
            next: 0,
        }
    }

    /// The next fragment, one second long from `start` (Unix ns, the
    /// camera's clock), as its device signs it.
    pub fn fragment(&mut self, start: u64) -> Vec<u8> {
        use p256::ecdsa::signature::Signer;
        let track = TrackConfig {
            codec: 1,
            width: 16,
            height: 16,
            framerate_num: 1,
            framerate_den: 1,
            codec_private: vec![1, 2, 3],
        };
        let mut sealer = FragmentSealer::new(
            Name::new(&self.device).unwrap(),
            Name::new("front").unwrap(),
            self.next,
            &track,
            &mut OsRng,
        )
        .unwrap();
        sealer
            .push_frame(&Frame {
                pts_ns: 0,
                duration_ns: SECOND,
                key_frame: true,
                data: vec![7; 100],
            })
            .unwrap();
        let unsigned = sealer
            .finish(
                Closing::simple(
                    self.prev,
                    start,
                    start + SECOND,
                    std::slice::from_ref(self.consumer.public()),
                ),
                &mut OsRng,
            )
            .unwrap();
        let sig: p256::ecdsa::Signature = self.key.sign(&unsigned.signing_message());
        let file = unsigned.into_file(&sig.to_bytes().into());
        self.prev = SealedFragment::parse(&file).unwrap().manifest_hash();
        self.next += 1;
        file
    }

    /// Makes the next fragment and uploads it to the ingest at `url`;
    /// returns it.
    pub fn upload(&mut self, url: &str, start: u64) -> Vec<u8> {
        let seq = self.next;
        let file = self.fragment(start);
        let r = self
            .client
            .put(format!("{url}/v1/fragments/{}/front/{seq}", self.device))
            .header("content-type", sealcam_api::media::FRAGMENT)
            .body(file.clone())
            .send()
            .unwrap();
        let status = r.status().as_u16();
        assert_eq!(status, 201, "{}", r.text().unwrap_or_default());
        file
    }
}

/// Now, Unix ns.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
