//! The transport under ASAP and ENRP: SCTP associations, behind one small interface.
//!
//! Roles never see the engine. They get an [`Association`] (from [`Transport::connect`]
//! or a [`Listener`]) and exchange [`Message`]s `{stream, ppid, ordered, bytes}` with it;
//! lifecycle arrives as [`AssocEvent`]s. Every operation that can wait has a deadline.
//!
//! Two implementations:
//! - [`sctp_udp::SctpUdp`]: our sans-IO engine (`sctp` crate) driven over one UDP socket
//!   (RFC 6951 encapsulation). The production engine.
//! - [`memory::MemoryTransport`]: an in-process pair of channels, for unit tests of the
//!   state-machine drivers only.

pub mod memory;
pub mod sctp_udp;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// SCTP payload protocol identifier of ASAP (RFC 5352).
pub const PPID_ASAP: u32 = 11;
/// SCTP payload protocol identifier of ENRP (RFC 5353).
pub const PPID_ENRP: u32 = 12;
/// SCTP port of ASAP (RFC 5352).
pub const SCTP_PORT_ASAP: u16 = 3863;
/// SCTP port of ENRP (RFC 5353).
pub const SCTP_PORT_ENRP: u16 = 9901;
/// UDP port of SCTP over UDP (RFC 6951).
pub const UDP_ENCAPSULATION_PORT: u16 = 9899;

/// One user message on an association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// SCTP stream.
    pub stream: u16,
    /// Payload protocol identifier.
    pub ppid: u32,
    /// Ordered delivery within the stream.
    pub ordered: bool,
    /// The message bytes.
    pub data: Bytes,
}

impl Message {
    /// An ordered message on stream 0.
    pub fn new(ppid: u32, data: impl Into<Bytes>) -> Self {
        Message {
            stream: 0,
            ppid,
            ordered: true,
            data: data.into(),
        }
    }
}

/// Why an association went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// Graceful shutdown completed.
    Shutdown,
    /// The peer aborted.
    PeerAbort(String),
    /// We aborted (locally requested, or the peer violated the protocol).
    LocalAbort(String),
    /// The peer stopped answering (retransmission or heartbeat budget used up).
    Timeout,
    /// The handshake was not answered.
    HandshakeTimeout,
    /// The peer restarted from the same address.
    PeerRestarted,
    /// The transport driver stopped.
    TransportGone,
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::Shutdown => f.write_str("shutdown"),
            DownReason::PeerAbort(c) => write!(f, "peer abort ({c})"),
            DownReason::LocalAbort(c) => write!(f, "local abort ({c})"),
            DownReason::Timeout => f.write_str("peer timeout"),
            DownReason::HandshakeTimeout => f.write_str("handshake timeout"),
            DownReason::PeerRestarted => f.write_str("peer restarted"),
            DownReason::TransportGone => f.write_str("transport gone"),
        }
    }
}

impl DownReason {
    /// A short stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            DownReason::Shutdown => "shutdown",
            DownReason::PeerAbort(_) => "peer_abort",
            DownReason::LocalAbort(_) => "local_abort",
            DownReason::Timeout => "timeout",
            DownReason::HandshakeTimeout => "handshake_timeout",
            DownReason::PeerRestarted => "peer_restarted",
            DownReason::TransportGone => "transport_gone",
        }
    }
}

/// What an association reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssocEvent {
    /// A message arrived.
    Message(Message),
    /// A path to this peer address became usable.
    PathUp(SocketAddr),
    /// A path to this peer address stopped answering.
    PathDown(SocketAddr),
    /// New data goes to this peer address.
    PrimaryChanged(SocketAddr),
    /// The association is gone; no further events follow.
    Down(DownReason),
}

/// Errors of transport operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The operation did not complete within its deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The association is down.
    #[error("association down: {0}")]
    Down(DownReason),
    /// The engine refused the operation.
    #[error("refused: {0}")]
    Refused(String),
    /// The message exceeds what the association carries.
    #[error("message too large ({0} bytes)")]
    TooLarge(usize),
}

/// Identifies an association within one transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssocId(pub u64);

impl std::fmt::Display for AssocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a{}", self.0)
    }
}

/// What an [`Association`] asks of its driver.
#[derive(Debug)]
pub(crate) enum Command {
    /// Queue a message; the permit holds its share of the send budget until the
    /// engine has taken the message.
    Send {
        id: AssocId,
        msg: Message,
        permit: OwnedSemaphorePermit,
    },
    /// Graceful shutdown.
    Close { id: AssocId },
    /// Immediate abort.
    Abort { id: AssocId, reason: String },
    /// The owner released received messages: the driver returns their bytes to the
    /// association's receive window.
    Credit { id: AssocId },
    /// Open an association (driver-level; answered on `reply`).
    Connect {
        remotes: Vec<SocketAddr>,
        sctp_port: u16,
        deadline: tokio::time::Instant,
        reply: tokio::sync::oneshot::Sender<Result<Association, TransportError>>,
    },
}

/// A driver the owner's task works with directly, with no hand-off to the driver task:
/// a message sent leaves in the sender's turn, and an owner waiting for events may be
/// the one that reads the socket (its own messages then need no wake-up of anyone).
pub(crate) trait DirectIo: Send + Sync + std::fmt::Debug {
    /// Hands `msg` to the engine now; the permit is released once the engine took it.
    fn send(
        &self,
        id: AssocId,
        msg: Message,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), TransportError>;

    /// On every poll of a waiting owner: when the duty to read the socket fell to
    /// association `id`, reads (delivering to every association, `id` included) and
    /// returns true.
    fn read_turn(&self, id: AssocId) -> bool;

    /// The owner of `id` waits for an event and may be given the duty to read; `waker`
    /// wakes it then.
    fn wait(&self, id: AssocId, waker: &Waker);

    /// The owner of `id` stopped waiting (its receive completed or was dropped): a duty
    /// to read given to it passes to the driver task.
    fn leave(&self, id: AssocId);
}

/// The events of one association, in order: messages, path changes, and last its
/// [`AssocEvent::Down`].
#[derive(Debug)]
pub struct AssocEvents {
    id: AssocId,
    rx: mpsc::UnboundedReceiver<AssocEvent>,
    /// The driver, when a waiting owner may read the socket itself.
    direct: Option<Arc<dyn DirectIo>>,
}

impl AssocEvents {
    /// Next event, or `None` once the association is down and all events were read.
    /// Cancel-safe: a dropped receive loses no event.
    ///
    /// While it waits, the receive may be handed the duty to read the transport's
    /// socket for every association on it. Await it, or race it in `select!` (which
    /// drops it), but do not keep one alive unpolled while the task awaits something
    /// else: until it is polled or dropped, nobody reads the socket.
    pub fn recv(&mut self) -> impl Future<Output = Option<AssocEvent>> + Send + '_ {
        Recv {
            events: self,
            waiting: false,
        }
    }

    /// The next event if one is queued (never reads the socket).
    pub fn try_recv(&mut self) -> Result<AssocEvent, TryRecvError> {
        self.rx.try_recv()
    }
}

/// [`AssocEvents::recv`]: while it waits, the driver may hand it the duty to read the
/// socket; dropped or done, it gives a duty it still holds back to the driver task.
struct Recv<'a> {
    events: &'a mut AssocEvents,
    /// Registered with the driver as a waiting owner.
    waiting: bool,
}

/// Ends a receive: a receive registered as waiting leaves the driver's line (and gives
/// back a duty to read it was handed meanwhile).
fn finish(
    waiting: &mut bool,
    direct: &dyn DirectIo,
    id: AssocId,
    ev: Option<AssocEvent>,
) -> Poll<Option<AssocEvent>> {
    if std::mem::take(waiting) {
        direct.leave(id);
    }
    Poll::Ready(ev)
}

impl Future for Recv<'_> {
    type Output = Option<AssocEvent>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<AssocEvent>> {
        let Recv { events, waiting } = &mut *self;
        let id = events.id;
        let Some(direct) = events.direct.as_deref() else {
            return events.rx.poll_recv(cx);
        };
        // The channel is looked at without our waker first, which also unregisters
        // the waker of an earlier poll: what this task hands itself while it reads
        // the socket must not wake it again (a task woken while it runs is queued
        // anew, and another worker thread is woken to take it).
        let mut quiet = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(ev) = events.rx.poll_recv(&mut quiet) {
                return finish(waiting, direct, id, ev);
            }
            if !direct.read_turn(id) {
                break;
            }
        }
        if let Poll::Ready(ev) = events.rx.poll_recv(cx) {
            return finish(waiting, direct, id, ev);
        }
        direct.wait(id, cx.waker());
        *waiting = true;
        Poll::Pending
    }
}

impl Drop for Recv<'_> {
    fn drop(&mut self) {
        if self.waiting {
            if let Some(d) = &self.events.direct {
                d.leave(self.events.id);
            }
        }
    }
}

/// One association: send messages, receive events. Dropping it (and every
/// [`AssocSender`] split off it) aborts the association unless it was closed.
#[derive(Debug)]
pub struct Association {
    sender: AssocSender,
    events: AssocEvents,
}

impl Association {
    pub(crate) fn new(
        id: AssocId,
        remote: SocketAddr,
        local_sctp_port: u16,
        commands: mpsc::UnboundedSender<Command>,
        events: mpsc::UnboundedReceiver<AssocEvent>,
        budget_bytes: usize,
        max_message: usize,
    ) -> Self {
        Self::with_direct(
            id,
            remote,
            local_sctp_port,
            commands,
            None,
            events,
            budget_bytes,
            max_message,
        )
    }

    /// Like [`Association::new`], with sends handed to `direct` instead of the command
    /// channel (close, abort and credit still go through the channel).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn with_direct(
        id: AssocId,
        remote: SocketAddr,
        local_sctp_port: u16,
        commands: mpsc::UnboundedSender<Command>,
        direct: Option<Arc<dyn DirectIo>>,
        events: mpsc::UnboundedReceiver<AssocEvent>,
        budget_bytes: usize,
        max_message: usize,
    ) -> Self {
        let events = AssocEvents {
            id,
            rx: events,
            direct: direct.clone(),
        };
        let inner = SenderInner {
            id,
            remote,
            local_sctp_port,
            commands,
            direct,
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
            max_message,
            closed: AtomicBool::new(false),
        };
        Association {
            sender: AssocSender {
                inner: Arc::new(inner),
            },
            events,
        }
    }

    /// This association's identifier.
    pub fn id(&self) -> AssocId {
        self.sender.id()
    }

    /// The peer's primary address as first known.
    pub fn remote(&self) -> SocketAddr {
        self.sender.remote()
    }

    /// The local SCTP port (e.g. 3863 for ASAP, 9901 for ENRP on accepted associations).
    pub fn local_sctp_port(&self) -> u16 {
        self.sender.inner.local_sctp_port
    }

    /// Queues a message, waiting while the association's send budget is used up
    /// (back-pressure), at most `deadline`.
    pub async fn send(&self, msg: Message, deadline: Duration) -> Result<(), TransportError> {
        self.sender.send(msg, deadline).await
    }

    /// Next event, or `None` once the association is down and all events were read.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<AssocEvent> {
        self.events.recv().await
    }

    /// Next event with a deadline.
    pub async fn recv_timeout(
        &mut self,
        deadline: Duration,
    ) -> Result<Option<AssocEvent>, TransportError> {
        tokio::time::timeout(deadline, self.events.recv())
            .await
            .map_err(|_| TransportError::Timeout(deadline))
    }

    /// Starts a graceful shutdown; an [`AssocEvent::Down`] follows.
    pub fn close(&self) {
        self.sender.close();
    }

    /// Aborts the association at once.
    pub fn abort(&self, reason: &str) {
        self.sender.abort(reason);
    }

    /// Splits into a cloneable sender half and the event receiver.
    pub fn split(self) -> (AssocSender, AssocEvents) {
        (self.sender, self.events)
    }
}

#[derive(Debug)]
struct SenderInner {
    id: AssocId,
    remote: SocketAddr,
    local_sctp_port: u16,
    commands: mpsc::UnboundedSender<Command>,
    direct: Option<Arc<dyn DirectIo>>,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    max_message: usize,
    closed: AtomicBool,
}

impl Drop for SenderInner {
    fn drop(&mut self) {
        if !self.closed.load(Ordering::Relaxed) {
            let _ = self.commands.send(Command::Abort {
                id: self.id,
                reason: "dropped".into(),
            });
        }
    }
}

/// The sending half of an [`Association`]; cloneable.
#[derive(Debug, Clone)]
pub struct AssocSender {
    inner: Arc<SenderInner>,
}

impl AssocSender {
    /// The association's identifier.
    pub fn id(&self) -> AssocId {
        self.inner.id
    }

    /// The peer's primary address as first known.
    pub fn remote(&self) -> SocketAddr {
        self.inner.remote
    }

    /// Queues a message with back-pressure and a deadline: waits while the
    /// association's send budget is used up, at most `deadline`.
    pub async fn send(&self, msg: Message, deadline: Duration) -> Result<(), TransportError> {
        let len = msg.data.len().max(1);
        if len > self.inner.max_message {
            return Err(TransportError::TooLarge(len));
        }
        // A message larger than the whole budget waits for all of it.
        let len = len.min(self.inner.budget_bytes) as u32;
        // The budget is rarely used up: take it without a timer when it is free.
        let permit = match self.inner.budget.clone().try_acquire_many_owned(len) {
            Ok(p) => p,
            Err(_) => {
                tokio::time::timeout(deadline, self.inner.budget.clone().acquire_many_owned(len))
                    .await
                    .map_err(|_| TransportError::Timeout(deadline))?
                    .map_err(|_| TransportError::Down(DownReason::TransportGone))?
            }
        };
        if let Some(direct) = &self.inner.direct {
            return direct.send(self.inner.id, msg, permit);
        }
        self.inner
            .commands
            .send(Command::Send {
                id: self.inner.id,
                msg,
                permit,
            })
            .map_err(|_| TransportError::Down(DownReason::TransportGone))
    }

    /// Starts a graceful shutdown.
    pub fn close(&self) {
        if !self.inner.closed.swap(true, Ordering::Relaxed) {
            let _ = self
                .inner
                .commands
                .send(Command::Close { id: self.inner.id });
        }
    }

    /// Aborts at once.
    pub fn abort(&self, reason: &str) {
        if !self.inner.closed.swap(true, Ordering::Relaxed) {
            let _ = self.inner.commands.send(Command::Abort {
                id: self.inner.id,
                reason: reason.into(),
            });
        }
    }
}

/// Incoming associations of a bound transport.
#[derive(Debug)]
pub struct Listener {
    incoming: mpsc::Receiver<Association>,
}

impl Listener {
    pub(crate) fn new(incoming: mpsc::Receiver<Association>) -> Self {
        Listener { incoming }
    }

    /// The next association a peer opened; `None` when the transport stopped.
    pub async fn accept(&mut self) -> Option<Association> {
        self.incoming.recv().await
    }
}

/// An SCTP engine as roles use it: open associations to peers.
pub trait Transport: Clone + Send + Sync + 'static {
    /// Opens an association to a peer reachable at `remotes` (first one primary),
    /// to the given SCTP port, within `deadline`.
    fn connect(
        &self,
        remotes: &[SocketAddr],
        sctp_port: u16,
        deadline: Duration,
    ) -> impl Future<Output = Result<Association, TransportError>> + Send;

    /// The local UDP address (or pseudo-address) of this transport.
    fn local_addr(&self) -> SocketAddr;
}
