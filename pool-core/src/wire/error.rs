//! Decoding and encoding errors, each mapped to an RFC 5354 §3.10 error cause.

use super::param::RawParam;

/// Operational error cause codes (RFC 5354 §3.10.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CauseCode {
    /// 0x0 Unspecified Error.
    Unspecified = 0x0,
    /// 0x1 Unrecognized Parameter (carries the parameter).
    UnrecognizedParameter = 0x1,
    /// 0x2 Unrecognized Message (carries the message).
    UnrecognizedMessage = 0x2,
    /// 0x3 Invalid Values (carries the offending parameter).
    InvalidValues = 0x3,
    /// 0x4 Non-unique PE Identifier.
    NonUniquePeIdentifier = 0x4,
    /// 0x5 Inconsistent Pooling Policy (carries the policy parameter).
    InconsistentPoolingPolicy = 0x5,
    /// 0x6 Lack of Resources.
    LackOfResources = 0x6,
    /// 0x7 Inconsistent Transport Type (carries the transport parameter).
    InconsistentTransportType = 0x7,
    /// 0x8 Inconsistent Data/Control Configuration.
    InconsistentDataControlConfiguration = 0x8,
    /// 0x9 Unknown Pool Handle.
    UnknownPoolHandle = 0x9,
    /// 0xa Rejected due to security considerations.
    RejectedSecurity = 0xa,
}

impl CauseCode {
    /// The code for a number, `None` when RFC 5354 does not define it.
    pub fn from_u16(code: u16) -> Option<Self> {
        Some(match code {
            0x0 => Self::Unspecified,
            0x1 => Self::UnrecognizedParameter,
            0x2 => Self::UnrecognizedMessage,
            0x3 => Self::InvalidValues,
            0x4 => Self::NonUniquePeIdentifier,
            0x5 => Self::InconsistentPoolingPolicy,
            0x6 => Self::LackOfResources,
            0x7 => Self::InconsistentTransportType,
            0x8 => Self::InconsistentDataControlConfiguration,
            0x9 => Self::UnknownPoolHandle,
            0xa => Self::RejectedSecurity,
            _ => return None,
        })
    }
}

/// Why a message could not be decoded (or encoded).
///
/// Every variant maps to the RFC 5354 cause a peer should receive in an
/// ASAP_ERROR / ENRP_ERROR (or a rejecting response): see [`WireError::cause`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than a header or fixed field needs.
    #[error("truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// The message length field disagrees with the bytes received.
    #[error("message length field says {field}, {actual} bytes received")]
    LengthMismatch {
        /// Value of the length field.
        field: usize,
        /// Bytes actually present.
        actual: usize,
    },
    /// A TLV length field below its own 4-byte header, or beyond its container.
    #[error("bad TLV length {length} with {available} bytes available")]
    BadLength {
        /// Value of the length field.
        length: usize,
        /// Bytes available in the container.
        available: usize,
    },
    /// A TLV or message is not padded to a multiple of 4 bytes.
    #[error("missing padding to a 4-byte boundary")]
    MissingPadding,
    /// The encoded message would exceed the 16-bit length field (64 KiB cap).
    #[error("encoded size {0} exceeds the 65535-byte limit")]
    TooLarge(usize),
    /// More items of a kind than the decoder accepts (see the `MAX_*` limits).
    #[error("too many {what} (limit {limit})")]
    TooMany {
        /// What was counted.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// Parameters nested deeper than [`super::MAX_DEPTH`].
    #[error("parameters nested deeper than {0}")]
    TooDeep(usize),
    /// An unknown message type.
    #[error("unrecognized message type {0:#04x}")]
    UnknownMessageType(u8),
    /// An unknown parameter whose type's high bits say "stop processing"
    /// (00 = discard silently, 01 = discard and report).
    #[error("unrecognized parameter type {:#06x}", .param.param_type)]
    UnrecognizedParameter {
        /// The parameter as received.
        param: RawParam,
        /// Whether the sender asked for a report (type bits 01).
        report: bool,
    },
    /// A required parameter is absent.
    #[error("missing parameter: {0}")]
    MissingParameter(&'static str),
    /// A known parameter in a place where the RFC does not allow it.
    #[error("unexpected parameter type {0:#06x}")]
    UnexpectedParameter(u16),
    /// A field holds a value the RFC does not allow.
    #[error("invalid value: {0}")]
    InvalidValue(&'static str),
    /// A pool handle that is empty or longer than `MAX_POOL_HANDLE_LEN`.
    #[error("invalid pool handle length {0}")]
    InvalidPoolHandle(usize),
    /// A policy parameter whose data length does not fit its type.
    #[error("policy {type_code:#010x} has {len} data bytes, expected {expected}")]
    PolicyDataLength {
        /// Policy type code.
        type_code: u32,
        /// Data bytes present.
        len: usize,
        /// Data bytes the policy defines.
        expected: usize,
    },
    /// A transport-use value other than data-only / data-plus-control,
    /// or data-plus-control on a transport that cannot carry it.
    #[error("invalid transport use {0:#06x}")]
    InvalidTransportUse(u16),
    /// A transport parameter we cannot use where it appears (e.g. DCCP as a
    /// pool element's user transport, see the module docs).
    #[error("unsupported transport parameter {0:#06x}")]
    UnsupportedTransport(u16),
    /// A transport parameter with the wrong number of addresses.
    #[error("transport {param_type:#06x} has {count} addresses")]
    AddressCount {
        /// Transport parameter type.
        param_type: u16,
        /// Addresses present.
        count: usize,
    },
}

impl WireError {
    /// The RFC 5354 operational error cause this error should be reported as.
    pub fn cause(&self) -> CauseCode {
        match self {
            WireError::UnrecognizedParameter { .. } => CauseCode::UnrecognizedParameter,
            WireError::UnknownMessageType(_) => CauseCode::UnrecognizedMessage,
            WireError::Truncated { .. }
            | WireError::LengthMismatch { .. }
            | WireError::BadLength { .. }
            | WireError::MissingPadding
            | WireError::MissingParameter(_)
            | WireError::UnexpectedParameter(_)
            | WireError::InvalidValue(_)
            | WireError::InvalidPoolHandle(_)
            | WireError::AddressCount { .. } => CauseCode::InvalidValues,
            WireError::TooLarge(_) | WireError::TooMany { .. } | WireError::TooDeep(_) => {
                CauseCode::LackOfResources
            }
            WireError::PolicyDataLength { .. } => CauseCode::InconsistentPoolingPolicy,
            WireError::InvalidTransportUse(_) => CauseCode::InconsistentDataControlConfiguration,
            WireError::UnsupportedTransport(_) => CauseCode::InconsistentTransportType,
        }
    }

    /// Whether the peer should be told about this error. Only the
    /// "stop and discard silently" unknown-parameter case (type bits 00) is
    /// not reported (RFC 5354 §2.1).
    pub fn should_report(&self) -> bool {
        !matches!(self, WireError::UnrecognizedParameter { report: false, .. })
    }
}
