//! Hostile input: arbitrary bytes and arbitrary well-framed packets never panic the
//! decoder, an endpoint, or an established association.

mod support;

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use sctp::wire::{finish_packet, Chunk, CommonHeader};
use sctp::{Event, SendError, State};
use support::{fast_config, pair};

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256), .. ProptestConfig::default() })]

    #[test]
    fn fuzz_packet_decode(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        sctp::fuzzing::packet_decode(&data);
    }

    #[test]
    fn fuzz_association_input(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        sctp::fuzzing::association_input(&data);
    }

    /// The same body with many pieces per case (mode byte, then up to 40 bytes), so the
    /// crafted RE-CONFIG requests, resets and data interleave.
    #[test]
    fn fuzz_association_input_pieces(
        pieces in proptest::collection::vec((0u8..0xff, proptest::collection::vec(0u8..0xff, 0..40)), 1..40),
    ) {
        let mut data = Vec::new();
        for (mode, body) in pieces {
            data.push(mode);
            data.extend_from_slice(&body);
            data.push(0xff);
        }
        sctp::fuzzing::association_input(&data);
    }

    /// Well-framed chunks of every type with random contents, with the right tag and
    /// ports, into an established association: no panic, and afterwards either the
    /// association closed cleanly or it still carries data.
    #[test]
    fn structured_garbage_into_established(
        seed in any::<u64>(),
        chunks in proptest::collection::vec((0u8..16, any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64)), 1..12),
    ) {
        let (mut net, ha, hb) = pair(seed, fast_config());
        let ports = net.nodes[0].ep.association_ref(ha).unwrap().ports();
        let mut pkt = Vec::new();
        // Use the real tag: read it from a packet the peer sends.
        net.nodes[1].ep.send(hb, 0, 1, true, Bytes::from_static(b"probe")).unwrap();
        let t = net.nodes[1].ep.poll_transmit(net.now).unwrap();
        let vtag = u32::from_be_bytes(t.contents[4..8].try_into().unwrap());
        CommonHeader { src_port: ports.1, dst_port: ports.0, vtag }.encode(&mut pkt);
        for (typ, flags, value) in &chunks {
            Chunk::Unknown { typ: *typ, flags: *flags, value: Bytes::copy_from_slice(value) }.encode(&mut pkt);
        }
        finish_packet(&mut pkt);
        let now = net.now;
        let (to, from) = (net.addr(0), net.addr(1));
        net.nodes[0].ep.handle_datagram(now, Some(to), from, &pkt);
        net.run_for(Duration::from_secs(2));
        let closed = net.has_event(0, |e| matches!(e, Event::Closed { .. }));
        if !closed {
            match net.nodes[0].ep.send(ha, 0, 11, true, Bytes::from_static(b"still alive")) {
                Ok(()) => prop_assert!(net.run_until(Duration::from_secs(30), |n| n.data(1).iter().any(|d| &d.3[..] == b"still alive"))),
                // A forged SHUTDOWN (right tag) legitimately starts a shutdown; it must
                // then end within the retransmission budget rather than hang.
                Err(SendError::NotConnected) => {
                    let state = net.nodes[0].ep.association_ref(ha).map(|a| a.state());
                    prop_assert!(matches!(state, Some(State::ShutdownReceived | State::ShutdownAckSent)), "{:?}", state);
                    let ended = net.run_until(Duration::from_secs(600), |n| {
                        n.has_event(0, |e| matches!(e, Event::Closed { .. }))
                    });
                    prop_assert!(ended, "shutdown never finished");
                }
                Err(e) => return Err(TestCaseError::fail(format!("send: {e}"))),
            }
        }
    }
}
