//! sealcam: the consumer and admin CLI.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sealcam::cmd;

#[derive(Parser)]
#[command(
    name = "sealcam",
    version,
    about = "sealcam consumer CLI: keys, fetch, follow, verify, decrypt (anchored in the owner's key: --owner)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a consumer key pair.
    Keygen(cmd::keygen::Args),
    /// What the ingest says exists: the streams you may read, or a
    /// stream's fragments and gaps over a range (unverified until fetched).
    List(cmd::list::Args),
    /// Download a stream's sealed fragments, the owner's roster and the
    /// device's certificates, and verify them.
    Fetch(cmd::fetch::Args),
    /// Follow a stream live: verify, decrypt, write a growing MKV or play it.
    Follow(cmd::follow::Args),
    /// Check signatures, hashes and the chain; report gaps.
    Verify(cmd::verify::Args),
    /// Decrypt verified fragments to a playable MKV.
    Decrypt(cmd::decrypt::Args),
    /// List the event marks (motion, triggers) sealed in fetched fragments.
    Events(cmd::events::Args),
    /// Export a time range of a fetched stream as an evidence bundle for a
    /// third party: fragments, roster, certificates, and the data keys of
    /// exactly that range, wrapped to them (or in plaintext).
    Export(cmd::export::Args),
    /// Check an evidence bundle offline and report what it proves; write
    /// the decrypted range as MKV or MP4 (--mkv, --mp4).
    VerifyBundle(cmd::verify_bundle::Args),
    /// The owner key, which signs recipient sets.
    Owner {
        #[command(subcommand)]
        command: OwnerCommand,
    },
    /// Owner-signed recipient sets: who may decrypt.
    Recipients {
        #[command(subcommand)]
        command: RecipientsCommand,
    },
    /// A camera's card: write the provisioning bundle its first boot takes.
    Card {
        #[command(subcommand)]
        command: CardCommand,
    },
    /// The owner-signed device roster: which key speaks for which camera, when.
    Roster {
        #[command(subcommand)]
        command: RosterCommand,
    },
}

#[derive(Subcommand)]
enum RosterCommand {
    /// Add a device's key (a new camera, or a new key after a re-key).
    Add(cmd::roster::AddArgs),
    /// End a key's validity: rotated or revoked, from a given time.
    End(cmd::roster::EndArgs),
    /// Show a roster (and check its signature with --owner).
    Show(cmd::roster::ShowArgs),
    /// Publish the roster on the ingest, for `fetch` and `follow`.
    Publish(cmd::roster::PublishArgs),
}

#[derive(Subcommand)]
enum CardCommand {
    /// Check a provisioning bundle and write it onto a mounted boot
    /// partition (--boot) or into a disk image file (--image).
    Write(cmd::card::WriteArgs),
}

#[derive(Subcommand)]
enum OwnerCommand {
    /// Make the owner key pair.
    Init(cmd::owner::InitArgs),
}

#[derive(Subcommand)]
enum RecipientsCommand {
    /// Sign a recipient set with the owner key.
    Sign(cmd::recipients::SignArgs),
    /// Show a recipient set (and check its signature with --owner).
    Show(cmd::recipients::ShowArgs),
}

fn main() -> ExitCode {
    sealcam_base::init_logging("warn");
    let result = match Cli::parse().command {
        Command::Keygen(a) => cmd::keygen::run(a).map(|()| true),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Decrypt(a) => cmd::decrypt::run(a).map(|()| true),
        Command::Events(a) => cmd::events::run(a).map(|()| true),
        Command::Export(a) => cmd::export::run(a).map(|()| true),
        Command::VerifyBundle(a) => cmd::verify_bundle::run(a),
        Command::Owner {
            command: OwnerCommand::Init(a),
        } => cmd::owner::init(a).map(|()| true),
        Command::Recipients {
            command: RecipientsCommand::Sign(a),
        } => cmd::recipients::sign(a).map(|()| true),
        Command::Recipients {
            command: RecipientsCommand::Show(a),
        } => cmd::recipients::show(a).map(|()| true),
        Command::Card {
            command: CardCommand::Write(a),
        } => cmd::card::write(a).map(|()| true),
        Command::Roster { command } => match command {
            RosterCommand::Add(a) => cmd::roster::add(a),
            RosterCommand::End(a) => cmd::roster::end(a),
            RosterCommand::Show(a) => cmd::roster::show(a),
            RosterCommand::Publish(a) => match tokio::runtime::Runtime::new() {
                Ok(rt) => rt.block_on(cmd::roster::publish(a)),
                Err(e) => Err(e.into()),
            },
        }
        .map(|()| true),
        Command::Fetch(a) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(cmd::fetch::run(a)),
            Err(e) => Err(e.into()),
        },
        Command::List(a) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(cmd::list::run(a)).map(|()| true),
            Err(e) => Err(e.into()),
        },
        Command::Follow(a) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(cmd::follow::run(a)).map(|()| true),
            Err(e) => Err(e.into()),
        },
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("sealcam: error: {}", sealcam_base::error_chain(e.as_ref()));
            ExitCode::from(2)
        }
    }
}
