//! Sans-IO RSerPool core (RFC 5351–5356).
//!
//! Messages in, messages and timer requests out; time is always an argument.
//! No sockets, no async runtime, no clock reads: everything here is
//! deterministic, fuzzable and runs in simulated time as well as real time.

pub mod asap;
pub mod cookie;
pub mod enrp;
pub mod handlespace;
pub mod policy;
pub mod types;
pub mod wire;
