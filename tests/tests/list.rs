//! `sealcam list`: what the ingest says exists, marked unverified, with the
//! holes a hostile server leaves visible before anything is fetched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sealcam_system_tests::{alice_at, run, run_ok, stored_object_files, text, World};

fn list(w: &World, ingest: &sealcam_system_tests::Ingest, extra: &[&str]) -> String {
    let server = alice_at(ingest);
    let mut args = vec!["list"];
    args.extend(server.iter().map(String::as_str));
    args.extend_from_slice(extra);
    text(&run_ok("sealcam", &args, w.path()).stdout)
}

#[test]
fn list_shows_streams_fragments_and_holes_as_unverified() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 150);

    let streams = list(&w, &ingest, &[]);
    assert_eq!(streams.trim(), "unverified  cam1/front", "{streams}");

    let all = list(&w, &ingest, &["cam1/front"]);
    assert!(all.contains("the server's index, not checked"), "{all}");
    assert!(
        all.contains("unverified  fragments 0..=4 (5): "),
        "one run of five fragments: {all}"
    );
    assert!(all.contains("150 frames"), "{all}");

    // The operator deletes fragment 2 from its storage: the listing shows
    // the hole it leaves, with its time, before anyone fetches.
    let fragment_2: Vec<_> = stored_object_files(&ingest.data)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n == format!("{:020}", 2).as_str())
        })
        .collect();
    assert!(!fragment_2.is_empty(), "fragment 2 is stored");
    for p in &fragment_2 {
        std::fs::remove_file(p).unwrap();
    }
    let holed = list(&w, &ingest, &["cam1/front"]);
    assert!(holed.contains("unverified  fragments 0..=1 (2)"), "{holed}");
    assert!(
        holed.contains(
            "unverified  hole: sequences 2..=2 are not listed and no listed manifest declares why"
        ),
        "{holed}"
    );
    assert!(holed.contains("unverified  fragments 3..=4 (2)"), "{holed}");

    // A sequence range, and JSON for scripts.
    let json = list(&w, &ingest, &["cam1/front", "--from-seq", "3", "--json"]);
    let sequences: Vec<u64> = json
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["sequence"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(sequences, [3, 4], "{json}");
}

#[test]
fn list_of_a_stream_the_consumer_may_not_read_is_refused() {
    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 30);
    w.consumer("bob", &["cam2/front"]);
    let url = ingest.url();
    let args = [
        "list",
        "--server",
        &url,
        "--ca",
        "pki/ca.crt",
        "--cert",
        "consumer/bob.crt",
        "--tls-key",
        "consumer/bob.key",
    ];
    // bob sees no stream he may not read...
    let streams = text(&run_ok("sealcam", &args, w.path()).stdout);
    assert!(streams.contains("no stream you may read"), "{streams}");
    // ...and asking for one by name is refused with the stream named.
    let mut named = args.to_vec();
    named.push("cam1/front");
    let out = run("sealcam", &named, w.path());
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("listing cam1/front"), "{err}");
    assert!(err.contains("403"), "{err}");
}
