//! Consumers' reads: the streams they may read, a stream's fragments
//! (filtered, with a long poll for the next ones), a fragment, a device's
//! certificate and every certificate it has used.

use std::time::Duration;

use axum::extract::{FromRequestParts, Query, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{StreamExt, TryStreamExt};
use sealcam_api::{
    media, CertificateEntry, FragmentEntry, FragmentQuery, GapEntry, StreamEntry, MAX_WAIT_S,
};
use sealcam_format::Name;

use super::error::ApiError;
use super::{require_read, AppState, Peer};
use crate::store::{self, StoreError};

/// `GET /v1/streams`: the streams stored that the consumer may read.
pub async fn list_streams(state: &AppState, peer: &Peer) -> Result<Response, ApiError> {
    let streams = state.store.streams().await?;
    let entries: Vec<StreamEntry> = streams
        .into_iter()
        .filter(|(d, s)| peer.identity.may_read(d, s))
        .map(|(d, s)| StreamEntry {
            device: d.to_string(),
            stream: s.to_string(),
        })
        .collect();
    Ok(Json(entries).into_response())
}

/// How often a long poll looks at a shared storage for fragments stored
/// by other instances; an upload to this one wakes it at once. Each look
/// is one bounded listing (the index), not a read of the stream.
const FOLLOW_POLL: Duration = Duration::from_secs(2);

/// The fragments a query asks for, through the index: a listing of the
/// sequences or the times asked for, and one read per fragment returned.
async fn matching_fragments(
    state: &AppState,
    device: &Name,
    stream: &Name,
    q: &FragmentQuery,
) -> Result<Vec<FragmentEntry>, StoreError> {
    let first = q
        .after
        .map_or(0, |a| a.saturating_add(1))
        .max(q.from_seq.unwrap_or(0));
    let last = q.to_seq.unwrap_or(u64::MAX);
    if first > last || q.after == Some(u64::MAX) {
        state.metrics.listing_reads.observe(0.0);
        return Ok(Vec::new());
    }
    let store = &state.store;
    let found = if q.from_ns.is_some() || q.to_ns.is_some() {
        let times = (q.from_ns.unwrap_or(0), q.to_ns.unwrap_or(u64::MAX));
        store
            .fragments_by_time(device, stream, times, (first, last))
            .await?
    } else {
        store
            .fragments_by_sequence(device, stream, first, last)
            .await?
    };
    state.metrics.listing_reads.observe(found.reads as f64);
    let mut out = Vec::with_capacity(found.fragments.len());
    for (seq, bytes) in found.fragments {
        let m = store::parse_signed_manifest(device, stream, seq, &bytes)?.manifest;
        if q.from_ns.is_some_and(|from| m.end_unix_ns < from)
            || q.to_ns.is_some_and(|to| m.start_unix_ns > to)
        {
            continue;
        }
        out.push(FragmentEntry {
            sequence: seq,
            start_unix_ns: m.start_unix_ns,
            end_unix_ns: m.end_unix_ns,
            frame_count: m.frame_count,
            bytes: m.payload_len,
            gaps: m
                .gaps
                .iter()
                .map(|g| GapEntry {
                    reason: g.reason.name().to_owned(),
                    first_sequence: g.first_sequence,
                    sequence_count: g.sequence_count,
                    start_unix_ns: g.start_unix_ns,
                    end_unix_ns: g.end_unix_ns,
                })
                .collect(),
        });
    }
    Ok(out)
}

/// `GET /v1/streams/{device}/{stream}/fragments`, a long poll with `wait_s`.
pub async fn list_fragments(
    state: &AppState,
    peer: &Peer,
    device: Name,
    stream: Name,
    req: Request,
) -> Result<Response, ApiError> {
    let (mut parts, _) = req.into_parts();
    let Query(q) = Query::<FragmentQuery>::from_request_parts(&mut parts, state).await?;
    require_read(peer, &device, Some(&stream))?;
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(q.wait_s.unwrap_or(0).min(MAX_WAIT_S));
    let arrivals = state.arrivals_of(&device, &stream);
    loop {
        // Armed before looking, so an arrival between the look and the
        // wait is not missed.
        let arrived = arrivals.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        let entries = matching_fragments(state, &device, &stream, &q).await?;
        if !entries.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(entries).into_response());
        }
        // On a local directory only this process stores fragments: its
        // arrivals wake the poll, and nothing else needs a look.
        let look_again = if state.store.is_shared() {
            tokio::time::Instant::now() + FOLLOW_POLL
        } else {
            deadline
        };
        tokio::select! {
            _ = arrived => {}
            _ = tokio::time::sleep_until(look_again.min(deadline)) => {}
        }
    }
}

/// `GET /v1/streams/{device}/{stream}/fragments/{sequence}`: streamed from
/// the storage as it is read, never whole in memory.
pub async fn get_fragment(
    state: &AppState,
    peer: &Peer,
    device: Name,
    stream: Name,
    sequence: u64,
) -> Result<Response, ApiError> {
    require_read(peer, &device, Some(&stream))?;
    state.metrics.reads.inc();
    let f = state
        .store
        .fragment_stream(&device, &stream, sequence)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no fragment {sequence}")))?;
    let head = futures_util::stream::once(async move { Ok::<_, StoreError>(f.head) });
    let body = axum::body::Body::from_stream(head.chain(f.payload).inspect_err(|e| {
        tracing::error!(error = %e, "a fragment's payload could not be read to its end");
    }));
    Ok((
        [
            (header::CONTENT_TYPE, media::FRAGMENT.to_owned()),
            (header::CONTENT_LENGTH, f.len.to_string()),
        ],
        body,
    )
        .into_response())
}

/// `GET /v1/devices/{device}/certificate`.
pub async fn get_device_cert(
    state: &AppState,
    peer: &Peer,
    device: Name,
) -> Result<Response, ApiError> {
    require_read(peer, &device, None)?;
    let pem = state.store.device_cert(&device).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no certificate stored for that device",
        )
    })?;
    Ok(([(header::CONTENT_TYPE, media::PEM)], pem).into_response())
}

/// `GET /v1/devices/{device}/certificates`: every certificate the device
/// has used, so that footage from before a renewal or a re-key can be
/// matched to its key (a hint for verifiers, never their anchor).
pub async fn get_device_cert_history(
    state: &AppState,
    peer: &Peer,
    device: Name,
) -> Result<Response, ApiError> {
    require_read(peer, &device, None)?;
    let certs = state.store.device_certs(&device).await?;
    let entries: Vec<CertificateEntry> = certs
        .into_iter()
        .map(|(serial, certificate)| CertificateEntry {
            serial,
            certificate,
        })
        .collect();
    Ok(Json(entries).into_response())
}
