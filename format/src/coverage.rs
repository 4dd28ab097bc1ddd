//! Whether a run of verified fragments covers the range a consumer asked
//! for, at both ends.
//!
//! Each fragment proves itself and the chain proves nothing was cut out
//! between two fragments; neither proves that the run starts where the
//! range starts or ends where it ends. A server that answers a request for
//! 10:00..11:00 with 10:00..10:40, or with 10:20..11:00, shapes what the
//! consumer believes. This module decides, from the request, the fragments
//! and the camera's newest signed head ([`crate::head`]):
//!
//! * the start is covered when the first fragment starts at or before the
//!   requested start (time or sequence), or is a legitimate start of the
//!   stream's chain ([`is_chain_start`]);
//! * the end is covered when the last fragment reaches the requested end,
//!   or is at least as new as the newest fragment the camera has signed a
//!   head for. A head that names a newer fragment proves the server
//!   withheld the tail.
//!
//! Pure: no I/O, no clock (the time of the request is an input).

use crate::manifest::ManifestHash;

/// What the consumer asked the server for (every bound optional).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requested {
    pub from_ns: Option<u64>,
    pub to_ns: Option<u64>,
    pub from_seq: Option<u64>,
    pub to_seq: Option<u64>,
    /// When the request was made (the consumer's clock, Unix ns).
    pub asked_at_unix_ns: u64,
}

/// A verified fragment, as far as coverage is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub sequence: u64,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub prev: ManifestHash,
    /// It begins an epoch that a verified chain restart record declares
    /// ([`crate::epochs`]): a declared break, nothing before it links.
    pub declared_restart: bool,
}

/// The newest head the camera signed that the verifier holds (its
/// signature already checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadSeen {
    pub sequence: u64,
    pub fragment_end_unix_ns: u64,
    pub signed_at_unix_ns: u64,
}

/// Whether `span` may begin a stream's evidence with nothing before it:
/// the stream's first fragment (sequence 0, chained to the genesis hash),
/// or the first fragment of an epoch a verified restart record declares
/// (the report shows the restart and what is unknown across it).
pub fn is_chain_start(span: &Span) -> bool {
    (span.sequence == 0 && span.prev == ManifestHash::GENESIS) || span.declared_restart
}

/// How the start of the range is covered, or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The first fragment starts at or before the requested start.
    Covered { sequence: u64, start_unix_ns: u64 },
    /// The first fragment is the stream's first ([`is_chain_start`]).
    ChainStart { sequence: u64 },
    /// No start was asked for: the run starts at the oldest fragment the
    /// server offered, which is not the stream's first (retention, or held
    /// back).
    Open { sequence: u64, start_unix_ns: u64 },
    /// The first fragment starts after the requested start.
    Missing {
        requested_ns: Option<u64>,
        requested_seq: Option<u64>,
        sequence: u64,
        start_unix_ns: u64,
    },
}

/// How the end of the range is covered, or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The last fragment reaches the requested end.
    Reached { sequence: u64, end_unix_ns: u64 },
    /// The last fragment is at least as new as the newest the camera has
    /// signed a head for.
    NewestSigned { sequence: u64, head: HeadSeen },
    /// No end was asked for, or it is not yet past, and no head says
    /// whether newer fragments exist.
    Unproven { sequence: u64, end_unix_ns: u64 },
    /// The camera's head names a newer fragment than the last one held:
    /// the server withheld the tail.
    Withheld {
        sequence: u64,
        end_unix_ns: u64,
        head: HeadSeen,
        /// The requested end, if one was asked for.
        requested_ns: Option<u64>,
        requested_seq: Option<u64>,
    },
    /// A past end was asked for and not reached, and no head shows the
    /// camera recorded nothing newer.
    Short {
        sequence: u64,
        end_unix_ns: u64,
        requested_ns: Option<u64>,
        requested_seq: Option<u64>,
    },
}

/// Both ends of a run of fragments against a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coverage {
    pub start: Start,
    pub end: End,
}

impl Start {
    pub fn is_ok(&self) -> bool {
        !matches!(self, Self::Missing { .. })
    }
}

impl End {
    pub fn is_ok(&self) -> bool {
        !matches!(self, Self::Withheld { .. } | Self::Short { .. })
    }
}

impl Coverage {
    pub fn is_ok(&self) -> bool {
        self.start.is_ok() && self.end.is_ok()
    }
}

/// Judges both ends of `spans` (sorted by sequence) against `requested`,
/// given the newest verified head, if any. `None` when there is no span.
pub fn judge(requested: &Requested, spans: &[Span], head: Option<&HeadSeen>) -> Option<Coverage> {
    let (first, last) = (spans.first()?, spans.last()?);
    Some(Coverage {
        start: judge_start(requested, first),
        end: judge_end(requested, last, head),
    })
}

fn judge_start(r: &Requested, first: &Span) -> Start {
    // A declared restart begins the evidence only for a range that starts
    // at or after it: asked from before it, the old epoch's fragments up to
    // the restart belong to the range, and a server that answers from the
    // restart on has left them out.
    let asked_before_restart = first.declared_restart
        && !(first.sequence == 0 && first.prev == ManifestHash::GENESIS)
        && (r.from_ns.is_some_and(|t| t < first.start_unix_ns)
            || r.from_seq.is_some_and(|s| s < first.sequence));
    if is_chain_start(first) && !asked_before_restart {
        return Start::ChainStart {
            sequence: first.sequence,
        };
    }
    if r.from_ns.is_none() && r.from_seq.is_none() {
        return Start::Open {
            sequence: first.sequence,
            start_unix_ns: first.start_unix_ns,
        };
    }
    let time_ok = r.from_ns.is_none_or(|t| first.start_unix_ns <= t);
    let seq_ok = r.from_seq.is_none_or(|s| first.sequence <= s);
    if time_ok && seq_ok {
        Start::Covered {
            sequence: first.sequence,
            start_unix_ns: first.start_unix_ns,
        }
    } else {
        Start::Missing {
            requested_ns: r.from_ns,
            requested_seq: r.from_seq,
            sequence: first.sequence,
            start_unix_ns: first.start_unix_ns,
        }
    }
}

/// How long before the end asked for (or the request itself, for an end
/// still to come) the camera's head may have been signed and still speak
/// for it. The camera signs one every 10 s by default; a head older than
/// this says nothing about the tail since, so a server that serves an old
/// genuine head cannot pass off a truncated range as complete.
pub const HEAD_TOLERANCE_NS: u64 = 60_000_000_000;

/// Whether `head` was signed late enough to speak for the end of `r`.
fn head_speaks_for_end(r: &Requested, head: &HeadSeen) -> bool {
    let needed = r
        .to_ns
        .map_or(r.asked_at_unix_ns, |t| t.min(r.asked_at_unix_ns));
    head.signed_at_unix_ns.saturating_add(HEAD_TOLERANCE_NS) >= needed
}

fn judge_end(r: &Requested, last: &Span, head: Option<&HeadSeen>) -> End {
    let (sequence, end_unix_ns) = (last.sequence, last.end_unix_ns);
    // A head older than the end asked for proves nothing about the tail:
    // judged as if there were none.
    let head = head.filter(|h| h.sequence > sequence || head_speaks_for_end(r, h));
    let bounded = r.to_ns.is_some() || r.to_seq.is_some();
    let reached = bounded
        && r.to_ns.is_none_or(|t| end_unix_ns >= t)
        && r.to_seq.is_none_or(|s| sequence >= s);
    if reached {
        return End::Reached {
            sequence,
            end_unix_ns,
        };
    }
    match head {
        Some(h) if h.sequence <= sequence => End::NewestSigned { sequence, head: *h },
        Some(h) => End::Withheld {
            sequence,
            end_unix_ns,
            head: *h,
            requested_ns: r.to_ns,
            requested_seq: r.to_seq,
        },
        None => {
            // An end still in the future (or none) cannot be reached yet;
            // only a head could say the tail is complete.
            let past_time = r.to_ns.is_some_and(|t| t <= r.asked_at_unix_ns);
            if past_time || r.to_seq.is_some() {
                End::Short {
                    sequence,
                    end_unix_ns,
                    requested_ns: r.to_ns,
                    requested_seq: r.to_seq,
                }
            } else {
                End::Unproven {
                    sequence,
                    end_unix_ns,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    /// Fragments `first..=last`, each 10 ns long, fragment n spanning
    /// `10n..10n+10`.
    fn run(first: u64, last: u64) -> Vec<Span> {
        (first..=last)
            .map(|n| Span {
                sequence: n,
                start_unix_ns: 10 * n,
                end_unix_ns: 10 * n + 10,
                prev: if n == 0 {
                    ManifestHash::GENESIS
                } else {
                    ManifestHash([1; 32])
                },
                declared_restart: false,
            })
            .collect()
    }

    fn head(sequence: u64) -> HeadSeen {
        HeadSeen {
            sequence,
            fragment_end_unix_ns: 10 * sequence + 10,
            signed_at_unix_ns: 10 * sequence + 11,
        }
    }

    fn times(from: u64, to: u64) -> Requested {
        Requested {
            from_ns: Some(from),
            to_ns: Some(to),
            asked_at_unix_ns: 1_000_000,
            ..Requested::default()
        }
    }

    #[test]
    fn a_straddling_first_and_a_reaching_last_cover_the_range() {
        let c = judge(&times(25, 55), &run(2, 5), None).unwrap();
        assert!(c.is_ok(), "{c:?}");
        assert!(matches!(c.start, Start::Covered { sequence: 2, .. }));
        assert!(matches!(c.end, End::Reached { sequence: 5, .. }));
    }

    #[test]
    fn a_dropped_head_of_the_range_is_missing() {
        let c = judge(&times(25, 55), &run(3, 5), None).unwrap();
        assert_eq!(
            c.start,
            Start::Missing {
                requested_ns: Some(25),
                requested_seq: None,
                sequence: 3,
                start_unix_ns: 30
            }
        );
    }

    #[test]
    fn the_streams_first_fragment_covers_any_earlier_start() {
        let c = judge(&times(0, 15), &run(0, 1), None).unwrap();
        assert_eq!(c.start, Start::ChainStart { sequence: 0 });
        // A sequence 0 that does not chain to genesis is not a start.
        let mut spans = run(0, 1);
        spans[0].prev = ManifestHash([9; 32]);
        spans[0].start_unix_ns = 5;
        let c = judge(&times(0, 15), &spans, None).unwrap();
        assert!(!c.start.is_ok(), "{c:?}");
    }

    #[test]
    fn a_truncated_tail_is_short_or_withheld_by_what_the_head_says() {
        let c = judge(&times(25, 75), &run(2, 4), None).unwrap();
        assert!(matches!(c.end, End::Short { sequence: 4, .. }), "{c:?}");
        let c = judge(&times(25, 75), &run(2, 4), Some(&head(9))).unwrap();
        assert!(matches!(c.end, End::Withheld { sequence: 4, head, .. } if head.sequence == 9));
        // The camera signed nothing newer than 4: the range ends there.
        let c = judge(&times(25, 75), &run(2, 4), Some(&head(4))).unwrap();
        assert!(c.is_ok(), "{c:?}");
    }

    #[test]
    fn a_restart_covers_a_range_only_from_the_restart_on() {
        let mut spans = run(5, 7);
        spans[0].declared_restart = true;
        // Asked from the restart on: it is where the evidence begins.
        let c = judge(&times(50, 75), &spans, None).unwrap();
        assert_eq!(c.start, Start::ChainStart { sequence: 5 });
        // Asked from before it: the old epoch's part is missing.
        let c = judge(&times(20, 75), &spans, None).unwrap();
        assert!(
            matches!(c.start, Start::Missing { sequence: 5, .. }),
            "{c:?}"
        );
        // No start asked: the restart begins the stream's evidence.
        let open = Requested {
            asked_at_unix_ns: 1_000_000,
            ..Requested::default()
        };
        let c = judge(&open, &spans, None).unwrap();
        assert_eq!(c.start, Start::ChainStart { sequence: 5 });
    }

    #[test]
    fn an_old_head_served_for_a_truncated_tail_proves_nothing() {
        // Fragments of a minute each; the range asked ends at minute 60.
        const MIN: u64 = 60_000_000_000;
        let spans: Vec<Span> = (0..=40)
            .map(|n| Span {
                sequence: n,
                start_unix_ns: n * MIN,
                end_unix_ns: (n + 1) * MIN,
                prev: if n == 0 {
                    ManifestHash::GENESIS
                } else {
                    ManifestHash([1; 32])
                },
                declared_restart: false,
            })
            .collect();
        let r = Requested {
            from_ns: Some(0),
            to_ns: Some(60 * MIN),
            asked_at_unix_ns: 120 * MIN,
            ..Requested::default()
        };
        // The genuine head the camera signed when fragment 40 was its
        // newest, served to hide 41..: not the newest any more.
        let old = HeadSeen {
            sequence: 40,
            fragment_end_unix_ns: 41 * MIN,
            signed_at_unix_ns: 41 * MIN + 1,
        };
        let c = judge(&r, &spans, Some(&old)).unwrap();
        assert!(matches!(c.end, End::Short { sequence: 40, .. }), "{c:?}");
        // A head signed after the end asked for does speak for it.
        let fresh = HeadSeen {
            signed_at_unix_ns: 60 * MIN + 5,
            ..old
        };
        let c = judge(&r, &spans, Some(&fresh)).unwrap();
        assert!(c.is_ok(), "{c:?}");
    }

    #[test]
    fn an_open_end_is_unproven_without_a_head_and_withheld_behind_one() {
        let r = Requested {
            asked_at_unix_ns: 1_000,
            ..Requested::default()
        };
        let c = judge(&r, &run(0, 4), None).unwrap();
        assert!(c.is_ok());
        assert!(matches!(c.end, End::Unproven { .. }));
        let c = judge(&r, &run(0, 4), Some(&head(7))).unwrap();
        assert!(!c.is_ok());
        // A future end is an open end.
        let future = Requested {
            to_ns: Some(5_000),
            ..r
        };
        let c = judge(&future, &run(0, 4), None).unwrap();
        assert!(matches!(c.end, End::Unproven { .. }), "{c:?}");
    }

    #[test]
    fn sequence_ranges_are_judged_by_sequence() {
        let r = Requested {
            from_seq: Some(3),
            to_seq: Some(6),
            ..Requested::default()
        };
        assert!(judge(&r, &run(3, 6), None).unwrap().is_ok());
        assert!(!judge(&r, &run(4, 6), None).unwrap().start.is_ok());
        assert!(!judge(&r, &run(3, 5), None).unwrap().end.is_ok());
        assert_eq!(judge(&r, &[], None), None);
    }

    proptest! {
        /// Whatever the request, a run that holds every fragment from the
        /// stream's first to the newest one the camera signed is complete.
        #[test]
        fn the_whole_stream_up_to_the_newest_head_always_covers(
            last in 0u64..50, from in proptest::option::of(0u64..600), to in proptest::option::of(0u64..600),
        ) {
            let r = Requested { from_ns: from, to_ns: to, asked_at_unix_ns: 10_000, ..Requested::default() };
            let c = judge(&r, &run(0, last), Some(&head(last))).unwrap();
            prop_assert!(c.is_ok(), "{:?}", c);
        }

        /// Dropping fragments from the front of a run that covered a start
        /// after the stream's first fragment, or from its back while the
        /// camera's head names the dropped ones, is always detected.
        #[test]
        fn truncation_at_either_end_is_always_detected(
            first in 1u64..20, len in 2u64..20, cut in 1u64..10,
        ) {
            let last = first + len;
            let cut = cut.min(len);
            let r = times(10 * first + 5, 10 * last + 5);
            let full = run(first, last);
            prop_assert!(judge(&r, &full, Some(&head(last))).unwrap().is_ok());
            let front = &full[cut as usize..];
            prop_assert!(!judge(&r, front, Some(&head(last))).unwrap().start.is_ok());
            let back = &full[..(full.len() - cut as usize)];
            prop_assert!(!judge(&r, back, Some(&head(last))).unwrap().end.is_ok());
            prop_assert!(!judge(&r, back, None).unwrap().end.is_ok());
        }
    }
}
