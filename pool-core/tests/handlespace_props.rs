//! Property test: random register / re-register / deregister / expire /
//! takeover / select sequences keep the handlespace in step with a naive model.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use pool_core::handlespace::{Handlespace, HandlespaceConfig, HandlespaceError, Registration};
use pool_core::types::{
    PeId, Policy, PoolHandle, RegistrarId, Transport, TransportProtocol, TransportUse,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const POOLS: usize = 9;
const REGISTRARS: RegistrarId = 4;

/// Pool i uses policy kind i, with data from (a, b).
fn policy(pool: usize, a: u32, b: u32) -> Policy {
    match pool {
        0 => Policy::RoundRobin,
        1 => Policy::WeightedRoundRobin { weight: a % 4 },
        2 => Policy::Random,
        3 => Policy::WeightedRandom { weight: a % 4 },
        4 => Policy::Priority { priority: a },
        5 => Policy::LeastUsed { load: a },
        6 => Policy::LeastUsedDegradation {
            load: a,
            degradation: b,
        },
        7 => Policy::PriorityLeastUsed {
            load: a,
            increment: b,
        },
        _ => Policy::RandomizedLeastUsed { load: a },
    }
}

/// Handles of lengths 1..=9, odd and even, to exercise checksum padding.
fn handle(pool: usize) -> PoolHandle {
    PoolHandle::new(vec![b'a' + pool as u8; pool + 1]).unwrap()
}

/// Whether a PE can be returned at all (weight 0 drains).
fn selectable(p: &Policy) -> bool {
    !matches!(
        p,
        Policy::WeightedRoundRobin { weight: 0 } | Policy::WeightedRandom { weight: 0 }
    )
}

#[derive(Clone, Debug)]
enum Op {
    Register {
        pool: usize,
        id: PeId,
        home: RegistrarId,
        a: u32,
        b: u32,
        life_ms: u64,
    },
    WrongPolicy {
        pool: usize,
        id: PeId,
    },
    Deregister {
        pool: usize,
        id: PeId,
    },
    Advance {
        ms: u64,
        sweep: bool,
    },
    Select {
        pool: usize,
        n: usize,
    },
    TakeOver {
        from: RegistrarId,
        to: RegistrarId,
    },
}

fn value() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(u32::MAX), 0u32..4, any::<u32>()]
}

fn op() -> impl Strategy<Value = Op> {
    let pool = 0..POOLS;
    let id = 0u32..6;
    let home = 1..=REGISTRARS;
    prop_oneof![
        6 => (pool.clone(), id.clone(), home.clone(), value(), value(), 0u64..4000).prop_map(
            |(pool, id, home, a, b, life_ms)| Op::Register { pool, id, home, a, b, life_ms }
        ),
        1 => (pool.clone(), id.clone()).prop_map(|(pool, id)| Op::WrongPolicy { pool, id }),
        2 => (pool.clone(), id).prop_map(|(pool, id)| Op::Deregister { pool, id }),
        2 => (0u64..2500, any::<bool>()).prop_map(|(ms, sweep)| Op::Advance { ms, sweep }),
        4 => (pool, 0usize..9).prop_map(|(pool, n)| Op::Select { pool, n }),
        1 => (home.clone(), home).prop_map(|(from, to)| Op::TakeOver { from, to }),
    ]
}

#[derive(Clone, Debug)]
struct ModelPe {
    home: RegistrarId,
    policy: Policy,
    expires: Instant,
}

fn naive_checksum<'a>(pes: impl Iterator<Item = (&'a usize, &'a PeId)>) -> u16 {
    let mut sum: u64 = 0;
    for (&pool, id) in pes {
        let mut bytes = handle(pool).as_bytes().to_vec();
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        bytes.extend_from_slice(&id.to_be_bytes());
        for w in bytes.chunks(2) {
            sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

fn registration(
    pool: usize,
    id: PeId,
    home: RegistrarId,
    policy: Policy,
    life: Duration,
) -> Registration {
    Registration {
        id,
        home,
        user_transports: vec![Transport {
            protocol: TransportProtocol::Sctp,
            port: 4000 + pool as u16,
            transport_use: TransportUse::DataOnly,
            addresses: vec![IpAddr::V6(Ipv6Addr::LOCALHOST)],
        }],
        asap_transport: None,
        policy,
        registration_life: life,
    }
}

fn check(hs: &Handlespace, model: &BTreeMap<(usize, PeId), ModelPe>) -> Result<(), TestCaseError> {
    if let Err(e) = hs.check_consistency() {
        return Err(TestCaseError::fail(e));
    }
    prop_assert_eq!(hs.element_count(), model.len());
    let pools: HashSet<usize> = model.keys().map(|k| k.0).collect();
    prop_assert_eq!(hs.pool_count(), pools.len());
    for pool in 0..POOLS {
        let n = model.keys().filter(|k| k.0 == pool).count();
        prop_assert_eq!(hs.pool_len(&handle(pool)), (n > 0).then_some(n));
    }
    for r in 1..=REGISTRARS {
        let owned = model.iter().filter(|(_, pe)| pe.home == r);
        prop_assert_eq!(hs.owned_count(r), owned.clone().count());
        let expect = naive_checksum(owned.map(|((p, id), _)| (p, id)));
        prop_assert_eq!(hs.checksum(r), expect, "registrar {}", r);
    }
    for ((pool, id), pe) in model {
        let got = hs.get(&handle(*pool), *id);
        prop_assert!(got.is_some());
        let got = got.unwrap();
        prop_assert_eq!(got.home, pe.home);
        prop_assert_eq!(got.policy, pe.policy);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn handlespace_matches_naive_model(ops in proptest::collection::vec(op(), 1..120), seed in any::<u64>()) {
        let config = HandlespaceConfig { max_increment: 1 + (seed % 3) as usize, ..HandlespaceConfig::default() };
        let mut hs = Handlespace::new(config);
        let mut model: BTreeMap<(usize, PeId), ModelPe> = BTreeMap::new();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut now = Instant::now();
        for op in ops {
            match op {
                Op::Register { pool, id, home, a, b, life_ms } => {
                    let p = policy(pool, a, b);
                    let life = Duration::from_millis(life_ms);
                    hs.register(&handle(pool), registration(pool, id, home, p, life), now)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    model.insert((pool, id), ModelPe { home, policy: p, expires: now + life });
                }
                Op::WrongPolicy { pool, id } => {
                    if model.keys().any(|k| k.0 == pool) {
                        let wrong = policy((pool + 1) % POOLS, 1, 1);
                        let err = hs.register(&handle(pool), registration(pool, id, 1, wrong, Duration::from_secs(1)), now);
                        let is_policy_error = matches!(err, Err(HandlespaceError::InconsistentPolicy { .. }));
                        prop_assert!(is_policy_error, "{:?}", err);
                    }
                }
                Op::Deregister { pool, id } => {
                    let removed = hs.remove(&handle(pool), id);
                    let expected = model.remove(&(pool, id));
                    prop_assert_eq!(removed.is_some(), expected.is_some());
                    if let Some(r) = removed {
                        prop_assert_eq!(r.element.id, id);
                        prop_assert_eq!(r.handle, handle(pool));
                    }
                }
                Op::Advance { ms, sweep } => {
                    now += Duration::from_millis(ms);
                    // Without a sweep, selections must skip the expired PEs themselves.
                    if !sweep {
                        check(&hs, &model)?;
                        continue;
                    }
                    let mut gone: Vec<(usize, PeId)> = hs
                        .expire(now)
                        .into_iter()
                        .map(|r| ((r.handle.as_bytes().len() - 1), r.element.id))
                        .collect();
                    gone.sort();
                    let expected: Vec<(usize, PeId)> = model
                        .iter()
                        .filter(|(_, pe)| pe.expires <= now)
                        .map(|(k, _)| *k)
                        .collect();
                    for k in &expected {
                        model.remove(k);
                    }
                    prop_assert_eq!(gone, expected);
                    if let Some(t) = hs.next_expiry() {
                        prop_assert!(t > now);
                        prop_assert_eq!(Some(t), model.values().map(|pe| pe.expires).min());
                    }
                }
                Op::Select { pool, n } => {
                    let res = hs.select(&handle(pool), n, now, &mut rng);
                    let members: Vec<&ModelPe> = model.range((pool, 0)..(pool + 1, 0)).map(|(_, pe)| pe).collect();
                    match res {
                        Err(e) => {
                            prop_assert_eq!(e, HandlespaceError::UnknownPoolHandle);
                            prop_assert!(members.is_empty());
                        }
                        Ok(sel) => {
                            let ids: Vec<PeId> = sel.iter().map(|p| p.id).collect();
                            let distinct: HashSet<PeId> = ids.iter().copied().collect();
                            prop_assert_eq!(distinct.len(), ids.len(), "duplicates in {:?}", ids);
                            for id in &ids {
                                let known = model.get(&(pool, *id));
                                prop_assert!(known.is_some(), "selected unregistered PE {}", id);
                                prop_assert!(known.unwrap().expires > now, "selected expired PE {}", id);
                            }
                            let live = members.iter().filter(|pe| pe.expires > now && selectable(&pe.policy)).count();
                            prop_assert_eq!(ids.len(), n.min(live));
                        }
                    }
                }
                Op::TakeOver { from, to } => {
                    let moved = hs.take_over(from, to);
                    let mut expected = 0;
                    for pe in model.values_mut() {
                        if pe.home == from {
                            pe.home = to;
                            expected += 1;
                        }
                    }
                    prop_assert_eq!(moved, expected);
                }
            }
            check(&hs, &model)?;
        }
    }
}
