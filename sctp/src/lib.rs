//! Sans-IO SCTP engine (RFC 9260) over UDP encapsulation (RFC 6951).
//!
//! Like `quinn-proto`, nothing here touches a socket or a clock: the driver hands in
//! datagrams and the current time, and takes out datagrams to send, the next timer
//! deadline and events. One [`Endpoint`] owns every association of one UDP socket (or of
//! several sockets, for multi-homing) and demultiplexes by verification tag, peer
//! address and SCTP ports. INIT is answered statelessly with an HMAC-SHA256 cookie.
//!
//! # Driving an endpoint
//!
//! After *any* input (datagram, timeout, `send`, `shutdown`, `abort`, access through
//! [`Endpoint::association`]) drain [`Endpoint::poll_transmit`] and
//! [`Endpoint::poll_event`], then sleep until [`Endpoint::poll_timeout`] or the next
//! datagram, whichever comes first, and call [`Endpoint::handle_timeout`] when the
//! deadline passes.
//!
//! ```
//! use std::time::Instant;
//! use bytes::Bytes;
//! use sctp::{Endpoint, EndpointConfig, Event};
//!
//! let (a_addr, b_addr) = ("10.0.0.1:9899".parse().unwrap(), "10.0.0.2:9899".parse().unwrap());
//! let mut a = Endpoint::new(EndpointConfig::default(), 1).unwrap();
//! let mut b = Endpoint::new(EndpointConfig::default(), 2).unwrap();
//! let now = Instant::now();
//! let h = a.connect(now, &[b_addr], 3863, 3863).unwrap();
//! a.send(h, 0, 11, true, Bytes::from_static(b"hello")).unwrap(); // queued until connected
//! let mut got = None;
//! for _ in 0..10 {
//!     while let Some(t) = a.poll_transmit(now) {
//!         b.handle_datagram(now, Some(b_addr), a_addr, &t.contents);
//!     }
//!     while let Some(t) = b.poll_transmit(now) {
//!         a.handle_datagram(now, Some(a_addr), b_addr, &t.contents);
//!     }
//!     while let Some((_h, ev)) = b.poll_event() {
//!         if let Event::Data { bytes, ppid, .. } = ev {
//!             got = Some((ppid, bytes));
//!         }
//!     }
//!     while a.poll_event().is_some() {}
//! }
//! assert_eq!(got, Some((11, Bytes::from_static(b"hello"))));
//! ```

#![warn(missing_docs)]

mod assoc;
pub mod config;
pub mod cookie;
mod endpoint;
mod event;
pub mod fuzzing;
pub mod wire;

pub use assoc::{
    Association, AssociationStats, PathInfo, ResetError, SendError, SendOptions, State, MAX_PATHS,
};
pub use config::{AssociationConfig, ConfigError, EndpointConfig};
pub use endpoint::{ConnectError, Endpoint, EndpointStats, Transmit};
pub use event::{AssocHandle, CloseReason, Event, HandleHasher, HandleMap, ResetDirection};
