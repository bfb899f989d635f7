//! Exact byte layouts (RFC 5352/5353/5354 figures, hand-assembled here) and
//! the strictness rules of the decoder: unknown parameters, limits, lengths.

use std::net::{IpAddr, Ipv4Addr};

use pool_core::types::{Policy, PoolHandle, Transport, TransportProtocol, TransportUse};
use pool_core::wire::asap::AsapMessage;
use pool_core::wire::auth::{signed_bytes, AUTH_DOMAIN};
use pool_core::wire::enrp::{EnrpBody, EnrpMessage, PoolEntry, UpdateAction};
use pool_core::wire::{
    CauseCode, ErrorCause, OperationError, Param, PoolElement, RawParam, RegistrationAuth,
    SelectionPolicy, WireError, MAX_RESOLUTION_PES,
};

fn ph(s: &str) -> PoolHandle {
    PoolHandle::new(s.as_bytes().to_vec()).unwrap()
}

fn sctp(port: u16, a: [u8; 4]) -> Transport {
    Transport {
        protocol: TransportProtocol::Sctp,
        port,
        transport_use: TransportUse::DataPlusControl,
        addresses: vec![IpAddr::V4(Ipv4Addr::from(a))],
    }
}

fn pe(id: u32) -> PoolElement {
    PoolElement {
        id,
        home_registrar: 0x1111_2222,
        registration_life: 30_000,
        user_transport: sctp(8080, [10, 0, 0, 1]),
        policy: SelectionPolicy::Known(Policy::LeastUsed { load: 0x8000_0000 }),
        asap_transport: None,
    }
}

/// Replace the message length field with the buffer's length.
fn fix_len(buf: &mut [u8]) {
    let n = buf.len() as u16;
    buf[2..4].copy_from_slice(&n.to_be_bytes());
}

#[test]
fn endpoint_keep_alive_layout() {
    let m = AsapMessage::EndpointKeepAlive {
        home: true,
        server_id: 0x0102_0304,
        pool_handle: ph("ab"),
        pe_id: 0x0a0b_0c0d,
    };
    let expect: &[u8] = &[
        0x07, 0x01, 0x00, 0x18, // type, H flag, length 24
        0x01, 0x02, 0x03, 0x04, // server identifier
        0x00, 0x09, 0x00, 0x06, b'a', b'b', 0, 0, // pool handle, padded
        0x00, 0x0e, 0x00, 0x08, 0x0a, 0x0b, 0x0c, 0x0d, // PE identifier
    ];
    assert_eq!(m.to_bytes().unwrap(), expect);
    assert_eq!(AsapMessage::decode(expect).unwrap(), m);
}

#[test]
fn registration_layout() {
    let m = AsapMessage::Registration {
        pool_handle: ph("pool"),
        element: pe(0xdead_beef),
        auth: None,
    };
    let expect: &[u8] = &[
        0x01, 0x00, 0x00, 0x38, // REGISTRATION, length 56
        0x00, 0x09, 0x00, 0x08, b'p', b'o', b'o', b'l', // pool handle
        0x00, 0x0a, 0x00, 0x2c, // pool element, length 44
        0xde, 0xad, 0xbe, 0xef, // PE identifier
        0x11, 0x11, 0x22, 0x22, // home registrar
        0x00, 0x00, 0x75, 0x30, // registration life 30000
        0x00, 0x04, 0x00, 0x10, 0x1f, 0x90, 0x00,
        0x01, // SCTP transport, port 8080, data+control
        0x00, 0x01, 0x00, 0x08, 10, 0, 0, 1, // IPv4 address
        0x00, 0x08, 0x00, 0x0c, 0x40, 0x00, 0x00, 0x01, 0x80, 0x00, 0x00,
        0x00, // LU policy, load 50 %
    ];
    assert_eq!(m.to_bytes().unwrap(), expect);
    assert_eq!(AsapMessage::decode(expect).unwrap(), m);
}

#[test]
fn registration_response_reject_flag() {
    let m = AsapMessage::RegistrationResponse {
        reject: true,
        pool_handle: ph("p"),
        pe_id: 7,
        error: Some(OperationError::single(ErrorCause::UnknownPoolHandle)),
    };
    let b = m.to_bytes().unwrap();
    assert_eq!(&b[..2], &[0x03, 0x01]);
    // Operation error with one cause (code 9, length 4) at the end.
    assert_eq!(
        &b[b.len() - 8..],
        &[0x00, 0x0c, 0x00, 0x08, 0x00, 0x09, 0x00, 0x04]
    );
    assert_eq!(AsapMessage::decode(&b).unwrap(), m);
}

#[test]
fn presence_layout_and_pe_checksum_is_16_bits() {
    let m = EnrpMessage {
        sender: 1,
        receiver: 2,
        body: EnrpBody::Presence {
            reply_required: true,
            checksum: 0xbeef,
            server_info: None,
        },
    };
    let expect: &[u8] = &[
        0x01, 0x01, 0x00, 0x14, // PRESENCE, R flag, length 20
        0, 0, 0, 1, 0, 0, 0, 2, // sender, receiver
        0x00, 0x0f, 0x00, 0x06, 0xbe, 0xef, 0, 0, // PE checksum, length 6 + padding
    ];
    assert_eq!(m.to_bytes().unwrap(), expect);
    assert_eq!(EnrpMessage::decode(expect).unwrap(), m);
}

#[test]
fn handle_update_and_table_flags() {
    let m = EnrpMessage {
        sender: 5,
        receiver: 6,
        body: EnrpBody::HandleUpdate {
            action: UpdateAction::DelPe,
            pool_handle: ph("p"),
            element: pe(1),
        },
    };
    let b = m.to_bytes().unwrap();
    assert_eq!(&b[..2], &[0x04, 0x00]);
    assert_eq!(
        &b[12..16],
        &[0x00, 0x01, 0x00, 0x00],
        "update action DEL_PE + reserved"
    );
    assert_eq!(&b[16..18], &[0x00, 0x09], "pool handle follows");
    assert_eq!(EnrpMessage::decode(&b).unwrap(), m);

    let t = EnrpMessage {
        sender: 5,
        receiver: 6,
        body: EnrpBody::HandleTableResponse {
            reject: true,
            more_to_send: true,
            pools: vec![],
        },
    };
    assert_eq!(t.to_bytes().unwrap()[..2], [0x03, 0x03]);
    let w = EnrpMessage {
        sender: 5,
        receiver: 6,
        body: EnrpBody::HandleTableRequest {
            own_children_only: true,
        },
    };
    assert_eq!(
        w.to_bytes().unwrap(),
        [0x02, 0x01, 0x00, 0x0c, 0, 0, 0, 5, 0, 0, 0, 6]
    );
    let k = EnrpMessage {
        sender: 5,
        receiver: 6,
        body: EnrpBody::InitTakeover {
            target: 0x0a0b_0c0d,
        },
    };
    assert_eq!(
        k.to_bytes().unwrap(),
        [0x07, 0x00, 0x00, 0x10, 0, 0, 0, 5, 0, 0, 0, 6, 0x0a, 0x0b, 0x0c, 0x0d]
    );
}

#[test]
fn auth_extension_layout_and_skip_bits() {
    let auth = RegistrationAuth {
        key_id: 3,
        nonce: 0x0102_0304_0506_0708,
        timestamp_ms: 1_700_000_000_000,
        tag: [0xaa; 32],
    };
    let m = AsapMessage::Registration {
        pool_handle: ph("pool"),
        element: pe(1),
        auth: Some(auth.clone()),
    };
    let b = m.to_bytes().unwrap();
    let p = &b[b.len() - 56..];
    assert_eq!(&p[..4], &[0x80, 0x01, 0x00, 0x38], "type 0x8001, length 56");
    assert_eq!(&p[4..8], &[0, 0, 0, 3]);
    assert_eq!(&p[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&p[24..], &[0xaa; 32]);
    assert_eq!(AsapMessage::decode(&b).unwrap(), m);
    // High bits 10: an implementation without the extension skips it.
    assert_eq!(0x8001u16 >> 14, 0b10);
}

#[test]
fn signed_bytes_cover_handle_element_and_auth_fields() {
    let s = signed_bytes(&ph("pool"), &pe(1), 3, 42, 1000).unwrap();
    assert!(s.starts_with(AUTH_DOMAIN));
    let mut pe_param = Vec::new();
    Param::PoolElement(pe(1)).encode(&mut pe_param).unwrap();
    assert!(s.windows(pe_param.len()).any(|w| w == pe_param.as_slice()));
    assert_ne!(s, signed_bytes(&ph("pool"), &pe(1), 3, 43, 1000).unwrap());
    assert_ne!(s, signed_bytes(&ph("pool"), &pe(2), 3, 42, 1000).unwrap());
    assert_ne!(s, signed_bytes(&ph("pooL"), &pe(1), 3, 42, 1000).unwrap());
    assert_ne!(s, signed_bytes(&ph("pool"), &pe(1), 4, 42, 1000).unwrap());
}

/// A HANDLE_RESOLUTION for pool "p" with one extra parameter appended.
fn resolution_with(extra_type: u16) -> Vec<u8> {
    let mut b = AsapMessage::HandleResolution {
        pool_handle: ph("p"),
    }
    .to_bytes()
    .unwrap();
    RawParam {
        param_type: extra_type,
        value: vec![1, 2, 3],
    }
    .encode(&mut b)
    .unwrap();
    fix_len(&mut b);
    b
}

#[test]
fn unknown_parameter_action_bits() {
    let want = AsapMessage::HandleResolution {
        pool_handle: ph("p"),
    };
    // 10: skip silently.
    let d = AsapMessage::decode_reporting(&resolution_with(0x8123)).unwrap();
    assert_eq!(d.message, want);
    assert!(d.unrecognized.is_empty());
    // 11: skip and report.
    let d = AsapMessage::decode_reporting(&resolution_with(0xc123)).unwrap();
    assert_eq!(d.message, want);
    assert_eq!(
        d.unrecognized,
        vec![RawParam {
            param_type: 0xc123,
            value: vec![1, 2, 3]
        }]
    );
    // 01: stop, discard, report.
    let e = AsapMessage::decode(&resolution_with(0x4123)).unwrap_err();
    assert!(matches!(
        e,
        WireError::UnrecognizedParameter { report: true, .. }
    ));
    assert_eq!(e.cause(), CauseCode::UnrecognizedParameter);
    assert!(e.should_report());
    assert_eq!(
        ErrorCause::from_error(&e),
        ErrorCause::UnrecognizedParameter(RawParam {
            param_type: 0x4123,
            value: vec![1, 2, 3]
        })
    );
    // 00: stop, discard silently.
    let e = AsapMessage::decode(&resolution_with(0x0123)).unwrap_err();
    assert!(matches!(
        e,
        WireError::UnrecognizedParameter { report: false, .. }
    ));
    assert!(!e.should_report());
}

#[test]
fn unknown_parameter_nested_in_pool_element_is_reported() {
    let m = AsapMessage::Registration {
        pool_handle: ph("p"),
        element: pe(1),
        auth: None,
    };
    let mut b = m.to_bytes().unwrap();
    // Append a skip-and-report parameter inside the pool element (the last
    // parameter): grow the PE's length and the message's.
    let pe_off = 12; // header 4 + pool handle 8
    assert_eq!(&b[pe_off..pe_off + 2], &[0x00, 0x0a]);
    let extra = [0xc0, 0x77, 0x00, 0x08, 9, 9, 9, 9];
    b.extend_from_slice(&extra);
    let pe_len = u16::from_be_bytes([b[pe_off + 2], b[pe_off + 3]]) + 8;
    b[pe_off + 2..pe_off + 4].copy_from_slice(&pe_len.to_be_bytes());
    fix_len(&mut b);
    let d = AsapMessage::decode_reporting(&b).unwrap();
    assert_eq!(d.message, m);
    assert_eq!(d.unrecognized.len(), 1);
    assert_eq!(d.unrecognized[0].param_type, 0xc077);
}

#[test]
fn unknown_message_types() {
    let e = AsapMessage::decode(&[0x0f, 0, 0, 4]).unwrap_err();
    assert_eq!(e, WireError::UnknownMessageType(0x0f));
    assert_eq!(e.cause(), CauseCode::UnrecognizedMessage);
    assert_eq!(
        EnrpMessage::decode(&[0x0b, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(),
        WireError::UnknownMessageType(0x0b)
    );
}

#[test]
fn lengths_and_padding_are_checked() {
    let good = AsapMessage::HandleResolution {
        pool_handle: ph("abc"),
    }
    .to_bytes()
    .unwrap();
    // Length field disagreeing with the buffer.
    let mut b = good.clone();
    b.push(0);
    assert!(matches!(
        AsapMessage::decode(&b),
        Err(WireError::LengthMismatch { .. })
    ));
    // Parameter length below its header.
    let mut b = good.clone();
    b[6..8].copy_from_slice(&[0, 3]);
    assert!(matches!(
        AsapMessage::decode(&b),
        Err(WireError::BadLength { .. })
    ));
    // Parameter length beyond the message.
    let mut b = good.clone();
    b[6..8].copy_from_slice(&[0, 9]);
    assert!(matches!(
        AsapMessage::decode(&b),
        Err(WireError::BadLength { .. })
    ));
    // Last parameter without its padding: "abc" param is 7 bytes, message 11.
    let b = [0x05, 0, 0, 11, 0, 9, 0, 7, b'a', b'b', b'c'];
    assert!(matches!(
        AsapMessage::decode(&b),
        Err(WireError::MissingPadding)
    ));
    // Padding content is ignored, as RFC 5354 says.
    let mut b = good.clone();
    *b.last_mut().unwrap() = 0xff;
    assert_eq!(
        AsapMessage::decode(&b).unwrap(),
        AsapMessage::decode(&good).unwrap()
    );
    // Empty pool handle.
    let b = [0x05, 0, 0, 8, 0, 9, 0, 4];
    assert_eq!(
        AsapMessage::decode(&b).unwrap_err(),
        WireError::InvalidPoolHandle(0)
    );
    // A parameter the message does not define.
    let mut b = AsapMessage::Deregistration {
        pool_handle: ph("p"),
        pe_id: 1,
        auth: None,
    }
    .to_bytes()
    .unwrap();
    Param::Cookie(vec![1]).encode(&mut b).unwrap();
    fix_len(&mut b);
    assert_eq!(
        AsapMessage::decode(&b).unwrap_err(),
        WireError::UnexpectedParameter(0x000d)
    );
    // Missing PE identifier.
    let b = AsapMessage::HandleResolution {
        pool_handle: ph("p"),
    }
    .to_bytes()
    .unwrap();
    let mut d = b.clone();
    d[0] = 0x02;
    assert_eq!(
        AsapMessage::decode(&d).unwrap_err(),
        WireError::MissingParameter("PE identifier")
    );
}

#[test]
fn counts_are_bounded() {
    let full = AsapMessage::HandleResolutionResponse {
        accept_updates: false,
        pool_handle: ph("p"),
        policy: None,
        elements: (0..MAX_RESOLUTION_PES as u32).map(pe).collect(),
        error: None,
    };
    let mut b = full.to_bytes().unwrap();
    assert_eq!(AsapMessage::decode(&b).unwrap(), full);
    Param::PoolElement(pe(999)).encode(&mut b).unwrap();
    fix_len(&mut b);
    let e = AsapMessage::decode(&b).unwrap_err();
    assert!(matches!(
        e,
        WireError::TooMany {
            what: "pool elements",
            ..
        }
    ));
    assert_eq!(e.cause(), CauseCode::LackOfResources);

    // The encoder refuses what the decoder would refuse.
    let mut too_many = full.clone();
    if let AsapMessage::HandleResolutionResponse { elements, .. } = &mut too_many {
        elements.push(pe(999));
    }
    assert!(too_many.to_bytes().is_err());
}

#[test]
fn size_cap_is_64k() {
    let big = AsapMessage::Cookie(vec![0; 65_535 - 8]);
    assert!(matches!(big.to_bytes(), Err(WireError::TooLarge(_))));
    let fits = AsapMessage::Cookie(vec![7; 65_532 - 8]);
    let b = fits.to_bytes().unwrap();
    assert_eq!(b.len(), 65_532);
    assert_eq!(AsapMessage::decode(&b).unwrap(), fits);
    assert!(matches!(
        AsapMessage::decode(&vec![0u8; 70_000]),
        Err(WireError::TooLarge(_))
    ));
}

#[test]
fn policies_strict_and_unknown_preserved() {
    // Unknown (RSPLIB extension) policy type: kept with its data.
    let odd = SelectionPolicy::Unknown {
        type_code: 0xb000_2002,
        data: vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
    };
    let mut e = pe(1);
    e.policy = odd.clone();
    let m = AsapMessage::BusinessCard {
        pool_handle: ph("p"),
        elements: vec![e],
    };
    let d = AsapMessage::decode(&m.to_bytes().unwrap()).unwrap();
    assert_eq!(d, m);

    // Round robin must not carry data; least used needs exactly one word.
    let mut b = Vec::new();
    Param::Policy(SelectionPolicy::Known(Policy::LeastUsed { load: 1 }))
        .encode(&mut b)
        .unwrap();
    assert_eq!(b, [0, 8, 0, 12, 0x40, 0, 0, 1, 0, 0, 0, 1]);
    let mut m = AsapMessage::Registration {
        pool_handle: ph("p"),
        element: pe(1),
        auth: None,
    }
    .to_bytes()
    .unwrap();
    // Turn the LU policy (type 0x40000001) into round robin (0x00000001)
    // while keeping its load word: now the data length is wrong.
    let pos = m.windows(4).position(|w| w == [0x40, 0, 0, 1]).unwrap();
    m[pos] = 0;
    let e = AsapMessage::decode(&m).unwrap_err();
    assert!(matches!(
        e,
        WireError::PolicyDataLength {
            type_code: 1,
            len: 4,
            expected: 0
        }
    ));
    assert_eq!(e.cause(), CauseCode::InconsistentPoolingPolicy);
}

#[test]
fn transports_strict() {
    // TCP carries exactly one address.
    let mut t = sctp(1, [1, 1, 1, 1]);
    t.protocol = TransportProtocol::Tcp;
    t.addresses.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert!(matches!(
        Param::Transport(t).encode(&mut Vec::new()),
        Err(WireError::AddressCount {
            param_type: 5,
            count: 2
        })
    ));
    // UDP has no transport-use field: data+control cannot be encoded.
    let mut u = sctp(1, [1, 1, 1, 1]);
    u.protocol = TransportProtocol::Udp;
    assert!(matches!(
        Param::Transport(u).encode(&mut Vec::new()),
        Err(WireError::InvalidTransportUse(1))
    ));
    // Transport use 2 is undefined.
    let mut m = AsapMessage::Registration {
        pool_handle: ph("p"),
        element: pe(1),
        auth: None,
    }
    .to_bytes()
    .unwrap();
    let pos = m
        .windows(4)
        .position(|w| w == [0x1f, 0x90, 0x00, 0x01])
        .unwrap();
    m[pos + 3] = 2;
    let e = AsapMessage::decode(&m).unwrap_err();
    assert_eq!(e, WireError::InvalidTransportUse(2));
    assert_eq!(e.cause(), CauseCode::InconsistentDataControlConfiguration);
}

#[test]
fn dccp_user_transport_is_refused_with_transport_cause() {
    // Build a PE whose user transport is a DCCP parameter.
    let mut b = vec![0x01, 0, 0, 0];
    Param::PoolHandle(ph("p")).encode(&mut b).unwrap();
    let pe_start = b.len();
    b.extend_from_slice(&[0, 0x0a, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    Param::Dccp(pool_core::wire::DccpTransport {
        port: 5,
        service_code: 42,
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
    })
    .encode(&mut b)
    .unwrap();
    Param::Policy(SelectionPolicy::Known(Policy::RoundRobin))
        .encode(&mut b)
        .unwrap();
    let pe_len = (b.len() - pe_start) as u16;
    b[pe_start + 2..pe_start + 4].copy_from_slice(&pe_len.to_be_bytes());
    fix_len(&mut b);
    let e = AsapMessage::decode(&b).unwrap_err();
    assert_eq!(e, WireError::UnsupportedTransport(0x0003));
    assert_eq!(e.cause(), CauseCode::InconsistentTransportType);
}

#[test]
fn resolution_response_error_right_after_handle_decodes() {
    // RSPLIB puts the operation error directly after the pool handle.
    let m = AsapMessage::HandleResolutionResponse {
        accept_updates: false,
        pool_handle: ph("nope"),
        policy: None,
        elements: vec![],
        error: Some(OperationError::single(ErrorCause::UnknownPoolHandle)),
    };
    let b = m.to_bytes().unwrap();
    assert_eq!(&b[4 + 8..4 + 8 + 2], &[0x00, 0x0c]);
    assert_eq!(AsapMessage::decode(&b).unwrap(), m);
}

#[test]
fn error_causes_carry_offending_parameter() {
    let offending =
        RawParam::from_param(&Param::Policy(SelectionPolicy::Known(Policy::RoundRobin))).unwrap();
    assert_eq!(offending.param_type, 0x0008);
    assert_eq!(offending.value, [0, 0, 0, 1]);
    let m = EnrpMessage {
        sender: 1,
        receiver: 0,
        body: EnrpBody::Error(OperationError {
            causes: vec![
                ErrorCause::InconsistentPoolingPolicy(Some(offending.clone())),
                ErrorCause::UnrecognizedMessage(vec![0x42, 0, 0, 4]),
            ],
        }),
    };
    let b = m.to_bytes().unwrap();
    // Cause 5, length 4 + 8: the policy parameter inside it.
    let pos = b.windows(4).position(|w| w == [0, 5, 0, 12]).unwrap();
    assert_eq!(&b[pos + 4..pos + 12], &[0, 8, 0, 8, 0, 0, 0, 1]);
    assert_eq!(EnrpMessage::decode(&b).unwrap(), m);
    // A cause that must be empty but is not.
    let mut bad = EnrpMessage {
        sender: 1,
        receiver: 0,
        body: EnrpBody::Error(OperationError::single(ErrorCause::LackOfResources)),
    }
    .to_bytes()
    .unwrap();
    let n = bad.len();
    bad[n - 2..].copy_from_slice(&[0, 8]); // cause length 8, but no info follows
    assert!(EnrpMessage::decode(&bad).is_err());
}

#[test]
fn handle_table_response_groups_pools() {
    let m = EnrpMessage {
        sender: 1,
        receiver: 2,
        body: EnrpBody::HandleTableResponse {
            reject: false,
            more_to_send: false,
            pools: vec![
                PoolEntry {
                    pool_handle: ph("a"),
                    elements: vec![pe(1), pe(2)],
                },
                PoolEntry {
                    pool_handle: ph("b"),
                    elements: vec![pe(3)],
                },
            ],
        },
    };
    let b = m.to_bytes().unwrap();
    assert_eq!(EnrpMessage::decode(&b).unwrap(), m);
    // A pool handle without elements is refused.
    let mut bad = b.clone();
    Param::PoolHandle(ph("c")).encode(&mut bad).unwrap();
    fix_len(&mut bad);
    assert_eq!(
        EnrpMessage::decode(&bad).unwrap_err(),
        WireError::MissingParameter("pool element")
    );
}
