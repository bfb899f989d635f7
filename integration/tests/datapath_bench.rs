//! `pg-datapath-bench` in a tiny configuration (a fraction of a second per workload), so
//! the benchmark cannot rot: it must start every process, finish, and have every byte
//! that went through each path (direct, poolgate, haproxy, two chained haproxies) checked
//! and right. No timing is asserted — the numbers belong to the benchmark's own report.
//!
//! Needs `haproxy`, `redis-server` and `redis-benchmark` (apt-get install haproxy
//! redis-server redis-tools; scripts/test installs them).

use std::process::Command;

use poolgate_integration::bin;

#[test]
fn datapath_bench_completes_with_every_byte_checked_on_every_path() {
    for (tool, package) in [
        ("haproxy", "haproxy"),
        ("redis-server", "redis-server"),
        ("redis-benchmark", "redis-tools"),
    ] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false),
            "{tool} not installed (apt-get install {package})"
        );
    }
    // The bench finds `poolgate` next to itself; make sure it was built.
    bin("poolgate");
    let out = Command::new(env!("CARGO_BIN_EXE_pg-datapath-bench"))
        .args([
            "--secs",
            "0.3",
            "--conns",
            "2",
            "--redis-requests",
            "300",
            "--redis-clients",
            "4",
        ])
        .output()
        .expect("run pg-datapath-bench");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed ({}):\n{text}\n{err}",
        out.status
    );
    let verified: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("verified: "))
        .collect();
    // Six workloads, four paths each.
    assert_eq!(verified.len(), 24, "{text}");
    for path in ["direct", "poolgate", "haproxy", "haproxy x2"] {
        let mine: Vec<&&str> = verified
            .iter()
            .filter(|l| l.contains(&format!("| {path} |")))
            .collect();
        assert_eq!(mine.len(), 6, "{path}: {text}");
        for l in mine {
            let bytes: u64 = l
                .split(" | ")
                .nth(2)
                .and_then(|b| b.strip_suffix(" bytes"))
                .and_then(|b| b.parse().ok())
                .unwrap_or_else(|| panic!("unreadable line {l:?}"));
            assert!(bytes > 0, "{l}");
            assert!(l.ends_with("| ok"), "{l}");
        }
        assert!(
            text.contains(&format!("redis-benchmark: {path} | 4 tests completed")),
            "{path}: {text}"
        );
    }
    assert!(text.contains("all bytes checked: ok"), "{text}");
    // The table has a ratio for every workload.
    for w in [
        "bulk download, 1 conn",
        "bulk echo, 1 conn",
        "line echo",
        "resp SET/GET",
        "redis-benchmark SET",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(w) && l.contains("(")),
            "no row {w}: {text}"
        );
    }
}
