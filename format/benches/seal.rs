//! Sealing and opening throughput per frame size and per recipient count.
//! `scripts/bench` prints these beside `openssl speed -evp aes-256-gcm`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sealcam_format::{
    Closing, ConsumerSecretKey, FragmentSealer, Frame, ManifestHash, Name, SealedFragment,
    TrackConfig,
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

fn seal_fragment(frames: &[Frame], recipients: &[sealcam_format::ConsumerPublicKey]) -> Vec<u8> {
    let mut rng = rand::thread_rng();
    let mut s = FragmentSealer::new(
        Name::new("cam").unwrap(),
        Name::new("s").unwrap(),
        0,
        &track(),
        &mut rng,
    )
    .unwrap();
    for f in frames {
        s.push_frame(f).unwrap();
    }
    s.finish(
        Closing::simple(ManifestHash::GENESIS, 0, 1, recipients),
        &mut rng,
    )
    .unwrap()
    .into_file(&[0u8; 64])
}

fn per_frame_size(c: &mut Criterion) {
    let consumer = ConsumerSecretKey::generate(&mut rand::thread_rng());
    let recipients = [consumer.public().clone()];
    let mut g = c.benchmark_group("seal_frames");
    for size in [1024usize, 16 * 1024, 64 * 1024, 256 * 1024] {
        let n = (4 * 1024 * 1024 / size).max(4);
        let input = frames(size, n);
        g.throughput(Throughput::Bytes((size * n) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &input, |b, input| {
            b.iter(|| seal_fragment(input, &recipients))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("open_frames");
    for size in [1024usize, 64 * 1024, 256 * 1024] {
        let n = (4 * 1024 * 1024 / size).max(4);
        let file = seal_fragment(&frames(size, n), &recipients);
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
            b.iter(|| seal_fragment(&input, keys))
        });
    }
    g.finish();
}

criterion_group!(benches, per_frame_size, per_recipient_count);
criterion_main!(benches);
