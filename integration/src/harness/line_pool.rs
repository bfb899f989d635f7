//! A pool for the failover tests and `pg-failover-bench`: PPEs each in front of a
//! `pg-line-backend` (or Debian's `redis-server`), and a PPU with one TCP listener, all
//! with the same session-state plugin (`line`, `raw` or `resp`); and a line client.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::backend::{start_line_backend, start_redis, Backend};
use super::config::{listener_toml, ppu_toml, PpeToml};
use super::pool::{deref_to_pool, Pool};
use super::ports::{free_tcp_port, free_udp_port, wait_listen};

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

impl Setup {
    fn partial(&self) -> &'static str {
        if self.partial_skip {
            "skip"
        } else {
            "abort"
        }
    }
}

/// The running pool (pool handle `fo`, PE ids `0x100 + i`); the [`Pool`] it derefs to
/// holds the processes.
pub struct Cluster {
    /// Registrar, PPEs, PPU and backends.
    pub pool: Pool,
    /// The PPU's TCP listener.
    pub ppu_port: u16,
    /// What it was started with.
    pub setup: Setup,
    /// The PPEs' `[ppe.policy]` table body.
    pub policy: &'static str,
}

deref_to_pool!(Cluster);

impl Cluster {
    /// Starts registrar, backends, PPEs and the PPU, and waits until the PPU listens
    /// and all PEs are registered.
    pub fn start(setup: Setup) -> Cluster {
        Self::start_with_policy(setup, "kind = \"round-robin\"")
    }

    /// [`Cluster::start`] with `policy` as the body of the PPEs' `[ppe.policy]` table.
    pub fn start_with_policy(setup: Setup, policy: &'static str) -> Cluster {
        let mut c = Cluster {
            pool: Pool::start_registrar("fo", "fo", setup.log),
            ppu_port: 0,
            setup: setup.clone(),
            policy,
        };
        for i in 0..setup.pes {
            let b = c.start_backend(i, 0);
            let ppe = c.pool.start_ppe(i, &c.ppe_toml(i, b.port));
            c.pool.backends.push(b);
            c.pool.ppes.push(Some(ppe));
        }
        c.ppu_port = free_tcp_port();
        let mut ppu = ppu_toml(&c.registrar_addr, setup.keepalive, None, c.metrics_port);
        ppu.push_str(&listener_toml("t", "tcp", c.ppu_port, "fo", setup.plugin));
        ppu.push_str(&format!(
            "plugin_options = {{ partial_reply = \"{}\" }}\n",
            setup.partial()
        ));
        c.pool.start_ppu(&ppu);
        c.wait_pool(setup.pes, Duration::from_secs(10));
        wait_listen(c.ppu_port, Duration::from_secs(10));
        c
    }

    fn start_backend(&self, i: usize, port: u16) -> Backend {
        if self.setup.redis {
            start_redis(port)
        } else {
            start_line_backend(&format!("b{i}"), port)
        }
    }

    fn ppe_toml(&self, i: usize, backend_port: u16) -> String {
        PpeToml {
            pool: "fo",
            id: 0x100 + i as u32,
            registrar: &self.registrar_addr,
            udp: free_udp_port(),
            plugin: self.setup.plugin,
            policy: self.policy,
            backend_port,
            extra: &format!(
                "[ppe.plugin_options]\npartial_reply = \"{}\"\n",
                self.setup.partial()
            ),
        }
        .render()
    }

    /// Index of the backend that has read `request`, waiting for it up to `within`.
    pub fn serving(&self, request: &str, within: Duration) -> usize {
        self.wait_served(|r| r == request, within, Duration::from_millis(5))
            .unwrap_or_else(|| panic!("no backend read {request:?}"))
    }

    /// Starts backend `i` again on its port (after a kill).
    pub fn restart_backend(&mut self, i: usize) {
        let port = self.wait_backend_port_free(i);
        self.pool.backends[i] = self.start_backend(i, port);
    }

    /// A client connected to the PPU.
    pub fn client(&self) -> Client {
        Client::connect(self.ppu_port).expect("connect to the PPU")
    }
}

/// A line-protocol client.
pub struct Client {
    /// The reading side.
    pub r: BufReader<TcpStream>,
    /// The writing side.
    pub w: TcpStream,
}

impl Client {
    /// Connects to `port` on loopback (no Nagle, reads time out after 10 s).
    pub fn connect(port: u16) -> std::io::Result<Client> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Client {
            r: BufReader::new(s.try_clone()?),
            w: s,
        })
    }

    /// Sends one request line.
    pub fn send(&mut self, line: &str) {
        self.w
            .write_all(format!("{line}\n").as_bytes())
            .expect("send a request line");
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
