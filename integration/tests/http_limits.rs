//! Limits of the PPU's HTTP gateway, each with its clear answer: header size (431),
//! declared and streamed body size (413), time to a response head (504), and a pool
//! with no backend left (502), over HTTP/1.1 and HTTP/2.

use std::time::{Duration, Instant};

use bytes::Bytes;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::Request;
use poolgate_integration::harness::http_client::{empty, full, Conn};
use poolgate_integration::harness::http_pool::{Cluster, Setup};

async fn text(r: hyper::Response<hyper::body::Incoming>) -> (u16, String) {
    let s = r.status().as_u16();
    let b = r.into_body().collect().await.unwrap().to_bytes();
    (s, String::from_utf8_lossy(&b).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_limit_has_its_answer() {
    let mut c = Cluster::start(Setup {
        http: "max_header_bytes = 8192\nmax_body_bytes = 100000\nresponse_timeout = \"1s\"\n"
            .into(),
        ..Setup::default()
    });
    let port = c.setup.listeners[0].port;
    for h2 in [false, true] {
        let (mut conn, _) = Conn::open(port, h2, None).await.unwrap();
        // A body within the limit is relayed (echoed by the backend).
        let r = conn
            .send(
                Request::post("/echo")
                    .body(full(vec![b'a'; 50_000]))
                    .unwrap(),
            )
            .await
            .unwrap();
        let (s, body) = text(r).await;
        assert_eq!((s, body.len()), (200, 50_000), "h2={h2}");
        // Declared too large: 413 before anything is sent on.
        let r = conn
            .send(
                Request::post("/echo")
                    .body(full(vec![b'a'; 100_001]))
                    .unwrap(),
            )
            .await
            .unwrap();
        let (s, body) = text(r).await;
        assert_eq!(s, 413, "h2={h2}");
        assert!(body.contains("100000 bytes"), "{body}");
        // Headers too large: 431 (HTTP/1.1 from hyper's parser, HTTP/2 from the stream).
        // A new connection: an HTTP/1.1 connection closes after a 413 whose body it
        // did not read.
        let (mut conn, _) = Conn::open(port, h2, None).await.unwrap();
        let r = conn
            .send(
                Request::get("/who")
                    .header("x-big", "v".repeat(10_000))
                    .body(empty())
                    .unwrap(),
            )
            .await;
        match r {
            Ok(r) => assert_eq!(r.status(), 431, "h2={h2}"),
            Err(e) => panic!("h2={h2}: no 431 but {e}"),
        }
    }
    // Streamed (chunked) body growing past the limit: 413.
    let (mut conn, _) = Conn::open(port, false, None).await.unwrap();
    let body = Paced { n: 30, sleep: None }.boxed();
    let r = conn
        .send(Request::post("/echo").body(body).unwrap())
        .await
        .unwrap();
    let (s, body) = text(r).await;
    assert_eq!(s, 413, "{body}");
    // No response head within response_timeout: 504 with an explanation.
    let (mut conn, _) = Conn::open(port, false, None).await.unwrap();
    let t0 = Instant::now();
    let r = conn
        .send(Request::post("/count?delay=3000").body(full("x")).unwrap())
        .await
        .unwrap();
    let (s, body) = text(r).await;
    assert_eq!(s, 504, "{body}");
    assert!(body.contains("no response"), "{body}");
    assert!(t0.elapsed() < Duration::from_millis(2500));
    // The same connection goes on (on a new session).
    assert_eq!(conn.get("/who").await.unwrap().0, 200);
    assert!(c.ppu_counter("poolgate_ppu_http_gateway_answers_total") >= 4.0);
    // Every backend gone: 502 saying no pool element could answer.
    for i in 0..c.backends.len() {
        c.kill_backend(i);
    }
    let t0 = Instant::now();
    loop {
        let (mut conn, _) = Conn::open(port, false, None).await.unwrap();
        let (s, body) = conn.get("/who").await.unwrap();
        if s == 502 {
            assert!(
                body.starts_with(b"poolgate: no pool element of pool `web`"),
                "{body:?}"
            );
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "still {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A body of `n` chunks of 8 KiB with no declared length (sent chunked), paced so it
/// really streams.
struct Paced {
    n: usize,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl hyper::body::Body for Paced {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if self.n == 0 {
            return Poll::Ready(None);
        }
        let s = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(5))));
        match s.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.sleep = None;
                self.n -= 1;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'z'; 8192])))))
            }
        }
    }
}
