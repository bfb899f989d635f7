//! A standalone `poolgate registrar` on loopback and the bare ASAP processes the
//! registrar tests run against it: PEs (`pg-pe`) and resolving PUs (`pg-resolve`).

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::config::{write_file, TempDir};
use super::metrics;
use super::ports::{free_tcp_port, free_udp_port};
use super::process::{bin, poolgate, Child};
use super::wait::wait_until;

/// A running registrar with its metrics endpoint; killed (and its folder removed) on drop.
pub struct Registrar {
    /// The process.
    pub child: Child,
    /// Its UDP port on loopback.
    pub port: u16,
    /// Its metrics endpoint (TCP port on loopback).
    pub metrics: u16,
    _dir: TempDir,
}

impl Registrar {
    /// Starts a registrar on a free UDP port; see [`Registrar::start_on`].
    pub fn start(extra: &str, log: &str) -> Registrar {
        Registrar::start_on(free_udp_port(), extra, log)
    }

    /// Starts `poolgate --log-level <log> registrar` on UDP `port` with metrics on a free
    /// TCP port; `extra` is inserted into the `[registrar]` table (keys or further
    /// tables). Returns once the registrar serves SCTP (its transport metrics exist).
    pub fn start_on(port: u16, extra: &str, log: &str) -> Registrar {
        let metrics = free_tcp_port();
        let dir = std::env::temp_dir().join(format!(
            "pg-reg-{}-{port}-{}",
            std::process::id(),
            free_udp_port()
        ));
        std::fs::create_dir_all(&dir).expect("create the registrar's folder");
        let dir = TempDir(dir);
        let file = dir.0.join("registrar.toml");
        write_file(
            &file,
            &format!(
                "[registrar]\nid = 1\nlisten = [\"127.0.0.1:{port}\"]\n{extra}\n\
                 [registrar.metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"
            ),
        );
        let reg = Registrar {
            child: poolgate("registrar", &file, log),
            port,
            metrics,
            _dir: dir,
        };
        // The metrics endpoint comes up before the role; the transport's series appear
        // once the UDP socket is bound.
        wait_until("registrar serving", Duration::from_secs(10), || {
            reg.metrics_text()
                .is_some_and(|t| t.contains("transport=\"registrar\""))
        });
        reg
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<metrics port>`.
    pub fn metrics_addr(&self) -> String {
        format!("127.0.0.1:{}", self.metrics)
    }

    /// The registrar's Prometheus text, if it answers.
    pub fn metrics_text(&self) -> Option<String> {
        metrics::scrape(("127.0.0.1", self.metrics), Duration::from_secs(2))
    }

    /// The value of series `name` (see [`metrics::value`]); panics when it is missing.
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics_text()
            .and_then(|t| metrics::value(&t, name))
            .unwrap_or_else(|| panic!("metric {name} missing"))
    }
}

/// Starts a bare PE (`pg-pe --registrar <registrar> --pool <pool> --id <id> <extra>`),
/// its output discarded.
pub fn pe(registrar: &str, pool: &str, id: &str, extra: &[&str]) -> Child {
    Child(
        Command::new(bin("pg-pe"))
            .args(["--registrar", registrar, "--pool", pool, "--id", id])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pg-pe"),
    )
}

/// Runs `pg-resolve --registrar <registrar> --pool <pool> <extra>` once.
pub fn resolve_output(registrar: &str, pool: &str, extra: &[&str]) -> Output {
    Command::new(bin("pg-resolve"))
        .args(["--registrar", registrar, "--pool", pool])
        .args(extra)
        .output()
        .expect("run pg-resolve")
}

/// The PE ids (hex, as printed first on each line) of a `pg-resolve` answer, sorted.
pub fn pe_ids(stdout: &[u8]) -> Vec<String> {
    let mut ids: Vec<String> = String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// Whether one resolution of `pool` lists PE `id` (hex).
pub fn resolves(registrar: &str, pool: &str, id: &str) -> bool {
    String::from_utf8_lossy(&resolve_output(registrar, pool, &[]).stdout).contains(id)
}
