use super::*;
use proptest::prelude::*;
use std::net::IpAddr;

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn nonempty(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 1..max).prop_map(Bytes::from)
}

fn cause() -> impl Strategy<Value = ErrorCause> {
    (any::<u16>(), bytes(20)).prop_map(|(code, info)| ErrorCause { code, info })
}

fn param() -> impl Strategy<Value = InitParam> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| InitParam::Address(IpAddr::from(a))),
        any::<[u8; 16]>().prop_map(|a| InitParam::Address(IpAddr::from(a))),
        bytes(40).prop_map(InitParam::StateCookie),
        bytes(12).prop_map(InitParam::Unrecognized),
        any::<u32>().prop_map(InitParam::CookiePreservative),
        bytes(12).prop_map(InitParam::HostName),
        proptest::collection::vec(any::<u16>(), 0..4).prop_map(InitParam::SupportedAddressTypes),
        bytes(6).prop_map(InitParam::SupportedExtensions),
        Just(InitParam::ForwardTsnSupported),
        (0x4000u16..0xffff, bytes(9))
            .prop_filter("known codes", |(t, _)| {
                ![
                    param_type::SUPPORTED_EXTENSIONS,
                    param_type::FORWARD_TSN_SUPPORTED,
                ]
                .contains(t)
            })
            .prop_map(|(typ, value)| InitParam::Unknown { typ, value }),
    ]
}

fn reconfig_param() -> impl Strategy<Value = ReconfigParam> {
    let streams = || proptest::collection::vec(any::<u16>(), 0..6);
    prop_oneof![
        (any::<[u32; 3]>(), streams()).prop_map(|(n, streams)| {
            ReconfigParam::OutgoingSsnReset {
                req_seq: n[0],
                resp_seq: n[1],
                last_tsn: n[2],
                streams,
            }
        }),
        (any::<u32>(), streams())
            .prop_map(|(req_seq, streams)| ReconfigParam::IncomingSsnReset { req_seq, streams }),
        any::<u32>().prop_map(|req_seq| ReconfigParam::SsnTsnReset { req_seq }),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::option::of(any::<(u32, u32)>())
        )
            .prop_map(|(resp_seq, code, next_tsns)| ReconfigParam::Response {
                resp_seq,
                result: ReconfigResult::from_code(code % 9),
                next_tsns,
            }),
        (any::<u32>(), any::<u16>())
            .prop_map(|(req_seq, count)| ReconfigParam::AddOutgoingStreams { req_seq, count }),
        (any::<u32>(), any::<u16>())
            .prop_map(|(req_seq, count)| ReconfigParam::AddIncomingStreams { req_seq, count }),
        (any::<u16>(), bytes(9))
            .prop_filter("known codes", |(t, _)| !(13..=18).contains(t))
            .prop_map(|(typ, value)| ReconfigParam::Unknown { typ, value }),
    ]
}

fn init() -> impl Strategy<Value = InitChunk> {
    (
        1u32..,
        any::<u32>(),
        1u16..,
        1u16..,
        any::<u32>(),
        proptest::collection::vec(param(), 0..5),
    )
        .prop_map(
            |(initiate_tag, a_rwnd, os, mis, initial_tsn, params)| InitChunk {
                initiate_tag,
                a_rwnd,
                outbound_streams: os,
                inbound_streams: mis,
                initial_tsn,
                params,
            },
        )
}

fn chunk() -> impl Strategy<Value = Chunk> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<[bool; 4]>(),
            nonempty(50)
        )
            .prop_map(
                |(tsn, stream, ssn, ppid, f, payload)| Chunk::Data(DataChunk {
                    tsn,
                    stream,
                    ssn,
                    ppid,
                    unordered: f[0],
                    beginning: f[1],
                    ending: f[2],
                    immediate: f[3],
                    payload
                })
            ),
        init().prop_map(Chunk::Init),
        (init(), bytes(30)).prop_map(|(mut c, cookie)| {
            c.params.push(InitParam::StateCookie(cookie));
            Chunk::InitAck(c)
        }),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(any::<(u16, u16)>(), 0..6),
            proptest::collection::vec(any::<u32>(), 0..6)
        )
            .prop_map(|(cum_tsn, a_rwnd, g, dups)| Chunk::Sack(SackChunk {
                cum_tsn,
                a_rwnd,
                gaps: g
                    .into_iter()
                    .map(|(start, end)| GapBlock { start, end })
                    .collect(),
                dups
            })),
        bytes(30).prop_map(Chunk::Heartbeat),
        bytes(30).prop_map(Chunk::HeartbeatAck),
        (any::<bool>(), proptest::collection::vec(cause(), 0..3))
            .prop_map(|(t, causes)| Chunk::Abort { t, causes }),
        any::<u32>().prop_map(|cum_tsn| Chunk::Shutdown { cum_tsn }),
        Just(Chunk::ShutdownAck),
        proptest::collection::vec(cause(), 0..3).prop_map(Chunk::Error),
        bytes(60).prop_map(Chunk::CookieEcho),
        Just(Chunk::CookieAck),
        any::<bool>().prop_map(|t| Chunk::ShutdownComplete { t }),
        (
            any::<u8>(),
            any::<u32>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            nonempty(20)
        )
            .prop_map(
                |(flags, tsn, stream, mid, ppid_or_fsn, payload)| Chunk::IData(IDataChunk {
                    flags,
                    tsn,
                    stream,
                    mid,
                    ppid_or_fsn,
                    payload
                })
            ),
        (
            any::<u32>(),
            proptest::collection::vec(any::<(u16, u16)>(), 0..5)
        )
            .prop_map(|(new_cum_tsn, streams)| Chunk::ForwardTsn(ForwardTsnChunk {
                new_cum_tsn,
                streams
            })),
        proptest::collection::vec(reconfig_param(), 0..3)
            .prop_map(|ps| Chunk::ReConfig(ReConfigBody::Params(ps))),
        // Parameters that fail their length check survive as `Malformed`.
        (bytes(12), 13u16..=18).prop_filter_map("must not decode", |(b, t)| {
            let mut v = Vec::new();
            put_tlv(&mut v, t, &b);
            match ReConfigBody::decode(&Bytes::from(v)) {
                m @ ReConfigBody::Malformed { .. } => Some(Chunk::ReConfig(m)),
                ReConfigBody::Params(_) => None,
            }
        }),
        (15u8..=255, any::<u8>(), bytes(30))
            .prop_filter("known types", |(t, _, _)| {
                ![
                    chunk_type::I_DATA,
                    chunk_type::RE_CONFIG,
                    chunk_type::FORWARD_TSN,
                ]
                .contains(t)
            })
            .prop_map(|(typ, flags, value)| Chunk::Unknown { typ, flags, value }),
    ]
}

proptest! {
    #[test]
    fn packet_roundtrip(src in any::<u16>(), dst in any::<u16>(), vtag in any::<u32>(),
                        chunks in proptest::collection::vec(chunk(), 0..6)) {
        let p = Packet { header: CommonHeader { src_port: src, dst_port: dst, vtag }, chunks };
        let enc = p.encode();
        prop_assert_eq!(enc.len() % 4, 0);
        let dec = Packet::decode(&enc).unwrap();
        prop_assert_eq!(dec, p);
    }

    #[test]
    fn decode_is_total(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Packet::decode(&data);
        // With a valid checksum the chunk decoder is reached too.
        if data.len() >= 12 {
            let mut d = data.clone();
            finish_packet(&mut d);
            let _ = Packet::decode(&d);
        }
    }

    #[test]
    fn corrupted_byte_fails_checksum(chunks in proptest::collection::vec(chunk(), 1..3),
                                     pos in any::<usize>(), flip in 1u8..) {
        let p = Packet { header: CommonHeader { src_port: 1, dst_port: 2, vtag: 3 }, chunks };
        let mut enc = p.encode();
        let i = pos % enc.len();
        enc[i] ^= flip;
        prop_assert!(Packet::decode(&enc).is_err());
    }
}

#[test]
fn crc32c_known_vector() {
    // RFC 3720 B.4: 32 bytes of zeros have CRC32c 0x8a9136aa.
    assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
    let p = Packet {
        header: CommonHeader {
            src_port: 5000,
            dst_port: 5000,
            vtag: 0,
        },
        chunks: vec![Chunk::CookieAck],
    };
    let enc = p.encode();
    let stored = u32::from_le_bytes(enc[8..12].try_into().unwrap());
    let mut z = enc.clone();
    z[8..12].fill(0);
    assert_eq!(stored, crc32c::crc32c(&z));
}

proptest! {
    /// Our packet CRC (crc-fast, SIMD folding with size thresholds) agrees with the
    /// `crc32c` crate for every length, including those around the folding block sizes.
    #[test]
    fn packet_crc_matches_an_independent_crc32c(
        body in proptest::collection::vec(any::<u8>(), 12..5000),
        big in any::<bool>(),
    ) {
        let mut p = body.clone();
        if big {
            // Large packets take the wide folding path.
            p = p.iter().cycle().take(65_507.min(p.len() * 20)).copied().collect();
        }
        let mut z = p.clone();
        z[8..12].fill(0);
        prop_assert_eq!(packet_crc(&p), crc32c::crc32c(&z));
    }
}

proptest! {
    /// Decoding a chunk by value gives what decoding it by reference gives.
    #[test]
    fn decode_owned_agrees_with_decode(
        typ in prop_oneof![Just(chunk_type::DATA), any::<u8>()],
        flags in any::<u8>(),
        value in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let raw = RawChunk { typ, flags, value: Bytes::from(value) };
        prop_assert_eq!(Chunk::decode_owned(raw.clone()), Chunk::decode(&raw));
    }

    /// The endpoint's peek at the first chunk accepts and refuses exactly what the
    /// chunk iterator does.
    #[test]
    fn first_chunk_type_agrees_with_the_chunk_iterator(
        packet in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let by_iter = ChunkIter::new(Bytes::from(packet.clone()))
            .next()
            .and_then(Result::ok)
            .map(|c| c.typ);
        prop_assert_eq!(first_chunk_type(&packet).ok(), by_iter);
    }
}

#[test]
fn strict_lengths_rejected() {
    let mk = |typ: u8, flags: u8, value: &[u8]| RawChunk {
        typ,
        flags,
        value: Bytes::copy_from_slice(value),
    };
    // DATA without user data.
    assert!(Chunk::decode(&mk(chunk_type::DATA, 3, &[0; 12])).is_err());
    // SACK whose counts disagree with the length.
    let mut sack = vec![0u8; 12];
    sack[9] = 1;
    assert!(Chunk::decode(&mk(chunk_type::SACK, 0, &sack)).is_err());
    // INIT with a zero initiate tag.
    let mut init = vec![0u8; 16];
    init[9] = 1;
    init[11] = 1;
    assert_eq!(
        Chunk::decode(&mk(chunk_type::INIT, 0, &init)),
        Err(DecodeError::Invalid("INIT"))
    );
    // INIT ACK without a cookie.
    init[3] = 7;
    assert!(Chunk::decode(&mk(chunk_type::INIT_ACK, 0, &init)).is_err());
    assert!(Chunk::decode(&mk(chunk_type::INIT, 0, &init)).is_ok());
    // SHUTDOWN with extra bytes.
    assert!(Chunk::decode(&mk(chunk_type::SHUTDOWN, 0, &[0; 8])).is_err());
    // A chunk length running past the packet.
    let mut pkt = vec![0u8; 12];
    pkt.extend_from_slice(&[11, 0, 0, 8]);
    finish_packet(&mut pkt);
    assert_eq!(Packet::decode(&pkt), Err(DecodeError::BadLength("chunk")));
}

#[test]
fn last_parameter_padding_not_counted() {
    let c = Chunk::Error(vec![ErrorCause::new(12, vec![1u8])]);
    let mut out = Vec::new();
    c.encode(&mut out);
    assert_eq!(out.len(), 12);
    assert_eq!(u16::from_be_bytes([out[2], out[3]]), 9);
}

proptest! {
    #[test]
    fn reconfig_param_roundtrip(p in reconfig_param()) {
        let mut out = Vec::new();
        let end = p.encode(&mut out);
        prop_assert_eq!(out.len() % 4, 0);
        let len = u16::from_be_bytes([out[2], out[3]]) as usize;
        prop_assert_eq!(len, end);
        let typ = u16::from_be_bytes([out[0], out[1]]);
        let v = Bytes::copy_from_slice(&out[4..len]);
        prop_assert_eq!(ReconfigParam::decode(typ, v).unwrap(), p);
    }

    #[test]
    fn reconfig_body_decode_is_total(v in proptest::collection::vec(any::<u8>(), 0..80)) {
        let body = ReConfigBody::decode(&Bytes::from(v));
        let mut out = Vec::new();
        body.encode(&mut out);
        prop_assert_eq!(ReConfigBody::decode(&Bytes::from(out)), body);
    }

    #[test]
    fn reconfig_result_codes_roundtrip(c in any::<u32>()) {
        prop_assert_eq!(ReconfigResult::from_code(c).code(), c);
    }
}

#[test]
fn reconfig_lengths_checked() {
    let dec = |t: u16, n: usize| ReconfigParam::decode(t, Bytes::from(vec![0u8; n]));
    // Outgoing SSN reset: 12 fixed bytes, then whole stream numbers.
    assert!(dec(reconfig_param_type::OUTGOING_SSN_RESET, 11).is_err());
    assert!(dec(reconfig_param_type::OUTGOING_SSN_RESET, 13).is_err());
    assert!(dec(reconfig_param_type::OUTGOING_SSN_RESET, 14).is_ok());
    assert!(dec(reconfig_param_type::INCOMING_SSN_RESET, 3).is_err());
    assert!(dec(reconfig_param_type::INCOMING_SSN_RESET, 5).is_err());
    assert!(dec(reconfig_param_type::SSN_TSN_RESET, 8).is_err());
    assert!(dec(reconfig_param_type::RESPONSE, 12).is_err());
    assert!(dec(reconfig_param_type::RESPONSE, 16).is_ok());
    assert!(dec(reconfig_param_type::ADD_OUTGOING_STREAMS, 4).is_err());
    assert!(dec(reconfig_param_type::ADD_INCOMING_STREAMS, 8).is_ok());
    // A malformed parameter keeps the chunk decodable, as `Malformed`.
    let raw = RawChunk {
        typ: chunk_type::RE_CONFIG,
        flags: 0,
        value: Bytes::from_static(&[0, 16, 0, 8, 0, 0, 0, 1]),
    };
    assert!(matches!(
        Chunk::decode(&raw),
        Ok(Chunk::ReConfig(ReConfigBody::Malformed {
            error: DecodeError::BadLength("re-configuration response"),
            ..
        }))
    ));
    // A known vector: Outgoing SSN Reset Request for streams 1 and 2 (RFC 6525 §4.1).
    let p = ReconfigParam::OutgoingSsnReset {
        req_seq: 7,
        resp_seq: 6,
        last_tsn: 0x0102_0304,
        streams: vec![1, 2],
    };
    let mut out = Vec::new();
    p.encode(&mut out);
    assert_eq!(
        out,
        [0, 13, 0, 20, 0, 0, 0, 7, 0, 0, 0, 6, 1, 2, 3, 4, 0, 1, 0, 2]
    );
}
