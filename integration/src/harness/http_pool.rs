//! An HTTP pool for the HTTP tests and `pg-http-bench`: PPEs with the `http` plugin each
//! in front of a backend (`pg-http-backend`, or Debian's `nginx` serving static files),
//! and a PPU with the listeners a test asks for.

use std::path::PathBuf;
use std::time::Duration;

use super::backend::{start_http_backend, start_nginx, Backend};
use super::config::{listener_toml, ppu_toml, write_file, PpeToml};
use super::pool::{deref_to_pool, Pool};
use super::ports::{free_tcp_port, free_udp_port, wait_listen};

/// What serves behind each PPE.
#[derive(Clone, Debug)]
pub enum BackendKind {
    /// `pg-http-backend` (deterministic content, Range/If-Range).
    Ours,
    /// Debian's nginx serving this directory (one process each, no master).
    Nginx(PathBuf),
    /// nginx expecting a PROXY protocol header on every connection; `GET /pp` answers
    /// `<client address> <client port> <nginx port>` from the header.
    NginxProxyProtocol,
}

/// A PPU listener of the test.
#[derive(Clone, Debug)]
pub struct ListenerSpec {
    /// Listener name.
    pub name: String,
    /// `http`, `https`, `tcp` or `tls`.
    pub kind: &'static str,
    /// Its TCP port on loopback.
    pub port: u16,
    /// Certificate and key files (tls/https).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `send_proxy_protocol` ("v1", "v2"; tcp/tls).
    pub send_proxy: Option<&'static str>,
}

impl ListenerSpec {
    /// A listener on a free port.
    pub fn new(name: &str, kind: &'static str, tls: Option<(PathBuf, PathBuf)>) -> Self {
        ListenerSpec {
            name: name.into(),
            kind,
            port: free_tcp_port(),
            tls,
            send_proxy: None,
        }
    }

    fn toml(&self) -> String {
        // The pool's PPEs run the http plugin, so every listener uses it: on tcp/tls
        // listeners it follows the relayed HTTP/1.1 bytes the same way.
        let mut s = listener_toml(&self.name, self.kind, self.port, "web", "http");
        if let Some(v) = self.send_proxy {
            s.push_str(&format!("send_proxy_protocol = \"{v}\"\n"));
        }
        if let Some((c, k)) = &self.tls {
            s.push_str(&format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                c.display(),
                k.display()
            ));
        }
        s
    }
}

/// Settings of a test pool.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Number of PE/backend pairs.
    pub pes: usize,
    /// PPU session keep-alive interval = timeout.
    pub keepalive: &'static str,
    /// Log level of the poolgate processes.
    pub log: &'static str,
    /// What serves behind each PPE.
    pub backend: BackendKind,
    /// The PPU's listeners.
    pub listeners: Vec<ListenerSpec>,
    /// Extra `[ppu.http]` lines.
    pub http: String,
    /// Backends print no line per request (benchmarks).
    pub quiet: bool,
    /// The PPU's `drain_grace`.
    pub drain_grace: &'static str,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            pes: 3,
            keepalive: "200ms",
            log: "warn",
            backend: BackendKind::Ours,
            listeners: vec![ListenerSpec::new("web", "http", None)],
            http: String::new(),
            quiet: false,
            drain_grace: "1s",
        }
    }
}

/// The running pool (pool handle `web`, PE ids `0x200 + i`); the [`Pool`] it derefs to
/// holds the processes.
pub struct Cluster {
    /// Registrar, PPEs, PPU and backends.
    pub pool: Pool,
    /// The PPU's file (rewritten by [`Cluster::write_ppu`]).
    pub ppu_file: PathBuf,
    /// What it was started with.
    pub setup: Setup,
}

deref_to_pool!(Cluster);

impl Cluster {
    /// Starts registrar, backends, PPEs and the PPU; waits until every listener
    /// accepts and all PEs are registered.
    pub fn start(setup: Setup) -> Cluster {
        let pool = Pool::start_registrar("http", "web", setup.log);
        let mut c = Cluster {
            ppu_file: pool.dir.join("ppu.toml"),
            pool,
            setup: setup.clone(),
        };
        for i in 0..setup.pes {
            let b = c.start_backend(i, 0);
            let ppe = c.pool.start_ppe(i, &c.ppe_toml(i, b.port));
            c.pool.backends.push(b);
            c.pool.ppes.push(Some(ppe));
        }
        c.pool.start_ppu(&c.ppu_toml(&setup.listeners));
        c.wait_pool(setup.pes, Duration::from_secs(10));
        for l in &setup.listeners {
            wait_listen(l.port, Duration::from_secs(10));
        }
        c
    }

    fn ppu_toml(&self, listeners: &[ListenerSpec]) -> String {
        let mut text = ppu_toml(
            &self.registrar_addr,
            self.setup.keepalive,
            Some(&self.setup.http),
            self.metrics_port,
        )
        .replacen(
            "drain_grace = \"1s\"",
            &format!("drain_grace = \"{}\"", self.setup.drain_grace),
            1,
        );
        assert!(
            text.contains(&format!("drain_grace = \"{}\"", self.setup.drain_grace)),
            "the PPU file head no longer sets drain_grace = \"1s\""
        );
        for l in listeners {
            text.push_str(&l.toml());
        }
        text
    }

    /// (Re)writes the PPU's file with these listeners.
    pub fn write_ppu(&self, listeners: &[ListenerSpec]) {
        write_file(&self.ppu_file, &self.ppu_toml(listeners));
    }

    fn start_backend(&self, i: usize, port: u16) -> Backend {
        match &self.setup.backend {
            BackendKind::Ours => start_http_backend(&format!("b{i}"), port, self.setup.quiet),
            BackendKind::Nginx(root) => start_nginx(&self.dir, root, port, "40m", false),
            BackendKind::NginxProxyProtocol => start_nginx(&self.dir, &self.dir, port, "0", true),
        }
    }

    fn ppe_toml(&self, i: usize, backend_port: u16) -> String {
        PpeToml {
            pool: "web",
            id: 0x200 + i as u32,
            registrar: &self.registrar_addr,
            udp: free_udp_port(),
            plugin: "http",
            policy: "kind = \"round-robin\"",
            backend_port,
            extra: "",
        }
        .render()
    }

    /// Indexes of the backends that printed a request line starting with `prefix`.
    pub fn served(&self, prefix: &str) -> Vec<usize> {
        self.served_where(|r| r.starts_with(prefix))
    }

    /// The backend that printed a request line starting with `prefix`, waiting up to `within`.
    pub fn serving(&self, prefix: &str, within: Duration) -> usize {
        self.wait_served(|r| r.starts_with(prefix), within, Duration::from_millis(2))
            .unwrap_or_else(|| panic!("no backend read {prefix:?}"))
    }

    /// Starts backend `i` again on its port (after a kill).
    pub fn restart_backend(&mut self, i: usize) {
        let port = self.wait_backend_port_free(i);
        self.pool.backends[i] = self.start_backend(i, port);
    }
}
