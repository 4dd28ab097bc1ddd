//! The device's trust: its key ([`key`], [`provision`], [`identity`]), its
//! certificate from the fleet CA ([`certificate`]: enrollment and renewal)
//! and whom it seals to ([`recipients`]: the owner-signed recipient set).

pub mod certificate;
pub mod identity;
pub mod key;
pub mod provision;
pub mod recipients;
