//! RFC 5354 parameters (and the RFC 5356 policy parameter), shared by ASAP
//! and ENRP.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::auth::{RegistrationAuth, AUTH_PARAM_TYPE};
use super::error::{CauseCode, WireError};
use super::{
    begin_tlv, end_tlv, Ctx, Fields, TlvIter, MAX_ADDRESSES, MAX_CAUSES, MAX_DEPTH, MAX_REPORTS,
};
use crate::types::{
    PeId, Policy, PoolHandle, RegistrarId, Transport, TransportProtocol, TransportUse,
};

/// Parameter type codes (RFC 5354 §2.2).
pub mod types {
    /// IPv4 Address.
    pub const IPV4_ADDRESS: u16 = 0x0001;
    /// IPv6 Address.
    pub const IPV6_ADDRESS: u16 = 0x0002;
    /// DCCP Transport.
    pub const DCCP_TRANSPORT: u16 = 0x0003;
    /// SCTP Transport.
    pub const SCTP_TRANSPORT: u16 = 0x0004;
    /// TCP Transport.
    pub const TCP_TRANSPORT: u16 = 0x0005;
    /// UDP Transport.
    pub const UDP_TRANSPORT: u16 = 0x0006;
    /// UDP-Lite Transport.
    pub const UDP_LITE_TRANSPORT: u16 = 0x0007;
    /// Pool Member Selection Policy.
    pub const POLICY: u16 = 0x0008;
    /// Pool Handle.
    pub const POOL_HANDLE: u16 = 0x0009;
    /// Pool Element.
    pub const POOL_ELEMENT: u16 = 0x000a;
    /// Server Information.
    pub const SERVER_INFORMATION: u16 = 0x000b;
    /// Operation Error.
    pub const OPERATION_ERROR: u16 = 0x000c;
    /// Cookie.
    pub const COOKIE: u16 = 0x000d;
    /// PE Identifier.
    pub const PE_IDENTIFIER: u16 = 0x000e;
    /// PE Checksum.
    pub const PE_CHECKSUM: u16 = 0x000f;
}

/// A parameter kept as bytes: its type and value (without padding).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawParam {
    /// Parameter type, including the two action bits.
    pub param_type: u16,
    /// The value bytes (after the 4-byte header, before padding).
    pub value: Vec<u8>,
}

impl RawParam {
    /// Encode this parameter (header, value, padding).
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), WireError> {
        let start = begin_tlv(buf, self.param_type.to_be_bytes());
        buf.extend_from_slice(&self.value);
        end_tlv(buf, start)
    }

    /// The raw form of a typed parameter (for error causes that carry one).
    pub fn from_param(param: &Param) -> Result<Self, WireError> {
        let mut buf = Vec::new();
        param.encode(&mut buf)?;
        // The header we just wrote is well-formed; read back type and length.
        let ty = u16::from_be_bytes([buf[0], buf[1]]);
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        buf.truncate(len);
        buf.drain(..4);
        Ok(Self {
            param_type: ty,
            value: buf,
        })
    }

    /// Decode exactly one TLV filling `bytes`; its padding may be present
    /// or not (senders differ on whether a cause's length covers it).
    fn decode_exact(bytes: &[u8]) -> Result<Self, WireError> {
        let mut f = Fields::new(bytes);
        let param_type = f.u16()?;
        let len = usize::from(f.u16()?);
        if len < 4 || len > bytes.len() {
            return Err(WireError::BadLength {
                length: len,
                available: bytes.len(),
            });
        }
        if bytes.len() - len >= 4 {
            return Err(WireError::InvalidValue(
                "more than one parameter in an error cause",
            ));
        }
        Ok(Self {
            param_type,
            value: bytes[4..len].to_vec(),
        })
    }
}

/// A DCCP transport parameter (RFC 5354 §3.3): port, service code, address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DccpTransport {
    /// DCCP port.
    pub port: u16,
    /// DCCP service code.
    pub service_code: u32,
    /// The address.
    pub address: IpAddr,
}

/// Pool member selection policy parameter: a known RFC 5356 policy, or an
/// unknown type preserved as raw bytes (so a registrar can store and
/// forward policies it does not implement).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SelectionPolicy {
    /// One of the RFC 5356 policies.
    Known(Policy),
    /// A type this codec does not know, with its policy data.
    Unknown {
        /// Policy type code.
        type_code: u32,
        /// Policy-specific data.
        data: Vec<u8>,
    },
}

impl SelectionPolicy {
    /// The policy type code.
    pub fn type_code(&self) -> u32 {
        match self {
            SelectionPolicy::Known(p) => p.type_code(),
            SelectionPolicy::Unknown { type_code, .. } => *type_code,
        }
    }

    fn encode_value(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.type_code().to_be_bytes());
        match self {
            SelectionPolicy::Known(p) => {
                let all: [u32; 2] = match *p {
                    Policy::RoundRobin | Policy::Random => [0, 0],
                    Policy::WeightedRoundRobin { weight } | Policy::WeightedRandom { weight } => {
                        [weight, 0]
                    }
                    Policy::Priority { priority } => [priority, 0],
                    Policy::LeastUsed { load } | Policy::RandomizedLeastUsed { load } => [load, 0],
                    Policy::LeastUsedDegradation { load, degradation } => [load, degradation],
                    Policy::PriorityLeastUsed { load, increment } => [load, increment],
                };
                let n = policy_words(p.type_code()).unwrap_or(0);
                for w in all.iter().take(n) {
                    buf.extend_from_slice(&w.to_be_bytes());
                }
            }
            SelectionPolicy::Unknown { data, .. } => buf.extend_from_slice(data),
        }
    }

    fn decode_value(value: &[u8]) -> Result<Self, WireError> {
        let mut f = Fields::new(value);
        let type_code = f.u32()?;
        let data = f.rest();
        let Some(words) = policy_words(type_code) else {
            return Ok(SelectionPolicy::Unknown {
                type_code,
                data: data.to_vec(),
            });
        };
        if data.len() != words * 4 {
            return Err(WireError::PolicyDataLength {
                type_code,
                len: data.len(),
                expected: words * 4,
            });
        }
        let w = |i: usize| {
            u32::from_be_bytes([
                data[4 * i],
                data[4 * i + 1],
                data[4 * i + 2],
                data[4 * i + 3],
            ])
        };
        let p = match type_code {
            0x0000_0001 => Policy::RoundRobin,
            0x0000_0002 => Policy::WeightedRoundRobin { weight: w(0) },
            0x0000_0003 => Policy::Random,
            0x0000_0004 => Policy::WeightedRandom { weight: w(0) },
            0x0000_0005 => Policy::Priority { priority: w(0) },
            0x4000_0001 => Policy::LeastUsed { load: w(0) },
            0x4000_0002 => Policy::LeastUsedDegradation {
                load: w(0),
                degradation: w(1),
            },
            0x4000_0003 => Policy::PriorityLeastUsed {
                load: w(0),
                increment: w(1),
            },
            _ => Policy::RandomizedLeastUsed { load: w(0) },
        };
        Ok(SelectionPolicy::Known(p))
    }
}

/// Number of 32-bit policy data words of an RFC 5356 policy type, `None`
/// for types RFC 5356 does not define.
fn policy_words(type_code: u32) -> Option<usize> {
    Some(match type_code {
        0x0000_0001 | 0x0000_0003 => 0,
        0x0000_0002 | 0x0000_0004 | 0x0000_0005 | 0x4000_0001 | 0x4000_0004 => 1,
        0x4000_0002 | 0x4000_0003 => 2,
        _ => return None,
    })
}

/// A pool element parameter (RFC 5354 §3.9).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolElement {
    /// PE identifier.
    pub id: PeId,
    /// Home registrar (ENRP server) identifier; 0 when not yet known.
    pub home_registrar: RegistrarId,
    /// Registration life in milliseconds (as RSPLIB interprets the field).
    pub registration_life: u32,
    /// User transport: where PUs reach the PE.
    pub user_transport: Transport,
    /// Member selection policy and its per-PE data.
    pub policy: SelectionPolicy,
    /// ASAP transport (the PE's SCTP endpoint for ASAP control); absent in
    /// handle resolution responses.
    pub asap_transport: Option<Transport>,
}

/// A server information parameter (RFC 5354 §3.10): a registrar's id and
/// its transport (SCTP per the RFC; any transport parameter is accepted).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerInfo {
    /// Registrar identifier.
    pub id: RegistrarId,
    /// Where the registrar is reached.
    pub transport: Transport,
}

/// One error cause of an operation error parameter (RFC 5354 §3.10).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCause {
    /// 0x0 Unspecified Error, with optional information.
    Unspecified(Vec<u8>),
    /// 0x1 Unrecognized Parameter: the parameter as received.
    UnrecognizedParameter(RawParam),
    /// 0x2 Unrecognized Message: the message as received.
    UnrecognizedMessage(Vec<u8>),
    /// 0x3 Invalid Values, with the offending parameter when known.
    InvalidValues(Option<RawParam>),
    /// 0x4 Non-unique PE Identifier.
    NonUniquePeIdentifier,
    /// 0x5 Inconsistent Pooling Policy, with the policy parameter when known.
    InconsistentPoolingPolicy(Option<RawParam>),
    /// 0x6 Lack of Resources.
    LackOfResources,
    /// 0x7 Inconsistent Transport Type, with the transport parameter when known.
    InconsistentTransportType(Option<RawParam>),
    /// 0x8 Inconsistent Data/Control Configuration.
    InconsistentDataControlConfiguration,
    /// 0x9 Unknown Pool Handle.
    UnknownPoolHandle,
    /// 0xa Rejected due to security considerations.
    RejectedSecurity,
    /// A cause code RFC 5354 does not define, kept raw.
    Other {
        /// Cause code.
        code: u16,
        /// Cause information.
        info: Vec<u8>,
    },
}

impl ErrorCause {
    /// The cause code.
    pub fn code(&self) -> u16 {
        let c = match self {
            ErrorCause::Unspecified(_) => CauseCode::Unspecified,
            ErrorCause::UnrecognizedParameter(_) => CauseCode::UnrecognizedParameter,
            ErrorCause::UnrecognizedMessage(_) => CauseCode::UnrecognizedMessage,
            ErrorCause::InvalidValues(_) => CauseCode::InvalidValues,
            ErrorCause::NonUniquePeIdentifier => CauseCode::NonUniquePeIdentifier,
            ErrorCause::InconsistentPoolingPolicy(_) => CauseCode::InconsistentPoolingPolicy,
            ErrorCause::LackOfResources => CauseCode::LackOfResources,
            ErrorCause::InconsistentTransportType(_) => CauseCode::InconsistentTransportType,
            ErrorCause::InconsistentDataControlConfiguration => {
                CauseCode::InconsistentDataControlConfiguration
            }
            ErrorCause::UnknownPoolHandle => CauseCode::UnknownPoolHandle,
            ErrorCause::RejectedSecurity => CauseCode::RejectedSecurity,
            ErrorCause::Other { code, .. } => return *code,
        };
        c as u16
    }

    /// The cause to send back for a decoding error (carrying the offending
    /// parameter where the error has it).
    pub fn from_error(err: &WireError) -> Self {
        match err {
            WireError::UnrecognizedParameter { param, .. } => {
                ErrorCause::UnrecognizedParameter(param.clone())
            }
            other => match other.cause() {
                CauseCode::UnrecognizedMessage => ErrorCause::UnrecognizedMessage(Vec::new()),
                CauseCode::LackOfResources => ErrorCause::LackOfResources,
                CauseCode::InconsistentPoolingPolicy => ErrorCause::InconsistentPoolingPolicy(None),
                CauseCode::InconsistentDataControlConfiguration => {
                    ErrorCause::InconsistentDataControlConfiguration
                }
                CauseCode::InconsistentTransportType => ErrorCause::InconsistentTransportType(None),
                _ => ErrorCause::InvalidValues(None),
            },
        }
    }

    fn encode(&self, buf: &mut Vec<u8>) -> Result<(), WireError> {
        let start = begin_tlv(buf, self.code().to_be_bytes());
        match self {
            ErrorCause::Unspecified(info)
            | ErrorCause::UnrecognizedMessage(info)
            | ErrorCause::Other { info, .. } => buf.extend_from_slice(info),
            ErrorCause::UnrecognizedParameter(p) => p.encode(buf)?,
            ErrorCause::InvalidValues(p)
            | ErrorCause::InconsistentPoolingPolicy(p)
            | ErrorCause::InconsistentTransportType(p) => {
                if let Some(p) = p {
                    p.encode(buf)?;
                }
            }
            ErrorCause::NonUniquePeIdentifier
            | ErrorCause::LackOfResources
            | ErrorCause::InconsistentDataControlConfiguration
            | ErrorCause::UnknownPoolHandle
            | ErrorCause::RejectedSecurity => {}
        }
        end_tlv(buf, start)
    }

    fn decode(code: u16, info: &[u8]) -> Result<Self, WireError> {
        let opt_param = |info: &[u8]| -> Result<Option<RawParam>, WireError> {
            if info.is_empty() {
                Ok(None)
            } else {
                RawParam::decode_exact(info).map(Some)
            }
        };
        let empty = |cause: ErrorCause| {
            if info.is_empty() {
                Ok(cause)
            } else {
                Err(WireError::InvalidValue(
                    "information in an error cause that has none",
                ))
            }
        };
        match CauseCode::from_u16(code) {
            Some(CauseCode::Unspecified) => Ok(ErrorCause::Unspecified(info.to_vec())),
            Some(CauseCode::UnrecognizedParameter) => Ok(ErrorCause::UnrecognizedParameter(
                RawParam::decode_exact(info)?,
            )),
            Some(CauseCode::UnrecognizedMessage) => {
                Ok(ErrorCause::UnrecognizedMessage(info.to_vec()))
            }
            Some(CauseCode::InvalidValues) => Ok(ErrorCause::InvalidValues(opt_param(info)?)),
            Some(CauseCode::NonUniquePeIdentifier) => empty(ErrorCause::NonUniquePeIdentifier),
            Some(CauseCode::InconsistentPoolingPolicy) => {
                Ok(ErrorCause::InconsistentPoolingPolicy(opt_param(info)?))
            }
            Some(CauseCode::LackOfResources) => empty(ErrorCause::LackOfResources),
            Some(CauseCode::InconsistentTransportType) => {
                Ok(ErrorCause::InconsistentTransportType(opt_param(info)?))
            }
            Some(CauseCode::InconsistentDataControlConfiguration) => {
                empty(ErrorCause::InconsistentDataControlConfiguration)
            }
            Some(CauseCode::UnknownPoolHandle) => empty(ErrorCause::UnknownPoolHandle),
            Some(CauseCode::RejectedSecurity) => empty(ErrorCause::RejectedSecurity),
            None => Ok(ErrorCause::Other {
                code,
                info: info.to_vec(),
            }),
        }
    }
}

/// An operation error parameter: one or more causes (RFC 5354 §3.10).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OperationError {
    /// The causes, at least one.
    pub causes: Vec<ErrorCause>,
}

impl OperationError {
    /// An operation error with a single cause.
    pub fn single(cause: ErrorCause) -> Self {
        Self {
            causes: vec![cause],
        }
    }
}

/// Any parameter this codec knows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Param {
    /// IPv4 address parameter.
    Ipv4(Ipv4Addr),
    /// IPv6 address parameter.
    Ipv6(Ipv6Addr),
    /// DCCP transport parameter.
    Dccp(DccpTransport),
    /// SCTP, TCP, UDP or UDP-Lite transport parameter.
    Transport(Transport),
    /// Pool member selection policy parameter.
    Policy(SelectionPolicy),
    /// Pool handle parameter.
    PoolHandle(PoolHandle),
    /// Pool element parameter.
    PoolElement(PoolElement),
    /// Server information parameter.
    ServerInfo(ServerInfo),
    /// Operation error parameter.
    OperationError(OperationError),
    /// Cookie parameter (opaque).
    Cookie(Vec<u8>),
    /// PE identifier parameter.
    PeId(PeId),
    /// PE checksum parameter (16 bits, RFC 5354 §3.13).
    PeChecksum(u16),
    /// poolgate registration authentication extension (see [`super::auth`]).
    RegistrationAuth(RegistrationAuth),
}

/// The parameter type code of a transport protocol.
pub fn transport_type(p: TransportProtocol) -> u16 {
    match p {
        TransportProtocol::Sctp => types::SCTP_TRANSPORT,
        TransportProtocol::Tcp => types::TCP_TRANSPORT,
        TransportProtocol::Udp => types::UDP_TRANSPORT,
        TransportProtocol::UdpLite => types::UDP_LITE_TRANSPORT,
    }
}

impl Param {
    /// The parameter type code.
    pub fn type_code(&self) -> u16 {
        match self {
            Param::Ipv4(_) => types::IPV4_ADDRESS,
            Param::Ipv6(_) => types::IPV6_ADDRESS,
            Param::Dccp(_) => types::DCCP_TRANSPORT,
            Param::Transport(t) => transport_type(t.protocol),
            Param::Policy(_) => types::POLICY,
            Param::PoolHandle(_) => types::POOL_HANDLE,
            Param::PoolElement(_) => types::POOL_ELEMENT,
            Param::ServerInfo(_) => types::SERVER_INFORMATION,
            Param::OperationError(_) => types::OPERATION_ERROR,
            Param::Cookie(_) => types::COOKIE,
            Param::PeId(_) => types::PE_IDENTIFIER,
            Param::PeChecksum(_) => types::PE_CHECKSUM,
            Param::RegistrationAuth(_) => AUTH_PARAM_TYPE,
        }
    }

    /// Encode this parameter (header, value, padding) onto `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), WireError> {
        self.as_ref().encode(buf)
    }

    fn as_ref(&self) -> PRef<'_> {
        match self {
            Param::Ipv4(a) => PRef::Ipv4(*a),
            Param::Ipv6(a) => PRef::Ipv6(*a),
            Param::Dccp(d) => PRef::Dccp(d),
            Param::Transport(t) => PRef::Transport(t),
            Param::Policy(p) => PRef::Policy(p),
            Param::PoolHandle(h) => PRef::PoolHandle(h),
            Param::PoolElement(pe) => PRef::PoolElement(pe),
            Param::ServerInfo(si) => PRef::ServerInfo(si),
            Param::OperationError(e) => PRef::OperationError(e),
            Param::Cookie(c) => PRef::Cookie(c),
            Param::PeId(id) => PRef::PeId(*id),
            Param::PeChecksum(c) => PRef::PeChecksum(*c),
            Param::RegistrationAuth(a) => PRef::RegistrationAuth(a),
        }
    }
}

/// A borrowed parameter, so that messages encode their fields without
/// cloning them into a [`Param`].
pub(crate) enum PRef<'a> {
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    Dccp(&'a DccpTransport),
    Transport(&'a Transport),
    Policy(&'a SelectionPolicy),
    PoolHandle(&'a PoolHandle),
    PoolElement(&'a PoolElement),
    ServerInfo(&'a ServerInfo),
    OperationError(&'a OperationError),
    Cookie(&'a [u8]),
    PeId(PeId),
    PeChecksum(u16),
    RegistrationAuth(&'a RegistrationAuth),
}

impl PRef<'_> {
    fn type_code(&self) -> u16 {
        match self {
            PRef::Ipv4(_) => types::IPV4_ADDRESS,
            PRef::Ipv6(_) => types::IPV6_ADDRESS,
            PRef::Dccp(_) => types::DCCP_TRANSPORT,
            PRef::Transport(t) => transport_type(t.protocol),
            PRef::Policy(_) => types::POLICY,
            PRef::PoolHandle(_) => types::POOL_HANDLE,
            PRef::PoolElement(_) => types::POOL_ELEMENT,
            PRef::ServerInfo(_) => types::SERVER_INFORMATION,
            PRef::OperationError(_) => types::OPERATION_ERROR,
            PRef::Cookie(_) => types::COOKIE,
            PRef::PeId(_) => types::PE_IDENTIFIER,
            PRef::PeChecksum(_) => types::PE_CHECKSUM,
            PRef::RegistrationAuth(_) => AUTH_PARAM_TYPE,
        }
    }

    /// Encode this parameter (header, value, padding) onto `buf`.
    pub(crate) fn encode(&self, buf: &mut Vec<u8>) -> Result<(), WireError> {
        let start = begin_tlv(buf, self.type_code().to_be_bytes());
        match self {
            PRef::Ipv4(a) => buf.extend_from_slice(&a.octets()),
            PRef::Ipv6(a) => buf.extend_from_slice(&a.octets()),
            PRef::Dccp(d) => {
                buf.extend_from_slice(&d.port.to_be_bytes());
                buf.extend_from_slice(&[0, 0]);
                buf.extend_from_slice(&d.service_code.to_be_bytes());
                encode_address(buf, d.address)?;
            }
            PRef::Transport(t) => encode_transport_value(buf, t)?,
            PRef::Policy(p) => p.encode_value(buf),
            PRef::PoolHandle(h) => buf.extend_from_slice(h.as_bytes()),
            PRef::PoolElement(pe) => {
                buf.extend_from_slice(&pe.id.to_be_bytes());
                buf.extend_from_slice(&pe.home_registrar.to_be_bytes());
                buf.extend_from_slice(&pe.registration_life.to_be_bytes());
                encode_transport(buf, &pe.user_transport)?;
                PRef::Policy(&pe.policy).encode(buf)?;
                if let Some(t) = &pe.asap_transport {
                    encode_transport(buf, t)?;
                }
            }
            PRef::ServerInfo(s) => {
                buf.extend_from_slice(&s.id.to_be_bytes());
                encode_transport(buf, &s.transport)?;
            }
            PRef::OperationError(e) => {
                if e.causes.is_empty() {
                    return Err(WireError::InvalidValue("operation error without causes"));
                }
                if e.causes.len() > MAX_CAUSES {
                    return Err(WireError::TooMany {
                        what: "error causes",
                        limit: MAX_CAUSES,
                    });
                }
                for c in &e.causes {
                    c.encode(buf)?;
                }
            }
            PRef::Cookie(c) => buf.extend_from_slice(c),
            PRef::PeId(id) => buf.extend_from_slice(&id.to_be_bytes()),
            PRef::PeChecksum(c) => buf.extend_from_slice(&c.to_be_bytes()),
            PRef::RegistrationAuth(a) => a.encode_value(buf),
        }
        end_tlv(buf, start)
    }
}

fn encode_address(buf: &mut Vec<u8>, a: IpAddr) -> Result<(), WireError> {
    match a {
        IpAddr::V4(a) => PRef::Ipv4(a).encode(buf),
        IpAddr::V6(a) => PRef::Ipv6(a).encode(buf),
    }
}

fn encode_transport(buf: &mut Vec<u8>, t: &Transport) -> Result<(), WireError> {
    let start = begin_tlv(buf, transport_type(t.protocol).to_be_bytes());
    encode_transport_value(buf, t)?;
    end_tlv(buf, start)
}

fn encode_transport_value(buf: &mut Vec<u8>, t: &Transport) -> Result<(), WireError> {
    let ty = transport_type(t.protocol);
    check_address_count(ty, t.addresses.len())?;
    let use_field: u16 = match (t.protocol, t.transport_use) {
        (_, TransportUse::DataOnly) => 0,
        (TransportProtocol::Sctp | TransportProtocol::Tcp, TransportUse::DataPlusControl) => 1,
        // UDP and UDP-Lite have a reserved field here, not a transport use.
        _ => return Err(WireError::InvalidTransportUse(1)),
    };
    buf.extend_from_slice(&t.port.to_be_bytes());
    buf.extend_from_slice(&use_field.to_be_bytes());
    for a in &t.addresses {
        encode_address(buf, *a)?;
    }
    Ok(())
}

fn check_address_count(param_type: u16, count: usize) -> Result<(), WireError> {
    let ok = if param_type == types::SCTP_TRANSPORT {
        (1..=MAX_ADDRESSES).contains(&count)
    } else {
        count == 1
    };
    if ok {
        Ok(())
    } else {
        Err(WireError::AddressCount { param_type, count })
    }
}

/// Decode a parameter list (the body of a message or a nested list),
/// applying the unknown-parameter rules. `depth` is this list's depth.
pub(crate) fn decode_list(
    buf: &[u8],
    ctx: &mut Ctx,
    depth: usize,
) -> Result<Vec<Param>, WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError::TooDeep(MAX_DEPTH));
    }
    let mut out = Vec::new();
    for tlv in TlvIter::new(buf) {
        let tlv = tlv?;
        if let Some(p) = decode_param(tlv.ty, tlv.value, ctx, depth)? {
            out.push(p);
        }
    }
    Ok(out)
}

fn decode_param(
    ty: u16,
    value: &[u8],
    ctx: &mut Ctx,
    depth: usize,
) -> Result<Option<Param>, WireError> {
    let fixed = |n: usize| -> Result<(), WireError> {
        if value.len() == n {
            Ok(())
        } else {
            Err(WireError::BadLength {
                length: value.len() + 4,
                available: n + 4,
            })
        }
    };
    Ok(Some(match ty {
        types::IPV4_ADDRESS => {
            fixed(4)?;
            Param::Ipv4(Ipv4Addr::new(value[0], value[1], value[2], value[3]))
        }
        types::IPV6_ADDRESS => {
            fixed(16)?;
            let mut a = [0u8; 16];
            a.copy_from_slice(value);
            Param::Ipv6(Ipv6Addr::from(a))
        }
        types::DCCP_TRANSPORT => {
            let mut f = Fields::new(value);
            let port = f.u16()?;
            let _reserved = f.u16()?;
            let service_code = f.u32()?;
            let addrs = decode_addresses(f.rest(), ctx, depth + 1)?;
            check_address_count(ty, addrs.len())?;
            Param::Dccp(DccpTransport {
                port,
                service_code,
                address: addrs[0],
            })
        }
        types::SCTP_TRANSPORT
        | types::TCP_TRANSPORT
        | types::UDP_TRANSPORT
        | types::UDP_LITE_TRANSPORT => {
            let (protocol, has_use) = match ty {
                types::SCTP_TRANSPORT => (TransportProtocol::Sctp, true),
                types::TCP_TRANSPORT => (TransportProtocol::Tcp, true),
                types::UDP_TRANSPORT => (TransportProtocol::Udp, false),
                _ => (TransportProtocol::UdpLite, false),
            };
            let mut f = Fields::new(value);
            let port = f.u16()?;
            let use_field = f.u16()?;
            let transport_use = match (has_use, use_field) {
                (false, _) | (true, 0) => TransportUse::DataOnly,
                (true, 1) => TransportUse::DataPlusControl,
                (true, other) => return Err(WireError::InvalidTransportUse(other)),
            };
            let addresses = decode_addresses(f.rest(), ctx, depth + 1)?;
            check_address_count(ty, addresses.len())?;
            Param::Transport(Transport {
                protocol,
                port,
                transport_use,
                addresses,
            })
        }
        types::POLICY => Param::Policy(SelectionPolicy::decode_value(value)?),
        types::POOL_HANDLE => Param::PoolHandle(
            PoolHandle::new(value).ok_or(WireError::InvalidPoolHandle(value.len()))?,
        ),
        types::POOL_ELEMENT => {
            let mut f = Fields::new(value);
            let id = f.u32()?;
            let home_registrar = f.u32()?;
            let registration_life = f.u32()?;
            let mut inner: VecDeque<Param> = decode_list(f.rest(), ctx, depth + 1)?.into();
            let user_transport = match inner.pop_front() {
                Some(Param::Transport(t)) => t,
                Some(Param::Dccp(_)) => {
                    return Err(WireError::UnsupportedTransport(types::DCCP_TRANSPORT))
                }
                Some(other) => return Err(WireError::UnexpectedParameter(other.type_code())),
                None => return Err(WireError::MissingParameter("user transport")),
            };
            let policy = match inner.pop_front() {
                Some(Param::Policy(p)) => p,
                Some(other) => return Err(WireError::UnexpectedParameter(other.type_code())),
                None => return Err(WireError::MissingParameter("member selection policy")),
            };
            let asap_transport = match inner.pop_front() {
                Some(Param::Transport(t)) => Some(t),
                Some(other) => return Err(WireError::UnexpectedParameter(other.type_code())),
                None => None,
            };
            if let Some(extra) = inner.pop_front() {
                return Err(WireError::UnexpectedParameter(extra.type_code()));
            }
            Param::PoolElement(PoolElement {
                id,
                home_registrar,
                registration_life,
                user_transport,
                policy,
                asap_transport,
            })
        }
        types::SERVER_INFORMATION => {
            let mut f = Fields::new(value);
            let id = f.u32()?;
            let mut inner = decode_list(f.rest(), ctx, depth + 1)?;
            if inner.len() != 1 {
                return Err(WireError::MissingParameter("server transport"));
            }
            match inner.pop() {
                Some(Param::Transport(transport)) => {
                    Param::ServerInfo(ServerInfo { id, transport })
                }
                Some(other) => return Err(WireError::UnexpectedParameter(other.type_code())),
                None => return Err(WireError::MissingParameter("server transport")),
            }
        }
        types::OPERATION_ERROR => {
            let mut causes = Vec::new();
            for tlv in TlvIter::new(value) {
                let tlv = tlv?;
                if causes.len() == MAX_CAUSES {
                    return Err(WireError::TooMany {
                        what: "error causes",
                        limit: MAX_CAUSES,
                    });
                }
                causes.push(ErrorCause::decode(tlv.ty, tlv.value)?);
            }
            if causes.is_empty() {
                return Err(WireError::InvalidValue("operation error without causes"));
            }
            Param::OperationError(OperationError { causes })
        }
        types::COOKIE => Param::Cookie(value.to_vec()),
        types::PE_IDENTIFIER => {
            fixed(4)?;
            Param::PeId(u32::from_be_bytes([value[0], value[1], value[2], value[3]]))
        }
        types::PE_CHECKSUM => {
            fixed(2)?;
            Param::PeChecksum(u16::from_be_bytes([value[0], value[1]]))
        }
        AUTH_PARAM_TYPE => Param::RegistrationAuth(RegistrationAuth::decode_value(value)?),
        unknown => {
            let raw = || RawParam {
                param_type: unknown,
                value: value.to_vec(),
            };
            // RFC 5354 §2.1: the two high bits of the type say what to do.
            match unknown >> 14 {
                0b00 => {
                    return Err(WireError::UnrecognizedParameter {
                        param: raw(),
                        report: false,
                    })
                }
                0b01 => {
                    return Err(WireError::UnrecognizedParameter {
                        param: raw(),
                        report: true,
                    })
                }
                0b10 => return Ok(None),
                _ => {
                    if ctx.reports.len() < MAX_REPORTS {
                        ctx.reports.push(raw());
                    }
                    return Ok(None);
                }
            }
        }
    }))
}

fn decode_addresses(buf: &[u8], ctx: &mut Ctx, depth: usize) -> Result<Vec<IpAddr>, WireError> {
    let mut out = Vec::new();
    for p in decode_list(buf, ctx, depth)? {
        if out.len() == MAX_ADDRESSES {
            return Err(WireError::TooMany {
                what: "addresses",
                limit: MAX_ADDRESSES,
            });
        }
        match p {
            Param::Ipv4(a) => out.push(IpAddr::V4(a)),
            Param::Ipv6(a) => out.push(IpAddr::V6(a)),
            other => return Err(WireError::UnexpectedParameter(other.type_code())),
        }
    }
    Ok(out)
}

/// Consumes a message's decoded parameters in RFC order.
pub(crate) struct Cursor {
    items: VecDeque<Param>,
}

impl Cursor {
    pub(crate) fn new(items: Vec<Param>) -> Self {
        Self {
            items: items.into(),
        }
    }

    fn take_if(&mut self, ty: u16) -> Option<Param> {
        if self.items.front().map(Param::type_code) == Some(ty) {
            self.items.pop_front()
        } else {
            None
        }
    }

    pub(crate) fn pool_handle(&mut self) -> Result<PoolHandle, WireError> {
        match self.take_if(types::POOL_HANDLE) {
            Some(Param::PoolHandle(h)) => Ok(h),
            _ => Err(self.missing("pool handle")),
        }
    }

    pub(crate) fn pe_id(&mut self) -> Result<PeId, WireError> {
        match self.take_if(types::PE_IDENTIFIER) {
            Some(Param::PeId(id)) => Ok(id),
            _ => Err(self.missing("PE identifier")),
        }
    }

    pub(crate) fn pool_element(&mut self) -> Result<PoolElement, WireError> {
        self.opt_pool_element()
            .ok_or_else(|| self.missing("pool element"))
    }

    pub(crate) fn opt_pool_element(&mut self) -> Option<PoolElement> {
        match self.take_if(types::POOL_ELEMENT) {
            Some(Param::PoolElement(pe)) => Some(pe),
            _ => None,
        }
    }

    pub(crate) fn pool_elements(&mut self, limit: usize) -> Result<Vec<PoolElement>, WireError> {
        let mut out = Vec::new();
        while let Some(pe) = self.opt_pool_element() {
            if out.len() == limit {
                return Err(WireError::TooMany {
                    what: "pool elements",
                    limit,
                });
            }
            out.push(pe);
        }
        Ok(out)
    }

    pub(crate) fn opt_policy(&mut self) -> Option<SelectionPolicy> {
        match self.take_if(types::POLICY) {
            Some(Param::Policy(p)) => Some(p),
            _ => None,
        }
    }

    pub(crate) fn opt_error(&mut self) -> Option<OperationError> {
        match self.take_if(types::OPERATION_ERROR) {
            Some(Param::OperationError(e)) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn error(&mut self) -> Result<OperationError, WireError> {
        self.opt_error()
            .ok_or_else(|| self.missing("operation error"))
    }

    pub(crate) fn cookie(&mut self) -> Result<Vec<u8>, WireError> {
        match self.take_if(types::COOKIE) {
            Some(Param::Cookie(c)) => Ok(c),
            _ => Err(self.missing("cookie")),
        }
    }

    pub(crate) fn opt_checksum(&mut self) -> Option<u16> {
        match self.take_if(types::PE_CHECKSUM) {
            Some(Param::PeChecksum(c)) => Some(c),
            _ => None,
        }
    }

    pub(crate) fn opt_server_info(&mut self) -> Option<ServerInfo> {
        match self.take_if(types::SERVER_INFORMATION) {
            Some(Param::ServerInfo(s)) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn opt_transport(&mut self) -> Option<Transport> {
        if matches!(self.items.front(), Some(Param::Transport(_))) {
            if let Some(Param::Transport(t)) = self.items.pop_front() {
                return Some(t);
            }
        }
        None
    }

    pub(crate) fn opt_auth(&mut self) -> Option<RegistrationAuth> {
        match self.take_if(AUTH_PARAM_TYPE) {
            Some(Param::RegistrationAuth(a)) => Some(a),
            _ => None,
        }
    }

    /// Whether any parameter is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Type of the next parameter, if any.
    pub(crate) fn peek_type(&self) -> Option<u16> {
        self.items.front().map(Param::type_code)
    }

    /// Error for "expected X here": an unexpected parameter if one is
    /// present, a missing one otherwise.
    pub(crate) fn missing(&self, what: &'static str) -> WireError {
        match self.peek_type() {
            Some(ty) => WireError::UnexpectedParameter(ty),
            None => WireError::MissingParameter(what),
        }
    }

    /// Require that all parameters were consumed.
    pub(crate) fn finish(self) -> Result<(), WireError> {
        match self.peek_type() {
            Some(ty) => Err(WireError::UnexpectedParameter(ty)),
            None => Ok(()),
        }
    }
}
