//! State-transition unit tests, driving two endpoints packet by packet.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::test_pair::{addr, events, out, Pair, A, B};
use crate::wire::{chunk_type, finish_packet, Chunk, CommonHeader, DataChunk, Packet};
use crate::{CloseReason, Endpoint, EndpointConfig, Event, State};

fn cfg() -> EndpointConfig {
    let mut c = EndpointConfig::default();
    c.association.rto_initial = Duration::from_millis(100);
    c.association.rto_min = Duration::from_millis(50);
    c.association.max_init_retransmissions = 3;
    c
}

fn types(pkts: &[Vec<u8>]) -> Vec<u8> {
    pkts.iter()
        .flat_map(|p| {
            Packet::decode(p)
                .unwrap()
                .chunks
                .into_iter()
                .map(|c| c.typ())
        })
        .collect()
}

/// The messages among an endpoint's pending events.
fn messages(ep: &mut Endpoint) -> Vec<Bytes> {
    events(ep)
        .into_iter()
        .filter_map(|e| match e {
            Event::Data { bytes, .. } => Some(bytes),
            _ => None,
        })
        .collect()
}

impl Pair {
    fn new() -> Pair {
        Pair::connecting(cfg(), cfg())
    }
    fn state_a(&self) -> State {
        self.a.association_ref(self.ha).unwrap().state()
    }
    /// A packet from B to A with one ordered DATA chunk on `stream`, SSN 0, TSN `i`
    /// after B's next one.
    fn fragment_to_a(
        &self,
        i: u32,
        stream: u16,
        (beginning, ending): (bool, bool),
        payload: Bytes,
    ) -> Vec<u8> {
        let tsn = self
            .b
            .association_ref(self.hb())
            .unwrap()
            .tx_next_tsn_for_tests();
        self.packet_of_b(vec![Chunk::Data(DataChunk {
            tsn: tsn + i,
            stream,
            ssn: 0,
            ppid: 1,
            unordered: false,
            beginning,
            ending,
            immediate: false,
            payload,
        })])
    }
    fn established() -> Pair {
        let p = Pair::established_with(cfg(), cfg());
        assert_eq!(p.state_a(), State::Established);
        p
    }
}

#[test]
fn four_way_handshake_states() {
    let mut p = Pair::new();
    assert_eq!(p.state_a(), State::CookieWait);
    let init = out(&mut p.a, p.now);
    assert_eq!(types(&init), vec![chunk_type::INIT]);
    p.deliver_to_b(init);
    assert_eq!(p.b.association_count(), 0, "INIT creates no state");
    let init_ack = out(&mut p.b, p.now);
    assert_eq!(types(&init_ack), vec![chunk_type::INIT_ACK]);
    p.deliver_to_a(init_ack);
    assert_eq!(p.state_a(), State::CookieEchoed);
    let echo = out(&mut p.a, p.now);
    assert_eq!(types(&echo), vec![chunk_type::COOKIE_ECHO]);
    p.deliver_to_b(echo);
    assert_eq!(p.b.association_count(), 1);
    assert_eq!(
        p.b.association_ref(p.hb()).unwrap().state(),
        State::Established
    );
    assert_eq!(events(&mut p.b), vec![Event::Connected]);
    let ack = out(&mut p.b, p.now);
    assert_eq!(types(&ack), vec![chunk_type::COOKIE_ACK]);
    p.deliver_to_a(ack);
    assert_eq!(p.state_a(), State::Established);
    assert_eq!(events(&mut p.a), vec![Event::Connected]);
}

#[test]
fn t1_init_retransmits_then_gives_up() {
    let mut p = Pair::new();
    let first = out(&mut p.a, p.now);
    let deadline = p.a.poll_timeout().unwrap();
    assert_eq!(deadline - p.now, Duration::from_millis(100));
    p.now = deadline;
    p.a.handle_timeout(p.now);
    let again = out(&mut p.a, p.now);
    assert_eq!(types(&again), vec![chunk_type::INIT]);
    // Same initiate tag on the retransmission.
    assert_eq!(first[0][20..24], again[0][20..24]);
    // Exponential back-off: 200 ms, then 400 ms.
    assert_eq!(
        p.a.poll_timeout().unwrap() - p.now,
        Duration::from_millis(200)
    );
    for _ in 0..3 {
        p.now = p.a.poll_timeout().unwrap();
        p.a.handle_timeout(p.now);
        out(&mut p.a, p.now);
    }
    let ev = events(&mut p.a);
    assert_eq!(
        ev.last(),
        Some(&Event::Closed {
            reason: CloseReason::HandshakeTimeout
        })
    );
    assert_eq!(p.a.association_count(), 0);
}

#[test]
fn t1_cookie_retransmits_cookie_echo_and_duplicate_echo_gets_cookie_ack() {
    let mut p = Pair::new();
    let init = out(&mut p.a, p.now);
    p.deliver_to_b(init);
    let ia = out(&mut p.b, p.now);
    p.deliver_to_a(ia);
    let echo = out(&mut p.a, p.now);
    p.deliver_to_b(echo.clone());
    let _lost_cookie_ack = out(&mut p.b, p.now);
    p.now = p.a.poll_timeout().unwrap();
    p.a.handle_timeout(p.now);
    let echo2 = out(&mut p.a, p.now);
    assert_eq!(types(&echo2), vec![chunk_type::COOKIE_ECHO]);
    p.deliver_to_b(echo2);
    assert_eq!(
        p.b.association_count(),
        1,
        "duplicate COOKIE ECHO creates nothing new"
    );
    let ack = out(&mut p.b, p.now);
    assert_eq!(types(&ack), vec![chunk_type::COOKIE_ACK]);
    p.deliver_to_a(ack);
    assert_eq!(p.state_a(), State::Established);
}

#[test]
fn stale_cookie_answered_with_error_and_client_restarts_init() {
    let mut p = Pair::new();
    let init = out(&mut p.a, p.now);
    p.deliver_to_b(init);
    let ia = out(&mut p.b, p.now);
    p.deliver_to_a(ia);
    let echo = out(&mut p.a, p.now);
    p.now += Duration::from_secs(61);
    p.deliver_to_b(echo);
    assert_eq!(p.b.stats().cookies_stale, 1);
    assert_eq!(p.b.association_count(), 0);
    let err = out(&mut p.b, p.now);
    assert_eq!(types(&err), vec![chunk_type::ERROR]);
    p.deliver_to_a(err);
    assert_eq!(p.state_a(), State::CookieWait);
    assert_eq!(types(&out(&mut p.a, p.now)), vec![chunk_type::INIT]);
}

#[test]
fn forged_cookie_rejected() {
    let mut p = Pair::new();
    let init = out(&mut p.a, p.now);
    p.deliver_to_b(init);
    let ia = out(&mut p.b, p.now);
    p.deliver_to_a(ia);
    let mut echo = out(&mut p.a, p.now);
    let n = echo[0].len();
    echo[0][n - 5] ^= 0x55;
    finish_packet(&mut echo[0]);
    p.deliver_to_b(echo);
    assert_eq!(p.b.stats().cookies_invalid, 1);
    assert_eq!(p.b.association_count(), 0);
}

#[test]
fn init_flood_creates_no_state() {
    let now = Instant::now();
    let mut b = Endpoint::new(cfg(), 2).unwrap();
    let mut a = Endpoint::new(cfg(), 1).unwrap();
    for i in 0..1000u16 {
        let src: SocketAddr = format!("10.9.{}.{}:{}", i / 250, i % 250, 1000 + i)
            .parse()
            .unwrap();
        let h = a.connect(now, &[addr(B)], i + 1, 2).unwrap();
        let init = a.poll_transmit(now).unwrap();
        a.abort(h, b"");
        b.handle_datagram(now, None, src, &init.contents);
    }
    assert_eq!(b.association_count(), 0);
    assert_eq!(b.stats().inits_answered, 1000);
    // Replies are bounded: the queue holds at most max_stateless_replies.
    assert_eq!(out(&mut b, now).len(), 256);
    assert_eq!(b.stats().replies_dropped, 744);
}

#[test]
fn bad_checksum_and_bad_vtag_counted_and_dropped() {
    let mut p = Pair::established();
    let hb = p.hb();
    p.b.send(hb, 0, 11, true, Bytes::from_static(b"x")).unwrap();
    let mut pkts = out(&mut p.b, p.now);
    let mut bad = pkts[0].clone();
    bad[pkts[0].len() - 1] ^= 1;
    p.deliver_to_a(vec![bad]);
    assert_eq!(p.a.stats().bad_checksum, 1);
    pkts[0][4] ^= 0xff;
    finish_packet(&mut pkts[0]);
    p.deliver_to_a(pkts);
    assert_eq!(p.a.stats().bad_vtag, 1);
    assert!(events(&mut p.a).is_empty());
}

#[test]
fn out_of_the_blue_gets_abort_or_shutdown_complete() {
    let now = Instant::now();
    let mut b = Endpoint::new(cfg(), 2).unwrap();
    let mk = |c: Chunk| {
        Packet {
            header: CommonHeader {
                src_port: 1,
                dst_port: 2,
                vtag: 77,
            },
            chunks: vec![c],
        }
        .encode()
    };
    b.handle_datagram(now, None, addr(A), &mk(Chunk::Shutdown { cum_tsn: 1 }));
    let r = Packet::decode(&out(&mut b, now)[0]).unwrap();
    assert_eq!(
        r.chunks,
        vec![Chunk::Abort {
            t: true,
            causes: vec![]
        }]
    );
    assert_eq!(r.header.vtag, 77);
    b.handle_datagram(now, None, addr(A), &mk(Chunk::ShutdownAck));
    let r = Packet::decode(&out(&mut b, now)[0]).unwrap();
    assert_eq!(r.chunks, vec![Chunk::ShutdownComplete { t: true }]);
    b.handle_datagram(
        now,
        None,
        addr(A),
        &mk(Chunk::Abort {
            t: false,
            causes: vec![],
        }),
    );
    assert!(out(&mut b, now).is_empty(), "no answer to an OOTB ABORT");
    assert_eq!(b.stats().unknown_association, 3);
}

#[test]
fn shutdown_state_sequence() {
    let mut p = Pair::established();
    let ha = p.ha;
    p.a.send(ha, 0, 11, true, Bytes::from_static(b"last words"))
        .unwrap();
    p.a.shutdown(p.now, ha);
    assert_eq!(p.state_a(), State::ShutdownPending);
    let data = out(&mut p.a, p.now);
    assert_eq!(types(&data), vec![chunk_type::DATA]);
    p.deliver_to_b(data);
    // The receiver delays its SACK; the sender stays pending until acked.
    assert_eq!(p.state_a(), State::ShutdownPending);
    p.now += Duration::from_millis(200);
    p.b.handle_timeout(p.now);
    let sack = out(&mut p.b, p.now);
    assert_eq!(types(&sack), vec![chunk_type::SACK]);
    p.deliver_to_a(sack);
    assert_eq!(p.state_a(), State::ShutdownSent);
    let sd = out(&mut p.a, p.now);
    assert_eq!(types(&sd), vec![chunk_type::SHUTDOWN]);
    p.deliver_to_b(sd);
    assert_eq!(
        p.b.association_ref(p.hb()).unwrap().state(),
        State::ShutdownAckSent
    );
    let sda = out(&mut p.b, p.now);
    assert_eq!(types(&sda), vec![chunk_type::SHUTDOWN_ACK]);
    p.deliver_to_a(sda);
    assert!(p.a.association_ref(ha).is_none() || p.state_a() == State::Closed);
    let sc = out(&mut p.a, p.now);
    assert_eq!(types(&sc), vec![chunk_type::SHUTDOWN_COMPLETE]);
    p.deliver_to_b(sc);
    assert_eq!(p.b.association_count(), 0);
    assert_eq!(p.a.association_count(), 0);
    let eb = events(&mut p.b);
    assert!(eb.contains(&Event::Closed {
        reason: CloseReason::Shutdown
    }));
    assert!(eb
        .iter()
        .any(|e| matches!(e, Event::Data { bytes, .. } if &bytes[..] == b"last words")));
}

#[test]
fn shutdown_ack_retransmitted_on_t2_and_lost_complete_answered_statelessly() {
    let mut p = Pair::established();
    let ha = p.ha;
    p.a.shutdown(p.now, ha);
    let sd = out(&mut p.a, p.now);
    p.deliver_to_b(sd);
    let _lost = out(&mut p.b, p.now);
    p.now = p.b.poll_timeout().unwrap();
    p.b.handle_timeout(p.now);
    let sda = out(&mut p.b, p.now);
    assert!(types(&sda).contains(&chunk_type::SHUTDOWN_ACK));
    p.deliver_to_a(sda.clone());
    let _lost_complete = out(&mut p.a, p.now);
    assert_eq!(p.a.association_count(), 0);
    // A's association is gone; B's retransmitted SHUTDOWN ACK gets a T-bit COMPLETE.
    p.deliver_to_a(sda);
    let sc = out(&mut p.a, p.now);
    assert_eq!(
        Packet::decode(&sc[0]).unwrap().chunks,
        vec![Chunk::ShutdownComplete { t: true }]
    );
    p.deliver_to_b(sc);
    assert_eq!(p.b.association_count(), 0);
}

#[test]
fn simultaneous_shutdown() {
    let mut p = Pair::established();
    let (ha, hb) = (p.ha, p.hb());
    p.a.shutdown(p.now, ha);
    p.b.shutdown(p.now, hb);
    p.exchange();
    assert_eq!(p.a.association_count(), 0);
    assert_eq!(p.b.association_count(), 0);
    assert!(events(&mut p.a).contains(&Event::Closed {
        reason: CloseReason::Shutdown
    }));
    assert!(events(&mut p.b).contains(&Event::Closed {
        reason: CloseReason::Shutdown
    }));
}

#[test]
fn delayed_sack_every_second_packet_or_timer() {
    let mut p = Pair::established();
    let ha = p.ha;
    events(&mut p.b);
    p.a.send(ha, 0, 11, true, Bytes::from_static(b"one"))
        .unwrap();
    let d1 = out(&mut p.a, p.now);
    p.deliver_to_b(d1);
    assert!(
        out(&mut p.b, p.now).is_empty(),
        "first packet: SACK delayed"
    );
    p.a.send(ha, 0, 11, true, Bytes::from_static(b"two"))
        .unwrap();
    let d2 = out(&mut p.a, p.now);
    p.deliver_to_b(d2);
    assert_eq!(
        types(&out(&mut p.b, p.now)),
        vec![chunk_type::SACK],
        "second packet: SACK now"
    );
    p.a.send(ha, 0, 11, true, Bytes::from_static(b"three"))
        .unwrap();
    let d3 = out(&mut p.a, p.now);
    p.deliver_to_b(d3);
    assert_eq!(
        p.b.poll_timeout().unwrap() - p.now,
        Duration::from_millis(200)
    );
    p.now += Duration::from_millis(200);
    p.b.handle_timeout(p.now);
    assert_eq!(types(&out(&mut p.b, p.now)), vec![chunk_type::SACK]);
}

#[test]
fn out_of_order_data_sacked_at_once_with_gap_and_dup() {
    let mut p = Pair::established();
    let ha = p.ha;
    for m in [&b"a"[..], b"b", b"c"] {
        p.a.send(ha, 0, 11, true, Bytes::copy_from_slice(m))
            .unwrap();
        p.a.association(ha).unwrap();
    }
    // All three go in one packet; rebuild them as three single-chunk packets.
    let pkt = Packet::decode(&out(&mut p.a, p.now)[0]).unwrap();
    assert_eq!(pkt.chunks.len(), 3);
    let single = |i: usize| {
        Packet {
            header: pkt.header,
            chunks: vec![pkt.chunks[i].clone()],
        }
        .encode()
    };
    p.deliver_to_b(vec![single(2)]);
    let s = Packet::decode(&out(&mut p.b, p.now)[0]).unwrap();
    let Chunk::Sack(sack) = &s.chunks[0] else {
        panic!("expected SACK")
    };
    assert_eq!(sack.gaps.len(), 1);
    assert_eq!((sack.gaps[0].start, sack.gaps[0].end), (3, 3));
    p.deliver_to_b(vec![single(2)]);
    let s = Packet::decode(&out(&mut p.b, p.now)[0]).unwrap();
    let Chunk::Sack(sack) = &s.chunks[0] else {
        panic!("expected SACK")
    };
    assert_eq!(sack.dups.len(), 1);
    // Ordered delivery holds "c" back until "a" and "b" arrive.
    events(&mut p.b);
    p.deliver_to_b(vec![single(0), single(1)]);
    let got: Vec<Bytes> = events(&mut p.b)
        .into_iter()
        .filter_map(|e| {
            if let Event::Data { bytes, .. } = e {
                Some(bytes)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        got,
        vec![
            Bytes::from_static(b"a"),
            Bytes::from_static(b"b"),
            Bytes::from_static(b"c")
        ]
    );
}

#[test]
fn fast_retransmit_after_three_miss_reports() {
    let mut p = Pair::established();
    let ha = p.ha;
    for i in 0..5u8 {
        p.a.send(ha, 0, 11, true, Bytes::from(vec![i; 1400]))
            .unwrap();
    }
    let pkts = out(&mut p.a, p.now);
    assert!(pkts.len() >= 4);
    // Lose the first packet; each later one makes B report the gap.
    let mut sacks = Vec::new();
    for pk in &pkts[1..] {
        p.deliver_to_b(vec![pk.clone()]);
        sacks.extend(out(&mut p.b, p.now));
    }
    assert!(sacks.len() >= 3);
    p.deliver_to_a(sacks);
    let rtx = out(&mut p.a, p.now);
    // The lost chunk goes first (ahead of the remaining new data).
    let first = Packet::decode(&rtx[0]).unwrap();
    assert!(matches!(&first.chunks[0], Chunk::Data(d) if d.payload[..] == [0u8; 1400][..]));
    let a = p.a.association_ref(ha).unwrap();
    assert_eq!(a.stats().fast_retransmits, 1);
    assert_eq!(a.stats().retransmissions, 1);
    assert_eq!(a.stats().t3_expiries, 0);
}

#[test]
fn t3_retransmission_after_rto() {
    let mut p = Pair::established();
    let ha = p.ha;
    p.a.send(ha, 0, 11, true, Bytes::from_static(b"x")).unwrap();
    let _lost = out(&mut p.a, p.now);
    let rto = p.a.association_ref(ha).unwrap().paths()[0].rto;
    assert_eq!(p.a.poll_timeout().unwrap() - p.now, rto);
    p.now += rto;
    p.a.handle_timeout(p.now);
    assert_eq!(types(&out(&mut p.a, p.now)), vec![chunk_type::DATA]);
    let a = p.a.association_ref(ha).unwrap();
    assert_eq!(a.stats().t3_expiries, 1);
    assert_eq!(a.paths()[0].rto, rto * 2);
    assert_eq!(a.paths()[0].cwnd, a.paths()[0].pmtu);
}

#[test]
fn unknown_chunks_follow_upper_bits() {
    let mut p = Pair::established();
    let data = |tsn_off: u32| {
        Chunk::Data(DataChunk {
            tsn: tsn_off,
            stream: 0,
            ssn: 0,
            ppid: 1,
            unordered: true,
            beginning: true,
            ending: true,
            immediate: true,
            payload: Bytes::from_static(b"z"),
        })
    };
    let b_tsn = p.b.association_ref(p.hb()).unwrap().tx_next_tsn_for_tests();
    // 0x80 (skip silently): the DATA after it is processed.
    p.deliver_to_a(vec![p.packet_of_b(vec![
        Chunk::Unknown {
            typ: 0x80 | 20,
            flags: 0,
            value: Bytes::new(),
        },
        data(b_tsn),
    ])]);
    assert_eq!(events(&mut p.a).len(), 1);
    // 0x40 (stop and report): the DATA after it is not processed; ERROR goes back.
    p.deliver_to_a(vec![p.packet_of_b(vec![
        Chunk::Unknown {
            typ: 0x40 | 20,
            flags: 0,
            value: Bytes::new(),
        },
        data(b_tsn + 1),
    ])]);
    assert!(events(&mut p.a).is_empty());
    let e = out(&mut p.a, p.now);
    let pk = Packet::decode(&e[0]).unwrap();
    assert!(pk
        .chunks
        .iter()
        .any(|c| matches!(c, Chunk::Error(c) if c[0].code == 6)));
}

#[test]
fn invalid_stream_reported() {
    let mut p = Pair::established();
    let tsn = p.b.association_ref(p.hb()).unwrap().tx_next_tsn_for_tests();
    let pkt = p.fragment_to_a(0, 9999, (true, true), Bytes::from_static(b"z"));
    p.deliver_to_a(vec![pkt]);
    let e = out(&mut p.a, p.now);
    let pk = Packet::decode(&e[0]).unwrap();
    assert!(pk
        .chunks
        .iter()
        .any(|c| matches!(c, Chunk::Error(c) if c[0].code == 1)));
    assert!(pk
        .chunks
        .iter()
        .any(|c| matches!(c, Chunk::Sack(s) if s.cum_tsn == tsn)));
}

#[test]
fn peer_abort_closes_and_t_bit_abort_with_peer_tag_accepted() {
    let mut p = Pair::established();
    let tag_of_b = p.a.association_ref(p.ha).unwrap().local_tag;
    let peer_tag = p.a.association_ref(p.ha).unwrap().peer_tag;
    // ABORT with T bit must carry the receiver's peer tag (the tag B expects), so
    // one carrying A's own tag with T set is rejected.
    let abort = |vtag: u32| {
        Packet {
            header: CommonHeader {
                src_port: 2,
                dst_port: 1,
                vtag,
            },
            chunks: vec![Chunk::Abort {
                t: true,
                causes: vec![],
            }],
        }
        .encode()
    };
    let bad = abort(tag_of_b);
    p.deliver_to_a(vec![bad]);
    assert_eq!(p.state_a(), State::Established);
    let good = abort(peer_tag);
    p.deliver_to_a(vec![good]);
    assert!(events(&mut p.a).contains(&Event::Closed {
        reason: CloseReason::Aborted(vec![])
    }));
    assert_eq!(p.a.association_count(), 0);
}

#[test]
fn tsn_unwrap_handles_wraparound() {
    let base = (1u64 << 32) | 0xffff_fff0;
    assert_eq!(super::unwrap_tsn(base, 0xffff_fff1), base + 1);
    assert_eq!(super::unwrap_tsn(base, 0x0000_0005), base + 0x15);
    assert_eq!(super::unwrap_tsn(base, 0xffff_ffe0), base - 0x10);
}

#[test]
fn receiver_memory_bounded_against_window_ignoring_sender() {
    let mut p = Pair::established();
    let tag = p.a.association_ref(p.ha).unwrap().local_tag;
    let tsn = p.b.association_ref(p.hb()).unwrap().tx_next_tsn_for_tests();
    let limit = cfg().association.receive_buffer as usize;
    // Never send TSN `tsn` itself: everything else is out of order and cannot deliver.
    for k in 1..3000u32 {
        let pkt = Packet {
            header: CommonHeader {
                src_port: 2,
                dst_port: 1,
                vtag: tag,
            },
            chunks: vec![Chunk::Data(DataChunk {
                tsn: tsn.wrapping_add(k),
                stream: 0,
                ssn: k as u16,
                ppid: 1,
                unordered: false,
                beginning: true,
                ending: true,
                immediate: false,
                payload: Bytes::from(vec![0u8; 1000]),
            })],
        }
        .encode();
        p.deliver_to_a(vec![pkt]);
        out(&mut p.a, p.now);
    }
    let a = p.a.association_ref(p.ha).unwrap();
    assert!(
        a.receive_buffered() <= limit,
        "{} > {}",
        a.receive_buffered(),
        limit
    );
    assert!(a.stats().data_dropped > 0);
    assert!(events(&mut p.a).is_empty());
}

#[test]
fn init_collision_in_cookie_echoed_state() {
    let now = Instant::now();
    let mut a = Endpoint::new(cfg(), 1).unwrap();
    let mut b = Endpoint::new(cfg(), 2).unwrap();
    let ha = a.connect(now, &[addr(B)], 1, 2).unwrap();
    let hb = b.connect(now, &[addr(A)], 2, 1).unwrap();
    let init_a = out(&mut a, now);
    let init_b = out(&mut b, now);
    // B (COOKIE-WAIT) answers A's INIT with its own tag.
    for p in init_a {
        b.handle_datagram(now, Some(addr(B)), addr(A), &p);
    }
    let ack_b = out(&mut b, now);
    assert_eq!(types(&ack_b), vec![chunk_type::INIT_ACK]);
    for p in ack_b {
        a.handle_datagram(now, Some(addr(A)), addr(B), &p);
    }
    assert_eq!(a.association_ref(ha).unwrap().state(), State::CookieEchoed);
    let echo_a = out(&mut a, now);
    // Now B's INIT reaches A in COOKIE-ECHOED: A answers with its existing tag.
    for p in init_b {
        a.handle_datagram(now, Some(addr(A)), addr(B), &p);
    }
    let ack_a = out(&mut a, now);
    assert_eq!(types(&ack_a), vec![chunk_type::INIT_ACK]);
    let a_tag = a.association_ref(ha).unwrap().local_tag;
    let Chunk::InitAck(ia) = &Packet::decode(&ack_a[0]).unwrap().chunks[0] else {
        panic!()
    };
    assert_eq!(ia.initiate_tag, a_tag, "same tag as A's own INIT");
    for p in ack_a {
        b.handle_datagram(now, Some(addr(B)), addr(A), &p);
    }
    let echo_b = out(&mut b, now);
    for p in echo_a {
        b.handle_datagram(now, Some(addr(B)), addr(A), &p);
    }
    for p in echo_b {
        a.handle_datagram(now, Some(addr(A)), addr(B), &p);
    }
    // Exchange the COOKIE ACKs and anything else until quiet.
    for _ in 0..5 {
        for p in out(&mut a, now) {
            b.handle_datagram(now, Some(addr(B)), addr(A), &p);
        }
        for p in out(&mut b, now) {
            a.handle_datagram(now, Some(addr(A)), addr(B), &p);
        }
    }
    assert_eq!(a.association_ref(ha).unwrap().state(), State::Established);
    assert_eq!(b.association_ref(hb).unwrap().state(), State::Established);
    assert_eq!((a.association_count(), b.association_count()), (1, 1));
    let (at, ap) = {
        let x = a.association_ref(ha).unwrap();
        (x.local_tag, x.peer_tag)
    };
    let (bt, bp) = {
        let x = b.association_ref(hb).unwrap();
        (x.local_tag, x.peer_tag)
    };
    assert_eq!((at, ap), (bp, bt), "tags agree");
    a.send(ha, 0, 11, true, Bytes::from_static(b"after collision"))
        .unwrap();
    for p in out(&mut a, now) {
        b.handle_datagram(now, Some(addr(B)), addr(A), &p);
    }
    assert!(events(&mut b)
        .iter()
        .any(|e| matches!(e, Event::Data { bytes, .. } if &bytes[..] == b"after collision")));
}

#[test]
fn restart_while_established_gets_new_handle_and_tags() {
    let mut p = Pair::established();
    let old_b = p.hb();
    let old_tag = p.b.association_ref(old_b).unwrap().local_tag;
    // A reboots: fresh endpoint, same address, new INIT.
    p.a = Endpoint::new(cfg(), 77).unwrap();
    p.ha = p.a.connect(p.now, &[addr(B)], 1, 2).unwrap();
    p.exchange();
    assert_eq!(p.state_a(), State::Established);
    let eb = events(&mut p.b);
    assert!(eb.contains(&Event::Closed {
        reason: CloseReason::PeerRestarted
    }));
    assert!(eb.contains(&Event::Connected));
    assert_eq!(p.b.association_count(), 1);
    let new_b = p.hb();
    assert_ne!(new_b, old_b);
    assert_ne!(p.b.association_ref(new_b).unwrap().local_tag, old_tag);
    assert_eq!(p.b.stats().restarts, 1);
}

#[test]
fn a_burst_at_a_small_pmtu_fills_a_gso_train_and_no_more() {
    let mut p = Pair::established();
    let ha = p.ha;
    // Past slow start: only the burst limit holds the sender back.
    let pmtu = {
        let a = p.a.association(ha).unwrap();
        a.paths[0].cwnd = 4 << 20;
        a.paths[0].pmtu
    };
    assert_eq!(pmtu, 1472);
    p.a.send(ha, 0, 11, true, Bytes::from(vec![7u8; 200_000]))
        .unwrap();
    let pkts = out(&mut p.a, p.now);
    let want = super::BURST_BYTES / pmtu;
    assert!(want > cfg().association.max_burst);
    assert_eq!(pkts.len(), want, "one burst: 64 KiB of 1,472-byte packets");
    // At a PMTU where max_burst packets carry more than 64 KiB, max_burst rules.
    let mut c = cfg();
    c.association.pmtu = 16_000;
    let mut p = Pair::established_with(c.clone(), c);
    let ha = p.ha;
    p.a.association(ha).unwrap().paths[0].cwnd = 4 << 20;
    p.a.send(ha, 0, 11, true, Bytes::from(vec![7u8; 255_000]))
        .unwrap();
    assert_eq!(out(&mut p.a, p.now).len(), cfg().association.max_burst);
}

#[test]
fn large_payloads_are_slices_of_their_packet_and_small_ones_are_copied_out() {
    let mut c = cfg();
    c.association.pmtu = 65_507;
    let mut p = Pair::established_with(c.clone(), c);
    events(&mut p.a);
    events(&mut p.b);
    let ha = p.ha;
    // Both messages go in one ~40 KB packet.
    p.a.send(ha, 0, 11, true, Bytes::from(vec![1u8; 10]))
        .unwrap();
    p.a.send(ha, 0, 11, true, Bytes::from(vec![2u8; 40_000]))
        .unwrap();
    let pkts = out(&mut p.a, p.now);
    assert_eq!(pkts.len(), 1);
    let packet = Bytes::from(pkts[0].clone());
    let range = packet.as_ptr() as usize..packet.as_ptr() as usize + packet.len();
    p.b.handle_datagram_bytes(p.now, Some(addr(B)), addr(A), packet.clone());
    let got = messages(&mut p.b);
    assert_eq!(got.len(), 2);
    assert_eq!(&got[0][..], &[1u8; 10][..]);
    assert_eq!(&got[1][..], &[2u8; 40_000][..]);
    // The small one does not keep the 40 KB packet alive; the large one is not copied.
    assert!(!range.contains(&(got[0].as_ptr() as usize)));
    assert!(range.contains(&(got[1].as_ptr() as usize)));
}

#[test]
fn packets_appended_to_a_filled_buffer_are_whole_packets_within_the_pmtu() {
    let mut p = Pair::established();
    let ha = p.ha;
    p.a.association(ha).unwrap().paths[0].cwnd = 4 << 20;
    // Fragments, a small message bundled behind them, and B's SACK owed to A.
    let big: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    p.a.send(ha, 0, 11, true, Bytes::from(big.clone())).unwrap();
    p.a.send(ha, 1, 11, true, Bytes::from_static(b"tail"))
        .unwrap();
    // A driver's GSO train: earlier packets stay in front of each new one.
    let junk = [0xA5u8; 36];
    let mut train = junk.to_vec();
    let mut packets = Vec::new();
    while let Some((dest, _)) = p.a.poll_transmit_append(p.now, &mut train) {
        assert_eq!(dest, addr(B));
        let start = packets.iter().map(Vec::len).sum::<usize>() + junk.len();
        let pkt = train[start..].to_vec();
        assert!(pkt.len() <= 1472, "a packet of {} bytes", pkt.len());
        Packet::decode(&pkt).expect("a whole packet with a valid checksum");
        packets.push(pkt);
    }
    assert_eq!(
        &train[..junk.len()],
        &junk[..],
        "what the buffer held stays"
    );
    assert!(packets.len() > 30, "{} packets", packets.len());
    // A buffer of a length chunks do not align to still gets a whole packet.
    p.a.send(ha, 3, 11, true, Bytes::from_static(b"odd"))
        .unwrap();
    let mut odd = vec![0xA5u8; 37];
    assert!(p.a.poll_transmit_append(p.now, &mut odd).is_some());
    Packet::decode(&odd[37..]).unwrap();
    packets.push(odd[37..].to_vec());
    // `poll_transmit_into` still starts from an empty buffer.
    p.a.send(ha, 2, 11, true, Bytes::from_static(b"x")).unwrap();
    let mut one = vec![1u8; 99];
    assert!(p.a.poll_transmit_into(p.now, &mut one).is_some());
    Packet::decode(&one).unwrap();
    packets.push(one);
    p.deliver_to_b(packets);
    let got: Vec<(u16, Bytes)> = events(&mut p.b)
        .into_iter()
        .filter_map(|e| match e {
            Event::Data { stream, bytes, .. } => Some((stream, bytes)),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 4);
    assert!(got.contains(&(3, Bytes::from_static(b"odd"))));
    assert!(got.contains(&(0, Bytes::from(big))));
    assert!(got.contains(&(1, Bytes::from_static(b"tail"))));
    assert!(got.contains(&(2, Bytes::from_static(b"x"))));
}

/// Fragments whose stream changes mid-message are a protocol violation whether they
/// arrive in order (the in-order run) or not (the reassembly map).
#[test]
fn inconsistent_fragments_abort_in_order_and_out_of_order() {
    for order in [[0usize, 1, 2], [2, 1, 0], [0, 2, 1]] {
        let mut p = Pair::established();
        let frag = |i: u32, stream: u16, beginning: bool, ending: bool| {
            p.fragment_to_a(i, stream, (beginning, ending), Bytes::from_static(b"frag"))
        };
        let frags = [
            frag(0, 0, true, false),
            frag(1, 1, false, false),
            frag(2, 1, false, true),
        ];
        p.deliver_to_a(order.iter().map(|&i| frags[i].clone()).collect());
        let sent = out(&mut p.a, p.now);
        let aborted = sent.iter().any(|pkt| {
            Packet::decode(pkt).unwrap().chunks.iter().any(
                |c| matches!(c, Chunk::Abort { causes, .. } if causes.iter().any(|c| c.code == 13)),
            )
        });
        assert!(
            aborted,
            "order {order:?}: no ABORT with a protocol violation"
        );
        assert!(
            !events(&mut p.a)
                .iter()
                .any(|e| matches!(e, Event::Data { .. })),
            "order {order:?}: a message was delivered"
        );
    }
}

/// A message whose fragments arrive partly out of order is delivered once, whole.
#[test]
fn fragments_out_of_order_join_the_in_order_run() {
    let mut p = Pair::established();
    let frag = |i: u32| p.fragment_to_a(i, 0, (i == 0, i == 5), Bytes::from(vec![i as u8; 3]));
    // In order, then a gap filled by fragments that arrived early, then the end.
    p.deliver_to_a([0, 1, 4, 3, 2, 5].iter().map(|&i| frag(i)).collect());
    let got = messages(&mut p.a);
    let want: Vec<u8> = (0..6u8).flat_map(|i| [i; 3]).collect();
    assert_eq!(got, vec![Bytes::from(want)]);
}

/// A timer that moved later leaves its old deadline indexed; reaching it does nothing
/// but index the real one (no retransmission, no packet).
#[test]
fn a_stale_timer_deadline_fires_harmlessly() {
    let mut p = Pair::established();
    let ha = p.ha;
    p.a.send(ha, 0, 11, true, Bytes::from_static(b"ping"))
        .unwrap();
    let data = out(&mut p.a, p.now);
    let t3 = p.a.poll_timeout().unwrap();
    p.deliver_to_b(data);
    // B's SACK (sent at once here: the delayed-ack timer is forced).
    p.now += Duration::from_millis(1);
    p.b.handle_timeout(p.now + Duration::from_secs(1));
    let sack = out(&mut p.b, p.now);
    assert!(types(&sack).contains(&chunk_type::SACK));
    p.deliver_to_a(sack);
    assert_eq!(p.a.association_ref(ha).unwrap().stats().t3_expiries, 0);
    // T3 stopped: the association's own deadline is later than what is indexed.
    let real = p.a.association_ref(ha).unwrap().poll_timeout().unwrap();
    assert!(real > t3, "heartbeat after the stopped T3");
    assert_eq!(p.a.poll_timeout(), Some(t3), "the stale entry stays");
    p.now = t3;
    p.a.handle_timeout(p.now);
    assert!(
        out(&mut p.a, p.now).is_empty(),
        "nothing sent at the stale deadline"
    );
    assert_eq!(p.a.association_ref(ha).unwrap().stats().t3_expiries, 0);
    assert_eq!(
        p.a.poll_timeout(),
        Some(real),
        "the real deadline is indexed now"
    );
}

/// A datagram that is a slice of a larger receive buffer (a GRO train): a small message
/// is copied out so it cannot keep the whole buffer alive; a large one stays a slice.
#[test]
fn payloads_from_a_shared_buffer_are_copied_out_when_small() {
    let mut c = cfg();
    c.association.pmtu = 65_507;
    let mut p = Pair::established_with(c.clone(), c);
    events(&mut p.b);
    for (len, sliced) in [(10usize, false), (20_000, true)] {
        p.a.send(p.ha, 0, 11, true, Bytes::from(vec![3u8; len]))
            .unwrap();
        let pkts = out(&mut p.a, p.now);
        assert_eq!(pkts.len(), 1);
        // The packet sits at the start of a 64 KiB buffer, like a segment of a train.
        let mut buffer = pkts[0].clone();
        buffer.resize(65_536, 0);
        let buffer = Bytes::from(buffer);
        let range = buffer.as_ptr() as usize..buffer.as_ptr() as usize + buffer.len();
        p.b.handle_datagram_in(
            p.now,
            Some(addr(B)),
            addr(A),
            buffer.slice(..pkts[0].len()),
            buffer.len(),
        );
        let got = messages(&mut p.b);
        assert_eq!(got, vec![Bytes::from(vec![3u8; len])]);
        assert_eq!(
            range.contains(&(got[0].as_ptr() as usize)),
            sliced,
            "{len}-byte message"
        );
        // B's SACK, so A's window stays open.
        p.now += Duration::from_secs(1);
        p.b.handle_timeout(p.now);
        let sack = out(&mut p.b, p.now);
        p.deliver_to_a(sack);
    }
}

/// Two peers on one host (10.0.0.1, UDP ports 9899 and 9900). The first rebinds (NAT) to
/// the second's port, taking over its address entry, and then goes away. The second must
/// be found by its address again (its next packet restores the entry), so that its peer's
/// restart from that address is recognised as a restart, not taken for a new peer.
#[test]
fn an_address_entry_taken_over_and_freed_comes_back_to_its_association() {
    let now = Instant::now();
    let x_addr = addr("10.0.0.1:9899");
    let y_addr = addr("10.0.0.1:9900");
    let mut b = Endpoint::new(cfg(), 2).unwrap();
    let mut x = Endpoint::new(cfg(), 3).unwrap();
    let mut y = Endpoint::new(cfg(), 4).unwrap();
    // Packets between B and the peers; `x_from` is where B sees X's packets come from.
    fn run(b: &mut Endpoint, peers: &mut [(&mut Endpoint, SocketAddr, SocketAddr)], now: Instant) {
        for _ in 0..20 {
            let mut moved = false;
            for (ep, _, from) in peers.iter_mut() {
                for p in out(ep, now) {
                    b.handle_datagram(now, Some(addr(B)), *from, &p);
                    moved = true;
                }
            }
            while let Some(t) = b.poll_transmit(now) {
                if let Some((ep, at, _)) = peers
                    .iter_mut()
                    .find(|(_, at, from)| t.destination == *from || t.destination == *at)
                {
                    ep.handle_datagram(now, Some(*at), addr(B), &t.contents);
                }
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }
    let hx = x.connect(now, &[addr(B)], 1, 2).unwrap();
    let hy = y.connect(now, &[addr(B)], 1, 2).unwrap();
    run(
        &mut b,
        &mut [(&mut x, x_addr, x_addr), (&mut y, y_addr, y_addr)],
        now,
    );
    assert_eq!(b.association_count(), 2);
    // X's packets now arrive from Y's port: B moves X's path there.
    x.send(hx, 0, 11, true, Bytes::from_static(b"x")).unwrap();
    run(&mut b, &mut [(&mut x, x_addr, y_addr)], now);
    // X goes away; its (taken-over) entry is freed.
    x.abort(hx, b"bye");
    run(&mut b, &mut [(&mut x, x_addr, y_addr)], now);
    assert_eq!(b.association_count(), 1);
    events(&mut b);
    // Y is still there and talks (found by its tag).
    y.send(hy, 0, 11, true, Bytes::from_static(b"y")).unwrap();
    run(&mut b, &mut [(&mut y, y_addr, y_addr)], now);
    assert!(events(&mut b)
        .iter()
        .any(|e| matches!(e, Event::Data { .. })));
    // Y's peer restarts from the same address: B must take it for a restart of Y.
    let mut y2 = Endpoint::new(cfg(), 5).unwrap();
    y2.connect(now, &[addr(B)], 1, 2).unwrap();
    run(&mut b, &mut [(&mut y2, y_addr, y_addr)], now);
    assert_eq!(b.association_count(), 1, "the old association is replaced");
    assert!(events(&mut b).iter().any(|e| matches!(
        e,
        Event::Closed {
            reason: CloseReason::PeerRestarted
        }
    )));
}

/// Max.Burst limits what a SACK lets out beyond what it acknowledged: a SACK for a whole
/// burst (one per GSO train read) lets that burst be replaced and one more go out, so
/// the flight does not shrink to one burst per round trip.
#[test]
fn a_sack_clocks_out_what_it_acknowledged_plus_one_burst() {
    let mut p = Pair::established();
    let ha = p.ha;
    p.a.association(ha).unwrap().paths[0].cwnd = 4 << 20;
    for _ in 0..6 {
        p.a.send(ha, 0, 11, true, Bytes::from(vec![7u8; 100_000]))
            .unwrap();
    }
    let burst = super::BURST_BYTES / 1472;
    let first = out(&mut p.a, p.now);
    assert_eq!(first.len(), burst);
    p.deliver_to_b(first);
    let sack = out(&mut p.b, p.now);
    assert_eq!(
        types(&sack),
        vec![chunk_type::SACK],
        "one SACK for the burst"
    );
    p.deliver_to_a(sack);
    assert_eq!(
        out(&mut p.a, p.now).len(),
        2 * burst,
        "the acknowledged burst and one more"
    );
}
