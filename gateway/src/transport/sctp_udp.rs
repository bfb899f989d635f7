//! Our SCTP engine driven over one UDP socket (RFC 6951 encapsulation).
//!
//! The sans-IO [`sctp::Endpoint`] sits behind a lock shared by every task of the
//! transport, and the tasks that use an association do its I/O themselves where they
//! can, so that a message needs no hand-off between tasks:
//! - **Sending.** A task that sends locks the engine briefly, hands its message over and
//!   writes the resulting datagrams itself.
//! - **Receiving.** The socket's read readiness is always registered with one waker of
//!   ours, which hands the *duty to read* to an association owner waiting for an event
//!   (the last one to start waiting) or, when none waits, to the driver task. The holder
//!   reads a batch, feeds the engine, hands the events out (its own land in its channel
//!   without waking anyone) and registers the readiness again. An owner whose receive is
//!   dropped while it holds the duty passes it to the driver task, so no readiness is
//!   lost (see [`ReadDuty`]).
//!
//! One driver task runs the timers, reads when no owner waits (or an owner read a full
//! batch and more is queued), waits out a full socket and handles the rarer commands
//! (connect, close, abort, receive-window credit); it is woken when a task moved a
//! deadline earlier than it sleeps or found the socket full. Events reach an
//! association's owner over its channel, handed over after the lock is released (a
//! woken owner that sends at once must not find it taken).
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

use std::collections::VecDeque;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit};
use tokio::time::Instant;

use sctp::{AssocHandle, CloseReason, Endpoint, EndpointConfig, Event, HandleMap, SendError};

use crate::telemetry::{Counter, MetricsError, Registry};

use super::{
    AssocEvent, AssocId, Association, Command, DirectIo, DownReason, Listener, Message, Transport,
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
    /// Defaults for a given bind address: 4 MiB socket buffers, 1 MiB send budget, GSO
    /// on unless the environment sets `POOLGATE_GSO=off` (see [`gso_from_env`]).
    pub fn new(bind: SocketAddr) -> Self {
        SctpUdpConfig {
            bind,
            engine: EndpointConfig::default(),
            socket_buffer: 4 << 20,
            send_budget: 1 << 20,
            accept_backlog: 1024,
            seed: rand::random(),
            gso: gso_from_env(),
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

/// Whether GSO trains may be sent, from `POOLGATE_GSO` (`off`, `0`, `false` or `no`
/// turn it off; anything else, or unset, leaves it on). A packet capture on loopback
/// (tcpdump, tshark) sees a GSO train as one datagram holding several SCTP packets,
/// which the dissector reports as a bad checksum; operators capturing turn it off.
pub fn gso_from_env() -> bool {
    !std::env::var("POOLGATE_GSO").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "off" | "0" | "false" | "no"
        )
    })
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
    /// Messages sent on an association already shutting down (the peer's SHUTDOWN
    /// crossed them); dropped, as RFC 9260 §9.2 says, without aborting.
    pub dropped_closing: AtomicU64,
    /// Receive batches read by an association owner's task rather than the driver's.
    pub owner_reads: AtomicU64,
}

/// The state every task of one transport reaches: the socket, and the engine behind a
/// lock. Sending tasks lock it briefly to hand a message to the engine and write the
/// datagrams themselves; the driver task locks it to feed received datagrams and run
/// timers.
#[derive(Debug)]
struct Engine {
    io: Io,
    core: Mutex<Core>,
    /// Wakes the driver task: a timer moved earlier than it sleeps, or the socket
    /// refused a datagram and must be waited on.
    wake: Notify,
    /// The driver task's command channel.
    commands: mpsc::UnboundedSender<Command>,
    /// Held from taking an outbox (under `core`) until it is handed out, so that
    /// batches taken by different threads reach each association's owner in order:
    /// taken under `core`, handed out without it, a later batch could overtake.
    handout: Mutex<()>,
    /// Who reads the socket next.
    reader: Arc<ReadDuty>,
    /// The waker the socket's read readiness is registered with: `reader` as a waker.
    dispatch: Waker,
    /// Receive buffers, used by whoever holds the duty to read.
    rx: Mutex<RxBuf>,
}

/// Who holds the duty to read the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// Nobody: the readiness is registered with the dispatch waker, which hands the
    /// duty out when the socket becomes readable.
    Armed,
    /// The driver task.
    Driver,
    /// The owner of this association, in its receive.
    Owner(AssocId),
}

/// The duty to read the socket, and the owner next in line for it. As a waker (the
/// one the socket's readiness is registered with) it hands the duty out.
///
/// Only the holder polls the readiness, and it lets go by setting [`Holder::Armed`]
/// *before* the poll that registers the waker again: a readiness the poll finds is
/// taken back (unless a stale registration fired in between and the duty went
/// elsewhere), and one that comes after fires the waker. A wake while someone holds
/// the duty is dropped: the holder's last poll will see that readiness.
#[derive(Debug)]
struct ReadDuty {
    state: Mutex<DutyState>,
    /// Wakes the driver task when the duty falls to it.
    driver: Notify,
}

#[derive(Debug)]
struct DutyState {
    holder: Holder,
    /// The owner that last started waiting for an event (one only: any owner can read
    /// for all of them).
    waiting: Option<(AssocId, Waker)>,
}

impl ReadDuty {
    fn state(&self) -> MutexGuard<'_, DutyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn holder(&self) -> Holder {
        self.state().holder
    }

    /// Lets go of the duty before polling the readiness.
    fn arm(&self) {
        self.state().holder = Holder::Armed;
    }

    /// Takes the duty back after a poll found the socket readable; false when a stale
    /// registration fired first and the duty went to someone else.
    fn reclaim(&self, me: Holder) -> bool {
        let mut s = self.state();
        if s.holder != Holder::Armed {
            return false;
        }
        s.holder = me;
        true
    }

    /// Gives the duty to the driver task, whose wake-up follows the lock's release.
    fn hand_to_driver(&self, mut s: MutexGuard<'_, DutyState>) {
        s.holder = Holder::Driver;
        drop(s);
        self.driver.notify_one();
    }
}

impl Wake for ReadDuty {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut s = self.state();
        if s.holder != Holder::Armed {
            return;
        }
        match s.waiting.take() {
            Some((id, w)) => {
                s.holder = Holder::Owner(id);
                drop(s);
                w.wake();
            }
            None => self.hand_to_driver(s),
        }
    }
}

/// Receive buffers for one `recvmmsg`: the slots and their metadata.
struct RxBuf {
    /// One buffer per slot: a slot that received a large datagram or a GRO train lends
    /// its buffer to the engine (see [`ZERO_COPY_MIN`]) and gets it back, or a new one.
    slots: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
    /// Slots to offer the next call.
    hint: usize,
}

impl RxBuf {
    fn new(slots: usize) -> Self {
        RxBuf {
            slots: (0..slots).map(|_| vec![0u8; RECV_SLOT]).collect(),
            meta: vec![RecvMeta::default(); slots],
            hint: slots,
        }
    }
}

impl std::fmt::Debug for RxBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxBuf")
            .field("slots", &self.meta.len())
            .finish()
    }
}

/// The socket and its counters; used without the engine lock.
#[derive(Debug)]
struct Io {
    /// The socket, registered with tokio; readiness is cleared by hand after a short
    /// batch (see [`read_datagrams`]).
    socket: AsyncFd<std::net::UdpSocket>,
    udp: UdpSocketState,
    /// Whether GSO trains may be sent.
    gso: bool,
    stats: DriverStats,
}

impl Engine {
    /// Takes the outbox and hands it out after releasing `core`, in lock order.
    fn release(&self, mut core: MutexGuard<'_, Core>) {
        let outbox = std::mem::take(&mut core.outbox);
        let order = self.handout.lock().unwrap_or_else(|e| e.into_inner());
        drop(core);
        if !outbox.is_empty() {
            hand_out(outbox, &self.commands);
        }
        drop(order);
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock leaves the engine as consistent as the panicking
        // call did; the engine itself never panics on input.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a sending task worked on the engine: lets the driver task know when it must
    /// look again (earlier deadline, blocked socket).
    fn after_user_work(&self, core: MutexGuard<'_, Core>) {
        let wake = core.driver_needed();
        self.release(core);
        if wake {
            self.wake.notify_one();
        }
    }
}

impl Engine {
    /// Reads the socket while `me` holds the duty to: one batch (up to [`RECV_ROUNDS`]
    /// system calls), then the readiness is registered again, or, when more is queued
    /// already, the duty passes to the driver task (which reads it after its other
    /// work; an owner goes back to its own events). An owner also hands out what it
    /// read; the driver task does that after its turn.
    fn read_as(&self, me: Holder) {
        let mut cx = Context::from_waker(&self.dispatch);
        let mut rx = self.rx.lock().unwrap_or_else(|e| e.into_inner());
        for round in 0..2 {
            self.reader.arm();
            let ready = match self.io.socket.poll_read_ready(&mut cx) {
                // Registered: the next datagram fires the dispatch waker. (Also when
                // the task's cooperative budget ran out: tokio then wakes the waker
                // at once, which hands the duty on.)
                Poll::Pending => return,
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %e, "UDP socket readiness failed");
                    return;
                }
                Poll::Ready(Ok(ready)) => ready,
            };
            if !self.reader.reclaim(me) {
                return;
            }
            if round == 1 {
                drop(ready);
                self.reader.hand_to_driver(self.reader.state());
                return;
            }
            read_datagrams(self, ready, &mut rx);
            if me != Holder::Driver {
                self.io.stats.owner_reads.fetch_add(1, Ordering::Relaxed);
                let mut core = self.lock();
                core.pump(&self.io);
                self.after_user_work(core);
            }
        }
    }
}

impl DirectIo for Engine {
    fn send(
        &self,
        id: AssocId,
        msg: Message,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), TransportError> {
        let mut core = self.lock();
        if core.stopped {
            return Err(TransportError::Down(DownReason::TransportGone));
        }
        // An association that is gone already reports Down on its event channel.
        let Some(&h) = core.by_id.get(&id) else {
            return Ok(());
        };
        core.active = true;
        let queued = core.slots.get(&h).is_some_and(|s| !s.pending.is_empty());
        if queued {
            if let Some(s) = core.slots.get_mut(&h) {
                s.pending.push_back((msg, permit));
            }
        } else {
            core.try_send(&self.io, h, msg, permit);
        }
        core.pump(&self.io);
        self.after_user_work(core);
        Ok(())
    }

    fn read_turn(&self, id: AssocId) -> bool {
        if self.reader.holder() != Holder::Owner(id) {
            return false;
        }
        self.read_as(Holder::Owner(id));
        true
    }

    fn wait(&self, id: AssocId, waker: &Waker) {
        let mut s = self.reader.state();
        match &mut s.waiting {
            Some((who, w)) if *who == id => w.clone_from(waker),
            other => *other = Some((id, waker.clone())),
        }
    }

    fn leave(&self, id: AssocId) {
        let mut s = self.reader.state();
        if s.waiting.as_ref().is_some_and(|(who, _)| *who == id) {
            s.waiting = None;
        }
        if s.holder == Holder::Owner(id) {
            self.reader.hand_to_driver(s);
        }
    }
}

#[derive(Debug)]
struct Shared {
    local: SocketAddr,
    commands: mpsc::UnboundedSender<Command>,
    engine: Arc<Engine>,
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
        let udp = UdpSocketState::new(UdpSockRef::from(&socket))?;
        // Registered for reading only. With write interest too, every datagram the
        // kernel frees (`sock_wfree` on loopback, once per send) wakes the epoll waiter
        // for EPOLLOUT: one spurious thread wake-up per datagram sent. Sends go straight
        // to the non-blocking socket; a full socket is waited out through a second,
        // short-lived registration (see [`wait_writable`]).
        // SAFETY: the std socket owns its descriptor, which stays open and the same for as
        // long as the AsyncFd owns the socket.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }?;
        let mut engine = config.engine.clone();
        // The driver reports released messages itself (see the module comment).
        engine.manual_receive_window = true;
        let a = &engine.association;
        let credit_threshold = ((a.receive_buffer as usize) / 8)
            .min((a.receive_buffer as usize).saturating_sub(a.max_message_size) / 2)
            .max(1);
        let rto_min = a.rto_min;
        let endpoint = Endpoint::new(engine, config.seed)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (acc_tx, acc_rx) = mpsc::channel(config.accept_backlog.max(1));
        let commands_tx = cmd_tx.clone();
        let reader = Arc::new(ReadDuty {
            // The driver's first turn registers the readiness.
            state: Mutex::new(DutyState {
                holder: Holder::Driver,
                waiting: None,
            }),
            driver: Notify::new(),
        });
        reader.driver.notify_one();
        let engine = Arc::new_cyclic(|me: &Weak<Engine>| Engine {
            handout: Mutex::new(()),
            dispatch: Waker::from(reader.clone()),
            reader,
            rx: Mutex::new(RxBuf::new(RECV_SLOTS)),
            io: Io {
                socket,
                udp,
                gso: config.gso,
                stats: DriverStats::default(),
            },
            core: Mutex::new(Core {
                me: me.clone(),
                local: if local.ip().is_unspecified() {
                    None
                } else {
                    Some(local)
                },
                endpoint,
                commands_tx,
                accept: acc_tx,
                slots: HandleMap::default(),
                by_id: HandleMap::default(),
                next_id: 1,
                next_port: 49152,
                send_budget: config.send_budget,
                max_message: config.engine.association.max_message_size,
                connect_deadlines: Vec::new(),
                credit_threshold,
                epoch_std: std::time::Instant::now(),
                epoch_tokio: Instant::now(),
                tx: Tx::new(),
                tx_blocked: false,
                armed: None,
                active: false,
                rto_min,
                stopped: false,
                outbox: Vec::new(),
            }),
            wake: Notify::new(),
            commands: cmd_tx.clone(),
        });
        let shared = Arc::new(Shared {
            local,
            commands: cmd_tx,
            engine: engine.clone(),
        });
        tokio::spawn(run(engine, Arc::downgrade(&shared), cmd_rx));
        Ok((SctpUdp { shared }, Listener::new(acc_rx)))
    }

    /// Driver counters.
    pub fn stats(&self) -> &DriverStats {
        &self.shared.engine.io.stats
    }

    /// A copy of the engine's counters.
    pub fn engine_stats(&self) -> sctp::EndpointStats {
        self.shared.engine.lock().endpoint.stats().clone()
    }

    /// Exports this transport's counters (driver, endpoint and the sum over its
    /// associations) as `poolgate_sctp_*` series labelled `transport="<name>"`. They
    /// are read at scrape time, under the engine lock for a moment; once the transport
    /// is gone its series keep their last values.
    pub fn export_metrics(&self, registry: &Registry, name: &str) -> Result<(), MetricsError> {
        let gauge = registry
            .shared_gauge_vec(
                "poolgate_sctp_associations",
                "SCTP associations held now (any state)",
                &["transport"],
            )?
            .with(&[name])?;
        let mut series: Vec<(Counter, Pick)> = Vec::new();
        for (family, help, label, values) in SCTP_COUNTERS {
            let labels: &[&str] = if label.is_empty() {
                &["transport"]
            } else {
                &["transport", label]
            };
            let fam = registry.shared_counter_vec(family, help, labels)?;
            for (value, pick) in *values {
                let c = if label.is_empty() {
                    fam.with(&[name])?
                } else {
                    fam.with(&[name, value])?
                };
                series.push((c, *pick));
            }
        }
        let engine = Arc::downgrade(&self.shared.engine);
        registry.add_collector(Box::new(move || {
            let Some(engine) = engine.upgrade() else {
                return false;
            };
            let snap = {
                let core = engine.lock();
                Snapshot {
                    endpoint: core.endpoint.stats().clone(),
                    assocs: core.endpoint.association_totals(),
                    count: core.endpoint.association_count(),
                }
            };
            gauge.set(snap.count as f64);
            for (c, pick) in &series {
                c.mirror(pick(&engine.io.stats, &snap));
            }
            true
        }));
        Ok(())
    }
}

/// What a scrape reads under the engine lock.
struct Snapshot {
    endpoint: sctp::EndpointStats,
    assocs: sctp::AssociationStats,
    count: usize,
}

/// Reads one counter from the driver's and the engine's counters.
type Pick = fn(&DriverStats, &Snapshot) -> u64;

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// The exported counter families: name, help, second label (empty: none) and the
/// series of each label value.
#[allow(clippy::type_complexity)]
const SCTP_COUNTERS: &[(&str, &str, &str, &[(&str, Pick)])] = &[
    (
        "poolgate_sctp_datagrams_total",
        "UDP datagrams carrying SCTP, read and written",
        "direction",
        &[("in", |d, _| load(&d.datagrams_in)), ("out", |d, _| load(&d.datagrams_out))],
    ),
    (
        "poolgate_sctp_bytes_total",
        "UDP payload bytes read and written",
        "direction",
        &[("in", |d, _| load(&d.bytes_in)), ("out", |d, _| load(&d.bytes_out))],
    ),
    (
        "poolgate_sctp_system_calls_total",
        "Socket system calls (a GSO train or a recvmmsg batch is one)",
        "call",
        &[("send", |d, _| load(&d.send_calls)), ("recv", |d, _| load(&d.recv_calls))],
    ),
    (
        "poolgate_sctp_owner_reads_total",
        "Receive batches read by a task waiting on an association rather than the driver task",
        "",
        &[("", |d, _| load(&d.owner_reads))],
    ),
    (
        "poolgate_sctp_send_errors_total",
        "Socket send errors other than a full socket",
        "",
        &[("", |d, _| load(&d.send_errors))],
    ),
    (
        "poolgate_sctp_accept_overflow_total",
        "Incoming associations refused because the accept backlog was full",
        "",
        &[("", |d, _| load(&d.accept_overflow))],
    ),
    (
        "poolgate_sctp_association_events_total",
        "Associations that came up, went down, or whose peer restarted",
        "event",
        &[
            ("up", |d, _| load(&d.associations_up)),
            ("down", |d, _| load(&d.associations_down)),
            ("peer_restart", |_, s| s.endpoint.restarts),
        ],
    ),
    (
        "poolgate_sctp_messages_dropped_total",
        "Messages not sent: refused by the engine (the association is aborted) or sent while it shut down",
        "reason",
        &[
            ("refused", |d, _| load(&d.send_refused)),
            ("shutting_down", |d, _| load(&d.dropped_closing)),
        ],
    ),
    (
        "poolgate_sctp_packets_dropped_total",
        "Received SCTP packets dropped, by reason",
        "reason",
        &[
            ("malformed", |_, s| s.endpoint.malformed),
            ("bad_checksum", |_, s| s.endpoint.bad_checksum),
            ("out_of_the_blue", |_, s| s.endpoint.unknown_association),
            ("bad_vtag", |_, s| s.endpoint.bad_vtag + s.assocs.bad_vtag),
        ],
    ),
    (
        "poolgate_sctp_cookies_refused_total",
        "COOKIE ECHOs refused: bad MAC or layout, or stale",
        "reason",
        &[
            ("invalid", |_, s| s.endpoint.cookies_invalid),
            ("stale", |_, s| s.endpoint.cookies_stale),
        ],
    ),
    (
        "poolgate_sctp_stateless_replies_total",
        "INITs answered without state, and stateless replies dropped (queue full) or rate-limited per source",
        "outcome",
        &[
            ("init_answered", |_, s| s.endpoint.inits_answered),
            ("dropped", |_, s| s.endpoint.replies_dropped),
            ("rate_limited", |_, s| s.endpoint.replies_rate_limited),
        ],
    ),
    (
        "poolgate_sctp_chunks_dropped_total",
        "Received chunks dropped: undecodable, duplicate DATA, or DATA beyond the window",
        "reason",
        &[
            ("malformed", |_, s| s.assocs.malformed_chunks + s.assocs.reconfig_malformed),
            ("duplicate", |_, s| s.assocs.duplicates_received),
            ("no_room", |_, s| s.assocs.data_dropped),
        ],
    ),
    (
        "poolgate_sctp_data_chunks_total",
        "DATA chunks sent for the first time and received (duplicates included)",
        "direction",
        &[
            ("out", |_, s| s.assocs.data_chunks_sent),
            ("in", |_, s| s.assocs.data_chunks_received),
        ],
    ),
    (
        "poolgate_sctp_retransmitted_chunks_total",
        "DATA chunks retransmitted (T3 and fast retransmission)",
        "",
        &[("", |_, s| s.assocs.retransmissions)],
    ),
    (
        "poolgate_sctp_retransmission_events_total",
        "T3-rtx timer expiries and fast retransmit events",
        "kind",
        &[
            ("t3_timeout", |_, s| s.assocs.t3_expiries),
            ("fast", |_, s| s.assocs.fast_retransmits),
        ],
    ),
    (
        "poolgate_sctp_heartbeats_total",
        "HEARTBEATs sent and answered",
        "event",
        &[
            ("sent", |_, s| s.assocs.heartbeats_sent),
            ("acked", |_, s| s.assocs.heartbeat_acks_received),
        ],
    ),
];

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
            // The driver does not know the caller's duration; name it here.
            Ok(Ok(Err(TransportError::Timeout(_)))) => Err(TransportError::Timeout(deadline)),
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(TransportError::Down(DownReason::TransportGone)),
            Err(_) => Err(TransportError::Timeout(deadline)),
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }
}

fn bind_socket(addr: SocketAddr, buffer: usize) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps these at rmem_max/wmem_max.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Send-side buffers, allocated once per driver.
struct Tx {
    /// A packet taken from the engine that did not fit the train it was appended to.
    one: Vec<u8>,
    /// Whether `one` holds a packet (to this destination) not yet sent.
    held: Option<SocketAddr>,
    /// The GSO train being built or waiting for room in the socket.
    train: Vec<u8>,
    /// The train's destination, segment size and segment count once built.
    train_to: Option<(SocketAddr, usize, usize)>,
}

impl Tx {
    fn new() -> Tx {
        // Both sized for the largest train and one more packet: they trade places when a
        // held packet starts the next train, and neither may then grow packet by packet.
        let cap = GSO_MAX_BYTES + RECV_SLOT;
        Tx {
            one: Vec::with_capacity(cap),
            held: None,
            train: Vec::with_capacity(cap),
            train_to: None,
        }
    }
}

/// Per-association bookkeeping in the driver.
struct Slot {
    id: AssocId,
    remote: SocketAddr,
    /// Events to the association's owner; `None` until it is established.
    events: Option<mpsc::UnboundedSender<AssocEvent>>,
    /// Messages the engine could not take yet, with their budget permits.
    pending: VecDeque<(Message, OwnedSemaphorePermit)>,
    /// The owner closed while messages were still pending: SHUTDOWN once they are in
    /// the engine (a graceful close must not drop the tail of the data).
    close_requested: bool,
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

/// The engine and the driver's bookkeeping, behind [`Engine::core`].
struct Core {
    /// This transport's engine, for the associations it hands out.
    me: Weak<Engine>,
    local: Option<SocketAddr>,
    endpoint: Endpoint,
    commands_tx: mpsc::UnboundedSender<Command>,
    accept: mpsc::Sender<Association>,
    slots: HandleMap<AssocHandle, Slot>,
    by_id: HandleMap<AssocId, AssocHandle>,
    next_id: u64,
    next_port: u16,
    send_budget: usize,
    max_message: usize,
    connect_deadlines: Vec<(Instant, AssocHandle)>,
    /// Released bytes that make a [`Command::Credit`] worth sending.
    credit_threshold: usize,
    epoch_std: std::time::Instant,
    epoch_tokio: Instant,
    /// Send buffers (the GSO train and a packet held over).
    tx: Tx,
    /// The socket refused a datagram; the driver task waits for it to drain.
    tx_blocked: bool,
    /// When the driver task's timer fires next.
    armed: Option<Instant>,
    /// A sending task queued data since the driver last armed its timer.
    active: bool,
    /// No retransmission timer is shorter than this: while data flows the driver never
    /// sleeps longer, so new data rarely needs to wake it for its timer.
    rto_min: Duration,
    /// The driver task ended; nothing is sent any more.
    stopped: bool,
    /// Events for association owners, handed over once the lock is released (a woken
    /// owner that sends at once must not find the lock taken).
    outbox: Vec<Outgoing>,
}

/// An event on its way to an association's owner.
struct Outgoing {
    /// The association, when a vanished owner should make us abort it.
    id: Option<AssocId>,
    to: mpsc::UnboundedSender<AssocEvent>,
    ev: AssocEvent,
}

/// What became of a message handed to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handed {
    /// Taken, or kept until the engine has room.
    Taken,
    /// The association is shutting down; dropped.
    DroppedClosing,
    /// Refused (too large, bad stream); the association is aborted.
    Refused,
}

impl Handed {
    fn count(self, stats: &DriverStats) {
        match self {
            Handed::Taken => {}
            Handed::DroppedClosing => {
                stats.dropped_closing.fetch_add(1, Ordering::Relaxed);
            }
            Handed::Refused => {
                stats.send_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Hands events to their owners (outside the engine lock); an owner that went away
/// gets its association aborted.
fn hand_out(outbox: Vec<Outgoing>, commands: &mpsc::UnboundedSender<Command>) {
    for o in outbox {
        if o.to.send(o.ev).is_err() {
            if let Some(id) = o.id {
                // Nobody listens any more.
                let _ = commands.send(Command::Abort {
                    id,
                    reason: "receiver gone".into(),
                });
            }
        }
    }
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("associations", &self.slots.len())
            .field("tx_blocked", &self.tx_blocked)
            .finish_non_exhaustive()
    }
}

/// `recvmmsg` calls per wake-up before other work gets a turn.
const RECV_ROUNDS: usize = 8;
/// Receive slots of one `recvmmsg` call.
const RECV_SLOTS: usize = 16;
/// Bytes of one receive slot: a whole UDP payload, or a GRO train (at most 64 KiB).
const RECV_SLOT: usize = 65_536;
/// A datagram at least this large, or a GRO train, is handed to the engine without a
/// copy: its slot buffer becomes the datagrams', and the engine copies out what it keeps
/// that is under a quarter of the buffer, so what it delivers keeps at most four times
/// its size alive. Smaller lone datagrams (request/response) are copied: a copy of a few
/// hundred bytes costs less than the buffer hand-over.
const ZERO_COPY_MIN: usize = RECV_SLOT / 2;
/// Largest GSO train in bytes (the kernel's limit for one UDP send).
const GSO_MAX_BYTES: usize = 65_000;
/// Commands handled per wake-up before other work gets a turn.
const COMMAND_BATCH: usize = 256;
/// How long the driver sleeps when nothing is due.
const IDLE_SLEEP: Duration = Duration::from_secs(3600);

/// The driver task: receives, runs timers, waits out a full socket, handles commands.
/// Sending tasks write their own datagrams (see [`DirectIo`]).
async fn run(
    engine: Arc<Engine>,
    handle: Weak<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let commands_tx = engine.commands.clone();
    let sleep = tokio::time::sleep(IDLE_SLEEP);
    tokio::pin!(sleep);
    let mut sleeping_until = None;
    // While the socket is full: a duplicate of it registered for writes, kept until
    // it has room (not longer: registered, it would wake us for every datagram sent).
    let mut room: Option<AsyncFd<std::net::UdpSocket>> = None;
    loop {
        let (deadline, tx_blocked) = {
            let mut core = engine.lock();
            (core.arm(), core.tx_blocked)
        };
        // Re-arming a tokio timer costs; most turns keep the deadline.
        if sleeping_until != Some(deadline) {
            sleep.as_mut().reset(deadline);
            sleeping_until = Some(deadline);
        }
        let io = &engine.io;
        if !tx_blocked {
            room = None;
        } else if room.is_none() {
            match write_waiter(io.socket.get_ref()) {
                Ok(w) => room = Some(w),
                Err(e) => {
                    tracing::error!(error = %e, "cannot wait for room in the UDP socket; transport stops");
                    break;
                }
            }
        }
        tokio::select! {
            biased;
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                let mut core = engine.lock();
                core.handle_command(cmd);
                for _ in 0..COMMAND_BATCH {
                    match commands.try_recv() {
                        Ok(c) => core.handle_command(c),
                        Err(_) => break,
                    }
                }
            }
            // The duty to read fell to the driver: no owner waits, or one read a full
            // batch and left the rest.
            _ = engine.reader.driver.notified() => engine.read_as(Holder::Driver),
            r = wait_writable(room.as_ref()), if tx_blocked => {
                if r.is_err() {
                    break;
                }
                // The next send finds out whether there is room for all of it.
                engine.lock().tx_blocked = false;
            }
            _ = engine.wake.notified() => {}
            _ = &mut sleep => {
                // Fired: the next turn arms it again even for the same deadline.
                sleeping_until = None;
            }
        }
        let mut core = engine.lock();
        // Under a flood the socket is always readable and the biased select never
        // reaches the timer branch: run due timers on every turn.
        if Instant::now() >= deadline {
            core.run_timers();
        }
        core.pump(io);
        let done = handle.strong_count() == 0 && core.slots.is_empty();
        engine.release(core);
        if done {
            break;
        }
    }
    let mut core = engine.lock();
    core.stopped = true;
    let outbox = std::mem::take(&mut core.outbox);
    {
        let _order = engine.handout.lock().unwrap_or_else(|e| e.into_inner());
        hand_out(outbox, &commands_tx);
    }
    for (_, slot) in core.slots.drain() {
        if let Some(ev) = slot.events {
            let _ = ev.send(AssocEvent::Down(DownReason::TransportGone));
        }
    }
}

/// A duplicate of the socket's descriptor registered for write interest, made when the
/// socket is found full; epoll reports the state at registration, so room that
/// appeared in between is not missed.
fn write_waiter(socket: &std::net::UdpSocket) -> io::Result<AsyncFd<std::net::UdpSocket>> {
    // SAFETY: the duplicate is owned by the AsyncFd and closed only when it is dropped.
    let dup = unsafe { AsyncFd::register_with_interest(socket.try_clone()?, Interest::WRITABLE) }?;
    Ok(dup)
}

/// Waits until the socket has room to send. The readiness is cleared as it is taken:
/// the send that follows either fits or finds the socket full again, and then the
/// next datagram the kernel frees is a new edge.
async fn wait_writable(waiter: Option<&AsyncFd<std::net::UdpSocket>>) -> io::Result<()> {
    match waiter {
        Some(w) => {
            w.writable().await?.clear_ready();
            Ok(())
        }
        None => std::future::pending().await,
    }
}

/// Reads what the socket holds (batched, GRO trains split) and feeds the engine.
fn read_datagrams(
    engine: &Engine,
    mut ready: AsyncFdReadyGuard<'_, std::net::UdpSocket>,
    rx: &mut RxBuf,
) {
    let io = &engine.io;
    let RxBuf { slots, meta, hint } = rx;
    for _ in 0..RECV_ROUNDS {
        // quinn-udp prepares a header per slot on every call: offer about as many as
        // the last call filled (request/response: two), more when they were all used.
        let n_slots = (*hint).clamp(2, meta.len().min(RECV_SLOTS));
        let r = {
            let mut bufs = slots.iter_mut();
            let mut iovs: [IoSliceMut<'_>; RECV_SLOTS] = std::array::from_fn(|_| {
                IoSliceMut::new(bufs.next().map(|b| &mut b[..]).unwrap_or_default())
            });
            ready.try_io(|s| {
                io.udp.recv(
                    UdpSockRef::from(s.get_ref()),
                    &mut iovs[..n_slots],
                    &mut meta[..n_slots],
                )
            })
        };
        let n = match r {
            Ok(Ok(n)) => n,
            // Would block (readiness cleared already).
            Err(_) => break,
            // ICMP errors surface here on some kernels; the engine's timers decide.
            Ok(Err(_)) => continue,
        };
        let (mut datagrams, mut bytes) = (0u64, 0u64);
        {
            let mut core = engine.lock();
            let now = core.now();
            let local = core.local;
            for (m, slot) in meta.iter().zip(slots.iter_mut()).take(n) {
                let len = m.len.min(RECV_SLOT);
                // A GRO train holds datagrams at `stride` boundaries; the last may be shorter.
                let stride = m.stride.max(1);
                if len >= ZERO_COPY_MIN || stride < len {
                    // A large datagram or a GRO train: the engine takes the buffer and
                    // its datagrams are slices of it. The engine copies out what it keeps
                    // that is far smaller than the buffer (fragments go straight into
                    // their message), so the buffer usually comes back for the next call.
                    let mut owned = Bytes::from(std::mem::take(slot));
                    owned.truncate(len);
                    let mut at = 0;
                    while at < len {
                        let end = (at + stride).min(len);
                        datagrams += 1;
                        bytes += (end - at) as u64;
                        core.endpoint.handle_datagram_in(
                            now,
                            local,
                            m.addr,
                            owned.slice(at..end),
                            len,
                        );
                        at = end;
                    }
                    *slot = reclaim(owned);
                } else {
                    datagrams += 1;
                    bytes += len as u64;
                    core.endpoint
                        .handle_datagram(now, local, m.addr, &slot[..len]);
                }
            }
        }
        io.stats
            .datagrams_in
            .fetch_add(datagrams, Ordering::Relaxed);
        io.stats.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        io.stats.recv_calls.fetch_add(1, Ordering::Relaxed);
        *hint = if n >= n_slots { n_slots * 2 } else { n * 2 };
        if n < n_slots.min(quinn_udp::BATCH_SIZE) {
            // `recvmmsg` stops early only when the queue ran dry, so the call that would
            // just say "would block" is saved (one system call per wake-up). A datagram
            // that arrived since advanced tokio's readiness tick, which keeps the
            // clearing from hiding it.
            ready.clear_ready();
            break;
        }
    }
}

/// A receive slot's buffer back from the engine, or a new one while the engine still
/// holds slices of it (large DATA payloads are delivered without a copy).
fn reclaim(buffer: Bytes) -> Vec<u8> {
    match buffer.try_into_mut() {
        Ok(b) => {
            let mut v = Vec::from(b);
            // Zeroes only the tail past what the last datagram filled.
            v.resize(RECV_SLOT, 0);
            v
        }
        Err(_) => vec![0u8; RECV_SLOT],
    }
}

impl Core {
    /// The engine's clock: std `Instant` derived from tokio's (which tests may pause).
    fn now(&self) -> std::time::Instant {
        self.epoch_std + Instant::now().saturating_duration_since(self.epoch_tokio)
    }

    fn to_tokio(&self, t: std::time::Instant) -> Instant {
        self.epoch_tokio + t.saturating_duration_since(self.epoch_std)
    }

    /// The engine's and the connects' earliest deadline.
    fn next_deadline(&self) -> Option<Instant> {
        let engine = self.endpoint.poll_timeout().map(|t| self.to_tokio(t));
        let connect = self.connect_deadlines.iter().map(|(t, _)| *t).min();
        match (engine, connect) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The deadline the driver task sleeps until; remembered in `armed`.
    fn arm(&mut self) -> Instant {
        let now = Instant::now();
        let mut d = self.next_deadline().unwrap_or(now + IDLE_SLEEP);
        if std::mem::take(&mut self.active) {
            d = d.min(now + self.rto_min);
        }
        // An earlier timer still ahead stays: waking early costs a turn, re-arming the
        // timer on every turn costs more.
        if let Some(armed) = self.armed.filter(|a| *a > now && *a <= d) {
            d = armed;
        }
        self.armed = Some(d);
        d
    }

    /// Whether the driver task must look again after a sending task's work.
    fn driver_needed(&self) -> bool {
        if self.tx_blocked {
            return true;
        }
        match (self.next_deadline(), self.armed) {
            (Some(d), Some(armed)) => d < armed,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    fn run_timers(&mut self) {
        let now = self.now();
        self.endpoint.handle_timeout(now);
        self.expire_connects();
    }

    /// Sends what the engine wants sent and hands out its events, until neither is left
    /// (events can queue more data: pending sends resumed on Writable).
    fn pump(&mut self, io: &Io) {
        loop {
            self.flush_transmits(io);
            if !self.dispatch_events() {
                break;
            }
        }
    }

    /// Sends everything the engine wants sent, coalescing runs of equal-sized packets to
    /// one destination into GSO trains. Never waits: when the socket is full the packet
    /// stays held and `tx_blocked` tells the driver task to wait for room.
    fn flush_transmits(&mut self, io: &Io) {
        if self.tx_blocked {
            return;
        }
        let max_segments = if io.gso {
            io.udp.max_gso_segments().max(1)
        } else {
            1
        };
        let (mut datagrams, mut bytes, mut errors, mut calls) = (0u64, 0u64, 0u64, 0u64);
        let now = self.now();
        let tx = &mut self.tx;
        loop {
            if tx.train.is_empty() {
                let mut segment = 0;
                let mut segments = 0;
                let mut dst = None;
                // The engine appends each packet to the train itself: no copy, except
                // of a packet that turns out not to fit (it starts the next train).
                loop {
                    if let Some(d) = tx.held.take() {
                        // A packet that did not fit the previous train starts this one.
                        std::mem::swap(&mut tx.train, &mut tx.one);
                        tx.one.clear();
                        dst = Some(d);
                        segment = tx.train.len();
                        segments = 1;
                        if max_segments == 1 {
                            break;
                        }
                        continue;
                    }
                    // Another packet may join only if one as large as the first fits.
                    if dst.is_some()
                        && (segments >= max_segments || tx.train.len() + segment > GSO_MAX_BYTES)
                    {
                        break;
                    }
                    let start = tx.train.len();
                    let Some((d, _src)) = self.endpoint.poll_transmit_append(now, &mut tx.train)
                    else {
                        break;
                    };
                    let len = tx.train.len() - start;
                    match dst {
                        None => {
                            dst = Some(d);
                            segment = len;
                            segments = 1;
                        }
                        Some(cur) if cur == d && len <= segment => segments += 1,
                        Some(_) => {
                            // Another destination, or larger than the train's segments.
                            tx.one.clear();
                            tx.one.extend_from_slice(&tx.train[start..]);
                            tx.train.truncate(start);
                            tx.held = Some(d);
                            break;
                        }
                    }
                    // A shorter packet ends a train (GSO's last segment may be short).
                    if len < segment || max_segments == 1 {
                        break;
                    }
                }
                let Some(destination) = dst else { break };
                tx.train_to = Some((destination, segment, segments));
            }
            let Some((destination, segment, segments)) = tx.train_to else {
                tx.train.clear();
                break;
            };
            let transmit = quinn_udp::Transmit {
                destination,
                ecn: None,
                contents: &tx.train,
                segment_size: (segments > 1).then_some(segment),
                src_ip: None,
            };
            let s = io.socket.get_ref();
            let r = if segments == 1 {
                // One datagram needs no control messages: `sendto` skips the
                // message-header copy and cmsg parsing of `sendmsg`.
                s.send_to(&tx.train, destination).map(|_| ())
            } else {
                io.udp.send(UdpSockRef::from(s), &transmit)
            };
            match r {
                Ok(()) => {
                    calls += 1;
                    datagrams += segments as u64;
                    bytes += tx.train.len() as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The train stays built; the driver task sends it when there is room.
                    self.tx_blocked = true;
                    break;
                }
                Err(_) => {
                    // Unreachable peer, EPERM, ...: the datagrams are lost like on a
                    // network; retransmission timers handle it.
                    errors += 1;
                }
            }
            tx.train.clear();
            tx.train_to = None;
        }
        if calls + errors > 0 {
            let s = &io.stats;
            s.datagrams_out.fetch_add(datagrams, Ordering::Relaxed);
            s.bytes_out.fetch_add(bytes, Ordering::Relaxed);
            s.send_errors.fetch_add(errors, Ordering::Relaxed);
            s.send_calls.fetch_add(calls, Ordering::Relaxed);
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
                self.active = true;
                let queued = self.slots.get(&h).is_some_and(|s| !s.pending.is_empty());
                if queued {
                    if let Some(s) = self.slots.get_mut(&h) {
                        s.pending.push_back((msg, permit));
                    }
                } else {
                    self.try_send_quiet(h, msg, permit);
                }
            }
            Command::Close { id } => {
                if let Some(&h) = self.by_id.get(&id) {
                    match self.slots.get_mut(&h) {
                        Some(s) if !s.pending.is_empty() => s.close_requested = true,
                        _ => {
                            let now = self.now();
                            self.endpoint.shutdown(now, h);
                        }
                    }
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
    fn try_send(&mut self, io: &Io, h: AssocHandle, msg: Message, permit: OwnedSemaphorePermit) {
        self.engine_send(h, msg, permit).count(&io.stats);
    }

    /// [`Core::try_send`] where the counters are out of reach (the command path).
    fn try_send_quiet(&mut self, h: AssocHandle, msg: Message, permit: OwnedSemaphorePermit) {
        let outcome = self.engine_send(h, msg, permit);
        if outcome != Handed::Taken {
            if let Some(e) = self.me.upgrade() {
                outcome.count(&e.io.stats);
            }
        }
    }

    fn engine_send(
        &mut self,
        h: AssocHandle,
        msg: Message,
        permit: OwnedSemaphorePermit,
    ) -> Handed {
        match self
            .endpoint
            .send(h, msg.stream, msg.ppid, msg.ordered, msg.data.clone())
        {
            Ok(()) => {
                drop(permit);
                Handed::Taken
            }
            Err(SendError::WouldBlock { .. }) => {
                if let Some(s) = self.slots.get_mut(&h) {
                    s.pending.push_front((msg, permit));
                }
                Handed::Taken
            }
            // The peer's SHUTDOWN crossed the message: the association closes
            // gracefully and its owner hears of it; nothing is wrong with the message.
            Err(SendError::NotConnected) => {
                tracing::debug!(assoc = ?h, len = msg.data.len(), "association shutting down; message dropped");
                Handed::DroppedClosing
            }
            Err(e) => {
                tracing::warn!(assoc = ?h, error = %e, len = msg.data.len(), "engine refused message; aborting association");
                self.endpoint.abort(h, b"message refused");
                Handed::Refused
            }
        }
    }

    fn flush_pending(&mut self, h: AssocHandle) {
        while let Some((msg, permit)) = self.slots.get_mut(&h).and_then(|s| s.pending.pop_front()) {
            let before = self.slots.get(&h).map(|s| s.pending.len()).unwrap_or(0);
            self.try_send_quiet(h, msg, permit);
            let after = self.slots.get(&h).map(|s| s.pending.len()).unwrap_or(0);
            if after > before {
                break; // put back: buffer full again
            }
        }
        if let Some(s) = self.slots.get_mut(&h) {
            if s.close_requested && s.pending.is_empty() {
                s.close_requested = false;
                let now = self.now();
                self.endpoint.shutdown(now, h);
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
                        close_requested: false,
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
        let direct = self.me.upgrade().map(|e| e as Arc<dyn DirectIo>);
        Association::with_direct(
            id,
            remote,
            local_port,
            self.commands_tx.clone(),
            direct,
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
                Event::StreamsReset {
                    direction,
                    streams,
                    result,
                } => {
                    tracing::debug!(assoc = ?h, ?direction, ?streams, ?result, "streams reset");
                }
                Event::Closed { reason } => self.on_closed(h, reason),
            }
        }
        any
    }

    fn on_connected(&mut self, h: AssocHandle) {
        if let Some(s) = self.me.upgrade() {
            s.io.stats.associations_up.fetch_add(1, Ordering::Relaxed);
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
                close_requested: false,
                connect_reply: None,
                released: Arc::new(AtomicUsize::new(0)),
            },
        );
        let assoc = self.new_association(h, id, remote);
        if let Err(e) = self.accept.try_send(assoc) {
            if let Some(s) = self.me.upgrade() {
                s.io.stats.accept_overflow.fetch_add(1, Ordering::Relaxed);
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
            self.outbox.push(Outgoing {
                id: Some(slot.id),
                to: tx.clone(),
                ev,
            });
        }
    }

    fn on_closed(&mut self, h: AssocHandle, reason: CloseReason) {
        if let Some(s) = self.me.upgrade() {
            s.io.stats.associations_down.fetch_add(1, Ordering::Relaxed);
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
        if let Some(to) = slot.events {
            // Behind the messages still in the outbox.
            self.outbox.push(Outgoing {
                id: None,
                to,
                ev: AssocEvent::Down(down),
            });
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn config(listen: bool) -> SctpUdpConfig {
        let mut c = SctpUdpConfig::for_address(SocketAddr::from(([127, 0, 0, 1], 0)));
        let a = &mut c.engine.association;
        // Only the retransmission timer can notice the silent peer below.
        a.heartbeat_interval = None;
        a.rto_initial = Duration::from_millis(100);
        a.rto_min = Duration::from_millis(50);
        a.rto_max = Duration::from_millis(200);
        a.max_retransmissions = 3;
        a.path_max_retransmissions = 3;
        if listen {
            c.engine.listen_ports = vec![3863];
        }
        c
    }

    /// A message sent from the owner's task arms the retransmission timer while the
    /// driver task sleeps its long idle sleep: the driver must be woken to run it, or a
    /// dead peer would go unnoticed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn direct_send_after_idle_wakes_the_driver_for_retransmissions() {
        // The peer lives on its own runtime, so it can vanish without a word (no ABORT).
        let (peer_addr_tx, peer_addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let peer = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("peer runtime");
            rt.block_on(async {
                let (t, mut l) = SctpUdp::bind(config(true)).expect("bind peer");
                peer_addr_tx.send(t.local_addr()).expect("addr");
                let accepted = l.accept().await.expect("accept");
                // Keep everything alive until told to vanish.
                tokio::task::spawn_blocking(move || stop_rx.recv())
                    .await
                    .ok();
                std::mem::forget(accepted);
                std::mem::forget(t);
            });
            // Dropping the runtime cancels the peer's driver and closes its socket.
        });
        let peer_addr = peer_addr_rx.recv().expect("peer address");
        let (ours, _l) = SctpUdp::bind(config(false)).expect("bind");
        let mut a = ours
            .connect(&[peer_addr], 3863, Duration::from_secs(5))
            .await
            .expect("connect");
        stop_tx.send(()).expect("stop peer");
        peer.join().expect("peer thread");
        // Idle well past rto_min: the driver goes back to its idle sleep.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = Instant::now();
        a.send(
            Message::new(11, &b"anyone there?"[..]),
            Duration::from_secs(1),
        )
        .await
        .expect("send");
        // 4 transmissions at RTO 50..200 ms: well under two seconds.
        let down = loop {
            match a.recv_timeout(Duration::from_secs(5)).await {
                Ok(Some(AssocEvent::Down(r))) => break r,
                Ok(Some(_)) => continue,
                other => panic!("no Down event: {other:?}"),
            }
        };
        assert_eq!(down, DownReason::Timeout);
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    }

    /// An association from `ours` to `peer` (listening on `l`): (our end, the peer's).
    async fn associate(
        ours: &SctpUdp,
        peer: &SctpUdp,
        l: &mut Listener,
    ) -> (Association, Association) {
        let a = ours
            .connect(&[peer.local_addr()], 3863, Duration::from_secs(5))
            .await
            .expect("connect");
        let b = tokio::time::timeout(Duration::from_secs(5), l.accept())
            .await
            .expect("accept in time")
            .expect("accepted");
        (a, b)
    }

    /// Two transports on this runtime: (ours, peer, the peer's listener).
    fn transports() -> (SctpUdp, SctpUdp, Listener) {
        let (peer, l) = SctpUdp::bind(config(true)).expect("bind peer");
        let (ours, _l) = SctpUdp::bind(config(false)).expect("bind");
        (ours, peer, l)
    }

    async fn next_message(a: &mut Association) -> Message {
        loop {
            match a.recv_timeout(Duration::from_secs(2)).await {
                Ok(Some(AssocEvent::Message(m))) => return m,
                Ok(Some(_)) => continue,
                other => panic!("no message: {other:?}"),
            }
        }
    }

    /// An owner waiting for its event reads the socket itself: request/response needs
    /// no driver task in between.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_owner_reads_the_socket_itself() {
        let (ours, peer, mut l) = transports();
        let (mut a, mut b) = associate(&ours, &peer, &mut l).await;
        let echo = tokio::spawn(async move {
            for _ in 0..100 {
                let m = next_message(&mut b).await;
                b.send(m, Duration::from_secs(1)).await.expect("echo");
            }
            b
        });
        for i in 0..100u32 {
            let body = Bytes::from(i.to_be_bytes().to_vec());
            a.send(Message::new(11, body.clone()), Duration::from_secs(1))
                .await
                .expect("send");
            assert_eq!(next_message(&mut a).await.data, body);
        }
        let _b = echo.await.expect("echo task");
        // Most replies reach a waiting owner; the driver may read a few (timers,
        // a wake-up that found the owner not yet waiting).
        let reads = ours.stats().owner_reads.load(Ordering::Relaxed);
        assert!(reads >= 50, "owner reads: {reads}");
    }

    /// An owner handed the duty to read whose receive is then dropped unpolled (a
    /// `select!` that took another branch) passes the duty to the driver task: another
    /// association's message still arrives though that owner never receives again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_receive_passes_its_duty_to_read_to_the_driver() {
        let (ours, peer, mut l) = transports();
        let (mut a1, b1) = associate(&ours, &peer, &mut l).await;
        let (mut a2, b2) = associate(&ours, &peer, &mut l).await;
        let id = a1.id();
        let engine = ours.shared.engine.clone();
        {
            let mut recv = std::pin::pin!(a1.recv());
            let mut cx = Context::from_waker(Waker::noop());
            assert!(recv.as_mut().poll(&mut cx).is_pending());
            b1.send(Message::new(11, &b"to a1"[..]), Duration::from_secs(1))
                .await
                .expect("send");
            // The datagram hands the duty to the waiting (never again polled) receive.
            let t0 = Instant::now();
            while engine.reader.holder() != Holder::Owner(id) {
                assert!(t0.elapsed() < Duration::from_secs(2), "duty not handed out");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        b2.send(Message::new(11, &b"to a2"[..]), Duration::from_secs(1))
            .await
            .expect("send");
        assert_eq!(&next_message(&mut a2).await.data[..], b"to a2");
        // a1's message was read for it by the driver task meanwhile.
        assert_eq!(
            a1.events
                .try_recv()
                .map(|e| matches!(e, AssocEvent::Message(m) if &m.data[..] == b"to a1")),
            Ok(true)
        );
    }

    /// Owners on one transport that cancel their receives at random moments (after
    /// 0..2 task yields, so some are dropped while holding the duty to read) lose no
    /// message and never leave the socket unread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn owners_cancelling_receives_at_random_lose_nothing() {
        let (ours, peer, mut l) = transports();
        let mut tasks = Vec::new();
        for k in 0..6u64 {
            let (mut a, mut b) = associate(&ours, &peer, &mut l).await;
            tokio::spawn(async move {
                while let Some(AssocEvent::Message(m)) = b.recv().await {
                    if b.send(m, Duration::from_secs(1)).await.is_err() {
                        break;
                    }
                }
            });
            tasks.push(tokio::spawn(async move {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ k;
                let (mut cancelled, mut got) = (0u32, 0u32);
                for i in 0..200u32 {
                    let body = Bytes::from(i.to_be_bytes().to_vec());
                    a.send(Message::new(11, body.clone()), Duration::from_secs(1))
                        .await
                        .expect("send");
                    loop {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Three times in four the receive is dropped after 0..2 task
                        // yields (polled 1..3 times); else it waits for its event.
                        let yields = x % 4;
                        let ev = if yields == 3 {
                            Some(a.recv().await)
                        } else {
                            tokio::select! {
                                biased;
                                ev = a.recv() => Some(ev),
                                _ = async {
                                    for _ in 0..yields {
                                        tokio::task::yield_now().await;
                                    }
                                } => None,
                            }
                        };
                        match ev {
                            None => cancelled += 1,
                            Some(Some(AssocEvent::Message(m))) => {
                                assert_eq!(m.data, body, "association {k}");
                                got += 1;
                                break;
                            }
                            Some(Some(_)) => {}
                            Some(None) => panic!("association {k} went down"),
                        }
                    }
                }
                (cancelled, got)
            }));
        }
        let all = tokio::time::timeout(Duration::from_secs(20), async {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("task"));
            }
            out
        })
        .await
        .expect("a receive stalled: the duty to read was lost");
        assert!(all.iter().all(|&(_, got)| got == 200), "{all:?}");
        let cancelled: u32 = all.iter().map(|&(c, _)| c).sum();
        assert!(
            cancelled > 500,
            "too few cancellations to test anything: {cancelled}"
        );
        assert!(ours.stats().owner_reads.load(Ordering::Relaxed) > 0);
    }
}
