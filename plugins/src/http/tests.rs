//! Scenario and property tests of the HTTP plugin's failover decisions.

use proptest::prelude::*;

use super::headers::Validator;
use super::{HttpConfig, HttpSession, ResumeRecord};
use crate::{render, BackendProgress, Failover, NotResumable, Resume, SessionState};

fn session() -> HttpSession {
    HttpSession::new(HttpConfig::default())
}

/// Feeds backend bytes; returns what the client receives.
fn backend(s: &mut HttpSession, chunk: &[u8]) -> (Vec<u8>, BackendProgress) {
    let mut d = Vec::new();
    let p = s.on_backend_bytes(chunk, &mut d);
    (render(chunk, &d), p)
}

fn resume(s: &mut HttpSession) -> Resume {
    match s.failover() {
        Failover::Resume(r) => r,
        Failover::NotResumable(r) => panic!("not resumable: {r}"),
    }
}

/// Deterministic content for downloads.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

const GET: &[u8] = b"GET /file HTTP/1.1\r\nHost: a\r\n\r\n";

fn ok_head(len: usize, etag: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\n\r\n"
    )
    .into_bytes()
}

fn partial_head(from: usize, len: usize, etag: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{len}\r\nETag: {etag}\r\n\r\n",
        len - from,
        len - 1
    )
    .into_bytes()
}

#[test]
fn unanswered_get_is_replayed() {
    let mut s = session();
    assert_eq!(s.on_client_bytes(GET).requests, 1);
    let r = resume(&mut s);
    assert_eq!(r.replay, GET);
    assert_eq!(r.replayed_requests, 1);
    assert!(r.to_client.is_empty());
    let (out, p) = backend(&mut s, b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(out, b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(p.replies, 1);
    assert_eq!(s.public_state().answered, 1);
}

#[test]
fn unanswered_post_gets_502_with_reason() {
    let mut s = session();
    s.on_client_bytes(b"POST /order HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
    let r = resume(&mut s);
    assert!(r.replay.is_empty());
    assert_eq!(r.failed_requests, 1);
    let text = String::from_utf8(r.to_client).unwrap();
    assert!(text.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{text}");
    assert!(text.contains("not idempotent"), "{text}");
    assert!(text.contains("may have processed it"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
    assert_eq!(s.public_state().answered, 1);
    assert_eq!(s.unanswered(), 0);
}

#[test]
fn post_with_idempotency_key_is_replayed() {
    let mut s = session();
    let req =
        b"POST /pay HTTP/1.1\r\nIdempotency-Key: \"8e03978e\"\r\nContent-Length: 3\r\n\r\nabc";
    s.on_client_bytes(req);
    let r = resume(&mut s);
    assert_eq!(r.replay, req);
    assert_eq!(r.failed_requests, 0);
}

#[test]
fn incomplete_post_is_replayed_and_continues() {
    let mut s = session();
    s.on_client_bytes(b"POST /up HTTP/1.1\r\nContent-Length: 6\r\n\r\nabc");
    let r = resume(&mut s);
    assert_eq!(
        r.replay,
        b"POST /up HTTP/1.1\r\nContent-Length: 6\r\n\r\nabc"
    );
    assert_eq!(s.on_client_bytes(b"def").requests, 1);
    let created = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
    let (out, p) = backend(&mut s, created);
    assert_eq!(p.replies, 1);
    assert_eq!(out, created);
}

#[test]
fn pipelined_post_is_answered_in_order() {
    let mut s = session();
    let get2 = b"GET /two HTTP/1.1\r\n\r\n";
    s.on_client_bytes(GET);
    s.on_client_bytes(b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    s.on_client_bytes(get2);
    // Half a head of the first response: held back, so the failover is clean.
    let (out, _) = backend(&mut s, b"HTTP/1.1 200 OK\r\nContent-Le");
    assert!(out.is_empty());
    let r = resume(&mut s);
    assert_eq!(r.replay, [GET, get2.as_slice()].concat());
    assert_eq!((r.replayed_requests, r.failed_requests), (2, 1));
    assert!(
        r.to_client.is_empty(),
        "the 502 waits for the first response"
    );
    let (out, p) = backend(
        &mut s,
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nAHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB",
    );
    let text = String::from_utf8(out).unwrap();
    let a = text.find("\r\n\r\nA").unwrap();
    let bad = text.find("502 Bad Gateway").unwrap();
    let b = text.find("\r\n\r\nB").unwrap();
    assert!(a < bad && bad < b, "{text}");
    assert_eq!(p.replies, 3);
    assert_eq!(s.public_state().answered, 3);
}

#[test]
fn retries_are_bounded() {
    let mut s = HttpSession::new(HttpConfig {
        max_retries: 2,
        ..HttpConfig::default()
    });
    s.on_client_bytes(GET);
    assert_eq!(resume(&mut s).replayed_requests, 1);
    assert_eq!(resume(&mut s).replayed_requests, 1);
    let r = resume(&mut s);
    assert_eq!(r.replayed_requests, 0);
    assert!(String::from_utf8(r.to_client)
        .unwrap()
        .contains("retry limit"));
}

#[test]
fn oversized_request_is_answered_not_replayed() {
    let mut s = HttpSession::new(HttpConfig {
        max_replay_bytes: 16,
        ..HttpConfig::default()
    });
    s.on_client_bytes(GET);
    let r = resume(&mut s);
    assert!(String::from_utf8(r.to_client)
        .unwrap()
        .contains("too large"));
    // An incomplete request that no longer fits cannot be completed elsewhere.
    s.on_client_bytes(b"PUT /big HTTP/1.1\r\nContent-Length: 100\r\n\r\n");
    assert_eq!(
        s.failover(),
        Failover::NotResumable(NotResumable::ReplayOverflow)
    );
}

/// Interrupts a download after `cut` body bytes, fails over, and serves the rest with a
/// 206 split into `pieces`; returns what the client received in total.
fn download_with_failover(len: usize, cut: usize, chunked_206: bool) -> Vec<u8> {
    let body = content(len);
    let etag = "\"v1-abc\"";
    let mut s = session();
    s.on_client_bytes(GET);
    let mut client = Vec::new();
    let first = [ok_head(len, etag), body[..cut].to_vec()].concat();
    let (out, p) = backend(&mut s, &first);
    assert!(p.checkpoint, "a resumable head asks for a cookie");
    client.extend_from_slice(&out);
    assert_eq!(s.public_state().delivered, cut as u64);
    let r = resume(&mut s);
    let replay = String::from_utf8(r.replay).unwrap();
    assert!(
        replay.contains(&format!("Range: bytes={cut}-\r\n")),
        "{replay}"
    );
    assert!(
        replay.contains(&format!("If-Range: {etag}\r\n")),
        "{replay}"
    );
    let mut second = if chunked_206 {
        let mut h = format!(
            "HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\nContent-Range: bytes {cut}-{}/{len}\r\nETag: {etag}\r\n\r\n",
            len - 1
        )
        .into_bytes();
        for c in body[cut..].chunks(7) {
            h.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            h.extend_from_slice(c);
            h.extend_from_slice(b"\r\n");
        }
        h.extend_from_slice(b"0\r\n\r\n");
        h
    } else {
        [partial_head(cut, len, etag), body[cut..].to_vec()].concat()
    };
    second.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
    s.on_client_bytes(b"GET /next HTTP/1.1\r\n\r\n");
    let mut replies = 0;
    for piece in second.chunks(5) {
        let (out, p) = backend(&mut s, piece);
        assert!(!p.close_client);
        replies += p.replies;
        client.extend_from_slice(&out);
    }
    assert_eq!(replies, 2);
    client
}

#[test]
fn interrupted_download_resumes_byte_exact() {
    for chunked in [false, true] {
        for cut in [0, 1, 500, 999] {
            let client = download_with_failover(1000, cut, chunked);
            let want = [ok_head(1000, "\"v1-abc\""), content(1000)].concat();
            assert_eq!(
                &client[..want.len()],
                &want[..],
                "cut {cut} chunked {chunked}"
            );
            assert_eq!(&client[want.len()..], b"HTTP/1.1 204 No Content\r\n\r\n");
        }
    }
}

#[test]
fn resumed_download_can_resume_again() {
    let len = 300;
    let body = content(len);
    let etag = "\"e\"";
    let mut s = session();
    s.on_client_bytes(GET);
    let mut client = backend(&mut s, &[ok_head(len, etag), body[..100].to_vec()].concat()).0;
    resume(&mut s);
    client.extend(
        backend(
            &mut s,
            &[partial_head(100, len, etag), body[100..200].to_vec()].concat(),
        )
        .0,
    );
    let r = resume(&mut s);
    assert!(String::from_utf8(r.replay)
        .unwrap()
        .contains("Range: bytes=200-\r\n"));
    client.extend(
        backend(
            &mut s,
            &[partial_head(200, len, etag), body[200..].to_vec()].concat(),
        )
        .0,
    );
    assert_eq!(client, [ok_head(len, etag), body].concat());
    assert_eq!(s.public_state().answered, 1);
}

#[test]
fn changed_validator_closes_the_client() {
    let len = 100;
    let mut s = session();
    s.on_client_bytes(GET);
    backend(&mut s, &[ok_head(len, "\"old\""), content(40)].concat());
    resume(&mut s);
    // The representation changed: the backend ignores If-Range and sends 200.
    let (out, p) = backend(&mut s, &[ok_head(len, "\"new\""), content(len)].concat());
    assert!(out.is_empty(), "nothing of the new body is spliced");
    assert!(p.close_client);
    // A 206 of another representation or offset is refused too.
    for bad in [
        partial_head(40, len, "\"new\""),
        partial_head(41, len, "\"old\""),
    ] {
        let mut s = session();
        s.on_client_bytes(GET);
        backend(&mut s, &[ok_head(len, "\"old\""), content(40)].concat());
        resume(&mut s);
        let (out, p) = backend(&mut s, &bad);
        assert!(out.is_empty() && p.close_client);
        assert!(matches!(s.failover(), Failover::NotResumable(_)));
    }
}

#[test]
fn interim_response_before_the_206_is_swallowed() {
    let mut s = session();
    s.on_client_bytes(GET);
    backend(&mut s, &[ok_head(10, "\"a\""), content(4)].concat());
    resume(&mut s);
    let (out, p) = backend(
        &mut s,
        &[
            b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n".to_vec(),
            partial_head(4, 10, "\"a\""),
            content(10)[4..].to_vec(),
        ]
        .concat(),
    );
    assert_eq!(out, &content(10)[4..]);
    assert_eq!(p.replies, 1);
    assert!(!p.close_client);
}

#[test]
fn short_chunked_206_closes_the_client() {
    let mut s = session();
    s.on_client_bytes(GET);
    backend(&mut s, &[ok_head(10, "\"a\""), content(4)].concat());
    resume(&mut s);
    let (out, p) = backend(
        &mut s,
        b"HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\nContent-Range: bytes 4-9/10\r\nETag: \"a\"\r\n\r\n2\r\nxy\r\n0\r\n\r\n",
    );
    assert_eq!(out, b"xy");
    assert!(p.close_client);
}

#[test]
fn partial_bodies_that_cannot_resume() {
    let cases: &[(&[u8], &[u8])] = &[
        // Chunked original.
        (GET, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"a\"\r\nAccept-Ranges: bytes\r\n\r\n5\r\nab"),
        // No validator.
        (GET, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nAccept-Ranges: bytes\r\n\r\nab"),
        // Weak validator.
        (GET, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nETag: W/\"a\"\r\nAccept-Ranges: bytes\r\n\r\nab"),
        // No ranges.
        (GET, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nETag: \"a\"\r\n\r\nab"),
        // The client asked for a range itself.
        (b"GET / HTTP/1.1\r\nRange: bytes=0-8\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nETag: \"a\"\r\nAccept-Ranges: bytes\r\n\r\nab"),
        // Close-delimited.
        (GET, b"HTTP/1.0 200 OK\r\nETag: \"a\"\r\n\r\nab"),
        // A POST's response.
        (b"POST / HTTP/1.1\r\nIdempotency-Key: k\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nETag: \"a\"\r\nAccept-Ranges: bytes\r\n\r\nab"),
    ];
    for (req, resp) in cases {
        let mut s = session();
        s.on_client_bytes(req);
        backend(&mut s, resp);
        assert_eq!(
            s.failover(),
            Failover::NotResumable(NotResumable::PartialReply),
            "{}",
            String::from_utf8_lossy(resp)
        );
    }
}

#[test]
fn last_modified_validator_resumes() {
    let mut s = session();
    s.on_client_bytes(GET);
    let lm = "Sun, 06 Nov 1994 08:49:37 GMT";
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nLast-Modified: {lm}\r\nDate: Mon, 07 Nov 1994 08:49:37 GMT\r\nAccept-Ranges: bytes\r\n\r\n");
    backend(&mut s, &[head.as_bytes(), b"0123"].concat());
    let r = resume(&mut s);
    assert!(String::from_utf8(r.replay)
        .unwrap()
        .contains(&format!("If-Range: {lm}\r\n")));
    let (out, p) = backend(
        &mut s,
        format!("HTTP/1.1 206 Partial Content\r\nContent-Length: 6\r\nContent-Range: bytes 4-9/10\r\nLast-Modified: {lm}\r\n\r\n456789").as_bytes(),
    );
    assert_eq!(out, b"456789");
    assert_eq!(p.replies, 1);
}

#[test]
fn bodiless_responses_and_interim_ones() {
    let mut s = session();
    s.on_client_bytes(b"HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\nPUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx");
    let stream = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n";
    let (out, p) = backend(&mut s, stream);
    assert_eq!(out, stream);
    assert_eq!(p.replies, 2);
    // The PUT is still unanswered after its 100 Continue: replayed.
    let r = resume(&mut s);
    assert!(r.replay.starts_with(b"PUT / HTTP/1.1"));
}

#[test]
fn upgrade_turns_into_a_tunnel() {
    let mut s = session();
    s.on_client_bytes(b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    let stream = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello";
    let (out, _) = backend(&mut s, stream);
    assert_eq!(out, stream);
    assert_eq!(
        s.failover(),
        Failover::NotResumable(NotResumable::Mode("upgrade"))
    );
}

#[test]
fn pe_checkpoint_carries_the_validator() {
    let mut pe = session();
    pe.on_client_bytes(GET);
    let mut d = Vec::new();
    let p = pe.on_backend_bytes(&[ok_head(10, "\"t\""), b"abc".to_vec()].concat(), &mut d);
    assert!(p.checkpoint);
    let parts = pe.checkpoint();
    let rec = ResumeRecord::decode(&parts.immutable).unwrap();
    assert_eq!(
        rec,
        ResumeRecord {
            total: 10,
            validator: Validator::ETag(b"\"t\"".to_vec())
        }
    );
    let mut fresh = session();
    fresh.restore(&parts).unwrap();
    assert_eq!(fresh.restored_record(), Some(&rec));
    assert_eq!(fresh.public_state().answered, 0);
    // Hostile parts are refused.
    let mut bad = parts.clone();
    bad.immutable.push(0);
    assert!(session().restore(&bad).is_err());
    let mut bad = parts;
    bad.private = b"x".to_vec();
    assert!(session().restore(&bad).is_err());
}

#[test]
fn framing_errors_report_a_status() {
    let mut s = session();
    let p = s.on_client_bytes(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n");
    match p.error {
        Some(crate::PluginError::Http(e)) => assert_eq!(e.status(true), 400),
        other => panic!("{other:?}"),
    }
    // From then on everything is relayed and the session cannot move.
    let (out, _) = backend(&mut s, b"anything");
    assert_eq!(out, b"anything");
    assert!(matches!(
        s.failover(),
        Failover::NotResumable(NotResumable::Broken(_))
    ));
}

fn responses() -> impl Strategy<Value = (Vec<u8>, usize)> {
    let one = (0..4u8, proptest::collection::vec(any::<u8>(), 0..30)).prop_map(|(k, body)| {
        let mut m = Vec::new();
        match k {
            0 => {
                m.extend_from_slice(
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
                );
                m.extend_from_slice(&body);
            }
            1 => {
                m.extend_from_slice(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                for c in body.chunks(4) {
                    m.extend_from_slice(format!("{:X}\r\n", c.len()).as_bytes());
                    m.extend_from_slice(c);
                    m.extend_from_slice(b"\r\n");
                }
                m.extend_from_slice(b"0\r\n\r\n");
            }
            2 => {
                m.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
            }
            _ => m.extend_from_slice(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"),
        }
        m
    });
    proptest::collection::vec(one, 1..6).prop_map(|v| {
        let n = v.len();
        (v.concat(), n)
    })
}

fn split(input: &[u8], cuts: &[prop::sample::Index]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut last = 0;
    for p in points {
        out.push(input[last..p].to_vec());
        last = p;
    }
    out.push(input[last..].to_vec());
    out
}

proptest! {
    #[test]
    fn relay_is_transparent_under_any_split(
        (stream, n) in responses(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut s = session();
        s.on_client_bytes(&GET.repeat(n));
        let mut client = Vec::new();
        let mut replies = 0;
        for c in split(&stream, &cuts) {
            let (out, p) = backend(&mut s, &c);
            prop_assert!(p.error.is_none());
            replies += p.replies;
            client.extend_from_slice(&out);
        }
        prop_assert_eq!(client, stream);
        prop_assert_eq!(replies, n as u64);
        prop_assert_eq!(s.unanswered(), 0);
    }

    #[test]
    fn download_survives_failovers_at_any_point(
        len in 1usize..400,
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 1..4),
        piece in 1usize..64,
    ) {
        let body = content(len);
        let etag = "\"p\"";
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(len)).collect();
        points.sort_unstable();
        points.dedup();
        let mut s = session();
        s.on_client_bytes(GET);
        let mut client = Vec::new();
        let mut from = 0;
        let mut stream = ok_head(len, etag);
        for &cut in points.iter().chain(std::iter::once(&len)) {
            stream.extend_from_slice(&body[from..cut]);
            for c in stream.chunks(piece) {
                let (out, p) = backend(&mut s, c);
                prop_assert!(!p.close_client);
                client.extend_from_slice(&out);
            }
            if cut == len {
                break;
            }
            let r = resume(&mut s);
            let want = format!("bytes={cut}-");
            prop_assert!(String::from_utf8(r.replay).unwrap().contains(&want));
            from = cut;
            stream = partial_head(cut, len, etag);
        }
        prop_assert_eq!(client, [ok_head(len, etag), body].concat());
        prop_assert_eq!(s.public_state().answered, 1);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        ops in proptest::collection::vec((0..3u8, proptest::collection::vec(any::<u8>(), 0..64)), 0..24),
    ) {
        let mut s = HttpSession::new(HttpConfig { max_replay_bytes: 256, ..HttpConfig::default() });
        for (op, bytes) in ops {
            match op {
                0 => { s.on_client_bytes(&bytes); }
                1 => {
                    let mut d = Vec::new();
                    s.on_backend_bytes(&bytes, &mut d);
                    for x in &d {
                        if let crate::Delivery::Forward(r) = x {
                            prop_assert!(r.end <= bytes.len());
                        }
                    }
                }
                _ => {
                    if let Failover::Resume(r) = s.failover() {
                        prop_assert!(r.replay.len() <= 256 + 128);
                    }
                }
            }
        }
    }
}

fn cooperative() -> HttpConfig {
    HttpConfig {
        cooperative: Some(super::Cooperative {
            header: "X-Backend-Session".into(),
            restore_path: "/.session".into(),
        }),
        ..HttpConfig::default()
    }
}

#[test]
fn cooperative_state_moves_through_the_private_part() {
    let mut pe = HttpSession::new(cooperative());
    pe.on_client_bytes(GET);
    let resp = b"HTTP/1.1 200 OK\r\nX-Backend-Session: cart=42; v=7\r\nContent-Length: 2\r\n\r\nok";
    let (out, p) = backend(&mut pe, resp);
    assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert!(p.checkpoint);
    let parts = pe.checkpoint();
    assert_eq!(parts.private, b"cart=42; v=7");

    // Another PE restores it with a request of its own and swallows the answer.
    let mut next = HttpSession::new(cooperative());
    let r = next.restore(&parts).unwrap();
    assert_eq!(
        r.prelude,
        b"GET /.session HTTP/1.1\r\nHost: poolgate\r\nX-Backend-Session: cart=42; v=7\r\n\r\n"
            .to_vec()
    );
    assert_eq!(r.swallow_replies, 1);
    next.on_client_bytes(GET);
    let stream = b"HTTP/1.1 204 No Content\r\nX-Backend-Session: cart=42; v=8\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    let mut client = Vec::new();
    let mut replies = 0;
    for c in stream.chunks(9) {
        let (out, p) = backend(&mut next, c);
        assert!(p.error.is_none());
        replies += p.replies;
        client.extend_from_slice(&out);
    }
    assert_eq!(client, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(replies, 1);
    assert_eq!(next.checkpoint().private, b"cart=42; v=8");

    // A backend that refuses the state: the PE closes the session.
    let mut refused = HttpSession::new(cooperative());
    refused.restore(&parts).unwrap();
    let (_, p) = backend(
        &mut refused,
        b"HTTP/1.1 410 Gone\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(matches!(
        p.error,
        Some(crate::PluginError::PreludeRejected(_))
    ));
    // Without the cooperative config, a private part is refused; so is a value with CRLF.
    assert!(session().restore(&parts).is_err());
    let mut bad = parts;
    bad.private = b"x\r\nEvil: 1".to_vec();
    assert!(HttpSession::new(cooperative()).restore(&bad).is_err());
}

#[test]
fn continue_before_the_body_is_passed_on_and_tracking_goes_on() {
    let mut s = session();
    let head = b"PUT /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    assert_eq!(s.on_client_bytes(head).requests, 0);
    let (out, p) = backend(&mut s, b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(p.error, None);
    assert_eq!(p.replies, 0);
    assert_eq!(s.on_client_bytes(b"hello").requests, 1);
    let final_answer = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
    let (out, p) = backend(&mut s, final_answer);
    assert_eq!(out, final_answer);
    assert_eq!((p.replies, p.error), (1, None));
    assert_eq!(s.public_state().answered, 1);
    // Still tracked: the next request is replayed on failover.
    s.on_client_bytes(GET);
    assert_eq!(resume(&mut s).replay, GET);
}

#[test]
fn a_final_answer_before_the_body_ends_stops_tracking_without_an_error() {
    let mut s = session();
    s.on_client_bytes(b"POST /big HTTP/1.1\r\nContent-Length: 100000\r\n\r\nabc");
    let early =
        b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbig!";
    let (out, p) = backend(&mut s, early);
    assert_eq!(out, early);
    assert_eq!(p.error, None);
    assert_eq!(
        s.failover(),
        Failover::NotResumable(NotResumable::EarlyReply)
    );
    // The rest of the body, and anything after, passes without complaint.
    assert_eq!(s.on_client_bytes(b"more body").error, None);
    let (out, p) = backend(&mut s, b"tail");
    assert_eq!((out.as_slice(), p.error), (&b"tail"[..], None));
}

#[test]
fn a_reply_with_no_request_begun_is_lost_track() {
    let mut s = session();
    let (out, p) = backend(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(p.error, Some(crate::PluginError::UnsolicitedReply));
}
