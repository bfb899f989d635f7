//! The ASAP traffic of a real registration and handle resolution, captured on loopback
//! with tshark and decoded as SCTP over UDP: every ASAP message carries PPID 11, every
//! SCTP checksum is good, and nothing is malformed.

use std::time::Duration;

use poolgate_integration::capture::{
    decode_sctp_over_udp, tshark_present, LoopbackCapture, SctpDecode,
};
use poolgate_integration::free_udp_port;
use poolgate_integration::harness::registrar::{pe, resolves, Registrar};
use poolgate_integration::harness::wait::wait_until;

#[test]
fn registration_and_resolution_decode_as_asap_over_sctp_over_udp() {
    // A capture on loopback sees a GSO train unsegmented (several SCTP packets in one
    // datagram: "bad checksum"); the registrars started below inherit this.
    std::env::set_var("POOLGATE_GSO", "off");
    if !tshark_present() {
        return;
    }
    let port = free_udp_port();
    let mut cap = LoopbackCapture::start("asap-capture", &format!("udp port {port}"));
    let reg = Registrar::start_on(port, "", "warn");
    let addr = reg.addr();
    let pe = pe(&addr, "capture", "c0ffee00", &["--policy", "lu:0"]);
    wait_until("PE resolvable", Duration::from_secs(10), || {
        resolves(&addr, "capture", "c0ffee00")
    });
    pe.signal(15); // deregistration travels too
    wait_until("PE deregistered", Duration::from_secs(10), || {
        !resolves(&addr, "capture", "c0ffee00")
    });
    drop(reg);
    std::thread::sleep(Duration::from_millis(300));
    let pcap = cap.stop().to_path_buf();

    let packets = decode_sctp_over_udp(
        &pcap,
        &SctpDecode {
            udp_ports: &[port],
            fields: &["sctp.data_payload_proto_id", "asap.message_type"],
            ..SctpDecode::default()
        },
    );
    let mut asap_types = std::collections::BTreeSet::new();
    for p in &packets {
        let line = &p.line;
        let ppids = p.values(0);
        let types = p.values(1);
        assert!(
            ppids.iter().all(|p| *p == "11"),
            "DATA with a PPID other than 11: {line}"
        );
        assert_eq!(
            ppids.len(),
            types.len(),
            "every DATA chunk decodes as ASAP: {line}"
        );
        asap_types.extend(types.iter().map(|t| t.parse::<u8>().unwrap()));
    }
    let packets = packets.len();
    println!("{packets} packets, ASAP message types seen: {asap_types:?}");
    // REGISTRATION 1, DEREGISTRATION 2, REGISTRATION_RESPONSE 3, DEREGISTRATION_RESPONSE 4,
    // HANDLE_RESOLUTION 5, HANDLE_RESOLUTION_RESPONSE 6.
    for t in [1u8, 2, 3, 4, 5, 6] {
        assert!(
            asap_types.contains(&t),
            "ASAP type {t} missing: {asap_types:?}"
        );
    }
}
