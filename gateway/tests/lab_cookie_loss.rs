//! Work lost per request interrupted by a silent PE failure averages half a
//! cookie interval, and clean shutdowns (final cookie) lose nothing.

use poolgate::lab::params::Params;
use poolgate::lab::runner::run_one;
use poolgate::lab::sim::RunResult;
use poolgate::lab::stats::Estimate;

fn failing(cookie_share: f64, silent: f64) -> Params {
    let base = Params::default();
    Params {
        duration: 1200.0,
        pes: 5,
        mtbf: Some(5.0),
        silent,
        cookie_interval: cookie_share * base.request_size,
        ..base
    }
}

/// Mean work lost per interrupted request over all runs, weighting every interruption equally.
fn lost_per_interruption(runs: &[RunResult]) -> (f64, u64) {
    let n: u64 = runs.iter().map(|r| r.interrupted).sum();
    let total: f64 = runs
        .iter()
        .filter(|r| r.interrupted > 0)
        .map(|r| r.lost_per_interrupted * r.interrupted as f64)
        .sum();
    (total / n as f64, n)
}

#[test]
fn silent_failures_lose_half_a_cookie_interval() {
    for share in [0.05, 0.2] {
        let p = failing(share, 1.0);
        let (s, runs) = run_one(&p, 5).unwrap();
        let (lost, n) = lost_per_interruption(&runs);
        assert!(n > 200, "too few interruptions: {n}");
        let half = p.cookie_interval / 2.0;
        // Progress within a cookie interval is uniform, so its mean has a
        // standard error of interval / sqrt(12 n); allow four of them plus a few
        // percent for the last, shorter interval of a request.
        let bound = 4.0 * p.cookie_interval / (12.0 * n as f64).sqrt() + 0.05 * half;
        assert!(
            (lost - half).abs() < bound,
            "share {share}: lost {lost} vs half interval {half} (bound {bound})"
        );
        assert!(s.lost_share.mean > 0.0);
    }
}

#[test]
fn clean_shutdowns_lose_nothing_and_abort_restart_loses_more() {
    let (clean, runs) = run_one(&failing(0.1, 0.0), 3).unwrap();
    assert!(runs.iter().all(|r| r.failures > 20 && r.interrupted == 0));
    assert_eq!(clean.lost_share.mean, 0.0);

    let mut p = failing(0.1, 1.0);
    let (resume, _) = run_one(&p, 3).unwrap();
    p.abort_restart = true;
    let (restart, _) = run_one(&p, 3).unwrap();
    // Restarting from zero throws away everything done, not just since the last cookie.
    assert!(
        restart.lost_per_interrupted.mean > 3.0 * resume.lost_per_interrupted.mean,
        "{:?} vs {:?}",
        restart.lost_per_interrupted,
        resume.lost_per_interrupted
    );
    assert!(restart.lost_share.mean > resume.lost_share.mean);
    let e = Estimate::of(&[resume.lost_share.mean]);
    assert!(e.mean < 0.05);
}
