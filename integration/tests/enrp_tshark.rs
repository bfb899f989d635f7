//! Real ENRP traffic between two registrars on loopback, captured with tshark
//! and decoded as SCTP over UDP: every ENRP message has PPID 12 on SCTP port
//! 9901, Wireshark's ENRP dissector names it, nothing is malformed and every
//! SCTP checksum (CRC32c) is good. The capture covers presence, handle table
//! request/response, handle updates (add on registration, delete on
//! deregistration).
//!
//! Needs tshark and the right to capture on `lo` (root or the dumpcap
//! capability); without them the test fails, unless `POOLGATE_SKIP_TSHARK=1`.
//! `POOLGATE_KEEP_PCAP=<path>` keeps the capture.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use poolgate_integration::capture::{
    decode_sctp_over_udp, tshark_present, LoopbackCapture, SctpDecode,
};

use poolgate_integration::harness::enrp_scope::*;
use poolgate_integration::harness::wait::wait_until;
use poolgate_integration::{bin, Child};

#[test]
fn captured_enrp_traffic_decodes_cleanly_in_tshark() {
    // A capture on loopback sees a GSO train unsegmented (several SCTP packets in one
    // datagram: "bad checksum"); the registrars started below inherit this.
    std::env::set_var("POOLGATE_GSO", "off");
    if !tshark_present() {
        return;
    }
    let (mut regs, _dir) = scope(2);
    let filter = format!("udp port {} or udp port {}", regs[0].port, regs[1].port);
    let mut cap = LoopbackCapture::start("enrp", &filter);

    for r in regs.iter_mut() {
        r.start();
    }
    wait_until("ENRP peers up", Duration::from_secs(15), || {
        regs.iter()
            .all(|r| r.metric("poolgate_registrar_enrp_live_peers") == Some(1.0))
    });
    let pe = Child(
        Command::new(bin("pg-pe"))
            .args([
                "--registrar",
                &regs[0].addr(),
                "--pool",
                "alpha",
                "--id",
                "0000beef",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("PE replicated", Duration::from_secs(10), || {
        resolve(&regs[1], "alpha").is_some_and(|v| v == [(0xbeef, 1)])
    });
    pe.signal(15); // deregistration → DEL update
    wait_until("PE removed everywhere", Duration::from_secs(10), || {
        resolve(&regs[1], "alpha").is_some_and(|v| v.is_empty())
    });
    std::thread::sleep(Duration::from_millis(600)); // a few more presences
    let pcap = cap.stop().to_path_buf();

    let ports: Vec<u16> = regs.iter().map(|r| r.port).collect();
    let packets = decode_sctp_over_udp(
        &pcap,
        &SctpDecode {
            udp_ports: &ports,
            filter: Some("sctp.data_payload_proto_id == 12 || enrp"),
            fields: &[
                "frame.number",
                "sctp.data_payload_proto_id",
                "sctp.port",
                "enrp.message_type",
                "sctp.retransmission",
            ],
            ..SctpDecode::default()
        },
    );
    if let Ok(keep) = std::env::var("POOLGATE_KEEP_PCAP") {
        std::fs::copy(&pcap, keep).unwrap();
    }
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    let mut retransmissions = 0;
    for p in &packets {
        let frame = p.field(0);
        let ppids: Vec<&str> = p.field(1).split(',').collect();
        let types = p.values(3);
        assert!(
            ppids.iter().all(|p| *p == "12"),
            "frame {frame}: PPIDs {ppids:?}"
        );
        assert!(
            p.field(2).split(',').any(|p| p == "9901"),
            "frame {frame}: ports {}",
            p.field(2)
        );
        // Wireshark does not dissect the payload of an SCTP retransmission again.
        let retransmission = !p.field(4).is_empty();
        assert!(
            retransmission || !types.is_empty(),
            "frame {frame}: no ENRP message decoded"
        );
        retransmissions += usize::from(retransmission);
        for t in types {
            *by_type.entry(t.to_string()).or_default() += 1;
        }
    }
    let frames = packets.len();
    println!(
        "{frames} ENRP frames ({retransmissions} SCTP retransmissions); messages by type code: {by_type:?}"
    );
    // 1 presence, 2 table request, 3 table response, 4 handle update.
    for t in ["1", "2", "3", "4"] {
        assert!(
            by_type.contains_key(t) || by_type.contains_key(&format!("0x0{t}")),
            "no ENRP type {t} in {by_type:?}"
        );
    }
}
