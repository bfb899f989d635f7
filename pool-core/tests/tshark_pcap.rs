//! Cross-check against an independent implementation: Wireshark's ASAP and
//! ENRP dissectors must name every message we encode with the right type and
//! find nothing malformed.
//!
//! One of each ASAP and ENRP message is wrapped in IPv4 / UDP (port 9899,
//! SCTP over UDP per RFC 6951) / SCTP common header (port 3863 for ASAP,
//! 9901 for ENRP, correct CRC32c) / DATA chunk (PPID 11 ASAP, 12 ENRP),
//! written to a pcap (linktype 228, raw IPv4) and read back with tshark.
//!
//! tshark is required: without it the test fails, unless
//! `POOLGATE_SKIP_TSHARK=1` is set. `POOLGATE_KEEP_PCAP=<path>` keeps the
//! capture.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;

use pool_core::types::{Policy, PoolHandle, Transport, TransportProtocol, TransportUse};
use pool_core::wire::asap::AsapMessage;
use pool_core::wire::enrp::{EnrpBody, EnrpMessage, PoolEntry, UpdateAction};
use pool_core::wire::{
    ErrorCause, OperationError, Param, PoolElement, RawParam, RegistrationAuth, SelectionPolicy,
    ServerInfo, ASAP_PORT, ASAP_PPID, ENRP_PORT, ENRP_PPID,
};

const UDP_ENCAPS_PORT: u16 = 9899;

fn ph(s: &str) -> PoolHandle {
    PoolHandle::new(s.as_bytes().to_vec()).unwrap()
}

fn transport(protocol: TransportProtocol, port: u16, n: u8) -> Transport {
    Transport {
        protocol,
        port,
        transport_use: if protocol == TransportProtocol::Sctp {
            TransportUse::DataPlusControl
        } else {
            TransportUse::DataOnly
        },
        addresses: (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1 + i))
                } else {
                    IpAddr::V6(format!("2001:db8::{}", i + 1).parse().unwrap())
                }
            })
            .collect(),
    }
}

fn pe(id: u32, policy: Policy) -> PoolElement {
    PoolElement {
        id,
        home_registrar: 0x5151_0001,
        registration_life: 30_000,
        user_transport: transport(TransportProtocol::Tcp, 8000 + id as u16, 1),
        policy: SelectionPolicy::Known(policy),
        asap_transport: Some(transport(TransportProtocol::Sctp, 3863, 2)),
    }
}

fn error() -> OperationError {
    OperationError {
        causes: vec![
            ErrorCause::UnknownPoolHandle,
            ErrorCause::UnrecognizedParameter(RawParam {
                param_type: 0x4321,
                value: vec![1, 2, 3, 4],
            }),
            ErrorCause::InconsistentPoolingPolicy(Some(
                RawParam::from_param(&Param::Policy(SelectionPolicy::Known(Policy::RoundRobin)))
                    .unwrap(),
            )),
        ],
    }
}

fn asap_messages() -> Vec<AsapMessage> {
    let policies = [
        Policy::RoundRobin,
        Policy::WeightedRoundRobin { weight: 3 },
        Policy::Random,
        Policy::WeightedRandom { weight: 7 },
        Policy::Priority { priority: 2 },
        Policy::LeastUsed { load: 1 << 30 },
        Policy::LeastUsedDegradation {
            load: 1 << 30,
            degradation: 1 << 20,
        },
        Policy::PriorityLeastUsed {
            load: 1 << 29,
            increment: 1 << 19,
        },
        Policy::RandomizedLeastUsed { load: 12345 },
    ];
    vec![
        AsapMessage::Registration {
            pool_handle: ph("EchoPool"),
            element: pe(1, Policy::LeastUsed { load: 0 }),
            auth: Some(RegistrationAuth {
                key_id: 1,
                nonce: 99,
                timestamp_ms: 1_700_000_000_000,
                tag: [0x5a; 32],
            }),
        },
        AsapMessage::Deregistration {
            pool_handle: ph("EchoPool"),
            pe_id: 1,
            auth: None,
        },
        AsapMessage::RegistrationResponse {
            reject: true,
            pool_handle: ph("EchoPool"),
            pe_id: 1,
            error: Some(error()),
        },
        AsapMessage::DeregistrationResponse {
            pool_handle: ph("EchoPool"),
            pe_id: 1,
            error: None,
        },
        AsapMessage::HandleResolution {
            pool_handle: ph("EchoPool"),
        },
        AsapMessage::HandleResolutionResponse {
            accept_updates: false,
            pool_handle: ph("EchoPool"),
            policy: Some(SelectionPolicy::Known(Policy::RoundRobin)),
            elements: policies
                .iter()
                .enumerate()
                .map(|(i, p)| pe(i as u32 + 1, *p))
                .collect(),
            error: None,
        },
        AsapMessage::EndpointKeepAlive {
            home: true,
            server_id: 0x5151_0001,
            pool_handle: ph("EchoPool"),
            pe_id: 1,
        },
        AsapMessage::EndpointKeepAliveAck {
            pool_handle: ph("EchoPool"),
            pe_id: 1,
        },
        AsapMessage::EndpointUnreachable {
            pool_handle: ph("EchoPool"),
            pe_id: 2,
        },
        AsapMessage::ServerAnnounce {
            server_id: 0x5151_0001,
            transports: vec![
                transport(TransportProtocol::Sctp, 3863, 3),
                transport(TransportProtocol::Udp, 3863, 1),
                transport(TransportProtocol::UdpLite, 3863, 1),
            ],
        },
        AsapMessage::Cookie(b"cookie-bytes-17".to_vec()),
        AsapMessage::CookieEcho(b"cookie-bytes-17".to_vec()),
        AsapMessage::BusinessCard {
            pool_handle: ph("EchoPool"),
            elements: vec![
                pe(1, Policy::Random),
                pe(2, Policy::Priority { priority: 1 }),
            ],
        },
        AsapMessage::Error(error()),
    ]
}

fn enrp_messages() -> Vec<EnrpMessage> {
    let m = |body| EnrpMessage {
        sender: 0x5151_0001,
        receiver: 0x5151_0002,
        body,
    };
    let info = ServerInfo {
        id: 0x5151_0001,
        transport: transport(TransportProtocol::Sctp, 9901, 2),
    };
    vec![
        m(EnrpBody::Presence {
            reply_required: true,
            checksum: 0xbeef,
            server_info: Some(info.clone()),
        }),
        m(EnrpBody::HandleTableRequest {
            own_children_only: true,
        }),
        m(EnrpBody::HandleTableResponse {
            reject: false,
            more_to_send: true,
            pools: vec![
                PoolEntry {
                    pool_handle: ph("A"),
                    elements: vec![pe(1, Policy::RoundRobin), pe(2, Policy::RoundRobin)],
                },
                PoolEntry {
                    pool_handle: ph("B"),
                    elements: vec![pe(3, Policy::LeastUsed { load: 5 })],
                },
            ],
        }),
        m(EnrpBody::HandleUpdate {
            action: UpdateAction::AddPe,
            pool_handle: ph("A"),
            element: pe(1, Policy::RoundRobin),
        }),
        m(EnrpBody::ListRequest),
        m(EnrpBody::ListResponse {
            reject: false,
            servers: vec![info.clone(), info],
        }),
        m(EnrpBody::InitTakeover {
            target: 0x5151_0003,
        }),
        m(EnrpBody::InitTakeoverAck {
            target: 0x5151_0003,
        }),
        m(EnrpBody::TakeoverServer {
            target: 0x5151_0003,
        }),
        m(EnrpBody::Error(error())),
    ]
}

/// RFC 1071 checksum.
fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 / UDP 9899 / SCTP / DATA chunk around one message.
fn packet(payload: &[u8], sctp_port: u16, ppid: u32, tsn: u32) -> Vec<u8> {
    let mut sctp = Vec::new();
    sctp.extend_from_slice(&sctp_port.to_be_bytes());
    sctp.extend_from_slice(&sctp_port.to_be_bytes());
    sctp.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // verification tag
    sctp.extend_from_slice(&[0; 4]); // checksum, filled below
    let chunk_len = 16 + payload.len();
    sctp.extend_from_slice(&[0, 0x03]); // DATA, B and E flags
    sctp.extend_from_slice(&(chunk_len as u16).to_be_bytes());
    sctp.extend_from_slice(&tsn.to_be_bytes());
    sctp.extend_from_slice(&[0, 0]); // stream id
    sctp.extend_from_slice(&(tsn as u16).to_be_bytes()); // stream sequence number
    sctp.extend_from_slice(&ppid.to_be_bytes());
    sctp.extend_from_slice(payload);
    while sctp.len() % 4 != 0 {
        sctp.push(0);
    }
    // CRC32c goes on the wire in the byte order RFC 4960 Appendix B gives
    // (least significant byte first).
    let crc = crc32c::crc32c(&sctp);
    sctp[8..12].copy_from_slice(&crc.to_le_bytes());

    let udp_len = 8 + sctp.len();
    let mut udp = Vec::new();
    udp.extend_from_slice(&UDP_ENCAPS_PORT.to_be_bytes());
    udp.extend_from_slice(&UDP_ENCAPS_PORT.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
    udp.extend_from_slice(&sctp);

    let total = 20 + udp.len();
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
    ];
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&(tsn as u16).to_be_bytes());
    let c = inet_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&udp);
    ip
}

fn write_pcap(path: &PathBuf, packets: &[Vec<u8>]) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&0i32.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&65_535u32.to_le_bytes());
    f.extend_from_slice(&228u32.to_le_bytes()); // LINKTYPE_IPV4
    for (i, p) in packets.iter().enumerate() {
        f.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(p);
    }
    std::fs::write(path, f).unwrap();
}

#[test]
fn tshark_names_every_message_and_finds_nothing_malformed() {
    if Command::new("tshark").arg("--version").output().is_err() {
        if std::env::var("POOLGATE_SKIP_TSHARK").as_deref() == Ok("1") {
            eprintln!("tshark not installed; skipped because POOLGATE_SKIP_TSHARK=1");
            return;
        }
        panic!("tshark is not installed (apt-get install tshark), or set POOLGATE_SKIP_TSHARK=1 to skip");
    }

    let mut packets = Vec::new();
    let mut expected = Vec::new(); // (protocol, type code)
    for (i, m) in asap_messages().iter().enumerate() {
        let bytes = m.to_bytes().unwrap();
        assert_eq!(AsapMessage::decode(&bytes).unwrap(), *m);
        packets.push(packet(&bytes, ASAP_PORT, ASAP_PPID, i as u32 + 1));
        expected.push(("asap", m.type_code()));
    }
    for (i, m) in enrp_messages().iter().enumerate() {
        let bytes = m.to_bytes().unwrap();
        assert_eq!(EnrpMessage::decode(&bytes).unwrap(), *m);
        packets.push(packet(&bytes, ENRP_PORT, ENRP_PPID, i as u32 + 100));
        expected.push(("enrp", m.type_code()));
    }
    // All 14 ASAP and 10 ENRP types are covered exactly once.
    for (proto, n) in [("asap", 14u8), ("enrp", 10u8)] {
        let mut got: Vec<u8> = expected
            .iter()
            .filter(|(p, _)| *p == proto)
            .map(|(_, t)| *t)
            .collect();
        got.sort_unstable();
        assert_eq!(got, (1..=n).collect::<Vec<_>>(), "{proto} coverage");
    }

    let dir = std::env::temp_dir().join(format!("poolgate-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("rserpool.pcap");
    write_pcap(&pcap, &packets);

    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-n",
            "-d",
            "udp.port==9899,sctp",
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
            "frame.number",
            "-e",
            "asap.message_type",
            "-e",
            "enrp.message_type",
        ])
        .args([
            "-e",
            "sctp.checksum.status",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.expert.severity",
        ])
        .output()
        .expect("run tshark");
    // POOLGATE_KEEP_PCAP=<path> keeps a copy for a look in Wireshark.
    if let Ok(keep) = std::env::var("POOLGATE_KEEP_PCAP") {
        std::fs::copy(&pcap, keep).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), packets.len(), "tshark output:\n{stdout}");
    for (line, (proto, ty)) in lines.iter().zip(&expected) {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f.len(), 6, "{line}");
        let (asap, enrp) = (f[1], f[2]);
        let (named, other) = if *proto == "asap" {
            (asap, enrp)
        } else {
            (enrp, asap)
        };
        // Only the outer message: error causes may embed nothing here, so
        // exactly one type per packet is expected.
        assert_eq!(
            named,
            ty.to_string(),
            "frame {}: {proto} type (line {line})",
            f[0]
        );
        assert!(
            other.is_empty(),
            "frame {}: dissected as the other protocol too: {line}",
            f[0]
        );
        assert_eq!(f[3], "1", "frame {}: SCTP CRC32c not good: {line}", f[0]);
        assert!(f[4].is_empty(), "frame {}: malformed: {line}", f[0]);
        // Expert severities: 0x00600000 = warn, 0x00800000 = error.
        for sev in f[5].split(',').filter(|s| !s.is_empty()) {
            let v: u32 = sev.parse().unwrap_or(0);
            assert!(
                v < 0x0060_0000,
                "frame {}: expert info severity {sev}: {line}",
                f[0]
            );
        }
    }
}
