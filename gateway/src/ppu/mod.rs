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
//! Only `tcp` listeners are served by this version; `tls`, `http` and `https` are refused
//! at start.

pub mod session;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pool_core::asap::pu::PuConfig;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::asap_client::PoolUser;
use crate::config::ppu::{ListenerKind, PpuConfig};
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
        })
    }
}

/// Refuses listener kinds this version does not serve.
pub fn check_listeners(cfg: &PpuConfig) -> anyhow::Result<()> {
    for l in &cfg.listeners {
        if l.kind != ListenerKind::Tcp {
            anyhow::bail!(
                "listener `{}`: kind {:?} is not served by this version (only \"tcp\"); remove it or change its kind",
                l.name,
                l.kind
            );
        }
    }
    if cfg.listeners.is_empty() {
        anyhow::bail!("no [[ppu.listener]] configured");
    }
    Ok(())
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
    let (transport, _incoming) = SctpUdp::bind(crate::session::transport_config(bind, vec![]))
        .context("binding the SCTP-over-UDP transport")?;
    let mut pu_cfg = PuConfig::new(registrars);
    pu_cfg.cache_staleness = cfg.resolution.cache_staleness;
    pu_cfg.request_timeout = cfg.resolution.timeout;
    let pu = Arc::new(Mutex::new(PoolUser::new(pu_cfg, transport.clone())?));
    let metrics = Arc::new(PpuMetrics::new(&ctx.registry).context("registering metrics")?);
    let active = Arc::new(AtomicUsize::new(0));
    let mut accepts = Vec::new();
    for l in &cfg.listeners {
        let listener = TcpListener::bind(l.bind.0)
            .await
            .with_context(|| format!("listener `{}`: cannot bind {}", l.name, l.bind))?;
        let ctx = Arc::new(session::SessionContext {
            listener: l.name.clone(),
            pool: l.pool_handle().context("listener pool handle")?,
            plugin: l.plugin_options.to_plugin_config(l.plugin),
            session: cfg.session.clone(),
            resolution_timeout: cfg.resolution.timeout,
            pu: pu.clone(),
            transport: transport.clone(),
            metrics: metrics.clone(),
        });
        tracing::info!(listener = %l.name, bind = %listener.local_addr()?, pool = %l.pool, plugin = l.plugin.name(), "PPU listening");
        accepts.push(tokio::spawn(accept_loop(listener, ctx, active.clone())));
    }
    let _ = ctx.notifier.ready();
    // Reload re-validates the file; drain (or a closed signal stream) ends the loop.
    while let Some(Signal::Reload) = ctx.signals.recv().await {
        let _ = ctx.notifier.reloading();
        match crate::config::load_any(crate::config::Role::Ppu, &ctx.sources) {
            Ok(_) => {
                tracing::warn!("PPU configuration is valid; PPU settings take effect on restart")
            }
            Err(d) => tracing::error!(
                errors = d.len(),
                "reload refused: configuration invalid; keeping the running one"
            ),
        }
        let _ = ctx.notifier.ready();
    }
    let _ = ctx.notifier.stopping();
    accepts.iter().for_each(|a| a.abort());
    let until = tokio::time::Instant::now() + cfg.drain_grace;
    tracing::info!(sessions = active.load(Ordering::Relaxed), grace = ?cfg.drain_grace, "PPU draining");
    while active.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(left = active.load(Ordering::Relaxed), "PPU stopped");
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<session::SessionContext>,
    active: Arc<AtomicUsize>,
) {
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
        let ctx = ctx.clone();
        let active = active.clone();
        tokio::spawn(async move {
            active.fetch_add(1, Ordering::Relaxed);
            ctx.metrics.active.inc();
            if let Ok(c) = ctx.metrics.sessions.with(&[&ctx.listener]) {
                c.inc();
            }
            session::run(stream, peer, &ctx).await;
            ctx.metrics.active.dec();
            active.fetch_sub(1, Ordering::Relaxed);
        });
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
    fn tcp_listeners_are_served_and_others_refused_by_name() {
        let mut cfg = defaults();
        check_listeners(&cfg).unwrap();
        for kind in [ListenerKind::Tls, ListenerKind::Http, ListenerKind::Https] {
            cfg.listeners[0].kind = kind;
            let e = check_listeners(&cfg).unwrap_err().to_string();
            assert!(e.contains("listener `default`"), "{e}");
            assert!(e.contains("only \"tcp\""), "{e}");
        }
        cfg.listeners.clear();
        assert!(check_listeners(&cfg).is_err());
    }
}
