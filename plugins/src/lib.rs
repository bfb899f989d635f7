//! Session-state plugins per legacy protocol: framing, checkpoints and replay.
//!
//! A plugin instance follows one session on one side, sans-IO: the driver feeds it the
//! bytes it relays and does what the returned values say.
//!
//! - **PPU** (proxy pool user): feeds client→backend bytes ([`SessionState::on_client_bytes`])
//!   and backend→client bytes ([`SessionState::on_backend_bytes`], forwarding what the
//!   returned [`Delivery`] list says). It rewrites the public part of the latest cookie
//!   with [`SessionState::public_state`] and, when the PE fails, asks
//!   [`SessionState::failover`] whether and how to resume on another PE.
//! - **PPE** (proxy pool element): feeds the same two streams, sends a cookie made from
//!   [`SessionState::checkpoint`] right after the session opens and whenever
//!   [`BackendProgress::checkpoint`] says so, and on a session that arrives with a cookie
//!   calls [`SessionState::restore`] and writes [`Restore::prelude`] to the fresh backend
//!   before any client bytes; the plugin then swallows the prelude's replies itself (they
//!   are left out of the deliveries).
//!
//! Plugins: [`raw`] (abort and restart), [`line`] (one reply line per request line),
//! [`resp`] (Redis RESP2/RESP3) and [`http`] (HTTP/1.1 with request replay and download
//! resume). [`proxy_protocol`] encodes PROXY protocol headers for tcp/tls listeners.

pub mod http;
pub mod line;
pub mod proxy_protocol;
pub mod raw;
mod replay;
pub mod resp;
mod session;

pub use pool_core::cookie::CookieParts;
pub use session::{
    render, BackendProgress, ClientProgress, Delivery, Failover, NotResumable, PartialReply,
    PluginError, PublicState, Restore, Resume, SessionState,
};

/// Which plugin a pool uses, with its configuration; builds one instance per session.
#[derive(Clone, Debug)]
pub enum PluginConfig {
    /// [`raw::RawSession`].
    Raw(raw::RawConfig),
    /// [`line::LineSession`].
    Line(line::LineConfig),
    /// [`resp::RespSession`].
    Resp(resp::RespConfig),
    /// [`http::HttpSession`].
    Http(http::HttpConfig),
}

impl PluginConfig {
    /// A fresh plugin instance for a new session (either side).
    pub fn new_session(&self) -> Box<dyn SessionState> {
        match self {
            PluginConfig::Raw(c) => Box::new(raw::RawSession::new(c.clone())),
            PluginConfig::Line(c) => Box::new(line::LineSession::new(c.clone())),
            PluginConfig::Resp(c) => Box::new(resp::RespSession::new(c.clone())),
            PluginConfig::Http(c) => Box::new(http::HttpSession::new(c.clone())),
        }
    }

    /// The plugin's protocol name (as in configuration files).
    pub fn protocol(&self) -> &'static str {
        match self {
            PluginConfig::Raw(_) => "raw",
            PluginConfig::Line(_) => "line",
            PluginConfig::Resp(_) => "resp",
            PluginConfig::Http(_) => "http",
        }
    }
}
