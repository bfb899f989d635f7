//! Interoperability with Google's dcSCTP (`dcsctp` crate), packets handed across in
//! process: handshake from either side, data both ways with PPIDs 11 and 12,
//! heartbeats, shutdown and abort, partial reliability, and stream resets (RFC 6525)
//! started by either side.

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

/// Messages we received on one stream, in order.
fn ours_on(lab: &Lab, stream: u16) -> Vec<Vec<u8>> {
    lab.ours_events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Data {
                stream: s, bytes, ..
            } if *s == stream => Some(bytes.to_vec()),
            _ => None,
        })
        .collect()
}

fn our_resets(lab: &Lab) -> Vec<(sctp::ResetDirection, Vec<u16>, sctp::wire::ReconfigResult)> {
    lab.ours_events
        .iter()
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

fn dc_send(lab: &mut Lab, stream: u16, body: &[u8]) {
    lab.dc
        .send(
            Message::new(StreamId(stream), PpId(12), body.to_vec()),
            &SendOptions::default(),
        )
        .unwrap();
}

/// dcSCTP resets its outgoing stream (with data still in flight and some of it lost, so
/// we may have to defer); we perform it, and data on the stream continues from SSN 0.
#[test]
fn dcsctp_resets_its_stream_and_we_perform_it() {
    for lossy in [false, true] {
        let (mut lab, h) = connected_by_dcsctp();
        for i in 0..5u8 {
            dc_send(&mut lab, 1, &[b'a', i]);
        }
        if lossy {
            lab.drop_data_every = 2;
            lab.pump();
        } else {
            lab.run(Duration::from_millis(500));
        }
        lab.dc.reset_streams(&[StreamId(1)]).unwrap();
        lab.run(Duration::from_millis(50));
        lab.drop_data_every = 0;
        lab.run(Duration::from_secs(3));
        assert!(
            lab.dc_has(
                |e| matches!(e, SocketEvent::OnStreamsResetPerformed(s) if s == &vec![StreamId(1)])
            ),
            "{:?}",
            lab.dc_events
        );
        assert_eq!(
            our_resets(&lab),
            vec![(
                sctp::ResetDirection::Incoming,
                vec![1],
                sctp::wire::ReconfigResult::SuccessPerformed
            )]
        );
        // After the reset dcSCTP numbers stream 1 from 0 again; we deliver it.
        for i in 0..3u8 {
            dc_send(&mut lab, 1, &[b'b', i]);
        }
        lab.run(Duration::from_secs(2));
        let want: Vec<Vec<u8>> = (0..5u8)
            .map(|i| vec![b'a', i])
            .chain((0..3u8).map(|i| vec![b'b', i]))
            .collect();
        assert_eq!(ours_on(&lab, 1), want, "lossy: {lossy}");
        let s = lab.ep.association_ref(h).unwrap().stats().clone();
        assert!(s.reconfig_requests_received >= 1);
        assert_eq!(s.streams_reset_incoming, 1);
        assert_eq!(s.reconfig_malformed, 0);
        if lossy {
            // A lost DATA made us answer "In progress" first; dcSCTP asked again.
            assert!(s.reconfig_requests_received >= 2, "{s:?}");
        }
        assert!(!lab.dc_has(|e| matches!(e, SocketEvent::OnError(..) | SocketEvent::OnAborted(..))));
        // Our direction still works too.
        lab.ep
            .send(h, 1, 11, true, Bytes::from_static(b"ours"))
            .unwrap();
        lab.run(Duration::from_secs(1));
        assert_eq!(
            lab.dc_messages.last().map(|m| &m.payload[..]),
            Some(&b"ours"[..])
        );
    }
}

/// We reset our outgoing stream while messages are queued and more are sent behind the
/// reset; dcSCTP performs it and receives everything in order.
#[test]
fn we_reset_our_stream_and_dcsctp_performs_it() {
    let (mut lab, h) = connected_by_us();
    for i in 0..4u8 {
        lab.ep
            .send(h, 2, 11, true, Bytes::from(vec![b'a', i]))
            .unwrap();
    }
    lab.ep.reset_streams(h, &[2]).unwrap();
    for i in 0..4u8 {
        lab.ep
            .send(h, 2, 11, true, Bytes::from(vec![b'b', i]))
            .unwrap();
    }
    lab.run(Duration::from_secs(2));
    assert_eq!(
        our_resets(&lab),
        vec![(
            sctp::ResetDirection::Outgoing,
            vec![2],
            sctp::wire::ReconfigResult::SuccessPerformed
        )]
    );
    assert!(
        lab.dc_has(
            |e| matches!(e, SocketEvent::OnIncomingStreamReset(s) if s == &vec![StreamId(2)])
        ),
        "{:?}",
        lab.dc_events
    );
    let got: Vec<Vec<u8>> = lab.dc_messages.iter().map(|m| m.payload.clone()).collect();
    let want: Vec<Vec<u8>> = (0..4u8)
        .map(|i| vec![b'a', i])
        .chain((0..4u8).map(|i| vec![b'b', i]))
        .collect();
    assert_eq!(got, want);
    // dcSCTP's direction on the same stream is unaffected.
    dc_send(&mut lab, 2, b"theirs");
    lab.run(Duration::from_secs(1));
    assert_eq!(ours_on(&lab, 2), vec![b"theirs".to_vec()]);
    assert!(!lab.dc_has(|e| matches!(e, SocketEvent::OnError(..) | SocketEvent::OnAborted(..))));
    // A lost request is retransmitted: drop everything from dcSCTP for a while.
    lab.ep.reset_streams(h, &[2]).unwrap();
    lab.drop_from_dc = true;
    let rto = lab.ep.association_ref(h).unwrap().paths()[0].rto;
    lab.run(rto + rto / 2);
    lab.drop_from_dc = false;
    lab.run(Duration::from_secs(3));
    assert!(lab.our_closed().is_none(), "{:?}", lab.our_closed());
    let a = lab.ep.association_ref(h).unwrap();
    assert!(a.stats().reconfig_retransmissions >= 1);
    assert_eq!(a.stats().streams_reset_outgoing, 2);
}
