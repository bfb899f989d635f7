//! Chunks (RFC 9260 §3.3, RFC 8260 I-DATA, RFC 3758 FORWARD-TSN, RFC 6525 RE-CONFIG).

use bytes::{Buf, Bytes};

use super::{
    be16, be32, begin_chunk, end_chunk, end_chunk_tlv, put_tlv, tlv_items, DecodeError, ErrorCause,
    InitParam, RawChunk, ReConfigBody,
};

/// Chunk type codes.
pub mod chunk_type {
    /// Payload data.
    pub const DATA: u8 = 0;
    /// Initiation.
    pub const INIT: u8 = 1;
    /// Initiation acknowledgement.
    pub const INIT_ACK: u8 = 2;
    /// Selective acknowledgement.
    pub const SACK: u8 = 3;
    /// Heartbeat request.
    pub const HEARTBEAT: u8 = 4;
    /// Heartbeat acknowledgement.
    pub const HEARTBEAT_ACK: u8 = 5;
    /// Abort.
    pub const ABORT: u8 = 6;
    /// Shutdown.
    pub const SHUTDOWN: u8 = 7;
    /// Shutdown acknowledgement.
    pub const SHUTDOWN_ACK: u8 = 8;
    /// Operation error.
    pub const ERROR: u8 = 9;
    /// State cookie.
    pub const COOKIE_ECHO: u8 = 10;
    /// Cookie acknowledgement.
    pub const COOKIE_ACK: u8 = 11;
    /// Shutdown complete.
    pub const SHUTDOWN_COMPLETE: u8 = 14;
    /// Interleaved data (RFC 8260).
    pub const I_DATA: u8 = 64;
    /// Stream reconfiguration (RFC 6525).
    pub const RE_CONFIG: u8 = 130;
    /// Forward cumulative TSN (RFC 3758).
    pub const FORWARD_TSN: u8 = 192;
}

/// Size of a DATA chunk header including the chunk header.
pub const DATA_HEADER_LEN: usize = 16;

/// A DATA chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataChunk {
    /// Transmission sequence number.
    pub tsn: u32,
    /// Stream identifier.
    pub stream: u16,
    /// Stream sequence number (ignored for unordered chunks).
    pub ssn: u16,
    /// Payload protocol identifier.
    pub ppid: u32,
    /// U bit: unordered delivery.
    pub unordered: bool,
    /// B bit: first fragment of a message.
    pub beginning: bool,
    /// E bit: last fragment of a message.
    pub ending: bool,
    /// I bit: the receiver should SACK at once.
    pub immediate: bool,
    /// User data (never empty).
    pub payload: Bytes,
}

impl DataChunk {
    /// The chunk flags byte for the given bits.
    pub fn flags(unordered: bool, beginning: bool, ending: bool, immediate: bool) -> u8 {
        (immediate as u8) << 3 | (unordered as u8) << 2 | (beginning as u8) << 1 | ending as u8
    }

    /// Appends the 16-byte DATA header for a payload of `payload_len` bytes; the caller
    /// appends the payload and padding. Used on the hot path to avoid building a chunk.
    #[allow(clippy::too_many_arguments)]
    pub fn put_header(
        out: &mut Vec<u8>,
        flags: u8,
        payload_len: usize,
        tsn: u32,
        stream: u16,
        ssn: u16,
        ppid: u32,
    ) {
        out.push(chunk_type::DATA);
        out.push(flags);
        let len = u16::try_from(DATA_HEADER_LEN + payload_len).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&tsn.to_be_bytes());
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(&ssn.to_be_bytes());
        out.extend_from_slice(&ppid.to_be_bytes());
    }
}

/// An I-DATA chunk (RFC 8260); decoded so it can be recognised, not used for transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IDataChunk {
    /// Chunk flags (I, U, B, E).
    pub flags: u8,
    /// Transmission sequence number.
    pub tsn: u32,
    /// Stream identifier.
    pub stream: u16,
    /// Message identifier.
    pub mid: u32,
    /// PPID on the first fragment, fragment sequence number on the others.
    pub ppid_or_fsn: u32,
    /// User data.
    pub payload: Bytes,
}

/// INIT and INIT ACK share one layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitChunk {
    /// Initiate tag: the verification tag the sender expects in packets to it.
    pub initiate_tag: u32,
    /// Advertised receiver window credit.
    pub a_rwnd: u32,
    /// Number of outbound streams the sender wants.
    pub outbound_streams: u16,
    /// Maximum number of inbound streams the sender accepts.
    pub inbound_streams: u16,
    /// First TSN the sender will use.
    pub initial_tsn: u32,
    /// Optional and variable-length parameters.
    pub params: Vec<InitParam>,
}

/// A gap acknowledgement block, offsets relative to the cumulative TSN ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GapBlock {
    /// Start offset (inclusive).
    pub start: u16,
    /// End offset (inclusive).
    pub end: u16,
}

/// A SACK chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SackChunk {
    /// Cumulative TSN ack.
    pub cum_tsn: u32,
    /// Advertised receiver window credit.
    pub a_rwnd: u32,
    /// Gap acknowledgement blocks.
    pub gaps: Vec<GapBlock>,
    /// Duplicate TSNs received.
    pub dups: Vec<u32>,
}

/// A FORWARD-TSN chunk (RFC 3758).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardTsnChunk {
    /// New cumulative TSN.
    pub new_cum_tsn: u32,
    /// (stream, stream sequence number) pairs skipped.
    pub streams: Vec<(u16, u16)>,
}

/// Every chunk this engine knows, plus a catch-all for the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// DATA.
    Data(DataChunk),
    /// INIT.
    Init(InitChunk),
    /// INIT ACK.
    InitAck(InitChunk),
    /// SACK.
    Sack(SackChunk),
    /// HEARTBEAT with its heartbeat information.
    Heartbeat(Bytes),
    /// HEARTBEAT ACK echoing heartbeat information.
    HeartbeatAck(Bytes),
    /// ABORT; `t` means the verification tag is reflected.
    Abort {
        /// T bit.
        t: bool,
        /// Error causes.
        causes: Vec<ErrorCause>,
    },
    /// SHUTDOWN with the cumulative TSN ack.
    Shutdown {
        /// Cumulative TSN ack.
        cum_tsn: u32,
    },
    /// SHUTDOWN ACK.
    ShutdownAck,
    /// ERROR with causes.
    Error(Vec<ErrorCause>),
    /// COOKIE ECHO carrying the state cookie.
    CookieEcho(Bytes),
    /// COOKIE ACK.
    CookieAck,
    /// SHUTDOWN COMPLETE; `t` means the verification tag is reflected.
    ShutdownComplete {
        /// T bit.
        t: bool,
    },
    /// I-DATA (RFC 8260).
    IData(IDataChunk),
    /// FORWARD-TSN (RFC 3758).
    ForwardTsn(ForwardTsnChunk),
    /// RE-CONFIG (RFC 6525): its parameters, or why they do not decode.
    ReConfig(ReConfigBody),
    /// Any other chunk type.
    Unknown {
        /// Chunk type.
        typ: u8,
        /// Flags.
        flags: u8,
        /// Value.
        value: Bytes,
    },
}

fn exact(value: &Bytes, n: usize, what: &'static str) -> Result<(), DecodeError> {
    if value.len() == n {
        Ok(())
    } else {
        Err(DecodeError::BadLength(what))
    }
}

fn causes(value: &Bytes) -> Result<Vec<ErrorCause>, DecodeError> {
    tlv_items(value, "error cause")
        .map(|r| r.map(|(code, info)| ErrorCause { code, info }))
        .collect()
}

fn init(value: &Bytes, ack: bool) -> Result<InitChunk, DecodeError> {
    if value.len() < 16 {
        return Err(DecodeError::BadLength("INIT"));
    }
    let c = InitChunk {
        initiate_tag: be32(value, 0),
        a_rwnd: be32(value, 4),
        outbound_streams: be16(value, 8),
        inbound_streams: be16(value, 10),
        initial_tsn: be32(value, 12),
        params: tlv_items(&value.slice(16..), "INIT parameter")
            .map(|r| r.and_then(|(t, v)| InitParam::decode(t, v)))
            .collect::<Result<_, _>>()?,
    };
    if c.initiate_tag == 0 || c.outbound_streams == 0 || c.inbound_streams == 0 {
        return Err(DecodeError::Invalid("INIT"));
    }
    if ack
        && !c
            .params
            .iter()
            .any(|p| matches!(p, InitParam::StateCookie(_)))
    {
        return Err(DecodeError::Invalid("INIT ACK without state cookie"));
    }
    Ok(c)
}

fn heartbeat_info(value: &Bytes) -> Result<Bytes, DecodeError> {
    let mut items = tlv_items(value, "heartbeat parameter");
    match items.next() {
        Some(Ok((1, info))) => Ok(info),
        Some(Err(e)) => Err(e),
        _ => Err(DecodeError::Invalid("heartbeat without info")),
    }
}

/// A DATA chunk from its flags, its value `v` (longer than the 12-byte DATA header)
/// and its payload (the value past that header).
fn data_chunk(flags: u8, v: &[u8], payload: Bytes) -> DataChunk {
    DataChunk {
        tsn: be32(v, 0),
        stream: be16(v, 4),
        ssn: be16(v, 6),
        ppid: be32(v, 8),
        unordered: flags & 0x04 != 0,
        beginning: flags & 0x02 != 0,
        ending: flags & 0x01 != 0,
        immediate: flags & 0x08 != 0,
        payload,
    }
}

impl Chunk {
    /// Like [`Chunk::decode`], taking the chunk: a DATA payload is then the chunk's own
    /// slice of the packet, narrowed (no reference-count traffic per chunk).
    pub fn decode_owned(raw: RawChunk) -> Result<Chunk, DecodeError> {
        if raw.typ != chunk_type::DATA || raw.value.len() <= 12 {
            return Chunk::decode(&raw);
        }
        let mut header = [0u8; 12];
        header.copy_from_slice(&raw.value[..12]);
        let mut payload = raw.value;
        payload.advance(12);
        Ok(Chunk::Data(data_chunk(raw.flags, &header, payload)))
    }

    /// Interprets a raw chunk. Unknown types become [`Chunk::Unknown`].
    pub fn decode(raw: &RawChunk) -> Result<Chunk, DecodeError> {
        let v = &raw.value;
        Ok(match raw.typ {
            chunk_type::DATA => {
                if v.len() <= 12 {
                    return Err(DecodeError::BadLength("DATA"));
                }
                Chunk::Data(data_chunk(raw.flags, v, v.slice(12..)))
            }
            chunk_type::INIT => Chunk::Init(init(v, false)?),
            chunk_type::INIT_ACK => Chunk::InitAck(init(v, true)?),
            chunk_type::SACK => {
                if v.len() < 12 {
                    return Err(DecodeError::BadLength("SACK"));
                }
                let ngaps = be16(v, 8) as usize;
                let ndups = be16(v, 10) as usize;
                if v.len() != 12 + 4 * (ngaps + ndups) {
                    return Err(DecodeError::BadLength("SACK"));
                }
                let gaps = (0..ngaps)
                    .map(|i| GapBlock {
                        start: be16(v, 12 + 4 * i),
                        end: be16(v, 14 + 4 * i),
                    })
                    .collect();
                let base = 12 + 4 * ngaps;
                let dups = (0..ndups).map(|i| be32(v, base + 4 * i)).collect();
                Chunk::Sack(SackChunk {
                    cum_tsn: be32(v, 0),
                    a_rwnd: be32(v, 4),
                    gaps,
                    dups,
                })
            }
            chunk_type::HEARTBEAT => Chunk::Heartbeat(heartbeat_info(v)?),
            chunk_type::HEARTBEAT_ACK => Chunk::HeartbeatAck(heartbeat_info(v)?),
            chunk_type::ABORT => Chunk::Abort {
                t: raw.flags & 1 != 0,
                causes: causes(v)?,
            },
            chunk_type::SHUTDOWN => {
                exact(v, 4, "SHUTDOWN")?;
                Chunk::Shutdown {
                    cum_tsn: be32(v, 0),
                }
            }
            chunk_type::SHUTDOWN_ACK => {
                exact(v, 0, "SHUTDOWN ACK")?;
                Chunk::ShutdownAck
            }
            chunk_type::ERROR => Chunk::Error(causes(v)?),
            chunk_type::COOKIE_ECHO => Chunk::CookieEcho(v.clone()),
            chunk_type::COOKIE_ACK => {
                exact(v, 0, "COOKIE ACK")?;
                Chunk::CookieAck
            }
            chunk_type::SHUTDOWN_COMPLETE => {
                exact(v, 0, "SHUTDOWN COMPLETE")?;
                Chunk::ShutdownComplete {
                    t: raw.flags & 1 != 0,
                }
            }
            chunk_type::I_DATA => {
                if v.len() <= 16 {
                    return Err(DecodeError::BadLength("I-DATA"));
                }
                Chunk::IData(IDataChunk {
                    flags: raw.flags,
                    tsn: be32(v, 0),
                    stream: be16(v, 4),
                    mid: be32(v, 8),
                    ppid_or_fsn: be32(v, 12),
                    payload: v.slice(16..),
                })
            }
            chunk_type::FORWARD_TSN => {
                if v.len() < 4 || v.len() % 4 != 0 {
                    return Err(DecodeError::BadLength("FORWARD-TSN"));
                }
                let streams = (4..v.len())
                    .step_by(4)
                    .map(|i| (be16(v, i), be16(v, i + 2)))
                    .collect();
                Chunk::ForwardTsn(ForwardTsnChunk {
                    new_cum_tsn: be32(v, 0),
                    streams,
                })
            }
            chunk_type::RE_CONFIG => Chunk::ReConfig(ReConfigBody::decode(v)),
            typ => Chunk::Unknown {
                typ,
                flags: raw.flags,
                value: v.clone(),
            },
        })
    }

    /// The chunk type code.
    pub fn typ(&self) -> u8 {
        match self {
            Chunk::Data(_) => chunk_type::DATA,
            Chunk::Init(_) => chunk_type::INIT,
            Chunk::InitAck(_) => chunk_type::INIT_ACK,
            Chunk::Sack(_) => chunk_type::SACK,
            Chunk::Heartbeat(_) => chunk_type::HEARTBEAT,
            Chunk::HeartbeatAck(_) => chunk_type::HEARTBEAT_ACK,
            Chunk::Abort { .. } => chunk_type::ABORT,
            Chunk::Shutdown { .. } => chunk_type::SHUTDOWN,
            Chunk::ShutdownAck => chunk_type::SHUTDOWN_ACK,
            Chunk::Error(_) => chunk_type::ERROR,
            Chunk::CookieEcho(_) => chunk_type::COOKIE_ECHO,
            Chunk::CookieAck => chunk_type::COOKIE_ACK,
            Chunk::ShutdownComplete { .. } => chunk_type::SHUTDOWN_COMPLETE,
            Chunk::IData(_) => chunk_type::I_DATA,
            Chunk::ForwardTsn(_) => chunk_type::FORWARD_TSN,
            Chunk::ReConfig(_) => chunk_type::RE_CONFIG,
            Chunk::Unknown { typ, .. } => *typ,
        }
    }

    /// Appends the chunk, padded to four bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Chunk::Data(d) => {
                let flags = DataChunk::flags(d.unordered, d.beginning, d.ending, d.immediate);
                DataChunk::put_header(out, flags, d.payload.len(), d.tsn, d.stream, d.ssn, d.ppid);
                out.extend_from_slice(&d.payload);
                super::pad4(out);
            }
            Chunk::Init(c) | Chunk::InitAck(c) => {
                let at = begin_chunk(out, self.typ(), 0);
                out.extend_from_slice(&c.initiate_tag.to_be_bytes());
                out.extend_from_slice(&c.a_rwnd.to_be_bytes());
                out.extend_from_slice(&c.outbound_streams.to_be_bytes());
                out.extend_from_slice(&c.inbound_streams.to_be_bytes());
                out.extend_from_slice(&c.initial_tsn.to_be_bytes());
                let mut last = None;
                for p in &c.params {
                    last = Some(p.encode(out));
                }
                end_chunk_tlv(out, at, last);
            }
            Chunk::Sack(s) => {
                let at = begin_chunk(out, chunk_type::SACK, 0);
                out.extend_from_slice(&s.cum_tsn.to_be_bytes());
                out.extend_from_slice(&s.a_rwnd.to_be_bytes());
                out.extend_from_slice(&(s.gaps.len() as u16).to_be_bytes());
                out.extend_from_slice(&(s.dups.len() as u16).to_be_bytes());
                for g in &s.gaps {
                    out.extend_from_slice(&g.start.to_be_bytes());
                    out.extend_from_slice(&g.end.to_be_bytes());
                }
                for d in &s.dups {
                    out.extend_from_slice(&d.to_be_bytes());
                }
                end_chunk(out, at);
            }
            Chunk::Heartbeat(info) | Chunk::HeartbeatAck(info) => {
                let at = begin_chunk(out, self.typ(), 0);
                let last = put_tlv(out, 1, info);
                end_chunk_tlv(out, at, Some(last));
            }
            Chunk::Abort { t, causes } => {
                let at = begin_chunk(out, chunk_type::ABORT, *t as u8);
                let mut last = None;
                for c in causes {
                    last = Some(c.encode(out));
                }
                end_chunk_tlv(out, at, last);
            }
            Chunk::Shutdown { cum_tsn } => {
                let at = begin_chunk(out, chunk_type::SHUTDOWN, 0);
                out.extend_from_slice(&cum_tsn.to_be_bytes());
                end_chunk(out, at);
            }
            Chunk::ShutdownAck | Chunk::CookieAck => {
                let at = begin_chunk(out, self.typ(), 0);
                end_chunk(out, at);
            }
            Chunk::Error(causes) => {
                let at = begin_chunk(out, chunk_type::ERROR, 0);
                let mut last = None;
                for c in causes {
                    last = Some(c.encode(out));
                }
                end_chunk_tlv(out, at, last);
            }
            Chunk::CookieEcho(cookie) => {
                let at = begin_chunk(out, chunk_type::COOKIE_ECHO, 0);
                out.extend_from_slice(cookie);
                end_chunk(out, at);
            }
            Chunk::ShutdownComplete { t } => {
                let at = begin_chunk(out, chunk_type::SHUTDOWN_COMPLETE, *t as u8);
                end_chunk(out, at);
            }
            Chunk::IData(d) => {
                let at = begin_chunk(out, chunk_type::I_DATA, d.flags);
                out.extend_from_slice(&d.tsn.to_be_bytes());
                out.extend_from_slice(&d.stream.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&d.mid.to_be_bytes());
                out.extend_from_slice(&d.ppid_or_fsn.to_be_bytes());
                out.extend_from_slice(&d.payload);
                end_chunk(out, at);
            }
            Chunk::ForwardTsn(f) => {
                let at = begin_chunk(out, chunk_type::FORWARD_TSN, 0);
                out.extend_from_slice(&f.new_cum_tsn.to_be_bytes());
                for (s, n) in &f.streams {
                    out.extend_from_slice(&s.to_be_bytes());
                    out.extend_from_slice(&n.to_be_bytes());
                }
                end_chunk(out, at);
            }
            Chunk::ReConfig(body) => {
                let at = begin_chunk(out, chunk_type::RE_CONFIG, 0);
                match body.encode(out) {
                    Some(last) => end_chunk_tlv(out, at, Some(last)),
                    None => end_chunk(out, at),
                }
            }
            Chunk::Unknown { typ, flags, value } => {
                let at = begin_chunk(out, *typ, *flags);
                out.extend_from_slice(value);
                end_chunk(out, at);
            }
        }
    }
}
