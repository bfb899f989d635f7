//! An operation scope of real registrars with ENRP between them, their metrics, and
//! resolution through `pg-resolve`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::config::TempDir;
use super::metrics;
use super::ports::{free_tcp_port, free_udp_port};
use super::process::{bin, poolgate, Child};

/// The ENRP scope secret of the test registrars.
pub const SECRET: &str = "enrp scope secret for the test 0123";
/// Pool handles the ENRP tests register PEs in.
pub const POOLS: [&str; 3] = ["alpha", "beta", "gamma"];

/// One registrar of the scope (not running until [`Registrar::start`]).
pub struct Registrar {
    /// Registrar id (1..=n).
    pub id: u32,
    /// Its UDP port on loopback (ASAP and ENRP).
    pub port: u16,
    /// Its metrics endpoint (TCP port on loopback).
    pub metrics: u16,
    /// Its configuration file.
    pub config: PathBuf,
    /// The process (`None` before the start and once killed).
    pub child: Option<Child>,
}

impl Registrar {
    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts (or restarts) the process.
    pub fn start(&mut self) {
        self.child = Some(poolgate("registrar", &self.config, "warn"));
    }

    /// The registrar's Prometheus text, if it answers.
    pub fn metrics(&self) -> Option<String> {
        metrics::scrape(("127.0.0.1", self.metrics), Duration::from_secs(2))
    }

    /// The value of the unlabelled metric `name`, if it answers.
    pub fn metric(&self, name: &str) -> Option<f64> {
        metrics::value(&self.metrics()?, name)
    }

    /// This registrar's view of the checksum of every registrar's PEs.
    pub fn checksums(&self) -> Option<BTreeMap<u32, u16>> {
        checksums(&self.metrics()?)
    }
}

/// The `poolgate_registrar_enrp_checksum` series of a registrar's metrics text: checksum
/// by home registrar id; `None` when a series cannot be read.
pub fn checksums(text: &str) -> Option<BTreeMap<u32, u16>> {
    let mut out = BTreeMap::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("poolgate_registrar_enrp_checksum{registrar=\"") else {
            continue;
        };
        let (id, rest) = rest.split_once('"')?;
        let v: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        out.insert(id.parse().ok()?, v as u16);
    }
    Some(out)
}

/// `n` registrars (ids 1..=n) that know each other, keep-alives every 250 ms, a full
/// ENRP audit of every peer each second.
pub fn scope(n: u32) -> (Vec<Registrar>, TempDir) {
    scope_with(n, "250ms", "250ms")
}

/// `n` registrars with the given endpoint keep-alive interval and timeout.
pub fn scope_with(n: u32, ka_interval: &str, ka_timeout: &str) -> (Vec<Registrar>, TempDir) {
    let dir = std::env::temp_dir().join(format!(
        "pg-enrp-{}-{}",
        std::process::id(),
        free_udp_port()
    ));
    std::fs::create_dir_all(&dir).expect("create the scope directory");
    let ports: Vec<u16> = (0..n).map(|_| free_udp_port()).collect();
    let mut regs = Vec::new();
    for i in 0..n as usize {
        let id = i as u32 + 1;
        let metrics = free_tcp_port();
        let mut peers = String::new();
        for (j, p) in ports.iter().enumerate() {
            if j != i {
                peers += &format!(
                    "[[registrar.peer]]\nid = {}\naddresses = [\"127.0.0.1:{p}\"]\n",
                    j + 1
                );
            }
        }
        let config = dir.join(format!("r{id}.toml"));
        super::config::write_file(
            &config,
            &format!(
                "[registrar]\nid = {id}\nlisten = [\"127.0.0.1:{}\"]\n{peers}\n\
                 [registrar.keepalive]\ninterval = \"{ka_interval}\"\ntimeout = \"{ka_timeout}\"\n\
                 [registrar.enrp]\npresence_interval = \"250ms\"\nmax_time_last_heard = \"500ms\"\n\
                 max_time_no_response = \"250ms\"\ntakeover_timeout = \"500ms\"\nsecret = \"{SECRET}\"\n\
                 full_audit_interval = \"1s\"\n\
                 [registrar.metrics]\nlisten = \"127.0.0.1:{metrics}\"\n",
                ports[i]
            ),
        );
        regs.push(Registrar {
            id,
            port: ports[i],
            metrics,
            config,
            child: None,
        });
    }
    (regs, TempDir(dir))
}

/// `pg-resolve`'s lines as (PE id, home registrar id), sorted.
pub fn parse_resolution(stdout: &str) -> Vec<(u32, u32)> {
    let mut v: Vec<(u32, u32)> = stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let id = u32::from_str_radix(w.next()?, 16).ok()?;
            let home = u32::from_str_radix(w.next()?, 16).ok()?;
            Some((id, home))
        })
        .collect();
    v.sort();
    v
}

/// Runs `cmd` (a `pg-resolve`) and parses its answer; `None` if it failed.
pub fn run_resolution(cmd: &mut Command) -> Option<Vec<(u32, u32)>> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(parse_resolution(&String::from_utf8_lossy(&out.stdout)))
}

/// (PE id, home) of a pool, resolved through one registrar; `None` if that failed.
pub fn resolve(reg: &Registrar, pool: &str) -> Option<Vec<(u32, u32)>> {
    run_resolution(Command::new(bin("pg-resolve")).args([
        "--registrar",
        &reg.addr(),
        "--pool",
        pool,
    ]))
}
