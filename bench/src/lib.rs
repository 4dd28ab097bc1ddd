//! The benchmarks' tools (`scripts/bench`): load generation for the ingest
//! (simulated cameras that seal, sign and upload real fragments, and
//! latency summaries) and the report the scripts print.
//!
//! ```text
//! lib.rs                   Camera: a simulated camera's next fragment; summarize
//! report/                  statistics, verdicts and the results table (bench-report)
//! bin/ingest-load.rs       many cameras uploading over mutual TLS
//! bin/link-proxy.rs        a throttled, cuttable link for the drain benchmark
//! bin/bench-report.rs      the scripts' sums: medians, ratios, verdicts, tables
//! ```

use std::time::Duration;

pub mod report;

use p256::ecdsa::signature::Signer;
use rand::RngCore;
use sealcam_format::{
    Closing, ConsumerPublicKey, FragmentSealer, Frame, ManifestHash, Name, SealedFragment,
    TrackConfig,
};

/// One simulated camera stream: builds the next fragment of its chain.
pub struct Camera {
    device: Name,
    stream: Name,
    key: p256::ecdsa::SigningKey,
    recipient: ConsumerPublicKey,
    next: u64,
    prev: ManifestHash,
    frame_bytes: usize,
    frames: u32,
}

impl Camera {
    pub fn new(
        device: Name,
        stream: Name,
        key: p256::ecdsa::SigningKey,
        recipient: ConsumerPublicKey,
        fragment_bytes: usize,
    ) -> Self {
        // A 2 s fragment at 30 frames per second.
        let frames = 60u32;
        Self {
            device,
            stream,
            key,
            recipient,
            next: 0,
            prev: ManifestHash::GENESIS,
            frame_bytes: (fragment_bytes / frames as usize).max(1),
            frames,
        }
    }

    pub fn device(&self) -> &Name {
        &self.device
    }

    pub fn stream(&self) -> &Name {
        &self.stream
    }

    /// The next fragment (sequence, bytes): sealed, signed, chained.
    pub fn next_fragment(&mut self) -> anyhow::Result<(u64, Vec<u8>)> {
        let mut rng = rand::thread_rng();
        let track = TrackConfig {
            codec: 1,
            width: 1280,
            height: 720,
            framerate_num: 30,
            framerate_den: 1,
            codec_private: vec![1, 0x64, 0, 0x1f],
        };
        let seq = self.next;
        let mut sealer = FragmentSealer::new(
            self.device.clone(),
            self.stream.clone(),
            seq,
            &track,
            &mut rng,
        )?;
        let now = now_unix_ns();
        let mut data = vec![0u8; self.frame_bytes];
        for i in 0..self.frames {
            let head = data.len().min(64);
            rng.fill_bytes(&mut data[..head]);
            sealer.push_frame(&Frame {
                pts_ns: now + u64::from(i) * 33_333_333,
                duration_ns: 33_333_333,
                key_frame: i == 0,
                data: data.clone(),
            })?;
        }
        let unsigned = sealer.finish(
            Closing::simple(
                self.prev,
                now,
                now + 2_000_000_000,
                std::slice::from_ref(&self.recipient),
            ),
            &mut rng,
        )?;
        let sig: p256::ecdsa::Signature = self.key.sign(&unsigned.signing_message());
        let bytes = unsigned.into_file(&sig.to_bytes().into());
        self.prev = SealedFragment::parse(&bytes)?.manifest_hash();
        self.next += 1;
        Ok((seq, bytes))
    }
}

pub fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Percentiles of a set of latencies.
#[derive(Debug, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

pub fn summarize(mut samples: Vec<Duration>) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i]
    };
    Some(Summary {
        count: samples.len(),
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: at(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = summarize((1..=100).map(Duration::from_millis).collect()).unwrap();
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        assert!(summarize(Vec::new()).is_none());
    }

    #[test]
    fn fragments_chain_and_verify() {
        let key = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
        let consumer = sealcam_format::ConsumerSecretKey::generate(&mut rand::thread_rng());
        let mut cam = Camera::new(
            Name::new("cam").unwrap(),
            Name::new("s0").unwrap(),
            key.clone(),
            consumer.public().clone(),
            30_000,
        );
        let (s0, a) = cam.next_fragment().unwrap();
        let (s1, b) = cam.next_fragment().unwrap();
        assert_eq!((s0, s1), (0, 1));
        let dk = sealcam_format::DeviceVerifyingKey(*key.verifying_key());
        let (fa, fb) = (
            SealedFragment::parse(&a).unwrap(),
            SealedFragment::parse(&b).unwrap(),
        );
        fa.verify(&dk).unwrap();
        fb.verify(&dk).unwrap();
        assert_eq!(fb.manifest.prev, fa.manifest_hash());
        assert_eq!(fa.open(&consumer).unwrap().frames.len(), 60);
    }
}
