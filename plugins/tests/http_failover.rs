//! The HTTP plugin on both sides of a session, sans-IO: client → PPU plugin → PPE plugin
//! → simulated backend and back, with the PE failing mid-download, the cookie handed to
//! a new PE (public part rewritten by the PU, as the gateway does) and the session resumed.

use poolgate_plugins::http::framing::{request_body, Direction, Framer, HttpLimits};
use poolgate_plugins::http::{HttpConfig, HttpSession, ResumeRecord};
use poolgate_plugins::{render, CookieParts, Failover, SessionState};
use proptest::prelude::*;

/// A backend serving `/file/<n>` (deterministic bytes of generation `gen`, strong ETag,
/// ranges with If-Range) and answering `POST` with `201`.
struct Backend {
    gen: u8,
    req: Framer,
}

fn byte(gen: u8, i: usize) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add((i >> 9) as u8) ^ gen
}

impl Backend {
    fn new(gen: u8) -> Self {
        Self {
            gen,
            req: Framer::new(Direction::Request, HttpLimits::REQUEST),
        }
    }

    /// Reads request bytes; returns the responses they complete.
    fn serve(&mut self, mut bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let s = self.req.advance(bytes).unwrap();
            bytes = &bytes[s.consumed..];
            let Some((h, _)) = s.head else { continue };
            let done = self.req.start_body(request_body(&h).unwrap()).unwrap();
            assert!(done, "test requests have no bodies");
            let method = h.method().unwrap().to_string();
            let target = match &h.start {
                poolgate_plugins::http::framing::StartLine::Request { target, .. } => {
                    target.clone()
                }
                _ => unreachable!(),
            };
            if method == "POST" {
                out.extend_from_slice(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
                continue;
            }
            let len: usize = target.trim_start_matches("/file/").parse().unwrap();
            let etag = format!("\"g{}\"", self.gen);
            let mut from = 0;
            if let Some(r) = h.value("range") {
                let ok = h.value("if-range").is_none_or(|v| v == etag.as_bytes());
                let start = std::str::from_utf8(r)
                    .unwrap()
                    .trim_start_matches("bytes=")
                    .trim_end_matches('-');
                if ok {
                    from = start.parse().unwrap();
                }
            }
            let body: Vec<u8> = (from..len).map(|i| byte(self.gen, i)).collect();
            let head = if from > 0 {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{len}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\n\r\n",
                    len - from,
                    len - 1
                )
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\n\r\n")
            };
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(&body);
        }
        out
    }
}

/// One PE: its plugin instance and backend, plus the latest cookie it sent.
struct Pe {
    plugin: HttpSession,
    backend: Backend,
    /// Backend bytes produced but not yet relayed.
    pending: Vec<u8>,
}

struct Run {
    pu: HttpSession,
    pe: Pe,
    cookie: CookieParts,
    client: Vec<u8>,
    closed: bool,
}

impl Run {
    fn new(gen: u8) -> Self {
        let mut pe = Pe {
            plugin: HttpSession::new(HttpConfig::default()),
            backend: Backend::new(gen),
            pending: Vec::new(),
        };
        // The PE sends a cookie right after the session opens.
        let cookie = pe.plugin.checkpoint();
        Self {
            pu: HttpSession::new(HttpConfig::default()),
            pe,
            cookie,
            client: Vec::new(),
            closed: false,
        }
    }

    /// Client bytes through PPU and PPE to the backend.
    fn send(&mut self, bytes: &[u8]) {
        self.pu.on_client_bytes(bytes);
        self.deliver_to_pe(bytes);
    }

    fn deliver_to_pe(&mut self, bytes: &[u8]) {
        let p = self.pe.plugin.on_client_bytes(bytes);
        assert!(p.error.is_none());
        let out = self.pe.backend.serve(bytes);
        self.pe.pending.extend_from_slice(&out);
    }

    /// Relays up to `limit` backend bytes in pieces of `piece`.
    fn relay(&mut self, limit: usize, piece: usize) {
        let n = limit.min(self.pe.pending.len());
        let chunk: Vec<u8> = self.pe.pending.drain(..n).collect();
        for c in chunk.chunks(piece.max(1)) {
            let mut d = Vec::new();
            let p = self.pe.plugin.on_backend_bytes(c, &mut d);
            if p.checkpoint {
                self.cookie = self.pe.plugin.checkpoint();
            }
            let to_pu = render(c, &d);
            let mut d = Vec::new();
            let p = self.pu.on_backend_bytes(&to_pu, &mut d);
            if self.closed {
                continue;
            }
            self.client.extend_from_slice(&render(&to_pu, &d));
            if p.close_client {
                self.closed = true;
            }
        }
    }

    /// The PE dies; the PU moves the session to a PE whose backend has generation `gen`.
    fn fail_over(&mut self, gen: u8) {
        let r = match self.pu.failover() {
            Failover::Resume(r) => r,
            Failover::NotResumable(e) => panic!("not resumable: {e}"),
        };
        self.client.extend_from_slice(&r.to_client);
        let mut cookie = self.cookie.clone();
        cookie.public = self.pu.public_state().encode();
        let mut plugin = HttpSession::new(HttpConfig::default());
        let restore = plugin.restore(&cookie).unwrap();
        assert!(restore.prelude.is_empty());
        self.pe = Pe {
            plugin,
            backend: Backend::new(gen),
            pending: Vec::new(),
        };
        self.deliver_to_pe(&r.replay);
    }
}

fn expected_file(gen: u8, len: usize) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: \"g{gen}\"\r\nAccept-Ranges: bytes\r\n\r\n").into_bytes();
    out.extend((0..len).map(|i| byte(gen, i)));
    out
}

#[test]
fn download_resumes_across_pes_with_the_cookie() {
    let mut run = Run::new(1);
    run.send(b"GET /file/100000 HTTP/1.1\r\nHost: h\r\n\r\n");
    run.relay(37_000, 1000);
    let rec = ResumeRecord::decode(&run.cookie.immutable).expect("the PE sealed the validator");
    assert_eq!(rec.total, 100_000);
    run.fail_over(1);
    assert_eq!(
        run.pe.plugin.restored_record(),
        Some(&rec),
        "the new PE opened the validator"
    );
    run.relay(30_000, 4096);
    run.fail_over(1);
    run.relay(usize::MAX, 777);
    assert!(!run.closed);
    assert_eq!(run.client, expected_file(1, 100_000));
    assert_eq!(run.pu.public_state().answered, 1);
}

#[test]
fn changed_representation_closes_instead_of_splicing() {
    let mut run = Run::new(1);
    run.send(b"GET /file/5000 HTTP/1.1\r\n\r\n");
    run.relay(2000, 100);
    let before = run.client.clone();
    run.fail_over(2);
    run.relay(usize::MAX, 100);
    assert!(run.closed);
    assert_eq!(
        run.client, before,
        "nothing of the other representation reached the client"
    );
}

#[test]
fn post_behind_a_download_gets_its_502_in_order() {
    let mut run = Run::new(1);
    run.send(b"GET /file/3000 HTTP/1.1\r\n\r\nPOST /order HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET /file/10 HTTP/1.1\r\n\r\n");
    run.relay(1500, 64);
    run.fail_over(1);
    run.relay(usize::MAX, 64);
    let mut want = expected_file(1, 3000);
    let text_start = want.len();
    want.extend_from_slice(&poolgate_plugins::http::bad_gateway(
        poolgate_plugins::http::Failed::NotIdempotent,
    ));
    assert_eq!(&run.client[..want.len()], &want[..]);
    assert!(String::from_utf8_lossy(&run.client[text_start..]).starts_with("HTTP/1.1 502"));
    assert_eq!(&run.client[want.len()..], &expected_file(1, 10)[..]);
    assert_eq!(run.pu.public_state().answered, 3);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_cut_any_chunking_is_byte_exact(
        len in 1usize..20_000,
        cuts in proptest::collection::vec(0usize..20_100, 1..4),
        piece in 1usize..3000,
    ) {
        let mut run = Run::new(3);
        run.send(format!("GET /file/{len} HTTP/1.1\r\n\r\n").as_bytes());
        for c in cuts {
            run.relay(c, piece);
            if run.pu.unanswered() == 0 {
                break;
            }
            run.fail_over(3);
        }
        run.relay(usize::MAX, piece);
        prop_assert!(!run.closed);
        prop_assert_eq!(run.client, expected_file(3, len));
    }
}
