//! A pool on loopback from real processes: `poolgate registrar`, PPEs (`poolgate ppe`)
//! each in front of a `pg-line-backend`, and a PPU (`poolgate ppu`) with one tcp listener.
//! Shared by the failover tests and `pg-failover-bench`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poolgate_integration::{bin, free_tcp_port, free_udp_port, Child};

/// A pool key for the tests (64 hex digits).
const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Settings of a test pool.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Number of PE/backend pairs.
    pub pes: usize,
    /// Plugin on both sides.
    pub plugin: &'static str,
    /// PPU session keep-alive interval = timeout.
    pub keepalive: &'static str,
    /// Log level of the poolgate processes.
    pub log: &'static str,
    /// Backends: `pg-line-backend` (false) or Debian's `redis-server` (true).
    pub redis: bool,
    /// Plugin option `partial_reply = "skip"` (deterministic replies) instead of "abort".
    pub partial_skip: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            pes: 3,
            plugin: "line",
            keepalive: "100ms",
            log: "warn",
            redis: false,
            partial_skip: false,
        }
    }
}

/// One backend: its process, port and the requests it has read.
pub struct Backend {
    pub child: Option<Child>,
    pub port: u16,
    pub requests: Arc<Mutex<Vec<String>>>,
}

/// Starts `redis-server` on a free port (no persistence); returns it once it answers.
pub fn start_redis(port: u16) -> Backend {
    let port = if port == 0 { free_tcp_port() } else { port };
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "redis-server does not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Backend {
        child: Some(Child(child)),
        port,
        requests: Arc::new(Mutex::new(Vec::new())),
    }
}

/// The running pool.
pub struct Cluster {
    pub dir: PathBuf,
    pub registrar: Option<Child>,
    pub registrar_addr: String,
    pub backends: Vec<Backend>,
    pub ppes: Vec<Option<Child>>,
    pub ppu: Option<Child>,
    pub ppu_port: u16,
    /// The PPU's metrics endpoint (TCP port on loopback).
    pub ppu_metrics_port: u16,
    pub setup: Setup,
    /// The PPEs' `[ppe.policy]` table body.
    pub policy: &'static str,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.ppu.take();
        self.ppes.clear();
        self.backends.clear();
        self.registrar.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write(path: &PathBuf, text: &str) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// A workspace binary, next to the running executable (a bench tool) or found the way
/// the integration tests find them.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().join(name);
    if p.exists() {
        p
    } else {
        bin(name)
    }
}

fn poolgate(role: &str, config: &PathBuf, log: &str) -> Child {
    Child(
        Command::new(binary("poolgate"))
            .args(["--log-level", log, role, "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

fn partial(s: &Setup) -> &'static str {
    if s.partial_skip {
        "skip"
    } else {
        "abort"
    }
}

/// Starts a line backend on `port` (0: any); returns it once it listens.
pub fn start_backend(name: &str, port: u16) -> Backend {
    let mut child = Command::new(binary("pg-line-backend"))
        .args(["--name", name, "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let port: u16 = first
        .trim()
        .strip_prefix("listening ")
        .expect("backend banner")
        .parse()
        .unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let r = requests.clone();
    std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { return };
            if let Some(req) = line.strip_prefix("req ") {
                r.lock().unwrap().push(req.to_string());
            }
        }
    });
    Backend {
        child: Some(Child(child)),
        port,
        requests,
    }
}

impl Cluster {
    /// Starts registrar, backends, PPEs and the PPU, and waits until the PPU listens
    /// and all PEs are registered.
    pub fn start(setup: Setup) -> Cluster {
        Self::start_with_policy(setup, "kind = \"round-robin\"")
    }

    /// [`Cluster::start`] with `policy` as the body of the PPEs' `[ppe.policy]` table.
    pub fn start_with_policy(setup: Setup, policy: &'static str) -> Cluster {
        let reg_port = free_udp_port();
        let dir = std::env::temp_dir().join(format!("pg-fo-{}-{reg_port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let reg_file = dir.join("registrar.toml");
        write(
            &reg_file,
            &format!(
                "[registrar]\nid = 1\nlisten = [\"127.0.0.1:{reg_port}\"]\n\
                 [registrar.keepalive]\ninterval = \"500ms\"\ntimeout = \"500ms\"\n\
                 [registrar.metrics]\nenabled = false\n"
            ),
        );
        let registrar = poolgate("registrar", &reg_file, setup.log);
        let registrar_addr = format!("127.0.0.1:{reg_port}");
        let mut c = Cluster {
            dir,
            registrar: Some(registrar),
            registrar_addr,
            backends: Vec::new(),
            ppes: Vec::new(),
            ppu: None,
            ppu_port: 0,
            ppu_metrics_port: free_tcp_port(),
            setup: setup.clone(),
            policy,
        };
        for i in 0..setup.pes {
            let b = if setup.redis {
                start_redis(0)
            } else {
                start_backend(&format!("b{i}"), 0)
            };
            let ppe = c.start_ppe(i, b.port);
            c.backends.push(b);
            c.ppes.push(Some(ppe));
        }
        c.ppu_port = free_tcp_port();
        let ppu_file = c.dir.join("ppu.toml");
        write(
            &ppu_file,
            &format!(
                "[ppu]\nregistrars = [\"{}\"]\ndrain_grace = \"1s\"\n\
                 [ppu.resolution]\ncache_staleness = \"100ms\"\ntimeout = \"500ms\"\n\
                 [ppu.session]\nkeepalive_interval = \"{ka}\"\nkeepalive_timeout = \"{ka}\"\n\
                 failover_max_attempts = 3\nreport_failures = true\n\
                 [ppu.metrics]\nenabled = true\nlisten = \"127.0.0.1:{}\"\n\
                 [[ppu.listener]]\nname = \"t\"\nkind = \"tcp\"\nbind = \"127.0.0.1:{}\"\npool = \"fo\"\nplugin = \"{}\"\nplugin_options = {{ partial_reply = \"{}\" }}\n",
                c.registrar_addr,
                c.ppu_metrics_port,
                c.ppu_port,
                setup.plugin,
                partial(&setup),
                ka = setup.keepalive,
            ),
        );
        c.ppu = Some(poolgate("ppu", &ppu_file, setup.log));
        c.wait_pool(setup.pes, Duration::from_secs(10));
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", c.ppu_port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "PPU does not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        c
    }

    fn start_ppe(&self, i: usize, backend_port: u16) -> Child {
        let udp = free_udp_port();
        let file = self.dir.join(format!("ppe{i}.toml"));
        write(
            &file,
            &format!(
                "[ppe]\npool = \"fo\"\nid = {id}\nregistrars = [\"{reg}\"]\nregistration_life = \"5s\"\n\
                 listen = [\"127.0.0.1:{udp}\"]\nplugin = \"{plugin}\"\ncookie_interval = \"10ms\"\n\
                 drain_grace = \"1s\"\n\
                 [[ppe.key]]\nid = 1\nkey = \"{KEY}\"\n\
                 [ppe.policy]\n{policy}\n\
                 [ppe.backend]\naddress = \"127.0.0.1:{backend_port}\"\nconnect_timeout = \"500ms\"\n\
                 check_interval = \"200ms\"\ncheck_timeout = \"200ms\"\n\
                 [ppe.metrics]\nenabled = false\n\
                 [ppe.plugin_options]\npartial_reply = \"{partial}\"\n",
                id = 0x100 + i,
                reg = self.registrar_addr,
                plugin = self.setup.plugin,
                partial = partial(&self.setup),
                policy = self.policy,
            ),
        );
        poolgate("ppe", &file, self.setup.log)
    }

    /// PE ids the registrar lists for the pool.
    pub fn resolve(&self) -> Vec<String> {
        let out = Command::new(binary("pg-resolve"))
            .args(["--registrar", &self.registrar_addr, "--pool", "fo"])
            .output()
            .unwrap();
        let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        ids.sort();
        ids
    }

    /// Waits until `n` PEs are registered (a resolution lists at most 3: the
    /// registrar's default number of resolution items).
    pub fn wait_pool(&self, n: usize, within: Duration) {
        let n = n.min(3);
        let t0 = Instant::now();
        loop {
            let got = self.resolve();
            if got.len() == n {
                return;
            }
            assert!(t0.elapsed() < within, "wanted {n} PEs, have {got:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Index of the backend that has read `request`, waiting for it up to `within`.
    pub fn serving(&self, request: &str, within: Duration) -> usize {
        let t0 = Instant::now();
        loop {
            for (i, b) in self.backends.iter().enumerate() {
                if b.requests.lock().unwrap().iter().any(|r| r == request) {
                    return i;
                }
            }
            assert!(t0.elapsed() < within, "no backend read {request:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILLs backend `i`.
    pub fn kill_backend(&mut self, i: usize) {
        self.backends[i].child.take();
    }

    /// Starts backend `i` again on its port (after a kill).
    pub fn restart_backend(&mut self, i: usize) {
        let port = self.backends[i].port;
        let t0 = Instant::now();
        // The port may linger for a moment after the kill.
        loop {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "port {port} stays busy"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.backends[i] = if self.setup.redis {
            start_redis(port)
        } else {
            start_backend(&format!("b{i}"), port)
        };
    }

    /// Sends SIGTERM to PPE `i` (drain).
    pub fn drain_ppe(&self, i: usize) {
        if let Some(c) = &self.ppes[i] {
            c.signal(15);
        }
    }

    /// Starts PPE `i` again with its configuration (after a kill).
    pub fn restart_ppe(&mut self, i: usize) {
        let file = self.dir.join(format!("ppe{i}.toml"));
        self.ppes[i] = Some(poolgate("ppe", &file, self.setup.log));
    }

    /// SIGKILLs PPE `i`.
    pub fn kill_ppe(&mut self, i: usize) {
        self.ppes[i].take();
    }

    /// The PPU's metric series whose names start with `prefix` (Prometheus text lines).
    pub fn ppu_metrics(&self, prefix: &str) -> Vec<String> {
        use std::io::Read;
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.ppu_metrics_port)) else {
            return Vec::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }

    /// Sum of a PPU counter over all its series.
    pub fn ppu_counter(&self, name: &str) -> f64 {
        self.ppu_metrics(name)
            .iter()
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// A client connected to the PPU.
    pub fn client(&self) -> Client {
        let s = TcpStream::connect(("127.0.0.1", self.ppu_port)).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }
}

/// A line-protocol client.
pub struct Client {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Client {
    /// Sends one request line.
    pub fn send(&mut self, line: &str) {
        self.w.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// Reads one reply line; `None` at end of stream (or error).
    pub fn recv(&mut self) -> Option<String> {
        let mut s = String::new();
        match self.r.read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(s.trim_end().to_string()),
        }
    }

    /// One request, one reply.
    pub fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.recv()
            .unwrap_or_else(|| panic!("no reply to {line:?}"))
    }
}
