//! An HTTP pool on loopback from real processes: `poolgate registrar`, PPEs with the
//! `http` plugin each in front of a backend (`pg-http-backend`, or Debian's `nginx`
//! serving static files), and a PPU with the listeners a test asks for. Also the
//! clients: hyper (HTTP/1.1 and HTTP/2, plain or TLS) and test certificates made with
//! rcgen at test time.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use poolgate_integration::{bin, free_tcp_port, free_udp_port, Child};

/// A pool key for the tests (64 hex digits).
const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

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
    pub name: String,
    pub kind: &'static str,
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
        let plugin = "http";
        let mut s = format!(
            "[[ppu.listener]]\nname = \"{}\"\nkind = \"{}\"\nbind = \"127.0.0.1:{}\"\npool = \"web\"\nplugin = \"{plugin}\"\n",
            self.name, self.kind, self.port
        );
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
    pub pes: usize,
    pub keepalive: &'static str,
    pub log: &'static str,
    pub backend: BackendKind,
    pub listeners: Vec<ListenerSpec>,
    /// Extra `[ppu.http]` lines.
    pub http: String,
    /// Backends print no line per request (benchmarks).
    pub quiet: bool,
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
        }
    }
}

/// One backend: its process, port and the request lines it printed.
pub struct Backend {
    pub child: Option<Child>,
    pub port: u16,
    pub requests: Arc<Mutex<Vec<String>>>,
}

/// The running pool.
pub struct Cluster {
    pub dir: PathBuf,
    pub registrar: Option<Child>,
    pub registrar_addr: String,
    pub backends: Vec<Backend>,
    pub ppes: Vec<Option<Child>>,
    pub ppu: Option<Child>,
    pub ppu_file: PathBuf,
    pub metrics_port: u16,
    pub setup: Setup,
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

fn write(path: &Path, text: &str) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

fn poolgate(role: &str, config: &Path, log: &str) -> Child {
    Child(
        Command::new(bin("poolgate"))
            .args(["--log-level", log, role, "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_listen(port: u16, within: Duration) {
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < within, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `pg-http-backend` on `port` (0: any); returns it once it listens.
pub fn start_ours(name: &str, port: u16, quiet: bool) -> Backend {
    let mut child = Command::new(bin("pg-http-backend"))
        .args(["--name", name, "--port", &port.to_string()])
        .args(quiet.then_some("--quiet"))
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

/// Starts nginx as one process (no master, no daemon) serving `root` on `port`, with
/// its own prefix under `dir` (no root rights needed); `/nginx-status` is stub_status.
pub fn start_nginx(dir: &Path, root: &Path, port: u16, rate: &str, proxy: bool) -> Backend {
    let port = if port == 0 { free_tcp_port() } else { port };
    let prefix = dir.join(format!("nginx-{port}"));
    std::fs::create_dir_all(prefix.join("tmp")).unwrap();
    let conf = prefix.join("nginx.conf");
    let p = prefix.display();
    write(
        &conf,
        &format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\n\
             error_log {p}/error.log warn;\nevents {{ worker_connections 256; }}\n\
             http {{\n access_log off;\n client_body_temp_path {p}/tmp;\n proxy_temp_path {p}/tmp;\n\
             fastcgi_temp_path {p}/tmp;\n uwsgi_temp_path {p}/tmp;\n scgi_temp_path {p}/tmp;\n\
             types {{ application/octet-stream bin; text/plain txt; }}\n\
             server {{\n  listen 127.0.0.1:{port}{pp};\n  root {root};\n  limit_rate {rate};\n\
             location = /nginx-status {{ stub_status; }}\n\
             location = /pp {{ default_type text/plain; \
             return 200 \"$proxy_protocol_addr $proxy_protocol_port $server_port\\n\"; }}\n }}\n}}\n",
            root = root.display(),
            pp = if proxy { " proxy_protocol" } else { "" },
        ),
    );
    // Debian installs it in /usr/sbin, which a user's PATH may lack.
    let exe = if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    };
    let child = Command::new(exe)
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(prefix.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx (apt-get install nginx)");
    wait_listen(port, Duration::from_secs(10));
    Backend {
        child: Some(Child(child)),
        port,
        requests: Arc::new(Mutex::new(Vec::new())),
    }
}

impl Cluster {
    /// Starts registrar, backends, PPEs and the PPU; waits until every listener
    /// accepts and all PEs are registered.
    pub fn start(setup: Setup) -> Cluster {
        let reg_port = free_udp_port();
        let dir = std::env::temp_dir().join(format!("pg-http-{}-{reg_port}", std::process::id()));
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
        let mut c = Cluster {
            registrar: Some(poolgate("registrar", &reg_file, setup.log)),
            registrar_addr: format!("127.0.0.1:{reg_port}"),
            ppu_file: dir.join("ppu.toml"),
            dir,
            backends: Vec::new(),
            ppes: Vec::new(),
            ppu: None,
            metrics_port: free_tcp_port(),
            setup: setup.clone(),
        };
        for i in 0..setup.pes {
            let b = c.start_backend(i, 0);
            let ppe = c.start_ppe(i, b.port);
            c.backends.push(b);
            c.ppes.push(Some(ppe));
        }
        c.write_ppu(&setup.listeners);
        c.ppu = Some(poolgate("ppu", &c.ppu_file, setup.log));
        c.wait_pool(setup.pes, Duration::from_secs(10));
        for l in &setup.listeners {
            wait_listen(l.port, Duration::from_secs(10));
        }
        c
    }

    /// (Re)writes the PPU's file with these listeners.
    pub fn write_ppu(&self, listeners: &[ListenerSpec]) {
        let mut text = format!(
            "[ppu]\nregistrars = [\"{}\"]\ndrain_grace = \"1s\"\n\
             [ppu.resolution]\ncache_staleness = \"100ms\"\ntimeout = \"500ms\"\n\
             [ppu.session]\nkeepalive_interval = \"{ka}\"\nkeepalive_timeout = \"{ka}\"\n\
             failover_max_attempts = 3\nreport_failures = true\n\
             [ppu.http]\n{}\n\
             [ppu.metrics]\nenabled = true\nlisten = \"127.0.0.1:{}\"\n",
            self.registrar_addr,
            self.setup.http,
            self.metrics_port,
            ka = self.setup.keepalive,
        );
        for l in listeners {
            text.push_str(&l.toml());
        }
        write(&self.ppu_file, &text);
    }

    fn start_backend(&self, i: usize, port: u16) -> Backend {
        match &self.setup.backend {
            BackendKind::Ours => start_ours(&format!("b{i}"), port, self.setup.quiet),
            BackendKind::Nginx(root) => start_nginx(&self.dir, root, port, "40m", false),
            BackendKind::NginxProxyProtocol => start_nginx(&self.dir, &self.dir, port, "0", true),
        }
    }

    fn start_ppe(&self, i: usize, backend_port: u16) -> Child {
        let udp = free_udp_port();
        let file = self.dir.join(format!("ppe{i}.toml"));
        write(
            &file,
            &format!(
                "[ppe]\npool = \"web\"\nid = {id}\nregistrars = [\"{reg}\"]\nregistration_life = \"5s\"\n\
                 listen = [\"127.0.0.1:{udp}\"]\nplugin = \"http\"\ncookie_interval = \"10ms\"\n\
                 drain_grace = \"1s\"\n\
                 [[ppe.key]]\nid = 1\nkey = \"{KEY}\"\n\
                 [ppe.policy]\nkind = \"round-robin\"\n\
                 [ppe.backend]\naddress = \"127.0.0.1:{backend_port}\"\nconnect_timeout = \"500ms\"\n\
                 check_interval = \"200ms\"\ncheck_timeout = \"200ms\"\n\
                 [ppe.metrics]\nenabled = false\n",
                id = 0x200 + i,
                reg = self.registrar_addr,
            ),
        );
        poolgate("ppe", &file, self.setup.log)
    }

    /// PE ids the registrar lists for the pool.
    pub fn resolve(&self) -> Vec<String> {
        let out = Command::new(bin("pg-resolve"))
            .args(["--registrar", &self.registrar_addr, "--pool", "web"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    }

    /// Waits until `n` PEs are registered (a resolution lists at most 3).
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

    /// Indexes of the backends that printed a request line starting with `prefix`.
    pub fn served(&self, prefix: &str) -> Vec<usize> {
        (0..self.backends.len())
            .filter(|&i| {
                self.backends[i]
                    .requests
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|r| r.starts_with(prefix))
            })
            .collect()
    }

    /// The backend that printed a request line starting with `prefix`, waiting up to `within`.
    pub fn serving(&self, prefix: &str, within: Duration) -> usize {
        let t0 = Instant::now();
        loop {
            if let Some(&i) = self.served(prefix).first() {
                return i;
            }
            assert!(t0.elapsed() < within, "no backend read {prefix:?}");
            std::thread::sleep(Duration::from_millis(2));
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
        while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "port {port} stays busy"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.backends[i] = self.start_backend(i, port);
    }

    /// Sends SIGHUP to the PPU.
    pub fn reload_ppu(&self) {
        if let Some(p) = &self.ppu {
            p.signal(1);
        }
    }

    /// The PPU's metric lines whose names start with `prefix`.
    pub fn ppu_metrics(&self, prefix: &str) -> Vec<String> {
        use std::io::Read;
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.metrics_port)) else {
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
}

/// Bytes `from..from+buf.len()` of `pg-http-backend`'s `/file/<size>?seed=N` content
/// (generation 1), computed here independently of the server.
pub fn expected_content(seed: u64, from: u64, len: usize) -> Vec<u8> {
    let block = |b: u64| -> [u8; 8] {
        let mut z = (seed ^ (1u64 << 40)).wrapping_add(b.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)).to_le_bytes()
    };
    (from..from + len as u64)
        .map(|i| block(i / 8)[(i % 8) as usize])
        .collect()
}

/// SHA-256 of the whole `/file/<size>?seed=N` content, computed in 1 MiB pieces.
pub fn expected_sha256(seed: u64, size: u64) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut at = 0;
    while at < size {
        let n = (size - at).min(1 << 20) as usize;
        h.update(expected_content(seed, at, n));
        at += n as u64;
    }
    h.finalize().into()
}

/// A self-signed certificate for `localhost` with this common name and serial, written
/// as PEM files (key mode 600) in `dir`; returns the files and the certificate's DER.
#[cfg(test)] // rcgen is a dev-dependency; pg-http-bench includes this module too
pub fn make_cert(dir: &Path, name: &str, serial: u64) -> (PathBuf, PathBuf, Vec<u8>) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.serial_number = Some(rcgen::SerialNumber::from(serial));
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let c = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    write(&c, &cert.pem());
    write(&k, &key.serialize_pem());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
    (c, k, cert.der().to_vec())
}

/// A TLS client trusting exactly `ca_der`, offering `alpn`.
pub fn tls_connector(ca_der: &[u8], alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der.to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A request body for the test clients.
pub type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed()
}

/// A body of these bytes.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// A hyper client connection (HTTP/1.1, or HTTP/2 when `h2`).
pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Body>),
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

impl Conn {
    /// Connects to the PPU on `port`, over TLS when `tls` is given (the certificate the
    /// server showed is returned too).
    pub async fn open(
        port: u16,
        h2: bool,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> std::io::Result<(Conn, Option<Vec<u8>>)> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        match tls {
            None => Ok((Self::handshake(TokioIo::new(tcp), h2).await?, None)),
            Some(c) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let s = c.connect(name, tcp).await?;
                let leaf = s
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.to_vec());
                let alpn_h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
                assert_eq!(alpn_h2, h2, "ALPN did not agree on the protocol asked for");
                Ok((Self::handshake(TokioIo::new(s), h2).await?, leaf))
            }
        }
    }

    async fn handshake<I>(io: I, h2: bool) -> std::io::Result<Conn>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let err = |e: hyper::Error| std::io::Error::other(e);
        if h2 {
            let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(err)?;
            tokio::spawn(c);
            Ok(Conn::H2(s))
        } else {
            let (s, c) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(err)?;
            tokio::spawn(c);
            Ok(Conn::H1(s))
        }
    }

    /// Sends a request (absolute `http://localhost/...` URIs are made for HTTP/2).
    pub async fn send(&mut self, mut req: Request<Body>) -> hyper::Result<Response<Incoming>> {
        match self {
            Conn::H1(s) => {
                req.headers_mut()
                    .entry(hyper::header::HOST)
                    .or_insert(hyper::header::HeaderValue::from_static("localhost"));
                s.ready().await?;
                s.send_request(req).await
            }
            Conn::H2(s) => {
                let pq = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                *req.uri_mut() = format!("https://localhost{pq}").parse().unwrap();
                *req.version_mut() = hyper::Version::HTTP_2;
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }

    /// GET `path`: status and the whole body.
    pub async fn get(&mut self, path: &str) -> hyper::Result<(u16, Bytes)> {
        let r = self.send(Request::get(path).body(empty()).unwrap()).await?;
        let status = r.status().as_u16();
        let body = r.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}
