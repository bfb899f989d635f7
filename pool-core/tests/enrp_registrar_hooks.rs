//! The ASAP registrar's ENRP hooks on their own: peer updates, peer removals,
//! takeover and adopted PEs, with keep-alive monitoring following the home.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use pool_core::asap::registrar::{Action, Registrar, RegistrarConfig, RegistrarEvent};
use pool_core::asap::WallClock;
use pool_core::types::{Policy, PoolHandle, Transport, TransportProtocol, TransportUse};
use pool_core::wire::{self, AsapMessage, SelectionPolicy};
use rand::SeedableRng;

fn handle() -> PoolHandle {
    PoolHandle::new("web").unwrap()
}

fn element(id: u32, home: u32) -> wire::PoolElement {
    wire::PoolElement {
        id,
        home_registrar: home,
        registration_life: 10_000,
        user_transport: Transport {
            protocol: TransportProtocol::Tcp,
            port: 80,
            transport_use: TransportUse::DataOnly,
            addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        },
        policy: SelectionPolicy::Known(Policy::RoundRobin),
        asap_transport: None,
    }
}

fn registrar(start: Instant) -> Registrar {
    Registrar::new(
        RegistrarConfig {
            id: 1,
            ..RegistrarConfig::default()
        },
        WallClock::new(start, 1_700_000_000_000),
        Box::new(rand_chacha::ChaCha8Rng::seed_from_u64(3)),
    )
    .unwrap()
}

fn keep_alives(r: &mut Registrar) -> Vec<u32> {
    std::iter::from_fn(|| r.poll_action())
        .filter_map(|a| match a {
            Action::Send {
                msg: AsapMessage::EndpointKeepAlive { pe_id, .. },
                ..
            } => Some(pe_id),
            _ => None,
        })
        .collect()
}

#[test]
fn a_peer_cannot_re_home_a_pe_registered_here_over_a_live_association() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    r.handle_message(
        t0,
        9,
        AsapMessage::Registration {
            pool_handle: handle(),
            element: element(5, 0),
            auth: None,
        },
    );
    assert!(matches!(
        r.poll_event(),
        Some(RegistrarEvent::Registered { .. })
    ));
    let _ = keep_alives(&mut r);
    // A stale (or early) claim by registrar 2: the live association wins.
    r.apply_peer_update(t0, &handle(), &element(5, 2), 2)
        .unwrap();
    assert_eq!(r.handlespace().get(&handle(), 5).unwrap().home, 1);
    assert!(r.monitors_pe(&handle(), 5));
    assert!(!r.apply_peer_removal(&handle(), 5, 2));
    r.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(keep_alives(&mut r), vec![5]);
    // The PE really leaves: its association here closes, then registrar 2's
    // update is applied like any other.
    r.handle_peer_closed(9);
    assert!(r.handlespace().get(&handle(), 5).is_none());
    let _ = std::iter::from_fn(|| r.poll_event()).count();
    r.apply_peer_update(t0, &handle(), &element(5, 2), 2)
        .unwrap();
    assert_eq!(r.handlespace().get(&handle(), 5).unwrap().home, 2);
    assert!(
        r.poll_event().is_none(),
        "peer changes must not echo as events"
    );
    r.check_consistency().unwrap();
    r.handle_timeout(t0 + Duration::from_secs(3));
    assert!(
        keep_alives(&mut r).is_empty(),
        "keep-alive sent for a PE homed elsewhere"
    );
}

#[test]
fn peers_delete_only_their_own_pes() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    r.apply_peer_update(t0, &handle(), &element(6, 2), 2)
        .unwrap();
    assert!(
        !r.apply_peer_removal(&handle(), 6, 3),
        "registrar 3 deleted registrar 2's PE"
    );
    assert!(r.apply_peer_removal(&handle(), 6, 2));
    assert!(r.handlespace().get(&handle(), 6).is_none());
    // Nobody deletes PEs homed here through ENRP.
    r.handle_message(
        t0,
        9,
        AsapMessage::Registration {
            pool_handle: handle(),
            element: element(7, 0),
            auth: None,
        },
    );
    assert!(!r.apply_peer_removal(&handle(), 7, 1));
    r.check_consistency().unwrap();
}

#[test]
fn taken_over_pes_are_adopted_until_they_re_register_or_expire() {
    let t0 = Instant::now();
    let mut r = registrar(t0);
    for id in [1, 2, 3] {
        r.apply_peer_update(t0, &handle(), &element(id, 4), 4)
            .unwrap();
    }
    r.apply_peer_update(t0, &handle(), &element(9, 5), 5)
        .unwrap();
    let moved = r.take_over(4, 1);
    assert_eq!(moved.iter().map(|k| k.1).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(r.adopted_count(), 3);
    assert_eq!(r.handlespace().owned_count(1), 3);
    assert_eq!(r.handlespace().owned_count(5), 1);
    r.check_consistency().unwrap();
    // No association to an adopted PE: no keep-alives for it.
    r.handle_timeout(t0 + Duration::from_secs(2));
    assert!(keep_alives(&mut r).is_empty());
    // PE 2 re-registers here: monitored from now on.
    let t1 = t0 + Duration::from_secs(3);
    r.handle_message(
        t1,
        11,
        AsapMessage::Registration {
            pool_handle: handle(),
            element: element(2, 0),
            auth: None,
        },
    );
    assert_eq!(r.adopted_count(), 2);
    r.check_consistency().unwrap();
    r.apply_peer_update(t1, &handle(), &element(8, 5), 5)
        .unwrap();
    let t = t1 + Duration::from_secs(1);
    r.handle_timeout(t);
    assert_eq!(keep_alives(&mut r), vec![2]);
    r.handle_message(
        t,
        11,
        AsapMessage::EndpointKeepAliveAck {
            pool_handle: handle(),
            pe_id: 2,
        },
    );
    // The other two never come back: gone with their registration life (10 s),
    // as is PE 9 of registrar 5; PE 2 answers its keep-alives and stays.
    let mut t = t;
    while t < t0 + Duration::from_secs(11) {
        t += Duration::from_millis(250);
        r.handle_timeout(t);
        for pe_id in keep_alives(&mut r) {
            r.handle_message(
                t,
                11,
                AsapMessage::EndpointKeepAliveAck {
                    pool_handle: handle(),
                    pe_id,
                },
            );
        }
    }
    let mut ids: Vec<u32> = r
        .handlespace()
        .elements(&handle())
        .map(|pe| pe.id)
        .collect();
    ids.sort();
    assert_eq!(ids, vec![2, 8]);
    assert_eq!(r.adopted_count(), 0);
    r.check_consistency().unwrap();
    // Another registrar taking over a peer moves the PEs without adopting them.
    let moved = r.take_over(5, 2);
    assert_eq!(moved.len(), 1);
    assert_eq!(r.adopted_count(), 0);
    assert_eq!(r.handlespace().get(&handle(), 8).unwrap().home, 2);
    // Nobody takes over this registrar's own PEs through the hook.
    assert!(r.take_over(1, 2).is_empty());
    r.check_consistency().unwrap();
}
