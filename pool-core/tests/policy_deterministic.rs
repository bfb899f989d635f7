//! Exact selection sequences of the deterministic policies at the registrar.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use pool_core::handlespace::{Handlespace, HandlespaceConfig, Registration};
use pool_core::types::{PeId, Policy, PoolHandle, Transport, TransportProtocol, TransportUse};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn reg(id: PeId, policy: Policy) -> Registration {
    Registration {
        id,
        home: 1,
        user_transports: vec![Transport {
            protocol: TransportProtocol::Sctp,
            port: 9000,
            transport_use: TransportUse::DataOnly,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8))],
        }],
        asap_transport: None,
        policy,
        registration_life: Duration::from_secs(30),
    }
}

struct Fixture {
    hs: Handlespace,
    handle: PoolHandle,
    now: Instant,
    rng: ChaCha8Rng,
}

impl Fixture {
    fn new(config: HandlespaceConfig, pes: &[(PeId, Policy)]) -> Self {
        let mut f = Fixture {
            hs: Handlespace::new(config),
            handle: PoolHandle::new("pool").unwrap(),
            now: Instant::now(),
            rng: ChaCha8Rng::seed_from_u64(7),
        };
        for &(id, p) in pes {
            f.register(id, p);
        }
        f
    }

    fn with(pes: &[(PeId, Policy)]) -> Self {
        Self::new(HandlespaceConfig::default(), pes)
    }

    fn register(&mut self, id: PeId, p: Policy) {
        self.hs
            .register(&self.handle, reg(id, p), self.now)
            .unwrap();
    }

    fn pick(&mut self, n: usize) -> Vec<PeId> {
        let mut out = Vec::new();
        self.hs
            .select_ids(&self.handle, n, self.now, &mut self.rng, &mut out)
            .unwrap();
        out
    }

    /// `count` resolutions of one PE each.
    fn sequence(&mut self, count: usize) -> Vec<PeId> {
        (0..count).map(|_| self.pick(1)[0]).collect()
    }
}

#[test]
fn round_robin_cycles_in_registration_order() {
    let rr = Policy::RoundRobin;
    let mut f = Fixture::with(&[(1, rr), (2, rr), (3, rr), (4, rr)]);
    assert_eq!(f.sequence(6), [1, 2, 3, 4, 1, 2]);
}

#[test]
fn round_robin_advances_by_one_when_returning_several() {
    let rr = Policy::RoundRobin;
    let mut f = Fixture::with(&[(1, rr), (2, rr), (3, rr), (4, rr)]);
    assert_eq!(f.pick(3), [1, 2, 3]);
    assert_eq!(f.pick(3), [2, 3, 4]);
    assert_eq!(f.pick(3), [3, 4, 1]);
    assert_eq!(f.pick(3), [4, 1, 2]);
    // Asking for more than the pool holds returns each PE once.
    assert_eq!(f.pick(10), [1, 2, 3, 4]);
}

#[test]
fn round_robin_max_increment_advances_by_that_many() {
    let rr = Policy::RoundRobin;
    let config = HandlespaceConfig {
        max_increment: 2,
        ..HandlespaceConfig::default()
    };
    let mut f = Fixture::new(config, &[(1, rr), (2, rr), (3, rr), (4, rr), (5, rr)]);
    assert_eq!(f.pick(2), [1, 2]);
    assert_eq!(f.pick(2), [3, 4]);
    assert_eq!(f.pick(2), [5, 1]);
}

#[test]
fn round_robin_newcomer_joins_at_the_end_and_leavers_are_skipped() {
    let rr = Policy::RoundRobin;
    let mut f = Fixture::with(&[(1, rr), (2, rr), (3, rr)]);
    assert_eq!(f.sequence(2), [1, 2]);
    f.register(9, rr);
    f.hs.remove(&f.handle.clone(), 1).unwrap();
    // 9 queues behind every PE already waiting (3, then 2, which just served).
    assert_eq!(f.sequence(5), [3, 2, 9, 3, 2]);
}

#[test]
fn weighted_round_robin_serves_each_weight_per_round() {
    let w = |weight| Policy::WeightedRoundRobin { weight };
    let mut f = Fixture::with(&[(1, w(3)), (2, w(1)), (3, w(2)), (4, w(0))]);
    assert_eq!(f.sequence(12), [1, 1, 1, 2, 3, 3, 1, 1, 1, 2, 3, 3]);
    // Weight 0 drains a PE: never selected, even when asking for all.
    assert_eq!(f.pick(10).len(), 3);
    let mut counts = [0usize; 5];
    for id in f.sequence(600) {
        counts[id as usize] += 1;
    }
    assert_eq!(&counts[1..], &[300, 100, 200, 0]);
}

#[test]
fn weighted_round_robin_reweighting_takes_effect() {
    let w = |weight| Policy::WeightedRoundRobin { weight };
    let mut f = Fixture::with(&[(1, w(2)), (2, w(2))]);
    assert_eq!(f.sequence(4), [1, 1, 2, 2]);
    f.register(2, w(0)); // drain 2
    assert_eq!(f.sequence(3), [1, 1, 1]);
    f.register(2, w(1)); // bring it back: it joins the current round
    let seq = f.sequence(6);
    assert_eq!(seq.iter().filter(|&&x| x == 2).count(), 2, "{seq:?}");
    assert_eq!(seq.iter().filter(|&&x| x == 1).count(), 4, "{seq:?}");
}

#[test]
fn priority_prefers_highest_and_rotates_among_equals() {
    let p = |priority| Policy::Priority { priority };
    let mut f = Fixture::with(&[(1, p(5)), (2, p(10)), (3, p(10)), (4, p(1))]);
    assert_eq!(f.sequence(4), [2, 3, 2, 3]);
    assert_eq!(f.pick(4), [2, 3, 1, 4]);
    assert_eq!(f.pick(4), [3, 2, 1, 4]);
    // The top PE leaves: the next priority level takes over.
    let h = f.handle.clone();
    f.hs.remove(&h, 2).unwrap();
    f.hs.remove(&h, 3).unwrap();
    assert_eq!(f.sequence(2), [1, 1]);
}

#[test]
fn least_used_prefers_lowest_load_and_rotates_ties() {
    let lu = |load| Policy::LeastUsed { load };
    let mut f = Fixture::with(&[(1, lu(100)), (2, lu(50)), (3, lu(50)), (4, lu(200))]);
    assert_eq!(f.sequence(4), [2, 3, 2, 3]);
    assert_eq!(f.pick(4), [2, 3, 1, 4]);
    // A load report re-sorts: 2 is now the busiest.
    f.register(2, lu(300));
    assert_eq!(f.sequence(3), [3, 3, 3]);
    assert_eq!(f.pick(4), [3, 1, 4, 2]);
}

#[test]
fn least_used_equal_loads_rotate_like_round_robin_with_several() {
    let lu = Policy::LeastUsed { load: 7 };
    let mut f = Fixture::with(&[(1, lu), (2, lu), (3, lu), (4, lu)]);
    assert_eq!(f.pick(3), [1, 2, 3]);
    assert_eq!(f.pick(3), [2, 3, 4]);
    assert_eq!(f.pick(3), [3, 4, 1]);
}

#[test]
fn least_used_with_degradation_accumulates_and_resets_on_reregistration() {
    let lud = |load| Policy::LeastUsedDegradation {
        load,
        degradation: 100,
    };
    let mut f = Fixture::with(&[(1, lud(0)), (2, lud(150))]);
    // 1: 0,100,200,300 ; 2: 150,250,350 — the lower sum goes first.
    assert_eq!(f.sequence(7), [1, 1, 2, 1, 2, 1, 2]);
    let h = f.handle.clone();
    assert_eq!(f.hs.get(&h, 1).unwrap().degradation(), 400);
    assert_eq!(f.hs.get(&h, 2).unwrap().degradation(), 300);
    // PE 1 reports load 1000: its degradation restarts at 0.
    f.register(1, lud(1000));
    assert_eq!(f.hs.get(&h, 1).unwrap().degradation(), 0);
    // 2 sits at 450 and climbs by 100: 450..950 (6 picks), then 1050 > 1000.
    assert_eq!(f.sequence(7), [2, 2, 2, 2, 2, 2, 1]);
}

#[test]
fn least_used_with_degradation_only_degrades_the_first_returned() {
    let lud = Policy::LeastUsedDegradation {
        load: 0,
        degradation: 10,
    };
    let mut f = Fixture::with(&[(1, lud), (2, lud), (3, lud)]);
    assert_eq!(f.pick(3), [1, 2, 3]);
    let h = f.handle.clone();
    let deg: Vec<u32> = [1, 2, 3]
        .iter()
        .map(|&i| f.hs.get(&h, i).unwrap().degradation())
        .collect();
    assert_eq!(deg, [10, 0, 0]);
}

#[test]
fn priority_least_used_orders_by_load_plus_increment() {
    let plu = |load, increment| Policy::PriorityLeastUsed { load, increment };
    let mut f = Fixture::with(&[(1, plu(100, 50)), (2, plu(120, 10)), (3, plu(130, 0))]);
    // 2 and 3 tie at 130 and rotate; 1 (150) is never first.
    assert_eq!(f.sequence(4), [2, 3, 2, 3]);
    assert_eq!(f.pick(3), [2, 3, 1]);
    assert_eq!(f.pick(3), [3, 2, 1]);
    // The registrar does not change the values on selection.
    f.register(1, plu(0, 10));
    assert_eq!(f.sequence(3), [1, 1, 1]);
}

#[test]
fn policy_kinds_carry_the_rfc_5356_type_codes() {
    use pool_core::policy::PolicyKind;
    let all = [
        (Policy::RoundRobin, 0x0000_0001, false),
        (Policy::WeightedRoundRobin { weight: 1 }, 0x0000_0002, false),
        (Policy::Random, 0x0000_0003, false),
        (Policy::WeightedRandom { weight: 1 }, 0x0000_0004, false),
        (Policy::Priority { priority: 1 }, 0x0000_0005, false),
        (Policy::LeastUsed { load: 1 }, 0x4000_0001, true),
        (
            Policy::LeastUsedDegradation {
                load: 1,
                degradation: 1,
            },
            0x4000_0002,
            true,
        ),
        (
            Policy::PriorityLeastUsed {
                load: 1,
                increment: 1,
            },
            0x4000_0003,
            true,
        ),
        (Policy::RandomizedLeastUsed { load: 1 }, 0x4000_0004, true),
    ];
    for (p, code, adaptive) in all {
        let kind = PolicyKind::of(&p);
        assert_eq!(kind.type_code(), code, "{p:?}");
        assert_eq!(p.type_code(), code, "{p:?}");
        assert_eq!(kind.is_adaptive(), adaptive, "{p:?}");
    }
}
