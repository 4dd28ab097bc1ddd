//! Legal holds, as the operator places and lifts them: stored in the
//! storage (`store/holds.rs`), so every instance's retention sweep keeps
//! what they cover, and recorded in the audit trail.

use sealcam_format::Name;

use crate::audit::{AuditError, AuditLog, Event};
use crate::store::{Hold, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the hold could not be written to the audit trail: {0}")]
    Audit(#[from] AuditError),
    #[error("the hold's range ends before it begins; give --from earlier than --to")]
    EmptyRange,
    #[error("a hold {id} on {stream} exists already; try again")]
    Exists { stream: String, id: String },
}

fn now_unix_ns() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0)
}

/// How the audit trail and the operator see a hold's range.
pub fn describe_range(hold: &Hold) -> String {
    let at = |ns: Option<u64>| {
        ns.map(|ns| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| format!("{ns} ns"))
        })
    };
    match (at(hold.from_unix_ns), at(hold.to_unix_ns)) {
        (None, None) => "the whole stream".into(),
        (Some(f), None) => format!("from {f} on"),
        (None, Some(t)) => format!("up to {t}"),
        (Some(f), Some(t)) => format!("{f} to {t}"),
    }
}

/// Places a hold on `device`/`stream` (all of it, or `from..=to` by the
/// camera's or the ingest's clock), recorded in the audit trail.
pub async fn place(
    store: &Store,
    audit: &AuditLog,
    actor: &str,
    (device, stream): (&Name, &Name),
    (from_unix_ns, to_unix_ns): (Option<u64>, Option<u64>),
    reason: &str,
) -> Result<Hold, HoldError> {
    if let (Some(f), Some(t)) = (from_unix_ns, to_unix_ns) {
        if t < f {
            return Err(HoldError::EmptyRange);
        }
    }
    let placed = now_unix_ns();
    let hold = Hold {
        id: format!("{placed:x}"),
        from_unix_ns,
        to_unix_ns,
        placed_by: actor.to_owned(),
        placed_unix_ns: placed,
        reason: reason.to_owned(),
    };
    if !store.put_hold(device, stream, &hold).await? {
        return Err(HoldError::Exists {
            stream: format!("{device}/{stream}"),
            id: hold.id,
        });
    }
    audit.record(Event {
        actor: actor.to_owned(),
        action: "hold".into(),
        target: Some(format!("{device}/{stream}")),
        addr: None,
        result: "ok".into(),
        detail: Some(format!(
            "legal hold {} placed on {}: {reason}",
            hold.id,
            describe_range(&hold)
        )),
    });
    audit.flush().await?;
    Ok(hold)
}

/// Lifts hold `id` of `device`/`stream`, recorded in the audit trail.
/// `None`: there is no such hold.
pub async fn lift(
    store: &Store,
    audit: &AuditLog,
    actor: &str,
    (device, stream): (&Name, &Name),
    id: &str,
) -> Result<Option<Hold>, HoldError> {
    let Some(hold) = store.lift_hold(device, stream, id).await? else {
        return Ok(None);
    };
    audit.record(Event {
        actor: actor.to_owned(),
        action: "hold-lift".into(),
        target: Some(format!("{device}/{stream}")),
        addr: None,
        result: "ok".into(),
        detail: Some(format!(
            "legal hold {} on {} (placed by {}: {}) lifted",
            hold.id,
            describe_range(&hold),
            hold.placed_by,
            hold.reason
        )),
    });
    audit.flush().await?;
    Ok(Some(hold))
}
