//! Sans-IO SCTP engine (RFC 9260) over UDP encapsulation (RFC 6951).
//!
//! Like `quinn-proto`, nothing here touches a socket or a clock: the driver hands in
//! datagrams and the current time, and takes out datagrams to send, the next timer
//! deadline and events.

pub mod wire;
