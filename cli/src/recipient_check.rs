//! Checking manifests against the owner-signed recipient sets they name:
//! each fragment's data key must be wrapped to exactly the keys of the set
//! version its manifest names, no more (a key slipped in by a server or a
//! thief) and no fewer.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sealcam_format::recipients::{RecipientSet, SignedRecipientSet};
use sealcam_format::verify::Failure;
use sealcam_format::{DeviceVerifyingKey, KeyId, SealedFragment};

/// Reads recipient-set files and checks each against the owner key.
pub fn load(paths: &[PathBuf], owner: &DeviceVerifyingKey) -> anyhow::Result<Vec<RecipientSet>> {
    let mut sets: Vec<RecipientSet> = Vec::new();
    for path in paths {
        sets.push(load_one(path, owner)?);
    }
    if let Some(v) = sets
        .iter()
        .enumerate()
        .find(|(i, s)| sets[..*i].iter().any(|t| t.version == s.version && t != *s))
        .map(|(_, s)| s.version)
    {
        anyhow::bail!(
            "two different recipient sets carry version {v}, both signed by the owner; pass the one the camera had"
        );
    }
    Ok(sets)
}

fn load_one(path: &Path, owner: &DeviceVerifyingKey) -> anyhow::Result<RecipientSet> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let parsed = SignedRecipientSet::parse(&bytes)
        .with_context(|| format!("recipient set {}", path.display()))?;
    let set = parsed.verify(owner).with_context(|| {
        format!(
            "recipient set {} must be signed by the owner key {}",
            path.display(),
            owner.fingerprint()
        )
    })?;
    Ok(set)
}

/// Checks every fragment in `files` (name, bytes) against `sets`; returns
/// one failure per fragment that does not match. Fragments that do not
/// parse are left to the chain verification, which names them.
pub fn check(sets: &[RecipientSet], files: &[(String, Vec<u8>)]) -> Vec<Failure> {
    let mut failures = Vec::new();
    for (label, bytes) in files {
        let Ok(frag) = SealedFragment::parse(bytes) else {
            continue;
        };
        if let Err(reason) = check_one(sets, &frag) {
            failures.push(Failure {
                label: label.clone(),
                reason,
            });
        }
    }
    failures
}

fn ids(list: &BTreeSet<KeyId>) -> String {
    list.iter()
        .map(KeyId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_one(sets: &[RecipientSet], frag: &SealedFragment<'_>) -> Result<(), String> {
    let version = frag.manifest.recipient_set_version;
    let Some(set) = sets.iter().find(|s| s.version == version) else {
        let given: Vec<String> = sets.iter().map(|s| s.version.to_string()).collect();
        return Err(if version == 0 {
            format!(
                "sealed to the camera's development recipient list (version 0), not to an owner-signed set (given: version {})",
                given.join(", ")
            )
        } else {
            format!(
                "names recipient set version {version}, but the owner-signed set(s) given are version {}; pass version {version}'s file with --recipients",
                given.join(", ")
            )
        });
    };
    let listed: BTreeSet<KeyId> = set.recipients.iter().map(|r| r.key.id()).collect();
    let wrapped: BTreeSet<KeyId> = frag
        .manifest
        .recipients
        .iter()
        .map(|w| w.recipient)
        .collect();
    if wrapped.len() != frag.manifest.recipients.len() {
        return Err(format!(
            "its data key is wrapped {} times for {} distinct key ids: a key id appears twice, so a key the owner never listed can hide behind a listed id",
            frag.manifest.recipients.len(),
            wrapped.len()
        ));
    }
    let extra: BTreeSet<KeyId> = wrapped.difference(&listed).copied().collect();
    let missing: BTreeSet<KeyId> = listed.difference(&wrapped).copied().collect();
    if !extra.is_empty() {
        return Err(format!(
            "its data key is wrapped to key {} that the owner's recipient set version {version} does not list: someone added a recipient",
            ids(&extra)
        ));
    }
    if !missing.is_empty() {
        return Err(format!(
            "its data key is not wrapped to key {} that the owner's recipient set version {version} lists",
            ids(&missing)
        ));
    }
    Ok(())
}

/// The report line when every fragment matched.
pub fn describe(sets: &[RecipientSet]) -> String {
    let parts: Vec<String> = sets
        .iter()
        .map(|s| {
            let labels: Vec<String> = s
                .recipients
                .iter()
                .map(|r| format!("{} {}", r.key.id(), r.label))
                .collect();
            format!("version {}: {}", s.version, labels.join(", "))
        })
        .collect();
    format!(
        "recipients: each fragment is wrapped to exactly the keys of the owner-signed set it names ({})",
        parts.join("; ")
    )
}
