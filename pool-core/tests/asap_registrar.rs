//! Registrar unit tests with a mock peer: messages are handed in directly
//! and the queued actions inspected.

mod asap_common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use asap_common::*;
use pool_core::asap::auth::{self, sign, AuthError, PoolSecret};
use pool_core::asap::registrar::{
    Action, ConfigError, Registrar, RegistrarConfig, RegistrarEvent, RemovalReason,
};
use pool_core::asap::{PeerId, WallClock};
use pool_core::handlespace::HandlespaceConfig;
use pool_core::policy::PolicyKind;
use pool_core::types::{Policy, PoolHandle};
use pool_core::wire::{self, AsapMessage, ErrorCause, OperationError, SelectionPolicy};

const SECRET: &[u8] = b"pool secret of the test pool, 32B";

fn secret(key_id: u32, s: &[u8]) -> PoolSecret {
    PoolSecret {
        key_id,
        secret: s.to_vec(),
    }
}

fn element(id: u32, policy: Policy) -> wire::PoolElement {
    wire::PoolElement {
        id,
        home_registrar: 0,
        registration_life: 30_000,
        user_transport: user_transport(id as u8),
        policy: SelectionPolicy::Known(policy),
        asap_transport: None,
    }
}

struct Mock {
    r: Registrar,
    start: Instant,
}

impl Mock {
    fn new(config: RegistrarConfig) -> Self {
        let start = Instant::now();
        let r = Registrar::new(config, WallClock::new(start, EPOCH_MS), rng(1)).unwrap();
        Self { r, start }
    }

    fn secured(pool: &str) -> Self {
        let mut pool_secrets = HashMap::new();
        pool_secrets.insert(handle(pool), vec![secret(1, SECRET)]);
        Self::new(RegistrarConfig {
            pool_secrets,
            allow_open_pools: false,
            ..RegistrarConfig::default()
        })
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// Delivers a message (through the codec) and returns the actions it caused.
    fn send(&mut self, ms: u64, peer: PeerId, msg: AsapMessage) -> Vec<Action> {
        let now = self.at(ms);
        self.r.handle_message(now, peer, roundtrip(&msg));
        self.drain()
    }

    fn drain(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.r.poll_action()).collect()
    }

    fn events(&mut self) -> Vec<RegistrarEvent> {
        std::iter::from_fn(|| self.r.poll_event()).collect()
    }
}

fn registration(
    pool: &str,
    el: wire::PoolElement,
    auth: Option<wire::RegistrationAuth>,
) -> AsapMessage {
    AsapMessage::Registration {
        pool_handle: handle(pool),
        element: el,
        auth,
    }
}

fn signed(pool: &str, el: wire::PoolElement, s: &PoolSecret, nonce: u64, ts: u64) -> AsapMessage {
    let auth = sign(s, &handle(pool), &el, nonce, ts).unwrap();
    registration(pool, el, Some(auth))
}

/// The (reject, first cause) of the single registration response in `actions`.
fn reg_response(actions: &[Action]) -> (bool, Option<ErrorCause>) {
    match actions {
        [Action::Send {
            msg: AsapMessage::RegistrationResponse { reject, error, .. },
            ..
        }] => (*reject, error.as_ref().map(|e| e.causes[0].clone())),
        other => panic!("expected one registration response, got {other:?}"),
    }
}

#[test]
fn authenticated_registration_is_accepted() {
    let mut m = Mock::secured("sec");
    let a = m.send(
        0,
        1,
        signed(
            "sec",
            element(1, Policy::RoundRobin),
            &secret(1, SECRET),
            11,
            EPOCH_MS,
        ),
    );
    assert_eq!(reg_response(&a), (false, None));
    assert_eq!(m.r.counters().registrations, 1);
    assert_eq!(m.r.counters().auth_failures, 0);
}

#[test]
fn wrong_secret_missing_auth_and_unknown_key_are_rejected_and_counted() {
    let mut m = Mock::secured("sec");
    let wrong = m.send(
        0,
        1,
        signed(
            "sec",
            element(1, Policy::RoundRobin),
            &secret(1, b"guess"),
            1,
            EPOCH_MS,
        ),
    );
    assert_eq!(
        reg_response(&wrong),
        (true, Some(ErrorCause::RejectedSecurity))
    );
    let missing = m.send(
        0,
        1,
        registration("sec", element(1, Policy::RoundRobin), None),
    );
    assert_eq!(
        reg_response(&missing),
        (true, Some(ErrorCause::RejectedSecurity))
    );
    let unknown = m.send(
        0,
        1,
        signed(
            "sec",
            element(1, Policy::RoundRobin),
            &secret(9, SECRET),
            2,
            EPOCH_MS,
        ),
    );
    assert_eq!(
        reg_response(&unknown),
        (true, Some(ErrorCause::RejectedSecurity))
    );
    let c = m.r.counters();
    assert_eq!(
        (
            c.auth_failures,
            c.replays,
            c.registrations,
            c.registrations_rejected
        ),
        (3, 0, 0, 3)
    );
    assert_eq!(m.r.handlespace().element_count(), 0);
    let errors: Vec<AuthError> = m
        .events()
        .into_iter()
        .filter_map(|e| match e {
            RegistrarEvent::AuthRejected { error, .. } => Some(error),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        [
            AuthError::BadTag,
            AuthError::Missing,
            AuthError::UnknownKey(9)
        ]
    );
}

#[test]
fn a_tag_does_not_cover_a_changed_element() {
    let mut m = Mock::secured("sec");
    let el = element(1, Policy::LeastUsed { load: 10 });
    let auth = sign(&secret(1, SECRET), &handle("sec"), &el, 5, EPOCH_MS).unwrap();
    // An attacker rewrites the transport of a captured registration.
    let mut forged = el.clone();
    forged.user_transport = user_transport(200);
    let a = m.send(0, 1, registration("sec", forged, Some(auth)));
    assert_eq!(reg_response(&a), (true, Some(ErrorCause::RejectedSecurity)));
    assert_eq!(m.r.counters().auth_failures, 1);
}

#[test]
fn replayed_and_stale_registrations_are_rejected_and_counted() {
    let mut m = Mock::secured("sec");
    let msg = signed(
        "sec",
        element(1, Policy::RoundRobin),
        &secret(1, SECRET),
        77,
        EPOCH_MS,
    );
    assert_eq!(reg_response(&m.send(0, 1, msg.clone())), (false, None));
    // The same bytes again, even on another association: a replay.
    assert_eq!(
        reg_response(&m.send(10, 2, msg.clone())),
        (true, Some(ErrorCause::RejectedSecurity))
    );
    // A timestamp 31 s old (window 30 s) is refused whatever the nonce.
    let old = signed(
        "sec",
        element(1, Policy::RoundRobin),
        &secret(1, SECRET),
        78,
        EPOCH_MS,
    );
    assert_eq!(
        reg_response(&m.send(31_001, 1, old)),
        (true, Some(ErrorCause::RejectedSecurity))
    );
    // So is one from the future.
    let future = signed(
        "sec",
        element(1, Policy::RoundRobin),
        &secret(1, SECRET),
        79,
        EPOCH_MS + 60_000,
    );
    assert_eq!(
        reg_response(&m.send(0, 1, future)),
        (true, Some(ErrorCause::RejectedSecurity))
    );
    let c = m.r.counters();
    assert_eq!((c.replays, c.auth_failures, c.registrations), (3, 0, 1));
    // A fresh nonce and timestamp re-registers fine.
    let fresh = signed(
        "sec",
        element(1, Policy::RoundRobin),
        &secret(1, SECRET),
        80,
        EPOCH_MS + 20,
    );
    assert_eq!(reg_response(&m.send(20, 1, fresh)), (false, None));
    assert_eq!(m.r.counters().reregistrations, 1);
}

#[test]
fn key_rotation_accepts_every_configured_key() {
    let mut pool_secrets = HashMap::new();
    pool_secrets.insert(
        handle("sec"),
        vec![secret(1, b"old key"), secret(2, b"new key")],
    );
    let mut m = Mock::new(RegistrarConfig {
        pool_secrets,
        ..RegistrarConfig::default()
    });
    let a = m.send(
        0,
        1,
        signed(
            "sec",
            element(1, Policy::RoundRobin),
            &secret(1, b"old key"),
            1,
            EPOCH_MS,
        ),
    );
    let b = m.send(
        0,
        2,
        signed(
            "sec",
            element(2, Policy::RoundRobin),
            &secret(2, b"new key"),
            2,
            EPOCH_MS,
        ),
    );
    assert_eq!(
        (reg_response(&a), reg_response(&b)),
        ((false, None), (false, None))
    );
}

#[test]
fn open_pools_follow_the_configuration() {
    let mut open = Mock::new(RegistrarConfig::default());
    assert_eq!(
        reg_response(&open.send(0, 1, registration("any", element(1, Policy::Random), None))),
        (false, None)
    );
    let mut closed = Mock::secured("sec");
    let a = closed.send(
        0,
        1,
        registration("other", element(1, Policy::Random), None),
    );
    assert_eq!(reg_response(&a), (true, Some(ErrorCause::RejectedSecurity)));
    assert_eq!(closed.r.counters().auth_failures, 1);
}

#[test]
fn secured_deregistration_must_be_signed_and_fresh() {
    let mut m = Mock::secured("sec");
    m.send(
        0,
        1,
        signed(
            "sec",
            element(1, Policy::RoundRobin),
            &secret(1, SECRET),
            1,
            EPOCH_MS,
        ),
    );
    let refused = |peer| Action::Send {
        peer,
        msg: AsapMessage::DeregistrationResponse {
            pool_handle: handle("sec"),
            pe_id: 1,
            error: Some(OperationError::single(ErrorCause::RejectedSecurity)),
        },
    };
    // Unsigned: refused, even on the association that registered the PE.
    let unsigned = AsapMessage::Deregistration {
        pool_handle: handle("sec"),
        pe_id: 1,
        auth: None,
    };
    assert_eq!(m.send(5, 1, unsigned), [refused(1)]);
    // Signed with a wrong secret: refused.
    let forged = AsapMessage::Deregistration {
        pool_handle: handle("sec"),
        pe_id: 1,
        auth: Some(
            auth::sign_deregistration(
                &secret(1, b"not the pool secret"),
                &handle("sec"),
                1,
                7,
                EPOCH_MS,
            )
            .unwrap(),
        ),
    };
    assert_eq!(m.send(6, 66, forged), [refused(66)]);
    assert!(m.r.handlespace().get(&handle("sec"), 1).is_some());
    assert_eq!(m.r.counters().auth_failures, 2);
    // Signed with the pool secret: accepted from any association (the PE may have
    // moved to a new association after a server hunt).
    let good = AsapMessage::Deregistration {
        pool_handle: handle("sec"),
        pe_id: 1,
        auth: Some(
            auth::sign_deregistration(&secret(1, SECRET), &handle("sec"), 1, 8, EPOCH_MS).unwrap(),
        ),
    };
    let b = m.send(7, 66, good.clone());
    assert!(matches!(
        &b[..],
        [Action::Send {
            peer: 66,
            msg: AsapMessage::DeregistrationResponse { error: None, .. }
        }]
    ));
    assert_eq!(m.r.handlespace().element_count(), 0);
    // The same signed message again is a replay.
    m.send(
        8,
        1,
        signed(
            "sec",
            element(1, Policy::RoundRobin),
            &secret(1, SECRET),
            2,
            EPOCH_MS,
        ),
    );
    assert_eq!(m.send(9, 66, good), [refused(66)]);
    assert_eq!(m.r.counters().replays, 1);
    assert!(m.r.handlespace().get(&handle("sec"), 1).is_some());
    m.r.check_consistency().unwrap();
}

#[test]
fn a_peer_that_keeps_failing_auth_is_closed() {
    let mut m = Mock::secured("sec");
    let mut closed = 0;
    for i in 0..10 {
        let acts = m.send(
            i,
            5,
            registration("sec", element(1, Policy::RoundRobin), None),
        );
        closed += acts
            .iter()
            .filter(|a| **a == Action::Close { peer: 5 })
            .count();
    }
    assert_eq!(closed, 1);
    assert_eq!(m.r.counters().auth_failures, 10);
}

#[test]
fn inconsistent_policy_and_unknown_policy_are_refused() {
    let mut m = Mock::new(RegistrarConfig::default());
    m.send(
        0,
        1,
        registration("p", element(1, Policy::RoundRobin), None),
    );
    let a = m.send(
        0,
        1,
        registration("p", element(2, Policy::LeastUsed { load: 0 }), None),
    );
    assert_eq!(
        reg_response(&a),
        (true, Some(ErrorCause::InconsistentPoolingPolicy(None)))
    );
    let mut odd = element(3, Policy::RoundRobin);
    odd.policy = SelectionPolicy::Unknown {
        type_code: 0x4000_00ff,
        data: vec![0; 4],
    };
    let b = m.send(0, 1, registration("q", odd, None));
    assert_eq!(
        reg_response(&b),
        (true, Some(ErrorCause::InconsistentPoolingPolicy(None)))
    );
    assert_eq!(m.r.counters().registrations_rejected, 2);
    assert_eq!(m.r.handlespace().element_count(), 1);
}

#[test]
fn limits_refuse_with_lack_of_resources_and_count() {
    let mut m = Mock::new(RegistrarConfig {
        handlespace: HandlespaceConfig {
            max_pools: 1,
            max_elements_per_pool: 2,
            ..HandlespaceConfig::default()
        },
        ..RegistrarConfig::default()
    });
    for id in 1..=2 {
        assert_eq!(
            reg_response(&m.send(0, 1, registration("p", element(id, Policy::Random), None))),
            (false, None)
        );
    }
    let full = m.send(0, 1, registration("p", element(3, Policy::Random), None));
    assert_eq!(
        reg_response(&full),
        (true, Some(ErrorCause::LackOfResources))
    );
    let second_pool = m.send(0, 1, registration("q", element(4, Policy::Random), None));
    assert_eq!(
        reg_response(&second_pool),
        (true, Some(ErrorCause::LackOfResources))
    );
    assert_eq!(m.r.counters().limit_hits, 2);
}

#[test]
fn registration_life_is_clamped_to_the_configured_range() {
    let mut m = Mock::new(RegistrarConfig {
        min_registration_life: Duration::from_secs(2),
        max_registration_life: Duration::from_secs(60),
        ..RegistrarConfig::default()
    });
    let mut short = element(1, Policy::Random);
    short.registration_life = 10;
    let mut long = element(2, Policy::Random);
    long.registration_life = u32::MAX;
    m.send(0, 1, registration("p", short, None));
    m.send(0, 1, registration("p", long, None));
    let hs = m.r.handlespace();
    assert_eq!(
        hs.get(&handle("p"), 1).unwrap().registration_life,
        Duration::from_secs(2)
    );
    assert_eq!(
        hs.get(&handle("p"), 2).unwrap().registration_life,
        Duration::from_secs(60)
    );
}

#[test]
fn keep_alives_go_to_the_registering_peer_and_only_its_ack_counts() {
    let mut m = Mock::new(RegistrarConfig {
        id: 33,
        keep_alive_interval: Duration::from_millis(300),
        keep_alive_timeout: Duration::from_millis(100),
        ..RegistrarConfig::default()
    });
    m.send(0, 4, registration("p", element(1, Policy::Random), None));
    assert_eq!(m.r.poll_timeout(), Some(m.at(300)));
    m.r.handle_timeout(m.at(300));
    let ka = m.drain();
    assert_eq!(
        ka,
        [Action::Send {
            peer: 4,
            msg: AsapMessage::EndpointKeepAlive {
                home: false,
                server_id: 33,
                pool_handle: handle("p"),
                pe_id: 1
            }
        }]
    );
    assert_eq!(m.r.poll_timeout(), Some(m.at(400)));
    // An ACK on another association does not save the PE.
    let ack = AsapMessage::EndpointKeepAliveAck {
        pool_handle: handle("p"),
        pe_id: 1,
    };
    m.send(350, 9, ack.clone());
    assert_eq!(m.r.poll_timeout(), Some(m.at(400)));
    m.send(350, 4, ack);
    // Next keep-alive one interval after the previous one was sent.
    assert_eq!(m.r.poll_timeout(), Some(m.at(600)));
    m.r.handle_timeout(m.at(600));
    m.drain();
    m.r.handle_timeout(m.at(699));
    assert!(m.r.handlespace().get(&handle("p"), 1).is_some());
    m.r.handle_timeout(m.at(700));
    assert!(m.r.handlespace().get(&handle("p"), 1).is_none());
    assert!(m.events().contains(&RegistrarEvent::Removed {
        pool_handle: handle("p"),
        pe_id: 1,
        reason: RemovalReason::KeepAliveTimeout
    }));
    let c = m.r.counters();
    assert_eq!(
        (c.keep_alives_sent, c.keep_alive_failures, c.removed_pes),
        (2, 1, 1)
    );
    m.r.check_consistency().unwrap();
}

#[test]
fn peer_close_removes_the_pes_registered_on_it() {
    let mut m = Mock::new(RegistrarConfig::default());
    m.send(0, 1, registration("p", element(1, Policy::Random), None));
    m.send(0, 1, registration("q", element(2, Policy::Random), None));
    m.send(0, 2, registration("p", element(3, Policy::Random), None));
    m.r.handle_peer_closed(1);
    let hs = m.r.handlespace();
    assert_eq!(hs.element_count(), 1);
    assert!(hs.get(&handle("p"), 3).is_some());
    assert_eq!(m.r.counters().removed_pes, 2);
    m.r.check_consistency().unwrap();
}

#[test]
fn reregistration_on_a_new_association_moves_monitoring() {
    let mut m = Mock::new(RegistrarConfig::default());
    m.send(0, 1, registration("p", element(1, Policy::Random), None));
    m.send(10, 2, registration("p", element(1, Policy::Random), None));
    m.r.handle_peer_closed(1);
    assert!(m.r.handlespace().get(&handle("p"), 1).is_some());
    let snap = m.r.snapshot(m.at(10));
    assert_eq!(snap.pools[0].elements[0].peer, Some(2));
    m.r.check_consistency().unwrap();
}

#[test]
fn resolution_returns_up_to_n_by_policy_with_the_pool_policy() {
    let mut m = Mock::new(RegistrarConfig {
        max_resolution_items: 2,
        ..RegistrarConfig::default()
    });
    for (id, load) in [(1, 300), (2, 100), (3, 200)] {
        m.send(
            0,
            1,
            registration("lu", element(id, Policy::LeastUsed { load }), None),
        );
    }
    let a = m.send(
        1,
        8,
        AsapMessage::HandleResolution {
            pool_handle: handle("lu"),
        },
    );
    let [Action::Send {
        peer: 8,
        msg:
            AsapMessage::HandleResolutionResponse {
                policy,
                elements,
                error: None,
                ..
            },
    }] = &a[..]
    else {
        panic!("{a:?}");
    };
    assert_eq!(elements.iter().map(|e| e.id).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(
        *policy,
        Some(SelectionPolicy::Known(Policy::LeastUsed { load: 100 }))
    );
    assert!(elements.iter().all(|e| e.asap_transport.is_none()));
}

#[test]
fn snapshot_lists_pools_pes_load_home_and_age() {
    let mut m = Mock::secured("sec");
    m.send(
        0,
        1,
        signed(
            "sec",
            element(2, Policy::LeastUsed { load: 9 }),
            &secret(1, SECRET),
            1,
            EPOCH_MS,
        ),
    );
    m.send(
        100,
        1,
        signed(
            "sec",
            element(1, Policy::LeastUsed { load: 5 }),
            &secret(1, SECRET),
            2,
            EPOCH_MS + 100,
        ),
    );
    let s = m.r.snapshot(m.at(1100));
    assert_eq!(s.id, 1);
    assert_eq!(s.pools.len(), 1);
    let p = &s.pools[0];
    assert_eq!(
        (p.handle.clone(), p.policy, p.secured),
        (handle("sec"), PolicyKind::LeastUsed, true)
    );
    assert_eq!(p.elements.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(p.elements[0].load, Some(5));
    assert_eq!(p.elements[0].age, Duration::from_secs(1));
    assert_eq!(p.elements[1].age, Duration::from_millis(1100));
    assert_eq!(p.elements[0].home, 1);
    assert_eq!(p.elements[0].expires_in, Some(Duration::from_secs(29)));
    assert_eq!(s.counters.registrations, 2);
}

#[test]
fn unexpected_messages_are_counted_and_ignored() {
    let mut m = Mock::new(RegistrarConfig::default());
    let a = m.send(0, 1, AsapMessage::Cookie(vec![1, 2, 3, 4]));
    assert!(a.is_empty());
    assert_eq!(m.r.counters().unexpected_messages, 1);
}

#[test]
fn server_announce_names_this_registrar() {
    let m = Mock::new(RegistrarConfig {
        id: 0xabcd,
        announce_transports: vec![user_transport(1)],
        ..RegistrarConfig::default()
    });
    let msg = m.r.server_announce();
    assert_eq!(roundtrip(&msg), msg);
    assert_eq!(
        msg,
        AsapMessage::ServerAnnounce {
            server_id: 0xabcd,
            transports: vec![user_transport(1)]
        }
    );
}

#[test]
fn invalid_configurations_are_refused() {
    let bad = |c: RegistrarConfig| {
        Registrar::new(c, WallClock::new(Instant::now(), 0), rng(0)).unwrap_err()
    };
    assert_eq!(
        bad(RegistrarConfig {
            keep_alive_interval: Duration::ZERO,
            ..RegistrarConfig::default()
        }),
        ConfigError::ZeroDuration("keep_alive_interval")
    );
    assert_eq!(
        bad(RegistrarConfig {
            max_bad_pe_reports: 0,
            ..RegistrarConfig::default()
        }),
        ConfigError::ZeroBadReports
    );
    assert_eq!(
        bad(RegistrarConfig {
            max_resolution_items: 1000,
            ..RegistrarConfig::default()
        }),
        ConfigError::ResolutionItems
    );
    let mut pool_secrets = HashMap::new();
    pool_secrets.insert(PoolHandle::new("x").unwrap(), vec![secret(1, b"")]);
    assert!(matches!(
        bad(RegistrarConfig {
            pool_secrets,
            ..RegistrarConfig::default()
        }),
        ConfigError::EmptySecret(_)
    ));
}

#[test]
fn reconfigure_applies_secrets_and_limits_and_names_what_needs_a_restart() {
    let mut m = Mock::new(RegistrarConfig::default());
    let a = m.send(0, 1, registration("sec", element(1, Policy::Random), None));
    assert_eq!(reg_response(&a), (false, None));

    // The pool gets a secret and open pools are closed: effective at once, and the
    // running registration stays in the handlespace.
    let mut pool_secrets = HashMap::new();
    pool_secrets.insert(handle("sec"), vec![secret(1, SECRET)]);
    let restart =
        m.r.reconfigure(RegistrarConfig {
            pool_secrets,
            allow_open_pools: false,
            max_bad_pe_reports: 1,
            ..RegistrarConfig::default()
        })
        .unwrap();
    assert!(restart.is_empty(), "{restart:?}");
    assert_eq!(m.r.config().max_bad_pe_reports, 1);
    assert_eq!(m.r.handlespace().element_count(), 1);
    let a = m.send(1, 1, registration("sec", element(2, Policy::Random), None));
    assert_eq!(reg_response(&a), (true, Some(ErrorCause::RejectedSecurity)));
    let a = m.send(
        2,
        1,
        signed(
            "sec",
            element(2, Policy::Random),
            &secret(1, SECRET),
            7,
            EPOCH_MS,
        ),
    );
    assert_eq!(reg_response(&a), (false, None));

    // A new id or handlespace limits keep their running values and are named.
    let restart =
        m.r.reconfigure(RegistrarConfig {
            id: 99,
            handlespace: HandlespaceConfig {
                max_pools: 7,
                ..HandlespaceConfig::default()
            },
            ..RegistrarConfig::default()
        })
        .unwrap();
    assert_eq!(restart, ["id", "handlespace"]);
    assert_eq!(m.r.config().id, RegistrarConfig::default().id);

    // An invalid configuration changes nothing.
    let before = m.r.config().max_bad_pe_reports;
    let e =
        m.r.reconfigure(RegistrarConfig {
            max_bad_pe_reports: 0,
            allow_open_pools: false,
            ..RegistrarConfig::default()
        })
        .unwrap_err();
    assert_eq!(e, ConfigError::ZeroBadReports);
    assert_eq!(m.r.config().max_bad_pe_reports, before);
    assert!(m.r.config().allow_open_pools);
}

#[test]
fn a_reregistration_with_a_new_weight_updates_the_entry_in_place() {
    let mut m = Mock::new(RegistrarConfig::default());
    let a = m.send(
        0,
        1,
        registration(
            "w",
            element(1, Policy::WeightedRoundRobin { weight: 1 }),
            None,
        ),
    );
    assert_eq!(reg_response(&a), (false, None));
    let a = m.send(
        1,
        1,
        registration(
            "w",
            element(1, Policy::WeightedRoundRobin { weight: 9 }),
            None,
        ),
    );
    assert_eq!(reg_response(&a), (false, None));
    assert_eq!(m.r.handlespace().element_count(), 1);
    let snap = m.r.snapshot(m.at(2));
    let text = format!("{snap:?}");
    assert!(text.contains("weight: 9"), "{text}");
}

/// `peer` reports PE 1 of pool "p" unreachable.
fn report_from(m: &mut Mock, ms: u64, peer: PeerId) {
    m.send(
        ms,
        peer,
        AsapMessage::EndpointUnreachable {
            pool_handle: handle("p"),
            pe_id: 1,
        },
    );
}

#[test]
fn one_address_is_one_reporter_however_many_associations_it_opens() {
    use pool_core::asap::registrar::ReporterScope;
    use std::net::IpAddr;
    let host = |n: u8| IpAddr::from([10, 0, 0, n]);
    let listed = |m: &Mock| m.r.handlespace().get(&handle("p"), 1).is_some();
    for scope in [ReporterScope::Address, ReporterScope::Association] {
        let mut m = Mock::new(RegistrarConfig {
            max_bad_pe_reports: 3,
            reporter_scope: scope,
            ..RegistrarConfig::default()
        });
        m.send(
            0,
            100,
            registration("p", element(1, Policy::RoundRobin), None),
        );
        m.r.peer_address(100, host(100));
        // Three associations of one host report.
        for peer in 1..=3 {
            m.r.peer_address(peer, host(1));
            report_from(&mut m, 1, peer);
        }
        if scope == ReporterScope::Association {
            assert!(!listed(&m), "three associations are three reporters");
            continue;
        }
        assert!(listed(&m), "one host is one reporter");
        assert_eq!(
            m.r.snapshot(m.at(1)).pools[0].elements[0].failure_reports,
            1
        );
        // A second host, then a third: MAX-BAD-PE-REPORT distinct addresses.
        m.r.peer_address(4, host(2));
        report_from(&mut m, 2, 4);
        assert!(listed(&m));
        m.r.peer_address(5, host(3));
        report_from(&mut m, 3, 5);
        assert!(!listed(&m), "the third distinct address removes the PE");
    }
}

#[test]
fn associations_of_one_address_share_its_report_rate_even_after_closing() {
    use std::net::IpAddr;
    let mut m = Mock::new(RegistrarConfig {
        max_bad_pe_reports: 1000,
        ..RegistrarConfig::default()
    });
    m.send(
        0,
        100,
        registration("p", element(1, Policy::RoundRobin), None),
    );
    // Default: a burst of 10, then one per 100 ms, per address.
    for peer in 1..=4u64 {
        m.r.peer_address(peer, IpAddr::from([10, 0, 0, 1]));
        for _ in 0..5 {
            report_from(&mut m, 1, peer);
        }
        // A host must not refill its tokens by opening a new association.
        m.r.handle_peer_closed(peer);
    }
    let c = m.r.counters();
    assert_eq!((c.failure_reports, c.rate_limited), (10, 10));
    // An association without a known address counts on its own.
    for _ in 0..5 {
        report_from(&mut m, 2, 9);
    }
    assert_eq!(m.r.counters().failure_reports, 15);
}
