//! The pool users of a real-time lab run: tasks in the lab process, one per PU,
//! each with its own [`PoolUser`] (handle resolution at the real registrar,
//! ENDPOINT_UNREACHABLE reports) and one association per request attempt to the
//! chosen PE, with session keep-alives, cookie echo on failover and Abort and
//! Restart when configured.
//!
//! The network delay of the simulation applies to every message ([`super::delay`]):
//! a handle resolution costs a round trip (the PU asks a delay after it decided
//! to, and acts on the answer a delay after that; a failure report goes along
//! with the resolution that follows it), a request and each message of the PE
//! are acted on a delay after they were sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_core::asap::pu::PuConfig;
use pool_core::types::PeId;
use pool_core::wire::AsapMessage;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::delay::{Inbox, Lateness, NetDelay};
use super::proto::{self, Clock, Reply};
use crate::asap_client::PoolUser;
use crate::lab::params::Params;
use crate::lab::workload::RequestStream;
use crate::session::{self, Control, SessionMessage};
use crate::transport::sctp_udp::SctpUdp;
use crate::transport::{AssocEvent, AssocEvents, AssocSender, DownReason, Transport};

/// Longest wait for one handle resolution (real time).
const RESOLVE_DEADLINE: Duration = Duration::from_secs(2);
/// Longest wait for a PE to take a message (real time).
const SEND_DEADLINE: Duration = Duration::from_secs(2);

/// What the PUs measured, shared by their tasks.
#[derive(Debug, Default)]
pub struct PuTally {
    /// Handling speeds (% of capacity) of requests created in the window and done by its end.
    pub speeds: Vec<f64>,
    /// Sum of their handling delays (s).
    pub delays: f64,
    /// Sum of their queuing delays (s).
    pub queuing: f64,
    /// Sum of their startup delays (s).
    pub startup: f64,
    /// Sum of their processing times (s).
    pub processing: f64,
    /// Requests issued (any time).
    pub issued: u64,
    /// Requests completed (any time, drain included).
    pub completed: u64,
    /// Failovers inside the window.
    pub failovers: u64,
    /// ENDPOINT_UNREACHABLE reports inside the window.
    pub failure_reports: u64,
    /// Rejected attempts inside the window.
    pub rejects: u64,
    /// How late the PUs acted on messages after their modelled arrival.
    pub msg_late: Lateness,
}

/// What every PU task shares.
pub struct PuContext {
    /// Scenario parameters.
    pub p: Params,
    /// Scaled clock.
    pub clock: Clock,
    /// The network delay model.
    pub net: NetDelay,
    /// Registrar address.
    pub registrar: std::net::SocketAddr,
    /// Transport for registrar associations and sessions.
    pub transport: SctpUdp,
    /// Results.
    pub tally: Mutex<PuTally>,
}

impl PuContext {
    fn in_window(&self) -> bool {
        let t = self.clock.now();
        t >= self.p.warmup && t <= self.p.duration
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, PuTally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Clone, Copy, Debug)]
struct Req {
    size: f64,
    created: f64,
}

/// Runs PU `u`: issues requests until the scenario ends, then finishes its queue.
pub async fn run(ctx: Arc<PuContext>, u: usize, seed: u64) {
    let mut requests = RequestStream::new(seed, u, ctx.p.request_interval(), ctx.p.request_size);
    let (tx, rx) = mpsc::unbounded_channel();
    let worker = tokio::spawn(work(ctx.clone(), rx));
    let mut t = 0.0;
    loop {
        t += requests.gap();
        if t > ctx.p.duration {
            break;
        }
        let size = requests.size();
        ctx.net.until(t).await;
        ctx.tally().issued += 1;
        if tx.send(Req { size, created: t }).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = worker.await;
    tracing::debug!(pu = u, t = ctx.clock.now(), "PU done");
}

async fn work(ctx: Arc<PuContext>, mut rx: mpsc::UnboundedReceiver<Req>) {
    let mut config = PuConfig::new(vec![ctx.registrar]);
    // The lab decides when the cache is stale (on the scenario clock, see
    // `handle`) and invalidates it then, so every resolution pays its delay.
    config.cache_staleness = Duration::from_secs(3600);
    let mut pu = match PoolUser::new(config, ctx.transport.clone()) {
        Ok(pu) => pu,
        Err(e) => {
            tracing::error!(error = %e, "lab PU");
            return;
        }
    };
    // Scenario time the cached resolution was answered.
    let mut resolved: Option<f64> = None;
    while let Some(req) = rx.recv().await {
        handle(&ctx, &mut pu, req, &mut resolved).await;
    }
    tracing::debug!(t = ctx.clock.now(), "PU queue empty");
    pu.close(Duration::from_millis(100)).await;
}

/// How one attempt at a PE ended.
enum End {
    Done,
    Busy,
    /// The PE closed the session (clean stop) after its final cookie.
    Closed,
    /// The PE did not answer or the association failed.
    Failed,
}

async fn handle(ctx: &PuContext, pu: &mut PoolUser<SctpUdp>, req: Req, resolved: &mut Option<f64>) {
    let p = &ctx.p;
    let d = ctx.net.delay;
    let pool = proto::pool();
    let dequeued = ctx.clock.now();
    let mut cookie: Option<Vec<u8>> = None;
    let mut accepted: Option<f64> = None;
    // A PE to report unreachable (with the next resolution).
    let mut report: Option<PeId> = None;
    // A dead PE costs what the simulation charges: a keep-alive interval and timeout.
    let connect_deadline = ctx
        .clock
        .real(p.session_ka_interval + p.session_ka_timeout)
        .max(Duration::from_millis(50));
    loop {
        let t0 = ctx.clock.now();
        let ask = resolved.is_none_or(|at| t0 - at >= p.cache_staleness);
        if ask {
            // The resolution (and a report before it) reaches the registrar.
            ctx.net.until(t0 + d).await;
            pu.invalidate(&pool);
        }
        if let Some(pe) = report.take() {
            pu.report_failure(&pool, pe).await;
        }
        let selected = pu.select(&pool, RESOLVE_DEADLINE).await;
        if ask {
            // The answer reaches the PU.
            *resolved = Some(t0 + d);
            let overdue = ctx.clock.now() > t0 + 2.0 * d;
            let late = ctx.net.arrive(t0 + d).await;
            ctx.tally().msg_late.add(late, overdue);
        }
        let pe = match selected {
            Ok(pe) => pe,
            Err(e) => {
                tracing::debug!(error = %e, "lab PU: no PE");
                *resolved = None;
                ctx.net.until(ctx.clock.now() + p.retry_delay).await;
                continue;
            }
        };
        let Some((addrs, port)) = session::session_target(&pe.user_transport) else {
            ctx.net.until(ctx.clock.now() + p.retry_delay).await;
            continue;
        };
        // The request leaves now; the PE acts on it a delay later (the SCTP
        // handshake before it is loopback's, inside that delay).
        let sent = ctx.clock.now();
        let end = match ctx.transport.connect(&addrs, port, connect_deadline).await {
            Ok(a) => {
                let (tx, mut rx) = a.split();
                let resume = cookie.as_ref().filter(|_| !p.abort_restart);
                let opened = match resume {
                    Some(c) => match session::asap(&AsapMessage::CookieEcho(c.clone())) {
                        Some(m) => {
                            tx.send(proto::stamp(sent), SEND_DEADLINE).await.is_ok()
                                && tx.send(m, SEND_DEADLINE).await.is_ok()
                        }
                        None => false,
                    },
                    None => {
                        tx.send(Control::Open.message(), SEND_DEADLINE)
                            .await
                            .is_ok()
                            && tx
                                .send(proto::request(req.size, sent), SEND_DEADLINE)
                                .await
                                .is_ok()
                    }
                };
                let end = if opened {
                    attempt(ctx, &tx, &mut rx, pe.id, &mut cookie, &mut accepted).await
                } else {
                    End::Failed
                };
                match end {
                    End::Done | End::Busy => tx.close(),
                    _ => tx.abort("failover"),
                }
                end
            }
            Err(_) => End::Failed,
        };
        match end {
            End::Done => {
                let now = ctx.clock.now();
                let mut t = ctx.tally();
                t.completed += 1;
                if req.created >= p.warmup && now <= p.duration {
                    let delay = now - req.created;
                    let accepted = accepted.unwrap_or(now);
                    t.delays += delay;
                    t.queuing += dequeued - req.created;
                    t.startup += accepted - dequeued;
                    t.processing += now - accepted;
                    t.speeds
                        .push(100.0 * req.size / delay.max(1e-9) / p.capacity);
                }
                return;
            }
            End::Busy => {
                if ctx.in_window() {
                    ctx.tally().rejects += 1;
                }
                ctx.net.until(ctx.clock.now() + p.retry_delay).await;
            }
            End::Closed => {
                if ctx.in_window() {
                    ctx.tally().failovers += 1;
                }
            }
            End::Failed => {
                report = Some(pe.id);
                if ctx.in_window() {
                    let mut t = ctx.tally();
                    t.failovers += 1;
                    t.failure_reports += 1;
                }
            }
        }
        if p.abort_restart {
            cookie = None;
        }
    }
}

/// What reaches a session from its PE.
enum FromPe {
    Message(SessionMessage),
    Down(DownReason),
    /// The association's event channel closed.
    Gone,
}

/// The scenario time a message says it was sent, if it says.
fn stamp_of(m: &SessionMessage) -> Option<f64> {
    match m {
        SessionMessage::Asap(AsapMessage::Cookie(c)) => proto::cookie_stamp(c),
        SessionMessage::Data(d) => Reply::parse(d).map(|(_, t)| t),
        _ => None,
    }
}

/// One session with one PE: keep-alives, cookies, the outcome.
///
/// As in the PPU, any message from the PE shows it is alive, and messages that
/// queued while this task waited for the CPU count before a keep-alive timeout
/// does (a busy PU must not impeach a PE that answered in time).
async fn attempt(
    ctx: &PuContext,
    tx: &AssocSender,
    rx: &mut AssocEvents,
    pe: PeId,
    cookie: &mut Option<Vec<u8>>,
    accepted: &mut Option<f64>,
) -> End {
    let interval = ctx.clock.real(ctx.p.session_ka_interval);
    let timeout = ctx.clock.real(ctx.p.session_ka_timeout);
    let mut last_seen = Instant::now();
    // Answer due by, while a probe is out.
    let mut probe: Option<Instant> = None;
    // The PE's messages, each due a network delay after it was sent.
    let mut inbox: Inbox<FromPe> = Inbox::default();
    let mut gone = false;
    let queue = |inbox: &mut Inbox<FromPe>, ev: Option<AssocEvent>| {
        let now = ctx.clock.now();
        let (item, sent) = match ev {
            Some(AssocEvent::Message(m)) => {
                let m = SessionMessage::decode(m);
                let sent = stamp_of(&m);
                (FromPe::Message(m), sent)
            }
            Some(AssocEvent::Down(r)) => (FromPe::Down(r), None),
            Some(_) => return,
            None => (FromPe::Gone, None),
        };
        inbox.push(now, sent.unwrap_or(now) + ctx.net.delay, item);
    };
    loop {
        let timer = probe.unwrap_or(last_seen + interval);
        let next = inbox.next_due();
        tokio::select! {
            biased;
            ev = rx.recv(), if !gone => {
                gone = ev.is_none();
                queue(&mut inbox, ev);
            }
            _ = ctx.net.until(next.unwrap_or(0.0)), if next.is_some() => {
                while let Some((item, late, overdue)) = inbox.pop_due(ctx.clock.now()) {
                    ctx.tally().msg_late.add(late * ctx.clock.scale, overdue);
                    if let Some(end) = on_event(ctx, item, cookie, accepted) {
                        return end;
                    }
                    last_seen = Instant::now();
                    probe = None;
                }
            }
            _ = tokio::time::sleep_until(timer) => {
                if probe.is_some() {
                    // What came before the timeout counts, even if this task
                    // waited for the CPU (a busy PU must not impeach a live PE).
                    while let Ok(ev) = rx.try_recv() {
                        queue(&mut inbox, Some(ev));
                    }
                    let mut alive = false;
                    while let Some((item, late, overdue)) = inbox.pop_due(ctx.clock.now()) {
                        alive = true;
                        ctx.tally().msg_late.add(late * ctx.clock.scale, overdue);
                        if let Some(end) = on_event(ctx, item, cookie, accepted) {
                            return end;
                        }
                    }
                    if !alive {
                        return End::Failed;
                    }
                    last_seen = Instant::now();
                    probe = None;
                    continue;
                }
                let ka = AsapMessage::EndpointKeepAlive {
                    home: false,
                    server_id: 0,
                    pool_handle: proto::pool(),
                    pe_id: pe,
                };
                let Some(m) = session::asap(&ka) else { return End::Failed };
                if tx.send(m, SEND_DEADLINE).await.is_err() {
                    return End::Failed;
                }
                probe = Some(Instant::now() + timeout);
            }
        }
    }
}

/// Handles one message or event of the PE; `Some` ends the attempt.
fn on_event(
    ctx: &PuContext,
    ev: FromPe,
    cookie: &mut Option<Vec<u8>>,
    accepted: &mut Option<f64>,
) -> Option<End> {
    match ev {
        FromPe::Message(SessionMessage::Asap(AsapMessage::Cookie(c))) => {
            accepted.get_or_insert_with(|| ctx.clock.now());
            *cookie = Some(c);
            None
        }
        FromPe::Message(SessionMessage::Data(d)) => match Reply::parse(&d) {
            Some((Reply::Done, _)) => Some(End::Done),
            Some((Reply::Busy, _)) => Some(End::Busy),
            None => None,
        },
        FromPe::Message(_) => None,
        FromPe::Down(DownReason::Shutdown) => Some(End::Closed),
        FromPe::Down(_) | FromPe::Gone => Some(End::Failed),
    }
}
