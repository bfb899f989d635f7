//! The `poolgate` gateway: operability scaffolding shared by the three roles.
//!
//! - [`cli`] — the command line (`poolgate <registrar|ppe|ppu|check|status>`).
//! - [`config`] — typed, layered, validated configuration per role.
//! - [`telemetry`] — logging setup, Prometheus metrics registry and endpoint.
//! - [`notify`] — systemd notifications (`READY=1`, `WATCHDOG=1`, ...).
//! - [`signals`] — SIGHUP/SIGTERM/SIGINT as reload/drain events.
//! - [`check`] — `poolgate check` and `poolgate status`.
//!
//! The roles themselves (registrar, PPE, PPU drivers) are added as modules here and
//! dispatched from `main.rs`'s `run_role`; each receives a [`RoleContext`].

pub mod asap_client;
pub mod check;
pub mod cli;
pub mod config;
pub mod enrp;
pub mod lab;
pub mod notify;
pub mod ppe;
pub mod ppu;
pub mod registrar;
pub mod session;
pub mod signals;
pub mod status;
pub mod telemetry;
pub mod transport;

use std::net::SocketAddr;
use std::sync::Arc;

/// Everything a role needs from the process around it, prepared by `main`.
///
/// A role should: register its metrics in `registry`; bind its sockets; call
/// `notifier.ready()`; then loop, handling `signals` — on [`signals::Signal::Reload`]
/// call `notifier.reloading()`, re-run [`config::load`] with `sources` (keep the old
/// configuration and log the diagnostics if it fails), apply, `notifier.ready()`;
/// on [`signals::Signal::Drain`] call `notifier.stopping()`, drain, and return.
pub struct RoleContext {
    /// Where the configuration came from; load again from it on reload.
    pub sources: config::Sources,
    /// The metrics registry served at `/metrics`.
    pub registry: Arc<telemetry::Registry>,
    /// systemd notifications (inactive outside systemd).
    pub notifier: notify::Notifier,
    /// Reload and drain requests.
    pub signals: signals::Signals,
    /// The address the metrics endpoint is bound to, if enabled.
    pub metrics_addr: Option<SocketAddr>,
}
