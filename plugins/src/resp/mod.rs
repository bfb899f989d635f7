//! Redis serialization protocol (RESP2 and RESP3).
//!
//! [`scanner`] frames both directions incrementally; [`command`] classifies requests and
//! encodes the session prelude; [`session`] is the [`crate::SessionState`] for Redis.

pub mod command;
pub mod scanner;
pub mod session;

pub use command::{classify, encode_command, parse_args, CommandClass};
pub use scanner::{Advance, Direction, Frame, FrameKind, RespError, RespLimits, RespScanner};
pub use session::{NonIdempotent, RespConfig, RespSession};
