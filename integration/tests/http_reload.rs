//! PPU reload (SIGHUP) on a real process: a new listener starts answering, a removed
//! one refuses connections while its running session continues, the TLS certificate
//! is swapped (new handshakes see the new certificate, an established TLS connection
//! keeps working), and an invalid file is refused with the running setup kept.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::Request;
use poolgate_integration::harness::http_client::{
    empty, expected_content, make_cert, tls_connector, Conn,
};
use poolgate_integration::harness::http_pool::{Cluster, ListenerSpec, Setup};

fn refuses(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_and_removes_listeners_and_swaps_certificates_without_dropping_sessions() {
    let certs = std::env::temp_dir().join(format!("pg-http-reload-{}", std::process::id()));
    std::fs::create_dir_all(&certs).unwrap();
    let (crt, key, der1) = make_cert(&certs, "server-1", 1001);
    let (crt2, key2, der2) = make_cert(&certs, "server-2", 2002);
    let sec = ListenerSpec::new("sec", "https", Some((crt.clone(), key.clone())));
    let old = ListenerSpec::new("old", "http", None);
    let c = Cluster::start(Setup {
        listeners: vec![sec.clone(), old.clone()],
        ..Setup::default()
    });
    let trust_both = {
        // A client that trusts both certificates, to see which one the server shows.
        let mut roots = rustls::RootCertStore::empty();
        for d in [&der1, &der2] {
            roots
                .add(rustls::pki_types::CertificateDer::from(d.clone()))
                .unwrap();
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
    };
    let only1 = tls_connector(&der1, &[b"http/1.1"]);

    // Sessions in flight through both listeners: 8 MB bodies, half read.
    const SIZE: usize = 8 << 20;
    let (mut tls_conn, leaf) = Conn::open(sec.port, false, Some(&only1)).await.unwrap();
    assert_eq!(leaf.as_deref(), Some(&der1[..]));
    let (mut old_conn, _) = Conn::open(old.port, false, None).await.unwrap();
    let mut bodies = Vec::new();
    for (conn, seed) in [(&mut tls_conn, 31u64), (&mut old_conn, 32)] {
        let r = conn
            .send(
                Request::get(format!("/file/{SIZE}?seed={seed}"))
                    .body(empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut b = r.into_body();
        let mut got = Vec::new();
        while got.len() < SIZE / 2 {
            let f = b.frame().await.unwrap().unwrap();
            got.extend_from_slice(f.data_ref().unwrap());
        }
        bodies.push((b, got, seed));
    }

    // New file: certificate files replaced in place, `old` removed, `new` added.
    std::fs::copy(&crt2, &crt).unwrap();
    std::fs::copy(&key2, &key).unwrap();
    let new = ListenerSpec::new("new", "http", None);
    c.write_ppu(&[sec.clone(), new.clone()]);
    c.reload_ppu();
    wait_until("the new listener answers", || !refuses(new.port)).await;
    wait_until("the removed listener refuses", || refuses(old.port)).await;
    let (mut n, _) = Conn::open(new.port, false, None).await.unwrap();
    let (status, who) = n.get("/who").await.unwrap();
    assert_eq!(status, 200);
    assert!(who.starts_with(b"b"));
    let (mut fresh, leaf) = Conn::open(sec.port, false, Some(&trust_both))
        .await
        .unwrap();
    assert_eq!(
        leaf.as_deref(),
        Some(&der2[..]),
        "new handshakes get the new certificate"
    );
    assert!(
        String::from_utf8_lossy(leaf.as_deref().unwrap()).contains("server-2"),
        "subject of the new certificate"
    );
    assert_eq!(fresh.get("/who").await.unwrap().0, 200);
    // The client trusting only the old certificate now fails its handshake.
    assert!(Conn::open(sec.port, false, Some(&only1)).await.is_err());

    // Both in-flight bodies complete byte-exact; both connections keep working.
    for (mut b, mut got, seed) in bodies {
        while let Some(f) = b.frame().await {
            got.extend_from_slice(f.expect("in-flight body continues").data_ref().unwrap());
        }
        assert_eq!(got.len(), SIZE);
        assert!(
            got == expected_content(seed, 0, SIZE),
            "body {seed} differs"
        );
    }
    assert_eq!(tls_conn.get("/who").await.unwrap().0, 200);
    assert_eq!(old_conn.get("/who").await.unwrap().0, 200);
    assert_eq!(c.ppu_counter("poolgate_ppu_reloads_total"), 1.0);

    // An invalid file is refused: everything keeps running as it was.
    std::fs::write(&c.ppu_file, "[ppu]\nregistrars = 5\n").unwrap();
    c.reload_ppu();
    wait_until("the refused reload is counted", || {
        c.ppu_metrics("poolgate_ppu_reloads_total")
            .iter()
            .any(|l| l.contains("refused") && l.ends_with(" 1"))
    })
    .await;
    assert!(refuses(old.port));
    let (mut n, _) = Conn::open(new.port, false, None).await.unwrap();
    assert_eq!(n.get("/who").await.unwrap().0, 200);
    let (_, leaf) = Conn::open(sec.port, false, Some(&trust_both))
        .await
        .unwrap();
    assert_eq!(leaf.as_deref(), Some(&der2[..]));
    drop(c);
    let _ = std::fs::remove_dir_all(&certs);
}
