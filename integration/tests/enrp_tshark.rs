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
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use poolgate_integration::harness::enrp_scope::*;
use poolgate_integration::harness::wait::wait_until;
use poolgate_integration::{bin, Child};

#[test]
fn captured_enrp_traffic_decodes_cleanly_in_tshark() {
    // A capture on loopback sees a GSO train unsegmented (several SCTP packets in one
    // datagram: "bad checksum"); the registrars started below inherit this.
    std::env::set_var("POOLGATE_GSO", "off");
    if Command::new("tshark").arg("--version").output().is_err() {
        if std::env::var("POOLGATE_SKIP_TSHARK").as_deref() == Ok("1") {
            eprintln!("tshark not installed; skipped because POOLGATE_SKIP_TSHARK=1");
            return;
        }
        panic!("tshark is not installed, or set POOLGATE_SKIP_TSHARK=1 to skip");
    }
    let (mut regs, dir) = scope(2);
    let pcap = dir.0.join("enrp.pcapng");
    let filter = format!("udp port {} or udp port {}", regs[0].port, regs[1].port);
    // dumpcap (tshark's capture engine) writes every packet out on SIGINT.
    let mut cap = Command::new("dumpcap")
        .args(["-i", "lo", "-q", "-f", &filter, "-w"])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tshark");
    // dumpcap says "Capturing on ..." once the capture runs.
    let stderr = cap.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let ready = lines
        .by_ref()
        .take(20)
        .map_while(Result::ok)
        .any(|l| l.contains("Capturing on"));
    let cap = Child(cap);
    assert!(ready, "tshark cannot capture on lo");
    std::thread::spawn(move || lines.for_each(drop));
    std::thread::sleep(Duration::from_millis(200));

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
    cap.signal(2);
    let mut cap = cap;
    let _ = cap.0.wait();

    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(&pcap)
        .args(["-n", "-o", "sctp.checksum:CRC-32C"]);
    for r in &regs {
        cmd.args(["-d", &format!("udp.port=={},sctp", r.port)]);
    }
    let out = cmd
        .args([
            "-Y",
            "sctp.data_payload_proto_id == 12 || enrp",
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
            "frame.number",
            "-e",
            "sctp.data_payload_proto_id",
            "-e",
            "sctp.port",
        ])
        .args([
            "-e",
            "enrp.message_type",
            "-e",
            "sctp.checksum.status",
            "-e",
            "_ws.malformed",
        ])
        .args(["-e", "sctp.retransmission"])
        .output()
        .expect("run tshark");
    if let Ok(keep) = std::env::var("POOLGATE_KEEP_PCAP") {
        std::fs::copy(&pcap, keep).unwrap();
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    let mut frames = 0;
    let mut retransmissions = 0;
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f.len(), 7, "{line}");
        frames += 1;
        let ppids: Vec<&str> = f[1].split(',').collect();
        let types: Vec<&str> = f[3].split(',').filter(|t| !t.is_empty()).collect();
        assert!(
            ppids.iter().all(|p| *p == "12"),
            "frame {}: PPIDs {ppids:?}",
            f[0]
        );
        assert!(
            f[2].split(',').any(|p| p == "9901"),
            "frame {}: ports {}",
            f[0],
            f[2]
        );
        // Wireshark does not dissect the payload of an SCTP retransmission again.
        let retransmission = !f[6].is_empty();
        assert!(
            retransmission || !types.is_empty(),
            "frame {}: no ENRP message decoded",
            f[0]
        );
        retransmissions += usize::from(retransmission);
        assert!(
            f[4].split(',').all(|s| s == "1" || s.is_empty()),
            "frame {}: bad checksum",
            f[0]
        );
        assert!(f[5].is_empty(), "frame {}: malformed", f[0]);
        for t in types {
            *by_type.entry(t.to_string()).or_default() += 1;
        }
    }
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
