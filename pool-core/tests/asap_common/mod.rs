//! A tiny simulated network for the ASAP state machines: registrars, PE
//! clients and PU clients exchange messages (encoded and decoded by the wire
//! codec on the way) with a fixed one-way delay, in simulated time.
//!
//! Failure knobs: a frozen node (SIGSTOP) neither receives nor runs timers;
//! an aborted registrar closes every association to it (the clients are told
//! at once) and then stays frozen.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use pool_core::asap::pe::{PeAction, PeConfig, PeEvent, PoolElementClient};
use pool_core::asap::pu::{PoolUserClient, PuAction, PuConfig, PuEvent};
use pool_core::asap::registrar::{Action, Registrar, RegistrarConfig, RegistrarEvent};
use pool_core::asap::{PeerId, WallClock};
use pool_core::types::{Policy, PoolHandle, Transport, TransportProtocol, TransportUse};
use pool_core::wire::AsapMessage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Wall-clock time of the simulation's start (any fixed value works).
pub const EPOCH_MS: u64 = 1_700_000_000_000;

pub fn handle(name: &str) -> PoolHandle {
    PoolHandle::new(name).unwrap()
}

pub fn rng(seed: u64) -> Box<ChaCha8Rng> {
    Box::new(ChaCha8Rng::seed_from_u64(seed))
}

pub fn registrar_addr(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1)), 3863)
}

pub fn user_transport(last: u8) -> Transport {
    Transport {
        protocol: TransportProtocol::Sctp,
        port: 8000,
        transport_use: TransportUse::DataOnly,
        addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))],
    }
}

/// A PE configuration for registrars `0..n`.
pub fn pe_config(pool: &str, id: u32, policy: Policy, n_registrars: usize) -> PeConfig {
    let mut c = PeConfig::new(
        handle(pool),
        user_transport(id as u8),
        policy,
        (0..n_registrars).map(registrar_addr).collect(),
    );
    c.pe_id = Some(id);
    c
}

/// Encode then decode: every message crosses the real codec.
pub fn roundtrip(msg: &AsapMessage) -> AsapMessage {
    let mut buf = Vec::new();
    msg.encode(&mut buf).expect("encodable");
    AsapMessage::decode(&buf).expect("decodable")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Registrar { idx: usize, peer: PeerId },
    Pe { idx: usize, peer: PeerId },
    Pu { idx: usize, peer: PeerId },
}

/// A message on its way: (arrival, sequence, target, encoded bytes), earliest first.
type InFlight = Reverse<(Instant, u64, Target, Vec<u8>)>;

pub struct RegNode {
    pub r: Registrar,
    pub frozen: bool,
    pub events: Vec<(Instant, RegistrarEvent)>,
}

pub struct PeNode {
    pub c: PoolElementClient,
    /// (registrar index, association id)
    pub assoc: Option<(usize, PeerId)>,
    pub frozen: bool,
    pub events: Vec<(Instant, PeEvent)>,
}

pub struct PuNode {
    pub c: PoolUserClient,
    pub assoc: Option<(usize, PeerId)>,
    pub frozen: bool,
    pub events: Vec<(Instant, PuEvent)>,
}

pub struct Sim {
    pub start: Instant,
    pub now: Instant,
    pub delay: Duration,
    pub registrars: Vec<RegNode>,
    pub pes: Vec<PeNode>,
    pub pus: Vec<PuNode>,
    queue: BinaryHeap<InFlight>,
    /// Which client holds an association id: (is_pe, index).
    owners: HashMap<PeerId, (bool, usize)>,
    next_peer: PeerId,
    seq: u64,
}

impl Sim {
    pub fn new(delay: Duration) -> Self {
        let start = Instant::now();
        Self {
            start,
            now: start,
            delay,
            registrars: Vec::new(),
            pes: Vec::new(),
            pus: Vec::new(),
            queue: BinaryHeap::new(),
            owners: HashMap::new(),
            next_peer: 1,
            seq: 0,
        }
    }

    pub fn clock(&self) -> WallClock {
        WallClock::new(self.start, EPOCH_MS)
    }

    pub fn add_registrar(&mut self, config: RegistrarConfig) -> usize {
        let seed = 1000 + self.registrars.len() as u64;
        let r = Registrar::new(config, self.clock(), rng(seed)).unwrap();
        self.registrars.push(RegNode {
            r,
            frozen: false,
            events: Vec::new(),
        });
        self.registrars.len() - 1
    }

    /// Adds a PE and starts it.
    pub fn add_pe(&mut self, config: PeConfig) -> usize {
        let seed = 2000 + self.pes.len() as u64;
        let mut c = PoolElementClient::new(config, self.clock(), rng(seed)).unwrap();
        c.start(self.now);
        self.pes.push(PeNode {
            c,
            assoc: None,
            frozen: false,
            events: Vec::new(),
        });
        self.pes.len() - 1
    }

    pub fn add_pu(&mut self, config: PuConfig) -> usize {
        let seed = 3000 + self.pus.len() as u64;
        let c = PoolUserClient::new(config, rng(seed)).unwrap();
        self.pus.push(PuNode {
            c,
            assoc: None,
            frozen: false,
            events: Vec::new(),
        });
        self.pus.len() - 1
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn push(&mut self, target: Target, msg: &AsapMessage) {
        let mut buf = Vec::new();
        msg.encode(&mut buf).expect("encodable");
        self.seq += 1;
        self.queue
            .push(Reverse((self.now + self.delay, self.seq, target, buf)));
    }

    /// Aborts registrar `i`: every association to it closes (clients learn at
    /// once), and it stays silent afterwards.
    pub fn abort_registrar(&mut self, i: usize) {
        self.registrars[i].frozen = true;
        let now = self.now;
        for pe in &mut self.pes {
            if pe.assoc.is_some_and(|(r, _)| r == i) {
                pe.assoc = None;
                pe.c.handle_registrar_closed(now);
            }
        }
        for pu in &mut self.pus {
            if pu.assoc.is_some_and(|(r, _)| r == i) {
                pu.assoc = None;
                pu.c.handle_registrar_closed(now);
            }
        }
    }

    /// Moves every queued action of every machine into the network.
    pub fn pump(&mut self) {
        loop {
            let mut progress = false;
            for i in 0..self.registrars.len() {
                while let Some(ev) = self.registrars[i].r.poll_event() {
                    let now = self.now;
                    self.registrars[i].events.push((now, ev));
                }
                while let Some(a) = self.registrars[i].r.poll_action() {
                    progress = true;
                    if self.registrars[i].frozen {
                        continue;
                    }
                    match a {
                        Action::Send { peer, msg } => match self.owners.get(&peer) {
                            Some(&(true, idx)) => self.push(Target::Pe { idx, peer }, &msg),
                            Some(&(false, idx)) => self.push(Target::Pu { idx, peer }, &msg),
                            None => {}
                        },
                        Action::Close { peer } => {
                            let now = self.now;
                            match self.owners.remove(&peer) {
                                Some((true, idx))
                                    if self.pes[idx].assoc.map(|a| a.1) == Some(peer) =>
                                {
                                    self.pes[idx].assoc = None;
                                    self.pes[idx].c.handle_registrar_closed(now);
                                }
                                Some((false, idx))
                                    if self.pus[idx].assoc.map(|a| a.1) == Some(peer) =>
                                {
                                    self.pus[idx].assoc = None;
                                    self.pus[idx].c.handle_registrar_closed(now);
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
            for i in 0..self.pes.len() {
                while let Some(ev) = self.pes[i].c.poll_event() {
                    let now = self.now;
                    self.pes[i].events.push((now, ev));
                }
                while let Some(a) = self.pes[i].c.poll_action() {
                    progress = true;
                    match a {
                        PeAction::Connect { registrar, addr } => {
                            assert_eq!(addr, registrar_addr(registrar));
                            let peer = self.next_peer;
                            self.next_peer += 1;
                            self.owners.insert(peer, (true, i));
                            self.pes[i].assoc = Some((registrar, peer));
                        }
                        PeAction::Send(msg) => {
                            if let Some((idx, peer)) = self.pes[i].assoc {
                                self.push(Target::Registrar { idx, peer }, &msg);
                            }
                        }
                        PeAction::Close => {
                            if let Some((idx, peer)) = self.pes[i].assoc.take() {
                                self.owners.remove(&peer);
                                if !self.registrars[idx].frozen {
                                    self.registrars[idx].r.handle_peer_closed(peer);
                                }
                            }
                        }
                    }
                }
            }
            for i in 0..self.pus.len() {
                while let Some(ev) = self.pus[i].c.poll_event() {
                    let now = self.now;
                    self.pus[i].events.push((now, ev));
                }
                while let Some(a) = self.pus[i].c.poll_action() {
                    progress = true;
                    match a {
                        PuAction::Connect { registrar, addr } => {
                            assert_eq!(addr, registrar_addr(registrar));
                            let peer = self.next_peer;
                            self.next_peer += 1;
                            self.owners.insert(peer, (false, i));
                            self.pus[i].assoc = Some((registrar, peer));
                        }
                        PuAction::Send(msg) => {
                            if let Some((idx, peer)) = self.pus[i].assoc {
                                self.push(Target::Registrar { idx, peer }, &msg);
                            }
                        }
                        PuAction::Close => {
                            if let Some((idx, peer)) = self.pus[i].assoc.take() {
                                self.owners.remove(&peer);
                                if !self.registrars[idx].frozen {
                                    self.registrars[idx].r.handle_peer_closed(peer);
                                }
                            }
                        }
                    }
                }
            }
            if !progress {
                return;
            }
        }
    }

    fn next_time(&self) -> Option<Instant> {
        let mut t = self.queue.peek().map(|Reverse((t, ..))| *t);
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for r in self.registrars.iter().filter(|r| !r.frozen) {
            consider(r.r.poll_timeout());
        }
        for p in self.pes.iter().filter(|p| !p.frozen) {
            consider(p.c.poll_timeout());
        }
        for p in self.pus.iter().filter(|p| !p.frozen) {
            consider(p.c.poll_timeout());
        }
        t
    }

    fn deliver(&mut self, target: Target, bytes: Vec<u8>) {
        let msg = AsapMessage::decode(&bytes).expect("decodable");
        let now = self.now;
        match target {
            Target::Registrar { idx, peer } => {
                // A message on an association that was since closed is lost.
                if !self.registrars[idx].frozen && self.owners.contains_key(&peer) {
                    self.registrars[idx].r.handle_message(now, peer, msg);
                }
            }
            Target::Pe { idx, peer } => {
                let n = &mut self.pes[idx];
                if !n.frozen && n.assoc.map(|a| a.1) == Some(peer) {
                    n.c.handle_message(now, msg);
                }
            }
            Target::Pu { idx, peer } => {
                let n = &mut self.pus[idx];
                if !n.frozen && n.assoc.map(|a| a.1) == Some(peer) {
                    n.c.handle_message(now, msg);
                }
            }
        }
    }

    /// Runs the network until `end` (absolute).
    pub fn run_until(&mut self, end: Instant) {
        let mut guard = 0u64;
        loop {
            guard += 1;
            assert!(guard < 10_000_000, "simulation does not make progress");
            self.pump();
            match self.next_time() {
                Some(t) if t <= end => self.now = self.now.max(t),
                _ => {
                    self.now = self.now.max(end);
                    return;
                }
            }
            while let Some(Reverse((t, ..))) = self.queue.peek() {
                if *t > self.now {
                    break;
                }
                let Reverse((_, _, target, bytes)) = self.queue.pop().unwrap();
                self.deliver(target, bytes);
            }
            let now = self.now;
            for r in self.registrars.iter_mut().filter(|r| !r.frozen) {
                if r.r.poll_timeout().is_some_and(|t| t <= now) {
                    r.r.handle_timeout(now);
                }
            }
            for p in self.pes.iter_mut().filter(|p| !p.frozen) {
                if p.c.poll_timeout().is_some_and(|t| t <= now) {
                    p.c.handle_timeout(now);
                }
            }
            for p in self.pus.iter_mut().filter(|p| !p.frozen) {
                if p.c.poll_timeout().is_some_and(|t| t <= now) {
                    p.c.handle_timeout(now);
                }
            }
        }
    }

    /// Runs for `d` more.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end);
    }
}
