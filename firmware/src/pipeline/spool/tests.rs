//! Unit tests of the spool: round trips, crash leftovers, gaps, bounds, corrupt state.

use sealcam_format::ManifestHash;

use super::*;

#[test]
fn put_list_remove_and_state_round_trip() {
    let root = tempfile::tempdir().unwrap();
    let stream = Name::new("front").unwrap();
    let spool = Spool::open(root.path(), &stream).unwrap();
    spool.put(2, b"two").unwrap();
    spool.put(1, b"one").unwrap();
    let p = spool.pending().unwrap();
    assert_eq!(p.iter().map(|s| s.sequence).collect::<Vec<_>>(), vec![1, 2]);
    spool.remove(&p[0]).unwrap();
    assert_eq!(spool.pending().unwrap().len(), 1);

    let st = ChainState {
        next_sequence: 3,
        last_manifest: ManifestHash([9; 32]),
        last_end_unix_ns: 77,
        epoch: 3,
        began_without_state: false,
    };
    spool.save_state(&st).unwrap();
    assert_eq!(spool.load_state().unwrap(), st);
}

#[test]
fn leftover_temp_files_are_removed_on_open() {
    let root = tempfile::tempdir().unwrap();
    let stream = Name::new("front").unwrap();
    fs::create_dir_all(root.path().join("front")).unwrap();
    fs::write(
        root.path().join("front/.tmp-00000000000000000001.scf"),
        b"torn",
    )
    .unwrap();
    let spool = Spool::open(root.path(), &stream).unwrap();
    assert!(spool.pending().unwrap().is_empty());
    assert_eq!(fs::read_dir(spool.dir()).unwrap().count(), 0);
}

#[test]
fn pending_gaps_survive_until_cleared() {
    let root = tempfile::tempdir().unwrap();
    let spool = Spool::open(root.path(), &Name::new("front").unwrap()).unwrap();
    let g = |first| DeclaredGap {
        reason: GapReason::RefusedByIngest,
        first_sequence: first,
        sequence_count: 1,
        start_unix_ns: 5,
        end_unix_ns: 9,
    };
    spool.declare_gap(&g(1)).unwrap();
    spool.declare_gap(&g(2)).unwrap();
    let again = Spool::open(root.path(), &Name::new("front").unwrap()).unwrap();
    assert_eq!(again.pending_gaps().unwrap(), vec![g(1), g(2)]);
    again.clear_gaps(1).unwrap();
    assert_eq!(again.pending_gaps().unwrap(), vec![g(2)]);
    assert!(!again.mark_running().unwrap());
    assert!(
        again.mark_running().unwrap(),
        "a marker left behind means an unclean stop"
    );
    again.mark_stopped().unwrap();
    assert!(!again.mark_running().unwrap());
}

#[test]
fn full_spool_drops_the_oldest_and_declares_them() {
    let root = tempfile::tempdir().unwrap();
    let spool = Spool::open(root.path(), &Name::new("front").unwrap()).unwrap();
    for seq in 0..5 {
        spool.put(seq, &[0u8; 100]).unwrap();
    }
    let bounds = SpoolBounds {
        max_bytes: 350,
        max_age: None,
        when_full: FullPolicy::DropOldest,
    };
    assert_eq!(spool.make_room(&bounds, 100).unwrap(), Admission::Admit);
    let left: Vec<u64> = spool
        .pending()
        .unwrap()
        .iter()
        .map(|s| s.sequence)
        .collect();
    assert_eq!(left, vec![3, 4]);
    let gaps = spool.pending_gaps().unwrap();
    assert_eq!(gaps.len(), 1);
    assert_eq!(
        (
            gaps[0].reason,
            gaps[0].first_sequence,
            gaps[0].sequence_count
        ),
        (GapReason::SpoolEvicted, 0, 3)
    );
}

#[test]
fn full_spool_can_refuse_new_fragments_instead() {
    let root = tempfile::tempdir().unwrap();
    let spool = Spool::open(root.path(), &Name::new("front").unwrap()).unwrap();
    spool.put(0, &[0u8; 100]).unwrap();
    let bounds = SpoolBounds {
        max_bytes: 150,
        max_age: None,
        when_full: FullPolicy::StopRecording,
    };
    assert_eq!(spool.make_room(&bounds, 100).unwrap(), Admission::Refuse);
    assert_eq!(spool.pending().unwrap().len(), 1);
    assert!(
        spool.pending_gaps().unwrap().is_empty(),
        "the recorder declares the refused fragment"
    );
}

#[test]
fn corrupt_state_is_reported() {
    let root = tempfile::tempdir().unwrap();
    let stream = Name::new("front").unwrap();
    let spool = Spool::open(root.path(), &stream).unwrap();
    fs::write(spool.dir().join(STATE_FILE), "next_sequence=x\n").unwrap();
    assert!(matches!(
        spool.load_state(),
        Err(SpoolError::BadState { .. })
    ));
}

#[test]
fn a_held_fragment_waits_for_the_operator_and_declares_nothing_until_dropped() {
    let root = tempfile::tempdir().unwrap();
    let stream = Name::new("front").unwrap();
    let spool = Spool::open(root.path(), &stream).unwrap();
    spool.put(4, b"four").unwrap();
    spool.put(5, b"five").unwrap();
    spool.hold(&spool.spooled(4), "409: conflict").unwrap();
    spool.hold(&spool.spooled(5), "422: no").unwrap();
    // Out of the queue, no gap declared.
    assert!(spool.pending().unwrap().is_empty());
    assert!(spool.pending_gaps().unwrap().is_empty());
    let held = spool.held().unwrap();
    assert_eq!(
        held.iter()
            .map(|h| (h.sequence, h.why.as_str()))
            .collect::<Vec<_>>(),
        vec![(4, "409: conflict"), (5, "422: no")]
    );

    // The operator's command works on the spool as it is, beside the
    // daemon's open one: a retry queues it again, a drop declares it.
    let operator = Spool::inspect(root.path(), &stream).unwrap();
    operator.release(4).unwrap();
    assert_eq!(spool.pending().unwrap(), vec![spool.spooled(4)]);
    assert_eq!(fs::read(&spool.spooled(4).path).unwrap(), b"four");
    let gap = operator.give_up(5).unwrap();
    assert_eq!(gap.reason, GapReason::RefusedByIngest);
    assert_eq!((gap.first_sequence, gap.sequence_count), (5, 1));
    assert_eq!(spool.pending_gaps().unwrap(), vec![gap]);
    assert!(spool.held().unwrap().is_empty());
    // Nothing left in held/ but the directory.
    assert_eq!(fs::read_dir(spool.dir().join("held")).unwrap().count(), 0);

    let missing = operator.give_up(5).unwrap_err();
    assert!(
        matches!(missing, SpoolError::NotHeld { sequence: 5, .. }),
        "{missing}"
    );
    assert!(missing.to_string().contains("`sealcamd spool list`"));
    let Err(nowhere) = Spool::inspect(root.path(), &Name::new("side").unwrap()) else {
        panic!("a stream without a spool was opened");
    };
    assert!(nowhere.to_string().contains("side"), "{nowhere}");
}
