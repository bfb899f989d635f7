//! `poolgate lab run --real`: the lab's workload as real processes — a registrar,
//! PE processes over SCTP over UDP, PUs — on a scaled clock.
//!
//! Small on purpose (4 PEs, 20 PUs, 200 scenario seconds of 1-second requests:
//! about 22 s of wall time at 1 s = 100 ms, 11 s at 1 s = 50 ms): without
//! failures the measured utilisation is the target's and that of the simulation
//! of the same requests (same seed), and the handling speed is the simulated
//! one *with* the network delay rather than without it — real time applies the
//! delay to every message; with PEs SIGKILLed (and some stopped with SIGTERM)
//! every request still completes, and work is lost and re-done.

use std::process::Command;
use std::sync::Mutex;

use poolgate_integration::bin;
use serde_json::Value;

/// The runs use the whole machine: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs one real-time point at `scale` real seconds per scenario second and
/// returns its single run (the JSON of `RealRun`).
fn run_real(scale: &str, extra: &[&str]) -> Value {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!(
        "pg-lab-real-{}-{}",
        std::process::id(),
        extra.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = dir.join("run");
    let out = Command::new(bin("poolgate"))
        .args([
            "lab",
            "run",
            "--real",
            "--time-scale",
            scale,
            "--drain",
            "400",
            "--policies",
            "lu",
            "--seeds",
            "1",
            "--pes",
            "4",
            "--pu-pe-ratio",
            "5",
            "--size-ratio",
            "1",
            "--duration",
            "200",
            "--warmup",
            "20",
            "--out",
        ])
        .arg(&prefix)
        .args(extra)
        .output()
        .expect("poolgate runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "lab run --real failed: {}\n{stdout}\n{stderr}",
        out.status
    );
    let json = std::fs::read_to_string(prefix.with_extension("json")).expect("JSON written");
    let _ = std::fs::remove_dir_all(&dir);
    let v: Value = serde_json::from_str(&json).expect("valid JSON");
    let run = v["points"][0]["real"][0].clone();
    eprintln!("{stdout}{run:#}");
    run
}

/// The point's simulated runs (same seed as the real run) at each of the
/// network delays `delays` (seconds): handling speed and utilisation per delay.
fn run_sim(delays: &[f64], extra: &[&str]) -> Vec<(f64, f64)> {
    let dir = std::env::temp_dir().join(format!("pg-lab-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = dir.join("sim");
    let values: Vec<String> = delays.iter().map(|d| format!("{d}")).collect();
    let out = Command::new(bin("poolgate"))
        .args([
            "lab",
            "sweep",
            "--param",
            "network-delay",
            "--values",
            &values.join(","),
            "--policies",
            "lu",
            "--seeds",
            "1",
            "--threads",
            "1",
            "--pes",
            "4",
            "--pu-pe-ratio",
            "5",
            "--size-ratio",
            "1",
            "--duration",
            "200",
            "--warmup",
            "20",
            "--out",
        ])
        .arg(&prefix)
        .args(extra)
        .output()
        .expect("poolgate runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = std::fs::read_to_string(prefix.with_extension("json")).expect("JSON written");
    let _ = std::fs::remove_dir_all(&dir);
    let v: Value = serde_json::from_str(&json).expect("valid JSON");
    let points = v["points"].as_array().expect("points");
    assert_eq!(points.len(), delays.len());
    points
        .iter()
        .map(|p| {
            let run = &p["runs"][0];
            (num(run, "handling_speed"), num(run, "utilisation"))
        })
        .collect()
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v:#}"))
}

/// The network delay of the no-failure run: 5 messages on a request's path
/// cost about a quarter of a 1-second request, so with and without the delay
/// the handling speed differs by far more than a run's noise.
const DELAY: f64 = 0.05;

#[test]
fn without_failures_utilisation_is_the_target_and_handling_speed_the_simulated() {
    // 1 s = 100 ms: the delay is 5 ms of real time, and a loaded CI host's
    // scheduling (the residual latency below) stays well inside it.
    let r = run_real("0.1", &["--network-delay", &DELAY.to_string()]);
    assert_eq!(num(&r, "failures"), 0.0);
    assert_eq!(num(&r, "unfinished"), 0.0, "every request completes");
    assert_eq!(num(&r, "issued"), num(&r, "completed"));
    // About 430 requests of 1 s on average: the per-run spread of the offered
    // load is about 4 points; 12 points is three times that.
    let u = num(&r, "utilisation");
    assert!((u - 0.6).abs() < 0.12, "utilisation {u} vs target 0.6");
    assert!(num(&r, "requests") > 200.0);
    assert_eq!(num(&r, "lost_share"), 0.0);

    // How much later than modelled the real messages were acted on (loopback
    // beyond the delay, scheduling): the simulations below add it to their
    // delay. Larger than the delay itself means the host cannot keep the model.
    let residual = num(&r, "message_lateness_scenario_ms") / 1e3;
    assert!(num(&r, "messages") > 1000.0, "messages were delayed");
    assert!(
        residual < DELAY,
        "messages were acted on {:.1} ms (scenario) after their modelled arrival on \
         average, more than the {:.0} ms network delay: the host is too busy for 1 s = 100 ms",
        residual * 1e3,
        DELAY * 1e3
    );
    // The simulation of the same requests (same seed) without the delay, with
    // it, and with it twice, each plus the measured residual.
    let sims = run_sim(
        &[residual.max(1e-6), DELAY + residual, 2.0 * DELAY + residual],
        &[],
    );
    let [(none, _), (with, sim_u), (twice, _)] = sims[..] else {
        panic!("three simulated points: {sims:?}");
    };
    eprintln!(
        "handling speed: real {:.1} %; simulated without the delay {none:.1}, with it {with:.1}, \
         with it twice {twice:.1} (residual {:.2} ms scenario)",
        num(&r, "handling_speed"),
        residual * 1e3
    );
    // The simulation of the same requests did the same work.
    assert!(
        (u - sim_u).abs() < 0.04,
        "utilisation {u} vs simulated {sim_u}"
    );
    // The delay is worth something in the model, or the check below is empty.
    assert!(
        none - with > 2.0 && with - twice > 2.0,
        "the network delay barely changes the simulated handling speed: {sims:?}"
    );
    // The real run is the simulated one with the delay: nearer to it than to
    // the runs without it or with twice the delay (the tolerance is half of
    // what the delay changes in the simulation).
    let speed = num(&r, "handling_speed");
    let (lo, hi) = ((with + twice) / 2.0, (none + with) / 2.0);
    assert!(
        (lo..=hi).contains(&speed),
        "real handling speed {speed:.1} % is outside {lo:.1} ..= {hi:.1} %, the band around \
         the simulated {with:.1} % with the network delay (without it {none:.1} %, with it \
         twice {twice:.1} %): real time does not apply the delay as the simulation does"
    );
}

#[test]
fn with_pes_killed_every_request_still_completes_and_work_is_redone() {
    // MTBF 20 request times = 20 s per PE: about 36 failures in 180 s, half
    // of them SIGKILL (silent), half SIGTERM (clean).
    let r = run_real("0.05", &["--mtbf", "20", "--silent", "0.5"]);
    let failures = num(&r, "failures");
    let silent = num(&r, "silent_failures");
    assert!(failures >= 10.0, "failures {failures}");
    assert!(
        silent >= 3.0 && silent < failures,
        "silent {silent} of {failures}"
    );
    assert_eq!(num(&r, "unfinished"), 0.0, "every request completes");
    assert_eq!(num(&r, "issued"), num(&r, "completed"));
    assert!(
        num(&r, "failovers") >= silent,
        "failovers {}",
        num(&r, "failovers")
    );
    assert!(num(&r, "failure_reports") >= 1.0, "silent PEs are reported");
    assert!(num(&r, "interrupted") >= 1.0);
    let lost = num(&r, "lost_share");
    assert!(lost > 0.0 && lost < 0.1, "lost work share {lost}");
    // Work lost per interrupted request is below a cookie interval (10 % of 1e6).
    let per = num(&r, "lost_per_interrupted");
    assert!(per > 0.0 && per <= 1e5 * 1.05, "lost per interrupted {per}");
    let u = num(&r, "utilisation");
    assert!((u - 0.6).abs() < 0.15, "utilisation {u}");
}
