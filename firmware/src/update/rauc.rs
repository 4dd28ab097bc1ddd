//! Running `rauc`, the client of RAUC's service, with a time limit. The
//! client waits on D-Bus for as long as the service takes; a service that
//! never answers must not hold the health check (and with it a slot on
//! trial) or the installer for ever.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::UpdateError;

/// `rauc status`, `mark-good`, `mark-bad`: answered from the service's
/// state and the boot loader's environment.
pub const QUERY: Duration = Duration::from_secs(120);
/// `rauc info`: checks the signature over every byte of a bundle (2 GiB
/// from a slow SD card).
pub const VERIFY: Duration = Duration::from_secs(30 * 60);
/// `rauc install`: checks the bundle again and writes a slot.
pub const INSTALL: Duration = Duration::from_secs(2 * 3600);

/// Runs `rauc args`, at most `limit`; its standard output.
pub fn rauc(args: &[&str], limit: Duration) -> Result<String, UpdateError> {
    run("rauc", args, limit)
}

/// Runs `program args`, killed after `limit`; its standard output, or why
/// it failed (its standard error on one line).
pub fn run(program: &str, args: &[&str], limit: Duration) -> Result<String, UpdateError> {
    let command = format!("{program} {}", args.join(" "));
    let failed = |reason: String| UpdateError::Command {
        command: command.clone(),
        reason,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => failed(format!("{e}; is {program} installed?")),
            _ => failed(e.to_string()),
        })?;
    // Read as it runs: a child that fills a pipe nobody reads never ends.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(UpdateError::NoAnswer {
                    command,
                    limit_s: limit.as_secs(),
                });
            }
            Err(e) => return Err(failed(e.to_string())),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        let why = String::from_utf8_lossy(&stderr).trim().replace('\n', "; ");
        return Err(failed(match why.is_empty() {
            true => status.to_string(),
            false => why,
        }));
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// Reads `pipe` to its end on a thread of its own.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut out);
        }
        out
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_command_that_does_not_end_is_stopped_at_its_limit() {
        let started = Instant::now();
        let e = run("sleep", &["30"], Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(e.to_string().contains("no answer within 0 s"), "{e}");
    }

    #[test]
    fn output_larger_than_a_pipe_is_read_whole() {
        let out = run(
            "sh",
            &["-c", "head -c 1000000 /dev/zero | tr '\\0' x"],
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(out.len(), 1_000_000);
    }

    #[test]
    fn a_failure_says_what_the_command_said() {
        let e = run("sh", &["-c", "echo one >&2; echo two >&2; exit 3"], QUERY).unwrap_err();
        assert!(e.to_string().ends_with(": one; two"), "{e}");
        let e = run("sealcam-no-such-program", &[], QUERY).unwrap_err();
        assert!(
            e.to_string()
                .contains("is sealcam-no-such-program installed?"),
            "{e}"
        );
    }
}
