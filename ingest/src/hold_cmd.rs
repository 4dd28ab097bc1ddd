//! `sealcam-ingest hold`: the operator's legal holds
//! (`sealcam_ingest::legal_hold`).

use std::time::Duration;

use anyhow::Context;
use sealcam_format::Name;
use sealcam_ingest::{audit, legal_hold, store::Store};

use super::HoldCommand;

fn stream_name(s: &str) -> anyhow::Result<(Name, Name)> {
    let (device, stream) = s
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("{s:?}: write DEVICE/STREAM"))?;
    Ok((Name::new(device)?, Name::new(stream)?))
}

fn parse_time(s: &str) -> anyhow::Result<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{s:?} is not an RFC 3339 time (2026-01-31T12:00:00Z)"))?;
    u64::try_from(t.unix_timestamp_nanos()).with_context(|| format!("{s:?} is before 1970"))
}

fn actor(operator: &str) -> String {
    Name::new(operator)
        .map(|n| format!("operator:{n}"))
        .unwrap_or_else(|_| "operator".into())
}

pub fn run(command: HoldCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match command {
        HoldCommand::List { stream, config } => {
            let (device, stream) = stream_name(&stream)?;
            let cfg = config.resolve()?;
            let holds = rt.block_on(async {
                let store = Store::open(&cfg.storage)?;
                anyhow::Ok(store.holds(&device, &stream).await?)
            })?;
            if holds.is_empty() {
                println!("{device}/{stream}: no legal holds");
            }
            for h in holds {
                println!(
                    "{}  {}  placed by {}: {}",
                    h.id,
                    legal_hold::describe_range(&h),
                    h.placed_by,
                    h.reason
                );
            }
            Ok(())
        }
        HoldCommand::Place {
            stream,
            from,
            to,
            reason,
            config,
            operator,
        } => {
            let (device, stream) = stream_name(&stream)?;
            let range = (
                from.as_deref().map(parse_time).transpose()?,
                to.as_deref().map(parse_time).transpose()?,
            );
            let cfg = config.resolve()?;
            let names = (&device, &stream);
            let hold = rt.block_on(with_audit(&cfg, |store, log| async move {
                Ok(
                    legal_hold::place(&store, &log, &actor(&operator), names, range, &reason)
                        .await?,
                )
            }))?;
            println!(
                "{device}/{stream}: legal hold {} placed on {}; lift it with: sealcam-ingest hold lift {device}/{stream} {}",
                hold.id,
                legal_hold::describe_range(&hold),
                hold.id
            );
            Ok(())
        }
        HoldCommand::Lift {
            stream,
            id,
            config,
            operator,
        } => {
            let (device, stream) = stream_name(&stream)?;
            let cfg = config.resolve()?;
            let (names, which) = ((&device, &stream), id.as_str());
            let lifted = rt.block_on(with_audit(&cfg, |store, log| async move {
                Ok(legal_hold::lift(&store, &log, &actor(&operator), names, which).await?)
            }))?;
            match lifted {
                Some(h) => {
                    println!("{device}/{stream}: legal hold {} lifted", h.id);
                    Ok(())
                }
                None => anyhow::bail!(
                    "{device}/{stream} has no legal hold {id}; see sealcam-ingest hold list {device}/{stream}"
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
