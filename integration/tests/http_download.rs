//! A 100 MB download through the PPU's HTTP gateway while the serving backend is
//! SIGKILLed half-way: the PPU resumes the body on another PE with `Range` + `If-Range`
//! and the client receives one complete, byte-exact body with no error. Clients:
//! hyper (HTTP/1.1 over `http`) and curl (HTTP/2 over `https`, TLS terminated by the PPU).

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use poolgate_integration::harness::http_client::{
    curl_download, empty, expected_sha256, make_cert, Conn,
};
use poolgate_integration::harness::http_pool::{Cluster, ListenerSpec, Setup};
use sha2::Digest;

const SIZE: u64 = 100 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_download_survives_a_backend_kill_byte_exact() {
    let mut c = Cluster::start(Setup::default());
    let port = c.setup.listeners[0].port;
    let path = format!("/file/{SIZE}?seed=7");
    let expected = tokio::task::spawn_blocking(move || expected_sha256(7, SIZE));
    let (mut conn, _) = Conn::open(port, false, None).await.unwrap();
    let t0 = Instant::now();
    let resp = conn
        .send(hyper::Request::get(&path).body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], SIZE.to_string());
    let mut body = resp.into_body();
    let mut h = sha2::Sha256::new();
    let mut got = 0u64;
    let mut killed = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("no client-visible error during the download");
        if let Some(d) = frame.data_ref() {
            h.update(d);
            got += d.len() as u64;
        }
        if killed.is_none() && got >= SIZE / 2 {
            let victim = c.serving(&format!("GET {path}"), Duration::from_secs(1));
            c.kill_backend(victim);
            killed = Some((victim, got));
        }
    }
    let took = t0.elapsed();
    let (victim, at) = killed.expect("the download reached half-way");
    assert_eq!(got, SIZE, "complete body");
    let digest: [u8; 32] = h.finalize().into();
    assert_eq!(digest, expected.await.unwrap(), "byte-exact body (sha256)");
    // Another backend finished it (the resume request went there).
    let others: Vec<usize> = c
        .served(&format!("GET {path}"))
        .into_iter()
        .filter(|&i| i != victim)
        .collect();
    assert!(!others.is_empty(), "no other backend served the resume");
    assert!(c.ppu_counter("poolgate_ppu_failovers_resumed_total") >= 1.0);
    eprintln!("100 MB via hyper in {took:?}, backend {victim} killed at {at} bytes, resumed on {others:?}");
    // The connection keeps working after the failover.
    let (status, who) = conn.get("/who").await.unwrap();
    assert_eq!(status, 200);
    assert!(who.starts_with(b"b"));
}

#[test]
fn curl_h2_over_tls_download_survives_a_backend_kill_byte_exact() {
    let certs = std::env::temp_dir().join(format!("pg-http-dl-certs-{}", std::process::id()));
    std::fs::create_dir_all(&certs).unwrap();
    let (crt, key, _) = make_cert(&certs, "dl-server", 41);
    let mut c = Cluster::start(Setup {
        listeners: vec![ListenerSpec::new(
            "web-tls",
            "https",
            Some((crt.clone(), key)),
        )],
        ..Setup::default()
    });
    let port = c.setup.listeners[0].port;
    let path = format!("/file/{SIZE}?seed=9");
    let out = c.dir.join("download.bin");
    let expected = std::thread::spawn(move || expected_sha256(9, SIZE));
    let mut curl = curl_download(&out)
        .args(["--http2", "--limit-rate", "50M"])
        .arg("--cacert")
        .arg(&crt)
        .args([
            "--write-out",
            "%{http_version} %{http_code} %{size_download}",
        ])
        .arg(format!("https://localhost:{port}{path}"))
        .spawn()
        .expect("curl");
    // Half-way at 50 MB/s: kill the backend serving it after about a second.
    let victim = c.serving(&format!("GET {path}"), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1000));
    let size_then = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    c.kill_backend(victim);
    let status = curl.wait().unwrap();
    let mut summary = String::new();
    std::io::Read::read_to_string(curl.stdout.as_mut().unwrap(), &mut summary).unwrap();
    assert!(status.success(), "curl failed: {status} {summary}");
    assert_eq!(
        summary.trim(),
        format!("2 200 {SIZE}"),
        "HTTP/2, 200, whole body"
    );
    assert!(
        size_then > 0 && size_then < SIZE,
        "killed mid-body ({size_then} bytes)"
    );
    let data = std::fs::read(&out).unwrap();
    let digest: [u8; 32] = sha2::Sha256::digest(&data).into();
    assert_eq!(digest, expected.join().unwrap(), "byte-exact body (sha256)");
    assert!(c
        .served(&format!("GET {path}"))
        .iter()
        .any(|&i| i != victim));
    drop(c);
    let _ = std::fs::remove_dir_all(&certs);
}

#[test]
fn tls_listener_relays_bytes_and_the_http_plugin_resumes_there_too() {
    const SMALL: u64 = 4 << 20;
    let certs = std::env::temp_dir().join(format!("pg-http-tls-certs-{}", std::process::id()));
    std::fs::create_dir_all(&certs).unwrap();
    let (crt, key, _) = make_cert(&certs, "tls-relay", 43);
    let mut c = Cluster::start(Setup {
        listeners: vec![ListenerSpec::new("relay", "tls", Some((crt.clone(), key)))],
        ..Setup::default()
    });
    let port = c.setup.listeners[0].port;
    // Trickled by the backend itself (1.3 MB/s, about 3 s), so the kill below is
    // mid-body whatever the buffers between backend and client hold. A rate limit in
    // the client (24 MiB at 8 MB/s, as before) let the backend write the whole body
    // into them first (about 23 MB of TCP, SCTP and UDP buffers), and then nothing was
    // left to resume.
    let path = format!("/slow/{SMALL}?seed=11&rate=1300000");
    let out = c.dir.join("relay.bin");
    let expected = std::thread::spawn(move || expected_sha256(11, SMALL));
    // No ALPN on a tls listener: curl speaks HTTP/1.1 inside the relayed TLS stream.
    let mut curl = curl_download(&out)
        .args(["--http1.1"])
        .arg("--cacert")
        .arg(&crt)
        .args(["--write-out", "%{http_code} %{size_download}"])
        .arg(format!("https://localhost:{port}{path}"))
        .spawn()
        .expect("curl");
    let victim = c.serving(&format!("GET {path}"), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    c.kill_backend(victim);
    let status = curl.wait().unwrap();
    let mut summary = String::new();
    std::io::Read::read_to_string(curl.stdout.as_mut().unwrap(), &mut summary).unwrap();
    assert!(status.success(), "curl failed: {status} {summary}");
    assert_eq!(summary.trim(), format!("200 {SMALL}"));
    let digest: [u8; 32] = sha2::Sha256::digest(std::fs::read(&out).unwrap()).into();
    assert_eq!(digest, expected.join().unwrap(), "byte-exact body (sha256)");
    assert!(c
        .served(&format!("GET {path}"))
        .iter()
        .any(|&i| i != victim));
    drop(c);
    let _ = std::fs::remove_dir_all(&certs);
}
