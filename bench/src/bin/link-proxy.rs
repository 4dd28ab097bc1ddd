//! A link between a camera and the ingest that a benchmark script steers:
//! the fault proxy of the system tests, driven by lines on standard input.
//!
//! ```text
//! link-proxy TARGET          prints "listening on ADDR"
//! pass | blackhole | cut | reset | throttle BYTES_PER_S | delay MS
//! bytes                      prints the bytes forwarded camera → ingest so far
//! ```

use std::io::BufRead;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use sealcam_system_tests::faultproxy::{FaultProxy, Mode};

#[derive(Parser)]
struct Args {
    /// Where the ingest listens.
    target: std::net::SocketAddr,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let proxy = FaultProxy::start(args.target);
    println!("listening on {}", proxy.addr);
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading commands")?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |what: &str| -> anyhow::Result<u64> {
            words
                .get(1)
                .with_context(|| format!("{what} needs a number"))?
                .parse()
                .with_context(|| format!("{what} needs a number"))
        };
        match words.first().copied() {
            None => continue,
            Some("pass") => proxy.pass(),
            Some("blackhole") => proxy.blackhole(),
            Some("cut") => proxy.cut(),
            Some("reset") => proxy.reset(),
            Some("throttle") => proxy.set_mode(Mode::Throttle(number("throttle")?)),
            Some("delay") => proxy.set_mode(Mode::Delay(Duration::from_millis(number("delay")?))),
            Some("bytes") => println!("{}", proxy.bytes_up()),
            Some(other) => bail!("unknown command {other:?}: pass, blackhole, cut, reset, throttle N, delay MS, bytes"),
        }
    }
    Ok(())
}
