//! Failure detection with real processes: a `pg-sctp-peer` echo server is frozen with
//! SIGSTOP (a dead host or path: no ICMP, no ABORT) or killed with SIGKILL while the
//! association is idle; the survivor (this test, through the real driver) must report
//! `Down(Timeout)` within the configured bound: heartbeat interval + retransmission
//! budget (`AssociationConfig::failure_detection_bound`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use poolgate::transport::sctp_udp::{SctpUdp, SctpUdpConfig};
use poolgate::transport::{AssocEvent, DownReason, Message, Transport};
use poolgate_integration::harness::sctp_peer::SctpPeer;

const HB_MS: u64 = 300;
const RTO_MIN_MS: u64 = 100;
const RTO_INITIAL_MS: u64 = 200;
const RTO_MAX_MS: u64 = 800;
const MAX_RTX: u32 = 3;

fn start_peer() -> (SctpPeer, SocketAddr) {
    let (hb, rto_min) = (HB_MS.to_string(), RTO_MIN_MS.to_string());
    let (rto_initial, rto_max) = (RTO_INITIAL_MS.to_string(), RTO_MAX_MS.to_string());
    let max_rtx = MAX_RTX.to_string();
    SctpPeer::serve(
        None,
        &[
            "--hb-ms",
            &hb,
            "--rto-min-ms",
            &rto_min,
            "--rto-initial-ms",
            &rto_initial,
            "--rto-max-ms",
            &rto_max,
            "--max-rtx",
            &max_rtx,
            "--deadline-s",
            "30",
        ],
    )
}

fn survivor_config() -> SctpUdpConfig {
    let mut c = SctpUdpConfig::new("127.0.0.1:0".parse().unwrap());
    let a = &mut c.engine.association;
    a.heartbeat_interval = Some(Duration::from_millis(HB_MS));
    a.rto_min = Duration::from_millis(RTO_MIN_MS);
    a.rto_initial = Duration::from_millis(RTO_INITIAL_MS);
    a.rto_max = Duration::from_millis(RTO_MAX_MS);
    a.max_retransmissions = MAX_RTX;
    c
}

/// Connects, proves the peer answers, applies `signal` to it and measures the time to
/// `Down(Timeout)`.
async fn detect(signal: i32, name: &str) {
    let (peer, addr) = start_peer();
    let cfg = survivor_config();
    // Upper bound: the RTO can be at most RTO.Initial here (loopback RTT samples only
    // lower it towards RTO.Min).
    let bound = cfg
        .engine
        .association
        .failure_detection_bound(Duration::from_millis(RTO_INITIAL_MS))
        .unwrap();
    // Lower bound: the retransmission budget alone, at the smallest RTO.
    let floor = Duration::from_millis(RTO_MIN_MS) * (MAX_RTX + 1);
    let (t, _l) = SctpUdp::bind(cfg).unwrap();
    let mut a = t
        .connect(&[addr], 3863, Duration::from_secs(5))
        .await
        .unwrap();
    a.send(Message::new(11, &b"ping"[..]), Duration::from_secs(2))
        .await
        .unwrap();
    match a.recv_timeout(Duration::from_secs(5)).await.unwrap() {
        Some(AssocEvent::Message(m)) => assert_eq!(m.data.as_ref(), b"ping"),
        other => panic!("no echo: {other:?}"),
    }
    // Idle for a heartbeat or two: the association is healthy before the failure.
    tokio::time::sleep(Duration::from_millis(2 * HB_MS)).await;
    peer.signal(signal);
    let t0 = Instant::now();
    let reason = loop {
        match a.recv_timeout(bound + Duration::from_secs(5)).await {
            Ok(Some(AssocEvent::Down(r))) => break r,
            Ok(Some(AssocEvent::Message(m))) => panic!("message from a {name} peer: {m:?}"),
            Ok(Some(_)) => continue,
            Ok(None) => panic!("association vanished without Down"),
            Err(_) => panic!(
                "{name} peer not detected within {:?}",
                bound + Duration::from_secs(5)
            ),
        }
    };
    let took = t0.elapsed();
    println!(
        "{name}: Down({reason}) after {} ms; bound heartbeat interval + retransmission budget = {} ms \
         (hb {HB_MS} ms, RTO {RTO_MIN_MS}..{RTO_INITIAL_MS}..{RTO_MAX_MS} ms, Association.Max.Retrans {MAX_RTX})",
        took.as_millis(),
        bound.as_millis()
    );
    assert_eq!(reason, DownReason::Timeout);
    // A little slack for scheduling on a loaded 2-core machine.
    assert!(
        took <= bound + Duration::from_millis(250),
        "{name}: {took:?} > bound {bound:?}"
    );
    assert!(
        took >= floor,
        "{name}: {took:?} is faster than the retransmission budget {floor:?}"
    );
    drop(peer);
}

#[tokio::test]
async fn frozen_peer_sigstop_is_reported_dead_within_the_bound() {
    detect(19, "SIGSTOP").await;
}

#[tokio::test]
async fn killed_peer_sigkill_is_reported_dead_within_the_bound() {
    detect(9, "SIGKILL").await;
}
