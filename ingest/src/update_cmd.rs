//! `sealcam-ingest update`: the operator publishes RAUC bundles for
//! devices, lists and withdraws them (`sealcam_ingest::store` keeps them,
//! `docs/design/updates.md` says who may do what). Recorded in the audit
//! trail.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use sealcam_api::update::valid_version;
use sealcam_format::Name;
use sealcam_ingest::audit::{self, Event};
use sealcam_ingest::store::{Published, Store};
use sha2::{Digest, Sha256};

use super::UpdateCommand;

fn actor(operator: &str) -> String {
    Name::new(operator)
        .map(|n| format!("operator:{n}"))
        .unwrap_or_else(|_| "operator".into())
}

fn compatible_name(c: &str) -> anyhow::Result<Name> {
    Name::new(c).with_context(|| {
        format!("--compatible {c:?}: use RAUC's compatible, e.g. sealcam-rpi4 (A-Z a-z 0-9 . _ -)")
    })
}

pub fn run(command: UpdateCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match command {
        UpdateCommand::Publish {
            bundle,
            compatible,
            version,
            config,
            operator,
        } => {
            let compatible = compatible_name(&compatible)?;
            if !valid_version(&version) {
                anyhow::bail!("--version {version:?}: use 1 to 64 of 0-9 A-Z a-z . + - _ ~, as in the bundle's manifest");
            }
            let bytes = std::fs::read(&bundle)
                .with_context(|| format!("reading the bundle {}", bundle.display()))?;
            let sha256 = hex::encode(Sha256::digest(&bytes));
            let cfg = config.resolve()?;
            let entry = Published {
                compatible: compatible.to_string(),
                version: version.clone(),
                size: bytes.len() as u64,
                sha256: sha256.clone(),
                published_by: actor(&operator),
                published_unix_s: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            };
            let fresh = rt.block_on(with_audit(&cfg, |store, log| async move {
                if let Some(same) = store
                    .updates(&compatible)
                    .await?
                    .into_iter()
                    .find(|e| e.version == entry.version && e.sha256 != entry.sha256)
                {
                    anyhow::bail!(
                        "version {} for {compatible} is published already with other bytes (sha256 {}); withdraw it first: sealcam-ingest update withdraw --compatible {compatible} --version {}",
                        same.version, same.sha256, same.version
                    );
                }
                store.put_bundle(&entry.sha256, Bytes::from(bytes)).await?;
                let fresh = store.publish_update(&entry).await?;
                log.record(Event {
                    actor: entry.published_by.clone(),
                    action: "update-publish".into(),
                    target: Some(compatible.to_string()),
                    addr: None,
                    result: "ok".into(),
                    detail: Some(format!(
                        "bundle version {} ({} bytes, sha256 {}){}",
                        entry.version,
                        entry.size,
                        entry.sha256,
                        if fresh { "" } else { " published again" }
                    )),
                });
                Ok(fresh)
            }))?;
            println!(
                "{}: version {version} published (sha256 {sha256}){}; cameras of this compatible that run an older version fetch it at their next check",
                bundle.display(),
                if fresh { "" } else { ", as it was already" }
            );
            Ok(())
        }
        UpdateCommand::List { compatible, config } => {
            let cfg = config.resolve()?;
            let listed = rt.block_on(async {
                let store = Store::open(&cfg.storage)?;
                let names = match compatible {
                    Some(c) => vec![compatible_name(&c)?],
                    None => store.update_compatibles().await?,
                };
                let mut out = Vec::new();
                for c in names {
                    out.push((c.clone(), store.updates(&c).await?));
                }
                anyhow::Ok(out)
            })?;
            if listed.iter().all(|(_, e)| e.is_empty()) {
                println!("no updates published");
            }
            for (c, entries) in listed {
                for (i, e) in entries.iter().enumerate() {
                    println!(
                        "{c}  {:<16} {:>12} bytes  sha256 {}  by {}{}",
                        e.version,
                        e.size,
                        e.sha256,
                        e.published_by,
                        if i == 0 { "  (offered)" } else { "" }
                    );
                }
            }
            Ok(())
        }
        UpdateCommand::Withdraw {
            compatible,
            version,
            config,
            operator,
        } => {
            let compatible = compatible_name(&compatible)?;
            let cfg = config.resolve()?;
            let who = actor(&operator);
            let (c, v) = (&compatible, version.as_str());
            let gone = rt.block_on(with_audit(&cfg, |store, log| async move {
                let gone = store.withdraw_update(c, v).await?;
                if let Some(e) = &gone {
                    log.record(Event {
                        actor: who,
                        action: "update-withdraw".into(),
                        target: Some(c.to_string()),
                        addr: None,
                        result: "ok".into(),
                        detail: Some(format!(
                            "bundle version {} (sha256 {}) withdrawn",
                            e.version, e.sha256
                        )),
                    });
                }
                Ok(gone)
            }))?;
            match gone {
                Some(_) => {
                    println!("{compatible}: version {version} withdrawn; it is no longer offered");
                    Ok(())
                }
                None => anyhow::bail!(
                    "{compatible} has no published version {version}; see sealcam-ingest update list --compatible {compatible}"
                ),
            }
        }
    }
}

/// Runs `f` with the storage and an audit log of this command, flushed
/// before it returns.
async fn with_audit<T, F, Fut>(
    cfg: &sealcam_ingest::config::IngestConfig,
    f: F,
) -> anyhow::Result<T>
where
    F: FnOnce(Store, audit::AuditLog) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let store = Store::open(&cfg.storage)?;
    let instance = format!("{}-cli", audit::host_name());
    let (log, task) =
        audit::AuditLog::start(store.clone(), &cfg.pki, &instance, Duration::from_secs(1))?;
    let out = f(store, log.clone()).await;
    log.flush().await?;
    drop(log);
    let _ = task.await;
    out
}
