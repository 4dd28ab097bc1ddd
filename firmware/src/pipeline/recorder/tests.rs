//! Unit tests of the recorder: fragment boundaries, the chain across restarts, gaps.

use super::*;
use p256::ecdsa::signature::Signer;
use sealcam_format::verify::{verify_chain, ChainReport};
use sealcam_format::{ConsumerSecretKey, DeviceVerifyingKey, SealedFragment};

struct TestKey(p256::ecdsa::SigningKey);

impl ExternalSigner for TestKey {
    fn sign(&self, message: &[u8]) -> Result<p256::ecdsa::Signature, SignerError> {
        Ok(self.0.sign(message))
    }
    fn verifying_key(&self) -> p256::ecdsa::VerifyingKey {
        *self.0.verifying_key()
    }
    fn describe(&self) -> String {
        "test key".into()
    }
}

const FRAME_NS: u64 = 100_000_000; // 10 fps

fn track() -> Arc<TrackConfig> {
    Arc::new(TrackConfig {
        codec: 1,
        width: 16,
        height: 16,
        framerate_num: 10,
        framerate_den: 1,
        codec_private: vec![1, 2, 3],
    })
}

/// Frames 0..n at 10 fps with a key frame every `gop` frames.
fn frames(range: std::ops::Range<u64>, gop: u64, track: &Arc<TrackConfig>) -> Vec<CapturedFrame> {
    range
        .map(|i| CapturedFrame {
            pts_ns: i * FRAME_NS,
            duration_ns: FRAME_NS,
            key_frame: i % gop == 0,
            data: vec![i as u8; 10],
            track: track.clone(),
        })
        .collect()
}

struct Rig {
    _dir: tempfile::TempDir,
    spool: Arc<Spool>,
    key: Arc<TestKey>,
    consumer: ConsumerSecretKey,
}

impl Rig {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), &Name::new("front").unwrap()).unwrap());
        Self {
            _dir: dir,
            spool,
            key: Arc::new(TestKey(p256::ecdsa::SigningKey::random(
                &mut rand::rngs::OsRng,
            ))),
            consumer: ConsumerSecretKey::generate(&mut rand::rngs::OsRng),
        }
    }

    fn recorder(&self) -> Recorder {
        let watcher = RecipientWatcher::start(
            crate::config::RecipientSource::Development(vec![self.consumer.public().clone()]),
            self.spool.clone(),
            None,
        )
        .unwrap();
        Recorder::new(
            Name::new("cam").unwrap(),
            Name::new("front").unwrap(),
            1_000_000_000,
            watcher,
            self.key.clone(),
            self.spool.clone(),
        )
        .unwrap()
    }

    /// One run of the daemon: a recorder records `range` (a key frame
    /// every ten frames) and closes; `clean`: it says it stopped cleanly.
    fn run(&self, range: std::ops::Range<u64>, clean: bool) {
        let mut rec = self.recorder();
        for f in frames(range, 10, &track()) {
            rec.push(f).unwrap();
        }
        rec.close().unwrap();
        if clean {
            rec.stopped_cleanly().unwrap();
        }
    }

    /// The chain `files` form, verified with the device key.
    fn verify(&self, files: &[Vec<u8>]) -> ChainReport {
        verify_chain(
            files
                .iter()
                .enumerate()
                .map(|(i, b)| (i.to_string(), b.as_slice())),
            &DeviceVerifyingKey(self.key.verifying_key()),
        )
    }

    fn spooled(&self) -> Vec<Vec<u8>> {
        self.spool
            .pending()
            .unwrap()
            .iter()
            .map(|s| std::fs::read(&s.path).unwrap())
            .collect()
    }
}

#[test]
fn fragments_start_at_key_frames_and_last_the_configured_duration() {
    let rig = Rig::new();
    let mut rec = rig.recorder();
    let t = track();
    // Two leading delta frames, then key frames every 5 frames (0.5 s).
    let mut input = frames(0..2, 1000, &t);
    for f in &mut input {
        f.key_frame = false;
    }
    input.extend(frames(2..32, 5, &t).into_iter().map(|mut f| {
        f.key_frame = (f.pts_ns / FRAME_NS - 2) % 5 == 0;
        f
    }));
    for f in input {
        rec.push(f).unwrap();
    }
    rec.close().unwrap();
    assert_eq!(rec.stats().frames_before_key_frame, 2);
    let files = rig.spooled();
    // 30 frames, 1 s fragments at 10 fps: 3 fragments of 10 frames.
    let counts: Vec<u32> = files
        .iter()
        .map(|b| SealedFragment::parse(b).unwrap().manifest.frame_count)
        .collect();
    assert_eq!(counts, vec![10, 10, 10]);
    for b in &files {
        let opened = SealedFragment::parse(b)
            .unwrap()
            .open(&rig.consumer)
            .unwrap();
        assert!(opened.frames[0].key_frame);
    }
}

#[test]
fn chain_continues_across_a_restart() {
    let rig = Rig::new();
    rig.run(0..20, true);
    // A new process: the chain resumes from the spool's state.
    rig.run(100..120, false);
    let files = rig.spooled();
    assert_eq!(files.len(), 4);
    let report = rig.verify(&files);
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.verified.last().unwrap().sequence, 3);
    // The restart is declared, signed, in the first fragment after it.
    assert_eq!(report.declared.len(), 1);
    assert_eq!(report.declared[0].gap.reason, GapReason::Restart);
    assert_eq!(report.declared[0].declared_by, 2);
}

#[test]
fn an_unclean_stop_is_declared_as_a_crash() {
    let rig = Rig::new();
    // No stopped_cleanly(): the process died.
    rig.run(0..10, false);
    rig.run(100..110, false);
    let files = rig.spooled();
    let m = SealedFragment::parse(&files[1]).unwrap().manifest;
    assert_eq!(m.gaps.len(), 1);
    assert_eq!(m.gaps[0].reason, GapReason::Crash);
    assert_eq!(m.gaps[0].sequence_count, 0);
}

#[test]
fn a_full_spool_drops_fragments_and_declares_them() {
    let rig = Rig::new();
    let t = track();
    let mut rec = rig.recorder();
    // Room for about two fragments of ten small frames.
    rec.set_spool_bounds(SpoolBounds {
        max_bytes: 2 * 1400,
        max_age: None,
        when_full: FullPolicy::DropOldest,
    });
    for f in frames(0..60, 10, &t) {
        rec.push(f).unwrap();
    }
    rec.close().unwrap();
    let files = rig.spooled();
    assert!(files.len() < 6, "the spool stayed bounded");
    let report = rig.verify(&files);
    // Everything missing is declared, by the camera, as evicted.
    assert!(report.gaps.is_empty(), "undeclared: {:?}", report.gaps);
    assert!(report
        .declared
        .iter()
        .any(|d| d.gap.reason == GapReason::SpoolEvicted));
}

#[test]
fn pending_gaps_are_declared_once() {
    let rig = Rig::new();
    let gap = DeclaredGap {
        reason: GapReason::RefusedByIngest,
        first_sequence: 7,
        sequence_count: 1,
        start_unix_ns: 1,
        end_unix_ns: 2,
    };
    rig.spool.declare_gap(&gap).unwrap();
    rig.run(0..20, false);
    let files = rig.spooled();
    let first = SealedFragment::parse(&files[0]).unwrap().manifest;
    let second = SealedFragment::parse(&files[1]).unwrap().manifest;
    assert_eq!(first.gaps, vec![gap]);
    assert!(second.gaps.is_empty());
}

#[test]
fn a_track_change_closes_the_fragment() {
    let rig = Rig::new();
    let mut rec = rig.recorder();
    let t1 = track();
    let t2 = Arc::new(TrackConfig {
        width: 32,
        ..(*t1).clone()
    });
    for f in frames(0..3, 10, &t1) {
        rec.push(f).unwrap();
    }
    // The new track starts with a key frame, well before the duration.
    for f in frames(10..13, 10, &t2) {
        rec.push(f).unwrap();
    }
    rec.close().unwrap();
    let files = rig.spooled();
    assert_eq!(files.len(), 2);
    let second = SealedFragment::parse(&files[1])
        .unwrap()
        .open(&rig.consumer)
        .unwrap();
    assert_eq!(second.track.width, 32);
}

#[test]
fn a_new_epoch_after_a_lost_spool_verifies_across_the_restart() {
    use sealcam_format::epochs::verify_chain_with_restarts;
    use sealcam_format::restart::RestartReason;
    use sealcam_format::verify::DeviceKeys;

    let rig = Rig::new();
    rig.run(0..20, true);
    let old = rig.spooled();
    assert_eq!(old.len(), 2);
    // The spool is lost: the next chain begins without state, from 0.
    std::fs::remove_dir_all(rig.spool.dir()).unwrap();
    std::fs::create_dir_all(rig.spool.dir()).unwrap();
    rig.run(0..10, true);
    assert!(rig.spool.load_state().unwrap().began_without_state);
    // The ingest refused it; the operator begins a new epoch.
    let now = 1_900_000_000 * 1_000_000_000;
    let epoch = rig
        .spool
        .begin_epoch(
            rig.key.as_ref(),
            &Name::new("cam").unwrap(),
            &Name::new("front").unwrap(),
            RestartReason::LostState,
            now,
        )
        .unwrap();
    assert_eq!(epoch.restart.previous, None);
    assert_eq!(epoch.restart.first_sequence, 1_900_000_000 << 20);
    assert_eq!(epoch.abandoned, [0]);
    assert!(rig.spooled().is_empty());
    rig.run(100..120, true);
    let new = rig.spooled();
    assert_eq!(new.len(), 2);
    let restarts: Vec<Vec<u8>> = rig
        .spool
        .pending_restarts()
        .unwrap()
        .iter()
        .map(|r| std::fs::read(&r.path).unwrap())
        .collect();
    assert_eq!(restarts.len(), 1);
    let key = DeviceVerifyingKey(rig.key.verifying_key());
    let files: Vec<(String, &[u8])> = old
        .iter()
        .chain(&new)
        .enumerate()
        .map(|(i, b)| (i.to_string(), b.as_slice()))
        .collect();
    let report = verify_chain_with_restarts(
        files.clone(),
        [("restart".to_owned(), restarts[0].as_slice())],
        DeviceKeys::Single(&key),
    );
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.restarts.len(), 1);
    assert_eq!(report.restarts[0].unknown_after, Some(1));
    // Without the record, the break is undeclared.
    assert!(!verify_chain_with_restarts(files, [], DeviceKeys::Single(&key)).is_ok());
}

#[test]
fn a_chain_the_ingest_stored_no_longer_counts_as_begun_without_state() {
    let rig = Rig::new();
    rig.run(0..10, true);
    assert!(rig.spool.load_state().unwrap().began_without_state);
    rig.spool.mark_chain_accepted().unwrap();
    let state = rig.spool.load_state().unwrap();
    assert!(!state.began_without_state);
    assert_eq!(state.next_sequence, 1);
}

/// A fragment that is never stored takes the gaps it declared with it:
/// whoever declares it missing declares them again, so that the holes
/// they explained do not turn into undeclared ones (what a server's
/// deletion looks like).
#[test]
fn a_fragment_given_up_or_evicted_passes_on_the_gaps_it_declared() {
    let rig = Rig::new();
    let mut rec = rig.recorder();
    let t = track();
    let mut push = |range| {
        for f in frames(range, 10, &t) {
            rec.push(f).unwrap();
        }
    };
    let declared_in = |sequence: u64| -> Vec<u64> {
        let bytes = std::fs::read(rig.spool.spooled(sequence).path).unwrap();
        let m = SealedFragment::parse(&bytes).unwrap().manifest;
        m.gaps.iter().map(|g| g.first_sequence).collect()
    };
    // Fragments 0 and 1 closed; 1 is lost, and fragment 2 declares it.
    push(0..21);
    let lost = rig.spool.spooled(1);
    rig.spool
        .declare_gap(&lost.gap(GapReason::SpoolWriteFailed))
        .unwrap();
    rig.spool.remove(&lost).unwrap();
    push(21..41);
    assert_eq!(declared_in(2), vec![1]);
    // The ingest keeps refusing fragment 2; the operator gives it up:
    // fragment 4 declares it, and what it declared.
    rig.spool.hold(&rig.spool.spooled(2), "422: no").unwrap();
    rig.spool.give_up(2).unwrap();
    push(41..51);
    assert_eq!(declared_in(4), vec![2, 1]);
    // A full spool evicts 0, 3 and 4: fragment 5 declares them, and what
    // fragment 4 declared.
    rig.spool
        .make_room(
            &SpoolBounds {
                max_bytes: 0,
                max_age: None,
                when_full: FullPolicy::DropOldest,
            },
            0,
        )
        .unwrap();
    push(51..61);
    rec.close().unwrap();
    let mut declared = declared_in(5);
    declared.sort_unstable();
    declared.dedup();
    assert_eq!(declared, vec![0, 1, 2, 3]);
    let report = rig.verify(&rig.spooled());
    assert!(report.is_ok(), "{report:?}");
}

/// With events on, every fragment carries an events record; a mark lands
/// in the fragment being recorded, within its frames' time.
#[test]
fn marks_are_sealed_into_the_fragment_being_recorded() {
    use crate::pipeline::events::PostedMark;
    use sealcam_format::events::EventKind;
    let rig = Rig::new();
    let mut rec = rig.recorder();
    rec.mark_events(true);
    let t = track();
    let mut all = frames(0..30, 10, &t).into_iter();
    for f in all.by_ref().take(15) {
        rec.push(f).unwrap();
    }
    rec.mark(PostedMark {
        kind: EventKind::Trigger,
        at_unix_ns: unix_now_ns(),
        label: "door".into(),
    });
    // Made long before anything was recorded: dropped, not moved.
    rec.mark(PostedMark {
        kind: EventKind::Trigger,
        at_unix_ns: 1,
        label: "stale".into(),
    });
    for f in all {
        rec.push(f).unwrap();
    }
    rec.close().unwrap();
    let files = rig.spooled();
    assert_eq!(files.len(), 3);
    let opened: Vec<_> = files
        .iter()
        .map(|f| {
            SealedFragment::parse(f)
                .unwrap()
                .open(&rig.consumer)
                .unwrap()
        })
        .collect();
    let events: Vec<_> = opened.iter().map(|o| o.events.clone().unwrap()).collect();
    assert!(events[0].marks.is_empty() && events[2].marks.is_empty());
    assert_eq!(events[1].marks.len(), 1);
    let mark = &events[1].marks[0];
    assert_eq!(
        (mark.kind, mark.label.as_str()),
        (EventKind::Trigger, "door")
    );
    let pts: Vec<u64> = opened[1].frames.iter().map(|f| f.pts_ns).collect();
    assert!(
        mark.at_ns >= pts[0] && mark.at_ns <= *pts.last().unwrap() + FRAME_NS,
        "{} outside {pts:?}",
        mark.at_ns
    );
    assert!(rig.verify(&files).is_ok());
}
