//! `sealcamd health`: after an update, the new slot proves itself or is
//! given up (`docs/design/updates.md`).
//!
//! A slot is on trial when RAUC says the booted slot is not marked good
//! (`boot_status` `bad` in `rauc status --output-format=json`) **and** the
//! installer's trial note names that slot: it was installed and has not
//! yet proved itself. It proves itself when sealcamd has had a fragment
//! sealed, signed and acknowledged by the ingest in this boot ([`super::ack`]);
//! then `rauc status mark-good`. If that does not happen within
//! `update.health_timeout`, `rauc status mark-bad` and a reboot: the
//! bootloader falls back to the other slot.
//!
//! A booted slot that is not good but has no trial note is one that has
//! proved itself before, under a bootloader script that asks for a
//! mark-good every boot (RAUC's GRUB example): it is marked good at once,
//! so that an outage of the network or the ingest never sends a camera
//! back to an older release.
//!
//! RAUC that does not answer (every call is time-limited,
//! [`super::rauc`]) in the trial boot, known then from the kernel's
//! `rauc.slot=`, is asked again until the timeout and the slot is then
//! given up: a release whose RAUC is broken could never be updated again.
//! Outside a trial boot it is only an error; nothing is at stake.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::rauc::{rauc, QUERY};
use super::rauc_json::Status;
use super::{ack, given_up, outcome, proven, release, UpdateError};
use crate::config::UpdateConfig;

/// The installer's note that a slot was installed and is to be tried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    /// RAUC's slot name (`rootfs.1`), `boot_primary` after the install.
    pub slot: String,
    pub version: Option<String>,
    /// Whether the slot has booted on trial. A note for a slot that never
    /// booted is from an install that did not finish (power lost during
    /// `rauc install`): the release was not tried, so it is not given up.
    #[serde(default)]
    pub booted: bool,
    /// Whether `rauc install` finished. A slot installed that falls back
    /// without ever reaching the health check (its kernel did not start,
    /// its root did not mount) was tried: it is given up too.
    #[serde(default)]
    pub installed: bool,
    /// The slot's name for the boot loader (`B`): which slot is booted is
    /// known from the kernel's command line (`rauc.slot=`) when RAUC does
    /// not answer.
    #[serde(default)]
    pub bootname: Option<String>,
    /// The boot in which the installer wrote the note. A note of this boot
    /// for another slot is an install under way, not a fall back.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// The slot's trial boot: the boot in which the health check first saw
    /// it booted. Only that boot judges it.
    #[serde(default)]
    pub trial_boot: Option<String>,
    /// The bundle's SHA-256: a release given up is declined by it.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The health check gave the slot up in its trial boot for want of an
    /// acknowledged fragment (and recorded it, [`given_up::add_unproven`]):
    /// the fall back that follows is that, not the slot's failure to boot.
    #[serde(default)]
    pub unproven: bool,
}

/// Where the trial note is kept (the installer's root-only directory).
pub fn trial_path(cfg: &UpdateConfig) -> PathBuf {
    cfg.install_dir.join("trial.json")
}

pub fn read_trial(path: &Path) -> Option<Trial> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The booted slot is good: nothing to do.
    Nothing,
    /// Not good, but not on trial either: it proved itself before.
    MarkGoodNow,
    /// On trial, not proved yet: look again shortly.
    Wait,
    /// On trial and proved: mark it good.
    MarkGood,
    /// On trial past the deadline: mark it bad and reboot.
    MarkBad,
    /// RAUC names no booted slot (not booted from a slot RAUC knows).
    NoSlot,
}

/// Whether a trial note was for another slot than the one booted, in an
/// earlier boot (`boot`: this one's id): the new slot did not prove itself
/// and the bootloader fell back. A note of this boot is an install under
/// way.
pub fn fell_back(status: &Status, trial: Option<&Trial>, boot: &str) -> bool {
    match (status.booted_slot(), trial) {
        (Some(b), Some(t)) => {
            b.name != t.slot
                && t.boot_id.as_deref().map(release::normalized).as_deref()
                    != Some(&release::normalized(boot))
        }
        _ => false,
    }
}

/// Whether the kernel's command line (`cmdline`) says the note's slot is
/// booted: the boot loader passes `rauc.slot=BOOTNAME`.
pub fn kernel_booted(cmdline: &str, trial: Option<&Trial>) -> bool {
    let Some(name) = trial.and_then(|t| t.bootname.as_deref()) else {
        return false;
    };
    cmdline
        .split_whitespace()
        .any(|arg| arg.strip_prefix("rauc.slot=") == Some(name))
}

/// Whether the boot `boot` is the trial boot of the note's slot: the first
/// boot the health check saw it in, or one before it saw any.
pub fn is_trial_boot(trial: &Trial, boot: &str) -> bool {
    match &trial.trial_boot {
        Some(b) => release::normalized(b) == release::normalized(boot),
        None => !trial.booted,
    }
}

/// The decision, from what RAUC says, the installer's trial note, the id of
/// this boot, whether this boot has an acknowledged fragment, and how long
/// it has waited.
pub fn decide(
    status: &Status,
    trial: Option<&Trial>,
    boot: &str,
    proved: bool,
    waited: Duration,
    timeout: Duration,
) -> Decision {
    let Some(booted) = status.booted_slot() else {
        return Decision::NoSlot;
    };
    let judged = || match (proved, waited >= timeout) {
        (true, _) => Decision::MarkGood,
        (false, true) => Decision::MarkBad,
        (false, false) => Decision::Wait,
    };
    let noted = trial.filter(|t| t.slot == booted.name);
    if booted.good {
        return match noted {
            // Good already in its trial boot: only a release's own RAUC or
            // boot chooser can say so, and that is no proof.
            Some(t) if is_trial_boot(t, boot) => judged(),
            // Marked good in an earlier boot, but the power went before
            // the rest was noted (the high-water mark, the outcome, the
            // note's removal): finish it.
            Some(_) => Decision::MarkGood,
            None => Decision::Nothing,
        };
    }
    match noted {
        Some(_) => judged(),
        None => Decision::MarkGoodNow,
    }
}

/// What `sealcamd health` ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    NotOnTrial,
    MarkedGood,
    /// Marked bad; the caller reboots.
    MarkedBad,
}

/// How long the health check waits before it asks RAUC again.
const AGAIN: Duration = Duration::from_secs(2);

/// The health check, until it has decided.
pub fn run(cfg: &UpdateConfig) -> Result<Ended, UpdateError> {
    let boot = release::boot_id()?;
    let started = Instant::now();
    let trial_file = trial_path(cfg);
    let conf = format!("--conf={}", cfg.system_conf.display());
    loop {
        let trial = read_trial(&trial_file);
        let status = match rauc(&[&conf, "status", "--output-format=json"], QUERY)
            .and_then(|json| Status::parse(&json).map_err(UpdateError::Release))
        {
            Ok(s) => s,
            // Nothing is at stake unless this boot is the trial: then RAUC
            // is asked until the timeout, and the slot is given up.
            Err(e) => {
                let cmdline = std::fs::read_to_string(&cfg.kernel_cmdline).unwrap_or_default();
                let trial_boot = trial.as_ref().is_some_and(|t| is_trial_boot(t, &boot));
                if !(trial_boot && kernel_booted(&cmdline, trial.as_ref())) {
                    return Err(e);
                }
                if started.elapsed() >= cfg.health_timeout {
                    let why = format!("RAUC did not answer in the slot on trial ({e})");
                    return give_up(cfg, &conf, trial.as_ref(), &why);
                }
                tracing::warn!(error = %e, "RAUC does not answer; the slot on trial is judged when it does, or given up at the timeout");
                std::thread::sleep(AGAIN);
                continue;
            }
        };
        if fell_back(&status, trial.as_ref(), &boot) {
            let t = trial.as_ref();
            let version = t.and_then(|t| t.version.as_deref());
            let slot = t.map(|t| t.slot.as_str()).unwrap_or("?");
            let sha256 = t.and_then(|t| t.sha256.as_deref());
            let o = match t {
                // Judged in its trial boot and recorded then.
                Some(t) if t.unproven => {
                    let verdict = version.map(|v| {
                        given_up::verdict(&cfg.install_dir, v, crate::date::now_unix())
                    });
                    unproven_outcome(version, slot, verdict, cfg).of_bundle(sha256)
                }
                Some(t) if t.booted || t.installed => {
                    if let Some(v) = version {
                        given_up::add(&given_up::path(cfg), v)?;
                    }
                    outcome::Outcome::new(
                        "failed",
                        version,
                        format!("slot {slot} did not prove itself; the bootloader fell back, and this release is not installed again"),
                    )
                    .of_bundle(sha256)
                    .for_good()
                }
                _ => outcome::Outcome::new(
                    "failed",
                    version,
                    format!("the install into slot {slot} did not finish (power lost?); the camera still runs the release before it, and installs again when it is offered"),
                ),
            };
            tracing::warn!(outcome = %o.line(), "the updated slot was given up");
            sealcam_base::durable::remove(&trial_file)?;
            report(cfg, &o);
            continue;
        }
        if let Some(t) = trial.as_ref().filter(|t| !t.booted) {
            if status.booted_slot().is_some_and(|b| b.name == t.slot) {
                let booted = Trial {
                    booted: true,
                    trial_boot: Some(boot.clone()),
                    ..t.clone()
                };
                super::write_json(&trial_file, &booted)?;
            }
        }
        let proved = ack::proves(ack::read(&cfg.ack_file).as_ref(), &boot);
        match decide(
            &status,
            trial.as_ref(),
            &boot,
            proved,
            started.elapsed(),
            cfg.health_timeout,
        ) {
            Decision::Nothing => return Ok(Ended::NotOnTrial),
            Decision::NoSlot => {
                tracing::info!("RAUC names no booted slot; nothing to check");
                return Ok(Ended::NotOnTrial);
            }
            Decision::MarkGoodNow => {
                rauc(&[&conf, "status", "mark-good"], QUERY)?;
                tracing::info!("the booted slot had proved itself before; marked good again");
                return Ok(Ended::NotOnTrial);
            }
            Decision::Wait => std::thread::sleep(AGAIN),
            Decision::MarkGood => {
                // Proved, but RAUC must record it: until it does, the
                // next boot falls back. Asked again until the timeout.
                if let Err(e) = rauc(&[&conf, "status", "mark-good"], QUERY) {
                    if started.elapsed() >= cfg.health_timeout {
                        let why = format!("it proved itself, but RAUC did not mark it good ({e})");
                        return give_up(cfg, &conf, trial.as_ref(), &why);
                    }
                    tracing::warn!(error = %e, "the slot proved itself, but RAUC did not mark it good; asking again");
                    std::thread::sleep(AGAIN);
                    continue;
                }
                let version = trial.as_ref().and_then(|t| t.version.as_deref());
                if let Some(v) = version {
                    proven::note(&proven::path(cfg), v)?;
                }
                sealcam_base::durable::remove(&trial_file)?;
                report(
                    cfg,
                    &outcome::Outcome::new(
                        "installed",
                        version,
                        "booted, a fragment acknowledged, marked good",
                    ),
                );
                tracing::info!("the updated slot proved itself (a fragment acknowledged by the ingest); marked good");
                return Ok(Ended::MarkedGood);
            }
            Decision::MarkBad => {
                let why = format!(
                    "no fragment was acknowledged within {} s of its trial boot",
                    cfg.health_timeout.as_secs()
                );
                return give_up_unproven(cfg, &conf, &trial_file, trial.as_ref(), &why);
            }
        }
    }
}

/// Writes the outcome for sealcamd to report. Its directory is sealcamd's
/// (and its disk may be full): a failure is logged, and the root-side
/// bookkeeping, done before, stands.
fn report(cfg: &UpdateConfig, o: &outcome::Outcome) {
    // Reached without following a link sealcamd's user put in its place.
    let written = super::their_dir::TheirDir::open(&cfg.dir)
        .map_err(|why| why.to_string())
        .and_then(|dir| outcome::write(dir.path(), o).map_err(|e| e.to_string()));
    if let Err(e) = written {
        tracing::warn!(error = %e, outcome = %o.line(), "cannot write the update's outcome for sealcamd");
    }
}

/// The outcome of a slot given up for want of an acknowledged fragment,
/// with what the installer will now do with its release.
fn unproven_outcome(
    version: Option<&str>,
    slot: &str,
    verdict: Option<given_up::Verdict>,
    cfg: &UpdateConfig,
) -> outcome::Outcome {
    let base = format!(
        "slot {slot} had no fragment acknowledged within {} s of its trial boot (the release, or the network or ingest then)",
        cfg.health_timeout.as_secs()
    );
    match verdict {
        Some(given_up::Verdict::Until(t)) => outcome::Outcome::new(
            "failed",
            version,
            format!("{base}; tried again after {}", crate::date::rfc3339_u64(t)),
        )
        .until(t),
        Some(given_up::Verdict::Never) => outcome::Outcome::new(
            "failed",
            version,
            format!("{base}; after its third such trial it is not installed again"),
        )
        .for_good(),
        _ => outcome::Outcome::new(
            "failed",
            version,
            format!("{base}; installed again when offered"),
        ),
    }
}

/// Gives the slot on trial up for want of an acknowledged fragment
/// (`why`): its release waits before it is tried again, or is given up for
/// good after its third such trial ([`given_up`]). The note says so for
/// the fall back that follows.
fn give_up_unproven(
    cfg: &UpdateConfig,
    conf: &str,
    trial_file: &Path,
    trial: Option<&Trial>,
    why: &str,
) -> Result<Ended, UpdateError> {
    // Whatever fails in the bookkeeping, the slot is marked bad and the
    // camera falls back: a release that did not prove itself does not stay.
    // The trial is marked unproven only once its wait is recorded: without
    // the record, the fall back would offer the release again at once.
    let recorded = match trial.and_then(|t| t.version.as_deref()) {
        Some(v) => match given_up::add_unproven(&cfg.install_dir, v, crate::date::now_unix()) {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot record the unproven trial; the fall back gives the release up for good");
                false
            }
        },
        None => false,
    };
    if let Some(t) = trial.filter(|_| recorded) {
        let judged = Trial {
            unproven: true,
            ..t.clone()
        };
        if let Err(e) = super::write_json(trial_file, &judged) {
            tracing::warn!(error = %e, "cannot note the verdict; the fall back gives the release up for good");
        }
    }
    mark_bad(conf, why)
}

/// Gives the slot on trial up (`why`): its release is never installed
/// again, and it is marked bad. The caller reboots; the boot loader falls
/// back even when RAUC could not mark it, as the trial boot was the slot's
/// only one.
fn give_up(
    cfg: &UpdateConfig,
    conf: &str,
    trial: Option<&Trial>,
    why: &str,
) -> Result<Ended, UpdateError> {
    let version = trial.and_then(|t| t.version.as_deref());
    if let Some(v) = version {
        if let Err(e) = given_up::add(&given_up::path(cfg), v) {
            tracing::warn!(error = %e, "cannot record the release as given up; the fall back records it");
        }
    }
    mark_bad(conf, why)
}

/// Marks the booted slot bad and says why; the caller reboots.
fn mark_bad(conf: &str, why: &str) -> Result<Ended, UpdateError> {
    if let Err(e) = rauc(&[conf, "status", "mark-bad"], QUERY) {
        tracing::warn!(error = %e, "RAUC did not mark the slot bad; the reboot falls back all the same");
    }
    tracing::error!(
        reason = why,
        "the updated slot did not prove itself; given up, rebooting into the other slot"
    );
    Ok(Ended::MarkedBad)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::rauc_json::samples::*;
    use super::*;

    const T: Duration = Duration::from_secs(300);

    fn trial(slot: &str) -> Trial {
        Trial {
            slot: slot.into(),
            version: Some("1.1.0".into()),
            booted: true,
            installed: true,
            bootname: Some("A".into()),
            boot_id: Some("an earlier boot".into()),
            trial_boot: Some("an earlier boot".into()),
            sha256: None,
            unproven: false,
        }
    }

    #[test]
    fn a_slot_on_trial_waits_for_an_acknowledged_fragment() {
        let s = Status::parse(TRIAL_A).unwrap();
        let t = trial("rootfs.0");
        assert_eq!(
            decide(&s, Some(&t), "this boot", false, Duration::ZERO, T),
            Decision::Wait
        );
        assert_eq!(
            decide(&s, Some(&t), "this boot", true, Duration::ZERO, T),
            Decision::MarkGood
        );
        assert_eq!(
            decide(&s, Some(&t), "this boot", false, T, T),
            Decision::MarkBad
        );
        // Proved at the last moment still counts.
        assert_eq!(
            decide(&s, Some(&t), "this boot", true, T * 2, T),
            Decision::MarkGood
        );
    }

    #[test]
    fn a_good_slot_is_left_alone() {
        let s = Status::parse(GOOD_A).unwrap();
        assert_eq!(
            decide(&s, None, "this boot", false, T, T),
            Decision::Nothing
        );
        // Good, and the note still names it: a power cut came between the
        // mark-good and the bookkeeping after it, which is finished now.
        assert_eq!(
            decide(&s, Some(&trial("rootfs.0")), "this boot", false, T, T),
            Decision::MarkGood
        );
        assert_eq!(
            decide(&s, Some(&trial("rootfs.1")), "this boot", false, T, T),
            Decision::Nothing
        );
    }

    #[test]
    fn a_slot_good_in_its_own_trial_boot_still_has_to_prove_itself() {
        // Its own boot chooser says good; that is no proof.
        let s = Status::parse(GOOD_A).unwrap();
        let first = Trial {
            booted: false,
            trial_boot: None,
            ..trial("rootfs.0")
        };
        assert_eq!(
            decide(&s, Some(&first), "this boot", false, Duration::ZERO, T),
            Decision::Wait
        );
        let seen = Trial {
            booted: true,
            trial_boot: Some("this boot".into()),
            ..trial("rootfs.0")
        };
        assert_eq!(
            decide(&s, Some(&seen), "this boot", false, T, T),
            Decision::MarkBad
        );
        assert_eq!(
            decide(&s, Some(&seen), "this boot", true, T, T),
            Decision::MarkGood
        );
        assert!(is_trial_boot(&seen, "this boot"));
        assert!(!is_trial_boot(&seen, "a later boot"));
    }

    #[test]
    fn a_slot_not_good_but_never_on_trial_is_marked_good_at_once() {
        // An outage of the ingest must not send a proven camera back.
        let s = Status::parse(TRIAL_A).unwrap();
        assert_eq!(
            decide(&s, None, "this boot", false, T, T),
            Decision::MarkGoodNow
        );
    }

    #[test]
    fn a_fall_back_is_seen_from_the_trial_note() {
        let s = Status::parse(FELL_BACK_TO_B).unwrap();
        assert!(fell_back(&s, Some(&trial("rootfs.0")), "this boot"));
        assert!(!fell_back(&s, None, "this boot"));
        assert!(!fell_back(
            &Status::parse(TRIAL_A).unwrap(),
            Some(&trial("rootfs.0")),
            "this boot"
        ));
        // A note written in this boot is an install under way, which the
        // health check leaves to the installer.
        let installing = Trial {
            boot_id: Some("this boot".into()),
            ..trial("rootfs.0")
        };
        assert!(!fell_back(&s, Some(&installing), "this boot"));
        assert_eq!(
            decide(&s, Some(&installing), "this boot", false, T, T),
            Decision::Nothing
        );
        // Detailed output, U-Boot board, on trial in B.
        let d = Status::parse(DETAILED_TRIAL_B).unwrap();
        assert_eq!(
            decide(
                &d,
                Some(&trial("rootfs.1")),
                "this boot",
                false,
                Duration::ZERO,
                T
            ),
            Decision::Wait
        );
    }

    #[test]
    fn without_rauc_the_kernel_says_whether_this_is_the_trial_boot() {
        let t = trial("rootfs.0");
        let line = "root=PARTLABEL=rootfs-a rw rauc.slot=A panic=10";
        assert!(kernel_booted(line, Some(&t)));
        assert!(!kernel_booted("rw rauc.slot=B", Some(&t)));
        assert!(!kernel_booted("rw rauc.slot=AB", Some(&t)));
        assert!(!kernel_booted("rw", Some(&t)));
        assert!(!kernel_booted(line, None));
        let unnamed = Trial {
            bootname: None,
            ..t
        };
        assert!(!kernel_booted(line, Some(&unnamed)));
    }

    #[test]
    fn no_booted_slot_is_no_trial() {
        let s = Status::parse(
            r#"{"compatible":"x","variant":null,"booted":null,"boot_primary":null,"slots":[]}"#,
        )
        .unwrap();
        assert_eq!(decide(&s, None, "this boot", false, T, T), Decision::NoSlot);
    }
}
