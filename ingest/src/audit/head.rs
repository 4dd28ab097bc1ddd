//! The trail's head, exported to the operator and checked later.
//!
//! Links between epochs (`link.rs`) catch a deleted run or a cut tail, but
//! not the newest segments: nothing later names them yet. The operator
//! therefore exports the head now and then (`sealcam-ingest audit head >
//! FILE`, kept where the ingest cannot write) and later verifies with
//! `audit verify --since-head FILE`: every segment a head names must still
//! be there with the same bytes, and the links (checked by the verifier)
//! chain everything before it to it. A head is signed with the audit key,
//! so that a copy shown to a third party can be checked to come from the
//! ingest.

use std::collections::BTreeMap;

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::link::{newest_segment, segment_hash};
use super::{now_rfc3339, segment_path};
use crate::store::{Store, StoreError};

const HEAD_CONTEXT: &[u8] = b"sealcam audit head v1\0";

/// What `audit head` prints: the newest sealed segment of every instance.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadFile {
    pub heads: Vec<Head>,
}

/// One instance's newest sealed segment, signed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub instance: String,
    pub epoch: u64,
    pub segment: u64,
    /// SHA-256 (hex) of the segment object's bytes.
    pub hash: String,
    /// When the head was taken (RFC 3339, UTC).
    pub time: String,
    /// ECDSA P-256 by the audit key over the fields above.
    pub signature: String,
}

fn head_message(h: &Head) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEAD_CONTEXT.len() + h.instance.len() + 128);
    m.extend_from_slice(HEAD_CONTEXT);
    m.extend_from_slice(h.instance.as_bytes());
    m.push(0);
    m.extend_from_slice(&h.epoch.to_be_bytes());
    m.extend_from_slice(&h.segment.to_be_bytes());
    m.extend_from_slice(h.hash.as_bytes());
    m.push(0);
    m.extend_from_slice(h.time.as_bytes());
    m
}

/// The signed head of every instance's trail in the store now.
pub async fn make_heads(store: &Store, key: &SigningKey) -> Result<HeadFile, StoreError> {
    let mut instances = BTreeMap::new();
    for instance in store.list_children("audit").await? {
        instances.insert(instance.to_string(), ());
    }
    let time = now_rfc3339();
    let mut heads = Vec::new();
    for instance in instances.into_keys() {
        let Some(link) = newest_segment(store, &instance).await? else {
            continue;
        };
        let mut head = Head {
            instance: link.instance,
            epoch: link.epoch,
            segment: link.segment,
            hash: link.hash,
            time: time.clone(),
            signature: String::new(),
        };
        let sig: Signature = key.sign(&head_message(&head));
        head.signature = hex::encode(sig.to_bytes());
        heads.push(head);
    }
    Ok(HeadFile { heads })
}

/// What of `heads` is no longer in the store as it was: one line each.
pub async fn check_heads(
    store: &Store,
    key: &VerifyingKey,
    heads: &HeadFile,
) -> Result<Vec<String>, StoreError> {
    let mut problems = Vec::new();
    for h in &heads.heads {
        let signed = hex::decode(&h.signature)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .is_some_and(|sig| key.verify(&head_message(h), &sig).is_ok());
        if !signed {
            problems.push(format!(
                "the head of {} (epoch {} segment {}) is not signed by the audit key",
                h.instance, h.epoch, h.segment
            ));
            continue;
        }
        let path = segment_path(&h.instance, h.epoch, h.segment);
        match store.read(&path).await? {
            None => problems.push(format!("{path}, named by the head of {}, is gone", h.time)),
            Some(bytes) if segment_hash(&bytes) != h.hash => problems.push(format!(
                "{path} is not the segment the head of {} names (changed)",
                h.time
            )),
            Some(_) => {}
        }
    }
    Ok(problems)
}
