//! One session on the PE side: an association from a PU, a TCP connection to the backend.
//!
//! One task, one `select!` loop: read the backend (when the PU has taken what we sent),
//! read the association (while the backend buffer is below [`BACKEND_BUFFER`]), write the
//! backend from that bounded buffer, send a pending cookie when `cookie_interval` allows.
//! A slow backend stops us reading the association; a slow PU (its send budget used up)
//! stops us reading the backend — nothing is dropped, memory stays bounded.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use pool_core::cookie::KeyId;
use pool_core::wire::AsapMessage;
use poolgate_plugins::{render, Delivery, PluginError, SessionState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::Shared;
use crate::session::{self, Control, SessionMessage, CHUNK, COOKIE_LIFETIME, OPEN_TIMEOUT};
use crate::transport::{AssocEvent, AssocEvents, AssocSender, Association};

/// Client bytes buffered for the backend before we stop reading the association.
pub const BACKEND_BUFFER: usize = 256 * 1024;
/// Longest wait for the PU to take a message (its window full) before the session ends.
const SEND_DEADLINE: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Keeps the active-session count and load in step with this session's life.
struct ActiveGuard(Arc<Shared>);

impl ActiveGuard {
    fn new(shared: Arc<Shared>) -> Self {
        shared.active.fetch_add(1, Ordering::Relaxed);
        shared.metrics.active.inc();
        shared.load_changed.notify_waiters();
        ActiveGuard(shared)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.active.dec();
        self.0.load_changed.notify_waiters();
    }
}

fn refuse(shared: &Shared, assoc: &AssocSender, reason: &'static str) {
    if let Ok(c) = shared.metrics.refused.with(&[reason]) {
        c.inc();
    }
    tracing::debug!(reason, "session refused");
    assoc.abort(reason);
}

async fn first_message(events: &mut AssocEvents) -> Option<SessionMessage> {
    let wait = async {
        loop {
            match events.recv().await? {
                AssocEvent::Message(m) => return Some(SessionMessage::decode(m)),
                AssocEvent::Down(_) => return None,
                _ => {}
            }
        }
    };
    tokio::time::timeout(OPEN_TIMEOUT, wait)
        .await
        .ok()
        .flatten()
}

/// Seals the plugin's checkpoint and sends it as an ASAP COOKIE.
async fn send_cookie(
    shared: &Shared,
    plugin: &mut dyn SessionState,
    tx: &AssocSender,
) -> Result<(), ()> {
    let parts = plugin.checkpoint();
    let expiry = now_ms() + COOKIE_LIFETIME.as_millis() as u64;
    let sealed = shared
        .keys
        .seal(&shared.pool, &parts, expiry, &mut rand::rng())
        .map_err(|e| tracing::warn!(error = %e, "cannot seal a cookie"))?;
    let msg = session::asap(&AsapMessage::Cookie(sealed)).ok_or(())?;
    tx.send(msg, SEND_DEADLINE).await.map_err(|_| ())?;
    shared.metrics.cookies.inc();
    Ok(())
}

/// Serves one session from its first message to its end.
pub async fn serve(assoc: Association, shared: Arc<Shared>) {
    let (tx, mut events) = assoc.split();
    let mut plugin = shared.plugin.new_session();
    let mut prelude = Vec::new();
    let mut first = first_message(&mut events).await;
    // A backend header (PROXY protocol) precedes the session's first message.
    let mut header = Bytes::new();
    if let Some(SessionMessage::BackendHeader(h)) = first {
        header = h;
        first = first_message(&mut events).await;
    }
    let kind = match first {
        Some(SessionMessage::Control(Control::Open)) => "new",
        Some(SessionMessage::Asap(AsapMessage::CookieEcho(c))) => {
            match shared.keys.open(&shared.pool, &c, now_ms()) {
                Ok(parts) => match plugin.restore(&parts) {
                    Ok(r) => {
                        prelude = r.prelude;
                        "resumed"
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cookie does not restore this plugin");
                        return refuse(&shared, &tx, "restore_failed");
                    }
                },
                Err(e) => {
                    if let Ok(c) = shared.metrics.cookies_rejected.with(&[e.kind()]) {
                        c.inc();
                    }
                    tracing::warn!(error = %e, "COOKIE_ECHO rejected");
                    return refuse(&shared, &tx, "bad_cookie");
                }
            }
        }
        _ => return refuse(&shared, &tx, "no_open"),
    };
    if shared.active.load(Ordering::Relaxed) >= shared.cfg.max_sessions as usize {
        return refuse(&shared, &tx, "max_sessions");
    }
    let b = &shared.cfg.backend;
    let backend = match tokio::time::timeout(
        b.connect_timeout,
        TcpStream::connect((b.address.host.as_str(), b.address.port)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        _ => {
            shared.backend_suspect.notify_one();
            return refuse(&shared, &tx, "backend_unreachable");
        }
    };
    let _ = backend.set_nodelay(true);
    let _active = ActiveGuard::new(shared.clone());
    if let Ok(c) = shared.metrics.sessions.with(&[kind]) {
        c.inc();
    }
    tracing::debug!(kind, pu = %tx.remote(), "session open");
    if !header.is_empty() {
        prelude.splice(0..0, header.iter().copied());
    }
    let end = relay(&shared, plugin.as_mut(), &tx, &mut events, backend, prelude).await;
    tracing::debug!(end = end.label(), "session end");
    match end {
        End::Closed | End::HandOver => tx.close(),
        End::PeerGone => {}
        End::Failed(r) => tx.abort(r),
    }
}

/// How a session ended.
enum End {
    /// The backend closed; everything relayed; close the association gracefully.
    Closed,
    /// Drain grace over: final cookie sent; close gracefully.
    HandOver,
    /// The PU closed or the association died.
    PeerGone,
    /// Something broke; abort.
    Failed(&'static str),
}

impl End {
    fn label(&self) -> &'static str {
        match self {
            End::Closed => "backend_closed",
            End::HandOver => "hand_over",
            End::PeerGone => "peer_gone",
            End::Failed(r) => r,
        }
    }
}

async fn relay(
    shared: &Shared,
    plugin: &mut dyn SessionState,
    tx: &AssocSender,
    events: &mut AssocEvents,
    backend: TcpStream,
    prelude: Vec<u8>,
) -> End {
    let (mut br, mut bw) = backend.into_split();
    let mut to_backend = BytesMut::from(&prelude[..]);
    let mut from_backend = BytesMut::with_capacity(CHUNK);
    let mut deliver: Vec<Delivery> = Vec::new();
    let mut client_eof = false;
    let mut backend_shut = false;
    let mut signals = Box::pin(signal(
        shared.keys.watch_sealing(),
        shared.hand_over.subscribe(),
    ));
    let interval = shared.cfg.cookie_interval;
    let bytes_up = shared.metrics.bytes.with(&["to_backend"]).ok();
    let bytes_down = shared.metrics.bytes.with(&["to_pu"]).ok();
    // The initial cookie: the PU must hold one before anything can go wrong.
    if send_cookie(shared, plugin, tx).await.is_err() {
        return End::PeerGone;
    }
    // One timer for the whole session, moved after each cookie: a fresh `sleep` per
    // turn of the loop would enter and leave the timer wheel with every message.
    let cookie_timer = tokio::time::sleep(interval);
    tokio::pin!(cookie_timer);
    let mut cookie_due = false;
    loop {
        if client_eof && to_backend.is_empty() && !backend_shut {
            let _ = bw.shutdown().await;
            backend_shut = true;
        }
        tokio::select! {
            r = br.read_buf(&mut from_backend) => {
                match r {
                    Ok(0) | Err(_) => return End::Closed,
                    Ok(_) => {}
                }
                let chunk = from_backend.split().freeze();
                deliver.clear();
                let p = plugin.on_backend_bytes(&chunk, &mut deliver);
                if let Some(e) = &p.error {
                    lost_track(shared, "backend", e);
                    if matches!(e, PluginError::PreludeRejected(_)) {
                        return End::Failed("prelude_rejected");
                    }
                }
                let out = if matches!(deliver.as_slice(), [Delivery::Forward(r)] if r.start == 0 && r.end == chunk.len()) {
                    chunk
                } else {
                    Bytes::from(render(&chunk, &deliver))
                };
                if !out.is_empty() {
                    if let Some(c) = &bytes_down { c.inc_by(out.len() as u64); }
                    if tx.send(session::data(out), SEND_DEADLINE).await.is_err() {
                        return End::PeerGone;
                    }
                }
                if p.checkpoint {
                    cookie_due = true;
                }
                session::renew_read_buffer(&mut from_backend);
            }
            ev = events.recv(), if to_backend.len() < BACKEND_BUFFER => {
                let Some(ev) = ev else { return End::PeerGone };
                match ev {
                    AssocEvent::Message(m) => match SessionMessage::decode(m) {
                        SessionMessage::Data(d) => {
                            let p = plugin.on_client_bytes(&d);
                            if let Some(e) = &p.error {
                                lost_track(shared, "client", e);
                            }
                            if let Some(c) = &bytes_up { c.inc_by(d.len() as u64); }
                            to_backend.extend_from_slice(&d);
                        }
                        SessionMessage::Control(Control::Eof) => client_eof = true,
                        SessionMessage::Asap(AsapMessage::EndpointKeepAlive { pool_handle, .. }) => {
                            let ack = AsapMessage::EndpointKeepAliveAck { pool_handle, pe_id: shared.pe_id };
                            if let Some(m) = session::asap(&ack) {
                                if tx.send(m, SEND_DEADLINE).await.is_err() {
                                    return End::PeerGone;
                                }
                            }
                        }
                        _ => {}
                    },
                    AssocEvent::Down(_) => return End::PeerGone,
                    _ => {}
                }
            }
            r = bw.write_buf(&mut to_backend), if !to_backend.is_empty() => {
                if matches!(r, Ok(0) | Err(_)) {
                    return End::Closed;
                }
            }
            () = &mut cookie_timer, if cookie_due => {
                if send_cookie(shared, plugin, tx).await.is_err() {
                    return End::PeerGone;
                }
                cookie_due = false;
                cookie_timer.as_mut().reset(tokio::time::Instant::now() + interval);
            }
            (s, sealing, hand_over) = &mut signals => {
                match s {
                    // Key rotation: the PU's cookie must open on PEs that dropped the old key.
                    Signal::KeyRotated => cookie_due = true,
                    Signal::HandOver => {
                        // Client bytes still buffered here are unanswered requests the PU
                        // replays; the cookie describes the state after the last reply sent.
                        let _ = send_cookie(shared, plugin, tx).await;
                        return End::HandOver;
                    }
                }
                signals.set(signal(sealing, hand_over));
            }
        }
    }
}

/// The plugin lost track of the `stream` (client or backend): from now on it only
/// relays, and the session can no longer be resumed elsewhere. Logged and counted.
fn lost_track(shared: &Shared, stream: &str, e: &PluginError) {
    tracing::warn!(stream, kind = e.kind(), error = %e, "plugin lost track");
    if let Ok(c) = shared.metrics.plugin_errors.with(&[stream, e.kind()]) {
        c.inc();
    }
}

/// What the PE process tells a running session.
enum Signal {
    /// A new pool key seals cookies from now on.
    KeyRotated,
    /// The PE drains: hand the session over to another PE.
    HandOver,
}

/// The next [`Signal`], with the receivers back for the next wait. The session keeps
/// one such future across the turns of its loop: fresh `changed()` futures on every
/// turn would register and unregister two waiters per message. A receiver whose sender
/// is gone (the process is ending) is no longer watched.
async fn signal(
    mut sealing: watch::Receiver<KeyId>,
    mut hand_over: watch::Receiver<bool>,
) -> (Signal, watch::Receiver<KeyId>, watch::Receiver<bool>) {
    let mut sealing_open = true;
    let mut hand_over_open = true;
    let signal = loop {
        tokio::select! {
            r = sealing.changed(), if sealing_open => match r {
                Ok(()) => break Signal::KeyRotated,
                Err(_) => sealing_open = false,
            },
            // (The guard `wait_for` returns must not live across an await.)
            ok = async { hand_over.wait_for(|h| *h).await.is_ok() }, if hand_over_open => {
                if ok {
                    break Signal::HandOver;
                }
                hand_over_open = false;
            }
            else => std::future::pending::<()>().await,
        }
    };
    (signal, sealing, hand_over)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, PpeConfig, Sources};
    use crate::telemetry::Registry;
    use crate::transport::memory::MemoryNetwork;
    use crate::transport::{Message, Transport};
    use pool_core::cookie::CookieParts;
    use tokio::net::TcpListener;

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    /// An echo backend, and a PPE `Shared` (line plugin) in front of it.
    async fn setup(name: &str) -> (Arc<Shared>, Arc<Registry>) {
        let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = backend.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = backend.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let dir = std::env::temp_dir().join(format!("pg-ppe-unit-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ppe.toml");
        std::fs::write(
            &file,
            format!(
                "[ppe]\npool = \"unit\"\nid = 7\nplugin = \"line\"\n[[ppe.key]]\nid = 1\nkey = \"{KEY}\"\n\
                 [ppe.backend]\naddress = \"127.0.0.1:{port}\"\n[ppe.metrics]\nenabled = false\n"
            ),
        )
        .unwrap();
        let sources = Sources {
            files: vec![file],
            env: vec![],
            sets: vec![],
        };
        let cfg: PpeConfig = load(&sources).expect("test config").config;
        let _ = std::fs::remove_dir_all(&dir);
        let registry = Registry::new();
        (Arc::new(Shared::new(cfg, &registry).unwrap()), registry)
    }

    /// A PU-side association to a PPE serving on an in-memory network.
    async fn connect(shared: &Arc<Shared>) -> Association {
        let net = MemoryNetwork::new();
        let (_pe_t, mut listener) = net.bind("10.0.0.1:9899".parse().unwrap());
        let (pu_t, _l) = net.bind("10.0.0.2:9899".parse().unwrap());
        let s = shared.clone();
        tokio::spawn(async move {
            let _keep = _pe_t;
            while let Some(a) = listener.accept().await {
                tokio::spawn(serve(a, s.clone()));
            }
        });
        pu_t.connect(
            &["10.0.0.1:9899".parse().unwrap()],
            1,
            Duration::from_secs(1),
        )
        .await
        .unwrap()
    }

    async fn next(a: &mut Association) -> Option<SessionMessage> {
        loop {
            match a.recv_timeout(Duration::from_secs(2)).await.ok()?? {
                AssocEvent::Message(m) => return Some(SessionMessage::decode(m)),
                AssocEvent::Down(_) => return None,
                _ => {}
            }
        }
    }

    fn cookie_of(m: Option<SessionMessage>) -> Vec<u8> {
        match m {
            Some(SessionMessage::Asap(AsapMessage::Cookie(c))) => c,
            other => panic!("expected a cookie, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn new_session_gets_a_cookie_first_then_relays_and_answers_keepalives() {
        let (shared, _r) = setup("relay").await;
        let mut a = connect(&shared).await;
        a.send(Control::Open.message(), SEND_DEADLINE)
            .await
            .unwrap();
        let cookie = cookie_of(next(&mut a).await);
        assert!(shared.keys.open(&shared.pool, &cookie, now_ms()).is_ok());
        a.send(session::data(Bytes::from_static(b"hello\n")), SEND_DEADLINE)
            .await
            .unwrap();
        assert_eq!(
            next(&mut a).await,
            Some(SessionMessage::Data(Bytes::from_static(b"hello\n")))
        );
        let ka = AsapMessage::EndpointKeepAlive {
            home: false,
            server_id: 0,
            pool_handle: shared.pool.clone(),
            pe_id: 7,
        };
        a.send(session::asap(&ka).unwrap(), SEND_DEADLINE)
            .await
            .unwrap();
        assert_eq!(
            next(&mut a).await,
            Some(SessionMessage::Asap(AsapMessage::EndpointKeepAliveAck {
                pool_handle: shared.pool.clone(),
                pe_id: 7
            }))
        );
        assert_eq!(shared.metrics.sessions.with(&["new"]).unwrap().get(), 1);
        assert_eq!(shared.active.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_valid_cookie_resumes_and_a_tampered_one_is_refused_and_counted() {
        let (shared, _r) = setup("cookies").await;
        let good = shared
            .keys
            .seal(
                &shared.pool,
                &CookieParts::default(),
                now_ms() + 60_000,
                &mut rand::rng(),
            )
            .unwrap();
        let mut a = connect(&shared).await;
        a.send(
            session::asap(&AsapMessage::CookieEcho(good.clone())).unwrap(),
            SEND_DEADLINE,
        )
        .await
        .unwrap();
        cookie_of(next(&mut a).await);
        a.send(session::data(Bytes::from_static(b"again\n")), SEND_DEADLINE)
            .await
            .unwrap();
        assert_eq!(
            next(&mut a).await,
            Some(SessionMessage::Data(Bytes::from_static(b"again\n")))
        );
        assert_eq!(shared.metrics.sessions.with(&["resumed"]).unwrap().get(), 1);

        let mut bad = good;
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let mut b = connect(&shared).await;
        b.send(
            session::asap(&AsapMessage::CookieEcho(bad)).unwrap(),
            SEND_DEADLINE,
        )
        .await
        .unwrap();
        assert_eq!(next(&mut b).await, None, "refused sessions are aborted");
        assert_eq!(
            shared
                .metrics
                .cookies_rejected
                .with(&["tampered"])
                .unwrap()
                .get(),
            1
        );
        // Anything but OPEN or COOKIE_ECHO first is refused too.
        let mut c = connect(&shared).await;
        c.send(Message::new(99, Bytes::from_static(b"?")), SEND_DEADLINE)
            .await
            .unwrap();
        assert_eq!(next(&mut c).await, None);
        assert_eq!(shared.metrics.refused.with(&["no_open"]).unwrap().get(), 1);
    }
}
