//! Backends the pools run in front of: our `pg-line-backend` and `pg-http-backend`
//! (which print a line per request), Debian's `redis-server` and `nginx`, and HAProxy as
//! the baseline proxy of the benchmarks.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::config::write_file;
use super::ports::{free_tcp_port, wait_listen};
use super::process::{bin, sbin, spawn, Child};

/// One backend: its process (`None` once killed), port and the requests it has read.
pub struct Backend {
    /// The process; taking it SIGKILLs the backend.
    pub child: Option<Child>,
    /// Its TCP port on loopback.
    pub port: u16,
    /// The request lines it printed (`req <line>`), in order.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Backend {
    /// A backend that prints no requests.
    pub fn silent(child: Child, port: u16) -> Backend {
        Backend {
            child: Some(child),
            port,
            requests: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

/// Spawns one of our backends, reads its `listening <port>` banner and collects its
/// `req <line>` lines in a thread.
fn start_ours(mut cmd: Command) -> Backend {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start backend");
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("backend banner");
    let port: u16 = first
        .trim()
        .strip_prefix("listening ")
        .expect("backend banner")
        .parse()
        .expect("backend port");
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

/// Starts `pg-line-backend` on `port` (0: any); returns it once it listens.
pub fn start_line_backend(name: &str, port: u16) -> Backend {
    let mut cmd = Command::new(bin("pg-line-backend"));
    cmd.args(["--name", name, "--port", &port.to_string()]);
    start_ours(cmd)
}

/// Starts `pg-http-backend` on `port` (0: any), `quiet`: no line per request; returns it
/// once it listens.
pub fn start_http_backend(name: &str, port: u16, quiet: bool) -> Backend {
    let mut cmd = Command::new(bin("pg-http-backend"));
    cmd.args(["--name", name, "--port", &port.to_string()])
        .args(quiet.then_some("--quiet"));
    start_ours(cmd)
}

/// Spawns `redis-server` on `port` (0: a free one) without persistence; does not wait.
pub fn spawn_redis(port: u16) -> anyhow::Result<Backend> {
    let port = if port == 0 { free_tcp_port() } else { port };
    let child = spawn(
        Command::new("redis-server").args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]),
        "redis-server (apt-get install redis-server)",
    )?;
    Ok(Backend::silent(child, port))
}

/// [`spawn_redis`], returning once it listens (panics after 10 s).
pub fn start_redis(port: u16) -> Backend {
    let b = spawn_redis(port).unwrap_or_else(|e| panic!("{e:#}"));
    wait_listen(b.port, Duration::from_secs(10));
    b
}

/// Starts nginx as one process (no master, no daemon) serving `root` on `port` (0: a
/// free one) at `rate` per connection, with its own prefix under `dir` (no root rights
/// needed); `/nginx-status` is stub_status. With `proxy` it expects a PROXY protocol
/// header on every connection and `GET /pp` answers `<client address> <client port>
/// <nginx port>` from it.
pub fn start_nginx(dir: &Path, root: &Path, port: u16, rate: &str, proxy: bool) -> Backend {
    let port = if port == 0 { free_tcp_port() } else { port };
    let prefix = dir.join(format!("nginx-{port}"));
    std::fs::create_dir_all(prefix.join("tmp")).expect("create the nginx prefix");
    let conf = prefix.join("nginx.conf");
    let p = prefix.display();
    write_file(
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
    let child = spawn(
        Command::new(sbin("nginx"))
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(prefix.join("error.log")),
        "nginx (apt-get install nginx)",
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    wait_listen(port, Duration::from_secs(10));
    Backend::silent(child, port)
}

/// `haproxy -db -f <cfg>` (foreground), ready to spawn.
pub fn haproxy_command(cfg: &Path) -> Command {
    let mut cmd = Command::new(sbin("haproxy"));
    cmd.arg("-db").arg("-f").arg(cfg);
    cmd
}
