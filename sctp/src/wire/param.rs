//! Parameters of INIT and INIT ACK (RFC 9260 §3.3.2, RFC 3758, RFC 5061 §4.2.7).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;

use super::{be16, put_tlv, DecodeError};

/// Parameter type codes.
pub mod param_type {
    /// IPv4 address.
    pub const IPV4: u16 = 5;
    /// IPv6 address.
    pub const IPV6: u16 = 6;
    /// State cookie.
    pub const STATE_COOKIE: u16 = 7;
    /// Unrecognized parameter (INIT ACK).
    pub const UNRECOGNIZED: u16 = 8;
    /// Cookie preservative.
    pub const COOKIE_PRESERVATIVE: u16 = 9;
    /// Host name address (deprecated).
    pub const HOST_NAME: u16 = 11;
    /// Supported address types.
    pub const SUPPORTED_ADDRESS_TYPES: u16 = 12;
    /// Supported extensions (RFC 5061).
    pub const SUPPORTED_EXTENSIONS: u16 = 0x8008;
    /// Forward-TSN supported (RFC 3758).
    pub const FORWARD_TSN_SUPPORTED: u16 = 0xC000;
}

/// An INIT / INIT ACK parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitParam {
    /// An address of the sender (UDP port is the packet's source port).
    Address(IpAddr),
    /// State cookie (INIT ACK only).
    StateCookie(Bytes),
    /// A parameter of the INIT the sender did not recognise (whole TLV).
    Unrecognized(Bytes),
    /// Suggested cookie life-span increment in milliseconds.
    CookiePreservative(u32),
    /// Host name address (deprecated, never resolved).
    HostName(Bytes),
    /// Address families the sender supports.
    SupportedAddressTypes(Vec<u16>),
    /// Chunk types of extensions the sender supports.
    SupportedExtensions(Bytes),
    /// The sender supports FORWARD-TSN.
    ForwardTsnSupported,
    /// Any other parameter; its upper two type bits say how to treat it.
    Unknown {
        /// Parameter type.
        typ: u16,
        /// Value.
        value: Bytes,
    },
}

impl InitParam {
    /// Interprets one parameter.
    pub fn decode(typ: u16, v: Bytes) -> Result<InitParam, DecodeError> {
        Ok(match typ {
            param_type::IPV4 => {
                let b: [u8; 4] = v[..]
                    .try_into()
                    .map_err(|_| DecodeError::BadLength("IPv4 address"))?;
                InitParam::Address(IpAddr::V4(Ipv4Addr::from(b)))
            }
            param_type::IPV6 => {
                let b: [u8; 16] = v[..]
                    .try_into()
                    .map_err(|_| DecodeError::BadLength("IPv6 address"))?;
                InitParam::Address(IpAddr::V6(Ipv6Addr::from(b)))
            }
            param_type::STATE_COOKIE => InitParam::StateCookie(v),
            param_type::UNRECOGNIZED => InitParam::Unrecognized(v),
            param_type::COOKIE_PRESERVATIVE => {
                let b: [u8; 4] = v[..]
                    .try_into()
                    .map_err(|_| DecodeError::BadLength("cookie preservative"))?;
                InitParam::CookiePreservative(u32::from_be_bytes(b))
            }
            param_type::HOST_NAME => InitParam::HostName(v),
            param_type::SUPPORTED_ADDRESS_TYPES => {
                if v.len() % 2 != 0 {
                    return Err(DecodeError::BadLength("supported address types"));
                }
                InitParam::SupportedAddressTypes(
                    (0..v.len()).step_by(2).map(|i| be16(&v, i)).collect(),
                )
            }
            param_type::SUPPORTED_EXTENSIONS => InitParam::SupportedExtensions(v),
            param_type::FORWARD_TSN_SUPPORTED => {
                if !v.is_empty() {
                    return Err(DecodeError::BadLength("forward-TSN supported"));
                }
                InitParam::ForwardTsnSupported
            }
            typ => InitParam::Unknown { typ, value: v },
        })
    }

    /// Appends the parameter, padded; returns where the unpadded parameter ends.
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        match self {
            InitParam::Address(IpAddr::V4(a)) => put_tlv(out, param_type::IPV4, &a.octets()),
            InitParam::Address(IpAddr::V6(a)) => put_tlv(out, param_type::IPV6, &a.octets()),
            InitParam::StateCookie(c) => put_tlv(out, param_type::STATE_COOKIE, c),
            InitParam::Unrecognized(c) => put_tlv(out, param_type::UNRECOGNIZED, c),
            InitParam::CookiePreservative(ms) => {
                put_tlv(out, param_type::COOKIE_PRESERVATIVE, &ms.to_be_bytes())
            }
            InitParam::HostName(h) => put_tlv(out, param_type::HOST_NAME, h),
            InitParam::SupportedAddressTypes(t) => {
                let mut v = Vec::with_capacity(t.len() * 2);
                for x in t {
                    v.extend_from_slice(&x.to_be_bytes());
                }
                put_tlv(out, param_type::SUPPORTED_ADDRESS_TYPES, &v)
            }
            InitParam::SupportedExtensions(e) => put_tlv(out, param_type::SUPPORTED_EXTENSIONS, e),
            InitParam::ForwardTsnSupported => put_tlv(out, param_type::FORWARD_TSN_SUPPORTED, &[]),
            InitParam::Unknown { typ, value } => put_tlv(out, *typ, value),
        }
    }
}
