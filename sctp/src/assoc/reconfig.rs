//! Stream reconfiguration (RFC 6525): resetting the SSNs of streams in either direction.
//!
//! Done here: answering the peer's Outgoing SSN Reset Request (at once, or after
//! "deferred reset processing" while TSNs up to the peer's last assigned one are missing,
//! holding back newer ordered data of the reset streams meanwhile; a FORWARD-TSN counts
//! as those TSNs, see [`Deferred`]), answering an Incoming SSN Reset Request with our own
//! Outgoing SSN Reset Request, and our own requests ([`Association::reset_streams`]):
//! sends on the streams are parked (counted in the send buffer), the request leaves once
//! queued data on them has TSNs, is retransmitted on RTO (counting as an error like any
//! retransmission), on success restarts the streams' SSNs at 0, and is reported "Denied"
//! if the association closes before the answer. The peer may add
//! streams it sends on (Add Outgoing Streams) up to our configured inbound count; SSN/TSN
//! Reset and Add Incoming Streams requests are answered "Denied".

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::rx::Receiver;
use super::{unwrap_tsn, Association, State};
use crate::config::AssociationConfig;
use crate::event::{Event, ResetDirection};
use crate::wire::{
    cause_code, chunk_type, Chunk, DataChunk, ErrorCause, InitParam, ReConfigBody, ReconfigParam,
    ReconfigResult,
};

/// Requests of ours queued at most (the one in flight included).
const MAX_QUEUED_REQUESTS: usize = 16;
/// Most streams named in one request (keeps the chunk within the smallest PMTU).
pub const MAX_RESET_STREAMS: usize = (crate::config::MIN_PMTU - 64) / 2;

/// Why [`Association::reset_streams`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResetError {
    /// We or the peer did not offer stream reconfiguration.
    #[error("stream reconfiguration not negotiated with the peer")]
    NotSupported,
    /// The association is not established.
    #[error("association not established")]
    NotConnected,
    /// The stream number is not below the negotiated outbound stream count.
    #[error("invalid stream {0}")]
    InvalidStream(u16),
    /// More streams than fit in one request; reset them in several calls.
    #[error("too many streams in one request")]
    TooManyStreams,
    /// Too many requests queued already.
    #[error("too many stream reset requests queued")]
    Busy,
}

/// The Supported Extensions parameter we advertise in INIT and INIT ACK, if any.
pub(crate) fn supported_extensions(cfg: &AssociationConfig) -> Option<InitParam> {
    cfg.stream_reset
        .then(|| InitParam::SupportedExtensions(Bytes::from_static(&[chunk_type::RE_CONFIG])))
}

/// Where one of our requests stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting until queued data on the streams has TSNs.
    Waiting,
    /// Sent; the timer runs for its answer.
    Sent,
    /// The peer answered "In progress"; ask again when the timer fires.
    InProgress,
}

/// One Outgoing SSN Reset Request of ours.
#[derive(Debug)]
struct Request {
    /// Local number, increasing, so parked messages know which reset they follow.
    id: u64,
    /// Streams; empty means all.
    streams: Vec<u16>,
    /// The peer's Incoming SSN Reset Request this answers, if any.
    answers: Option<u32>,
    /// Assigned when first sent.
    seq: u32,
    last_tsn: u32,
    phase: Phase,
}

impl Request {
    fn covers(&self, stream: u16) -> bool {
        self.streams.is_empty() || self.streams.contains(&stream)
    }
}

/// A message sent on a stream whose reset is pending: it must carry the new SSNs.
#[derive(Debug)]
struct Parked {
    /// The last request covering the stream when the message was sent: it goes out
    /// once that request is answered (and before any later request on the stream).
    after: u64,
    stream: u16,
    ppid: u32,
    ordered: bool,
    data: Bytes,
    max_rtx: Option<u16>,
    expires: Option<Instant>,
}

/// The peer's reset waiting for missing TSNs (RFC 6525 §5.2.2 E2), kept by the receiver.
///
/// A FORWARD-TSN (RFC 3758 §3.6) may arrive meanwhile. It moves the cumulative TSN like
/// received DATA, so TSNs it skips count towards the reset, which is performed once the
/// cumulative TSN reaches `last_tsn`. Held chunks it covers were sent after the reset
/// point, so like every held chunk they are processed only after the reset, in the new
/// numbering: whole messages among them are delivered as they would have been on
/// arrival, and the fragments of messages the sender gave up are dropped then
/// (`forwarded`), as the FORWARD-TSN dropped such fragments from reassembly at once.
#[derive(Debug)]
pub(crate) struct Deferred {
    /// The peer's last assigned TSN before the reset (64-bit unwrapped).
    pub last_tsn: u64,
    /// Streams to reset; empty means all.
    pub streams: Vec<u16>,
    /// Newer ordered DATA of those streams, held until the reset is done.
    pub held: Vec<(u64, DataChunk)>,
    /// Highest new cumulative TSN of a FORWARD-TSN received meanwhile.
    pub forwarded: Option<u64>,
    /// FORWARD-TSN (stream, SSN) entries in the new numbering of reset streams, applied
    /// once the reset is done (see [`Receiver::defer_forward_tsn`]).
    pub skips: Vec<(u16, u16)>,
}

impl Deferred {
    /// Whether a chunk must wait for the reset.
    #[inline]
    pub fn holds(&self, tsn: u64, d: &DataChunk) -> bool {
        tsn > self.last_tsn
            && !d.unordered
            && (self.streams.is_empty() || self.streams.contains(&d.stream))
    }
}

/// Per-association reconfiguration state; exists only when both sides offered RE-CONFIG.
#[derive(Debug)]
pub(crate) struct Reconfig {
    next_req_seq: u32,
    next_id: u64,
    /// Our requests, the one in flight first.
    requests: VecDeque<Request>,
    timer: Option<Instant>,
    parked: VecDeque<Parked>,
    parked_bytes: usize,
    /// Last request sequence number of the peer we processed.
    peer_last_seq: u32,
    /// What we answered to it (for retransmissions); None: answered by a request of ours.
    peer_last_answer: Option<ReconfigResult>,
    /// Sequence number of the peer's request in deferred reset processing.
    peer_deferred: Option<u32>,
}

impl Reconfig {
    /// State for a new association, or None when either side did not offer RE-CONFIG.
    pub fn negotiate(
        cfg: &AssociationConfig,
        peer_offers: bool,
        local_tsn: u32,
        peer_tsn: u32,
    ) -> Option<Box<Reconfig>> {
        (cfg.stream_reset && peer_offers).then(|| {
            // Each side numbers its requests from its initial TSN (RFC 6525 §4.1).
            Box::new(Reconfig {
                next_req_seq: local_tsn,
                next_id: 0,
                requests: VecDeque::new(),
                timer: None,
                parked: VecDeque::new(),
                parked_bytes: 0,
                peer_last_seq: peer_tsn.wrapping_sub(1),
                peer_last_answer: None,
                peer_deferred: None,
            })
        })
    }

    /// The last pending request covering `stream`, if new sends on it must wait.
    #[inline]
    pub fn paused(&self, stream: u16) -> Option<u64> {
        if self.requests.is_empty() {
            return None;
        }
        self.requests
            .iter()
            .rev()
            .find(|r| r.covers(stream))
            .map(|r| r.id)
    }

    fn push_request(&mut self, streams: Vec<u16>, answers: Option<u32>) {
        self.next_id += 1;
        self.requests.push_back(Request {
            id: self.next_id,
            streams,
            answers,
            seq: 0,
            last_tsn: 0,
            phase: Phase::Waiting,
        });
    }

    /// Whether a request waits to be sent.
    #[inline]
    pub fn wants_send(&self) -> bool {
        self.requests
            .front()
            .is_some_and(|r| r.phase == Phase::Waiting)
    }

    /// No request pending and nothing parked.
    pub fn is_idle(&self) -> bool {
        self.requests.is_empty() && self.parked.is_empty()
    }

    /// Bytes of parked messages.
    pub fn parked_bytes(&self) -> usize {
        self.parked_bytes
    }

    /// Deadline of the request timer.
    pub fn timeout(&self) -> Option<Instant> {
        self.timer
    }
}

/// How a request sequence number relates to the last one processed (RFC 6525 §5.2.1).
enum SeqCheck {
    Next,
    Retransmission,
    Bad,
}

impl Association {
    /// Resets the SSNs of outgoing `streams` (empty: all) to 0 with an Outgoing SSN Reset
    /// Request (RFC 6525). Messages sent on them from now on are held back until the peer
    /// has answered, then go out starting with SSN 0; messages queued before go out first
    /// with the old numbering. The outcome arrives as [`Event::StreamsReset`] with
    /// direction `Outgoing`, also when the association closes first (`Denied`; the held
    /// back messages are then discarded with the send queue). One request is in flight
    /// at a time; further ones queue. Held-back messages count against the send buffer
    /// like queued ones.
    pub fn reset_streams(&mut self, streams: &[u16]) -> Result<(), ResetError> {
        if self.state != State::Established {
            return Err(ResetError::NotConnected);
        }
        if let Some(&s) = streams.iter().find(|&&s| s >= self.out_streams) {
            return Err(ResetError::InvalidStream(s));
        }
        let mut streams = streams.to_vec();
        streams.sort_unstable();
        streams.dedup();
        if streams.len() > MAX_RESET_STREAMS {
            return Err(ResetError::TooManyStreams);
        }
        let r = self.reconfig.as_mut().ok_or(ResetError::NotSupported)?;
        if r.requests.len() >= MAX_QUEUED_REQUESTS {
            return Err(ResetError::Busy);
        }
        r.push_request(streams, None);
        Ok(())
    }

    /// For the fuzzer: the request sequence number expected next from the peer, the
    /// peer's cumulative TSN as we received it, and our latest request sequence number,
    /// so crafted RE-CONFIG chunks reach past the sequence checks.
    pub(crate) fn reconfig_hints(&self) -> Option<(u32, u32, u32)> {
        let r = self.reconfig.as_ref()?;
        Some((
            r.peer_last_seq.wrapping_add(1),
            self.rx.cum64() as u32,
            r.next_req_seq.wrapping_sub(1),
        ))
    }

    /// Parks a message (already admitted against the send buffer) for a stream whose
    /// reset is pending; false if the stream is free.
    #[inline]
    pub(super) fn park_if_resetting(
        &mut self,
        stream: u16,
        ppid: u32,
        ordered: bool,
        data: &Bytes,
        max_rtx: Option<u16>,
        expires: Option<Instant>,
    ) -> bool {
        let Some(r) = self.reconfig.as_mut() else {
            return false;
        };
        let Some(after) = r.paused(stream) else {
            return false;
        };
        r.parked_bytes += data.len();
        r.parked.push_back(Parked {
            after,
            stream,
            ppid,
            ordered,
            data: data.clone(),
            max_rtx,
            expires,
        });
        true
    }

    /// Sends the first queued request once the data queued on its streams has TSNs
    /// (called before a packet is assembled).
    pub(super) fn reconfig_send(&mut self, now: Instant) {
        if !matches!(
            self.state,
            State::Established | State::ShutdownPending | State::ShutdownReceived
        ) {
            return;
        }
        let Some(r) = self.reconfig.as_mut() else {
            return;
        };
        let Some(req) = r.requests.front_mut() else {
            return;
        };
        if req.phase != Phase::Waiting || self.tx.queued_on(&req.streams) {
            return;
        }
        req.seq = r.next_req_seq;
        r.next_req_seq = r.next_req_seq.wrapping_add(1);
        req.last_tsn = self.tx.last_assigned_tsn();
        req.phase = Phase::Sent;
        self.stats.reconfig_requests_sent += 1;
        self.send_current_request(now);
    }

    /// Queues the RE-CONFIG carrying the current request and arms its timer.
    fn send_current_request(&mut self, now: Instant) {
        let rto = self.paths[self.data_path].rto;
        let Some(r) = self.reconfig.as_mut() else {
            return;
        };
        let peer_last_seq = r.peer_last_seq;
        let Some(req) = r.requests.front() else {
            return;
        };
        let param = ReconfigParam::OutgoingSsnReset {
            req_seq: req.seq,
            // Not an answer: "the next expected request sequence number minus 1".
            resp_seq: req.answers.unwrap_or(peer_last_seq),
            last_tsn: req.last_tsn,
            streams: req.streams.clone(),
        };
        r.timer = Some(now + rto);
        self.ctrl
            .push_back((None, Chunk::ReConfig(ReConfigBody::Params(vec![param]))));
    }

    /// The request timer fired: retransmit, counting an error unless the peer had said
    /// "In progress" (RFC 6525 §5.1.1, §5.2.7).
    pub(super) fn reconfig_timeout(&mut self, now: Instant) {
        let Some(r) = self.reconfig.as_mut() else {
            return;
        };
        if r.timer.is_none_or(|t| t > now) {
            return;
        }
        r.timer = None;
        let Some(req) = r.requests.front_mut() else {
            return;
        };
        let counts = match req.phase {
            Phase::Waiting => return,
            Phase::Sent => true,
            Phase::InProgress => false,
        };
        req.phase = Phase::Sent;
        if counts {
            let dp = self.data_path;
            let cfg = self.cfg.clone();
            self.paths[dp].back_off(&cfg);
            self.path_error(dp);
            if self.state == State::Closed {
                return;
            }
        }
        self.stats.reconfig_retransmissions += 1;
        self.send_current_request(now);
    }

    /// Handles a RE-CONFIG chunk from the peer.
    pub(super) fn on_reconfig(&mut self, now: Instant, pidx: usize, body: ReConfigBody) -> bool {
        if self.reconfig.is_none()
            || !matches!(
                self.state,
                State::Established
                    | State::ShutdownPending
                    | State::ShutdownSent
                    | State::ShutdownReceived
            )
        {
            return true;
        }
        let params = match body {
            ReConfigBody::Params(p) if valid_combination(&p) => p,
            ReConfigBody::Params(_) => {
                self.reconfig_violation(b"RE-CONFIG: invalid parameter combination");
                return true;
            }
            ReConfigBody::Malformed { .. } => {
                self.reconfig_violation(b"RE-CONFIG: malformed parameter");
                return true;
            }
        };
        let mut answers = Vec::with_capacity(2);
        for p in params {
            match p {
                ReconfigParam::OutgoingSsnReset {
                    req_seq,
                    last_tsn,
                    streams,
                    ..
                } => {
                    self.stats.reconfig_requests_received += 1;
                    let res = self.on_peer_outgoing_reset(req_seq, last_tsn, streams);
                    if let Some(result) = res {
                        answers.push(response(req_seq, result));
                    }
                }
                ReconfigParam::IncomingSsnReset { req_seq, streams } => {
                    self.stats.reconfig_requests_received += 1;
                    if let Some(result) = self.on_peer_incoming_reset(req_seq, streams) {
                        answers.push(response(req_seq, result));
                    }
                }
                ReconfigParam::AddOutgoingStreams { req_seq, count } => {
                    self.stats.reconfig_requests_received += 1;
                    if let Some(result) = self.peer_request(req_seq, |a| {
                        // The peer sends on more streams (RFC 6525 §5.2.5): fine up to
                        // the inbound streams we are configured to accept.
                        let n = u32::from(a.in_streams) + u32::from(count);
                        if count == 0 || n > u32::from(a.cfg.inbound_streams) {
                            return Some(ReconfigResult::Denied);
                        }
                        a.in_streams = n as u16;
                        Some(ReconfigResult::SuccessPerformed)
                    }) {
                        answers.push(response(req_seq, result));
                    }
                }
                ReconfigParam::SsnTsnReset { req_seq }
                | ReconfigParam::AddIncomingStreams { req_seq, .. } => {
                    self.stats.reconfig_requests_received += 1;
                    // Not offered by this engine: always "Denied".
                    if let Some(result) =
                        self.peer_request(req_seq, |_| Some(ReconfigResult::Denied))
                    {
                        answers.push(response(req_seq, result));
                    }
                }
                ReconfigParam::Response {
                    resp_seq, result, ..
                } => self.on_reconfig_response(now, pidx, resp_seq, result),
                ReconfigParam::Unknown { typ, value } => {
                    // Upper two bits as for INIT parameters (RFC 6525 §4, RFC 9260 §3.2.1).
                    if typ & 0x4000 != 0 {
                        let mut tlv = Vec::with_capacity(4 + value.len().min(256));
                        crate::wire::put_tlv_pub(&mut tlv, typ, &value[..value.len().min(256)]);
                        self.ctrl.push_back((
                            None,
                            Chunk::Error(vec![ErrorCause::new(
                                cause_code::UNRECOGNIZED_PARAMS,
                                tlv,
                            )]),
                        ));
                    }
                    if typ & 0x8000 == 0 {
                        break;
                    }
                }
            }
        }
        for a in &answers {
            if let ReconfigParam::Response { result, .. } = a {
                self.stats.reconfig_responses_sent += 1;
                if !result.is_success() && *result != ReconfigResult::InProgress {
                    self.stats.reconfig_requests_denied += 1;
                }
            }
        }
        if !answers.is_empty() {
            self.ctrl
                .push_back((None, Chunk::ReConfig(ReConfigBody::Params(answers))));
        }
        self.state != State::Closed
    }

    /// Counts a RE-CONFIG we cannot interpret and tells the peer (ERROR, Protocol Violation).
    fn reconfig_violation(&mut self, why: &'static [u8]) {
        self.stats.reconfig_malformed += 1;
        self.ctrl.push_back((
            None,
            Chunk::Error(vec![ErrorCause::new(
                cause_code::PROTOCOL_VIOLATION,
                Bytes::from_static(why),
            )]),
        ));
    }

    /// Sequence-number handling shared by every request type (RFC 6525 §5.2.1): the next
    /// number is processed by `process`, a retransmission gets the same answer again,
    /// anything else "Error - Bad Sequence Number". Returns the answer to send, if any.
    fn peer_request(
        &mut self,
        req_seq: u32,
        process: impl FnOnce(&mut Association) -> Option<ReconfigResult>,
    ) -> Option<ReconfigResult> {
        let r = self.reconfig.as_mut()?;
        let check = if req_seq == r.peer_last_seq {
            SeqCheck::Retransmission
        } else if req_seq == r.peer_last_seq.wrapping_add(1) {
            SeqCheck::Next
        } else {
            SeqCheck::Bad
        };
        match check {
            SeqCheck::Bad => Some(ReconfigResult::ErrorBadSequenceNumber),
            SeqCheck::Retransmission => r.peer_last_answer,
            SeqCheck::Next => {
                r.peer_last_seq = req_seq;
                r.peer_last_answer = None;
                let answer = process(self);
                if let Some(r) = self.reconfig.as_mut() {
                    r.peer_last_answer = answer;
                }
                answer
            }
        }
    }

    /// The peer resets its outgoing streams (RFC 6525 §5.2.2).
    fn on_peer_outgoing_reset(
        &mut self,
        req_seq: u32,
        last_tsn: u32,
        streams: Vec<u16>,
    ) -> Option<ReconfigResult> {
        self.peer_request(req_seq, |a| {
            if a.rx.deferred.is_some() {
                return Some(ReconfigResult::ErrorRequestInProgress);
            }
            if streams.iter().any(|&s| s >= a.in_streams) {
                return Some(ReconfigResult::Denied);
            }
            let cum = a.rx.cum64();
            let last = unwrap_tsn(cum, last_tsn);
            if last > cum + u64::from(u16::MAX) {
                // Far beyond anything in flight: a confused or hostile peer.
                return Some(ReconfigResult::Denied);
            }
            if last <= cum {
                a.rx.reset_in_streams(&streams, &mut a.events, &mut a.stats);
                a.stats.streams_reset_incoming += 1;
                a.events.push_back(Event::StreamsReset {
                    direction: ResetDirection::Incoming,
                    streams,
                    result: ReconfigResult::SuccessPerformed,
                });
                return Some(ReconfigResult::SuccessPerformed);
            }
            // E2: wait for the missing TSNs, holding back newer data of these streams.
            a.rx.deferred = Some(Box::new(Deferred {
                last_tsn: last,
                streams,
                held: Vec::new(),
                forwarded: None,
                skips: Vec::new(),
            }));
            if let Some(r) = a.reconfig.as_mut() {
                r.peer_deferred = Some(req_seq);
            }
            Some(ReconfigResult::InProgress)
        })
    }

    /// After DATA or FORWARD-TSN: finishes a deferred reset once every TSN up to the
    /// peer's last assigned one has arrived (RFC 6525 §5.2.2 E3–E5).
    #[inline]
    pub(super) fn reconfig_after_data(&mut self) -> bool {
        match &self.rx.deferred {
            Some(d) if self.rx.cum64() >= d.last_tsn => {}
            _ => return true,
        }
        let Some(d) = self.rx.deferred.take() else {
            return true;
        };
        let Deferred {
            streams,
            mut held,
            forwarded,
            skips,
            ..
        } = *d;
        self.rx
            .reset_in_streams(&streams, &mut self.events, &mut self.stats);
        self.stats.streams_reset_incoming += 1;
        self.events.push_back(Event::StreamsReset {
            direction: ResetDirection::Incoming,
            streams,
            result: ReconfigResult::SuccessPerformed,
        });
        held.sort_unstable_by_key(|(t, _)| *t);
        for (tsn, chunk) in held {
            if let Err(cause) = self.rx.place(tsn, chunk, &mut self.events, &mut self.stats) {
                self.abort_with(cause);
                return false;
            }
        }
        // What a FORWARD-TSN skipped while the reset waited, now in the new numbering.
        if let Some(through) = forwarded {
            self.rx.drop_fragments_through(through);
        }
        self.rx.skip_ssns(skips, &mut self.events, &mut self.stats);
        if let Some(r) = self.reconfig.as_mut() {
            if let Some(seq) = r.peer_deferred.take() {
                if r.peer_last_seq == seq {
                    r.peer_last_answer = Some(ReconfigResult::SuccessPerformed);
                }
                // Tell the peer now rather than waiting for its retry.
                self.stats.reconfig_responses_sent += 1;
                self.ctrl.push_back((
                    None,
                    Chunk::ReConfig(ReConfigBody::Params(vec![response(
                        seq,
                        ReconfigResult::SuccessPerformed,
                    )])),
                ));
            }
        }
        true
    }

    /// The peer asks us to reset our outgoing streams (RFC 6525 §5.2.3): we answer with
    /// an Outgoing SSN Reset Request of our own.
    fn on_peer_incoming_reset(
        &mut self,
        req_seq: u32,
        streams: Vec<u16>,
    ) -> Option<ReconfigResult> {
        self.peer_request(req_seq, |a| {
            if streams.iter().any(|&s| s >= a.out_streams) || streams.len() > MAX_RESET_STREAMS {
                return Some(ReconfigResult::Denied);
            }
            let r = a.reconfig.as_mut()?;
            if r.requests.len() >= MAX_QUEUED_REQUESTS {
                return Some(ReconfigResult::ErrorRequestInProgress);
            }
            let mut streams = streams;
            streams.sort_unstable();
            streams.dedup();
            r.push_request(streams, Some(req_seq));
            None
        })
    }

    /// The peer answered a request (RFC 6525 §5.2.7).
    fn on_reconfig_response(
        &mut self,
        now: Instant,
        pidx: usize,
        resp_seq: u32,
        result: ReconfigResult,
    ) {
        let rto = self.paths[self.data_path].rto;
        let Some(r) = self.reconfig.as_mut() else {
            return;
        };
        let Some(req) = r.requests.front_mut() else {
            return;
        };
        if req.phase == Phase::Waiting || req.seq != resp_seq {
            return;
        }
        self.stats.reconfig_responses_received += 1;
        // An answer proves the peer alive, like an acknowledged TSN.
        self.path_alive(pidx);
        let Some(r) = self.reconfig.as_mut() else {
            return;
        };
        let Some(req) = r.requests.front_mut() else {
            return;
        };
        if result == ReconfigResult::InProgress {
            req.phase = Phase::InProgress;
            r.timer = Some(now + rto);
            return;
        }
        r.timer = None;
        let Some(req) = r.requests.pop_front() else {
            return;
        };
        if result.is_success() {
            self.tx.reset_out_ssn(&req.streams);
            self.stats.streams_reset_outgoing += 1;
        }
        self.events.push_back(Event::StreamsReset {
            direction: ResetDirection::Outgoing,
            streams: req.streams.clone(),
            result,
        });
        self.release_parked(req.id);
        self.check_shutdown_progress(now);
    }

    /// The association is closing: each request of ours still pending (sent or not) is
    /// reported as `Denied`, ahead of `Closed`, so a user waiting for a reset learns it
    /// will not happen. Messages parked behind these requests are dropped with the rest
    /// of the send queue; the engine hands no unsent message back (see [`Event::Closed`]).
    pub(super) fn fail_pending_resets(&mut self) {
        let Some(r) = self.reconfig.take() else {
            return;
        };
        for req in r.requests {
            self.events.push_back(Event::StreamsReset {
                direction: ResetDirection::Outgoing,
                streams: req.streams,
                result: ReconfigResult::Denied,
            });
        }
    }

    /// Moves the messages parked behind request `done` (or earlier ones) to the send
    /// queue, in order; the next request on their streams waits until they have TSNs.
    fn release_parked(&mut self, done: u64) {
        let Some(r) = self.reconfig.as_mut() else {
            return;
        };
        let mut keep = VecDeque::new();
        while let Some(p) = r.parked.pop_front() {
            if p.after > done {
                keep.push_back(p);
                continue;
            }
            r.parked_bytes -= p.data.len();
            self.tx
                .requeue(p.stream, p.ppid, p.ordered, p.data, p.max_rtx, p.expires);
        }
        r.parked = keep;
        self.report_writable();
    }
}

fn response(resp_seq: u32, result: ReconfigResult) -> ReconfigParam {
    ReconfigParam::Response {
        resp_seq,
        result,
        next_tsns: None,
    }
}

/// The parameter combinations RFC 6525 §3.1 allows in one RE-CONFIG chunk (unknown
/// parameters aside, which their type bits govern).
fn valid_combination(params: &[ReconfigParam]) -> bool {
    use ReconfigParam as P;
    let known: Vec<&ReconfigParam> = params
        .iter()
        .filter(|p| !matches!(p, P::Unknown { .. }))
        .collect();
    match known[..] {
        [] => !params.is_empty(),
        [_] => true,
        [a, b] => matches!(
            (a, b),
            (P::OutgoingSsnReset { .. }, P::IncomingSsnReset { .. })
                | (P::IncomingSsnReset { .. }, P::OutgoingSsnReset { .. })
                | (P::Response { .. }, P::OutgoingSsnReset { .. })
                | (P::OutgoingSsnReset { .. }, P::Response { .. })
                | (P::Response { .. }, P::Response { .. })
                | (P::AddOutgoingStreams { .. }, P::AddIncomingStreams { .. })
                | (P::AddIncomingStreams { .. }, P::AddOutgoingStreams { .. })
        ),
        _ => false,
    }
}

/// Receiver-side helpers for the reset (kept here so the hot path in `rx.rs` stays small).
impl Receiver {
    /// Holds `d` back if a deferred reset covers it; gives it back otherwise.
    #[inline]
    pub(super) fn hold_if_deferred(&mut self, tsn: u64, d: DataChunk) -> Option<DataChunk> {
        match &mut self.deferred {
            Some(def) if def.holds(tsn, &d) => {
                def.held.push((tsn, d));
                None
            }
            _ => Some(d),
        }
    }

    /// Sorts the (stream, SSN) entries of a FORWARD-TSN up to `new` while a reset waits;
    /// returns those to apply at once.
    ///
    /// The sender assigns SSNs of the new numbering only after its last assigned TSN
    /// (and RFC 6525 §5.1.2 A1 has it queue such data until the answer), so an entry for
    /// a stream being reset normally names an SSN of the old numbering: it applies now,
    /// before the reset discards that numbering. But when a chunk of that stream held
    /// back as new numbering lies at or below `new`, the sender gave that chunk up too,
    /// and the entry, which names the largest SSN skipped on the stream (RFC 3758 §3.2),
    /// is of the new numbering: it waits until the reset is done and the held chunks are
    /// placed, or the messages after the skipped ones would wait forever for SSNs that
    /// never come. (A sender that skipped new-numbering messages of which nothing arrived
    /// cannot be told apart; it broke A1 to send them.)
    pub(super) fn defer_forward_tsn(
        &mut self,
        new: u64,
        entries: Vec<(u16, u16)>,
    ) -> Vec<(u16, u16)> {
        let Some(def) = self.deferred.as_mut() else {
            return entries;
        };
        def.forwarded = Some(def.forwarded.map_or(new, |f| f.max(new)));
        let (later, now): (Vec<_>, Vec<_>) = entries.into_iter().partition(|&(stream, _)| {
            def.held
                .iter()
                .any(|(tsn, d)| *tsn <= new && d.stream == stream)
        });
        def.skips.extend(later);
        now
    }
}

#[cfg(test)]
#[path = "reconfig_tests.rs"]
mod tests;
