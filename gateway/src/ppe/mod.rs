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
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use pool_core::cookie::{CookieError, CookieParts, KeyRing};
use pool_core::types::PoolHandle;
use poolgate_plugins::PluginConfig;
use tokio::sync::{watch, Notify};

use crate::config::ppe::{PolicyConfig, PpeConfig};
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
    /// Sessions whose plugin lost track of a stream (it then only relays), by stream
    /// (client, backend) and error kind.
    pub plugin_errors: CounterVec,
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
            plugin_errors: r.counter_vec(
                "poolgate_ppe_plugin_errors_total",
                "Sessions whose plugin lost track of a stream (it then only relays), by stream and kind",
                &["stream", "kind"],
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
    /// Pool keys (replaced by a reload).
    pub keys: PoolKeys,
    /// Selection policy and its parameters (replaced by a reload; the registration follows).
    pub policy: watch::Sender<PolicyConfig>,
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
    /// True while the PE is registered (systemd READY=1 waits for the first time).
    pub registered: watch::Sender<bool>,
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
        let (policy, _) = watch::channel(cfg.policy.clone());
        let (registered, _) = watch::channel(false);
        Ok(Shared {
            plugin: cfg.plugin_options.to_plugin_config(cfg.plugin),
            cfg,
            pool,
            pe_id,
            keys: PoolKeys::new(keys),
            policy,
            active: AtomicUsize::new(0),
            load_changed: Notify::new(),
            backend_suspect: Notify::new(),
            hand_over,
            registered,
            metrics,
        })
    }
}

/// The pool's cookie keys, replaceable while sessions use them (key rotation on reload).
#[derive(Debug)]
pub struct PoolKeys {
    ring: RwLock<Arc<KeyRing>>,
    /// The id of the sealing key; running sessions watch it to re-seal their cookie.
    sealing: watch::Sender<pool_core::cookie::KeyId>,
}

impl PoolKeys {
    /// Keys starting with `ring`.
    pub fn new(ring: KeyRing) -> Self {
        let (sealing, _) = watch::channel(ring.sealing_key_id());
        PoolKeys {
            ring: RwLock::new(Arc::new(ring)),
            sealing,
        }
    }

    /// The ring in force now.
    pub fn current(&self) -> Arc<KeyRing> {
        // A poisoned lock still holds a whole ring: the writer only swaps an Arc.
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `ring` in force for every cookie sealed or opened from now on. When the
    /// sealing key changed, running sessions send their PU a cookie sealed with it, so
    /// the old key can leave the pool once every PE has reloaded.
    pub fn replace(&self, ring: KeyRing) {
        let id = ring.sealing_key_id();
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
        self.sealing
            .send_if_modified(|s| std::mem::replace(s, id) != id);
    }

    /// Changes when the sealing key changes.
    pub fn watch_sealing(&self) -> watch::Receiver<pool_core::cookie::KeyId> {
        self.sealing.subscribe()
    }

    /// [`KeyRing::seal`] with the ring in force.
    pub fn seal<R: rand::CryptoRng + ?Sized>(
        &self,
        pool: &PoolHandle,
        parts: &CookieParts,
        expires_at_ms: u64,
        rng: &mut R,
    ) -> Result<Vec<u8>, CookieError> {
        self.current().seal(pool, parts, expires_at_ms, rng)
    }

    /// [`KeyRing::open`] with the ring in force.
    pub fn open(
        &self,
        pool: &PoolHandle,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<CookieParts, CookieError> {
        self.current().open(pool, bytes, now_ms)
    }
}

/// Applies a reloaded configuration to a running PPE: the pool keys (rotation) and the
/// selection policy with its weight/priority take effect at once, for running sessions
/// too. Returns the keys whose new values need a restart (they keep their running values).
pub fn apply_reload(shared: &Shared, new: &PpeConfig) -> anyhow::Result<Vec<&'static str>> {
    let ring = key_ring(new)?;
    let old = &shared.cfg;
    let mut restart = Vec::new();
    crate::config::restart_keys!(restart, "ppe", old, new;
        pool,
        registrars,
        registration_life,
        listen,
        sctp_port,
        backend,
        plugin,
        plugin_options,
        cookie_interval,
        max_sessions,
        drain_grace,
        metrics,
        transport,
        threads
    );
    // A random id (0) stays the one drawn at start.
    if new.id != old.id && new.id != shared.pe_id {
        restart.push("ppe.id");
    }
    let ids: Vec<_> = ring.key_ids().collect();
    shared.keys.replace(ring);
    tracing::info!(key_ids = ?ids, "pool keys reloaded");
    shared.policy.send_if_modified(|p| {
        let changed = format!("{p:?}") != format!("{:?}", new.policy);
        if changed {
            if p.kind != new.policy.kind {
                tracing::warn!(from = ?p.kind, to = ?new.policy.kind, "policy kind changed: the registrar refuses a PE whose policy differs from the pool's, so change every PE of the pool");
            }
            tracing::info!(policy = ?new.policy.kind, weight = new.policy.weight, priority = new.policy.priority, "selection policy reloaded");
            *p = new.policy.clone();
        }
        changed
    });
    Ok(restart)
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
        &cfg.transport,
    ))
    .with_context(|| format!("binding SCTP over UDP on {bind}"))?;
    transport
        .export_metrics(&ctx.registry, "sessions")
        .context("registering transport metrics")?;
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
    let registration = tokio::spawn(registration::run(
        shared.clone(),
        local,
        ctx.registry.clone(),
        reg_stop_rx,
    ));
    let accept = tokio::spawn(accept_loop(listener, shared.clone()));
    // systemd learns "ready" once the PE is in the pool (its backend answered and a
    // registrar accepted it); a drain before that ends the start.
    let _ = ctx.notifier.status(&format!(
        "PE {pe_id:08x} on {local}: waiting for backend and registrar"
    ));
    let mut registered = shared.registered.subscribe();
    let first = tokio::select! {
        r = registered.wait_for(|r| *r) => r.is_ok(),
        sig = ctx.signals.recv() => {
            if !matches!(sig, Some(Signal::Drain) | None) {
                tracing::warn!("reload before the first registration: ignored");
            }
            false
        }
    };
    if first {
        tracing::info!(pe = format_args!("{pe_id:08x}"), "PE registered; ready");
        let _ = ctx.notifier.ready();
        let _ = ctx.notifier.status(&format!("PE {pe_id:08x} on {local}"));
    }
    // Reload applies keys and policy; drain (or a closed signal stream) ends the loop.
    while first && matches!(ctx.signals.recv().await, Some(Signal::Reload)) {
        let _ = ctx.notifier.reloading();
        match crate::config::load::<PpeConfig>(&ctx.sources) {
            Ok(loaded) => match apply_reload(&shared, &loaded.config) {
                Ok(restart) if restart.is_empty() => tracing::info!("PPE configuration reloaded"),
                Ok(restart) => tracing::warn!(
                    keys = restart.join(","),
                    "PPE configuration reloaded; these keys keep their running values until a restart"
                ),
                Err(e) => tracing::error!(
                    error = format!("{e:#}"),
                    "reload refused; keeping the running configuration"
                ),
            },
            Err(d) => {
                for e in &d {
                    tracing::error!(error = %e, "reload: configuration error");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, Sources};

    const K1: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const K2: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    fn config(sets: &[&str]) -> PpeConfig {
        let mut all = vec![format!("ppe.key=[{{id=1,key=\"{K1}\"}}]")];
        all.extend(sets.iter().map(|s| s.to_string()));
        let sources = Sources {
            files: vec![],
            env: vec![],
            sets: all,
        };
        load::<PpeConfig>(&sources).expect("test config").config
    }

    #[test]
    fn reload_swaps_keys_and_policy_and_names_what_needs_a_restart() {
        let shared = Shared::new(config(&[]), &Registry::new()).unwrap();
        let pool = shared.pool.clone();
        let old_cookie = shared
            .keys
            .seal(&pool, &CookieParts::default(), u64::MAX, &mut rand::rng())
            .unwrap();
        let mut sealing = shared.keys.watch_sealing();
        let mut policy = shared.policy.subscribe();

        // Key 2 joins and seals; key 1 still opens; a weight change reaches the
        // registration; the backend address needs a restart.
        let new = config(&[
            &format!("ppe.key=[{{id=1,key=\"{K1}\"}},{{id=2,key=\"{K2}\"}}]"),
            "ppe.policy.kind=weighted-round-robin",
            "ppe.policy.weight=4",
            "ppe.backend.address=127.0.0.1:1",
        ]);
        let restart = apply_reload(&shared, &new).unwrap();
        assert_eq!(restart, ["ppe.backend"]);
        assert!(sealing.has_changed().unwrap());
        assert_eq!(*sealing.borrow_and_update(), 2);
        assert!(policy.has_changed().unwrap());
        assert_eq!(policy.borrow_and_update().weight, 4);
        assert!(shared.keys.open(&pool, &old_cookie, 0).is_ok());
        let sealed = shared
            .keys
            .seal(&pool, &CookieParts::default(), u64::MAX, &mut rand::rng())
            .unwrap();

        // Key 1 leaves: its cookies no longer open, key 2's do; the same policy again
        // is no change.
        let new = config(&[
            &format!("ppe.key=[{{id=2,key=\"{K2}\"}}]"),
            "ppe.policy.kind=weighted-round-robin",
            "ppe.policy.weight=4",
        ]);
        assert!(apply_reload(&shared, &new).unwrap().is_empty());
        assert!(!policy.has_changed().unwrap());
        assert!(!sealing.has_changed().unwrap());
        assert!(matches!(
            shared.keys.open(&pool, &old_cookie, 0),
            Err(CookieError::UnknownKey(1))
        ));
        assert!(shared.keys.open(&pool, &sealed, 0).is_ok());
    }
}
