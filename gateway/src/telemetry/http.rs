//! A minimal HTTP/1.1 server for `GET /metrics`.
//!
//! Hand-rolled on purpose: one route, no keep-alive, bounded everywhere — request
//! head at most [`MAX_HEAD`] bytes, [`IO_TIMEOUT`] per connection, at most
//! [`MAX_CONNECTIONS`] at once (more are closed straight away) — so a scraper gone
//! wrong or a hostile client cannot hurt the data path.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::metrics::Registry;

/// Largest request head read.
pub const MAX_HEAD: usize = 8192;
/// Time a connection may take to send its request and receive the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A bound metrics endpoint, not yet serving.
pub struct MetricsServer {
    listener: TcpListener,
    registry: Arc<Registry>,
    io_timeout: Duration,
}

impl MetricsServer {
    /// Bind the endpoint (port 0 picks a free port; see [`MetricsServer::local_addr`]).
    pub async fn bind(addr: SocketAddr, registry: Arc<Registry>) -> std::io::Result<Self> {
        Ok(MetricsServer {
            listener: TcpListener::bind(addr).await?,
            registry,
            io_timeout: IO_TIMEOUT,
        })
    }

    /// Use another per-connection time limit than [`IO_TIMEOUT`].
    pub fn with_io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => return,
                a = self.listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "metrics connection refused: too many open");
                continue;
            };
            let registry = self.registry.clone();
            let io_timeout = self.io_timeout;
            tokio::spawn(async move {
                let _permit = permit;
                if tokio::time::timeout(io_timeout, handle(stream, &registry))
                    .await
                    .is_err()
                {
                    tracing::debug!(%peer, "metrics connection timed out");
                }
            });
        }
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// GET or HEAD of a path (query string removed).
    Fetch {
        /// Whether the body is wanted (GET) or not (HEAD).
        body: bool,
        /// The path.
        path: String,
    },
    /// A method other than GET/HEAD.
    BadMethod,
    /// Not an HTTP/1.x request line.
    Malformed,
}

/// Parse the request line of `head` (everything before the blank line).
pub fn parse_request(head: &[u8]) -> Request {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Request::Malformed;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Malformed;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Request::Malformed;
    }
    let path = target.split('?').next().unwrap_or(target).to_string();
    match method {
        "GET" => Request::Fetch { body: true, path },
        "HEAD" => Request::Fetch { body: false, path },
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => Request::BadMethod,
        _ => Request::Malformed,
    }
}

async fn handle(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    let head_end = loop {
        if let Some(i) = find_head_end(&buf[..len]) {
            break Some(i);
        }
        if len == MAX_HEAD {
            break None;
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(()); // closed before a full request: nothing to answer
        }
        len += n;
    };
    let response = match head_end {
        None => simple(
            431,
            "Request Header Fields Too Large",
            "request head too large\n",
            true,
        ),
        Some(end) => match parse_request(&buf[..end]) {
            Request::Malformed => simple(400, "Bad Request", "bad request\n", true),
            Request::BadMethod => simple(405, "Method Not Allowed", "only GET and HEAD\n", true),
            Request::Fetch { body, path } => match path.as_str() {
                "/metrics" => {
                    let text = registry.render();
                    respond(200, "OK", CONTENT_TYPE, &text, body)
                }
                "/status" => match registry.status_json() {
                    Some(json) => respond(200, "OK", "application/json", &json, body),
                    None => simple(404, "Not Found", "this role has no status document\n", body),
                },
                "/" => simple(
                    200,
                    "OK",
                    "poolgate: metrics at /metrics, status at /status\n",
                    body,
                ),
                _ => simple(
                    404,
                    "Not Found",
                    "not found; metrics are at /metrics\n",
                    body,
                ),
            },
        },
    };
    stream.write_all(&response).await?;
    stream.shutdown().await?;
    // Closing with unread input makes the kernel send RST, which can destroy the
    // answer in flight; read (a bounded amount of) what the client still sends.
    let mut sink = [0u8; 1024];
    for _ in 0..64 {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Ok(())
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n"))
}

fn simple(code: u16, reason: &str, text: &str, body: bool) -> Vec<u8> {
    respond(code, reason, "text/plain; charset=utf-8", text, body)
}

fn respond(code: u16, reason: &str, content_type: &str, text: &str, body: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        text.len()
    );
    if code == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if body {
        bytes.extend_from_slice(text.as_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a"),
            Request::Fetch {
                body: true,
                path: "/metrics".into()
            }
        );
        assert_eq!(
            parse_request(b"HEAD / HTTP/1.0"),
            Request::Fetch {
                body: false,
                path: "/".into()
            }
        );
        assert_eq!(parse_request(b"POST /metrics HTTP/1.1"), Request::BadMethod);
        assert_eq!(parse_request(b"GET /metrics"), Request::Malformed);
        assert_eq!(parse_request(b"GET metrics HTTP/1.1"), Request::Malformed);
        assert_eq!(parse_request(b"GET / HTTP/2.0"), Request::Malformed);
        assert_eq!(parse_request(b"\xff\xfe"), Request::Malformed);
        assert_eq!(parse_request(b"GET  / HTTP/1.1"), Request::Malformed);
    }

    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn serves_metrics_and_rejects_bad_requests() {
        let registry = Registry::new();
        registry.counter("served_total", "t").unwrap().inc_by(42);
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), registry)
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stop_rx.await;
        }));

        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(CONTENT_TYPE));
        assert!(ok.ends_with("served_total 42\n"), "{ok}");
        let body = ok.split("\r\n\r\n").nth(1).unwrap();
        let len: usize = ok
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());

        let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        assert!(exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 404"));
        let post = exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405") && post.contains("Allow: GET, HEAD"));
        assert!(exchange(addr, b"garbage\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 400"));
        let huge = vec![b'a'; MAX_HEAD + 100];
        assert!(exchange(addr, &huge).await.starts_with("HTTP/1.1 431"));
        // A client that connects and closes without a request gets nothing, and the
        // server keeps serving.
        drop(TcpStream::connect(addr).await.unwrap());
        assert!(exchange(addr, b"GET /metrics HTTP/1.0\n\n")
            .await
            .starts_with("HTTP/1.1 200"));

        stop_tx.send(()).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn idle_and_excess_connections_cannot_starve_scrapes() {
        let registry = Registry::new();
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), registry)
            .await
            .unwrap()
            .with_io_timeout(Duration::from_millis(300));
        let addr = server.local_addr().unwrap();
        tokio::spawn(server.run(std::future::pending()));

        // Fill every slot with a client that never finishes its request.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /met").await.unwrap();
            idle.push(s);
        }
        // Let the server accept them all before the next one arrives.
        tokio::time::sleep(Duration::from_millis(50)).await;
        // One more is closed at once, unanswered.
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_millis(250), extra.read_to_end(&mut buf))
            .await
            .expect("an excess connection is closed, not parked")
            .unwrap_or(0);
        assert_eq!(n, 0);
        // The idle ones are cut off after the time limit...
        let started = std::time::Instant::now();
        let mut first = idle.pop().unwrap();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), first.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "idle connection not closed");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(idle);
        // ...and scrapes work again.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    }

    proptest! {
        #[test]
        fn request_parser_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_request(&bytes);
            let _ = find_head_end(&bytes);
        }
    }
}
