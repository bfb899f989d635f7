//! One SCTP association: handshake, data transfer, failure detection and teardown
//! (RFC 9260 §5–§9), driven by packets and time handed in by the [`crate::Endpoint`].

mod path;
mod reconfig;
mod rx;
mod tx;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::AssociationConfig;
use crate::cookie::CookieData;
use crate::event::{CloseReason, Event};
use crate::wire::{
    cause_code, chunk_type, Chunk, ChunkIter, CommonHeader, ErrorCause, InitChunk, InitParam,
    RawChunk,
};

pub(crate) use path::Path;
pub(crate) use reconfig::supported_extensions;
pub use reconfig::ResetError;
use rx::Receiver;
use tx::Sender;

/// Most paths (peer addresses) per association.
pub const MAX_PATHS: usize = 8;

/// Bytes of new data one burst may carry at least (see `Association::refill_burst`):
/// one GSO train, the most the kernel segments from one send.
pub const BURST_BYTES: usize = 65_536;

/// Association states (RFC 9260 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// INIT sent, waiting for INIT ACK.
    CookieWait,
    /// COOKIE ECHO sent, waiting for COOKIE ACK.
    CookieEchoed,
    /// Data flows both ways.
    Established,
    /// The user asked to shut down; waiting for outstanding data to be acknowledged.
    ShutdownPending,
    /// SHUTDOWN sent.
    ShutdownSent,
    /// SHUTDOWN received; finishing our outstanding data.
    ShutdownReceived,
    /// SHUTDOWN ACK sent.
    ShutdownAckSent,
    /// Gone; only final packets (ABORT, SHUTDOWN COMPLETE) may still leave.
    Closed,
}

/// Partial-reliability options for [`Association::send_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Give the message up after this many retransmissions (0: send once).
    pub max_retransmissions: Option<u16>,
    /// Give the message up once this much time has passed since `send_with`.
    pub lifetime: Option<Duration>,
}

/// Why `send` refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The send buffer is full; retry after [`Event::Writable`].
    #[error("send buffer full ({buffered_amount} bytes buffered)")]
    WouldBlock {
        /// Bytes queued or unacknowledged.
        buffered_amount: usize,
    },
    /// The message is larger than `max_message_size`.
    #[error("message larger than max_message_size")]
    TooLarge,
    /// SCTP cannot carry an empty message.
    #[error("empty message")]
    Empty,
    /// The stream number is not below the negotiated outbound stream count.
    #[error("invalid stream {0}")]
    InvalidStream(u16),
    /// The association is shutting down or closed.
    #[error("association not open for sending")]
    NotConnected,
}

/// Counters of one association.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssociationStats {
    /// Packets received and accepted.
    pub packets_received: u64,
    /// Packets sent.
    pub packets_sent: u64,
    /// DATA chunks sent for the first time.
    pub data_chunks_sent: u64,
    /// DATA chunks received (including duplicates).
    pub data_chunks_received: u64,
    /// DATA chunks retransmitted (T3 and fast).
    pub retransmissions: u64,
    /// Fast retransmit events.
    pub fast_retransmits: u64,
    /// T3-rtx expiries.
    pub t3_expiries: u64,
    /// Duplicate TSNs received.
    pub duplicates_received: u64,
    /// DATA chunks dropped for lack of buffer space or beyond the window.
    pub data_dropped: u64,
    /// SACKs sent.
    pub sacks_sent: u64,
    /// SACKs received.
    pub sacks_received: u64,
    /// HEARTBEATs sent.
    pub heartbeats_sent: u64,
    /// HEARTBEAT ACKs that answered our outstanding HEARTBEAT.
    pub heartbeat_acks_received: u64,
    /// Packets dropped for a wrong verification tag.
    pub bad_vtag: u64,
    /// Chunks that failed to decode.
    pub malformed_chunks: u64,
    /// Messages delivered to the user.
    pub messages_received: u64,
    /// RE-CONFIG requests received (RFC 6525; retransmissions included).
    pub reconfig_requests_received: u64,
    /// Re-configuration Responses sent.
    pub reconfig_responses_sent: u64,
    /// Responses sent refusing a request (Denied or an error result).
    pub reconfig_requests_denied: u64,
    /// RE-CONFIG chunks that did not decode or combined parameters wrongly.
    pub reconfig_malformed: u64,
    /// Stream reset requests of ours sent (first transmissions).
    pub reconfig_requests_sent: u64,
    /// Retransmissions of our stream reset requests.
    pub reconfig_retransmissions: u64,
    /// Responses received that answered our request in flight.
    pub reconfig_responses_received: u64,
    /// Resets of incoming streams performed for the peer.
    pub streams_reset_incoming: u64,
    /// Resets of our outgoing streams the peer performed.
    pub streams_reset_outgoing: u64,
}

impl AssociationStats {
    /// Adds another association's counters to these (totals over associations).
    pub fn add(&mut self, o: &AssociationStats) {
        // The pattern names every field (no `..`): a counter added to the struct and not
        // listed here does not compile.
        macro_rules! add_all {
            ($($field:ident),* $(,)?) => {{
                let AssociationStats { $($field: _),* } = o;
                $(self.$field = self.$field.saturating_add(o.$field);)*
            }};
        }
        add_all!(
            packets_received,
            packets_sent,
            data_chunks_sent,
            data_chunks_received,
            retransmissions,
            fast_retransmits,
            t3_expiries,
            duplicates_received,
            data_dropped,
            sacks_sent,
            sacks_received,
            heartbeats_sent,
            heartbeat_acks_received,
            bad_vtag,
            malformed_chunks,
            messages_received,
            reconfig_requests_received,
            reconfig_responses_sent,
            reconfig_requests_denied,
            reconfig_malformed,
            reconfig_requests_sent,
            reconfig_retransmissions,
            reconfig_responses_received,
            streams_reset_incoming,
            streams_reset_outgoing,
        );
    }
}

/// Information about one path, for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    /// Peer address.
    pub addr: SocketAddr,
    /// Whether data may be sent there.
    pub active: bool,
    /// Confirmed by handshake or heartbeat.
    pub confirmed: bool,
    /// Current retransmission timeout.
    pub rto: Duration,
    /// Smoothed round-trip time, once measured.
    pub srtt: Option<Duration>,
    /// Congestion window in bytes.
    pub cwnd: usize,
    /// Largest UDP payload used on this path.
    pub pmtu: usize,
}

/// Parameters for answering an INIT that collides with this association (§5.2).
#[derive(Debug, Clone, Copy)]
pub(crate) struct InitAnswer {
    pub local_tag: u32,
    pub local_tsn: u32,
    pub tie_local: u32,
    pub tie_peer: u32,
}

/// An SCTP association.
#[derive(Debug)]
pub struct Association {
    pub(crate) cfg: Arc<AssociationConfig>,
    state: State,
    pub(crate) local_port: u16,
    pub(crate) peer_port: u16,
    pub(crate) local_tag: u32,
    pub(crate) peer_tag: u32,
    local_tsn: u32,
    pub(crate) paths: Vec<Path>,
    primary: usize,
    /// Path new data currently goes to (reported by `PrimaryChanged`).
    data_path: usize,
    local_addresses: Vec<std::net::IpAddr>,
    out_streams: u16,
    in_streams: u16,

    // Handshake.
    send_init: bool,
    send_cookie_echo: bool,
    cookie: Bytes,
    t1: Option<Instant>,
    t1_count: u32,
    handshake_sent_at: Option<Instant>,
    send_cookie_ack: bool,

    // Shutdown.
    send_shutdown: bool,
    send_shutdown_ack: bool,
    send_shutdown_complete: bool,
    shutdown_t_bit: bool,
    t2: Option<Instant>,
    /// T5-shutdown-guard (RFC 9260 §9.2): bounds the whole shutdown exchange.
    t5: Option<Instant>,

    /// Control chunks waiting, with their destination path (None: any).
    ctrl: VecDeque<(Option<usize>, Chunk)>,
    pub(crate) tx: Sender,
    pub(crate) rx: Receiver,
    /// Consecutive errors across paths [Association.Max.Retrans].
    error_count: u32,
    events: VecDeque<Event>,
    pub(crate) stats: AssociationStats,
    rng: ChaCha8Rng,
    created: Instant,
    /// Set by the endpoint while the handle sits in its transmit queue.
    pub(crate) queued: bool,
    /// Packets of new data that may still go out before the next input [Max.Burst].
    burst_left: usize,
    /// How many of `paths` the endpoint has indexed by address (paths are only added;
    /// a NAT rebinding is re-indexed where it happens).
    pub(crate) indexed_paths: usize,
    /// The endpoint's address epoch when it last indexed them.
    pub(crate) indexed_epoch: u64,
    /// The deadline under which the endpoint has indexed this association.
    pub(crate) indexed_timeout: Option<Instant>,
    /// Path the handshake currently uses; T1 expiries rotate it over the confirmed
    /// addresses so a dead first address does not prevent the association.
    hs_path: usize,
    /// Stream reconfiguration (RFC 6525), when both sides offered it.
    reconfig: Option<Box<reconfig::Reconfig>>,
}

impl Association {
    #[allow(clippy::too_many_arguments)]
    fn blank(
        cfg: Arc<AssociationConfig>,
        now: Instant,
        local_port: u16,
        peer_port: u16,
        local_tag: u32,
        local_tsn: u32,
        paths: Vec<Path>,
        local_addresses: Vec<std::net::IpAddr>,
        seed: u64,
    ) -> Association {
        let tx = Sender::new(local_tsn, cfg.outbound_streams, &cfg);
        let rx = Receiver::new(0, &cfg);
        Association {
            out_streams: cfg.outbound_streams,
            in_streams: cfg.inbound_streams,
            cfg,
            state: State::CookieWait,
            local_port,
            peer_port,
            local_tag,
            peer_tag: 0,
            local_tsn,
            paths,
            primary: 0,
            data_path: 0,
            local_addresses,
            send_init: false,
            send_cookie_echo: false,
            cookie: Bytes::new(),
            t1: None,
            t1_count: 0,
            handshake_sent_at: None,
            send_cookie_ack: false,
            send_shutdown: false,
            send_shutdown_ack: false,
            send_shutdown_complete: false,
            shutdown_t_bit: false,
            t2: None,
            t5: None,
            ctrl: VecDeque::new(),
            tx,
            rx,
            error_count: 0,
            events: VecDeque::new(),
            stats: AssociationStats::default(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            created: now,
            queued: false,
            burst_left: 0,
            indexed_timeout: None,
            indexed_paths: 0,
            indexed_epoch: 0,
            hs_path: 0,
            reconfig: None,
        }
    }

    /// Starts an association towards `remotes` (the first is primary): sends INIT.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn connect(
        cfg: Arc<AssociationConfig>,
        now: Instant,
        remotes: &[SocketAddr],
        local_port: u16,
        peer_port: u16,
        local_tag: u32,
        local_addresses: Vec<std::net::IpAddr>,
        seed: u64,
    ) -> Association {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let local_tsn = rng.random();
        let paths = remotes
            .iter()
            .take(MAX_PATHS)
            .map(|a| Path::new(*a, &cfg, true))
            .collect();
        let mut a = Association::blank(
            cfg,
            now,
            local_port,
            peer_port,
            local_tag,
            local_tsn,
            paths,
            local_addresses,
            rng.random(),
        );
        a.send_init = true;
        a.t1 = Some(now + a.paths[0].rto);
        a
    }

    /// Builds an established association from a validated cookie (server side).
    pub(crate) fn from_cookie(
        cfg: Arc<AssociationConfig>,
        now: Instant,
        c: &CookieData,
        local: Option<SocketAddr>,
        local_addresses: Vec<std::net::IpAddr>,
        seed: u64,
    ) -> Association {
        let mut origin = Path::new(c.origin, &cfg, true);
        origin.local = local;
        let mut paths = vec![origin];
        let mut a = Association::blank(
            cfg,
            now,
            c.local_port,
            c.peer_port,
            c.local_tag,
            c.local_tsn,
            Vec::new(),
            local_addresses,
            seed,
        );
        for ip in &c.peer_addrs {
            let addr = SocketAddr::new(*ip, c.origin.port());
            if paths.len() < MAX_PATHS && !paths.iter().any(|p| p.addr == addr) {
                paths.push(Path::new(addr, &a.cfg, false));
            }
        }
        a.paths = paths;
        a.adopt_peer(
            now,
            c.peer_tag,
            c.peer_tsn,
            c.peer_rwnd,
            c.peer_os,
            c.peer_mis,
        );
        a.tx.pr_enabled = a.cfg.partial_reliability && c.peer_pr;
        a.reconfig =
            reconfig::Reconfig::negotiate(&a.cfg, c.peer_reconfig, a.local_tsn, c.peer_tsn);
        a.establish(now);
        a.send_cookie_ack = true;
        a
    }

    fn adopt_peer(&mut self, _now: Instant, tag: u32, tsn: u32, rwnd: u32, os: u16, mis: u16) {
        self.peer_tag = tag;
        self.out_streams = self.cfg.outbound_streams.min(mis);
        self.in_streams = self.cfg.inbound_streams.min(os);
        self.tx.set_peer_rwnd(rwnd);
        self.tx.limit_streams(self.out_streams);
        self.rx = Receiver::new(tsn.wrapping_sub(1), &self.cfg);
    }

    fn establish(&mut self, now: Instant) {
        self.state = State::Established;
        self.t1 = None;
        self.send_init = false;
        self.send_cookie_echo = false;
        for p in &mut self.paths {
            p.hb_due = match (p.confirmed, self.cfg.heartbeat_interval) {
                (false, _) => {
                    p.hb_send_now = true;
                    None
                }
                (true, Some(iv)) => Some(now + iv),
                (true, None) => None,
            };
        }
        self.events.push_back(Event::Connected);
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the association has closed.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Counters.
    pub fn stats(&self) -> &AssociationStats {
        &self.stats
    }

    /// Our SCTP port and the peer's.
    pub fn ports(&self) -> (u16, u16) {
        (self.local_port, self.peer_port)
    }

    /// Negotiated outbound and inbound stream counts.
    pub fn streams(&self) -> (u16, u16) {
        (self.out_streams, self.in_streams)
    }

    /// The peer addresses and their state.
    pub fn paths(&self) -> Vec<PathInfo> {
        self.paths
            .iter()
            .map(|p| PathInfo {
                addr: p.addr,
                active: p.active,
                confirmed: p.confirmed,
                rto: p.rto,
                srtt: p.srtt,
                cwnd: p.cwnd,
                pmtu: p.pmtu,
            })
            .collect()
    }

    /// The configured primary peer address.
    pub fn primary(&self) -> SocketAddr {
        self.paths[self.primary].addr
    }

    /// Bytes received and held for the user (reassembly, reordering, undelivered events).
    pub fn receive_buffered(&self) -> usize {
        self.rx.held()
    }

    /// Bytes queued or sent but not yet acknowledged.
    pub fn buffered_amount(&self) -> usize {
        self.tx.buffered() + self.reconfig.as_ref().map_or(0, |r| r.parked_bytes())
    }

    /// Makes `addr` the primary path; false if it is not a peer address.
    pub fn set_primary(&mut self, addr: SocketAddr) -> bool {
        match self.paths.iter().position(|p| p.addr == addr) {
            Some(i) => {
                self.primary = i;
                self.update_data_path();
                true
            }
            None => false,
        }
    }

    /// Sets the largest UDP payload for one path (clamped to the allowed range).
    pub fn set_path_mtu(&mut self, addr: SocketAddr, pmtu: usize) -> bool {
        match self.paths.iter_mut().find(|p| p.addr == addr) {
            Some(p) => {
                p.pmtu = pmtu.clamp(crate::config::MIN_PMTU, crate::config::MAX_PMTU);
                true
            }
            None => false,
        }
    }

    /// Queues a reliable message. Fails when the send buffer is full (back-pressure).
    pub fn send(
        &mut self,
        stream: u16,
        ppid: u32,
        ordered: bool,
        data: Bytes,
    ) -> Result<(), SendError> {
        self.send_inner(stream, ppid, ordered, data, None, None)
    }

    /// Queues a message that may be abandoned (RFC 3758) after `opts.max_retransmissions`
    /// retransmissions or once `opts.lifetime` (from `now`) has passed. Without partial
    /// reliability negotiated with the peer the message is sent reliably.
    pub fn send_with(
        &mut self,
        now: Instant,
        stream: u16,
        ppid: u32,
        ordered: bool,
        data: Bytes,
        opts: SendOptions,
    ) -> Result<(), SendError> {
        let expires = opts.lifetime.map(|l| now + l);
        self.send_inner(
            stream,
            ppid,
            ordered,
            data,
            opts.max_retransmissions,
            expires,
        )
    }

    fn send_inner(
        &mut self,
        stream: u16,
        ppid: u32,
        ordered: bool,
        data: Bytes,
        max_rtx: Option<u16>,
        expires: Option<Instant>,
    ) -> Result<(), SendError> {
        match self.state {
            State::CookieWait | State::CookieEchoed | State::Established => {}
            _ => return Err(SendError::NotConnected),
        }
        if data.is_empty() {
            return Err(SendError::Empty);
        }
        if data.len() > self.cfg.max_message_size {
            return Err(SendError::TooLarge);
        }
        if stream >= self.out_streams {
            return Err(SendError::InvalidStream(stream));
        }
        self.refill_burst();
        // Messages parked behind a stream reset count on every stream: they take their
        // place in the send queue once the reset is answered.
        let parked = self.reconfig.as_ref().map_or(0, |r| r.parked_bytes());
        self.tx.admit(data.len(), parked)?;
        if self.park_if_resetting(stream, ppid, ordered, &data, max_rtx, expires) {
            return Ok(());
        }
        self.tx
            .enqueue(stream, ppid, ordered, data, max_rtx, expires)
    }

    /// Starts a graceful shutdown: queued data is still delivered.
    pub fn shutdown(&mut self, now: Instant) {
        match self.state {
            State::Established => {
                self.state = State::ShutdownPending;
                self.check_shutdown_progress(now);
            }
            State::CookieWait | State::CookieEchoed => {
                self.close(CloseReason::Shutdown);
            }
            _ => {}
        }
    }

    /// Aborts at once, telling the peer why (User-Initiated Abort, RFC 9260 §3.3.10.12).
    pub fn abort(&mut self, reason: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        let cause = ErrorCause::new(
            cause_code::USER_ABORT,
            Bytes::copy_from_slice(&reason[..reason.len().min(512)]),
        );
        self.abort_with(cause);
    }

    fn abort_with(&mut self, cause: ErrorCause) {
        let was_handshaking = self.state == State::CookieWait;
        self.ctrl.clear();
        if !was_handshaking {
            self.ctrl.push_back((
                None,
                Chunk::Abort {
                    t: false,
                    causes: vec![cause.clone()],
                },
            ));
        }
        self.close(CloseReason::LocalAbort(cause));
    }

    fn close(&mut self, reason: CloseReason) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.t1 = None;
        self.t2 = None;
        self.t5 = None;
        self.send_init = false;
        self.send_cookie_echo = false;
        self.send_cookie_ack = false;
        self.send_shutdown = false;
        self.send_shutdown_ack = false;
        self.rx.sack_needed = false;
        self.rx.sack_deadline = None;
        for p in &mut self.paths {
            p.t3 = None;
            p.hb_due = None;
            p.hb_send_now = false;
        }
        self.tx.clear();
        self.fail_pending_resets();
        self.events.push_back(Event::Closed { reason });
    }

    /// The peer restarted (RFC 9260 §5.2.4 case A): this incarnation ends; the endpoint
    /// takes its events and drops it.
    pub(crate) fn close_peer_restarted(&mut self) {
        self.close(CloseReason::PeerRestarted);
    }

    pub(crate) fn take_events(&mut self) -> std::collections::vec_deque::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// Earliest timer deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let reconfig = self.reconfig.as_ref().and_then(|r| r.timeout());
        let mut t = [self.t1, self.t2, self.t5, self.rx.sack_deadline, reconfig]
            .into_iter()
            .flatten()
            .min();
        for p in &self.paths {
            for d in [p.t3, p.hb_due].into_iter().flatten() {
                t = Some(t.map_or(d, |x: Instant| x.min(d)));
            }
        }
        t
    }

    fn path_index(&self, addr: SocketAddr) -> Option<usize> {
        self.paths.iter().position(|p| p.addr == addr)
    }

    /// Moves the path with `addr`'s IP to `addr`'s UDP port; returns the old address.
    pub(crate) fn rebind_port(&mut self, addr: SocketAddr) -> Option<SocketAddr> {
        let p = self.paths.iter_mut().find(|p| p.addr.ip() == addr.ip())?;
        let old = p.addr;
        p.addr = addr;
        Some(old)
    }

    /// Whether `addr` is one of the peer's addresses.
    pub fn has_peer_addr(&self, addr: SocketAddr) -> bool {
        self.path_index(addr).is_some()
    }

    /// Picks the path new data goes to: primary if usable, else the first usable one.
    fn choose_data_path(&self) -> usize {
        let usable = |p: &Path| p.active && p.confirmed;
        if usable(&self.paths[self.primary]) {
            return self.primary;
        }
        (0..self.paths.len())
            .find(|&i| usable(&self.paths[i]))
            .unwrap_or(self.primary)
    }

    fn update_data_path(&mut self) {
        let d = self.choose_data_path();
        if d != self.data_path {
            self.data_path = d;
            if self.state != State::Closed {
                self.events.push_back(Event::PrimaryChanged {
                    addr: self.paths[d].addr,
                });
            }
        }
    }

    /// An active path other than `from`, for retransmissions (RFC 9260 §6.4).
    fn alternate_path(&self, from: usize) -> usize {
        let n = self.paths.len();
        (1..n)
            .map(|k| (from + k) % n)
            .find(|&i| self.paths[i].active && self.paths[i].confirmed)
            .unwrap_or(self.data_path)
    }

    /// Counts an error on a path and on the association (RFC 9260 §8.1, §8.2).
    fn path_error(&mut self, idx: usize) {
        // Probes of addresses never confirmed do not count against the association:
        // a peer may list addresses we cannot reach (RFC 9260 §5.4).
        if self.paths[idx].confirmed {
            self.error_count += 1;
        }
        let p = &mut self.paths[idx];
        p.errors += 1;
        if p.active && p.errors > self.cfg.path_max_retransmissions {
            p.active = false;
            self.events.push_back(Event::PathDown { addr: p.addr });
            self.update_data_path();
        }
        if self.error_count > self.cfg.max_retransmissions {
            self.close(CloseReason::Timeout);
        }
    }

    /// A sign of life on a path: clears its error count and reactivates it.
    fn path_alive(&mut self, idx: usize) {
        self.error_count = 0;
        let p = &mut self.paths[idx];
        p.errors = 0;
        if !p.active {
            p.active = true;
            self.events.push_back(Event::PathUp { addr: p.addr });
            self.update_data_path();
        }
    }

    /// Processes one packet addressed to this association. `cookie` is the validated
    /// cookie of a leading COOKIE ECHO, if any.
    pub(crate) fn handle_packet(
        &mut self,
        now: Instant,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        header: CommonHeader,
        packet: Bytes,
        cookie: Option<&CookieData>,
    ) {
        if self.state == State::Closed {
            return;
        }
        self.refill_burst();
        let Some(pidx) = self.path_index(remote) else {
            self.stats.bad_vtag += 1;
            return;
        };
        let vtag_ok = header.vtag == self.local_tag;
        let mut data_seen = false;
        let mut accepted = false;
        for raw in ChunkIter::new(packet) {
            let raw = match raw {
                Ok(r) => r,
                Err(_) => {
                    self.stats.malformed_chunks += 1;
                    break;
                }
            };
            // Verification tag rules (RFC 9260 §8.5.1).
            let reflected = raw.flags & 1 != 0
                && matches!(raw.typ, chunk_type::ABORT | chunk_type::SHUTDOWN_COMPLETE);
            let ok = if reflected {
                header.vtag == self.peer_tag && self.peer_tag != 0
            } else {
                vtag_ok
            };
            if !ok || raw.typ == chunk_type::INIT {
                self.stats.bad_vtag += 1;
                break;
            }
            if !accepted {
                accepted = true;
                self.stats.packets_received += 1;
                if local.is_some() {
                    self.paths[pidx].local = local;
                }
            }
            let decoded = if raw.typ == chunk_type::DATA {
                // DATA keeps its slice of the packet as its payload; the rest of the raw
                // chunk is only needed to report an unknown chunk type.
                let head = RawChunk {
                    typ: raw.typ,
                    flags: raw.flags,
                    value: Bytes::new(),
                };
                Chunk::decode_owned(raw).map(|c| (c, head))
            } else {
                Chunk::decode(&raw).map(|c| (c, raw))
            };
            let (chunk, raw) = match decoded {
                Ok(c) => c,
                Err(_) => {
                    self.stats.malformed_chunks += 1;
                    break;
                }
            };
            if !self.handle_chunk(now, pidx, &raw, chunk, cookie, &mut data_seen) {
                break;
            }
            if self.state == State::Closed {
                break;
            }
        }
        if data_seen {
            if !self.reconfig_after_data() {
                return;
            }
            self.rx.after_data_packet(now, pidx, &self.cfg);
            if self.state == State::ShutdownSent {
                // RFC 9260 §9.2: answer DATA while shutting down with SHUTDOWN again.
                self.send_shutdown = true;
                self.rx.sack_needed = true;
                self.arm_t2(now);
            }
        }
    }

    /// Handles one chunk; false stops processing of the packet.
    fn handle_chunk(
        &mut self,
        now: Instant,
        pidx: usize,
        raw: &RawChunk,
        chunk: Chunk,
        cookie: Option<&CookieData>,
        data_seen: &mut bool,
    ) -> bool {
        match chunk {
            Chunk::Data(d) => {
                if !matches!(
                    self.state,
                    State::Established | State::ShutdownPending | State::ShutdownSent
                ) {
                    return true;
                }
                *data_seen = true;
                self.stats.data_chunks_received += 1;
                // A payload is a slice of its packet's buffer; the receiver copies out
                // what it keeps and is far smaller than that buffer (`shared_len`).
                if d.stream >= self.in_streams {
                    let mut info = Vec::with_capacity(4);
                    info.extend_from_slice(&d.stream.to_be_bytes());
                    info.extend_from_slice(&[0, 0]);
                    self.ctrl.push_back((
                        None,
                        Chunk::Error(vec![ErrorCause::new(cause_code::INVALID_STREAM, info)]),
                    ));
                    self.rx.mark_only(d.tsn, &mut self.stats);
                    return true;
                }
                if let Err(cause) = self
                    .rx
                    .on_data(d, &mut self.events, &mut self.stats, &self.cfg)
                {
                    self.abort_with(cause);
                    return false;
                }
            }
            Chunk::Sack(s) => {
                if matches!(self.state, State::CookieWait | State::CookieEchoed) {
                    return true;
                }
                self.stats.sacks_received += 1;
                let fresh = self.on_sack(now, s.cum_tsn, s.a_rwnd, s.gaps, false);
                if fresh && self.state != State::Closed {
                    // Any current SACK proves the peer alive, even one acknowledging
                    // nothing new (a zero-window probe answered with a_rwnd 0).
                    self.path_alive(pidx);
                }
            }
            Chunk::InitAck(init) => self.on_init_ack(now, pidx, init),
            Chunk::CookieEcho(_) => {
                if let Some(c) = cookie {
                    self.on_cookie_echo(now, c);
                }
            }
            Chunk::CookieAck => {
                if self.state == State::CookieEchoed {
                    if let (Some(sent), 0) = (self.handshake_sent_at, self.t1_count) {
                        let cfg = self.cfg.clone();
                        self.paths[self.hs_path]
                            .rtt_sample(now.saturating_duration_since(sent), &cfg);
                    }
                    if self.hs_path != self.primary {
                        // The configured primary never answered the handshake.
                        self.primary = self.hs_path;
                        self.update_data_path();
                    }
                    // Only a COOKIE ECHO retransmission needs it: an idle association
                    // does not keep it.
                    self.cookie = Bytes::new();
                    self.establish(now);
                }
            }
            Chunk::Heartbeat(info) => {
                if info.len() <= 1024 {
                    self.ctrl.push_back((Some(pidx), Chunk::HeartbeatAck(info)));
                }
            }
            Chunk::HeartbeatAck(info) => self.on_heartbeat_ack(now, &info),
            Chunk::Abort { causes, .. } => {
                self.close(CloseReason::Aborted(causes));
                return false;
            }
            Chunk::Shutdown { cum_tsn } => self.on_shutdown(now, cum_tsn),
            Chunk::ShutdownAck => {
                if matches!(self.state, State::ShutdownSent | State::ShutdownAckSent) {
                    self.send_shutdown_complete = true;
                    self.shutdown_t_bit = false;
                    self.close(CloseReason::Shutdown);
                    return false;
                }
            }
            Chunk::ShutdownComplete { .. } => {
                if self.state == State::ShutdownAckSent {
                    self.close(CloseReason::Shutdown);
                    return false;
                }
            }
            Chunk::Error(causes) => {
                let stale = causes.iter().any(|c| c.code == cause_code::STALE_COOKIE);
                if stale && self.state == State::CookieEchoed {
                    // RFC 9260 §5.2.6: start over with a fresh INIT (counted as a retry).
                    self.state = State::CookieWait;
                    self.send_cookie_echo = false;
                    self.send_init = true;
                    self.t1_count += 1;
                    if self.t1_count > self.cfg.max_init_retransmissions {
                        self.close(CloseReason::HandshakeTimeout);
                        return false;
                    }
                    self.t1 = Some(now + self.paths[self.primary].rto);
                }
                self.events.push_back(Event::PeerError(causes));
            }
            Chunk::Init(_) => return false,
            Chunk::ForwardTsn(f)
                if self.tx.pr_enabled
                    && matches!(
                        self.state,
                        State::Established | State::ShutdownPending | State::ShutdownSent
                    ) =>
            {
                *data_seen = true;
                self.rx.on_forward_tsn(f, &mut self.events, &mut self.stats);
            }
            Chunk::ReConfig(body) if self.reconfig.is_some() => {
                return self.on_reconfig(now, pidx, body);
            }
            // Extensions we did not negotiate are treated as unknown chunk types.
            Chunk::IData(_) | Chunk::ForwardTsn(_) | Chunk::ReConfig(_) | Chunk::Unknown { .. } => {
                return self.unknown_chunk(raw);
            }
        }
        true
    }

    /// Acts on the upper two bits of an unrecognised chunk type (RFC 9260 §3.2).
    fn unknown_chunk(&mut self, raw: &RawChunk) -> bool {
        if raw.typ & 0x40 != 0 {
            let mut info = Vec::with_capacity(4 + raw.value.len().min(256));
            info.extend_from_slice(&[raw.typ, raw.flags]);
            info.extend_from_slice(
                &((raw.value.len() + 4).min(u16::MAX as usize) as u16).to_be_bytes(),
            );
            info.extend_from_slice(&raw.value[..raw.value.len().min(256)]);
            self.ctrl.push_back((
                None,
                Chunk::Error(vec![ErrorCause::new(cause_code::UNRECOGNIZED_CHUNK, info)]),
            ));
        }
        raw.typ & 0x80 != 0
    }

    fn on_init_ack(&mut self, now: Instant, pidx: usize, init: InitChunk) {
        if self.state != State::CookieWait {
            return;
        }
        let mut cookie = None;
        let mut peer_pr = false;
        let mut peer_reconfig = false;
        let port = self.paths[pidx].addr.port();
        for p in init.params {
            match p {
                InitParam::StateCookie(c) => cookie = Some(c),
                InitParam::Address(ip) => {
                    let addr = SocketAddr::new(ip, port);
                    if self.paths.len() < MAX_PATHS && self.path_index(addr).is_none() {
                        self.paths.push(Path::new(addr, &self.cfg, false));
                    }
                }
                InitParam::ForwardTsnSupported => peer_pr = true,
                InitParam::SupportedExtensions(e) => {
                    peer_reconfig = e.contains(&chunk_type::RE_CONFIG);
                }
                // 00 and 01: stop processing further parameters.
                InitParam::Unknown { typ, .. } if typ & 0x8000 == 0 => break,
                _ => {}
            }
        }
        let Some(cookie) = cookie else { return };
        self.tx.pr_enabled = self.cfg.partial_reliability && peer_pr;
        self.reconfig = reconfig::Reconfig::negotiate(
            &self.cfg,
            peer_reconfig,
            self.local_tsn,
            init.initial_tsn,
        );
        self.adopt_peer(
            now,
            init.initiate_tag,
            init.initial_tsn,
            init.a_rwnd,
            init.outbound_streams,
            init.inbound_streams,
        );
        if self.t1_count == 0 {
            if let Some(sent) = self.handshake_sent_at {
                let cfg = self.cfg.clone();
                self.paths[pidx].rtt_sample(now.saturating_duration_since(sent), &cfg);
            }
        }
        // The address that answered carries the rest of the handshake.
        self.hs_path = pidx;
        // Copied: a slice would keep the whole received buffer (a GRO train) alive.
        self.cookie = Bytes::copy_from_slice(&cookie);
        self.state = State::CookieEchoed;
        self.send_cookie_echo = true;
        self.t1_count = 0;
        self.t1 = Some(now + self.paths[self.hs_path].rto);
    }

    /// Answers for an INIT that arrived while this association exists (RFC 9260 §5.2.1,
    /// §5.2.2): same tag during the handshake, a fresh one (restart) afterwards.
    pub(crate) fn init_answer(&mut self) -> InitAnswer {
        match self.state {
            State::CookieWait => InitAnswer {
                local_tag: self.local_tag,
                local_tsn: self.local_tsn,
                tie_local: 0,
                tie_peer: 0,
            },
            State::CookieEchoed => InitAnswer {
                local_tag: self.local_tag,
                local_tsn: self.local_tsn,
                tie_local: self.local_tag,
                tie_peer: self.peer_tag,
            },
            _ => InitAnswer {
                local_tag: self.rng.random::<u32>().max(1),
                local_tsn: self.rng.random(),
                tie_local: self.local_tag,
                tie_peer: self.peer_tag,
            },
        }
    }

    /// COOKIE ECHO for this association with our own tag (RFC 9260 §5.2.4 cases B, D).
    fn on_cookie_echo(&mut self, now: Instant, c: &CookieData) {
        if c.local_tag != self.local_tag {
            return;
        }
        match self.state {
            State::CookieWait | State::CookieEchoed => {
                // Case B or D during a collision: take the peer's parameters and finish.
                self.adopt_peer(
                    now,
                    c.peer_tag,
                    c.peer_tsn,
                    c.peer_rwnd,
                    c.peer_os,
                    c.peer_mis,
                );
                self.tx.pr_enabled = self.cfg.partial_reliability && c.peer_pr;
                self.reconfig = reconfig::Reconfig::negotiate(
                    &self.cfg,
                    c.peer_reconfig,
                    self.local_tsn,
                    c.peer_tsn,
                );
                self.establish(now);
                self.send_cookie_ack = true;
            }
            // Case D: our COOKIE ACK was lost.
            State::Established if c.peer_tag == self.peer_tag => self.send_cookie_ack = true,
            _ => {}
        }
    }

    fn on_heartbeat_ack(&mut self, now: Instant, info: &[u8]) {
        if info.len() != 18 {
            return;
        }
        let idx = u16::from_be_bytes([info[0], info[1]]) as usize;
        let nonce = u64::from_be_bytes(info[2..10].try_into().unwrap_or_default());
        let Some(p) = self.paths.get_mut(idx) else {
            return;
        };
        match p.hb_outstanding {
            Some((n, sent)) if n == nonce => {
                self.stats.heartbeat_acks_received += 1;
                p.hb_outstanding = None;
                p.confirmed = true;
                let cfg = self.cfg.clone();
                p.rtt_sample(now.saturating_duration_since(sent), &cfg);
                let jitter = self.rng.random_range(0..=p.rto.as_micros() as u64 / 2);
                // Interval plus up to half an RTO of jitter (RFC 9260 §8.3), so many
                // associations do not probe in lockstep; the detection bound allows it.
                p.hb_due = cfg
                    .heartbeat_interval
                    .map(|iv| now + iv + Duration::from_micros(jitter));
                self.path_alive(idx);
                self.update_data_path();
            }
            _ => {}
        }
    }

    fn on_shutdown(&mut self, now: Instant, cum_tsn: u32) {
        match self.state {
            State::Established | State::ShutdownPending => {
                self.on_sack(now, cum_tsn, self.tx.peer_rwnd_raw(), Vec::new(), true);
                if self.state == State::Closed {
                    return;
                }
                self.state = State::ShutdownReceived;
                self.check_shutdown_progress(now);
            }
            State::ShutdownSent => {
                self.on_sack(now, cum_tsn, self.tx.peer_rwnd_raw(), Vec::new(), true);
                self.state = State::ShutdownAckSent;
                self.send_shutdown = false;
                self.send_shutdown_ack = true;
                self.arm_t2(now);
            }
            State::ShutdownReceived => {
                self.on_sack(now, cum_tsn, self.tx.peer_rwnd_raw(), Vec::new(), true);
            }
            State::ShutdownAckSent => self.send_shutdown_ack = true,
            _ => {}
        }
    }

    /// Starts T2-shutdown and, once per shutdown, the T5 guard of 5 × RTO.Max.
    fn arm_t2(&mut self, now: Instant) {
        self.t2 = Some(now + self.paths[self.data_path].rto);
        if self.t5.is_none() {
            self.t5 = Some(now + self.cfg.rto_max * 5);
        }
    }

    /// Moves the shutdown along once all our data is acknowledged (RFC 9260 §9.2).
    fn check_shutdown_progress(&mut self, now: Instant) {
        // A pending stream reset finishes first: parked messages still have to go out.
        if !self.tx.is_empty() || self.reconfig.as_ref().is_some_and(|r| !r.is_idle()) {
            return;
        }
        match self.state {
            State::ShutdownPending => {
                self.state = State::ShutdownSent;
                self.send_shutdown = true;
                self.arm_t2(now);
            }
            State::ShutdownReceived => {
                self.state = State::ShutdownAckSent;
                self.send_shutdown_ack = true;
                self.arm_t2(now);
            }
            _ => {}
        }
    }

    /// New-data packets allowed before the next trigger (a send, a packet received, a
    /// timeout): `max_burst`, or as many as fill [`BURST_BYTES`] at the data path's
    /// PMTU when that is more, so that at small PMTUs one burst still fills a GSO
    /// train (a TCP sender with TSO bursts 64 KiB likewise).
    fn refill_burst(&mut self) {
        let pmtu = self.paths.get(self.data_path).map_or(1, |p| p.pmtu.max(1));
        self.burst_left = self.cfg.max_burst.max(BURST_BYTES / pmtu);
    }

    /// Runs every timer that is due (driven by [`crate::Endpoint::handle_timeout`]).
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        self.refill_burst();
        if self.t1.is_some_and(|t| t <= now) {
            self.t1_count += 1;
            if self.t1_count > self.cfg.max_init_retransmissions {
                self.close(CloseReason::HandshakeTimeout);
                return;
            }
            let cfg = self.cfg.clone();
            self.paths[self.hs_path].back_off(&cfg);
            let n = self.paths.len();
            self.hs_path = (1..=n)
                .map(|k| (self.hs_path + k) % n)
                .find(|&i| self.paths[i].confirmed)
                .unwrap_or(self.hs_path);
            self.t1 = Some(now + self.paths[self.hs_path].rto);
            match self.state {
                State::CookieWait => self.send_init = true,
                State::CookieEchoed => self.send_cookie_echo = true,
                _ => self.t1 = None,
            }
        }
        if self.t5.is_some_and(|t| t <= now) {
            // The peer never completed the shutdown: give up with ABORT.
            self.ctrl.clear();
            self.ctrl.push_back((
                None,
                Chunk::Abort {
                    t: false,
                    causes: Vec::new(),
                },
            ));
            self.close(CloseReason::Timeout);
            return;
        }
        if self.t2.is_some_and(|t| t <= now) {
            let dp = self.data_path;
            self.path_error(dp);
            if self.state == State::Closed {
                return;
            }
            let cfg = self.cfg.clone();
            self.paths[dp].back_off(&cfg);
            // Retransmit to an alternate path if there is one (RFC 9260 §9.2).
            let alt = self.alternate_path(dp);
            self.t2 = Some(now + self.paths[alt].rto);
            match self.state {
                State::ShutdownSent => self.send_shutdown = true,
                State::ShutdownAckSent => self.send_shutdown_ack = true,
                _ => self.t2 = None,
            }
        }
        if self.rx.sack_deadline.is_some_and(|t| t <= now) {
            self.rx.sack_deadline = None;
            self.rx.sack_needed = true;
        }
        self.reconfig_timeout(now);
        if self.state == State::Closed {
            return;
        }
        for i in 0..self.paths.len() {
            if self.paths[i].t3.is_some_and(|t| t <= now) {
                self.on_t3_expiry(now, i);
                if self.state == State::Closed {
                    return;
                }
            }
            self.heartbeat_timer(now, i);
            if self.state == State::Closed {
                return;
            }
        }
    }

    fn heartbeat_timer(&mut self, now: Instant, i: usize) {
        let Some(due) = self.paths[i].hb_due else {
            return;
        };
        if due > now {
            return;
        }
        if self.paths[i].hb_outstanding.is_some() {
            // Unanswered within RTO (RFC 9260 §8.3): count it, back off and probe again.
            self.paths[i].hb_outstanding = None;
            let cfg = self.cfg.clone();
            self.paths[i].back_off(&cfg);
            self.path_error(i);
            if self.state == State::Closed {
                return;
            }
            self.paths[i].hb_send_now = true;
            self.paths[i].hb_due = None;
            return;
        }
        let Some(iv) = self.cfg.heartbeat_interval else {
            self.paths[i].hb_due = None;
            return;
        };
        let p = &mut self.paths[i];
        // A path carrying data is not idle: T3-rtx watches it.
        let busy_until = p.last_data_sent.map(|t| t + iv).filter(|t| *t > now);
        match busy_until {
            Some(t) if p.flight > 0 || p.t3.is_some() || t > now => {
                p.hb_due = Some(t.max(now + iv / 4))
            }
            _ => {
                p.hb_send_now = true;
                p.hb_due = None;
            }
        }
    }

    /// Builds the HEARTBEAT for a path and arms its answer timer.
    fn make_heartbeat(&mut self, now: Instant, i: usize) -> Chunk {
        let nonce: u64 = self.rng.random();
        let p = &mut self.paths[i];
        p.hb_send_now = false;
        p.hb_outstanding = Some((nonce, now));
        p.hb_due = Some(now + p.rto);
        let mut info = Vec::with_capacity(18);
        info.extend_from_slice(&(i as u16).to_be_bytes());
        info.extend_from_slice(&nonce.to_be_bytes());
        info.extend_from_slice(
            &(now.saturating_duration_since(self.created).as_nanos() as u64).to_be_bytes(),
        );
        self.stats.heartbeats_sent += 1;
        Chunk::Heartbeat(Bytes::from(info))
    }

    /// Whether anything is waiting to be sent (used to retire closed associations).
    pub(crate) fn has_final_transmit(&self) -> bool {
        !self.ctrl.is_empty() || self.send_shutdown_complete
    }

    /// Frees receive window after the endpoint handed a message to the user.
    pub(crate) fn consumed(&mut self, n: usize) {
        self.rx.consumed(n);
    }
}

#[cfg(test)]
impl Association {
    /// Next TSN this association will assign, for tests that craft DATA to its peer.
    pub(crate) fn tx_next_tsn_for_tests(&self) -> u32 {
        self.tx.next_tsn_raw()
    }
}

/// Unwraps a 32-bit serial number to 64 bits next to a reference (RFC 1982 arithmetic).
pub(crate) fn unwrap_tsn(reference: u64, tsn: u32) -> u64 {
    let diff = tsn.wrapping_sub(reference as u32) as i32 as i64;
    (reference as i64).wrapping_add(diff) as u64
}

#[cfg(test)]
mod test_pair;
#[cfg(test)]
mod tests;
