//! Session-state plugin choice and options, shared by the PPE and PPU listeners.
//!
//! Both ends of a session run the same plugin, so PPE and PPU must agree on `kind`
//! and options for a pool; [`PluginOptions::to_plugin_config`] builds what
//! `poolgate-plugins` needs.

use serde::Deserialize;

use poolgate_plugins::{
    http::{Cooperative, HttpConfig},
    line::LineConfig,
    raw::RawConfig,
    resp::NonIdempotent,
    resp::RespConfig,
    PartialReply, PluginConfig,
};

use super::Checker;

/// Which plugin follows a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// Opaque byte stream: resumable only before the backend's first byte.
    Raw,
    /// One reply line per request line.
    Line,
    /// Redis RESP2/RESP3.
    Resp,
    /// HTTP/1.1: request replay and download resume.
    Http,
}

impl PluginKind {
    /// The name as written in configuration.
    pub fn name(self) -> &'static str {
        match self {
            PluginKind::Raw => "raw",
            PluginKind::Line => "line",
            PluginKind::Resp => "resp",
            PluginKind::Http => "http",
        }
    }
}

/// What to do with a partly delivered reply at failover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartialReplyChoice {
    /// The session is not resumable (safe).
    Abort,
    /// Replay and skip the bytes the client already has (deterministic replies only).
    Skip,
}

/// RESP requests that are not idempotent, in flight at failover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NonIdempotentChoice {
    /// At most once: answer them with an error.
    Fail,
    /// At least once: replay them.
    Replay,
}

/// Plugin options; every key is optional (defaults as in the shipped files).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginOptions {
    /// Unanswered client bytes kept for replay after a failover.
    pub max_replay_bytes: usize,
    /// Ask for a checkpoint (cookie) every this many replies; 0 = only on state changes (line, resp).
    pub checkpoint_every: u64,
    /// Partly delivered reply at failover (line, resp).
    pub partial_reply: PartialReplyChoice,
    /// Line terminator (line).
    pub line_terminator: String,
    /// Longest line, terminator included (line).
    pub max_line: usize,
    /// Lines the backend sends before the first request (line).
    pub greeting_lines: u64,
    /// Non-idempotent requests in flight at failover (resp).
    pub non_idempotent: NonIdempotentChoice,
    /// How often one request may be replayed after failovers (http).
    pub max_retries: u32,
    /// Resume an interrupted response body with `Range` + `If-Range` (http).
    pub resume_downloads: bool,
    /// Response field carrying a cooperative backend's session state; "" = none (http).
    pub cooperative_header: String,
    /// Target of the restore request that hands that state to the next backend (http).
    pub cooperative_restore_path: String,
}

impl Default for PluginOptions {
    fn default() -> Self {
        PluginOptions {
            max_replay_bytes: 1 << 20,
            checkpoint_every: 0,
            partial_reply: PartialReplyChoice::Abort,
            line_terminator: "\n".to_string(),
            max_line: 64 * 1024,
            greeting_lines: 0,
            non_idempotent: NonIdempotentChoice::Fail,
            max_retries: 3,
            resume_downloads: true,
            cooperative_header: String::new(),
            cooperative_restore_path: "/".to_string(),
        }
    }
}

/// Largest replay budget accepted (per session; it is memory held per session).
pub const MAX_REPLAY_BYTES: usize = 64 << 20;

impl PluginOptions {
    /// The plugin configuration for `kind` with these options.
    pub fn to_plugin_config(&self, kind: PluginKind) -> PluginConfig {
        let partial = match self.partial_reply {
            PartialReplyChoice::Abort => PartialReply::Abort,
            PartialReplyChoice::Skip => PartialReply::Skip,
        };
        match kind {
            PluginKind::Raw => PluginConfig::Raw(RawConfig {
                max_replay_bytes: self.max_replay_bytes,
            }),
            PluginKind::Line => PluginConfig::Line(LineConfig {
                terminator: self.line_terminator.as_bytes().to_vec(),
                max_line: self.max_line,
                max_replay_bytes: self.max_replay_bytes,
                greeting_lines: self.greeting_lines,
                partial_reply: partial,
                checkpoint_every: self.checkpoint_every,
            }),
            PluginKind::Resp => PluginConfig::Resp(RespConfig {
                max_replay_bytes: self.max_replay_bytes,
                non_idempotent: match self.non_idempotent {
                    NonIdempotentChoice::Fail => NonIdempotent::Fail,
                    NonIdempotentChoice::Replay => NonIdempotent::Replay,
                },
                partial_reply: partial,
                checkpoint_every: self.checkpoint_every,
                ..RespConfig::default()
            }),
            PluginKind::Http => PluginConfig::Http(HttpConfig {
                max_replay_bytes: self.max_replay_bytes,
                max_retries: self.max_retries,
                resume_downloads: self.resume_downloads,
                checkpoint_every: self.checkpoint_every,
                cooperative: (!self.cooperative_header.is_empty()).then(|| Cooperative {
                    header: self.cooperative_header.clone(),
                    restore_path: self.cooperative_restore_path.clone(),
                }),
                ..HttpConfig::default()
            }),
        }
    }

    pub(crate) fn validate(&self, check: &mut Checker<'_>, path: &str, kind: PluginKind) {
        if kind == PluginKind::Http {
            let h = &self.cooperative_header;
            if !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
            {
                check.error(
                    &format!("{path}.cooperative_header"),
                    "must be a header field name (token characters) or empty",
                );
            }
            let p = &self.cooperative_restore_path;
            if !p.starts_with('/') || p.bytes().any(|b| !b.is_ascii_graphic()) {
                check.error(
                    &format!("{path}.cooperative_restore_path"),
                    "must be an origin-form target starting with '/' (no spaces or controls)",
                );
            }
            if self.max_retries > 100 {
                check.error(&format!("{path}.max_retries"), "at most 100");
            }
        }
        if self.max_replay_bytes > MAX_REPLAY_BYTES {
            check.error(
                &format!("{path}.max_replay_bytes"),
                format!("at most {MAX_REPLAY_BYTES} bytes (it is held per session)"),
            );
        }
        if kind == PluginKind::Line {
            let t = self.line_terminator.len();
            if t == 0 || t > 8 {
                check.error(
                    &format!("{path}.line_terminator"),
                    "must be 1 to 8 bytes, e.g. \"\\n\" or \"\\r\\n\"",
                );
            }
            if self.max_line <= t || self.max_line > 16 << 20 {
                check.error(
                    &format!("{path}.max_line"),
                    "must be longer than the terminator and at most 16 MiB",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_each_plugin_with_the_options() {
        let o = PluginOptions {
            max_replay_bytes: 77,
            checkpoint_every: 3,
            line_terminator: "\r\n".into(),
            non_idempotent: NonIdempotentChoice::Replay,
            ..PluginOptions::default()
        };
        match o.to_plugin_config(PluginKind::Raw) {
            PluginConfig::Raw(c) => assert_eq!(c.max_replay_bytes, 77),
            other => panic!("{other:?}"),
        }
        match o.to_plugin_config(PluginKind::Line) {
            PluginConfig::Line(c) => {
                assert_eq!(c.terminator, b"\r\n");
                assert_eq!(c.checkpoint_every, 3);
            }
            other => panic!("{other:?}"),
        }
        match o.to_plugin_config(PluginKind::Resp) {
            PluginConfig::Resp(c) => assert_eq!(c.non_idempotent, NonIdempotent::Replay),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            o.to_plugin_config(PluginKind::Resp).protocol(),
            PluginKind::Resp.name()
        );
        let h = PluginOptions {
            max_retries: 5,
            cooperative_header: "X-Backend-Session".into(),
            ..o.clone()
        };
        match h.to_plugin_config(PluginKind::Http) {
            PluginConfig::Http(c) => {
                assert_eq!(c.max_retries, 5);
                assert_eq!(c.max_replay_bytes, 77);
                assert!(c.resume_downloads);
                assert_eq!(c.cooperative.unwrap().header, "X-Backend-Session");
            }
            other => panic!("{other:?}"),
        }
        match o.to_plugin_config(PluginKind::Http) {
            PluginConfig::Http(c) => assert!(c.cooperative.is_none()),
            other => panic!("{other:?}"),
        }
        assert_eq!(PluginKind::Http.name(), "http");
    }
}
