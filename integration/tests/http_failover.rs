//! Request-level failover at the PPU's HTTP gateway, real processes on loopback, backends
//! SIGKILLed: a POST in flight gets `502` with an explanation unless it carries an
//! `Idempotency-Key` (then it is replayed on another backend), and a storm of GETs from
//! HTTP/1.1 and HTTP/2 clients while backends are killed and restarted sees no error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::Request;
use poolgate_integration::harness::http_client::{expected_content, full, Conn};
use poolgate_integration::harness::http_pool::{Cluster, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_in_flight_gets_502_unless_it_has_an_idempotency_key() {
    let mut c = Cluster::start(Setup::default());
    let port = c.setup.listeners[0].port;

    // Not idempotent, no key: the backend may have acted on it, so no retry.
    let (mut conn, _) = Conn::open(port, false, None).await.unwrap();
    let target = "/count?delay=1500&tag=plain";
    let req = Request::post(target).body(full("x")).unwrap();
    let pending = tokio::spawn(async move {
        let r = conn.send(req).await;
        (conn, r)
    });
    let victim = c.serving(&format!("POST {target}"), Duration::from_secs(5));
    c.kill_backend(victim);
    let (mut conn, r) = pending.await.unwrap();
    let r = r.expect("the client gets an answer, not a connection error");
    assert_eq!(r.status(), 502);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("not idempotent"), "{text}");
    assert!(text.contains("Idempotency-Key"), "{text}");
    assert_eq!(
        c.served(&format!("POST {target}")),
        vec![victim],
        "not replayed anywhere"
    );
    // The same client connection goes on working.
    let (status, _) = conn.get("/who").await.unwrap();
    assert_eq!(status, 200);

    // With an Idempotency-Key (and over HTTP/2): replayed on another backend, answered 200.
    c.restart_backend(victim);
    let (mut conn, _) = Conn::open(port, true, None).await.unwrap();
    let target = "/count?delay=1500&tag=keyed";
    let req = Request::post(target)
        .header("idempotency-key", "k-1")
        .body(full("x"))
        .unwrap();
    let pending = tokio::spawn(async move { conn.send(req).await });
    let victim = c.serving(&format!("POST {target}"), Duration::from_secs(5));
    c.kill_backend(victim);
    let r = pending.await.unwrap().expect("answered");
    assert_eq!(r.status(), 200);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"count "), "{body:?}");
    let served = c.served(&format!("POST {target}"));
    assert_eq!(
        served.len(),
        2,
        "replayed once on another backend: {served:?}"
    );
    assert!(c.ppu_counter("poolgate_ppu_failovers_resumed_total") >= 2.0);
}

/// One client: `n` GETs of deterministic files of varying size, each body checked.
async fn client(port: u16, h2: bool, id: u64, stop: Arc<AtomicBool>, ok: Arc<AtomicU64>) {
    let (mut conn, _) = Conn::open(port, h2, None).await.unwrap();
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let seed = id * 1_000_000 + k;
        let size = 1 + (seed * 7919) % (192 * 1024);
        let (status, body) = conn
            .get(&format!("/file/{size}?seed={seed}"))
            .await
            .unwrap_or_else(|e| panic!("client {id} request {k}: {e}"));
        assert_eq!(
            status,
            200,
            "client {id} request {k}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(body.len() as u64, size, "client {id} request {k}");
        assert!(
            body[..] == expected_content(seed, 0, size as usize)[..],
            "client {id} request {k}: body differs"
        );
        ok.fetch_add(1, Ordering::Relaxed);
        k += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_storm_with_backend_kills_has_no_client_errors() {
    let c = Cluster::start(Setup::default());
    let port = c.setup.listeners[0].port;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for id in 0..8u64 {
        clients.push(tokio::spawn(client(
            port,
            id % 4 == 3,
            id,
            stop.clone(),
            ok.clone(),
        )));
    }
    // Kill one backend at a time and bring it back, round the pool, for a few seconds.
    let c = tokio::task::spawn_blocking(move || {
        let mut c = c;
        let t0 = Instant::now();
        let mut kills = 0;
        let mut i = 0;
        while t0.elapsed() < Duration::from_secs(4) {
            std::thread::sleep(Duration::from_millis(250));
            c.kill_backend(i);
            kills += 1;
            std::thread::sleep(Duration::from_millis(250));
            c.restart_backend(i);
            i = (i + 1) % c.backends.len();
        }
        (c, kills)
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        t.await.expect("a client saw an error");
    }
    let (c, kills) = c;
    let n = ok.load(Ordering::Relaxed);
    let failovers = c.ppu_counter("poolgate_ppu_failovers_total");
    eprintln!("{n} GETs, {kills} backend kills, {failovers} session failovers, no client error");
    assert!(n > 200, "too few requests ran ({n})");
    assert!(failovers >= 1.0, "the kills hit no session");
    assert_eq!(
        c.ppu_counter("poolgate_ppu_http_gateway_answers_total"),
        0.0,
        "the gateway answered nothing itself"
    );
}

/// An upload announced with `Expect: 100-continue`: the backend answers `100 Continue`
/// before the body has arrived (as nginx does), while the PPE and the PPU still relay
/// it. Both plugins must pass the interim answer on and keep tracking the session: the
/// upload comes back whole, no plugin error is counted, and a request after it on the
/// same connection still fails over when its backend is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_with_expect_continue_keeps_the_session_resumable() {
    let mut c = Cluster::start(Setup::default());
    let port = c.setup.listeners[0].port;
    let (mut conn, _) = Conn::open(port, false, None).await.unwrap();
    let upload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let req = Request::post("/echo")
        .header("expect", "100-continue")
        .body(full(upload.clone()))
        .unwrap();
    let r = conn.send(req).await.expect("upload answered");
    assert_eq!(r.status(), 200);
    let echoed = r.into_body().collect().await.unwrap().to_bytes();
    assert!(echoed == upload, "echo of {} bytes differs", echoed.len());
    assert_eq!(c.ppu_counter("poolgate_ppu_plugin_errors_total"), 0.0);

    // A download trickled over ~2 s, its backend killed mid-body: resumed elsewhere.
    let target = "/slow/2000000?seed=7&rate=1000000";
    let pending = tokio::spawn(async move { conn.get(target).await });
    let victim = c.serving(&format!("GET {target}"), Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.kill_backend(victim);
    let (status, body) = pending.await.unwrap().expect("answered after failover");
    assert_eq!(status, 200);
    assert!(
        body == expected_content(7, 0, 2_000_000),
        "resumed body differs"
    );
    assert_eq!(
        c.served("GET /slow/2000000").len(),
        2,
        "resumed once elsewhere"
    );
}
