//! The inbox of event marks: where an external trigger (a GPIO watcher, a
//! door contact's script, an operator) leaves a mark for the recorder to
//! seal into the fragment being recorded.
//!
//! `sealcamd event` writes one small file per mark into the stream's spool
//! directory, `events/`, atomically (a temporary name, then renamed), and
//! the daemon takes them in name order a few times a second. A file says
//! when the mark was made on the wall clock, so a mark that waited for the
//! daemon is placed at its own time, not at the time it was read:
//!
//! ```text
//! <spool>/<stream>/events/<unix_ns:020>-<pid>-<n>.mark
//!     line 1: "trigger" or "motion"
//!     line 2: the wall-clock time of the mark, Unix ns
//!     line 3: the label (at most 31 bytes are kept)
//! ```
//!
//! The label reaches the disk in the clear here, inside the spool's 0700
//! directory, for the moment until the daemon reads and removes it; what
//! leaves the camera is only the sealed record.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use sealcam_base::durable;
use sealcam_format::events::{fit_label, EventKind};

/// The inbox directory inside a stream's spool directory.
pub const INBOX_DIR: &str = "events";
const SUFFIX: &str = ".mark";
/// Most marks taken at once (a flood waits for the next look).
const TAKE_AT_MOST: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event inbox {path}: {op} failed: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the mark into {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: durable::DurableError,
    },
}

/// A mark as the inbox holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostedMark {
    pub kind: EventKind,
    /// When it was made, on the wall clock (Unix ns).
    pub at_unix_ns: u64,
    pub label: String,
}

/// One stream's inbox of marks.
pub struct EventInbox {
    dir: PathBuf,
}

fn kind_of(name: &str) -> Option<EventKind> {
    match name {
        "trigger" => Some(EventKind::Trigger),
        "motion" => Some(EventKind::Motion),
        _ => None,
    }
}

impl EventInbox {
    /// The inbox of the stream whose spool directory is `stream_dir`,
    /// created (mode 0700) if missing.
    pub fn open(stream_dir: &Path) -> Result<Self, EventError> {
        let dir = stream_dir.join(INBOX_DIR);
        std::fs::create_dir_all(&dir).map_err(|source| EventError::Io {
            path: dir.clone(),
            op: "create",
            source,
        })?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Leaves a mark for the recorder; returns the file it wrote.
    pub fn post(&self, mark: &PostedMark) -> Result<PathBuf, EventError> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{:020}-{}-{}{SUFFIX}",
            mark.at_unix_ns,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.dir.join(name);
        let body = format!(
            "{}\n{}\n{}\n",
            mark.kind.as_str(),
            mark.at_unix_ns,
            fit_label(&mark.label).replace('\n', " ")
        );
        durable::replace(&path, body.as_bytes()).map_err(|source| EventError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// Takes the marks waiting, oldest first (at most a few dozen at a
    /// time), removing their files. A file that does not read as a mark is
    /// removed with a warning: nothing is sealed from it.
    pub fn take(&self) -> Result<Vec<PostedMark>, EventError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| EventError::Io {
            path: self.dir.clone(),
            op: "list",
            source,
        })?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && n.ends_with(SUFFIX))
            .collect();
        names.sort();
        names.truncate(TAKE_AT_MOST);
        let mut marks = Vec::with_capacity(names.len());
        for name in names {
            let path = self.dir.join(&name);
            let text = std::fs::read(&path).map(|b| String::from_utf8_lossy(&b).into_owned());
            match text.as_deref().map(parse) {
                Ok(Some(mark)) => marks.push(mark),
                Ok(None) => {
                    tracing::warn!(file = %path.display(), "not an event mark (kind, time, label on three lines); removed, nothing sealed");
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot read an event mark; removed, nothing sealed");
                }
            }
            if let Err(source) = std::fs::remove_file(&path) {
                if source.kind() != std::io::ErrorKind::NotFound {
                    return Err(EventError::Io {
                        path,
                        op: "remove",
                        source,
                    });
                }
            }
        }
        Ok(marks)
    }
}

fn parse(text: &str) -> Option<PostedMark> {
    let mut lines = text.lines();
    let kind = kind_of(lines.next()?.trim())?;
    let at_unix_ns = lines.next()?.trim().parse().ok()?;
    let label = fit_label(lines.next().unwrap_or("").trim()).to_owned();
    Some(PostedMark {
        kind,
        at_unix_ns,
        label,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn marks_come_out_in_order_once_and_garbage_is_dropped() {
        let root = tempfile::tempdir().unwrap();
        let inbox = EventInbox::open(root.path()).unwrap();
        let mark = |at, label: &str| PostedMark {
            kind: EventKind::Trigger,
            at_unix_ns: at,
            label: label.into(),
        };
        inbox.post(&mark(20, "second")).unwrap();
        inbox.post(&mark(10, "first\nline")).unwrap();
        std::fs::write(inbox.dir().join("00000000000000000005-1-1.mark"), "door\n").unwrap();
        std::fs::write(inbox.dir().join(".tmp-x.mark"), "trigger\n1\nhalf").unwrap();
        let taken = inbox.take().unwrap();
        assert_eq!(taken, vec![mark(10, "first line"), mark(20, "second")]);
        assert!(inbox.take().unwrap().is_empty());
        // A temporary file being written is left alone.
        assert!(inbox.dir().join(".tmp-x.mark").exists());
    }
}
