//! `poolgate lab run --real`: the lab's workload as real processes — a registrar,
//! PE processes over SCTP over UDP, PUs — on a scaled clock (1 s = 50 ms).
//!
//! Small on purpose (4 PEs, 20 PUs, 200 scenario seconds of 1-second requests:
//! about 11 s of wall time per run): without failures the measured utilisation
//! is the target's, and that of the simulation of the same requests (same
//! seed); with PEs SIGKILLed (and some stopped with SIGTERM) every request still
//! completes, and work is lost and re-done.

use std::process::Command;
use std::sync::Mutex;

use poolgate_integration::bin;
use serde_json::Value;

/// The runs use the whole machine: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs one real-time point and returns its single run (the JSON of `RealRun`).
fn run_real(extra: &[&str]) -> Value {
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
            "0.05",
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

/// The simulated run of the same point and seed (the same requests).
fn run_sim(extra: &[&str]) -> Value {
    let out = Command::new(bin("poolgate"))
        .args([
            "lab",
            "run",
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
            "--resolution-items",
            "3",
        ])
        .args(extra)
        .output()
        .expect("poolgate runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The table's utilisation column: "60.3 ± 0.0".
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let row = text.lines().last().expect("a table row").to_string();
    let util: f64 = row
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("utilisation in {row:?}"));
    serde_json::json!({ "utilisation": util / 100.0 })
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v:#}"))
}

#[test]
fn without_failures_the_measured_utilisation_is_the_target() {
    let r = run_real(&[]);
    assert_eq!(num(&r, "failures"), 0.0);
    assert_eq!(num(&r, "unfinished"), 0.0, "every request completes");
    assert_eq!(num(&r, "issued"), num(&r, "completed"));
    // About 430 requests of 1 s on average: the per-run spread of the offered
    // load is about 4 points; 12 points is three times that.
    let u = num(&r, "utilisation");
    assert!((u - 0.6).abs() < 0.12, "utilisation {u} vs target 0.6");
    // The simulation of the same requests did the same work.
    let sim = num(&run_sim(&[]), "utilisation");
    assert!((u - sim).abs() < 0.04, "utilisation {u} vs simulated {sim}");
    assert!(num(&r, "requests") > 200.0);
    // The pool is far from saturated: requests go at a good share of a PE.
    let speed = num(&r, "handling_speed");
    assert!(speed > 25.0 && speed <= 100.0, "handling speed {speed} %");
    assert_eq!(num(&r, "lost_share"), 0.0);
}

#[test]
fn with_pes_killed_every_request_still_completes_and_work_is_redone() {
    // MTBF 20 request times = 20 s per PE: about 36 failures in 180 s, half
    // of them SIGKILL (silent), half SIGTERM (clean).
    let r = run_real(&["--mtbf", "20", "--silent", "0.5"]);
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
