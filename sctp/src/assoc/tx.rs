//! Sending side: message queue, fragmentation, packet assembly, SACK processing,
//! retransmission (T3-rtx and fast retransmit) and congestion control.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::{unwrap_tsn, Association, SendError, State, MAX_PATHS};
use crate::config::AssociationConfig;
use crate::event::Event;
use crate::wire::{
    finish_packet, Chunk, CommonHeader, DataChunk, GapBlock, InitChunk, InitParam, DATA_HEADER_LEN,
};

/// A message not yet fully handed to TSNs.
#[derive(Debug)]
struct OutMsg {
    stream: u16,
    ppid: u32,
    unordered: bool,
    ssn: u16,
    data: Bytes,
    offset: usize,
    pr: Pr,
}

/// Partial-reliability policy of one message (RFC 3758); `msg` links its fragments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pr {
    msg: u64,
    max_rtx: Option<u16>,
    expires: Option<Instant>,
}

impl Pr {
    fn limited(&self) -> bool {
        self.max_rtx.is_some() || self.expires.is_some()
    }
}

/// A DATA chunk sent and not yet cumulatively acknowledged.
#[derive(Debug)]
struct Sent {
    stream: u16,
    ssn: u16,
    ppid: u32,
    flags: u8,
    payload: Bytes,
    path: u8,
    sent_at: Instant,
    sends: u16,
    /// Acknowledged by a gap block.
    acked: bool,
    /// Counted in its path's flight size.
    in_flight: bool,
    /// Marked for retransmission.
    rtx: bool,
    /// Marked by fast retransmit (may go out regardless of cwnd once).
    fast: bool,
    fast_done: bool,
    miss: u8,
    pr: Pr,
    /// Given up on (RFC 3758): neither retransmitted nor counted in flight.
    abandoned: bool,
}

/// Sending-side state.
#[derive(Debug)]
pub(crate) struct Sender {
    queue: VecDeque<OutMsg>,
    /// Bytes not yet assigned to TSNs.
    queued_bytes: usize,
    inflight: VecDeque<Sent>,
    /// Payload bytes of `inflight`.
    inflight_bytes: usize,
    /// Payload bytes counted in some path's flight.
    outstanding: usize,
    /// Highest TSN cumulatively acknowledged (64-bit unwrapped).
    cum_ack: u64,
    next_tsn: u64,
    next_ssn: Vec<u16>,
    peer_rwnd: usize,
    last_a_rwnd: u32,
    rtx_count: usize,
    fast_pending: usize,
    gap_acked: usize,
    fast_recovery_exit: Option<u64>,
    want_writable: bool,
    send_buffer: usize,
    /// Smallest fragment worth starting in a partly filled packet.
    min_fragment: usize,
    /// Partial reliability negotiated with the peer.
    pub pr_enabled: bool,
    /// Advanced.Peer.Ack.Point (RFC 3758 §3.5), 64-bit unwrapped.
    adv_ack: u64,
    pub send_fwd_tsn: bool,
    next_msg: u64,
}

impl Sender {
    pub fn new(initial_tsn: u32, streams: u16, cfg: &AssociationConfig) -> Sender {
        let base = (1u64 << 32) | initial_tsn as u64;
        Sender {
            queue: VecDeque::new(),
            queued_bytes: 0,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            outstanding: 0,
            cum_ack: base - 1,
            next_tsn: base,
            next_ssn: vec![0; streams as usize],
            peer_rwnd: 0,
            last_a_rwnd: 0,
            rtx_count: 0,
            fast_pending: 0,
            gap_acked: 0,
            fast_recovery_exit: None,
            want_writable: false,
            send_buffer: cfg.send_buffer,
            min_fragment: 512,
            pr_enabled: false,
            adv_ack: base - 1,
            send_fwd_tsn: false,
            next_msg: 0,
        }
    }

    pub fn set_peer_rwnd(&mut self, rwnd: u32) {
        self.last_a_rwnd = rwnd;
        self.peer_rwnd = rwnd as usize;
    }

    pub fn peer_rwnd_raw(&self) -> u32 {
        self.last_a_rwnd
    }

    pub fn limit_streams(&mut self, n: u16) {
        self.next_ssn.truncate(n as usize);
    }

    #[cfg(test)]
    pub fn next_tsn_raw(&self) -> u32 {
        self.next_tsn as u32
    }

    pub fn buffered(&self) -> usize {
        self.queued_bytes + self.inflight_bytes
    }

    /// Nothing queued and nothing unacknowledged.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.inflight.is_empty()
    }

    pub fn clear(&mut self) {
        self.queue.clear();
        self.inflight.clear();
        self.queued_bytes = 0;
        self.inflight_bytes = 0;
        self.outstanding = 0;
        self.rtx_count = 0;
        self.fast_pending = 0;
    }

    /// Admits a message of `len` bytes against the send buffer, which also holds the
    /// `parked` bytes of messages held back behind a stream reset (RFC 6525): those join
    /// this queue later, so a message on any stream counts them, or the buffer could
    /// overshoot its size by up to a whole buffer. A refusal owes the user
    /// [`Event::Writable`].
    pub fn admit(&mut self, len: usize, parked: usize) -> Result<(), SendError> {
        let buffered = self.buffered() + parked;
        if buffered + len > self.send_buffer {
            self.want_writable = true;
            return Err(SendError::WouldBlock {
                buffered_amount: buffered,
            });
        }
        Ok(())
    }

    /// Queues a message already admitted by [`Sender::admit`].
    pub fn enqueue(
        &mut self,
        stream: u16,
        ppid: u32,
        ordered: bool,
        data: Bytes,
        max_rtx: Option<u16>,
        expires: Option<Instant>,
    ) -> Result<(), SendError> {
        if ordered && stream as usize >= self.next_ssn.len() {
            return Err(SendError::InvalidStream(stream));
        }
        self.requeue(stream, ppid, ordered, data, max_rtx, expires);
        Ok(())
    }

    fn rwnd_allows(&self) -> bool {
        self.peer_rwnd > 0 || self.outstanding == 0
    }
}

/// Hooks for stream reconfiguration (RFC 6525), driven from `reconfig.rs`.
impl Sender {
    /// Whether messages on `streams` (empty: any) still wait for TSNs.
    pub fn queued_on(&self, streams: &[u16]) -> bool {
        self.queue
            .iter()
            .any(|m| streams.is_empty() || streams.contains(&m.stream))
    }

    /// The last TSN handed out (Sender's Last Assigned TSN).
    pub fn last_assigned_tsn(&self) -> u32 {
        self.next_tsn.wrapping_sub(1) as u32
    }

    /// Restarts the SSNs of outgoing `streams` (empty: all) at 0.
    pub fn reset_out_ssn(&mut self, streams: &[u16]) {
        if streams.is_empty() {
            self.next_ssn.fill(0);
        }
        for &s in streams {
            if let Some(n) = self.next_ssn.get_mut(s as usize) {
                *n = 0;
            }
        }
    }

    /// Queues a message already admitted against the send buffer (by [`Sender::admit`]):
    /// a new one, or one parked while its stream was being reset.
    pub fn requeue(
        &mut self,
        stream: u16,
        ppid: u32,
        ordered: bool,
        data: Bytes,
        max_rtx: Option<u16>,
        expires: Option<Instant>,
    ) {
        self.next_msg += 1;
        self.queued_bytes += data.len();
        self.queue.push_back(OutMsg {
            stream,
            ppid,
            unordered: !ordered,
            // Assigned at first transmission, so a message abandoned before it left
            // leaves no hole in its stream.
            ssn: 0,
            pr: Pr {
                msg: self.next_msg,
                max_rtx,
                expires,
            },
            data,
            offset: 0,
        });
    }
}

fn padded(n: usize) -> usize {
    (n + 3) & !3
}

impl Association {
    fn init_chunk(&self) -> InitChunk {
        InitChunk {
            initiate_tag: self.local_tag,
            a_rwnd: self.cfg.receive_buffer,
            outbound_streams: self.cfg.outbound_streams,
            inbound_streams: self.cfg.inbound_streams,
            initial_tsn: self.local_tsn,
            params: self
                .local_addresses
                .iter()
                .map(|a| InitParam::Address(*a))
                .chain(
                    self.cfg
                        .partial_reliability
                        .then_some(InitParam::ForwardTsnSupported),
                )
                .chain(super::supported_extensions(&self.cfg))
                .collect(),
        }
    }

    fn data_allowed(&self) -> bool {
        matches!(
            self.state,
            State::Established | State::ShutdownPending | State::ShutdownReceived
        )
    }

    fn rtx_dest(&self) -> usize {
        self.alternate_path(self.data_path)
    }

    /// Chooses where the next packet goes, only if something will surely go there.
    fn pick_dest(&self) -> Option<usize> {
        if self.send_cookie_echo {
            return Some(self.hs_path);
        }
        if self.send_cookie_ack
            || self.send_shutdown
            || self.send_shutdown_ack
            || self.send_shutdown_complete
        {
            return Some(self.data_path);
        }
        if let Some((d, _)) = self.ctrl.front() {
            return Some(d.unwrap_or(self.data_path));
        }
        if self.state == State::Closed {
            return None;
        }
        if let Some(i) = self.paths.iter().position(|p| p.hb_send_now) {
            return Some(i);
        }
        if self.rx.sack_needed {
            return Some(self.rx.sack_path.min(self.paths.len() - 1));
        }
        if self.tx.send_fwd_tsn && self.data_allowed() {
            return Some(self.data_path);
        }
        if self.data_allowed() {
            if self.tx.rtx_count > 0 {
                let d = self.rtx_dest();
                if self.paths[d].can_send_data() || self.tx.fast_pending > 0 {
                    return Some(d);
                }
            }
            if !self.tx.queue.is_empty()
                && self.burst_left > 0
                && self.paths[self.data_path].can_send_data()
                && self.tx.rwnd_allows()
            {
                return Some(self.data_path);
            }
        }
        None
    }

    /// Appends the next packet to `buf` (whatever `buf` holds stays: a driver builds GSO
    /// trains in place); returns its destination and the local address to send from (if
    /// known). Nothing is appended when it returns `None`.
    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> Option<(SocketAddr, Option<SocketAddr>)> {
        let start = buf.len();
        if self.send_init {
            self.send_init = false;
            self.handshake_sent_at = Some(now);
            CommonHeader {
                src_port: self.local_port,
                dst_port: self.peer_port,
                vtag: 0,
            }
            .encode(buf);
            Chunk::Init(self.init_chunk()).encode(buf);
            finish_packet(&mut buf[start..]);
            self.stats.packets_sent += 1;
            let p = &self.paths[self.hs_path];
            return Some((p.addr, p.local));
        }
        if self.reconfig.as_ref().is_some_and(|r| r.wants_send()) {
            self.reconfig_send(now);
        }
        let dest = self.pick_dest()?;
        // Every length check below is against the end of this packet in `buf`.
        let pmtu = start + self.paths[dest].pmtu;
        let empty = start + crate::wire::COMMON_HEADER_LEN;
        CommonHeader {
            src_port: self.local_port,
            dst_port: self.peer_port,
            vtag: self.peer_tag,
        }
        .encode(buf);
        if self.send_cookie_echo {
            self.send_cookie_echo = false;
            self.handshake_sent_at = Some(now);
            Chunk::CookieEcho(self.cookie.clone()).encode(buf);
        }
        if self.send_cookie_ack {
            self.send_cookie_ack = false;
            Chunk::CookieAck.encode(buf);
        }
        while let Some((d, _)) = self.ctrl.front() {
            if d.is_some_and(|d| d != dest) {
                break;
            }
            let Some((d, c)) = self.ctrl.pop_front() else {
                break;
            };
            let mark = buf.len();
            c.encode(buf);
            if buf.len() > pmtu {
                buf.truncate(mark);
                if mark > empty {
                    self.ctrl.push_front((d, c));
                    break;
                }
                // Larger than the path allows even alone: drop it.
            }
        }
        if self.state != State::Closed && (self.rx.sack_needed || self.rx.sack_deadline.is_some()) {
            let room = pmtu.saturating_sub(buf.len());
            if room >= 16 {
                self.rx.write_sack(buf, room);
                self.stats.sacks_sent += 1;
            }
        }
        if self.send_shutdown {
            self.send_shutdown = false;
            Chunk::Shutdown {
                cum_tsn: self.rx.cum32(),
            }
            .encode(buf);
        }
        if self.send_shutdown_ack {
            self.send_shutdown_ack = false;
            Chunk::ShutdownAck.encode(buf);
        }
        if self.send_shutdown_complete {
            self.send_shutdown_complete = false;
            Chunk::ShutdownComplete {
                t: self.shutdown_t_bit,
            }
            .encode(buf);
        }
        if self.state != State::Closed && self.paths[dest].hb_send_now && buf.len() + 28 <= pmtu {
            let hb = self.make_heartbeat(now, dest);
            hb.encode(buf);
        }
        if self.data_allowed() && self.tx.send_fwd_tsn {
            self.write_forward_tsn(now, dest, buf, pmtu);
        }
        if self.data_allowed() {
            if self.tx.rtx_count > 0 && dest == self.rtx_dest() {
                self.fill_retransmissions(now, dest, buf, empty, pmtu);
            }
            if dest == self.data_path && self.burst_left > 0 {
                let before = buf.len();
                self.fill_new_data(now, dest, buf, pmtu);
                if buf.len() > before {
                    self.burst_left -= 1;
                }
            }
        }
        if buf.len() <= empty {
            buf.truncate(start);
            return None;
        }
        finish_packet(&mut buf[start..]);
        self.stats.packets_sent += 1;
        let p = &self.paths[dest];
        Some((p.addr, p.local))
    }

    /// `empty`: the length of `buf` with this packet's common header alone; `pmtu`: the
    /// length `buf` may reach.
    fn fill_retransmissions(
        &mut self,
        now: Instant,
        dest: usize,
        buf: &mut Vec<u8>,
        empty: usize,
        pmtu: usize,
    ) {
        let mut sent_any = false;
        let base = self.tx.cum_ack + 1;
        let tx = &mut self.tx;
        let path = &mut self.paths[dest];
        for (i, s) in tx.inflight.iter_mut().enumerate() {
            if tx.rtx_count == 0 {
                break;
            }
            if !s.rtx {
                continue;
            }
            if !(path.can_send_data() || s.fast) {
                break;
            }
            let need = DATA_HEADER_LEN + padded(s.payload.len());
            if buf.len() + need > pmtu && buf.len() > empty {
                break;
            }
            s.rtx = false;
            tx.rtx_count -= 1;
            if s.fast {
                s.fast = false;
                tx.fast_pending = tx.fast_pending.saturating_sub(1);
            }
            s.in_flight = true;
            s.path = dest as u8;
            s.sends = s.sends.saturating_add(1);
            s.sent_at = now;
            path.flight += s.payload.len();
            tx.outstanding += s.payload.len();
            let tsn = (base + i as u64) as u32;
            DataChunk::put_header(buf, s.flags, s.payload.len(), tsn, s.stream, s.ssn, s.ppid);
            buf.extend_from_slice(&s.payload);
            crate::wire::pad4(buf);
            sent_any = true;
            self.stats.retransmissions += 1;
        }
        if sent_any {
            path.last_data_sent = Some(now);
            if path.t3.is_none() {
                path.t3 = Some(now + path.rto);
            }
        }
    }

    /// `pmtu`: the length `buf` may reach.
    fn fill_new_data(&mut self, now: Instant, dest: usize, buf: &mut Vec<u8>, pmtu: usize) {
        let mut sent_any = false;
        loop {
            let path = &mut self.paths[dest];
            if !path.can_send_data() {
                break;
            }
            let tx = &mut self.tx;
            let Some(msg) = tx.queue.front_mut() else {
                break;
            };
            if msg.offset == 0 && tx.pr_enabled && msg.pr.expires.is_some_and(|e| e <= now) {
                // Expired before it was sent (RFC 3758 §3.1): drop without a trace.
                tx.queued_bytes -= msg.data.len();
                tx.queue.pop_front();
                continue;
            }
            if buf.len() + DATA_HEADER_LEN + 4 > pmtu {
                break;
            }
            let room = (pmtu - buf.len() - DATA_HEADER_LEN) & !3;
            let remaining = msg.data.len() - msg.offset;
            if room < remaining && room < tx.min_fragment.min(path.pmtu / 4) && sent_any {
                break;
            }
            let len = remaining.min(room);
            if len == 0 {
                break;
            }
            if tx.peer_rwnd < len && tx.outstanding > 0 {
                break;
            }
            let payload = msg.data.slice(msg.offset..msg.offset + len);
            let beginning = msg.offset == 0;
            if beginning && !msg.unordered {
                if let Some(s) = tx.next_ssn.get_mut(msg.stream as usize) {
                    msg.ssn = *s;
                    *s = s.wrapping_add(1);
                }
            }
            msg.offset += len;
            let ending = msg.offset == msg.data.len();
            let flags = DataChunk::flags(msg.unordered, beginning, ending, false);
            let tsn = tx.next_tsn;
            tx.next_tsn += 1;
            DataChunk::put_header(buf, flags, len, tsn as u32, msg.stream, msg.ssn, msg.ppid);
            buf.extend_from_slice(&payload);
            crate::wire::pad4(buf);
            let (stream, ssn, ppid, pr) = (msg.stream, msg.ssn, msg.ppid, msg.pr);
            if ending {
                tx.queue.pop_front();
            }
            tx.queued_bytes -= len;
            tx.inflight_bytes += len;
            tx.outstanding += len;
            tx.peer_rwnd = tx.peer_rwnd.saturating_sub(len);
            tx.inflight.push_back(Sent {
                stream,
                ssn,
                ppid,
                flags,
                payload,
                path: dest as u8,
                sent_at: now,
                sends: 1,
                acked: false,
                in_flight: true,
                rtx: false,
                fast: false,
                fast_done: false,
                miss: 0,
                pr,
                abandoned: false,
            });
            path.flight += len;
            self.stats.data_chunks_sent += 1;
            sent_any = true;
        }
        if sent_any {
            let p = &mut self.paths[dest];
            p.last_data_sent = Some(now);
            if p.t3.is_none() {
                p.t3 = Some(now + p.rto);
            }
        }
    }

    /// Processes a cumulative ack with gap blocks (SACK, or SHUTDOWN's cumulative ack).
    pub(crate) fn on_sack(
        &mut self,
        now: Instant,
        cum_tsn: u32,
        a_rwnd: u32,
        mut gaps: Vec<GapBlock>,
        from_shutdown: bool,
    ) -> bool {
        let cum = unwrap_tsn(self.tx.cum_ack, cum_tsn);
        if cum < self.tx.cum_ack || cum >= self.tx.next_tsn {
            // Old or acknowledging TSNs never sent: ignore (RFC 9260 §6.2.1).
            return false;
        }
        let n = self.paths.len();
        let mut acked = [0usize; MAX_PATHS];
        let mut flight_before = [0usize; MAX_PATHS];
        for (i, p) in self.paths.iter().enumerate() {
            flight_before[i] = p.flight;
        }
        let mut rtt: Option<(usize, std::time::Duration)> = None;
        let cum_advanced = cum > self.tx.cum_ack;
        let mut htna = 0u64;
        let tx = &mut self.tx;
        while tx.cum_ack < cum {
            let Some(s) = tx.inflight.pop_front() else {
                break;
            };
            tx.cum_ack += 1;
            tx.inflight_bytes -= s.payload.len();
            if s.acked {
                tx.gap_acked -= 1;
            } else {
                acked[s.path as usize] += s.payload.len();
                htna = tx.cum_ack;
                if s.in_flight {
                    self.paths[s.path as usize].flight -= s.payload.len();
                    tx.outstanding -= s.payload.len();
                }
                if s.rtx {
                    tx.rtx_count -= 1;
                    if s.fast {
                        tx.fast_pending = tx.fast_pending.saturating_sub(1);
                    }
                }
            }
            if s.sends == 1 && rtt.is_none() && !s.acked {
                rtt = Some((s.path as usize, now.saturating_duration_since(s.sent_at)));
            }
        }
        if !gaps.is_empty() || tx.gap_acked > 0 {
            gaps.retain(|g| g.start >= 1 && g.start <= g.end);
            gaps.sort_unstable_by_key(|g| g.start);
            let mut gi = 0;
            for (i, s) in tx.inflight.iter_mut().enumerate() {
                let off = i + 1;
                while gi < gaps.len() && (gaps[gi].end as usize) < off {
                    gi += 1;
                }
                let in_gap = gi < gaps.len()
                    && gaps[gi].start as usize <= off
                    && off <= gaps[gi].end as usize;
                if in_gap && !s.acked {
                    s.acked = true;
                    tx.gap_acked += 1;
                    acked[s.path as usize] += s.payload.len();
                    htna = htna.max(tx.cum_ack + off as u64);
                    if s.in_flight {
                        s.in_flight = false;
                        self.paths[s.path as usize].flight -= s.payload.len();
                        tx.outstanding -= s.payload.len();
                    }
                    if s.rtx {
                        s.rtx = false;
                        tx.rtx_count -= 1;
                        if s.fast {
                            s.fast = false;
                            tx.fast_pending = tx.fast_pending.saturating_sub(1);
                        }
                    }
                    if s.sends == 1 && rtt.is_none() {
                        rtt = Some((s.path as usize, now.saturating_duration_since(s.sent_at)));
                    }
                } else if !in_gap && s.acked && !s.abandoned {
                    // Reneged (RFC 9260 §6.2.1): send it again.
                    s.acked = false;
                    tx.gap_acked -= 1;
                    s.rtx = true;
                    tx.rtx_count += 1;
                }
            }
            // Miss indications below the highest newly acknowledged TSN (§7.2.4).
            if htna > tx.cum_ack {
                let limit = (htna - tx.cum_ack - 1) as usize;
                let mut fast_paths = [false; MAX_PATHS];
                for s in tx.inflight.iter_mut().take(limit) {
                    if s.acked || s.rtx || s.fast_done || s.abandoned {
                        continue;
                    }
                    s.miss += 1;
                    if s.miss >= 3 {
                        s.fast_done = true;
                        s.rtx = true;
                        s.fast = true;
                        tx.rtx_count += 1;
                        tx.fast_pending += 1;
                        if s.in_flight {
                            s.in_flight = false;
                            self.paths[s.path as usize].flight -= s.payload.len();
                            tx.outstanding -= s.payload.len();
                        }
                        fast_paths[s.path as usize] = true;
                    }
                }
                if fast_paths.iter().any(|&f| f) {
                    self.stats.fast_retransmits += 1;
                    if tx.fast_recovery_exit.is_none() {
                        tx.fast_recovery_exit = Some(tx.next_tsn - 1);
                        for (i, f) in fast_paths.iter().enumerate().take(n) {
                            if *f {
                                self.paths[i].on_fast_loss();
                            }
                        }
                    }
                }
            }
        }
        let tx = &mut self.tx;
        if tx.fast_recovery_exit.is_some_and(|e| tx.cum_ack >= e) {
            tx.fast_recovery_exit = None;
        }
        let in_recovery = tx.fast_recovery_exit.is_some();
        if !from_shutdown {
            tx.last_a_rwnd = a_rwnd;
            tx.peer_rwnd = (a_rwnd as usize).saturating_sub(tx.outstanding);
        }
        if let Some((p, d)) = rtt {
            let cfg = self.cfg.clone();
            self.paths[p].rtt_sample(d, &cfg);
        }
        let mut any = false;
        for i in 0..n {
            let p = &mut self.paths[i];
            if acked[i] > 0 {
                any = true;
                if !in_recovery {
                    p.on_ack(acked[i], flight_before[i], cum_advanced);
                }
            }
            if p.flight == 0 {
                p.t3 = None;
            } else if acked[i] > 0 && cum_advanced {
                p.t3 = Some(now + p.rto);
            }
        }
        if any {
            for (i, a) in acked.iter().enumerate().take(n) {
                if *a > 0 {
                    self.path_alive(i);
                }
            }
            // Max.Burst limits what goes out *beyond* what this SACK clocked out: a
            // receiver that acknowledges a whole batch at once (one SACK per GSO train
            // read) would otherwise shrink the flight to one burst per round trip, and
            // sender and receiver would take turns instead of working at once. cwnd
            // still bounds the flight.
            let pmtu = self.paths[self.data_path].pmtu;
            let per_packet = pmtu
                .saturating_sub(crate::wire::COMMON_HEADER_LEN + DATA_HEADER_LEN)
                .max(1);
            let clocked: usize = acked.iter().take(n).map(|a| a.div_ceil(per_packet)).sum();
            self.burst_left = self.burst_left.saturating_add(clocked);
        }
        self.report_writable();
        self.pr_sweep(now);
        self.check_shutdown_progress(now);
        true
    }

    /// Reports [`Event::Writable`] to a user whose send was refused, once the whole send
    /// buffer (queued, unacknowledged, and parked behind a stream reset) is down to half.
    pub(super) fn report_writable(&mut self) {
        if self.tx.want_writable && self.buffered_amount() <= self.tx.send_buffer / 2 {
            self.tx.want_writable = false;
            self.events.push_back(Event::Writable);
        }
    }

    /// T3-rtx expired on a path (RFC 9260 §6.3.3).
    pub(crate) fn on_t3_expiry(&mut self, now: Instant, i: usize) {
        let _ = now;
        self.stats.t3_expiries += 1;
        let cfg = self.cfg.clone();
        let p = &mut self.paths[i];
        p.t3 = None;
        p.back_off(&cfg);
        p.on_t3_loss();
        let tx = &mut self.tx;
        for s in tx.inflight.iter_mut() {
            if s.path as usize == i && !s.acked && s.in_flight {
                s.in_flight = false;
                p.flight -= s.payload.len();
                tx.outstanding -= s.payload.len();
                if !s.rtx {
                    s.rtx = true;
                    tx.rtx_count += 1;
                }
            }
        }
        if self.tx.adv_ack > self.tx.cum_ack {
            // The FORWARD-TSN may have been lost: send it again (RFC 3758 §3.5 C4).
            self.tx.send_fwd_tsn = true;
        }
        self.pr_sweep(now);
        self.path_error(i);
    }

    /// Abandons messages whose chunks are due for retransmission but ran out of
    /// retransmissions or lifetime, and moves the Advanced.Peer.Ack.Point over them.
    fn pr_sweep(&mut self, now: Instant) {
        let tx = &mut self.tx;
        if !tx.pr_enabled {
            return;
        }
        let mut doomed: Vec<u64> = Vec::new();
        // A message is given up only once all its fragments have TSNs, so the
        // FORWARD-TSN can name its SSN and cover every fragment the peer may hold.
        let partly_sent = tx.queue.front().filter(|f| f.offset > 0).map(|f| f.pr.msg);
        for s in tx.inflight.iter() {
            if !s.rtx || s.abandoned || !s.pr.limited() || partly_sent == Some(s.pr.msg) {
                continue;
            }
            let over = s.pr.max_rtx.is_some_and(|m| s.sends > m);
            let expired = s.pr.expires.is_some_and(|e| e <= now);
            if (over || expired) && !doomed.contains(&s.pr.msg) {
                doomed.push(s.pr.msg);
            }
        }
        if !doomed.is_empty() {
            for s in tx.inflight.iter_mut() {
                if s.abandoned || !doomed.contains(&s.pr.msg) {
                    continue;
                }
                // Every fragment goes, even gap-acked ones, so the FORWARD-TSN covers
                // the whole message and the receiver drops its partial reassembly.
                s.abandoned = true;
                if s.in_flight {
                    s.in_flight = false;
                    self.paths[s.path as usize].flight -= s.payload.len();
                    tx.outstanding -= s.payload.len();
                }
                if s.rtx {
                    s.rtx = false;
                    tx.rtx_count -= 1;
                    if s.fast {
                        s.fast = false;
                        tx.fast_pending = tx.fast_pending.saturating_sub(1);
                    }
                }
            }
        }
        let mut adv = tx.cum_ack;
        for s in tx.inflight.iter() {
            if !s.abandoned {
                break;
            }
            adv += 1;
        }
        tx.adv_ack = adv;
        if adv > tx.cum_ack {
            tx.send_fwd_tsn = true;
        }
    }

    /// Writes FORWARD-TSN up to the Advanced.Peer.Ack.Point with the highest skipped
    /// SSN of each ordered stream.
    fn write_forward_tsn(&mut self, now: Instant, dest: usize, buf: &mut Vec<u8>, pmtu: usize) {
        let tx = &mut self.tx;
        tx.send_fwd_tsn = false;
        if !tx.pr_enabled || tx.adv_ack <= tx.cum_ack {
            return;
        }
        let n = (tx.adv_ack - tx.cum_ack) as usize;
        let mut streams: Vec<(u16, u16)> = Vec::new();
        for s in tx.inflight.iter().take(n) {
            if s.flags & 0x04 == 0 {
                match streams.iter_mut().find(|e| e.0 == s.stream) {
                    Some(e) => e.1 = s.ssn,
                    None => streams.push((s.stream, s.ssn)),
                }
            }
        }
        let max_streams = pmtu.saturating_sub(buf.len() + 8) / 4;
        streams.truncate(max_streams);
        Chunk::ForwardTsn(crate::wire::ForwardTsnChunk {
            new_cum_tsn: tx.adv_ack as u32,
            streams,
        })
        .encode(buf);
        let p = &mut self.paths[dest];
        if p.t3.is_none() {
            p.t3 = Some(now + p.rto);
        }
    }
}
