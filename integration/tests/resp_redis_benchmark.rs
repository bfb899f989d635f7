//! `redis-benchmark` as the client of a `resp` pool (Debian's `redis-server` as the
//! backends): the backend serving the most benchmark connections is SIGKILLed in the
//! middle of the `INCR` test, and `redis-benchmark` — which stops at the first error reply or closed
//! connection — must finish every test. The pool replays non-idempotent commands
//! (`non_idempotent = "replay"`, at-least-once): with the default (at-most-once) an `INCR`
//! in flight at the kill is answered with an error, which is the point of that choice.
//!
//! Needs `redis-server`, `redis-cli` and `redis-benchmark` (apt-get install redis-server
//! redis-tools); set POOLGATE_SKIP_REDIS=1 to skip where they cannot be installed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use poolgate_integration::harness::line_pool::{Cluster, Setup};

fn redis_present() -> bool {
    let ok = ["redis-server", "redis-cli", "redis-benchmark"]
        .iter()
        .all(|t| Command::new(t).arg("--version").output().is_ok());
    if ok {
        return true;
    }
    if std::env::var_os("POOLGATE_SKIP_REDIS").is_some() {
        eprintln!("redis tools not installed; skipped because POOLGATE_SKIP_REDIS=1");
        return false;
    }
    panic!("redis-server/redis-cli/redis-benchmark not installed (apt-get install redis-server redis-tools), or set POOLGATE_SKIP_REDIS=1 to skip");
}

/// `redis-cli -p <port> <args>`'s output.
fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A numeric field of `INFO` (0 when the server does not answer).
fn info_field(port: u16, section: &str, field: &str) -> u64 {
    cli(port, &["INFO", section])
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Calls of one command so far (`INFO commandstats`).
fn calls(port: u16, command: &str) -> u64 {
    cli(port, &["INFO", "commandstats"])
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|v| v.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn redis_benchmark_through_the_ppu_survives_a_backend_sigkill() {
    if !redis_present() {
        return;
    }
    // At-least-once for INCR/LPUSH, on both sides of the pool. The cluster helper writes
    // its own configuration files; the environment overrides them (this test binary holds
    // this one test only, so nothing else sees the variables).
    std::env::set_var("POOLGATE_PPE__PLUGIN_OPTIONS__NON_IDEMPOTENT", "replay");
    std::env::set_var(
        "POOLGATE_PPU__LISTENER__0__PLUGIN_OPTIONS__NON_IDEMPOTENT",
        "replay",
    );
    let mut cluster = Cluster::start(Setup {
        pes: 3,
        plugin: "resp",
        redis: true,
        ..Setup::default()
    });
    const N: &str = "20000";
    const CLIENTS: &str = "12";
    let mut bench = Command::new("redis-benchmark")
        .args([
            "-p",
            &cluster.ppu_port.to_string(),
            "-t",
            "set,get,incr,lpush",
            "-n",
            N,
            "-c",
            CLIENTS,
            "--csv",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-benchmark");

    // Wait until the benchmark is well into its INCR test (non-idempotent: the replay
    // choice matters), then kill the backend serving the most of its connections.
    let t0 = Instant::now();
    loop {
        let incrs: u64 = cluster.backends.iter().map(|b| calls(b.port, "incr")).sum();
        if incrs > 3000 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "redis-benchmark's INCRs do not reach the backends"
        );
        assert!(
            bench.try_wait().expect("redis-benchmark").is_none(),
            "redis-benchmark ended before its INCR test got going"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let clients: Vec<u64> = cluster
        .backends
        .iter()
        .map(|b| info_field(b.port, "clients", "connected_clients"))
        .collect();
    let victim = (0..clients.len()).max_by_key(|i| clients[*i]).unwrap();
    assert!(
        clients[victim] > 1,
        "no backend serves benchmark connections: {clients:?}"
    );
    cluster.kill_backend(victim);
    let killed_at = t0.elapsed();

    // redis-benchmark must finish by itself (bounded: at most 120 s).
    let t1 = Instant::now();
    let status = loop {
        if let Some(s) = bench.try_wait().expect("wait redis-benchmark") {
            break s;
        }
        if t1.elapsed() > Duration::from_secs(120) {
            let _ = bench.kill();
            panic!("redis-benchmark hangs after the backend kill");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = bench.wait_with_output().expect("redis-benchmark output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "backend {victim} killed {killed_at:?} into the run; redis-benchmark:\n{stdout}{stderr}"
    );
    assert!(
        status.success(),
        "redis-benchmark failed: {status}\n{stdout}\n{stderr}"
    );
    assert!(
        !stderr.to_ascii_lowercase().contains("error")
            && !stdout.to_ascii_lowercase().contains("error"),
        "redis-benchmark saw errors:\n{stdout}\n{stderr}"
    );
    for test in ["SET", "GET", "INCR", "LPUSH"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("\"{test}\",")))
            .unwrap_or_else(|| panic!("no {test} result:\n{stdout}"));
        let rps: f64 = row
            .split(',')
            .nth(1)
            .and_then(|v| v.trim_matches('"').parse().ok())
            .unwrap_or(0.0);
        assert!(rps > 0.0, "{row}");
    }

    // The kill was survived by failover, not by luck.
    eprintln!("{:?}", cluster.ppu_metrics("poolgate_ppu_failovers"));
    assert!(
        cluster.ppu_counter("poolgate_ppu_failovers_resumed_total") >= 1.0,
        "{:?}",
        cluster.ppu_metrics("poolgate_ppu_failovers")
    );
    assert_eq!(
        cluster.ppu_counter("poolgate_ppu_sessions_unresumable_total"),
        0.0
    );

    // The data on the surviving backends is what redis-benchmark wrote, no more: its
    // three keys only, a 3-byte SET value, LPUSH elements of one 3-byte value, and
    // together at most N INCRs and N LPUSHes plus one replay per connection in flight
    // at the kill (at-least-once); the killed backend took its share with it.
    let n: u64 = N.parse().unwrap();
    let in_flight: u64 = CLIENTS.parse().unwrap();
    let (mut counted, mut pushed, mut survivors) = (0u64, 0u64, 0);
    for (i, b) in cluster.backends.iter().enumerate() {
        if i == victim {
            continue;
        }
        let stats = cli(b.port, &["INFO", "commandstats"]);
        if !stats.contains("cmdstat_set:") {
            continue;
        }
        survivors += 1;
        let keys = cli(b.port, &["KEYS", "*"]);
        let mut keys: Vec<&str> = keys.lines().collect();
        keys.sort();
        assert_eq!(keys, ["counter:__rand_int__", "key:__rand_int__", "mylist"]);
        assert_eq!(cli(b.port, &["STRLEN", "key:__rand_int__"]), "3");
        let list = cli(b.port, &["LRANGE", "mylist", "0", "-1"]);
        let first = list.lines().next().expect("a pushed element");
        assert!(
            first.len() == 3 && list.lines().all(|l| l == first),
            "LPUSH elements differ: {first:?} ..."
        );
        pushed += list.lines().count() as u64;
        counted += cli(b.port, &["GET", "counter:__rand_int__"])
            .parse::<u64>()
            .expect("counter is a number");
    }
    assert!(
        survivors >= 1,
        "no surviving backend took the benchmark's writes"
    );
    assert!(
        counted >= 1 && counted <= n + in_flight,
        "INCR total {counted}"
    );
    assert!(
        pushed >= 1 && pushed <= n + in_flight,
        "LPUSH total {pushed}"
    );

    // A new session through the gateway works on a surviving backend.
    let port = cluster.ppu_port.to_string();
    assert_eq!(cli(cluster.ppu_port, &["SET", "after", "kill"]), "OK");
    assert_eq!(
        Command::new("redis-cli")
            .args(["-p", &port, "PING"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default(),
        "PONG"
    );
}
