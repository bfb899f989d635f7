//! Deterministic simulated network connecting several endpoints: seeded loss,
//! duplication, reordering (jitter) and delay, per-address blackholes and frozen nodes.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sctp::{AssocHandle, Endpoint, EndpointConfig, Event};

/// One simulated host.
pub struct Node {
    pub ep: Endpoint,
    pub addrs: Vec<SocketAddr>,
    pub events: Vec<(AssocHandle, Event, Instant)>,
    /// A frozen node neither sends nor receives nor runs timers (SIGSTOP).
    pub frozen: bool,
    /// Largest datagram this node ever sent.
    pub max_sent: usize,
    /// The application stops reading events (a slow consumer).
    pub paused: bool,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    to_node: usize,
    from: SocketAddr,
    to: SocketAddr,
    data: Vec<u8>,
}

/// The network.
pub struct Net {
    pub now: Instant,
    pub nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    rng: ChaCha8Rng,
    pub loss: f64,
    pub dup: f64,
    pub delay: Duration,
    pub jitter: Duration,
    /// Addresses whose traffic (either direction) is dropped.
    pub blackholed: HashSet<std::net::IpAddr>,
    pub delivered: u64,
    start: Instant,
    /// When set, the first fragment of every DATA chunk sent is recorded in `sent_data`.
    pub record_data: bool,
    /// (sending node, stream, SSN, unordered, first four payload bytes) per DATA chunk
    /// with the B bit, retransmissions included.
    pub sent_data: Vec<(usize, u16, u16, bool, [u8; 4])>,
}

impl Net {
    pub fn new(seed: u64) -> Net {
        Net {
            now: Instant::now(),
            nodes: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            loss: 0.0,
            dup: 0.0,
            delay: Duration::from_millis(5),
            jitter: Duration::ZERO,
            blackholed: HashSet::new(),
            delivered: 0,
            start: Instant::now(),
            record_data: false,
            sent_data: Vec::new(),
        }
    }

    pub fn add(&mut self, cfg: EndpointConfig, addrs: &[&str], seed: u64) -> usize {
        self.nodes.push(Node {
            ep: Endpoint::new(cfg, seed).expect("valid config"),
            addrs: addrs.iter().map(|a| a.parse().expect("address")).collect(),
            events: Vec::new(),
            frozen: false,
            max_sent: 0,
            paused: false,
        });
        self.nodes.len() - 1
    }

    pub fn addr(&self, node: usize) -> SocketAddr {
        self.nodes[node].addrs[0]
    }

    fn route(&self, to: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.addrs.contains(&to))
    }

    /// Sends everything the nodes want to send.
    pub fn flush(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].frozen {
                continue;
            }
            while let Some(t) = self.nodes[i].ep.poll_transmit(self.now) {
                let n = &mut self.nodes[i];
                n.max_sent = n.max_sent.max(t.contents.len());
                let from = t.source.unwrap_or(n.addrs[0]);
                // A source address this node does not own means the engine picked a
                // wrong local address: fall back to the first (the driver would too).
                let from = if n.addrs.contains(&from) {
                    from
                } else {
                    n.addrs[0]
                };
                let Some(to_node) = self.route(t.destination) else {
                    continue;
                };
                if self.blackholed.contains(&t.destination.ip())
                    || self.blackholed.contains(&from.ip())
                {
                    continue;
                }
                if self.record_data {
                    if let Ok(pk) = sctp::wire::Packet::decode(&t.contents) {
                        for c in pk.chunks {
                            if let sctp::wire::Chunk::Data(d) = c {
                                if d.beginning && d.payload.len() >= 4 {
                                    let head =
                                        [d.payload[0], d.payload[1], d.payload[2], d.payload[3]];
                                    self.sent_data.push((i, d.stream, d.ssn, d.unordered, head));
                                }
                            }
                        }
                    }
                }
                let lost = self.rng.random_bool(self.loss);
                if std::env::var("SIM_TRACE").is_ok() {
                    let types: Vec<u8> = sctp::wire::Packet::decode(&t.contents)
                        .map(|pk| pk.chunks.iter().map(|c| c.typ()).collect())
                        .unwrap_or_default();
                    eprintln!(
                        "{:?} SEND {} -> {} chunks {types:?}{}",
                        self.now.duration_since(self.start),
                        from,
                        t.destination,
                        if lost { " LOST" } else { "" }
                    );
                }
                if lost {
                    continue;
                }
                let copies = if self.rng.random_bool(self.dup) { 2 } else { 1 };
                for _ in 0..copies {
                    let j = if self.jitter.is_zero() {
                        Duration::ZERO
                    } else {
                        self.jitter.mul_f64(self.rng.random::<f64>())
                    };
                    self.seq += 1;
                    self.queue.push(Reverse(InFlight {
                        at: self.now + self.delay + j,
                        seq: self.seq,
                        to_node,
                        from,
                        to: t.destination,
                        data: t.contents.clone(),
                    }));
                }
            }
            self.collect(i);
        }
    }

    fn collect(&mut self, i: usize) {
        if self.nodes[i].paused {
            return;
        }
        let now = self.now;
        while let Some((h, e)) = self.nodes[i].ep.poll_event() {
            self.nodes[i].events.push((h, e, now));
        }
    }

    /// Advances to the next packet arrival or timer; false if nothing is pending.
    pub fn step(&mut self) -> bool {
        self.flush();
        let next_pkt = self.queue.peek().map(|r| r.0.at);
        let next_timer = self
            .nodes
            .iter()
            .filter(|n| !n.frozen)
            .filter_map(|n| n.ep.poll_timeout())
            .min();
        let Some(next) = [next_pkt, next_timer].into_iter().flatten().min() else {
            return false;
        };
        if next > self.now {
            self.now = next;
        }
        while self.queue.peek().is_some_and(|r| r.0.at <= self.now) {
            let Reverse(p) = self.queue.pop().expect("peeked");
            if self.nodes[p.to_node].frozen {
                continue;
            }
            self.delivered += 1;
            if std::env::var("SIM_TRACE").is_ok() {
                let types: Vec<u8> = sctp::wire::Packet::decode(&p.data)
                    .map(|pk| pk.chunks.iter().map(|c| c.typ()).collect())
                    .unwrap_or_default();
                let vtag = u32::from_be_bytes([p.data[4], p.data[5], p.data[6], p.data[7]]);
                if let Ok(pk) = sctp::wire::Packet::decode(&p.data) {
                    for c in &pk.chunks {
                        match c {
                            sctp::wire::Chunk::ForwardTsn(f) => eprintln!("  FWD {f:?}"),
                            sctp::wire::Chunk::Data(d) => eprintln!(
                                "  DATA tsn {} s {} ssn {} u {} b {} e {} len {}",
                                d.tsn,
                                d.stream,
                                d.ssn,
                                d.unordered,
                                d.beginning,
                                d.ending,
                                d.payload.len()
                            ),
                            sctp::wire::Chunk::Sack(s) => {
                                eprintln!("  SACK cum {} gaps {:?}", s.cum_tsn, s.gaps)
                            }
                            _ => {}
                        }
                    }
                }
                eprintln!(
                    "{:?} {} -> {} vtag {vtag:08x} chunks {types:?}",
                    self.now.duration_since(self.start),
                    p.from,
                    p.to
                );
            }
            let n = &mut self.nodes[p.to_node];
            n.ep.handle_datagram(self.now, Some(p.to), p.from, &p.data);
        }
        for i in 0..self.nodes.len() {
            if !self.nodes[i].frozen
                && self.nodes[i]
                    .ep
                    .poll_timeout()
                    .is_some_and(|t| t <= self.now)
            {
                self.nodes[i].ep.handle_timeout(self.now);
            }
            self.collect(i);
        }
        self.flush();
        true
    }

    /// Steps until `pred` holds or `limit` of simulated time passes; returns whether it held.
    pub fn run_until(&mut self, limit: Duration, mut pred: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if pred(self) {
                return true;
            }
            if self.now > end || !self.step() {
                return pred(self);
            }
        }
    }

    /// Runs for a fixed span of simulated time.
    pub fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        while self.now < end {
            if !self.step() {
                break;
            }
        }
    }

    pub fn has_event(&self, node: usize, f: impl Fn(&Event) -> bool) -> bool {
        self.nodes[node].events.iter().any(|(_, e, _)| f(e))
    }

    pub fn first_handle(&self, node: usize) -> Option<AssocHandle> {
        self.nodes[node]
            .events
            .iter()
            .find(|(_, e, _)| matches!(e, Event::Connected))
            .map(|(h, _, _)| *h)
    }

    /// Data events of a node, in arrival order.
    pub fn data(&self, node: usize) -> Vec<(u16, u32, bool, bytes::Bytes)> {
        self.nodes[node]
            .events
            .iter()
            .filter_map(|(_, e, _)| match e {
                Event::Data {
                    stream,
                    ppid,
                    ordered,
                    bytes,
                } => Some((*stream, *ppid, *ordered, bytes.clone())),
                _ => None,
            })
            .collect()
    }
}

/// A config with fast timers for simulated tests.
pub fn fast_config() -> EndpointConfig {
    let mut c = EndpointConfig::default();
    c.association.rto_initial = Duration::from_millis(100);
    c.association.rto_min = Duration::from_millis(50);
    c.association.rto_max = Duration::from_secs(2);
    c.association.heartbeat_interval = Some(Duration::from_millis(500));
    c.association.max_retransmissions = 6;
    c.association.path_max_retransmissions = 2;
    c
}

/// Two nodes, a client at 10.0.0.1 and a server at 10.0.0.2, connected.
pub fn pair(seed: u64, cfg: EndpointConfig) -> (Net, AssocHandle, AssocHandle) {
    let mut net = Net::new(seed);
    let a = net.add(cfg.clone(), &["10.0.0.1:9899"], seed ^ 1);
    let b = net.add(cfg, &["10.0.0.2:9899"], seed ^ 2);
    let now = net.now;
    let server = net.addr(b);
    let h = net.nodes[a]
        .ep
        .connect(now, &[server], 3863, 3863)
        .expect("connect");
    assert!(
        net.run_until(Duration::from_secs(60), |n| n.first_handle(0).is_some()
            && n.first_handle(1).is_some())
    );
    let hb = net.first_handle(b).expect("server side connected");
    (net, h, hb)
}
