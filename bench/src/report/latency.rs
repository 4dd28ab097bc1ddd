//! Glass-to-durable latency: every frame's wall time, spread evenly over
//! its fragment's time range (from the manifest), to the write time of the
//! fragment's key object, which the ingest writes last and syncs.

use std::path::Path;
use std::time::UNIX_EPOCH;

use sealcam_format::{Manifest, SignedManifest};

use super::stats::percentile;
use super::ReportError;

/// Each frame's latency in ms for a fragment whose key object was durable
/// at `durable_ns`.
pub fn frame_latencies(manifest: &Manifest, durable_ns: u64) -> Vec<f64> {
    let frames = manifest.frame_count;
    if frames == 0 {
        return Vec::new();
    }
    let start = manifest.start_unix_ns as f64;
    let step = (manifest.end_unix_ns as f64 - start) / f64::from(frames);
    (0..frames)
        .map(|i| (durable_ns as f64 - (start + step * f64::from(i))) / 1e6)
        .collect()
}

/// p50 and p99 in ms, and the number of frames.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub frames: usize,
}

/// The latency percentiles of all frames of the key objects in `keys_dir`.
pub fn glass_to_durable(keys_dir: &Path) -> Result<Option<Latency>, ReportError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ReportError::Io { path, source }
    };
    let mut all = Vec::new();
    for entry in std::fs::read_dir(keys_dir).map_err(io(keys_dir))? {
        let path = entry.map_err(io(keys_dir))?.path();
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let signed = SignedManifest::parse(&bytes).map_err(|source| ReportError::Format {
            path: path.clone(),
            source,
        })?;
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(io(&path))?;
        let durable_ns = modified
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        all.extend(frame_latencies(&signed.manifest, durable_ns));
    }
    all.sort_by(f64::total_cmp);
    Ok(match (percentile(&all, 0.5), percentile(&all, 0.99)) {
        (Some(p50), Some(p99)) => Some(Latency {
            p50,
            p99,
            frames: all.len(),
        }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_spread_over_the_fragment() {
        let v = two_frame_manifest();
        let lat = frame_latencies(&v, 3_000_000_000);
        // Two frames over 0..2 s, durable at 3 s: 3000 ms and 2000 ms.
        assert_eq!(lat, vec![3000.0, 2000.0]);
    }

    fn two_frame_manifest() -> Manifest {
        use sealcam_format::{ManifestHash, Name};
        Manifest {
            version: 1,
            suite: 1,
            device: Name::new("cam").unwrap(),
            stream: Name::new("front").unwrap(),
            sequence: 0,
            prev: ManifestHash::GENESIS,
            start_unix_ns: 0,
            end_unix_ns: 2_000_000_000,
            frame_count: 2,
            payload_len: 0,
            payload_hash: [0; 32],
            recipient_set_version: 0,
            recipients: Vec::new(),
            gaps: Vec::new(),
        }
    }
}
