//! Property test: random interleavings of registrations, re-registrations,
//! deregistrations, keep-alive ACKs, failure reports, association closes,
//! resolutions and time keep the registrar and its handlespace consistent,
//! and never keep a PE longer than its liveness allows.

mod asap_common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use asap_common::*;
use pool_core::asap::registrar::{Action, Registrar, RegistrarConfig};
use pool_core::asap::{PeerId, WallClock};
use pool_core::types::{PeId, Policy, PoolHandle};
use pool_core::wire::{self, AsapMessage, ErrorCause, SelectionPolicy};
use proptest::prelude::*;

const INTERVAL: Duration = Duration::from_millis(300);
const TIMEOUT: Duration = Duration::from_millis(200);
const MAX_LIFE: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
enum Op {
    Register {
        pool: u8,
        pe: u8,
        peer: u8,
        adaptive: bool,
        load: u32,
        life_ms: u32,
    },
    Deregister {
        pool: u8,
        pe: u8,
        peer: u8,
    },
    Ack {
        pool: u8,
        pe: u8,
        peer: u8,
    },
    Report {
        pool: u8,
        pe: u8,
        reporter: u8,
    },
    Close {
        peer: u8,
    },
    Advance {
        ms: u16,
    },
    Resolve {
        pool: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2u8, 0..6u8, 0..3u8, any::<bool>(), any::<u32>(), 0..4000u32).prop_map(
            |(pool, pe, peer, adaptive, load, life_ms)| Op::Register { pool, pe, peer, adaptive, load, life_ms }
        ),
        1 => (0..2u8, 0..6u8, 0..3u8).prop_map(|(pool, pe, peer)| Op::Deregister { pool, pe, peer }),
        3 => (0..2u8, 0..6u8, 0..3u8).prop_map(|(pool, pe, peer)| Op::Ack { pool, pe, peer }),
        1 => (0..2u8, 0..6u8, 0..4u8).prop_map(|(pool, pe, reporter)| Op::Report { pool, pe, reporter }),
        1 => (0..3u8).prop_map(|peer| Op::Close { peer }),
        3 => (0..700u16).prop_map(|ms| Op::Advance { ms }),
        1 => (0..2u8).prop_map(|pool| Op::Resolve { pool }),
    ]
}

fn pool(i: u8) -> PoolHandle {
    handle(&format!("pool{i}"))
}

fn peer(i: u8) -> PeerId {
    u64::from(i) + 1
}

fn reporter(i: u8) -> PeerId {
    u64::from(i) + 100
}

/// What the test knows of each registered PE: the association it registered
/// on and its last sign of life.
#[derive(Default)]
struct Model {
    pes: HashMap<(PoolHandle, PeId), (PeerId, Instant)>,
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let start = Instant::now();
    let mut now = start;
    let config = RegistrarConfig {
        id: 5,
        keep_alive_interval: INTERVAL,
        keep_alive_timeout: TIMEOUT,
        max_bad_pe_reports: 2,
        min_registration_life: Duration::from_millis(200),
        max_registration_life: MAX_LIFE,
        max_resolution_items: 2,
        ..RegistrarConfig::default()
    };
    let mut r = Registrar::new(config, WallClock::new(start, EPOCH_MS), rng(7)).unwrap();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Register {
                pool: p,
                pe,
                peer: k,
                adaptive,
                load,
                life_ms,
            } => {
                let policy = if adaptive {
                    Policy::LeastUsed { load }
                } else {
                    Policy::RoundRobin
                };
                let el = wire::PoolElement {
                    id: u32::from(pe),
                    home_registrar: 0,
                    registration_life: life_ms,
                    user_transport: user_transport(pe),
                    policy: SelectionPolicy::Known(policy),
                    asap_transport: None,
                };
                r.handle_message(
                    now,
                    peer(k),
                    AsapMessage::Registration {
                        pool_handle: pool(p),
                        element: el,
                        auth: None,
                    },
                );
                let acts: Vec<Action> = std::iter::from_fn(|| r.poll_action()).collect();
                let [Action::Send {
                    msg: AsapMessage::RegistrationResponse { reject, error, .. },
                    ..
                }] = &acts[..]
                else {
                    return Err(TestCaseError::fail(format!(
                        "no registration response: {acts:?}"
                    )));
                };
                if *reject {
                    let cause = error.as_ref().map(|e| e.causes[0].clone());
                    prop_assert_eq!(cause, Some(ErrorCause::InconsistentPoolingPolicy(None)));
                    let pool_kind = r.handlespace().pool_policy(&pool(p)).map(|k| k.type_code());
                    prop_assert!(pool_kind.is_some_and(|k| k != policy.type_code()));
                } else {
                    let stored = r.handlespace().get(&pool(p), u32::from(pe));
                    prop_assert!(stored.is_some_and(|s| s.home == 5 && s.policy == policy));
                    model.pes.insert((pool(p), u32::from(pe)), (peer(k), now));
                }
            }
            Op::Deregister {
                pool: p,
                pe,
                peer: k,
            } => {
                r.handle_message(
                    now,
                    peer(k),
                    AsapMessage::Deregistration {
                        pool_handle: pool(p),
                        pe_id: u32::from(pe),
                        auth: None,
                    },
                );
                prop_assert!(r.handlespace().get(&pool(p), u32::from(pe)).is_none());
                model.pes.remove(&(pool(p), u32::from(pe)));
            }
            Op::Ack {
                pool: p,
                pe,
                peer: k,
            } => {
                r.handle_message(
                    now,
                    peer(k),
                    AsapMessage::EndpointKeepAliveAck {
                        pool_handle: pool(p),
                        pe_id: u32::from(pe),
                    },
                );
                if let Some(m) = model.pes.get_mut(&(pool(p), u32::from(pe))) {
                    if m.0 == peer(k) {
                        m.1 = now;
                    }
                }
            }
            Op::Report {
                pool: p,
                pe,
                reporter: k,
            } => {
                r.handle_message(
                    now,
                    reporter(k),
                    AsapMessage::EndpointUnreachable {
                        pool_handle: pool(p),
                        pe_id: u32::from(pe),
                    },
                );
            }
            Op::Close { peer: k } => {
                r.handle_peer_closed(peer(k));
                let left = r
                    .snapshot(now)
                    .pools
                    .iter()
                    .flat_map(|p| p.elements.clone())
                    .filter(|e| e.peer == Some(peer(k)))
                    .count();
                prop_assert_eq!(left, 0);
            }
            Op::Advance { ms } => {
                now += Duration::from_millis(u64::from(ms));
                // The driver calls handle_timeout whenever poll_timeout is due.
                while let Some(t) = r.poll_timeout() {
                    if t > now {
                        break;
                    }
                    r.handle_timeout(t.max(start));
                }
                prop_assert!(r.poll_timeout().is_none_or(|t| t > now));
            }
            Op::Resolve { pool: p } => {
                r.handle_message(
                    now,
                    999,
                    AsapMessage::HandleResolution {
                        pool_handle: pool(p),
                    },
                );
                let acts: Vec<Action> = std::iter::from_fn(|| r.poll_action()).collect();
                let Some(Action::Send {
                    msg:
                        AsapMessage::HandleResolutionResponse {
                            elements, error, ..
                        },
                    ..
                }) = acts.last()
                else {
                    return Err(TestCaseError::fail("no resolution response"));
                };
                match r.handlespace().pool_len(&pool(p)) {
                    None => prop_assert_eq!(
                        error.as_ref().map(|e| e.causes[0].clone()),
                        Some(ErrorCause::UnknownPoolHandle)
                    ),
                    Some(n) => {
                        prop_assert!(error.is_none());
                        prop_assert!(elements.len() <= n.min(2));
                        for e in elements {
                            prop_assert!(r.handlespace().get(&pool(p), e.id).is_some());
                        }
                    }
                }
            }
        }
        // Drop anything else queued (keep-alives) as a driver would send it.
        while r.poll_action().is_some() {}
        while r.poll_event().is_some() {}
        r.check_consistency().map_err(TestCaseError::fail)?;
        // Forget model entries the registrar removed (expiry, reports, timeouts, closes).
        model
            .pes
            .retain(|(h, id), _| r.handlespace().get(h, *id).is_some());
        for ((h, id), (_, alive)) in &model.pes {
            let pe = r.handlespace().get(h, *id).unwrap();
            prop_assert!(!pe.is_expired(now) || r.poll_timeout().is_some_and(|t| t <= now));
            // Liveness: nobody survives interval + timeout of silence (checked
            // once timers ran, i.e. right after an Advance or any op at that time).
            if r.poll_timeout().is_none_or(|t| t > now) {
                prop_assert!(
                    now - *alive <= INTERVAL + TIMEOUT,
                    "PE {id} of {h} silent for {:?}",
                    now - *alive
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn random_interleavings_keep_the_registrar_consistent(ops in prop::collection::vec(op(), 1..120)) {
        run(ops)?;
    }
}
