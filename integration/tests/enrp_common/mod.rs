//! Shared by the ENRP integration tests: a scope of real registrars with ENRP
//! between them, their metrics, and resolution through `pg-resolve`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use poolgate_integration::{bin, free_tcp_port, free_udp_port, Child};

pub const SECRET: &str = "enrp scope secret for the test 0123";
pub const POOLS: [&str; 3] = ["alpha", "beta", "gamma"];

pub struct Registrar {
    pub id: u32,
    pub port: u16,
    pub metrics: u16,
    pub config: std::path::PathBuf,
    pub child: Option<Child>,
}

impl Registrar {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) {
        let child = Command::new(bin("poolgate"))
            .args(["--log-level", "warn", "registrar", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.child = Some(Child(child));
    }

    /// The registrar's Prometheus text, if it answers.
    pub fn metrics(&self) -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    pub fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics()?;
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// This registrar's view of the checksum of every registrar's PEs.
    pub fn checksums(&self) -> Option<BTreeMap<u32, u16>> {
        let text = self.metrics()?;
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
}

pub struct TempDir(pub std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `n` registrars (ids 1..=n) that know each other, keep-alives every 250 ms.
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
    std::fs::create_dir_all(&dir).unwrap();
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
        std::fs::write(
            &config,
            format!(
                "[registrar]\nid = {id}\nlisten = [\"127.0.0.1:{}\"]\n{peers}\n\
                 [registrar.keepalive]\ninterval = \"{ka_interval}\"\ntimeout = \"{ka_timeout}\"\n\
                 [registrar.enrp]\npresence_interval = \"250ms\"\nmax_time_last_heard = \"500ms\"\n\
                 max_time_no_response = \"250ms\"\ntakeover_timeout = \"500ms\"\nsecret = \"{SECRET}\"\n\
                 [registrar.metrics]\nlisten = \"127.0.0.1:{metrics}\"\n",
                ports[i]
            ),
        )
        .unwrap();
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

/// (PE id, home) of a pool, resolved through one registrar; `None` if that failed.
pub fn resolve(reg: &Registrar, pool: &str) -> Option<Vec<(u32, u32)>> {
    let out = Command::new(bin("pg-resolve"))
        .args(["--registrar", &reg.addr(), "--pool", pool])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut v: Vec<(u32, u32)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let id = u32::from_str_radix(w.next()?, 16).ok()?;
            let home = u32::from_str_radix(w.next()?, 16).ok()?;
            Some((id, home))
        })
        .collect();
    v.sort();
    Some(v)
}

pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        if f() {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}
