//! Interoperability with webrtc-rs's SCTP (`webrtc-sctp` crate, as published) over real
//! UDP sockets on loopback: each side starts the handshake once; messages of several
//! sizes (fragmented too) on several streams, ordered and unordered, both ways; then a
//! graceful shutdown started by either side. Bytes, PPIDs and per-stream order are
//! checked.
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
use sctp::{AssocHandle, CloseReason, Endpoint, EndpointConfig, Event};
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
