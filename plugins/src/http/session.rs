//! [`SessionState`] for HTTP/1.1 relayed between PPU and PPE.
//!
//! - **Answered count** (public cookie part `answered`): every final response (not 1xx)
//!   answers the oldest unanswered request; pipelining is followed.
//! - **Delivered** (public cookie part `delivered`, derived by the PPU): body bytes of the
//!   response in progress already forwarded to the client; the `N` of a resumed download.
//! - **Validator** (immutable cookie part, written by the PE): for a `200` response in
//!   progress with `Content-Length`, `Accept-Ranges: bytes` and a strong validator, a
//!   [`ResumeRecord`]. The PU sees the same head and derives the same record itself.
//! - **Failover**: requests not answered yet are replayed when idempotent (RFC 9110) or
//!   carrying `Idempotency-Key`, at most [`HttpConfig::max_retries`] times; the others are
//!   answered `502 Bad Gateway` in their place in the response order. A request still being
//!   received is always replayed (the backend cannot have answered it).
//! - **Resume**: a `GET` whose `200` body was interrupted is replayed with
//!   `Range: bytes=N-` and `If-Range`; the new `206` head is swallowed, its payload (from a
//!   `Content-Length` or chunked `206`) forwarded, so the client receives one byte-exact
//!   body. Only originals framed by `Content-Length` resume: the client's framing then
//!   needs no repair. If the new backend answers anything but the matching `206`, nothing
//!   more is forwarded and [`BackendProgress::close_client`] tells the PPU to close the
//!   client connection (a short body the client can detect, never a spliced one).
//! - **Not resumable**: a partly delivered body that cannot resume (chunked or
//!   close-delimited originals, no validator, not a plain `GET`), `101` upgrades and
//!   `CONNECT` tunnels (then the plugin only relays), framing errors.
//!
//! - **Cooperative backends** ([`Cooperative`]): a configured response field carrying
//!   the backend's session state is stripped by the PE into the private cookie part and
//!   handed to the next backend in a restore request.
//!
//! Response heads are held back until complete, so a failover in the middle of a head is
//! a clean replay.

use pool_core::cookie::CookieParts;

use super::framing::{request_body, response_body, BodyKind, Direction, Framer, HttpLimits};
use super::headers::{
    accepts_byte_ranges, content_range, plain_response, range_request, replayable, strip_field,
    strong_validator, Validator,
};
use crate::replay::ReplayQueue;
use crate::session::{forward, PublicState};
use crate::{
    BackendProgress, ClientProgress, Delivery, Failover, NotResumable, PluginError, Restore,
    Resume, SessionState,
};

/// Configuration of the HTTP plugin.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Limits on requests (client→backend).
    pub request_limits: HttpLimits,
    /// Limits on responses (backend→client).
    pub response_limits: HttpLimits,
    /// Budget for unanswered request bytes kept for replay.
    pub max_replay_bytes: usize,
    /// How often one request may be replayed (failovers it survives).
    pub max_retries: u32,
    /// Resume interrupted downloads with `Range` + `If-Range`.
    pub resume_downloads: bool,
    /// Ask for a checkpoint every this many responses, besides resumable heads (0: never).
    pub checkpoint_every: u64,
    /// A cooperative backend's own session state, carried in a response field.
    pub cooperative: Option<Cooperative>,
}

/// A backend that publishes its session state in a response field (e.g.
/// `X-Backend-Session`) and can take it back in a restore request.
///
/// The PE strips the field from every response (the client never sees it) and keeps the
/// latest value in the private cookie part. A PE that restores a session sends
/// `GET <restore_path>` with the field before any client bytes (the
/// [`Restore::prelude`]); its response is swallowed, and an error status (≥ 400) makes
/// the restore fail ([`PluginError::PreludeRejected`]). A restore request rather than a
/// field added to the next client request, because client bytes are relayed unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cooperative {
    /// Field name, in responses and in the restore request.
    pub header: String,
    /// Target of the restore request.
    pub restore_path: String,
}

impl Default for HttpConfig {
    /// Default limits, 4 MiB replay budget, 3 retries, resume on.
    fn default() -> Self {
        Self {
            request_limits: HttpLimits::REQUEST,
            response_limits: HttpLimits::RESPONSE,
            max_replay_bytes: 4 << 20,
            max_retries: 3,
            resume_downloads: true,
            checkpoint_every: 0,
            cooperative: None,
        }
    }
}

/// Why the gateway answered a request itself.
/// Whether a response head is an interim one: `1xx` other than `101` (which switches
/// protocols), without a body, with the final answer still to come.
fn is_interim(head: &super::framing::Head) -> bool {
    head.status()
        .is_some_and(|s| (100..200).contains(&s) && s != 101)
}

fn failure_body(reason: Failed) -> &'static str {
    match reason {
        Failed::NotIdempotent => "poolgate: the backend failed while this request was in flight. It was not retried because its method is not idempotent and it carries no Idempotency-Key: the backend may have processed it.\n",
        Failed::Retries => "poolgate: the backend failed while this request was in flight, and the retry limit for it is reached.\n",
        Failed::TooLarge => "poolgate: the backend failed while this request was in flight, and the request was too large to keep for a retry.\n",
    }
}

/// The `502` a client receives for a request that was not replayed.
pub fn bad_gateway(reason: Failed) -> Vec<u8> {
    plain_response(502, "Bad Gateway", failure_body(reason))
}

/// Why a request in flight at failover was answered with `502` instead of replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failed {
    /// Not idempotent, no `Idempotency-Key`.
    NotIdempotent,
    /// [`HttpConfig::max_retries`] reached.
    Retries,
    /// Not kept for replay (over the replay budget).
    TooLarge,
}

#[derive(Clone, Debug)]
struct ReqMeta {
    method: String,
    replayable: bool,
    /// Length of the raw head at the start of the stored bytes.
    head_len: usize,
    /// No body, and no `Range`/`If-Range` of its own: may become a range request.
    plain_get: bool,
    retries: u32,
    failed: Option<Failed>,
}

/// What a resumable response needs to continue on another backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeRecord {
    /// Complete body length (`Content-Length` of the `200`).
    pub total: u64,
    /// The representation's strong validator.
    pub validator: Validator,
}

impl ResumeRecord {
    /// Encoding for the immutable cookie part: version 1, kind (1 `ETag`, 2
    /// `Last-Modified`), total (u64 BE), validator length (u16 BE), validator.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, v) = match &self.validator {
            Validator::ETag(v) => (1, v),
            Validator::LastModified(v) => (2, v),
        };
        let mut out = vec![1, kind];
        out.extend_from_slice(&self.total.to_be_bytes());
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(v);
        out
    }

    /// Decodes the immutable cookie part.
    pub fn decode(b: &[u8]) -> Result<Self, PluginError> {
        let bad = PluginError::BadCookie("http resume record");
        if b.len() < 12 || b[0] != 1 {
            return Err(bad);
        }
        let total = u64::from_be_bytes(b[2..10].try_into().map_err(|_| bad.clone())?);
        let len = u16::from_be_bytes([b[10], b[11]]) as usize;
        let v = b
            .get(12..)
            .filter(|v| v.len() == len && !v.is_empty())
            .ok_or(bad.clone())?;
        if v.iter().any(|&c| c < 0x20 || c == 0x7f) {
            return Err(bad);
        }
        let validator = match b[1] {
            1 => Validator::ETag(v.to_vec()),
            2 => Validator::LastModified(v.to_vec()),
            _ => return Err(bad),
        };
        Ok(Self { total, validator })
    }
}

/// The final response in progress (head delivered, body not complete).
#[derive(Clone, Debug)]
struct InFlight {
    status: u16,
    /// Set when a resume would be possible (200, Content-Length, ranges, validator).
    resume: Option<ResumeRecord>,
    /// Body bytes delivered to the client.
    delivered: u64,
}

/// After a resume failover: the `206` we wait for.
#[derive(Clone, Debug)]
struct Expect {
    from: u64,
    record: ResumeRecord,
}

/// HTTP plugin state of one session.
#[derive(Debug)]
pub struct HttpSession {
    cfg: HttpConfig,
    req: Framer,
    rep: Framer,
    queue: ReplayQueue<ReqMeta>,
    /// The request being received (head seen).
    cur: Option<ReqMeta>,
    resp: Option<InFlight>,
    expect: Option<Expect>,
    /// Forwarding only the payload of a resumed `206`.
    splicing: bool,
    /// A resume failed: drop all backend bytes, the client connection must close.
    aborted: bool,
    answered: u64,
    since_checkpoint: u64,
    restored: Option<ResumeRecord>,
    /// Cooperative backend state (latest value of the configured field).
    backend_state: Option<Vec<u8>>,
    /// Responses to the restore request still to swallow.
    swallow: u64,
    dead: Option<NotResumable>,
}

impl HttpSession {
    /// A fresh session.
    pub fn new(cfg: HttpConfig) -> Self {
        Self {
            req: Framer::new(Direction::Request, cfg.request_limits),
            rep: Framer::new(Direction::Response, cfg.response_limits),
            queue: ReplayQueue::new(cfg.max_replay_bytes),
            cfg,
            cur: None,
            resp: None,
            expect: None,
            splicing: false,
            aborted: false,
            answered: 0,
            since_checkpoint: 0,
            restored: None,
            backend_state: None,
            swallow: 0,
            dead: None,
        }
    }

    /// Unanswered complete requests.
    pub fn unanswered(&self) -> usize {
        self.queue.pending.len()
    }

    /// The response in progress: body bytes delivered to the client and, when the body
    /// could be resumed, its total length.
    pub fn response_progress(&self) -> Option<(u64, Option<u64>)> {
        self.resp
            .as_ref()
            .map(|r| (r.delivered, r.resume.as_ref().map(|x| x.total)))
    }

    /// PE side: the resume record of the cookie this session was restored from.
    pub fn restored_record(&self) -> Option<&ResumeRecord> {
        self.restored.as_ref()
    }

    fn broken(&mut self, e: PluginError) -> Option<PluginError> {
        if self.dead.is_some() {
            return None;
        }
        self.dead = Some(NotResumable::Broken(e.clone()));
        Some(e)
    }

    /// Stops forwarding for good: the client must not receive a spliced body.
    fn abort(&mut self, progress: &mut BackendProgress, e: PluginError) {
        self.aborted = true;
        progress.close_client = true;
        if progress.error.is_none() {
            progress.error = self.broken(e);
        }
    }

    /// The front request got its complete response.
    fn complete(&mut self, progress: &mut BackendProgress, deliver: &mut Vec<Delivery>) {
        self.resp = None;
        self.splicing = false;
        self.queue.pop();
        self.answered += 1;
        progress.replies += 1;
        self.since_checkpoint += 1;
        let mut errors = Vec::new();
        let injected = self.inject_failed(&mut errors);
        if injected > 0 {
            progress.replies += injected;
            deliver.push(Delivery::Inject(errors));
        }
    }

    /// Answers leading not-replayed requests with `502`.
    fn inject_failed(&mut self, out: &mut Vec<u8>) -> u64 {
        let mut n = 0;
        while let Some(reason) = self.queue.pending.front().and_then(|p| p.meta.failed) {
            self.queue.pop();
            out.extend_from_slice(&bad_gateway(reason));
            self.answered += 1;
            n += 1;
        }
        n
    }

    /// Records and strips the cooperative field; the head to deliver when it was present.
    fn take_backend_state(&mut self, head: &super::framing::Head, raw: &[u8]) -> Option<Vec<u8>> {
        let coop = self.cfg.cooperative.as_ref()?;
        let value = head.value(&coop.header)?.to_vec();
        self.backend_state = (!value.is_empty()).then_some(value);
        Some(strip_field(raw, &coop.header))
    }

    /// A response head while no complete request waits: an answer to the request whose
    /// body is still on its way (HTTP/1.1 lets a server answer early), or a reply to
    /// nothing at all.
    ///
    /// - A `1xx` (`100 Continue` to `Expect: 100-continue`) is passed on and the request
    ///   stays the one awaiting its final answer.
    /// - A final answer ends the tracking quietly ([`NotResumable::EarlyReply`]): the
    ///   client may still send the rest of its body, which gets no answer of its own.
    /// - With no request begun, the plugin has lost track ([`PluginError::UnsolicitedReply`]).
    fn on_reply_to_incomplete_request(
        &mut self,
        head: &super::framing::Head,
        raw: Vec<u8>,
        progress: &mut BackendProgress,
        deliver: &mut Vec<Delivery>,
    ) {
        deliver.push(Delivery::Inject(raw));
        if self.cur.is_none() {
            progress.error = self.broken(PluginError::UnsolicitedReply);
            return;
        }
        if self.skip_interim(head, progress) {
            return;
        }
        if self.dead.is_none() {
            self.dead = Some(NotResumable::EarlyReply);
        }
    }

    /// Passes over an interim head (see [`is_interim`]): its empty body is framed and
    /// the final answer is still awaited. False for any other head.
    fn skip_interim(
        &mut self,
        head: &super::framing::Head,
        progress: &mut BackendProgress,
    ) -> bool {
        if !is_interim(head) {
            return false;
        }
        if let Err(e) = self.rep.start_body(BodyKind::Empty) {
            progress.error = self.broken(PluginError::Http(e));
        }
        true
    }

    /// The head of the response to our restore request: swallowed, checked.
    fn on_restore_response(&mut self, head: &super::framing::Head, progress: &mut BackendProgress) {
        if self.skip_interim(head, progress) {
            return;
        }
        let status = head.status().unwrap_or(0);
        if status >= 400 || status == 101 {
            progress.error = self.broken(PluginError::PreludeRejected(format!(
                "session restore answered {status}"
            )));
            return;
        }
        if self.take_backend_state(head, &[]).is_some() {
            progress.checkpoint = true;
        }
        match response_body(head, "GET").and_then(|k| self.rep.start_body(k)) {
            Ok(true) => self.swallow -= 1,
            Ok(false) => {}
            Err(e) => progress.error = self.broken(PluginError::Http(e)),
        }
    }

    fn on_response_head(
        &mut self,
        head: super::framing::Head,
        raw: Vec<u8>,
        seg: std::ops::Range<usize>,
        progress: &mut BackendProgress,
        deliver: &mut Vec<Delivery>,
    ) {
        if self.swallow > 0 {
            self.on_restore_response(&head, progress);
            return;
        }
        let (raw, seg) = match self.take_backend_state(&head, &raw) {
            Some(stripped) => {
                progress.checkpoint = true;
                (stripped, 0..0)
            }
            None => (raw, seg),
        };
        let Some(method) = self.queue.pending.front().map(|p| p.meta.method.clone()) else {
            self.on_reply_to_incomplete_request(&head, raw, progress, deliver);
            return;
        };
        let kind = match response_body(&head, &method) {
            Ok(k) => k,
            Err(e) => {
                progress.error = self.broken(PluginError::Http(e));
                deliver.push(Delivery::Inject(raw));
                return;
            }
        };
        if self.expect.is_some() && is_interim(&head) {
            // A 1xx before the 206: the client has its final head already; swallow.
            if let Err(e) = self.rep.start_body(BodyKind::Empty) {
                self.abort(progress, PluginError::Http(e));
            }
            return;
        }
        if let Some(exp) = self.expect.take() {
            let total = exp.record.total;
            let ok = head.status() == Some(206)
                && content_range(&head) == Some((exp.from, total - 1, total))
                && exp.record.validator.matches(&head)
                && matches!(kind, BodyKind::Length(_) | BodyKind::Chunked);
            if !ok {
                self.abort(progress, PluginError::ReplayMismatch);
                return;
            }
            // The head is swallowed: the client has the original one.
            if let Err(e) = self.rep.start_body(kind) {
                self.abort(progress, PluginError::Http(e));
                return;
            }
            self.splicing = true;
            return;
        }
        if !seg.is_empty() && raw.len() == seg.len() {
            forward(deliver, seg);
        } else {
            deliver.push(Delivery::Inject(raw));
        }
        let status = head.status().unwrap_or(0);
        if status == 101 || (method == "CONNECT" && (200..300).contains(&status)) {
            // A tunnel: bytes are no longer HTTP messages.
            self.dead = Some(NotResumable::Mode(if status == 101 {
                "upgrade"
            } else {
                "CONNECT"
            }));
            return;
        }
        let resume = match kind {
            BodyKind::Length(total) if status == 200 && accepts_byte_ranges(&head) => {
                strong_validator(&head).map(|validator| ResumeRecord { total, validator })
            }
            _ => None,
        };
        if resume.is_some() {
            progress.checkpoint = true;
        }
        match self.rep.start_body(kind) {
            Ok(done) => {
                if (100..200).contains(&status) {
                    return;
                }
                self.resp = Some(InFlight {
                    status,
                    resume,
                    delivered: 0,
                });
                if done {
                    self.complete(progress, deliver);
                }
            }
            Err(e) => progress.error = self.broken(PluginError::Http(e)),
        }
    }
}

impl SessionState for HttpSession {
    fn protocol(&self) -> &'static str {
        "http"
    }

    fn on_client_bytes(&mut self, bytes: &[u8]) -> ClientProgress {
        let mut progress = ClientProgress::default();
        let mut pos = 0;
        while pos < bytes.len() && self.dead.is_none() {
            let step = match self.req.advance(&bytes[pos..]) {
                Ok(s) => s,
                Err(e) => {
                    progress.error = self.broken(PluginError::Http(e));
                    break;
                }
            };
            self.queue.extend_partial(&bytes[pos..pos + step.consumed]);
            pos += step.consumed;
            let mut done = step.end;
            if let Some((head, raw)) = step.head {
                let kind = match request_body(&head) {
                    Ok(k) => k,
                    Err(e) => {
                        progress.error = self.broken(PluginError::Http(e));
                        break;
                    }
                };
                let method = head.method().unwrap_or_default().to_string();
                let plain_get = method == "GET"
                    && kind == BodyKind::Empty
                    && head.value("range").is_none()
                    && head.value("if-range").is_none();
                self.cur = Some(ReqMeta {
                    replayable: replayable(&head),
                    method,
                    head_len: raw.len(),
                    plain_get,
                    retries: 0,
                    failed: None,
                });
                match self.req.start_body(kind) {
                    Ok(d) => done |= d,
                    Err(e) => {
                        progress.error = self.broken(PluginError::Http(e));
                        break;
                    }
                }
            }
            if done {
                if let Some(meta) = self.cur.take() {
                    self.queue.finish(meta);
                    progress.requests += 1;
                }
            }
        }
        progress
    }

    fn on_backend_bytes(&mut self, bytes: &[u8], deliver: &mut Vec<Delivery>) -> BackendProgress {
        let mut progress = BackendProgress::default();
        let mut pos = 0;
        while pos < bytes.len() {
            if self.aborted {
                break;
            }
            if self.dead.is_some() {
                forward(deliver, pos..bytes.len());
                break;
            }
            let in_head = self.rep.in_head();
            let step = match self.rep.advance(&bytes[pos..]) {
                Ok(s) => s,
                Err(e) => {
                    let e = PluginError::Http(e);
                    if self.splicing {
                        self.abort(&mut progress, e);
                    } else {
                        progress.error = self.broken(e);
                    }
                    continue;
                }
            };
            let seg = pos..pos + step.consumed;
            pos += step.consumed;
            if let Some((head, raw)) = step.head {
                self.on_response_head(head, raw, seg, &mut progress, deliver);
                continue;
            }
            if in_head {
                // Held back until the head is complete.
                continue;
            }
            if self.swallow > 0 {
                if step.end {
                    self.swallow -= 1;
                }
                continue;
            }
            let data = seg.start + step.data.start..seg.start + step.data.end;
            if self.splicing {
                forward(deliver, data.clone());
            } else {
                forward(deliver, seg);
            }
            if let Some(r) = self.resp.as_mut() {
                r.delivered += data.len() as u64;
            }
            if step.end {
                let short = self.splicing
                    && self
                        .resp
                        .as_ref()
                        .is_some_and(|r| r.resume.as_ref().is_some_and(|x| x.total != r.delivered));
                if short {
                    self.abort(&mut progress, PluginError::ReplayMismatch);
                    continue;
                }
                self.complete(&mut progress, deliver);
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
            delivered: self.resp.as_ref().map_or(0, |r| r.delivered),
        }
    }

    fn checkpoint(&mut self) -> CookieParts {
        self.since_checkpoint = 0;
        let immutable = self
            .resp
            .as_ref()
            .and_then(|r| r.resume.as_ref())
            .map(ResumeRecord::encode)
            .unwrap_or_default();
        CookieParts {
            public: self.public_state().encode(),
            immutable,
            private: self.backend_state.clone().unwrap_or_default(),
        }
    }

    fn restore(&mut self, parts: &CookieParts) -> Result<Restore, PluginError> {
        let public = PublicState::decode(&parts.public)?;
        let mut prelude = Vec::new();
        if !parts.private.is_empty() {
            let Some(coop) = &self.cfg.cooperative else {
                return Err(PluginError::BadCookie(
                    "backend state without a cooperative backend",
                ));
            };
            let v = &parts.private;
            if v.iter().any(|&b| b < 0x20 || b == 0x7f) || v.len() > 8192 {
                return Err(PluginError::BadCookie("backend state is not a field value"));
            }
            prelude.extend_from_slice(
                format!(
                    "GET {} HTTP/1.1\r\nHost: poolgate\r\n{}: ",
                    coop.restore_path, coop.header
                )
                .as_bytes(),
            );
            prelude.extend_from_slice(v);
            prelude.extend_from_slice(b"\r\n\r\n");
            self.backend_state = Some(v.clone());
            self.swallow = 1;
        }
        self.restored = if parts.immutable.is_empty() {
            None
        } else {
            Some(ResumeRecord::decode(&parts.immutable)?)
        };
        self.answered = public.answered;
        Ok(Restore {
            prelude,
            swallow_replies: self.swallow,
        })
    }

    fn failover(&mut self) -> Failover {
        if let Some(reason) = &self.dead {
            return Failover::NotResumable(reason.clone());
        }
        if self.aborted {
            return Failover::NotResumable(NotResumable::PartialReply);
        }
        let max = self.cfg.max_retries;
        let mut replay = Vec::new();
        let mut replayed = 0;
        let mut failed = 0;
        let mut expect = None;
        let mut skip_front = false;
        if let Some(r) = &self.resp {
            // The client holds the head (and maybe some body) of the front's response.
            let Some(front) = self.queue.pending.front_mut() else {
                return Failover::NotResumable(NotResumable::PartialReply);
            };
            let record = match (&r.resume, &front.bytes) {
                (Some(rec), Some(_))
                    if self.cfg.resume_downloads
                        && r.status == 200
                        && front.meta.plain_get
                        && front.meta.retries < max =>
                {
                    rec.clone()
                }
                _ => return Failover::NotResumable(NotResumable::PartialReply),
            };
            let head = front.bytes.as_deref().unwrap_or_default();
            let head = &head[..front.meta.head_len.min(head.len())];
            replay = range_request(head, r.delivered, &record.validator);
            front.meta.retries += 1;
            replayed += 1;
            skip_front = true;
            expect = Some(Expect {
                from: r.delivered,
                record,
            });
        }
        for p in self.queue.pending.iter_mut().skip(usize::from(skip_front)) {
            if p.meta.failed.is_some() {
                continue;
            }
            let reason = if !p.meta.replayable {
                Some(Failed::NotIdempotent)
            } else if p.meta.retries >= max {
                Some(Failed::Retries)
            } else if p.bytes.is_none() {
                Some(Failed::TooLarge)
            } else {
                None
            };
            match reason {
                Some(r) => p.meta.failed = Some(r),
                None => {
                    p.meta.retries += 1;
                    replayed += 1;
                    replay.extend_from_slice(p.bytes.as_deref().unwrap_or_default());
                }
            }
        }
        failed += self
            .queue
            .pending
            .iter()
            .filter(|p| p.meta.failed.is_some())
            .count() as u64;
        // The request being received: the backend cannot have answered it.
        if !self.req.idle() || self.cur.is_some() {
            match self.queue.partial() {
                Some(p) => replay.extend_from_slice(p),
                None => return Failover::NotResumable(NotResumable::ReplayOverflow),
            }
        }
        let mut to_client = Vec::new();
        if !skip_front {
            self.inject_failed(&mut to_client);
        }
        self.rep.reset();
        self.splicing = false;
        self.expect = expect;
        if self.expect.is_none() {
            self.resp = None;
        }
        Failover::Resume(Resume {
            replay,
            to_client,
            skip_reply_bytes: 0,
            replayed_requests: replayed,
            failed_requests: failed,
        })
    }
}
