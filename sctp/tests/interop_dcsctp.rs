//! Interoperability with Google's dcSCTP (`dcsctp` crate), packets handed across in
//! process: handshake from either side, data both ways with PPIDs 11 and 12,
//! heartbeats, shutdown and abort.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dcsctp::api::{
    DcSctpSocket, Message, Options, PpId, SendOptions, SocketEvent, SocketState, SocketTime,
    StreamId,
};
use sctp::{AssocHandle, CloseReason, Endpoint, EndpointConfig, Event};

const OURS: &str = "10.0.0.1:9899";
const THEIRS: &str = "10.0.0.2:9899";

struct Lab {
    t0: Instant,
    now: Instant,
    ep: Endpoint,
    dc: Box<dyn DcSctpSocket>,
    ours_events: Vec<(AssocHandle, Event)>,
    dc_events: Vec<SocketEvent>,
    dc_messages: Vec<Message>,
    to_dc: usize,
    from_dc: usize,
    /// When set, packets from dcSCTP are dropped (a silent peer).
    drop_from_dc: bool,
    /// Drop every n-th packet carrying DATA, in each direction (0: none).
    drop_data_every: usize,
    data_seen: usize,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn dc_options() -> Options {
    Options {
        local_port: 3863,
        remote_port: 3863,
        heartbeat_interval: Duration::from_millis(500),
        max_retransmissions: Some(4),
        ..Options::default()
    }
}

fn our_config() -> EndpointConfig {
    let mut c = EndpointConfig::default();
    c.association.heartbeat_interval = Some(Duration::from_millis(400));
    c.association.rto_initial = Duration::from_millis(200);
    c.association.rto_min = Duration::from_millis(100);
    c.association.max_retransmissions = 4;
    c.association.pmtu = 1200;
    c
}

impl Lab {
    fn new() -> Lab {
        let now = Instant::now();
        Lab {
            t0: now,
            now,
            ep: Endpoint::new(our_config(), 7).unwrap(),
            dc: dcsctp::new_socket("dc", &dc_options()),
            ours_events: Vec::new(),
            dc_events: Vec::new(),
            dc_messages: Vec::new(),
            to_dc: 0,
            from_dc: 0,
            drop_from_dc: false,
            drop_data_every: 0,
            data_seen: 0,
        }
    }

    /// Whether to drop this packet: every n-th one whose first chunk is DATA.
    fn lose(&mut self, packet: &[u8]) -> bool {
        if self.drop_data_every == 0 || packet.get(12) != Some(&0) {
            return false;
        }
        self.data_seen += 1;
        self.data_seen % self.drop_data_every == 0
    }

    fn dc_time(&self) -> SocketTime {
        SocketTime::zero() + (self.now - self.t0)
    }

    /// Moves packets both ways until quiet, collecting events.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(t) = self.ep.poll_transmit(self.now) {
                self.to_dc += 1;
                moved = true;
                if !self.lose(&t.contents) {
                    self.dc.handle_input(&t.contents);
                }
            }
            while let Some(e) = self.dc.poll_event() {
                match e {
                    SocketEvent::SendPacket(p) => {
                        moved = true;
                        if !self.drop_from_dc && !self.lose(&p) {
                            self.from_dc += 1;
                            self.ep
                                .handle_datagram(self.now, Some(addr(OURS)), addr(THEIRS), &p);
                        }
                    }
                    other => self.dc_events.push(other),
                }
            }
            while let Some(m) = self.dc.get_next_message() {
                self.dc_messages.push(m);
            }
            while let Some(e) = self.ep.poll_event() {
                self.ours_events.push(e);
            }
            if !moved {
                return;
            }
        }
        panic!("packets kept flowing without time passing");
    }

    /// Runs timers and traffic for `span` of simulated time.
    fn run(&mut self, span: Duration) {
        let end = self.now + span;
        loop {
            self.pump();
            // dcSCTP reports "infinitely far" when it has no timer.
            let dc_next = self
                .t0
                .checked_add(self.dc.poll_timeout() - SocketTime::zero());
            let next = [self.ep.poll_timeout(), dc_next]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(end + Duration::from_secs(1));
            if next > end {
                self.now = end;
                self.pump();
                return;
            }
            self.now = next.max(self.now);
            self.ep.handle_timeout(self.now);
            let t = self.dc_time();
            self.dc.advance_time(t);
        }
    }

    fn our_connected(&self) -> Option<AssocHandle> {
        self.ours_events
            .iter()
            .find(|(_, e)| *e == Event::Connected)
            .map(|(h, _)| *h)
    }

    fn dc_has(&self, f: impl Fn(&SocketEvent) -> bool) -> bool {
        self.dc_events.iter().any(f)
    }

    fn our_closed(&self) -> Option<CloseReason> {
        self.ours_events.iter().find_map(|(_, e)| match e {
            Event::Closed { reason } => Some(reason.clone()),
            _ => None,
        })
    }
}

fn connected_by_us() -> (Lab, AssocHandle) {
    let mut lab = Lab::new();
    let now = lab.now;
    let h = lab.ep.connect(now, &[addr(THEIRS)], 3863, 3863).unwrap();
    lab.run(Duration::from_secs(1));
    assert_eq!(lab.our_connected(), Some(h));
    assert!(lab.dc_has(|e| matches!(e, SocketEvent::OnConnected())));
    assert_eq!(lab.dc.state(), SocketState::Connected);
    (lab, h)
}

fn connected_by_dcsctp() -> (Lab, AssocHandle) {
    let mut lab = Lab::new();
    lab.dc.connect();
    lab.run(Duration::from_secs(1));
    let h = lab
        .our_connected()
        .expect("we accepted dcSCTP's association");
    assert!(lab.dc_has(|e| matches!(e, SocketEvent::OnConnected())));
    (lab, h)
}

fn exchange_data(lab: &mut Lab, h: AssocHandle) {
    lab.ep
        .send(h, 0, 11, true, Bytes::from_static(b"asap from poolgate"))
        .unwrap();
    let big: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    lab.ep
        .send(h, 1, 12, false, Bytes::from(big.clone()))
        .unwrap();
    lab.dc
        .send(
            Message::new(StreamId(0), PpId(11), b"asap from dcsctp".to_vec()),
            &SendOptions::default(),
        )
        .unwrap();
    lab.dc
        .send(
            Message::new(StreamId(2), PpId(12), big.clone()),
            &SendOptions {
                unordered: true,
                ..Default::default()
            },
        )
        .unwrap();
    lab.run(Duration::from_secs(2));
    assert_eq!(lab.dc_messages.len(), 2);
    assert_eq!(
        (lab.dc_messages[0].stream_id, lab.dc_messages[0].ppid),
        (StreamId(0), PpId(11))
    );
    assert_eq!(lab.dc_messages[0].payload, b"asap from poolgate");
    assert_eq!(
        (lab.dc_messages[1].stream_id, lab.dc_messages[1].ppid),
        (StreamId(1), PpId(12))
    );
    assert_eq!(lab.dc_messages[1].payload, big);
    let ours: Vec<_> = lab
        .ours_events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Data {
                stream,
                ppid,
                ordered,
                bytes,
            } => Some((*stream, *ppid, *ordered, bytes.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(ours.len(), 2);
    assert_eq!(
        ours[0],
        (0, 11, true, Bytes::from_static(b"asap from dcsctp"))
    );
    assert_eq!(ours[1], (2, 12, false, Bytes::from(big)));
    // dcSCTP found nothing to complain about in our packets.
    assert!(
        !lab.dc_has(|e| matches!(e, SocketEvent::OnError(..))),
        "{:?}",
        lab.dc_events
    );
    assert!(!lab
        .ours_events
        .iter()
        .any(|(_, e)| matches!(e, Event::PeerError(_))));
}

#[test]
fn we_connect_and_exchange_data() {
    let (mut lab, h) = connected_by_us();
    exchange_data(&mut lab, h);
}

#[test]
fn dcsctp_connects_and_exchanges_data() {
    let (mut lab, h) = connected_by_dcsctp();
    exchange_data(&mut lab, h);
}

#[test]
fn heartbeats_keep_idle_association_alive_both_ways() {
    let (mut lab, h) = connected_by_us();
    lab.run(Duration::from_secs(10));
    assert!(lab.our_closed().is_none());
    assert!(!lab.dc_has(|e| matches!(e, SocketEvent::OnAborted(..))));
    let a = lab.ep.association_ref(h).unwrap();
    assert!(
        a.stats().heartbeats_sent >= 10,
        "we sent {} heartbeats",
        a.stats().heartbeats_sent
    );
    // dcSCTP heartbeats too: packets arrive while nobody sends data.
    assert!(lab.from_dc >= 20);
    assert!(a.paths()[0].srtt.is_some());
}

#[test]
fn we_shut_down_gracefully() {
    let (mut lab, h) = connected_by_us();
    lab.ep
        .send(h, 0, 11, true, Bytes::from_static(b"bye"))
        .unwrap();
    let now = lab.now;
    lab.ep.shutdown(now, h);
    lab.run(Duration::from_secs(2));
    assert_eq!(lab.our_closed(), Some(CloseReason::Shutdown));
    assert!(lab.dc_has(|e| matches!(e, SocketEvent::OnClosed())));
    assert_eq!(lab.dc_messages.len(), 1);
    assert_eq!(lab.ep.association_count(), 0);
}

#[test]
fn dcsctp_shuts_down_gracefully() {
    let (mut lab, _) = connected_by_dcsctp();
    lab.dc.shutdown();
    lab.run(Duration::from_secs(2));
    assert_eq!(lab.our_closed(), Some(CloseReason::Shutdown));
    assert!(lab.dc_has(|e| matches!(e, SocketEvent::OnClosed())));
    assert_eq!(lab.ep.association_count(), 0);
}

#[test]
fn we_abort() {
    let (mut lab, h) = connected_by_us();
    lab.ep.abort(h, b"going away");
    lab.run(Duration::from_millis(100));
    assert!(
        lab.dc_has(|e| matches!(e, SocketEvent::OnAborted(..))),
        "{:?}",
        lab.dc_events
    );
}

#[test]
fn dcsctp_aborts() {
    let (mut lab, _) = connected_by_us();
    lab.dc.close();
    lab.run(Duration::from_millis(100));
    assert!(
        matches!(lab.our_closed(), Some(CloseReason::Aborted(_))),
        "{:?}",
        lab.our_closed()
    );
}

#[test]
fn silent_dcsctp_detected_by_heartbeats() {
    let (mut lab, h) = connected_by_us();
    lab.run(Duration::from_secs(1));
    let rto = lab.ep.association_ref(h).unwrap().paths()[0].rto;
    let bound = our_config()
        .association
        .failure_detection_bound(rto)
        .unwrap();
    lab.drop_from_dc = true;
    lab.run(bound + Duration::from_millis(10));
    assert_eq!(lab.our_closed(), Some(CloseReason::Timeout));
}

#[test]
fn partial_reliability_both_ways_with_loss() {
    let (mut lab, h) = connected_by_us();
    lab.drop_data_every = 3;
    let now = lab.now;
    let opts = sctp::SendOptions {
        max_retransmissions: Some(0),
        lifetime: None,
    };
    for i in 0..30u8 {
        lab.ep
            .association(h)
            .unwrap()
            .send_with(now, 0, 11, true, Bytes::from(vec![i; 100]), opts)
            .unwrap();
        lab.dc
            .send(
                Message::new(StreamId(0), PpId(12), vec![i; 100]),
                &SendOptions {
                    max_retransmissions: Some(0),
                    ..Default::default()
                },
            )
            .unwrap();
        // One packet per message, so losses hit individual messages.
        lab.run(Duration::from_millis(20));
    }
    lab.drop_data_every = 0;
    // A reliable message after the lossy ones proves neither side is stuck.
    lab.ep
        .send(h, 0, 11, true, Bytes::from_static(b"reliable tail"))
        .unwrap();
    lab.dc
        .send(
            Message::new(StreamId(0), PpId(12), b"reliable tail".to_vec()),
            &SendOptions::default(),
        )
        .unwrap();
    lab.run(Duration::from_secs(10));
    let ours: Vec<Bytes> = lab
        .ours_events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Data { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ours.last().map(|b| &b[..]), Some(&b"reliable tail"[..]));
    assert!(
        ours.len() < 31,
        "some messages were abandoned, got {}",
        ours.len()
    );
    assert!(ours
        .windows(2)
        .all(|w| w[0][0] < w[1][0] || &w[1][..] == b"reliable tail"));
    assert_eq!(
        lab.dc_messages.last().map(|m| &m.payload[..]),
        Some(&b"reliable tail"[..])
    );
    assert!(
        lab.dc_messages.len() < 31,
        "dcSCTP got {}",
        lab.dc_messages.len()
    );
    assert!(lab.our_closed().is_none());
    assert!(!lab.dc_has(|e| matches!(e, SocketEvent::OnAborted(..) | SocketEvent::OnError(..))));
}
