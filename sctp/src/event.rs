//! What the engine tells its user.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::wire::{ErrorCause, ReconfigResult};

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
    /// Stream reconfiguration (RFC 6525): the peer reset some of its outgoing streams, so
    /// the SSNs of our incoming streams restarted at 0 (`Incoming`, always performed), or
    /// a request made with `reset_streams` finished (`Outgoing`; on success the next
    /// message on each stream carries SSN 0).
    ///
    /// Every `Outgoing` request gets exactly one such event. A request still pending when
    /// the association closes (shutdown, abort, failure, peer restart) gets one with
    /// `Denied`, just before [`Event::Closed`]: the reset will not happen, and the
    /// messages sent on its streams after the request were never sent.
    StreamsReset {
        /// Which of our stream directions was reset.
        direction: ResetDirection,
        /// The streams; empty means all.
        streams: Vec<u16>,
        /// The outcome (`SuccessPerformed` when done; for `Outgoing` the peer's answer,
        /// or `Denied` when the association closed first).
        result: ReconfigResult,
    },
    /// The peer reported an operation error (ERROR chunk).
    PeerError(Vec<ErrorCause>),
    /// The association is gone; the handle is invalid from now on. Messages still queued
    /// or unacknowledged, including those held back behind a pending stream reset
    /// (reported as `StreamsReset` with `Denied` just before), are discarded: the engine
    /// does not hand unsent messages back.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// Direction of a stream reset, seen from this endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetDirection {
    /// Streams the peer sends on.
    Incoming,
    /// Streams we send on.
    Outgoing,
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

/// Hasher for maps keyed by locally assigned handles ([`AssocHandle`] and the like):
/// the keys are ours, not the network's, so a multiplicative hash is safe and much
/// cheaper than SipHash on every packet.
#[derive(Debug, Default, Clone, Copy)]
pub struct HandleHasher(u64);

impl std::hash::Hasher for HandleHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A `HashMap` keyed by locally assigned handles (see [`HandleHasher`]).
pub type HandleMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<HandleHasher>>;
