//! Without failures the PEs do exactly the work the PUs offer: the measured
//! utilisation matches the target within its 95 % confidence interval.

use poolgate::lab::params::{Params, PolicyChoice};
use poolgate::lab::runner::run_one;

fn short(policy: PolicyChoice, utilisation: f64) -> Params {
    Params {
        duration: 1800.0,
        warmup: 60.0,
        pes: 5,
        utilisation,
        policy,
        ..Params::default()
    }
}

#[test]
fn measured_utilisation_equals_the_target_without_failures() {
    for (policy, target) in [(PolicyChoice::LeastUsed, 0.6), (PolicyChoice::Random, 0.4)] {
        let (s, runs) = run_one(&short(policy, target), 6).unwrap();
        assert_eq!(runs.len(), 6);
        assert!(runs.iter().all(|r| r.failures == 0 && r.failovers == 0));
        assert!(
            s.utilisation.contains(target),
            "{policy}: target {target} outside {:?}",
            s.utilisation
        );
        // The interval is informative, not a blanket: a few percent wide. (Its width
        // is itself a sample: with 6 runs it varies by about a fifth around 0.045.)
        assert!(s.utilisation.ci95 < 0.065, "{:?}", s.utilisation);
        assert!(s.requests.mean > 250.0, "{:?}", s.requests);
        // Requests are handled: speeds are positive and below full capacity.
        assert!(s.handling_speed.mean > 10.0 && s.handling_speed.mean < 100.0);
    }
}

#[test]
fn a_different_target_is_measured_differently() {
    // The measurement follows the offered load, it is not read back from the parameter.
    let (low, _) = run_one(&short(PolicyChoice::RoundRobin, 0.3), 4).unwrap();
    let (high, _) = run_one(&short(PolicyChoice::RoundRobin, 0.8), 4).unwrap();
    assert!(low.utilisation.high() < high.utilisation.low());
    assert!(low.handling_speed.mean > high.handling_speed.mean);
}
