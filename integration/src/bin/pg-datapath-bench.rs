//! `pg-datapath-bench`: the data path's cost in one run — throughput and request/response
//! rate through poolgate (PPU + PPE over SCTP/UDP) against the same backends reached
//! directly and through Debian's `haproxy` in TCP mode, as ratios.
//!
//! Starts real processes on loopback: `poolgate registrar`, three `poolgate ppe` (pools
//! `dp-raw`, `dp-line`, `dp-resp` with the `raw`, `line` and `resp` plugins), one
//! `poolgate ppu` with a listener per pool, `haproxy` with a generated configuration (one
//! TCP frontend per backend), a chain of two more haproxies (`ha x2`: the same topology
//! as PPU → PPE, so `pg/ha x2` compares the cost per proxy hop) and `redis-server`. The
//! bulk and line backends run inside this process. Every workload runs over each path for
//! `--secs` seconds, in `--rounds` interleaved rounds (direct, poolgate, haproxy, ha x2,
//! then again), so that the machine's slow and fast spells fall on every path alike:
//!
//! - bulk download (`SEND`: the backend streams a pattern) on 1 and `--conns` connections,
//!   and bulk echo on 1 connection, through the `raw` plugin;
//! - 100-byte line echo on 1 and `--conns` connections (p50/p99), through `line`;
//! - RESP `SET`/`GET` of a 100-byte value on 1 connection (p50/p99), through `resp`;
//! - `redis-benchmark -t set,get,incr,lpush` (`--redis-requests`, `--redis-clients`).
//!
//! Every byte a client reads is compared with what it must be (the pattern at that
//! offset, the echoed line, the value set); a mismatch is reported and the run exits 1.
//! The table gives rates, ratios against direct, against haproxy and against the chain of
//! two haproxies, and the CPU time the proxy processes used per MB (bulk) or per 1,000
//! requests, from `/proc/<pid>/stat`.
//!
//! Build first (`cargo build --release -p poolgate -p poolgate-integration --bins`), then
//! `target/release/pg-datapath-bench` (about a minute; `--secs 10` for steadier numbers).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use poolgate_integration::harness::backend::{haproxy_command, spawn_redis};
use poolgate_integration::harness::process::{spawn, try_poolgate};
use poolgate_integration::{free_tcp_port, free_udp_port, Child};

#[derive(Parser)]
#[command(about = "Data-path benchmark: poolgate vs direct vs haproxy, as ratios")]
struct Args {
    /// Seconds per workload and path (0.1 ..= 60), split over the rounds.
    #[arg(long, default_value_t = 2.0)]
    secs: f64,
    /// Rounds per workload (1 ..= 20): each round runs every path once, in turn, so a
    /// slow spell of this shared machine falls on all paths alike, not on one.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Connections of the multi-connection workloads (1 ..= 64).
    #[arg(long, default_value_t = 4)]
    conns: usize,
    /// Size of a line-echo request and of a RESP value, in bytes (16 ..= 65536).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Requests per redis-benchmark test (0: skip redis-benchmark; at most 10,000,000).
    #[arg(long, default_value_t = 20_000)]
    redis_requests: u64,
    /// redis-benchmark connections (-c).
    #[arg(long, default_value_t = 20)]
    redis_clients: u32,
    /// Log level of the poolgate processes.
    #[arg(long, default_value = "error")]
    log: String,
    /// Run only the workloads whose name contains this text (e.g. "echo", "redis").
    #[arg(long)]
    only: Option<String>,
    /// Worker threads of the PPU and of each PPE (1 ..= 64; default: the shipped
    /// defaults, one for a PPE and one per CPU for the PPU).
    #[arg(long)]
    threads: Option<u32>,
    /// End the bulk echo with a client half-close and read to the backend's close (so
    /// the tail of the stream must survive the proxies' close handling).
    #[arg(long)]
    echo_half_close: bool,
}

impl Args {
    /// `--threads`, within its bounds.
    fn threads(&self) -> Option<u32> {
        self.threads.map(|n| n.clamp(1, 64))
    }
}

/// The four ways to the backends. `Haproxy2` is the same topology as poolgate's: two
/// proxy processes in a chain (a front haproxy standing in for the PPU, a back haproxy for
/// the PPE), so `pg/ha x2` compares the cost per hop.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path4 {
    Direct,
    Poolgate,
    Haproxy,
    Haproxy2,
}

const PATHS: [Path4; 4] = [
    Path4::Direct,
    Path4::Poolgate,
    Path4::Haproxy,
    Path4::Haproxy2,
];

impl Path4 {
    fn name(self) -> &'static str {
        match self {
            Path4::Direct => "direct",
            Path4::Poolgate => "poolgate",
            Path4::Haproxy => "haproxy",
            Path4::Haproxy2 => "haproxy x2",
        }
    }
}

/// The backends' kinds; each path has one port per kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Bulk,
    Line,
    Resp,
}

const KINDS: [Kind; 3] = [Kind::Bulk, Kind::Line, Kind::Resp];

impl Kind {
    fn idx(self) -> usize {
        self as usize
    }
    fn plugin(self) -> &'static str {
        match self {
            Kind::Bulk => "raw",
            Kind::Line => "line",
            Kind::Resp => "resp",
        }
    }
}

// ---------------------------------------------------------------------------------------
// The byte pattern of the bulk workloads.

/// Period of the pattern: a prime, so a chunk duplicated or dropped at any power-of-two
/// size does not line up with the pattern again.
const PERIOD: usize = 65_521;
/// Largest chunk read or written at once.
const CHUNK: usize = 256 * 1024;

/// The pattern repeated far enough that `at(o)` always has `CHUNK` contiguous bytes.
struct Pattern(Vec<u8>);

impl Pattern {
    fn new() -> Self {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let block: Vec<u8> = (0..PERIOD)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let mut all = Vec::with_capacity(PERIOD + CHUNK);
        while all.len() < PERIOD + CHUNK {
            all.extend_from_slice(&block);
        }
        Pattern(all)
    }

    /// The `len` (≤ CHUNK) pattern bytes at stream offset `offset`.
    fn at(&self, offset: u64, len: usize) -> &[u8] {
        let start = (offset % PERIOD as u64) as usize;
        &self.0[start..start + len]
    }
}

// ---------------------------------------------------------------------------------------
// In-process backends.

/// Bulk backend: a connection starts with one header line. `SEND <n>` streams `n` pattern
/// bytes (and keeps the connection open: the client closes); `ECHO` returns every byte.
fn serve_bulk(s: TcpStream, pattern: Arc<Pattern>) {
    let _ = s.set_nodelay(true);
    let mut r = BufReader::with_capacity(CHUNK, s);
    let mut header = String::new();
    if r.read_line(&mut header).is_err() {
        return;
    }
    let Ok(mut w) = r.get_ref().try_clone() else {
        return;
    };
    let mut it = header.split_whitespace();
    match (it.next(), it.next().and_then(|n| n.parse::<u64>().ok())) {
        (Some("SEND"), Some(n)) => {
            let mut off = 0u64;
            while off < n {
                let len = (n - off).min(CHUNK as u64) as usize;
                if w.write_all(pattern.at(off, len)).is_err() {
                    return;
                }
                off += len as u64;
            }
            // Hold the connection until the client closes it (a backend close would
            // read as a failure to a proxy).
            let mut sink = [0u8; 512];
            while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
        }
        (Some("ECHO"), None) => {
            let mut buf = vec![0u8; CHUNK];
            // Bytes the BufReader already holds come first.
            let pending = r.buffer().to_vec();
            r.consume(pending.len());
            if w.write_all(&pending).is_err() {
                return;
            }
            let mut s = r.into_inner();
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if w.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        _ => {
            let _ = w.write_all(b"ERR header\n");
        }
    }
}

/// Line backend: echoes every line.
fn serve_line(s: TcpStream) {
    let _ = s.set_nodelay(true);
    let Ok(mut w) = s.try_clone() else { return };
    let mut r = BufReader::new(s);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if w.write_all(&line).is_err() {
                    return;
                }
            }
        }
    }
}

/// Accepts on a fresh loopback port, a thread per connection; returns the port.
fn spawn_server(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind backend")?;
    let port = l.local_addr()?.port();
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let serve = serve.clone();
            std::thread::spawn(move || serve(s));
        }
    });
    Ok(port)
}

// ---------------------------------------------------------------------------------------
// Processes.

/// A pool key for the bench (64 hex digits; cookies only live inside this run).
const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// Everything that runs for the bench; processes are killed on drop.
struct Rig {
    dir: PathBuf,
    /// Ports per path and kind: `ports[path][kind]`.
    ports: [[u16; 3]; 4],
    /// The PPU and PPE pids (poolgate's CPU), the single haproxy's pid, the chained
    /// haproxies' pids.
    poolgate_pids: Vec<u32>,
    haproxy_pid: u32,
    haproxy2_pids: [u32; 2],
    children: Vec<Child>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.children.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Rig {
    fn start(a: &Args, pattern: Arc<Pattern>) -> Result<Rig> {
        let reg_port = free_udp_port();
        let dir = std::env::temp_dir().join(format!("pg-dp-{}-{reg_port}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let mut children = Vec::new();
        let bulk = spawn_server(move |s| serve_bulk(s, pattern.clone()))?;
        let line = spawn_server(serve_line)?;
        let redis = spawn_redis(0)?;
        let resp = redis.port;
        children.extend(redis.child);
        let direct = [bulk, line, resp];

        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))?;
            Ok(p)
        };
        let reg = write(
            "registrar.toml",
            &format!(
                "[registrar]\nid = 1\nlisten = [\"127.0.0.1:{reg_port}\"]\n\
                 [registrar.metrics]\nenabled = false\n"
            ),
        )?;
        children.push(try_poolgate("registrar", &reg, &a.log)?);
        let mut poolgate_pids = Vec::new();
        let threads = a
            .threads()
            .map(|n| format!("threads = {n}\n"))
            .unwrap_or_default();
        for kind in KINDS {
            let file = write(
                &format!("ppe-{}.toml", kind.plugin()),
                &format!(
                    "[ppe]\npool = \"dp-{plugin}\"\nid = {id}\nregistrars = [\"127.0.0.1:{reg_port}\"]\n\
                     listen = [\"127.0.0.1:0\"]\nplugin = \"{plugin}\"\n{threads}\
                     [[ppe.key]]\nid = 1\nkey = \"{KEY}\"\n\
                     [ppe.backend]\naddress = \"127.0.0.1:{port}\"\n\
                     [ppe.metrics]\nenabled = false\n",
                    plugin = kind.plugin(),
                    id = 0x200 + kind.idx(),
                    port = direct[kind.idx()],
                ),
            )?;
            let c = try_poolgate("ppe", &file, &a.log)?;
            poolgate_pids.push(c.0.id());
            children.push(c);
        }
        let via_pg = [free_tcp_port(), free_tcp_port(), free_tcp_port()];
        let mut ppu = format!(
            "[ppu]\nregistrars = [\"127.0.0.1:{reg_port}\"]\n{threads}\
             [ppu.metrics]\nenabled = false\n"
        );
        for kind in KINDS {
            let _ = write!(
                ppu,
                "[[ppu.listener]]\nname = \"{p}\"\nkind = \"tcp\"\nbind = \"127.0.0.1:{port}\"\n\
                 pool = \"dp-{p}\"\nplugin = \"{p}\"\n",
                p = kind.plugin(),
                port = via_pg[kind.idx()],
            );
        }
        let ppu = write("ppu.toml", &ppu)?;
        let c = try_poolgate("ppu", &ppu, &a.log)?;
        poolgate_pids.push(c.0.id());
        children.push(c);

        // haproxy: one process in front of the backends (`via_ha`), and a chain of two
        // (`via_ha2` → `mid` → backends), each with its own configuration.
        let mut haproxy = |name: &str, to: [u16; 3]| -> Result<([u16; 3], u32)> {
            let front = [free_tcp_port(), free_tcp_port(), free_tcp_port()];
            let mut cfg = String::from(
                "global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
                 timeout client 60s\n  timeout server 60s\n",
            );
            for kind in KINDS {
                let _ = write!(
                    cfg,
                    "listen {p}\n  bind 127.0.0.1:{front}\n  server b 127.0.0.1:{back}\n",
                    p = kind.plugin(),
                    front = front[kind.idx()],
                    back = to[kind.idx()],
                );
            }
            let cfg = write(&format!("{name}.cfg"), &cfg)?;
            let ha = spawn(
                &mut haproxy_command(&cfg),
                "haproxy (apt-get install haproxy)",
            )?;
            let pid = ha.0.id();
            children.push(ha);
            Ok((front, pid))
        };
        let (via_ha, haproxy_pid) = haproxy("haproxy", direct)?;
        let (mid, back_pid) = haproxy("haproxy-back", direct)?;
        let (via_ha2, front_pid) = haproxy("haproxy-front", mid)?;

        let rig = Rig {
            dir,
            ports: [direct, via_pg, via_ha, via_ha2],
            poolgate_pids,
            haproxy_pid,
            haproxy2_pids: [front_pid, back_pid],
            children,
        };
        for path in PATHS {
            for kind in KINDS {
                rig.wait_ready(path, kind, Duration::from_secs(15))?;
            }
        }
        Ok(rig)
    }

    fn port(&self, path: Path4, kind: Kind) -> u16 {
        self.ports[path as usize][kind.idx()]
    }

    /// Waits until one request/reply round trip works on this path and kind (the PPU
    /// needs the PEs registered; haproxy and redis need to listen).
    fn wait_ready(&self, path: Path4, kind: Kind, within: Duration) -> Result<()> {
        let t0 = Instant::now();
        loop {
            let ok = (|| -> Result<()> {
                let mut s = connect(self.port(path, kind))?;
                let (send, want): (&[u8], &[u8]) = match kind {
                    Kind::Bulk => (b"ECHO\nping", b"ping"),
                    Kind::Line => (b"ping\n", b"ping\n"),
                    Kind::Resp => (b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n"),
                };
                s.write_all(send)?;
                let mut got = vec![0; want.len()];
                s.read_exact(&mut got)?;
                if got != want {
                    bail!("probe answer {got:?}");
                }
                Ok(())
            })();
            match ok {
                Ok(()) => return Ok(()),
                Err(e) if t0.elapsed() > within => {
                    bail!("{} {:?} not ready: {e:#}", path.name(), kind)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// CPU seconds used so far by the proxy processes of `path`.
    fn cpu(&self, path: Path4, tick: f64) -> f64 {
        let pids: Vec<u32> = match path {
            Path4::Direct => Vec::new(),
            Path4::Poolgate => self.poolgate_pids.clone(),
            Path4::Haproxy => vec![self.haproxy_pid],
            Path4::Haproxy2 => self.haproxy2_pids.to_vec(),
        };
        pids.iter().map(|p| cpu_ticks(*p) as f64 / tick).sum()
    }
}

/// utime + stime of a process, in clock ticks (0 when it cannot be read).
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may hold spaces, inside parentheses):
    // state is field 3, utime 14, stime 15.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when that fails).
fn clock_tick() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn connect(port: u16) -> Result<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

// ---------------------------------------------------------------------------------------
// Workloads.

/// What one workload did on one path.
#[derive(Default, Clone)]
struct Outcome {
    /// Bytes the clients read and checked (bulk) or requests answered (req/resp).
    units: u64,
    /// Bytes checked, all workloads.
    verified_bytes: u64,
    secs: f64,
    /// Request latencies (req/resp workloads).
    latencies: Vec<Duration>,
    /// Client-side failures: wrong bytes, closed connections, timeouts.
    errors: Vec<String>,
    /// CPU seconds of the path's proxy processes during the workload.
    cpu: f64,
}

impl Outcome {
    fn merge(&mut self, o: Outcome) {
        self.units += o.units;
        self.verified_bytes += o.verified_bytes;
        self.latencies.extend(o.latencies);
        self.errors.extend(o.errors);
    }
}

/// Runs `conns` copies of `one` in parallel and merges them.
fn parallel(
    conns: usize,
    secs: f64,
    one: impl Fn(usize, Instant) -> Outcome + Send + Sync + 'static,
) -> Outcome {
    let one = Arc::new(one);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..conns)
        .map(|i| {
            let one = one.clone();
            std::thread::spawn(move || one(i, deadline))
        })
        .collect();
    let mut all = Outcome::default();
    for t in threads {
        match t.join() {
            Ok(o) => all.merge(o),
            Err(_) => all.errors.push("client thread panicked".into()),
        }
    }
    all.secs = t0.elapsed().as_secs_f64();
    all
}

/// Bulk download on one connection until `deadline`, every byte checked.
fn bulk_down(port: u16, deadline: Instant, pattern: &Pattern) -> Outcome {
    let mut o = Outcome::default();
    let mut run = || -> Result<()> {
        let mut s = connect(port)?;
        s.write_all(format!("SEND {}\n", u64::MAX / 2).as_bytes())?;
        let mut buf = vec![0u8; CHUNK];
        let mut off = 0u64;
        while Instant::now() < deadline {
            let n = s.read(&mut buf).context("read")?;
            if n == 0 {
                bail!("closed after {off} bytes");
            }
            if buf[..n] != *pattern.at(off, n) {
                bail!("wrong bytes in [{off}, {})", off + n as u64);
            }
            off += n as u64;
        }
        o.units = off;
        o.verified_bytes = off;
        Ok(())
    };
    if let Err(e) = run() {
        o.errors.push(format!("bulk download: {e:#}"));
    }
    o
}

/// Bulk echo on one connection: a writer streams the pattern until `deadline`, the
/// reader checks every byte that comes back, up to the last one written. With
/// `half_close` the writer then half-closes and the reader reads to the backend's close
/// (so the end of the stream must pass through the proxy too); otherwise the reader
/// stops at the count written.
fn bulk_echo(port: u16, deadline: Instant, pattern: Arc<Pattern>, half_close: bool) -> Outcome {
    let mut o = Outcome::default();
    let mut run = || -> Result<()> {
        let mut s = connect(port)?;
        s.write_all(b"ECHO\n")?;
        let mut w = s.try_clone()?;
        let written = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (written, done, pattern) = (written.clone(), done.clone(), pattern.clone());
            std::thread::spawn(move || -> Result<()> {
                let mut off = 0u64;
                let result = (|| {
                    while Instant::now() < deadline {
                        w.write_all(pattern.at(off, 64 * 1024)).context("write")?;
                        off += 64 * 1024;
                        written.store(off, Ordering::Release);
                    }
                    Ok(())
                })();
                done.store(true, Ordering::Release);
                if half_close {
                    let _ = w.shutdown(std::net::Shutdown::Write);
                }
                result
            })
        };
        // Short reads so the reader notices the writer's end without another byte.
        s.set_read_timeout(Some(Duration::from_millis(20)))?;
        let mut buf = vec![0u8; CHUNK];
        let mut off = 0u64;
        let mut progress = Instant::now();
        loop {
            let finished = done.load(Ordering::Acquire);
            if finished && !half_close && off >= written.load(Ordering::Acquire) {
                break;
            }
            let n = match s.read(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if progress.elapsed() > Duration::from_secs(10) {
                        bail!("no echo for 10 s after {off} bytes");
                    }
                    continue;
                }
                Err(e) => return Err(e).context("read"),
            };
            if n == 0 {
                if finished && half_close {
                    break;
                }
                bail!("closed after {off} bytes");
            }
            if buf[..n] != *pattern.at(off, n) {
                bail!("wrong bytes in [{off}, {})", off + n as u64);
            }
            off += n as u64;
            progress = Instant::now();
        }
        writer
            .join()
            .map_err(|_| anyhow!("writer panicked"))?
            .context("writer")?;
        if off != written.load(Ordering::Acquire) {
            bail!(
                "read {off} bytes, wrote {}",
                written.load(Ordering::Acquire)
            );
        }
        o.units = off;
        o.verified_bytes = off;
        Ok(())
    };
    if let Err(e) = run() {
        o.errors.push(format!("bulk echo: {e:#}"));
    }
    o
}

/// Line echo: one `size`-byte line (newline included) at a time until `deadline`.
fn line_echo(port: u16, deadline: Instant, conn: usize, size: usize) -> Outcome {
    let mut o = Outcome::default();
    let mut run = || -> Result<()> {
        let s = connect(port)?;
        let mut w = s.try_clone()?;
        let mut r = BufReader::new(s);
        let mut reply = Vec::with_capacity(size);
        let mut i = 0u64;
        while Instant::now() < deadline {
            let mut req = format!("c{conn} r{i} ");
            while req.len() < size - 1 {
                req.push((b'a' + (req.len() % 26) as u8) as char);
            }
            req.push('\n');
            let t0 = Instant::now();
            w.write_all(req.as_bytes())?;
            reply.clear();
            r.read_until(b'\n', &mut reply).context("read")?;
            o.latencies.push(t0.elapsed());
            if reply != req.as_bytes() {
                bail!(
                    "request {i}: reply {:?}",
                    String::from_utf8_lossy(&reply[..reply.len().min(60)])
                );
            }
            o.verified_bytes += reply.len() as u64;
            i += 1;
        }
        o.units = i;
        Ok(())
    };
    if let Err(e) = run() {
        o.errors.push(format!("line echo: {e:#}"));
    }
    o
}

fn resp_cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// RESP `SET k v` then `GET k` (expects `v`), alternating until `deadline`.
fn resp_setget(port: u16, deadline: Instant, conn: usize, size: usize) -> Outcome {
    let mut o = Outcome::default();
    let mut run = || -> Result<()> {
        let s = connect(port)?;
        let mut w = s.try_clone()?;
        let mut r = BufReader::new(s);
        let key = format!("dp:{conn}");
        let mut i = 0u64;
        let mut value = Vec::new();
        let mut line = Vec::new();
        while Instant::now() < deadline {
            let (req, want) = if i % 2 == 0 {
                value = format!("v{i}:").into_bytes();
                value.resize(size, b'x');
                (
                    resp_cmd(&[b"SET", key.as_bytes(), &value]),
                    b"+OK\r\n".to_vec(),
                )
            } else {
                let mut want = format!("${}\r\n", value.len()).into_bytes();
                want.extend_from_slice(&value);
                want.extend_from_slice(b"\r\n");
                (resp_cmd(&[b"GET", key.as_bytes()]), want)
            };
            let t0 = Instant::now();
            w.write_all(&req)?;
            line.clear();
            r.read_until(b'\n', &mut line).context("read")?;
            if line.first() == Some(&b'$') && line.len() < want.len() {
                let mut rest = vec![0; want.len() - line.len()];
                r.read_exact(&mut rest).context("read bulk")?;
                line.extend_from_slice(&rest);
            }
            o.latencies.push(t0.elapsed());
            if line != want {
                bail!(
                    "request {i}: reply {:?}",
                    String::from_utf8_lossy(&line[..line.len().min(60)])
                );
            }
            o.verified_bytes += line.len() as u64;
            i += 1;
        }
        o.units = i;
        Ok(())
    };
    if let Err(e) = run() {
        o.errors.push(format!("resp set/get: {e:#}"));
    }
    o
}

/// One redis-benchmark test's result.
#[derive(Clone, Debug)]
struct RedisRow {
    test: String,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs `redis-benchmark --csv` against `port`; one row per test.
fn redis_benchmark(port: u16, tests: &str, n: u64, clients: u32) -> Result<Vec<RedisRow>> {
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-t",
            tests,
            "-n",
            &n.to_string(),
            "-c",
            &clients.to_string(),
            "--csv",
        ])
        .stdin(Stdio::null())
        .output()
        .context("run redis-benchmark (apt-get install redis-tools)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "redis-benchmark failed ({}): {} {}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_redis_csv(&text)
}

/// Parses redis-benchmark's CSV (header `"test","rps","avg_latency_ms",...`).
fn parse_redis_csv(text: &str) -> Result<Vec<RedisRow>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| anyhow!("redis-benchmark printed nothing"))?
        .split(',')
        .map(|f| f.trim_matches('"').to_string())
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow!("redis-benchmark CSV has no {name} column: {header:?}"))
    };
    let (t, rps, p50, p99) = (
        col("test")?,
        col("rps")?,
        col("p50_latency_ms")?,
        col("p99_latency_ms")?,
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(|f| f.trim_matches('"')).collect();
            let num = |i: usize| -> Result<f64> {
                f.get(i)
                    .ok_or_else(|| anyhow!("short CSV line {l:?}"))?
                    .parse()
                    .with_context(|| format!("CSV line {l:?}"))
            };
            Ok(RedisRow {
                test: f.get(t).unwrap_or(&"?").to_string(),
                rps: num(rps)?,
                p50_ms: num(p50)?,
                p99_ms: num(p99)?,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Report.

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// One table row: a workload's rate and latencies on the four paths.
struct Row {
    name: String,
    unit: &'static str,
    rate: [f64; 4],
    /// (p50, p99) in ms, when the workload measures latency.
    lat: Option<[(f64, f64); 4]>,
    /// Proxy CPU per MB or per 1,000 requests: poolgate, haproxy, the two haproxies.
    cpu: Option<[f64; 3]>,
    cpu_unit: &'static str,
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "\n{:<34} {:>10} {:>10} {:>10} {:>10} {:>9} {:>10} {:>9} {:>25}",
        "workload (unit)",
        "direct",
        "poolgate",
        "haproxy",
        "ha x2",
        "pg/direct",
        "pg/haproxy",
        "pg/ha x2",
        "cpu pg | haproxy | ha x2"
    );
    for r in rows {
        let cpu = match r.cpu {
            Some([p, h, h2]) => format!("{p:.2} | {h:.2} | {h2:.2} {}", r.cpu_unit),
            None => "-".into(),
        };
        println!(
            "{:<34} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>9} {:>10} {:>9} {:>25}",
            format!("{} ({})", r.name, r.unit),
            r.rate[0],
            r.rate[1],
            r.rate[2],
            r.rate[3],
            ratio(r.rate[1], r.rate[0]),
            ratio(r.rate[1], r.rate[2]),
            ratio(r.rate[1], r.rate[3]),
            cpu
        );
    }
    println!(
        "\n{:<34} {:>17} {:>17} {:>17} {:>17}",
        "latency p50 / p99 (ms)", "direct", "poolgate", "haproxy", "ha x2"
    );
    for r in rows {
        if let Some(l) = r.lat {
            let cell = |i: usize| format!("{:.3} / {:.3}", l[i].0, l[i].1);
            println!(
                "{:<34} {:>17} {:>17} {:>17} {:>17}",
                r.name,
                cell(0),
                cell(1),
                cell(2),
                cell(3)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------

/// A workload: its row name, the backend kind, whether it counts bytes (bulk) or
/// requests, and how to run it on one port.
struct Workload {
    name: String,
    kind: Kind,
    bulk: bool,
    run: Box<dyn Fn(u16) -> Outcome>,
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("pg-datapath-bench: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run() -> Result<bool> {
    let a = Args::parse();
    let total_secs = a.secs.clamp(0.1, 60.0);
    let rounds = a.rounds.clamp(1, 20);
    // What each path runs per round of a workload.
    let secs = total_secs / f64::from(rounds);
    let conns = a.conns.clamp(1, 64);
    let size = a.size.clamp(16, 65536);
    let redis_requests = a.redis_requests.min(10_000_000);
    let pattern = Arc::new(Pattern::new());
    let rig = Rig::start(&a, pattern.clone())?;
    let tick = clock_tick();
    let threads = a
        .threads()
        .map_or_else(|| "shipped defaults".to_string(), |n| n.to_string());
    println!(
        "datapath bench: {total_secs}s per workload and path in {rounds} interleaved rounds, {conns} connections, {size}-byte requests; \
         poolgate = PPU + PPE (SCTP/UDP on loopback; worker threads: {threads}), haproxy {}",
        haproxy_version()
    );

    let mut workloads: Vec<Workload> = Vec::new();
    for n in [1, conns] {
        let p = pattern.clone();
        workloads.push(Workload {
            name: format!("bulk download, {n} conn"),
            kind: Kind::Bulk,
            bulk: true,
            run: Box::new(move |port| {
                let p = p.clone();
                parallel(n, secs, move |_, d| bulk_down(port, d, &p))
            }),
        });
    }
    {
        let p = pattern.clone();
        let half_close = a.echo_half_close;
        workloads.push(Workload {
            name: "bulk echo, 1 conn".into(),
            kind: Kind::Bulk,
            bulk: true,
            run: Box::new(move |port| {
                let p = p.clone();
                parallel(1, secs, move |_, d| {
                    bulk_echo(port, d, p.clone(), half_close)
                })
            }),
        });
    }
    for n in [1, conns] {
        workloads.push(Workload {
            name: format!("line echo {size} B, {n} conn"),
            kind: Kind::Line,
            bulk: false,
            run: Box::new(move |port| parallel(n, secs, move |i, d| line_echo(port, d, i, size))),
        });
    }
    workloads.push(Workload {
        name: format!("resp SET/GET {size} B, 1 conn"),
        kind: Kind::Resp,
        bulk: false,
        run: Box::new(move |port| parallel(1, secs, move |i, d| resp_setget(port, d, i, size))),
    });

    let wanted = |name: &str| a.only.as_ref().is_none_or(|o| name.contains(o.as_str()));
    workloads.retain(|w| wanted(&w.name));
    let redis_requests = if wanted("redis-benchmark") {
        redis_requests
    } else {
        0
    };
    let mut rows = Vec::new();
    let mut ok = true;
    let mut verified = String::new();
    for w in &workloads {
        let mut outs: Vec<Outcome> = vec![Outcome::default(); PATHS.len()];
        for _ in 0..rounds {
            for (i, path) in PATHS.into_iter().enumerate() {
                let port = rig.port(path, w.kind);
                let c0 = rig.cpu(path, tick);
                let o = (w.run)(port);
                let all = &mut outs[i];
                all.cpu += rig.cpu(path, tick) - c0;
                all.secs += o.secs;
                all.merge(o);
            }
        }
        for (path, o) in PATHS.into_iter().zip(outs.iter_mut()) {
            o.latencies.sort();
            for e in &o.errors {
                ok = false;
                eprintln!("ERROR {} via {}: {e}", w.name, path.name());
            }
            if o.verified_bytes == 0 {
                ok = false;
                eprintln!(
                    "ERROR {} via {}: no bytes went through",
                    w.name,
                    path.name()
                );
            }
            let _ = writeln!(
                verified,
                "verified: {} | {} | {} bytes | {}",
                w.name,
                path.name(),
                o.verified_bytes,
                if o.errors.is_empty() { "ok" } else { "FAILED" }
            );
        }
        let rate = |o: &Outcome| {
            if o.secs <= 0.0 {
                0.0
            } else if w.bulk {
                o.units as f64 / 1e6 / o.secs
            } else {
                o.units as f64 / o.secs
            }
        };
        let per = |o: &Outcome| {
            let denom = if w.bulk {
                o.units as f64 / 1e6
            } else {
                o.units as f64 / 1e3
            };
            if denom > 0.0 {
                o.cpu * 1000.0 / denom
            } else {
                0.0
            }
        };
        rows.push(Row {
            name: w.name.clone(),
            unit: if w.bulk { "MB/s" } else { "req/s" },
            rate: [0, 1, 2, 3].map(|i| rate(&outs[i])),
            lat: (!w.bulk).then(|| {
                [0, 1, 2, 3].map(|i| (pct(&outs[i].latencies, 0.5), pct(&outs[i].latencies, 0.99)))
            }),
            cpu: Some([1, 2, 3].map(|i| per(&outs[i]))),
            cpu_unit: if w.bulk { "ms/MB" } else { "ms/kreq" },
        });
    }

    if redis_requests > 0 {
        let tests = "set,get,incr,lpush";
        let mut per_path: Vec<Vec<RedisRow>> = Vec::new();
        let mut cpu = Vec::new();
        for path in PATHS {
            let c0 = rig.cpu(path, tick);
            match redis_benchmark(
                rig.port(path, Kind::Resp),
                tests,
                redis_requests,
                a.redis_clients,
            ) {
                Ok(r) => per_path.push(r),
                Err(e) => {
                    ok = false;
                    eprintln!("ERROR redis-benchmark via {}: {e:#}", path.name());
                    per_path.push(Vec::new());
                }
            }
            cpu.push(rig.cpu(path, tick) - c0);
            let _ = writeln!(
                verified,
                "redis-benchmark: {} | {} tests completed",
                path.name(),
                per_path.last().map_or(0, Vec::len)
            );
        }
        let requests = redis_requests as f64 * tests.split(',').count() as f64 / 1e3;
        for (i, test) in tests.split(',').enumerate() {
            let get = |p: usize| {
                per_path[p]
                    .get(i)
                    .filter(|r| r.test.eq_ignore_ascii_case(test))
            };
            let rate = [0, 1, 2, 3].map(|p| get(p).map_or(0.0, |r| r.rps));
            let lat = [0, 1, 2, 3].map(|p| get(p).map_or((0.0, 0.0), |r| (r.p50_ms, r.p99_ms)));
            rows.push(Row {
                name: format!(
                    "redis-benchmark {}, {} conn",
                    test.to_uppercase(),
                    a.redis_clients
                ),
                unit: "req/s",
                rate,
                lat: Some(lat),
                // Over all four tests, so only on the first row.
                cpu: (i == 0).then(|| [1, 2, 3].map(|p| cpu[p] * 1000.0 / requests)),
                cpu_unit: "ms/kreq",
            });
        }
    }

    print_table(&rows);
    println!("\n(cpu: CPU time of the proxy processes per MB or per 1,000 requests, from /proc/<pid>/stat; redis-benchmark's over its four tests)");
    print!("{verified}");
    println!(
        "{}",
        if ok {
            "all bytes checked: ok"
        } else {
            "ERRORS: see above"
        }
    );
    Ok(ok)
}

/// `haproxy -v`'s first line, shortened.
fn haproxy_version() -> String {
    Command::new("haproxy")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.split(" - ").next().unwrap_or(l).to_string())
        })
        .unwrap_or_else(|| "(version unknown)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_contiguous_at_every_offset() {
        let p = Pattern::new();
        let a = p.at(PERIOD as u64 - 3, 10).to_vec();
        let b = p.at(2 * PERIOD as u64 - 3, 10).to_vec();
        assert_eq!(a, b);
        assert_eq!(p.at(u64::MAX / 3, CHUNK).len(), CHUNK);
        assert_ne!(p.at(0, 16), p.at(1, 16));
    }

    #[test]
    fn redis_csv_rows() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                    \"SET\",\"27247.96\",\"0.495\",\"0.064\",\"0.247\",\"2.487\",\"4.895\",\"8.271\"\n";
        let r = parse_redis_csv(text).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].test, "SET");
        assert!((r[0].rps - 27247.96).abs() < 1e-6);
        assert!((r[0].p99_ms - 4.895).abs() < 1e-9);
        assert!(parse_redis_csv("").is_err());
        assert!(parse_redis_csv("\"test\",\"rps\"\n").is_err());
    }
}
