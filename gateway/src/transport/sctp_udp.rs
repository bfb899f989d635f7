//! Our SCTP engine driven over one UDP socket (RFC 6951 encapsulation).
//!
//! One tokio task owns the socket and the sans-IO [`sctp::Endpoint`]; associations talk
//! to it over a command channel. The task is boring on purpose: read datagrams, feed the
//! endpoint, run its timers, write what it wants sent, hand events to associations.
//!
//! Socket I/O is batched through `quinn-udp`: `recvmmsg` with GRO (one system call
//! returns many datagrams, coalesced ones split by their stride) and GSO on send
//! (consecutive equal-sized packets to one peer leave in one `sendmsg`). `quinn-udp`
//! sets don't-fragment, so the configured PMTU must fit the path (it is configured,
//! never guessed). The receive and send buffers are allocated once.
//!
//! Back-pressure: an [`Association`]'s send budget (a byte semaphore) is held until the
//! engine has taken the message; the engine's own send buffer bounds what is queued
//! behind it. Received messages stay counted against the engine's receive window
//! (`manual_receive_window`) until the owner releases their bytes (drops every `Bytes`
//! of the message): a slow consumer closes the peer's window, so the event channel
//! never holds more than two receive buffers per association (the window plus the
//! zero-window probes the engine keeps in sequence).

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio::time::Instant;

use sctp::{AssocHandle, CloseReason, Endpoint, EndpointConfig, Event, SendError};

use super::{
    AssocEvent, AssocId, Association, Command, DownReason, Listener, Message, Transport,
    TransportError,
};

/// Settings of one SCTP-over-UDP transport.
#[derive(Debug, Clone)]
pub struct SctpUdpConfig {
    /// Local UDP address to bind (port 0: ephemeral).
    pub bind: SocketAddr,
    /// The engine's settings (timers, buffers, PMTU, listen ports).
    pub engine: EndpointConfig,
    /// SO_RCVBUF / SO_SNDBUF in bytes.
    pub socket_buffer: usize,
    /// Bytes an association may have handed to the driver but not yet to the engine.
    pub send_budget: usize,
    /// Incoming associations waiting for `accept` before new ones are refused.
    pub accept_backlog: usize,
    /// Seed for the engine's randomness (tags, TSNs, cookie secret).
    pub seed: u64,
    /// Send runs of equal-sized packets as GSO trains where the kernel supports it.
    /// Off for packet captures on loopback, where the capture sees a train unsegmented.
    pub gso: bool,
}

impl SctpUdpConfig {
    /// Defaults for a given bind address: 4 MiB socket buffers, 1 MiB send budget.
    pub fn new(bind: SocketAddr) -> Self {
        SctpUdpConfig {
            bind,
            engine: EndpointConfig::default(),
            socket_buffer: 4 << 20,
            send_budget: 1 << 20,
            accept_backlog: 1024,
            seed: rand::random(),
            gso: true,
        }
    }

    /// [`SctpUdpConfig::new`] with the path MTU the bind address implies: 65,507-byte
    /// UDP payloads on loopback, 1,472 (a 1,500-byte link) elsewhere.
    pub fn for_address(bind: SocketAddr) -> Self {
        let mut c = Self::new(bind);
        c.engine.association.pmtu = if bind.ip().is_loopback() {
            65_507
        } else {
            1_472
        };
        c
    }
}

/// Counters of the driver, readable from any thread.
#[derive(Debug, Default)]
pub struct DriverStats {
    /// Datagrams read from the socket.
    pub datagrams_in: AtomicU64,
    /// Datagrams written to the socket.
    pub datagrams_out: AtomicU64,
    /// Bytes read.
    pub bytes_in: AtomicU64,
    /// Bytes written.
    pub bytes_out: AtomicU64,
    /// Send system calls (one per GSO train of datagrams).
    pub send_calls: AtomicU64,
    /// Receive system calls that returned data (`recvmmsg`, many datagrams each).
    pub recv_calls: AtomicU64,
    /// Socket send errors other than would-block.
    pub send_errors: AtomicU64,
    /// Incoming associations refused because the accept backlog was full.
    pub accept_overflow: AtomicU64,
    /// Associations that came up.
    pub associations_up: AtomicU64,
    /// Associations that went down.
    pub associations_down: AtomicU64,
    /// Messages the engine refused (too large, bad stream).
    pub send_refused: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    local: SocketAddr,
    commands: mpsc::UnboundedSender<Command>,
    stats: DriverStats,
    engine_stats: Mutex<sctp::EndpointStats>,
}

/// A bound SCTP-over-UDP transport; cheap to clone.
#[derive(Debug, Clone)]
pub struct SctpUdp {
    shared: Arc<Shared>,
}

impl SctpUdp {
    /// Binds the UDP socket and starts the driver task on the current tokio runtime.
    pub fn bind(config: SctpUdpConfig) -> io::Result<(SctpUdp, Listener)> {
        let socket = bind_socket(config.bind, config.socket_buffer)?;
        let local = socket.local_addr()?;
        let mut engine = config.engine.clone();
        // The driver reports released messages itself (see the module comment).
        engine.manual_receive_window = true;
        let a = &engine.association;
        let credit_threshold = ((a.receive_buffer as usize) / 8)
            .min((a.receive_buffer as usize).saturating_sub(a.max_message_size) / 2)
            .max(1);
        let endpoint = Endpoint::new(engine, config.seed)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (acc_tx, acc_rx) = mpsc::channel(config.accept_backlog.max(1));
        let shared = Arc::new(Shared {
            local,
            commands: cmd_tx,
            stats: DriverStats::default(),
            engine_stats: Mutex::new(sctp::EndpointStats::default()),
        });
        let udp = UdpSocketState::new(UdpSockRef::from(&socket))?;
        let gso = config.gso;
        let driver = Driver {
            socket,
            udp,
            gso,
            local: if local.ip().is_unspecified() {
                None
            } else {
                Some(local)
            },
            endpoint,
            shared: Arc::downgrade(&shared),
            commands_tx: shared.commands.clone(),
            commands: cmd_rx,
            accept: acc_tx,
            slots: HashMap::new(),
            by_id: HashMap::new(),
            next_id: 1,
            next_port: 49152,
            send_budget: config.send_budget,
            max_message: config.engine.association.max_message_size,
            connect_deadlines: Vec::new(),
            credit_threshold,
            epoch_std: std::time::Instant::now(),
            epoch_tokio: Instant::now(),
        };
        tokio::spawn(driver.run());
        Ok((SctpUdp { shared }, Listener::new(acc_rx)))
    }

    /// Driver counters.
    pub fn stats(&self) -> &DriverStats {
        &self.shared.stats
    }

    /// A copy of the engine's counters (refreshed by the driver as it works).
    pub fn engine_stats(&self) -> sctp::EndpointStats {
        self.shared
            .engine_stats
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}

impl Transport for SctpUdp {
    async fn connect(
        &self,
        remotes: &[SocketAddr],
        sctp_port: u16,
        deadline: Duration,
    ) -> Result<Association, TransportError> {
        let (tx, rx) = oneshot::channel();
        let at = Instant::now() + deadline;
        self.shared
            .commands
            .send(Command::Connect {
                remotes: remotes.to_vec(),
                sctp_port,
                deadline: at,
                reply: tx,
            })
            .map_err(|_| TransportError::Down(DownReason::TransportGone))?;
        match tokio::time::timeout_at(at + Duration::from_millis(50), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(TransportError::Down(DownReason::TransportGone)),
            Err(_) => Err(TransportError::Timeout(deadline)),
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }
}

fn bind_socket(addr: SocketAddr, buffer: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps these at rmem_max/wmem_max.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Send-side buffers, allocated once per driver.
#[derive(Default)]
struct Tx {
    /// The packet last taken from the engine.
    one: Vec<u8>,
    /// Whether `one` holds a packet (to this destination) not yet sent.
    held: Option<SocketAddr>,
    /// The GSO train being built.
    train: Vec<u8>,
}

/// Per-association bookkeeping in the driver.
struct Slot {
    id: AssocId,
    remote: SocketAddr,
    /// Events to the association's owner; `None` until it is established.
    events: Option<mpsc::UnboundedSender<AssocEvent>>,
    /// Messages the engine could not take yet, with their budget permits.
    pending: VecDeque<(Message, OwnedSemaphorePermit)>,
    /// The caller of `connect`, until the handshake completes.
    connect_reply: Option<oneshot::Sender<Result<Association, TransportError>>>,
    /// Bytes of delivered messages the owner released, not yet returned to the engine.
    released: Arc<AtomicUsize>,
}

/// Owner of a delivered message's bytes: when the last `Bytes` of the message is
/// dropped, its length is returned to the association's receive window.
struct Credit {
    bytes: Bytes,
    released: Arc<AtomicUsize>,
    threshold: usize,
    id: AssocId,
    commands: mpsc::UnboundedSender<Command>,
}

impl AsRef<[u8]> for Credit {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Credit {
    fn drop(&mut self) {
        let n = self.bytes.len();
        let before = self.released.fetch_add(n, Ordering::AcqRel);
        // One wake-up of the driver per `threshold` bytes; below it, the driver picks
        // the credit up when it next delivers to this association.
        if before < self.threshold && before + n >= self.threshold {
            let _ = self.commands.send(Command::Credit { id: self.id });
        }
    }
}

struct Driver {
    socket: UdpSocket,
    udp: UdpSocketState,
    /// Whether GSO trains may be sent.
    gso: bool,
    local: Option<SocketAddr>,
    endpoint: Endpoint,
    shared: std::sync::Weak<Shared>,
    commands_tx: mpsc::UnboundedSender<Command>,
    commands: mpsc::UnboundedReceiver<Command>,
    accept: mpsc::Sender<Association>,
    slots: HashMap<AssocHandle, Slot>,
    by_id: HashMap<AssocId, AssocHandle>,
    next_id: u64,
    next_port: u16,
    send_budget: usize,
    max_message: usize,
    connect_deadlines: Vec<(Instant, AssocHandle)>,
    /// Released bytes that make a [`Command::Credit`] worth sending.
    credit_threshold: usize,
    epoch_std: std::time::Instant,
    epoch_tokio: Instant,
}

/// `recvmmsg` calls per wake-up before other work gets a turn.
const RECV_ROUNDS: usize = 8;
/// Receive slots of one `recvmmsg` call.
const RECV_SLOTS: usize = 16;
/// Bytes of one receive slot: a whole UDP payload, or a GRO train (at most 64 KiB).
const RECV_SLOT: usize = 65_536;
/// Largest GSO train in bytes (the kernel's limit for one UDP send).
const GSO_MAX_BYTES: usize = 65_000;
/// Commands handled per wake-up before other work gets a turn.
const COMMAND_BATCH: usize = 256;

impl Driver {
    /// The engine's clock: std `Instant` derived from tokio's (which tests may pause).
    fn now(&self) -> std::time::Instant {
        self.epoch_std + Instant::now().saturating_duration_since(self.epoch_tokio)
    }

    fn to_tokio(&self, t: std::time::Instant) -> Instant {
        self.epoch_tokio + t.saturating_duration_since(self.epoch_std)
    }

    async fn run(mut self) {
        let mut buf = vec![0u8; RECV_SLOTS * RECV_SLOT];
        let mut out = Tx::default();
        loop {
            let deadline = self.next_deadline();
            let sleep = tokio::time::sleep_until(
                deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                biased;
                cmd = self.commands.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.handle_command(cmd);
                    for _ in 0..COMMAND_BATCH {
                        match self.commands.try_recv() {
                            Ok(c) => self.handle_command(c),
                            Err(_) => break,
                        }
                    }
                }
                r = self.socket.readable() => {
                    if r.is_err() { break; }
                    self.read_datagrams(&mut buf);
                }
                _ = sleep => {
                    let now = self.now();
                    self.endpoint.handle_timeout(now);
                    self.expire_connects();
                }
            }
            // Under a flood the socket is always readable and the biased select never
            // reaches the timer branch: run due timers here too, so retransmissions,
            // heartbeats and handshakes go on whatever arrives.
            if deadline.is_some_and(|d| d <= Instant::now()) {
                let now = self.now();
                self.endpoint.handle_timeout(now);
                self.expire_connects();
            }
            // Events can queue more data (pending sends resumed on Writable), which
            // must go out now: no timer would wake us for it.
            loop {
                self.flush_transmits(&mut out).await;
                if !self.dispatch_events() {
                    break;
                }
            }
            if self.shared.strong_count() == 0 && self.slots.is_empty() {
                break;
            }
        }
        for (_, slot) in self.slots.drain() {
            if let Some(ev) = slot.events {
                let _ = ev.send(AssocEvent::Down(DownReason::TransportGone));
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let engine = self.endpoint.poll_timeout().map(|t| self.to_tokio(t));
        let connect = self.connect_deadlines.iter().map(|(t, _)| *t).min();
        match (engine, connect) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn read_datagrams(&mut self, buf: &mut [u8]) {
        let mut meta = [RecvMeta::default(); RECV_SLOTS];
        for _ in 0..RECV_ROUNDS {
            let r = {
                let mut slots = buf.chunks_exact_mut(RECV_SLOT);
                let mut iovs: [IoSliceMut<'_>; RECV_SLOTS] =
                    std::array::from_fn(|_| IoSliceMut::new(slots.next().unwrap_or_default()));
                let (socket, udp) = (&self.socket, &self.udp);
                socket.try_io(Interest::READABLE, || {
                    udp.recv(UdpSockRef::from(socket), &mut iovs, &mut meta)
                })
            };
            let n = match r {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP errors surface here on some kernels; the engine's timers decide.
                Err(_) => continue,
            };
            let now = self.now();
            let (mut datagrams, mut bytes) = (0u64, 0u64);
            for (m, slot) in meta.iter().zip(buf.chunks_exact(RECV_SLOT)).take(n) {
                let data = &slot[..m.len.min(RECV_SLOT)];
                // A GRO train holds datagrams at `stride` boundaries; the last may be shorter.
                for d in data.chunks(m.stride.max(1)) {
                    datagrams += 1;
                    bytes += d.len() as u64;
                    self.endpoint.handle_datagram(now, self.local, m.addr, d);
                }
            }
            if let Some(s) = self.shared.upgrade() {
                s.stats.datagrams_in.fetch_add(datagrams, Ordering::Relaxed);
                s.stats.bytes_in.fetch_add(bytes, Ordering::Relaxed);
                s.stats.recv_calls.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends everything the engine wants sent, coalescing runs of equal-sized packets to
    /// one destination into GSO trains.
    async fn flush_transmits(&mut self, tx: &mut Tx) {
        let max_segments = if self.gso {
            self.udp.max_gso_segments().max(1)
        } else {
            1
        };
        let (mut datagrams, mut bytes, mut errors, mut calls) = (0u64, 0u64, 0u64, 0u64);
        loop {
            tx.train.clear();
            let mut dst = None;
            let mut segment = 0;
            let mut segments = 0;
            loop {
                // A packet that did not fit the previous train starts this one.
                if tx.held.is_none() {
                    let now = self.now();
                    if let Some((d, _src)) = self.endpoint.poll_transmit_into(now, &mut tx.one) {
                        tx.held = Some(d);
                    }
                }
                let Some(d) = tx.held else { break };
                let len = tx.one.len();
                let fits = match dst {
                    None => true,
                    Some(cur) => {
                        cur == d
                            && len <= segment
                            && segments < max_segments
                            && tx.train.len() + len <= GSO_MAX_BYTES
                    }
                };
                if !fits {
                    break;
                }
                if dst.is_none() {
                    dst = Some(d);
                    segment = len;
                }
                tx.train.extend_from_slice(&tx.one);
                tx.held = None;
                segments += 1;
                // A shorter packet ends a train (GSO's last segment may be short).
                if len < segment || max_segments == 1 {
                    break;
                }
            }
            let Some(destination) = dst else { break };
            let transmit = quinn_udp::Transmit {
                destination,
                ecn: None,
                contents: &tx.train,
                segment_size: (segments > 1).then_some(segment),
                src_ip: None,
            };
            loop {
                let (socket, udp) = (&self.socket, &self.udp);
                let r = socket.try_io(Interest::WRITABLE, || {
                    udp.send(UdpSockRef::from(socket), &transmit)
                });
                match r {
                    Ok(()) => {
                        calls += 1;
                        datagrams += segments as u64;
                        bytes += tx.train.len() as u64;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if self.socket.writable().await.is_err() {
                            return;
                        }
                    }
                    Err(_) => {
                        // Unreachable peer, EPERM, ...: the datagrams are lost like on
                        // a network; retransmission timers handle it.
                        errors += 1;
                        break;
                    }
                }
            }
        }
        if let Some(s) = self.shared.upgrade() {
            s.stats
                .datagrams_out
                .fetch_add(datagrams, Ordering::Relaxed);
            s.stats.bytes_out.fetch_add(bytes, Ordering::Relaxed);
            s.stats.send_errors.fetch_add(errors, Ordering::Relaxed);
            s.stats.send_calls.fetch_add(calls, Ordering::Relaxed);
            if let Ok(mut st) = s.engine_stats.lock() {
                st.clone_from(self.endpoint.stats());
            }
        }
    }

    fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::Connect {
                remotes,
                sctp_port,
                deadline,
                reply,
            } => self.connect(remotes, sctp_port, deadline, reply),
            Command::Send { id, msg, permit } => {
                let Some(&h) = self.by_id.get(&id) else {
                    return;
                };
                let queued = self.slots.get(&h).is_some_and(|s| !s.pending.is_empty());
                if queued {
                    if let Some(s) = self.slots.get_mut(&h) {
                        s.pending.push_back((msg, permit));
                    }
                } else {
                    self.try_send(h, msg, permit);
                }
            }
            Command::Close { id } => {
                if let Some(&h) = self.by_id.get(&id) {
                    let now = self.now();
                    self.endpoint.shutdown(now, h);
                }
            }
            Command::Abort { id, reason } => {
                if let Some(&h) = self.by_id.get(&id) {
                    self.endpoint.abort(h, reason.as_bytes());
                }
            }
            Command::Credit { id } => {
                if let Some(&h) = self.by_id.get(&id) {
                    self.return_credit(h);
                }
            }
        }
    }

    /// Hands one message to the engine; keeps it (and its permit) when the engine's
    /// buffer is full.
    fn try_send(&mut self, h: AssocHandle, msg: Message, permit: OwnedSemaphorePermit) {
        match self
            .endpoint
            .send(h, msg.stream, msg.ppid, msg.ordered, msg.data.clone())
        {
            Ok(()) => drop(permit),
            Err(SendError::WouldBlock { .. }) => {
                if let Some(s) = self.slots.get_mut(&h) {
                    s.pending.push_front((msg, permit));
                }
            }
            Err(e) => {
                if let Some(s) = self.shared.upgrade() {
                    s.stats.send_refused.fetch_add(1, Ordering::Relaxed);
                }
                tracing::warn!(assoc = ?h, error = %e, len = msg.data.len(), "engine refused message; aborting association");
                self.endpoint.abort(h, b"message refused");
            }
        }
    }

    fn flush_pending(&mut self, h: AssocHandle) {
        while let Some((msg, permit)) = self.slots.get_mut(&h).and_then(|s| s.pending.pop_front()) {
            let before = self.slots.get(&h).map(|s| s.pending.len()).unwrap_or(0);
            self.try_send(h, msg, permit);
            let after = self.slots.get(&h).map(|s| s.pending.len()).unwrap_or(0);
            if after > before {
                break; // put back: buffer full again
            }
        }
    }

    fn connect(
        &mut self,
        remotes: Vec<SocketAddr>,
        sctp_port: u16,
        deadline: Instant,
        reply: oneshot::Sender<Result<Association, TransportError>>,
    ) {
        let now = self.now();
        // A fresh local SCTP port per association, so several associations to the same
        // peer (one per session) coexist on one UDP socket.
        let mut result = Err(sctp::ConnectError::Exists);
        for _ in 0..1024 {
            let port = self.next_port;
            self.next_port = if self.next_port == u16::MAX {
                49152
            } else {
                self.next_port + 1
            };
            result = self.endpoint.connect(now, &remotes, port, sctp_port);
            if !matches!(result, Err(sctp::ConnectError::Exists)) {
                break;
            }
        }
        match result {
            Ok(h) => {
                let id = self.fresh_id();
                self.by_id.insert(id, h);
                self.slots.insert(
                    h,
                    Slot {
                        id,
                        remote: remotes[0],
                        events: None,
                        pending: VecDeque::new(),
                        connect_reply: Some(reply),
                        released: Arc::new(AtomicUsize::new(0)),
                    },
                );
                self.connect_deadlines.push((deadline, h));
            }
            Err(e) => {
                let _ = reply.send(Err(TransportError::Refused(e.to_string())));
            }
        }
    }

    fn expire_connects(&mut self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        self.connect_deadlines.retain(|&(t, h)| {
            if t <= now {
                expired.push(h);
                false
            } else {
                true
            }
        });
        for h in expired {
            if let Some(slot) = self.slots.get_mut(&h) {
                if let Some(reply) = slot.connect_reply.take() {
                    let _ = reply.send(Err(TransportError::Timeout(Duration::ZERO)));
                    self.endpoint.abort(h, b"connect deadline");
                }
            }
        }
    }

    fn fresh_id(&mut self) -> AssocId {
        let id = AssocId(self.next_id);
        self.next_id += 1;
        id
    }

    fn new_association(&mut self, h: AssocHandle, id: AssocId, remote: SocketAddr) -> Association {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(slot) = self.slots.get_mut(&h) {
            slot.events = Some(tx);
        }
        let local_port = self
            .endpoint
            .association_ref(h)
            .map(|a| a.ports().0)
            .unwrap_or(0);
        Association::new(
            id,
            remote,
            local_port,
            self.commands_tx.clone(),
            rx,
            self.send_budget,
            self.max_message,
        )
    }

    /// Hands engine events to associations; true when any was handled.
    fn dispatch_events(&mut self) -> bool {
        let mut any = false;
        while let Some((h, ev)) = self.endpoint.poll_event() {
            any = true;
            match ev {
                Event::Connected => self.on_connected(h),
                Event::Data {
                    stream,
                    ppid,
                    ordered,
                    bytes,
                } => self.deliver_data(h, stream, ppid, ordered, bytes),
                Event::Writable => self.flush_pending(h),
                Event::PathUp { addr } => self.deliver(h, AssocEvent::PathUp(addr)),
                Event::PathDown { addr } => self.deliver(h, AssocEvent::PathDown(addr)),
                Event::PrimaryChanged { addr } => self.deliver(h, AssocEvent::PrimaryChanged(addr)),
                Event::PeerError(causes) => {
                    tracing::debug!(assoc = ?h, ?causes, "peer reported an operation error");
                }
                Event::Closed { reason } => self.on_closed(h, reason),
            }
        }
        any
    }

    fn on_connected(&mut self, h: AssocHandle) {
        if let Some(s) = self.shared.upgrade() {
            s.stats.associations_up.fetch_add(1, Ordering::Relaxed);
        }
        self.connect_deadlines.retain(|&(_, x)| x != h);
        if let Some(slot) = self.slots.get_mut(&h) {
            // Outgoing: answer the caller.
            if let Some(reply) = slot.connect_reply.take() {
                let (id, remote) = (slot.id, slot.remote);
                let assoc = self.new_association(h, id, remote);
                if let Err(Ok(assoc)) = reply.send(Ok(assoc)) {
                    // The caller gave up: its deadline passed.
                    drop(assoc);
                }
            }
            return;
        }
        // Incoming: a peer completed the handshake with us.
        let remote = self
            .endpoint
            .association_ref(h)
            .map(|a| a.primary())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let id = self.fresh_id();
        self.by_id.insert(id, h);
        self.slots.insert(
            h,
            Slot {
                id,
                remote,
                events: None,
                pending: VecDeque::new(),
                connect_reply: None,
                released: Arc::new(AtomicUsize::new(0)),
            },
        );
        let assoc = self.new_association(h, id, remote);
        if let Err(e) = self.accept.try_send(assoc) {
            if let Some(s) = self.shared.upgrade() {
                s.stats.accept_overflow.fetch_add(1, Ordering::Relaxed);
            }
            // Dropping the association aborts it.
            drop(e);
        }
    }

    /// Returns the bytes the owner released to the engine's receive window.
    fn return_credit(&mut self, h: AssocHandle) {
        let Some(slot) = self.slots.get(&h) else {
            return;
        };
        let n = slot.released.swap(0, Ordering::AcqRel);
        if n > 0 {
            self.endpoint.consumed(h, n);
        }
    }

    fn deliver_data(
        &mut self,
        h: AssocHandle,
        stream: u16,
        ppid: u32,
        ordered: bool,
        bytes: Bytes,
    ) {
        self.return_credit(h);
        let Some(slot) = self.slots.get(&h) else {
            return;
        };
        let data = if bytes.is_empty() {
            bytes
        } else {
            Bytes::from_owner(Credit {
                bytes,
                released: slot.released.clone(),
                threshold: self.credit_threshold,
                id: slot.id,
                commands: self.commands_tx.clone(),
            })
        };
        self.deliver(
            h,
            AssocEvent::Message(Message {
                stream,
                ppid,
                ordered,
                data,
            }),
        );
    }

    fn deliver(&mut self, h: AssocHandle, ev: AssocEvent) {
        let Some(slot) = self.slots.get(&h) else {
            return;
        };
        if let Some(tx) = &slot.events {
            if tx.send(ev).is_err() {
                // Nobody listens any more.
                self.endpoint.abort(h, b"receiver gone");
            }
        }
    }

    fn on_closed(&mut self, h: AssocHandle, reason: CloseReason) {
        if let Some(s) = self.shared.upgrade() {
            s.stats.associations_down.fetch_add(1, Ordering::Relaxed);
        }
        self.connect_deadlines.retain(|&(_, x)| x != h);
        let Some(slot) = self.slots.remove(&h) else {
            return;
        };
        self.by_id.remove(&slot.id);
        let down = down_reason(reason);
        if let Some(reply) = slot.connect_reply {
            let _ = reply.send(Err(TransportError::Down(down.clone())));
        }
        if let Some(tx) = slot.events {
            let _ = tx.send(AssocEvent::Down(down));
        }
    }
}

fn down_reason(r: CloseReason) -> DownReason {
    match r {
        CloseReason::Shutdown => DownReason::Shutdown,
        CloseReason::Aborted(causes) => DownReason::PeerAbort(format!("{causes:?}")),
        CloseReason::LocalAbort(cause) => DownReason::LocalAbort(format!("{cause:?}")),
        CloseReason::Timeout => DownReason::Timeout,
        CloseReason::HandshakeTimeout => DownReason::HandshakeTimeout,
        CloseReason::PeerRestarted => DownReason::PeerRestarted,
    }
}
