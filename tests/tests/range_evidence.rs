//! Complete ranges a hostile ingest cannot shape: `sealcam fetch` and
//! `verify` through a front end that holds the ingest's TLS key and
//! rewrites what consumers ask for (`tests/src/lying_ingest.rs`). A range
//! cut short at either end, another stream of the same camera, another
//! sequence, and a tail withheld behind the camera's signed head are each
//! named, with the fragment or the time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Output;

use sealcam_format::SealedFragment;
use sealcam_system_tests::lying_ingest::LyingIngest;
use sealcam_system_tests::*;

/// A world whose camera recorded five one-second fragments of cam1/front
/// (and signed its head at the end), and a hostile front end before its
/// ingest, honest until told otherwise.
fn recorded_behind_a_liar() -> (World, Ingest, LyingIngest) {
    let w = World::new();
    let ingest = w.start_ingest();
    w.record("cam1", &ingest, 150);
    let liar = LyingIngest::start(
        w.path(),
        &ingest.url(),
        "consumer/alice.crt",
        "consumer/alice.key",
    );
    (w, ingest, liar)
}

/// `sealcam fetch cam1/front` through `liar` into `out`, anchored.
fn fetch_via(w: &World, liar: &LyingIngest, out: &str, extra: &[&str]) -> Output {
    let mut args: Vec<String> = vec!["fetch".into()];
    args.extend(alice_at_url(&liar.url()));
    args.extend(["cam1/front", "--out", out].map(String::from));
    args.extend(ANCHOR.map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("sealcam", &args, w.path())
}

/// The (start, end) of each fragment stored, by sequence.
fn spans(ingest: &Ingest) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64, u64)> = fragment_files(&ingest.data)
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap();
            let f = SealedFragment::parse(&bytes).unwrap();
            let m = &f.manifest;
            (m.sequence, m.start_unix_ns, m.end_unix_ns)
        })
        .collect();
    out.sort_unstable();
    out.iter().map(|&(_, s, e)| (s, e)).collect()
}

/// Unix ns as RFC 3339 UTC with nanoseconds (what `--from` takes).
fn rfc3339(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ns % 1_000_000_000
    )
}

/// In a listing request (`.../fragments?...`), sets `key=value`.
fn set_param(pq: &str, key: &str, value: &str) -> String {
    let (path, query) = pq.split_once('?').unwrap_or((pq, ""));
    if !path.ends_with("/fragments") {
        return pq.to_owned();
    }
    let mut kv: Vec<String> = query
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with(&format!("{key}=")))
        .map(str::to_owned)
        .collect();
    kv.push(format!("{key}={value}"));
    format!("{path}?{}", kv.join("&"))
}

/// A read of fragment `n` of cam1/front, if `pq` is one.
fn read_of(pq: &str) -> Option<u64> {
    pq.strip_prefix("/v1/streams/cam1/front/fragments/")?
        .split('?')
        .next()?
        .parse()
        .ok()
}

/// Reads of the fragments for which `hide` holds go to one that does not
/// exist (404), so fetch cannot get them by sequence either.
fn hiding(pq: &str, hide: impl Fn(u64) -> bool) -> Option<String> {
    read_of(pq)
        .filter(|&n| hide(n))
        .map(|_| "/v1/streams/cam1/front/fragments/999999".to_owned())
}

fn out_text(o: &Output) -> String {
    format!("{}\n{}", text(&o.stdout), text(&o.stderr))
}

#[test]
fn a_whole_stream_fetch_records_the_query_and_proves_both_ends() {
    let (w, _ingest, liar) = recorded_behind_a_liar();
    let out = fetch_via(&w, &liar, "all", &[]);
    let t = out_text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("fetched 5 fragments"), "{t}");
    assert!(
        t.contains("start covered: fragment 0 is the stream's first"),
        "{t}"
    );
    assert!(
        t.contains("end covered: fragment 4 is the newest the camera had signed a head for"),
        "{t}"
    );
    assert!(
        t.contains("the camera's newest signed head names sequence 4"),
        "{t}"
    );
    let query: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.path().join("all/query.json")).unwrap()).unwrap();
    assert_eq!(query["device"], "cam1");
    assert_eq!(query["stream"], "front");
    assert_eq!(query["server"], liar.url());
    assert!(query["asked_at_unix_ns"].as_u64().unwrap() > 0);
    let heads: Vec<_> = std::fs::read_dir(w.path().join("all/heads"))
        .unwrap()
        .collect();
    assert_eq!(heads.len(), 1);
    // And again offline.
    let v = verify(&w, "all");
    assert!(v.status.success(), "{}", out_text(&v));
}

#[test]
fn a_truncated_tail_is_named_by_the_cameras_signed_head() {
    let (w, _ingest, liar) = recorded_behind_a_liar();
    // The listing stops at 1, and 2.. cannot be read either.
    liar.rewrite(|pq| hiding(pq, |n| n > 1).unwrap_or_else(|| set_param(pq, "to_seq", "1")));
    let out = fetch_via(&w, &liar, "cut", &[]);
    let t = out_text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("FAILED:    range end:"), "{t}");
    assert!(
        t.contains("the camera's newest signed head names sequence 4")
            && t.contains("the server withheld sequences 2..=4"),
        "{t}"
    );
    assert!(t.contains("result:    FAILED"), "{t}");
    // verify says the same offline.
    let v = verify(&w, "cut");
    assert!(!v.status.success());
    assert!(
        text(&v.stdout).contains("the server withheld sequences 2..=4"),
        "{}",
        out_text(&v)
    );
    // What was fetched is still the camera's: it decrypts, with the
    // missing tail said.
    let d = decrypt_ok(&w, "cut", "cut.mkv");
    assert!(
        text(&d.stderr).contains("warning: range end: requested up to now"),
        "{}",
        out_text(&d)
    );
}

#[test]
fn a_truncated_tail_without_a_head_is_named_by_time() {
    let (w, ingest, liar) = recorded_behind_a_liar();
    let s = spans(&ingest);
    let (from, to) = (rfc3339(s[0].0), rfc3339(s[4].1));
    assert_eq!(s.len(), 5);
    let cut_at = s[2].0 - 1;
    // The listing answers up to just before fragment 2, the rest cannot be
    // read, and the head is hidden.
    liar.rewrite(move |pq| {
        if pq.ends_with("/head") {
            return "/v1/streams/cam1/front/no-head".into();
        }
        hiding(pq, |n| n > 1).unwrap_or_else(|| set_param(pq, "to_ns", &cut_at.to_string()))
    });
    let out = fetch_via(&w, &liar, "short", &["--from", &from, "--to", &to]);
    let t = out_text(&out);
    assert!(!out.status.success(), "{t}");
    // Named by time: what was asked for, where the fragments stop.
    assert!(
        t.contains("FAILED:    range end: requested up to 20")
            && t.contains("but the last fragment is 1, ending 20"),
        "{t}"
    );
    assert!(
        t.contains("no signed head shows the camera recorded nothing newer"),
        "{t}"
    );
}

#[test]
fn the_fragment_straddling_the_start_is_fetched_even_when_not_listed() {
    let (w, ingest, liar) = recorded_behind_a_liar();
    let s = spans(&ingest);
    // Asked from inside fragment 2; the listing is told to start after it.
    let from = s[2].0 + 1;
    let later = s[3].0 + 1;
    liar.rewrite(move |pq| set_param(pq, "from_ns", &later.to_string()));
    let out = fetch_via(&w, &liar, "straddle", &["--from", &rfc3339(from)]);
    let t = out_text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("start covered: fragment 2 starts"), "{t}");
    assert!(w.path().join("straddle/00000000000000000002.scf").exists());
}

#[test]
fn a_dropped_start_is_named_with_the_time_withheld() {
    let (w, ingest, liar) = recorded_behind_a_liar();
    let s = spans(&ingest);
    let from = s[2].0 + 1;
    let later = s[3].0 + 1;
    liar.rewrite(move |pq| {
        hiding(pq, |n| n < 3).unwrap_or_else(|| set_param(pq, "from_ns", &later.to_string()))
    });
    let out = fetch_via(&w, &liar, "headless", &["--from", &rfc3339(from)]);
    let t = out_text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("FAILED:    range start: requested from 20")
            && t.contains("but the first fragment is 3, starting 20")
            && t.contains("the server withheld 20"),
        "{t}"
    );
    // By sequence too.
    let out = fetch_via(&w, &liar, "headless-seq", &["--from-seq", "1"]);
    let t = out_text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("range start: requested from sequence 1, but the first fragment is 3"),
        "{t}"
    );
}

#[test]
fn another_sequence_is_refused_with_the_fragment_named() {
    let (w, _ingest, liar) = recorded_behind_a_liar();
    liar.rewrite(|pq| match read_of(pq) {
        Some(3) => "/v1/streams/cam1/front/fragments/2".into(),
        _ => pq.to_owned(),
    });
    let out = fetch_via(&w, &liar, "swapped", &[]);
    let t = out_text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(
            "the ingest answered a request for fragment 3 of cam1/front with fragment 2 of cam1/front; refused"
        ),
        "{t}"
    );
    assert!(!w.path().join("swapped/00000000000000000003.scf").exists());
}

#[test]
fn another_stream_of_the_same_camera_is_refused_with_the_fragment_named() {
    let (w, ingest, liar) = recorded_behind_a_liar();
    // The same camera records a second stream, "back", under a
    // certificate that allows it (same key, same roster entry).
    let front = std::fs::read_to_string(w.path().join("cam1.toml")).unwrap();
    let back_cfg = w.path().join("cam1-back.toml");
    std::fs::write(
        &back_cfg,
        front.replace("name = \"front\"", "name = \"back\""),
    )
    .unwrap();
    w.provision_software_key(&back_cfg);
    w.issue_device_cert("cam1");
    run_ok(
        "sealcamd",
        &["run", "--config", back_cfg.to_str().unwrap()],
        w.path(),
    );
    assert!(wait_until(30, || fragment_files(&ingest.data).len() >= 10));
    liar.rewrite(|pq| {
        pq.replacen(
            "/streams/cam1/front/fragments/",
            "/streams/cam1/back/fragments/",
            1,
        )
    });
    let out = fetch_via(&w, &liar, "other", &[]);
    let t = out_text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(
            "the ingest answered a request for fragment 0 of cam1/front with fragment 0 of cam1/back; refused"
        ),
        "{t}"
    );
}

#[test]
fn a_withheld_tail_in_a_live_view_is_exposed_by_the_cameras_head() {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = w.camera("cam1", &ingest.url(), 900, 1000);
    // A head every second ([upload] is the config's last section).
    let mut text_cfg = std::fs::read_to_string(&cfg).unwrap();
    text_cfg.push_str("head_interval_s = 1\n");
    std::fs::write(&cfg, text_cfg).unwrap();
    let mut camera = w.spawn_camera(&cfg);
    assert!(wait_until(30, || !fragment_files(&ingest.data).is_empty()));
    let liar = LyingIngest::start(
        w.path(),
        &ingest.url(),
        "consumer/alice.crt",
        "consumer/alice.key",
    );
    let mut args: Vec<String> = vec!["follow".into(), "cam1/front".into()];
    args.extend(alice_at_url(&liar.url()));
    args.extend(["--key", "alice.key", "--after", "0", "--out", "live.mkv"].map(String::from));
    args.extend(ANCHOR.map(String::from));
    let mut viewer = std::process::Command::new(bin("sealcam"))
        .args(&args)
        .current_dir(w.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(w.path().join("follow.log")).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(w.path().join("follow.log")).unwrap_or_default();
    assert!(
        wait_until(30, || log().matches("\nfragment ").count() >= 1),
        "{}",
        log()
    );
    // The operator lists nothing new any more; the camera keeps recording
    // and signing heads.
    liar.rewrite(|pq| {
        let Some((path, query)) = pq.split_once('?') else {
            return pq.to_owned();
        };
        if !path.ends_with("/fragments") {
            return pq.to_owned();
        }
        let query: Vec<String> = query
            .split('&')
            .map(|kv| {
                if kv.starts_with("after=") {
                    format!("after={}", u64::MAX - 1)
                } else {
                    kv.to_owned()
                }
            })
            .collect();
        format!("{path}?{}", query.join("&"))
    });
    assert!(
        wait_until(40, || log().contains("the server is withholding fragments")),
        "{}",
        log()
    );
    let l = log();
    assert!(
        l.contains("the camera's newest signed head (signed") && l.contains("names fragment"),
        "{l}"
    );
    let _ = viewer.kill();
    let _ = viewer.wait();
    let _ = camera.kill();
    let _ = camera.wait();
}

/// cam1's device key (the development software key of the world).
fn camera_key(w: &World) -> p256::ecdsa::SigningKey {
    use p256::pkcs8::DecodePrivateKey;
    let der = sealcam_transport::pem::load_private_key(&w.path().join("cam1/device.key")).unwrap();
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

/// A head of `device`/front naming `sequence` with `hash`, signed now by `key`.
fn signed_head(
    key: &p256::ecdsa::SigningKey,
    device: &str,
    sequence: u64,
    hash: [u8; 32],
) -> (u64, Vec<u8>) {
    use p256::ecdsa::signature::Signer;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let head = sealcam_format::head::Head {
        device: sealcam_format::Name::new(device).unwrap(),
        stream: sealcam_format::Name::new("front").unwrap(),
        sequence,
        manifest_hash: sealcam_format::ManifestHash(hash),
        fragment_end_unix_ns: at,
        signed_at_unix_ns: at,
    };
    let sig: p256::ecdsa::Signature = key.sign(&head.signing_message());
    (at, head.to_signed(&sig.to_bytes().into()))
}

#[test]
fn a_forked_or_foreign_head_fails_verify_by_name() {
    let (w, ingest, _liar) = recorded_behind_a_liar();
    w.fetch(&ingest, "cam1", "all");
    // The camera's own key names another fragment 2 than the one held.
    let (at, forked) = signed_head(&camera_key(&w), "cam1", 2, [0xab; 32]);
    let path = w.path().join(format!("all/heads/{at:020}.sch"));
    std::fs::write(&path, &forked).unwrap();
    let v = verify(&w, "all");
    let t = out_text(&v);
    assert!(!v.status.success(), "{t}");
    assert!(
        t.contains(&format!("FAILED:    heads/{at:020}.sch: forked history: the camera signed fragment 2 as manifest abab")),
        "{t}"
    );
    // A head no roster key signed.
    let stranger = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let (at2, foreign) = signed_head(&stranger, "cam1", 9, [1; 32]);
    std::fs::remove_file(&path).unwrap();
    std::fs::write(w.path().join(format!("all/heads/{at2:020}.sch")), &foreign).unwrap();
    let v = verify(&w, "all");
    let t = out_text(&v);
    assert!(!v.status.success(), "{t}");
    assert!(
        t.contains(&format!("FAILED:    heads/{at2:020}.sch: ")),
        "{t}"
    );
    // It does not count as the camera's word on the tail.
    assert!(
        !t.contains("the camera's newest signed head names sequence 9"),
        "{t}"
    );
}

#[test]
fn heads_are_accepted_only_from_their_own_device_and_served_to_readers() {
    let (w, ingest, _liar) = recorded_behind_a_liar();
    let cam = w.client_with_cert("cam1/device.crt", "cam1/device.key");
    let put = |client: &reqwest::blocking::Client, path: &str, body: Vec<u8>| {
        client
            .put(format!("{}{path}", ingest.url()))
            .body(body)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let key = camera_key(&w);
    // Another device's head, or a head of another device's stream.
    assert_eq!(
        put(
            &cam,
            "/v1/heads/cam2/front",
            signed_head(&key, "cam2", 1, [0; 32]).1
        ),
        403
    );
    assert_eq!(
        put(
            &cam,
            "/v1/heads/cam1/front",
            signed_head(&key, "cam2", 1, [0; 32]).1
        ),
        400
    );
    // Not signed by the key of the certificate presented.
    let stranger = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    assert_eq!(
        put(
            &cam,
            "/v1/heads/cam1/front",
            signed_head(&stranger, "cam1", 1, [0; 32]).1
        ),
        400
    );
    // Oversized.
    assert_eq!(put(&cam, "/v1/heads/cam1/front", vec![0; 5000]), 413);
    // A consumer may not upload heads.
    let alice = w.consumer_client("alice");
    assert_eq!(
        put(
            &alice,
            "/v1/heads/cam1/front",
            signed_head(&key, "cam1", 1, [0; 32]).1
        ),
        403
    );
    // The device's own, newer than the last: stored, and served.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (_, good) = signed_head(&key, "cam1", 4, [7; 32]);
    assert_eq!(put(&cam, "/v1/heads/cam1/front", good.clone()), 201);
    let served = alice
        .get(format!("{}/v1/streams/cam1/front/head", ingest.url()))
        .send()
        .unwrap();
    assert_eq!(served.status().as_u16(), 200);
    assert_eq!(served.bytes().unwrap().to_vec(), good);
    // Another within a second of the newest is refused: a device cannot
    // fill the store with heads.
    let (_, soon) = signed_head(&key, "cam1", 5, [7; 32]);
    assert_eq!(put(&cam, "/v1/heads/cam1/front", soon), 409);
}
