//! The stream index (issue 25): listings by sequence and by time read what
//! they return and a bounded amount more (counted by the ingest's
//! `listing_storage_reads` metric), the index is rebuilt from the key
//! objects when it is missing, a long poll is woken by an arrival, and a
//! fragment is served as it was uploaded. On a local directory, and on an
//! S3-compatible bucket (`s3s-fs`) shared by two instances.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_system_tests::forge::{now_ns, Forger, SECOND};
use sealcam_system_tests::s3::S3Server;
use sealcam_system_tests::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Local,
    S3,
}

struct Node {
    ingest: Ingest,
    metrics: u16,
}

struct Setup {
    w: World,
    /// The instance cameras upload to, and (on S3) another on the same bucket.
    nodes: Vec<Node>,
    /// Where the storage keeps objects on this machine.
    data: std::path::PathBuf,
    _s3: Option<S3Server>,
}

fn setup(backend: Backend) -> Setup {
    let w = World::new();
    let (storage, data, s3) = match backend {
        Backend::Local => {
            let data = w.path().join("ingest-data");
            (
                format!(
                    "[storage]\nkind = \"local\"\npath = \"{}\"\n",
                    data.display()
                ),
                data,
                None,
            )
        }
        Backend::S3 => {
            let s3 = S3Server::start(&w.path().join("s3"), "fleet");
            let c = s3.storage_config("fleet", &w.path().join("s3.secret"));
            (c, s3.root.join("fleet"), Some(s3))
        }
    };
    let start = |name: &str, pki: &str| {
        let metrics = unused_port();
        let config = w.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!("metrics_listen = \"127.0.0.1:{metrics}\"\n{storage}"),
        )
        .unwrap();
        let ingest = Ingest::start_with_config(w.path(), &w.path().join(pki), &config, &data);
        Node { ingest, metrics }
    };
    let mut nodes = vec![start("a", "pki")];
    if backend == Backend::S3 {
        w.issue_ingest("node2", "pki-b", &[]);
        for key in ["audit.key", "audit.pub"] {
            std::fs::copy(
                w.path().join("pki").join(key),
                w.path().join("pki-b").join(key),
            )
            .unwrap();
        }
        nodes.push(start("b", "pki-b"));
    }
    w.camera("cam1", &nodes[0].ingest.url(), 1, 1000);
    Setup {
        w,
        nodes,
        data,
        _s3: s3,
    }
}

/// Storage requests counted by `node` for its listings so far.
fn listing_reads(node: &Node) -> u64 {
    let text = http_get(&format!("http://127.0.0.1:{}/metrics", node.metrics))
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("sealcam_ingest_listing_storage_reads_sum "))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
        .unwrap_or(0)
}

/// The sequences `node` lists for `query`, and the storage requests the
/// listing cost it.
fn list(s: &Setup, node: &Node, query: &str) -> (Vec<u64>, u64) {
    let alice = s.w.consumer_client("alice");
    let before = listing_reads(node);
    let count_before = listing_count(node);
    let r = alice
        .get(format!(
            "{}/v1/streams/cam1/front/fragments?{query}",
            node.ingest.url()
        ))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let listed: Vec<serde_json::Value> = r.json().unwrap();
    let seqs = listed
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    // Every listing is counted, reading at least what it returns.
    let reads = listing_reads(node) - before;
    assert_eq!(listing_count(node), count_before + 1);
    assert!(reads >= listed.len() as u64, "{reads} reads for {listed:?}");
    (seqs, reads)
}

/// Listings `node` has counted.
fn listing_count(node: &Node) -> u64 {
    let text = http_get(&format!("http://127.0.0.1:{}/metrics", node.metrics))
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("sealcam_ingest_listing_storage_reads_count "))
        .map(|v| v.trim().parse::<u64>().unwrap())
        .unwrap_or(0)
}

fn listings_read_what_they_return(backend: Backend) {
    let s = setup(backend);
    let a = &s.nodes[0];
    let mut cam = Forger::new(&s.w, "cam1");
    // 40 fragments of one second, ten seconds apart by the camera's clock.
    let base = now_ns() - 1000 * SECOND;
    let start = |i: u64| base + i * 10 * SECOND;
    let mut files = Vec::new();
    for i in 0..40 {
        files.push(cam.upload(&a.ingest.url(), start(i)));
    }
    let window = format!(
        "from_ns={}&to_ns={}",
        start(10) + SECOND / 2,
        start(12) + SECOND / 2
    );
    for node in &s.nodes {
        // By time: three returned, a few requests more (the index's
        // completeness mark, a listing page), not one per fragment stored.
        let (seqs, reads) = list(&s, node, &window);
        assert_eq!(seqs, [10, 11, 12], "{backend:?}");
        assert!(reads <= 3 + 3, "{backend:?}: {reads} storage reads");
        // By sequence: after 35, four.
        let (seqs, reads) = list(&s, node, "after=35");
        assert_eq!(seqs, [36, 37, 38, 39], "{backend:?}");
        assert!(reads <= 4 + 2, "{backend:?}: {reads} storage reads");
        let (seqs, reads) = list(&s, node, "from_seq=5&to_seq=7");
        assert_eq!(seqs, [5, 6, 7], "{backend:?}");
        assert!(reads <= 3 + 2, "{backend:?}: {reads} storage reads");
        // Everything: forty, one read each.
        let (seqs, reads) = list(&s, node, "");
        assert_eq!(seqs, (0..40).collect::<Vec<_>>(), "{backend:?}");
        assert!(reads <= 40 + 2, "{backend:?}: {reads} storage reads");
    }

    // The time index lost: rebuilt from the key objects at the next time
    // query, which answers the same; the one after is bounded again.
    let index: Vec<_> = stored_object_files(&s.data)
        .into_iter()
        .filter(|p| {
            let p = p.to_string_lossy();
            p.contains("/streams/cam1/front/times/") || p.ends_with("/streams/cam1/front/indexed")
        })
        .collect();
    assert_eq!(index.len(), 41, "{backend:?}: {index:?}");
    for p in &index {
        std::fs::remove_file(p).unwrap();
    }
    let (seqs, reads) = list(&s, a, &window);
    assert_eq!(seqs, [10, 11, 12], "{backend:?}");
    assert!(
        reads >= 40,
        "{backend:?}: rebuilt with {reads} storage reads"
    );
    let (seqs, reads) = list(&s, a, &window);
    assert_eq!(seqs, [10, 11, 12], "{backend:?}");
    assert!(reads <= 3 + 3, "{backend:?}: {reads} storage reads");

    // A fragment is served as it was uploaded.
    let alice = s.w.consumer_client("alice");
    for node in &s.nodes {
        let served = alice
            .get(format!(
                "{}/v1/streams/cam1/front/fragments/10",
                node.ingest.url()
            ))
            .send()
            .unwrap();
        assert_eq!(served.status().as_u16(), 200);
        assert_eq!(served.bytes().unwrap().as_ref(), &files[10][..]);
    }

    // A long poll on each instance is answered by an upload to the first:
    // at once there (woken by the arrival), at its next look on the other.
    let polls: Vec<_> = s
        .nodes
        .iter()
        .map(|node| {
            let url = format!(
                "{}/v1/streams/cam1/front/fragments?after=39&wait_s=30",
                node.ingest.url()
            );
            let alice = s.w.consumer_client("alice");
            std::thread::spawn(move || {
                let listed: Vec<serde_json::Value> = alice.get(url).send().unwrap().json().unwrap();
                listed
                    .iter()
                    .map(|e| e["sequence"].as_u64().unwrap())
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    cam.upload(&a.ingest.url(), start(40));
    for poll in polls {
        assert_eq!(poll.join().unwrap(), [40], "{backend:?}");
    }
}

#[test]
fn listings_read_what_they_return_on_a_local_directory() {
    listings_read_what_they_return(Backend::Local);
}

#[test]
fn listings_read_what_they_return_on_s3_with_two_instances() {
    listings_read_what_they_return(Backend::S3);
}
