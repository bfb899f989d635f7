//! RSerPool wire codec: ASAP (RFC 5352) and ENRP (RFC 5353) messages with
//! the common parameters of RFC 5354 and the policies of RFC 5356.
//!
//! * [`asap::AsapMessage`] and [`enrp::EnrpMessage`] are typed messages with
//!   `encode(&self, &mut Vec<u8>)` and `decode(&[u8])`. Encoding returns a
//!   `Result` because some values cannot be represented (a message above the
//!   16-bit length field, a TCP transport with two addresses, …).
//! * [`param`] holds the parameters; [`error::WireError`] the errors, each
//!   mapped to its RFC 5354 cause code by [`error::WireError::cause`].
//! * [`auth`] is poolgate's registration-authentication extension parameter.
//!
//! # Strictness and limits
//! Decoding is total: it never panics, and every allocation is bounded by
//! the input length. Checked are the message length field (must equal the
//! bytes given, ≥ header, multiple of 4), every TLV length (≥ 4, inside its
//! container) and its padding (the padded length must fit — including the
//! last parameter's), nesting depth ([`MAX_DEPTH`]), item counts
//! ([`MAX_ADDRESSES`], [`MAX_RESOLUTION_PES`], [`MAX_TABLE_PES`],
//! [`MAX_SERVERS`], [`MAX_CAUSES`]) and fixed field lengths. Padding bytes and
//! reserved fields are ignored on receipt and written as zero, as the RFCs say.
//! Flag bits a message type does not define are ignored on receipt.
//!
//! **Message size cap.** Both protocols carry a 16-bit message length that
//! includes the header, so a message is at most 65535 bytes (64 KiB); since
//! every parameter is padded, at most 65532 in practice. The decoder refuses
//! longer input, the encoder returns [`WireError::TooLarge`].
//!
//! # Unknown parameters (RFC 5354 §2.1)
//! The two high bits of an unknown parameter type decide: `00` stop and
//! discard the message, `01` stop, discard and report, `10` skip, `11` skip
//! and report. Stops become `Err(WireError::UnrecognizedParameter{report})`;
//! skip-and-report parameters are returned in [`Decoded::unrecognized`] by
//! `decode_reporting` so the caller can send an "Unrecognized Parameter"
//! error cause.
//!
//! # Known deviations / choices
//! * A DCCP transport parameter decodes as [`param::Param::Dccp`], but
//!   [`crate::types::Transport`] has no DCCP variant, so a pool element whose
//!   user transport is DCCP is refused with
//!   [`WireError::UnsupportedTransport`] (cause: inconsistent transport type).
//! * Error causes that carry a parameter or a message keep it as raw bytes
//!   ([`param::RawParam`]): an offending parameter is by definition one we
//!   could not decode, and raw bytes keep nesting flat.
//! * ASAP_HANDLE_RESOLUTION_RESPONSE: Wireshark's dissector (maintained by
//!   RFC 5352's authors) decodes no flag for it, so RFC 5352 leaves the
//!   flags zero; early ASAP drafts had an "A" (accept updates) bit there and
//!   RSPLIB reads the same bit as "reject". We keep the bit as
//!   `accept_updates` so that it round-trips; senders should leave it
//!   `false` and receivers should not act on it.

pub mod asap;
pub mod auth;
pub mod enrp;
pub mod error;
pub mod fuzzing;
pub mod param;

pub use asap::AsapMessage;
pub use auth::RegistrationAuth;
pub use enrp::{EnrpBody, EnrpMessage};
pub use error::{CauseCode, WireError};
pub use param::{
    DccpTransport, ErrorCause, OperationError, Param, PoolElement, RawParam, SelectionPolicy,
    ServerInfo,
};

/// Largest message either protocol can carry: the 16-bit length field.
pub const MAX_MESSAGE_LEN: usize = u16::MAX as usize;
/// Deepest parameter nesting accepted (message → pool element → transport →
/// address is 3).
pub const MAX_DEPTH: usize = 4;
/// Most addresses in one transport parameter (SCTP multi-homing).
pub const MAX_ADDRESSES: usize = 32;
/// Most pool elements in a HANDLE_RESOLUTION_RESPONSE or BUSINESS_CARD
/// (RSPLIB caps its responses at 128 too).
pub const MAX_RESOLUTION_PES: usize = 128;
/// Most pool elements in one ENRP_HANDLE_TABLE_RESPONSE (all pools together).
pub const MAX_TABLE_PES: usize = 2048;
/// Most server information parameters in an ENRP_LIST_RESPONSE.
pub const MAX_SERVERS: usize = 256;
/// Most error causes in one operation error parameter.
pub const MAX_CAUSES: usize = 32;
/// Most skip-and-report parameters remembered per message (more are skipped
/// without a report, so hostile input cannot make the report list large).
pub const MAX_REPORTS: usize = 16;

/// ASAP's registered SCTP port (RFC 5352 §5).
pub const ASAP_PORT: u16 = 3863;
/// ENRP's registered SCTP port (RFC 5353 §7).
pub const ENRP_PORT: u16 = 9901;
/// SCTP payload protocol identifier of ASAP.
pub const ASAP_PPID: u32 = 11;
/// SCTP payload protocol identifier of ENRP.
pub const ENRP_PPID: u32 = 12;

/// A decoded message plus the skip-and-report (type bits 11) parameters it
/// contained, which the receiver should report back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded<M> {
    /// The message.
    pub message: M,
    /// Unrecognized parameters the sender wants reported, in order.
    pub unrecognized: Vec<RawParam>,
}

/// Round `n` up to a multiple of 4.
pub(crate) fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Decoding context shared by one message: the reports collected so far.
#[derive(Default)]
pub(crate) struct Ctx {
    pub(crate) reports: Vec<RawParam>,
}

/// One TLV borrowed from the input.
pub(crate) struct Tlv<'a> {
    pub(crate) ty: u16,
    pub(crate) value: &'a [u8],
}

/// Iterates over the TLVs of a parameter list, checking lengths and padding.
pub(crate) struct TlvIter<'a> {
    buf: &'a [u8],
}

impl<'a> TlvIter<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Result<Tlv<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let r = parse_tlv(self.buf);
        match r {
            Ok((tlv, used)) => {
                self.buf = &self.buf[used..];
                Some(Ok(tlv))
            }
            Err(e) => {
                // Stop after the first error: the rest cannot be framed.
                self.buf = &[];
                Some(Err(e))
            }
        }
    }
}

/// Parse one TLV at the start of `buf`; returns it and the padded length used.
fn parse_tlv(buf: &[u8]) -> Result<(Tlv<'_>, usize), WireError> {
    if buf.len() < 4 {
        return Err(WireError::Truncated {
            needed: 4,
            available: buf.len(),
        });
    }
    let ty = u16::from_be_bytes([buf[0], buf[1]]);
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if len < 4 || len > buf.len() {
        return Err(WireError::BadLength {
            length: len,
            available: buf.len(),
        });
    }
    let padded = pad4(len);
    if padded > buf.len() {
        return Err(WireError::MissingPadding);
    }
    Ok((
        Tlv {
            ty,
            value: &buf[4..len],
        },
        padded,
    ))
}

/// Big-endian reader over fixed fields.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated {
                needed: n,
                available: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn rest(self) -> &'a [u8] {
        self.buf
    }
}

/// Start a TLV (parameter, cause or message header with 16-bit length at
/// offset 2); returns the start offset for [`end_tlv`].
pub(crate) fn begin_tlv(buf: &mut Vec<u8>, first_two: [u8; 2]) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&first_two);
    buf.extend_from_slice(&[0, 0]);
    start
}

/// Finish a TLV begun at `start`: write its unpadded length, then pad.
pub(crate) fn end_tlv(buf: &mut Vec<u8>, start: usize) -> Result<(), WireError> {
    let len = buf.len() - start;
    let len16 = u16::try_from(len).map_err(|_| WireError::TooLarge(len))?;
    buf[start + 2..start + 4].copy_from_slice(&len16.to_be_bytes());
    buf.resize(start + pad4(len), 0);
    if buf.len() - start > MAX_MESSAGE_LEN {
        return Err(WireError::TooLarge(buf.len() - start));
    }
    Ok(())
}

/// Check a message's common header against the bytes received and return
/// (type, flags, body).
pub(crate) fn split_message(buf: &[u8]) -> Result<(u8, u8, &[u8]), WireError> {
    if buf.len() < 4 {
        return Err(WireError::Truncated {
            needed: 4,
            available: buf.len(),
        });
    }
    if buf.len() > MAX_MESSAGE_LEN {
        return Err(WireError::TooLarge(buf.len()));
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if len != buf.len() {
        return Err(WireError::LengthMismatch {
            field: len,
            actual: buf.len(),
        });
    }
    if len % 4 != 0 {
        return Err(WireError::MissingPadding);
    }
    Ok((buf[0], buf[1], &buf[4..]))
}
