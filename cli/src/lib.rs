//! The sealcam consumer and admin CLI.
//!
//! Each subcommand is a module under [`cmd`] that owns its arguments and its
//! `run()`; [`api`] is the ingest's consumer API. Fragments fetched from the ingest live in a plain directory
//! ([`fragdir`]) so that verification and decryption work offline.

pub mod anchor;
pub mod api;
pub mod card;
pub mod cmd;
pub mod events;
pub mod fragdir;
pub mod head_watch;
pub mod owner_key;
pub mod pins;
pub mod range;
pub mod recipient_check;
pub mod restarts;
