//! Error causes carried in ABORT and ERROR chunks (RFC 9260 §3.3.10).

use bytes::Bytes;

use super::put_tlv;

/// Error cause codes.
pub mod cause_code {
    /// Invalid stream identifier.
    pub const INVALID_STREAM: u16 = 1;
    /// Missing mandatory parameter.
    pub const MISSING_PARAM: u16 = 2;
    /// Stale cookie error.
    pub const STALE_COOKIE: u16 = 3;
    /// Out of resource.
    pub const OUT_OF_RESOURCE: u16 = 4;
    /// Unresolvable address.
    pub const UNRESOLVABLE_ADDRESS: u16 = 5;
    /// Unrecognized chunk type.
    pub const UNRECOGNIZED_CHUNK: u16 = 6;
    /// Invalid mandatory parameter.
    pub const INVALID_PARAM: u16 = 7;
    /// Unrecognized parameters.
    pub const UNRECOGNIZED_PARAMS: u16 = 8;
    /// No user data.
    pub const NO_USER_DATA: u16 = 9;
    /// Cookie received while shutting down.
    pub const COOKIE_WHILE_SHUTTING_DOWN: u16 = 10;
    /// Restart of an association with new addresses.
    pub const RESTART_NEW_ADDRESSES: u16 = 11;
    /// User-initiated abort.
    pub const USER_ABORT: u16 = 12;
    /// Protocol violation.
    pub const PROTOCOL_VIOLATION: u16 = 13;
}

/// One error cause: code and raw cause-specific information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCause {
    /// Cause code (see [`cause_code`]).
    pub code: u16,
    /// Cause-specific information.
    pub info: Bytes,
}

impl ErrorCause {
    /// Builds a cause from a code and its information.
    pub fn new(code: u16, info: impl Into<Bytes>) -> Self {
        ErrorCause {
            code,
            info: info.into(),
        }
    }

    /// Appends the cause, padded; returns where the unpadded cause ends.
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        put_tlv(out, self.code, &self.info)
    }
}
