//! The process harness of the integration tests and benchmark tools: real processes on
//! loopback (registrar, PPEs, PPU, backends), killed with SIGKILL when dropped.
//!
//! - [`process`]: the child guard, workspace binaries, `poolgate <role>` spawning;
//! - [`ports`]: free loopback ports and waiting for a listener;
//! - [`wait`]: bounded polling;
//! - [`config`]: the TOML files the pools run from;
//! - [`metrics`]: reading a Prometheus `/metrics` endpoint;
//! - [`backend`]: backends (`pg-line-backend`, `pg-http-backend`, redis, nginx, haproxy);
//! - [`pool`]: one pool (registrar, PPEs, PPU, backends) — the core of the two below;
//! - [`line_pool`]: a pool of line/raw/resp backends with one TCP listener;
//! - [`http_pool`]: a pool of HTTP backends with the listeners a test asks for;
//! - [`http_client`]: hyper/rustls clients, test certificates and expected content;
//! - [`registrar`]: a standalone registrar, bare PEs (`pg-pe`) and `pg-resolve`;
//! - [`sctp_peer`]: `pg-sctp-peer`, directly or in a network namespace;
//! - [`enrp_scope`]: registrars that mirror each other with ENRP.

pub mod backend;
pub mod config;
pub mod enrp_scope;
pub mod http_client;
pub mod http_pool;
pub mod line_pool;
pub mod metrics;
pub mod pool;
pub mod ports;
pub mod process;
pub mod registrar;
pub mod sctp_peer;
pub mod wait;
