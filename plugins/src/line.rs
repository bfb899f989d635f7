//! One request line, one reply line (with a configurable terminator).
//!
//! Each reply line answers the oldest unanswered request line. Unanswered requests are
//! kept (bounded) and replayed after failover. The public cookie part carries the answered
//! count; there is no immutable or private state. A backend that greets first (SMTP-like)
//! is described by `greeting_lines`: those lines are delivered on a fresh session and
//! swallowed after a restore.

use pool_core::cookie::CookieParts;

use crate::replay::ReplayQueue;
use crate::session::{forward, PublicState};
use crate::{
    BackendProgress, ClientProgress, Delivery, Failover, NotResumable, PartialReply, PluginError,
    Restore, Resume, SessionState,
};

/// Configuration of the line plugin.
#[derive(Clone, Debug)]
pub struct LineConfig {
    /// Line terminator (non-empty), e.g. `\n` or `\r\n`.
    pub terminator: Vec<u8>,
    /// Longest line accepted, terminator included.
    pub max_line: usize,
    /// Budget for unanswered request bytes kept for replay.
    pub max_replay_bytes: usize,
    /// Lines the backend sends before the first request.
    pub greeting_lines: u64,
    /// What to do when the client holds part of a reply at failover.
    pub partial_reply: PartialReply,
    /// Ask for a checkpoint every this many replies (0: never).
    pub checkpoint_every: u64,
}

impl Default for LineConfig {
    fn default() -> Self {
        Self {
            terminator: b"\n".to_vec(),
            max_line: 64 * 1024,
            max_replay_bytes: 1 << 20,
            greeting_lines: 0,
            partial_reply: PartialReply::Abort,
            checkpoint_every: 0,
        }
    }
}

/// Incremental line splitter: finds a multi-byte terminator across chunk boundaries.
#[derive(Clone, Debug)]
pub struct LineFramer {
    term: Vec<u8>,
    /// KMP failure function of `term`.
    fail: Vec<usize>,
    matched: usize,
    len: usize,
    max: usize,
}

impl LineFramer {
    /// A framer for `terminator` (an empty terminator is treated as `\n`).
    pub fn new(terminator: &[u8], max_line: usize) -> Self {
        let term = if terminator.is_empty() {
            b"\n".to_vec()
        } else {
            terminator.to_vec()
        };
        let mut fail = vec![0; term.len()];
        let mut k = 0;
        for i in 1..term.len() {
            while k > 0 && term[i] != term[k] {
                k = fail[k - 1];
            }
            if term[i] == term[k] {
                k += 1;
            }
            fail[i] = k;
        }
        Self {
            term,
            fail,
            matched: 0,
            len: 0,
            max: max_line.max(1),
        }
    }

    /// Consumes input up to and including the end of the current line, if it is in
    /// `input`: returns bytes consumed and whether a line ended there.
    pub fn advance(&mut self, input: &[u8]) -> Result<(usize, bool), PluginError> {
        for (i, &b) in input.iter().enumerate() {
            self.len += 1;
            if self.len > self.max {
                return Err(PluginError::LineTooLong { max: self.max });
            }
            while self.matched > 0 && b != self.term[self.matched] {
                self.matched = self.fail[self.matched - 1];
            }
            if b == self.term[self.matched] {
                self.matched += 1;
            }
            if self.matched == self.term.len() {
                self.matched = 0;
                self.len = 0;
                return Ok((i + 1, true));
            }
        }
        Ok((input.len(), false))
    }

    /// Bytes of the current, unfinished line.
    pub fn in_progress(&self) -> usize {
        self.len
    }

    /// Forget the unfinished line (a new stream starts).
    pub fn reset(&mut self) {
        self.matched = 0;
        self.len = 0;
    }
}

/// Line plugin state of one session.
#[derive(Debug)]
pub struct LineSession {
    cfg: LineConfig,
    req: LineFramer,
    rep: LineFramer,
    queue: ReplayQueue<()>,
    answered: u64,
    delivered: u64,
    greeting_left: u64,
    swallow_left: u64,
    skip_left: u64,
    reply_seen: u64,
    since_checkpoint: u64,
    dead: Option<NotResumable>,
}

impl LineSession {
    /// A fresh session.
    pub fn new(cfg: LineConfig) -> Self {
        Self {
            req: LineFramer::new(&cfg.terminator, cfg.max_line),
            rep: LineFramer::new(&cfg.terminator, cfg.max_line),
            queue: ReplayQueue::new(cfg.max_replay_bytes),
            greeting_left: cfg.greeting_lines,
            cfg,
            answered: 0,
            delivered: 0,
            swallow_left: 0,
            skip_left: 0,
            reply_seen: 0,
            since_checkpoint: 0,
            dead: None,
        }
    }

    fn kill(&mut self, e: PluginError) -> Option<PluginError> {
        if self.dead.is_some() {
            return None;
        }
        self.dead = Some(NotResumable::Broken(e.clone()));
        Some(e)
    }
}

impl SessionState for LineSession {
    fn protocol(&self) -> &'static str {
        "line"
    }

    fn on_client_bytes(&mut self, bytes: &[u8]) -> ClientProgress {
        let mut progress = ClientProgress::default();
        let mut pos = 0;
        while pos < bytes.len() && self.dead.is_none() {
            match self.req.advance(&bytes[pos..]) {
                Ok((n, done)) => {
                    self.queue.extend_partial(&bytes[pos..pos + n]);
                    if done {
                        self.queue.finish(());
                        progress.requests += 1;
                    }
                    pos += n;
                }
                Err(e) => progress.error = self.kill(e),
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
            let (n, done) = match self.rep.advance(&bytes[pos..]) {
                Ok(r) => r,
                Err(e) => {
                    progress.error = self.kill(e);
                    continue;
                }
            };
            let seg = pos..pos + n;
            pos += n;
            if self.swallow_left > 0 {
                if done {
                    self.swallow_left -= 1;
                }
                continue;
            }
            let skip = self.skip_left.min(n as u64) as usize;
            self.skip_left -= skip as u64;
            forward(deliver, seg.start + skip..seg.end);
            self.delivered += (n - skip) as u64;
            self.reply_seen += n as u64;
            if !done {
                continue;
            }
            self.reply_seen = 0;
            if self.skip_left > 0 {
                progress.error = self.kill(PluginError::ReplayMismatch);
                continue;
            }
            if self.greeting_left > 0 {
                self.greeting_left -= 1;
                continue;
            }
            if self.queue.pop().is_none() {
                progress.error = self.kill(PluginError::UnsolicitedReply);
                continue;
            }
            self.answered += 1;
            progress.replies += 1;
            self.since_checkpoint += 1;
            if self.cfg.checkpoint_every > 0 && self.since_checkpoint >= self.cfg.checkpoint_every {
                progress.checkpoint = true;
            }
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
            ..CookieParts::default()
        }
    }

    fn restore(&mut self, parts: &CookieParts) -> Result<Restore, PluginError> {
        if !parts.immutable.is_empty() || !parts.private.is_empty() {
            return Err(PluginError::BadCookie("line cookies have no sealed parts"));
        }
        let public = PublicState::decode(&parts.public)?;
        self.answered = public.answered;
        self.delivered = public.delivered;
        // The fresh backend greets again; the client saw the greeting already.
        self.swallow_left = self.cfg.greeting_lines;
        self.greeting_left = 0;
        Ok(Restore {
            prelude: Vec::new(),
            swallow_replies: self.cfg.greeting_lines,
        })
    }

    fn failover(&mut self) -> Failover {
        if let Some(reason) = &self.dead {
            return Failover::NotResumable(reason.clone());
        }
        if self.greeting_left > 0 {
            return Failover::NotResumable(NotResumable::GreetingIncomplete);
        }
        if self.queue.overflowed() {
            return Failover::NotResumable(NotResumable::ReplayOverflow);
        }
        let seen = self.reply_seen + self.skip_left;
        if seen > 0
            && (self.cfg.partial_reply == PartialReply::Abort || self.queue.pending.is_empty())
        {
            return Failover::NotResumable(NotResumable::PartialReply);
        }
        let mut replay = Vec::new();
        for p in &self.queue.pending {
            replay.extend_from_slice(p.bytes.as_deref().unwrap_or_default());
        }
        replay.extend_from_slice(self.queue.partial().unwrap_or_default());
        self.rep.reset();
        self.reply_seen = 0;
        self.skip_left = seen;
        Failover::Resume(Resume {
            replay,
            to_client: Vec::new(),
            skip_reply_bytes: seen,
            replayed_requests: self.queue.pending.len() as u64,
            failed_requests: 0,
        })
    }
}
