//! The lab drives the production state machines: a run is reproducible from
//! its seed, the registrar removes silent PEs by endpoint keep-alive or by
//! failure reports as configured, and the handling delay adds up.

use poolgate::lab::params::Params;
use poolgate::lab::sim::run;

fn silent() -> Params {
    Params {
        duration: 900.0,
        pes: 4,
        mtbf: Some(5.0),
        silent: 1.0,
        ..Params::default()
    }
}

#[test]
fn a_run_is_reproducible_from_its_seed() {
    let p = silent();
    let a = run(&p, 7).unwrap();
    assert_eq!(a, run(&p, 7).unwrap());
    assert_ne!(a, run(&p, 8).unwrap());
}

#[test]
fn silent_pes_leave_by_keep_alive_or_by_reports() {
    let mut p = silent();
    let ignored = run(&p, 3).unwrap();
    assert!(ignored.failures > 10 && ignored.silent_failures == ignored.failures);
    // MAX-BAD-PE-REPORT infinity: reports are sent but only keep-alives remove PEs.
    assert!(ignored.failure_reports > 0);
    assert_eq!(ignored.report_removals, 0);
    assert!(ignored.keep_alive_removals > 0);

    // One report suffices and the endpoint keep-alive is slow: the PUs' reports win.
    p.max_bad_pe_report = Some(1);
    p.endpoint_ka_interval = 30.0;
    let reported = run(&p, 3).unwrap();
    assert!(reported.report_removals > reported.keep_alive_removals);
}

#[test]
fn handling_delay_is_queuing_plus_startup_plus_processing() {
    let r = run(&silent(), 5).unwrap();
    let sum = r.queuing_delay + r.startup_delay + r.processing_time;
    assert!(
        (sum - r.handling_delay).abs() < 1e-6 * r.handling_delay,
        "{r:?}"
    );
    // Startup takes at least a resolution and a request round trip (4 x 10 ms).
    assert!(r.startup_delay >= 0.04, "{r:?}");
    assert!(r.processing_time > 1.0 && r.queuing_delay >= 0.0);
}

#[test]
fn invalid_parameters_are_refused() {
    let mut p = silent();
    p.warmup = p.duration;
    assert!(run(&p, 1).is_err());
}
