//! Debian's nginx serving static files as the backends (one process each, own prefix,
//! loopback ports): a download through the PPU's HTTP gateway survives a SIGKILL of
//! the serving nginx half-way and arrives byte-exact; nginx's strong `ETag`, `Accept-
//! Ranges` and `If-Range` are what the resume relies on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use poolgate_integration::harness::http_client::curl_download;
use poolgate_integration::harness::http_pool::{BackendKind, Cluster, Setup};
use sha2::Digest;

/// Requests nginx is writing a response to now (stub_status "Writing", minus our own).
fn busy(port: u16) -> u64 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"GET /nginx-status HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split("Writing: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0, |n| n.saturating_sub(1))
}

#[test]
fn nginx_static_download_survives_a_kill_byte_exact() {
    const SIZE: usize = 64 << 20;
    let root = std::env::temp_dir().join(format!("pg-http-nginx-root-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    // Content: a simple xorshift stream (any bytes will do; the checksum is the check).
    let mut data = vec![0u8; SIZE];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(root.join("big.bin"), &data).unwrap();
    let want: [u8; 32] = sha2::Sha256::digest(&data).into();
    drop(data);

    let mut c = Cluster::start(Setup {
        backend: BackendKind::Nginx(root.clone()),
        ..Setup::default()
    });
    let port = c.setup.listeners[0].port;
    let out = c.dir.join("big.out");
    // nginx sends 40 MB/s per request (limit_rate): about 1.6 s for the file.
    let mut curl = curl_download(&out)
        .args(["--write-out", "%{http_code} %{size_download}"])
        .arg(format!("http://127.0.0.1:{port}/big.bin"))
        .spawn()
        .expect("curl");
    let t0 = Instant::now();
    let victim = loop {
        if let Some(i) = (0..c.backends.len()).find(|&i| busy(c.backends[i].port) > 0) {
            break i;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no nginx serves the download"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(700));
    let size_then = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    c.kill_backend(victim);
    let status = curl.wait().unwrap();
    let mut summary = String::new();
    curl.stdout
        .as_mut()
        .unwrap()
        .read_to_string(&mut summary)
        .unwrap();
    assert!(status.success(), "curl failed: {status} {summary}");
    assert_eq!(summary.trim(), format!("200 {SIZE}"));
    assert!(
        size_then > 0 && (size_then as usize) < SIZE,
        "killed mid-body ({size_then})"
    );
    let got: [u8; 32] = sha2::Sha256::digest(std::fs::read(&out).unwrap()).into();
    assert_eq!(got, want, "byte-exact body (sha256)");
    assert!(c.ppu_counter("poolgate_ppu_failovers_resumed_total") >= 1.0);
    drop(c);
    let _ = std::fs::remove_dir_all(&root);
}
