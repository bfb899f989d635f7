//! Whole-engine tests over the deterministic simulated network.

mod support;

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use sctp::{CloseReason, Event, SendError, SendOptions};
use support::{fast_config, pair, Net};

fn closed(net: &Net, node: usize) -> Option<CloseReason> {
    net.nodes[node].events.iter().find_map(|(_, e, _)| match e {
        Event::Closed { reason } => Some(reason.clone()),
        _ => None,
    })
}

#[test]
fn handshake_and_data_both_ways() {
    let (mut net, ha, hb) = pair(1, fast_config());
    net.nodes[0]
        .ep
        .send(ha, 0, 11, true, Bytes::from_static(b"asap"))
        .unwrap();
    net.nodes[1]
        .ep
        .send(hb, 1, 12, false, Bytes::from_static(b"enrp"))
        .unwrap();
    assert!(
        net.run_until(Duration::from_secs(5), |n| n.data(0).len() == 1
            && n.data(1).len() == 1)
    );
    assert_eq!(
        net.data(1),
        vec![(0, 11, true, Bytes::from_static(b"asap"))]
    );
    assert_eq!(
        net.data(0),
        vec![(1, 12, false, Bytes::from_static(b"enrp"))]
    );
    // The server kept no state before the COOKIE ECHO: exactly one association each.
    assert_eq!(net.nodes[1].ep.association_count(), 1);
    assert_eq!(net.nodes[1].ep.stats().inits_answered, 1);
}

#[test]
fn large_message_fragmented_and_pmtu_respected() {
    let mut cfg = fast_config();
    cfg.association.pmtu = 1200;
    let (mut net, ha, _) = pair(2, cfg);
    let msg: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    net.nodes[0]
        .ep
        .send(ha, 3, 11, true, Bytes::from(msg.clone()))
        .unwrap();
    assert!(net.run_until(Duration::from_secs(10), |n| !n.data(1).is_empty()));
    assert_eq!(net.data(1)[0].3, Bytes::from(msg));
    assert!(
        net.nodes[0].max_sent <= 1200,
        "sent {} > pmtu",
        net.nodes[0].max_sent
    );
    assert!(net.nodes[1].max_sent <= 1200);
}

#[test]
fn graceful_shutdown_delivers_queued_data() {
    let (mut net, ha, _) = pair(3, fast_config());
    for i in 0..50u32 {
        net.nodes[0]
            .ep
            .send(ha, 0, 11, true, Bytes::from(i.to_be_bytes().to_vec()))
            .unwrap();
    }
    let now = net.now;
    net.nodes[0].ep.shutdown(now, ha);
    assert!(
        net.run_until(Duration::from_secs(10), |n| closed(n, 0).is_some()
            && closed(n, 1).is_some())
    );
    assert_eq!(closed(&net, 0), Some(CloseReason::Shutdown));
    assert_eq!(closed(&net, 1), Some(CloseReason::Shutdown));
    assert_eq!(net.data(1).len(), 50);
    assert_eq!(net.nodes[0].ep.association_count(), 0);
    assert_eq!(net.nodes[1].ep.association_count(), 0);
    // The counters of a removed association stay in the endpoint's totals.
    let (sent, got) = (
        net.nodes[0].ep.association_totals(),
        net.nodes[1].ep.association_totals(),
    );
    assert_eq!(sent.data_chunks_sent, 50);
    assert_eq!(got.messages_received, 50);
    assert!(got.data_chunks_received >= 50);
    assert!(sent.sacks_received >= 1 && got.sacks_sent >= 1);
    assert_eq!(
        net.nodes[0]
            .ep
            .send(ha, 0, 11, true, Bytes::from_static(b"x")),
        Err(SendError::NotConnected)
    );
}

#[test]
fn abort_reaches_peer_with_cause() {
    let (mut net, ha, _) = pair(4, fast_config());
    net.nodes[0].ep.abort(ha, b"bye");
    assert!(net.run_until(Duration::from_secs(5), |n| closed(n, 1).is_some()));
    match closed(&net, 1) {
        Some(CloseReason::Aborted(causes)) => {
            assert_eq!(causes[0].code, 12);
            assert_eq!(&causes[0].info[..], b"bye");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(closed(&net, 0), Some(CloseReason::LocalAbort(_))));
}

#[test]
fn silent_peer_detected_within_bound() {
    let cfg = fast_config();
    let a = &cfg.association;
    // Lower bound: max_retransmissions + 1 timeouts, each at least the backed-off RTO.min.
    let mut lower = Duration::ZERO;
    let mut r = a.rto_min;
    for _ in 0..=a.max_retransmissions {
        lower += r;
        r = (r * 2).min(a.rto_max);
    }
    for seed in 0..20 {
        let (mut net, ha, _) = pair(500 + seed, cfg.clone());
        net.run_for(Duration::from_millis(3000 + 37 * seed));
        // Idle and healthy: heartbeats flow, nothing closes.
        assert!(closed(&net, 0).is_none());
        let rto = net.nodes[0].ep.association_ref(ha).unwrap().paths()[0].rto;
        let bound = a.failure_detection_bound(rto).unwrap();
        net.nodes[1].frozen = true;
        let frozen_at = net.now;
        assert!(net.run_until(Duration::from_secs(120), |n| closed(n, 0).is_some()));
        assert_eq!(closed(&net, 0), Some(CloseReason::Timeout));
        let at = net.nodes[0]
            .events
            .iter()
            .find(|(_, e, _)| matches!(e, Event::Closed { .. }))
            .unwrap()
            .2;
        let took = at - frozen_at;
        assert!(
            took <= bound,
            "seed {seed}: detection took {took:?} > bound {bound:?}"
        );
        assert!(
            took >= lower,
            "seed {seed}: too early: {took:?} < {lower:?}"
        );
    }
}

#[test]
fn silent_peer_during_bulk_detected() {
    let cfg = fast_config();
    let (mut net, ha, _) = pair(6, cfg);
    net.nodes[1].frozen = true;
    for _ in 0..20 {
        let _ = net.nodes[0]
            .ep
            .send(ha, 0, 11, true, Bytes::from(vec![1u8; 10_000]));
    }
    assert!(net.run_until(Duration::from_secs(120), |n| closed(n, 0).is_some()));
    assert_eq!(closed(&net, 0), Some(CloseReason::Timeout));
    assert!(net.nodes[0].ep.association_count() == 0);
}

#[test]
fn handshake_without_peer_times_out() {
    let mut net = Net::new(7);
    let a = net.add(fast_config(), &["10.0.0.1:9899"], 1);
    let now = net.now;
    net.nodes[a]
        .ep
        .connect(now, &["10.0.0.9:9899".parse().unwrap()], 1, 1)
        .unwrap();
    assert!(net.run_until(Duration::from_secs(600), |n| closed(n, 0).is_some()));
    assert_eq!(closed(&net, 0), Some(CloseReason::HandshakeTimeout));
}

#[test]
fn simultaneous_open_yields_one_association_each() {
    let mut net = Net::new(8);
    let a = net.add(fast_config(), &["10.0.0.1:9899"], 11);
    let b = net.add(fast_config(), &["10.0.0.2:9899"], 12);
    let now = net.now;
    let (aa, ba) = (net.addr(a), net.addr(b));
    let ha = net.nodes[a].ep.connect(now, &[ba], 7, 7).unwrap();
    let hb = net.nodes[b].ep.connect(now, &[aa], 7, 7).unwrap();
    assert!(
        net.run_until(Duration::from_secs(10), |n| n.first_handle(0).is_some()
            && n.first_handle(1).is_some())
    );
    assert_eq!(net.first_handle(0), Some(ha));
    assert_eq!(net.first_handle(1), Some(hb));
    net.nodes[a]
        .ep
        .send(ha, 0, 11, true, Bytes::from_static(b"ping"))
        .unwrap();
    net.nodes[b]
        .ep
        .send(hb, 0, 11, true, Bytes::from_static(b"pong"))
        .unwrap();
    assert!(
        net.run_until(Duration::from_secs(5), |n| n.data(0).len() == 1
            && n.data(1).len() == 1)
    );
    assert_eq!(net.nodes[0].ep.association_count(), 1);
    assert_eq!(net.nodes[1].ep.association_count(), 1);
}

#[test]
fn peer_restart_from_same_address() {
    let (mut net, _ha, _hb) = pair(9, fast_config());
    // The client host reboots: a new endpoint on the same address connects again.
    net.nodes[0].ep = sctp::Endpoint::new(fast_config(), 99).unwrap();
    net.nodes[0].events.clear();
    let now = net.now;
    let server = net.addr(1);
    let h2 = net.nodes[0].ep.connect(now, &[server], 3863, 3863).unwrap();
    assert!(net.run_until(Duration::from_secs(10), |n| n.first_handle(0).is_some()));
    assert!(
        net.run_until(Duration::from_secs(1), |n| n.has_event(1, |e| *e
            == Event::Closed {
                reason: CloseReason::PeerRestarted
            }))
    );
    let new_server_handle = net.nodes[1]
        .events
        .iter()
        .filter(|(_, e, _)| matches!(e, Event::Connected))
        .nth(1)
        .map(|(h, _, _)| *h)
        .expect("second Connected on the server");
    net.nodes[0]
        .ep
        .send(h2, 0, 11, true, Bytes::from_static(b"again"))
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| !n.data(1).is_empty()));
    assert_eq!(
        net.nodes[1]
            .events
            .iter()
            .filter(|(h, e, _)| *h == new_server_handle && matches!(e, Event::Data { .. }))
            .count(),
        1
    );
    assert_eq!(net.nodes[1].ep.association_count(), 1);
}

#[test]
fn multihoming_fails_over_to_alternate_path() {
    let mut cfg = fast_config();
    cfg.local_addresses = Vec::new();
    let mut net = Net::new(10);
    let mut ca = cfg.clone();
    ca.local_addresses = vec!["10.0.0.1".parse().unwrap(), "10.1.0.1".parse().unwrap()];
    let mut cb = cfg.clone();
    cb.local_addresses = vec!["10.0.0.2".parse().unwrap(), "10.1.0.2".parse().unwrap()];
    let a = net.add(ca, &["10.0.0.1:9899", "10.1.0.1:9899"], 21);
    let b = net.add(cb, &["10.0.0.2:9899", "10.1.0.2:9899"], 22);
    let now = net.now;
    let ha = net.nodes[a]
        .ep
        .connect(now, &["10.0.0.2:9899".parse().unwrap()], 5, 5)
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| n.first_handle(b).is_some()));
    // Both of the server's addresses become confirmed paths of the client.
    assert!(net.run_until(Duration::from_secs(5), |n| {
        n.nodes[0]
            .ep
            .association_ref(ha)
            .is_some_and(|x| x.paths().len() == 2 && x.paths().iter().all(|p| p.confirmed))
    }));
    // The primary network dies.
    net.blackholed.insert("10.0.0.2".parse().unwrap());
    let mut sent = 0u32;
    for i in 0..30u32 {
        if net.nodes[0]
            .ep
            .send(ha, 0, 11, true, Bytes::from(i.to_be_bytes().to_vec()))
            .is_ok()
        {
            sent += 1;
        }
    }
    assert!(net.run_until(Duration::from_secs(60), |n| n.data(b).len() as u32 >= sent));
    // Retransmissions went to the alternate path; the dead one is declared down
    // after Path.Max.Retrans errors, and new data moves to the alternate.
    assert!(net.run_until(Duration::from_secs(30), |n| {
        n.has_event(
            0,
            |e| matches!(e, Event::PathDown { addr } if addr.ip().to_string() == "10.0.0.2"),
        )
    }));
    assert!(net.has_event(
        0,
        |e| matches!(e, Event::PrimaryChanged { addr } if addr.ip().to_string() == "10.1.0.2")
    ));
    let before = net.data(b).len();
    net.nodes[0]
        .ep
        .send(ha, 1, 12, true, Bytes::from_static(b"after failover"))
        .unwrap();
    assert!(net.run_until(Duration::from_secs(1), |n| n.data(b).len() > before));
    assert!(closed(&net, 0).is_none());
    // The network comes back: the path is up again.
    net.blackholed.clear();
    assert!(net.run_until(Duration::from_secs(30), |n| n
        .has_event(0, |e| matches!(e, Event::PathUp { .. }))));
}

#[test]
fn back_pressure_would_block_then_writable() {
    let mut cfg = fast_config();
    cfg.association.send_buffer = 300_000;
    let (mut net, ha, _) = pair(11, cfg);
    let mut queued = 0;
    let err = loop {
        match net.nodes[0]
            .ep
            .send(ha, 0, 11, true, Bytes::from(vec![7u8; 100_000]))
        {
            Ok(()) => queued += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(queued, 3);
    assert!(matches!(
        err,
        SendError::WouldBlock {
            buffered_amount: 300_000
        }
    ));
    assert!(net.run_until(Duration::from_secs(10), |n| n
        .has_event(0, |e| *e == Event::Writable)));
    assert!(net.nodes[0]
        .ep
        .send(ha, 0, 11, true, Bytes::from(vec![7u8; 100_000]))
        .is_ok());
}

static CASES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PACKETS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[derive(Debug, Clone)]
struct Msg {
    stream: u16,
    ordered: bool,
    len: usize,
}

fn msgs() -> impl Strategy<Value = Vec<Msg>> {
    proptest::collection::vec(
        (
            0u16..4,
            any::<bool>(),
            prop_oneof![1usize..100, 1usize..5000, 1usize..40_000],
        )
            .prop_map(|(stream, ordered, len)| Msg {
                stream,
                ordered,
                len,
            }),
        1..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24), .. ProptestConfig::default() })]

    /// Every message arrives exactly once, and in order within each ordered stream,
    /// across loss, duplication, reordering and delay.
    #[test]
    fn exactly_once_in_order_under_impairment(
        seed in any::<u64>(), loss in 0.0f64..0.15, dup in 0.0f64..0.1,
        jitter_ms in 0u64..40, delay_ms in 1u64..50, messages in msgs(),
    ) {
        let mut cfg = fast_config();
        cfg.association.max_retransmissions = 30;
        cfg.association.path_max_retransmissions = 30;
        cfg.association.max_init_retransmissions = 30;
        cfg.association.pmtu = 1472;
        let mut net = Net::new(seed);
        let a = net.add(cfg.clone(), &["10.0.0.1:9899"], seed ^ 5);
        let b = net.add(cfg, &["10.0.0.2:9899"], seed ^ 6);
        net.loss = loss;
        net.dup = dup;
        net.jitter = Duration::from_millis(jitter_ms);
        net.delay = Duration::from_millis(delay_ms);
        let now = net.now;
        let server = net.addr(b);
        let h = net.nodes[a].ep.connect(now, &[server], 1, 1).unwrap();
        for (i, m) in messages.iter().enumerate() {
            let mut body = vec![(i % 256) as u8; m.len];
            body[..4.min(m.len)].copy_from_slice(&(i as u32).to_be_bytes()[..4.min(m.len)]);
            net.nodes[a].ep.send(h, m.stream, 11, m.ordered, Bytes::from(body)).unwrap();
        }
        let n = messages.len();
        prop_assert!(net.run_until(Duration::from_secs(600), |x| x.data(1).len() >= n), "only {} of {} delivered", net.data(1).len(), n);
        net.run_for(Duration::from_secs(2));
        let got = net.data(1);
        prop_assert_eq!(got.len(), n, "duplicates delivered");
        // Identify each delivered message by its (stream, ordered, first byte pattern, len).
        let mut seen = vec![false; n];
        let mut last_index_per_stream = [None::<usize>; 4];
        for (stream, ppid, ordered, bytes) in &got {
            prop_assert_eq!(*ppid, 11);
            let idx = (0..n).find(|&i| !seen[i] && {
                let m = &messages[i];
                let mut body = vec![(i % 256) as u8; m.len];
                body[..4.min(m.len)].copy_from_slice(&(i as u32).to_be_bytes()[..4.min(m.len)]);
                m.stream == *stream && m.ordered == *ordered && body[..] == bytes[..]
            });
            let Some(idx) = idx else { return Err(TestCaseError::fail("unexpected message")) };
            seen[idx] = true;
            if *ordered {
                let s = *stream as usize;
                if let Some(prev) = last_index_per_stream[s] {
                    prop_assert!(prev < idx, "ordered stream {} out of order", s);
                }
                last_index_per_stream[s] = Some(idx);
            }
        }
        prop_assert!(seen.iter().all(|s| *s));
        CASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        PACKETS.fetch_add(net.delivered, std::sync::atomic::Ordering::Relaxed);
        if std::env::var("SIM_VERBOSE").is_ok() {
            eprintln!("cases {} packets {}", CASES.load(std::sync::atomic::Ordering::Relaxed), PACKETS.load(std::sync::atomic::Ordering::Relaxed));
        }
    }
}

#[test]
fn unreachable_advertised_address_does_not_kill_association() {
    let mut net = Net::new(12);
    let ca = fast_config();
    let mut cb = fast_config();
    // The server advertises an address nobody can reach.
    cb.local_addresses = vec!["10.0.0.2".parse().unwrap(), "192.0.2.99".parse().unwrap()];
    let a = net.add(ca, &["10.0.0.1:9899"], 31);
    let b = net.add(cb, &["10.0.0.2:9899"], 32);
    let now = net.now;
    let server = net.addr(b);
    let ha = net.nodes[a].ep.connect(now, &[server], 5, 5).unwrap();
    net.run_for(Duration::from_secs(30));
    assert!(closed(&net, a).is_none());
    let paths = net.nodes[a].ep.association_ref(ha).unwrap().paths();
    assert_eq!(paths.len(), 2);
    assert!(paths
        .iter()
        .any(|p| p.addr.ip().to_string() == "192.0.2.99" && !p.confirmed));
    net.nodes[a]
        .ep
        .send(ha, 0, 11, true, Bytes::from_static(b"fine"))
        .unwrap();
    assert!(net.run_until(Duration::from_secs(1), |n| n.data(b).len() == 1));
}

#[test]
fn pmtu_override_per_peer_address() {
    let mut cfg = fast_config();
    cfg.association.pmtu = 1200;
    cfg.association.pmtu_overrides = vec![("10.0.0.2".parse().unwrap(), 9000)];
    let (mut net, ha, _) = pair(13, cfg);
    assert_eq!(
        net.nodes[0].ep.association_ref(ha).unwrap().paths()[0].pmtu,
        9000
    );
    net.nodes[0]
        .ep
        .send(ha, 0, 11, true, Bytes::from(vec![1u8; 30_000]))
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| n.data(1).len() == 1));
    assert!(net.nodes[0].max_sent > 1200 && net.nodes[0].max_sent <= 9000);
    // The server side has no override for 10.0.0.1 and stays at 1200.
    assert!(net.nodes[1].max_sent <= 1200);
}

#[test]
fn zero_copy_input_delivers_slices_of_the_datagram() {
    let (mut net, ha, _) = pair(14, fast_config());
    net.nodes[0]
        .ep
        .send(ha, 0, 11, true, Bytes::from_static(b"zero copy"))
        .unwrap();
    let now = net.now;
    let t = net.nodes[0].ep.poll_transmit(now).unwrap();
    let datagram = Bytes::from(t.contents);
    let (to, from) = (net.addr(1), net.addr(0));
    net.nodes[1]
        .ep
        .handle_datagram_bytes(now, Some(to), from, datagram.clone());
    let (_, ev) = std::iter::from_fn(|| net.nodes[1].ep.poll_event())
        .find(|(_, e)| matches!(e, Event::Data { .. }))
        .unwrap();
    let Event::Data { bytes, .. } = ev else {
        unreachable!()
    };
    assert_eq!(&bytes[..], b"zero copy");
    let inside = datagram.as_ptr() as usize..datagram.as_ptr() as usize + datagram.len();
    assert!(
        inside.contains(&(bytes.as_ptr() as usize)),
        "payload was copied"
    );
}

fn body(tag: u8, i: usize, len: usize) -> Vec<u8> {
    let mut b = vec![tag ^ (i as u8); len];
    let n = len.min(4);
    b[..n].copy_from_slice(&(i as u32).to_be_bytes()[..n]);
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16), .. ProptestConfig::default() })]

    /// Both directions at once over two paths, with heavy loss, duplication, jitter,
    /// small PMTU and a path that goes dark for a while: every message exactly once,
    /// ordered streams in order, no association lost.
    #[test]
    fn bidirectional_multihomed_chaos(
        seed in any::<u64>(), loss in 0.0f64..0.3, dup in 0.0f64..0.2, jitter_ms in 0u64..60,
        a_msgs in msgs(), b_msgs in msgs(), dark_at_ms in 0u64..3000, dark_for_ms in 0u64..4000,
    ) {
        let mut cfg = fast_config();
        cfg.association.max_retransmissions = 40;
        cfg.association.max_init_retransmissions = 40;
        cfg.association.path_max_retransmissions = 3;
        cfg.association.pmtu = 600;
        cfg.association.receive_buffer = 64 * 1024;
        cfg.association.max_message_size = 40_000;
        let mut ca = cfg.clone();
        ca.local_addresses = vec!["10.0.0.1".parse().unwrap(), "10.1.0.1".parse().unwrap()];
        let mut cb = cfg;
        cb.local_addresses = vec!["10.0.0.2".parse().unwrap(), "10.1.0.2".parse().unwrap()];
        let mut net = Net::new(seed);
        let a = net.add(ca, &["10.0.0.1:9899", "10.1.0.1:9899"], seed ^ 7);
        let b = net.add(cb, &["10.0.0.2:9899", "10.1.0.2:9899"], seed ^ 8);
        net.loss = loss;
        net.dup = dup;
        net.jitter = Duration::from_millis(jitter_ms);
        let now = net.now;
        let ha = net.nodes[a].ep.connect(now, &["10.0.0.2:9899".parse().unwrap()], 9, 9).unwrap();
        prop_assert!(net.run_until(Duration::from_secs(120), |n| n.first_handle(b).is_some() && n.first_handle(a).is_some()));
        let hb = net.first_handle(b).unwrap();
        let mut pending_a: std::collections::VecDeque<_> = a_msgs.iter().enumerate().collect();
        let mut pending_b: std::collections::VecDeque<_> = b_msgs.iter().enumerate().collect();
        let start = net.now;
        let dark_from = start + Duration::from_millis(dark_at_ms);
        let dark_until = dark_from + Duration::from_millis(dark_for_ms);
        let deadline = start + Duration::from_secs(900);
        while net.now < deadline {
            while let Some((i, m)) = pending_a.front() {
                match net.nodes[a].ep.send(ha, m.stream, 11, m.ordered, Bytes::from(body(0xa0, *i, m.len))) {
                    Ok(()) => { pending_a.pop_front(); }
                    Err(SendError::WouldBlock { .. }) => break,
                    Err(e) => return Err(TestCaseError::fail(format!("send a: {e}"))),
                }
            }
            while let Some((i, m)) = pending_b.front() {
                match net.nodes[b].ep.send(hb, m.stream, 12, m.ordered, Bytes::from(body(0xb0, *i, m.len))) {
                    Ok(()) => { pending_b.pop_front(); }
                    Err(SendError::WouldBlock { .. }) => break,
                    Err(e) => return Err(TestCaseError::fail(format!("send b: {e}"))),
                }
            }
            if net.now >= dark_from && net.now < dark_until {
                net.blackholed.insert("10.0.0.2".parse().unwrap());
            } else {
                net.blackholed.clear();
            }
            if net.data(b).len() == a_msgs.len() && net.data(a).len() == b_msgs.len() {
                break;
            }
            if !net.step() {
                break;
            }
        }
        prop_assert!(closed(&net, a).is_none() && closed(&net, b).is_none(), "association lost: {:?} {:?}", closed(&net, a), closed(&net, b));
        for (rx, tag, ppid, sent) in [(b, 0xa0u8, 11u32, &a_msgs), (a, 0xb0, 12, &b_msgs)] {
            let got = net.data(rx);
            prop_assert_eq!(got.len(), sent.len(), "node {} got {} of {}", rx, got.len(), sent.len());
            let mut seen = vec![false; sent.len()];
            let mut last = [None::<usize>; 4];
            for (stream, p, ordered, bytes) in &got {
                prop_assert_eq!(*p, ppid);
                let idx = (0..sent.len()).find(|&i| !seen[i] && sent[i].stream == *stream && sent[i].ordered == *ordered && bytes[..] == body(tag, i, sent[i].len)[..]);
                let Some(idx) = idx else { return Err(TestCaseError::fail("unknown or duplicate message")) };
                seen[idx] = true;
                if *ordered {
                    if let Some(prev) = last[*stream as usize] {
                        prop_assert!(prev < idx, "out of order on stream {}", stream);
                    }
                    last[*stream as usize] = Some(idx);
                }
            }
        }
    }
}

#[test]
fn slow_reader_closes_window_and_transfer_resumes() {
    let mut cfg = fast_config();
    cfg.association.receive_buffer = 64 * 1024;
    cfg.association.max_message_size = 16 * 1024;
    cfg.association.send_buffer = 2 << 20;
    let (mut net, ha, hb) = pair(15, cfg);
    net.nodes[1].paused = true;
    for i in 0..100u32 {
        net.nodes[0]
            .ep
            .send(ha, 0, 11, true, Bytes::from(vec![i as u8; 10_000]))
            .unwrap();
    }
    // The reader sleeps for a long time: the window closes, nothing is lost, and the
    // association survives on zero-window probes.
    net.run_for(Duration::from_secs(60));
    let held = net.nodes[1]
        .ep
        .association_ref(hb)
        .unwrap()
        .receive_buffered();
    // Unread messages plus zero-window probes kept in sequence: at most twice the window.
    assert!(held <= 2 * 64 * 1024, "receiver holds {held}");
    assert!(
        net.nodes[0]
            .ep
            .association_ref(ha)
            .unwrap()
            .buffered_amount()
            > 500_000
    );
    assert!(closed(&net, 0).is_none());
    net.nodes[1].paused = false;
    assert!(net.run_until(Duration::from_secs(120), |n| n.data(1).len() == 100));
    for (i, d) in net.data(1).iter().enumerate() {
        assert_eq!(d.3[0], i as u8);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16), .. ProptestConfig::default() })]

    /// Partial reliability under loss: reliable messages arrive exactly once; messages
    /// sent with a retransmission limit or lifetime arrive at most once; ordered streams
    /// stay in order and never stall behind an abandoned message.
    #[test]
    fn partial_reliability_never_stalls(
        seed in any::<u64>(), loss in 0.05f64..0.3, jitter_ms in 0u64..30,
        plan in proptest::collection::vec((0u16..3, any::<bool>(), 0u8..3, 1usize..4000), 1..60),
    ) {
        let mut cfg = fast_config();
        cfg.association.max_retransmissions = 40;
        cfg.association.max_init_retransmissions = 40;
        let mut net = Net::new(seed);
        let a = net.add(cfg.clone(), &["10.0.0.1:9899"], seed ^ 3);
        let b = net.add(cfg, &["10.0.0.2:9899"], seed ^ 4);
        let now = net.now;
        let server = net.addr(b);
        let h = net.nodes[a].ep.connect(now, &[server], 1, 1).unwrap();
        prop_assert!(net.run_until(Duration::from_secs(60), |n| n.first_handle(a).is_some()));
        net.loss = loss;
        net.jitter = Duration::from_millis(jitter_ms);
        let now = net.now;
        for (i, (stream, ordered, kind, len)) in plan.iter().enumerate() {
            let opts = match kind {
                0 => SendOptions::default(),
                1 => SendOptions { max_retransmissions: Some(0), lifetime: None },
                _ => SendOptions { max_retransmissions: None, lifetime: Some(Duration::from_millis(50)) },
            };
            let a_ep = net.nodes[a].ep.association(h).unwrap();
            a_ep.send_with(now, *stream, 11, *ordered, Bytes::from(body(0x11, i, *len)), opts).unwrap();
        }
        // A final reliable message per stream proves no stream is stuck.
        for s in 0..3u16 {
            net.nodes[a].ep.send(h, s, 99, true, Bytes::from(vec![s as u8; 10])).unwrap();
        }
        let reliable = plan.iter().filter(|p| p.2 == 0).count();
        let done = net.run_until(Duration::from_secs(600), |n| {
            let d = n.data(b);
            d.iter().filter(|d| d.1 == 99).count() == 3
                && d.iter().filter(|d| d.1 == 11 && plan.iter().enumerate().any(|(i, p)| p.2 == 0 && d.3[..] == body(0x11, i, p.3)[..])).count() >= reliable
        });
        prop_assert!(done, "stalled: got {} messages", net.data(b).len());
        net.run_for(Duration::from_secs(5));
        let got = net.data(b);
        let mut seen = vec![false; plan.len()];
        let mut last = [None::<usize>; 3];
        for (stream, ppid, ordered, bytes) in &got {
            if *ppid == 99 {
                continue;
            }
            let idx = (0..plan.len()).find(|&i| !seen[i] && plan[i].0 == *stream && plan[i].1 == *ordered && bytes[..] == body(0x11, i, plan[i].3)[..]);
            let Some(idx) = idx else { return Err(TestCaseError::fail("duplicate or corrupt message")) };
            seen[idx] = true;
            if *ordered {
                if let Some(p) = last[*stream as usize] {
                    prop_assert!(p < idx, "stream {} out of order", stream);
                }
                last[*stream as usize] = Some(idx);
            }
        }
        for (i, (_, _, kind, _)) in plan.iter().enumerate() {
            if *kind == 0 {
                prop_assert!(seen[i], "reliable message {} lost", i);
            }
        }
        prop_assert!(closed(&net, a).is_none());
    }
}

#[test]
fn handshake_falls_back_to_second_remote_address() {
    let mut net = Net::new(16);
    let a = net.add(fast_config(), &["10.0.0.1:9899"], 41);
    let b = net.add(fast_config(), &["10.0.0.2:9899", "10.1.0.2:9899"], 42);
    net.blackholed.insert("10.0.0.2".parse().unwrap());
    let now = net.now;
    let remotes = [
        "10.0.0.2:9899".parse().unwrap(),
        "10.1.0.2:9899".parse().unwrap(),
    ];
    let ha = net.nodes[a].ep.connect(now, &remotes, 5, 5).unwrap();
    assert!(net.run_until(Duration::from_secs(10), |n| n.first_handle(a).is_some()));
    assert_eq!(
        net.nodes[a].ep.association_ref(ha).unwrap().primary(),
        remotes[1]
    );
    net.nodes[a]
        .ep
        .send(
            ha,
            0,
            11,
            true,
            Bytes::from_static(b"via the second address"),
        )
        .unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| n.data(b).len() == 1));
}

#[test]
fn nat_rebinding_moves_path_to_new_udp_port() {
    let (mut net, ha, hb) = pair(17, fast_config());
    // The client's NAT mapping changes: its packets now come from another UDP port.
    net.nodes[0].addrs = vec!["10.0.0.1:40000".parse().unwrap()];
    net.nodes[0]
        .ep
        .send(ha, 0, 11, true, Bytes::from_static(b"from a new port"))
        .unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| n.data(1).len() == 1));
    net.nodes[1]
        .ep
        .send(hb, 0, 11, true, Bytes::from_static(b"back to it"))
        .unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| n.data(0).len() == 1));
    let paths = net.nodes[1].ep.association_ref(hb).unwrap().paths();
    assert_eq!(paths[0].addr, "10.0.0.1:40000".parse().unwrap());
    // A packet with a wrong tag from yet another port does not move the path.
    let junk = sctp::wire::Packet {
        header: sctp::wire::CommonHeader {
            src_port: 3863,
            dst_port: 3863,
            vtag: 0xdead_beef,
        },
        chunks: vec![sctp::wire::Chunk::Heartbeat(Bytes::from_static(b"hi"))],
    }
    .encode();
    let (now, to) = (net.now, net.addr(1));
    let before = net.nodes[1].ep.stats().bad_vtag + net.nodes[1].ep.stats().unknown_association;
    net.nodes[1]
        .ep
        .handle_datagram(now, Some(to), "10.0.0.1:50000".parse().unwrap(), &junk);
    let after = net.nodes[1].ep.stats().bad_vtag + net.nodes[1].ep.stats().unknown_association;
    assert_eq!(after, before + 1);
    let paths = net.nodes[1].ep.association_ref(hb).unwrap().paths();
    assert_eq!(paths[0].addr, "10.0.0.1:40000".parse().unwrap());
}

/// With a manual receive window, a consumer that does not report its messages closes
/// the peer's window: the sender stops after at most two windows (one plus in-sequence
/// zero-window probes) and keeps the rest
/// buffered; each report reopens the window and everything arrives exactly once.
#[test]
fn manual_receive_window_bounds_undelivered_bytes_until_consumed() {
    let mut cfg = fast_config();
    cfg.manual_receive_window = true;
    cfg.association.receive_buffer = 64 * 1024;
    cfg.association.max_message_size = 16 * 1024;
    let (mut net, a, b) = pair(5, cfg);
    let msg = Bytes::from(vec![1u8; 1000]);
    for _ in 0..512 {
        net.nodes[0].ep.send(a, 0, 1, true, msg.clone()).unwrap();
    }
    net.run_for(Duration::from_secs(5));
    let first = net.data(1).len();
    assert!(first > 0, "nothing delivered");
    assert!(
        first * 1000 <= 2 * 64 * 1024,
        "window overrun: {first} messages"
    );
    let buffered = net.nodes[0]
        .ep
        .association_ref(a)
        .unwrap()
        .buffered_amount();
    assert!(
        buffered >= (512 - first) * 1000,
        "sender did not hold back: {buffered}"
    );
    let mut reported = 0;
    for _ in 0..200 {
        let got = net.data(1).len();
        if got == 512 {
            break;
        }
        net.nodes[1].ep.consumed(b, (got - reported) * 1000);
        reported = got;
        net.run_for(Duration::from_millis(500));
        let now = net.data(1).len();
        assert!(
            (now - reported) * 1000 <= 2 * 64 * 1024,
            "window overrun after report: {} messages",
            now - reported
        );
    }
    assert_eq!(net.data(1).len(), 512);
}
