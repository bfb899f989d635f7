#![warn(missing_docs)]
//! Sans-IO ENRP (RFC 5353): registrars of one operation scope keep one
//! handlespace and take over the pool elements of a dead peer.
//!
//! * [`server::EnrpServer`]: the state machine (presence, handle updates,
//!   table loads, checksum audit, takeover) working on an ASAP
//!   [`Registrar`](crate::asap::registrar::Registrar)'s handlespace.
//! * [`auth`]: the HMAC trailer that authenticates registrars to each other.
//!
//! The wire format is [`crate::wire::enrp`].

pub mod auth;
pub mod server;

pub use auth::{EnrpAuthError, EnrpSecret};
pub use server::{
    EnrpAction, EnrpConfig, EnrpConfigError, EnrpCounters, EnrpError, EnrpEvent, EnrpServer,
};
