//! What every sealcam binary shares: logging setup, stop signals,
//! durable writes ([`durable`]), lock files ([`lock`]), and durations as operators write them
//! ([`parse_lifetime`]).

pub mod durable;
pub mod lock;
mod span;

pub use span::{parse_lifetime, split_unit};

use std::io::IsTerminal;

/// Logs filtered by `SEALCAM_LOG` (e.g. `info`, `sealcamd=debug`), else by
/// `default_filter`:
///
/// * under systemd, when stderr is the journal (`JOURNAL_STREAM`), straight
///   to journald with every event field as a journal field
///   (`SEALCAM_SEQUENCE=12`, `SEALCAM_ERROR=...`), so `journalctl
///   SEALCAM_SEQUENCE=12` finds them;
/// * else to stderr, colour only on a terminal;
/// * with `SEALCAM_LOG_FORMAT=json`, one JSON object per line on stderr
///   (for log pipelines), even under systemd.
///
/// Also installs a panic hook that logs the panic (message and location)
/// before the process ends.
pub fn init_logging(default_filter: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("SEALCAM_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter))
    };
    install_panic_hook();
    let format = std::env::var("SEALCAM_LOG_FORMAT").ok();
    if format.is_none() && stderr_is_journal() {
        if let Ok(journal) = tracing_journald::layer() {
            let journal = journal.with_field_prefix(Some("SEALCAM".into()));
            tracing_subscriber::registry()
                .with(filter())
                .with(journal)
                .init();
            return;
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr);
    if format.is_some_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// Whether stderr is the journal stream systemd connected
/// (`JOURNAL_STREAM=<device>:<inode>` names it).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2")
        .map(|m| names_stream(&stream, m.dev(), m.ino()))
        .unwrap_or(false)
}

/// Whether a `JOURNAL_STREAM` value names the file with `dev` and `ino`.
fn names_stream(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// Logs a panic (message and location) through `tracing` before the
/// default hook prints it, so it reaches the journal with the other logs.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(panic = %message, %location, "panicked: this is a bug; please report it with this line");
        default(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_names_a_device_and_inode() {
        assert!(names_stream("8:123456", 8, 123456));
        assert!(!names_stream("8:123456", 8, 123457));
        assert!(!names_stream("8-123456", 8, 123456));
        assert!(!names_stream("", 0, 0));
    }

    #[test]
    fn a_panic_is_logged_before_the_process_would_end() {
        #[derive(Clone, Default)]
        struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        install_panic_hook();
        let caught = tracing::subscriber::with_default(subscriber, || {
            std::panic::catch_unwind(|| panic!("the frame queue is corrupt"))
        });
        let _ = std::panic::take_hook();
        assert!(caught.is_err());
        let logged = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("ERROR"), "{logged}");
        assert!(logged.contains("the frame queue is corrupt"), "{logged}");
        assert!(logged.contains("base/src/lib.rs"), "{logged}");
    }
}

/// Completes on SIGTERM (systemd's stop) or SIGINT (Ctrl-C).
pub async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this program");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// An error and all its causes on one line, `outer: inner: root`, with
/// causes that merely repeat their parent left out.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Talking to systemd (`Type=notify` units). Every call is a no-op when the
/// program was not started by systemd (no `NOTIFY_SOCKET`).
pub mod service {
    use std::time::Duration;

    use sd_notify::NotifyState;

    fn send(state: &[NotifyState<'_>]) {
        if let Err(e) = sd_notify::notify(false, state) {
            tracing::debug!(error = %e, "cannot notify systemd");
        }
    }

    /// Start-up is complete.
    pub fn ready() {
        send(&[NotifyState::Ready]);
    }

    /// Shutting down.
    pub fn stopping() {
        send(&[NotifyState::Stopping]);
    }

    /// A one-line status for `systemctl status`.
    pub fn status(text: &str) {
        send(&[NotifyState::Status(text)]);
    }

    /// The watchdog period systemd expects keep-alives within, if any
    /// (`WatchdogSec=`).
    pub fn watchdog_period() -> Option<Duration> {
        let mut usec = 0;
        (sd_notify::watchdog_enabled(false, &mut usec) && usec > 0)
            .then(|| Duration::from_micros(usec))
    }

    /// One keep-alive.
    pub fn watchdog_ping() {
        send(&[NotifyState::Watchdog]);
    }
}
