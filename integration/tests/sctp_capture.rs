//! Our engine's traffic on the wire, captured on loopback and decoded by tshark as SCTP
//! over UDP: handshake, DATA (fragmented too), SACK, HEARTBEAT/ACK and the graceful
//! shutdown, every packet with a correct CRC32c and none malformed.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use poolgate::transport::sctp_udp::{SctpUdp, SctpUdpConfig};
use poolgate::transport::{AssocEvent, DownReason, Message, Transport};
use poolgate_integration::capture::{tshark_present, LoopbackCapture};
use poolgate_integration::{bin, free_udp_port, Child};

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

    let peer = Child(
        Command::new(bin("pg-sctp-peer"))
            .args([
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--hb-ms",
                "200",
                "--deadline-s",
                "20",
                "--no-gso",
                "serve",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(200));
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

    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-n",
            "-d",
            &format!("udp.port=={port},sctp"),
            "-o",
            "sctp.checksum:CRC-32C",
        ])
        .args(["--disable-protocol", "asap", "-T", "fields"])
        .args([
            "-E",
            "separator=|",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=,",
        ])
        .args([
            "-e",
            "sctp.chunk_type",
            "-e",
            "sctp.checksum.status",
            "-e",
            "_ws.malformed",
        ])
        .args(["-e", "sctp.data_payload_proto_id", "-e", "sctp.srcport"])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut chunks = BTreeSet::new();
    let mut packets = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        packets += 1;
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f.len(), 5, "{line}");
        assert!(!f[0].is_empty(), "not decoded as SCTP: {line}");
        assert_eq!(f[1], "1", "bad or unverified checksum: {line}");
        assert!(f[2].is_empty(), "malformed packet: {line}");
        assert!(
            f[3].split(',')
                .all(|p| p.is_empty() || p == PPID.to_string()),
            "unexpected PPID: {line}"
        );
        chunks.extend(f[0].split(',').map(|c| c.parse::<u8>().unwrap()));
    }
    println!("{packets} packets, all SCTP over UDP with good CRC32c; chunk types: {chunks:?}");
    // DATA 0, INIT 1, INIT ACK 2, SACK 3, HEARTBEAT 4, HEARTBEAT ACK 5, SHUTDOWN 7,
    // SHUTDOWN ACK 8, COOKIE ECHO 10, COOKIE ACK 11, SHUTDOWN COMPLETE 14.
    for t in [0u8, 1, 2, 3, 4, 5, 7, 8, 10, 11, 14] {
        assert!(chunks.contains(&t), "chunk type {t} missing: {chunks:?}");
    }
}
