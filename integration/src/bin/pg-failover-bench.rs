//! `pg-failover-bench`: client-visible stalls of transparent failover under steady load.
//!
//! Starts a pool on loopback from real processes (registrar, PPEs in front of
//! `pg-line-backend`s and a PPU with the `line` plugin, or with `--plugin resp` PPEs in
//! front of Debian's `redis-server`s), runs `--sessions` client sessions
//! that ask and check requests back to back (`SQ n` → n², or RESP `ECHO n` → n), and
//! SIGKILLs a random backend every
//! `--duration / (--kills + 1)` (or its PPE, `--victim ppe|both`), restarting it, so the
//! pool keeps its size.
//! It stops by itself after `--duration` and prints the request latency distribution,
//! the stalls (requests slower than `--stall-threshold`) as p50/p99/max against the
//! configured keep-alive, and the count of client-visible errors (wrong answers or
//! closed connections; target 0).
//!
//! Build everything first (`cargo build -p poolgate -p poolgate-integration --bins`), then
//! run it from the target directory, e.g. `target/debug/pg-failover-bench --duration 10`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use poolgate_integration::harness::line_pool as cluster;
use rand::{Rng, SeedableRng};

#[derive(Parser)]
#[command(about = "Failover benchmark: client-visible stalls while backends are killed")]
struct Args {
    /// Concurrent client sessions.
    #[arg(long, default_value_t = 8)]
    sessions: usize,
    /// PE/backend pairs.
    #[arg(long, default_value_t = 4)]
    pes: usize,
    /// How long to run, in seconds (at most 120).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Backend kills during the run (at most 100).
    #[arg(long, default_value_t = 8)]
    kills: usize,
    /// PPU session keep-alive interval and timeout (e.g. 100ms, 1s).
    #[arg(long, default_value = "100ms")]
    keepalive: String,
    /// What to kill: "backend", "ppe", or "both" (alternating).
    #[arg(long, default_value = "backend")]
    victim: String,
    /// A request slower than this (ms) counts as a stall.
    #[arg(long, default_value_t = 5)]
    stall_threshold: u64,
    /// Log level of the poolgate processes.
    #[arg(long, default_value = "error")]
    log: String,
    /// Seed of the kill schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Session-state plugin: "line" (pg-line-backend) or "resp" (redis-server).
    #[arg(long, default_value = "line")]
    plugin: String,
}

/// One client session's protocol: the request for `n` and its expected answer.
#[derive(Clone, Copy)]
enum Proto {
    /// `SQ n` → `n²` (line plugin, pg-line-backend).
    Line,
    /// RESP `ECHO n` → bulk `n` (resp plugin, redis-server; read-only, so replayed).
    Resp,
}

impl Proto {
    /// Sends the request for `n` and reads its reply; `None` when the connection ended,
    /// otherwise whether the reply was right.
    fn ask(self, c: &mut cluster::Client, n: u64) -> Option<Result<(), String>> {
        use std::io::{BufRead, Read, Write};
        match self {
            Proto::Line => {
                c.send(&format!("SQ {n}"));
                let r = c.recv()?;
                Some(if r == (n * n).to_string() {
                    Ok(())
                } else {
                    Err(r)
                })
            }
            Proto::Resp => {
                let arg = n.to_string();
                let req = format!("*2\r\n$4\r\nECHO\r\n${}\r\n{arg}\r\n", arg.len());
                c.w.write_all(req.as_bytes()).ok()?;
                let mut head = String::new();
                if c.r.read_line(&mut head).ok()? == 0 {
                    return None;
                }
                let want = format!("${}\r\n", arg.len());
                if head != want {
                    return Some(Err(head));
                }
                let mut body = vec![0; arg.len() + 2];
                c.r.read_exact(&mut body).ok()?;
                Some(if body == format!("{arg}\r\n").as_bytes() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&body).into_owned())
                })
            }
        }
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn fmt(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let a = Args::parse();
    let duration = Duration::from_secs(a.duration.clamp(1, 120));
    let kills = a.kills.min(100);
    let keepalive: &'static str = Box::leak(a.keepalive.clone().into_boxed_str());
    let (proto, plugin, redis) = match a.plugin.as_str() {
        "line" => (Proto::Line, "line", false),
        "resp" => (Proto::Resp, "resp", true),
        other => {
            eprintln!("unknown --plugin {other:?} (line or resp)");
            std::process::exit(2);
        }
    };
    let mut c = cluster::Cluster::start(cluster::Setup {
        pes: a.pes.max(2),
        plugin,
        keepalive,
        log: Box::leak(a.log.clone().into_boxed_str()),
        redis,
        // ECHO replies depend on the request only: a reply cut by the kill is replayed
        // and its delivered part skipped. Line replies keep the safe default (abort).
        partial_skip: redis,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let mut clients = Vec::new();
    for s in 0..a.sessions {
        let mut client = c.client();
        let (stop, errors, latencies) = (stop.clone(), errors.clone(), latencies.clone());
        let port = c.ppu_port;
        clients.push(std::thread::spawn(move || {
            let mut mine = Vec::new();
            let mut i: u64 = (s as u64) << 32;
            while !stop.load(Ordering::Relaxed) {
                let n = i & 0xffff;
                let t0 = Instant::now();
                match proto.ask(&mut client, n) {
                    Some(Ok(())) => mine.push(t0.elapsed()),
                    other => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("session {s}: request {n}: got {other:?}");
                        if other.is_none() {
                            // The connection was closed: a client would reconnect.
                            match reconnect(port) {
                                Some(c) => client = c,
                                None => break,
                            }
                        }
                    }
                }
                i += 1;
            }
            latencies.lock().unwrap().extend_from_slice(&mine);
            mine
        }));
    }
    let start = Instant::now();
    let gap = duration / (kills as u32 + 1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let mut killed = 0;
    let mut ppe_down: Option<usize> = None;
    for k in 0..kills {
        let at = gap * (k as u32 + 1);
        if let Some(wait) = at.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let victim = rng.random_range(0..c.backends.len());
        let ppe = match a.victim.as_str() {
            "ppe" => true,
            "both" => k % 2 == 1,
            _ => false,
        };
        if ppe {
            // Restarted only at the next kill: a PPE restarted at once would answer the
            // old sessions' packets with ABORT and hide the keep-alive detection.
            if let Some(prev) = ppe_down.take() {
                c.restart_ppe(prev);
            }
            c.kill_ppe(victim);
            ppe_down = Some(victim);
        } else {
            c.kill_backend(victim);
            c.restart_backend(victim);
        }
        killed += 1;
    }
    if let Some(rest) = duration.checked_sub(start.elapsed()) {
        std::thread::sleep(rest);
    }
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        let _ = t.join();
    }
    let mut all = latencies.lock().unwrap().clone();
    all.sort();
    let threshold = Duration::from_millis(a.stall_threshold);
    let stalls: Vec<Duration> = all.iter().copied().filter(|d| *d > threshold).collect();
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "failover bench: plugin {}, {} sessions, {} PEs, {:.1}s, {} kills (SIGKILL, victim {}), keep-alive {} / {}",
        plugin,
        a.sessions,
        a.pes.max(2),
        elapsed,
        killed,
        a.victim,
        keepalive,
        keepalive
    );
    println!(
        "requests: {} ({:.0}/s), latency p50 {} p99 {} max {}",
        all.len(),
        all.len() as f64 / elapsed,
        fmt(pct(&all, 0.5)),
        fmt(pct(&all, 0.99)),
        fmt(all.last().copied().unwrap_or_default())
    );
    println!(
        "stalls (> {}ms): {}, p50 {} p99 {} max {}",
        a.stall_threshold,
        stalls.len(),
        fmt(pct(&stalls, 0.5)),
        fmt(pct(&stalls, 0.99)),
        fmt(stalls.last().copied().unwrap_or_default())
    );
    // Every failover holds up the request in flight of its session: the largest request
    // latencies, one per failover started, are the failovers' client-visible stalls
    // (the threshold line above also counts scheduling hiccups on a busy machine).
    let failovers = c.ppu_counter("poolgate_ppu_failovers_total").max(0.0) as usize;
    let per_failover = &all[all.len().saturating_sub(failovers)..];
    println!(
        "failover stalls (the {} largest latencies, one per failover): p50 {} p99 {} max {} (keep-alive {} / {})",
        per_failover.len(),
        fmt(pct(per_failover, 0.5)),
        fmt(pct(per_failover, 0.99)),
        fmt(per_failover.last().copied().unwrap_or_default()),
        keepalive,
        keepalive
    );
    let (sum, count) = (
        c.ppu_counter("poolgate_ppu_failover_stall_seconds_sum"),
        c.ppu_counter("poolgate_ppu_failover_stall_seconds_count"),
    );
    if count > 0.0 {
        println!(
            "ppu: failover stall as the PPU measures it: mean {:.1}ms over {count} failovers",
            sum / count * 1000.0
        );
    }
    for l in c.ppu_metrics("poolgate_ppu_failovers_total{") {
        println!("ppu: {l}");
    }
    for name in [
        "poolgate_ppu_failovers_resumed_total",
        "poolgate_ppu_sessions_unresumable_total",
    ] {
        println!("ppu: {name} {}", c.ppu_counter(name));
    }
    for l in c.ppu_metrics("poolgate_ppu_sessions_unresumable_total{") {
        println!("ppu: {l}");
    }
    println!("client-visible errors: {}", errors.load(Ordering::Relaxed));
    // The processes go before the exit (which skips destructors).
    drop(c);
    if errors.load(Ordering::Relaxed) > 0 {
        std::process::exit(1);
    }
}

fn reconnect(port: u16) -> Option<cluster::Client> {
    cluster::Client::connect(port).ok()
}
