//! Handlespace bookkeeping: consistency checks, limits, re-registration,
//! expiry, ownership and the per-registrar checksum.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use pool_core::handlespace::{
    ChecksumAccumulator, Handlespace, HandlespaceConfig, HandlespaceError, OperationErrorCause,
    RegisterOutcome, Registration,
};
use pool_core::policy::PolicyKind;
use pool_core::types::{
    PeId, Policy, PoolHandle, RegistrarId, Transport, TransportProtocol, TransportUse,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn transport(protocol: TransportProtocol, transport_use: TransportUse, last: u8) -> Transport {
    Transport {
        protocol,
        port: 7000,
        transport_use,
        addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))],
    }
}

fn reg(id: PeId, home: RegistrarId, policy: Policy, life_s: u64) -> Registration {
    Registration {
        id,
        home,
        user_transports: vec![transport(
            TransportProtocol::Sctp,
            TransportUse::DataOnly,
            id as u8,
        )],
        asap_transport: None,
        policy,
        registration_life: Duration::from_secs(life_s),
    }
}

fn h(name: &str) -> PoolHandle {
    PoolHandle::new(name).unwrap()
}

#[test]
fn inconsistent_policy_is_refused_with_its_cause() {
    let mut hs = Handlespace::default();
    let now = Instant::now();
    hs.register(&h("p"), reg(1, 1, Policy::RoundRobin, 10), now)
        .unwrap();
    let err = hs
        .register(&h("p"), reg(2, 1, Policy::LeastUsed { load: 0 }, 10), now)
        .unwrap_err();
    assert_eq!(
        err,
        HandlespaceError::InconsistentPolicy {
            pool: 0x0000_0001,
            element: 0x4000_0001
        }
    );
    assert_eq!(err.cause(), OperationErrorCause::InconsistentPoolingPolicy);
    assert_eq!(err.cause().code(), 0x5);
    // Re-registering the existing PE with another policy is refused too.
    let err = hs
        .register(&h("p"), reg(1, 1, Policy::Random, 10), now)
        .unwrap_err();
    assert_eq!(err.cause().code(), 0x5);
    assert_eq!(hs.element_count(), 1);
    assert_eq!(hs.pool_policy(&h("p")), Some(PolicyKind::RoundRobin));
    // Policy data may differ; only the type must match.
    let w = |weight| Policy::WeightedRoundRobin { weight };
    hs.register(&h("w"), reg(1, 1, w(1), 10), now).unwrap();
    hs.register(&h("w"), reg(2, 1, w(9), 10), now).unwrap();
    hs.check_consistency().unwrap();
}

#[test]
fn inconsistent_transport_and_invalid_registrations_are_refused() {
    let mut hs = Handlespace::default();
    let now = Instant::now();
    hs.register(&h("p"), reg(1, 1, Policy::RoundRobin, 10), now)
        .unwrap();

    let mut tcp = reg(2, 1, Policy::RoundRobin, 10);
    tcp.user_transports = vec![transport(TransportProtocol::Tcp, TransportUse::DataOnly, 2)];
    let err = hs.register(&h("p"), tcp, now).unwrap_err();
    assert_eq!(err.cause().code(), 0x7, "{err}");

    let mut ctl = reg(2, 1, Policy::RoundRobin, 10);
    ctl.user_transports = vec![transport(
        TransportProtocol::Sctp,
        TransportUse::DataPlusControl,
        2,
    )];
    let err = hs.register(&h("p"), ctl, now).unwrap_err();
    assert_eq!(err.cause().code(), 0x8, "{err}");

    let mut none = reg(3, 1, Policy::RoundRobin, 10);
    none.user_transports.clear();
    assert_eq!(
        hs.register(&h("p"), none, now).unwrap_err().cause(),
        OperationErrorCause::InvalidValues
    );
    let mut empty = reg(3, 1, Policy::RoundRobin, 10);
    empty.user_transports[0].addresses.clear();
    assert_eq!(
        hs.register(&h("q"), empty, now).unwrap_err().cause().code(),
        0x3
    );
    assert_eq!(hs.pool_count(), 1, "a refused registration creates no pool");
    hs.check_consistency().unwrap();
}

#[test]
fn limits_give_lack_of_resources() {
    let config = HandlespaceConfig {
        max_pools: 2,
        max_elements_per_pool: 3,
        max_elements: 5,
        max_increment: 1,
    };
    let mut hs = Handlespace::new(config);
    let now = Instant::now();
    let rr = Policy::RoundRobin;
    for id in 1..=3 {
        hs.register(&h("a"), reg(id, 1, rr, 10), now).unwrap();
    }
    let err = hs.register(&h("a"), reg(4, 1, rr, 10), now).unwrap_err();
    assert_eq!(err, HandlespaceError::PoolFull { limit: 3 });
    assert_eq!(err.cause().code(), 0x6);
    // Updating a PE of a full pool is still fine.
    assert_eq!(
        hs.register(&h("a"), reg(3, 1, rr, 20), now),
        Ok(RegisterOutcome::Updated)
    );
    hs.register(&h("b"), reg(1, 1, rr, 10), now).unwrap();
    let err = hs.register(&h("c"), reg(1, 1, rr, 10), now).unwrap_err();
    assert_eq!(err, HandlespaceError::TooManyPools { limit: 2 });
    hs.register(&h("b"), reg(2, 1, rr, 10), now).unwrap();
    let err = hs.register(&h("b"), reg(3, 1, rr, 10), now).unwrap_err();
    assert_eq!(err, HandlespaceError::TooManyElements { limit: 5 });
    assert_eq!(err.cause(), OperationErrorCause::LackOfResources);
    // Room again after a removal.
    hs.remove(&h("a"), 1).unwrap();
    hs.register(&h("b"), reg(3, 1, rr, 10), now).unwrap();
    assert_eq!((hs.pool_count(), hs.element_count()), (2, 5));
    hs.check_consistency().unwrap();

    // max_increment 0 would freeze round robin; it means the default, 1.
    let frozen = HandlespaceConfig {
        max_increment: 0,
        ..HandlespaceConfig::default()
    };
    assert_eq!(Handlespace::new(frozen).config().max_increment, 1);
}

#[test]
fn reregistration_updates_in_place() {
    let mut hs = Handlespace::default();
    let t0 = Instant::now();
    let lu = |load| Policy::LeastUsed { load };
    assert_eq!(
        hs.register(&h("p"), reg(1, 1, lu(10), 5), t0),
        Ok(RegisterOutcome::Added)
    );
    hs.register(&h("p"), reg(2, 1, lu(20), 5), t0).unwrap();
    let t1 = t0 + Duration::from_secs(3);
    let mut again = reg(1, 1, lu(99), 5);
    again.user_transports[0].port = 7777;
    again.asap_transport = Some(transport(
        TransportProtocol::Sctp,
        TransportUse::DataPlusControl,
        1,
    ));
    assert_eq!(
        hs.register(&h("p"), again, t1),
        Ok(RegisterOutcome::Updated)
    );
    let pe = hs.get(&h("p"), 1).unwrap();
    assert_eq!(pe.policy, lu(99));
    assert_eq!(pe.user_transports[0].port, 7777);
    assert!(pe.asap_transport.is_some());
    assert_eq!(pe.last_update, t1);
    assert_eq!(pe.expires_at(), Some(t1 + Duration::from_secs(5)));
    assert_eq!(hs.element_count(), 2);
    // The new load re-sorted the pool.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let first = hs.select(&h("p"), 1, t1, &mut rng).unwrap()[0].id;
    assert_eq!(first, 2);
    // Expiry follows the renewed life: at t0+5 only PE 2 runs out.
    let gone = hs.expire(t0 + Duration::from_secs(5));
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].element.id, 2);
    assert_eq!(gone[0].handle, h("p"));
    assert_eq!(hs.next_expiry(), Some(t1 + Duration::from_secs(5)));
    hs.check_consistency().unwrap();
}

#[test]
fn expiry_removes_exactly_what_ran_out_and_drops_empty_pools() {
    let mut hs = Handlespace::default();
    let t0 = Instant::now();
    let rr = Policy::RoundRobin;
    hs.register(&h("a"), reg(1, 1, rr, 1), t0).unwrap();
    hs.register(&h("a"), reg(2, 1, rr, 3), t0).unwrap();
    hs.register(&h("b"), reg(1, 2, rr, 2), t0).unwrap();
    assert_eq!(hs.next_expiry(), Some(t0 + Duration::from_secs(1)));
    assert!(hs.expire(t0).is_empty());

    // Expired but not yet swept: a resolution already skips it.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let t = t0 + Duration::from_millis(1500);
    let ids: Vec<PeId> = hs
        .select(&h("a"), 5, t, &mut rng)
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, [2]);

    let gone = hs.expire(t0 + Duration::from_secs(2));
    let got: Vec<(String, PeId)> = gone
        .iter()
        .map(|r| (r.handle.to_string(), r.element.id))
        .collect();
    assert_eq!(got, [("a".into(), 1), ("b".into(), 1)], "earliest first");
    assert_eq!(hs.pool_count(), 1, "pool b is gone with its last PE");
    assert_eq!(
        hs.select(&h("b"), 1, t, &mut rng).unwrap_err(),
        HandlespaceError::UnknownPoolHandle
    );
    assert_eq!(HandlespaceError::UnknownPoolHandle.cause().code(), 0x9);
    assert_eq!(hs.owned_count(2), 0);
    assert_eq!(hs.expire(t0 + Duration::from_secs(3)).len(), 1);
    assert_eq!((hs.pool_count(), hs.element_count()), (0, 0));
    assert_eq!(hs.next_expiry(), None);
    hs.check_consistency().unwrap();
}

#[test]
fn remove_and_lookup() {
    let mut hs = Handlespace::default();
    let now = Instant::now();
    hs.register(&h("a"), reg(1, 1, Policy::Random, 9), now)
        .unwrap();
    hs.register(&h("a"), reg(2, 1, Policy::Random, 9), now)
        .unwrap();
    assert!(hs.remove(&h("a"), 3).is_none());
    assert!(hs.remove(&h("zz"), 1).is_none());
    let r = hs.remove(&h("a"), 1).unwrap();
    assert_eq!(r.element.id, 1);
    assert!(hs.get(&h("a"), 1).is_none());
    assert_eq!(hs.pool_len(&h("a")), Some(1));
    assert_eq!(hs.elements(&h("a")).map(|p| p.id).collect::<Vec<_>>(), [2]);
    assert_eq!(hs.iter().count(), 1);
    assert_eq!(hs.pools().collect::<Vec<_>>(), [&h("a")]);
    hs.check_consistency().unwrap();
}

/// Independent RFC 1071 computation over (handle zero-padded to even, id big-endian).
fn naive_checksum(pes: &[(&str, PeId)]) -> u16 {
    let mut sum: u64 = 0;
    for (handle, id) in pes {
        let mut bytes = handle.as_bytes().to_vec();
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

#[test]
fn checksum_known_values() {
    assert_eq!(ChecksumAccumulator::new().finish(), 0xFFFF);
    let mut acc = ChecksumAccumulator::new();
    acc.add(&h("ab"), 0x0001_0002);
    // 0x6162 + 0x0001 + 0x0002 = 0x6165, complemented.
    assert_eq!(acc.finish(), !0x6165);
    let mut acc = ChecksumAccumulator::new();
    acc.add(&h("abc"), 0);
    // Odd handle: the last byte is padded, 0x6162 + 0x6300.
    assert_eq!(acc.finish(), !(0x6162u16 + 0x6300));
    let mut acc = ChecksumAccumulator::new();
    acc.add(&PoolHandle::new(vec![0xFF, 0xFF]).unwrap(), u32::MAX);
    // 3 * 0xFFFF = 0x2FFFD folds to 0xFFFF, complemented to 0.
    assert_eq!(acc.finish(), 0);
    acc.remove(&PoolHandle::new(vec![0xFF, 0xFF]).unwrap(), u32::MAX);
    assert_eq!(acc.finish(), 0xFFFF);
}

#[test]
fn checksum_and_ownership_follow_registrations_and_takeover() {
    let mut hs = Handlespace::default();
    let now = Instant::now();
    let rr = Policy::RoundRobin;
    hs.register(&h("web"), reg(10, 1, rr, 9), now).unwrap();
    hs.register(&h("web"), reg(11, 2, rr, 9), now).unwrap();
    hs.register(&h("db"), reg(10, 1, rr, 9), now).unwrap();
    hs.register(&h("odd"), reg(0xDEAD_BEEF, 1, rr, 9), now)
        .unwrap();
    assert_eq!(
        hs.checksum(1),
        naive_checksum(&[("web", 10), ("db", 10), ("odd", 0xDEAD_BEEF)])
    );
    assert_eq!(hs.checksum(2), naive_checksum(&[("web", 11)]));
    assert_eq!(hs.checksum(3), 0xFFFF, "no PEs");
    assert_eq!(hs.owned_count(1), 3);

    // PE 11 moves home to registrar 1 by re-registering there.
    hs.register(&h("web"), reg(11, 1, rr, 9), now).unwrap();
    assert_eq!(hs.owned_count(2), 0);
    assert_eq!(hs.registrars().collect::<Vec<_>>(), [1]);
    assert_eq!(
        hs.checksum(1),
        naive_checksum(&[("web", 10), ("web", 11), ("db", 10), ("odd", 0xDEAD_BEEF)])
    );

    // Registrar 1 dies; registrar 3 takes over all its PEs.
    let before = hs.checksum(1);
    assert_eq!(hs.take_over(1, 3), 4);
    assert_eq!(hs.checksum(3), before);
    assert_eq!(hs.checksum(1), 0xFFFF);
    let mut owned: Vec<(String, PeId)> =
        hs.owned_by(3).map(|(h, p)| (h.to_string(), p.id)).collect();
    owned.sort();
    assert_eq!(
        owned,
        [
            ("db".into(), 10),
            ("odd".into(), 0xDEAD_BEEF),
            ("web".into(), 10),
            ("web".into(), 11)
        ]
    );
    assert!(hs.iter().all(|(_, p)| p.home == 3));
    hs.remove(&h("odd"), 0xDEAD_BEEF).unwrap();
    assert_eq!(
        hs.checksum(3),
        naive_checksum(&[("web", 10), ("web", 11), ("db", 10)])
    );
    hs.check_consistency().unwrap();
}

#[test]
fn takeover_keeps_degradation_state() {
    let mut hs = Handlespace::default();
    let now = Instant::now();
    let lud = Policy::LeastUsedDegradation {
        load: 0,
        degradation: 5,
    };
    hs.register(&h("p"), reg(1, 1, lud, 9), now).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    hs.select(&h("p"), 1, now, &mut rng).unwrap();
    hs.take_over(1, 2);
    assert_eq!(hs.get(&h("p"), 1).unwrap().degradation(), 5);
    assert_eq!(hs.get(&h("p"), 1).unwrap().home, 2);
}
