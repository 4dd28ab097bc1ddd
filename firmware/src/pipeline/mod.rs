//! The camera's data flow, one stage per module: frames become sealed
//! fragments ([`recorder`]), which are kept on disk ([`spool`]) and handed
//! at once to the uplink ([`live`]), which sends them to the ingest
//! ([`uplink`]).

pub mod events;
pub mod heads;
pub mod live;
pub mod recorder;
pub mod spool;
pub mod uplink;
