//! A camera that loses its storage begins a new epoch of its chain: a
//! signed restart record, which the ingest stores beside the old epoch
//! (nothing of which is touched) and which `verify` shows as a declared
//! break, saying what is unknown across it. A server cannot make one up,
//! nor hide deletions behind one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output};

use p256::ecdsa::signature::Signer;
use sealcam_format::restart::{Restart, RestartReason};
use sealcam_format::Name;
use sealcam_system_tests::lying_ingest::LyingIngest;
use sealcam_system_tests::*;

fn spool(w: &World, cfg: &std::path::Path, args: &[&str]) -> String {
    let mut all = vec!["spool"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", cfg.to_str().unwrap()]);
    text(&run_ok("sealcamd", &all, w.path()).stdout)
}

/// Sequence numbers of the fragments stored on the ingest.
fn stored_sequences(ingest: &Ingest) -> Vec<u64> {
    let mut seqs: Vec<u64> = stored_object_files(&ingest.data)
        .iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("keys")))
        .filter_map(|p| p.file_name()?.to_str()?.parse().ok())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    seqs
}

struct Recovered {
    w: World,
    ingest: Ingest,
    cfg: PathBuf,
    /// The new epoch's first sequence.
    first: u64,
    /// What the ingest held of the old epoch before the loss.
    old: Vec<u64>,
}

/// A camera records, loses its spool and chain state (a new SD card),
/// is refused by the ingest, and its operator recovers it through a new
/// epoch; the camera then records and uploads again.
fn lost_and_recovered() -> Recovered {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = w.record("cam1", &ingest, 90);
    let old = stored_sequences(&ingest);
    assert!(old.len() >= 3, "{old:?}");

    // A first start whose chain the ingest stored is the stream's own.
    let listed = spool(&w, &cfg, &["list"]);
    assert!(!listed.contains("began without state"), "{listed}");

    std::fs::remove_dir_all(w.path().join("cam1/spool")).unwrap();
    let out = Command::new(bin("sealcamd"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("SEALCAMD_UPLOAD__REFUSAL_TRIES", "2")
        .env("SEALCAMD_UPLOAD__DRAIN_TIMEOUT_S", "30")
        .current_dir(w.path())
        .output()
        .unwrap();
    let log = text(&out.stderr);
    // It does not loop: it ends, with the refused fragments held.
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("the ingest kept refusing"), "{log}");
    let listed = spool(&w, &cfg, &["list"]);
    assert!(listed.contains("began without state"), "{listed}");
    assert!(
        listed.contains("this camera probably lost its storage")
            && listed.contains("sealcamd spool new-epoch"),
        "{listed}"
    );

    let begun = spool(&w, &cfg, &["new-epoch"]);
    assert!(
        begun.contains("the previous epoch's end is unknown to this camera"),
        "{begun}"
    );
    let first: u64 = begun
        .split("new epoch begins at sequence ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no first sequence in {begun}"));
    let listed = spool(&w, &cfg, &["list"]);
    assert!(listed.contains("held:    none"), "{listed}");
    assert!(
        listed.contains(&format!(
            "restart: record for the epoch at sequence {first} waits for upload"
        )),
        "{listed}"
    );
    assert!(listed.contains("abandoned: "), "{listed}");

    run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    let listed = spool(&w, &cfg, &["list"]);
    assert!(!listed.contains("restart: record"), "{listed}");
    assert!(listed.contains("queued:  none"), "{listed}");
    Recovered {
        w,
        ingest,
        cfg,
        first,
        old,
    }
}

fn stdout(o: &Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

#[test]
fn a_camera_that_lost_its_storage_recovers_through_a_new_epoch_that_verifies() {
    let r = lost_and_recovered();
    let (w, first) = (&r.w, r.first);
    // Both epochs are stored; nothing of the old one was replaced.
    let stored = stored_sequences(&r.ingest);
    assert!(stored.starts_with(&r.old), "{stored:?}");
    let new: Vec<u64> = stored.iter().copied().filter(|s| *s >= first).collect();
    assert!(new.len() >= 3, "{stored:?}");
    assert_eq!(new[0], first);

    let fetched = w.fetch(&r.ingest, "cam1", "clip");
    let out = stdout(&fetched);
    assert!(out.contains("fetched 1 chain restart records"), "{out}");
    let verified = verify(w, "clip");
    let out = stdout(&verified);
    assert!(verified.status.success(), "{out}");
    let last_old = r.old.last().unwrap();
    assert!(
        out.contains("restart:   chain restart at 20") && out.contains(&format!(
            "a new epoch begins at sequence {first} (its number is unknown); the camera lost its state (previous epoch's end unknown: fragments after sequence {last_old} may have existed and cannot be accounted for)"
        )),
        "{out}"
    );
    assert!(out.contains("undeclared gaps: none"), "{out}");
    assert!(out.contains("result:    OK"), "{out}");
    // Both sides of the restart decrypt.
    decrypt_ok(w, "clip", "clip.mkv");

    // A live viewer crosses the restart too: the camera's record, not a
    // broken chain, and what it cannot account for.
    let mut args = vec!["follow".to_owned(), "cam1/front".to_owned()];
    args.extend(alice_at_url(&r.ingest.url()));
    args.extend(
        [
            "--key",
            "alice.key",
            "--after",
            &(last_old - 1).to_string(),
            "--fragments",
            "3",
            "--out",
            "live.mkv",
        ]
        .map(String::from),
    );
    args.extend(ANCHOR.map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let followed = run("sealcam", &args, w.path());
    let out = stdout(&followed);
    assert!(followed.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "chain restart at fragment {first}: the camera lost its state (signed by the camera)"
        )) && out.contains(&format!(
            "fragments it recorded after {last_old} may have existed and cannot be accounted for"
        )),
        "{out}"
    );
    assert!(!out.contains("NOT declared"), "{out}");

    // The camera keeps the fragments of the refused chain for its operator.
    let listed = spool(w, &r.cfg, &["list"]);
    assert!(listed.contains("abandoned: "), "{listed}");
}

#[test]
fn a_restart_the_server_makes_up_to_hide_a_deletion_fails_with_the_fragment_named() {
    let r = lost_and_recovered();
    let (w, first) = (&r.w, r.first);
    let liar = LyingIngest::start(
        w.path(),
        &r.ingest.url(),
        "consumer/alice.crt",
        "consumer/alice.key",
    );
    // The server drops fragment first+1 and claims the camera restarted
    // at first+2: a record it signs with a key of its own.
    let dropped = first + 1;
    let forged = {
        let restart = Restart {
            device: Name::new("cam1").unwrap(),
            stream: Name::new("front").unwrap(),
            epoch: 3,
            first_sequence: first + 2,
            previous: None,
            reason: RestartReason::LostState,
            // Within the camera's key's validity: only the signature is wrong.
            signed_at_unix_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        };
        let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
        let sig: p256::ecdsa::Signature = key.sign(&restart.signing_message());
        restart.to_signed(&sig.to_bytes().into())
    };
    liar.alter(move |asked, body| {
        let path = asked.split('?').next().unwrap_or_default();
        if path.ends_with("/fragments") {
            let mut list: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            list.retain(|e| e["sequence"].as_u64() != Some(dropped));
            return serde_json::to_vec(&list).unwrap();
        }
        if path.ends_with("/restarts") {
            let mut list: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            list.push(serde_json::json!({
                "first_sequence": first + 2,
                "record": hex::encode(&forged),
            }));
            return serde_json::to_vec(&list).unwrap();
        }
        body
    });
    let mut args = vec!["fetch".to_owned()];
    args.extend(alice_at_url(&liar.url()));
    args.extend(
        ["cam1/front", "--out", "lied"]
            .iter()
            .chain(ANCHOR.iter())
            .map(|s| s.to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let fetched = run("sealcam", &args, w.path());
    let out = stdout(&fetched);
    assert!(!fetched.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "GAP:       sequences {dropped}..={dropped} are missing"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "FAILED:    restarts/{:020}.scr: restart record signature",
            first + 2
        )),
        "{out}"
    );
    assert!(out.contains("result:    FAILED"), "{out}");

    // Offline, the saved directory fails the same way.
    let verified = verify(w, "lied");
    assert!(!verified.status.success(), "{}", stdout(&verified));
}

#[test]
fn the_ingest_refuses_a_restart_record_not_signed_by_the_device_it_comes_from() {
    let r = lost_and_recovered();
    let w = &r.w;
    // cam1 presents its own certificate but sends a record its key did
    // not sign: refused, nothing stored.
    let forged = Restart {
        device: Name::new("cam1").unwrap(),
        stream: Name::new("front").unwrap(),
        epoch: 0,
        first_sequence: r.first + 1_000,
        previous: None,
        reason: RestartReason::Operator,
        signed_at_unix_ns: 1,
    };
    let key = p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap();
    let sig: p256::ecdsa::Signature = key.sign(&forged.signing_message());
    let client = w.client_with_cert("cam1/device.crt", "cam1/device.key");
    let resp = client
        .put(format!(
            "{}/v1/restarts/cam1/front/{}",
            r.ingest.url(),
            r.first + 1_000
        ))
        .body(forged.to_signed(&sig.to_bytes().into()))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("not signed by the key of the certificate"),
        "{body}"
    );
    let stored = std::fs::read_dir(r.ingest.data.join("restarts/cam1/front"))
        .unwrap()
        .count();
    assert_eq!(stored, 1);

    // A record the camera's own key signed, but beginning below footage
    // already stored (a stolen camera poisoning its history before its
    // revocation): refused, nothing stored.
    let below = Restart {
        first_sequence: 1,
        ..forged
    };
    use p256::pkcs8::DecodePrivateKey;
    let own = p256::ecdsa::SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(w.path().join("cam1/device.key")).unwrap(),
    )
    .unwrap();
    let sig: p256::ecdsa::Signature = own.sign(&below.signing_message());
    let resp = client
        .put(format!("{}/v1/restarts/cam1/front/1", r.ingest.url()))
        .body(below.to_signed(&sig.to_bytes().into()))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("must begin above every fragment stored"),
        "{body}"
    );
    let stored = std::fs::read_dir(r.ingest.data.join("restarts/cam1/front"))
        .unwrap()
        .count();
    assert_eq!(stored, 1);
}

/// An epoch the operator begins while the camera still knows its chain
/// names the previous epoch's end; a range asked from between the two
/// epochs is covered at its start by that end, which `fetch` walks back
/// to across the restart (no fragment lies between them to fetch).
#[test]
fn a_range_asked_from_between_two_epochs_is_covered_by_the_named_end() {
    let w = World::new();
    let ingest = w.start_ingest();
    let cfg = w.record("cam1", &ingest, 90);
    let old = stored_sequences(&ingest);
    let last_old = *old.last().unwrap();
    let begun = spool(&w, &cfg, &["new-epoch"]);
    assert!(
        begun.contains(&format!("the previous one ended at sequence {last_old}")),
        "{begun}"
    );
    run_ok(
        "sealcamd",
        &["run", "--config", cfg.to_str().unwrap()],
        w.path(),
    );
    let stored = stored_sequences(&ingest);
    let first = *stored.iter().find(|s| **s > last_old).unwrap();
    assert!(first > last_old + 1, "{stored:?}");

    let from = (last_old + 1).to_string();
    let fetched = w.fetch_with(&ingest, "cam1", "between", &["--from-seq", &from]);
    let out = stdout(&fetched);
    assert!(fetched.status.success(), "{out}");
    assert!(
        w.path()
            .join(format!("between/{last_old:020}.scf"))
            .exists(),
        "{out}"
    );
    assert!(
        out.contains(&format!("previous epoch ended at sequence {last_old}"))
            && out.contains("result:    OK"),
        "{out}"
    );
}
