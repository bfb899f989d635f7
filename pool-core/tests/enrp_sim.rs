//! ENRP between three registrars in simulated time: presence, handle updates,
//! table loads in pieces, checksum audit and repair, takeover (also two at
//! once), restart and resynchronisation, authentication and limits.
//!
//! Each node is an ASAP `Registrar` with its `EnrpServer`; ENRP messages travel
//! as bytes with a fixed one-way delay. PEs are mocked at the ASAP level: a
//! registration is handed to a registrar directly and keep-alives of live PEs
//! are acknowledged at once.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use pool_core::asap::registrar::{Action, Registrar, RegistrarConfig};
use pool_core::asap::{PeerId, WallClock};
use pool_core::enrp::{EnrpAction, EnrpConfig, EnrpEvent, EnrpSecret, EnrpServer};
use pool_core::types::{
    Policy, PoolHandle, RegistrarId, Transport, TransportProtocol, TransportUse,
};
use pool_core::wire::enrp::types as msg_types;
use pool_core::wire::{self, AsapMessage, SelectionPolicy};
use rand::SeedableRng;

const EPOCH_MS: u64 = 1_700_000_000_000;
const DELAY: Duration = Duration::from_millis(5);

fn handle(s: &str) -> PoolHandle {
    PoolHandle::new(s).unwrap()
}

/// An ASAP_DEREGISTRATION, built from its wire form so that this test does not
/// depend on the optional fields the message type grows.
fn deregistration(pool: &str, pe: u32) -> AsapMessage {
    let mut body = Vec::new();
    wire::Param::PoolHandle(handle(pool))
        .encode(&mut body)
        .unwrap();
    wire::Param::PeId(pe).encode(&mut body).unwrap();
    let mut msg = vec![wire::asap::types::DEREGISTRATION, 0];
    msg.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    msg.extend_from_slice(&body);
    AsapMessage::decode(&msg).unwrap()
}

fn element(id: u32, load: u32) -> wire::PoolElement {
    wire::PoolElement {
        id,
        home_registrar: 0,
        registration_life: 30_000,
        user_transport: Transport {
            protocol: TransportProtocol::Sctp,
            port: 8000,
            transport_use: TransportUse::DataOnly,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, id as u8))],
        },
        policy: SelectionPolicy::Known(Policy::LeastUsed { load }),
        asap_transport: None,
    }
}

struct Node {
    reg: Registrar,
    enrp: EnrpServer,
    up: bool,
    events: Vec<(Instant, EnrpEvent)>,
}

struct InFlight {
    at: Instant,
    from: usize,
    to: usize,
    bytes: Vec<u8>,
}

struct Sim {
    start: Instant,
    now: Instant,
    nodes: Vec<Node>,
    flight: Vec<InFlight>,
    /// Directed links (from, to) that drop everything.
    cut: HashSet<(usize, usize)>,
    /// Message types dropped on every link.
    drop_kinds: HashSet<u8>,
    /// Every ENRP message sent: (from, to, type).
    log: Vec<(usize, usize, u8)>,
    /// PEs whose ASAP side answers keep-alives.
    live_pes: HashSet<u32>,
    enrp_template: EnrpConfig,
}

fn id_of(i: usize) -> RegistrarId {
    i as RegistrarId + 1
}

impl Sim {
    fn new(n: usize, tweak: impl Fn(&mut EnrpConfig)) -> Self {
        let start = Instant::now();
        let mut template = EnrpConfig {
            peers: (0..n).map(id_of).collect(),
            ..EnrpConfig::default()
        };
        tweak(&mut template);
        let mut sim = Sim {
            start,
            now: start,
            nodes: Vec::new(),
            flight: Vec::new(),
            cut: HashSet::new(),
            drop_kinds: HashSet::new(),
            log: Vec::new(),
            live_pes: HashSet::new(),
            enrp_template: template,
        };
        for i in 0..n {
            let node = sim.make_node(i, |_| {});
            sim.nodes.push(node);
        }
        sim
    }

    fn make_node(&self, i: usize, tweak: impl Fn(&mut EnrpConfig)) -> Node {
        let clock = WallClock::new(self.start, EPOCH_MS);
        let reg = Registrar::new(
            RegistrarConfig {
                id: id_of(i),
                ..RegistrarConfig::default()
            },
            clock,
            Box::new(rand_chacha::ChaCha8Rng::seed_from_u64(i as u64)),
        )
        .unwrap();
        let mut cfg = EnrpConfig {
            id: id_of(i),
            ..self.enrp_template.clone()
        };
        tweak(&mut cfg);
        let mut enrp = EnrpServer::new(cfg, clock).unwrap();
        enrp.start(self.now);
        Node {
            reg,
            enrp,
            up: true,
            events: Vec::new(),
        }
    }

    /// Brings every node up at once: each "connects" to the others with a hello.
    fn boot(&mut self) {
        for i in 0..self.nodes.len() {
            self.hello_all(i);
        }
        self.pump();
    }

    fn hello_all(&mut self, i: usize) {
        if !self.nodes[i].up {
            return;
        }
        for j in 0..self.nodes.len() {
            if j != i && self.nodes[j].up {
                let now = self.now;
                let n = &mut self.nodes[i];
                let bytes = n.enrp.hello(now, &n.reg);
                self.transmit(i, j, msg_types::PRESENCE, bytes);
            }
        }
    }

    fn transmit(&mut self, from: usize, to: usize, kind: u8, bytes: Vec<u8>) {
        self.log.push((from, to, kind));
        if self.cut.contains(&(from, to)) || self.drop_kinds.contains(&kind) {
            return;
        }
        self.flight.push(InFlight {
            at: self.now + DELAY,
            from,
            to,
            bytes,
        });
    }

    /// Drains actions and events of every node until quiet.
    fn pump(&mut self) {
        loop {
            let mut busy = false;
            for i in 0..self.nodes.len() {
                if !self.nodes[i].up {
                    continue;
                }
                let now = self.now;
                while let Some(a) = self.nodes[i].reg.poll_action() {
                    busy = true;
                    if let Action::Send {
                        peer,
                        msg:
                            AsapMessage::EndpointKeepAlive {
                                pool_handle, pe_id, ..
                            },
                    } = a
                    {
                        if self.live_pes.contains(&pe_id) {
                            self.nodes[i].reg.handle_message(
                                now,
                                peer,
                                AsapMessage::EndpointKeepAliveAck { pool_handle, pe_id },
                            );
                        }
                    }
                }
                while let Some(ev) = self.nodes[i].reg.poll_event() {
                    busy = true;
                    let n = &mut self.nodes[i];
                    n.enrp.handle_registrar_event(now, &ev, &n.reg);
                }
                while let Some(EnrpAction::Send { to, kind, bytes }) =
                    self.nodes[i].enrp.poll_action()
                {
                    busy = true;
                    let j = (to - 1) as usize;
                    if j < self.nodes.len() {
                        self.transmit(i, j, kind, bytes);
                    }
                }
                while let Some(ev) = self.nodes[i].enrp.poll_event() {
                    self.nodes[i].events.push((now, ev));
                }
            }
            if !busy {
                return;
            }
        }
    }

    fn next_time(&self) -> Option<Instant> {
        let mut t = self.flight.iter().map(|f| f.at).min();
        for n in self.nodes.iter().filter(|n| n.up) {
            for x in [n.reg.poll_timeout(), n.enrp.poll_timeout()]
                .into_iter()
                .flatten()
            {
                t = Some(t.map_or(x, |y: Instant| y.min(x)));
            }
        }
        t
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end, |_| false);
    }

    /// Runs until `cond` holds (checked after every step) or `end`; returns whether it held.
    fn run_until(&mut self, end: Instant, mut cond: impl FnMut(&Sim) -> bool) -> bool {
        loop {
            if cond(self) {
                return true;
            }
            let Some(t) = self.next_time().filter(|&t| t <= end) else {
                self.now = end;
                return cond(self);
            };
            self.now = self.now.max(t);
            let now = self.now;
            let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flight)
                .into_iter()
                .partition(|f| f.at <= now);
            self.flight = rest;
            for f in due {
                let n = &mut self.nodes[f.to];
                if !n.up || self.cut.contains(&(f.from, f.to)) {
                    continue;
                }
                let _ = n.enrp.handle_bytes(now, &f.bytes, &mut n.reg);
            }
            for n in self.nodes.iter_mut().filter(|n| n.up) {
                if n.reg.poll_timeout().is_some_and(|t| t <= now) {
                    n.reg.handle_timeout(now);
                    // Updates first: a presence must not overtake the change it counts.
                    while let Some(ev) = n.reg.poll_event() {
                        n.enrp.handle_registrar_event(now, &ev, &n.reg);
                    }
                }
                if n.enrp.poll_timeout().is_some_and(|t| t <= now) {
                    n.enrp.handle_timeout(now, &mut n.reg);
                }
            }
            self.pump();
        }
    }

    fn register(&mut self, node: usize, pool: &str, pe: u32, load: u32) {
        self.live_pes.insert(pe);
        let now = self.now;
        self.nodes[node].reg.handle_message(
            now,
            PeerId::from(pe) + 1_000_000 * node as u64,
            AsapMessage::Registration {
                pool_handle: handle(pool),
                element: element(pe, load),
                auth: None,
            },
        );
        self.pump();
    }

    fn deregister(&mut self, node: usize, pool: &str, pe: u32) {
        let now = self.now;
        self.nodes[node].reg.handle_message(
            now,
            PeerId::from(pe) + 1_000_000 * node as u64,
            deregistration(pool, pe),
        );
        self.pump();
    }

    fn kill(&mut self, i: usize) {
        self.nodes[i].up = false;
        self.flight.retain(|f| f.to != i && f.from != i);
    }

    /// (pool, pe, home) of every PE a node knows.
    fn view(&self, i: usize) -> BTreeSet<(Vec<u8>, u32, RegistrarId)> {
        self.nodes[i]
            .reg
            .handlespace()
            .iter()
            .map(|(h, pe)| (h.as_bytes().to_vec(), pe.id, pe.home))
            .collect()
    }

    fn views_agree(&self) -> bool {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up)
            .collect();
        up.windows(2).all(|w| self.view(w[0]) == self.view(w[1]))
    }

    /// Every live node's checksum of every registrar's PEs, and the owner's own.
    fn checksums_agree(&self) -> bool {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up)
            .collect();
        (0..self.nodes.len()).all(|r| {
            let sums: BTreeSet<u16> = up
                .iter()
                .map(|&i| self.nodes[i].reg.handlespace().checksum(id_of(r)))
                .collect();
            sums.len() == 1
        })
    }

    fn count_events(&self, f: impl Fn(&EnrpEvent) -> bool) -> usize {
        self.nodes
            .iter()
            .flat_map(|n| n.events.iter())
            .filter(|(_, e)| f(e))
            .count()
    }

    fn consistent(&self) {
        for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.up) {
            n.reg
                .check_consistency()
                .unwrap_or_else(|e| panic!("node {i}: {e}"));
        }
    }
}

fn booted(n: usize) -> Sim {
    booted_with(n, |_| {})
}

fn booted_with(n: usize, tweak: impl Fn(&mut EnrpConfig)) -> Sim {
    let mut sim = Sim::new(n, tweak);
    sim.boot();
    sim.run_for(Duration::from_secs(2));
    for i in 0..n {
        let mut live = sim.nodes[i].enrp.live_peers();
        live.sort();
        let want: Vec<RegistrarId> = (0..n).filter(|&j| j != i).map(id_of).collect();
        assert_eq!(live, want, "node {i} peers");
    }
    sim
}

#[test]
fn presence_makes_peers_live_and_updates_replicate_registrations_and_removals() {
    let mut sim = booted(3);
    sim.register(0, "web", 1, 10);
    sim.register(1, "web", 2, 20);
    sim.register(2, "db", 3, 30);
    sim.run_for(Duration::from_millis(50));
    assert!(sim.views_agree(), "{:?} vs {:?}", sim.view(0), sim.view(1));
    assert_eq!(sim.view(0).len(), 3);
    let homes: BTreeMap<u32, RegistrarId> =
        sim.view(2).into_iter().map(|(_, id, h)| (id, h)).collect();
    assert_eq!(homes, BTreeMap::from([(1, 1), (2, 2), (3, 3)]));
    assert!(sim.checksums_agree());
    // PEs of peers are not monitored locally: only their home sends keep-alives.
    sim.run_for(Duration::from_secs(5));
    assert_eq!(
        sim.view(1).len(),
        3,
        "peer PEs must survive without local keep-alives"
    );
    sim.consistent();

    // A re-registration carries the new load to the peers.
    sim.register(1, "web", 2, 77);
    sim.run_for(Duration::from_millis(50));
    let pe = sim.nodes[0]
        .reg
        .handlespace()
        .get(&handle("web"), 2)
        .unwrap();
    assert_eq!(pe.policy, Policy::LeastUsed { load: 77 });

    // Deregistration and keep-alive failure both reach every peer.
    sim.deregister(0, "web", 1);
    sim.live_pes.remove(&3);
    sim.run_for(Duration::from_secs(3));
    for i in 0..3 {
        let ids: Vec<u32> = sim.view(i).into_iter().map(|(_, id, _)| id).collect();
        assert_eq!(ids, vec![2], "node {i}");
    }
    assert!(sim.checksums_agree());
    sim.consistent();
    // Without changes no audit fires: the checksums announced match.
    let audits: Vec<_> = sim
        .nodes
        .iter()
        .flat_map(|n| n.events.iter())
        .filter(|(_, e)| matches!(e, EnrpEvent::AuditMismatch { .. }))
        .collect();
    assert!(audits.is_empty(), "{audits:?}");
}

#[test]
fn a_late_registrar_loads_the_handlespace_in_pieces() {
    let mut sim = Sim::new(3, |c| c.table_chunk = 64);
    sim.kill(2);
    sim.boot();
    for pe in 0..500u32 {
        sim.register((pe % 2) as usize, &format!("pool{}", pe % 7), 1000 + pe, pe);
    }
    sim.run_for(Duration::from_millis(100));
    assert!(sim.views_agree());
    // Node 2 starts now with an empty handlespace.
    let fresh = sim.make_node(2, |_| {});
    sim.nodes[2] = fresh;
    let t0 = sim.now;
    sim.hello_all(2);
    let done = sim.run_until(t0 + Duration::from_secs(5), |s| {
        s.nodes[2].enrp.mentor_loaded() && s.views_agree()
    });
    assert!(done, "node 2 has {} PEs", sim.view(2).len());
    println!(
        "500 PEs loaded in {:?} (simulated, {DELAY:?} one-way delay)",
        sim.now - t0
    );
    let pieces = sim
        .log
        .iter()
        .filter(|&&(f, t, k)| t == 2 && f != 2 && k == msg_types::HANDLE_TABLE_RESPONSE)
        .count();
    assert!(pieces >= 500 / 64, "only {pieces} response pieces");
    sim.run_for(Duration::from_secs(2));
    assert!(sim.checksums_agree());
    sim.consistent();
}

#[test]
fn checksum_audit_repairs_missed_updates_and_stale_entries() {
    let mut sim = booted(3);
    sim.register(0, "web", 1, 0);
    sim.run_for(Duration::from_millis(50));
    // Updates get lost: node 0's new PEs reach nobody.
    sim.drop_kinds.insert(msg_types::HANDLE_UPDATE);
    sim.register(0, "web", 2, 0);
    sim.register(0, "web", 3, 0);
    sim.deregister(0, "web", 1);
    sim.drop_kinds.clear();
    assert_ne!(sim.view(0), sim.view(1));
    // A stale entry on node 1 attributed to node 0.
    let now = sim.now;
    let mut stale = element(99, 0);
    stale.home_registrar = 1;
    sim.nodes[1]
        .reg
        .apply_peer_update(now, &handle("web"), &stale, 1)
        .unwrap();
    let t0 = sim.now;
    let repaired = sim.run_until(t0 + Duration::from_secs(3), |s| s.views_agree());
    assert!(repaired, "node0 {:?} node1 {:?}", sim.view(0), sim.view(1));
    println!("audit repaired the views after {:?}", sim.now - t0);
    assert!(
        sim.now - t0 <= Duration::from_millis(1100),
        "repair took {:?}",
        sim.now - t0
    );
    let ids: Vec<u32> = sim.view(1).into_iter().map(|(_, id, _)| id).collect();
    assert_eq!(ids, vec![2, 3]);
    assert!(sim.count_events(|e| matches!(e, EnrpEvent::AuditMismatch { peer: 1, .. })) >= 2);
    assert!(sim.checksums_agree());
    sim.consistent();
}

fn takeover_scenario(sim: &mut Sim) -> Duration {
    for pe in 0..20u32 {
        sim.register(0, "web", 100 + pe, 0);
    }
    sim.register(1, "web", 200, 0);
    sim.run_for(Duration::from_millis(300));
    assert!(sim.views_agree());
    let killed = sim.now;
    sim.kill(0);
    let ok = sim.run_until(killed + Duration::from_secs(10), |s| {
        s.views_agree() && s.view(1).iter().all(|&(_, _, home)| home != 1)
    });
    assert!(ok, "no takeover: {:?} / {:?}", sim.view(1), sim.view(2));
    sim.now - killed
}

#[test]
fn a_dead_registrar_is_taken_over_by_exactly_one_peer_lowest_id_first() {
    let mut sim = booted(3);
    let took = takeover_scenario(&mut sim);
    let cfg = sim.enrp_template.clone();
    let bound = cfg.max_time_last_heard + cfg.max_time_no_response + cfg.presence_interval;
    println!("takeover after {took:?} (bound {bound:?})");
    assert!(took <= bound, "took {took:?}");
    // Every PE is still there, once, and all have one new home.
    let v = sim.view(1);
    assert_eq!(v.len(), 21);
    let homes: BTreeSet<RegistrarId> = v
        .iter()
        .filter(|(_, id, _)| *id < 200)
        .map(|&(_, _, h)| h)
        .collect();
    assert_eq!(homes.len(), 1);
    let winner = *homes.iter().next().unwrap();
    // Both detect the death at the same instant and claim at once: the lower id wins.
    assert_eq!(
        sim.count_events(|e| matches!(e, EnrpEvent::TakeoverStarted { target: 1 })),
        2,
        "both survivors should have claimed the PEs"
    );
    assert_eq!(winner, 2);
    assert_eq!(
        sim.count_events(|e| matches!(e, EnrpEvent::TookOver { target: 1, pes: 20 })),
        1
    );
    assert_eq!(sim.nodes[1].reg.adopted_count(), 20);
    assert!(sim.checksums_agree());
    sim.consistent();

    // A taken-over PE re-registers (its server hunt) at node 2: it moves there everywhere.
    sim.register(2, "web", 105, 0);
    sim.run_for(Duration::from_millis(50));
    assert!(sim.views_agree());
    assert_eq!(
        sim.nodes[1]
            .reg
            .handlespace()
            .get(&handle("web"), 105)
            .unwrap()
            .home,
        3
    );
    assert_eq!(sim.nodes[1].reg.adopted_count(), 19);
    sim.consistent();
    // Taken-over PEs that never come back expire with their registration life;
    // the two that refresh their registrations stay.
    sim.run_for(Duration::from_secs(20));
    sim.register(2, "web", 105, 0);
    sim.register(1, "web", 200, 0);
    sim.run_for(Duration::from_secs(11));
    let ids: Vec<u32> = sim.view(1).into_iter().map(|(_, id, _)| id).collect();
    assert_eq!(ids, vec![105, 200]);
    assert!(sim.views_agree());
    sim.consistent();
}

#[test]
fn when_only_one_survivor_notices_first_it_takes_over_alone() {
    let mut sim = booted(3);
    sim.register(0, "web", 7, 0);
    sim.run_for(Duration::from_millis(100));
    // Node 1 (id 2) stops hearing node 0, node 2 still hears it for a while.
    sim.cut.insert((0, 1));
    sim.run_for(Duration::from_secs(6));
    // Node 2 refused to agree while node 0 was alive for it.
    assert_eq!(
        sim.count_events(|e| matches!(e, EnrpEvent::TookOver { .. })),
        0
    );
    assert_eq!(
        sim.nodes[2]
            .reg
            .handlespace()
            .get(&handle("web"), 7)
            .unwrap()
            .home,
        1
    );
    // Now node 0 really dies: one takeover, by whoever completes first, agreed by all.
    sim.kill(0);
    let t0 = sim.now;
    let ok = sim.run_until(t0 + Duration::from_secs(10), |s| {
        s.views_agree() && s.view(1).iter().all(|&(_, _, h)| h != 1)
    });
    assert!(ok);
    assert_eq!(
        sim.count_events(|e| matches!(e, EnrpEvent::TookOver { target: 1, .. })),
        1
    );
    sim.consistent();
}

#[test]
fn a_restarted_registrar_resynchronises_and_checksums_agree() {
    let mut sim = booted(3);
    takeover_scenario(&mut sim);
    sim.register(2, "db", 300, 0);
    sim.run_for(Duration::from_millis(50));
    let fresh = sim.make_node(0, |_| {});
    sim.nodes[0] = fresh;
    let t0 = sim.now;
    sim.hello_all(0);
    let ok = sim.run_until(t0 + Duration::from_secs(5), |s| {
        s.nodes[0].enrp.mentor_loaded() && s.views_agree() && s.checksums_agree()
    });
    assert!(ok, "{:?} vs {:?}", sim.view(0), sim.view(1));
    println!("restarted registrar in sync after {:?}", sim.now - t0);
    // The old PEs keep their new home; the restarted registrar owns nothing yet.
    assert_eq!(sim.nodes[0].reg.handlespace().owned_count(1), 0);
    // New registrations at the restarted registrar replicate again.
    sim.register(0, "db", 301, 0);
    sim.run_for(Duration::from_secs(2));
    assert!(sim.views_agree() && sim.checksums_agree());
    assert_eq!(
        sim.count_events(|e| matches!(e, EnrpEvent::PeerUp(1))),
        2 + 2
    );
    sim.consistent();
}

#[test]
fn registrars_with_the_shared_secret_talk_and_others_are_refused() {
    let secret = EnrpSecret {
        key_id: 1,
        secret: b"enrp scope secret 0123456789".to_vec(),
    };
    let s2 = secret.clone();
    let mut sim = Sim::new(3, move |c| c.secrets = vec![s2.clone()]);
    // Node 2 has a different secret.
    let wrong = sim.make_node(2, |c| {
        c.secrets = vec![EnrpSecret {
            key_id: 1,
            secret: b"not the scope secret at all!".to_vec(),
        }]
    });
    sim.nodes[2] = wrong;
    sim.boot();
    sim.register(0, "web", 1, 0);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.nodes[0].enrp.live_peers(), vec![2]);
    assert_eq!(sim.nodes[1].enrp.live_peers(), vec![1]);
    assert!(sim.nodes[2].enrp.live_peers().is_empty());
    assert_eq!(sim.view(1).len(), 1);
    assert!(sim.view(2).is_empty());
    assert!(sim.nodes[0].enrp.counters().auth_failures > 0);

    // A captured message replayed is refused, even to the same receiver.
    let now = sim.now;
    let mut captured = None;
    sim.nodes[0].reg.handle_message(
        now,
        77,
        AsapMessage::Registration {
            pool_handle: handle("web"),
            element: element(2, 0),
            auth: None,
        },
    );
    while sim.nodes[0].reg.poll_action().is_some() {}
    while let Some(ev) = sim.nodes[0].reg.poll_event() {
        let n = &mut sim.nodes[0];
        n.enrp.handle_registrar_event(now, &ev, &n.reg);
    }
    while let Some(EnrpAction::Send { to: 2, bytes, .. }) = sim.nodes[0].enrp.poll_action() {
        captured = Some(bytes);
    }
    let bytes = captured.expect("update to node 1");
    let n = &mut sim.nodes[1];
    assert_eq!(n.enrp.handle_bytes(now, &bytes, &mut n.reg), Ok(1));
    assert!(n.enrp.handle_bytes(now, &bytes, &mut n.reg).is_err());
    // Unauthenticated bytes are refused too.
    let mut plain = Vec::new();
    wire::enrp::EnrpMessage {
        sender: 1,
        receiver: 2,
        body: wire::enrp::EnrpBody::TakeoverServer { target: 3 },
    }
    .encode(&mut plain)
    .unwrap();
    assert!(n.enrp.handle_bytes(now, &plain, &mut n.reg).is_err());
}

#[test]
fn a_peer_cannot_flood_the_handlespace() {
    let mut sim = Sim::new(2, |c| c.max_pes_per_peer = 5);
    sim.boot();
    sim.run_for(Duration::from_secs(1));
    for pe in 0..10u32 {
        sim.register(0, "web", 500 + pe, 0);
    }
    sim.run_for(Duration::from_millis(50));
    assert_eq!(sim.nodes[1].reg.handlespace().owned_count(1), 5);
    assert!(sim.nodes[1].enrp.counters().limit_hits >= 5);
    // An update claiming another registrar's PE is refused.
    let now = sim.now;
    let mut e = element(900, 0);
    e.home_registrar = 3;
    let mut bytes = Vec::new();
    wire::enrp::EnrpMessage {
        sender: 1,
        receiver: 2,
        body: wire::enrp::EnrpBody::HandleUpdate {
            action: wire::enrp::UpdateAction::AddPe,
            pool_handle: handle("web"),
            element: e,
        },
    }
    .encode(&mut bytes)
    .unwrap();
    let n = &mut sim.nodes[1];
    let _ = n.enrp.handle_bytes(now, &bytes, &mut n.reg);
    assert!(n.reg.handlespace().get(&handle("web"), 900).is_none());
    // A peer may only delete its own PEs.
    let mut mine = element(900, 0);
    mine.home_registrar = 2;
    n.reg.handle_message(
        now,
        5,
        AsapMessage::Registration {
            pool_handle: handle("web"),
            element: mine.clone(),
            auth: None,
        },
    );
    let mut del = Vec::new();
    wire::enrp::EnrpMessage {
        sender: 1,
        receiver: 2,
        body: wire::enrp::EnrpBody::HandleUpdate {
            action: wire::enrp::UpdateAction::DelPe,
            pool_handle: handle("web"),
            element: mine,
        },
    }
    .encode(&mut del)
    .unwrap();
    let _ = n.enrp.handle_bytes(now, &del, &mut n.reg);
    assert!(n.reg.handlespace().get(&handle("web"), 900).is_some());
}

#[test]
fn an_isolated_registrar_takes_over_nothing_and_the_scope_heals() {
    let mut sim = booted(3);
    for (node, pe) in [(0, 10), (0, 11), (1, 20), (2, 30)] {
        sim.register(node, "web", pe, 0);
    }
    sim.run_for(Duration::from_millis(100));
    assert!(sim.views_agree());
    // Cut node 0 off in both directions; its PEs still reach it (and answer keep-alives).
    for j in [1, 2] {
        sim.cut.insert((0, j));
        sim.cut.insert((j, 0));
    }
    sim.run_for(Duration::from_secs(8));
    // The majority side took node 0's PEs over; node 0, alone, took over nothing.
    assert_eq!(sim.nodes[0].reg.handlespace().owned_count(1), 2);
    assert_eq!(sim.nodes[0].reg.handlespace().owned_count(2), 1);
    assert_eq!(sim.nodes[0].reg.handlespace().owned_count(3), 1);
    assert_eq!(
        sim.count_events(|e| matches!(e, EnrpEvent::TookOver { target: 1, pes: 2 })),
        1
    );
    assert_eq!(
        sim.count_events(|e| matches!(e, EnrpEvent::TookOver { target: 2 | 3, .. })),
        0
    );
    assert_eq!(sim.view(1), sim.view(2));
    // Heal: the handlespaces agree again; node 0 stays home of the PEs registered with it.
    sim.cut.clear();
    let t0 = sim.now;
    let ok = sim.run_until(t0 + Duration::from_secs(10), |s| {
        s.views_agree() && s.checksums_agree()
    });
    assert!(
        ok,
        "{:?}\n{:?}\n{:?}",
        sim.view(0),
        sim.view(1),
        sim.view(2)
    );
    println!("healed after {:?}", sim.now - t0);
    let homes: BTreeMap<u32, RegistrarId> =
        sim.view(1).into_iter().map(|(_, id, h)| (id, h)).collect();
    assert_eq!(homes, BTreeMap::from([(10, 1), (11, 1), (20, 2), (30, 3)]));
    sim.run_for(Duration::from_secs(2));
    assert!(sim.views_agree() && sim.checksums_agree());
    sim.consistent();
}

/// Two sets of PEs with one checksum (2 + 11 = 3 + 10: the 16-bit sum cannot tell
/// them apart): peers whose updates were lost keep the old set, and no presence ever
/// shows a mismatch. Only the periodic full audit finds it.
#[test]
fn a_drift_the_checksum_cannot_see_is_found_by_the_full_audit() {
    let drifted = |full_audit: Option<Duration>| {
        let mut sim = booted_with(3, |c| c.full_audit_interval = full_audit);
        for pe in [2, 11] {
            sim.register(1, "pool", pe, 0);
        }
        sim.run_for(Duration::from_millis(100));
        assert!(sim.views_agree());
        sim.drop_kinds.insert(msg_types::HANDLE_UPDATE);
        for pe in [2, 11] {
            sim.deregister(1, "pool", pe);
        }
        for pe in [3, 10] {
            sim.register(1, "pool", pe, 0);
        }
        sim.run_for(Duration::from_millis(100));
        sim.drop_kinds.clear();
        assert!(sim.checksums_agree() && !sim.views_agree(), "a collision");
        sim
    };
    // Without the full audit the drift stays.
    let mut sim = drifted(None);
    sim.run_for(Duration::from_secs(10));
    assert!(!sim.views_agree());
    assert_eq!(sim.nodes[0].enrp.counters().full_audits, 0);
    // With it, the next presence after the interval brings a fresh table.
    let mut sim = drifted(Some(Duration::from_secs(3)));
    let t0 = sim.now;
    let ok = sim.run_until(t0 + Duration::from_secs(5), |s| s.views_agree());
    assert!(ok, "{:?}\n{:?}", sim.view(0), sim.view(1));
    println!("full audit repaired the drift after {:?}", sim.now - t0);
    for node in [0, 2] {
        assert!(sim.nodes[node].enrp.counters().full_audits >= 1);
        assert_eq!(sim.nodes[node].enrp.counters().audit_mismatches, 0);
    }
    let truth: BTreeSet<(Vec<u8>, u32, RegistrarId)> = [3, 10]
        .iter()
        .map(|&pe| (b"pool".to_vec(), pe, id_of(1)))
        .collect();
    assert_eq!(sim.view(0), truth);
    sim.consistent();
}

#[derive(Clone, Debug)]
enum Op {
    /// A PE registers at a node (moving there if it was elsewhere).
    Register { node: usize, pe: u32, load: u32 },
    /// A PE deregisters from wherever it is.
    Deregister { pe: u32 },
    /// Handle updates start or stop getting lost.
    ToggleUpdateLoss,
    /// Time passes.
    Wait { ms: u64 },
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0..3usize, 1..16u32, 0..4u32).prop_map(|(node, pe, load)| Op::Register { node, pe, load }),
        1 => (1..16u32).prop_map(|pe| Op::Deregister { pe }),
        1 => Just(Op::ToggleUpdateLoss),
        2 => (1..400u64).prop_map(|ms| Op::Wait { ms }),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// Whatever registrations, moves, removals and lost updates happened, once
    /// updates flow again the audit makes every handlespace agree.
    #[test]
    fn audits_converge_after_any_history(ops in proptest::collection::vec(op(), 1..40)) {
        // A full audit at most 2 s after the last table: some histories leave views
        // whose checksums agree (see the test above).
        let mut sim = booted_with(3, |c| c.full_audit_interval = Some(Duration::from_secs(2)));
        // Where each PE is registered (its single ASAP association).
        let mut at: BTreeMap<u32, usize> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Register { node, pe, load } => {
                    if let Some(old) = at.insert(pe, node) {
                        if old != node {
                            // A PE has one registrar at a time: moving closes the old association.
                            let now = sim.now;
                            sim.nodes[old].reg.handle_peer_closed(PeerId::from(pe) + 1_000_000 * old as u64);
                            let _ = now;
                            sim.pump();
                        }
                    }
                    sim.register(node, "pool", pe, load);
                }
                Op::Deregister { pe } => {
                    if let Some(node) = at.remove(&pe) {
                        sim.deregister(node, "pool", pe);
                    }
                }
                Op::ToggleUpdateLoss => {
                    if !sim.drop_kinds.remove(&msg_types::HANDLE_UPDATE) {
                        sim.drop_kinds.insert(msg_types::HANDLE_UPDATE);
                    }
                }
                Op::Wait { ms } => sim.run_for(Duration::from_millis(ms)),
            }
        }
        sim.drop_kinds.clear();
        let t0 = sim.now;
        let ok = sim.run_until(t0 + Duration::from_secs(5), |s| s.views_agree() && s.checksums_agree());
        proptest::prop_assert!(ok, "no convergence:\n{:?}\n{:?}\n{:?}", sim.view(0), sim.view(1), sim.view(2));
        // And the agreed view is the truth: each registered PE once, at its registrar.
        let truth: BTreeSet<(Vec<u8>, u32, RegistrarId)> =
            at.iter().map(|(&pe, &node)| (b"pool".to_vec(), pe, id_of(node))).collect();
        proptest::prop_assert_eq!(sim.view(0), truth);
        sim.consistent();
    }
}
