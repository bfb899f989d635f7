//! PE and PU client unit tests with a mock registrar: inputs handed in
//! directly, actions and events inspected.

mod asap_common;

use std::time::{Duration, Instant};

use asap_common::*;
use pool_core::asap::pe::{PeAction, PeConfigError, PeEvent, PoolElementClient};
use pool_core::asap::pu::{PoolUserClient, PuAction, PuConfig, PuEvent, Resolve};
use pool_core::asap::WallClock;
use pool_core::types::Policy;
use pool_core::wire::{self, AsapMessage, ErrorCause, OperationError, SelectionPolicy};

const MS: Duration = Duration::from_millis(1);

fn pe(config: pool_core::asap::pe::PeConfig, start: Instant) -> PoolElementClient {
    PoolElementClient::new(config, WallClock::new(start, EPOCH_MS), rng(5)).unwrap()
}

fn pe_actions(c: &mut PoolElementClient) -> Vec<PeAction> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

fn pe_events(c: &mut PoolElementClient) -> Vec<PeEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn accepted(pe_id: u32) -> AsapMessage {
    AsapMessage::RegistrationResponse {
        reject: false,
        pool_handle: handle("p"),
        pe_id,
        error: None,
    }
}

fn registration_load(a: &PeAction) -> Option<u32> {
    match a {
        PeAction::Send(AsapMessage::Registration { element, .. }) => match element.policy {
            SelectionPolicy::Known(Policy::LeastUsed { load }) => Some(load),
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn pe_waits_retry_delay_after_every_registrar_failed() {
    let t0 = Instant::now();
    let mut cfg = pe_config("p", 1, Policy::RoundRobin, 2);
    cfg.response_timeout = 100 * MS;
    cfg.retry_delay = 1000 * MS;
    let mut c = pe(cfg, t0);
    c.start(t0);
    let a = pe_actions(&mut c);
    assert_eq!(
        a[0],
        PeAction::Connect {
            registrar: 0,
            addr: registrar_addr(0)
        }
    );
    assert!(matches!(
        a[1],
        PeAction::Send(AsapMessage::Registration { .. })
    ));
    assert_eq!(c.poll_timeout(), Some(t0 + 100 * MS));
    c.handle_timeout(t0 + 100 * MS);
    let a = pe_actions(&mut c);
    assert_eq!(a[0], PeAction::Close);
    assert_eq!(
        a[1],
        PeAction::Connect {
            registrar: 1,
            addr: registrar_addr(1)
        }
    );
    c.handle_timeout(t0 + 200 * MS);
    // Both failed in a row: pause, then start over at registrar 0.
    assert_eq!(pe_actions(&mut c), [PeAction::Close]);
    assert_eq!(c.poll_timeout(), Some(t0 + 1200 * MS));
    c.handle_timeout(t0 + 1200 * MS);
    assert_eq!(
        pe_actions(&mut c)[0],
        PeAction::Connect {
            registrar: 0,
            addr: registrar_addr(0)
        }
    );
    assert_eq!(c.counters().hunts, 2);
    assert!(pe_events(&mut c).is_empty());
}

#[test]
fn pe_answers_only_its_own_keep_alives() {
    let t0 = Instant::now();
    let mut c = pe(pe_config("p", 1, Policy::RoundRobin, 1), t0);
    c.start(t0);
    pe_actions(&mut c);
    c.handle_message(t0, accepted(1));
    let ka = |pe_id| AsapMessage::EndpointKeepAlive {
        home: false,
        server_id: 77,
        pool_handle: handle("p"),
        pe_id,
    };
    c.handle_message(t0, ka(2));
    assert!(pe_actions(&mut c).is_empty());
    c.handle_message(t0, ka(1));
    assert_eq!(
        pe_actions(&mut c),
        [PeAction::Send(AsapMessage::EndpointKeepAliveAck {
            pool_handle: handle("p"),
            pe_id: 1
        })]
    );
    assert_eq!(c.home_registrar(), Some(77));
}

#[test]
fn pe_rejected_on_reregistration_loses_its_registrar_and_hunts() {
    let t0 = Instant::now();
    let mut c = pe(pe_config("p", 1, Policy::RoundRobin, 2), t0);
    c.start(t0);
    pe_actions(&mut c);
    c.handle_message(t0, accepted(1));
    assert_eq!(pe_events(&mut c), [PeEvent::Registered { registrar: 0 }]);
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    c.handle_timeout(t0 + Duration::from_secs(10));
    assert!(matches!(
        pe_actions(&mut c)[..],
        [PeAction::Send(AsapMessage::Registration { .. })]
    ));
    c.handle_message(
        t0 + Duration::from_secs(10),
        AsapMessage::RegistrationResponse {
            reject: true,
            pool_handle: handle("p"),
            pe_id: 1,
            error: Some(OperationError::single(ErrorCause::LackOfResources)),
        },
    );
    assert_eq!(
        pe_events(&mut c),
        [
            PeEvent::RegistrationRejected {
                registrar: 0,
                cause: Some(ErrorCause::LackOfResources)
            },
            PeEvent::RegistrarLost { registrar: 0 }
        ]
    );
    let a = pe_actions(&mut c);
    assert_eq!(
        a[..2],
        [
            PeAction::Close,
            PeAction::Connect {
                registrar: 1,
                addr: registrar_addr(1)
            }
        ]
    );
    assert_eq!(c.registered_with(), None);
}

#[test]
fn pe_load_change_during_a_pending_reregistration_is_sent_after_the_answer() {
    let t0 = Instant::now();
    let mut c = pe(pe_config("p", 1, Policy::LeastUsed { load: 0 }, 1), t0);
    c.start(t0);
    pe_actions(&mut c);
    c.handle_message(t0, accepted(1));
    let big = u32::MAX / 2;
    c.set_load(t0 + MS, big);
    let a = pe_actions(&mut c);
    assert_eq!(
        a.iter().filter_map(registration_load).collect::<Vec<_>>(),
        [big]
    );
    // Another jump while the first update is unanswered: held back ...
    c.set_load(t0 + 2 * MS, 0);
    assert!(pe_actions(&mut c).is_empty());
    // ... and sent once the registrar answered.
    c.handle_message(t0 + 3 * MS, accepted(1));
    let a = pe_actions(&mut c);
    assert_eq!(
        a.iter().filter_map(registration_load).collect::<Vec<_>>(),
        [0]
    );
    assert_eq!(c.counters().load_updates, 2);
}

fn registration_policy(a: &PeAction) -> Option<Policy> {
    match a {
        PeAction::Send(AsapMessage::Registration { element, .. }) => match element.policy {
            SelectionPolicy::Known(p) => Some(p),
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn pe_policy_change_re_registers_at_once_keeping_the_load() {
    let t0 = Instant::now();
    let mut c = pe(
        pe_config("p", 1, Policy::WeightedRoundRobin { weight: 1 }, 1),
        t0,
    );
    c.start(t0);
    pe_actions(&mut c);
    c.handle_message(t0, accepted(1));
    // The same policy again is no change: nothing is sent.
    c.set_policy(t0 + MS, Policy::WeightedRoundRobin { weight: 1 });
    assert!(pe_actions(&mut c).is_empty());
    c.set_policy(t0 + MS, Policy::WeightedRoundRobin { weight: 5 });
    let a = pe_actions(&mut c);
    assert_eq!(
        a.iter().filter_map(registration_policy).collect::<Vec<_>>(),
        [Policy::WeightedRoundRobin { weight: 5 }]
    );
    // A change while that update is unanswered waits for the answer.
    c.set_policy(t0 + 2 * MS, Policy::WeightedRoundRobin { weight: 7 });
    assert!(pe_actions(&mut c).is_empty());
    c.handle_message(t0 + 3 * MS, accepted(1));
    let a = pe_actions(&mut c);
    assert_eq!(
        a.iter().filter_map(registration_policy).collect::<Vec<_>>(),
        [Policy::WeightedRoundRobin { weight: 7 }]
    );
    assert_eq!(c.counters().policy_updates, 2);
    assert_eq!(c.policy(), Policy::WeightedRoundRobin { weight: 7 });

    // An adaptive policy keeps the load it reports.
    let mut c = pe(
        pe_config(
            "p",
            1,
            Policy::LeastUsedDegradation {
                load: 0,
                degradation: 0,
            },
            1,
        ),
        t0,
    );
    c.start(t0);
    pe_actions(&mut c);
    c.handle_message(t0, accepted(1));
    c.set_load(t0 + MS, u32::MAX / 2);
    pe_actions(&mut c);
    c.handle_message(t0 + MS, accepted(1));
    c.set_policy(
        t0 + 2 * MS,
        Policy::LeastUsedDegradation {
            load: 0,
            degradation: 9,
        },
    );
    assert_eq!(
        pe_actions(&mut c)
            .iter()
            .filter_map(registration_policy)
            .collect::<Vec<_>>(),
        [Policy::LeastUsedDegradation {
            load: u32::MAX / 2,
            degradation: 9
        }]
    );
}

#[test]
fn pe_signs_every_registration_with_a_fresh_nonce() {
    let t0 = Instant::now();
    let mut cfg = pe_config("p", 1, Policy::RoundRobin, 1);
    cfg.auth = Some(pool_core::asap::auth::PoolSecret {
        key_id: 4,
        secret: b"k".to_vec(),
    });
    let mut c = pe(cfg, t0);
    c.start(t0);
    let first = pe_actions(&mut c);
    c.handle_message(t0, accepted(1));
    c.handle_timeout(t0 + Duration::from_secs(10));
    let second = pe_actions(&mut c);
    let auth = |a: &[PeAction]| -> wire::RegistrationAuth {
        a.iter()
            .find_map(|a| match a {
                PeAction::Send(AsapMessage::Registration { auth: Some(x), .. }) => Some(x.clone()),
                _ => None,
            })
            .unwrap()
    };
    let (a1, a2) = (auth(&first), auth(&second));
    assert_eq!(a1.key_id, 4);
    assert_ne!(a1.nonce, a2.nonce);
    assert_eq!(
        (a1.timestamp_ms, a2.timestamp_ms),
        (EPOCH_MS, EPOCH_MS + 10_000)
    );
}

#[test]
fn pe_config_is_validated() {
    let t0 = Instant::now();
    let mut cfg = pe_config("p", 1, Policy::RoundRobin, 1);
    cfg.reregistration_interval = cfg.registration_life;
    let err = PoolElementClient::new(cfg, WallClock::new(t0, 0), rng(0)).unwrap_err();
    assert_eq!(err, PeConfigError::Reregistration);
    let cfg = pe_config("p", 1, Policy::RoundRobin, 0);
    let err = PoolElementClient::new(cfg, WallClock::new(t0, 0), rng(0)).unwrap_err();
    assert_eq!(err, PeConfigError::NoRegistrars);
}

fn pu(staleness: Duration) -> PoolUserClient {
    let mut cfg = PuConfig::new(vec![registrar_addr(0)]);
    cfg.cache_staleness = staleness;
    cfg.max_cached_pools = 2;
    PoolUserClient::new(cfg, rng(9)).unwrap()
}

fn pu_sent(c: &mut PoolUserClient) -> Vec<AsapMessage> {
    std::iter::from_fn(|| c.poll_action())
        .filter_map(|a| match a {
            PuAction::Send(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn response(pool: &str, ids: &[u32]) -> AsapMessage {
    AsapMessage::HandleResolutionResponse {
        accept_updates: false,
        pool_handle: handle(pool),
        policy: None,
        elements: ids
            .iter()
            .map(|&id| wire::PoolElement {
                id,
                home_registrar: 1,
                registration_life: 1000,
                user_transport: user_transport(id as u8),
                policy: SelectionPolicy::Known(Policy::RoundRobin),
                asap_transport: None,
            })
            .collect(),
        error: None,
    }
}

#[test]
fn pu_cache_is_used_until_stale() {
    let t0 = Instant::now();
    let mut c = pu(500 * MS);
    assert_eq!(c.select(t0, &handle("p")), None);
    assert_eq!(
        pu_sent(&mut c),
        [AsapMessage::HandleResolution {
            pool_handle: handle("p")
        }]
    );
    // A second ask while pending sends nothing more.
    assert_eq!(c.resolve(t0, &handle("p")), Resolve::Pending);
    assert!(pu_sent(&mut c).is_empty());
    c.handle_message(t0 + 10 * MS, response("p", &[1, 2]));
    assert_eq!(
        c.poll_event(),
        Some(PuEvent::Resolved {
            pool_handle: handle("p"),
            elements: 2
        })
    );
    // Round robin over the cached list, no traffic.
    let picks: Vec<u32> = (0..4)
        .map(|_| c.select(t0 + 100 * MS, &handle("p")).unwrap().id)
        .collect();
    assert_eq!(picks, [1, 2, 1, 2]);
    assert!(pu_sent(&mut c).is_empty());
    assert_eq!(c.counters().cache_hits, 4);
    // Stale at fetch time + 500 ms.
    assert_eq!(c.select(t0 + 510 * MS, &handle("p")), None);
    assert_eq!(pu_sent(&mut c).len(), 1);
    // The refresh drops PE 1, which the registrar no longer lists.
    c.handle_message(t0 + 520 * MS, response("p", &[2, 3]));
    let mut ids: Vec<u32> = c.cached(&handle("p")).map(|e| e.id).collect();
    ids.sort();
    assert_eq!(ids, [2, 3]);
}

#[test]
fn pu_ignores_unsolicited_answers_and_bounds_its_cache() {
    let t0 = Instant::now();
    let mut c = pu(Duration::from_secs(10));
    c.handle_message(t0, response("x", &[1]));
    assert_eq!(c.cached(&handle("x")).count(), 0);
    assert_eq!(c.poll_event(), None);
    for (i, pool) in ["a", "b", "c"].into_iter().enumerate() {
        let t = t0 + (i as u32) * MS;
        c.resolve(t, &handle(pool));
        c.handle_message(t, response(pool, &[1]));
    }
    // Two pools at most: the oldest ("a") made room.
    assert_eq!(c.cached(&handle("a")).count(), 0);
    assert_eq!(c.cached(&handle("b")).count(), 1);
    assert_eq!(c.cached(&handle("c")).count(), 1);
}
