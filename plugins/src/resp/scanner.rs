//! Streaming, incremental RESP2/RESP3 framer.
//!
//! It finds frame boundaries without buffering payloads: bulk bodies are skipped by
//! count, aggregates are tracked by a stack of remaining element counts. Memory is
//! bounded by `max_line_len` (one header or inline line) plus `max_depth` stack entries;
//! every limit violation is a typed [`RespError`], and after an error the scanner keeps
//! returning it. It never panics on any input.
//!
//! Requests (client→server) are arrays of bulk strings or inline commands (a line not
//! starting with `*`, as Redis accepts from telnet). Replies may be any RESP2/RESP3 type:
//! simple strings `+`, errors `-`, integers `:`, bulk strings `$` (also RESP2 null `$-1`
//! and streamed `$?` with `;` chunks), arrays `*` (also `*-1` and streamed `*?` ended by
//! `.`), null `_`, doubles `,`, booleans `#`, big numbers `(`, bulk errors `!`, verbatim
//! strings `=`, maps `%`, sets `~`, pushes `>` and attributes `|` (which annotate the value
//! that follows and are part of its frame).

use thiserror::Error;

/// Framing limits (all inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RespLimits {
    /// Largest bulk string / bulk error / verbatim string / stream chunk.
    pub max_bulk_len: u64,
    /// Deepest aggregate nesting.
    pub max_depth: usize,
    /// Most elements in one aggregate (a map or attribute of n pairs has 2n).
    pub max_elements: u64,
    /// Longest header, simple string, error or inline line, without CRLF.
    pub max_line_len: usize,
}

impl Default for RespLimits {
    /// Redis' own limits: 512 MiB bulk, 64 KiB inline; depth 64, 16 Mi elements.
    fn default() -> Self {
        Self {
            max_bulk_len: 512 * 1024 * 1024,
            max_depth: 64,
            max_elements: 16 * 1024 * 1024,
            max_line_len: 64 * 1024,
        }
    }
}

/// Which way the bytes flow: requests allow inline commands and only bulk-string arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    Request,
    /// Server to client.
    Reply,
}

/// Why bytes are not valid RESP.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RespError {
    /// A type byte that does not start a value here.
    #[error("unexpected type byte 0x{0:02x}")]
    InvalidType(u8),
    /// A line not ended by CRLF, or a bulk body not followed by CRLF.
    #[error("expected CRLF")]
    ExpectedCrlf,
    /// A line longer than the limit.
    #[error("line longer than {max} bytes")]
    LineTooLong {
        /// Limit.
        max: usize,
    },
    /// A length or count that is not a valid number for its type.
    #[error("invalid length or count")]
    InvalidLength,
    /// A bulk longer than the limit.
    #[error("bulk of {len} bytes exceeds {max}")]
    BulkTooLarge {
        /// Declared length.
        len: u64,
        /// Limit.
        max: u64,
    },
    /// An aggregate with more elements than the limit.
    #[error("aggregate of {count} elements exceeds {max}")]
    TooManyElements {
        /// Declared elements.
        count: u64,
        /// Limit.
        max: u64,
    },
    /// Aggregates nested deeper than the limit.
    #[error("nesting deeper than {max}")]
    TooDeep {
        /// Limit.
        max: usize,
    },
    /// Invalid integer, double, boolean, big number or null line.
    #[error("invalid {0} value")]
    InvalidValue(&'static str),
}

/// Type of a complete top-level frame (for replies: of the value after any attributes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// `+`
    SimpleString,
    /// `-`
    Error,
    /// `:`
    Integer,
    /// `$` (including RESP2 null and streamed strings)
    Bulk,
    /// `!`
    BulkError,
    /// `=`
    Verbatim,
    /// `_`
    Null,
    /// `,`
    Double,
    /// `#`
    Boolean,
    /// `(`
    BigNumber,
    /// `*` (including RESP2 null arrays)
    Array,
    /// `%`
    Map,
    /// `~`
    Set,
    /// `>`: out-of-band data, not a reply.
    Push,
    /// A request written as a plain line.
    Inline,
}

impl FrameKind {
    fn of(ty: u8) -> Option<Self> {
        Some(match ty {
            b'+' => FrameKind::SimpleString,
            b'-' => FrameKind::Error,
            b':' => FrameKind::Integer,
            b'$' => FrameKind::Bulk,
            b'!' => FrameKind::BulkError,
            b'=' => FrameKind::Verbatim,
            b'_' => FrameKind::Null,
            b',' => FrameKind::Double,
            b'#' => FrameKind::Boolean,
            b'(' => FrameKind::BigNumber,
            b'*' => FrameKind::Array,
            b'%' => FrameKind::Map,
            b'~' => FrameKind::Set,
            b'>' => FrameKind::Push,
            _ => return None,
        })
    }

    /// Whether this is an error reply.
    pub fn is_error(self) -> bool {
        matches!(self, FrameKind::Error | FrameKind::BulkError)
    }
}

/// A complete top-level frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Its type.
    pub kind: FrameKind,
    /// Its length in bytes (attributes and CRLFs included).
    pub len: u64,
    /// Requests: number of arguments (0 means Redis ignores it and sends no reply).
    pub args: u64,
    /// Requests: the command name, ASCII-uppercased, at most [`COMMAND_CAPTURE`] bytes.
    pub command: Vec<u8>,
}

/// Bytes of a command name kept in [`Frame::command`].
pub const COMMAND_CAPTURE: usize = 32;

/// Result of one [`RespScanner::advance`] call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advance {
    /// Input bytes consumed.
    pub consumed: usize,
    /// The frame that ended at `consumed`, if any.
    pub frame: Option<Frame>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Agg {
    Array,
    Attribute,
    /// `$?`: `;n` chunks until `;0`.
    StreamedString,
}

#[derive(Clone, Copy, Debug)]
struct Level {
    agg: Agg,
    /// `None`: streamed, ended by `.` (or `;0`).
    remaining: Option<u64>,
    /// Elements seen so far (bounds streamed aggregates by `max_elements`).
    seen: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting a type byte.
    Start,
    /// Reading a line after type byte `ty` (`len` bytes so far).
    Line { ty: u8, len: usize },
    /// Saw `\r` ending the line of `ty`.
    LineLf { ty: u8 },
    /// Inside a bulk body.
    Body { remaining: u64, capture: bool },
    /// Bulk body done, expecting `\r`.
    BodyCr { chunk: bool },
    /// Expecting `\n` after a body.
    BodyLf { chunk: bool },
    /// Reading an inline request line.
    Inline { len: usize },
}

/// The incremental framer (one per direction per session).
#[derive(Clone, Debug)]
pub struct RespScanner {
    dir: Direction,
    limits: RespLimits,
    state: State,
    stack: Vec<Level>,
    line: Vec<u8>,
    frame_len: u64,
    kind: Option<FrameKind>,
    args: u64,
    command: Vec<u8>,
    capture_next: bool,
    error: Option<RespError>,
}

impl RespScanner {
    /// A scanner at a frame boundary.
    pub fn new(dir: Direction, limits: RespLimits) -> Self {
        Self {
            dir,
            limits,
            state: State::Start,
            stack: Vec::new(),
            line: Vec::new(),
            frame_len: 0,
            kind: None,
            args: 0,
            command: Vec::new(),
            capture_next: false,
            error: None,
        }
    }

    /// Whether part of a frame has been consumed.
    pub fn in_frame(&self) -> bool {
        self.frame_len > 0
    }

    /// Kind of the frame in progress, once known.
    pub fn current_kind(&self) -> Option<FrameKind> {
        self.kind
    }

    /// Bytes currently buffered (one header or inline line; never above `max_line_len`).
    pub fn buffered(&self) -> usize {
        self.line.len()
    }

    /// Current aggregate nesting (never above `max_depth`).
    pub fn depth(&self) -> usize {
        self.stack.len()
    }

    /// Back to a frame boundary (a new stream starts); clears a previous error.
    pub fn reset(&mut self) {
        *self = Self::new(self.dir, self.limits);
    }

    /// Consumes input until a frame ends or the input is exhausted.
    pub fn advance(&mut self, input: &[u8]) -> Result<Advance, RespError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut pos = 0;
        while pos < input.len() {
            match self.step(&input[pos..]) {
                Ok((n, done)) => {
                    pos += n;
                    self.frame_len += n as u64;
                    if done {
                        let frame = Frame {
                            kind: self.kind.take().unwrap_or(FrameKind::Null),
                            len: std::mem::take(&mut self.frame_len),
                            args: std::mem::take(&mut self.args),
                            command: std::mem::take(&mut self.command),
                        };
                        return Ok(Advance {
                            consumed: pos,
                            frame: Some(frame),
                        });
                    }
                }
                Err(e) => {
                    self.error = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(Advance {
            consumed: pos,
            frame: None,
        })
    }

    /// One state transition: bytes consumed (at least 1) and whether a frame completed.
    fn step(&mut self, input: &[u8]) -> Result<(usize, bool), RespError> {
        match self.state {
            State::Start => {
                let done = self.begin(input[0])?;
                Ok((1, done))
            }
            State::Line { ty, len } => {
                let stop = input.iter().position(|&b| b == b'\r' || b == b'\n');
                let take = stop.unwrap_or(input.len());
                let new_len = len + take;
                if new_len > self.limits.max_line_len {
                    return Err(RespError::LineTooLong {
                        max: self.limits.max_line_len,
                    });
                }
                // Simple strings and errors are only counted, never stored.
                if ty != b'+' && ty != b'-' {
                    self.line.extend_from_slice(&input[..take]);
                }
                match stop {
                    None => {
                        self.state = State::Line { ty, len: new_len };
                        Ok((take, false))
                    }
                    Some(i) if input[i] == b'\r' => {
                        self.state = State::LineLf { ty };
                        Ok((take + 1, false))
                    }
                    Some(_) => Err(RespError::ExpectedCrlf),
                }
            }
            State::LineLf { ty } => {
                if input[0] != b'\n' {
                    return Err(RespError::ExpectedCrlf);
                }
                self.state = State::Start;
                let line = std::mem::take(&mut self.line);
                let done = self.end_line(ty, &line)?;
                self.line = line;
                self.line.clear();
                Ok((1, done))
            }
            State::Body { remaining, capture } => {
                let take = remaining.min(input.len() as u64) as usize;
                if capture {
                    let room = COMMAND_CAPTURE.saturating_sub(self.command.len());
                    let bytes = &input[..take.min(room)];
                    self.command
                        .extend(bytes.iter().map(u8::to_ascii_uppercase));
                }
                let remaining = remaining - take as u64;
                self.state = if remaining == 0 {
                    let chunk =
                        matches!(self.stack.last(), Some(l) if l.agg == Agg::StreamedString);
                    State::BodyCr { chunk }
                } else {
                    State::Body { remaining, capture }
                };
                Ok((take, false))
            }
            State::BodyCr { chunk } => {
                if input[0] != b'\r' {
                    return Err(RespError::ExpectedCrlf);
                }
                self.state = State::BodyLf { chunk };
                Ok((1, false))
            }
            State::BodyLf { chunk } => {
                if input[0] != b'\n' {
                    return Err(RespError::ExpectedCrlf);
                }
                self.state = State::Start;
                // A stream chunk is not a value of its own.
                let done = if chunk { false } else { self.complete_value()? };
                Ok((1, done))
            }
            State::Inline { len } => {
                let stop = input.iter().position(|&b| b == b'\n');
                let take = stop.unwrap_or(input.len());
                let new_len = len + take;
                if new_len > self.limits.max_line_len {
                    return Err(RespError::LineTooLong {
                        max: self.limits.max_line_len,
                    });
                }
                self.line.extend_from_slice(&input[..take]);
                match stop {
                    None => {
                        self.state = State::Inline { len: new_len };
                        Ok((take, false))
                    }
                    Some(_) => {
                        self.state = State::Start;
                        let words = inline_words(&self.line);
                        self.args = words.len() as u64;
                        if let Some(first) = words.first() {
                            self.command = first
                                .iter()
                                .take(COMMAND_CAPTURE)
                                .map(u8::to_ascii_uppercase)
                                .collect();
                        }
                        self.line.clear();
                        Ok((take + 1, true))
                    }
                }
            }
        }
    }

    /// A type byte at `State::Start`; true when it alone completes a frame (empty inline).
    fn begin(&mut self, ty: u8) -> Result<bool, RespError> {
        let top = self.stack.last().map(|l| l.agg);
        if top == Some(Agg::StreamedString) {
            if ty != b';' {
                return Err(RespError::InvalidType(ty));
            }
            self.state = State::Line { ty, len: 0 };
            return Ok(false);
        }
        match self.dir {
            Direction::Request if self.stack.is_empty() => {
                if ty == b'*' {
                    self.kind = Some(FrameKind::Array);
                    self.state = State::Line { ty, len: 0 };
                } else {
                    self.kind = Some(FrameKind::Inline);
                    if ty == b'\n' {
                        // An empty inline line: a frame with no arguments (Redis ignores it).
                        self.args = 0;
                        return Ok(true);
                    }
                    self.line.push(ty);
                    self.state = State::Inline { len: 1 };
                }
                Ok(false)
            }
            Direction::Request => {
                if ty != b'$' {
                    return Err(RespError::InvalidType(ty));
                }
                self.state = State::Line { ty, len: 0 };
                Ok(false)
            }
            Direction::Reply => {
                if ty == b'.' {
                    if !matches!(self.stack.last(), Some(l) if l.remaining.is_none()) {
                        return Err(RespError::InvalidType(ty));
                    }
                } else if ty != b'|' && FrameKind::of(ty).is_none() {
                    return Err(RespError::InvalidType(ty));
                }
                if self.stack.is_empty() && ty != b'|' {
                    self.kind = FrameKind::of(ty);
                }
                self.state = State::Line { ty, len: 0 };
                Ok(false)
            }
        }
    }

    /// A complete header line of type `ty`; true when a top-level frame completed.
    fn end_line(&mut self, ty: u8, line: &[u8]) -> Result<bool, RespError> {
        match ty {
            b'+' | b'-' => self.complete_value(),
            b':' => {
                parse_i64(line).ok_or(RespError::InvalidValue("integer"))?;
                self.complete_value()
            }
            b'_' => {
                if !line.is_empty() {
                    return Err(RespError::InvalidValue("null"));
                }
                self.complete_value()
            }
            b'#' => {
                if line != b"t" && line != b"f" {
                    return Err(RespError::InvalidValue("boolean"));
                }
                self.complete_value()
            }
            b',' => {
                let ok = std::str::from_utf8(line)
                    .ok()
                    .is_some_and(|s| s.parse::<f64>().is_ok());
                if !ok {
                    return Err(RespError::InvalidValue("double"));
                }
                self.complete_value()
            }
            b'(' => {
                let digits = line
                    .strip_prefix(b"-")
                    .or_else(|| line.strip_prefix(b"+"))
                    .unwrap_or(line);
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(RespError::InvalidValue("big number"));
                }
                self.complete_value()
            }
            b'.' => {
                if !line.is_empty() {
                    return Err(RespError::InvalidValue("stream end"));
                }
                // `begin` checked that the top level is streamed.
                let level = self.stack.pop().ok_or(RespError::InvalidType(b'.'))?;
                if level.agg == Agg::Attribute {
                    return Ok(false);
                }
                self.complete_value()
            }
            b';' => {
                let n = parse_len(line)?;
                if n == 0 {
                    self.stack.pop();
                    return self.complete_value();
                }
                self.body(n, false)?;
                Ok(false)
            }
            b'$' | b'!' | b'=' => {
                if ty == b'$' && self.dir == Direction::Reply && line == b"-1" {
                    return self.complete_value();
                }
                if ty == b'$' && self.dir == Direction::Reply && line == b"?" {
                    self.push(Agg::StreamedString, None)?;
                    return Ok(false);
                }
                let n = parse_len(line)?;
                let capture = std::mem::take(&mut self.capture_next);
                if n == 0 {
                    self.state = State::BodyCr { chunk: false };
                    return Ok(false);
                }
                self.body(n, capture)?;
                Ok(false)
            }
            b'*' | b'%' | b'~' | b'>' | b'|' => {
                if self.dir == Direction::Reply && ty == b'*' && line == b"-1" {
                    return self.complete_value();
                }
                if self.dir == Direction::Request && self.stack.is_empty() && line == b"-1" {
                    // Redis ignores a null or empty multibulk request.
                    return self.complete_value();
                }
                let agg = if ty == b'|' {
                    Agg::Attribute
                } else {
                    Agg::Array
                };
                if self.dir == Direction::Reply && line == b"?" {
                    self.push(agg, None)?;
                    return Ok(false);
                }
                let n = parse_len(line)?;
                let count = if ty == b'%' || ty == b'|' {
                    n.checked_mul(2)
                } else {
                    Some(n)
                };
                let count = count.filter(|&c| c <= self.limits.max_elements).ok_or(
                    RespError::TooManyElements {
                        count: n,
                        max: self.limits.max_elements,
                    },
                )?;
                if self.dir == Direction::Request {
                    self.args = count;
                    self.capture_next = count > 0;
                }
                if count == 0 {
                    if agg == Agg::Attribute {
                        return Ok(false);
                    }
                    return self.complete_value();
                }
                self.push(agg, Some(count))?;
                Ok(false)
            }
            _ => Err(RespError::InvalidType(ty)),
        }
    }

    fn body(&mut self, n: u64, capture: bool) -> Result<(), RespError> {
        if n > self.limits.max_bulk_len {
            return Err(RespError::BulkTooLarge {
                len: n,
                max: self.limits.max_bulk_len,
            });
        }
        self.state = State::Body {
            remaining: n,
            capture,
        };
        Ok(())
    }

    fn push(&mut self, agg: Agg, remaining: Option<u64>) -> Result<(), RespError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(RespError::TooDeep {
                max: self.limits.max_depth,
            });
        }
        self.stack.push(Level {
            agg,
            remaining,
            seen: 0,
        });
        Ok(())
    }

    /// A value ended: count it in its parent(s); true when a top-level frame completed.
    fn complete_value(&mut self) -> Result<bool, RespError> {
        let max = self.limits.max_elements;
        loop {
            let Some(level) = self.stack.last_mut() else {
                return Ok(true);
            };
            let Some(remaining) = level.remaining.as_mut() else {
                // Streamed aggregate: ends with `.`, but its size is bounded all the same.
                level.seen += 1;
                if level.seen > max {
                    return Err(RespError::TooManyElements {
                        count: level.seen,
                        max,
                    });
                }
                return Ok(false);
            };
            *remaining -= 1;
            if *remaining > 0 {
                return Ok(false);
            }
            let done = self.stack.pop().map(|l| l.agg);
            if done == Some(Agg::Attribute) {
                // The annotated value still follows in the attribute's place.
                return Ok(false);
            }
        }
    }
}

/// Splits an inline request on ASCII whitespace (quotes are not interpreted).
pub fn inline_words(line: &[u8]) -> Vec<&[u8]> {
    line.split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .collect()
}

fn parse_i64(line: &[u8]) -> Option<i64> {
    std::str::from_utf8(line).ok()?.parse().ok()
}

/// A non-negative decimal length without sign or leading `+`.
fn parse_len(line: &[u8]) -> Result<u64, RespError> {
    if line.is_empty() || line.len() > 19 || !line.iter().all(u8::is_ascii_digit) {
        return Err(RespError::InvalidLength);
    }
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RespError::InvalidLength)
}
