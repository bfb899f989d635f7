//! Under failures the policies keep the paper's order of handling speed:
//! Least Used > Round Robin > Random, with non-overlapping confidence intervals.

use poolgate::lab::params::{Params, PolicyChoice};
use poolgate::lab::runner::run_one;

#[test]
fn least_used_beats_round_robin_beats_random_under_failures() {
    let p = Params {
        duration: 1500.0,
        mtbf: Some(10.0),
        silent: 0.5,
        ..Params::default()
    };
    let speed = |policy| {
        let mut p = p.clone();
        p.policy = policy;
        let (s, runs) = run_one(&p, 5).unwrap();
        assert!(runs.iter().all(|r| r.failures > 50), "failures must happen");
        s.handling_speed
    };
    let lu = speed(PolicyChoice::LeastUsed);
    let rr = speed(PolicyChoice::RoundRobin);
    let random = speed(PolicyChoice::Random);
    assert!(lu.low() > rr.high(), "LU {lu:?} vs RR {rr:?}");
    assert!(rr.low() > random.high(), "RR {rr:?} vs Random {random:?}");
}
