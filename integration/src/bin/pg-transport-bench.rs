//! `pg-transport-bench`: our SCTP engine through the real tokio driver (`SctpUdp`) against
//! plain tokio TCP and against `dcsctp` 0.1.16 as published, in one bounded run on
//! loopback: bulk transfer on one association, 100-byte request/response, memory of idle
//! associations, CPU per MB. Prints a table with ratios against TCP measured in the same
//! run.
//!
//! Every side runs in this one process (both ends of every connection), so CPU and memory
//! figures cover both ends; the ratios compare like with like.
//!
//! The allocator is chosen by `PG_BENCH_ALLOC` (read before the first allocation):
//! `mimalloc` (default: the allocator the `poolgate` binary ships with), `glibc`, or
//! `glibc-tuned` (mallopt: no trimming, no mmap below 1 MiB).
//!
//! Knobs for experiments (defaults are the product's): `PG_BENCH_NO_GSO` (any value:
//! no GSO trains), `PG_BENCH_BURST=<packets>` (the engine's max_burst) and
//! `PG_BENCH_BUF=<bytes>` (send and receive buffers, send budget, socket buffers ×2; one
//! at a time: `PG_BENCH_RWND`, `PG_BENCH_SNDBUF` (with the send budget), `PG_BENCH_SOCKBUF`).
//! `PG_BENCH_STACKS=tcp,65507,1472,rr` runs only the stacks named (for a profiler): `tcp`
//! in both tests, the PMTUs in bulk, `rr` our request/response.
//! `PG_BENCH_VERBOSE` prints the driver's and the engine's counters after each bulk run. All three are wrapped in a byte counter that gives the engine's own heap
//! size per association.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use poolgate::transport::sctp_udp::{SctpUdp, SctpUdpConfig};
use poolgate::transport::{AssocEvent, Association, Message, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Counts live heap bytes; forwards to glibc malloc or mimalloc.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
/// 0: undecided, 1: glibc, 2: mimalloc.
static MODE: AtomicU8 = AtomicU8::new(0);

fn mode() -> u8 {
    let m = MODE.load(Ordering::Relaxed);
    if m != 0 {
        return m;
    }
    // getenv does not allocate, so this is safe inside the allocator.
    // SAFETY: the name is a valid NUL-terminated string; the result is only read.
    let v = unsafe { libc::getenv(c"PG_BENCH_ALLOC".as_ptr()) };
    let m = if v.is_null() {
        2
    } else {
        // SAFETY: getenv returned a valid C string.
        let s = unsafe { std::ffi::CStr::from_ptr(v) }.to_bytes();
        if s.starts_with(b"glibc") {
            1
        } else {
            2
        }
    };
    // Racing first allocations agree: the environment does not change.
    MODE.store(m, Ordering::Relaxed);
    m
}

// SAFETY: forwards every call unchanged to a real allocator chosen once per process.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        if mode() == 2 {
            mimalloc::MiMalloc.alloc(l)
        } else {
            System.alloc(l)
        }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        if mode() == 2 {
            mimalloc::MiMalloc.dealloc(p, l)
        } else {
            System.dealloc(p, l)
        }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        if mode() == 2 {
            mimalloc::MiMalloc.alloc_zeroed(l)
        } else {
            System.alloc_zeroed(l)
        }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        if mode() == 2 {
            mimalloc::MiMalloc.realloc(p, l, new)
        } else {
            System.realloc(p, l, new)
        }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Parser)]
#[command(
    about = "SCTP-over-UDP driver vs TCP vs dcsctp: bulk, request/response, idle memory, CPU/MB"
)]
struct Args {
    /// Bytes of each bulk transfer (ours and TCP).
    #[arg(long, default_value_t = 1 << 30)]
    bulk_bytes: u64,
    /// Bytes of the dcsctp bulk transfer (it is slow as published).
    #[arg(long, default_value_t = 64 << 20)]
    dcsctp_bytes: u64,
    /// Message size of bulk transfers.
    #[arg(long, default_value_t = 65_536)]
    msg: usize,
    /// Seconds of each request/response run.
    #[arg(long, default_value_t = 3)]
    rr_seconds: u64,
    /// Bulk rounds per stack, alternating TCP and ours (the bytes are split over them).
    #[arg(long, default_value_t = 4)]
    bulk_rounds: u32,
    /// Request/response rounds per stack, alternating TCP and ours.
    #[arg(long, default_value_t = 10)]
    rr_rounds: u32,
    /// Idle associations (and TCP connections, capped by the fd limit).
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Skip dcsctp.
    #[arg(long)]
    no_dcsctp: bool,
    /// Only these parts (comma list of bulk,rr,idle); empty: all.
    #[arg(long, default_value = "")]
    only: String,
    /// Worker threads of the tokio runtime both stacks run on (0: a current-thread
    /// runtime, everything on the main thread).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Deadline of every single measurement, seconds.
    #[arg(long, default_value_t = 120)]
    deadline: u64,
}

fn cpu_now() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// One bulk measurement.
#[derive(Clone, Copy)]
struct Bulk {
    bytes: u64,
    wall: Duration,
    cpu: Duration,
}

impl Bulk {
    fn from(bytes: u64, wall: Duration, cpu: Duration) -> Bulk {
        Bulk { bytes, wall, cpu }
    }

    /// Adds another run of the same stack (interleaved rounds).
    fn add(self, o: Bulk) -> Bulk {
        Bulk::from(self.bytes + o.bytes, self.wall + o.wall, self.cpu + o.cpu)
    }

    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.wall.as_secs_f64().max(1e-9)
    }

    fn cpu_ms_per_mb(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e3 / (self.bytes as f64 / 1e6).max(1e-9)
    }
}

fn sctp_config(pmtu: usize, listen: bool) -> SctpUdpConfig {
    let mut c = SctpUdpConfig::new("127.0.0.1:0".parse().unwrap());
    c.engine.association.pmtu = pmtu;
    c.gso = std::env::var_os("PG_BENCH_NO_GSO").is_none();
    if let Some(b) = std::env::var("PG_BENCH_BURST")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        c.engine.association.max_burst = b;
    }
    if let Some(b) = std::env::var("PG_BENCH_BUF")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        c.engine.association.receive_buffer = b;
        c.engine.association.send_buffer = b as usize;
        c.send_budget = b as usize;
        c.socket_buffer = 2 * b as usize;
    }
    // Finer knobs than PG_BENCH_BUF, to tell which buffer matters.
    let knob = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    if let Some(b) = knob("PG_BENCH_RWND") {
        c.engine.association.receive_buffer = b as u32;
    }
    if let Some(b) = knob("PG_BENCH_SNDBUF") {
        c.engine.association.send_buffer = b;
        c.send_budget = b;
    }
    if let Some(b) = knob("PG_BENCH_SOCKBUF") {
        c.socket_buffer = b;
    }
    if listen {
        c.engine.listen_ports = vec![3863];
    }
    c
}

async fn next_msg(a: &mut Association) -> anyhow::Result<Message> {
    loop {
        match a.recv().await {
            Some(AssocEvent::Message(m)) => return Ok(m),
            Some(AssocEvent::Down(r)) => anyhow::bail!("association down: {r}"),
            Some(_) => continue,
            None => anyhow::bail!("association gone"),
        }
    }
}

async fn sctp_pair(pmtu: usize) -> anyhow::Result<(SctpUdp, SctpUdp, Association, Association)> {
    let (server, mut listener) = SctpUdp::bind(sctp_config(pmtu, true))?;
    let (client, _l) = SctpUdp::bind(sctp_config(pmtu, false))?;
    let c = client
        .connect(&[server.local_addr()], 3863, Duration::from_secs(5))
        .await?;
    let s = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await?
        .ok_or_else(|| anyhow::anyhow!("listener closed"))?;
    Ok((server, client, c, s))
}

async fn bulk_sctp(pmtu: usize, bytes: u64, msg: usize) -> anyhow::Result<Bulk> {
    let (_server, _client, c, mut s) = sctp_pair(pmtu).await?;
    let chunk = Bytes::from(vec![0x5au8; msg]);
    let (cpu0, t0) = (cpu_now(), Instant::now());
    let rx = tokio::spawn(async move {
        let mut got = 0u64;
        while got < bytes {
            got += next_msg(&mut s).await?.data.len() as u64;
        }
        s.send(Message::new(1, &b"done"[..]), Duration::from_secs(5))
            .await?;
        anyhow::Ok(s)
    });
    let mut c = c;
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(msg as u64) as usize;
        c.send(Message::new(1, chunk.slice(..n)), Duration::from_secs(10))
            .await?;
        sent += n as u64;
    }
    let done = next_msg(&mut c).await?;
    anyhow::ensure!(done.data.as_ref() == b"done", "unexpected reply");
    let (wall, cpu) = (t0.elapsed(), cpu_now() - cpu0);
    let _s = rx.await??;
    print_counters(&format!("bulk pmtu {pmtu}"), &_client, &_server);
    Ok(Bulk::from(bytes, wall, cpu))
}

/// Whether `PG_BENCH_STACKS` (a comma list; unset or empty: all) names stack `s`:
/// `tcp`, `65507`, `1472` or `rr` (to run only some, e.g. for a profiler).
fn stack_selected(s: &str) -> bool {
    let stacks = std::env::var("PG_BENCH_STACKS").unwrap_or_default();
    stacks.is_empty() || stacks.split(',').any(|x| x == s)
}

/// With `PG_BENCH_VERBOSE`: the driver's and the engine's counters of both ends.
fn print_counters(what: &str, client: &SctpUdp, server: &SctpUdp) {
    if std::env::var_os("PG_BENCH_VERBOSE").is_none() {
        return;
    }
    for (name, t) in [("client", client), ("server", server)] {
        let st = t.stats();
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        println!(
            "  {what} {name}: out {} datagrams / {} calls, in {} datagrams / {} calls ({} batches read by an owner), send errors {}; engine {:?}",
            l(&st.datagrams_out),
            l(&st.send_calls),
            l(&st.datagrams_in),
            l(&st.recv_calls),
            l(&st.owner_reads),
            l(&st.send_errors),
            t.engine_stats()
        );
    }
}

async fn tcp_pair() -> anyhow::Result<(tokio::net::TcpStream, tokio::net::TcpStream)> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let c = tokio::net::TcpStream::connect(l.local_addr()?).await?;
    let (s, _) = l.accept().await?;
    c.set_nodelay(true)?;
    s.set_nodelay(true)?;
    Ok((c, s))
}

async fn bulk_tcp(bytes: u64, msg: usize) -> anyhow::Result<Bulk> {
    let (mut c, mut s) = tcp_pair().await?;
    let buf = vec![0x5au8; msg];
    let (cpu0, t0) = (cpu_now(), Instant::now());
    let rx = tokio::spawn(async move {
        let mut got = 0u64;
        let mut b = vec![0u8; msg];
        while got < bytes {
            let n = s.read(&mut b).await?;
            anyhow::ensure!(n > 0, "eof");
            got += n as u64;
        }
        s.write_all(b"done").await?;
        anyhow::Ok(s)
    });
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(msg as u64) as usize;
        c.write_all(&buf[..n]).await?;
        sent += n as u64;
    }
    let mut d = [0u8; 4];
    c.read_exact(&mut d).await?;
    let (wall, cpu) = (t0.elapsed(), cpu_now() - cpu0);
    let _s = rx.await??;
    Ok(Bulk::from(bytes, wall, cpu))
}

/// Request/response totals of one stack: round trips, wall time and CPU time.
#[derive(Default, Clone, Copy)]
struct RrTotals {
    n: u64,
    wall: Duration,
    cpu: Duration,
}

impl RrTotals {
    /// Round trips per second and CPU µs per round trip.
    fn rates(&self) -> (f64, f64) {
        (
            self.n as f64 / self.wall.as_secs_f64().max(1e-9),
            self.cpu.as_secs_f64() * 1e6 / self.n.max(1) as f64,
        )
    }

    fn add(&mut self, n: u64, wall: Duration, cpu: Duration) {
        self.n += n;
        self.wall += wall;
        self.cpu += cpu;
    }
}

/// One request/response client: runs round trips for a while.
trait RrClient {
    async fn round_trip(&mut self) -> anyhow::Result<()>;
}

struct SctpRr {
    c: Association,
    req: Bytes,
}

impl RrClient for SctpRr {
    async fn round_trip(&mut self) -> anyhow::Result<()> {
        self.c
            .send(Message::new(1, self.req.clone()), Duration::from_secs(5))
            .await?;
        let r = next_msg(&mut self.c).await?;
        anyhow::ensure!(r.data.len() == 100, "short reply");
        Ok(())
    }
}

struct TcpRr {
    c: tokio::net::TcpStream,
    buf: [u8; 100],
}

impl RrClient for TcpRr {
    async fn round_trip(&mut self) -> anyhow::Result<()> {
        self.c.write_all(&[7u8; 100]).await?;
        self.c.read_exact(&mut self.buf).await?;
        Ok(())
    }
}

/// Runs round trips for `for_` and adds them to `t`.
async fn rr_round(c: &mut impl RrClient, for_: Duration, t: &mut RrTotals) -> anyhow::Result<()> {
    let (cpu0, t0) = (cpu_now(), Instant::now());
    let mut n = 0u64;
    while t0.elapsed() < for_ {
        c.round_trip().await?;
        n += 1;
    }
    t.add(n, t0.elapsed(), cpu_now() - cpu0);
    Ok(())
}

/// 100-byte request/response over TCP and over our engine, in interleaved rounds (so
/// both see the same load from the rest of the machine): totals of TCP and of ours.
async fn rr_interleaved(
    pmtu: usize,
    secs: u64,
    rounds: u32,
) -> anyhow::Result<(RrTotals, RrTotals)> {
    let (tc, mut ts) = tcp_pair().await?;
    let tcp_echo = tokio::spawn(async move {
        let mut b = [0u8; 100];
        while ts.read_exact(&mut b).await.is_ok() {
            if ts.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    let (_server, _client, c, mut s) = sctp_pair(pmtu).await?;
    let sctp_echo = tokio::spawn(async move {
        while let Ok(m) = next_msg(&mut s).await {
            if s.send(m, Duration::from_secs(5)).await.is_err() {
                break;
            }
        }
    });
    let mut tcp = TcpRr {
        c: tc,
        buf: [0; 100],
    };
    let mut ours = SctpRr {
        c,
        req: Bytes::from(vec![7u8; 100]),
    };
    let each = Duration::from_secs(secs) / rounds.max(1);
    let (mut t_tcp, mut t_ours) = (RrTotals::default(), RrTotals::default());
    // Warm both up (first packets, allocator) outside the measurement.
    rr_round(
        &mut tcp,
        Duration::from_millis(50),
        &mut RrTotals::default(),
    )
    .await?;
    rr_round(
        &mut ours,
        Duration::from_millis(50),
        &mut RrTotals::default(),
    )
    .await?;
    let run = stack_selected;
    for _ in 0..rounds.max(1) {
        if run("tcp") {
            rr_round(&mut tcp, each, &mut t_tcp).await?;
        }
        if run("rr") {
            rr_round(&mut ours, each, &mut t_ours).await?;
        }
    }
    print_counters(
        &format!("rr ({} round trips)", t_ours.n),
        &_client,
        &_server,
    );
    ours.c.abort("bench done");
    tcp_echo.abort();
    sctp_echo.abort();
    Ok((t_tcp, t_ours))
}

/// Memory of `n` idle associations through the driver: (RSS bytes per association with
/// both ends in this process, heap bytes per association and end).
async fn idle_sctp(n: usize) -> anyhow::Result<(f64, f64)> {
    let mut sc = sctp_config(65_507, true);
    // Every INIT here comes from one UDP socket; the per-source flood limit on stateless
    // replies (100/s by default) would make this a handshake-rate test.
    sc.engine.stateless_replies_per_source = 0;
    let (server, mut listener) = SctpUdp::bind(sc)?;
    let (client, _l) = SctpUdp::bind(sctp_config(65_507, false))?;
    let target = server.local_addr();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (rss0, heap0) = (rss_bytes(), LIVE.load(Ordering::Relaxed));
    let acceptor = tokio::spawn(async move {
        let mut held = Vec::with_capacity(n);
        while held.len() < n {
            match listener.accept().await {
                Some(a) => held.push(a),
                None => break,
            }
        }
        (held, listener)
    });
    let mut held = Vec::with_capacity(n);
    let mut set = tokio::task::JoinSet::new();
    let mut started = 0;
    while held.len() < n {
        while started < n && set.len() < 256 {
            let c = client.clone();
            set.spawn(async move { c.connect(&[target], 3863, Duration::from_secs(20)).await });
            started += 1;
        }
        match set.join_next().await {
            Some(r) => match r? {
                Ok(a) => held.push(a),
                Err(e) => {
                    anyhow::bail!(
                        "connect {} of {n}: {e}; server engine {:?}; client engine {:?}",
                        held.len(),
                        server.engine_stats(),
                        client.engine_stats()
                    )
                }
            },
            None => break,
        }
    }
    let (accepted, _listener) = tokio::time::timeout(Duration::from_secs(30), acceptor).await??;
    anyhow::ensure!(accepted.len() == n, "accepted {} of {n}", accepted.len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss1, heap1) = (rss_bytes(), LIVE.load(Ordering::Relaxed));
    let per = |a: usize, b: usize| a.saturating_sub(b) as f64 / n as f64;
    let r = (per(rss1, rss0), per(heap1, heap0) / 2.0);
    drop(held);
    drop(accepted);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(r)
}

/// The engine alone (sans-IO, no driver): heap bytes per association per endpoint.
fn idle_engine(n: usize) -> f64 {
    use sctp::{Endpoint, EndpointConfig};
    let a_addr: SocketAddr = "10.0.0.1:9899".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:9899".parse().unwrap();
    let mut cfg = EndpointConfig::default();
    cfg.association.pmtu = 65_507;
    // One source opens every association: no flood limit on the answers.
    cfg.stateless_replies_per_source = 0;
    let mut a = Endpoint::new(cfg.clone(), 1).unwrap();
    let mut b = Endpoint::new(cfg, 2).unwrap();
    let now = Instant::now();
    let mut out = Vec::new();
    // Warm up the endpoints' own tables before counting.
    let heap0 = LIVE.load(Ordering::Relaxed);
    for i in 0..n {
        let port = 1024 + (i % 60_000) as u16;
        let _ = a.connect(now, &[b_addr], port, 3863 + (i / 60_000) as u16);
        for _ in 0..4 {
            while let Some((_, _)) = a.poll_transmit_into(now, &mut out) {
                b.handle_datagram(now, Some(b_addr), a_addr, &out);
            }
            while let Some((_, _)) = b.poll_transmit_into(now, &mut out) {
                a.handle_datagram(now, Some(a_addr), b_addr, &out);
            }
        }
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
    }
    let heap1 = LIVE.load(Ordering::Relaxed);
    let up = a.association_count().min(b.association_count()).max(1);
    heap1.saturating_sub(heap0) as f64 / up as f64 / 2.0
}

/// (RSS delta per connection with both ends here, heap bytes per connection and end).
async fn idle_tcp(n: usize) -> anyhow::Result<(f64, f64)> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (rss0, heap0) = (rss_bytes(), LIVE.load(Ordering::Relaxed));
    let acceptor = tokio::spawn(async move {
        let mut held = Vec::with_capacity(n);
        while held.len() < n {
            held.push(l.accept().await?.0);
        }
        anyhow::Ok(held)
    });
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(tokio::net::TcpStream::connect(addr).await?);
    }
    let accepted = tokio::time::timeout(Duration::from_secs(30), acceptor).await???;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = (
        rss_bytes().saturating_sub(rss0) as f64 / n as f64,
        LIVE.load(Ordering::Relaxed).saturating_sub(heap0) as f64 / n as f64 / 2.0,
    );
    drop(held);
    drop(accepted);
    Ok(r)
}

/// dcsctp 0.1.16 as published: two sockets in this process, packets handed across.
mod dc {
    use super::*;
    use dcsctp::api::{
        DcSctpSocket, Message as DcMessage, Options, PpId, SendOptions, SocketEvent, SocketTime,
        StreamId,
    };

    pub struct Pair {
        t0: Instant,
        pub a: Box<dyn DcSctpSocket>,
        pub b: Box<dyn DcSctpSocket>,
    }

    fn options(pmtu: usize) -> Options {
        Options {
            local_port: 3863,
            remote_port: 3863,
            mtu: pmtu,
            max_receiver_window_buffer_size: 4 << 20,
            max_send_buffer_size: 4 << 20,
            ..Options::default()
        }
    }

    impl Pair {
        pub fn new(pmtu: usize) -> Pair {
            let mut p = Pair {
                t0: Instant::now(),
                a: dcsctp::new_socket("a", &options(pmtu)),
                b: dcsctp::new_socket("b", &options(pmtu)),
            };
            p.a.connect();
            p.pump(&mut |_| {}, &mut |_| {});
            p
        }

        /// Moves packets and runs timers until quiet; hands messages to the closures.
        pub fn pump(&mut self, on_a: &mut dyn FnMut(DcMessage), on_b: &mut dyn FnMut(DcMessage)) {
            loop {
                let now = SocketTime::zero() + self.t0.elapsed();
                self.a.advance_time(now);
                self.b.advance_time(now);
                let mut moved = false;
                while let Some(e) = self.a.poll_event() {
                    if let SocketEvent::SendPacket(p) = e {
                        moved = true;
                        self.b.handle_input(&p);
                    }
                }
                while let Some(e) = self.b.poll_event() {
                    if let SocketEvent::SendPacket(p) = e {
                        moved = true;
                        self.a.handle_input(&p);
                    }
                }
                while let Some(m) = self.a.get_next_message() {
                    on_a(m);
                }
                while let Some(m) = self.b.get_next_message() {
                    on_b(m);
                }
                if !moved {
                    return;
                }
            }
        }
    }

    pub fn bulk(pmtu: usize, bytes: u64, msg: usize, deadline: Duration) -> anyhow::Result<Bulk> {
        let mut p = Pair::new(pmtu);
        let (cpu0, t0) = (cpu_now(), Instant::now());
        let (mut sent, mut got) = (0u64, 0u64);
        while got < bytes {
            anyhow::ensure!(t0.elapsed() < deadline, "dcsctp bulk exceeded its deadline");
            while sent < bytes && p.a.buffered_amount(StreamId(1)) < (2 << 20) {
                let n = (bytes - sent).min(msg as u64) as usize;
                match p.a.send(
                    DcMessage::new(StreamId(1), PpId(1), vec![0x5a; n]),
                    &SendOptions::default(),
                ) {
                    Ok(()) => sent += n as u64,
                    // Its send buffer is full: let the pump drain it.
                    Err(dcsctp::api::SendError::ResourceExhaustion) => break,
                    Err(e) => anyhow::bail!("dcsctp send: {e:?}"),
                }
            }
            p.pump(&mut |_| {}, &mut |m| got += m.payload.len() as u64);
        }
        Ok(Bulk::from(bytes, t0.elapsed(), cpu_now() - cpu0))
    }

    pub fn rr(pmtu: usize, secs: u64) -> anyhow::Result<(f64, f64)> {
        let mut p = Pair::new(pmtu);
        let (cpu0, t0) = (cpu_now(), Instant::now());
        let mut n = 0u64;
        while t0.elapsed() < Duration::from_secs(secs) {
            p.a.send(
                DcMessage::new(StreamId(1), PpId(1), vec![7; 100]),
                &SendOptions::default(),
            )
            .map_err(|e| anyhow::anyhow!("dcsctp send: {e:?}"))?;
            let mut req = None;
            p.pump(&mut |_| {}, &mut |m| req = Some(m));
            let req = req.ok_or_else(|| anyhow::anyhow!("dcsctp request not delivered"))?;
            p.b.send(req, &SendOptions::default())
                .map_err(|e| anyhow::anyhow!("dcsctp send: {e:?}"))?;
            let mut ok = false;
            p.pump(&mut |_| ok = true, &mut |_| {});
            anyhow::ensure!(ok, "dcsctp reply not delivered");
            n += 1;
        }
        let (wall, cpu) = (t0.elapsed(), cpu_now() - cpu0);
        Ok((
            n as f64 / wall.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / n as f64,
        ))
    }

    /// Heap bytes per connected socket.
    pub fn idle(n: usize) -> f64 {
        let heap0 = LIVE.load(Ordering::Relaxed);
        let pairs: Vec<Pair> = (0..n).map(|_| Pair::new(1472)).collect();
        let r = LIVE.load(Ordering::Relaxed).saturating_sub(heap0) as f64 / n as f64 / 2.0;
        drop(pairs);
        r
    }
}

fn raise_fd_limit() -> usize {
    // SAFETY: plain getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        r.rlim_cur as usize
    }
}

fn allocator_name() -> &'static str {
    match std::env::var("PG_BENCH_ALLOC").as_deref() {
        Ok("glibc-tuned") => "glibc + mallopt(no trim, mmap >= 1 MiB)",
        Ok(s) if s.starts_with("glibc") => "glibc malloc (defaults)",
        _ => "mimalloc (as the poolgate binary)",
    }
}

async fn timed<T>(
    deadline: Duration,
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(deadline, f)
        .await
        .map_err(|_| anyhow::anyhow!("exceeded the deadline of {deadline:?}"))?
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if std::env::var("PG_BENCH_ALLOC").as_deref() == Ok("glibc-tuned") {
        // SAFETY: mallopt only changes glibc's thresholds.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        }
    }
    let fds = raise_fd_limit();
    let rt = if args.workers == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.workers)
            .enable_all()
            .build()?
    };
    let d = Duration::from_secs(args.deadline);
    let want = |p: &str| args.only.is_empty() || args.only.split(',').any(|x| x == p);
    println!(
        "pg-transport-bench: loopback, {} CPUs, allocator: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        allocator_name()
    );

    if want("bulk") {
        let gib = args.bulk_bytes as f64 / (1u64 << 30) as f64;
        println!(
            "\n## Bulk: {gib:.2} GiB in {} B messages on one association / connection, in {} interleaved rounds",
            args.msg, args.bulk_rounds.max(1)
        );
        // In interleaved rounds, so that all three see the same load from the rest of
        // the machine (TCP alone swings by a factor of two here between runs).
        let rounds = args.bulk_rounds.max(1);
        let each = (args.bulk_bytes / u64::from(rounds)).max(args.msg as u64);
        let zero = || Bulk::from(0, Duration::ZERO, Duration::ZERO);
        let (mut tcp, mut big, mut eth) = (zero(), zero(), zero());
        let run = stack_selected;
        for _ in 0..rounds {
            if run("tcp") {
                tcp = tcp.add(rt.block_on(timed(d, bulk_tcp(each, args.msg)))?);
            }
            if run("65507") {
                big = big.add(rt.block_on(timed(d, bulk_sctp(65_507, each, args.msg)))?);
            }
            if run("1472") {
                eth = eth.add(rt.block_on(timed(d, bulk_sctp(1_472, each, args.msg)))?);
            }
        }
        let dc = if args.no_dcsctp {
            None
        } else {
            Some(dc::bulk(1_472, args.dcsctp_bytes, args.msg, d)?)
        };
        println!("| stack | MB/s | ratio to TCP | CPU ms/MB (both ends) | CPU ratio |");
        println!("|---|---|---|---|---|");
        let row = |name: &str, b: Bulk| {
            println!(
                "| {name} | {:.0} | {} | {:.3} | {} |",
                b.mb_per_s(),
                ratio(b.mb_per_s(), tcp.mb_per_s()),
                b.cpu_ms_per_mb(),
                ratio(b.cpu_ms_per_mb(), tcp.cpu_ms_per_mb())
            )
        };
        row("TCP (tokio, nodelay)", tcp);
        row("poolgate SctpUdp, PMTU 65,507", big);
        row("poolgate SctpUdp, PMTU 1,472", eth);
        if let Some(dc) = dc {
            row(
                &format!(
                    "dcsctp 0.1.16 in-process, mtu 1,472 ({} MiB)",
                    args.dcsctp_bytes >> 20
                ),
                dc,
            );
        }
    }

    if want("rr") {
        println!(
            "\n## Request/response: 100 bytes each way, one at a time, {} s each, in {} interleaved rounds",
            args.rr_seconds, args.rr_rounds
        );
        let (tcp, ours) = rt.block_on(timed(
            d,
            rr_interleaved(65_507, args.rr_seconds, args.rr_rounds),
        ))?;
        let (tcp, ours) = (tcp.rates(), ours.rates());
        let dc = if args.no_dcsctp {
            None
        } else {
            Some(dc::rr(1_472, args.rr_seconds)?)
        };
        println!("| stack | round trips/s | ratio to TCP | CPU µs per round trip (both ends) |");
        println!("|---|---|---|---|");
        println!(
            "| TCP (tokio, nodelay) | {:.0} | 1.00x | {:.1} |",
            tcp.0, tcp.1
        );
        println!(
            "| poolgate SctpUdp | {:.0} | {} | {:.1} |",
            ours.0,
            ratio(ours.0, tcp.0),
            ours.1
        );
        if let Some(dc) = dc {
            println!(
                "| dcsctp 0.1.16 in-process (no sockets) | {:.0} | {} | {:.1} |",
                dc.0,
                ratio(dc.0, tcp.0),
                dc.1
            );
        }
    }

    if want("idle") {
        let n = args.idle;
        let n_tcp = n.min(fds.saturating_sub(256) / 2);
        println!("\n## Idle memory: {n} associations ({n_tcp} TCP connections; fd limit {fds}), both ends in this process");
        let engine = idle_engine(n);
        let (rss, heap) = rt.block_on(timed(d, idle_sctp(n)))?;
        let tcp = rt.block_on(timed(d, idle_tcp(n_tcp)))?;
        let dc = if args.no_dcsctp {
            None
        } else {
            Some(dc::idle(n.min(2_000)))
        };
        println!("| what | bytes per association |");
        println!("|---|---|");
        println!("| engine alone (sctp::Endpoint heap, per end) | {engine:.0} |");
        println!("| SctpUdp driver + engine heap, per end | {heap:.0} |");
        println!(
            "| SctpUdp process RSS delta, both ends | {rss:.0} ({:.0} per end) |",
            rss / 2.0
        );
        println!("| TCP (tokio) heap per end | {:.0} |", tcp.1);
        println!(
            "| TCP process RSS delta, both ends (kernel socket memory not counted) | {:.0} |",
            tcp.0
        );
        if let Some(dc) = dc {
            println!("| dcsctp 0.1.16 socket heap, per end | {dc:.0} |");
        }
    }
    Ok(())
}
