//! Chain restart records beside fetched fragments: `fetch` saves every
//! record the ingest holds for the stream, `verify` reads them back and
//! checks them with the fragments (`sealcam_format::epochs`).
//!
//! ```text
//! <dir>/restarts/<first_sequence:020>.scr   a signed restart record
//! ```
//!
//! The ingest is not trusted for them: a record verifies only under the key
//! the owner's roster lists for the device at its time, and only where the
//! epoch's first fragment names it.

use std::path::Path;

use anyhow::Context;
use sealcam_api::{RestartEntry, Route};
use sealcam_base::durable;
use sealcam_format::Name;

use crate::api::Api;

/// The directory of restart records in a fetched directory.
pub const RESTARTS_DIR: &str = "restarts";

impl Api {
    /// The restart records the ingest holds for a stream.
    pub async fn restarts(
        &self,
        device: &Name,
        stream: &Name,
    ) -> anyhow::Result<Vec<RestartEntry>> {
        let route = Route::ListRestarts {
            device: device.clone(),
            stream: stream.clone(),
        };
        self.get_json(&route).await
    }
}

/// The restart record that begins the epoch whose first fragment has
/// manifest `first` (already verified), from the ingest: checked under
/// `keys` and bound to `first` ([`sealcam_format::epochs::check_begins`]).
/// `None` when the ingest holds no record for that sequence; an error when
/// the one it holds does not begin the epoch (made up or replayed).
pub async fn beginning(
    api: &Api,
    keys: sealcam_format::verify::DeviceKeys<'_>,
    first: &sealcam_format::Manifest,
) -> anyhow::Result<Option<sealcam_format::restart::Restart>> {
    let entries = api.restarts(&first.device, &first.stream).await?;
    let Some(e) = entries.iter().find(|e| e.first_sequence == first.sequence) else {
        return Ok(None);
    };
    let bytes = hex::decode(&e.record).with_context(|| {
        format!(
            "the ingest served restart record {} as {:?}, not hex",
            e.first_sequence, e.record
        )
    })?;
    let signed = sealcam_format::restart::SignedRestart::parse(&bytes)
        .with_context(|| format!("restart record {} is malformed", e.first_sequence))?;
    sealcam_format::epochs::check_begins(&signed, first, keys).map_err(|reason| {
        anyhow::anyhow!(
            "the ingest's restart record for fragment {}: {reason}",
            first.sequence
        )
    })?;
    Ok(Some(signed.restart))
}

/// Saves the stream's restart records into `out/restarts/`; returns how
/// many.
pub async fn fetch(api: &Api, device: &Name, stream: &Name, out: &Path) -> anyhow::Result<usize> {
    let entries = api.restarts(device, stream).await?;
    if entries.is_empty() {
        return Ok(0);
    }
    let dir = out.join(RESTARTS_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for e in &entries {
        let bytes = hex::decode(&e.record).with_context(|| {
            format!(
                "the ingest served restart record {} as {:?}, not hex",
                e.first_sequence, e.record
            )
        })?;
        durable::replace(&dir.join(format!("{:020}.scr", e.first_sequence)), &bytes)?;
    }
    Ok(entries.len())
}

/// The restart records saved in `dir/restarts/`, labelled by path, in
/// name order (none if the directory is absent).
pub fn read(dir: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let dir = dir.join(RESTARTS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".scr") {
            names.push(name);
        }
    }
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n))?;
            Ok((format!("{RESTARTS_DIR}/{n}"), bytes))
        })
        .collect()
}
