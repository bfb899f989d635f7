//! The session protocol between a PPU and a PPE: one SCTP association per client session.
//!
//! ```text
//!  client ─TCP─▶ PPU ══ one association per client session, stream 0, ordered ══▶ PPE ─TCP─▶ backend
//! ```
//!
//! Everything travels on **stream 0, ordered**, so control messages sit at exact positions
//! in the byte stream (a cookie describes the state after every byte before it):
//!
//! | PPID | direction | meaning |
//! |------|-----------|---------|
//! | [`PPID_DATA`] `0x706F6F6C` ("pool") | both | relayed bytes (client→backend, backend→client) |
//! | [`PPID_CONTROL`] `0x706F6F63` ("pooc") | PU→PE | [`Control::Open`] (a new session) or [`Control::Eof`] (the client half-closed) |
//! | [`PPID_CONTROL`] | PU→PE | [`backend_header`]: bytes the PE writes to the backend first (a PROXY protocol header), sent just before `Open`/`COOKIE_ECHO` |
//! | 11 (ASAP) | PE→PU | `COOKIE` — the session state at this point of the stream |
//! | 11 (ASAP) | PU→PE | `COOKIE_ECHO` — first message of a resumed session |
//! | 11 (ASAP) | PU→PE | `ENDPOINT_KEEP_ALIVE` — session keep-alive |
//! | 11 (ASAP) | PE→PU | `ENDPOINT_KEEP_ALIVE_ACK` — its answer |
//!
//! A session starts with exactly one PU message: `Open` or `COOKIE_ECHO`. The PE answers by
//! connecting to its backend, writing the plugin's restore prelude (resumed sessions), and
//! sending an initial `COOKIE` right away, then further cookies at the plugin's checkpoints
//! (at most one per `cookie_interval`). When the backend closes, the PE relays what it
//! has and closes the association gracefully (SCTP SHUTDOWN: all data first); when the
//! PE drains, it sends a final cookie and closes the same way. The PU treats an
//! association that goes down before the client half-closed as a failure of the PE and
//! moves the session (see [`crate::ppu`]).
//!
//! **Addressing.** Our SCTP runs inside UDP (RFC 6951). A PPE registers an SCTP user
//! transport whose port is the **UDP port** it listens on and accepts SCTP associations
//! to that same port number (and to its configured `sctp_port`), so a PU needs nothing
//! but the transport parameter: UDP address = SCTP port = the registered port.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pool_core::types::{Transport as UserTransport, TransportProtocol, TransportUse};
use pool_core::wire::AsapMessage;

use crate::config::common::TransportSettings;
use crate::transport::sctp_udp::SctpUdpConfig;
use crate::transport::{Message, PPID_ASAP};

/// PPID of relayed session bytes ("pool").
pub const PPID_DATA: u32 = 0x706F_6F6C;
/// PPID of poolgate session control messages ("pooc").
pub const PPID_CONTROL: u32 = 0x706F_6F63;
/// Most bytes relayed in one DATA message: what fills one packet at loopback's PMTU
/// beside a SACK, so a full read is neither split into a large and a tiny fragment
/// there nor reassembled by the receiver. Chunks are padded to 4 bytes, so of 65,507
/// bytes a packet uses at most 65,504: less the 12-byte common header, a SACK without
/// gap blocks (16 bytes; a relay that carries data both ways owes its peer one in front
/// of most packets) and the 16-byte DATA chunk header, 65,460. (At 65,479, the size
/// before, every full read left as a 65,476-byte chunk and a 3-byte one, and with a
/// SACK in front as 65,460 and 19.) Over a 1,500-byte link a message of this size is
/// fragmented anyway.
pub const CHUNK: usize = ((65_507 - 12) & !3) - 16 - 16;
/// Makes an emptied read buffer (its bytes split off as a message) ready for the next
/// relayed read: once under a quarter of [`CHUNK`] is left, a fresh buffer of exactly
/// `CHUNK`, so every read, and so every message, fits one packet (`reserve` may give
/// more).
pub fn renew_read_buffer(buf: &mut BytesMut) {
    if buf.capacity() < CHUNK / 4 {
        *buf = BytesMut::with_capacity(CHUNK);
    }
}

/// How long a state cookie stays valid after it was sealed.
pub const COOKIE_LIFETIME: Duration = Duration::from_secs(3600);
/// Largest backend header (a PROXY v2 header without TLVs is at most 232 bytes).
pub const MAX_BACKEND_HEADER: usize = 512;
/// Control byte of a backend header message.
const BACKEND_HEADER: u8 = 3;
/// How long a PE waits for the first message of a session.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// A poolgate control message (PPID [`PPID_CONTROL`], one byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// PU→PE: a new session (no state to restore).
    Open,
    /// PU→PE: the client will send nothing more (half-close the backend).
    Eof,
}

impl Control {
    /// The encoded message.
    pub fn message(self) -> Message {
        let b: u8 = match self {
            Control::Open => 1,
            Control::Eof => 2,
        };
        Message::new(PPID_CONTROL, Bytes::from(vec![b]))
    }

    /// Decodes a control payload; `None` for anything unknown.
    pub fn decode(data: &[u8]) -> Option<Control> {
        match data {
            [1] => Some(Control::Open),
            [2] => Some(Control::Eof),
            _ => None,
        }
    }
}

/// One message of a session, decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionMessage {
    /// Relayed bytes.
    Data(Bytes),
    /// A poolgate control message.
    Control(Control),
    /// An ASAP message (cookie, cookie echo, keep-alive, keep-alive ACK).
    Asap(AsapMessage),
    /// PU→PE: bytes to write to the backend before anything else (see [`backend_header`]).
    BackendHeader(Bytes),
    /// Something this version does not understand (ignored, counted by callers).
    Unknown,
}

impl SessionMessage {
    /// Classifies a received message by PPID.
    pub fn decode(m: Message) -> SessionMessage {
        match m.ppid {
            PPID_DATA => SessionMessage::Data(m.data),
            PPID_CONTROL => match m.data.first() {
                Some(&BACKEND_HEADER)
                    if m.data.len() > 1 && m.data.len() <= MAX_BACKEND_HEADER + 1 =>
                {
                    SessionMessage::BackendHeader(m.data.slice(1..))
                }
                _ => Control::decode(&m.data)
                    .map(SessionMessage::Control)
                    .unwrap_or(SessionMessage::Unknown),
            },
            PPID_ASAP => AsapMessage::decode(&m.data)
                .map(SessionMessage::Asap)
                .unwrap_or(SessionMessage::Unknown),
            _ => SessionMessage::Unknown,
        }
    }
}

/// An ASAP message ready to send on a session (stream 0, ordered).
pub fn asap(msg: &AsapMessage) -> Option<Message> {
    let mut buf = Vec::with_capacity(64);
    msg.encode(&mut buf).ok()?;
    Some(Message::new(PPID_ASAP, Bytes::from(buf)))
}

/// A backend header message: the PE writes `header` (at most [`MAX_BACKEND_HEADER`]
/// bytes, e.g. a PROXY protocol header naming the client) to the backend before the
/// plugin's restore prelude and any client bytes — on every PE the session visits.
pub fn backend_header(header: &[u8]) -> Message {
    let mut b = Vec::with_capacity(header.len() + 1);
    b.push(BACKEND_HEADER);
    b.extend_from_slice(header);
    Message::new(PPID_CONTROL, Bytes::from(b))
}

/// Relayed bytes as a DATA message.
pub fn data(bytes: Bytes) -> Message {
    Message::new(PPID_DATA, bytes)
}

/// The user transport a PPE listening on `udp` registers (see "Addressing" above).
pub fn user_transport(udp: SocketAddr) -> UserTransport {
    UserTransport {
        protocol: TransportProtocol::Sctp,
        port: udp.port(),
        transport_use: TransportUse::DataOnly,
        addresses: vec![udp.ip()],
    }
}

/// Where a PU opens a session with a PE of this user transport: UDP addresses and the
/// SCTP port. `None` when the transport carries no address or port.
pub fn session_target(t: &UserTransport) -> Option<(Vec<SocketAddr>, u16)> {
    if t.addresses.is_empty() || t.port == 0 {
        return None;
    }
    let addrs = t
        .addresses
        .iter()
        .map(|ip| SocketAddr::new(*ip, t.port))
        .collect();
    Some((addrs, t.port))
}

/// Engine settings for a session endpoint bound at `bind`, accepting `listen_ports`
/// (empty: a pure client), with the role's `[<role>.transport]` settings. Loopback
/// carries 64 KiB datagrams.
pub fn transport_config(
    bind: SocketAddr,
    listen_ports: Vec<u16>,
    settings: &TransportSettings,
) -> SctpUdpConfig {
    let mut t = SctpUdpConfig::for_address(bind);
    t.engine.listen_ports = listen_ports;
    settings.apply(&mut t);
    t.engine
        .association
        .pmtu_overrides
        .push((std::net::IpAddr::from([127, 0, 0, 1]), 65_507));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `[<role>.transport]` key reaches the engine and the driver.
    #[test]
    fn transport_settings_reach_the_engine() {
        let s = TransportSettings {
            heartbeat_interval: Duration::from_secs(7),
            rto_initial: Duration::from_millis(300),
            rto_min: Duration::from_millis(100),
            rto_max: Duration::from_secs(3),
            path_max_retransmissions: 2,
            max_retransmissions: 4,
            receive_window: 4 << 20,
            send_buffer: 2 << 20,
            socket_buffer: 8 << 20,
        };
        let t = transport_config(SocketAddr::from(([10, 0, 0, 1], 0)), vec![3863], &s);
        let a = &t.engine.association;
        assert_eq!(a.heartbeat_interval, Some(Duration::from_secs(7)));
        assert_eq!(
            (a.rto_initial, a.rto_min, a.rto_max),
            (
                Duration::from_millis(300),
                Duration::from_millis(100),
                Duration::from_secs(3)
            )
        );
        assert_eq!((a.path_max_retransmissions, a.max_retransmissions), (2, 4));
        assert_eq!((a.receive_buffer, a.send_buffer), (4 << 20, 2 << 20));
        assert_eq!((t.send_budget, t.socket_buffer), (2 << 20, 8 << 20));
        assert_eq!(t.engine.listen_ports, vec![3863]);
        // What the engine accepts: the checks of `[<role>.transport]` are not looser.
        t.engine.validate().expect("engine accepts the settings");
    }

    /// A full relay read leaves in one packet, whole, even with a SACK owed to the peer
    /// bundled in front of it (on the old size it left as two DATA chunks).
    #[test]
    fn a_full_read_fits_one_loopback_packet_beside_a_sack() {
        use sctp::wire::{Chunk, Packet};
        use sctp::{Endpoint, Event};
        use std::time::Instant;

        let (pe, pu): (SocketAddr, SocketAddr) = (
            "127.0.0.1:40001".parse().unwrap(),
            "127.0.0.1:40002".parse().unwrap(),
        );
        let settings = TransportSettings::default();
        let mut a = Endpoint::new(transport_config(pu, vec![], &settings).engine, 1).unwrap();
        let mut b = Endpoint::new(transport_config(pe, vec![3863], &settings).engine, 2).unwrap();
        let now = Instant::now();
        let out = |ep: &mut Endpoint| -> Vec<Vec<u8>> {
            std::iter::from_fn(|| ep.poll_transmit(now).map(|t| t.contents)).collect()
        };
        let ha = a.connect(now, &[pe], 5000, 3863).unwrap();
        for _ in 0..10 {
            for p in out(&mut a) {
                b.handle_datagram(now, Some(pe), pu, &p);
            }
            for p in out(&mut b) {
                a.handle_datagram(now, Some(pu), pe, &p);
            }
        }
        let hb = b.handles()[0];
        while b.poll_event().is_some() {}
        while a.poll_event().is_some() {}
        // The backend answered something: A now owes B a (delayed) SACK.
        b.send(hb, 0, PPID_DATA, true, Bytes::from_static(b"reply"))
            .unwrap();
        for p in out(&mut b) {
            a.handle_datagram(now, Some(pu), pe, &p);
        }
        assert!(matches!(a.poll_event(), Some((_, Event::Data { .. }))));
        // Each full read leaves as one packet holding the whole message: the first
        // behind the SACK A owes, the second alone.
        for sack in [true, false] {
            a.send(ha, 0, PPID_DATA, true, Bytes::from(vec![7u8; CHUNK]))
                .unwrap();
            let sent = out(&mut a);
            let shape: Vec<Vec<u8>> = sent
                .iter()
                .map(|p| {
                    let chunks = Packet::decode(p).unwrap().chunks;
                    chunks.iter().map(|c| c.typ()).collect()
                })
                .collect();
            assert_eq!(sent.len(), 1, "one packet (SACK owed: {sack}): {shape:?}");
            assert!(sent[0].len() <= 65_507);
            let chunks = Packet::decode(&sent[0]).unwrap().chunks;
            let data = match (sack, chunks.as_slice()) {
                (true, [Chunk::Sack(_), Chunk::Data(d)]) | (false, [Chunk::Data(d)]) => d,
                _ => panic!("SACK owed: {sack}; chunks {shape:?}"),
            };
            assert!(data.beginning && data.ending, "a whole message");
            assert_eq!(data.payload.len(), CHUNK);
        }
    }

    #[test]
    fn control_round_trips_and_rejects_junk() {
        for c in [Control::Open, Control::Eof] {
            let m = c.message();
            assert_eq!(m.ppid, PPID_CONTROL);
            assert_eq!(SessionMessage::decode(m), SessionMessage::Control(c));
        }
        assert_eq!(Control::decode(&[]), None);
        assert_eq!(Control::decode(&[1, 1]), None);
        assert_eq!(Control::decode(&[9]), None);
        let h = SessionMessage::decode(backend_header(b"PROXY UNKNOWN\r\n"));
        assert_eq!(
            h,
            SessionMessage::BackendHeader(Bytes::from_static(b"PROXY UNKNOWN\r\n"))
        );
        // Empty or oversized headers are not headers.
        assert_eq!(
            SessionMessage::decode(backend_header(b"")),
            SessionMessage::Unknown
        );
        let big = vec![b'x'; MAX_BACKEND_HEADER + 1];
        assert_eq!(
            SessionMessage::decode(backend_header(&big)),
            SessionMessage::Unknown
        );
    }

    #[test]
    fn messages_are_classified_by_ppid() {
        let d = SessionMessage::decode(data(Bytes::from_static(b"hi")));
        assert_eq!(d, SessionMessage::Data(Bytes::from_static(b"hi")));
        let c = asap(&AsapMessage::Cookie(vec![1, 2, 3])).unwrap();
        assert_eq!(
            SessionMessage::decode(c),
            SessionMessage::Asap(AsapMessage::Cookie(vec![1, 2, 3]))
        );
        let junk = Message::new(PPID_ASAP, Bytes::from_static(b"\xff"));
        assert_eq!(SessionMessage::decode(junk), SessionMessage::Unknown);
        let other = Message::new(99, Bytes::from_static(b"x"));
        assert_eq!(SessionMessage::decode(other), SessionMessage::Unknown);
    }

    #[test]
    fn user_transport_names_the_udp_port_as_sctp_port() {
        let udp: SocketAddr = "127.0.0.1:40123".parse().unwrap();
        let t = user_transport(udp);
        assert_eq!(t.protocol, TransportProtocol::Sctp);
        let (addrs, port) = session_target(&t).unwrap();
        assert_eq!(addrs, vec![udp]);
        assert_eq!(port, 40123);
        let empty = UserTransport {
            addresses: vec![],
            ..t
        };
        assert!(session_target(&empty).is_none());
    }
}
