//! One client connection on the PPU: relay over a session to a PE, detect PE failure,
//! move the session to another PE.
//!
//! One task and one `select!` loop per session: read the client (plugin first, then send
//! to the PE with back-pressure), read the association while the client buffer is below
//! [`CLIENT_BUFFER`], write the client from that buffer, and run the keep-alive timer.
//! Every `await` inside the loop is cancel-safe or happens after the bytes were given to
//! the plugin, so a failure at any point loses nothing the plugin cannot replay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pool_core::cookie::replace_public;
use pool_core::types::{PeId, PoolHandle};
use pool_core::wire::AsapMessage;
use poolgate_plugins::{render, Delivery, Failover, PluginConfig, PluginError, SessionState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::PpuMetrics;
use crate::asap_client::PoolUser;
use crate::config::ppu::SessionConfig;
use crate::session::{self, Control, SessionMessage, CHUNK};
use crate::transport::sctp_udp::SctpUdp;
use crate::transport::{
    AssocEvent, AssocEvents, AssocSender, DownReason, Transport, TransportError,
};

/// Backend bytes buffered for the client before we stop reading the association.
pub const CLIENT_BUFFER: usize = 256 * 1024;
/// Longest wait for the PE to take a message before the session counts as failed.
const SEND_DEADLINE: Duration = Duration::from_secs(10);

/// Client bytes on their way to the PE, waiting for the association's send budget.
type PendingSend =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), TransportError>> + Send>>;

/// What the sessions of one listener share.
pub struct SessionContext {
    /// Listener name (metric label).
    pub listener: String,
    /// Pool served.
    pub pool: PoolHandle,
    /// Plugin factory.
    pub plugin: PluginConfig,
    /// Keep-alive and failover settings.
    pub session: SessionConfig,
    /// Deadline of one handle resolution.
    pub resolution_timeout: Duration,
    /// The shared pool user (resolution cache, failure reports).
    pub pu: Arc<Mutex<PoolUser<SctpUdp>>>,
    /// Transport for sessions.
    pub transport: SctpUdp,
    /// Metrics.
    pub metrics: Arc<PpuMetrics>,
    /// PROXY protocol version to send to backends (tcp/tls listeners).
    pub send_proxy: Option<poolgate_plugins::proxy_protocol::ProxyVersion>,
}

/// Why a session left its PE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// No message within the keep-alive timeout.
    KeepaliveTimeout,
    /// The PE closed the session cleanly (its backend closed, or it drained).
    PeClosed,
    /// The association went down otherwise.
    Down(DownReason),
    /// The PE did not take a message within the send deadline.
    SendFailed,
}

impl Cause {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Cause::KeepaliveTimeout => "keepalive_timeout",
            Cause::PeClosed => "pe_closed",
            Cause::Down(_) => "association_down",
            Cause::SendFailed => "send_failed",
        }
    }

    /// Whether the PE should be reported unreachable to the registrar.
    pub fn reportable(&self) -> bool {
        !matches!(self, Cause::PeClosed)
    }
}

enum Outcome {
    /// Client half-closed and the PE closed after answering everything.
    Done,
    /// The plugin asked to close the client connection (e.g. a resumed download whose
    /// representation changed): what it delivered goes out, then the close.
    CloseClient,
    /// The client went away.
    ClientGone,
    /// The PE failed.
    Failed(Cause),
}

struct Link {
    pe: PeId,
    tx: AssocSender,
    rx: AssocEvents,
}

struct Session<'a> {
    ctx: &'a SessionContext,
    plugin: Box<dyn SessionState>,
    cookie: Option<Vec<u8>>,
    requests: u64,
    client_eof: bool,
    to_client: BytesMut,
    deliver: Vec<Delivery>,
    last_seen: Instant,
    waiting_since: Option<Instant>,
    /// PEs tried since the session last made progress (the last one serves it now).
    tried: Vec<PeId>,
    fails_in_row: u32,
    /// Sent to every PE before the session's first message (PROXY protocol header).
    backend_header: Option<Bytes>,
}

/// Runs one client session to its end, over any client byte stream: a TCP connection,
/// a TLS stream, or the in-memory pipe of an HTTP listener's upstream connection (see
/// [`super::http`]). `local` is the listener address the client reached (for a PROXY
/// protocol header, when the listener sends one).
pub async fn run<R, W>(
    mut cr: R,
    mut cw: W,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    ctx: &SessionContext,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut s = Session {
        ctx,
        plugin: ctx.plugin.new_session(),
        cookie: None,
        requests: 0,
        client_eof: false,
        to_client: BytesMut::new(),
        deliver: Vec::new(),
        last_seen: Instant::now(),
        waiting_since: None,
        tried: Vec::new(),
        fails_in_row: 0,
        backend_header: ctx.send_proxy.zip(local).map(|(v, local)| {
            use poolgate_plugins::proxy_protocol::{encode, ProxyHeader};
            Bytes::from(encode(
                v,
                &ProxyHeader::Tcp {
                    source: peer,
                    destination: local,
                },
            ))
        }),
    };
    let mut link = match s.open().await {
        Some(l) => l,
        None => {
            s.count_unresumable("no_pe");
            tracing::warn!(%peer, listener = %ctx.listener, "no pool element reachable; closing the client connection");
            let _ = cw.shutdown().await;
            return;
        }
    };
    tracing::debug!(%peer, pe = format_args!("{:08x}", link.pe), "session open");
    loop {
        match s.relay(&mut link, &mut cr, &mut cw).await {
            Outcome::Done | Outcome::CloseClient => {
                let _ = cw.write_all(&s.to_client).await;
                let _ = cw.shutdown().await;
                link.tx.close();
                return;
            }
            Outcome::ClientGone => {
                link.tx.close();
                return;
            }
            Outcome::Failed(cause) => {
                link.tx.abort("failover");
                match s.failover(cause, link.pe, &mut cw).await {
                    Some(l) => link = l,
                    None => {
                        // Answers the plugin already owes the client (error replies
                        // for requests it will not replay) go out before the close.
                        let _ = cw.write_all(&s.to_client).await;
                        let _ = cw.shutdown().await;
                        return;
                    }
                }
            }
        }
    }
}

impl Session<'_> {
    /// The plugin lost track of the `stream` (client or backend): from now on it only
    /// relays, and the session can no longer fail over. Logged and counted.
    fn plugin_lost_track(&self, stream: &str, e: &PluginError) {
        tracing::warn!(stream, kind = e.kind(), error = %e, "plugin lost track");
        if let Ok(c) = self
            .ctx
            .metrics
            .plugin_errors
            .with(&[&self.ctx.listener, stream, e.kind()])
        {
            c.inc();
        }
    }

    fn count_unresumable(&self, reason: &str) {
        if let Ok(c) = self
            .ctx
            .metrics
            .unresumable
            .with(&[&self.ctx.listener, reason])
        {
            c.inc();
        }
    }

    /// Selects a PE not yet tried for this session and opens an association to it.
    async fn connect_next(&mut self) -> Option<Link> {
        let ctx = self.ctx;
        let pe = {
            let mut pu = ctx.pu.lock().await;
            match pu.select(&ctx.pool, ctx.resolution_timeout).await {
                Ok(pe) if !self.tried.contains(&pe.id) => Some(pe),
                _ => {
                    let all = pu.resolve(&ctx.pool, ctx.resolution_timeout).await.ok()?;
                    let left: Vec<_> = all
                        .into_iter()
                        .filter(|p| !self.tried.contains(&p.id))
                        .collect();
                    if left.is_empty() {
                        None
                    } else {
                        let i = rand::random_range(0..left.len());
                        left.into_iter().nth(i)
                    }
                }
            }
        }?;
        self.tried.push(pe.id);
        let (addrs, port) = session::session_target(&pe.user_transport)?;
        let deadline = ctx
            .session
            .keepalive_timeout
            .max(Duration::from_millis(500))
            * 2;
        match ctx.transport.connect(&addrs, port, deadline).await {
            Ok(a) => {
                let (tx, rx) = a.split();
                Some(Link { pe: pe.id, tx, rx })
            }
            Err(e) => {
                tracing::debug!(pe = format_args!("{:08x}", pe.id), error = %e, "PE unreachable");
                if ctx.session.report_failures {
                    ctx.pu.lock().await.report_failure(&ctx.pool, pe.id).await;
                }
                None
            }
        }
    }

    /// Sends the backend header (if any) ahead of the session's first message. A free
    /// function: `Session` is not `Sync`, so no borrow of it may live across an await.
    async fn send_backend_header(header: Option<Bytes>, link: &Link) -> bool {
        match header {
            None => true,
            Some(h) => link
                .tx
                .send(session::backend_header(&h), SEND_DEADLINE)
                .await
                .is_ok(),
        }
    }

    /// Opens a new session on some PE of the pool.
    async fn open(&mut self) -> Option<Link> {
        for _ in 0..self.ctx.session.failover_max_attempts {
            let Some(link) = self.connect_next().await else {
                continue;
            };
            if Self::send_backend_header(self.backend_header.clone(), &link).await
                && link
                    .tx
                    .send(Control::Open.message(), SEND_DEADLINE)
                    .await
                    .is_ok()
            {
                self.last_seen = Instant::now();
                return Some(link);
            }
        }
        None
    }

    /// Moves the session to another PE; `None` when it cannot be resumed.
    async fn failover<W: AsyncWrite + Unpin>(
        &mut self,
        cause: Cause,
        failed: PeId,
        cw: &mut W,
    ) -> Option<Link> {
        let ctx = self.ctx;
        let started = Instant::now();
        // Only this failure's PEs are excluded: a PE that failed earlier in a long
        // session may be back (its backend restarted), and a session that has been on
        // every PE of the pool once must still be able to move.
        self.tried.clear();
        self.tried.push(failed);
        if let Ok(c) = ctx.metrics.failovers.with(&[&ctx.listener, cause.label()]) {
            c.inc();
        }
        tracing::info!(pe = format_args!("{failed:08x}"), cause = cause.label(), detail = ?cause, "session failover");
        if cw.write_all(&self.to_client).await.is_err() {
            return None;
        }
        self.to_client.clear();
        if ctx.session.report_failures && cause.reportable() {
            ctx.pu.lock().await.report_failure(&ctx.pool, failed).await;
        }
        // Ask the plugin once per failure: its answer (what to replay, what the client
        // is owed) holds for every PE tried below, and each call counts as a retry.
        let resume = match self.plugin.failover() {
            Failover::Resume(r) => r,
            Failover::NotResumable(r) => {
                self.count_unresumable(r.kind());
                tracing::warn!(reason = %r, "session not resumable; closing the client connection");
                return None;
            }
        };
        self.to_client.extend_from_slice(&resume.to_client);
        let replay = Bytes::from(resume.replay);
        loop {
            if self.fails_in_row >= ctx.session.failover_max_attempts {
                self.count_unresumable("attempts_exhausted");
                tracing::warn!(
                    attempts = self.fails_in_row,
                    "session not resumed: no PE took it over; closing the client connection"
                );
                return None;
            }
            self.fails_in_row += 1;
            let Some(link) = self.connect_next().await else {
                continue;
            };
            let first = match &self.cookie {
                Some(c) => match replace_public(c, &self.plugin.public_state().encode()) {
                    Ok(c) => session::asap(&AsapMessage::CookieEcho(c)),
                    Err(e) => {
                        self.count_unresumable("bad_cookie");
                        tracing::warn!(error = %e, "latest cookie unusable; closing the client connection");
                        return None;
                    }
                },
                None => Some(Control::Open.message()),
            };
            let first = first?;
            let mut ok = Self::send_backend_header(self.backend_header.clone(), &link).await
                && link.tx.send(first, SEND_DEADLINE).await.is_ok();
            // The replay can exceed the largest message: send it in relay-sized pieces.
            let mut at = 0;
            while ok && at < replay.len() {
                let end = (at + CHUNK).min(replay.len());
                ok = link
                    .tx
                    .send(session::data(replay.slice(at..end)), SEND_DEADLINE)
                    .await
                    .is_ok();
                at = end;
            }
            if ok && self.client_eof {
                ok = link
                    .tx
                    .send(Control::Eof.message(), SEND_DEADLINE)
                    .await
                    .is_ok();
            }
            if !ok {
                continue;
            }
            let stall_from = self
                .waiting_since
                .map(|w| w.max(self.last_seen))
                .unwrap_or(started);
            if let Ok(h) = ctx.metrics.stall.with(&[&ctx.listener]) {
                h.observe_duration(Instant::now() - stall_from);
            }
            if let Ok(c) = ctx.metrics.resumed.with(&[&ctx.listener]) {
                c.inc();
            }
            self.last_seen = Instant::now();
            tracing::info!(
                pe = format_args!("{:08x}", link.pe),
                replayed = resume.replayed_requests,
                "session resumed"
            );
            return Some(link);
        }
    }

    fn pending_requests(&self) -> u64 {
        self.requests
            .saturating_sub(self.plugin.public_state().answered)
    }

    /// Handles one association event; `Some` ends the relay.
    fn on_event(&mut self, ev: Option<AssocEvent>) -> Option<Outcome> {
        let Some(ev) = ev else {
            return Some(Outcome::Failed(Cause::Down(DownReason::TransportGone)));
        };
        match ev {
            AssocEvent::Message(m) => {
                self.last_seen = Instant::now();
                match SessionMessage::decode(m) {
                    SessionMessage::Data(b) => {
                        self.waiting_since = None;
                        self.deliver.clear();
                        let p = self.plugin.on_backend_bytes(&b, &mut self.deliver);
                        if let Some(e) = &p.error {
                            self.plugin_lost_track("backend", e);
                        }
                        let before = self.to_client.len();
                        if matches!(self.deliver.as_slice(), [Delivery::Forward(r)] if r.start == 0 && r.end == b.len())
                        {
                            self.to_client.extend_from_slice(&b);
                        } else {
                            self.to_client.extend_from_slice(&render(&b, &self.deliver));
                        }
                        if let Ok(c) = self
                            .ctx
                            .metrics
                            .bytes
                            .with(&[&self.ctx.listener, "to_client"])
                        {
                            c.inc_by((self.to_client.len() - before) as u64);
                        }
                        if p.close_client {
                            self.count_unresumable("plugin_closed");
                            tracing::warn!(
                                listener = %self.ctx.listener,
                                "plugin closed the client connection (resumed response does not match)"
                            );
                            return Some(Outcome::CloseClient);
                        }
                    }
                    SessionMessage::Asap(AsapMessage::Cookie(c)) => {
                        self.cookie = Some(c);
                        // The PE took the session: it counts as progress, and PEs that
                        // failed before may serve a later failover again (their backend
                        // may be back); only the serving one is excluded then.
                        self.fails_in_row = 0;
                        if let Some(&serving) = self.tried.last() {
                            self.tried.clear();
                            self.tried.push(serving);
                        }
                    }
                    _ => {}
                }
                None
            }
            AssocEvent::Down(reason) => {
                if self.client_eof && self.pending_requests() == 0 {
                    Some(Outcome::Done)
                } else if reason == DownReason::Shutdown {
                    Some(Outcome::Failed(Cause::PeClosed))
                } else {
                    Some(Outcome::Failed(Cause::Down(reason)))
                }
            }
            _ => None,
        }
    }

    async fn relay<R, W>(&mut self, link: &mut Link, cr: &mut R, cw: &mut W) -> Outcome
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let cfg = &self.ctx.session;
        let mut buf = BytesMut::with_capacity(CHUNK);
        let mut probe_deadline: Option<Instant> = None;
        let up_bytes = self
            .ctx
            .metrics
            .bytes
            .with(&[&self.ctx.listener, "to_pe"])
            .ok();
        // Client bytes wait for the PE's window here while the loop goes on reading the
        // association: awaited inline, a PE that waits for our window in turn (both
        // directions busy, e.g. an echo) would lock the session up.
        let mut up: Option<PendingSend> = None;
        // A TLS client stream holds written bytes in its records until flushed: once the
        // buffer is written out (and at the start: a failover may have written), flush,
        // or the tail of an answer waits there for bytes that may never come.
        let mut unflushed = true;
        // One keep-alive timer, moved as the session goes: a fresh `sleep` per turn of
        // the loop would enter and leave the timer wheel with every message.
        let keepalive = tokio::time::sleep_until(self.last_seen + cfg.keepalive_interval);
        tokio::pin!(keepalive);
        loop {
            let timer = match probe_deadline {
                Some(d) => d,
                None => self.last_seen + cfg.keepalive_interval,
            };
            if keepalive.deadline() != timer {
                keepalive.as_mut().reset(timer);
            }
            tokio::select! {
                ev = link.rx.recv(), if self.to_client.len() < CLIENT_BUFFER => {
                    if let Some(o) = self.on_event(ev) {
                        return o;
                    }
                    probe_deadline = None;
                }
                r = async {
                    if self.to_client.is_empty() {
                        cw.flush().await.map(|()| None)
                    } else {
                        cw.write_buf(&mut self.to_client).await.map(Some)
                    }
                }, if unflushed || !self.to_client.is_empty() => {
                    match r {
                        Ok(Some(0)) | Err(_) => return Outcome::ClientGone,
                        Ok(Some(_)) => unflushed = true,
                        Ok(None) => unflushed = false,
                    }
                }
                r = async { up.as_mut().expect("guarded by is_some").await }, if up.is_some() => {
                    up = None;
                    if r.is_err() {
                        return Outcome::Failed(Cause::SendFailed);
                    }
                }
                r = cr.read_buf(&mut buf), if !self.client_eof && up.is_none() => {
                    match r {
                        Err(_) => return Outcome::ClientGone,
                        Ok(0) => {
                            self.client_eof = true;
                            if link.tx.send(Control::Eof.message(), SEND_DEADLINE).await.is_err() {
                                return Outcome::Failed(Cause::SendFailed);
                            }
                        }
                        Ok(n) => {
                            let chunk = buf.split().freeze();
                            let p = self.plugin.on_client_bytes(&chunk);
                            self.requests += p.requests;
                            if let Some(e) = &p.error {
                                self.plugin_lost_track("client", e);
                            }
                            if self.waiting_since.is_none() {
                                self.waiting_since = Some(Instant::now());
                            }
                            if let Some(c) = &up_bytes { c.inc_by(n as u64); }
                            let (tx, m) = (link.tx.clone(), session::data(chunk));
                            up = Some(Box::pin(async move { tx.send(m, SEND_DEADLINE).await }));
                            session::renew_read_buffer(&mut buf);
                        }
                    }
                }
                () = &mut keepalive => {
                    if probe_deadline.is_some() {
                        // Messages may have queued while we were busy: they count.
                        let mut alive = false;
                        while let Ok(ev) = link.rx.try_recv() {
                            alive = true;
                            if let Some(o) = self.on_event(Some(ev)) {
                                return o;
                            }
                        }
                        if !alive {
                            return Outcome::Failed(Cause::KeepaliveTimeout);
                        }
                        probe_deadline = None;
                    } else {
                        let ka = AsapMessage::EndpointKeepAlive {
                            home: false,
                            server_id: 0,
                            pool_handle: self.ctx.pool.clone(),
                            pe_id: link.pe,
                        };
                        if let Some(m) = session::asap(&ka) {
                            if link.tx.send(m, SEND_DEADLINE).await.is_err() {
                                return Outcome::Failed(Cause::SendFailed);
                            }
                        }
                        probe_deadline = Some(Instant::now() + cfg.keepalive_timeout);
                    }
                }
            }
        }
    }
}
