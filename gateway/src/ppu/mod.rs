//! `poolgate ppu`: the proxy pool user. Accepts unmodified TCP clients and carries each
//! client connection as one session to a pool element (protocol in [`crate::session`]).
//!
//! Per client connection ([`session`]): resolve the listener's pool (cached, through one
//! shared [`PoolUser`]), select a PE, open the session, relay both ways with bounded
//! buffers while the plugin follows both directions, and keep the latest cookie.
//!
//! Failure detection: session keep-alives (`ENDPOINT_KEEP_ALIVE` after
//! `keepalive_interval` without any message from the PE; no message within
//! `keepalive_timeout` → failure), association loss, and the PE closing the session
//! (its backend closed, or it drained). Failover: report the PE (ENDPOINT_UNREACHABLE,
//! if `report_failures`, not for a PE that closed cleanly), select another PE not yet
//! tried for this session, present the latest cookie (public part rewritten from the
//! plugin's own count), replay what the plugin says, resume. At most
//! `failover_max_attempts` PEs in a row without progress; a session that cannot be
//! resumed is closed towards the client, logged and counted by reason.
//!
//! Listener kinds: `tcp` (bytes relayed), `tls` (TLS terminated here, the plain bytes
//! relayed the same way, [`tls`]), `http` and `https` (an HTTP gateway whose requests
//! travel over sessions followed by the `http` plugin, [`http`]). A `tcp` or `tls`
//! listener may have the PE start every backend connection with a PROXY protocol v1/v2
//! header naming the client (`send_proxy_protocol`; sent to each PE the session visits
//! as a backend header, see [`crate::session::backend_header`]).
//!
//! Reload (SIGHUP): the configuration is loaded again; when valid, listeners are added,
//! removed (a removed listener stops accepting; its running sessions continue) or
//! restarted (kind, bind, pool or plugin changed), TLS certificates are read again
//! without dropping sessions, and session and HTTP settings apply to new sessions.
//! Registrars, resolution and transport settings need a restart. An invalid
//! configuration is refused and the running one kept.

pub mod http;
pub mod session;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use pool_core::asap::pu::PuConfig;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::asap_client::PoolUser;
use crate::config::plugin::PluginKind;
use crate::config::ppu::{Listener, ListenerKind, PpuConfig};
use crate::signals::Signal;
use crate::telemetry::{CounterVec, Gauge, HistogramVec, Registry};
use crate::transport::sctp_udp::SctpUdp;
use crate::RoleContext;

/// PPU metrics (label `listener` on every series).
#[derive(Debug)]
pub struct PpuMetrics {
    /// Sessions running now.
    pub active: Gauge,
    /// Client sessions accepted.
    pub sessions: CounterVec,
    /// Failovers, by cause (keepalive_timeout, pe_closed, association_down, send_failed).
    pub failovers: CounterVec,
    /// Failovers completed (the session resumed on another PE).
    pub resumed: CounterVec,
    /// Sessions closed towards the client because they could not be resumed, by reason.
    pub unresumable: CounterVec,
    /// Client-visible stall per failover: last message from the old PE to resumption.
    pub stall: HistogramVec,
    /// Relayed bytes, by direction (to_pe, to_client).
    pub bytes: CounterVec,
    /// Sessions whose plugin lost track of a stream (it then only relays), by stream
    /// (client, backend) and error kind.
    pub plugin_errors: CounterVec,
    /// Answers the HTTP gateway made itself (413, 502, 504, ...), by status.
    pub http_answers: CounterVec,
    /// Upstream connections (sessions) opened by HTTP listeners.
    pub http_upstreams: CounterVec,
    /// Requests abandoned because their body brought no bytes for `body_read_timeout`.
    pub http_body_timeouts: CounterVec,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: CounterVec,
    /// Configuration reloads, by result (applied, refused).
    pub reloads: CounterVec,
}

impl PpuMetrics {
    fn new(r: &Registry) -> anyhow::Result<Self> {
        Ok(PpuMetrics {
            active: r.gauge(
                "poolgate_ppu_sessions_active",
                "Client sessions running now",
            )?,
            sessions: r.counter_vec(
                "poolgate_ppu_sessions_total",
                "Client sessions accepted",
                &["listener"],
            )?,
            failovers: r.counter_vec(
                "poolgate_ppu_failovers_total",
                "Session failovers started, by cause",
                &["listener", "cause"],
            )?,
            resumed: r.counter_vec(
                "poolgate_ppu_failovers_resumed_total",
                "Failovers after which the session resumed on another PE",
                &["listener"],
            )?,
            unresumable: r.counter_vec(
                "poolgate_ppu_sessions_unresumable_total",
                "Sessions closed towards the client because they could not be resumed, by reason",
                &["listener", "reason"],
            )?,
            stall: r.histogram_vec(
                "poolgate_ppu_failover_stall_seconds",
                "Client-visible stall per failover (last message of the old PE to resumption)",
                &["listener"],
                &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            )?,
            bytes: r.counter_vec(
                "poolgate_ppu_bytes_total",
                "Relayed bytes, by direction",
                &["listener", "direction"],
            )?,
            plugin_errors: r.counter_vec(
                "poolgate_ppu_plugin_errors_total",
                "Sessions whose plugin lost track of a stream (it then only relays), by stream and kind",
                &["listener", "stream", "kind"],
            )?,
            http_answers: r.counter_vec(
                "poolgate_ppu_http_gateway_answers_total",
                "HTTP answers made by the gateway itself (limits, no PE, timeouts), by status",
                &["listener", "status"],
            )?,
            http_upstreams: r.counter_vec(
                "poolgate_ppu_http_upstream_sessions_total",
                "Upstream sessions opened by HTTP listeners",
                &["listener"],
            )?,
            http_body_timeouts: r.counter_vec(
                "poolgate_ppu_http_body_read_timeouts_total",
                "HTTP requests abandoned because their body brought no bytes for body_read_timeout",
                &["listener"],
            )?,
            tls_failures: r.counter_vec(
                "poolgate_ppu_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out",
                &["listener"],
            )?,
            reloads: r.counter_vec(
                "poolgate_ppu_reloads_total",
                "Configuration reloads, by result",
                &["result"],
            )?,
        })
    }
}

/// Checks what the configuration validation cannot: every listener is served by this
/// version (all kinds are), and there is one.
pub fn check_listeners(cfg: &PpuConfig) -> anyhow::Result<()> {
    if cfg.listeners.is_empty() {
        anyhow::bail!("no [[ppu.listener]] configured");
    }
    for l in &cfg.listeners {
        if l.kind.is_http() && l.plugin != PluginKind::Http {
            anyhow::bail!(
                "listener `{}`: kind \"{}\" needs plugin = \"http\"",
                l.name,
                l.kind.name()
            );
        }
    }
    Ok(())
}

/// What the PPU's listeners share (built once at start).
struct Shared {
    pu: Arc<Mutex<PoolUser<SctpUdp>>>,
    transport: SctpUdp,
    metrics: Arc<PpuMetrics>,
    /// Client connections running now (drain waits for them).
    active: Arc<AtomicUsize>,
    /// Upstream sessions of HTTP listeners running now (drain waits for them too).
    upstreams: Arc<AtomicUsize>,
    /// Set to `true` on drain: HTTP client connections shut down gracefully.
    drain: tokio::sync::watch::Sender<bool>,
}

/// What a new client connection of a listener uses; replaced on reload.
pub struct Front {
    /// Listener kind.
    pub kind: ListenerKind,
    /// Session settings and shared transport.
    pub session: Arc<session::SessionContext>,
    /// HTTP gateway settings (http/https).
    pub http: Option<Arc<http::HttpContext>>,
    /// TLS acceptor (tls/https).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A running listener.
struct Running {
    cfg: Listener,
    bound: SocketAddr,
    front: Arc<ArcSwap<Front>>,
    certs: Option<Arc<tls::CertResolver>>,
    task: tokio::task::JoinHandle<()>,
}

/// Whether a changed listener must be restarted (rather than updated in place).
fn same_identity(a: &Listener, b: &Listener) -> bool {
    a.kind == b.kind
        && a.bind.0 == b.bind.0
        && a.pool == b.pool
        && a.plugin == b.plugin
        && a.plugin_options == b.plugin_options
        && a.send_proxy_protocol == b.send_proxy_protocol
}

impl Shared {
    fn front(
        &self,
        l: &Listener,
        cfg: &PpuConfig,
        certs: Option<&Arc<tls::CertResolver>>,
    ) -> anyhow::Result<Front> {
        let session = Arc::new(session::SessionContext {
            listener: l.name.clone(),
            pool: l.pool_handle().context("listener pool handle")?,
            plugin: l.plugin_options.to_plugin_config(l.plugin),
            session: cfg.session.clone(),
            resolution_timeout: cfg.resolution.timeout,
            pu: self.pu.clone(),
            transport: self.transport.clone(),
            metrics: self.metrics.clone(),
            send_proxy: l.send_proxy_protocol.version(),
        });
        let tls = match certs {
            Some(c) => {
                let alpn = if l.kind.is_http() {
                    tls::ALPN_HTTP
                } else {
                    &[]
                };
                Some(tokio_rustls::TlsAcceptor::from(tls::server_config(
                    c.clone(),
                    alpn,
                )?))
            }
            None => None,
        };
        let http = l.kind.is_http().then(|| {
            Arc::new(http::HttpContext {
                session: session.clone(),
                settings: cfg.http.clone(),
                proto: if l.kind.is_tls() { "https" } else { "http" },
                shutdown: self.drain.subscribe(),
                upstreams: self.upstreams.clone(),
            })
        });
        Ok(Front {
            kind: l.kind,
            session,
            http,
            tls,
        })
    }

    /// The listener's certificate resolver: `old` with its files read again when it
    /// reads the same files, else a new one.
    fn certs(
        l: &Listener,
        old: Option<&Arc<tls::CertResolver>>,
    ) -> anyhow::Result<Option<Arc<tls::CertResolver>>> {
        if !l.kind.is_tls() {
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (&l.tls_cert, &l.tls_key) else {
            anyhow::bail!("listener `{}`: tls_cert and tls_key are required", l.name);
        };
        match old {
            Some(r) if r.reads(cert, key) => {
                r.reload()
                    .with_context(|| format!("listener `{}`: TLS files", l.name))?;
                Ok(Some(r.clone()))
            }
            _ => Ok(Some(
                tls::CertResolver::load(cert, key)
                    .with_context(|| format!("listener `{}`: TLS files", l.name))?,
            )),
        }
    }

    /// Binds and starts a listener.
    async fn start(self: &Arc<Self>, l: &Listener, cfg: &PpuConfig) -> anyhow::Result<Running> {
        let certs = Self::certs(l, None)?;
        let front = Arc::new(ArcSwap::from_pointee(self.front(l, cfg, certs.as_ref())?));
        let listener = TcpListener::bind(l.bind.0)
            .await
            .with_context(|| format!("listener `{}`: cannot bind {}", l.name, l.bind))?;
        let bound = listener.local_addr()?;
        tracing::info!(listener = %l.name, kind = l.kind.name(), bind = %bound, pool = %l.pool, plugin = l.plugin.name(), "PPU listening");
        let task = tokio::spawn(accept_loop(listener, front.clone(), self.clone()));
        Ok(Running {
            cfg: l.clone(),
            bound,
            front,
            certs,
            task,
        })
    }
}

/// Stops a listener accepting; its running connections continue.
async fn stop(r: Running) {
    r.task.abort();
    // Awaiting the aborted task drops its socket, so the address can be bound again.
    let _ = r.task.await;
    tracing::info!(listener = %r.cfg.name, bind = %r.bound, "PPU listener stopped");
}

/// Applies a reloaded configuration to the running listeners. Listeners are changed one
/// by one: one that cannot start (a busy address, unreadable certificates) is logged
/// and the others still applied; a listener whose new certificates cannot be read
/// keeps serving the old ones.
async fn apply(
    shared: &Arc<Shared>,
    running: &mut Vec<Running>,
    old: &PpuConfig,
    new: &PpuConfig,
) -> usize {
    let mut problems = 0;
    if old
        .registrars
        .iter()
        .map(|a| a.0)
        .ne(new.registrars.iter().map(|a| a.0))
        || old.resolution.timeout != new.resolution.timeout
        || old.resolution.cache_staleness != new.resolution.cache_staleness
        || old.transport != new.transport
        || old.threads != new.threads
    {
        tracing::warn!(
            "ppu.registrars, ppu.resolution, ppu.transport and ppu.threads take effect on restart"
        );
    }
    // Stop listeners that are gone or must restart (before binding their addresses again).
    let mut keep = Vec::new();
    for r in running.drain(..) {
        match new.listeners.iter().find(|l| l.name == r.cfg.name) {
            Some(l) if same_identity(l, &r.cfg) => keep.push(r),
            _ => stop(r).await,
        }
    }
    for l in &new.listeners {
        if let Some(r) = keep.iter_mut().find(|r| r.cfg.name == l.name) {
            let certs = match Shared::certs(l, r.certs.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    problems += 1;
                    tracing::error!(listener = %l.name, error = format!("{e:#}"), "certificates not reloaded; the listener keeps serving the previous ones");
                    r.certs.clone()
                }
            };
            match shared.front(l, new, certs.as_ref()) {
                Ok(f) => {
                    r.front.store(Arc::new(f));
                    r.certs = certs;
                    r.cfg = l.clone();
                    tracing::info!(listener = %l.name, "PPU listener updated");
                }
                Err(e) => {
                    problems += 1;
                    tracing::error!(listener = %l.name, error = format!("{e:#}"), "listener not updated");
                }
            }
        } else {
            match shared.start(l, new).await {
                Ok(r) => keep.push(r),
                Err(e) => {
                    problems += 1;
                    tracing::error!(listener = %l.name, error = format!("{e:#}"), "listener not started");
                }
            }
        }
    }
    *running = keep;
    problems
}

/// Runs the PPU until drained.
pub async fn run(cfg: PpuConfig, mut ctx: RoleContext) -> anyhow::Result<()> {
    check_listeners(&cfg)?;
    let registrars: Vec<SocketAddr> = cfg.registrars.iter().map(|a| a.0).collect();
    let v6 = registrars.first().is_some_and(|a| a.is_ipv6());
    let bind: SocketAddr = if v6 {
        "[::]:0".parse()?
    } else {
        "0.0.0.0:0".parse()?
    };
    // A pure client: it accepts no associations.
    let (transport, _incoming) = SctpUdp::bind(crate::session::transport_config(
        bind,
        vec![],
        &cfg.transport,
    ))
    .context("binding the SCTP-over-UDP transport")?;
    transport
        .export_metrics(&ctx.registry, "sessions")
        .context("registering transport metrics")?;
    let mut pu_cfg = PuConfig::new(registrars);
    pu_cfg.cache_staleness = cfg.resolution.cache_staleness;
    pu_cfg.request_timeout = cfg.resolution.timeout;
    let pu = Arc::new(Mutex::new(PoolUser::new(pu_cfg, transport.clone())?));
    let metrics = Arc::new(PpuMetrics::new(&ctx.registry).context("registering metrics")?);
    let shared = Arc::new(Shared {
        pu,
        transport,
        metrics,
        active: Arc::new(AtomicUsize::new(0)),
        upstreams: Arc::new(AtomicUsize::new(0)),
        drain: tokio::sync::watch::channel(false).0,
    });
    let mut running = Vec::new();
    for l in &cfg.listeners {
        running.push(shared.start(l, &cfg).await?);
    }
    let mut current = cfg;
    let _ = ctx.notifier.ready();
    // Reload applies a valid file; drain (or a closed signal stream) ends the loop.
    while let Some(Signal::Reload) = ctx.signals.recv().await {
        let _ = ctx.notifier.reloading();
        match crate::config::load_any(crate::config::Role::Ppu, &ctx.sources) {
            Ok(loaded) => match loaded.config {
                crate::config::AnyConfig::Ppu(new) => match check_listeners(&new) {
                    Ok(()) => {
                        for w in &loaded.warnings {
                            tracing::warn!(warning = %w, "configuration warning");
                        }
                        let problems = apply(&shared, &mut running, &current, &new).await;
                        let result = if problems == 0 { "applied" } else { "partial" };
                        if let Ok(c) = shared.metrics.reloads.with(&[result]) {
                            c.inc();
                        }
                        tracing::info!(
                            listeners = running.len(),
                            problems,
                            "PPU configuration reloaded"
                        );
                        current = new;
                    }
                    Err(e) => {
                        if let Ok(c) = shared.metrics.reloads.with(&["refused"]) {
                            c.inc();
                        }
                        tracing::error!(error = %e, "reload refused; keeping the running configuration");
                    }
                },
                _ => tracing::error!("reload refused: not a PPU configuration"),
            },
            Err(d) => {
                if let Ok(c) = shared.metrics.reloads.with(&["refused"]) {
                    c.inc();
                }
                for x in &d {
                    tracing::error!(diagnostic = %x, "configuration error");
                }
                tracing::error!(
                    errors = d.len(),
                    "reload refused: configuration invalid; keeping the running one"
                )
            }
        }
        let _ = ctx.notifier.ready();
    }
    let _ = ctx.notifier.stopping();
    for r in running {
        r.task.abort();
    }
    // HTTP connections close as soon as their requests in flight are answered; byte
    // streams (tcp/tls) run on until they end or the grace does.
    shared.drain.send_replace(true);
    let (active, upstreams) = (&shared.active, &shared.upstreams);
    let left = || active.load(Ordering::Relaxed) + upstreams.load(Ordering::Relaxed);
    let until = tokio::time::Instant::now() + current.drain_grace;
    tracing::info!(sessions = active.load(Ordering::Relaxed), http_upstreams = upstreams.load(Ordering::Relaxed), grace = ?current.drain_grace, "PPU draining");
    while left() > 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(
        left = active.load(Ordering::Relaxed),
        http_upstreams_left = upstreams.load(Ordering::Relaxed),
        "PPU stopped"
    );
    Ok(())
}

async fn accept_loop(listener: TcpListener, front: Arc<ArcSwap<Front>>, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let front = front.load_full();
        let active = shared.active.clone();
        tokio::spawn(async move {
            active.fetch_add(1, Ordering::Relaxed);
            let m = &front.session.metrics;
            m.active.inc();
            if let Ok(c) = m.sessions.with(&[&front.session.listener]) {
                c.inc();
            }
            serve_client(stream, peer, &front).await;
            front.session.metrics.active.dec();
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// One client connection, by listener kind.
async fn serve_client(stream: tokio::net::TcpStream, peer: SocketAddr, front: &Front) {
    let local = stream.local_addr().ok();
    let Some(acceptor) = &front.tls else {
        match &front.http {
            Some(h) => http::serve(stream, peer, h.clone()).await,
            None => {
                let (r, w) = stream.into_split();
                session::run(r, w, peer, local, &front.session).await;
            }
        }
        return;
    };
    let tls = match tokio::time::timeout(http::TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            count_tls_failure(front);
            tracing::debug!(%peer, listener = %front.session.listener, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            count_tls_failure(front);
            tracing::debug!(%peer, listener = %front.session.listener, "TLS handshake timed out");
            return;
        }
    };
    match &front.http {
        Some(h) => http::serve(tls, peer, h.clone()).await,
        None => {
            let (r, w) = tokio::io::split(tls);
            session::run(r, w, peer, local, &front.session).await;
        }
    }
}

fn count_tls_failure(front: &Front) {
    if let Ok(c) = front
        .session
        .metrics
        .tls_failures
        .with(&[&front.session.listener])
    {
        c.inc();
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, Sources};

    fn defaults() -> PpuConfig {
        let sources = Sources {
            files: vec![],
            env: vec![],
            sets: vec![],
        };
        load::<PpuConfig>(&sources)
            .expect("shipped ppu.toml")
            .config
    }

    #[test]
    fn every_kind_is_served_and_http_kinds_need_the_http_plugin() {
        let mut cfg = defaults();
        check_listeners(&cfg).unwrap();
        cfg.listeners[0].kind = ListenerKind::Tls;
        check_listeners(&cfg).unwrap();
        for kind in [ListenerKind::Http, ListenerKind::Https] {
            cfg.listeners[0].kind = kind;
            cfg.listeners[0].plugin = PluginKind::Raw;
            let e = check_listeners(&cfg).unwrap_err().to_string();
            assert!(e.contains("listener `default`"), "{e}");
            assert!(e.contains("plugin = \"http\""), "{e}");
            cfg.listeners[0].plugin = PluginKind::Http;
            check_listeners(&cfg).unwrap();
        }
        cfg.listeners.clear();
        assert!(check_listeners(&cfg).is_err());
    }

    #[test]
    fn a_listener_restarts_only_when_what_it_serves_changes() {
        let cfg = defaults();
        let a = cfg.listeners[0].clone();
        let mut b = a.clone();
        assert!(same_identity(&a, &b));
        b.tls_cert = Some("x.pem".into());
        assert!(same_identity(&a, &b), "certificates are reloaded in place");
        b.pool = "other".into();
        assert!(!same_identity(&a, &b));
        let mut c = a.clone();
        c.kind = ListenerKind::Tls;
        assert!(!same_identity(&a, &c));
        let mut d = a.clone();
        d.plugin_options.max_retries = 9;
        assert!(!same_identity(&a, &d));
    }
}
