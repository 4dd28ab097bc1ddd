//! Counters read from the running system: CPU time from `/proc`, resident
//! memory and bytes written by a process, and the size of a spool.

use std::path::{Path, PathBuf};

use super::ReportError;

fn read(path: impl Into<PathBuf>) -> Result<String, ReportError> {
    let path = path.into();
    std::fs::read_to_string(&path).map_err(|source| ReportError::Io { path, source })
}

fn field(text: &str, i: usize, what: &'static str) -> Result<f64, ReportError> {
    text.split_whitespace()
        .nth(i)
        .and_then(|w| w.parse().ok())
        .ok_or(ReportError::NotInOutput { what })
}

/// The machine's CPU time so far, in ticks: busy (user, nice, system, irq,
/// softirq) and idle (idle, iowait), from the `cpu` line of `/proc/stat`.
pub fn machine_ticks(proc_stat: &str) -> Result<(f64, f64), ReportError> {
    let line =
        proc_stat
            .lines()
            .find(|l| l.starts_with("cpu "))
            .ok_or(ReportError::NotInOutput {
                what: "the cpu line",
            })?;
    let f = |i| field(line, i, "a cpu counter");
    Ok((f(1)? + f(2)? + f(3)? + f(6)? + f(7)?, f(4)? + f(5)?))
}

/// A process's CPU time (user + system of all its threads) in ticks, from
/// its `/proc/PID/stat` (fields 14 and 15, counted after the command name).
pub fn process_ticks(pid_stat: &str) -> Result<f64, ReportError> {
    let after =
        pid_stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or(ReportError::NotInOutput {
                what: "a process's stat",
            })?;
    // After ") " field 3 (state) comes first.
    let f = |i: usize| field(after, i - 3, "a process's CPU time");
    Ok(f(14)? + f(15)?)
}

/// "PREFIX_busy=S PREFIX_idle=S[ PREFIX_process=S]" in CPU seconds: the
/// machine's, and a process's when `pid` is given.
pub fn cpu_counters(prefix: &str, pid: Option<u32>) -> Result<String, ReportError> {
    let tick = rustix::param::clock_ticks_per_second() as f64;
    let (busy, idle) = machine_ticks(&read("/proc/stat")?)?;
    let mut out = format!(
        "{prefix}_busy={} {prefix}_idle={}",
        busy / tick,
        idle / tick
    );
    if let Some(pid) = pid {
        let p = process_ticks(&read(format!("/proc/{pid}/stat"))?)?;
        out.push_str(&format!(" {prefix}_process={}", p / tick));
    }
    Ok(out)
}

/// A `/proc/PID/...` file's figure on the line starting `key`.
fn proc_figure(pid: u32, file: &str, key: &'static str) -> Result<f64, ReportError> {
    let text = read(format!("/proc/{pid}/{file}"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(key))
        .ok_or(ReportError::NotInOutput { what: key })?;
    field(line, 1, key)
}

/// A process's resident memory in MiB.
pub fn rss_mib(pid: u32) -> Result<f64, ReportError> {
    Ok(proc_figure(pid, "status", "VmRSS")? / 1024.0)
}

/// Bytes a process has caused to be written to disk.
pub fn written_bytes(pid: u32) -> Result<f64, ReportError> {
    proc_figure(pid, "io", "write_bytes")
}

/// The total size of the sealed fragments (`*.scf`) in a spool directory.
pub fn sealed_bytes(dir: &Path) -> Result<u64, ReportError> {
    let io = |source| ReportError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.path().extension().is_some_and(|e| e == "scf") {
            total += entry.metadata().map_err(io)?.len();
        }
    }
    Ok(total)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Touches nine tenths of the machine's available memory, all of it held at
/// once (memory freed and taken again would be the same pages), in GiB
/// pieces; returns how many. On a virtual machine, memory the guest has
/// never touched is backed by the host only when first written: touched
/// once here, no benchmark run pays for it.
pub fn touch_memory() -> Result<usize, ReportError> {
    let meminfo = read("/proc/meminfo")?;
    let avail_kib = meminfo
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .map(|l| field(l, 1, "MemAvailable"))
        .ok_or(ReportError::NotInOutput {
            what: "MemAvailable",
        })??;
    const GIB: usize = 1 << 30;
    let pieces = (avail_kib * 1024.0 * 0.9) as usize / GIB;
    let mut held: Vec<Vec<u8>> = Vec::with_capacity(pieces);
    for _ in 0..pieces {
        let mut piece = Vec::new();
        if piece.try_reserve_exact(GIB).is_err() {
            break;
        }
        // Writing every byte writes every page.
        piece.resize(GIB, 1);
        held.push(piece);
    }
    Ok(held.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_from_proc_text() {
        let stat = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 1 2 3 4 5 6 7\n";
        assert_eq!(machine_ticks(stat).unwrap(), (160.0, 1020.0));
        let pid = "42 (a (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0";
        assert_eq!(process_ticks(pid).unwrap(), 280.0);
        assert!(cpu_counters("start", Some(std::process::id()))
            .unwrap()
            .contains("start_process="));
        assert!(free_port().unwrap() > 0);
    }
}
