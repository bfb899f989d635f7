//! The `resp` plugin with Debian's `redis-server` as backends (the same data loaded into
//! each) and both our own RESP client and `redis-cli` as clients: the serving backend is
//! SIGKILLed in the middle of a session; the session's `SELECT` is restored on the new
//! backend from the cookie and every reply is right.
//!
//! Needs `redis-server` and `redis-cli` (apt-get install redis-server redis-tools); set
//! POOLGATE_SKIP_REDIS=1 to skip where they cannot be installed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use poolgate_integration::harness::line_pool::{Cluster, Setup};

fn redis_present() -> bool {
    let ok = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok()
        && Command::new("redis-cli").arg("--version").output().is_ok();
    if ok {
        return true;
    }
    if std::env::var_os("POOLGATE_SKIP_REDIS").is_some() {
        eprintln!("redis-server/redis-cli not installed; skipped because POOLGATE_SKIP_REDIS=1");
        return false;
    }
    panic!("redis-server/redis-cli not installed (apt-get install redis-server redis-tools), or set POOLGATE_SKIP_REDIS=1 to skip");
}

fn cmd(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Reads one simple/bulk/integer reply as text (`None` for a nil bulk).
fn reply(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = String::new();
    r.read_line(&mut line).expect("reply");
    let line = line.trim_end();
    match line.as_bytes().first() {
        Some(b'+') | Some(b':') | Some(b'-') => Some(line.to_string()),
        Some(b'$') => {
            let n: i64 = line[1..].parse().unwrap();
            if n < 0 {
                return None;
            }
            let mut buf = vec![0; n as usize + 2];
            r.read_exact(&mut buf).unwrap();
            buf.truncate(n as usize);
            Some(String::from_utf8(buf).unwrap())
        }
        _ => panic!("unexpected reply line {line:?}"),
    }
}

fn connect(port: u16) -> (BufReader<TcpStream>, TcpStream) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (BufReader::new(s.try_clone().unwrap()), s)
}

const KEYS: usize = 50;

/// Loads `key:i` = `val:i` into db 0 and `key:i` = `db1:val:i` into db 1 of every backend.
fn load(cluster: &Cluster) {
    for b in &cluster.backends {
        let (mut r, mut w) = connect(b.port);
        let mut out = Vec::new();
        for i in 0..KEYS {
            out.extend(cmd(&["SET", &format!("key:{i}"), &format!("val:{i}")]));
        }
        out.extend(cmd(&["SELECT", "1"]));
        for i in 0..KEYS {
            out.extend(cmd(&["SET", &format!("key:{i}"), &format!("db1:val:{i}")]));
        }
        w.write_all(&out).unwrap();
        for _ in 0..2 * KEYS + 1 {
            assert_eq!(reply(&mut r).as_deref(), Some("+OK"));
        }
    }
}

/// Index of the backend that has served `GET` calls (from its own INFO commandstats).
fn serving_by_stats(cluster: &Cluster) -> Option<usize> {
    cluster.backends.iter().position(|b| {
        let out = Command::new("redis-cli")
            .args(["-p", &b.port.to_string(), "INFO", "commandstats"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("cmdstat_get:")
    })
}

#[test]
fn resp_backend_sigkill_mid_pipeline_restores_select_and_replays() {
    if !redis_present() {
        return;
    }
    let mut cluster = Cluster::start(Setup {
        pes: 3,
        plugin: "resp",
        redis: true,
        // GETs are read-only: a reply cut by the kill is replayed and its delivered
        // part skipped.
        partial_skip: true,
        ..Setup::default()
    });
    load(&cluster);
    let (mut r, mut w) = connect(cluster.ppu_port);
    w.write_all(&cmd(&["SELECT", "1"])).unwrap();
    assert_eq!(reply(&mut r).as_deref(), Some("+OK"));
    w.write_all(&cmd(&["CLIENT", "LIST"])).unwrap();
    let list = reply(&mut r).unwrap();
    let victim = cluster
        .backends
        .iter()
        .position(|b| list.contains(&format!("laddr=127.0.0.1:{} ", b.port)))
        .expect("serving backend in CLIENT LIST");
    const N: usize = 20_000;
    let mut w2 = w.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..N {
            w2.write_all(&cmd(&["GET", &format!("key:{}", i % KEYS)]))
                .unwrap();
        }
    });
    for i in 0..N {
        assert_eq!(
            reply(&mut r),
            Some(format!("db1:val:{}", i % KEYS)),
            "reply {i}"
        );
        if i == N / 4 {
            cluster.kill_backend(victim);
        }
    }
    writer.join().unwrap();
    // The session lives on, on another backend, still in db 1.
    w.write_all(&cmd(&["CLIENT", "LIST"])).unwrap();
    let list = reply(&mut r).unwrap();
    assert!(!list.contains(&format!(
        "laddr=127.0.0.1:{} ",
        cluster.backends[victim].port
    )));
    assert!(list.contains("db=1"), "SELECT restored: {list}");
}

#[test]
fn redis_cli_session_survives_a_backend_sigkill() {
    if !redis_present() {
        return;
    }
    let mut cluster = Cluster::start(Setup {
        pes: 2,
        plugin: "resp",
        redis: true,
        // GETs are read-only: a reply cut by the kill is replayed and its delivered
        // part skipped.
        partial_skip: true,
        ..Setup::default()
    });
    load(&cluster);
    // One connection, SELECT 1 (-n 1), then GET every 10 ms, 150 times.
    let cli = Command::new("redis-cli")
        .args([
            "-p",
            &cluster.ppu_port.to_string(),
            "-n",
            "1",
            "-r",
            "150",
            "-i",
            "0.01",
            "GET",
            "key:7",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let victim = loop {
        if let Some(v) = serving_by_stats(&cluster) {
            break v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no backend serves redis-cli"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(300));
    cluster.kill_backend(victim);
    let out = cli.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "redis-cli: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 150, "{text}");
    assert!(lines.iter().all(|l| *l == "db1:val:7"), "{text}");
    // The other backend served the rest.
    let other = 1 - victim;
    let out = Command::new("redis-cli")
        .args([
            "-p",
            &cluster.backends[other].port.to_string(),
            "INFO",
            "commandstats",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("cmdstat_get:"));
}
