//! `poolgate lab` from the command line: the cookie-interval calculator and a
//! tiny sweep that writes CSV, JSON and SVG.

use std::process::Command;

fn poolgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_poolgate"))
}

#[test]
fn cookie_interval_prints_the_rule() {
    let out = poolgate()
        .args([
            "lab",
            "cookie-interval",
            "--mtbf",
            "1000",
            "--capacity",
            "1e6",
            "--goodput",
            "0.99",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    // 2 · 1000 · 1e6 · 0.01 = 2e7 calculations; the default request of 1e7 gets half a cookie.
    assert!(
        text.contains("cookie interval: 20000000 calculations"),
        "{text}"
    );
    assert!(text.contains("0.50 cookies per request"), "{text}");
    let bad = poolgate()
        .args(["lab", "cookie-interval", "--mtbf", "10", "--goodput", "1.5"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn sweep_writes_csv_json_and_svg() {
    let dir = std::env::temp_dir().join(format!("poolgate-lab-cli-{}", std::process::id()));
    let prefix = dir.join("mtbf");
    let out = poolgate()
        .args([
            "lab",
            "sweep",
            "--param",
            "mtbf",
            "--values",
            "inf,5",
            "--policies",
            "lu,rr",
        ])
        .args([
            "--seeds",
            "2",
            "--duration",
            "300",
            "--warmup",
            "30",
            "--pes",
            "3",
        ])
        .arg("--out")
        .arg(&prefix)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("inf ") || l.starts_with("5 "))
            .count(),
        4,
        "{table}"
    );
    let csv = std::fs::read_to_string(dir.join("mtbf.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 5, "{csv}");
    assert!(rows[1].starts_with("mtbf,inf,,,lu,2,"), "{}", rows[1]);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("mtbf.json")).unwrap()).unwrap();
    assert_eq!(json["points"].as_array().unwrap().len(), 4);
    assert_eq!(json["points"][3]["runs"].as_array().unwrap().len(), 2);
    assert!(
        json["points"][3]["summary"]["failures"]["mean"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let svg = std::fs::read_to_string(dir.join("mtbf.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() == 4);
    let bad = poolgate()
        .args(["lab", "sweep", "--param", "nonsense", "--values", "1"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown parameter"));
    let _ = std::fs::remove_dir_all(&dir);
}
