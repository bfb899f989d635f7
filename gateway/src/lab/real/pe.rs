//! `poolgate lab pe` (hidden): one pool element of a real-time lab run, as its
//! own process.
//!
//! It registers through the production PE driver ([`crate::asap_client::run_pe`])
//! over SCTP over UDP, serves CalcApp requests with [`CalcServer`] (processor
//! sharing) on the scaled clock, sends a sealed checkpoint cookie every cookie
//! interval, reports its load (requests being handled) for Least Used and
//! answers session keep-alives. It acts on what a PU sends a network delay
//! after it was sent, and its load reports and deregistration reach the
//! registrar a network delay late ([`super::delay`]), as in the simulation.
//!
//! The lab talks to it on stdin/stdout (measurement only, never pool traffic):
//! - stdout `ready <pe-id> <udp-addr>` once the registrar accepted it;
//! - stdin `freeze`: print `stats …` and go silent at once (the lab SIGKILLs it next);
//! - SIGTERM, or stdin `stop`: a clean stop — deregister, a final cookie on every
//!   request and a graceful close, then print `stats …` and exit.
//!
//! `stats busy=<s> late=<sum>:<n> msg=<sum>:<n>:<overdue> jobs=<done>:<last-cookie>,…`
//! gives the busy time inside the measurement window, how late the processor
//! woke for due events (sum of real seconds, count), how late it acted on
//! messages after their modelled arrival ([`Lateness`]) and, per request it was
//! handling, the calculations done and those covered by the last cookie sent.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use pool_core::asap::pe::PeConfig;
use pool_core::cookie::KeyRing;
use pool_core::types::{PeId, Policy};
use pool_core::wire::AsapMessage;
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, watch, Notify};

use super::delay::{Inbox, Lateness, NetDelay, Timer};
use super::proto::{self, Clock, Reply};
use crate::asap_client::{run_pe, PeCommand, PeStatus};
use crate::lab::params::PolicyChoice;
use crate::lab::workload::{least_used_load, CalcEvent, CalcServer, Interrupted, JobKey};
use crate::session::{self, Control, SessionMessage, OPEN_TIMEOUT};
use crate::transport::sctp_udp::SctpUdp;
use crate::transport::{AssocEvent, AssocEvents, AssocSender, Transport};

/// Longest wait for the PU to take a message.
const SEND_DEADLINE: Duration = Duration::from_secs(5);

/// Options of `poolgate lab pe`.
#[derive(Debug, Clone, Args)]
pub struct PeArgs {
    /// Registrar (UDP address of its SCTP-over-UDP endpoint).
    #[arg(long)]
    pub registrar: SocketAddr,
    /// PE identifier.
    #[arg(long)]
    pub id: PeId,
    /// Pool policy: lu, rr or random.
    #[arg(long, default_value = "lu")]
    pub policy: String,
    /// Capacity, calculations per scenario second.
    #[arg(long)]
    pub capacity: f64,
    /// Cookie interval, calculations.
    #[arg(long)]
    pub cookie_interval: f64,
    /// Reject a request when this many are being handled (0: never).
    #[arg(long, default_value_t = 0)]
    pub max_jobs: usize,
    /// Real seconds per scenario second.
    #[arg(long)]
    pub time_scale: f64,
    /// Wall-clock time of scenario time 0, ns since the Unix epoch.
    #[arg(long)]
    pub epoch_ns: u128,
    /// Measurement window start, scenario seconds.
    #[arg(long)]
    pub window_start: f64,
    /// Measurement window end, scenario seconds.
    #[arg(long)]
    pub window_end: f64,
    /// One-way network delay to and from this PE, scenario seconds.
    #[arg(long, default_value_t = 0.0)]
    pub network_delay: f64,
}

/// What a session learns from the processor, with the scenario time it happened.
#[derive(Debug)]
enum JobEvent {
    /// A checkpoint: calculations done.
    Cookie(f64, f64),
    Complete(f64),
    /// Clean stop: the final checkpoint.
    Stop(f64, f64),
}

struct State {
    calc: CalcServer,
    sessions: HashMap<JobKey, mpsc::UnboundedSender<JobEvent>>,
    /// Set by a clean stop: no new requests.
    stopping: bool,
    /// Sum of how late (real s) the processor woke for a due cookie or completion.
    late_sum: f64,
    /// Wake-ups counted in `late_sum`.
    late_n: u64,
    /// How late messages were acted on after their modelled arrival.
    msg_late: Lateness,
}

struct Pe {
    args: PeArgs,
    clock: Clock,
    keys: KeyRing,
    id: PeId,
    state: Mutex<State>,
    /// Woken when jobs come or go (the processor re-plans).
    changed: Notify,
    /// Set by `freeze`: nothing more leaves this PE.
    frozen: AtomicBool,
    next_job: AtomicU64,
    /// The network delay model.
    net: NetDelay,
    /// Commands to the registration driver, each with the scenario time it
    /// reaches the registrar (sent then by [`to_registrar`]).
    registrar_tx: mpsc::UnboundedSender<(f64, PeCommand)>,
}

impl Pe {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reports the load `jobs` it had from scenario time `t` on.
    fn report_load(&self, jobs: usize, t: f64) {
        if matches!(self.args.policy.as_str(), "lu") {
            let cmd = PeCommand::Load(least_used_load(jobs));
            let _ = self.registrar_tx.send((t + self.net.delay, cmd));
        }
    }
}

/// Hands the PE's commands to the registration driver when they reach the
/// registrar in the model (the driver sends them at once).
async fn to_registrar(
    pe: Arc<Pe>,
    mut rx: mpsc::UnboundedReceiver<(f64, PeCommand)>,
    tx: mpsc::Sender<PeCommand>,
) {
    while let Some((due, cmd)) = rx.recv().await {
        let overdue = pe.clock.now() > due;
        let late = pe.net.arrive(due - pe.net.delay).await;
        pe.lock().msg_late.add(late, overdue);
        if tx.send(cmd).await.is_err() {
            return;
        }
    }
}

/// Runs `poolgate lab pe` (its own single-threaded runtime).
pub fn main(args: &PeArgs) -> std::process::ExitCode {
    if let Ok(level) = std::env::var("POOLGATE_LAB_LOG") {
        let _ = crate::telemetry::logging::init(crate::telemetry::LogFormat::Human, &level);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lab pe: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(run(args.clone()));
    // The stdin reader sits in a blocking thread that never returns by itself.
    rt.shutdown_timeout(Duration::from_millis(50));
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lab pe {:08x}: {e:#}", args.id);
            std::process::ExitCode::FAILURE
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn stats_line(s: &State, jobs: &[Interrupted]) -> String {
    let list: Vec<String> = jobs
        .iter()
        .map(|j| format!("{}:{}", j.done, j.last_cookie))
        .collect();
    format!(
        "stats busy={} late={}:{} msg={}:{}:{} jobs={}",
        s.calc.busy_time(),
        s.late_sum,
        s.late_n,
        s.msg_late.sum,
        s.msg_late.n,
        s.msg_late.overdue,
        list.join(",")
    )
}

async fn run(args: PeArgs) -> anyhow::Result<()> {
    let policy = PolicyChoice::parse(&args.policy)?;
    let key = std::env::var(proto::KEY_ENV).context("no pool key in POOLGATE_LAB_KEY")?;
    let keys = proto::key_ring(&key)?;
    let clock = Clock::from_epoch_ns(args.epoch_ns, args.time_scale);
    if !(args.network_delay >= 0.0 && args.network_delay.is_finite()) {
        anyhow::bail!("--network-delay must be a finite number of seconds, at least 0");
    }
    let net = NetDelay::new(
        clock,
        args.network_delay,
        Timer::start().context("starting the timer thread")?,
    );
    let bind = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .context("finding a free UDP port")?;
    let (transport, mut listener) = SctpUdp::bind(session::transport_config(
        bind,
        vec![bind.port()],
        &Default::default(),
    ))
    .with_context(|| format!("binding SCTP over UDP on {bind}"))?;
    let local = transport.local_addr();
    let mut cfg = PeConfig::new(
        proto::pool(),
        session::user_transport(local),
        match policy {
            PolicyChoice::LeastUsed => Policy::LeastUsed { load: 0 },
            PolicyChoice::RoundRobin => Policy::RoundRobin,
            PolicyChoice::Random => Policy::Random,
        },
        vec![args.registrar],
    );
    cfg.pe_id = Some(args.id);
    // Every change of the request count is reported (Least Used needs it).
    cfg.load_change_threshold = 1;
    // The registration's timers run on the scenario clock too (the simulation's
    // 30 s life, re-registered every 10 s): a PE the registrar dropped after a
    // late keep-alive answer is back within one re-registration interval.
    cfg.registration_life = clock.real(30.0).max(Duration::from_millis(30));
    cfg.reregistration_interval = clock.real(10.0).max(Duration::from_millis(10));
    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let (st_tx, mut st_rx) = watch::channel(PeStatus::Unregistered);
    let registration = tokio::spawn(run_pe(cfg, transport.clone(), cmd_rx, st_tx));
    let (registrar_tx, registrar_rx) = mpsc::unbounded_channel();
    let window = (args.window_start, args.window_end);
    let pe = Arc::new(Pe {
        id: args.id,
        state: Mutex::new(State {
            calc: CalcServer::new(args.capacity, args.cookie_interval, clock.now(), window),
            sessions: HashMap::new(),
            stopping: false,
            late_sum: 0.0,
            late_n: 0,
            msg_late: Lateness::default(),
        }),
        changed: Notify::new(),
        frozen: AtomicBool::new(false),
        next_job: AtomicU64::new(0),
        net,
        registrar_tx,
        args,
        clock,
        keys,
    });
    tokio::time::timeout(
        Duration::from_secs(10),
        st_rx.wait_for(|s| matches!(s, PeStatus::Registered(_))),
    )
    .await
    .context("not registered within 10 s")?
    .context("registration driver stopped")?;
    say(&format!("ready {:08x} {local}", pe.id));
    tokio::spawn(to_registrar(pe.clone(), registrar_rx, cmd_tx.clone()));
    tokio::spawn(processor(pe.clone()));
    let accept = {
        let pe = pe.clone();
        tokio::spawn(async move {
            while let Some(a) = listener.accept().await {
                tokio::spawn(serve(a, pe.clone()));
            }
        })
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            line = stdin.next_line() => match line {
                Ok(Some(l)) if l.trim() == "freeze" => {
                    pe.frozen.store(true, Ordering::SeqCst);
                    let line = {
                        let mut s = pe.lock();
                        // No catch-up: cookies that fell due but have not left
                        // never reach the PU, so their work is lost too.
                        s.calc.advance(pe.clock.now());
                        let jobs = s.calc.stop_all();
                        stats_line(&s, &jobs)
                    };
                    accept.abort();
                    say(&line);
                    // Silent from now on; the lab's SIGKILL ends us.
                    std::future::pending::<()>().await;
                }
                Ok(Some(l)) if l.trim() == "stop" => break,
                Ok(Some(_)) => {}
                // The lab went away: stop cleanly.
                Ok(None) | Err(_) => break,
            },
        }
    }
    // Clean stop: deregister, hand every request over with its final cookie.
    let now = pe.clock.now();
    let _ = pe
        .registrar_tx
        .send((now + pe.net.delay, PeCommand::Shutdown));
    accept.abort();
    let line = {
        let mut s = pe.lock();
        s.stopping = true;
        catch_up(&mut s, now);
        let jobs = s.calc.stop_all();
        for j in &jobs {
            if let Some(tx) = s.sessions.remove(&j.key) {
                let _ = tx.send(JobEvent::Stop(j.done, now));
            }
        }
        stats_line(&s, &jobs)
    };
    pe.changed.notify_one();
    let _ = tokio::time::timeout(Duration::from_secs(2), registration).await;
    say(&line);
    // Give the sessions a moment to deliver their final cookies and SHUTDOWNs.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(transport);
    Ok(())
}

/// Runs the processor: sleeps until the next cookie or completion falls due and
/// hands them to the sessions.
async fn processor(pe: Arc<Pe>) {
    let mut due: Option<f64> = None;
    loop {
        if pe.frozen.load(Ordering::SeqCst) {
            return;
        }
        let (next, completed) = {
            let mut s = pe.lock();
            let now = pe.clock.now();
            let (events, completed) = catch_up(&mut s, now);
            if let (Some(t), true) = (due.take(), events) {
                s.late_sum += ((now - t) * pe.clock.scale).max(0.0);
                s.late_n += 1;
            }
            (s.calc.next_event(), completed.map(|t| (s.calc.jobs(), t)))
        };
        if let Some((jobs, t)) = completed {
            pe.report_load(jobs, t);
        }
        let notified = pe.changed.notified();
        match next {
            Some(t) => {
                tokio::select! {
                    _ = pe.net.until(t) => due = Some(t),
                    _ = notified => {}
                }
            }
            None => notified.await,
        }
    }
}

/// Brings the processor to scenario time `now`, handing out every cookie and
/// completion stamped with its own scenario time (a wake-up may come late; the
/// work model must not: a finished request leaves when it finishes, not when we
/// notice). Returns whether anything fell due and when the last request completed.
fn catch_up(s: &mut State, now: f64) -> (bool, Option<f64>) {
    let mut out = Vec::new();
    let mut times = Vec::new();
    while let Some(t) = s.calc.next_event().filter(|t| *t <= now) {
        let before = out.len();
        s.calc.advance(t);
        s.calc.take_due(&mut out);
        if out.len() == before {
            break;
        }
        times.resize(out.len(), t);
    }
    s.calc.advance(now);
    s.calc.take_due(&mut out);
    times.resize(out.len(), now);
    let mut completed = None;
    for (e, &t) in out.iter().zip(&times) {
        match *e {
            CalcEvent::Cookie { key, done } => {
                if let Some(tx) = s.sessions.get(&key) {
                    let _ = tx.send(JobEvent::Cookie(done, t));
                }
            }
            CalcEvent::Complete { key } => {
                completed = Some(t);
                if let Some(tx) = s.sessions.remove(&key) {
                    let _ = tx.send(JobEvent::Complete(t));
                }
            }
        }
    }
    (!out.is_empty(), completed)
}

async fn send_cookie(pe: &Pe, tx: &AssocSender, size: f64, done: f64, sent: f64) -> Result<(), ()> {
    let c = proto::seal(&pe.keys, size, done, sent).map_err(|e| tracing::warn!(error = %e))?;
    let m = session::asap(&AsapMessage::Cookie(c)).ok_or(())?;
    tx.send(m, SEND_DEADLINE).await.map_err(|_| ())
}

async fn next_message(events: &mut AssocEvents) -> Option<SessionMessage> {
    loop {
        match events.recv().await? {
            AssocEvent::Message(m) => return Some(SessionMessage::decode(m)),
            AssocEvent::Down(_) => return None,
            _ => {}
        }
    }
}

/// The request a session opens with: (size, calculations done, stamp), or `None`.
async fn first_request(pe: &Pe, events: &mut AssocEvents) -> Option<(f64, f64, Option<f64>)> {
    let wait = async {
        let mut sent = None;
        loop {
            match next_message(events).await? {
                SessionMessage::Control(Control::Open) => {
                    return match next_message(events).await? {
                        SessionMessage::Data(d) => {
                            proto::parse_request(&d).map(|(size, t)| (size, 0.0, Some(t)))
                        }
                        _ => None,
                    }
                }
                SessionMessage::Data(d) if sent.is_none() => sent = Some(proto::parse_stamp(&d)?),
                SessionMessage::Asap(AsapMessage::CookieEcho(c)) => {
                    return proto::open(&pe.keys, &c)
                        .map_err(|e| tracing::warn!(error = %e, "COOKIE_ECHO refused"))
                        .ok()
                        .map(|(size, done)| (size, done, sent))
                }
                _ => return None,
            }
        }
    };
    tokio::time::timeout(OPEN_TIMEOUT, wait)
        .await
        .ok()
        .flatten()
}

/// What reaches a session from its PU.
enum FromPu {
    Event(AssocEvent),
    /// The association's event channel closed.
    Gone,
}

/// Serves one request from its first message to its completion (or the PU's departure).
async fn serve(assoc: crate::transport::Association, pe: Arc<Pe>) {
    let (tx, mut events) = assoc.split();
    let Some((size, start, sent)) = first_request(&pe, &mut events).await else {
        tx.abort("no request");
        return;
    };
    // The request reaches the PE a network delay after the PU sent it.
    let got = pe.clock.now();
    let sent = sent.unwrap_or(got);
    let overdue = got > sent + pe.net.delay;
    let late = pe.net.arrive(sent).await;
    pe.lock().msg_late.add(late, overdue);
    if pe.frozen.load(Ordering::SeqCst) {
        return std::future::pending().await;
    }
    // When it arrived in the model: a late wake-up does not delay the work.
    let at = (sent + pe.net.delay).min(pe.clock.now());
    let key: JobKey = (0, pe.next_job.fetch_add(1, Ordering::Relaxed));
    let (job_tx, mut job_rx) = mpsc::unbounded_channel();
    let jobs = {
        let mut s = pe.lock();
        if s.stopping {
            drop(s);
            tx.abort("stopping");
            return;
        }
        catch_up(&mut s, at);
        if pe.args.max_jobs > 0 && s.calc.jobs() >= pe.args.max_jobs {
            None
        } else {
            s.calc.add(key, size, start);
            s.sessions.insert(key, job_tx);
            Some(s.calc.jobs())
        }
    };
    let Some(jobs) = jobs else {
        let _ = tx.send(Reply::Busy.message(at), SEND_DEADLINE).await;
        tx.close();
        return;
    };
    pe.changed.notify_one();
    pe.report_load(jobs, at);
    // The first cookie says "accepted" and gives the PU a checkpoint at once.
    let mut alive = send_cookie(&pe, &tx, size, start, at).await.is_ok();
    // The PU's messages (keep-alives, its going away), each due a delay after it came.
    let mut inbox: Inbox<FromPu> = Inbox::default();
    let mut gone = false;
    while alive {
        let next = inbox.next_due();
        tokio::select! {
            ev = job_rx.recv() => match ev {
                Some(JobEvent::Cookie(done, t)) => {
                    alive = send_cookie(&pe, &tx, size, done, t).await.is_ok();
                }
                Some(JobEvent::Complete(t)) => {
                    let _ = tx.send(Reply::Done.message(t), SEND_DEADLINE).await;
                    tx.close();
                    return;
                }
                Some(JobEvent::Stop(done, t)) => {
                    let _ = send_cookie(&pe, &tx, size, done, t).await;
                    tx.close();
                    return;
                }
                None => alive = false,
            },
            ev = events.recv(), if !gone => {
                gone = ev.is_none();
                let now = pe.clock.now();
                let item = ev.map_or(FromPu::Gone, FromPu::Event);
                inbox.push(now, now + pe.net.delay, item);
            }
            _ = pe.net.until(next.unwrap_or(0.0)), if next.is_some() => {
                while let Some((item, late, overdue)) = inbox.pop_due(pe.clock.now()) {
                    pe.lock().msg_late.add(late * pe.clock.scale, overdue);
                    if pe.frozen.load(Ordering::SeqCst) {
                        return std::future::pending().await;
                    }
                    match item {
                        FromPu::Event(AssocEvent::Message(m)) => {
                            if let SessionMessage::Asap(AsapMessage::EndpointKeepAlive {
                                pool_handle,
                                ..
                            }) = SessionMessage::decode(m)
                            {
                                let ack = AsapMessage::EndpointKeepAliveAck {
                                    pool_handle,
                                    pe_id: pe.id,
                                };
                                if let Some(m) = session::asap(&ack) {
                                    alive = alive && tx.send(m, SEND_DEADLINE).await.is_ok();
                                }
                            }
                        }
                        FromPu::Event(AssocEvent::Down(_)) | FromPu::Gone => alive = false,
                        FromPu::Event(_) => {}
                    }
                }
            }
        }
    }
    if pe.frozen.load(Ordering::SeqCst) {
        return std::future::pending().await;
    }
    // The PU went away (it gave up on us): drop the request.
    let now = pe.clock.now();
    let jobs = {
        let mut s = pe.lock();
        catch_up(&mut s, now);
        s.calc.remove(key);
        s.sessions.remove(&key);
        s.calc.jobs()
    };
    pe.changed.notify_one();
    pe.report_load(jobs, now);
    tx.abort("session ended");
}
