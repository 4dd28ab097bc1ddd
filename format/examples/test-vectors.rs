//! Writes the format test vectors to stdout:
//! `cargo run -p sealcam-format --example test-vectors > docs/ref/format-vectors.json`

#![allow(clippy::expect_used)]

#[path = "../tests/common/vectors.rs"]
mod vectors;

fn main() {
    print!("{}", vectors::generate());
}
