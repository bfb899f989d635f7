//! PROXY protocol headers (HAProxy's spec, versions 1 and 2): the first bytes a PPE writes
//! to a legacy backend behind a `tcp`/`tls` listener, so the backend sees the client's
//! address instead of the PPE's.
//!
//! Encoders for both versions; decoders (total, bounded) for tests and for backends of
//! ours. TLVs of version 2 are skipped by the decoder and never written.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

/// The 12-byte signature that starts a version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Longest version 1 header, CRLF included.
pub const V1_MAX: usize = 107;

/// The connection a header describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A proxied TCP connection: client (source) and the address it connected to.
    Tcp {
        /// The client.
        source: SocketAddr,
        /// The proxy's listening address the client reached.
        destination: SocketAddr,
    },
    /// No address information (v1 `UNKNOWN`, v2 `LOCAL` or unspecified family).
    Unknown,
}

/// Why bytes are not a PROXY protocol header.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ProxyError {
    /// Not a header of the expected version.
    #[error("no PROXY protocol signature")]
    NoSignature,
    /// A version 1 line longer than 107 bytes or otherwise malformed.
    #[error("malformed PROXY v1 line")]
    BadV1,
    /// A malformed version 2 header.
    #[error("malformed PROXY v2 header")]
    BadV2,
}

/// Whether to send v1 (text) or v2 (binary).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProxyVersion {
    /// Text: `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// Binary, fixed layout.
    #[default]
    V2,
}

/// Encodes a header; source and destination of different families are sent as IPv6
/// (IPv4-mapped), as the spec requires one family per header.
pub fn encode(version: ProxyVersion, header: &ProxyHeader) -> Vec<u8> {
    match version {
        ProxyVersion::V1 => encode_v1(header),
        ProxyVersion::V2 => encode_v2(header),
    }
}

fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    if src.is_ipv4() == dst.is_ipv4() {
        (src, dst)
    } else {
        (v6(src), v6(dst))
    }
}

/// Version 1: `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n` or `PROXY UNKNOWN\r\n`.
pub fn encode_v1(header: &ProxyHeader) -> Vec<u8> {
    match *header {
        ProxyHeader::Unknown => b"PROXY UNKNOWN\r\n".to_vec(),
        ProxyHeader::Tcp {
            source,
            destination,
        } => {
            let (s, d) = same_family(source, destination);
            let fam = if s.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {fam} {} {} {} {}\r\n",
                s.ip(),
                d.ip(),
                s.port(),
                d.port()
            )
            .into_bytes()
        }
    }
}

/// Version 2: signature, version/command, family/protocol, length, addresses.
pub fn encode_v2(header: &ProxyHeader) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    match *header {
        ProxyHeader::Unknown => {
            // LOCAL command, UNSPEC family: the backend uses the real connection's address.
            out.extend_from_slice(&[0x20, 0x00, 0, 0]);
        }
        ProxyHeader::Tcp {
            source,
            destination,
        } => {
            out.push(0x21);
            match same_family(source, destination) {
                (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                    out.push(0x11);
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&s.ip().octets());
                    out.extend_from_slice(&d.ip().octets());
                    out.extend_from_slice(&s.port().to_be_bytes());
                    out.extend_from_slice(&d.port().to_be_bytes());
                }
                (s, d) => {
                    let ip6 = |a: SocketAddr| match a.ip() {
                        IpAddr::V6(ip) => ip,
                        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
                    };
                    out.push(0x21);
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&ip6(s).octets());
                    out.extend_from_slice(&ip6(d).octets());
                    out.extend_from_slice(&s.port().to_be_bytes());
                    out.extend_from_slice(&d.port().to_be_bytes());
                }
            }
        }
    }
    out
}

/// Decodes a header of either version at the start of `input`: `Ok(None)` when more
/// bytes are needed, else the header and its length.
pub fn decode(input: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let n = input.len().min(V2_SIGNATURE.len());
    if input[..n] == V2_SIGNATURE[..n] && n > 0 {
        return decode_v2(input);
    }
    decode_v1(input)
}

/// Decodes a version 1 line.
pub fn decode_v1(input: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let n = input.len().min(6);
    if input[..n] != b"PROXY "[..n] {
        return Err(ProxyError::NoSignature);
    }
    let Some(lf) = input.iter().take(V1_MAX).position(|&b| b == b'\n') else {
        return if input.len() >= V1_MAX {
            Err(ProxyError::BadV1)
        } else {
            Ok(None)
        };
    };
    let line = input[..lf].strip_suffix(b"\r").ok_or(ProxyError::BadV1)?;
    let line = std::str::from_utf8(line).map_err(|_| ProxyError::BadV1)?;
    let parts: Vec<&str> = line.split(' ').collect();
    let header = match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => ProxyHeader::Unknown,
        ["PROXY", fam @ ("TCP4" | "TCP6"), s, d, sp, dp] => {
            let ip = |x: &str| -> Result<IpAddr, ProxyError> {
                let ip: IpAddr = if *fam == "TCP4" {
                    x.parse::<Ipv4Addr>().map(IpAddr::V4)
                } else {
                    x.parse::<Ipv6Addr>().map(IpAddr::V6)
                }
                .map_err(|_| ProxyError::BadV1)?;
                Ok(ip)
            };
            let port = |x: &str| -> Result<u16, ProxyError> {
                if x.is_empty() || (x.len() > 1 && x.starts_with('0')) {
                    return Err(ProxyError::BadV1);
                }
                x.parse().map_err(|_| ProxyError::BadV1)
            };
            ProxyHeader::Tcp {
                source: SocketAddr::new(ip(s)?, port(sp)?),
                destination: SocketAddr::new(ip(d)?, port(dp)?),
            }
        }
        _ => return Err(ProxyError::BadV1),
    };
    Ok(Some((header, lf + 1)))
}

/// Decodes a version 2 header (TLVs skipped).
pub fn decode_v2(input: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let n = input.len().min(12);
    if input[..n] != V2_SIGNATURE[..n] {
        return Err(ProxyError::NoSignature);
    }
    if input.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = input[12];
    let fam = input[13];
    let len = u16::from_be_bytes([input[14], input[15]]) as usize;
    if ver_cmd >> 4 != 2 || ver_cmd & 0x0f > 1 {
        return Err(ProxyError::BadV2);
    }
    if input.len() < 16 + len {
        return Ok(None);
    }
    let body = &input[16..16 + len];
    let total = 16 + len;
    if ver_cmd & 0x0f == 0 {
        return Ok(Some((ProxyHeader::Unknown, total)));
    }
    let header = match fam {
        0x11 => {
            if body.len() < 12 {
                return Err(ProxyError::BadV2);
            }
            let ip = |o: usize| Ipv4Addr::new(body[o], body[o + 1], body[o + 2], body[o + 3]);
            ProxyHeader::Tcp {
                source: SocketAddr::new(IpAddr::V4(ip(0)), u16::from_be_bytes([body[8], body[9]])),
                destination: SocketAddr::new(
                    IpAddr::V4(ip(4)),
                    u16::from_be_bytes([body[10], body[11]]),
                ),
            }
        }
        0x21 => {
            if body.len() < 36 {
                return Err(ProxyError::BadV2);
            }
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[o..o + 16]);
                Ipv6Addr::from(a)
            };
            ProxyHeader::Tcp {
                source: SocketAddr::new(
                    IpAddr::V6(ip(0)),
                    u16::from_be_bytes([body[32], body[33]]),
                ),
                destination: SocketAddr::new(
                    IpAddr::V6(ip(16)),
                    u16::from_be_bytes([body[34], body[35]]),
                ),
            }
        }
        // UNSPEC, UDP, UNIX: no TCP address to report.
        _ => ProxyHeader::Unknown,
    };
    Ok(Some((header, total)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tcp(s: &str, d: &str) -> ProxyHeader {
        ProxyHeader::Tcp {
            source: s.parse().unwrap(),
            destination: d.parse().unwrap(),
        }
    }

    #[test]
    fn v1_matches_the_spec_examples() {
        // The spec's examples (section 2.1).
        let h = tcp("255.255.255.255:65535", "255.255.255.255:65535");
        let line = encode_v1(&h);
        assert_eq!(
            line,
            b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"
        );
        let h6 = tcp(
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        );
        let line6 = encode_v1(&h6);
        assert_eq!(line6.len(), 104);
        assert!(line6.len() <= V1_MAX);
        assert_eq!(decode(&line6).unwrap(), Some((h6, 104)));
        assert_eq!(encode_v1(&ProxyHeader::Unknown), b"PROXY UNKNOWN\r\n");
        let mixed = tcp("192.0.2.1:1000", "[2001:db8::1]:80");
        assert_eq!(
            encode_v1(&mixed),
            b"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::1 1000 80\r\n".to_vec()
        );
    }

    #[test]
    fn v2_layout() {
        let h = tcp("192.0.2.1:1000", "198.51.100.2:80");
        let b = encode_v2(&h);
        let mut want = V2_SIGNATURE.to_vec();
        want.extend_from_slice(&[
            0x21, 0x11, 0, 12, 192, 0, 2, 1, 198, 51, 100, 2, 0x03, 0xe8, 0, 80,
        ]);
        assert_eq!(b, want);
        assert_eq!(decode(&b).unwrap(), Some((h, 28)));
        let local = encode_v2(&ProxyHeader::Unknown);
        assert_eq!(&local[12..], &[0x20, 0x00, 0, 0]);
        let h6 = tcp("[2001:db8::1]:1", "[2001:db8::2]:2");
        let b6 = encode_v2(&h6);
        assert_eq!(b6.len(), 16 + 36);
        assert_eq!(b6[13], 0x21);
        assert_eq!(decode(&b6).unwrap(), Some((h6, 52)));
        // TLVs after the addresses are skipped.
        let mut tlv = b.clone();
        tlv[15] = 12 + 4;
        tlv.extend_from_slice(&[0x04, 0, 1, 0xff, b'x']);
        assert_eq!(decode(&tlv).unwrap(), Some((h, 32)));
    }

    #[test]
    fn decoders_reject_and_wait() {
        assert_eq!(decode(b"PROXY TCP4 1.2.3.4"), Ok(None));
        assert_eq!(decode(b"PROX"), Ok(None));
        assert_eq!(decode(b"GET / HTTP/1.1\r\n"), Err(ProxyError::NoSignature));
        assert_eq!(
            decode(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"),
            Err(ProxyError::BadV1)
        );
        assert_eq!(
            decode(b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n"),
            Err(ProxyError::BadV1)
        );
        assert_eq!(
            decode(&[b'P', b'R', b'O', b'X', b'Y', b' ', b'a'].repeat(20)),
            Err(ProxyError::BadV1)
        );
        let mut bad = V2_SIGNATURE.to_vec();
        bad.extend_from_slice(&[0x31, 0x11, 0, 0]);
        assert_eq!(decode(&bad), Err(ProxyError::BadV2));
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert_eq!(decode(&short), Err(ProxyError::BadV2));
        assert_eq!(decode(&V2_SIGNATURE[..5]), Ok(None));
    }

    fn addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
        ]
    }

    proptest! {
        #[test]
        fn roundtrip_both_versions(s in addr(), d in addr(), v2 in any::<bool>()) {
            let h = ProxyHeader::Tcp { source: s, destination: d };
            let version = if v2 { ProxyVersion::V2 } else { ProxyVersion::V1 };
            let b = encode(version, &h);
            let (got, n) = decode(&b).unwrap().unwrap();
            prop_assert_eq!(n, b.len());
            let max = if v2 { 52 } else { V1_MAX };
            prop_assert!(b.len() <= max);
            let (es, ed) = same_family(s, d);
            prop_assert_eq!(got, ProxyHeader::Tcp { source: es, destination: ed });
            // Every prefix asks for more bytes.
            for cut in 0..b.len() {
                prop_assert_eq!(decode(&b[..cut]).unwrap(), None);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200), sig in any::<bool>()) {
            let mut input = if sig { V2_SIGNATURE.to_vec() } else { b"PROXY ".to_vec() };
            input.extend_from_slice(&b);
            if let Ok(Some((_, n))) = decode(&input) {
                prop_assert!(n <= input.len());
            }
        }
    }
}
