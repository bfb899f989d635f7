//! The PPU's HTTP gateway on drain and against a stalled request body, with real
//! processes (registrar, PPEs, PPU, `pg-http-backend`):
//! - SIGTERM closes idle keep-alive connections at once (HTTP/1.1 EOF, HTTP/2 GOAWAY),
//!   answers a request in flight in full (`Connection: close`), and the PPU exits long
//!   before `drain_grace`;
//! - a request body that stops arriving gets `408` after `body_read_timeout`, counted,
//!   and the gateway goes on serving.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::Request;
use poolgate_integration::harness::http_client::Conn;
use poolgate_integration::harness::http_pool::{Cluster, Setup};
use poolgate_integration::harness::wait::poll;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// One HTTP/1.1 response read off a raw connection.
struct Answer {
    status: u16,
    /// The head, lower-cased.
    head: String,
    body: Vec<u8>,
}

async fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the PPU");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Reads one response with a `Content-Length` body; an error when the connection ends
/// before it is complete.
async fn read_answer(s: &mut TcpStream) -> std::io::Result<Answer> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no content-length in {head:?}"));
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(body.len(), len, "bytes after the body: {head}");
    Ok(Answer { status, head, body })
}

/// Waits (bounded) for the peer to close the connection: `read` returns 0.
async fn expect_eof(s: &mut TcpStream, within: Duration, what: &str) {
    let mut b = [0u8; 256];
    match timeout(within, s.read(&mut b)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => panic!("{what}: {n} unexpected bytes: {:?}", &b[..n]),
        Ok(Err(e)) => panic!("{what}: closed with an error, not an EOF: {e}"),
        Err(_) => panic!("{what}: still open after {within:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_idle_http_connections_and_answers_requests_in_flight() {
    let mut c = Cluster::start(Setup {
        pes: 2,
        drain_grace: "20s",
        ..Setup::default()
    });
    let port = c.setup.listeners[0].port;
    // An HTTP/1.1 keep-alive connection, left idle after one request.
    let mut idle = connect(port).await;
    idle.write_all(b"GET /who HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let a = read_answer(&mut idle).await.expect("first answer");
    assert_eq!(a.status, 200, "{}", a.head);
    assert!(!a.head.contains("connection: close"), "{}", a.head);
    // An HTTP/2 connection, idle the same way.
    let (mut h2, _) = Conn::open(port, true, None).await.unwrap();
    assert_eq!(h2.get("/who").await.unwrap().0, 200);
    // A request the backend answers after a second, in flight when the drain starts.
    let mut slow = connect(port).await;
    slow.write_all(b"POST /count?delay=1000 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    c.serving("POST /count?delay=1000", Duration::from_secs(10));

    let t0 = Instant::now();
    c.ppu.as_ref().expect("the PPU runs").signal(15);
    expect_eof(
        &mut idle,
        Duration::from_secs(8),
        "idle HTTP/1.1 connection",
    )
    .await;
    let idle_closed = t0.elapsed();
    let a = timeout(Duration::from_secs(8), read_answer(&mut slow))
        .await
        .expect("the request in flight was not answered")
        .expect("the request in flight was cut");
    let answered = t0.elapsed();
    assert_eq!(a.status, 200, "{}", a.head);
    assert!(a.body.starts_with(b"count "), "{:?}", a.body);
    assert!(a.head.contains("connection: close"), "{}", a.head);
    expect_eof(&mut slow, Duration::from_secs(5), "answered connection").await;
    let Conn::H2(h2) = h2 else {
        unreachable!("opened as HTTP/2")
    };
    assert!(
        poll(Duration::from_secs(8), Duration::from_millis(20), || h2
            .is_closed()
            .then_some(()))
        .is_some(),
        "idle HTTP/2 connection still open"
    );
    // Everything ended: the PPU exits long before its 20 s grace.
    let ppu = &mut c.ppu.as_mut().expect("the PPU").0;
    let status = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        ppu.try_wait().ok().flatten()
    })
    .expect("the PPU still runs 10 s after SIGTERM (drain_grace 20 s)");
    let exited = t0.elapsed();
    assert!(status.success(), "PPU exit: {status}");
    eprintln!(
        "after SIGTERM: idle closed {idle_closed:?}, request in flight answered {answered:?}, PPU exited {exited:?} (drain_grace 20 s)"
    );
}

/// A body that sends `first` bytes, then nothing, forever (never ends).
struct Stalls {
    first: Option<Bytes>,
}

impl hyper::body::Body for Stalls {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.first.take() {
            Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
            None => Poll::Pending,
        }
    }
}

/// The PPU's `poolgate_ppu_http_gateway_answers_total` for status 408, all listeners.
fn answers_408(c: &Cluster) -> f64 {
    c.ppu_metrics("poolgate_ppu_http_gateway_answers_total")
        .iter()
        .filter(|l| l.contains("status=\"408\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_gets_408_and_is_counted() {
    let c = Cluster::start(Setup {
        pes: 2,
        http: "body_read_timeout = \"1s\"\n".into(),
        ..Setup::default()
    });
    let port = c.setup.listeners[0].port;
    let timeouts = "poolgate_ppu_http_body_read_timeouts_total";
    assert_eq!(c.ppu_counter(timeouts), 0.0);
    // HTTP/1.1: 100000 bytes announced, 10 sent.
    let mut s = connect(port).await;
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n0123456789")
        .await
        .unwrap();
    let t0 = Instant::now();
    let a = timeout(Duration::from_secs(15), read_answer(&mut s))
        .await
        .expect("no answer to the stalled request")
        .expect("closed without an answer");
    let waited = t0.elapsed();
    assert_eq!(a.status, 408, "{}", a.head);
    let text = String::from_utf8_lossy(&a.body);
    assert!(text.contains("stalled"), "{text}");
    assert!(text.contains("10 of 100000 bytes"), "{text}");
    assert!(waited >= Duration::from_millis(900), "408 after {waited:?}");
    assert!(a.head.contains("connection: close"), "{}", a.head);
    expect_eof(&mut s, Duration::from_secs(5), "connection after 408").await;
    assert_eq!(c.ppu_counter(timeouts), 1.0);
    assert_eq!(answers_408(&c), 1.0);

    // HTTP/2: the stream gets the 408.
    let (mut h2, _) = Conn::open(port, true, None).await.unwrap();
    let req = Request::post("/echo")
        .header("content-length", "100000")
        .body(
            Stalls {
                first: Some(Bytes::from_static(b"0123456789")),
            }
            .boxed(),
        )
        .unwrap();
    let r = timeout(Duration::from_secs(15), h2.send(req))
        .await
        .expect("no HTTP/2 answer to the stalled request")
        .expect("HTTP/2 stream failed without an answer");
    assert_eq!(r.status(), 408);
    assert_eq!(c.ppu_counter(timeouts), 2.0);
    assert_eq!(answers_408(&c), 2.0);

    // The gateway goes on: new connections get whole answers, bodies included.
    let (mut conn, _) = Conn::open(port, false, None).await.unwrap();
    assert_eq!(conn.get("/who").await.unwrap().0, 200);
    let r = conn
        .send(
            Request::post("/echo")
                .body(poolgate_integration::harness::http_client::full(vec![
                    b'e';
                    20_000
                ]))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 20_000);
}
