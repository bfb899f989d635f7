//! Incremental, bounded HTTP/1.1 message framing (RFC 9112), one direction of a stream.
//!
//! The [`Framer`] cuts a byte stream into message heads and bodies without copying bodies:
//! it buffers only the head (bounded by [`HttpLimits::max_head_bytes`]) and one chunk-size
//! or trailer line at a time. The caller decides a response's body length (it depends on
//! the request method), so after a head the framer waits for [`Framer::start_body`].

use std::ops::Range;

use thiserror::Error;

/// Limits for one direction of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest message head (start line, headers, final empty line).
    pub max_head_bytes: usize,
    /// Most header fields in a head (and in a chunked trailer section).
    pub max_headers: usize,
    /// Largest body, in body (decoded chunk data) bytes.
    pub max_body_bytes: u64,
}

impl HttpLimits {
    /// Request defaults: 64 KiB heads, 100 fields, 1 GiB bodies.
    pub const REQUEST: Self = Self {
        max_head_bytes: 64 * 1024,
        max_headers: 100,
        max_body_bytes: 1 << 30,
    };
    /// Response defaults: 64 KiB heads, 100 fields, unlimited bodies (downloads).
    pub const RESPONSE: Self = Self {
        max_head_bytes: 64 * 1024,
        max_headers: 100,
        max_body_bytes: u64::MAX,
    };
}

/// Longest chunk-size line (size plus extensions).
const MAX_CHUNK_LINE: usize = 4096;

/// Why a message could not be framed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum HttpError {
    /// The head exceeds [`HttpLimits::max_head_bytes`].
    #[error("message head larger than {max} bytes")]
    HeadTooLarge {
        /// Configured maximum.
        max: usize,
    },
    /// More header fields than [`HttpLimits::max_headers`].
    #[error("more than {max} header fields")]
    TooManyHeaders {
        /// Configured maximum.
        max: usize,
    },
    /// The body exceeds [`HttpLimits::max_body_bytes`].
    #[error("body larger than {max} bytes")]
    BodyTooLarge {
        /// Configured maximum.
        max: u64,
    },
    /// The start line is malformed.
    #[error("malformed start line")]
    BadStartLine,
    /// A protocol version other than HTTP/1.0 or HTTP/1.1.
    #[error("unsupported HTTP version")]
    BadVersion,
    /// A header field line is malformed (also obsolete line folding).
    #[error("malformed header field")]
    BadHeader,
    /// Content-Length is not a number, or several disagree.
    #[error("invalid Content-Length")]
    BadContentLength,
    /// A request with both Transfer-Encoding and Content-Length (smuggling risk).
    #[error("both Transfer-Encoding and Content-Length")]
    AmbiguousLength,
    /// A request Transfer-Encoding whose final coding is not chunked.
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
    /// A malformed chunk-size line or chunk terminator.
    #[error("malformed chunked body")]
    BadChunk,
    /// Bytes after the framer gave up, or a body where none was announced.
    #[error("framing already failed")]
    Failed,
}

impl HttpError {
    /// The status the gateway answers with: for a request the client sent (4xx/5xx), or
    /// for a response the backend sent (always 502).
    pub fn status(&self, from_client: bool) -> u16 {
        if !from_client {
            return 502;
        }
        match self {
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => 431,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::BadVersion => 505,
            HttpError::UnsupportedTransferCoding => 501,
            _ => 400,
        }
    }

    /// Stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            HttpError::HeadTooLarge { .. } => "head_too_large",
            HttpError::TooManyHeaders { .. } => "too_many_headers",
            HttpError::BodyTooLarge { .. } => "body_too_large",
            HttpError::BadStartLine => "bad_start_line",
            HttpError::BadVersion => "bad_version",
            HttpError::BadHeader => "bad_header",
            HttpError::BadContentLength => "bad_content_length",
            HttpError::AmbiguousLength => "ambiguous_length",
            HttpError::UnsupportedTransferCoding => "unsupported_transfer_coding",
            HttpError::BadChunk => "bad_chunk",
            HttpError::Failed => "failed",
        }
    }
}

/// The first line of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    /// `method target HTTP/1.x`.
    Request {
        /// Method token, as sent (methods are case-sensitive).
        method: String,
        /// Request target, as sent.
        target: String,
    },
    /// `HTTP/1.x status reason`.
    Response {
        /// Three-digit status code.
        status: u16,
    },
}

/// A parsed message head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// Request or status line.
    pub start: StartLine,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// Header fields in order: name (as sent) and value (trimmed of OWS).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// Values of every field named `name` (case-insensitive).
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `name`.
    pub fn value(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Whether a comma-separated field `name` lists `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
    }

    /// The request method, if a request.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status, if a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { status } => Some(status),
            StartLine::Request { .. } => None,
        }
    }

    /// Content-Length, checked: all values (repeated or comma-separated) must agree.
    pub fn content_length(&self) -> Result<Option<u64>, HttpError> {
        let mut found: Option<u64> = None;
        for v in self.values("content-length") {
            for part in v.split(|&b| b == b',') {
                let n = parse_decimal(trim(part)).ok_or(HttpError::BadContentLength)?;
                if found.is_some_and(|f| f != n) {
                    return Err(HttpError::BadContentLength);
                }
                found = Some(n);
            }
        }
        Ok(found)
    }

    /// Whether Transfer-Encoding is present, and whether its final coding is chunked.
    fn transfer_encoding(&self) -> Option<bool> {
        let mut last: Option<&[u8]> = None;
        let mut any = false;
        for v in self.values("transfer-encoding") {
            any = true;
            for t in v.split(|&b| b == b',') {
                let t = trim(t);
                if !t.is_empty() {
                    last = Some(t);
                }
            }
        }
        any.then(|| last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")))
    }
}

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// The body of a request with this head (RFC 9112 §6.3).
pub fn request_body(head: &Head) -> Result<BodyKind, HttpError> {
    let cl = head.content_length()?;
    match head.transfer_encoding() {
        Some(_) if cl.is_some() => Err(HttpError::AmbiguousLength),
        Some(true) => Ok(BodyKind::Chunked),
        Some(false) => Err(HttpError::UnsupportedTransferCoding),
        None => Ok(match cl {
            Some(0) | None => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
        }),
    }
}

/// The body of a response with this head to a request with `method` (RFC 9112 §6.3).
pub fn response_body(head: &Head, method: &str) -> Result<BodyKind, HttpError> {
    let status = head.status().unwrap_or(0);
    if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(BodyKind::Empty);
    }
    if method == "CONNECT" && (200..300).contains(&status) {
        return Ok(BodyKind::Close);
    }
    match head.transfer_encoding() {
        Some(true) => Ok(BodyKind::Chunked),
        Some(false) => Ok(BodyKind::Close),
        None => Ok(match head.content_length()? {
            Some(0) => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
            None => BodyKind::Close,
        }),
    }
}

/// What one call of [`Framer::advance`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Input bytes consumed (at least 1 when the input was not empty and no error).
    pub consumed: usize,
    /// A complete head, ending in this step, with its raw bytes.
    pub head: Option<(Head, Vec<u8>)>,
    /// Body data (decoded chunk payload) inside the consumed bytes, relative to the input.
    pub data: Range<usize>,
    /// The message ended with this step.
    pub end: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Receiving a head.
    Head,
    /// Head complete; waiting for [`Framer::start_body`].
    AwaitBody,
    /// Fixed-length body, bytes left.
    Length(u64),
    /// Chunk-size line.
    ChunkSize,
    /// Chunk payload, bytes left.
    ChunkData(u64),
    /// CRLF after a chunk payload; true once CR was seen.
    ChunkEnd(bool),
    /// Trailer section, fields so far.
    Trailer(usize),
    /// Until close.
    Close,
    /// Framing failed.
    Failed,
}

/// Which kind of message a framer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client→server.
    Request,
    /// Server→client.
    Response,
}

/// Incremental framer for one direction of an HTTP/1.x stream.
#[derive(Clone, Debug)]
pub struct Framer {
    dir: Direction,
    limits: HttpLimits,
    state: State,
    /// Head bytes so far, or the current chunk-size / trailer line.
    buf: Vec<u8>,
    body_seen: u64,
}

impl Framer {
    /// A framer at the start of a stream.
    pub fn new(dir: Direction, limits: HttpLimits) -> Self {
        Self {
            dir,
            limits,
            state: State::Head,
            buf: Vec::new(),
            body_seen: 0,
        }
    }

    /// Forget everything: a new stream starts.
    pub fn reset(&mut self) {
        self.state = State::Head;
        self.buf = Vec::new();
        self.body_seen = 0;
    }

    /// Whether the framer is between messages (no bytes of a message seen).
    pub fn idle(&self) -> bool {
        self.state == State::Head && self.buf.is_empty()
    }

    /// Whether the next bytes belong to a message head.
    pub fn in_head(&self) -> bool {
        self.state == State::Head
    }

    /// Whether a head was returned and its body kind is awaited.
    pub fn awaiting_body(&self) -> bool {
        self.state == State::AwaitBody
    }

    /// Body bytes (decoded) of the current message so far.
    pub fn body_seen(&self) -> u64 {
        self.body_seen
    }

    /// Sets the body of the message whose head was just returned; true when the message
    /// is complete already (no body).
    pub fn start_body(&mut self, kind: BodyKind) -> Result<bool, HttpError> {
        if self.state != State::AwaitBody {
            self.state = State::Failed;
            return Err(HttpError::Failed);
        }
        self.body_seen = 0;
        self.state = match kind {
            BodyKind::Empty | BodyKind::Length(0) => {
                self.state = State::Head;
                return Ok(true);
            }
            BodyKind::Length(n) => {
                if n > self.limits.max_body_bytes {
                    self.state = State::Failed;
                    return Err(HttpError::BodyTooLarge {
                        max: self.limits.max_body_bytes,
                    });
                }
                State::Length(n)
            }
            BodyKind::Chunked => State::ChunkSize,
            BodyKind::Close => State::Close,
        };
        Ok(false)
    }

    fn fail(&mut self, e: HttpError) -> Result<Step, HttpError> {
        self.state = State::Failed;
        self.buf = Vec::new();
        Err(e)
    }

    fn add_body(&mut self, n: u64) -> Result<(), HttpError> {
        self.body_seen = self.body_seen.saturating_add(n);
        if self.body_seen > self.limits.max_body_bytes {
            self.state = State::Failed;
            return Err(HttpError::BodyTooLarge {
                max: self.limits.max_body_bytes,
            });
        }
        Ok(())
    }

    /// Consumes the next piece of `input`: part of a head, a head, body bytes, or framing
    /// bytes. Call repeatedly until all input is consumed. After an error the framer stays
    /// failed. In [`Framer::awaiting_body`] nothing is consumed.
    pub fn advance(&mut self, input: &[u8]) -> Result<Step, HttpError> {
        let mut step = Step::default();
        if input.is_empty() {
            return Ok(step);
        }
        match self.state.clone() {
            State::Failed => Err(HttpError::Failed),
            State::AwaitBody => Ok(step),
            State::Head => self.advance_head(input),
            State::Length(left) => {
                let n = left.min(input.len() as u64);
                self.add_body(n)?;
                step.consumed = n as usize;
                step.data = 0..n as usize;
                if n == left {
                    self.state = State::Head;
                    step.end = true;
                } else {
                    self.state = State::Length(left - n);
                }
                Ok(step)
            }
            State::Close => {
                self.add_body(input.len() as u64)?;
                step.consumed = input.len();
                step.data = 0..input.len();
                Ok(step)
            }
            State::ChunkData(left) => {
                let n = left.min(input.len() as u64);
                self.add_body(n)?;
                step.consumed = n as usize;
                step.data = 0..n as usize;
                self.state = if n == left {
                    State::ChunkEnd(false)
                } else {
                    State::ChunkData(left - n)
                };
                Ok(step)
            }
            State::ChunkEnd(cr) => {
                step.consumed = 1;
                match (cr, input[0]) {
                    (false, b'\r') => self.state = State::ChunkEnd(true),
                    (_, b'\n') => self.state = State::ChunkSize,
                    _ => return self.fail(HttpError::BadChunk),
                }
                Ok(step)
            }
            State::ChunkSize => {
                let Some((n, line_done)) = self.take_line(input, MAX_CHUNK_LINE) else {
                    return self.fail(HttpError::BadChunk);
                };
                step.consumed = n;
                if line_done {
                    let line = std::mem::take(&mut self.buf);
                    let size = parse_chunk_size(&line).ok_or(HttpError::BadChunk);
                    let size = match size {
                        Ok(s) => s,
                        Err(e) => return self.fail(e),
                    };
                    if size == 0 {
                        self.state = State::Trailer(0);
                    } else if self.body_seen.saturating_add(size) > self.limits.max_body_bytes {
                        return self.fail(HttpError::BodyTooLarge {
                            max: self.limits.max_body_bytes,
                        });
                    } else {
                        self.state = State::ChunkData(size);
                    }
                }
                Ok(step)
            }
            State::Trailer(fields) => {
                let Some((n, line_done)) = self.take_line(input, self.limits.max_head_bytes) else {
                    return self.fail(HttpError::HeadTooLarge {
                        max: self.limits.max_head_bytes,
                    });
                };
                step.consumed = n;
                if line_done {
                    let line = std::mem::take(&mut self.buf);
                    let line = strip_eol(&line);
                    if line.is_empty() {
                        self.state = State::Head;
                        step.end = true;
                    } else if fields >= self.limits.max_headers {
                        return self.fail(HttpError::TooManyHeaders {
                            max: self.limits.max_headers,
                        });
                    } else if parse_field(line).is_none() {
                        return self.fail(HttpError::BadHeader);
                    } else {
                        self.state = State::Trailer(fields + 1);
                    }
                }
                Ok(step)
            }
        }
    }

    /// Appends input up to and including LF to `buf`; `None` when the line exceeds `max`.
    fn take_line(&mut self, input: &[u8], max: usize) -> Option<(usize, bool)> {
        let (n, done) = match input.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (input.len(), false),
        };
        if self.buf.len() + n > max {
            return None;
        }
        self.buf.extend_from_slice(&input[..n]);
        Some((n, done))
    }

    fn advance_head(&mut self, input: &[u8]) -> Result<Step, HttpError> {
        let mut step = Step::default();
        let max = self.limits.max_head_bytes;
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            i += 1;
            // Empty lines before a request line are ignored (RFC 9112 §2.2).
            if self.dir == Direction::Request
                && (self.buf.is_empty() || self.buf == b"\r")
                && (b == b'\r' || b == b'\n')
            {
                if b == b'\n' {
                    self.buf.clear();
                } else {
                    self.buf.push(b);
                }
                continue;
            }
            if self.buf.len() >= max {
                step.consumed = i;
                return self.fail(HttpError::HeadTooLarge { max });
            }
            self.buf.push(b);
            if b == b'\n' && (self.buf.ends_with(b"\n\n") || self.buf.ends_with(b"\n\r\n")) {
                let raw = std::mem::take(&mut self.buf);
                let head = match parse_head(&raw, self.dir, self.limits.max_headers) {
                    Ok(h) => h,
                    Err(e) => return self.fail(e),
                };
                self.state = State::AwaitBody;
                step.consumed = i;
                step.head = Some((head, raw));
                return Ok(step);
            }
        }
        step.consumed = input.len();
        Ok(step)
    }
}

/// Removes a trailing LF or CRLF.
fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Trims optional whitespace (SP, HTAB).
pub(crate) fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The size of a chunk-size line (extensions ignored).
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = strip_eol(line);
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return None;
    }
    let rest = trim(&line[digits..]);
    if !(rest.is_empty() || rest[0] == b';') || rest.iter().any(|&b| b < 0x20 && b != b'\t') {
        return None;
    }
    let s = std::str::from_utf8(&line[..digits]).ok()?;
    u64::from_str_radix(s, 16).ok()
}

/// A header field line: token name, colon, value without OWS.
fn parse_field(line: &[u8]) -> Option<(String, Vec<u8>)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return None;
    }
    let value = trim(&line[colon + 1..]);
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return None;
    }
    Some((String::from_utf8(name.to_vec()).ok()?, value.to_vec()))
}

fn parse_version(v: &[u8]) -> Result<u8, HttpError> {
    match v {
        b"HTTP/1.1" => Ok(1),
        b"HTTP/1.0" => Ok(0),
        [b'H', b'T', b'T', b'P', b'/', ..] => Err(HttpError::BadVersion),
        _ => Err(HttpError::BadStartLine),
    }
}

/// Parses a complete head (ending in an empty line).
fn parse_head(raw: &[u8], dir: Direction, max_headers: usize) -> Result<Head, HttpError> {
    let mut lines = raw
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().ok_or(HttpError::BadStartLine)?;
    if first.contains(&b'\r') {
        return Err(HttpError::BadStartLine);
    }
    let (start, minor) = match dir {
        Direction::Request => {
            let mut parts = first.split(|&b| b == b' ');
            let (Some(m), Some(t), Some(v), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(HttpError::BadStartLine);
            };
            if m.is_empty() || !m.iter().all(|&b| is_tchar(b)) {
                return Err(HttpError::BadStartLine);
            }
            if t.is_empty() || !t.iter().all(|&b| b.is_ascii_graphic()) {
                return Err(HttpError::BadStartLine);
            }
            let minor = parse_version(v)?;
            let method = String::from_utf8(m.to_vec()).map_err(|_| HttpError::BadStartLine)?;
            let target = String::from_utf8(t.to_vec()).map_err(|_| HttpError::BadStartLine)?;
            (StartLine::Request { method, target }, minor)
        }
        Direction::Response => {
            let mut parts = first.splitn(3, |&b| b == b' ');
            let (Some(v), Some(code)) = (parts.next(), parts.next()) else {
                return Err(HttpError::BadStartLine);
            };
            let minor = parse_version(v)?;
            if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) || code[0] == b'0' {
                return Err(HttpError::BadStartLine);
            }
            let status = parse_decimal(code).ok_or(HttpError::BadStartLine)? as u16;
            if let Some(reason) = parts.next() {
                if reason.iter().any(|&b| b < 0x20 && b != b'\t') {
                    return Err(HttpError::BadStartLine);
                }
            }
            (StartLine::Response { status }, minor)
        }
    };
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if headers.len() >= max_headers {
            return Err(HttpError::TooManyHeaders { max: max_headers });
        }
        // Obsolete line folding is rejected (RFC 9112 §5.2 allows that).
        if matches!(line[0], b' ' | b'\t') {
            return Err(HttpError::BadHeader);
        }
        headers.push(parse_field(line).ok_or(HttpError::BadHeader)?);
    }
    Ok(Head {
        start,
        minor,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A framed event, for comparing runs.
    #[derive(Debug, PartialEq, Eq)]
    enum Ev {
        Head(Head),
        Data(Vec<u8>),
        End,
    }

    /// Frames `chunks` in order; body kinds for responses assume GET.
    fn frame(dir: Direction, limits: HttpLimits, chunks: &[&[u8]]) -> Result<Vec<Ev>, HttpError> {
        let mut f = Framer::new(dir, limits);
        let mut out = Vec::new();
        for chunk in chunks {
            let mut pos = 0;
            while pos < chunk.len() {
                let s = f.advance(&chunk[pos..])?;
                assert!(s.consumed > 0, "no progress");
                if !s.data.is_empty() {
                    let d = chunk[pos + s.data.start..pos + s.data.end].to_vec();
                    match out.last_mut() {
                        Some(Ev::Data(prev)) => prev.extend_from_slice(&d),
                        _ => out.push(Ev::Data(d)),
                    }
                }
                pos += s.consumed;
                if let Some((h, raw)) = s.head {
                    assert!(raw.ends_with(b"\n"));
                    let kind = match dir {
                        Direction::Request => request_body(&h)?,
                        Direction::Response => response_body(&h, "GET")?,
                    };
                    out.push(Ev::Head(h));
                    if f.start_body(kind)? {
                        out.push(Ev::End);
                    }
                }
                if s.end {
                    out.push(Ev::End);
                }
            }
        }
        Ok(out)
    }

    fn one(dir: Direction, input: &[u8]) -> Result<Vec<Ev>, HttpError> {
        let limits = match dir {
            Direction::Request => HttpLimits::REQUEST,
            Direction::Response => HttpLimits::RESPONSE,
        };
        frame(dir, limits, &[input])
    }

    #[test]
    fn pipelined_requests_with_bodies() {
        let input = b"\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2;ext=1\r\nhi\r\n0\r\nX-T: 1\r\n\r\n";
        let ev = one(Direction::Request, input).unwrap();
        let heads: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                Ev::Head(h) => h.method().map(str::to_string),
                _ => None,
            })
            .collect();
        assert_eq!(heads, ["GET", "POST", "PUT"]);
        assert!(ev.contains(&Ev::Data(b"abc".to_vec())));
        assert!(ev.contains(&Ev::Data(b"hi".to_vec())));
        assert_eq!(ev.iter().filter(|e| **e == Ev::End).count(), 3);
    }

    #[test]
    fn responses_without_bodies_and_close_delimited() {
        let mut f = Framer::new(Direction::Response, HttpLimits::RESPONSE);
        let s = f
            .advance(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
            .unwrap();
        let (h, _) = s.head.unwrap();
        assert!(f.start_body(response_body(&h, "HEAD").unwrap()).unwrap());
        let s = f
            .advance(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n")
            .unwrap();
        assert_eq!(
            response_body(&s.head.unwrap().0, "GET").unwrap(),
            BodyKind::Empty
        );
        let h = parse_head(b"HTTP/1.0 200 OK\r\n\r\n", Direction::Response, 10).unwrap();
        assert_eq!(response_body(&h, "GET").unwrap(), BodyKind::Close);
        let h = parse_head(b"HTTP/1.1 100 Continue\r\n\r\n", Direction::Response, 10).unwrap();
        assert_eq!(response_body(&h, "POST").unwrap(), BodyKind::Empty);
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n",
            Direction::Response,
            10,
        )
        .unwrap();
        assert_eq!(response_body(&h, "GET").unwrap(), BodyKind::Chunked);
    }

    #[test]
    fn request_errors_map_to_statuses() {
        let cases: &[(&[u8], HttpError, u16)] = &[
            (b"GET / HTTP/2.0\r\n\r\n", HttpError::BadVersion, 505),
            (b"GET /\r\n\r\n", HttpError::BadStartLine, 400),
            (
                b"GET / HTTP/1.1\r\n folded\r\n\r\n",
                HttpError::BadHeader,
                400,
            ),
            (
                b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
                HttpError::BadHeader,
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n",
                HttpError::BadContentLength,
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                HttpError::AmbiguousLength,
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                HttpError::UnsupportedTransferCoding,
                501,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                HttpError::BadChunk,
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab",
                HttpError::BadChunk,
                400,
            ),
        ];
        for (input, err, status) in cases {
            let got = one(Direction::Request, input).unwrap_err();
            assert_eq!(&got, err, "{}", String::from_utf8_lossy(input));
            assert_eq!(got.status(true), *status);
            assert_eq!(got.status(false), 502);
        }
    }

    #[test]
    fn limits_are_enforced() {
        let limits = HttpLimits {
            max_head_bytes: 64,
            max_headers: 2,
            max_body_bytes: 4,
        };
        let big = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(80));
        assert_eq!(
            frame(Direction::Request, limits, &[big.as_bytes()]).unwrap_err(),
            HttpError::HeadTooLarge { max: 64 }
        );
        let many = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        assert_eq!(
            frame(Direction::Request, limits, &[many]).unwrap_err(),
            HttpError::TooManyHeaders { max: 2 }
        );
        let body = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(
            frame(Direction::Request, limits, &[body]).unwrap_err(),
            HttpError::BodyTooLarge { max: 4 }
        );
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\n";
        assert_eq!(
            frame(Direction::Request, limits, &[chunked]).unwrap_err(),
            HttpError::BodyTooLarge { max: 4 }
        );
        let mut f = Framer::new(Direction::Request, limits);
        assert!(f.advance(many).is_err());
        assert_eq!(f.advance(b"GET").unwrap_err(), HttpError::Failed);
    }

    fn message() -> impl Strategy<Value = Vec<u8>> {
        let body = proptest::collection::vec(any::<u8>(), 0..40);
        (0..3u8, body, "[a-z]{1,8}", 1..5usize).prop_map(|(kind, body, path, parts)| {
            let mut m = Vec::new();
            match kind {
                0 => m.extend_from_slice(
                    format!("GET /{path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
                ),
                1 => {
                    m.extend_from_slice(
                        format!(
                            "POST /{path} HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    m.extend_from_slice(&body);
                }
                _ => {
                    m.extend_from_slice(
                        format!("PUT /{path} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                            .as_bytes(),
                    );
                    let step = body.len().div_ceil(parts).max(1);
                    for c in body.chunks(step) {
                        m.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                        m.extend_from_slice(c);
                        m.extend_from_slice(b"\r\n");
                    }
                    m.extend_from_slice(b"0\r\nTrailer-X: y\r\n\r\n");
                }
            }
            m
        })
    }

    proptest! {
        #[test]
        fn splitting_never_changes_frames(
            msgs in proptest::collection::vec(message(), 1..5),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let input: Vec<u8> = msgs.concat();
            let whole = one(Direction::Request, &input).unwrap();
            prop_assert_eq!(whole.iter().filter(|e| **e == Ev::End).count(), msgs.len());
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for p in points {
                chunks.push(&input[last..p]);
                last = p;
            }
            chunks.push(&input[last..]);
            let split = frame(Direction::Request, HttpLimits::REQUEST, &chunks).unwrap();
            prop_assert_eq!(whole, split);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(
            input in proptest::collection::vec(any::<u8>(), 0..2048),
            resp in any::<bool>(),
        ) {
            let limits = HttpLimits { max_head_bytes: 256, max_headers: 8, max_body_bytes: 512 };
            let dir = if resp { Direction::Response } else { Direction::Request };
            let mut f = Framer::new(dir, limits);
            let mut pos = 0;
            while pos < input.len() {
                match f.advance(&input[pos..]) {
                    Ok(s) => {
                        prop_assert!(s.data.end <= s.consumed);
                        prop_assert!(f.buf.len() <= limits.max_head_bytes.max(MAX_CHUNK_LINE));
                        if s.head.is_some() {
                            prop_assert!(f.start_body(BodyKind::Chunked).is_ok());
                        }
                        prop_assert!(s.consumed > 0);
                        pos += s.consumed;
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
