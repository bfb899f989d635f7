//! Stream resets (RFC 6525) in the middle of two-way traffic over the simulated network
//! with loss, duplication and reordering: every message arrives exactly once, in order
//! within each ordered stream, every reset completes on both sides, and the SSNs on the
//! wire restart at 0 exactly where the resets say.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use sctp::wire::ReconfigResult;
use sctp::{Event, ResetDirection};
use support::{fast_config, Net};

const STREAMS: u16 = 4;

#[derive(Debug, Clone)]
enum Op {
    Send {
        stream: u16,
        ordered: bool,
        len: usize,
    },
    /// Reset the streams in the bit mask (0: all).
    Reset(u8),
    /// Let the network run this many milliseconds.
    Wait(u64),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            6 => (0..STREAMS, any::<bool>(), prop_oneof![4usize..100, 4usize..3000, 4usize..20_000])
                .prop_map(|(stream, ordered, len)| Op::Send { stream, ordered, len }),
            1 => (0u8..16).prop_map(Op::Reset),
            2 => (1u64..80).prop_map(Op::Wait),
        ],
        1..50,
    )
    .prop_filter("at most 8 resets", |v| {
        v.iter().filter(|o| matches!(o, Op::Reset(_))).count() <= 8
    })
}

fn mask_streams(mask: u8) -> Vec<u16> {
    (0..STREAMS).filter(|s| mask & (1 << s) != 0).collect()
}

/// A message body: its side and index in the first four bytes, then filler.
fn body(side: usize, i: usize, len: usize) -> Vec<u8> {
    let mut b = vec![(i % 251) as u8; len];
    b[..4].copy_from_slice(&((side as u32) << 24 | i as u32).to_be_bytes());
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64), .. ProptestConfig::default() })]

    #[test]
    fn resets_mid_traffic_deliver_exactly_once_and_restart_ssns(
        seed in any::<u64>(), loss in 0.0f64..0.12, dup in 0.0f64..0.05,
        jitter_ms in 0u64..30, delay_ms in 1u64..30,
        script_a in ops(), script_b in ops(),
    ) {
        let mut cfg = fast_config();
        cfg.association.max_retransmissions = 40;
        cfg.association.path_max_retransmissions = 40;
        cfg.association.max_init_retransmissions = 40;
        cfg.association.outbound_streams = STREAMS;
        cfg.association.inbound_streams = STREAMS;
        cfg.association.send_buffer = 4 << 20;
        cfg.association.receive_buffer = 4 << 20;
        let mut net = Net::new(seed);
        let a = net.add(cfg.clone(), &["10.0.0.1:9899"], seed ^ 5);
        let b = net.add(cfg, &["10.0.0.2:9899"], seed ^ 6);
        let now = net.now;
        let server = net.addr(b);
        let ha = net.nodes[a].ep.connect(now, &[server], 1, 1).unwrap();
        prop_assert!(net.run_until(Duration::from_secs(60), |n| n.first_handle(0).is_some() && n.first_handle(1).is_some()));
        let hb = net.first_handle(b).unwrap();
        net.loss = loss;
        net.dup = dup;
        net.jitter = Duration::from_millis(jitter_ms);
        net.delay = Duration::from_millis(delay_ms);
        net.record_data = true;

        // Interleave both scripts; expected SSNs follow the send/reset order per side.
        let scripts = [(a, ha, &script_a), (b, hb, &script_b)];
        let mut sent: [Vec<(u16, bool, usize)>; 2] = [Vec::new(), Vec::new()];
        let mut expect_ssn: [HashMap<u32, u16>; 2] = [HashMap::new(), HashMap::new()];
        let mut next_ssn = [[0u16; STREAMS as usize]; 2];
        let mut resets = [0usize; 2];
        let longest = script_a.len().max(script_b.len());
        for k in 0..longest {
            for (side, &(node, h, script)) in scripts.iter().enumerate() {
                let Some(op) = script.get(k) else { continue };
                match op {
                    Op::Send { stream, ordered, len } => {
                        let i = sent[side].len();
                        let data = Bytes::from(body(side, i, *len));
                        net.nodes[node].ep.send(h, *stream, 11, *ordered, data).unwrap();
                        if *ordered {
                            let n = &mut next_ssn[side][*stream as usize];
                            expect_ssn[side].insert(i as u32, *n);
                            *n = n.wrapping_add(1);
                        }
                        sent[side].push((*stream, *ordered, *len));
                    }
                    Op::Reset(mask) => {
                        let streams = mask_streams(*mask);
                        net.nodes[node].ep.reset_streams(h, &streams).unwrap();
                        resets[side] += 1;
                        let all: Vec<u16> = (0..STREAMS).collect();
                        for s in if streams.is_empty() { &all } else { &streams } {
                            next_ssn[side][*s as usize] = 0;
                        }
                    }
                    Op::Wait(ms) => net.run_for(Duration::from_millis(*ms)),
                }
            }
        }
        let (na, nb) = (sent[0].len(), sent[1].len());
        let done = |n: &Net| {
            let outgoing = |node: usize| n.nodes[node].events.iter().filter(|(_, e, _)| matches!(e,
                Event::StreamsReset { direction: ResetDirection::Outgoing, .. })).count();
            n.data(1).len() >= na && n.data(0).len() >= nb
                && outgoing(0) >= resets[0] && outgoing(1) >= resets[1]
        };
        prop_assert!(net.run_until(Duration::from_secs(600), done),
            "delivered {}/{} and {}/{}", net.data(1).len(), na, net.data(0).len(), nb);
        net.run_for(Duration::from_secs(2));

        for (side, receiver) in [(0usize, b), (1usize, a)] {
            let got = net.data(receiver);
            prop_assert_eq!(got.len(), sent[side].len(), "exactly once");
            let mut seen = vec![false; sent[side].len()];
            let mut last = [None::<usize>; STREAMS as usize];
            for (stream, _, ordered, bytes) in &got {
                let id = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                prop_assert_eq!(id >> 24, side as u32);
                let i = (id & 0xff_ffff) as usize;
                prop_assert!(i < seen.len() && !seen[i], "duplicate or unknown message");
                seen[i] = true;
                let (s, o, len) = sent[side][i];
                prop_assert_eq!((s, o), (*stream, *ordered));
                prop_assert_eq!(&bytes[..], &body(side, i, len)[..]);
                if o {
                    if let Some(prev) = last[s as usize] {
                        prop_assert!(prev < i, "stream {} out of order", s);
                    }
                    last[s as usize] = Some(i);
                }
            }
            // Every reset succeeded on the sender and was performed by the receiver.
            let sender = if side == 0 { a } else { b };
            let results: Vec<ReconfigResult> = net.nodes[sender].events.iter().filter_map(|(_, e, _)| match e {
                Event::StreamsReset { direction: ResetDirection::Outgoing, result, .. } => Some(*result),
                _ => None,
            }).collect();
            prop_assert_eq!(results.len(), resets[side]);
            prop_assert!(results.iter().all(|r| *r == ReconfigResult::SuccessPerformed), "{:?}", results);
            let incoming = net.nodes[receiver].events.iter().filter(|(_, e, _)| matches!(e,
                Event::StreamsReset { direction: ResetDirection::Incoming, .. })).count();
            prop_assert_eq!(incoming, resets[side]);
            // On the wire, each ordered message carried the SSN its epoch gives it.
            for (node, stream, ssn, unordered, head) in &net.sent_data {
                if *node != sender || *unordered {
                    continue;
                }
                let i = u32::from_be_bytes(*head) & 0xff_ffff;
                prop_assert_eq!(Some(ssn), expect_ssn[side].get(&i), "stream {} message {}", stream, i);
            }
        }
    }
}
