//! The endpoint: demultiplexes datagrams to associations, answers INIT statelessly with
//! a sealed cookie, and collects transmits, deadlines and events from its associations.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::assoc::{Association, AssociationStats, ResetError, SendError};
use crate::config::{ConfigError, EndpointConfig};
use crate::cookie::{CookieData, CookieError, CookieSecret};
#[cfg(doc)]
use crate::event::HandleHasher;
use crate::event::{AssocHandle, Event, HandleMap};
use crate::wire::{
    cause_code, chunk_type, decode_header, finish_packet, first_chunk_type, param_type, Chunk,
    ChunkIter, CommonHeader, ErrorCause, InitChunk, InitParam,
};

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it (peer address and UDP port).
    pub destination: SocketAddr,
    /// Local address to send from, when the association learned one.
    pub source: Option<SocketAddr>,
    /// The UDP payload (one SCTP packet).
    pub contents: Vec<u8>,
}

/// Why `connect` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// No remote address given.
    #[error("no remote address")]
    NoAddress,
    /// An association with this peer address and ports exists already.
    #[error("association to this peer exists")]
    Exists,
    /// The endpoint holds `max_associations`.
    #[error("too many associations")]
    TooMany,
}

/// Endpoint-level counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams handed in.
    pub datagrams_received: u64,
    /// Datagrams handed out.
    pub datagrams_sent: u64,
    /// Shorter than the common header or with a bad chunk layout.
    pub malformed: u64,
    /// Bad CRC32c.
    pub bad_checksum: u64,
    /// Matched no association (out of the blue).
    pub unknown_association: u64,
    /// Wrong verification tag or unknown source address.
    pub bad_vtag: u64,
    /// INITs answered statelessly.
    pub inits_answered: u64,
    /// COOKIE ECHOs refused for a bad MAC or layout.
    pub cookies_invalid: u64,
    /// COOKIE ECHOs refused as stale.
    pub cookies_stale: u64,
    /// Stateless replies dropped because their queue was full.
    pub replies_dropped: u64,
    /// INITs and out-of-the-blue packets left unanswered by the per-source rate limit.
    pub replies_rate_limited: u64,
    /// Associations created (either side).
    pub associations_created: u64,
    /// Peer restarts detected.
    pub restarts: u64,
}

/// An SCTP endpoint (sans-IO).
#[derive(Debug)]
pub struct Endpoint {
    config: Arc<EndpointConfig>,
    assoc_config: Arc<crate::config::AssociationConfig>,
    rng: ChaCha8Rng,
    secret: CookieSecret,
    epoch: Option<Instant>,
    assocs: HandleMap<AssocHandle, Association>,
    /// Keyed by our own random tags: the cheap hasher is safe (see [`HandleHasher`]).
    by_tag: HandleMap<u32, AssocHandle>,
    by_addr: HashMap<(SocketAddr, u16, u16), AssocHandle>,
    /// Counts entries of `by_addr` removed or taken over by another association: each
    /// association re-registers its addresses (where free) once after a change.
    addr_epoch: u64,
    next_handle: u64,
    replies: VecDeque<Transmit>,
    dirty: VecDeque<AssocHandle>,
    events: VecDeque<(AssocHandle, Event)>,
    /// Each association's next deadline, indexed so polling costs O(log n).
    timers: BTreeSet<(Instant, AssocHandle)>,
    stats: EndpointStats,
    /// Counters of the associations already removed.
    closed_totals: AssociationStats,
    limiter: ReplyLimiter,
}

/// Per-source token buckets for stateless replies; bounded in memory (the table is
/// cleared when full, which at worst lets a source through early).
#[derive(Debug)]
struct ReplyLimiter {
    per_second: u32,
    buckets: HashMap<SocketAddr, (f32, Instant)>,
}

/// Sources tracked at once by [`ReplyLimiter`].
const LIMITER_SOURCES: usize = 4096;

impl ReplyLimiter {
    fn allow(&mut self, now: Instant, source: SocketAddr) -> bool {
        if self.per_second == 0 {
            return true;
        }
        let rate = self.per_second as f32;
        if self.buckets.len() >= LIMITER_SOURCES && !self.buckets.contains_key(&source) {
            self.buckets.clear();
        }
        let (tokens, last) = self.buckets.entry(source).or_insert((rate, now));
        let refill = now.saturating_duration_since(*last).as_secs_f32() * rate;
        *tokens = (*tokens + refill).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Endpoint {
    /// Creates an endpoint; all randomness (tags, TSNs, cookie secret) comes from the seed.
    pub fn new(config: EndpointConfig, rng_seed: u64) -> Result<Endpoint, ConfigError> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
        let secret = CookieSecret::new(rng.random());
        let replies_per_source = config.stateless_replies_per_source;
        Ok(Endpoint {
            assoc_config: Arc::new(config.association.clone()),
            config: Arc::new(config),
            rng,
            secret,
            epoch: None,
            assocs: HandleMap::default(),
            by_tag: HandleMap::default(),
            by_addr: HashMap::new(),
            addr_epoch: 0,
            next_handle: 1,
            replies: VecDeque::new(),
            dirty: VecDeque::new(),
            events: VecDeque::new(),
            timers: BTreeSet::new(),
            stats: EndpointStats::default(),
            closed_totals: AssociationStats::default(),
            limiter: ReplyLimiter {
                per_second: replies_per_source,
                buckets: HashMap::new(),
            },
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &EndpointStats {
        &self.stats
    }

    /// The counters of every association this endpoint has had, summed: the closed
    /// ones and the live ones (costs a pass over the live associations).
    pub fn association_totals(&self) -> AssociationStats {
        let mut t = self.closed_totals.clone();
        for a in self.assocs.values() {
            t.add(a.stats());
        }
        t
    }

    /// Replaces the cookie-sealing key with a fresh random one; cookies sealed under the
    /// previous key stay valid until the next rotation.
    pub fn rotate_cookie_secret(&mut self) {
        let k = self.rng.random();
        self.secret.rotate(k);
    }

    /// Number of live associations.
    pub fn association_count(&self) -> usize {
        self.assocs.len()
    }

    /// Handles of all live associations.
    pub fn handles(&self) -> Vec<AssocHandle> {
        self.assocs.keys().copied().collect()
    }

    /// Access to an association (to send, shut down, read state). Marks it for output.
    pub fn association(&mut self, h: AssocHandle) -> Option<&mut Association> {
        let a = self.assocs.get_mut(&h)?;
        if !a.queued {
            a.queued = true;
            self.dirty.push_back(h);
        }
        Some(a)
    }

    /// Read-only access to an association.
    pub fn association_ref(&self, h: AssocHandle) -> Option<&Association> {
        self.assocs.get(&h)
    }

    /// Queues a message on an association.
    pub fn send(
        &mut self,
        h: AssocHandle,
        stream: u16,
        ppid: u32,
        ordered: bool,
        data: Bytes,
    ) -> Result<(), SendError> {
        self.association(h)
            .ok_or(SendError::NotConnected)?
            .send(stream, ppid, ordered, data)
    }

    /// Resets the SSNs of outgoing streams of an association (RFC 6525); see
    /// [`Association::reset_streams`]. The outcome arrives as [`Event::StreamsReset`].
    pub fn reset_streams(&mut self, h: AssocHandle, streams: &[u16]) -> Result<(), ResetError> {
        self.association(h)
            .ok_or(ResetError::NotConnected)?
            .reset_streams(streams)
    }

    /// Starts a graceful shutdown of an association.
    pub fn shutdown(&mut self, now: Instant, h: AssocHandle) {
        if let Some(a) = self.association(h) {
            a.shutdown(now);
        }
        self.after(h);
    }

    /// Aborts an association, sending ABORT with a user-initiated cause.
    pub fn abort(&mut self, h: AssocHandle, reason: &[u8]) {
        if let Some(a) = self.association(h) {
            a.abort(reason);
        }
        self.after(h);
    }

    fn now_ms(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        now.saturating_duration_since(epoch).as_millis() as u64
    }

    fn fresh_tag(&mut self) -> u32 {
        loop {
            let t: u32 = self.rng.random();
            if t != 0 && !self.by_tag.contains_key(&t) {
                return t;
            }
        }
    }

    fn insert(&mut self, mut a: Association) -> AssocHandle {
        let h = AssocHandle(self.next_handle);
        self.next_handle += 1;
        self.by_tag.insert(a.local_tag, h);
        for p in &a.paths {
            if self
                .by_addr
                .insert((p.addr, a.local_port, a.peer_port), h)
                .is_some()
            {
                self.addr_epoch += 1;
            }
        }
        a.indexed_paths = a.paths.len();
        a.indexed_epoch = self.addr_epoch;
        self.stats.associations_created += 1;
        self.assocs.insert(h, a);
        h
    }

    /// Re-indexes an association's deadline after anything that may have moved it.
    fn refresh_timer(&mut self, h: AssocHandle) {
        let Some(a) = self.assocs.get_mut(&h) else {
            return;
        };
        let new = a.poll_timeout();
        match (a.indexed_timeout, new) {
            // A later deadline keeps the earlier entry: it fires early, finds nothing
            // due and indexes the real deadline then. T3 restarts on every SACK, so
            // this saves two ordered-set operations per packet in bulk transfer.
            (Some(old), Some(t)) if t >= old => {}
            (old, new) => {
                if let Some(old) = old {
                    self.timers.remove(&(old, h));
                }
                if let Some(t) = new {
                    self.timers.insert((t, h));
                }
                a.indexed_timeout = new;
            }
        }
    }

    fn remove(&mut self, h: AssocHandle) {
        if let Some(a) = self.assocs.remove(&h) {
            self.closed_totals.add(a.stats());
            if let Some(t) = a.indexed_timeout {
                self.timers.remove(&(t, h));
            }
            if self.by_tag.get(&a.local_tag) == Some(&h) {
                self.by_tag.remove(&a.local_tag);
            }
            for p in &a.paths {
                let k = (p.addr, a.local_port, a.peer_port);
                if self.by_addr.get(&k) == Some(&h) {
                    self.by_addr.remove(&k);
                    self.addr_epoch += 1;
                }
            }
        }
    }

    /// Moves events out of an association, registers new paths, retires it if done.
    fn after(&mut self, h: AssocHandle) {
        let Some(a) = self.assocs.get_mut(&h) else {
            return;
        };
        for ev in a.take_events() {
            self.events.push_back((h, ev));
        }
        // Paths come from the handshake (and rarely later): hashing every path's
        // address on every packet cost about 3 % of bulk transfer at PMTU 1,472.
        // After another association freed or took an entry, all of them again.
        if a.indexed_paths != a.paths.len() || a.indexed_epoch != self.addr_epoch {
            let from = if a.indexed_epoch == self.addr_epoch {
                a.indexed_paths
            } else {
                0
            };
            for p in &a.paths[from..] {
                self.by_addr
                    .entry((p.addr, a.local_port, a.peer_port))
                    .or_insert(h);
            }
            a.indexed_paths = a.paths.len();
            a.indexed_epoch = self.addr_epoch;
        }
        if !a.queued {
            a.queued = true;
            self.dirty.push_back(h);
        }
        let done = a.is_closed() && !a.has_final_transmit();
        if done {
            self.remove(h);
        } else {
            self.refresh_timer(h);
        }
    }

    /// Starts an association to `remotes` (first one primary) between SCTP ports.
    pub fn connect(
        &mut self,
        now: Instant,
        remotes: &[SocketAddr],
        local_port: u16,
        peer_port: u16,
    ) -> Result<AssocHandle, ConnectError> {
        let first = *remotes.first().ok_or(ConnectError::NoAddress)?;
        if self.by_addr.contains_key(&(first, local_port, peer_port)) {
            return Err(ConnectError::Exists);
        }
        if self.assocs.len() >= self.config.max_associations {
            return Err(ConnectError::TooMany);
        }
        self.now_ms(now);
        let tag = self.fresh_tag();
        let seed = self.rng.random();
        let a = Association::connect(
            self.assoc_config.clone(),
            now,
            remotes,
            local_port,
            peer_port,
            tag,
            self.config.local_addresses.clone(),
            seed,
        );
        let h = self.insert(a);
        self.after(h);
        Ok(h)
    }

    fn reply(&mut self, t: Transmit) {
        if self.replies.len() >= self.config.max_stateless_replies {
            self.stats.replies_dropped += 1;
        } else {
            self.replies.push_back(t);
        }
    }

    fn reply_chunk(&mut self, to: SocketAddr, from: Option<SocketAddr>, h: CommonHeader, c: Chunk) {
        let mut out = Vec::with_capacity(64);
        h.encode(&mut out);
        c.encode(&mut out);
        finish_packet(&mut out);
        self.reply(Transmit {
            destination: to,
            source: from,
            contents: out,
        });
    }

    /// Handles one received UDP payload from `remote` (received on `local`, if known).
    /// Returns the association it concerned, if any.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        data: &[u8],
    ) -> Option<AssocHandle> {
        self.handle_datagram_bytes(now, local, remote, Bytes::copy_from_slice(data))
    }

    /// Like [`Endpoint::handle_datagram`] but takes ownership of the datagram, so DATA
    /// payloads are delivered as slices of it without a copy.
    pub fn handle_datagram_bytes(
        &mut self,
        now: Instant,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        packet: Bytes,
    ) -> Option<AssocHandle> {
        let len = packet.len();
        self.handle_datagram_in(now, local, remote, packet, len)
    }

    /// Like [`Endpoint::handle_datagram_bytes`] for a datagram that is a slice of a
    /// larger buffer of `buffer_len` bytes (one segment of a GRO train): payloads far
    /// smaller than the buffer are copied out where they are kept, so no slice keeps the
    /// whole buffer alive for long.
    pub fn handle_datagram_in(
        &mut self,
        now: Instant,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        packet: Bytes,
        buffer_len: usize,
    ) -> Option<AssocHandle> {
        self.stats.datagrams_received += 1;
        let header = match decode_header(&packet) {
            Ok(h) => h,
            Err(crate::wire::DecodeError::BadChecksum) => {
                self.stats.bad_checksum += 1;
                return None;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return None;
            }
        };
        // Only INIT and COOKIE ECHO need the first chunk here; the association parses
        // the rest (a slice of the packet per packet costs at PMTU 1,472).
        let Ok(first_type) = first_chunk_type(&packet) else {
            self.stats.malformed += 1;
            return None;
        };
        let first_chunk = |packet: &Bytes| {
            let mut chunks = ChunkIter::new(packet.clone());
            chunks.next().and_then(Result::ok).map(|c| (c, chunks))
        };
        let key = (remote, header.dst_port, header.src_port);
        if first_type == chunk_type::INIT {
            let Some((first, mut chunks)) = first_chunk(&packet) else {
                self.stats.malformed += 1;
                return None;
            };
            if !self.by_addr.contains_key(&key) && !self.limiter.allow(now, remote) {
                self.stats.replies_rate_limited += 1;
                return None;
            }
            // INIT must be alone, with a zero tag (RFC 9260 §8.5.1).
            if header.vtag != 0 || chunks.next().is_some() {
                self.stats.malformed += 1;
                return None;
            }
            let Ok(Chunk::Init(init)) = Chunk::decode(&first) else {
                self.stats.malformed += 1;
                return None;
            };
            let existing = self.by_addr.get(&key).copied();
            self.on_init(now, local, remote, header, init, existing);
            return existing;
        }
        let cookie = if first_type == chunk_type::COOKIE_ECHO {
            let Some((first, _)) = first_chunk(&packet) else {
                self.stats.malformed += 1;
                return None;
            };
            match self.open_cookie(now, local, remote, header, &first.value) {
                Some(c) => Some(c),
                None => return None,
            }
        } else {
            None
        };
        let by_tag = self.by_tag.get(&header.vtag).copied().filter(|h| {
            self.assocs
                .get(h)
                .is_some_and(|a| a.local_port == header.dst_port && a.peer_port == header.src_port)
        });
        let target = match (by_tag, &cookie) {
            (Some(h), _) => Some(h),
            (None, Some(c)) => self.cookie_target(now, local, remote, c),
            (None, None) => self.by_addr.get(&key).copied(),
        };
        let Some(h) = target else {
            if self.limiter.allow(now, remote) {
                self.out_of_the_blue(local, remote, header, packet);
            } else {
                self.stats.replies_rate_limited += 1;
            }
            return None;
        };
        let a = self.assocs.get_mut(&h)?;
        if !a.has_peer_addr(remote) {
            // RFC 6951 §5.4: a packet carrying our tag from a known IP with a new UDP
            // port (NAT rebinding) moves that path to the new port.
            let rebound = match by_tag {
                Some(_) if header.vtag == a.local_tag => a.rebind_port(remote),
                _ => None,
            };
            let Some(old) = rebound else {
                self.stats.bad_vtag += 1;
                return None;
            };
            let (lp, pp) = (a.local_port, a.peer_port);
            if self.by_addr.get(&(old, lp, pp)) == Some(&h) {
                self.by_addr.remove(&(old, lp, pp));
            }
            if self.by_addr.insert((remote, lp, pp), h).is_some() {
                // Another association's entry taken over.
                self.addr_epoch += 1;
            }
        }
        let a = self.assocs.get_mut(&h)?;
        let before = a.stats.bad_vtag;
        a.rx.shared_len = buffer_len.max(packet.len());
        a.handle_packet(now, local, remote, header, packet, cookie.as_ref());
        if a.stats.bad_vtag != before {
            self.stats.bad_vtag += 1;
        }
        self.after(h);
        Some(h)
    }

    fn open_cookie(
        &mut self,
        now: Instant,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        header: CommonHeader,
        value: &[u8],
    ) -> Option<CookieData> {
        let now_ms = self.now_ms(now);
        match self.secret.open(
            value,
            now_ms,
            self.config.cookie_lifetime.as_millis() as u64,
        ) {
            Ok(c)
                if c.local_tag == header.vtag
                    && c.local_port == header.dst_port
                    && c.peer_port == header.src_port =>
            {
                Some(c)
            }
            Ok(_) | Err(CookieError::Invalid) => {
                self.stats.cookies_invalid += 1;
                None
            }
            Err(CookieError::Stale(ms)) => {
                self.stats.cookies_stale += 1;
                // The tag to answer with is inside the stale cookie, which we may not
                // trust; RFC 9260 §5.2.6 answers with ERROR anyway, so use the cookie's
                // claimed peer tag only if the MAC held (it did: Stale implies that).
                if let Some(peer_tag) = self.stale_peer_tag(value) {
                    let usec = (ms.saturating_mul(1000)).min(u32::MAX as u64) as u32;
                    let h = CommonHeader {
                        src_port: header.dst_port,
                        dst_port: header.src_port,
                        vtag: peer_tag,
                    };
                    let cause =
                        ErrorCause::new(cause_code::STALE_COOKIE, usec.to_be_bytes().to_vec());
                    self.reply_chunk(remote, local, h, Chunk::Error(vec![cause]));
                }
                None
            }
        }
    }

    fn stale_peer_tag(&self, value: &[u8]) -> Option<u32> {
        // Reopen with an unbounded lifetime to read the authenticated fields.
        self.secret
            .open(value, 0, u64::MAX)
            .ok()
            .map(|c| c.peer_tag)
    }

    /// Decides which association a valid COOKIE ECHO with an unknown tag belongs to:
    /// a restart of an existing one (RFC 9260 §5.2.4 case A) or a new one.
    fn cookie_target(
        &mut self,
        now: Instant,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        c: &CookieData,
    ) -> Option<AssocHandle> {
        let key = (remote, c.local_port, c.peer_port);
        if let Some(old) = self.by_addr.get(&key).copied() {
            let a = self.assocs.get(&old)?;
            if a.is_closed() {
                self.remove(old);
                return self.new_from_cookie(now, local, c);
            }
            let restart =
                c.tie_local == a.local_tag && c.tie_peer == a.peer_tag && c.peer_tag != a.peer_tag;
            let fresh = c.tie_local == 0 && c.tie_peer == 0;
            if !(restart || fresh) {
                return None;
            }
            if c.peer_tag == a.peer_tag {
                // Case C: an old cookie; silently discard.
                return None;
            }
            self.stats.restarts += 1;
            if let Some(a) = self.assocs.get_mut(&old) {
                // Closed like any other end, so what it owes the user (pending stream
                // resets) is reported before `Closed`.
                a.close_peer_restarted();
                self.events.extend(a.take_events().map(|e| (old, e)));
            }
            self.remove(old);
        }
        self.new_from_cookie(now, local, c)
    }

    fn new_from_cookie(
        &mut self,
        now: Instant,
        local: Option<SocketAddr>,
        c: &CookieData,
    ) -> Option<AssocHandle> {
        if self.assocs.len() >= self.config.max_associations {
            return None;
        }
        let seed = self.rng.random();
        let a = Association::from_cookie(
            self.assoc_config.clone(),
            now,
            c,
            local,
            self.config.local_addresses.clone(),
            seed,
        );
        Some(self.insert(a))
    }

    fn on_init(
        &mut self,
        now: Instant,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        header: CommonHeader,
        init: InitChunk,
        existing: Option<AssocHandle>,
    ) {
        let reply_header = CommonHeader {
            src_port: header.dst_port,
            dst_port: header.src_port,
            vtag: init.initiate_tag,
        };
        // A closed association waiting to send its last packet answers like no association.
        let answer = existing
            .and_then(|h| self.assocs.get_mut(&h))
            .filter(|a| !a.is_closed())
            .map(|a| a.init_answer());
        if answer.is_none() {
            let port_ok = self.config.listen_ports.is_empty()
                || self.config.listen_ports.contains(&header.dst_port);
            if !self.config.accept_incoming
                || !port_ok
                || self.assocs.len() >= self.config.max_associations
            {
                let h = CommonHeader {
                    vtag: init.initiate_tag,
                    ..reply_header
                };
                self.reply_chunk(
                    remote,
                    local,
                    h,
                    Chunk::Abort {
                        t: false,
                        causes: Vec::new(),
                    },
                );
                return;
            }
        }
        let mut peer_addrs = Vec::new();
        let mut unrecognized = Vec::new();
        let mut peer_pr = false;
        let mut peer_reconfig = false;
        for p in &init.params {
            match p {
                InitParam::Address(ip) => peer_addrs.push(*ip),
                InitParam::ForwardTsnSupported => peer_pr = true,
                InitParam::SupportedExtensions(e) => {
                    peer_reconfig = e.contains(&chunk_type::RE_CONFIG);
                }
                InitParam::Unknown { typ, value } => {
                    if typ & 0x4000 != 0 {
                        let mut tlv = Vec::with_capacity(4 + value.len());
                        crate::wire::put_tlv_pub(&mut tlv, *typ, value);
                        unrecognized.push(InitParam::Unrecognized(Bytes::from(tlv)));
                    }
                    if typ & 0x8000 == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
        let (local_tag, local_tsn, tie_local, tie_peer) = match answer {
            Some(a) => (a.local_tag, a.local_tsn, a.tie_local, a.tie_peer),
            None => (self.fresh_tag(), self.rng.random(), 0, 0),
        };
        let created_ms = self.now_ms(now);
        let cookie = self.secret.seal(&CookieData {
            created_ms,
            local_tag,
            local_tsn,
            peer_tag: init.initiate_tag,
            peer_tsn: init.initial_tsn,
            peer_rwnd: init.a_rwnd,
            peer_os: init.outbound_streams,
            peer_mis: init.inbound_streams,
            tie_local,
            tie_peer,
            local_port: header.dst_port,
            peer_port: header.src_port,
            origin: remote,
            peer_addrs,
            peer_pr,
            peer_reconfig,
        });
        let cfg = &self.config.association;
        let mut params: Vec<InitParam> = self
            .config
            .local_addresses
            .iter()
            .map(|a| InitParam::Address(*a))
            .collect();
        params.push(InitParam::StateCookie(cookie));
        if cfg.partial_reliability {
            params.push(InitParam::ForwardTsnSupported);
        }
        if let Some(ext) = crate::assoc::supported_extensions(cfg) {
            params.push(ext);
        }
        params.extend(unrecognized.into_iter().take(4));
        let ack = InitChunk {
            initiate_tag: local_tag,
            a_rwnd: cfg.receive_buffer,
            outbound_streams: cfg.outbound_streams,
            inbound_streams: cfg.inbound_streams,
            initial_tsn: local_tsn,
            params,
        };
        self.stats.inits_answered += 1;
        self.reply_chunk(remote, local, reply_header, Chunk::InitAck(ack));
        let _ = param_type::STATE_COOKIE;
    }

    /// Out-of-the-blue packet handling (RFC 9260 §8.4).
    fn out_of_the_blue(
        &mut self,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        header: CommonHeader,
        packet: Bytes,
    ) {
        self.stats.unknown_association += 1;
        let mut shutdown_ack = false;
        for raw in ChunkIter::new(packet) {
            let Ok(raw) = raw else { return };
            match raw.typ {
                chunk_type::ABORT
                | chunk_type::SHUTDOWN_COMPLETE
                | chunk_type::COOKIE_ACK
                | chunk_type::ERROR
                | chunk_type::COOKIE_ECHO => return,
                chunk_type::SHUTDOWN_ACK => shutdown_ack = true,
                _ => {}
            }
        }
        let h = CommonHeader {
            src_port: header.dst_port,
            dst_port: header.src_port,
            vtag: header.vtag,
        };
        let c = if shutdown_ack {
            Chunk::ShutdownComplete { t: true }
        } else {
            Chunk::Abort {
                t: true,
                causes: Vec::new(),
            }
        };
        self.reply_chunk(remote, local, h, c);
    }

    /// Next datagram to send, if any. Call until `None` after every input.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        // Sized once for the largest packet, so writing it never reallocates.
        let a = &self.config.association;
        let largest = a
            .pmtu_overrides
            .iter()
            .map(|(_, m)| *m)
            .fold(a.pmtu, usize::max);
        let mut buf = Vec::with_capacity(largest);
        let (destination, source) = self.poll_transmit_into(now, &mut buf)?;
        Some(Transmit {
            destination,
            source,
            contents: buf,
        })
    }

    /// Like [`Endpoint::poll_transmit`] but writes into a reusable buffer (cleared first);
    /// returns destination and source.
    pub fn poll_transmit_into(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> Option<(SocketAddr, Option<SocketAddr>)> {
        buf.clear();
        self.poll_transmit_append(now, buf)
    }

    /// Like [`Endpoint::poll_transmit_into`] but appends the packet to what `buf` holds
    /// (`buf[old_len..]` is the packet), so that a driver can build a GSO train of
    /// several packets without copying them. Appends nothing when it returns `None`.
    ///
    /// Packets are padded to multiples of four, so a buffer of whole packets always has
    /// a length the chunks align to; any other length costs a copy of the packet.
    pub fn poll_transmit_append(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> Option<(SocketAddr, Option<SocketAddr>)> {
        if buf.len() % 4 != 0 {
            // Chunk padding is relative to the start of the buffer.
            let mut packet = Vec::new();
            let r = self.poll_transmit_append(now, &mut packet);
            buf.extend_from_slice(&packet);
            return r;
        }
        if let Some(t) = self.replies.pop_front() {
            buf.extend_from_slice(&t.contents);
            self.stats.datagrams_sent += 1;
            return Some((t.destination, t.source));
        }
        while let Some(&h) = self.dirty.front() {
            let Some(a) = self.assocs.get_mut(&h) else {
                self.dirty.pop_front();
                continue;
            };
            let sent = a.poll_transmit(now, buf);
            self.events.extend(a.take_events().map(|e| (h, e)));
            let done = a.is_closed() && !a.has_final_transmit();
            self.dirty.pop_front();
            if sent.is_some() {
                // Round-robin between associations for fairness.
                self.dirty.push_back(h);
                self.stats.datagrams_sent += 1;
            } else {
                a.queued = false;
            }
            if done {
                self.remove(h);
            } else {
                self.refresh_timer(h);
            }
            if sent.is_some() {
                return sent;
            }
        }
        None
    }

    /// Earliest deadline at which [`Endpoint::handle_timeout`] must be called. It may be
    /// earlier than any association's next timer (a timer that moved later is re-indexed
    /// only when its old deadline passes); calling `handle_timeout` then does nothing but
    /// that.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(t, h)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, h));
            if let Some(a) = self.assocs.get_mut(&h) {
                a.indexed_timeout = None;
                // The entry may be older than the association's deadline (see
                // `refresh_timer`): then nothing is due yet.
                if a.poll_timeout().is_some_and(|d| d <= now) {
                    a.handle_timeout(now);
                }
            }
            self.after(h);
        }
    }

    /// Next event of any association.
    pub fn poll_event(&mut self) -> Option<(AssocHandle, Event)> {
        let (h, ev) = self.events.pop_front()?;
        if let Event::Data { bytes, .. } = &ev {
            if !self.config.manual_receive_window {
                self.consumed(h, bytes.len());
            }
        }
        Some((h, ev))
    }

    /// The user is done with `n` bytes of messages of association `h` (only with
    /// [`EndpointConfig::manual_receive_window`]): they leave the receive window, which
    /// reopens and is advertised to the peer (window update) once it grew by a quarter.
    /// Unknown or closed handles are ignored.
    pub fn consumed(&mut self, h: AssocHandle, n: usize) {
        if let Some(a) = self.assocs.get_mut(&h) {
            a.consumed(n);
            if !a.queued {
                a.queued = true;
                self.dirty.push_back(h);
            }
        }
    }
}
