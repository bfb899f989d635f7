//! The ASAP state machines together in simulated time: registrars, PE and
//! PU clients exchange real encoded messages over a simulated network.

mod asap_common;

use std::time::Duration;

use asap_common::*;
use pool_core::asap::pe::PeEvent;
use pool_core::asap::pu::{PuConfig, PuEvent, ResolutionError, Resolve};
use pool_core::asap::registrar::{RegistrarConfig, RegistrarEvent, RemovalReason};
use pool_core::types::Policy;
use pool_core::wire::ErrorCause;

const MS: Duration = Duration::from_millis(1);

fn registrar_config(id: u32) -> RegistrarConfig {
    RegistrarConfig {
        id,
        ..RegistrarConfig::default()
    }
}

fn pu_config(n: usize) -> PuConfig {
    let mut c = PuConfig::new((0..n).map(registrar_addr).collect());
    c.cache_staleness = Duration::from_millis(500);
    c
}

fn removal_time(sim: &Sim, r: usize, pe_id: u32) -> Option<(std::time::Instant, RemovalReason)> {
    sim.registrars[r].events.iter().find_map(|(t, e)| match e {
        RegistrarEvent::Removed {
            pe_id: id, reason, ..
        } if *id == pe_id => Some((*t, *reason)),
        _ => None,
    })
}

#[test]
fn registration_then_resolution() {
    let mut sim = Sim::new(10 * MS);
    sim.add_registrar(registrar_config(7));
    let pe = sim.add_pe(pe_config("echo", 42, Policy::RoundRobin, 1));
    sim.run_for(100 * MS);
    assert_eq!(sim.pes[pe].c.registered_with(), Some(0));
    assert!(matches!(
        sim.pes[pe].events[..],
        [(_, PeEvent::Registered { registrar: 0 })]
    ));
    // Registration needs one round trip.
    assert_eq!(sim.pes[pe].events[0].0 - sim.start, 20 * MS);
    let hs = sim.registrars[0].r.handlespace();
    let stored = hs.get(&handle("echo"), 42).expect("registered");
    assert_eq!(stored.home, 7);
    assert_eq!(stored.registration_life, Duration::from_secs(30));

    let pu = sim.add_pu(pu_config(1));
    let now = sim.now;
    assert_eq!(
        sim.pus[pu].c.resolve(now, &handle("echo")),
        Resolve::Pending
    );
    sim.run_for(100 * MS);
    assert!(sim.pus[pu]
        .events
        .iter()
        .any(|(_, e)| matches!(e, PuEvent::Resolved { elements: 1, .. })));
    let now = sim.now;
    let chosen = sim.pus[pu]
        .c
        .select(now, &handle("echo"))
        .expect("cached PE");
    assert_eq!(chosen.id, 42);
    assert_eq!(chosen.user_transport, user_transport(42));
    assert_eq!(chosen.home_registrar, 7);
    let c = sim.registrars[0].r.counters();
    assert_eq!((c.registrations, c.resolutions), (1, 1));
}

#[test]
fn unknown_pool_fails_resolution_with_the_rfc_cause() {
    let mut sim = Sim::new(5 * MS);
    sim.add_registrar(registrar_config(1));
    let pu = sim.add_pu(pu_config(1));
    let now = sim.now;
    assert_eq!(sim.pus[pu].c.select(now, &handle("nope")), None);
    sim.run_for(50 * MS);
    assert!(sim.pus[pu].events.iter().any(|(_, e)| matches!(
        e,
        PuEvent::ResolutionFailed {
            error: ResolutionError::Registrar(ErrorCause::UnknownPoolHandle),
            ..
        }
    )));
    assert_eq!(sim.registrars[0].r.counters().resolutions_unknown_pool, 1);
}

/// A PE that goes silent is removed within keep-alive interval + timeout
/// of its last acknowledgement, for the default 1 s / 1 s and sub-second.
#[test]
fn keep_alive_timeout_removes_a_silent_pe_in_time() {
    for (interval, timeout) in [
        (1000 * MS, 1000 * MS),
        (200 * MS, 100 * MS),
        (50 * MS, 20 * MS),
    ] {
        let delay = 2 * MS;
        let mut sim = Sim::new(delay);
        sim.add_registrar(RegistrarConfig {
            keep_alive_interval: interval,
            keep_alive_timeout: timeout,
            ..registrar_config(1)
        });
        let pe = sim.add_pe(pe_config("p", 1, Policy::RoundRobin, 1));
        // Alive for a while: it answers every keep-alive and stays.
        sim.run_for(10 * interval + 3 * MS);
        assert!(removal_time(&sim, 0, 1).is_none());
        let acks = sim.pes[pe].c.counters().keep_alives_answered;
        assert!(
            (9..=11).contains(&acks),
            "{acks} keep-alives in 10 intervals"
        );
        let frozen_at = sim.now;
        sim.pes[pe].frozen = true;
        sim.run_for(3 * (interval + timeout));
        let (removed_at, reason) = removal_time(&sim, 0, 1).expect("silent PE removed");
        assert_eq!(reason, RemovalReason::KeepAliveTimeout);
        let took = removed_at - frozen_at;
        // The last ACK left the PE at most `delay` before it froze.
        assert!(
            took <= interval + timeout + delay,
            "{interval:?}/{timeout:?}: removed after {took:?}"
        );
        // The keep-alive that timed out left at most `delay` before the freeze
        // (an earlier one would have been answered), so removal cannot come sooner.
        assert!(
            took + delay >= timeout,
            "removed after {took:?}, before a keep-alive could time out"
        );
        assert_eq!(sim.registrars[0].r.counters().keep_alive_failures, 1);
        assert!(sim.registrars[0]
            .r
            .handlespace()
            .get(&handle("p"), 1)
            .is_none());
        sim.registrars[0].r.check_consistency().unwrap();
    }
}

#[test]
fn reregistration_updates_load_and_least_used_follows() {
    let mut sim = Sim::new(MS);
    sim.add_registrar(registrar_config(1));
    let a = sim.add_pe(pe_config("lu", 1, Policy::LeastUsed { load: 100 }, 1));
    let b = sim.add_pe(pe_config("lu", 2, Policy::LeastUsed { load: 200 }, 1));
    sim.run_for(10 * MS);
    let pu = sim.add_pu(pu_config(1));
    let now = sim.now;
    sim.pus[pu].c.resolve(now, &handle("lu"));
    sim.run_for(10 * MS);
    let now = sim.now;
    assert_eq!(sim.pus[pu].c.select(now, &handle("lu")).unwrap().id, 1);

    // PE 1 becomes busy: a load change above the threshold re-registers at once.
    let now = sim.now;
    sim.pes[a].c.set_load(now, u32::MAX / 2);
    sim.run_for(10 * MS);
    assert_eq!(sim.pes[a].c.counters().load_updates, 1);
    let stored = sim.registrars[0]
        .r
        .handlespace()
        .get(&handle("lu"), 1)
        .unwrap();
    assert_eq!(stored.policy, Policy::LeastUsed { load: u32::MAX / 2 });
    assert_eq!(sim.registrars[0].r.counters().reregistrations, 1);
    // A small change does not.
    let now = sim.now;
    sim.pes[b].c.set_load(now, 201);
    sim.run_for(10 * MS);
    assert_eq!(sim.pes[b].c.counters().load_updates, 0);

    // The cache is stale after 500 ms: the next pick resolves again and follows the load.
    sim.run_for(600 * MS);
    let now = sim.now;
    assert_eq!(sim.pus[pu].c.select(now, &handle("lu")), None);
    sim.run_for(10 * MS);
    let now = sim.now;
    assert_eq!(sim.pus[pu].c.select(now, &handle("lu")).unwrap().id, 2);
    assert_eq!(sim.pus[pu].c.counters().resolutions_sent, 2);
}

#[test]
fn pe_reregisters_before_its_life_runs_out() {
    let mut sim = Sim::new(MS);
    sim.add_registrar(RegistrarConfig {
        // Keep-alives out of the way: only the registration life matters here.
        keep_alive_interval: Duration::from_secs(3600),
        ..registrar_config(1)
    });
    let mut cfg = pe_config("p", 5, Policy::Random, 1);
    cfg.registration_life = Duration::from_secs(3);
    cfg.reregistration_interval = Duration::from_secs(1);
    let pe = sim.add_pe(cfg);
    sim.run_for(Duration::from_secs(20));
    assert!(sim.registrars[0]
        .r
        .handlespace()
        .get(&handle("p"), 5)
        .is_some());
    assert!(sim.registrars[0].r.counters().reregistrations >= 18);
    // Frozen, it stops re-registering and its life runs out.
    let frozen_at = sim.now;
    sim.pes[pe].frozen = true;
    sim.run_for(Duration::from_secs(5));
    let (t, reason) = removal_time(&sim, 0, 5).expect("expired");
    assert_eq!(reason, RemovalReason::Expired);
    assert!(t - frozen_at <= Duration::from_secs(3));
    assert_eq!(sim.registrars[0].r.counters().expired, 1);
}

#[test]
fn failure_reports_need_distinct_pool_users() {
    let mut sim = Sim::new(MS);
    sim.add_registrar(RegistrarConfig {
        max_bad_pe_reports: 3,
        ..registrar_config(1)
    });
    sim.add_pe(pe_config("p", 1, Policy::RoundRobin, 1));
    sim.add_pe(pe_config("p", 2, Policy::RoundRobin, 1));
    sim.run_for(10 * MS);
    let pus: Vec<usize> = (0..3).map(|_| sim.add_pu(pu_config(1))).collect();
    // One PU reporting five times impeaches nobody.
    for _ in 0..5 {
        sim.pus[pus[0]].c.report_failure(&handle("p"), 1);
        sim.run_for(5 * MS);
    }
    assert!(sim.registrars[0]
        .r
        .handlespace()
        .get(&handle("p"), 1)
        .is_some());
    sim.pus[pus[1]].c.report_failure(&handle("p"), 1);
    sim.run_for(5 * MS);
    assert!(sim.registrars[0]
        .r
        .handlespace()
        .get(&handle("p"), 1)
        .is_some());
    let snap = sim.registrars[0].r.snapshot(sim.now);
    assert_eq!(snap.pools[0].elements[0].failure_reports, 2);
    // The third distinct PU reaches MAX-BAD-PE-REPORT.
    sim.pus[pus[2]].c.report_failure(&handle("p"), 1);
    sim.run_for(5 * MS);
    assert!(sim.registrars[0]
        .r
        .handlespace()
        .get(&handle("p"), 1)
        .is_none());
    assert!(sim.registrars[0]
        .r
        .handlespace()
        .get(&handle("p"), 2)
        .is_some());
    assert_eq!(
        removal_time(&sim, 0, 1).unwrap().1,
        RemovalReason::FailureReports
    );
    let c = sim.registrars[0].r.counters();
    assert_eq!((c.failure_reports, c.removed_by_reports), (7, 1));
    sim.registrars[0].r.check_consistency().unwrap();
}

#[test]
fn with_limit_one_a_single_report_removes_and_the_pu_cache_drops_it() {
    let mut sim = Sim::new(MS);
    sim.add_registrar(RegistrarConfig {
        max_bad_pe_reports: 1,
        ..registrar_config(1)
    });
    sim.add_pe(pe_config("p", 1, Policy::RoundRobin, 1));
    sim.add_pe(pe_config("p", 2, Policy::RoundRobin, 1));
    sim.run_for(10 * MS);
    let pu = sim.add_pu(pu_config(1));
    let now = sim.now;
    sim.pus[pu].c.resolve(now, &handle("p"));
    sim.run_for(10 * MS);
    assert_eq!(sim.pus[pu].c.cached(&handle("p")).count(), 2);
    sim.pus[pu].c.report_failure(&handle("p"), 1);
    let now = sim.now;
    // Locally gone at once, before the registrar even heard of it.
    for _ in 0..4 {
        assert_eq!(sim.pus[pu].c.select(now, &handle("p")).unwrap().id, 2);
    }
    sim.run_for(10 * MS);
    assert!(sim.registrars[0]
        .r
        .handlespace()
        .get(&handle("p"), 1)
        .is_none());
}

#[test]
fn failure_reports_are_rate_limited_per_pool_user() {
    let mut sim = Sim::new(MS);
    sim.add_registrar(registrar_config(1));
    sim.add_pe(pe_config("p", 1, Policy::RoundRobin, 1));
    sim.run_for(10 * MS);
    let pu = sim.add_pu(pu_config(1));
    // Default: burst 10, then one per 100 ms.
    for _ in 0..25 {
        sim.pus[pu].c.report_failure(&handle("p"), 1);
    }
    sim.run_for(10 * MS);
    let c = sim.registrars[0].r.counters();
    assert_eq!((c.failure_reports, c.rate_limited), (10, 15));
    sim.run_for(300 * MS);
    for _ in 0..5 {
        sim.pus[pu].c.report_failure(&handle("p"), 1);
    }
    sim.run_for(10 * MS);
    let c = sim.registrars[0].r.counters();
    assert_eq!((c.failure_reports, c.rate_limited), (13, 17));
}

#[test]
fn pe_hunts_to_the_next_registrar_when_its_registrar_aborts() {
    let mut sim = Sim::new(5 * MS);
    sim.add_registrar(registrar_config(1));
    sim.add_registrar(registrar_config(2));
    let pe = sim.add_pe(pe_config("p", 9, Policy::RoundRobin, 2));
    sim.run_for(100 * MS);
    assert_eq!(sim.pes[pe].c.registered_with(), Some(0));
    sim.abort_registrar(0);
    sim.run_for(100 * MS);
    assert_eq!(sim.pes[pe].c.registered_with(), Some(1));
    let evs: Vec<&PeEvent> = sim.pes[pe].events.iter().map(|(_, e)| e).collect();
    assert_eq!(
        evs,
        [
            &PeEvent::Registered { registrar: 0 },
            &PeEvent::RegistrarLost { registrar: 0 },
            &PeEvent::Registered { registrar: 1 }
        ]
    );
    assert!(sim.registrars[1]
        .r
        .handlespace()
        .get(&handle("p"), 9)
        .is_some());
    // The new home monitors it.
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.pes[pe].c.home_registrar(), Some(2));
}

#[test]
fn pe_hunts_past_a_frozen_registrar_on_reregistration_timeout() {
    let mut sim = Sim::new(5 * MS);
    sim.add_registrar(registrar_config(1));
    sim.add_registrar(registrar_config(2));
    let mut cfg = pe_config("p", 9, Policy::RoundRobin, 2);
    cfg.registration_life = Duration::from_secs(2);
    cfg.reregistration_interval = Duration::from_millis(500);
    cfg.response_timeout = Duration::from_millis(200);
    let pe = sim.add_pe(cfg);
    sim.run_for(100 * MS);
    sim.registrars[0].frozen = true;
    let frozen_at = sim.now;
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.pes[pe].c.registered_with(), Some(1));
    let (lost_at, _) = sim.pes[pe]
        .events
        .iter()
        .find(|(_, e)| matches!(e, PeEvent::RegistrarLost { registrar: 0 }))
        .expect("lost");
    // Next re-registration at most 500 ms later, unanswered for 200 ms.
    assert!(*lost_at - frozen_at <= 700 * MS);
}

#[test]
fn first_registrar_down_at_start_is_skipped() {
    let mut sim = Sim::new(5 * MS);
    sim.add_registrar(registrar_config(1));
    sim.add_registrar(registrar_config(2));
    sim.registrars[0].frozen = true;
    let mut cfg = pe_config("p", 3, Policy::RoundRobin, 2);
    cfg.response_timeout = Duration::from_millis(300);
    let pe = sim.add_pe(cfg);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.pes[pe].c.registered_with(), Some(1));
    assert_eq!(sim.pes[pe].events[0].0 - sim.start, 300 * MS + 10 * MS);
}

#[test]
fn pu_hunts_when_the_registrar_does_not_answer() {
    let mut sim = Sim::new(5 * MS);
    sim.add_registrar(registrar_config(1));
    sim.add_registrar(registrar_config(2));
    // The PE registers at registrar 1 only; registrar 0 is frozen before the PU asks.
    sim.registrars[0].frozen = true;
    let mut cfg = pe_config("p", 3, Policy::RoundRobin, 2);
    cfg.response_timeout = Duration::from_millis(100);
    sim.add_pe(cfg);
    sim.run_for(Duration::from_millis(500));
    let mut pc = pu_config(2);
    pc.request_timeout = Duration::from_millis(250);
    let pu = sim.add_pu(pc);
    let now = sim.now;
    let asked = sim.now;
    sim.pus[pu].c.resolve(now, &handle("p"));
    sim.run_for(Duration::from_secs(1));
    let (t, _) = sim.pus[pu]
        .events
        .iter()
        .find(|(_, e)| matches!(e, PuEvent::Resolved { .. }))
        .expect("resolved at the second registrar");
    assert_eq!(*t - asked, 250 * MS + 10 * MS);
    assert_eq!(sim.pus[pu].c.current_registrar(), 1);
    assert!(sim.pus[pu]
        .events
        .iter()
        .any(|(_, e)| matches!(e, PuEvent::RegistrarLost { registrar: 0 })));
}

#[test]
fn pu_resolution_fails_after_max_attempts() {
    let mut sim = Sim::new(5 * MS);
    sim.add_registrar(registrar_config(1));
    sim.registrars[0].frozen = true;
    let mut pc = pu_config(1);
    pc.request_timeout = Duration::from_millis(100);
    pc.max_attempts = 3;
    let pu = sim.add_pu(pc);
    let now = sim.now;
    sim.pus[pu].c.resolve(now, &handle("p"));
    sim.run_for(Duration::from_secs(1));
    let fails: Vec<_> = sim.pus[pu]
        .events
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                PuEvent::ResolutionFailed {
                    error: ResolutionError::Timeout,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(fails.len(), 1);
    assert_eq!(fails[0].0 - sim.start, 300 * MS);
    assert_eq!(sim.pus[pu].c.counters().resolutions_sent, 3);
    assert_eq!(sim.pus[pu].c.poll_timeout(), None);
}

#[test]
fn shutdown_deregisters_and_drains() {
    let mut sim = Sim::new(MS);
    sim.add_registrar(registrar_config(1));
    let pe = sim.add_pe(pe_config("p", 4, Policy::RoundRobin, 1));
    sim.run_for(10 * MS);
    let now = sim.now;
    sim.pes[pe].c.shutdown(now);
    sim.run_for(10 * MS);
    assert!(sim.pes[pe]
        .events
        .iter()
        .any(|(_, e)| *e == PeEvent::Deregistered { acknowledged: true }));
    assert_eq!(sim.registrars[0].r.handlespace().element_count(), 0);
    assert_eq!(sim.registrars[0].r.counters().deregistrations, 1);
    assert_eq!(
        removal_time(&sim, 0, 4).unwrap().1,
        RemovalReason::Deregistered
    );
    assert_eq!(sim.pes[pe].c.poll_timeout(), None);
    sim.registrars[0].r.check_consistency().unwrap();
}

#[test]
fn authenticated_pe_registers_and_reregisters_while_a_wrong_secret_is_refused() {
    use pool_core::asap::auth::PoolSecret;
    use std::collections::HashMap;
    let key = PoolSecret {
        key_id: 3,
        secret: b"0123456789abcdef0123456789abcdef".to_vec(),
    };
    let mut pool_secrets = HashMap::new();
    pool_secrets.insert(handle("sec"), vec![key.clone()]);
    let mut sim = Sim::new(2 * MS);
    sim.add_registrar(RegistrarConfig {
        pool_secrets,
        allow_open_pools: false,
        ..registrar_config(1)
    });
    let mut good = pe_config("sec", 1, Policy::RoundRobin, 1);
    good.auth = Some(key.clone());
    good.registration_life = Duration::from_secs(2);
    good.reregistration_interval = Duration::from_millis(500);
    let good = sim.add_pe(good);
    let mut bad = pe_config("sec", 2, Policy::RoundRobin, 1);
    bad.auth = Some(PoolSecret {
        key_id: 3,
        secret: b"not the pool secret".to_vec(),
    });
    let bad = sim.add_pe(bad);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.pes[good].c.registered_with(), Some(0));
    assert_eq!(sim.pes[bad].c.registered_with(), None);
    assert!(sim.pes[bad].events.iter().any(|(_, e)| matches!(
        e,
        PeEvent::RegistrationRejected {
            cause: Some(ErrorCause::RejectedSecurity),
            ..
        }
    )));
    let c = sim.registrars[0].r.counters();
    // Every re-registration carried a fresh nonce: none was taken for a replay.
    assert!(c.reregistrations >= 9, "{c:?}");
    assert_eq!(c.replays, 0);
    assert!(c.auth_failures >= 2);
    let hs = sim.registrars[0].r.handlespace();
    assert!(hs.get(&handle("sec"), 1).is_some() && hs.get(&handle("sec"), 2).is_none());
}
