//! What every sealcam binary shares: logging setup and stop signals.

use std::io::IsTerminal;

/// Logs to stderr, filtered by `SEALCAM_LOG` (e.g. `info`, `sealcamd=debug`),
/// else by `default_filter`; colour only on a terminal. With
/// `SEALCAM_LOG_FORMAT=json`, one JSON object per line (for log pipelines).
pub fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEALCAM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("SEALCAM_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
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
