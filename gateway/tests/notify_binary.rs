//! The systemd contract through the real binary: a role started with
//! `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` says READY=1, pings the watchdog, answers
//! SIGHUP with RELOADING=1 … READY=1 and SIGTERM with STOPPING=1, then exits 0;
//! meanwhile its metrics endpoint serves the process metrics.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_poolgate");

/// Next notification other than WATCHDOG/STATUS; counts watchdog pings on the way.
fn next_state(sock: &UnixDatagram, watchdogs: &mut usize) -> String {
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).expect("a notification in time");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg == "WATCHDOG=1\n" {
            *watchdogs += 1;
        } else if !msg.starts_with("STATUS=") {
            return msg;
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid; no memory is touched.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}

#[test]
fn registrar_follows_the_notify_protocol() {
    let path =
        std::env::temp_dir().join(format!("poolgate-notify-bin-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();

    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "registrar",
            "--set",
            "listen=127.0.0.1:0",
            "--set",
            "metrics.listen=127.0.0.1:0",
        ])
        .env_clear()
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let (line_tx, line_rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut watchdogs = 0;
    assert_eq!(next_state(&sock, &mut watchdogs), "READY=1\n");

    // The metrics endpoint's address is in the log; the process metrics are served.
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        let line = line_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("metrics log line");
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if event["message"] == "metrics endpoint listening" {
            break event["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    let body = poolgate::check::fetch_metrics(addr, Duration::from_secs(5)).unwrap();
    assert!(
        body.contains(&format!(
            "poolgate_build_info{{version=\"{}\",role=\"registrar\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{body}"
    );

    signal(pid, libc::SIGHUP);
    let reload = next_state(&sock, &mut watchdogs);
    assert!(
        reload.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reload}"
    );
    assert_eq!(next_state(&sock, &mut watchdogs), "READY=1\n");

    // WatchdogSec=200ms means a ping at least every 100 ms.
    let wait_until = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 256];
    while watchdogs < 2 && Instant::now() < wait_until {
        let n = sock.recv(&mut buf).unwrap();
        if &buf[..n] == b"WATCHDOG=1\n" {
            watchdogs += 1;
        }
    }
    assert!(watchdogs >= 2, "watchdog pings: {watchdogs}");

    signal(pid, libc::SIGTERM);
    assert_eq!(next_state(&sock, &mut watchdogs), "STOPPING=1\n");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_file(&path);
}

/// A free UDP port on loopback (bound and released).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn ppe_says_ready_only_once_it_is_registered() {
    let path =
        std::env::temp_dir().join(format!("poolgate-notify-ppe-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).unwrap();
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let reg_port = free_udp_port();
    let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let mut ppe = Command::new(BIN)
        .args(["--log-level", "warn", "ppe"])
        .args(["--set", &format!("registrars=127.0.0.1:{reg_port}")])
        .args(["--set", &format!("key=[{{id=1,key=\"{key}\"}}]")])
        .args(["--set", &format!("backend.address={backend_addr}")])
        .args(["--set", "backend.check_interval=200ms"])
        .args(["--set", "backend.check_timeout=200ms"])
        .args(["--set", "metrics.enabled=false"])
        .env_clear()
        .env("NOTIFY_SOCKET", &path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    // No registrar yet: the PE is not in a pool, so it is not ready.
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(!msg.contains("READY=1"), "READY before registration: {msg}");
        }
    }

    // The registrar comes up: the first registration makes the PE ready.
    let mut registrar = Command::new(BIN)
        .args(["--log-level", "warn", "registrar"])
        .args(["--set", &format!("listen=127.0.0.1:{reg_port}")])
        .args(["--set", "metrics.enabled=false"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut watchdogs = 0;
    assert_eq!(next_state(&sock, &mut watchdogs), "READY=1\n");

    signal(ppe.id(), libc::SIGTERM);
    assert_eq!(next_state(&sock, &mut watchdogs), "STOPPING=1\n");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = ppe.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "PPE did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let _ = registrar.kill();
    let _ = registrar.wait();
    drop(backend);
    let _ = std::fs::remove_file(&path);
}
