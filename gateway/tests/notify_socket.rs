//! sd_notify against a real Unix datagram socket owned by the test, as systemd's
//! would be: messages arrive whole and in order, and the watchdog helper pings.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use poolgate::notify::{self, Notifier};

fn socket_path(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("poolgate-notify-{tag}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn lifecycle_messages_arrive_in_order() {
    let path = socket_path("order");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = Notifier::new(path.to_str().unwrap()).unwrap();

    n.ready().unwrap();
    n.watchdog().unwrap();
    let before = notify::monotonic_usec();
    n.reloading().unwrap();
    n.status("serving 3 pools\nsecond line").unwrap();
    n.stopping().unwrap();

    assert_eq!(recv(&sock), "READY=1\n");
    assert_eq!(recv(&sock), "WATCHDOG=1\n");
    let reload = recv(&sock);
    let mut lines = reload.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"));
    let usec: u64 = lines
        .next()
        .unwrap()
        .strip_prefix("MONOTONIC_USEC=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        usec >= before && usec <= notify::monotonic_usec(),
        "{usec} vs {before}"
    );
    assert_eq!(recv(&sock), "STATUS=serving 3 pools second line\n");
    assert_eq!(recv(&sock), "STOPPING=1\n");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn abstract_namespace_address() {
    let name = format!("poolgate-notify-test-{}", std::process::id());
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::new(&format!("@{name}")).unwrap();
        n.ready().unwrap();
        assert_eq!(recv(&sock), "READY=1\n");
    }
}

#[test]
fn missing_socket_is_an_error_not_a_panic() {
    let n = Notifier::new("/nonexistent/poolgate/notify.sock").unwrap();
    assert!(n.ready().is_err());
}

#[tokio::test]
async fn watchdog_task_pings_at_half_the_timeout() {
    let path = socket_path("watchdog");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = Notifier::new(path.to_str().unwrap()).unwrap();
    let started = std::time::Instant::now();
    let task = notify::spawn_watchdog(n, Duration::from_millis(200));
    // First tick is immediate, then every 100 ms.
    let sock = tokio::task::spawn_blocking(move || {
        for _ in 0..4 {
            assert_eq!(recv(&sock), "WATCHDOG=1\n");
        }
        sock
    })
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290),
        "4 pings came too fast: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "pings too slow: {took:?}");
    task.abort();
    drop(sock);
    let _ = std::fs::remove_file(&path);
}
