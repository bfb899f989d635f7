//! Interoperability with webrtc-rs's SCTP (`webrtc-sctp` crate, as published) over real
//! UDP sockets on loopback: each side starts the handshake once; messages of several
//! sizes (fragmented too) on several streams, ordered and unordered, both ways; then a
//! graceful shutdown started by either side. Bytes, PPIDs and per-stream order are
//! checked. Stream resets (RFC 6525 RE-CONFIG) both ways: webrtc-sctp closing a stream,
//! and our `reset_streams`.
//!
//! What webrtc-sctp cannot do, and so is not tested beyond what is stated here:
//! - It only sends the WebRTC PPIDs (50, 51, 53, 56, 57; anything else goes out as 58):
//!   it cannot send ASAP (11) or ENRP (12). It receives any PPID, reporting unknown ones
//!   as `Unknown`; the test checks that our PPID 11 arrives as such.
//! - It never sends a HEARTBEAT (it only answers them) and never gives up retransmitting,
//!   so failure detection cannot be exercised against it; our heartbeats are answered
//!   (checked: our engine counts HEARTBEAT ACKs).
//! - Its SCTP ports are fixed in its configuration and must mirror ours exactly.
//! - It runs one association per `Conn` (here a connected UDP socket).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sctp::wire::ReconfigResult;
use sctp::{AssocHandle, CloseReason, Endpoint, EndpointConfig, Event, ResetDirection};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use webrtc_sctp::association::{Association as WAssociation, Config as WConfig};
use webrtc_sctp::chunk::chunk_payload_data::PayloadProtocolIdentifier as Ppi;
use webrtc_sctp::stream::{ReliabilityType, Stream as WStream};

/// SCTP port of our side.
const OUR_PORT: u16 = 5001;
/// SCTP port of webrtc-sctp's side.
const THEIR_PORT: u16 = 5000;
/// Largest message of the test (webrtc-sctp's default `max_message_size` is 65,536).
const MAX_MSG: usize = 60_000;
/// Every wait of the test ends by this.
const DEADLINE: Duration = Duration::from_secs(20);

/// One message as both sides see it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg {
    stream: u16,
    ppid: u32,
    ordered: bool,
    data: Bytes,
}

/// Messages of several sizes — single packets and fragmented ones (the PMTUs below are
/// about 1,200 bytes) — on two ordered streams and one unordered stream, with both
/// PPIDs webrtc-sctp knows for user data.
fn workload(seed: u8) -> Vec<Msg> {
    let sizes = [1usize, 100, 1_100, 3_000, 20_000, MAX_MSG];
    let mut out = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        for (stream, ordered) in [(0u16, true), (1, true), (2, false)] {
            let fill = seed
                .wrapping_add(i as u8)
                .wrapping_mul(31)
                .wrapping_add(stream as u8);
            let data: Vec<u8> = (0..n).map(|k| fill.wrapping_add(k as u8)).collect();
            out.push(Msg {
                stream,
                ppid: if (i + stream as usize) % 2 == 0 {
                    51
                } else {
                    53
                },
                ordered,
                data: Bytes::from(data),
            });
        }
    }
    out
}

fn ppi_of(ppid: u32) -> Ppi {
    match ppid {
        51 => Ppi::String,
        53 => Ppi::Binary,
        _ => Ppi::Unknown,
    }
}

fn ppid_of(p: Ppi) -> u32 {
    match p {
        Ppi::Dcep => 50,
        Ppi::String => 51,
        Ppi::Binary => 53,
        Ppi::StringEmpty => 56,
        Ppi::BinaryEmpty => 57,
        Ppi::Unknown => 0,
    }
}

/// Per-stream order check: ordered streams must match exactly; an unordered stream
/// must hold the same messages in any order.
fn assert_delivered(got: &[Msg], sent: &[Msg]) {
    let streams: Vec<u16> = {
        let mut s: Vec<u16> = sent.iter().map(|m| m.stream).collect();
        s.sort_unstable();
        s.dedup();
        s
    };
    assert_eq!(got.len(), sent.len(), "message count");
    for sid in streams {
        let want: Vec<&Msg> = sent.iter().filter(|m| m.stream == sid).collect();
        let mut have: Vec<&Msg> = got.iter().filter(|m| m.stream == sid).collect();
        assert_eq!(have.len(), want.len(), "messages on stream {sid}");
        if want.first().is_some_and(|m| m.ordered) {
            for (h, w) in have.iter().zip(&want) {
                assert_eq!(h.data.len(), w.data.len(), "stream {sid} order");
                assert_eq!(h.data, w.data, "stream {sid} bytes");
                assert_eq!(h.ppid, w.ppid, "stream {sid} ppid");
            }
        } else {
            let mut want = want;
            want.sort_by(|a, b| a.data.cmp(&b.data));
            have.sort_by(|a, b| a.data.cmp(&b.data));
            for (h, w) in have.iter().zip(&want) {
                assert_eq!(h.data, w.data, "stream {sid} bytes");
                assert_eq!(h.ppid, w.ppid, "stream {sid} ppid");
            }
        }
    }
}

/// Our sans-IO endpoint driven over a UDP socket, in the test's own task.
struct Ours {
    ep: Endpoint,
    sock: UdpSocket,
    epoch_std: std::time::Instant,
    epoch: Instant,
    events: Vec<(AssocHandle, Event)>,
    buf: Vec<u8>,
}

impl Ours {
    async fn bind() -> Ours {
        let mut c = EndpointConfig {
            listen_ports: vec![OUR_PORT],
            ..EndpointConfig::default()
        };
        c.association.pmtu = 1_200;
        c.association.heartbeat_interval = Some(Duration::from_millis(300));
        c.association.rto_initial = Duration::from_millis(300);
        c.association.rto_min = Duration::from_millis(100);
        Ours {
            ep: Endpoint::new(c, 11).expect("config"),
            sock: UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
            epoch_std: std::time::Instant::now(),
            epoch: Instant::now(),
            events: Vec::new(),
            buf: vec![0u8; 65_536],
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("local addr")
    }

    fn now(&self) -> std::time::Instant {
        self.epoch_std + self.epoch.elapsed()
    }

    async fn flush(&mut self) {
        let now = self.now();
        while let Some(t) = self.ep.poll_transmit(now) {
            self.sock
                .send_to(&t.contents, t.destination)
                .await
                .expect("send");
        }
        while let Some(e) = self.ep.poll_event() {
            self.events.push(e);
        }
    }

    /// Runs the endpoint until `done` holds for the events seen so far.
    async fn run_until(
        &mut self,
        what: &str,
        mut done: impl FnMut(&[(AssocHandle, Event)]) -> bool,
    ) {
        let end = Instant::now() + DEADLINE;
        loop {
            self.flush().await;
            if done(&self.events) {
                return;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}");
            let wake = self
                .ep
                .poll_timeout()
                .map(|t| self.epoch + t.saturating_duration_since(self.epoch_std))
                .unwrap_or(end)
                .min(end);
            tokio::select! {
                r = self.sock.recv_from(&mut self.buf) => {
                    let (n, from) = r.expect("recv");
                    let now = self.now();
                    let local = Some(self.addr());
                    self.ep.handle_datagram(now, local, from, &self.buf[..n]);
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = self.now();
                    self.ep.handle_timeout(now);
                }
            }
        }
    }

    fn messages(&self, h: AssocHandle) -> Vec<Msg> {
        self.events
            .iter()
            .filter(|(x, _)| *x == h)
            .filter_map(|(_, e)| match e {
                Event::Data {
                    stream,
                    ppid,
                    ordered,
                    bytes,
                } => Some(Msg {
                    stream: *stream,
                    ppid: *ppid,
                    ordered: *ordered,
                    data: bytes.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    fn closed(&self, h: AssocHandle) -> Option<&CloseReason> {
        self.events.iter().find_map(|(x, e)| match e {
            Event::Closed { reason } if *x == h => Some(reason),
            _ => None,
        })
    }
}

async fn webrtc_socket(peer: SocketAddr) -> (Arc<UdpSocket>, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    s.connect(peer).await.expect("connect");
    let a = s.local_addr().expect("local addr");
    (Arc::new(s), a)
}

fn webrtc_config(conn: Arc<UdpSocket>) -> WConfig {
    WConfig {
        net_conn: conn,
        max_receive_buffer_size: 0,
        max_message_size: 0,
        mtu: 1_200,
        name: "webrtc".into(),
        local_port: THEIR_PORT,
        remote_port: OUR_PORT,
    }
}

/// Reads `n` messages from one webrtc-sctp stream.
async fn read_stream(s: Arc<WStream>, n: usize) -> (Arc<WStream>, Vec<Msg>) {
    let mut buf = vec![0u8; 65_536];
    let mut out = Vec::new();
    while out.len() < n {
        let (len, ppi) = s.read_sctp(&mut buf).await.expect("webrtc read");
        out.push(Msg {
            stream: s.stream_identifier(),
            ppid: ppid_of(ppi),
            // webrtc-sctp does not report the U bit of what it reads.
            ordered: true,
            data: Bytes::copy_from_slice(&buf[..len]),
        });
    }
    (s, out)
}

/// webrtc-sctp's side: accepts the streams we open, reads what `expect` says per
/// stream, then sends `reply` (its own streams, ordered or not).
async fn webrtc_exchange(
    a: Arc<WAssociation>,
    expect: HashMap<u16, usize>,
    reply: Vec<Msg>,
) -> Vec<Msg> {
    let mut readers = Vec::new();
    for _ in 0..expect.len() {
        let s = a.accept_stream().await.expect("accept stream");
        let n = expect[&s.stream_identifier()];
        readers.push(tokio::spawn(read_stream(s, n)));
    }
    let mut got = Vec::new();
    // webrtc-sctp's streams are two-way objects: the ones it accepted carry its replies.
    let mut streams: HashMap<u16, Arc<WStream>> = HashMap::new();
    for r in readers {
        let (s, msgs) = r.await.expect("reader");
        got.extend(msgs);
        streams.insert(s.stream_identifier(), s);
    }
    let mut configured = std::collections::HashSet::new();
    for m in &reply {
        let s = match streams.get(&m.stream) {
            Some(s) => s.clone(),
            None => {
                let s = a
                    .open_stream(m.stream, ppi_of(m.ppid))
                    .await
                    .expect("open stream");
                streams.insert(m.stream, s.clone());
                s
            }
        };
        if configured.insert(m.stream) {
            s.set_reliability_params(!m.ordered, ReliabilityType::Reliable, 0);
        }
        s.write_sctp(&m.data, ppi_of(m.ppid))
            .await
            .expect("webrtc write");
    }
    got
}

fn per_stream(msgs: &[Msg]) -> HashMap<u16, usize> {
    let mut m = HashMap::new();
    for x in msgs {
        *m.entry(x.stream).or_insert(0) += 1;
    }
    m
}

fn send_all(ours: &mut Ours, h: AssocHandle, msgs: &[Msg]) {
    for m in msgs {
        ours.ep
            .send(h, m.stream, m.ppid, m.ordered, m.data.clone())
            .expect("our send");
    }
}

/// The order webrtc saw (unordered stream: any), with the U bit taken from what we sent.
fn as_seen_by_webrtc(got: Vec<Msg>, sent: &[Msg]) -> Vec<Msg> {
    got.into_iter()
        .map(|mut m| {
            m.ordered = sent.iter().any(|s| s.stream == m.stream && s.ordered);
            m
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_connect_exchange_and_shut_down() {
    let mut ours = Ours::bind().await;
    let (conn, their_addr) = webrtc_socket(ours.addr()).await;
    let server = tokio::spawn(WAssociation::server(webrtc_config(conn)));

    let now = ours.now();
    let h = ours
        .ep
        .connect(now, &[their_addr], OUR_PORT, THEIR_PORT)
        .expect("connect");
    ours.run_until("our handshake", |ev| {
        ev.iter().any(|(x, e)| *x == h && *e == Event::Connected)
    })
    .await;
    let a = Arc::new(
        tokio::time::timeout(DEADLINE, server)
            .await
            .expect("webrtc handshake in time")
            .expect("join")
            .expect("webrtc server"),
    );

    let to_them = workload(1);
    let from_them = workload(2);
    // One message with ASAP's PPID: webrtc-sctp takes it and reports it as unknown.
    let mut to_them_all = to_them.clone();
    to_them_all.push(Msg {
        stream: 3,
        ppid: 11,
        ordered: true,
        data: Bytes::from_static(b"asap"),
    });
    send_all(&mut ours, h, &to_them_all);
    let them = tokio::spawn(webrtc_exchange(
        a.clone(),
        per_stream(&to_them_all),
        from_them.clone(),
    ));
    let want = from_them.len();
    ours.run_until("webrtc's messages", |ev| {
        ev.iter()
            .filter(|(x, e)| *x == h && matches!(e, Event::Data { .. }))
            .count()
            >= want
    })
    .await;
    let got_them = tokio::time::timeout(DEADLINE, them)
        .await
        .expect("webrtc exchange in time")
        .expect("join");

    let asap: Vec<&Msg> = got_them.iter().filter(|m| m.stream == 3).collect();
    assert_eq!(asap.len(), 1);
    assert_eq!(asap[0].data, Bytes::from_static(b"asap"));
    assert_eq!(
        asap[0].ppid, 0,
        "PPID 11 reads back as Unknown in webrtc-sctp"
    );
    let got_them: Vec<Msg> = got_them.into_iter().filter(|m| m.stream != 3).collect();
    assert_delivered(&as_seen_by_webrtc(got_them, &to_them), &to_them);
    let got_ours = ours.messages(h);
    assert_delivered(&got_ours, &from_them);
    for m in &got_ours {
        assert_eq!(m.ordered, m.stream != 2, "U bit as webrtc-sctp sent it");
    }

    // Idle a while: our heartbeats are answered.
    let t = Instant::now() + Duration::from_millis(800);
    ours.run_until("heartbeat round", |_| Instant::now() >= t)
        .await;
    let acks = ours
        .ep
        .association_ref(h)
        .map(|x| x.stats().heartbeat_acks_received)
        .unwrap_or(0);
    assert!(acks >= 1, "webrtc-sctp answered no HEARTBEAT");

    // We shut down; webrtc-sctp completes it.
    let now = ours.now();
    ours.ep.shutdown(now, h);
    ours.run_until("shutdown", |ev| {
        ev.iter()
            .any(|(x, e)| *x == h && matches!(e, Event::Closed { .. }))
    })
    .await;
    assert_eq!(ours.closed(h), Some(&CloseReason::Shutdown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn they_connect_exchange_and_shut_down() {
    let mut ours = Ours::bind().await;
    let (conn, _their_addr) = webrtc_socket(ours.addr()).await;
    let client = tokio::spawn(WAssociation::client(webrtc_config(conn)));
    ours.run_until("incoming handshake", |ev| {
        ev.iter().any(|(_, e)| *e == Event::Connected)
    })
    .await;
    let h = ours
        .events
        .iter()
        .find(|(_, e)| *e == Event::Connected)
        .map(|(h, _)| *h)
        .expect("connected");
    let a = Arc::new(
        tokio::time::timeout(DEADLINE, client)
            .await
            .expect("webrtc handshake in time")
            .expect("join")
            .expect("webrtc client"),
    );

    // webrtc-sctp speaks first this time.
    let to_them = workload(3);
    let from_them = workload(4);
    let them = tokio::spawn(webrtc_exchange(
        a.clone(),
        per_stream(&to_them),
        from_them.clone(),
    ));
    send_all(&mut ours, h, &to_them);
    let want = from_them.len();
    ours.run_until("webrtc's messages", |ev| {
        ev.iter()
            .filter(|(x, e)| *x == h && matches!(e, Event::Data { .. }))
            .count()
            >= want
    })
    .await;
    let got_them = tokio::time::timeout(DEADLINE, them)
        .await
        .expect("webrtc exchange in time")
        .expect("join");
    assert_delivered(&as_seen_by_webrtc(got_them, &to_them), &to_them);
    let got_ours = ours.messages(h);
    assert_delivered(&got_ours, &from_them);
    for m in &got_ours {
        assert_eq!(m.ordered, m.stream != 2, "U bit as webrtc-sctp sent it");
    }

    // webrtc-sctp shuts down; we complete it.
    let shut = {
        let a = a.clone();
        tokio::spawn(async move { a.shutdown().await })
    };
    ours.run_until("peer's shutdown", |ev| {
        ev.iter()
            .any(|(x, e)| *x == h && matches!(e, Event::Closed { .. }))
    })
    .await;
    assert_eq!(ours.closed(h), Some(&CloseReason::Shutdown));
    // Our SHUTDOWN COMPLETE may still be queued: send it, then webrtc's shutdown returns.
    ours.flush().await;
    tokio::time::timeout(DEADLINE, shut)
        .await
        .expect("webrtc shutdown in time")
        .expect("join")
        .expect("webrtc shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_abort_ends_their_association() {
    let mut ours = Ours::bind().await;
    let (conn, their_addr) = webrtc_socket(ours.addr()).await;
    let server = tokio::spawn(WAssociation::server(webrtc_config(conn)));
    let now = ours.now();
    let h = ours
        .ep
        .connect(now, &[their_addr], OUR_PORT, THEIR_PORT)
        .expect("connect");
    ours.run_until("our handshake", |ev| {
        ev.iter().any(|(x, e)| *x == h && *e == Event::Connected)
    })
    .await;
    let a = tokio::time::timeout(DEADLINE, server)
        .await
        .expect("webrtc handshake in time")
        .expect("join")
        .expect("webrtc server");
    ours.ep
        .send(h, 0, 53, true, Bytes::from_static(b"before abort"))
        .expect("send");
    ours.flush().await;
    let s = tokio::time::timeout(DEADLINE, a.accept_stream())
        .await
        .expect("stream in time")
        .expect("stream");
    let mut buf = vec![0u8; 1024];
    let (n, ppi) = s.read_sctp(&mut buf).await.expect("first read");
    assert_eq!(&buf[..n], b"before abort");
    assert_eq!(ppi, Ppi::Binary);

    ours.ep.abort(h, b"test abort");
    ours.flush().await;
    assert!(
        matches!(ours.closed(h), Some(CloseReason::LocalAbort(_))),
        "{:?}",
        ours.closed(h)
    );
    // webrtc-sctp closes on ABORT: the stream's read ends (0 bytes or an error).
    let r = tokio::time::timeout(DEADLINE, s.read_sctp(&mut buf))
        .await
        .expect("webrtc noticed the ABORT in time");
    assert!(matches!(r, Ok((0, _)) | Err(_)), "read after ABORT: {r:?}");
}

fn resets_seen(ours: &Ours, h: AssocHandle) -> Vec<(ResetDirection, Vec<u16>, ReconfigResult)> {
    ours.events
        .iter()
        .filter(|(x, _)| *x == h)
        .filter_map(|(_, e)| match e {
            Event::StreamsReset {
                direction,
                streams,
                result,
            } => Some((*direction, streams.clone(), *result)),
            _ => None,
        })
        .collect()
}

/// Stream resets (RFC 6525) both ways: webrtc-sctp closing a stream sends an Outgoing
/// SSN Reset Request, which we perform and answer (it does not ask again); our
/// `reset_streams` makes webrtc-sctp end its reading stream and mirror the reset, and a
/// message sent afterwards, numbered from SSN 0 again, opens a fresh stream there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_resets_both_ways() {
    let mut ours = Ours::bind().await;
    let (conn, their_addr) = webrtc_socket(ours.addr()).await;
    let server = tokio::spawn(WAssociation::server(webrtc_config(conn)));
    let now = ours.now();
    let h = ours
        .ep
        .connect(now, &[their_addr], OUR_PORT, THEIR_PORT)
        .expect("connect");
    ours.run_until("our handshake", |ev| {
        ev.iter().any(|(x, e)| *x == h && *e == Event::Connected)
    })
    .await;
    let a = Arc::new(
        tokio::time::timeout(DEADLINE, server)
            .await
            .expect("webrtc handshake in time")
            .expect("join")
            .expect("webrtc server"),
    );

    // 1. webrtc-sctp writes on stream 1, then closes it.
    let closer = {
        let a = a.clone();
        tokio::spawn(async move {
            let s = a.open_stream(1, Ppi::Binary).await.expect("open stream");
            for i in 0..3u8 {
                s.write_sctp(&Bytes::from(vec![i; 10]), Ppi::Binary)
                    .await
                    .expect("webrtc write");
            }
            s.shutdown(std::net::Shutdown::Both).await
        })
    };
    ours.run_until("webrtc's reset of stream 1", |ev| {
        ev.iter()
            .any(|(x, e)| *x == h && matches!(e, Event::StreamsReset { .. }))
    })
    .await;
    tokio::time::timeout(DEADLINE, closer)
        .await
        .expect("webrtc close in time")
        .expect("join")
        .expect("webrtc stream close");
    let got: Vec<Bytes> = ours.messages(h).into_iter().map(|m| m.data).collect();
    assert_eq!(
        got,
        (0..3u8)
            .map(|i| Bytes::from(vec![i; 10]))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        resets_seen(&ours, h),
        vec![(
            ResetDirection::Incoming,
            vec![1],
            ReconfigResult::SuccessPerformed
        )]
    );
    // webrtc-sctp retransmits an unanswered RE-CONFIG after its RTO (at least 1 s): it
    // took our answer, so nothing comes again.
    let t = Instant::now() + Duration::from_millis(1_300);
    ours.run_until("webrtc's RTO", |_| Instant::now() >= t)
        .await;
    let stats = ours.ep.association_ref(h).expect("alive").stats().clone();
    assert_eq!(stats.reconfig_requests_received, 1, "{stats:?}");
    assert_eq!(stats.reconfig_responses_sent, 1);
    assert_eq!(stats.reconfig_malformed, 0);

    // 2. We send on stream 4, then reset it.
    for i in 0..2u8 {
        ours.ep
            .send(h, 4, 53, true, Bytes::from(vec![b'a', i]))
            .expect("send");
    }
    let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = {
        let (a, read) = (a.clone(), read.clone());
        tokio::spawn(async move {
            let s = a.accept_stream().await.expect("accept stream 4");
            let mut buf = vec![0u8; 1024];
            let mut got = Vec::new();
            for _ in 0..2 {
                let (n, _) = s.read_sctp(&mut buf).await.expect("read");
                got.push(buf[..n].to_vec());
                read.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            // The reset ends this stream for reading: EOF or an error.
            let end = s.read_sctp(&mut buf).await;
            (got, format!("{end:?}"))
        })
    };
    // webrtc-sctp drops unread data of a stream when it is reset: let it read first.
    let end = Instant::now() + DEADLINE;
    while read.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        let t = Instant::now() + Duration::from_millis(20);
        ours.run_until("webrtc reading stream 4", |_| Instant::now() >= t)
            .await;
        assert!(Instant::now() < end, "webrtc did not read stream 4");
    }
    ours.ep.reset_streams(h, &[4]).expect("reset");
    ours.run_until("the reset of stream 4 both ways", |ev| {
        let n = ev
            .iter()
            .filter(|(x, e)| *x == h && matches!(e, Event::StreamsReset { .. }))
            .count();
        n >= 3
    })
    .await;
    let mut r = resets_seen(&ours, h);
    r.remove(0);
    r.sort_by_key(|x| x.0 == ResetDirection::Incoming);
    assert_eq!(
        r,
        vec![
            (
                ResetDirection::Outgoing,
                vec![4],
                ReconfigResult::SuccessPerformed
            ),
            // webrtc-sctp mirrors it, resetting its own outgoing stream 4.
            (
                ResetDirection::Incoming,
                vec![4],
                ReconfigResult::SuccessPerformed
            ),
        ]
    );
    let (got, end) = tokio::time::timeout(DEADLINE, reader)
        .await
        .expect("webrtc reader in time")
        .expect("join");
    assert_eq!(got, vec![vec![b'a', 0], vec![b'a', 1]]);
    assert!(end.starts_with("Ok((0") || end.starts_with("Err"), "{end}");

    // 3. Numbered from SSN 0 again, the next message opens a fresh stream 4 there.
    ours.ep
        .send(h, 4, 53, true, Bytes::from_static(b"after reset"))
        .expect("send");
    let fresh = {
        let a = a.clone();
        tokio::spawn(async move {
            let s = a.accept_stream().await.expect("accept fresh stream 4");
            let mut buf = vec![0u8; 1024];
            let (n, _) = s.read_sctp(&mut buf).await.expect("read");
            (s.stream_identifier(), buf[..n].to_vec())
        })
    };
    let end = Instant::now() + DEADLINE;
    let got = loop {
        let t = Instant::now() + Duration::from_millis(50);
        ours.run_until("traffic", |_| Instant::now() >= t).await;
        if fresh.is_finished() {
            break fresh.await.expect("join");
        }
        assert!(
            Instant::now() < end,
            "webrtc never read the message after the reset"
        );
    };
    assert_eq!(got, (4, b"after reset".to_vec()));
    assert!(ours.closed(h).is_none(), "{:?}", ours.closed(h));
    let now = ours.now();
    ours.ep.shutdown(now, h);
    ours.run_until("shutdown", |ev| {
        ev.iter()
            .any(|(x, e)| *x == h && matches!(e, Event::Closed { .. }))
    })
    .await;
    assert_eq!(ours.closed(h), Some(&CloseReason::Shutdown));
}
