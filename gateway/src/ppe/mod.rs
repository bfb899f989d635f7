//! `poolgate ppe`: the proxy pool element. Makes one unmodified TCP backend a pool element.
//!
//! - **Registration** ([`registration`]): checks the backend with a TCP connect every
//!   `backend.check_interval`; while it answers, the PE is registered (ASAP, via
//!   [`crate::asap_client::run_pe`]) with its policy and load (active sessions as a
//!   fraction of `max_sessions`); while it does not, the PE is deregistered.
//! - **Sessions** ([`session`]): one SCTP association per client session (protocol in
//!   [`crate::session`]); per session one TCP connection to the backend, relayed both ways
//!   with bounded buffers, the plugin following both directions, cookies at checkpoints,
//!   restore from COOKIE_ECHO.
//! - **Drain** (SIGTERM): deregister first, then give sessions `drain_grace` to end; the
//!   rest get a final cookie and a clean close, so their PPU moves them without lost work.

pub mod registration;
pub mod session;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pool_core::cookie::KeyRing;
use pool_core::types::PoolHandle;
use poolgate_plugins::PluginConfig;
use tokio::sync::{watch, Notify};

use crate::config::ppe::PpeConfig;
use crate::signals::Signal;
use crate::telemetry::{Counter, CounterVec, Gauge, Registry};
use crate::transport::sctp_udp::SctpUdp;
use crate::transport::Transport;
use crate::RoleContext;

/// PPE metrics.
#[derive(Debug)]
pub struct PpeMetrics {
    /// Sessions running now.
    pub active: Gauge,
    /// Sessions opened, by kind (new, resumed).
    pub sessions: CounterVec,
    /// Sessions refused, by reason.
    pub refused: CounterVec,
    /// Cookies sent to PUs.
    pub cookies: Counter,
    /// COOKIE_ECHOs rejected, by cookie error kind.
    pub cookies_rejected: CounterVec,
    /// Relayed bytes, by direction (to_backend, to_pu).
    pub bytes: CounterVec,
    /// 1 while registered.
    pub registered: Gauge,
    /// 1 while the backend answers health checks.
    pub backend_up: Gauge,
}

impl PpeMetrics {
    fn new(r: &Registry) -> anyhow::Result<Self> {
        Ok(PpeMetrics {
            active: r.gauge("poolgate_ppe_sessions_active", "Sessions running now")?,
            sessions: r.counter_vec(
                "poolgate_ppe_sessions_total",
                "Sessions opened, by kind (new, resumed)",
                &["kind"],
            )?,
            refused: r.counter_vec(
                "poolgate_ppe_sessions_refused_total",
                "Sessions refused, by reason",
                &["reason"],
            )?,
            cookies: r.counter("poolgate_ppe_cookies_sent_total", "State cookies sent")?,
            cookies_rejected: r.counter_vec(
                "poolgate_ppe_cookies_rejected_total",
                "COOKIE_ECHOs rejected, by reason",
                &["reason"],
            )?,
            bytes: r.counter_vec(
                "poolgate_ppe_bytes_total",
                "Relayed bytes, by direction",
                &["direction"],
            )?,
            registered: r.gauge("poolgate_ppe_registered", "1 while registered")?,
            backend_up: r.gauge(
                "poolgate_ppe_backend_up",
                "1 while the backend answers health checks",
            )?,
        })
    }
}

/// What every session of a PPE shares.
#[derive(Debug)]
pub struct Shared {
    /// Configuration.
    pub cfg: PpeConfig,
    /// Pool handle.
    pub pool: PoolHandle,
    /// PE identifier.
    pub pe_id: u32,
    /// Pool keys.
    pub keys: KeyRing,
    /// Plugin factory.
    pub plugin: PluginConfig,
    /// Sessions running now.
    pub active: AtomicUsize,
    /// Woken when the session count changes (load updates).
    pub load_changed: Notify,
    /// Woken when a backend connect failed (check the backend now).
    pub backend_suspect: Notify,
    /// Set when running sessions must hand over (drain grace over).
    pub hand_over: watch::Sender<bool>,
    /// Metrics.
    pub metrics: PpeMetrics,
}

impl Shared {
    /// Session state shared by a PPE's sessions, with its metrics registered in `registry`.
    pub fn new(cfg: PpeConfig, registry: &Registry) -> anyhow::Result<Self> {
        let pool = cfg.pool_handle().context("ppe.pool")?;
        let keys = key_ring(&cfg)?;
        let pe_id = if cfg.id == 0 {
            rand::random::<u32>().max(1)
        } else {
            cfg.id
        };
        let metrics = PpeMetrics::new(registry).context("registering metrics")?;
        let (hand_over, _) = watch::channel(false);
        Ok(Shared {
            plugin: cfg.plugin_options.to_plugin_config(cfg.plugin),
            cfg,
            pool,
            pe_id,
            keys,
            active: AtomicUsize::new(0),
            load_changed: Notify::new(),
            backend_suspect: Notify::new(),
            hand_over,
            metrics,
        })
    }
}

/// The key ring from the configured pool keys (oldest id first; the highest seals).
pub fn key_ring(cfg: &PpeConfig) -> anyhow::Result<KeyRing> {
    let mut keys: Vec<_> = cfg.keys.iter().collect();
    keys.sort_by_key(|k| k.id);
    KeyRing::new(keys.iter().map(|k| (k.id, k.material.expose().to_vec())))
        .context("pool keys (ppe.key)")
}

/// Runs the PPE until drained.
pub async fn run(cfg: PpeConfig, mut ctx: RoleContext) -> anyhow::Result<()> {
    let bind = cfg.listen.first().context("ppe.listen is empty")?.0;
    if bind.ip().is_unspecified() {
        // The address is registered as the user transport: PUs must be able to reach it.
        anyhow::bail!(
            "ppe.listen {bind}: give the address PUs reach this PE at (it is registered), not a wildcard"
        );
    }
    // Accept sessions on the UDP port number as SCTP port (what we register) and on the
    // configured sctp_port; port 0 binds first to learn the number.
    let bind = if bind.port() == 0 {
        std::net::UdpSocket::bind(bind)
            .and_then(|s| s.local_addr())
            .with_context(|| format!("finding a free UDP port on {bind}"))?
    } else {
        bind
    };
    let (transport, listener) = SctpUdp::bind(crate::session::transport_config(
        bind,
        vec![bind.port(), cfg.sctp_port],
    ))
    .with_context(|| format!("binding SCTP over UDP on {bind}"))?;
    let local = transport.local_addr();
    let shared = Arc::new(Shared::new(cfg, &ctx.registry)?);
    let pe_id = shared.pe_id;
    tracing::info!(
        pe = format_args!("{pe_id:08x}"),
        pool = %shared.cfg.pool,
        listen = %local,
        backend = %shared.cfg.backend.address,
        plugin = shared.plugin.protocol(),
        "PPE listening"
    );
    let (reg_stop_tx, reg_stop_rx) = watch::channel(false);
    let registration = tokio::spawn(registration::run(shared.clone(), local, reg_stop_rx));
    let accept = tokio::spawn(accept_loop(listener, shared.clone()));
    let _ = ctx.notifier.ready();
    let _ = ctx.notifier.status(&format!("PE {pe_id:08x} on {local}"));
    // Reload re-validates the file; drain (or a closed signal stream) ends the loop.
    while let Some(Signal::Reload) = ctx.signals.recv().await {
        let _ = ctx.notifier.reloading();
        match crate::config::load_any(crate::config::Role::Ppe, &ctx.sources) {
            Ok(_) => {
                tracing::warn!("PPE configuration is valid; PPE settings take effect on restart")
            }
            Err(d) => tracing::error!(
                errors = d.len(),
                "reload refused: configuration invalid; keeping the running one"
            ),
        }
        let _ = ctx.notifier.ready();
    }
    let _ = ctx.notifier.stopping();
    // Deregister first so no PU picks us any more; then let sessions finish.
    let _ = reg_stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), registration).await;
    accept.abort();
    let grace = shared.cfg.drain_grace;
    tracing::info!(
        sessions = shared.active.load(Ordering::Relaxed),
        ?grace,
        "PPE draining"
    );
    let until = tokio::time::Instant::now() + grace;
    while shared.active.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < until {
        let _ = tokio::time::timeout_at(until, shared.load_changed.notified()).await;
    }
    let left = shared.active.load(Ordering::Relaxed);
    if left > 0 {
        tracing::info!(
            sessions = left,
            "drain grace over; handing sessions over with a final cookie"
        );
        let _ = shared.hand_over.send(true);
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        while shared.active.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < until {
            let _ = tokio::time::timeout_at(until, shared.load_changed.notified()).await;
        }
    }
    // Give the engine a moment to deliver the closing SHUTDOWNs.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(transport);
    tracing::info!("PPE stopped");
    Ok(())
}

async fn accept_loop(mut listener: crate::transport::Listener, shared: Arc<Shared>) {
    while let Some(assoc) = listener.accept().await {
        tokio::spawn(session::serve(assoc, shared.clone()));
    }
}
