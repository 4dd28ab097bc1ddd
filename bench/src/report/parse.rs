//! Reading the figures other tools print: `openssl speed` and criterion.

/// Bytes per second of `openssl speed -evp aes-256-gcm -bytes 65536`: its
/// `AES-256-GCM` line, in thousands of bytes per second.
pub fn openssl_gcm(output: &str) -> Option<f64> {
    let line = output.lines().find(|l| l.starts_with("AES-256-GCM"))?;
    let k: f64 = line
        .split_whitespace()
        .nth(1)?
        .trim_end_matches('k')
        .parse()
        .ok()?;
    Some(k * 1000.0)
}

/// Verifications per second of `openssl speed ecdsap256`: the last figure
/// of its `ecdsa (nistp256)` line.
pub fn openssl_ecdsa_verifies(output: &str) -> Option<String> {
    let line = output.lines().find(|l| l.contains("ecdsa (nistp256)"))?;
    line.split_whitespace().last().map(str::to_owned)
}

/// The three figures and units inside criterion's `LABEL: [lo u mid u hi u]`.
fn bracket<'a>(line: &'a str, label: &str) -> Option<Vec<&'a str>> {
    let rest = &line[line.find(label)? + label.len()..];
    let inner = rest.trim_start().strip_prefix('[')?.split(']').next()?;
    let words: Vec<&str> = inner.split_whitespace().collect();
    (words.len() == 6).then_some(words)
}

/// criterion's throughput estimate in bytes per second: the middle figure
/// of the first `thrpt:` line.
pub fn criterion_rate(output: &str) -> Option<f64> {
    let w = output.lines().find_map(|l| bracket(l, "thrpt:"))?;
    let unit = match w[3] {
        "B/s" => 1.0,
        "KiB/s" => 1024.0,
        "MiB/s" => 1024.0 * 1024.0,
        "GiB/s" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(w[2].parse::<f64>().ok()? * unit)
}

/// criterion's time for benchmark `name`, "mid unit (lo–hi unit)": on the
/// line that names it or the next (criterion wraps long names).
pub fn criterion_time(output: &str, name: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().collect();
    let at = lines.iter().position(|l| l.starts_with(name))?;
    let w = lines[at..(at + 2).min(lines.len())]
        .iter()
        .find_map(|l| bracket(l, "time:"))?;
    Some(format!("{} {} ({}–{} {})", w[2], w[3], w[0], w[4], w[5]))
}

/// The lines of criterion's output that give a time.
pub fn criterion_time_lines(output: &str) -> impl Iterator<Item = &str> {
    output.lines().filter(|l| l.contains("time:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_figures() {
        let gcm = "The 'numbers' are in 1000s of bytes per second processed.\n\
                   type          65536 bytes\nAES-256-GCM    4123456.78k\n";
        assert_eq!(openssl_gcm(gcm), Some(4_123_456_780.0));
        let ecdsa = "                              sign    verify    sign/s verify/s\n \
                     256 bits ecdsa (nistp256)   0.0000s   0.0001s  40000.0  13000.5\n";
        assert_eq!(openssl_ecdsa_verifies(ecdsa).as_deref(), Some("13000.5"));
        assert_eq!(openssl_gcm("nothing"), None);
    }

    #[test]
    fn criterion_figures() {
        let out = "seal_frames/65536       time:   [20.1 µs 20.2 µs 20.3 µs]\n\
                   \x20                       thrpt:  [3.0 GiB/s 3.1 GiB/s 3.2 GiB/s]\n";
        assert_eq!(criterion_rate(out), Some(3.1 * 1024.0 * 1024.0 * 1024.0));
        let out =
            "tpm_sign_manifest_swtpm\n                        time:   [6.9 ms 7.0 ms 7.2 ms]\n";
        assert_eq!(
            criterion_time(out, "tpm_sign_manifest_swtpm").as_deref(),
            Some("7.0 ms (6.9–7.2 ms)")
        );
        assert_eq!(criterion_time(out, "software_sign_manifest"), None);
        assert_eq!(criterion_time_lines(out).count(), 1);
    }
}
