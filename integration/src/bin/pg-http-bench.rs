//! `pg-http-bench`: HTTP request rate and latency through poolgate's HTTP gateway,
//! against two baselines measured in the same run on the same backends: the backend
//! directly, and Debian's HAProxy in HTTP mode balancing the same backends.
//!
//! Starts `pg-http-backend` ×N, a registrar, a PPE per backend (http plugin) and a PPU
//! with one `http` listener, plus `haproxy`; then drives each target for `--seconds`
//! with `wrk` (Debian's; falls back to a hyper client load of ours when absent) and
//! prints requests/s, p50 and p99 latency and the ratios. Bounded: three runs of
//! `--seconds` each plus start-up.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use poolgate_integration::harness::backend::haproxy_command;
use poolgate_integration::harness::http_client::Conn;
use poolgate_integration::harness::http_pool::{Cluster, Setup};
use poolgate_integration::harness::ports::wait_listen;
use poolgate_integration::{free_tcp_port, Child};

#[derive(Parser)]
#[command(about = "Requests/s and latency: direct backend vs poolgate http vs HAProxy")]
struct Args {
    /// Seconds of load per target.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Load generator threads (wrk -t).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Backends (each behind its own PPE; HAProxy balances the same ones).
    #[arg(long, default_value_t = 2)]
    backends: usize,
    /// Response body size in bytes.
    #[arg(long, default_value_t = 1024)]
    body: u64,
    /// Use our hyper load generator even when wrk is installed.
    #[arg(long)]
    no_wrk: bool,
}

/// One measurement.
#[derive(Clone, Copy, Debug)]
struct Result {
    rps: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

fn which(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `1.23ms`, `850.00us`, `1.02s` → duration.
fn wrk_duration(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

fn run_wrk(url: &str, a: &Args) -> anyhow::Result<Result> {
    let out = Command::new("wrk")
        .args([
            "-t",
            &a.threads.to_string(),
            "-c",
            &a.connections.to_string(),
            "-d",
            &format!("{}s", a.seconds),
            "--latency",
            url,
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let rps: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk output:\n{text}"))?;
    let pct = |p: &str| -> anyhow::Result<Duration> {
        field(p)
            .and_then(wrk_duration)
            .ok_or_else(|| anyhow::anyhow!("no {p} latency in wrk output:\n{text}"))
    };
    let errors = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum::<u64>()
        + text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Socket errors:"))
            .map(|v| {
                v.split(',')
                    .filter_map(|kv| kv.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum::<u64>()
            })
            .sum::<u64>();
    Ok(Result {
        rps,
        p50: pct("50%")?,
        p99: pct("99%")?,
        errors,
    })
}

/// Our own load: `connections` HTTP/1.1 keep-alive clients for `seconds`.
async fn run_hyper(port: u16, path: &str, a: &Args) -> Result {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..a.connections {
        let stop = stop.clone();
        let path = path.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let Ok((mut c, _)) = Conn::open(port, false, None).await else {
                return (lat, 1);
            };
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match c.get(&path).await {
                    Ok((200, _)) => lat.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Result {
        rps: all.len() as f64 / secs,
        p50: pct(0.50),
        p99: pct(0.99),
        errors,
    }
}

fn start_haproxy(dir: &Path, port: u16, backends: &[u16]) -> anyhow::Result<Child> {
    let mut cfg = format!(
        "global\n  maxconn 4096\n  nbthread 2\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
         option http-keep-alive\n  http-reuse always\n  retries 2\n  option redispatch\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
         backend be\n  balance roundrobin\n"
    );
    for (i, p) in backends.iter().enumerate() {
        cfg.push_str(&format!("  server b{i} 127.0.0.1:{p} check inter 1s\n"));
    }
    let file = dir.join("haproxy.cfg");
    std::fs::File::create(&file)?.write_all(cfg.as_bytes())?;
    let child = haproxy_command(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("haproxy (apt-get install haproxy): {e}"))?;
    wait_listen(port, Duration::from_secs(10));
    Ok(Child(child))
}

fn fmt(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let cluster = tokio::task::spawn_blocking({
        let pes = a.backends;
        move || {
            Cluster::start(Setup {
                pes,
                log: "error",
                quiet: true,
                keepalive: "1s",
                ..Setup::default()
            })
        }
    })
    .await?;
    let ports: Vec<u16> = cluster.backends.iter().map(|b| b.port).collect();
    let haproxy_port = free_tcp_port();
    let _haproxy = start_haproxy(&cluster.dir, haproxy_port, &ports)?;
    let gateway = cluster.setup.listeners[0].port;
    let path = format!("/file/{}?seed=1", a.body);
    let wrk = !a.no_wrk && which("wrk");
    println!(
        "pg-http-bench: GET {path}, {} connections, {} s per target, load by {}",
        a.connections,
        a.seconds,
        if wrk { "wrk" } else { "our hyper client" }
    );
    // A warm-up request through each target (PE selection, connection set-up).
    for p in [ports[0], gateway, haproxy_port] {
        let (mut c, _) = Conn::open(p, false, None).await?;
        let (s, _) = c.get(&path).await?;
        anyhow::ensure!(s == 200, "warm-up through port {p} answered {s}");
    }
    let mut results = Vec::new();
    for (name, port) in [
        ("direct backend", ports[0]),
        ("poolgate http", gateway),
        ("haproxy http", haproxy_port),
    ] {
        let r = if wrk {
            run_wrk(&format!("http://127.0.0.1:{port}{path}"), &a)?
        } else {
            run_hyper(port, &path, &a).await
        };
        println!(
            "{name:<16} {:>10.0} req/s   p50 {:>10}   p99 {:>10}   errors {}",
            r.rps,
            fmt(r.p50),
            fmt(r.p99),
            r.errors
        );
        results.push(r);
    }
    let (d, p, h) = (results[0], results[1], results[2]);
    println!(
        "ratios: poolgate/direct rps {:.2}, haproxy/direct rps {:.2}, poolgate/haproxy rps {:.2}; \
         p50 poolgate/haproxy {:.2}, p99 poolgate/haproxy {:.2}",
        p.rps / d.rps,
        h.rps / d.rps,
        p.rps / h.rps,
        p.p50.as_secs_f64() / h.p50.as_secs_f64().max(1e-9),
        p.p99.as_secs_f64() / h.p99.as_secs_f64().max(1e-9),
    );
    drop(cluster);
    Ok(())
}
