//! One pool on loopback from real processes: `poolgate registrar`, a PPE (`poolgate
//! ppe`) per backend and a PPU (`poolgate ppu`). [`super::line_pool`] and
//! [`super::http_pool`] fill in the backends, PPE and PPU files.

use std::path::PathBuf;
use std::time::Duration;

use super::backend::Backend;
use super::config::{registrar_toml, write_file};
use super::metrics;
use super::ports::{free_tcp_port, free_udp_port, wait_port_free};
use super::process::{poolgate, Child};
use super::registrar::{pe_ids, resolve_output};
use super::wait::poll;

/// Lets a cluster type with a `pool: Pool` field be used as its [`Pool`] (fields and
/// methods), so tests reach the processes directly.
macro_rules! deref_to_pool {
    ($t:ty) => {
        impl std::ops::Deref for $t {
            type Target = $crate::harness::pool::Pool;
            fn deref(&self) -> &Self::Target {
                &self.pool
            }
        }

        impl std::ops::DerefMut for $t {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.pool
            }
        }
    };
}
pub(crate) use deref_to_pool;

/// The running processes of a pool; dropping it SIGKILLs them (PPU first, registrar
/// last) and removes the directory.
pub struct Pool {
    /// Directory of the configuration files (`registrar.toml`, `ppe<i>.toml`, …).
    pub dir: PathBuf,
    /// The registrar (`None` once killed).
    pub registrar: Option<Child>,
    /// The registrar's address (`127.0.0.1:port`).
    pub registrar_addr: String,
    /// Pool handle.
    pub pool: &'static str,
    /// Backend `i` sits behind PPE `i`.
    pub backends: Vec<Backend>,
    /// The PPEs (`None` once killed).
    pub ppes: Vec<Option<Child>>,
    /// The PPU.
    pub ppu: Option<Child>,
    /// The PPU's metrics endpoint (TCP port on loopback).
    pub metrics_port: u16,
    /// Log level of the poolgate processes.
    pub log: &'static str,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.ppu.take();
        self.ppes.clear();
        self.backends.clear();
        self.registrar.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Pool {
    /// Creates the directory `pg-<tag>-<pid>-<port>` and starts a registrar in it (see
    /// [`registrar_toml`]); no PEs or PPU yet.
    pub fn start_registrar(tag: &str, pool: &'static str, log: &'static str) -> Pool {
        let reg_port = free_udp_port();
        let dir = std::env::temp_dir().join(format!("pg-{tag}-{}-{reg_port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the pool directory");
        let reg_file = dir.join("registrar.toml");
        write_file(&reg_file, &registrar_toml(reg_port));
        Pool {
            registrar: Some(poolgate("registrar", &reg_file, log)),
            registrar_addr: format!("127.0.0.1:{reg_port}"),
            dir,
            pool,
            backends: Vec::new(),
            ppes: Vec::new(),
            ppu: None,
            metrics_port: free_tcp_port(),
            log,
        }
    }

    /// The file of PPE `i`.
    pub fn ppe_file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("ppe{i}.toml"))
    }

    /// Writes PPE `i`'s file and starts it.
    pub fn start_ppe(&self, i: usize, text: &str) -> Child {
        let file = self.ppe_file(i);
        write_file(&file, text);
        poolgate("ppe", &file, self.log)
    }

    /// Writes the PPU's file (`ppu.toml`) and starts it.
    pub fn start_ppu(&mut self, text: &str) {
        let file = self.dir.join("ppu.toml");
        write_file(&file, text);
        self.ppu = Some(poolgate("ppu", &file, self.log));
    }

    /// PE ids (hex) the registrar lists for the pool, sorted.
    pub fn resolve(&self) -> Vec<String> {
        pe_ids(&resolve_output(&self.registrar_addr, self.pool, &[]).stdout)
    }

    /// Waits until `n` PEs are registered (a resolution lists at most 3: the
    /// registrar's default number of resolution items).
    pub fn wait_pool(&self, n: usize, within: Duration) {
        let n = n.min(3);
        let mut got = Vec::new();
        let done = poll(within, Duration::from_millis(50), || {
            got = self.resolve();
            (got.len() == n).then_some(())
        });
        assert!(done.is_some(), "wanted {n} PEs, have {got:?}");
    }

    /// Indexes of the backends that printed a request for which `read` holds.
    pub fn served_where(&self, read: impl Fn(&str) -> bool) -> Vec<usize> {
        (0..self.backends.len())
            .filter(|&i| {
                self.backends[i]
                    .requests
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|r| read(r))
            })
            .collect()
    }

    /// The first backend that printed a request for which `read` holds, polling every
    /// `every` for up to `within`; `None` when none did.
    pub fn wait_served(
        &self,
        read: impl Fn(&str) -> bool,
        within: Duration,
        every: Duration,
    ) -> Option<usize> {
        poll(within, every, || self.served_where(&read).first().copied())
    }

    /// SIGKILLs backend `i`.
    pub fn kill_backend(&mut self, i: usize) {
        self.backends[i].child.take();
    }

    /// Waits until backend `i`'s port is free again after a kill (it may linger for a
    /// moment) and returns it.
    pub fn wait_backend_port_free(&self, i: usize) -> u16 {
        let port = self.backends[i].port;
        wait_port_free(port, Duration::from_secs(5));
        port
    }

    /// SIGKILLs PPE `i`.
    pub fn kill_ppe(&mut self, i: usize) {
        self.ppes[i].take();
    }

    /// Starts PPE `i` again with its file (after a kill).
    pub fn restart_ppe(&mut self, i: usize) {
        self.ppes[i] = Some(poolgate("ppe", &self.ppe_file(i), self.log));
    }

    /// Sends SIGTERM to PPE `i` (drain).
    pub fn drain_ppe(&self, i: usize) {
        if let Some(c) = &self.ppes[i] {
            c.signal(15);
        }
    }

    /// Sends SIGHUP to the PPU (reload).
    pub fn reload_ppu(&self) {
        if let Some(p) = &self.ppu {
            p.signal(1);
        }
    }

    /// The PPU's metric lines whose names start with `prefix` (none when it does not
    /// answer).
    pub fn ppu_metrics(&self, prefix: &str) -> Vec<String> {
        let text = metrics::scrape(("127.0.0.1", self.metrics_port), Duration::from_secs(5));
        metrics::lines(&text.unwrap_or_default(), prefix)
    }

    /// Sum of a PPU counter over all its series.
    pub fn ppu_counter(&self, name: &str) -> f64 {
        let text = metrics::scrape(("127.0.0.1", self.metrics_port), Duration::from_secs(5));
        metrics::sum(&text.unwrap_or_default(), name)
    }
}
