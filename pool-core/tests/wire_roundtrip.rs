//! Property tests of the ASAP/ENRP codec: round trips, totality on arbitrary
//! input, rejection of truncations, and the fuzz bodies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pool_core::types::{Policy, PoolHandle, Transport, TransportProtocol, TransportUse};
use pool_core::wire::asap::AsapMessage;
use pool_core::wire::enrp::{EnrpBody, EnrpMessage, PoolEntry, UpdateAction};
use pool_core::wire::{
    fuzzing, ErrorCause, OperationError, PoolElement, RawParam, RegistrationAuth, SelectionPolicy,
    ServerInfo,
};
use proptest::collection::vec;
use proptest::prelude::*;

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<[u8; 16]>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

fn transport() -> impl Strategy<Value = Transport> {
    (0u8..4, any::<u16>(), any::<bool>(), vec(addr(), 1..5)).prop_map(
        |(p, port, ctl, mut addresses)| {
            let protocol = match p {
                0 => TransportProtocol::Sctp,
                1 => TransportProtocol::Tcp,
                2 => TransportProtocol::Udp,
                _ => TransportProtocol::UdpLite,
            };
            if protocol != TransportProtocol::Sctp {
                addresses.truncate(1);
            }
            let transport_use =
                if ctl && matches!(protocol, TransportProtocol::Sctp | TransportProtocol::Tcp) {
                    TransportUse::DataPlusControl
                } else {
                    TransportUse::DataOnly
                };
            Transport {
                protocol,
                port,
                transport_use,
                addresses,
            }
        },
    )
}

fn policy() -> impl Strategy<Value = SelectionPolicy> {
    let known = prop_oneof![
        Just(Policy::RoundRobin),
        any::<u32>().prop_map(|weight| Policy::WeightedRoundRobin { weight }),
        Just(Policy::Random),
        any::<u32>().prop_map(|weight| Policy::WeightedRandom { weight }),
        any::<u32>().prop_map(|priority| Policy::Priority { priority }),
        any::<u32>().prop_map(|load| Policy::LeastUsed { load }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(load, degradation)| Policy::LeastUsedDegradation { load, degradation }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(load, increment)| Policy::PriorityLeastUsed { load, increment }),
        any::<u32>().prop_map(|load| Policy::RandomizedLeastUsed { load }),
    ];
    prop_oneof![
        4 => known.prop_map(SelectionPolicy::Known),
        1 => (any::<u32>().prop_filter("unknown", |t| !matches!(t, 1..=5 | 0x4000_0001..=0x4000_0004)), vec(any::<u8>(), 0..12))
            .prop_map(|(type_code, data)| SelectionPolicy::Unknown { type_code, data }),
    ]
}

fn handle() -> impl Strategy<Value = PoolHandle> {
    vec(any::<u8>(), 1..40).prop_map(|b| PoolHandle::new(b).expect("1..40 bytes is a valid handle"))
}

fn element() -> impl Strategy<Value = PoolElement> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        transport(),
        policy(),
        proptest::option::of(transport()),
    )
        .prop_map(
            |(id, home_registrar, registration_life, user_transport, policy, asap_transport)| {
                PoolElement {
                    id,
                    home_registrar,
                    registration_life,
                    user_transport,
                    policy,
                    asap_transport,
                }
            },
        )
}

fn raw_param() -> impl Strategy<Value = RawParam> {
    (any::<u16>(), vec(any::<u8>(), 0..20))
        .prop_map(|(param_type, value)| RawParam { param_type, value })
}

fn cause() -> impl Strategy<Value = ErrorCause> {
    prop_oneof![
        vec(any::<u8>(), 0..8).prop_map(ErrorCause::Unspecified),
        raw_param().prop_map(ErrorCause::UnrecognizedParameter),
        vec(any::<u8>(), 0..24).prop_map(ErrorCause::UnrecognizedMessage),
        proptest::option::of(raw_param()).prop_map(ErrorCause::InvalidValues),
        Just(ErrorCause::NonUniquePeIdentifier),
        proptest::option::of(raw_param()).prop_map(ErrorCause::InconsistentPoolingPolicy),
        Just(ErrorCause::LackOfResources),
        proptest::option::of(raw_param()).prop_map(ErrorCause::InconsistentTransportType),
        Just(ErrorCause::InconsistentDataControlConfiguration),
        Just(ErrorCause::UnknownPoolHandle),
        Just(ErrorCause::RejectedSecurity),
        (0x000bu16.., vec(any::<u8>(), 0..8))
            .prop_map(|(code, info)| ErrorCause::Other { code, info }),
    ]
}

fn op_error() -> impl Strategy<Value = OperationError> {
    vec(cause(), 1..4).prop_map(|causes| OperationError { causes })
}

fn auth() -> impl Strategy<Value = RegistrationAuth> {
    (any::<u32>(), any::<u64>(), any::<u64>(), any::<[u8; 32]>()).prop_map(
        |(key_id, nonce, timestamp_ms, tag)| RegistrationAuth {
            key_id,
            nonce,
            timestamp_ms,
            tag,
        },
    )
}

fn server_info() -> impl Strategy<Value = ServerInfo> {
    (any::<u32>(), transport()).prop_map(|(id, transport)| ServerInfo { id, transport })
}

fn asap() -> impl Strategy<Value = AsapMessage> {
    let cookie = vec(any::<u8>(), 0..64);
    prop_oneof![
        (handle(), element(), proptest::option::of(auth())).prop_map(
            |(pool_handle, element, auth)| AsapMessage::Registration {
                pool_handle,
                element,
                auth
            }
        ),
        (handle(), any::<u32>(), proptest::option::of(auth())).prop_map(
            |(pool_handle, pe_id, auth)| AsapMessage::Deregistration {
                pool_handle,
                pe_id,
                auth,
            }
        ),
        (
            any::<bool>(),
            handle(),
            any::<u32>(),
            proptest::option::of(op_error())
        )
            .prop_map(|(reject, pool_handle, pe_id, error)| {
                AsapMessage::RegistrationResponse {
                    reject,
                    pool_handle,
                    pe_id,
                    error,
                }
            }),
        (handle(), any::<u32>(), proptest::option::of(op_error())).prop_map(
            |(pool_handle, pe_id, error)| AsapMessage::DeregistrationResponse {
                pool_handle,
                pe_id,
                error
            }
        ),
        handle().prop_map(|pool_handle| AsapMessage::HandleResolution { pool_handle }),
        (
            any::<bool>(),
            handle(),
            proptest::option::of(policy()),
            vec(element(), 0..6),
            proptest::option::of(op_error())
        )
            .prop_map(|(accept_updates, pool_handle, policy, elements, error)| {
                AsapMessage::HandleResolutionResponse {
                    accept_updates,
                    pool_handle,
                    policy,
                    elements,
                    error,
                }
            }),
        (any::<bool>(), any::<u32>(), handle(), any::<u32>()).prop_map(
            |(home, server_id, pool_handle, pe_id)| {
                AsapMessage::EndpointKeepAlive {
                    home,
                    server_id,
                    pool_handle,
                    pe_id,
                }
            }
        ),
        (handle(), any::<u32>()).prop_map(|(pool_handle, pe_id)| {
            AsapMessage::EndpointKeepAliveAck { pool_handle, pe_id }
        }),
        (handle(), any::<u32>()).prop_map(|(pool_handle, pe_id)| {
            AsapMessage::EndpointUnreachable { pool_handle, pe_id }
        }),
        (any::<u32>(), vec(transport(), 0..3)).prop_map(|(server_id, transports)| {
            AsapMessage::ServerAnnounce {
                server_id,
                transports,
            }
        }),
        cookie.clone().prop_map(AsapMessage::Cookie),
        cookie.prop_map(AsapMessage::CookieEcho),
        (handle(), vec(element(), 1..4)).prop_map(|(pool_handle, elements)| {
            AsapMessage::BusinessCard {
                pool_handle,
                elements,
            }
        }),
        op_error().prop_map(AsapMessage::Error),
    ]
}

fn enrp() -> impl Strategy<Value = EnrpMessage> {
    let body = prop_oneof![
        (
            any::<bool>(),
            any::<u16>(),
            proptest::option::of(server_info())
        )
            .prop_map(
                |(reply_required, checksum, server_info)| EnrpBody::Presence {
                    reply_required,
                    checksum,
                    server_info
                }
            ),
        any::<bool>()
            .prop_map(|own_children_only| EnrpBody::HandleTableRequest { own_children_only }),
        (
            any::<bool>(),
            any::<bool>(),
            vec(
                (handle(), vec(element(), 1..3)).prop_map(|(pool_handle, elements)| PoolEntry {
                    pool_handle,
                    elements
                }),
                0..3
            )
        )
            .prop_map(
                |(reject, more_to_send, pools)| EnrpBody::HandleTableResponse {
                    reject,
                    more_to_send,
                    pools
                }
            ),
        (any::<bool>(), handle(), element()).prop_map(|(del, pool_handle, element)| {
            EnrpBody::HandleUpdate {
                action: if del {
                    UpdateAction::DelPe
                } else {
                    UpdateAction::AddPe
                },
                pool_handle,
                element,
            }
        }),
        Just(EnrpBody::ListRequest),
        (any::<bool>(), vec(server_info(), 0..4))
            .prop_map(|(reject, servers)| EnrpBody::ListResponse { reject, servers }),
        any::<u32>().prop_map(|target| EnrpBody::InitTakeover { target }),
        any::<u32>().prop_map(|target| EnrpBody::InitTakeoverAck { target }),
        any::<u32>().prop_map(|target| EnrpBody::TakeoverServer { target }),
        op_error().prop_map(EnrpBody::Error),
    ];
    (any::<u32>(), any::<u32>(), body).prop_map(|(sender, receiver, body)| EnrpMessage {
        sender,
        receiver,
        body,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn asap_roundtrip(msg in asap()) {
        let bytes = msg.to_bytes().expect("generated messages are encodable");
        prop_assert_eq!(bytes.len() % 4, 0);
        prop_assert_eq!(usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), bytes.len());
        prop_assert_eq!(bytes[0], msg.type_code());
        let back = AsapMessage::decode(&bytes).expect("encoded messages decode");
        prop_assert_eq!(&back, &msg);
        prop_assert!(fuzzing::asap_decode(&bytes));
    }

    #[test]
    fn enrp_roundtrip(msg in enrp()) {
        let bytes = msg.to_bytes().expect("generated messages are encodable");
        prop_assert_eq!(bytes.len() % 4, 0);
        prop_assert_eq!(usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), bytes.len());
        prop_assert_eq!(bytes[0], msg.type_code());
        let back = EnrpMessage::decode(&bytes).expect("encoded messages decode");
        prop_assert_eq!(&back, &msg);
        prop_assert!(fuzzing::enrp_decode(&bytes));
    }

    /// Every proper prefix of a valid message is rejected (the length field
    /// no longer matches), and so is every prefix whose length field is
    /// patched to match (then a parameter is cut short).
    #[test]
    fn asap_truncations_rejected(msg in asap()) {
        let bytes = msg.to_bytes().unwrap();
        for cut in 0..bytes.len() {
            prop_assert!(AsapMessage::decode(&bytes[..cut]).is_err(), "prefix {} accepted", cut);
        }
        // With the length field patched, cutting whole trailing parameters
        // can leave a valid, shorter message (e.g. without its optional
        // error) — but never one equal to the original.
        for cut in (4..bytes.len()).step_by(4) {
            let mut short = bytes[..cut].to_vec();
            short[2..4].copy_from_slice(&(cut as u16).to_be_bytes());
            let r = AsapMessage::decode(&short);
            prop_assert!(r.as_ref() != Ok(&msg), "patched prefix {} decoded to the full message", cut);
        }
    }

    #[test]
    fn enrp_truncations_rejected(msg in enrp()) {
        let bytes = msg.to_bytes().unwrap();
        for cut in 0..bytes.len() {
            prop_assert!(EnrpMessage::decode(&bytes[..cut]).is_err(), "prefix {} accepted", cut);
        }
        for cut in (4..bytes.len()).step_by(4) {
            let mut short = bytes[..cut].to_vec();
            short[2..4].copy_from_slice(&(cut as u16).to_be_bytes());
            let r = EnrpMessage::decode(&short);
            prop_assert!(r.as_ref() != Ok(&msg), "patched prefix {} decoded to the full message", cut);
        }
    }

    /// Arbitrary bytes never panic (the fuzz bodies assert the re-encoding
    /// properties for whatever does decode).
    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..512)) {
        fuzzing::asap_decode(&data);
        fuzzing::enrp_decode(&data);
    }

    /// Arbitrary bytes behind a plausible header (valid type, length field
    /// patched to match) reach the parameter parser instead of failing on
    /// the header, so this explores far more of the decoder.
    #[test]
    fn framed_garbage_never_panics(ty in 0u8..16, flags in any::<u8>(), mut body in vec(any::<u8>(), 0..256)) {
        body.truncate(body.len() & !3);
        let mut data = vec![ty, flags, 0, 0];
        data.extend_from_slice(&body);
        let len = data.len() as u16;
        data[2..4].copy_from_slice(&len.to_be_bytes());
        fuzzing::asap_decode(&data);
        fuzzing::enrp_decode(&data);
    }

    /// Single-byte corruptions of valid messages never panic and, when they
    /// still decode, satisfy the fuzz-body properties.
    #[test]
    fn mutated_messages_never_panic(msg in asap(), emsg in enrp(), pos in any::<prop::sample::Index>(), val in any::<u8>()) {
        let mut a = msg.to_bytes().unwrap();
        let i = pos.index(a.len());
        a[i] = val;
        fuzzing::asap_decode(&a);
        let mut e = emsg.to_bytes().unwrap();
        let j = pos.index(e.len());
        e[j] = val;
        fuzzing::enrp_decode(&e);
    }
}

/// A type code no parameter of RFC 5354 or poolgate uses, with the given
/// action bits.
fn unknown_type(bits: u16, low: u16) -> u16 {
    let t = (bits << 14) | (low & 0x3fff);
    if matches!(t, 0x0000..=0x000f | 0x8001) {
        (bits << 14) | 0x3fff
    } else {
        t
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Appending an unknown parameter obeys its two high type bits for every
    /// message: 10 skip, 11 skip and report, 00/01 reject (01 reported).
    #[test]
    fn unknown_parameter_rules_hold_everywhere(
        msg in asap(), emsg in enrp(), bits in 0u16..4, low in any::<u16>(), value in vec(any::<u8>(), 0..9)
    ) {
        let ty = unknown_type(bits, low);
        let extra = RawParam { param_type: ty, value };
        let mut a = msg.to_bytes().unwrap();
        extra.encode(&mut a).unwrap();
        let n = a.len() as u16;
        a[2..4].copy_from_slice(&n.to_be_bytes());
        let mut e = emsg.to_bytes().unwrap();
        extra.encode(&mut e).unwrap();
        let n = e.len() as u16;
        e[2..4].copy_from_slice(&n.to_be_bytes());

        let ra = AsapMessage::decode_reporting(&a);
        let re = EnrpMessage::decode_reporting(&e);
        match bits {
            0b10 | 0b11 => {
                let (da, de) = (ra.expect("skippable"), re.expect("skippable"));
                prop_assert_eq!(&da.message, &msg);
                prop_assert_eq!(&de.message, &emsg);
                let want = if bits == 0b11 { vec![extra.clone()] } else { vec![] };
                prop_assert_eq!(&da.unrecognized, &want);
                prop_assert_eq!(&de.unrecognized, &want);
            }
            _ => {
                for err in [ra.unwrap_err(), re.unwrap_err()] {
                    prop_assert_eq!(
                        err,
                        pool_core::wire::WireError::UnrecognizedParameter { param: extra.clone(), report: bits == 0b01 }
                    );
                }
            }
        }
    }
}
