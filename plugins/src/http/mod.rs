//! HTTP/1.1 between PPU and PPE: framing, request-level failover and download resume.
//!
//! - [`framing`]: incremental, bounded message framing with typed errors that map to the
//!   status the gateway answers with.
//! - [`headers`]: hop-by-hop fields, `Forwarded`/`X-Forwarded-For`, idempotency,
//!   validators and the `Range` rewrite.
//! - [`HttpSession`]: the [`SessionState`](crate::SessionState) that follows a session.

pub mod framing;
pub mod headers;
mod session;

pub use framing::{HttpError, HttpLimits};
pub use session::{bad_gateway, Cooperative, Failed, HttpConfig, HttpSession, ResumeRecord};

#[cfg(test)]
mod tests;
