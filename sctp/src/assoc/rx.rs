//! Receiving side: TSN tracking, duplicate detection, bounded reassembly, ordered and
//! unordered delivery, and SACK generation (delayed per RFC 9260 §6.2).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{unwrap_tsn, AssociationStats};
use crate::config::AssociationConfig;
use crate::event::Event;
use crate::wire::{cause_code, chunk_type, DataChunk, ErrorCause, ForwardTsnChunk};

/// Most duplicate TSNs reported in one SACK.
const MAX_DUPS: usize = 16;
/// Most gap blocks reported in one SACK.
const MAX_GAPS: usize = 128;

/// Whether fragment `c` belongs to the message whose first fragment is `head`: same
/// stream and delivery, and for ordered delivery the same stream sequence number.
fn same_message(head: &DataChunk, c: &DataChunk) -> bool {
    c.stream == head.stream
        && c.unordered == head.unordered
        && (head.unordered || c.ssn == head.ssn)
}

/// See [`Receiver::run`].
#[derive(Debug)]
struct Run {
    /// TSN of the first fragment.
    first: u64,
    /// The first fragment, its payload taken out into `bytes`.
    head: DataChunk,
    /// Payload bytes of every fragment so far.
    bytes: BytesMut,
    /// Payload length of each fragment (to give them back to the map).
    lens: Vec<u32>,
    /// The last fragment pushed ends the message.
    ended: bool,
}

impl Run {
    fn next_tsn(&self) -> u64 {
        self.first + self.lens.len() as u64
    }

    /// Whether `d` may follow (the checks `assemble` makes on every fragment).
    fn continued_by(&self, d: &DataChunk) -> bool {
        !d.beginning && same_message(&self.head, d)
    }

    fn push(&mut self, d: &DataChunk) {
        self.bytes.extend_from_slice(&d.payload);
        self.lens.push(d.payload.len() as u32);
        self.ended = d.ending;
    }
}

#[derive(Debug, Default)]
struct InStream {
    next_ssn: u16,
    pending: BTreeMap<u16, (u32, Bytes)>,
}

/// Receiving-side state.
#[derive(Debug)]
pub(crate) struct Receiver {
    /// Highest TSN received in sequence (64-bit unwrapped).
    cum: u64,
    above: BTreeSet<u64>,
    reasm: BTreeMap<u64, DataChunk>,
    /// The message whose fragments arrive in TSN order from its first one on: built
    /// in place (each fragment copied once, straight out of its packet, and no map
    /// operation) until it is whole or something arrives that does not continue it.
    /// Boxed: an idle association pays one pointer for it.
    run: Option<Box<Run>>,
    /// Length of the buffer the current packet's payloads are slices of: a payload
    /// kept (reassembly map, a message waiting for the user) that is far smaller than
    /// that buffer is copied out, so slices cannot keep large buffers alive and what
    /// the window admits bounds the memory held (to four times, or a page per message).
    pub(crate) shared_len: usize,
    /// Size of the last message reassembled: the capacity a new run starts with, so a
    /// stream of equal messages is built without growing (and copying) its buffer.
    last_reassembled: usize,
    /// Bytes in `reasm` and `run`.
    reasm_bytes: usize,
    /// Bytes received and not yet consumed by the user (reassembly, reordering, events).
    held: usize,
    streams: HashMap<u16, InStream>,
    dups: Vec<u32>,
    urgent: bool,
    pub sack_needed: bool,
    pub sack_deadline: Option<Instant>,
    packets_since_sack: u32,
    pub sack_path: usize,
    buffer: usize,
    last_advertised: usize,
    /// The peer's stream reset waiting for missing TSNs (RFC 6525, see `reconfig.rs`).
    pub(super) deferred: Option<Box<super::reconfig::Deferred>>,
}

impl Receiver {
    /// `cum` is the peer's initial TSN minus one.
    pub fn new(cum: u32, cfg: &AssociationConfig) -> Receiver {
        Receiver {
            cum: (1u64 << 32) | cum as u64,
            above: BTreeSet::new(),
            reasm: BTreeMap::new(),
            run: None,
            shared_len: 0,
            last_reassembled: 0,
            reasm_bytes: 0,
            held: 0,
            streams: HashMap::new(),
            dups: Vec::new(),
            urgent: false,
            sack_needed: false,
            sack_deadline: None,
            packets_since_sack: 0,
            sack_path: 0,
            buffer: cfg.receive_buffer as usize,
            last_advertised: cfg.receive_buffer as usize,
            deferred: None,
        }
    }

    pub fn held(&self) -> usize {
        self.held
    }

    pub fn cum32(&self) -> u32 {
        self.cum as u32
    }

    fn a_rwnd(&self) -> usize {
        self.buffer.saturating_sub(self.held)
    }

    /// Returns whether the TSN is new, recording duplicates.
    fn accept_tsn(&mut self, tsn32: u32, stats: &mut AssociationStats) -> Option<u64> {
        let tsn = unwrap_tsn(self.cum, tsn32);
        if tsn <= self.cum || self.above.contains(&tsn) {
            stats.duplicates_received += 1;
            if self.dups.len() < MAX_DUPS {
                self.dups.push(tsn32);
            }
            self.urgent = true;
            return None;
        }
        if tsn - self.cum > u16::MAX as u64 {
            // Beyond what a gap block can express: far outside any sane window.
            stats.data_dropped += 1;
            return None;
        }
        Some(tsn)
    }

    fn mark(&mut self, tsn: u64) {
        if tsn == self.cum + 1 {
            self.cum = tsn;
            while self.above.remove(&(self.cum + 1)) {
                self.cum += 1;
            }
        } else {
            self.above.insert(tsn);
        }
        if !self.above.is_empty() {
            // Gaps exist: SACK at once (RFC 9260 §6.7).
            self.urgent = true;
        }
    }

    /// Records a TSN without keeping its data (DATA for an invalid stream).
    pub fn mark_only(&mut self, tsn32: u32, stats: &mut AssociationStats) {
        if let Some(tsn) = self.accept_tsn(tsn32, stats) {
            self.mark(tsn);
        }
    }

    /// Takes a DATA chunk; complete messages become events. An error means the peer
    /// broke the protocol and the association must abort with that cause.
    pub fn on_data(
        &mut self,
        d: DataChunk,
        events: &mut VecDeque<Event>,
        stats: &mut AssociationStats,
        _cfg: &AssociationConfig,
    ) -> Result<(), ErrorCause> {
        let Some(tsn) = self.accept_tsn(d.tsn, stats) else {
            return Ok(());
        };
        let len = d.payload.len();
        if self.held + len > self.buffer {
            // Out of window. The next in-sequence TSN is still taken, up to twice the
            // buffer: when nothing is ready for the user only new data can free it, so
            // partial or out-of-order data cannot deadlock; and when unread messages
            // fill it, the sender's zero-window probe (sent only with nothing in
            // flight, so about one packet per round trip) is kept rather than dropped,
            // because a dropped probe stalls the association for a retransmission
            // timeout after the user's read reopens the window. Unread messages thus
            // hold at most twice the buffer.
            if tsn != self.cum + 1 || self.held + len > 2 * self.buffer {
                stats.data_dropped += 1;
                if tsn == self.cum + 1 && self.reasm_bytes >= self.buffer {
                    // One unfinished message fills the buffer: it can never complete.
                    return Err(ErrorCause::new(cause_code::OUT_OF_RESOURCE, Bytes::new()));
                }
                return Ok(());
            }
        }
        if d.immediate {
            self.urgent = true;
        }
        self.mark(tsn);
        self.held += len;
        let d = if self.deferred.is_some() {
            DataChunk {
                payload: self.own(d.payload),
                ..d
            }
        } else {
            d
        };
        let Some(d) = self.hold_if_deferred(tsn, d) else {
            return Ok(());
        };
        self.place(tsn, d, events, stats)
    }

    /// Tries to complete the message containing `tsn` (fragments have consecutive TSNs).
    fn assemble(
        &mut self,
        tsn: u64,
        events: &mut VecDeque<Event>,
        stats: &mut AssociationStats,
    ) -> Result<(), ErrorCause> {
        let mut first = tsn;
        loop {
            let Some(c) = self.reasm.get(&first) else {
                return Ok(());
            };
            if c.beginning {
                break;
            }
            if first != tsn && c.ending {
                return Ok(());
            }
            first -= 1;
        }
        let mut last = tsn;
        loop {
            let Some(c) = self.reasm.get(&last) else {
                return Ok(());
            };
            if c.ending {
                break;
            }
            if last != tsn && c.beginning {
                return Ok(());
            }
            last += 1;
        }
        let head = &self.reasm[&first];
        let (stream, unordered, ssn, ppid) = (head.stream, head.unordered, head.ssn, head.ppid);
        let mut total = 0usize;
        for (t, c) in self.reasm.range(first..=last) {
            let interior_flag = (*t != first && c.beginning) || (*t != last && c.ending);
            if !same_message(head, c) || interior_flag {
                return Err(ErrorCause::new(
                    cause_code::PROTOCOL_VIOLATION,
                    &b"inconsistent fragments"[..],
                ));
            }
            total += c.payload.len();
        }
        self.last_reassembled = total;
        let mut msg = BytesMut::with_capacity(total);
        for t in first..=last {
            if let Some(c) = self.reasm.remove(&t) {
                msg.extend_from_slice(&c.payload);
            }
        }
        self.reasm_bytes -= total;
        self.deliver(stream, unordered, ssn, ppid, msg.freeze(), events, stats);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        stream: u16,
        unordered: bool,
        ssn: u16,
        ppid: u32,
        bytes: Bytes,
        events: &mut VecDeque<Event>,
        stats: &mut AssociationStats,
    ) {
        if unordered {
            stats.messages_received += 1;
            events.push_back(Event::Data {
                stream,
                ppid,
                ordered: false,
                bytes,
            });
            return;
        }
        let st = self.streams.entry(stream).or_default();
        if ssn == st.next_ssn {
            stats.messages_received += 1;
            events.push_back(Event::Data {
                stream,
                ppid,
                ordered: true,
                bytes,
            });
            st.next_ssn = st.next_ssn.wrapping_add(1);
            while let Some((ppid, bytes)) = st.pending.remove(&st.next_ssn) {
                stats.messages_received += 1;
                events.push_back(Event::Data {
                    stream,
                    ppid,
                    ordered: true,
                    bytes,
                });
                st.next_ssn = st.next_ssn.wrapping_add(1);
            }
        } else if (ssn.wrapping_sub(st.next_ssn) as i16) > 0 && !st.pending.contains_key(&ssn) {
            st.pending.insert(ssn, (ppid, bytes));
        } else {
            // An SSN already delivered or duplicated: a broken peer; drop it.
            self.held -= bytes.len();
            stats.data_dropped += 1;
        }
    }

    /// FORWARD-TSN (RFC 3758 §3.6): skip abandoned TSNs, drop their fragments and
    /// release ordered messages the skipped SSNs were holding back.
    pub fn on_forward_tsn(
        &mut self,
        f: ForwardTsnChunk,
        events: &mut VecDeque<Event>,
        stats: &mut AssociationStats,
    ) {
        self.urgent = true;
        let new = unwrap_tsn(self.cum, f.new_cum_tsn);
        if new <= self.cum || new - self.cum > u16::MAX as u64 {
            return;
        }
        self.drop_fragments_through(new);
        self.above = self.above.split_off(&(new + 1));
        self.cum = new;
        while self.above.remove(&(self.cum + 1)) {
            self.cum += 1;
        }
        let streams = self.defer_forward_tsn(new, f.streams);
        self.skip_ssns(streams, events, stats);
    }

    /// Drops the fragments at or below `through`: a FORWARD-TSN skipped the rest of
    /// their messages, which therefore never complete.
    pub(super) fn drop_fragments_through(&mut self, through: u64) {
        if self.run.as_ref().is_some_and(|r| r.first <= through) {
            self.spill_run();
        }
        let keep = self.reasm.split_off(&(through + 1));
        for c in std::mem::replace(&mut self.reasm, keep).into_values() {
            self.reasm_bytes -= c.payload.len();
            self.held -= c.payload.len();
        }
    }

    /// Applies the (stream, SSN) entries of a FORWARD-TSN: each stream's SSNs up to the
    /// one named are skipped, and the messages waiting behind them are delivered.
    pub(super) fn skip_ssns(
        &mut self,
        entries: Vec<(u16, u16)>,
        events: &mut VecDeque<Event>,
        stats: &mut AssociationStats,
    ) {
        for (stream, ssn) in entries {
            let Some(st) = self.streams.get_mut(&stream) else {
                self.streams.insert(
                    stream,
                    InStream {
                        next_ssn: ssn.wrapping_add(1),
                        pending: BTreeMap::new(),
                    },
                );
                continue;
            };
            if (ssn.wrapping_sub(st.next_ssn) as i16) < 0 {
                continue;
            }
            // Deliver what waited behind the skipped SSNs, in order.
            let skipped: Vec<u16> = st
                .pending
                .keys()
                .copied()
                .filter(|k| {
                    (ssn.wrapping_sub(*k) as i16) >= 0 && (k.wrapping_sub(st.next_ssn) as i16) >= 0
                })
                .collect();
            let mut ordered: Vec<(u16, u16)> = skipped
                .iter()
                .map(|k| (k.wrapping_sub(st.next_ssn), *k))
                .collect();
            ordered.sort_unstable();
            for (_, k) in ordered {
                if let Some((ppid, bytes)) = st.pending.remove(&k) {
                    stats.messages_received += 1;
                    events.push_back(Event::Data {
                        stream,
                        ppid,
                        ordered: true,
                        bytes,
                    });
                }
            }
            st.next_ssn = ssn.wrapping_add(1);
            while let Some((ppid, bytes)) = st.pending.remove(&st.next_ssn) {
                stats.messages_received += 1;
                events.push_back(Event::Data {
                    stream,
                    ppid,
                    ordered: true,
                    bytes,
                });
                st.next_ssn = st.next_ssn.wrapping_add(1);
            }
        }
    }

    /// Called once per packet that carried DATA: decides between SACK now and delayed.
    pub fn after_data_packet(&mut self, now: Instant, path: usize, cfg: &AssociationConfig) {
        self.sack_path = path;
        self.packets_since_sack += 1;
        if self.urgent || self.packets_since_sack >= cfg.sack_frequency {
            self.sack_needed = true;
        } else if self.sack_deadline.is_none() {
            self.sack_deadline = Some(now + cfg.sack_delay);
        }
    }

    /// The user took `n` bytes; opens the window and asks for a window update SACK
    /// when it grew by a quarter of the buffer.
    pub fn consumed(&mut self, n: usize) {
        self.held = self.held.saturating_sub(n);
        if self.a_rwnd() >= self.last_advertised + self.buffer / 4 {
            self.sack_needed = true;
        }
    }

    /// Appends a SACK of at most `room` bytes and resets the SACK triggers.
    pub fn write_sack(&mut self, buf: &mut Vec<u8>, room: usize) {
        let ndups = self.dups.len().min((room - 16) / 4);
        let max_gaps = ((room - 16 - 4 * ndups) / 4).min(MAX_GAPS);
        let at = buf.len();
        let a_rwnd = self.a_rwnd();
        buf.extend_from_slice(&[chunk_type::SACK, 0, 0, 0]);
        buf.extend_from_slice(&(self.cum as u32).to_be_bytes());
        buf.extend_from_slice(&(a_rwnd.min(u32::MAX as usize) as u32).to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0, 0]);
        let mut ngaps = 0usize;
        let mut run: Option<(u64, u64)> = None;
        for &t in &self.above {
            match run {
                Some((s, e)) if t == e + 1 => run = Some((s, t)),
                Some((s, e)) => {
                    if ngaps == max_gaps {
                        run = None;
                        break;
                    }
                    put_gap(buf, s - self.cum, e - self.cum);
                    ngaps += 1;
                    run = Some((t, t));
                }
                None => run = Some((t, t)),
            }
        }
        if let Some((s, e)) = run {
            if ngaps < max_gaps {
                put_gap(buf, s - self.cum, e - self.cum);
                ngaps += 1;
            }
        }
        for d in self.dups.drain(..).take(ndups) {
            buf.extend_from_slice(&d.to_be_bytes());
        }
        let len = (buf.len() - at) as u16;
        buf[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
        buf[at + 12..at + 14].copy_from_slice(&(ngaps as u16).to_be_bytes());
        buf[at + 14..at + 16].copy_from_slice(&(ndups as u16).to_be_bytes());
        self.sack_needed = false;
        self.sack_deadline = None;
        self.packets_since_sack = 0;
        self.urgent = false;
        self.last_advertised = a_rwnd;
    }
}

/// Hooks for stream reconfiguration (RFC 6525), driven from `reconfig.rs`.
impl Receiver {
    /// Highest TSN received in sequence (64-bit unwrapped).
    pub(super) fn cum64(&self) -> u64 {
        self.cum
    }

    /// Restarts the SSNs of incoming `streams` (empty: all) at 0. Messages still waiting
    /// for an earlier SSN cannot get it any more, so they are handed out first, in order.
    pub(super) fn reset_in_streams(
        &mut self,
        streams: &[u16],
        events: &mut VecDeque<Event>,
        stats: &mut AssociationStats,
    ) {
        let ids: Vec<u16> = if streams.is_empty() {
            self.streams.keys().copied().collect()
        } else {
            streams.to_vec()
        };
        for id in ids {
            let Some(st) = self.streams.remove(&id) else {
                continue;
            };
            let mut rest: Vec<(u16, (u32, Bytes))> = st.pending.into_iter().collect();
            rest.sort_unstable_by_key(|(ssn, _)| ssn.wrapping_sub(st.next_ssn));
            for (_, (ppid, bytes)) in rest {
                stats.messages_received += 1;
                events.push_back(Event::Data {
                    stream: id,
                    ppid,
                    ordered: true,
                    bytes,
                });
            }
        }
    }

    /// Delivers or reassembles a chunk already counted in the TSN map and the window:
    /// one just received, or one a deferred reset held back when it arrived.
    pub(super) fn place(
        &mut self,
        tsn: u64,
        d: DataChunk,
        events: &mut VecDeque<Event>,
        stats: &mut AssociationStats,
    ) -> Result<(), ErrorCause> {
        if d.beginning && d.ending {
            let payload = self.own(d.payload);
            self.deliver(d.stream, d.unordered, d.ssn, d.ppid, payload, events, stats);
            return Ok(());
        }
        self.reasm_bytes += d.payload.len();
        match &mut self.run {
            Some(run) if tsn == run.next_tsn() => {
                if run.continued_by(&d) {
                    run.push(&d);
                    return self.grow_run(events, stats);
                }
                self.spill_run();
            }
            None if d.beginning => {
                let hint = self.last_reassembled.min(self.buffer);
                let fragments = hint / d.payload.len().max(1) + 1;
                let mut run = Box::new(Run {
                    first: tsn,
                    bytes: BytesMut::with_capacity(hint.max(2 * d.payload.len())),
                    lens: Vec::with_capacity(fragments.clamp(2, 4096)),
                    ended: false,
                    head: DataChunk {
                        payload: Bytes::new(),
                        ..d
                    },
                });
                run.push(&d);
                self.run = Some(run);
                return self.grow_run(events, stats);
            }
            _ => {}
        }
        let d = DataChunk {
            payload: self.own(d.payload),
            ..d
        };
        let try_now = d.ending || self.reasm.contains_key(&(tsn + 1));
        self.reasm.insert(tsn, d);
        if try_now {
            self.assemble(tsn, events, stats)?;
        }
        Ok(())
    }

    /// A payload to keep: copied out when it is far smaller than its buffer.
    fn own(&self, payload: Bytes) -> Bytes {
        if self.shared_len > 4096 && payload.len().saturating_mul(4) < self.shared_len {
            Bytes::copy_from_slice(&payload)
        } else {
            payload
        }
    }

    /// Gives the run's fragments back to `reasm`, where the general (out-of-order) path
    /// takes over. Their payloads are slices of the run's buffer (no copy).
    fn spill_run(&mut self) {
        let Some(mut run) = self.run.take() else {
            return;
        };
        let n = run.lens.len();
        // The buffer was sized for a whole message: slices of a buffer far larger than
        // what they hold would keep it alive (memory the window does not count).
        let copy =
            run.bytes.capacity() > 4096 && run.bytes.len().saturating_mul(4) < run.bytes.capacity();
        for (i, len) in run.lens.iter().enumerate() {
            let piece = run.bytes.split_to(*len as usize);
            let payload = if copy {
                Bytes::copy_from_slice(&piece)
            } else {
                piece.freeze()
            };
            self.reasm.insert(
                run.first + i as u64,
                DataChunk {
                    tsn: (run.first + i as u64) as u32,
                    beginning: i == 0,
                    ending: false,
                    immediate: false,
                    payload,
                    ..run.head.clone()
                },
            );
        }
        debug_assert!(n > 0 && run.bytes.is_empty());
    }

    /// Takes fragments that arrived early from `reasm` into the run; delivers the
    /// message once its last fragment is in.
    fn grow_run(
        &mut self,
        events: &mut VecDeque<Event>,
        stats: &mut AssociationStats,
    ) -> Result<(), ErrorCause> {
        loop {
            let Some(run) = &mut self.run else {
                return Ok(());
            };
            if run.ended {
                break;
            }
            let next = run.next_tsn();
            let Some(c) = self.reasm.get(&next) else {
                return Ok(());
            };
            if !run.continued_by(c) {
                // Inconsistent fragments: the general path judges them.
                self.spill_run();
                return self.assemble(next, events, stats);
            }
            if let Some(c) = self.reasm.remove(&next) {
                run.push(&c);
            }
        }
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        let total = run.bytes.len();
        self.reasm_bytes -= total;
        self.last_reassembled = total;
        let h = run.head;
        self.deliver(
            h.stream,
            h.unordered,
            h.ssn,
            h.ppid,
            run.bytes.freeze(),
            events,
            stats,
        );
        Ok(())
    }
}

#[cfg(test)]
impl Receiver {
    /// Fragments waiting for reassembly (in `reasm` or the run), and chunks a deferred
    /// reset holds back: what could be stranded.
    pub(crate) fn leftovers_for_tests(&self) -> (usize, usize) {
        let fragments = self.reasm.len() + self.run.as_ref().map_or(0, |r| r.lens.len());
        let held = self.deferred.as_ref().map_or(0, |d| d.held.len());
        (fragments, held)
    }
}

fn put_gap(buf: &mut Vec<u8>, start: u64, end: u64) {
    buf.extend_from_slice(&(start as u16).to_be_bytes());
    buf.extend_from_slice(&(end as u16).to_be_bytes());
}
