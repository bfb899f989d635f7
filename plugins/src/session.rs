//! The plugin trait and the values it exchanges with the drivers.

use std::ops::Range;

use thiserror::Error;

use crate::http::HttpError;
use crate::resp::RespError;
use pool_core::cookie::CookieParts;

/// What the driver sends on after feeding a chunk of backend bytes, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Forward this range of the chunk just fed.
    Forward(Range<usize>),
    /// Send these bytes, made by the plugin (e.g. a RESP error for a request not replayed).
    Inject(Vec<u8>),
}

/// Applies deliveries to a chunk: the bytes the other side should receive.
pub fn render(chunk: &[u8], deliveries: &[Delivery]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunk.len());
    for d in deliveries {
        match d {
            Delivery::Forward(r) => out.extend_from_slice(&chunk[r.clone()]),
            Delivery::Inject(b) => out.extend_from_slice(b),
        }
    }
    out
}

/// Appends a forward, merging it with a directly preceding one.
pub(crate) fn forward(deliver: &mut Vec<Delivery>, range: Range<usize>) {
    if range.is_empty() {
        return;
    }
    if let Some(Delivery::Forward(last)) = deliver.last_mut() {
        if last.end == range.start {
            last.end = range.end;
            return;
        }
    }
    deliver.push(Delivery::Forward(range));
}

/// Result of feeding client bytes. Client bytes are always relayed unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientProgress {
    /// Complete requests framed in this chunk.
    pub requests: u64,
    /// Set once, when the plugin lost track of the session in this chunk; from then on it
    /// only relays, and the session is no longer resumable.
    pub error: Option<PluginError>,
}

/// Result of feeding backend bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendProgress {
    /// Requests answered by this chunk (replies completed, not counting swallowed or
    /// server-pushed frames; counting injected errors).
    pub replies: u64,
    /// PE side: state worth a new cookie changed (or `checkpoint_every` replies passed);
    /// call [`SessionState::checkpoint`] and send the cookie.
    pub checkpoint: bool,
    /// Set once, when the plugin lost track of the session in this chunk (see
    /// [`ClientProgress::error`]). [`PluginError::PreludeRejected`] means the PE could not
    /// restore the backend and should close the session.
    pub error: Option<PluginError>,
    /// PU side: close the client connection now, after sending what was delivered so far
    /// (e.g. an HTTP download resumed from a backend whose validator changed: a short body
    /// the client detects is better than a spliced one). The plugin forwards nothing more.
    pub close_client: bool,
}

/// PE side: how to bring a fresh backend to the state saved in a cookie.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restore {
    /// Bytes to write to the backend before any client bytes.
    pub prelude: Vec<u8>,
    /// Backend reply frames the plugin will swallow (replies to the prelude, greetings).
    pub swallow_replies: u64,
}

/// PU side: what to do with the session when its PE failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failover {
    /// Resume on another PE.
    Resume(Resume),
    /// The session cannot be moved; close it towards the client.
    NotResumable(NotResumable),
}

/// How to resume a session on a new PE (after presenting the latest cookie).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    /// Client bytes to send to the new PE first: the requests not yet answered (and the
    /// incomplete request in progress), in order.
    pub replay: Vec<u8>,
    /// Bytes to send to the client now (e.g. errors for requests that are not replayed).
    pub to_client: Vec<u8>,
    /// Bytes of the first reply the client already has; the plugin drops them from the new
    /// backend stream itself (informational).
    pub skip_reply_bytes: u64,
    /// Complete requests in `replay`.
    pub replayed_requests: u64,
    /// Requests answered with an error instead of being replayed (at-most-once).
    pub failed_requests: u64,
}

/// Why a session cannot be moved to another PE.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum NotResumable {
    /// Raw plugin: the backend already sent bytes, its state cannot be rebuilt.
    #[error("the backend already spoke")]
    BackendSpoke,
    /// The client has part of a reply that cannot be completed from a replay.
    #[error("a partial reply was delivered")]
    PartialReply,
    /// An unanswered request was too large to keep for replay.
    #[error("replay buffer overflowed")]
    ReplayOverflow,
    /// Failover before the backend greeting was complete.
    #[error("greeting incomplete")]
    GreetingIncomplete,
    /// Inside a transaction or with watched keys: server state we cannot rebuild.
    #[error("inside a transaction or WATCH")]
    Transaction,
    /// The session switched to a mode whose replies we do not track (pub/sub, MONITOR, ...).
    #[error("session in untracked mode {0}")]
    Mode(&'static str),
    /// The backend gave its final answer before the request was complete (HTTP: an
    /// early `413`, `401`, or a `400` for a cut body); the rest of the request has no
    /// answer to wait for, so replies are no longer tracked.
    #[error("the backend answered before the request was complete")]
    EarlyReply,
    /// The plugin lost track of the session.
    #[error("plugin lost track: {0}")]
    Broken(PluginError),
}

impl NotResumable {
    /// Stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            NotResumable::BackendSpoke => "backend_spoke",
            NotResumable::PartialReply => "partial_reply",
            NotResumable::ReplayOverflow => "replay_overflow",
            NotResumable::GreetingIncomplete => "greeting_incomplete",
            NotResumable::Transaction => "transaction",
            NotResumable::Mode(_) => "mode",
            NotResumable::EarlyReply => "early_reply",
            NotResumable::Broken(_) => "broken",
        }
    }
}

/// Why a plugin lost track of a session.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PluginError {
    /// A RESP framing error.
    #[error("RESP: {0}")]
    Resp(#[from] RespError),
    /// An HTTP framing error (see [`HttpError::status`] for the answer it maps to).
    #[error("HTTP: {0}")]
    Http(#[from] HttpError),
    /// A line longer than the configured maximum.
    #[error("line longer than {max} bytes")]
    LineTooLong {
        /// Configured maximum.
        max: usize,
    },
    /// The backend sent a reply with no request waiting for it.
    #[error("reply without a request")]
    UnsolicitedReply,
    /// After failover the new reply is shorter than what the client already received.
    #[error("replayed reply differs from the one partially delivered")]
    ReplayMismatch,
    /// The fresh backend refused a restored prelude command.
    #[error("backend refused restored command {0}")]
    PreludeRejected(String),
    /// A cookie part this plugin cannot use.
    #[error("bad cookie part: {0}")]
    BadCookie(&'static str),
}

impl PluginError {
    /// Stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Resp(_) => "resp_framing",
            PluginError::Http(_) => "http_framing",
            PluginError::LineTooLong { .. } => "line_too_long",
            PluginError::UnsolicitedReply => "unsolicited_reply",
            PluginError::ReplayMismatch => "replay_mismatch",
            PluginError::PreludeRejected(_) => "prelude_rejected",
            PluginError::BadCookie(_) => "bad_cookie",
        }
    }
}

/// When the client holds part of a reply at failover.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PartialReply {
    /// Not resumable (safe default).
    #[default]
    Abort,
    /// Replay the request and drop as many bytes of the new reply as the client already
    /// has; correct only when replies are deterministic (for RESP: read-only commands).
    Skip,
}

/// The public cookie part every plugin uses: state the PU derives from the traffic.
///
/// Encoding: version byte 1, answered requests (u64 BE), backend bytes delivered (u64 BE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublicState {
    /// Requests answered to the client.
    pub answered: u64,
    /// Backend bytes delivered to the client.
    pub delivered: u64,
}

impl PublicState {
    /// Encoded length.
    pub const LEN: usize = 17;

    /// Encodes for the public cookie part.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.push(1);
        out.extend_from_slice(&self.answered.to_be_bytes());
        out.extend_from_slice(&self.delivered.to_be_bytes());
        out
    }

    /// Decodes; an empty part is the zero state (a cookie sealed before any traffic).
    pub fn decode(bytes: &[u8]) -> Result<Self, PluginError> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        if bytes.len() != Self::LEN || bytes[0] != 1 {
            return Err(PluginError::BadCookie("public part"));
        }
        let mut a = [0; 8];
        a.copy_from_slice(&bytes[1..9]);
        let mut d = [0; 8];
        d.copy_from_slice(&bytes[9..17]);
        Ok(Self {
            answered: u64::from_be_bytes(a),
            delivered: u64::from_be_bytes(d),
        })
    }
}

/// One session's protocol state, on the PU or the PE side (sans-IO).
///
/// All methods are total: framing problems are reported once in the progress values and
/// then the plugin relays everything unchanged (and the session is no longer resumable).
pub trait SessionState: Send + std::fmt::Debug {
    /// Protocol name ("raw", "line", "resp").
    fn protocol(&self) -> &'static str;

    /// Client→backend bytes, as relayed (unchanged).
    fn on_client_bytes(&mut self, bytes: &[u8]) -> ClientProgress;

    /// Backend→client bytes; appends to `deliver` what to forward (ranges of `bytes` and
    /// injected bytes, in order). Everything not listed is dropped.
    fn on_backend_bytes(&mut self, bytes: &[u8], deliver: &mut Vec<Delivery>) -> BackendProgress;

    /// PU side: the state to write into the cookie's public part before failover.
    fn public_state(&self) -> PublicState;

    /// PE side: the cookie parts for the session's current state.
    fn checkpoint(&mut self) -> CookieParts;

    /// PE side: restore from an opened cookie; call before feeding any bytes.
    fn restore(&mut self, parts: &CookieParts) -> Result<Restore, PluginError>;

    /// PU side: the PE failed; decide whether and how to resume. On `Resume` the plugin
    /// expects the new PE's backend stream next.
    fn failover(&mut self) -> Failover;
}
