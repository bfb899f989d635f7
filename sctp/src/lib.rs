//! Sans-IO SCTP engine (RFC 9260) over UDP encapsulation (RFC 6951).
//!
//! Like `quinn-proto`, nothing here touches a socket or a clock: the driver hands in
//! datagrams and the current time, and takes out datagrams to send, the next timer
//! deadline and events. An [`Endpoint`] owns all associations of one UDP socket (or of
//! several sockets, for multi-homing) and demultiplexes by verification tag and address.

mod assoc;
pub mod config;
pub mod cookie;
mod endpoint;
mod event;
pub mod fuzzing;
pub mod wire;

pub use assoc::{Association, AssociationStats, PathInfo, SendError, State, MAX_PATHS};
pub use config::{AssociationConfig, ConfigError, EndpointConfig};
pub use endpoint::{ConnectError, Endpoint, EndpointStats, Transmit};
pub use event::{AssocHandle, CloseReason, Event};
