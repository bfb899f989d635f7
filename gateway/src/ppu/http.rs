//! `http` and `https` listeners: an HTTP gateway (hyper 1) whose requests travel to PEs
//! over ASAP sessions, followed by the `http` plugin.
//!
//! ```text
//!  client ─HTTP/1.1 or h2─▶ hyper server ─▶ handler ─▶ hyper HTTP/1.1 client ─▶ pipe ─▶ session (http plugin) ══▶ PPE ─▶ backend
//! ```
//!
//! Each client connection owns the upstream connections its requests use: an HTTP/1.1
//! client connection (hyper's client) over an in-memory pipe, whose other end is an
//! ordinary PPU session ([`super::session::run`]). The session relays the HTTP/1.1 bytes
//! unchanged, and the plugin sees them: on a PE failure it replays unanswered idempotent
//! requests, answers the others `502` in their place, and resumes an interrupted body
//! with `Range` + `If-Range`, all inside the byte stream — hyper's client reads one
//! continuous response. An HTTP/1.1 client connection uses one upstream connection;
//! an HTTP/2 connection opens one per concurrent stream and reuses idle ones.
//!
//! Limits ([`HttpSettings`]): header size and count (hyper answers `431`), body size
//! (`413`, also for a streamed body that grows too large), header read time (HTTP/1.1
//! connection closed), body read time (`408`: an incomplete body that brings no bytes
//! for `body_read_timeout`), time to a response head (`504`). A request the pool could
//! not answer at all gets `502`; every answer the gateway makes has a body saying why.
//!
//! Drain: when the PPU drains, every client connection shuts down gracefully (hyper's
//! `graceful_shutdown`): an idle keep-alive connection closes at once, a request in
//! flight gets its answer and then the connection closes (HTTP/1.1 `Connection:
//! close`, HTTP/2 GOAWAY).

use std::convert::Infallible;
use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST};
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use poolgate_plugins::http::headers::{
    append_forwarded, append_x_forwarded_for, forwarded_element, is_hop_by_hop,
};
use tokio::io::{AsyncRead, AsyncWrite};

use super::session::{self, SessionContext};
use crate::config::ppu::HttpSettings;

/// Error type of bodies relayed to clients.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body of the responses the gateway sends.
pub type ResponseBody = BoxBody<Bytes, BoxError>;
type RequestBody = BoxBody<Bytes, BoxError>;
type Sender = hyper::client::conn::http1::SendRequest<RequestBody>;

/// In-memory pipe between hyper's client and a session, per direction.
const PIPE: usize = 256 * 1024;

/// What the connections of one HTTP listener share.
pub struct HttpContext {
    /// The listener's session settings (plugin = http).
    pub session: Arc<SessionContext>,
    /// Limits and timeouts.
    pub settings: HttpSettings,
    /// `http` or `https` (for `Forwarded: proto=`).
    pub proto: &'static str,
    /// Becomes `true` when the PPU drains: connections shut down gracefully.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Upstream sessions running now (the drain waits for them too).
    pub upstreams: Arc<AtomicUsize>,
}

/// Counts a running task in a shared counter for as long as it lives.
pub struct Running(Arc<AtomicUsize>);

impl Running {
    /// Counts one more in `n` until dropped.
    pub fn new(n: &Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Running(n.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one client connection (plain TCP or a finished TLS handshake) until it closes.
pub async fn serve<I>(io: I, peer: SocketAddr, ctx: Arc<HttpContext>)
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let s = &ctx.settings;
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_read_timeout)
        .max_buf_size(s.max_header_bytes.max(crate::config::ppu::MIN_HEADER_BYTES))
        .max_headers(s.max_headers);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(s.max_concurrent_streams);
    let conn = Arc::new(Upstreams {
        ctx: ctx.clone(),
        peer,
        idle: StdMutex::new(Vec::new()),
    });
    let svc = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(conn.handle(req).await) }
    });
    let io = Linger { inner: Some(io) };
    let conn = b.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut shutdown = ctx.shutdown.clone();
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        // `wait_for` sees a drain that began before this connection was served too.
        true = async { shutdown.wait_for(|drain| *drain).await.is_ok() } => {
            tracing::debug!(%peer, listener = %ctx.session.listener, "HTTP client connection shutting down gracefully (drain)");
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, listener = %ctx.session.listener, error = %e, "HTTP client connection ended with an error");
    }
}

/// Most a lingering close reads, and how long, before the socket is closed anyway.
const LINGER_BYTES: usize = 1 << 20;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// A client connection that closes lingering (RFC 9112 §9.6): when hyper drops it —
/// after an error answer such as `431`, typically with request bytes still unread —
/// the write side is shut down and the client's remaining bytes are read and dropped
/// for a while, so the kernel does not answer them with a reset that would destroy
/// the answer before the client reads it.
struct Linger<I: AsyncRead + AsyncWrite + Send + Unpin + 'static> {
    inner: Option<I>,
}

impl<I: AsyncRead + AsyncWrite + Send + Unpin + 'static> Drop for Linger<I> {
    fn drop(&mut self) {
        let Some(mut io) = self.inner.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = tokio::time::timeout(LINGER_TIME, async {
                let _ = io.shutdown().await;
                let mut buf = vec![0u8; 16 * 1024];
                let mut total = 0;
                while total < LINGER_BYTES {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n,
                    }
                }
            })
            .await;
        });
    }
}

impl<I: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncRead for Linger<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(io) => Pin::new(io).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncWrite for Linger<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.inner.as_mut() {
            Some(io) => Pin::new(io).poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.inner.as_mut() {
            Some(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(io) => Pin::new(io).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(io) => Pin::new(io).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// A complete `text/plain` answer made by the gateway.
pub fn answer(status: StatusCode, text: String) -> Response<ResponseBody> {
    let mut r = Response::new(Full::new(Bytes::from(text)).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}

/// The upstream connections of one client connection.
struct Upstreams {
    ctx: Arc<HttpContext>,
    peer: SocketAddr,
    /// Upstream connections not carrying a request (or finishing a response body).
    idle: StdMutex<Vec<Sender>>,
}

impl Upstreams {
    fn count_answer(&self, status: StatusCode) {
        let m = &self.ctx.session.metrics;
        if let Ok(c) = m
            .http_answers
            .with(&[&self.ctx.session.listener, status.as_str()])
        {
            c.inc();
        }
    }

    fn gateway_answer(&self, status: StatusCode, text: String) -> Response<ResponseBody> {
        self.count_answer(status);
        tracing::info!(peer = %self.peer, listener = %self.ctx.session.listener, status = status.as_u16(), reason = %text.trim_end(), "HTTP request answered by the gateway");
        answer(status, text)
    }

    /// `408` for a request whose body stalled before a response head was relayed; an
    /// HTTP/1.1 connection closes after it (the rest of the body is not coming).
    fn body_timeout_answer(
        &self,
        watch: &BodyWatch,
        declared: Option<u64>,
        h2: bool,
    ) -> Response<ResponseBody> {
        let received = watch.received.load(Ordering::Relaxed);
        let of = declared.map_or(String::new(), |n| format!(" of {n}"));
        let mut r = self.gateway_answer(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "poolgate: the request body stalled: no bytes for {:?} ({received}{of} bytes received); request abandoned.\n",
                self.ctx.settings.body_read_timeout
            ),
        );
        if !h2 {
            r.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }

    /// An upstream connection ready for a request: an idle one, the busy one of an
    /// HTTP/1.1 client (its previous response is finishing), or a new one.
    async fn sender(&self, concurrent: bool) -> anyhow::Result<Sender> {
        let busy = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain(|s| !s.is_closed());
            if let Some(i) = idle.iter().position(|s| s.is_ready()) {
                return Ok(idle.swap_remove(i));
            }
            if concurrent {
                None
            } else {
                idle.pop()
            }
        };
        if let Some(mut s) = busy {
            if s.ready().await.is_ok() {
                return Ok(s);
            }
        }
        self.open().await
    }

    fn put(&self, s: Sender) {
        if !s.is_closed() {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(s);
        }
    }

    /// A new upstream connection: a session to some PE behind an in-memory pipe.
    async fn open(&self) -> anyhow::Result<Sender> {
        let (ours, theirs) = tokio::io::duplex(PIPE);
        let sctx = self.ctx.session.clone();
        let peer = self.peer;
        if let Ok(c) = sctx.metrics.http_upstreams.with(&[&sctx.listener]) {
            c.inc();
        }
        let running = Running::new(&self.ctx.upstreams);
        tokio::spawn(async move {
            let _running = running;
            let (r, w) = tokio::io::split(theirs);
            session::run(r, w, peer, None, &sctx).await;
        });
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(ours))
            .await?;
        let listener = self.ctx.session.listener.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%listener, error = %e, "upstream HTTP connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// One request: limits, translation to an HTTP/1.1 request for the PE, the answer.
    async fn handle(&self, req: Request<Incoming>) -> Response<ResponseBody> {
        let s = &self.ctx.settings;
        if req.method() == Method::CONNECT {
            return self.gateway_answer(
                StatusCode::NOT_IMPLEMENTED,
                "poolgate: CONNECT tunnels are not served by this gateway.\n".into(),
            );
        }
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > s.max_body_bytes) {
            return self.gateway_answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "poolgate: the request body is larger than this gateway accepts ({} bytes).\n",
                    s.max_body_bytes
                ),
            );
        }
        let concurrent = req.version() == Version::HTTP_2;
        let (parts, body) = req.into_parts();
        let target = match (&parts.method, parts.uri.path_and_query()) {
            (&Method::OPTIONS, None) => "*".to_string(),
            (_, Some(pq)) => pq.as_str().to_string(),
            (_, None) => "/".to_string(),
        };
        let host = parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| parts.uri.authority().map(|a| a.as_str().to_string()));
        let headers = upstream_headers(&parts.headers, host.as_deref(), self.peer, self.ctx.proto);
        let too_large = Arc::new(AtomicBool::new(false));
        let watch = Arc::new(BodyWatch::default());
        let body = LimitedBody {
            inner: body,
            left: s.max_body_bytes,
            max: s.max_body_bytes,
            too_large: too_large.clone(),
            idle_limit: s.body_read_timeout,
            waiting: None,
            watch: watch.clone(),
            ctx: self.ctx.clone(),
            peer: self.peer,
            declared,
        }
        .boxed();
        let mut up = Request::new(body);
        *up.method_mut() = parts.method.clone();
        *up.version_mut() = Version::HTTP_11;
        *up.headers_mut() = headers;
        match target.parse() {
            Ok(u) => *up.uri_mut() = u,
            Err(_) => {
                return self.gateway_answer(
                    StatusCode::BAD_REQUEST,
                    "poolgate: the request target is not valid.\n".into(),
                )
            }
        }
        let timeout = s.response_timeout;
        // The upstream connection returns to the idle list only with a response head:
        // one that timed out or failed is dropped (its session ends with it).
        let sent = tokio::time::timeout(timeout, async {
            let mut sender = self.sender(concurrent).await?;
            let response = sender.send_request(up).await?;
            anyhow::Ok((sender, response))
        })
        .await;
        match sent {
            Err(_) => self.gateway_answer(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "poolgate: no response from the pool within {timeout:?} (failovers to other pool elements included).\n"
                ),
            ),
            Ok(Err(_)) if too_large.load(Ordering::Relaxed) => self.gateway_answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "poolgate: the request body is larger than this gateway accepts ({} bytes).\n",
                    s.max_body_bytes
                ),
            ),
            Ok(Err(_)) if watch.stalled() => self.body_timeout_answer(&watch, declared, concurrent),
            Ok(Err(e)) => self.gateway_answer(
                StatusCode::BAD_GATEWAY,
                format!(
                    "poolgate: no pool element of pool `{}` could answer this request ({e}).\n",
                    self.ctx.session.pool
                ),
            ),
            // The body stalled while the head was on its way: the upstream connection
            // is failing, so the client gets the 408 rather than a cut response.
            Ok(Ok(_)) if !watch.head_relayed() => {
                self.body_timeout_answer(&watch, declared, concurrent)
            }
            Ok(Ok((sender, resp))) => {
                self.put(sender);
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                parts.version = Version::HTTP_11;
                Response::from_parts(parts, body.map_err(BoxError::from).boxed())
            }
        }
    }
}

/// The fields for the PE: hop-by-hop ones dropped (RFC 9110 §7.6.1), `Host` present,
/// `Forwarded` and `X-Forwarded-For` extended with the client.
fn upstream_headers(
    from: &HeaderMap,
    host: Option<&str>,
    peer: SocketAddr,
    proto: &str,
) -> HeaderMap {
    let conn: Vec<&[u8]> = from
        .get_all(CONNECTION)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let mut out = HeaderMap::with_capacity(from.len() + 3);
    let join = |name: &str| -> Option<Vec<u8>> {
        let vals: Vec<&[u8]> = from.get_all(name).iter().map(|v| v.as_bytes()).collect();
        (!vals.is_empty()).then(|| vals.join(&b", "[..]))
    };
    for (name, value) in from {
        let n = name.as_str();
        if is_hop_by_hop(n, conn.iter().copied())
            || n == "forwarded"
            || n == "x-forwarded-for"
            || n == "content-length"
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    // hyper's client frames the body itself; it needs the length the client declared.
    if let Some(v) = from.get(CONTENT_LENGTH) {
        out.insert(CONTENT_LENGTH, v.clone());
    }
    if !out.contains_key(HOST) {
        if let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
            out.insert(HOST, v);
        }
    }
    let fwd = append_forwarded(
        join("forwarded").as_deref(),
        &forwarded_element(peer, proto, host),
    );
    let xff = append_x_forwarded_for(join("x-forwarded-for").as_deref(), peer.ip());
    for (name, v) in [("forwarded", fwd), ("x-forwarded-for", xff)] {
        if let Ok(v) = HeaderValue::from_bytes(&v) {
            out.insert(HeaderName::from_static(name), v);
        }
    }
    out
}

/// Drops the hop-by-hop fields of a backend response (hyper frames the client's hop).
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let conn: Vec<Vec<u8>> = h
        .get_all(CONNECTION)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
    let drop: Vec<HeaderName> = h
        .keys()
        .filter(|n| is_hop_by_hop(n.as_str(), conn.iter().map(|v| v.as_slice())))
        .cloned()
        .collect();
    for n in drop {
        h.remove(n);
    }
}

/// A request body that fails once it grows past the limit (a streamed body has no
/// length to check in advance), or once it brings no bytes for `idle_limit` while
/// incomplete (a client stalling mid-body).
struct LimitedBody {
    inner: Incoming,
    left: u64,
    max: u64,
    too_large: Arc<AtomicBool>,
    /// `body_read_timeout`.
    idle_limit: Duration,
    /// Runs while the body waits for the client: started when a poll finds no bytes,
    /// cleared by each frame. Time the upstream spends not polling (back-pressure)
    /// does not count against the client.
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
    watch: Arc<BodyWatch>,
    ctx: Arc<HttpContext>,
    peer: SocketAddr,
    declared: Option<u64>,
}

/// What a request's body and its handler tell each other: bytes received, and
/// whether the body stalled or the response head was relayed first (one of the two
/// wins, so a stall is answered or logged exactly once).
#[derive(Default)]
struct BodyWatch {
    state: AtomicU8,
    received: std::sync::atomic::AtomicU64,
}

const BODY_PENDING: u8 = 0;
const HEAD_RELAYED: u8 = 1;
const BODY_STALLED: u8 = 2;

impl BodyWatch {
    /// Marks the body stalled; false when the response head was relayed already.
    fn stall(&self) -> bool {
        self.state
            .compare_exchange(
                BODY_PENDING,
                BODY_STALLED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Marks the response head relayed; false when the body stalled first.
    fn head_relayed(&self) -> bool {
        match self.state.compare_exchange(
            BODY_PENDING,
            HEAD_RELAYED,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => true,
            Err(now) => now == HEAD_RELAYED,
        }
    }

    /// Whether the body stalled before a response head was relayed.
    fn stalled(&self) -> bool {
        self.state.load(Ordering::Acquire) == BODY_STALLED
    }
}

/// The request body brought no bytes for the configured time.
#[derive(Debug, thiserror::Error)]
#[error("request body stalled: no bytes for {0:?}")]
struct BodyReadTimeout(Duration);

impl LimitedBody {
    /// The body stalled: counted, and answered `408` by the handler, or — when the
    /// response head is out already — logged here (the connection closes).
    fn stall(&mut self) -> BoxError {
        let sctx = &self.ctx.session;
        if let Ok(c) = sctx.metrics.http_body_timeouts.with(&[&sctx.listener]) {
            c.inc();
        }
        if !self.watch.stall() {
            tracing::info!(peer = %self.peer, listener = %sctx.listener, received = self.watch.received.load(Ordering::Relaxed), declared = ?self.declared, timeout = ?self.idle_limit, "HTTP request body stalled after the response head; request abandoned, connection closed");
        }
        Box::new(BodyReadTimeout(self.idle_limit))
    }
}

/// The request body exceeded the configured limit.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {0} bytes")]
struct BodyTooLarge(u64);

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if !polled.is_pending() {
            self.waiting = None;
        }
        match polled {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    let n = d.len() as u64;
                    if n > self.left {
                        self.too_large.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge(self.max)))));
                    }
                    self.left -= n;
                    self.watch.received.fetch_add(n, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let limit = self.idle_limit;
                let timer = self
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        self.waiting = None;
                        Poll::Ready(Some(Err(self.stall())))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How long a TLS handshake may take before the client is dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_fields_drop_hop_by_hop_and_extend_forwarding() {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("example.test"));
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("5"));
        let peer: SocketAddr = "127.0.0.9:4000".parse().unwrap();
        let out = upstream_headers(&h, Some("example.test"), peer, "https");
        for gone in ["connection", "x-secret", "keep-alive", "te"] {
            assert!(!out.contains_key(gone), "{gone} forwarded");
        }
        assert_eq!(out["accept"], "*/*");
        assert_eq!(out[CONTENT_LENGTH], "5");
        assert_eq!(out["x-forwarded-for"], "10.0.0.1, 127.0.0.9");
        let fwd = out["forwarded"].to_str().unwrap();
        assert!(fwd.contains("for=\"127.0.0.9:4000\""), "{fwd}");
        assert!(fwd.contains("proto=https"), "{fwd}");
        // HTTP/2 requests carry the authority instead of Host.
        let out = upstream_headers(&HeaderMap::new(), Some("h2.test:8443"), peer, "https");
        assert_eq!(out[HOST], "h2.test:8443");
    }

    #[test]
    fn backend_hop_by_hop_fields_are_not_relayed() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("close, x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("etag", HeaderValue::from_static("\"v1\""));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["etag"], "\"v1\"");
    }
}
