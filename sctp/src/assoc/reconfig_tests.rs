//! Stream reconfiguration (RFC 6525) unit tests, driving two endpoints packet by packet
//! (the style of `tests.rs`), with crafted RE-CONFIG chunks for the peer's side.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::assoc::test_pair::{addr, events, out, Pair, B};
use crate::wire::{
    cause_code, chunk_type, param_type, Chunk, DataChunk, ForwardTsnChunk, InitParam, Packet,
    ReConfigBody, ReconfigParam, ReconfigResult,
};
use crate::{CloseReason, Endpoint, EndpointConfig, Event, ResetDirection, ResetError, SendError};

fn cfg() -> EndpointConfig {
    let mut c = EndpointConfig::default();
    c.association.rto_initial = Duration::from_millis(100);
    c.association.rto_min = Duration::from_millis(50);
    c.association.heartbeat_interval = None;
    c
}

fn chunks(pkts: &[Vec<u8>]) -> Vec<Chunk> {
    pkts.iter()
        .flat_map(|p| Packet::decode(p).unwrap().chunks)
        .collect()
}

/// The RE-CONFIG parameters in some packets.
fn reconfigs(pkts: &[Vec<u8>]) -> Vec<ReconfigParam> {
    chunks(pkts)
        .into_iter()
        .filter_map(|c| match c {
            Chunk::ReConfig(ReConfigBody::Params(p)) => Some(p),
            _ => None,
        })
        .flatten()
        .collect()
}

fn data_chunks(pkts: &[Vec<u8>]) -> Vec<DataChunk> {
    chunks(pkts)
        .into_iter()
        .filter_map(|c| match c {
            Chunk::Data(d) => Some(d),
            _ => None,
        })
        .collect()
}

fn messages(ev: &[Event]) -> Vec<(u16, Bytes)> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Data { stream, bytes, .. } => Some((*stream, bytes.clone())),
            _ => None,
        })
        .collect()
}

fn resets(ev: &[Event]) -> Vec<(ResetDirection, Vec<u16>, ReconfigResult)> {
    ev.iter()
        .filter_map(|e| match e {
            Event::StreamsReset {
                direction,
                streams,
                result,
            } => Some((*direction, streams.clone(), *result)),
            _ => None,
        })
        .collect()
}

impl Pair {
    /// Established, with this file's configuration (no heartbeats).
    fn without_heartbeats() -> Pair {
        Pair::established_with(cfg(), cfg())
    }
    /// The request sequence number B's next request would carry (B's initial TSN while
    /// B has made none).
    fn b_initial_tsn(&self) -> u32 {
        self.b.association_ref(self.hb()).unwrap().local_tsn
    }
    fn stats_a(&self) -> crate::AssociationStats {
        self.a.association_ref(self.ha).unwrap().stats().clone()
    }
    fn stats_b(&self) -> crate::AssociationStats {
        self.b.association_ref(self.hb()).unwrap().stats().clone()
    }
}

fn reconfig(params: Vec<ReconfigParam>) -> Chunk {
    Chunk::ReConfig(ReConfigBody::Params(params))
}

#[test]
fn re_config_advertised_and_only_used_when_both_offer_it() {
    let now = Instant::now();
    let mut a = Endpoint::new(cfg(), 1).unwrap();
    a.connect(now, &[addr(B)], 1, 2).unwrap();
    let init = chunks(&out(&mut a, now));
    let Chunk::Init(init) = &init[0] else {
        panic!("INIT expected")
    };
    assert!(init.params.iter().any(
        |p| matches!(p, InitParam::SupportedExtensions(e) if e.contains(&chunk_type::RE_CONFIG))
    ));
    let _ = param_type::SUPPORTED_EXTENSIONS;

    // B does not offer it: A may not reset, and B ignores a RE-CONFIG (type 130 is
    // "skip silently" for an endpoint that does not know it).
    let mut off = cfg();
    off.association.stream_reset = false;
    let mut p = Pair::established_with(cfg(), off);
    let ha = p.ha;
    assert_eq!(p.a.reset_streams(ha, &[0]), Err(ResetError::NotSupported));
    let seq = p.a.association_ref(ha).unwrap().local_tsn;
    let pkt = p.packet_of_a(vec![reconfig(vec![ReconfigParam::OutgoingSsnReset {
        req_seq: seq,
        resp_seq: 0,
        last_tsn: seq.wrapping_sub(1),
        streams: vec![],
    }])]);
    p.deliver_to_b(vec![pkt]);
    assert!(out(&mut p.b, p.now).is_empty());
    assert_eq!(p.stats_b().reconfig_requests_received, 0);
}

#[test]
fn reset_restarts_ssn_and_both_sides_report_it() {
    let mut p = Pair::without_heartbeats();
    let ha = p.ha;
    for m in [&b"one"[..], b"two"] {
        p.a.send(ha, 1, 11, true, Bytes::copy_from_slice(m))
            .unwrap();
    }
    p.exchange();
    assert_eq!(messages(&events(&mut p.b)).len(), 2);
    p.a.reset_streams(ha, &[1]).unwrap();
    assert_eq!(
        p.a.reset_streams(ha, &[300]),
        Err(ResetError::InvalidStream(300))
    );
    let req = out(&mut p.a, p.now);
    let params = reconfigs(&req);
    let seq = p.a.association_ref(ha).unwrap().local_tsn;
    let last = p.a.association_ref(ha).unwrap().tx.last_assigned_tsn();
    assert_eq!(
        params,
        vec![ReconfigParam::OutgoingSsnReset {
            req_seq: seq,
            resp_seq: p.b_initial_tsn().wrapping_sub(1),
            last_tsn: last,
            streams: vec![1],
        }]
    );
    p.deliver_to_b(req);
    assert_eq!(
        resets(&events(&mut p.b)),
        vec![(
            ResetDirection::Incoming,
            vec![1],
            ReconfigResult::SuccessPerformed
        )]
    );
    let resp = out(&mut p.b, p.now);
    assert!(reconfigs(&resp).contains(&ReconfigParam::Response {
        resp_seq: seq,
        result: ReconfigResult::SuccessPerformed,
        next_tsns: None
    }));
    p.deliver_to_a(resp);
    assert_eq!(
        resets(&events(&mut p.a)),
        vec![(
            ResetDirection::Outgoing,
            vec![1],
            ReconfigResult::SuccessPerformed
        )]
    );
    // The next message on stream 1 starts again at SSN 0; stream 0 is untouched.
    p.a.send(ha, 1, 11, true, Bytes::from_static(b"three"))
        .unwrap();
    let d = out(&mut p.a, p.now);
    assert_eq!(data_chunks(&d)[0].ssn, 0);
    p.deliver_to_b(d);
    assert_eq!(
        messages(&events(&mut p.b)),
        vec![(1, Bytes::from_static(b"three"))]
    );
    let (sa, sb) = (p.stats_a(), p.stats_b());
    assert_eq!(
        (sa.reconfig_requests_sent, sa.streams_reset_outgoing),
        (1, 1)
    );
    assert_eq!(
        (sb.reconfig_requests_received, sb.reconfig_responses_sent),
        (1, 1)
    );
    assert_eq!(sb.streams_reset_incoming, 1);
}

#[test]
fn request_waits_for_queued_data_and_new_sends_are_parked() {
    let mut p = Pair::without_heartbeats();
    let ha = p.ha;
    p.a.send(ha, 1, 11, true, Bytes::from_static(b"old"))
        .unwrap();
    p.a.reset_streams(ha, &[1]).unwrap();
    p.a.send(ha, 1, 11, true, Bytes::from_static(b"new"))
        .unwrap();
    assert_eq!(p.a.association_ref(ha).unwrap().buffered_amount(), 6);
    let pkts = out(&mut p.a, p.now);
    let data = data_chunks(&pkts);
    assert_eq!(data.len(), 1, "the parked message waits for the reset");
    assert_eq!(&data[0].payload[..], b"old");
    let req = reconfigs(&pkts);
    assert!(
        matches!(&req[..], [ReconfigParam::OutgoingSsnReset { last_tsn, .. }] if *last_tsn == data[0].tsn),
        "{req:?}"
    );
    p.deliver_to_b(pkts);
    p.exchange();
    let ev_b = events(&mut p.b);
    // Old numbering, the reset, then new numbering from SSN 0.
    assert_eq!(
        messages(&ev_b),
        vec![
            (1, Bytes::from_static(b"old")),
            (1, Bytes::from_static(b"new"))
        ]
    );
    let reset_at = ev_b
        .iter()
        .position(|e| matches!(e, Event::StreamsReset { .. }))
        .unwrap();
    let new_at = ev_b
        .iter()
        .position(|e| matches!(e, Event::Data { bytes, .. } if &bytes[..] == b"new"))
        .unwrap();
    assert!(reset_at < new_at);
}

#[test]
fn deferred_reset_waits_for_missing_tsn_and_holds_newer_data() {
    let mut p = Pair::without_heartbeats();
    let ha = p.ha;
    p.a.send(ha, 0, 11, true, Bytes::from_static(b"m1"))
        .unwrap();
    let lost = out(&mut p.a, p.now);
    let m1 = data_chunks(&lost)[0].clone();
    p.a.reset_streams(ha, &[0]).unwrap();
    let req = out(&mut p.a, p.now);
    p.deliver_to_b(req);
    // B lacks m1's TSN: "In progress", nothing reset yet.
    let resp = out(&mut p.b, p.now);
    let seq = p.a.association_ref(ha).unwrap().local_tsn;
    assert!(reconfigs(&resp).contains(&ReconfigParam::Response {
        resp_seq: seq,
        result: ReconfigResult::InProgress,
        next_tsns: None
    }));
    assert!(resets(&events(&mut p.b)).is_empty());
    p.deliver_to_a(resp);
    assert!(resets(&events(&mut p.a)).is_empty());
    // Data of the new numbering arrives before the missing TSN: it is held back.
    let newer = p.packet_of_a(vec![Chunk::Data(DataChunk {
        tsn: m1.tsn.wrapping_add(1),
        ssn: 0,
        payload: Bytes::from_static(b"m2"),
        ..m1.clone()
    })]);
    p.deliver_to_b(vec![newer]);
    assert!(messages(&events(&mut p.b)).is_empty());
    // m1 arrives: m1, the reset, then m2 (SSN 0 of the new numbering).
    p.deliver_to_b(lost);
    let ev = events(&mut p.b);
    assert_eq!(
        messages(&ev),
        vec![
            (0, Bytes::from_static(b"m1")),
            (0, Bytes::from_static(b"m2"))
        ]
    );
    assert!(matches!(
        &ev[1],
        Event::StreamsReset {
            direction: ResetDirection::Incoming,
            ..
        }
    ));
    // B reports success at once; A completes without waiting for its timer.
    let resp = out(&mut p.b, p.now);
    assert!(reconfigs(&resp).contains(&ReconfigParam::Response {
        resp_seq: seq,
        result: ReconfigResult::SuccessPerformed,
        next_tsns: None
    }));
    p.deliver_to_a(resp);
    assert_eq!(
        resets(&events(&mut p.a)),
        vec![(
            ResetDirection::Outgoing,
            vec![0],
            ReconfigResult::SuccessPerformed
        )]
    );
}

#[test]
fn in_progress_answer_makes_sender_ask_again_without_counting_errors() {
    let mut p = Pair::without_heartbeats();
    let ha = p.ha;
    p.a.send(ha, 0, 11, true, Bytes::from_static(b"m1"))
        .unwrap();
    let lost = out(&mut p.a, p.now);
    p.a.reset_streams(ha, &[0]).unwrap();
    let req = out(&mut p.a, p.now);
    p.deliver_to_b(req.clone());
    let r = out(&mut p.b, p.now);
    p.deliver_to_a(r);
    // The request timer fires: the same request again, not counted as an error.
    p.now = p.a.association_ref(ha).unwrap().poll_timeout().unwrap();
    // (T3 for m1 fires at the same time; deliver only the request.)
    p.a.handle_timeout(p.now);
    let again = out(&mut p.a, p.now);
    assert_eq!(reconfigs(&again), reconfigs(&req));
    p.deliver_to_b(lost);
    p.deliver_to_b(again);
    p.exchange();
    assert_eq!(
        resets(&events(&mut p.a)),
        vec![(
            ResetDirection::Outgoing,
            vec![0],
            ReconfigResult::SuccessPerformed
        )]
    );
}

#[test]
fn lost_reconfig_is_retransmitted_on_rto_and_counts_toward_max_retrans() {
    let mut c = cfg();
    c.association.max_retransmissions = 2;
    let mut p = Pair::established_with(c.clone(), c);
    let ha = p.ha;
    p.a.reset_streams(ha, &[]).unwrap();
    let first = out(&mut p.a, p.now);
    assert_eq!(reconfigs(&first).len(), 1);
    let rto = p.a.association_ref(ha).unwrap().paths()[0].rto;
    assert_eq!(p.a.poll_timeout().unwrap() - p.now, rto);
    p.now += rto;
    p.a.handle_timeout(p.now);
    let second = out(&mut p.a, p.now);
    assert_eq!(reconfigs(&second), reconfigs(&first), "same request again");
    let a = p.a.association_ref(ha).unwrap();
    assert_eq!(a.stats().reconfig_retransmissions, 1);
    assert_eq!(a.paths()[0].rto, rto * 2, "exponential back-off");
    // Delivered this time: done.
    p.deliver_to_b(second);
    p.exchange();
    assert_eq!(
        resets(&events(&mut p.a)),
        vec![(
            ResetDirection::Outgoing,
            vec![],
            ReconfigResult::SuccessPerformed
        )]
    );
    // A peer that never answers: the association dies after Association.Max.Retrans.
    p.a.reset_streams(ha, &[3]).unwrap();
    out(&mut p.a, p.now);
    for _ in 0..3 {
        p.now = p.a.poll_timeout().unwrap();
        p.a.handle_timeout(p.now);
        out(&mut p.a, p.now);
    }
    let ev = events(&mut p.a);
    assert_eq!(
        ev[ev.len().saturating_sub(2)..],
        [
            Event::StreamsReset {
                direction: ResetDirection::Outgoing,
                streams: vec![3],
                result: ReconfigResult::Denied
            },
            Event::Closed {
                reason: CloseReason::Timeout
            }
        ]
    );
}

#[test]
fn repeated_request_gets_same_answer_and_wrong_sequence_number_an_error() {
    let mut p = Pair::without_heartbeats();
    let ha = p.ha;
    p.a.reset_streams(ha, &[2]).unwrap();
    let req = out(&mut p.a, p.now);
    p.deliver_to_b(req.clone());
    let r1 = reconfigs(&out(&mut p.b, p.now));
    p.deliver_to_b(req);
    let r2 = reconfigs(&out(&mut p.b, p.now));
    assert_eq!(r1, r2);
    assert_eq!(resets(&events(&mut p.b)).len(), 1, "performed once");
    // A sequence number neither next nor last.
    let seq = p.a.association_ref(ha).unwrap().local_tsn;
    let bad = p.packet_of_a(vec![reconfig(vec![ReconfigParam::OutgoingSsnReset {
        req_seq: seq.wrapping_add(5),
        resp_seq: 0,
        last_tsn: seq,
        streams: vec![2],
    }])]);
    p.deliver_to_b(vec![bad]);
    assert_eq!(
        reconfigs(&out(&mut p.b, p.now)),
        vec![ReconfigParam::Response {
            resp_seq: seq.wrapping_add(5),
            result: ReconfigResult::ErrorBadSequenceNumber,
            next_tsns: None
        }]
    );
    let s = p.stats_b();
    assert_eq!(s.reconfig_requests_received, 3);
    assert_eq!(s.reconfig_requests_denied, 1);
    assert!(resets(&events(&mut p.b)).is_empty());
}

#[test]
fn incoming_reset_request_answered_with_our_outgoing_request() {
    let mut p = Pair::without_heartbeats();
    let ha = p.ha;
    p.a.send(ha, 2, 11, true, Bytes::from_static(b"x")).unwrap();
    p.exchange();
    events(&mut p.b);
    let seq = p.b_initial_tsn();
    let ask = p.packet_of_b(vec![reconfig(vec![ReconfigParam::IncomingSsnReset {
        req_seq: seq,
        streams: vec![2],
    }])]);
    p.deliver_to_a(vec![ask.clone()]);
    let pkts = out(&mut p.a, p.now);
    let params = reconfigs(&pkts);
    assert!(
        matches!(&params[..], [ReconfigParam::OutgoingSsnReset { resp_seq, streams, .. }]
            if *resp_seq == seq && streams == &vec![2]),
        "{params:?}"
    );
    // A retransmitted ask does not start a second request.
    p.deliver_to_a(vec![ask]);
    assert!(reconfigs(&out(&mut p.a, p.now)).is_empty());
    p.deliver_to_b(pkts);
    p.exchange();
    assert_eq!(
        resets(&events(&mut p.a)),
        vec![(
            ResetDirection::Outgoing,
            vec![2],
            ReconfigResult::SuccessPerformed
        )]
    );
    assert_eq!(resets(&events(&mut p.b)).len(), 1);
}

#[test]
fn ssn_tsn_reset_and_add_incoming_streams_are_denied() {
    let mut p = Pair::without_heartbeats();
    let seq = p.b_initial_tsn();
    let pkt = p.packet_of_b(vec![reconfig(vec![ReconfigParam::SsnTsnReset {
        req_seq: seq,
    }])]);
    p.deliver_to_a(vec![pkt]);
    // Both already use the configured maximum of 256 inbound streams: adding is denied.
    let pkt = p.packet_of_b(vec![reconfig(vec![
        ReconfigParam::AddOutgoingStreams {
            req_seq: seq.wrapping_add(1),
            count: 4,
        },
        ReconfigParam::AddIncomingStreams {
            req_seq: seq.wrapping_add(2),
            count: 4,
        },
    ])]);
    p.deliver_to_a(vec![pkt]);
    let answers = reconfigs(&out(&mut p.a, p.now));
    let results: Vec<(u32, ReconfigResult)> = answers
        .iter()
        .filter_map(|a| match a {
            ReconfigParam::Response {
                resp_seq, result, ..
            } => Some((resp_seq.wrapping_sub(seq), *result)),
            _ => None,
        })
        .collect();
    assert_eq!(
        results,
        vec![
            (0, ReconfigResult::Denied),
            (1, ReconfigResult::Denied),
            (2, ReconfigResult::Denied)
        ]
    );
    assert_eq!(p.stats_a().reconfig_requests_denied, 3);
}

#[test]
fn malformed_reconfig_counted_and_reported_and_packet_goes_on() {
    let mut p = Pair::without_heartbeats();
    let b_tsn = p.b.association_ref(p.hb()).unwrap().tx_next_tsn_for_tests();
    let bad = Chunk::ReConfig(ReConfigBody::Malformed {
        value: Bytes::from_static(&[0, 16, 0, 8, 0, 0, 0, 1]),
        error: crate::wire::DecodeError::BadLength("re-configuration response"),
    });
    let data = Chunk::Data(DataChunk {
        tsn: b_tsn,
        stream: 0,
        ssn: 0,
        ppid: 1,
        unordered: false,
        beginning: true,
        ending: true,
        immediate: true,
        payload: Bytes::from_static(b"after"),
    });
    let pkt = p.packet_of_b(vec![bad, data]);
    p.deliver_to_a(vec![pkt]);
    assert_eq!(
        messages(&events(&mut p.a)),
        vec![(0, Bytes::from_static(b"after"))]
    );
    let e = chunks(&out(&mut p.a, p.now));
    assert!(e
        .iter()
        .any(|c| matches!(c, Chunk::Error(c) if c[0].code == cause_code::PROTOCOL_VIOLATION)));
    // Two requests of one kind in one chunk is no allowed combination either.
    let seq = p.b_initial_tsn();
    let two = p.packet_of_b(vec![reconfig(vec![
        ReconfigParam::SsnTsnReset { req_seq: seq },
        ReconfigParam::SsnTsnReset { req_seq: seq },
    ])]);
    p.deliver_to_a(vec![two]);
    assert_eq!(p.stats_a().reconfig_malformed, 2);
    assert!(reconfigs(&out(&mut p.a, p.now)).is_empty());
}

#[test]
fn one_request_in_flight_others_queue() {
    let mut p = Pair::without_heartbeats();
    let ha = p.ha;
    p.a.reset_streams(ha, &[1]).unwrap();
    p.a.reset_streams(ha, &[2, 2, 3]).unwrap();
    let first = out(&mut p.a, p.now);
    assert_eq!(reconfigs(&first).len(), 1);
    assert!(out(&mut p.a, p.now).is_empty());
    p.deliver_to_b(first);
    let r = out(&mut p.b, p.now);
    p.deliver_to_a(r);
    let second = reconfigs(&out(&mut p.a, p.now));
    assert!(
        matches!(&second[..], [ReconfigParam::OutgoingSsnReset { streams, .. }] if streams == &vec![2, 3]),
        "{second:?}"
    );
}

#[test]
fn shutdown_waits_for_pending_reset_and_parked_message() {
    let mut p = Pair::without_heartbeats();
    let ha = p.ha;
    p.a.reset_streams(ha, &[1]).unwrap();
    p.a.send(ha, 1, 11, true, Bytes::from_static(b"last"))
        .unwrap();
    let now = p.now;
    p.a.shutdown(now, ha);
    p.run(Duration::from_secs(2));
    let ev = events(&mut p.b);
    assert_eq!(messages(&ev), vec![(1, Bytes::from_static(b"last"))]);
    assert_eq!(
        ev.last(),
        Some(&Event::Closed {
            reason: CloseReason::Shutdown
        })
    );
}

#[test]
fn peer_adds_outgoing_streams_within_our_inbound_limit() {
    let mut ca = cfg();
    ca.association.inbound_streams = 300;
    let mut p = Pair::established_with(ca, cfg());
    let ha = p.ha;
    assert_eq!(p.a.association_ref(ha).unwrap().streams(), (256, 256));
    let seq = p.b_initial_tsn();
    let add = |req_seq, count| reconfig(vec![ReconfigParam::AddOutgoingStreams { req_seq, count }]);
    let pkt = p.packet_of_b(vec![add(seq, 40)]);
    p.deliver_to_a(vec![pkt]);
    let pkt = p.packet_of_b(vec![add(seq.wrapping_add(1), 10)]);
    p.deliver_to_a(vec![pkt]);
    let results: Vec<ReconfigResult> = reconfigs(&out(&mut p.a, p.now))
        .into_iter()
        .filter_map(|r| match r {
            ReconfigParam::Response { result, .. } => Some(result),
            _ => None,
        })
        .collect();
    assert_eq!(
        results,
        vec![ReconfigResult::SuccessPerformed, ReconfigResult::Denied]
    );
    assert_eq!(p.a.association_ref(ha).unwrap().streams(), (256, 296));
    // DATA on a new stream is accepted now.
    let tsn = p.b.association_ref(p.hb()).unwrap().tx_next_tsn_for_tests();
    let pkt = p.packet_of_b(vec![Chunk::Data(DataChunk {
        tsn,
        stream: 290,
        ssn: 0,
        ppid: 1,
        unordered: false,
        beginning: true,
        ending: true,
        immediate: true,
        payload: Bytes::from_static(b"new stream"),
    })]);
    p.deliver_to_a(vec![pkt]);
    assert_eq!(
        messages(&events(&mut p.a)),
        vec![(290, Bytes::from_static(b"new stream"))]
    );
}

#[test]
fn parked_messages_count_against_the_send_buffer_on_every_stream() {
    let mut c = cfg();
    c.association.send_buffer = 4000;
    c.association.max_message_size = 4000;
    let mut p = Pair::established_with(c.clone(), c);
    let ha = p.ha;
    p.a.reset_streams(ha, &[1]).unwrap();
    p.a.send(ha, 1, 11, true, Bytes::from(vec![1; 3000]))
        .unwrap();
    let buffered = |p: &Pair| p.a.association_ref(ha).unwrap().buffered_amount();
    assert_eq!(buffered(&p), 3000, "parked");
    // Stream 0 is not being reset, but the parked bytes still fill the buffer.
    assert_eq!(
        p.a.send(ha, 0, 11, true, Bytes::from(vec![0; 2000])),
        Err(SendError::WouldBlock {
            buffered_amount: 3000
        })
    );
    p.a.send(ha, 0, 11, true, Bytes::from(vec![0; 1000]))
        .unwrap();
    assert_eq!(buffered(&p), 4000, "exactly full, never beyond");
    assert_eq!(
        p.a.send(ha, 1, 11, true, Bytes::from_static(b"x")),
        Err(SendError::WouldBlock {
            buffered_amount: 4000
        })
    );
    // The reset is answered, the parked message leaves, the buffer drains: Writable.
    p.exchange();
    let ev = events(&mut p.a);
    assert!(ev.contains(&Event::Writable), "{ev:?}");
    assert_eq!(buffered(&p), 0);
    let got: Vec<(u16, usize)> = messages(&events(&mut p.b))
        .into_iter()
        .map(|(s, b)| (s, b.len()))
        .collect();
    assert_eq!(got, vec![(0, 1000), (1, 3000)]);
}

/// The `StreamsReset` events up to `Closed`, and the close reason.
fn resets_then_close(
    ev: &[Event],
) -> (Vec<(ResetDirection, Vec<u16>, ReconfigResult)>, CloseReason) {
    let at = ev
        .iter()
        .position(|e| matches!(e, Event::Closed { .. }))
        .expect("Closed");
    let Event::Closed { reason } = &ev[at] else {
        unreachable!()
    };
    assert!(
        resets(&ev[at + 1..]).is_empty(),
        "no reset reported after Closed"
    );
    (resets(&ev[..at]), reason.clone())
}

#[test]
fn pending_reset_requests_reported_denied_when_the_association_closes() {
    let denied = |streams: Vec<u16>| (ResetDirection::Outgoing, streams, ReconfigResult::Denied);
    // One request in flight (lost), one queued behind it, and a message parked behind
    // both; then the user aborts, or the peer does.
    for peer_aborts in [false, true] {
        let mut p = Pair::without_heartbeats();
        let ha = p.ha;
        p.a.reset_streams(ha, &[1]).unwrap();
        p.a.reset_streams(ha, &[2, 3]).unwrap();
        p.a.send(ha, 1, 11, true, Bytes::from_static(b"parked"))
            .unwrap();
        let lost = out(&mut p.a, p.now);
        assert_eq!(reconfigs(&lost).len(), 1);
        if peer_aborts {
            let abort = p.packet_of_b(vec![Chunk::Abort {
                t: false,
                causes: vec![],
            }]);
            p.deliver_to_a(vec![abort]);
        } else {
            p.a.abort(ha, b"bye");
        }
        let (resets, reason) = resets_then_close(&events(&mut p.a));
        assert_eq!(resets, vec![denied(vec![1]), denied(vec![2, 3])]);
        assert_eq!(
            matches!(reason, CloseReason::Aborted(_)),
            peer_aborts,
            "{reason:?}"
        );
    }
    // B has a request pending when A restarts: B's old association closes with it.
    let mut p = Pair::without_heartbeats();
    let hb = p.hb();
    p.b.reset_streams(hb, &[]).unwrap();
    let _lost = out(&mut p.b, p.now);
    p.a = Endpoint::new(cfg(), 77).unwrap();
    p.ha = p.a.connect(p.now, &[addr(B)], 1, 2).unwrap();
    p.exchange();
    let ev: Vec<Event> = std::iter::from_fn(|| p.b.poll_event())
        .filter(|(h, _)| *h == hb)
        .map(|(_, e)| e)
        .collect();
    assert_eq!(
        resets_then_close(&ev),
        (vec![denied(vec![])], CloseReason::PeerRestarted)
    );
}

/// A DATA chunk as A would send it, on an ordered stream.
fn ordered(tsn: u32, stream: u16, ssn: u16, b: bool, e: bool, payload: &'static [u8]) -> Chunk {
    Chunk::Data(DataChunk {
        tsn,
        stream,
        ssn,
        ppid: 11,
        unordered: false,
        beginning: b,
        ending: e,
        immediate: true,
        payload: Bytes::from_static(payload),
    })
}

#[test]
fn forward_tsn_during_deferred_reset_completes_it_and_strands_nothing() {
    let mut p = Pair::without_heartbeats();
    let hb = p.hb();
    let t = p.a.association_ref(p.ha).unwrap().tx_next_tsn_for_tests();
    let req_seq = p.a.association_ref(p.ha).unwrap().local_tsn;
    // Old numbering on stream 0: message X in two fragments (TSNs t, t+1); only the
    // first arrives, so it sits in reassembly.
    let x_head = p.packet_of_a(vec![ordered(t, 0, 0, true, false, b"X-head")]);
    p.deliver_to_b(vec![x_head]);
    // A resets streams 0 and 1 after t+1: B lacks t+1 and defers ("In progress").
    let req = p.packet_of_a(vec![reconfig(vec![ReconfigParam::OutgoingSsnReset {
        req_seq,
        resp_seq: p.b_initial_tsn().wrapping_sub(1),
        last_tsn: t.wrapping_add(1),
        streams: vec![0, 1],
    }])]);
    p.deliver_to_b(vec![req]);
    let resp = reconfigs(&out(&mut p.b, p.now));
    assert!(resp.contains(&ReconfigParam::Response {
        resp_seq: req_seq,
        result: ReconfigResult::InProgress,
        next_tsns: None
    }));
    // A (against RFC 6525 §5.1.2 A1, which B must survive) already sends stream 1 in
    // the new numbering: a whole message (SSN 0) and the first fragment of SSN 1. B
    // holds them back; the last fragment (t+4) is lost.
    let early = p.packet_of_a(vec![
        ordered(t.wrapping_add(2), 1, 0, true, true, b"n0"),
        ordered(t.wrapping_add(3), 1, 1, true, false, b"n1-head"),
    ]);
    p.deliver_to_b(vec![early]);
    assert!(messages(&events(&mut p.b)).is_empty());
    assert_eq!(
        p.b.association_ref(hb).unwrap().rx.leftovers_for_tests(),
        (1, 2)
    );
    // A gives up X (stream 0, old SSN 0) and SSN 1 of the new numbering on stream 1.
    let fwd = p.packet_of_a(vec![Chunk::ForwardTsn(ForwardTsnChunk {
        new_cum_tsn: t.wrapping_add(4),
        streams: vec![(0, 0), (1, 1)],
    })]);
    p.deliver_to_b(vec![fwd]);
    // The skipped t+1 completes the deferred reset; the whole held message is delivered
    // after it, the held fragment of the abandoned message is dropped.
    let ev = events(&mut p.b);
    assert_eq!(
        resets(&ev),
        vec![(
            ResetDirection::Incoming,
            vec![0, 1],
            ReconfigResult::SuccessPerformed
        )]
    );
    assert_eq!(messages(&ev), vec![(1, Bytes::from_static(b"n0"))]);
    assert!(matches!(ev[0], Event::StreamsReset { .. }));
    let resp = reconfigs(&out(&mut p.b, p.now));
    assert!(resp.contains(&ReconfigParam::Response {
        resp_seq: req_seq,
        result: ReconfigResult::SuccessPerformed,
        next_tsns: None
    }));
    let b = p.b.association_ref(hb).unwrap();
    assert!(b.rx.deferred.is_none());
    assert_eq!(b.rx.leftovers_for_tests(), (0, 0), "nothing stranded");
    assert_eq!(b.receive_buffered(), 0, "the window is whole again");
    // Later data: stream 0 restarts at SSN 0; stream 1 goes on after the skipped SSN 1.
    let later = p.packet_of_a(vec![
        ordered(t.wrapping_add(5), 0, 0, true, true, b"zero again"),
        ordered(t.wrapping_add(6), 1, 2, true, true, b"after the skip"),
    ]);
    p.deliver_to_b(vec![later]);
    assert_eq!(
        messages(&events(&mut p.b)),
        vec![
            (0, Bytes::from_static(b"zero again")),
            (1, Bytes::from_static(b"after the skip"))
        ]
    );
    assert_eq!(p.b.association_ref(hb).unwrap().receive_buffered(), 0);
}
