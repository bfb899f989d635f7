//! What the engine tells its user.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::wire::ErrorCause;

/// Handle of an association inside an [`crate::Endpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssocHandle(pub u64);

/// Something that happened on an association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed; data can flow.
    Connected,
    /// A whole message arrived.
    Data {
        /// Stream identifier.
        stream: u16,
        /// Payload protocol identifier.
        ppid: u32,
        /// Whether it was sent for ordered delivery.
        ordered: bool,
        /// The message.
        bytes: Bytes,
    },
    /// The send buffer drained below half after a `send` was refused with `WouldBlock`.
    Writable,
    /// A path to this peer address became active (again).
    PathUp {
        /// The peer address.
        addr: SocketAddr,
    },
    /// A path stopped answering and is no longer used for data.
    PathDown {
        /// The peer address.
        addr: SocketAddr,
    },
    /// New data now goes to this peer address.
    PrimaryChanged {
        /// The peer address.
        addr: SocketAddr,
    },
    /// The peer reported an operation error (ERROR chunk).
    PeerError(Vec<ErrorCause>),
    /// The association is gone; the handle is invalid from now on.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// Why an association closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Graceful SHUTDOWN completed.
    Shutdown,
    /// The peer sent ABORT with these causes.
    Aborted(Vec<ErrorCause>),
    /// We aborted (user call or protocol violation by the peer); the cause we sent.
    LocalAbort(ErrorCause),
    /// Retransmissions or heartbeats went unanswered beyond the limit.
    Timeout,
    /// The handshake got no answer within the INIT retransmission limit.
    HandshakeTimeout,
    /// The peer restarted (new verification tags from the same addresses); a new
    /// association handle carries the new incarnation.
    PeerRestarted,
}
