//! The camera's signed heads as a live viewer watches them (`sealcam
//! follow`): a head that names a fragment newer than any the server lists
//! shows the server withholding fragments; a head that stops advancing
//! shows the camera offline, or the server holding heads back, and which
//! of the two the fragments point to.

use std::time::{Duration, Instant};

use sealcam_format::head::SignedHead;
use sealcam_format::verify::DeviceKeys;
use sealcam_format::Name;

use crate::api::Api;
use crate::range::{now_unix_ns, ASSUMED_HEAD_INTERVAL_NS};

/// A head this many head intervals (or fragment durations, whichever is
/// longer) old is stale.
const STALE_AFTER: u64 = 3;
/// A fragment a head names is withheld when it ended this many fragment
/// durations ago and is still not listed.
const WITHHELD_AFTER: u64 = 2;

/// Where the viewer stands.
#[derive(Clone, Copy, Debug)]
pub struct Viewed {
    /// The sequence the listing continues after.
    pub after: Option<u64>,
    /// The end of the last fragment shown.
    pub last_end: Option<u64>,
    /// How long fragments last, ns.
    pub fragment_ns: u64,
}

/// What the viewer has seen of the heads.
pub struct HeadWatch {
    last_check: Option<Instant>,
    /// The newest head seen: sequence and signed_at.
    newest: Option<(u64, u64)>,
    /// The time between the two newest heads seen, ns.
    interval_ns: u64,
    /// Reported already: the sequence named as withheld, the stale head.
    reported_withheld: Option<u64>,
    reported_stale: Option<u64>,
}

impl Default for HeadWatch {
    fn default() -> Self {
        Self::new()
    }
}

impl HeadWatch {
    pub fn new() -> Self {
        Self {
            last_check: None,
            newest: None,
            interval_ns: ASSUMED_HEAD_INTERVAL_NS,
            reported_withheld: None,
            reported_stale: None,
        }
    }

    /// Whether a check is due: at most once per fragment duration, and
    /// at least a second apart.
    pub fn due(&self, fragment_ns: u64) -> bool {
        let every = Duration::from_nanos(fragment_ns).max(Duration::from_secs(1));
        self.last_check.is_none_or(|t| t.elapsed() >= every)
    }

    /// Fetches and verifies the newest head and reports what it says
    /// against what the viewer has.
    /// Problems reaching the ingest are not reported here (the listing
    /// reports them); a head that fails its checks is.
    pub async fn check(
        &mut self,
        api: &Api,
        device: &Name,
        stream: &Name,
        keys: DeviceKeys<'_>,
        viewed: Viewed,
    ) {
        let Viewed {
            after,
            last_end,
            fragment_ns,
        } = viewed;
        self.last_check = Some(Instant::now());
        let Ok(Some(bytes)) = api.head(device, stream).await else {
            return;
        };
        let signed = match SignedHead::parse(&bytes) {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "warning: the ingest served a head of {device}/{stream} that is not one: {e}"
                );
                return;
            }
        };
        let h = &signed.head;
        if h.device != *device || h.stream != *stream {
            eprintln!(
                "warning: the ingest served a head of {}/{} for {device}/{stream}; ignored",
                h.device, h.stream
            );
            return;
        }
        if let Err(e) = signed.verify_with(keys) {
            eprintln!("warning: the head of {device}/{stream} the ingest served does not verify: {e}; ignored");
            return;
        }
        if let Some((_, at)) = self.newest {
            if h.signed_at_unix_ns > at {
                self.interval_ns = h.signed_at_unix_ns - at;
            }
        }
        if self.newest.is_none_or(|(_, at)| h.signed_at_unix_ns >= at) {
            self.newest = Some((h.sequence, h.signed_at_unix_ns));
        }
        let now = now_unix_ns();
        let ended_ago = now.saturating_sub(h.fragment_end_unix_ns);
        if after.is_none_or(|s| h.sequence > s)
            && ended_ago > WITHHELD_AFTER.saturating_mul(fragment_ns)
            && self.reported_withheld != Some(h.sequence)
        {
            self.reported_withheld = Some(h.sequence);
            let from = after.map_or(0, |s| s + 1);
            eprintln!(
                "warning: the camera's newest signed head (signed {} s ago) names fragment {}, recorded {} s ago, but the server has not listed it: the server is withholding fragments {from}..={}",
                now.saturating_sub(h.signed_at_unix_ns) / 1_000_000_000,
                h.sequence,
                ended_ago / 1_000_000_000,
                h.sequence
            );
        }
        let age = now.saturating_sub(h.signed_at_unix_ns);
        let stale_after = STALE_AFTER.saturating_mul(self.interval_ns.max(fragment_ns));
        if age > stale_after && self.reported_stale != Some(h.signed_at_unix_ns) {
            self.reported_stale = Some(h.signed_at_unix_ns);
            let newer_footage = last_end.is_some_and(|end| {
                end > h
                    .signed_at_unix_ns
                    .saturating_add(self.interval_ns.max(fragment_ns))
            });
            let why = if newer_footage {
                "fragments recorded after it were served, so the camera was signing: the server holds its heads back"
            } else {
                "the camera is offline, or the server holds its heads back (no footage newer than the head was served either)"
            };
            eprintln!(
                "warning: the camera's newest signed head is {} s old (signed every {} s): {why}",
                age / 1_000_000_000,
                self.interval_ns / 1_000_000_000
            );
        }
    }
}
