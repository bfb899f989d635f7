//! The PE's registration follows the backend's health: registered while a TCP connect to
//! the backend succeeds, deregistered while it fails, load updated as sessions come and go.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pool_core::asap::pe::PeConfig;
use pool_core::types::Load;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::Shared;
use crate::asap_client::{run_pe, PeCommand, PeStatus};
use crate::telemetry::Registry;
use crate::transport::sctp_udp::SctpUdp;

/// One running registration.
struct Running {
    commands: mpsc::Sender<PeCommand>,
    task: JoinHandle<anyhow::Result<u32>>,
    status: watch::Receiver<PeStatus>,
}

/// Load for `active` sessions out of `max`: the fraction of the RFC 5356 load range.
pub fn load_for(active: usize, max: u32) -> Load {
    let max = u64::from(max.max(1));
    let active = (active as u64).min(max);
    ((u64::from(Load::MAX) * active) / max) as Load
}

/// Whether the backend accepts a TCP connection within `timeout`.
pub async fn backend_up(shared: &Shared, timeout: Duration) -> bool {
    let b = &shared.cfg.backend.address;
    matches!(
        tokio::time::timeout(timeout, TcpStream::connect((b.host.as_str(), b.port))).await,
        Ok(Ok(_))
    )
}

/// Runs until `stop` turns true, then deregisters.
/// The registration transport's counters are exported to `registry`.
pub async fn run(
    shared: Arc<Shared>,
    local: SocketAddr,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) {
    let bind = SocketAddr::new(local.ip(), 0);
    let transport = match SctpUdp::bind(crate::session::transport_config(
        bind,
        vec![],
        &shared.cfg.transport,
    )) {
        Ok((t, _incoming)) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot bind the registration transport");
            return;
        }
    };
    if let Err(e) = transport.export_metrics(&registry, "registration") {
        tracing::warn!(error = %e, "registration transport metrics not exported");
    }
    let mut running: Option<Running> = None;
    let mut was_up: Option<bool> = None;
    let interval = shared.cfg.backend.check_interval;
    let mut policy = shared.policy.subscribe();
    loop {
        let up = backend_up(&shared, shared.cfg.backend.check_timeout).await;
        if was_up != Some(up) {
            if up {
                tracing::info!(backend = %shared.cfg.backend.address, "backend up");
            } else {
                tracing::warn!(backend = %shared.cfg.backend.address, "backend down; deregistering");
            }
            was_up = Some(up);
        }
        shared.metrics.backend_up.set(if up { 1.0 } else { 0.0 });
        // A registration whose driver gave up (e.g. rejected) is restarted.
        if running.as_ref().is_some_and(|r| r.task.is_finished()) {
            running = None;
        }
        match (up, running.is_some()) {
            (true, false) => running = Some(start(&shared, local, transport.clone())),
            (false, true) => stop_running(running.take(), &shared).await,
            _ => {}
        }
        let mut status = running.as_ref().map(|r| r.status.clone());
        publish_registered(&shared, &mut status);
        let next = tokio::time::Instant::now() + interval;
        loop {
            tokio::select! {
                // A registration state change is published without waiting for the next check.
                Some(Ok(())) = async { match status.as_mut() { Some(s) => Some(s.changed().await), None => None } } => {
                    publish_registered(&shared, &mut status);
                }
                _ = tokio::time::sleep_until(next) => break,
                _ = shared.backend_suspect.notified() => break,
                _ = shared.load_changed.notified() => {
                    if let Some(r) = &running {
                        let load = load_for(shared.active.load(Ordering::Relaxed), shared.cfg.max_sessions);
                        let _ = r.commands.try_send(PeCommand::Load(load));
                    }
                }
                Ok(()) = policy.changed() => {
                    if let Some(r) = &running {
                        let load = load_for(shared.active.load(Ordering::Relaxed), shared.cfg.max_sessions);
                        let p = policy.borrow_and_update().to_policy(load);
                        let _ = r.commands.send(PeCommand::Policy(p)).await;
                    }
                }
                _ = stop.changed() => {
                    stop_running(running.take(), &shared).await;
                    return;
                }
            }
        }
    }
}

/// Publishes whether the running registration (if any) is registered now.
fn publish_registered(shared: &Shared, status: &mut Option<watch::Receiver<PeStatus>>) {
    let registered = status
        .as_mut()
        .is_some_and(|s| matches!(*s.borrow_and_update(), PeStatus::Registered(_)));
    shared
        .metrics
        .registered
        .set(if registered { 1.0 } else { 0.0 });
    shared
        .registered
        .send_if_modified(|r| std::mem::replace(r, registered) != registered);
}

fn start(shared: &Shared, local: SocketAddr, transport: SctpUdp) -> Running {
    let load = load_for(
        shared.active.load(Ordering::Relaxed),
        shared.cfg.max_sessions,
    );
    let mut pe = PeConfig::new(
        shared.pool.clone(),
        crate::session::user_transport(local),
        shared.policy.borrow().to_policy(load),
        shared.cfg.registrars.iter().map(|a| a.0).collect(),
    );
    pe.pe_id = Some(shared.pe_id);
    pe.registration_life = shared.cfg.registration_life;
    pe.reregistration_interval = shared.cfg.registration_life / 3;
    let (tx, rx) = mpsc::channel(16);
    let (st_tx, st_rx) = watch::channel(PeStatus::Unregistered);
    Running {
        commands: tx,
        task: tokio::spawn(run_pe(pe, transport, rx, st_tx)),
        status: st_rx,
    }
}

async fn stop_running(running: Option<Running>, shared: &Shared) {
    let Some(r) = running else { return };
    let _ = r.commands.send(PeCommand::Shutdown).await;
    if tokio::time::timeout(Duration::from_secs(2), r.task)
        .await
        .is_err()
    {
        tracing::warn!("deregistration did not finish in 2s");
    }
    shared.metrics.registered.set(0.0);
    shared
        .registered
        .send_if_modified(|r| std::mem::replace(r, false));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_is_the_fraction_of_max_sessions() {
        assert_eq!(load_for(0, 10), 0);
        assert_eq!(load_for(10, 10), Load::MAX);
        assert_eq!(load_for(20, 10), Load::MAX);
        assert!(load_for(1, 10) < load_for(2, 10));
        assert_eq!(load_for(1, 0), Load::MAX);
    }
}
