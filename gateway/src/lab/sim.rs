//! The simulated-time scenario: pool-core's production registrar, PE and PU
//! state machines, driven by a discrete-event scheduler on virtual time, with
//! every message delayed by the network delay; the CalcApp workload
//! ([`super::workload`]) runs on each PE.
//!
//! Virtual time is nanoseconds since a base [`Instant`]; the state machines
//! get `base + offset` as `now`. Handle resolution, PE selection, endpoint
//! keep-alives and failure reports are the real ones; the application
//! protocol between a PU and a PE (request, accept/reject, cookie, complete,
//! session keep-alive) is modelled here as delayed messages.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use pool_core::asap::pe::{PeAction, PeConfig, PoolElementClient};
use pool_core::asap::pu::{PoolUserClient, PuAction, PuConfig, PuEvent};
use pool_core::asap::registrar::{
    Action, Registrar, RegistrarConfig, RegistrarEvent, RemovalReason,
};
use pool_core::asap::{PeerId, WallClock};
use pool_core::types::{PeId, Policy, PoolHandle, Transport, TransportProtocol, TransportUse};
use pool_core::wire::AsapMessage;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::params::{ParamError, Params, PolicyChoice};
use super::workload::{CalcEvent, CalcServer, FailureStream, RequestStream};

/// What one run measured (within the measurement window).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunResult {
    /// Work the PEs did, re-processing included, over their total capacity (0..1).
    pub utilisation: f64,
    /// Mean of request size / handling delay, in % of the average PE capacity.
    pub handling_speed: f64,
    /// Mean handling delay (queuing + startup + processing), s.
    pub handling_delay: f64,
    /// Mean queuing delay: created until the PU starts on it, s.
    pub queuing_delay: f64,
    /// Mean startup delay: dequeued until a PE accepted it (first time), s.
    pub startup_delay: f64,
    /// Mean processing time: first accepted until complete (failovers included), s.
    pub processing_time: f64,
    /// Requests completed.
    pub requests: u64,
    /// PE failures (clean and silent).
    pub failures: u64,
    /// Silent PE failures.
    pub silent_failures: u64,
    /// Requests interrupted by a silent failure.
    pub interrupted: u64,
    /// Mean work lost per request interrupted by a silent failure (calculations since its last cookie).
    pub lost_per_interrupted: f64,
    /// Share of the work done that was lost (re-processed).
    pub lost_share: f64,
    /// Times a PU moved a request to another PE.
    pub failovers: u64,
    /// ENDPOINT_UNREACHABLE reports sent by PUs.
    pub failure_reports: u64,
    /// PEs the registrar removed after a missed endpoint keep-alive.
    pub keep_alive_removals: u64,
    /// PEs the registrar removed because of failure reports.
    pub report_removals: u64,
    /// Requests a PE rejected (Reject and Retry).
    pub rejects: u64,
    /// Handle resolutions the registrar answered.
    pub resolutions: u64,
    /// Simulation events processed.
    pub events: u64,
}

type InstId = usize;

/// Application messages towards a PE.
#[derive(Clone, Copy, Debug)]
enum ToPe {
    Request {
        pu: usize,
        sess: u64,
        size: f64,
        start: f64,
    },
    KeepAlive {
        pu: usize,
        sess: u64,
        seq: u64,
    },
}

/// Application messages towards a PU (all for session `sess`).
#[derive(Clone, Copy, Debug)]
enum ToPu {
    Accept,
    Reject,
    Cookie(f64),
    Complete,
    KeepAliveAck(u64),
    /// The PE closed the session (clean shutdown, or nobody there), with its final cookie.
    Closed(Option<f64>),
}

#[derive(Debug)]
enum Ev {
    RegMsg { peer: PeerId, msg: AsapMessage },
    PeMsg { inst: InstId, msg: AsapMessage },
    PuMsg { pu: usize, msg: AsapMessage },
    RegTimer,
    PeTimer { inst: InstId },
    PuTimer { pu: usize },
    PeApp { inst: InstId, msg: ToPe },
    PuApp { pu: usize, sess: u64, msg: ToPu },
    Work { inst: InstId, gen: u64 },
    KaSend { pu: usize, sess: u64 },
    KaTimeout { pu: usize, sess: u64, seq: u64 },
    Arrival { pu: usize },
    Retry { pu: usize, sess: u64 },
    Fail { inst: InstId },
}

struct Entry {
    t: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    // Reversed: BinaryHeap is a max-heap, the scheduler wants the earliest first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.t, o.seq).cmp(&(self.t, self.seq))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Alive,
    Silent,
    Clean,
}

struct Inst {
    life: Life,
    client: Option<PoolElementClient>,
    calc: CalcServer,
    peer: PeerId,
    armed: Option<u64>,
    work_gen: u64,
    slot: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Selecting,
    Waiting,
    Processing,
}

#[derive(Clone, Copy, Debug)]
struct Req {
    size: f64,
    created: u64,
}

#[derive(Debug)]
struct Active {
    req: Req,
    sess: u64,
    phase: Phase,
    inst: Option<InstId>,
    pe_id: PeId,
    checkpoint: f64,
    dequeued: u64,
    accepted: Option<u64>,
    ka_seq: u64,
    ka_pending: Option<(u64, u64)>,
}

struct PuState {
    client: PoolUserClient,
    peer: PeerId,
    armed: Option<u64>,
    requests: RequestStream,
    queue: VecDeque<Req>,
    cur: Option<Active>,
}

#[derive(Clone, Copy, Debug)]
enum Peer {
    Pe(InstId),
    Pu(usize),
}

#[derive(Default)]
struct Acc {
    speeds: Vec<f64>,
    delays: f64,
    queuing: f64,
    startup: f64,
    processing: f64,
    lost_silent: Vec<f64>,
    lost_total: f64,
    r: RunResult,
}

/// One scenario run.
struct Sim {
    p: Params,
    base: Instant,
    now: u64,
    end: u64,
    warmup: u64,
    seq: u64,
    heap: BinaryHeap<Entry>,
    delay: u64,
    handle: PoolHandle,
    registrar: Registrar,
    reg_armed: Option<u64>,
    registrar_addr: SocketAddr,
    peers: HashMap<PeerId, Peer>,
    insts: Vec<Inst>,
    by_pe_id: HashMap<PeId, InstId>,
    pus: Vec<PuState>,
    failures: Vec<FailureStream>,
    rng: ChaCha8Rng,
    seed: u64,
    next_sess: u64,
    next_pe_id: PeId,
    next_peer: PeerId,
    acc: Acc,
}

fn ns(secs: f64) -> u64 {
    (secs * 1e9).round().max(0.0) as u64
}

use super::workload::least_used_load as load_of;

/// Runs one scenario with `seed` and returns what it measured.
pub fn run(p: &Params, seed: u64) -> Result<RunResult, ParamError> {
    p.validate()?;
    let mut sim = Sim::new(p.clone(), seed);
    sim.run();
    Ok(sim.finish())
}

impl Sim {
    fn new(p: Params, seed: u64) -> Self {
        let base = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let registrar_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 3863);
        let config = RegistrarConfig {
            id: 1,
            keep_alive_interval: Duration::from_secs_f64(p.endpoint_ka_interval),
            keep_alive_timeout: Duration::from_secs_f64(p.endpoint_ka_timeout),
            max_bad_pe_reports: p.max_bad_pe_report.unwrap_or(u32::MAX),
            max_resolution_items: p.resolution_items,
            ..RegistrarConfig::default()
        };
        let clock = WallClock::new(base, 1_700_000_000_000);
        let registrar = Registrar::new(
            config,
            clock,
            Box::new(ChaCha8Rng::seed_from_u64(rng.next_u64())),
        )
        .expect("lab registrar configuration is valid");
        let failures = (0..p.pes)
            .map(|i| FailureStream::new(seed, i, p.mtbf_secs(), p.silent))
            .collect();
        Self {
            end: ns(p.duration),
            warmup: ns(p.warmup),
            delay: ns(p.network_delay),
            base,
            now: 0,
            seq: 0,
            heap: BinaryHeap::new(),
            handle: PoolHandle::new(b"calcapp".to_vec()).expect("valid pool handle"),
            registrar,
            reg_armed: None,
            registrar_addr,
            peers: HashMap::new(),
            insts: Vec::new(),
            by_pe_id: HashMap::new(),
            pus: Vec::new(),
            failures,
            rng,
            seed,
            next_sess: 1,
            next_pe_id: 1,
            next_peer: 1,
            acc: Acc::default(),
            p,
        }
    }

    fn instant(&self) -> Instant {
        self.base + Duration::from_nanos(self.now)
    }

    fn secs(&self) -> f64 {
        self.now as f64 / 1e9
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Entry {
            t: t.max(self.now),
            seq: self.seq,
            ev,
        });
    }

    fn after(&mut self, d: u64, ev: Ev) {
        self.at(self.now + d, ev);
    }

    fn in_window(&self) -> bool {
        self.now >= self.warmup && self.now <= self.end
    }

    fn run(&mut self) {
        for slot in 0..self.p.pes {
            self.spawn_pe(slot);
        }
        let interval = self.p.request_interval();
        for u in 0..self.p.pus() {
            let peer = self.new_peer(Peer::Pu(u));
            let mut config = PuConfig::new(vec![self.registrar_addr]);
            config.cache_staleness = Duration::from_secs_f64(self.p.cache_staleness);
            let client = PoolUserClient::new(
                config,
                Box::new(ChaCha8Rng::seed_from_u64(self.rng.next_u64())),
            )
            .expect("lab PU configuration is valid");
            let mut requests = RequestStream::new(self.seed, u, interval, self.p.request_size);
            let first = ns(requests.gap());
            self.pus.push(PuState {
                client,
                peer,
                armed: None,
                requests,
                queue: VecDeque::new(),
                cur: None,
            });
            self.at(first, Ev::Arrival { pu: u });
        }
        while let Some(e) = self.heap.pop() {
            if e.t > self.end {
                break;
            }
            self.now = e.t;
            self.acc.r.events += 1;
            self.dispatch(e.ev);
        }
        self.now = self.end;
    }

    fn finish(mut self) -> RunResult {
        let end = self.secs();
        let mut busy = 0.0;
        for inst in &mut self.insts {
            if inst.life == Life::Alive {
                inst.calc.advance(end);
            }
            busy += inst.calc.busy_time();
        }
        let window = (self.p.duration - self.p.warmup).max(f64::MIN_POSITIVE);
        let mut r = std::mem::take(&mut self.acc.r);
        r.utilisation = busy / (self.p.pes as f64 * window);
        let n = self.acc.speeds.len();
        r.requests = n as u64;
        r.handling_speed = mean(&self.acc.speeds);
        r.handling_delay = if n == 0 {
            f64::NAN
        } else {
            self.acc.delays / n as f64
        };
        let per = |x: f64| if n == 0 { f64::NAN } else { x / n as f64 };
        r.queuing_delay = per(self.acc.queuing);
        r.startup_delay = per(self.acc.startup);
        r.processing_time = per(self.acc.processing);
        r.interrupted = self.acc.lost_silent.len() as u64;
        r.lost_per_interrupted = mean(&self.acc.lost_silent);
        let work = busy * self.p.capacity;
        r.lost_share = if work > 0.0 {
            self.acc.lost_total / work
        } else {
            0.0
        };
        let c = self.registrar.counters();
        r.resolutions = c.resolutions;
        r
    }

    fn new_peer(&mut self, who: Peer) -> PeerId {
        let id = self.next_peer;
        self.next_peer += 1;
        self.peers.insert(id, who);
        id
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::RegMsg { peer, msg } => {
                let now = self.instant();
                self.registrar.handle_message(now, peer, msg);
                self.drain_registrar();
            }
            Ev::PeMsg { inst, msg } => {
                let now = self.instant();
                if let Some(c) = self.insts[inst].client.as_mut() {
                    c.handle_message(now, msg);
                    self.drain_pe(inst);
                }
            }
            Ev::PuMsg { pu, msg } => {
                let now = self.instant();
                self.pus[pu].client.handle_message(now, msg);
                self.drain_pu(pu);
            }
            Ev::RegTimer => {
                if self.reg_armed == Some(self.now) {
                    self.reg_armed = None;
                    let now = self.instant();
                    self.registrar.handle_timeout(now);
                    self.drain_registrar();
                }
            }
            Ev::PeTimer { inst } => {
                if self.insts[inst].armed == Some(self.now) {
                    self.insts[inst].armed = None;
                    let now = self.instant();
                    if let Some(c) = self.insts[inst].client.as_mut() {
                        c.handle_timeout(now);
                        self.drain_pe(inst);
                    }
                }
            }
            Ev::PuTimer { pu } => {
                if self.pus[pu].armed == Some(self.now) {
                    self.pus[pu].armed = None;
                    let now = self.instant();
                    self.pus[pu].client.handle_timeout(now);
                    self.drain_pu(pu);
                }
            }
            Ev::PeApp { inst, msg } => self.pe_app(inst, msg),
            Ev::PuApp { pu, sess, msg } => self.pu_app(pu, sess, msg),
            Ev::Work { inst, gen } => self.work(inst, gen),
            Ev::KaSend { pu, sess } => self.ka_send(pu, sess),
            Ev::KaTimeout { pu, sess, seq } => self.ka_timeout(pu, sess, seq),
            Ev::Arrival { pu } => self.arrival(pu),
            Ev::Retry { pu, sess } => {
                if self.pus[pu]
                    .cur
                    .as_ref()
                    .is_some_and(|a| a.sess == sess && a.phase == Phase::Selecting)
                {
                    self.try_select(pu);
                }
            }
            Ev::Fail { inst } => self.fail(inst),
        }
    }

    // ---- the state machines' outputs ----

    fn timer_ns(&self, t: Option<Instant>) -> Option<u64> {
        t.map(|t| {
            u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
        })
    }

    fn drain_registrar(&mut self) {
        while let Some(a) = self.registrar.poll_action() {
            if let Action::Send { peer, msg } = a {
                match self.peers.get(&peer).copied() {
                    Some(Peer::Pe(inst)) => self.after(self.delay, Ev::PeMsg { inst, msg }),
                    Some(Peer::Pu(pu)) => self.after(self.delay, Ev::PuMsg { pu, msg }),
                    None => {}
                }
            }
        }
        let counting = self.in_window();
        while let Some(e) = self.registrar.poll_event() {
            if let (true, RegistrarEvent::Removed { reason, .. }) = (counting, e) {
                match reason {
                    RemovalReason::KeepAliveTimeout => self.acc.r.keep_alive_removals += 1,
                    RemovalReason::FailureReports => self.acc.r.report_removals += 1,
                    _ => {}
                }
            }
        }
        let t = self.timer_ns(self.registrar.poll_timeout());
        if t.is_some() && t != self.reg_armed {
            self.reg_armed = t;
            self.at(t.unwrap_or(0), Ev::RegTimer);
        } else if t.is_none() {
            self.reg_armed = None;
        }
    }

    fn drain_pe(&mut self, inst: InstId) {
        let peer = self.insts[inst].peer;
        let mut out = Vec::new();
        let t = {
            let Some(c) = self.insts[inst].client.as_mut() else {
                return;
            };
            while let Some(a) = c.poll_action() {
                if let PeAction::Send(msg) = a {
                    out.push(msg);
                }
            }
            while c.poll_event().is_some() {}
            c.poll_timeout()
        };
        for msg in out {
            self.after(self.delay, Ev::RegMsg { peer, msg });
        }
        let t = self.timer_ns(t);
        if t.is_some() && t != self.insts[inst].armed {
            self.insts[inst].armed = t;
            self.at(t.unwrap_or(0), Ev::PeTimer { inst });
        } else if t.is_none() {
            self.insts[inst].armed = None;
        }
    }

    fn drain_pu(&mut self, pu: usize) {
        let peer = self.pus[pu].peer;
        let mut out = Vec::new();
        let mut events = Vec::new();
        {
            let c = &mut self.pus[pu].client;
            while let Some(a) = c.poll_action() {
                if let PuAction::Send(msg) = a {
                    out.push(msg);
                }
            }
            while let Some(e) = c.poll_event() {
                events.push(e);
            }
        }
        for msg in out {
            self.after(self.delay, Ev::RegMsg { peer, msg });
        }
        let t = self.timer_ns(self.pus[pu].client.poll_timeout());
        if t.is_some() && t != self.pus[pu].armed {
            self.pus[pu].armed = t;
            self.at(t.unwrap_or(0), Ev::PuTimer { pu });
        } else if t.is_none() {
            self.pus[pu].armed = None;
        }
        let selecting = self.pus[pu]
            .cur
            .as_ref()
            .filter(|a| a.phase == Phase::Selecting)
            .map(|a| a.sess);
        let Some(sess) = selecting else {
            return;
        };
        for e in events {
            match e {
                PuEvent::Resolved { .. } => {
                    self.try_select(pu);
                    return;
                }
                PuEvent::ResolutionFailed { .. } => {
                    self.after(ns(self.p.retry_delay), Ev::Retry { pu, sess });
                    return;
                }
                PuEvent::RegistrarLost { .. } => {}
            }
        }
    }

    // ---- pool elements ----

    fn spawn_pe(&mut self, slot: usize) {
        let inst = self.insts.len();
        let peer = self.new_peer(Peer::Pe(inst));
        let pe_id = self.next_pe_id;
        self.next_pe_id += 1;
        let policy = match self.p.policy {
            PolicyChoice::LeastUsed => Policy::LeastUsed { load: 0 },
            PolicyChoice::RoundRobin => Policy::RoundRobin,
            PolicyChoice::Random => Policy::Random,
        };
        // A fresh PE has a new address, as a replacement host would.
        let octets = pe_id.to_be_bytes();
        let transport = Transport {
            protocol: TransportProtocol::Sctp,
            port: 9000,
            transport_use: TransportUse::DataOnly,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(
                10, octets[1], octets[2], octets[3],
            ))],
        };
        let mut config = PeConfig::new(
            self.handle.clone(),
            transport,
            policy,
            vec![self.registrar_addr],
        );
        config.pe_id = Some(pe_id);
        // Every change of the request count is reported (Least Used needs it).
        config.load_change_threshold = 1;
        let clock = WallClock::new(self.base, 1_700_000_000_000);
        let mut client = PoolElementClient::new(
            config,
            clock,
            Box::new(ChaCha8Rng::seed_from_u64(self.rng.next_u64())),
        )
        .expect("lab PE configuration is valid");
        client.start(self.instant());
        let window = (self.p.warmup, self.p.duration);
        self.insts.push(Inst {
            life: Life::Alive,
            client: Some(client),
            calc: CalcServer::new(self.p.capacity, self.p.cookie_interval, self.secs(), window),
            peer,
            armed: None,
            work_gen: 0,
            slot,
        });
        self.by_pe_id.insert(pe_id, inst);
        self.drain_pe(inst);
        if self.p.mtbf_secs().is_some() {
            let life = self.failures[slot].life();
            self.after(ns(life), Ev::Fail { inst });
        }
    }

    fn rearm_work(&mut self, inst: InstId) {
        let i = &mut self.insts[inst];
        i.work_gen += 1;
        let gen = i.work_gen;
        if let Some(t) = i.calc.next_event() {
            let t = ((t * 1e9).ceil() as u64).max(self.now + 1);
            self.at(t, Ev::Work { inst, gen });
        }
    }

    fn report_load(&mut self, inst: InstId) {
        let now = self.instant();
        let load = load_of(self.insts[inst].calc.jobs());
        if let Some(c) = self.insts[inst].client.as_mut() {
            c.set_load(now, load);
        }
        self.drain_pe(inst);
    }

    fn send_to_pu(&mut self, pu: usize, sess: u64, msg: ToPu) {
        self.after(self.delay, Ev::PuApp { pu, sess, msg });
    }

    fn pe_app(&mut self, inst: InstId, msg: ToPe) {
        let life = self.insts[inst].life;
        match (life, msg) {
            (Life::Silent, _) => {}
            (Life::Clean, ToPe::Request { pu, sess, .. } | ToPe::KeepAlive { pu, sess, .. }) => {
                self.send_to_pu(pu, sess, ToPu::Closed(None));
            }
            (Life::Alive, ToPe::KeepAlive { pu, sess, seq }) => {
                self.send_to_pu(pu, sess, ToPu::KeepAliveAck(seq));
            }
            (
                Life::Alive,
                ToPe::Request {
                    pu,
                    sess,
                    size,
                    start,
                },
            ) => {
                let now = self.secs();
                let calc = &mut self.insts[inst].calc;
                if self.p.max_jobs > 0 && calc.jobs() >= self.p.max_jobs {
                    if self.in_window() {
                        self.acc.r.rejects += 1;
                    }
                    self.send_to_pu(pu, sess, ToPu::Reject);
                    return;
                }
                calc.advance(now);
                calc.add((pu, sess), size, start);
                self.send_to_pu(pu, sess, ToPu::Accept);
                self.rearm_work(inst);
                self.report_load(inst);
            }
        }
    }

    fn work(&mut self, inst: InstId, gen: u64) {
        if self.insts[inst].work_gen != gen || self.insts[inst].life != Life::Alive {
            return;
        }
        let now = self.secs();
        let mut out = Vec::new();
        let calc = &mut self.insts[inst].calc;
        calc.advance(now);
        calc.take_due(&mut out);
        let mut completed = false;
        for e in out {
            match e {
                CalcEvent::Cookie { key, done } => {
                    self.send_to_pu(key.0, key.1, ToPu::Cookie(done))
                }
                CalcEvent::Complete { key } => {
                    completed = true;
                    self.send_to_pu(key.0, key.1, ToPu::Complete);
                }
            }
        }
        self.rearm_work(inst);
        if completed {
            self.report_load(inst);
        }
    }

    fn fail(&mut self, inst: InstId) {
        if self.insts[inst].life != Life::Alive {
            return;
        }
        let now = self.secs();
        let slot = self.insts[inst].slot;
        let silent = self.failures[slot].silent();
        let counting = self.in_window();
        let stopped = {
            let i = &mut self.insts[inst];
            i.calc.advance(now);
            i.work_gen += 1;
            i.calc.stop_all()
        };
        if counting {
            self.acc.r.failures += 1;
            if silent {
                self.acc.r.silent_failures += 1;
            }
        }
        if silent {
            self.insts[inst].life = Life::Silent;
            // Gone without a word: no deregistration, no answers, no closing.
            self.insts[inst].client = None;
            for s in &stopped {
                let lost = if self.p.abort_restart {
                    s.done
                } else {
                    s.done - s.last_cookie
                };
                if counting {
                    self.acc.lost_silent.push(lost);
                    self.acc.lost_total += lost;
                }
            }
        } else {
            self.insts[inst].life = Life::Clean;
            for s in &stopped {
                if counting && self.p.abort_restart {
                    self.acc.lost_total += s.done;
                }
                self.send_to_pu(s.key.0, s.key.1, ToPu::Closed(Some(s.done)));
            }
            let now = self.instant();
            if let Some(c) = self.insts[inst].client.as_mut() {
                c.shutdown(now);
            }
            self.drain_pe(inst);
        }
        self.spawn_pe(slot);
    }

    // ---- pool users ----

    fn arrival(&mut self, pu: usize) {
        let u = &mut self.pus[pu];
        let size = u.requests.size();
        let next = ns(u.requests.gap());
        u.queue.push_back(Req {
            size,
            created: self.now,
        });
        self.after(next, Ev::Arrival { pu });
        if self.pus[pu].cur.is_none() {
            self.start_next(pu);
        }
    }

    fn start_next(&mut self, pu: usize) {
        let Some(req) = self.pus[pu].queue.pop_front() else {
            return;
        };
        let sess = self.next_sess;
        self.next_sess += 1;
        self.pus[pu].cur = Some(Active {
            req,
            sess,
            phase: Phase::Selecting,
            inst: None,
            pe_id: 0,
            checkpoint: 0.0,
            dequeued: self.now,
            accepted: None,
            ka_seq: 0,
            ka_pending: None,
        });
        self.try_select(pu);
    }

    fn try_select(&mut self, pu: usize) {
        let now = self.instant();
        let handle = self.handle.clone();
        let chosen = self.pus[pu].client.select(now, &handle);
        if let Some(pe) = chosen {
            self.send_request(pu, pe.id);
        }
        self.drain_pu(pu);
    }

    fn send_request(&mut self, pu: usize, pe_id: PeId) {
        let Some(&inst) = self.by_pe_id.get(&pe_id) else {
            // Not a PE of this scenario: select again after a pause.
            if let Some(sess) = self.pus[pu].cur.as_ref().map(|a| a.sess) {
                self.after(ns(self.p.retry_delay), Ev::Retry { pu, sess });
            }
            return;
        };
        let Some(a) = self.pus[pu].cur.as_mut() else {
            return;
        };
        a.phase = Phase::Waiting;
        a.inst = Some(inst);
        a.pe_id = pe_id;
        let (sess, size, start) = (a.sess, a.req.size, a.checkpoint);
        self.after(
            self.delay,
            Ev::PeApp {
                inst,
                msg: ToPe::Request {
                    pu,
                    sess,
                    size,
                    start,
                },
            },
        );
        self.after(ns(self.p.session_ka_interval), Ev::KaSend { pu, sess });
    }

    fn pu_app(&mut self, pu: usize, sess: u64, msg: ToPu) {
        let abort = self.p.abort_restart;
        let Some(a) = self.pus[pu].cur.as_mut().filter(|a| a.sess == sess) else {
            return;
        };
        match msg {
            ToPu::Accept => {
                a.phase = Phase::Processing;
                a.accepted.get_or_insert(self.now);
            }
            ToPu::Reject => {
                self.new_session(pu);
                if let Some(sess) = self.pus[pu].cur.as_ref().map(|a| a.sess) {
                    self.after(ns(self.p.retry_delay), Ev::Retry { pu, sess });
                }
            }
            ToPu::Cookie(done) => {
                if !abort {
                    a.checkpoint = a.checkpoint.max(done);
                }
            }
            ToPu::KeepAliveAck(seq) => {
                if let Some((pending, sent)) = a.ka_pending {
                    if pending == seq {
                        a.ka_pending = None;
                        let next = (sent + ns(self.p.session_ka_interval)).max(self.now);
                        self.at(next, Ev::KaSend { pu, sess });
                    }
                }
            }
            ToPu::Closed(cookie) => {
                if let (Some(c), false) = (cookie, abort) {
                    a.checkpoint = a.checkpoint.max(c);
                }
                self.failover(pu);
            }
            ToPu::Complete => {
                let req = a.req;
                let (dequeued, accepted) = (a.dequeued, a.accepted.unwrap_or(self.now));
                self.pus[pu].cur = None;
                if req.created >= self.warmup {
                    let delay = (self.now - req.created) as f64 / 1e9;
                    self.acc.delays += delay;
                    self.acc.queuing += (dequeued - req.created) as f64 / 1e9;
                    self.acc.startup += (accepted - dequeued) as f64 / 1e9;
                    self.acc.processing += (self.now - accepted) as f64 / 1e9;
                    self.acc
                        .speeds
                        .push(100.0 * req.size / delay.max(1e-9) / self.p.capacity);
                }
                self.start_next(pu);
            }
        }
    }

    fn ka_send(&mut self, pu: usize, sess: u64) {
        let Some(a) = self.pus[pu].cur.as_mut().filter(|a| a.sess == sess) else {
            return;
        };
        let Some(inst) = a.inst else {
            return;
        };
        if a.phase == Phase::Selecting || a.ka_pending.is_some() {
            return;
        }
        a.ka_seq += 1;
        let seq = a.ka_seq;
        a.ka_pending = Some((seq, self.now));
        self.after(
            self.delay,
            Ev::PeApp {
                inst,
                msg: ToPe::KeepAlive { pu, sess, seq },
            },
        );
        self.after(
            ns(self.p.session_ka_timeout),
            Ev::KaTimeout { pu, sess, seq },
        );
    }

    fn ka_timeout(&mut self, pu: usize, sess: u64, seq: u64) {
        let Some(a) = self.pus[pu].cur.as_ref().filter(|a| a.sess == sess) else {
            return;
        };
        if a.ka_pending.map(|(s, _)| s) != Some(seq) {
            return;
        }
        // The PE is gone: tell the registrar, then move on.
        let pe_id = a.pe_id;
        let handle = self.handle.clone();
        self.pus[pu].client.report_failure(&handle, pe_id);
        if self.in_window() {
            self.acc.r.failure_reports += 1;
        }
        self.failover(pu);
    }

    /// Starts a new session for the current request (stale messages of the old one are ignored).
    fn new_session(&mut self, pu: usize) {
        let sess = self.next_sess;
        self.next_sess += 1;
        let abort = self.p.abort_restart;
        if let Some(a) = self.pus[pu].cur.as_mut() {
            a.sess = sess;
            a.phase = Phase::Selecting;
            a.inst = None;
            a.ka_pending = None;
            if abort {
                a.checkpoint = 0.0;
            }
        }
    }

    fn failover(&mut self, pu: usize) {
        if self.in_window() {
            self.acc.r.failovers += 1;
        }
        self.new_session(pu);
        self.try_select(pu);
    }
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        f64::NAN
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}
