//! The ASAP traffic of a real registration and handle resolution, captured on loopback
//! with tshark and decoded as SCTP over UDP: every ASAP message carries PPID 11, every
//! SCTP checksum is good, and nothing is malformed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use poolgate_integration::capture::{tshark_present, LoopbackCapture};
use poolgate_integration::{bin, free_tcp_port, free_udp_port, Child};

#[test]
fn registration_and_resolution_decode_as_asap_over_sctp_over_udp() {
    // A capture on loopback sees a GSO train unsegmented (several SCTP packets in one
    // datagram: "bad checksum"); the registrars started below inherit this.
    std::env::set_var("POOLGATE_GSO", "off");
    if !tshark_present() {
        return;
    }
    let port = free_udp_port();
    let metrics = free_tcp_port();
    let mut cap = LoopbackCapture::start("asap-capture", &format!("udp port {port}"));
    let dir = std::env::temp_dir().join(format!("pg-capture-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let cfg = dir.join("registrar.toml");
    std::fs::write(
        &cfg,
        format!("[registrar]\nlisten = [\"127.0.0.1:{port}\"]\n[registrar.metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"),
    )
    .unwrap();
    let reg = Child(
        Command::new(bin("poolgate"))
            .args(["registrar", "--config"])
            .arg(&cfg)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(200));
    let addr = format!("127.0.0.1:{port}");
    let pe = Child(
        Command::new(bin("pg-pe"))
            .args([
                "--registrar",
                &addr,
                "--pool",
                "capture",
                "--id",
                "c0ffee00",
                "--policy",
                "lu:0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    loop {
        let out = Command::new(bin("pg-resolve"))
            .args(["--registrar", &addr, "--pool", "capture"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("c0ffee00") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "PE never resolvable"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    pe.signal(15); // deregistration travels too
    std::thread::sleep(Duration::from_millis(300));
    drop(reg);
    std::thread::sleep(Duration::from_millis(300));
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
            "-T",
            "fields",
        ])
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
            "sctp.data_payload_proto_id",
            "-e",
            "asap.message_type",
        ])
        .args([
            "-e",
            "sctp.checksum.status",
            "-e",
            "_ws.malformed",
            "-e",
            "sctp.chunk_type",
        ])
        .output()
        .expect("run tshark");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut asap_types = std::collections::BTreeSet::new();
    let mut packets = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        packets += 1;
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f.len(), 5, "{line}");
        assert!(f[3].is_empty(), "malformed packet: {line}");
        assert!(
            f[2].split(',').all(|s| s.is_empty() || s == "1"),
            "bad checksum: {line}"
        );
        let ppids: Vec<&str> = f[0].split(',').filter(|s| !s.is_empty()).collect();
        let types: Vec<&str> = f[1].split(',').filter(|s| !s.is_empty()).collect();
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
