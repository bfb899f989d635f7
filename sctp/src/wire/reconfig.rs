//! Parameters of the RE-CONFIG chunk (RFC 6525 §4): stream and TSN reset requests,
//! requests to add streams, and responses.

use bytes::Bytes;

use super::{be16, be32, put_tlv, tlv_items, DecodeError};

/// RE-CONFIG parameter type codes (RFC 6525 §4).
pub mod reconfig_param_type {
    /// Outgoing SSN Reset Request.
    pub const OUTGOING_SSN_RESET: u16 = 13;
    /// Incoming SSN Reset Request.
    pub const INCOMING_SSN_RESET: u16 = 14;
    /// SSN/TSN Reset Request.
    pub const SSN_TSN_RESET: u16 = 15;
    /// Re-configuration Response.
    pub const RESPONSE: u16 = 16;
    /// Add Outgoing Streams Request.
    pub const ADD_OUTGOING_STREAMS: u16 = 17;
    /// Add Incoming Streams Request.
    pub const ADD_INCOMING_STREAMS: u16 = 18;
}

/// The result field of a Re-configuration Response (RFC 6525 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReconfigResult {
    /// Success - Nothing to do (0).
    SuccessNothingToDo,
    /// Success - Performed (1).
    SuccessPerformed,
    /// Denied (2).
    Denied,
    /// Error - Wrong SSN (3).
    ErrorWrongSsn,
    /// Error - Request already in progress (4).
    ErrorRequestInProgress,
    /// Error - Bad Sequence Number (5).
    ErrorBadSequenceNumber,
    /// In progress (6).
    InProgress,
    /// A code this engine does not know.
    Other(u32),
}

impl ReconfigResult {
    /// The wire code.
    pub fn code(self) -> u32 {
        match self {
            ReconfigResult::SuccessNothingToDo => 0,
            ReconfigResult::SuccessPerformed => 1,
            ReconfigResult::Denied => 2,
            ReconfigResult::ErrorWrongSsn => 3,
            ReconfigResult::ErrorRequestInProgress => 4,
            ReconfigResult::ErrorBadSequenceNumber => 5,
            ReconfigResult::InProgress => 6,
            ReconfigResult::Other(c) => c,
        }
    }

    /// Interprets a wire code.
    pub fn from_code(c: u32) -> ReconfigResult {
        match c {
            0 => ReconfigResult::SuccessNothingToDo,
            1 => ReconfigResult::SuccessPerformed,
            2 => ReconfigResult::Denied,
            3 => ReconfigResult::ErrorWrongSsn,
            4 => ReconfigResult::ErrorRequestInProgress,
            5 => ReconfigResult::ErrorBadSequenceNumber,
            6 => ReconfigResult::InProgress,
            c => ReconfigResult::Other(c),
        }
    }

    /// Whether the request was carried out (or needed nothing).
    pub fn is_success(self) -> bool {
        matches!(
            self,
            ReconfigResult::SuccessNothingToDo | ReconfigResult::SuccessPerformed
        )
    }
}

/// One parameter of a RE-CONFIG chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconfigParam {
    /// The sender resets the SSNs of some (or, with an empty list, all) of its
    /// outgoing streams once `last_tsn` is received (§4.1).
    OutgoingSsnReset {
        /// Re-configuration Request Sequence Number.
        req_seq: u32,
        /// Request of the receiver this one answers (an Incoming SSN Reset Request).
        resp_seq: u32,
        /// Sender's Last Assigned TSN.
        last_tsn: u32,
        /// Streams to reset; empty means all.
        streams: Vec<u16>,
    },
    /// The sender asks the receiver to reset its outgoing streams (§4.2).
    IncomingSsnReset {
        /// Re-configuration Request Sequence Number.
        req_seq: u32,
        /// Streams to reset; empty means all.
        streams: Vec<u16>,
    },
    /// Reset of every SSN and of the TSNs in both directions (§4.3).
    SsnTsnReset {
        /// Re-configuration Request Sequence Number.
        req_seq: u32,
    },
    /// Answer to a request (§4.4).
    Response {
        /// The request answered.
        resp_seq: u32,
        /// Outcome.
        result: ReconfigResult,
        /// Sender's and receiver's next TSN (only after an SSN/TSN reset).
        next_tsns: Option<(u32, u32)>,
    },
    /// The sender adds outgoing streams (§4.5).
    AddOutgoingStreams {
        /// Re-configuration Request Sequence Number.
        req_seq: u32,
        /// Streams added.
        count: u16,
    },
    /// The sender asks the receiver to add outgoing streams (§4.6).
    AddIncomingStreams {
        /// Re-configuration Request Sequence Number.
        req_seq: u32,
        /// Streams asked for.
        count: u16,
    },
    /// A parameter type this engine does not know; its upper two bits say how to treat it.
    Unknown {
        /// Parameter type.
        typ: u16,
        /// Value.
        value: Bytes,
    },
}

fn stream_list(v: &[u8]) -> Vec<u16> {
    (0..v.len()).step_by(2).map(|i| be16(v, i)).collect()
}

impl ReconfigParam {
    /// Interprets one parameter, checking its length.
    pub fn decode(typ: u16, v: Bytes) -> Result<ReconfigParam, DecodeError> {
        use reconfig_param_type as t;
        Ok(match typ {
            t::OUTGOING_SSN_RESET => {
                if v.len() < 12 || v.len() % 2 != 0 {
                    return Err(DecodeError::BadLength("outgoing SSN reset request"));
                }
                ReconfigParam::OutgoingSsnReset {
                    req_seq: be32(&v, 0),
                    resp_seq: be32(&v, 4),
                    last_tsn: be32(&v, 8),
                    streams: stream_list(&v[12..]),
                }
            }
            t::INCOMING_SSN_RESET => {
                if v.len() < 4 || v.len() % 2 != 0 {
                    return Err(DecodeError::BadLength("incoming SSN reset request"));
                }
                ReconfigParam::IncomingSsnReset {
                    req_seq: be32(&v, 0),
                    streams: stream_list(&v[4..]),
                }
            }
            t::SSN_TSN_RESET => {
                if v.len() != 4 {
                    return Err(DecodeError::BadLength("SSN/TSN reset request"));
                }
                ReconfigParam::SsnTsnReset {
                    req_seq: be32(&v, 0),
                }
            }
            t::RESPONSE => {
                let next_tsns = match v.len() {
                    8 => None,
                    16 => Some((be32(&v, 8), be32(&v, 12))),
                    _ => return Err(DecodeError::BadLength("re-configuration response")),
                };
                ReconfigParam::Response {
                    resp_seq: be32(&v, 0),
                    result: ReconfigResult::from_code(be32(&v, 4)),
                    next_tsns,
                }
            }
            t::ADD_OUTGOING_STREAMS | t::ADD_INCOMING_STREAMS => {
                if v.len() != 8 {
                    return Err(DecodeError::BadLength("add streams request"));
                }
                let (req_seq, count) = (be32(&v, 0), be16(&v, 4));
                if typ == t::ADD_OUTGOING_STREAMS {
                    ReconfigParam::AddOutgoingStreams { req_seq, count }
                } else {
                    ReconfigParam::AddIncomingStreams { req_seq, count }
                }
            }
            typ => ReconfigParam::Unknown { typ, value: v },
        })
    }

    /// The Re-configuration Request Sequence Number of a request (None for a response or
    /// an unknown parameter).
    pub fn request_seq(&self) -> Option<u32> {
        match self {
            ReconfigParam::OutgoingSsnReset { req_seq, .. }
            | ReconfigParam::IncomingSsnReset { req_seq, .. }
            | ReconfigParam::SsnTsnReset { req_seq }
            | ReconfigParam::AddOutgoingStreams { req_seq, .. }
            | ReconfigParam::AddIncomingStreams { req_seq, .. } => Some(*req_seq),
            ReconfigParam::Response { .. } | ReconfigParam::Unknown { .. } => None,
        }
    }

    /// Appends the parameter, padded; returns where the unpadded parameter ends.
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        use reconfig_param_type as t;
        let mut v = Vec::with_capacity(16);
        let typ = match self {
            ReconfigParam::OutgoingSsnReset {
                req_seq,
                resp_seq,
                last_tsn,
                streams,
            } => {
                for x in [req_seq, resp_seq, last_tsn] {
                    v.extend_from_slice(&x.to_be_bytes());
                }
                for s in streams {
                    v.extend_from_slice(&s.to_be_bytes());
                }
                t::OUTGOING_SSN_RESET
            }
            ReconfigParam::IncomingSsnReset { req_seq, streams } => {
                v.extend_from_slice(&req_seq.to_be_bytes());
                for s in streams {
                    v.extend_from_slice(&s.to_be_bytes());
                }
                t::INCOMING_SSN_RESET
            }
            ReconfigParam::SsnTsnReset { req_seq } => {
                v.extend_from_slice(&req_seq.to_be_bytes());
                t::SSN_TSN_RESET
            }
            ReconfigParam::Response {
                resp_seq,
                result,
                next_tsns,
            } => {
                v.extend_from_slice(&resp_seq.to_be_bytes());
                v.extend_from_slice(&result.code().to_be_bytes());
                if let Some((s, r)) = next_tsns {
                    v.extend_from_slice(&s.to_be_bytes());
                    v.extend_from_slice(&r.to_be_bytes());
                }
                t::RESPONSE
            }
            ReconfigParam::AddOutgoingStreams { req_seq, count }
            | ReconfigParam::AddIncomingStreams { req_seq, count } => {
                v.extend_from_slice(&req_seq.to_be_bytes());
                v.extend_from_slice(&count.to_be_bytes());
                v.extend_from_slice(&[0, 0]);
                if matches!(self, ReconfigParam::AddOutgoingStreams { .. }) {
                    t::ADD_OUTGOING_STREAMS
                } else {
                    t::ADD_INCOMING_STREAMS
                }
            }
            ReconfigParam::Unknown { typ, value } => return put_tlv(out, *typ, value),
        };
        put_tlv(out, typ, &v)
    }
}

/// The value of a RE-CONFIG chunk: its parameters, or, when they do not decode, the raw
/// bytes and the reason, so the association can count and answer a malformed request
/// instead of dropping the rest of the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReConfigBody {
    /// Every parameter decoded (the combination is checked by the association).
    Params(Vec<ReconfigParam>),
    /// A parameter failed to decode.
    Malformed {
        /// The chunk value as received.
        value: Bytes,
        /// What was wrong.
        error: DecodeError,
    },
}

impl ReConfigBody {
    /// Decodes a RE-CONFIG chunk value; never fails.
    pub fn decode(value: &Bytes) -> ReConfigBody {
        let params: Result<Vec<_>, _> = tlv_items(value, "RE-CONFIG parameter")
            .map(|r| r.and_then(|(t, v)| ReconfigParam::decode(t, v)))
            .collect();
        match params {
            Ok(p) => ReConfigBody::Params(p),
            Err(error) => ReConfigBody::Malformed {
                value: value.clone(),
                error,
            },
        }
    }

    /// Appends the chunk value; returns where the last unpadded parameter ends.
    pub fn encode(&self, out: &mut Vec<u8>) -> Option<usize> {
        match self {
            ReConfigBody::Params(ps) => {
                let mut last = None;
                for p in ps {
                    last = Some(p.encode(out));
                }
                last
            }
            ReConfigBody::Malformed { value, .. } => {
                out.extend_from_slice(value);
                None
            }
        }
    }
}
