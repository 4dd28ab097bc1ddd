//! Event marks: what happened during a fragment (motion, an external
//! trigger), sealed inside the fragment's payload with its frames.
//!
//! When did something happen in front of the camera is as private as the
//! video: a server that learned it would know when a door opened without
//! decrypting a frame. So the marks travel as one record of the sealed
//! payload ([`crate::RecordKind::Events`], after the last frame), under the
//! fragment's data key and the record AAD that names its kind and index,
//! and a camera that marks events seals that record in *every* fragment,
//! padded to one fixed size whether it holds no mark or sixteen: the
//! ciphertext is the same length either way, so its presence and size say
//! nothing.
//!
//! ```text
//! events   count u8 | dropped u16 | mark[count] | zeros to EVENTS_LEN
//! mark     kind u8 | at_ns u64 | label_len u8 | label [MAX_LABEL] (UTF-8, zero padded)
//! ```
//!
//! `at_ns` is on the fragment's stream clock (the frames' `pts_ns`), so a
//! viewer can seek to the frame. `dropped` counts marks beyond
//! [`MAX_MARKS`] in the fragment that did not fit. A reader that predates
//! event marks fails on the record kind it does not know, with a message
//! that names it, rather than skipping what it cannot read.

use crate::codec::Reader;
use crate::FormatError;

/// Most marks one fragment's record holds.
pub const MAX_MARKS: usize = 16;
/// Longest label of one mark, in bytes of UTF-8.
pub const MAX_LABEL: usize = 31;
const MARK_LEN: usize = 1 + 8 + 1 + MAX_LABEL;
/// The plaintext length of every events record.
pub const EVENTS_LEN: usize = 1 + 2 + MAX_MARKS * MARK_LEN;

/// What kind of event a mark records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    /// The picture changed (the camera's motion detector).
    Motion = 1,
    /// Something outside the camera said so (a GPIO line, a command).
    Trigger = 2,
}

impl EventKind {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Motion),
            2 => Some(Self::Trigger),
            _ => None,
        }
    }

    /// Its name in reports and arguments.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Motion => "motion",
            Self::Trigger => "trigger",
        }
    }
}

/// One event mark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMark {
    pub kind: EventKind,
    /// When, on the stream clock (as a frame's `pts_ns`).
    pub at_ns: u64,
    /// Who or what marked it ("door", "gpio17"); at most [`MAX_LABEL`]
    /// bytes, cut at a character boundary when longer.
    pub label: String,
}

/// The marks of one fragment, as sealed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Events {
    pub marks: Vec<EventMark>,
    /// Marks that did not fit in the record.
    pub dropped: u16,
}

/// `label` cut to at most [`MAX_LABEL`] bytes at a character boundary.
pub fn fit_label(label: &str) -> &str {
    let mut end = label.len().min(MAX_LABEL);
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    &label[..end]
}

impl Events {
    /// The first [`MAX_MARKS`] of `marks`, the rest counted as dropped.
    pub fn of(marks: &[EventMark]) -> Self {
        let kept = marks.len().min(MAX_MARKS);
        Self {
            marks: marks[..kept].to_vec(),
            dropped: u16::try_from(marks.len() - kept).unwrap_or(u16::MAX),
        }
    }

    /// The record's plaintext: always [`EVENTS_LEN`] bytes. Marks beyond
    /// [`MAX_MARKS`] are counted in `dropped`; labels are cut to fit.
    pub fn encode(&self) -> Vec<u8> {
        let kept = &self.marks[..self.marks.len().min(MAX_MARKS)];
        let extra = u16::try_from(self.marks.len() - kept.len()).unwrap_or(u16::MAX);
        let mut out = Vec::with_capacity(EVENTS_LEN);
        out.push(kept.len() as u8);
        out.extend_from_slice(&self.dropped.saturating_add(extra).to_be_bytes());
        for m in kept {
            let label = fit_label(&m.label).as_bytes();
            out.push(m.kind as u8);
            out.extend_from_slice(&m.at_ns.to_be_bytes());
            out.push(label.len() as u8);
            out.extend_from_slice(label);
            out.resize(out.len() + MAX_LABEL - label.len(), 0);
        }
        out.resize(EVENTS_LEN, 0);
        out
    }

    /// Reads a record's plaintext; anything but exactly the layout above
    /// (a known kind, a UTF-8 label, zeros where padding goes) is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let invalid = |offset: usize, reason: String| FormatError::Invalid {
            what: "events record",
            offset,
            reason,
        };
        if bytes.len() != EVENTS_LEN {
            return Err(invalid(
                0,
                format!("{} bytes, not {EVENTS_LEN}", bytes.len()),
            ));
        }
        let mut r = Reader::new(bytes, "events record");
        let count = r.u8()? as usize;
        if count > MAX_MARKS {
            return Err(invalid(0, format!("{count} marks, at most {MAX_MARKS}")));
        }
        let dropped = r.u16()?;
        let mut marks = Vec::with_capacity(count);
        for _ in 0..count {
            let offset = r.position();
            let kind = r.u8()?;
            let kind = EventKind::from_u8(kind)
                .ok_or_else(|| invalid(offset, format!("unknown event kind {kind}")))?;
            let at_ns = r.u64()?;
            let len = r.u8()? as usize;
            let field = r.take(MAX_LABEL)?;
            let (label, padding) = field
                .split_at_checked(len)
                .ok_or_else(|| invalid(offset, format!("label length {len} over {MAX_LABEL}")))?;
            if padding.iter().any(|b| *b != 0) {
                return Err(invalid(offset, "label padding is not zeros".into()));
            }
            let label = std::str::from_utf8(label)
                .map_err(|e| invalid(offset, format!("label is not UTF-8: {e}")))?;
            marks.push(EventMark {
                kind,
                at_ns,
                label: label.to_owned(),
            });
        }
        let offset = r.position();
        if r.take(r.remaining())?.iter().any(|b| *b != 0) {
            return Err(invalid(
                offset,
                "padding after the marks is not zeros".into(),
            ));
        }
        Ok(Self { marks, dropped })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    fn mark(kind: EventKind, at_ns: u64, label: &str) -> EventMark {
        EventMark {
            kind,
            at_ns,
            label: label.into(),
        }
    }

    #[test]
    fn every_record_has_one_size_whatever_it_holds() {
        let none = Events::default().encode();
        let one = Events::of(&[mark(EventKind::Trigger, 5, "door")]).encode();
        let many: Vec<EventMark> = (0..40)
            .map(|i| {
                mark(
                    EventKind::Motion,
                    i,
                    "a label far longer than thirty-one bytes",
                )
            })
            .collect();
        let full = Events::of(&many).encode();
        assert_eq!(
            (none.len(), one.len(), full.len()),
            (EVENTS_LEN, EVENTS_LEN, EVENTS_LEN)
        );
        let back = Events::decode(&full).unwrap();
        assert_eq!(back.marks.len(), MAX_MARKS);
        assert_eq!(back.dropped, 24);
        assert_eq!(back.marks[0].label, "a label far longer than thirty-");
        assert_eq!(
            Events::decode(&one).unwrap().marks,
            vec![mark(EventKind::Trigger, 5, "door")]
        );
    }

    #[test]
    fn a_label_is_cut_at_a_character_boundary() {
        let label = "é".repeat(20); // 40 bytes
        assert_eq!(fit_label(&label).len(), 30);
        let back =
            Events::decode(&Events::of(&[mark(EventKind::Motion, 1, &label)]).encode()).unwrap();
        assert_eq!(back.marks[0].label, "é".repeat(15));
    }

    #[test]
    fn anything_but_the_exact_layout_is_refused() {
        let good = Events::of(&[mark(EventKind::Trigger, 5, "door")]).encode();
        let mut unknown_kind = good.clone();
        unknown_kind[3] = 9;
        let mut long_label = good.clone();
        long_label[3 + 9] = 32;
        let mut dirty_padding = good.clone();
        dirty_padding[EVENTS_LEN - 1] = 1;
        let mut dirty_label = good.clone();
        dirty_label[3 + 10 + 5] = 1;
        let mut too_many = good.clone();
        too_many[0] = 17;
        for (bad, says) in [
            (&good[1..], "bytes, not"),
            (&unknown_kind[..], "unknown event kind 9"),
            (&long_label[..], "label length 32"),
            (&dirty_padding[..], "padding after the marks"),
            (&dirty_label[..], "label padding"),
            (&too_many[..], "17 marks"),
        ] {
            let e = Events::decode(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    fn any_mark() -> impl Strategy<Value = EventMark> {
        (
            prop_oneof![Just(EventKind::Motion), Just(EventKind::Trigger)],
            any::<u64>(),
            "\\PC{0,12}",
        )
            .prop_map(|(kind, at_ns, label)| EventMark {
                kind,
                at_ns,
                label: fit_label(&label).to_owned(),
            })
    }

    proptest! {
        #[test]
        fn marks_round_trip(marks in prop::collection::vec(any_mark(), 0..=MAX_MARKS), dropped in any::<u16>()) {
            let e = Events { marks, dropped };
            prop_assert_eq!(Events::decode(&e.encode()).unwrap(), e);
        }

        #[test]
        fn decoding_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..EVENTS_LEN + 8)) {
            let _ = Events::decode(&bytes);
        }

        #[test]
        fn decoding_any_record_sized_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), EVENTS_LEN)) {
            let _ = Events::decode(&bytes);
        }
    }
}
