//! Sealing and opening throughput per frame size and per recipient count.
//! `scripts/bench` prints these beside `openssl speed -evp aes-256-gcm`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sealcam_format::{
    Closing, ConsumerSecretKey, FragmentFile, FragmentSealer, Frame, ManifestHash, Name,
    SealedFragment, TrackConfig,
};

fn track() -> TrackConfig {
    TrackConfig {
        codec: 1,
        width: 1280,
        height: 720,
        framerate_num: 30,
        framerate_den: 1,
        codec_private: vec![1; 40],
    }
}

fn frames(size: usize, n: usize) -> Vec<Frame> {
    (0..n)
        .map(|i| Frame {
            pts_ns: i as u64,
            duration_ns: 1,
            key_frame: i == 0,
            data: vec![0x5a; size],
        })
        .collect()
}

/// Seals one fragment as sealcamd does: into the previous fragment's
/// payload buffer, ending with the file in its two parts (the daemon writes
/// them to the spool without joining them).
/// Seals one fragment as sealcamd does: into the previous fragment's
/// payload buffer, ending with the file in its two parts (the daemon writes
/// them to the spool without joining them).
fn seal_fragment(
    frames: &[Frame],
    recipients: &[sealcam_format::ConsumerPublicKey],
    buffer: Option<Vec<u8>>,
) -> FragmentFile {
    let mut s = sealer(buffer);
    for f in frames {
        s.push_frame(f).unwrap();
    }
    s.finish(
        Closing::simple(ManifestHash::GENESIS, 0, 1, recipients),
        &mut rand::thread_rng(),
    )
    .unwrap()
    .sign(&[0u8; 64])
}

fn sealer(buffer: Option<Vec<u8>>) -> FragmentSealer {
    let mut s = FragmentSealer::new(
        Name::new("cam").unwrap(),
        Name::new("s").unwrap(),
        0,
        &track(),
        &mut rand::thread_rng(),
    )
    .unwrap();
    if let Some(buffer) = buffer {
        s.reuse_buffer(buffer);
    }
    s
}

fn per_frame_size(c: &mut Criterion) {
    let consumer = ConsumerSecretKey::generate(&mut rand::thread_rng());
    let recipients = [consumer.public().clone()];
    // Sealing frames (encrypting, framing, hashing for the manifest): what
    // the camera does per frame. The once-per-fragment close (key wrapping
    // per recipient) is measured apart, below and in `close_fragment_recipients`.
    let mut g = c.benchmark_group("seal_frames");
    for size in [1024usize, 16 * 1024, 64 * 1024, 256 * 1024] {
        let n = (4 * 1024 * 1024 / size).max(4);
        let input = frames(size, n);
        g.throughput(Throughput::Bytes((size * n) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &input, |b, input| {
            let mut spare = None;
            b.iter_custom(|iters| {
                let mut spent = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let mut s = sealer(spare.take());
                    let start = std::time::Instant::now();
                    for f in input {
                        s.push_frame(f).unwrap();
                    }
                    spent += start.elapsed();
                    let file = s
                        .finish(
                            Closing::simple(ManifestHash::GENESIS, 0, 1, &recipients),
                            &mut rand::thread_rng(),
                        )
                        .unwrap()
                        .sign(&[0u8; 64]);
                    spare = Some(file.into_buffer());
                }
                spent
            })
        });
    }
    g.finish();
    // A whole 4 MiB fragment as sealcamd makes it: frames, then the close
    // with one recipient, into the previous fragment's buffer.
    let mut g = c.benchmark_group("seal_fragment");
    for size in [1024usize, 64 * 1024] {
        let n = 4 * 1024 * 1024 / size;
        let input = frames(size, n);
        g.throughput(Throughput::Bytes((size * n) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &input, |b, input| {
            let mut spare = None;
            b.iter(|| {
                let file = seal_fragment(input, &recipients, spare.take());
                let len = file.len();
                spare = Some(file.into_buffer());
                len
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("open_frames");
    for size in [1024usize, 64 * 1024, 256 * 1024] {
        let n = (4 * 1024 * 1024 / size).max(4);
        let file = seal_fragment(&frames(size, n), &recipients, None).to_vec();
        g.throughput(Throughput::Bytes((size * n) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &file, |b, file| {
            b.iter(|| {
                SealedFragment::parse(file)
                    .unwrap()
                    .open(&consumer)
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn per_recipient_count(c: &mut Criterion) {
    let mut g = c.benchmark_group("close_fragment_recipients");
    let input = frames(1024, 1);
    for n in [1usize, 4, 16] {
        let keys: Vec<_> = (0..n)
            .map(|_| {
                ConsumerSecretKey::generate(&mut rand::thread_rng())
                    .public()
                    .clone()
            })
            .collect();
        g.bench_with_input(BenchmarkId::from_parameter(n), &keys, |b, keys| {
            b.iter(|| seal_fragment(&input, keys, None))
        });
    }
    g.finish();
}

criterion_group!(benches, per_frame_size, per_recipient_count);
criterion_main!(benches);
