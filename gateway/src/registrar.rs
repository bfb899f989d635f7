//! `poolgate registrar`: the tokio driver around [`pool_core::asap::registrar::Registrar`].
//!
//! One task owns the state machine. Each association gets a reader task (decoded ASAP
//! messages in, bounded, so a fast peer slows down instead of growing memory) and a
//! writer task (bounded queue; a peer that does not drain it is aborted and counted).
//! Timers come from the state machine's `poll_timeout`.
//!
//! ENRP (RFC 5353) runs in the same task: the [`pool_core::enrp::EnrpServer`] works on the
//! registrar's handlespace, ENRP associations (SCTP port `enrp_sctp_port`, PPID 12) come
//! from the same UDP socket, and every registrar event is forwarded to ENRP as a handle
//! update before ENRP timers run (see [`crate::enrp`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use rand::SeedableRng;
use tokio::sync::mpsc;

use pool_core::asap::auth::PoolSecret;
use pool_core::asap::registrar::{
    Action, RateLimit, Registrar, RegistrarConfig as CoreConfig, RegistrarCounters, RegistrarEvent,
    RegistrarSnapshot, ReporterScope,
};
use pool_core::asap::{PeerId, WallClock};
use pool_core::enrp::{EnrpAction, EnrpEvent, EnrpServer};
use pool_core::handlespace::HandlespaceConfig;
use pool_core::types::{PoolHandle, Transport as PeTransport, TransportProtocol, TransportUse};
use pool_core::wire::AsapMessage;

use crate::config::common::TransportSettings;
use crate::config::registrar::{FailureReportScope, RegistrarConfig, UnlistedPools};
use crate::enrp::{EnrpDriver, EnrpInbound};
use crate::signals::Signal;
use crate::telemetry::{Counter, Gauge, Registry};
use crate::transport::sctp_udp::{SctpUdp, SctpUdpConfig};
use crate::transport::{
    AssocEvent, AssocEvents, AssocSender, Association, Listener, Message, Transport, PPID_ASAP,
};
use crate::RoleContext;

/// Messages a peer may have queued towards it before it counts as stuck. Large
/// enough for a PE or tool that pipelines thousands of registrations on one
/// association (its answers are produced in bursts faster than a busy host schedules
/// the writer); tokio allocates the queue in small blocks as it fills, so an idle
/// peer costs nothing, and a stuck one is bounded (about 64 Ki small messages).
const WRITER_QUEUE: usize = 65_536;
/// Decoded messages waiting for the state machine, over all peers.
const INBOUND_QUEUE: usize = 4096;
/// How long a write to one peer may wait for its send budget.
const WRITE_DEADLINE: Duration = Duration::from_secs(2);

/// The state machine's configuration from the operator's file.
pub fn core_config(cfg: &RegistrarConfig, id: u32) -> anyhow::Result<CoreConfig> {
    let mut pool_secrets = HashMap::new();
    for p in &cfg.pools {
        let handle = PoolHandle::new(p.handle.as_bytes().to_vec())
            .with_context(|| format!("pool handle `{}` is empty or too long", p.handle))?;
        if !p.resolved_secret.is_empty() {
            pool_secrets.insert(
                handle,
                vec![PoolSecret {
                    key_id: 1,
                    secret: p.resolved_secret.expose().to_vec(),
                }],
            );
        }
    }
    let per_sec = cfg.limits.failure_reports_per_pu_per_sec.max(1);
    let core = CoreConfig {
        id,
        keep_alive_interval: cfg.keepalive.interval,
        keep_alive_timeout: cfg.keepalive.timeout,
        max_bad_pe_reports: cfg.max_bad_pe_report,
        reporter_scope: match cfg.failure_report_scope {
            FailureReportScope::Address => ReporterScope::Address,
            FailureReportScope::Association => ReporterScope::Association,
        },
        max_resolution_items: cfg.max_resolution_items as usize,
        failure_report_rate: RateLimit {
            burst: per_sec,
            per: Duration::from_secs(1) / per_sec,
        },
        min_registration_life: cfg.registration.min_life,
        max_registration_life: cfg.registration.max_life,
        handlespace: HandlespaceConfig {
            max_pools: cfg.limits.max_pools as usize,
            max_elements_per_pool: cfg.limits.max_pes_per_pool as usize,
            ..HandlespaceConfig::default()
        },
        pool_secrets,
        allow_open_pools: cfg.registration.unlisted_pools == UnlistedPools::Accept,
        announce_transports: announce_transports(cfg),
        ..CoreConfig::default()
    };
    core.validate().context("registrar configuration")?;
    Ok(core)
}

/// What ASAP_SERVER_ANNOUNCE says about where this registrar is: its SCTP transport
/// (ASAP port and addresses) and, since our SCTP runs inside UDP (RFC 6951), a UDP
/// transport parameter with the encapsulation address that PEs and PUs connect to.
pub fn announce_transports(cfg: &RegistrarConfig) -> Vec<PeTransport> {
    let addrs: Vec<std::net::IpAddr> = cfg.listen.iter().map(|a| a.0.ip()).collect();
    let Some(udp) = cfg.listen.first().map(|a| a.0) else {
        return Vec::new();
    };
    vec![
        PeTransport {
            protocol: TransportProtocol::Sctp,
            port: cfg.sctp_port,
            transport_use: TransportUse::DataPlusControl,
            addresses: addrs,
        },
        PeTransport {
            protocol: TransportProtocol::Udp,
            port: udp.port(),
            transport_use: TransportUse::DataOnly,
            addresses: vec![udp.ip()],
        },
    ]
}

/// Sends ASAP_SERVER_ANNOUNCE to the configured address (a multicast group, or a
/// unicast address such as loopback) every interval, for as long as the registrar runs.
async fn announce_loop(msg: AsapMessage, to: SocketAddr, every: Duration, sent: Counter) {
    let mut buf = Vec::new();
    if let Err(e) = msg.encode(&mut buf) {
        tracing::error!(error = %e, "cannot encode ASAP_SERVER_ANNOUNCE");
        return;
    }
    let bind: SocketAddr = if to.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = match tokio::net::UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the announce socket");
            return;
        }
    };
    // Announcements stay on the local link.
    let _ = socket.set_multicast_ttl_v4(1);
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        match socket.send_to(&buf, to).await {
            Ok(_) => sent.inc(),
            Err(e) => tracing::debug!(error = %e, %to, "server announce not sent"),
        }
    }
}

/// Engine settings for a UDP address: loopback carries 64 KiB datagrams. The
/// registrar serves ASAP on `sctp_port` and ENRP on `enrp_port` of the same socket,
/// with the operator's `[registrar.transport]` settings (the shipped heartbeat
/// interval is short: pool users come and go, and an association whose peer vanished
/// without a word counts against the per-address limit until heartbeats find it).
pub fn transport_config(
    bind: SocketAddr,
    sctp_port: u16,
    enrp_port: u16,
    settings: &TransportSettings,
) -> SctpUdpConfig {
    let mut t = SctpUdpConfig::for_address(bind);
    t.engine.listen_ports = vec![sctp_port, enrp_port];
    settings.apply(&mut t);
    t
}

/// Reads one counter out of the state machine's counters.
type CounterField = fn(&RegistrarCounters) -> u64;

/// Prometheus series of the registrar.
struct Metrics {
    counters: Vec<(Counter, CounterField)>,
    last: RegistrarCounters,
    pools: Gauge,
    elements: Gauge,
    peers: Gauge,
    decode_errors: Counter,
    stuck_peers: Counter,
    association_limit_hits: Counter,
    announces: Counter,
}

impl Metrics {
    fn new(r: &Registry) -> anyhow::Result<Self> {
        type Field = fn(&RegistrarCounters) -> u64;
        let defs: [(&str, &str, Field); 16] = [
            ("registrations", "New PE registrations accepted", |c| {
                c.registrations
            }),
            (
                "reregistrations",
                "Re-registrations (updates in place)",
                |c| c.reregistrations,
            ),
            ("registrations_rejected", "Registrations refused", |c| {
                c.registrations_rejected
            }),
            ("deregistrations", "Deregistrations", |c| c.deregistrations),
            ("resolutions", "Handle resolutions answered", |c| {
                c.resolutions
            }),
            (
                "resolutions_unknown_pool",
                "Resolutions of unknown pools",
                |c| c.resolutions_unknown_pool,
            ),
            ("keepalives_sent", "Endpoint keep-alives sent", |c| {
                c.keep_alives_sent
            }),
            (
                "keepalive_failures",
                "PEs removed for a missing keep-alive ACK",
                |c| c.keep_alive_failures,
            ),
            (
                "failure_reports",
                "ENDPOINT_UNREACHABLE reports received",
                |c| c.failure_reports,
            ),
            ("removed_pes", "PEs removed (any reason)", |c| c.removed_pes),
            (
                "removed_by_reports",
                "PEs removed at MAX-BAD-PE-REPORT",
                |c| c.removed_by_reports,
            ),
            ("expired", "PEs whose registration life ran out", |c| {
                c.expired
            }),
            (
                "auth_failures",
                "Registrations failing authentication",
                |c| c.auth_failures,
            ),
            ("replays", "Replayed authenticated messages refused", |c| {
                c.replays
            }),
            (
                "rate_limited",
                "Failure reports dropped by the per-PU rate limit",
                |c| c.rate_limited,
            ),
            (
                "limit_hits",
                "Registrations refused by a handlespace limit",
                |c| c.limit_hits,
            ),
        ];
        let mut counters = Vec::new();
        for (name, help, f) in defs {
            counters.push((
                r.counter(&format!("poolgate_registrar_{name}_total"), help)?,
                f,
            ));
        }
        Ok(Metrics {
            counters,
            last: RegistrarCounters::default(),
            pools: r.gauge("poolgate_registrar_pools", "Pools in the handlespace")?,
            elements: r.gauge("poolgate_registrar_pool_elements", "PEs in the handlespace")?,
            peers: r.gauge("poolgate_registrar_associations", "Open ASAP associations")?,
            decode_errors: r.counter(
                "poolgate_registrar_decode_errors_total",
                "ASAP messages that failed to decode",
            )?,
            stuck_peers: r.counter(
                "poolgate_registrar_stuck_peers_total",
                "Associations aborted because they did not drain their send queue",
            )?,
            association_limit_hits: r.counter(
                "poolgate_registrar_association_limit_hits_total",
                "ASAP associations refused by limits.max_associations_per_peer",
            )?,
            announces: r.counter(
                "poolgate_registrar_server_announces_total",
                "ASAP_SERVER_ANNOUNCE datagrams sent",
            )?,
        })
    }

    fn update(&mut self, reg: &Registrar, peers: usize) {
        let now = reg.counters();
        for (c, f) in &self.counters {
            c.inc_by(f(&now).saturating_sub(f(&self.last)));
        }
        self.last = now;
        self.pools.set(reg.handlespace().pool_count() as f64);
        self.elements.set(reg.handlespace().element_count() as f64);
        self.peers.set(peers as f64);
    }
}

enum Inbound {
    Message(PeerId, AsapMessage),
    Closed(PeerId),
}

/// A registrar's latest handlespace snapshot, for `poolgate status`.
pub type SharedSnapshot = Arc<Mutex<Option<RegistrarSnapshot>>>;

/// A snapshot slot served as the registrar's `GET /status` document.
fn status_snapshot(ctx: &RoleContext) -> SharedSnapshot {
    let shared = SharedSnapshot::default();
    let slot = shared.clone();
    ctx.registry.set_status_provider(Arc::new(move || {
        let snap = slot.lock().ok().and_then(|s| s.clone());
        match snap {
            Some(s) => crate::status::registrar_json(&s).to_string(),
            None => serde_json::json!({ "role": "registrar", "pools": [] }).to_string(),
        }
    }));
    shared
}

/// Runs the registrar until drained.
pub async fn run(cfg: RegistrarConfig, mut ctx: RoleContext) -> anyhow::Result<()> {
    let id = if cfg.id == 0 {
        rand::random::<u32>().max(1)
    } else {
        cfg.id
    };
    let core = core_config(&cfg, id)?;
    let bind = cfg.listen.first().context("registrar.listen is empty")?.0;
    let (transport, listener) = SctpUdp::bind(transport_config(
        bind,
        cfg.sctp_port,
        cfg.enrp_sctp_port,
        &cfg.transport,
    ))
    .with_context(|| format!("binding SCTP over UDP on {bind}"))?;
    transport
        .export_metrics(&ctx.registry, "registrar")
        .context("registering transport metrics")?;
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let clock = WallClock::new(std::time::Instant::now(), unix_ms);
    let rng = Box::new(rand_chacha::ChaCha8Rng::from_os_rng());
    let registrar = Registrar::new(core, clock, rng).context("registrar")?;
    let metrics = Metrics::new(&ctx.registry).context("registering metrics")?;
    let enrp_core = crate::enrp::core_config(&cfg, id).context("ENRP configuration")?;
    let mut enrp_server = EnrpServer::new(enrp_core, clock).context("ENRP")?;
    enrp_server.start(std::time::Instant::now());
    let enrp = EnrpDriver::new(enrp_server, &ctx.registry).context("registering ENRP metrics")?;
    let (enrp_tx, enrp_rx) = mpsc::channel::<EnrpInbound>(INBOUND_QUEUE);
    EnrpDriver::spawn_connectors(&cfg, &transport, enrp_tx.clone());
    tracing::info!(
        registrar_id = id,
        listen = %transport.local_addr(),
        sctp_port = cfg.sctp_port,
        keepalive_interval = ?cfg.keepalive.interval,
        keepalive_timeout = ?cfg.keepalive.timeout,
        max_bad_pe_report = cfg.max_bad_pe_report,
        enrp_sctp_port = cfg.enrp_sctp_port,
        enrp_peers = cfg.peers.len(),
        enrp_authenticated = !cfg.enrp.resolved_secret.is_empty(),
        "registrar listening"
    );
    let announcer = cfg.announce.enabled.then(|| {
        tracing::info!(to = %cfg.announce.address.0, interval = ?cfg.announce.interval, "announcing this registrar");
        tokio::spawn(announce_loop(
            registrar.server_announce(),
            cfg.announce.address.0,
            cfg.announce.interval,
            metrics.announces.clone(),
        ))
    });
    let _ = ctx.notifier.ready();
    let _ = ctx
        .notifier
        .status(&format!("registrar {id} on {}", transport.local_addr()));
    let server = Server {
        registrar,
        metrics,
        enrp,
        enrp_tx,
        enrp_port: cfg.enrp_sctp_port,
        writers: HashMap::new(),
        snapshot: status_snapshot(&ctx),
        per_ip: HashMap::new(),
        peer_ip: HashMap::new(),
        max_per_ip: cfg.limits.max_associations_per_peer,
        _transport: transport,
        cfg,
    };
    let result = server.serve(listener, enrp_rx, &mut ctx).await;
    if let Some(a) = announcer {
        a.abort();
    }
    result
}

struct Server {
    registrar: Registrar,
    metrics: Metrics,
    enrp: EnrpDriver,
    enrp_tx: mpsc::Sender<EnrpInbound>,
    enrp_port: u16,
    writers: HashMap<PeerId, mpsc::Sender<Bytes>>,
    /// Open ASAP associations per peer IP address, against `max_per_ip`.
    per_ip: HashMap<std::net::IpAddr, u32>,
    peer_ip: HashMap<PeerId, std::net::IpAddr>,
    max_per_ip: u32,
    snapshot: SharedSnapshot,
    /// The configuration in force (reloads compare against it).
    cfg: RegistrarConfig,
    /// Keeps the UDP driver alive for as long as the server runs.
    _transport: SctpUdp,
}

impl Server {
    async fn serve(
        mut self,
        mut listener: Listener,
        mut enrp_rx: mpsc::Receiver<EnrpInbound>,
        ctx: &mut RoleContext,
    ) -> anyhow::Result<()> {
        let (in_tx, mut in_rx) = mpsc::channel::<Inbound>(INBOUND_QUEUE);
        let mut status_tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            let next = match (
                self.registrar.poll_timeout(),
                self.enrp.server.poll_timeout(),
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let deadline = next
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                assoc = listener.accept() => {
                    let Some(assoc) = assoc else { anyhow::bail!("transport stopped") };
                    if assoc.local_sctp_port() == self.enrp_port {
                        self.enrp.attach(assoc, None, None, self.enrp_tx.clone());
                    } else {
                        self.attach(assoc, in_tx.clone());
                    }
                }
                ev = enrp_rx.recv() => {
                    let Some(first) = ev else { continue };
                    let now = std::time::Instant::now();
                    self.enrp_inbound(now, first);
                    for _ in 0..256 {
                        match enrp_rx.try_recv() {
                            Ok(m) => self.enrp_inbound(now, m),
                            Err(_) => break,
                        }
                    }
                }
                msg = in_rx.recv() => {
                    let Some(first) = msg else { continue };
                    let now = std::time::Instant::now();
                    self.inbound(now, first);
                    // Take what is already queued in one go.
                    for _ in 0..256 {
                        match in_rx.try_recv() {
                            Ok(m) => self.inbound(now, m),
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let now = std::time::Instant::now();
                    self.registrar.handle_timeout(now);
                    // Registrar events become handle updates before ENRP sends
                    // a presence whose checksum already counts them.
                    self.act();
                    self.enrp.server.handle_timeout(now, &mut self.registrar);
                }
                _ = status_tick.tick() => {
                    let snap = self.registrar.snapshot(std::time::Instant::now());
                    if let Ok(mut s) = self.snapshot.lock() {
                        *s = Some(snap);
                    }
                }
                sig = ctx.signals.recv() => match sig {
                    Some(Signal::Reload) => {
                        let _ = ctx.notifier.reloading();
                        self.reload(&ctx.sources);
                        let _ = ctx.notifier.ready();
                    }
                    Some(Signal::Drain) | None => {
                        let _ = ctx.notifier.stopping();
                        tracing::info!(pes = self.registrar.handlespace().element_count(), "registrar stopping");
                        return Ok(());
                    }
                },
            }
            self.act();
            self.metrics.update(&self.registrar, self.writers.len());
            self.enrp.update_metrics(self.registrar.handlespace());
        }
    }

    /// SIGHUP: applies what a running registrar can change (keep-alive timing,
    /// MAX-BAD-PE-REPORT, PEs per handle resolution, registration life bounds, pool secrets, open pools, report and
    /// association limits); names what needs a restart; keeps everything on an invalid file.
    fn reload(&mut self, sources: &crate::config::Sources) {
        let new = match crate::config::load::<RegistrarConfig>(sources) {
            Ok(l) => l.config,
            Err(d) => {
                for e in &d {
                    tracing::error!(error = %e, "reload: configuration error");
                }
                tracing::error!(
                    errors = d.len(),
                    "reload refused: configuration invalid; keeping the running one"
                );
                return;
            }
        };
        let running_id = self.registrar.config().id;
        let id = if new.id == 0 { running_id } else { new.id };
        let applied = core_config(&new, id).and_then(|core| {
            self.registrar
                .reconfigure(core)
                .map_err(|e| anyhow::anyhow!(e))
        });
        let mut restart: Vec<&'static str> = match applied {
            Ok(names) => names
                .into_iter()
                .map(|n| match n {
                    "id" => "registrar.id",
                    "handlespace" => "registrar.limits (max_pools, max_pes_per_pool)",
                    other => other,
                })
                .collect(),
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "reload refused; keeping the running configuration"
                );
                return;
            }
        };
        let old = &self.cfg;
        crate::config::restart_keys!(restart, "registrar", old, new;
            listen,
            sctp_port,
            enrp_sctp_port,
            announce,
            peers,
            enrp,
            metrics,
            transport,
            threads
        );
        self.max_per_ip = new.limits.max_associations_per_peer;
        tracing::info!(
            keepalive_interval = ?new.keepalive.interval,
            keepalive_timeout = ?new.keepalive.timeout,
            max_bad_pe_report = new.max_bad_pe_report,
            max_resolution_items = new.max_resolution_items,
            secured_pools = new.pools.iter().filter(|p| !p.resolved_secret.is_empty()).count(),
            max_associations_per_peer = new.limits.max_associations_per_peer,
            "registrar configuration reloaded"
        );
        if !restart.is_empty() {
            tracing::warn!(
                keys = restart.join(","),
                "these keys keep their running values until a restart"
            );
        }
        self.cfg = new;
    }

    fn enrp_inbound(&mut self, now: std::time::Instant, m: EnrpInbound) {
        match m {
            EnrpInbound::Connected(assoc, ended) => {
                let hello = self.enrp.server.hello(now, &self.registrar);
                self.enrp
                    .attach(assoc, Some(ended), Some(hello), self.enrp_tx.clone());
            }
            EnrpInbound::Message(link, bytes) => {
                match self
                    .enrp
                    .server
                    .handle_bytes(now, &bytes, &mut self.registrar)
                {
                    Ok(from) => self.enrp.learned(link, from),
                    Err(e) => tracing::debug!(link, error = %e, "ENRP message refused"),
                }
                // Peer changes may have queued ASAP work (none today) and ENRP answers.
                self.act();
            }
            EnrpInbound::Closed(link) => self.enrp.closed(link),
        }
    }

    fn inbound(&mut self, now: std::time::Instant, m: Inbound) {
        match m {
            Inbound::Message(peer, msg) => self.registrar.handle_message(now, peer, msg),
            Inbound::Closed(peer) => {
                self.writers.remove(&peer);
                if let Some(ip) = self.peer_ip.remove(&peer) {
                    if let Some(n) = self.per_ip.get_mut(&ip) {
                        *n -= 1;
                        if *n == 0 {
                            self.per_ip.remove(&ip);
                        }
                    }
                }
                self.registrar.handle_peer_closed(peer);
            }
        }
    }

    fn act(&mut self) {
        while let Some(action) = self.registrar.poll_action() {
            match action {
                Action::Send { peer, msg } => {
                    let Some(w) = self.writers.get(&peer) else {
                        continue;
                    };
                    let mut buf = Vec::with_capacity(256);
                    if let Err(e) = msg.encode(&mut buf) {
                        tracing::error!(peer, error = %e, "cannot encode ASAP message");
                        continue;
                    }
                    if w.try_send(Bytes::from(buf)).is_err() {
                        self.metrics.stuck_peers.inc();
                        tracing::warn!(peer, "peer does not drain its queue; closing");
                        self.writers.remove(&peer);
                        self.registrar.handle_peer_closed(peer);
                    }
                }
                Action::Close { peer } => {
                    // Dropping the writer ends its task, which aborts the association.
                    self.writers.remove(&peer);
                }
            }
        }
        let now = std::time::Instant::now();
        while let Some(ev) = self.registrar.poll_event() {
            self.enrp
                .server
                .handle_registrar_event(now, &ev, &self.registrar);
            match ev {
                RegistrarEvent::Registered {
                    pool_handle,
                    pe_id,
                    updated,
                } => {
                    tracing::info!(pool = %pool_handle, pe = format_args!("{pe_id:08x}"), updated, "registered")
                }
                RegistrarEvent::Removed {
                    pool_handle,
                    pe_id,
                    reason,
                } => {
                    tracing::info!(pool = %pool_handle, pe = format_args!("{pe_id:08x}"), ?reason, "removed")
                }
                RegistrarEvent::AuthRejected {
                    peer,
                    pool_handle,
                    error,
                } => {
                    tracing::warn!(peer, pool = %pool_handle, ?error, "authentication failed")
                }
            }
        }
        while let Some(EnrpAction::Send { to, bytes, .. }) = self.enrp.server.poll_action() {
            self.enrp.send(to, bytes);
        }
        let me = self.enrp.server.config().id;
        while let Some(ev) = self.enrp.server.poll_event() {
            match ev {
                EnrpEvent::Rejected { peer, reason } => {
                    tracing::warn!(me, ?peer, %reason, "ENRP message refused")
                }
                EnrpEvent::AuditMismatch { peer, theirs, ours } => {
                    tracing::info!(
                        me,
                        peer,
                        theirs,
                        ours,
                        "ENRP checksum mismatch; synchronising"
                    )
                }
                EnrpEvent::TookOver { target, pes } => {
                    tracing::warn!(me, target, pes, "took over the PEs of a dead registrar")
                }
                EnrpEvent::PeerDead(p) => tracing::warn!(me, peer = p, "ENRP peer dead"),
                other => tracing::info!(me, event = ?other, "ENRP"),
            }
        }
    }

    fn attach(&mut self, assoc: Association, inbound: mpsc::Sender<Inbound>) {
        let peer: PeerId = assoc.id().0;
        let remote = assoc.remote();
        let open = self.per_ip.get(&remote.ip()).copied().unwrap_or(0);
        if open >= self.max_per_ip {
            self.metrics.association_limit_hits.inc();
            tracing::warn!(%remote, open, limit = self.max_per_ip, "too many associations from this address; refused");
            assoc.abort("too many associations from this address");
            return;
        }
        *self.per_ip.entry(remote.ip()).or_insert(0) += 1;
        self.peer_ip.insert(peer, remote.ip());
        self.registrar.peer_address(peer, remote.ip());
        tracing::debug!(peer, %remote, "association up");
        let (sender, events) = assoc.split();
        let (w_tx, w_rx) = mpsc::channel(WRITER_QUEUE);
        self.writers.insert(peer, w_tx);
        tokio::spawn(write_loop(sender, w_rx));
        tokio::spawn(read_loop(
            peer,
            events,
            inbound,
            self.metrics.decode_errors.clone(),
        ));
    }
}

async fn write_loop(sender: AssocSender, mut queue: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = queue.recv().await {
        if sender
            .send(Message::new(PPID_ASAP, bytes), WRITE_DEADLINE)
            .await
            .is_err()
        {
            break;
        }
    }
    // Queue closed (peer forgotten) or send failed: the association ends here.
    sender.abort("registrar closed the association");
}

async fn read_loop(
    peer: PeerId,
    mut events: AssocEvents,
    inbound: mpsc::Sender<Inbound>,
    decode_errors: Counter,
) {
    while let Some(ev) = events.recv().await {
        match ev {
            AssocEvent::Message(m) if m.ppid == PPID_ASAP => match AsapMessage::decode(&m.data) {
                Ok(msg) => {
                    if inbound.send(Inbound::Message(peer, msg)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    decode_errors.inc();
                    tracing::debug!(peer, error = %e, len = m.data.len(), "undecodable ASAP message");
                }
            },
            AssocEvent::Message(m) => {
                decode_errors.inc();
                tracing::debug!(peer, ppid = m.ppid, "message with a foreign PPID ignored");
            }
            AssocEvent::Down(reason) => {
                tracing::debug!(peer, %reason, "association down");
                break;
            }
            AssocEvent::PathUp(_) | AssocEvent::PathDown(_) | AssocEvent::PrimaryChanged(_) => {}
        }
    }
    let _ = inbound.send(Inbound::Closed(peer)).await;
}
