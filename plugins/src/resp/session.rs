//! [`SessionState`] for Redis: pipelined requests, the session prelude, failover.
//!
//! - **Answered count** (public cookie part): every reply frame answers the oldest
//!   unanswered request; RESP3 pushes (`>`) are not replies; requests with no arguments
//!   (empty inline lines, `*0`) get no reply and are not counted.
//! - **Prelude** restored on a fresh backend (replies swallowed by the PE): `AUTH`
//!   (private part, it holds credentials; `HELLO ... AUTH u p` is stored as `AUTH u p`),
//!   then `HELLO <protover>`, `SELECT`, `CLIENT SETNAME` (immutable part, as RESP
//!   commands). A prelude command counts once its reply is not an error; `RESET` clears it.
//! - **Failover**: unanswered read-only and idempotent requests are replayed; unanswered
//!   non-idempotent ones are replayed (at-least-once) or answered with
//!   `-ERR poolgate: ...` in their place in the reply order (at-most-once, default). An
//!   incomplete request is always replayed: the backend cannot have executed it.
//! - **Not resumable**: inside `MULTI`/`EXEC` or with `WATCH`ed keys (server state we do
//!   not rebuild); after `SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE`, `MONITOR`, `SYNC`,
//!   `PSYNC`, `CLIENT REPLY` or `CLIENT TRACKING` (reply counting no longer holds; the
//!   plugin then only relays); with a partly delivered reply unless the pool chose
//!   [`PartialReply::Skip`] and the command is read-only.

use std::collections::VecDeque;

use pool_core::cookie::CookieParts;

use super::command::{classify, encode_command, parse_args, CommandClass};
use super::scanner::{Direction, Frame, FrameKind, RespLimits, RespScanner};
use crate::replay::ReplayQueue;
use crate::session::{forward, PublicState};
use crate::{
    BackendProgress, ClientProgress, Delivery, Failover, NotResumable, PartialReply, PluginError,
    Restore, Resume, SessionState,
};

/// The error a client receives for a non-idempotent request that is not replayed.
pub const NOT_REPLAYED_ERROR: &[u8] =
    b"-ERR poolgate: backend failed before replying; command not retried (not idempotent)\r\n";

/// Most arguments parsed from a request to learn its effect.
const MAX_EFFECT_ARGS: usize = 64;

/// What to do with unanswered non-idempotent requests at failover.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NonIdempotent {
    /// At-most-once: answer them with [`NOT_REPLAYED_ERROR`].
    #[default]
    Fail,
    /// At-least-once: replay them.
    Replay,
}

/// Configuration of the RESP plugin.
#[derive(Clone, Debug)]
pub struct RespConfig {
    /// Framing limits (both directions).
    pub limits: RespLimits,
    /// Budget for unanswered request bytes kept for replay.
    pub max_replay_bytes: usize,
    /// Policy for non-idempotent requests in flight at failover.
    pub non_idempotent: NonIdempotent,
    /// What to do with a partly delivered reply at failover.
    pub partial_reply: PartialReply,
    /// Ask for a checkpoint every this many replies, besides prelude changes (0: never).
    pub checkpoint_every: u64,
}

impl Default for RespConfig {
    /// Redis limits, 4 MiB replay budget, at-most-once, abort on partial replies, checkpoints
    /// only when the prelude changes.
    fn default() -> Self {
        Self {
            limits: RespLimits::default(),
            max_replay_bytes: 4 << 20,
            non_idempotent: NonIdempotent::Fail,
            partial_reply: PartialReply::Abort,
            checkpoint_every: 0,
        }
    }
}

/// Server-side session state a request changes once it succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Effect {
    None,
    Auth(Vec<u8>),
    Select(Vec<u8>),
    SetName(Vec<u8>),
    Hello {
        proto: Vec<u8>,
        auth: Option<Vec<u8>>,
        setname: Option<Vec<u8>>,
    },
    Reset,
    Multi,
    EndTx,
    Watch,
    Unwatch,
    /// A prelude command we could not parse: after success, stop tracking.
    Untracked(&'static str),
}

#[derive(Clone, Debug)]
struct Meta {
    class: CommandClass,
    effect: Effect,
    /// Answered by an injected error instead of being replayed.
    failed: bool,
}

/// The commands that rebuild the session on a fresh backend (canonical RESP).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Prelude {
    auth: Option<Vec<u8>>,
    hello: Option<Vec<u8>>,
    select: Option<Vec<u8>>,
    setname: Option<Vec<u8>>,
}

impl Prelude {
    fn private(&self) -> Vec<u8> {
        self.auth.clone().unwrap_or_default()
    }

    fn immutable(&self) -> Vec<u8> {
        [&self.hello, &self.select, &self.setname]
            .into_iter()
            .flatten()
            .flatten()
            .copied()
            .collect()
    }
}

/// RESP plugin state of one session.
#[derive(Debug)]
pub struct RespSession {
    cfg: RespConfig,
    req: RespScanner,
    rep: RespScanner,
    queue: ReplayQueue<Meta>,
    prelude: Prelude,
    answered: u64,
    delivered: u64,
    in_tx: bool,
    watching: bool,
    swallow: VecDeque<&'static str>,
    skip_left: u64,
    reply_seen: u64,
    since_checkpoint: u64,
    dead: Option<NotResumable>,
}

impl RespSession {
    /// A fresh session.
    pub fn new(cfg: RespConfig) -> Self {
        Self {
            req: RespScanner::new(Direction::Request, cfg.limits),
            rep: RespScanner::new(Direction::Reply, cfg.limits),
            queue: ReplayQueue::new(cfg.max_replay_bytes),
            cfg,
            prelude: Prelude::default(),
            answered: 0,
            delivered: 0,
            in_tx: false,
            watching: false,
            swallow: VecDeque::new(),
            skip_left: 0,
            reply_seen: 0,
            since_checkpoint: 0,
            dead: None,
        }
    }

    /// Unanswered complete requests (for metrics and tests).
    pub fn unanswered(&self) -> usize {
        self.queue.pending.len()
    }

    fn kill(&mut self, reason: NotResumable) {
        if self.dead.is_none() {
            self.dead = Some(reason);
        }
    }

    fn broken(&mut self, e: PluginError) -> Option<PluginError> {
        if self.dead.is_some() {
            return None;
        }
        self.dead = Some(NotResumable::Broken(e.clone()));
        Some(e)
    }

    /// Learns what a complete request does; `Err` when it leaves tracked territory.
    fn analyse(frame: &Frame, raw: Option<&[u8]>) -> Result<Meta, &'static str> {
        let name = frame.command.as_slice();
        let needs_args = matches!(name, b"AUTH" | b"SELECT" | b"HELLO" | b"CLIENT" | b"ZADD");
        // Inline quoting (`AUTH "p w"`) is not interpreted: such arguments cannot be restored.
        let quoted = frame.kind == FrameKind::Inline
            && raw.is_some_and(|r| r.iter().any(|&b| b == b'"' || b == b'\''));
        let args = if needs_args && !quoted {
            raw.and_then(|r| parse_args(r, MAX_EFFECT_ARGS))
        } else {
            None
        };
        let class = classify(name, args.as_deref());
        let upper = |i: usize| {
            args.as_ref()
                .and_then(|a| a.get(i))
                .map(|a| a.to_ascii_uppercase())
        };
        let effect = match name {
            b"SUBSCRIBE" => return Err("SUBSCRIBE"),
            b"PSUBSCRIBE" => return Err("PSUBSCRIBE"),
            b"SSUBSCRIBE" => return Err("SSUBSCRIBE"),
            b"MONITOR" => return Err("MONITOR"),
            b"SYNC" | b"PSYNC" => return Err("SYNC"),
            b"CLIENT" => match upper(1).as_deref() {
                Some(b"REPLY") => return Err("CLIENT REPLY"),
                Some(b"TRACKING") => return Err("CLIENT TRACKING"),
                Some(b"SETNAME") => match args.as_deref() {
                    Some([_, _, n]) => Effect::SetName(encode_command(&[b"CLIENT", b"SETNAME", n])),
                    _ => Effect::Untracked("CLIENT SETNAME"),
                },
                Some(_) => Effect::None,
                None => Effect::Untracked("CLIENT"),
            },
            b"AUTH" => match args.as_deref() {
                Some(a @ ([_, _] | [_, _, _])) => {
                    let refs: Vec<&[u8]> = a.iter().map(Vec::as_slice).collect();
                    Effect::Auth(encode_command(&refs))
                }
                _ => Effect::Untracked("AUTH"),
            },
            b"SELECT" => match args.as_deref() {
                Some([_, db]) => Effect::Select(encode_command(&[b"SELECT", db])),
                _ => Effect::Untracked("SELECT"),
            },
            b"HELLO" => match args.as_deref() {
                Some([_]) => Effect::None,
                Some([_, proto, opts @ ..]) => hello_effect(proto, opts),
                _ => Effect::Untracked("HELLO"),
            },
            b"RESET" => Effect::Reset,
            b"MULTI" => Effect::Multi,
            b"EXEC" | b"DISCARD" => Effect::EndTx,
            b"WATCH" => Effect::Watch,
            b"UNWATCH" => Effect::Unwatch,
            _ => Effect::None,
        };
        Ok(Meta {
            class,
            effect,
            failed: false,
        })
    }

    /// Applies a request's effect once its reply arrived; true when the prelude changed.
    fn apply(&mut self, effect: Effect, error: bool) -> bool {
        let before = self.prelude.clone();
        match effect {
            Effect::EndTx => {
                // EXEC and DISCARD end the transaction and unwatch even when they fail.
                self.in_tx = false;
                self.watching = false;
            }
            _ if error => {}
            Effect::None => {}
            Effect::Auth(c) => self.prelude.auth = Some(c),
            Effect::Select(c) => self.prelude.select = Some(c),
            Effect::SetName(c) => self.prelude.setname = Some(c),
            Effect::Hello {
                proto,
                auth,
                setname,
            } => {
                self.prelude.hello = Some(encode_command(&[b"HELLO", &proto]));
                if auth.is_some() {
                    self.prelude.auth = auth;
                }
                if setname.is_some() {
                    self.prelude.setname = setname;
                }
            }
            Effect::Reset => {
                self.prelude = Prelude::default();
                self.in_tx = false;
                self.watching = false;
            }
            Effect::Multi => self.in_tx = true,
            Effect::Watch => self.watching = true,
            Effect::Unwatch => self.watching = false,
            Effect::Untracked(name) => self.kill(NotResumable::Mode(name)),
        }
        before != self.prelude
    }

    /// Answers leading not-replayed requests with errors.
    fn inject_failed(&mut self, out: &mut Vec<u8>) -> u64 {
        let mut n = 0;
        while self.queue.pending.front().is_some_and(|p| p.meta.failed) {
            self.queue.pop();
            out.extend_from_slice(NOT_REPLAYED_ERROR);
            self.answered += 1;
            n += 1;
        }
        n
    }
}

fn hello_effect(proto: &[u8], opts: &[Vec<u8>]) -> Effect {
    let (mut auth, mut setname) = (None, None);
    let mut i = 0;
    while i < opts.len() {
        let opt = opts[i].to_ascii_uppercase();
        match opt.as_slice() {
            b"AUTH" if i + 2 < opts.len() => {
                auth = Some(encode_command(&[b"AUTH", &opts[i + 1], &opts[i + 2]]));
                i += 3;
            }
            b"SETNAME" if i + 1 < opts.len() => {
                setname = Some(encode_command(&[b"CLIENT", b"SETNAME", &opts[i + 1]]));
                i += 2;
            }
            _ => return Effect::Untracked("HELLO"),
        }
    }
    Effect::Hello {
        proto: proto.to_vec(),
        auth,
        setname,
    }
}

/// Parses a cookie part made of prelude commands, each checked against `allowed`.
fn prelude_commands(bytes: &[u8], allowed: &[&[u8]]) -> Result<Vec<Vec<Vec<u8>>>, PluginError> {
    let mut scanner = RespScanner::new(Direction::Request, RespLimits::default());
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let adv = scanner
            .advance(&bytes[pos..])
            .map_err(|_| PluginError::BadCookie("prelude framing"))?;
        let Some(frame) = adv.frame else {
            return Err(PluginError::BadCookie("prelude truncated"));
        };
        let raw = &bytes[pos..pos + adv.consumed];
        pos += adv.consumed;
        let args =
            parse_args(raw, MAX_EFFECT_ARGS).ok_or(PluginError::BadCookie("prelude args"))?;
        if !allowed.contains(&frame.command.as_slice()) || args.is_empty() {
            return Err(PluginError::BadCookie("prelude command not allowed"));
        }
        out.push(args);
    }
    Ok(out)
}

impl SessionState for RespSession {
    fn protocol(&self) -> &'static str {
        "resp"
    }

    fn on_client_bytes(&mut self, bytes: &[u8]) -> ClientProgress {
        let mut progress = ClientProgress::default();
        let mut pos = 0;
        while pos < bytes.len() && self.dead.is_none() {
            let adv = match self.req.advance(&bytes[pos..]) {
                Ok(a) => a,
                Err(e) => {
                    progress.error = self.broken(e.into());
                    break;
                }
            };
            self.queue.extend_partial(&bytes[pos..pos + adv.consumed]);
            pos += adv.consumed;
            let Some(frame) = adv.frame else { continue };
            if frame.args == 0 {
                self.queue.discard_partial();
                continue;
            }
            match Self::analyse(&frame, self.queue.partial()) {
                Ok(meta) => {
                    self.queue.finish(meta);
                    progress.requests += 1;
                }
                Err(mode) => self.kill(NotResumable::Mode(mode)),
            }
        }
        progress
    }

    fn on_backend_bytes(&mut self, bytes: &[u8], deliver: &mut Vec<Delivery>) -> BackendProgress {
        let mut progress = BackendProgress::default();
        let mut pos = 0;
        while pos < bytes.len() {
            if self.dead.is_some() {
                forward(deliver, pos..bytes.len());
                self.delivered += (bytes.len() - pos) as u64;
                break;
            }
            let adv = match self.rep.advance(&bytes[pos..]) {
                Ok(a) => a,
                Err(e) => {
                    progress.error = self.broken(e.into());
                    continue;
                }
            };
            let seg = pos..pos + adv.consumed;
            pos += adv.consumed;
            if !self.swallow.is_empty() {
                if let Some(frame) = adv.frame {
                    if frame.kind != FrameKind::Push {
                        let name = self.swallow.pop_front().unwrap_or("prelude");
                        if frame.kind.is_error() {
                            progress.error =
                                self.broken(PluginError::PreludeRejected(name.to_string()));
                        }
                    }
                }
                continue;
            }
            let n = adv.consumed as u64;
            let skip = self.skip_left.min(n);
            self.skip_left -= skip;
            forward(deliver, seg.start + skip as usize..seg.end);
            self.delivered += n - skip;
            self.reply_seen += n;
            let Some(frame) = adv.frame else { continue };
            self.reply_seen = 0;
            if self.skip_left > 0 {
                progress.error = self.broken(PluginError::ReplayMismatch);
                continue;
            }
            if frame.kind == FrameKind::Push {
                continue;
            }
            let Some(p) = self.queue.pop() else {
                progress.error = self.broken(PluginError::UnsolicitedReply);
                continue;
            };
            self.answered += 1;
            progress.replies += 1;
            self.since_checkpoint += 1;
            if self.apply(p.meta.effect, frame.kind.is_error()) {
                progress.checkpoint = true;
            }
            let mut errors = Vec::new();
            let injected = self.inject_failed(&mut errors);
            if injected > 0 {
                progress.replies += injected;
                deliver.push(Delivery::Inject(errors));
            }
        }
        if self.cfg.checkpoint_every > 0 && self.since_checkpoint >= self.cfg.checkpoint_every {
            progress.checkpoint = true;
        }
        progress
    }

    fn public_state(&self) -> PublicState {
        PublicState {
            answered: self.answered,
            delivered: self.delivered,
        }
    }

    fn checkpoint(&mut self) -> CookieParts {
        self.since_checkpoint = 0;
        CookieParts {
            public: self.public_state().encode(),
            immutable: self.prelude.immutable(),
            private: self.prelude.private(),
        }
    }

    fn restore(&mut self, parts: &CookieParts) -> Result<Restore, PluginError> {
        let public = PublicState::decode(&parts.public)?;
        let private = prelude_commands(&parts.private, &[b"AUTH"])?;
        let immutable = prelude_commands(&parts.immutable, &[b"HELLO", b"SELECT", b"CLIENT"])?;
        let mut prelude = Prelude::default();
        for args in private.iter().chain(&immutable) {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let name = args[0].to_ascii_uppercase();
            let slot = match name.as_slice() {
                b"AUTH" => &mut prelude.auth,
                b"HELLO" => &mut prelude.hello,
                b"SELECT" => &mut prelude.select,
                b"CLIENT" if args.len() == 3 && args[1].eq_ignore_ascii_case(b"SETNAME") => {
                    &mut prelude.setname
                }
                _ => return Err(PluginError::BadCookie("prelude command not allowed")),
            };
            if slot.replace(encode_command(&refs)).is_some() {
                return Err(PluginError::BadCookie("duplicate prelude command"));
            }
        }
        // Replies come back in prelude order: AUTH, HELLO, SELECT, CLIENT SETNAME.
        let slots = [
            (&prelude.auth, "AUTH"),
            (&prelude.hello, "HELLO"),
            (&prelude.select, "SELECT"),
            (&prelude.setname, "CLIENT SETNAME"),
        ];
        let names: VecDeque<&'static str> = slots
            .iter()
            .filter(|(s, _)| s.is_some())
            .map(|(_, n)| *n)
            .collect();
        let mut bytes = prelude.private();
        bytes.extend_from_slice(&prelude.immutable());
        self.answered = public.answered;
        self.delivered = public.delivered;
        self.prelude = prelude;
        self.swallow = names;
        Ok(Restore {
            prelude: bytes,
            swallow_replies: self.swallow.len() as u64,
        })
    }

    fn failover(&mut self) -> Failover {
        if let Some(reason) = &self.dead {
            return Failover::NotResumable(reason.clone());
        }
        let tx_pending = self
            .queue
            .pending
            .iter()
            .any(|p| matches!(p.meta.effect, Effect::Multi | Effect::EndTx | Effect::Watch));
        if self.in_tx || self.watching || tx_pending {
            return Failover::NotResumable(NotResumable::Transaction);
        }
        if self.queue.overflowed() {
            return Failover::NotResumable(NotResumable::ReplayOverflow);
        }
        let seen = self.reply_seen + self.skip_left;
        if seen > 0 {
            let push = self.rep.in_frame() && self.rep.current_kind() == Some(FrameKind::Push);
            let front_ok = self
                .queue
                .pending
                .front()
                .is_some_and(|p| p.meta.class == CommandClass::ReadOnly && !p.meta.failed);
            if push || !front_ok || self.cfg.partial_reply == PartialReply::Abort {
                return Failover::NotResumable(NotResumable::PartialReply);
            }
        }
        if self.cfg.non_idempotent == NonIdempotent::Fail {
            for p in self.queue.pending.iter_mut() {
                if p.meta.class == CommandClass::NonIdempotent {
                    p.meta.failed = true;
                }
            }
        }
        let mut to_client = Vec::new();
        let failed_front = self.inject_failed(&mut to_client);
        let mut replay = Vec::new();
        let mut replayed = 0;
        let mut failed = failed_front;
        for p in &self.queue.pending {
            if p.meta.failed {
                failed += 1;
            } else {
                replayed += 1;
                replay.extend_from_slice(p.bytes.as_deref().unwrap_or_default());
            }
        }
        replay.extend_from_slice(self.queue.partial().unwrap_or_default());
        self.rep.reset();
        self.reply_seen = 0;
        self.skip_left = seen;
        Failover::Resume(Resume {
            replay,
            to_client,
            skip_reply_bytes: seen,
            replayed_requests: replayed,
            failed_requests: failed,
        })
    }
}
