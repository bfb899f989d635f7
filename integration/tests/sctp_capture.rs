//! Our engine's traffic on the wire, captured on loopback and decoded by tshark as SCTP
//! over UDP: handshake, DATA (fragmented too), SACK, HEARTBEAT/ACK and the graceful
//! shutdown, every packet with a correct CRC32c and none malformed; likewise a stream
//! reset (RFC 6525 RE-CONFIG) between two sans-IO endpoints.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use poolgate::transport::sctp_udp::{SctpUdp, SctpUdpConfig};
use poolgate::transport::{AssocEvent, DownReason, Message, Transport};
use poolgate_integration::capture::{
    decode_sctp_over_udp, tshark_present, LoopbackCapture, SctpDecode,
};
use poolgate_integration::free_udp_port;
use poolgate_integration::harness::sctp_peer::SctpPeer;

/// A PPID of no registered protocol; the ASAP dissector (which claims SCTP port 3863)
/// is disabled when decoding, so tshark judges the SCTP layer only.
const PPID: u32 = 4242;

#[tokio::test]
async fn engine_traffic_decodes_as_sctp_over_udp_with_good_checksums() {
    if !tshark_present() {
        return;
    }
    let port = free_udp_port();
    let mut cap = LoopbackCapture::start("sctp-capture", &format!("udp port {port}"));

    // Returns once the peer's socket is bound (it prints LISTEN).
    let (peer, _) = SctpPeer::serve(
        None,
        &[
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--hb-ms",
            "200",
            "--deadline-s",
            "20",
            "--no-gso",
        ],
    );
    let mut c = SctpUdpConfig::new("127.0.0.1:0".parse().unwrap());
    c.engine.association.heartbeat_interval = Some(Duration::from_millis(200));
    // A capture on loopback sees GSO trains unsegmented (one "packet" holding several
    // SCTP packets), so this test sends datagram by datagram.
    c.gso = false;
    let (t, _l) = SctpUdp::bind(c).unwrap();
    let mut a = t
        .connect(
            &[format!("127.0.0.1:{port}").parse().unwrap()],
            3863,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    // A small message and one fragmented over several 1,472-byte packets, echoed back.
    let big = Bytes::from((0..5000u32).map(|i| i as u8).collect::<Vec<_>>());
    for m in [Bytes::from_static(b"hello"), big.clone()] {
        a.send(Message::new(PPID, m.clone()), Duration::from_secs(2))
            .await
            .unwrap();
        loop {
            match a.recv_timeout(Duration::from_secs(5)).await.unwrap() {
                Some(AssocEvent::Message(e)) => {
                    assert_eq!(e.data, m);
                    break;
                }
                Some(AssocEvent::Down(r)) => panic!("down: {r}"),
                _ => {}
            }
        }
    }
    // Idle long enough for heartbeats both ways.
    tokio::time::sleep(Duration::from_millis(900)).await;
    a.close();
    loop {
        match a.recv_timeout(Duration::from_secs(5)).await.unwrap() {
            Some(AssocEvent::Down(r)) => {
                assert_eq!(r, DownReason::Shutdown);
                break;
            }
            Some(_) => {}
            None => panic!("no Down"),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(peer);
    let pcap = cap.stop().to_path_buf();

    let packets = decode_sctp_over_udp(
        &pcap,
        &SctpDecode {
            udp_ports: &[port],
            disable: &["asap"],
            fields: &[
                "sctp.chunk_type",
                "sctp.data_payload_proto_id",
                "sctp.srcport",
            ],
            ..SctpDecode::default()
        },
    );
    let mut chunks = BTreeSet::new();
    for p in &packets {
        let line = &p.line;
        assert!(!p.field(0).is_empty(), "not decoded as SCTP: {line}");
        assert!(
            p.values(1).iter().all(|p| *p == PPID.to_string()),
            "unexpected PPID: {line}"
        );
        chunks.extend(p.field(0).split(',').map(|c| c.parse::<u8>().unwrap()));
    }
    let packets = packets.len();
    println!("{packets} packets, all SCTP over UDP with good CRC32c; chunk types: {chunks:?}");
    // DATA 0, INIT 1, INIT ACK 2, SACK 3, HEARTBEAT 4, HEARTBEAT ACK 5, SHUTDOWN 7,
    // SHUTDOWN ACK 8, COOKIE ECHO 10, COOKIE ACK 11, SHUTDOWN COMPLETE 14.
    for t in [0u8, 1, 2, 3, 4, 5, 7, 8, 10, 11, 14] {
        assert!(chunks.contains(&t), "chunk type {t} missing: {chunks:?}");
    }
}

/// Drives two sans-IO endpoints over real loopback UDP sockets until `done` holds.
fn drive(
    eps: &mut [(sctp::Endpoint, std::net::UdpSocket); 2],
    start: std::time::Instant,
    events: &mut Vec<(usize, sctp::Event)>,
    mut done: impl FnMut(&[(usize, sctp::Event)]) -> bool,
) {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65_536];
    while !done(events) {
        assert!(std::time::Instant::now() < end, "timed out");
        let now = std::time::Instant::now().max(start);
        for (i, (ep, sock)) in eps.iter_mut().enumerate() {
            ep.handle_timeout(now);
            while let Some(t) = ep.poll_transmit(now) {
                sock.send_to(&t.contents, t.destination).unwrap();
            }
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let local = sock.local_addr().ok();
                ep.handle_datagram(now, local, from, &buf[..n]);
            }
            while let Some(t) = ep.poll_transmit(now) {
                sock.send_to(&t.contents, t.destination).unwrap();
            }
            while let Some((_, e)) = ep.poll_event() {
                events.push((i, e));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A stream reset (RFC 6525 RE-CONFIG with an Outgoing SSN Reset Request and its
/// Re-configuration Response) between two of our endpoints decodes cleanly in tshark.
#[test]
fn stream_reset_decodes_in_tshark() {
    if !tshark_present() {
        return;
    }
    let socks = [0, 1].map(|_| {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_nonblocking(true).unwrap();
        s
    });
    let server = socks[1].local_addr().unwrap();
    let mut cap = LoopbackCapture::start("sctp-reconfig", &format!("udp port {}", server.port()));
    let [sa, sb] = socks;
    let cfg = sctp::EndpointConfig::default();
    let mut eps = [
        (sctp::Endpoint::new(cfg.clone(), 1).unwrap(), sa),
        (sctp::Endpoint::new(cfg, 2).unwrap(), sb),
    ];
    let start = std::time::Instant::now();
    let h = eps[0].0.connect(start, &[server], 5000, 5000).unwrap();
    let mut events = Vec::new();
    drive(&mut eps, start, &mut events, |ev| {
        ev.iter()
            .filter(|(_, e)| *e == sctp::Event::Connected)
            .count()
            == 2
    });
    eps[0]
        .0
        .send(h, 1, PPID, true, Bytes::from_static(b"before"))
        .unwrap();
    eps[0].0.reset_streams(h, &[1]).unwrap();
    eps[0]
        .0
        .send(h, 1, PPID, true, Bytes::from_static(b"after"))
        .unwrap();
    drive(&mut eps, start, &mut events, |ev| {
        ev.iter()
            .filter(|(i, e)| *i == 1 && matches!(e, sctp::Event::Data { .. }))
            .count()
            == 2
    });
    assert!(events.iter().any(|(i, e)| *i == 0
        && matches!(e, sctp::Event::StreamsReset { result, .. } if result.is_success())));
    let now = std::time::Instant::now();
    eps[0].0.shutdown(now, h);
    drive(&mut eps, start, &mut events, |ev| {
        ev.iter()
            .filter(|(_, e)| matches!(e, sctp::Event::Closed { .. }))
            .count()
            == 2
    });
    std::thread::sleep(Duration::from_millis(300));
    let pcap = cap.stop().to_path_buf();
    let packets = decode_sctp_over_udp(
        &pcap,
        &SctpDecode {
            udp_ports: &[server.port()],
            fields: &["sctp.chunk_type", "sctp.parameter_type"],
            ..SctpDecode::default()
        },
    );
    let mut chunks = BTreeSet::new();
    let mut params = BTreeSet::new();
    for p in &packets {
        assert!(!p.field(0).is_empty(), "not decoded as SCTP: {}", p.line);
        chunks.extend(p.field(0).split(',').map(|c| c.parse::<u8>().unwrap()));
        params.extend(p.values(1).into_iter().map(|p| {
            let p = p.trim_start_matches("0x");
            u16::from_str_radix(p, 16)
                .or_else(|_| p.parse::<u16>())
                .unwrap()
        }));
    }
    println!("chunk types {chunks:?}, parameter types {params:?}");
    assert!(chunks.contains(&130), "no RE-CONFIG: {chunks:?}");
    // Outgoing SSN Reset Request 13, Re-configuration Response 16.
    assert!(params.contains(&13) && params.contains(&16), "{params:?}");
}
