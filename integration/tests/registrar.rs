//! Real processes on loopback: `poolgate registrar`, bare ASAP PEs (`pg-pe`) and a
//! resolving PU (`pg-resolve`), all over our SCTP engine inside UDP.

use std::process::Command;
use std::time::{Duration, Instant};

use poolgate_integration::harness::registrar::{self, pe_ids, resolve_output, Registrar};
use poolgate_integration::harness::wait::wait_until;
use poolgate_integration::{bin, free_udp_port, Child};

fn start_registrar(extra: &str) -> Registrar {
    Registrar::start(extra, "info")
}

fn start_registrar_on(port: u16, extra: &str) -> Registrar {
    Registrar::start_on(port, extra, "info")
}

fn start_pe(reg: &Registrar, pool: &str, id: &str) -> Child {
    registrar::pe(&reg.addr(), pool, id, &["--life", "30s"])
}

fn resolve(reg: &Registrar, pool: &str, report: Option<&str>) -> Vec<String> {
    let report: Vec<&str> = report.map_or(vec![], |r| vec!["--report", r]);
    let out = resolve_output(&reg.addr(), pool, &report);
    assert!(
        out.status.success(),
        "pg-resolve failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pe_ids(&out.stdout)
}

fn wait_for(reg: &Registrar, pool: &str, want: &[&str], within: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let got = resolve(reg, pool, None);
        if got == want {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < within,
            "pool {pool}: wanted {want:?}, have {got:?} after {:?}",
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pe_registers_resolves_and_killed_pe_disappears_within_keepalive_bound() {
    let interval = Duration::from_millis(250);
    let timeout = Duration::from_millis(250);
    let reg = start_registrar("[registrar.keepalive]\ninterval = \"250ms\"\ntimeout = \"250ms\"\n");
    let pe1 = start_pe(&reg, "echo", "0000aaaa");
    let _pe2 = start_pe(&reg, "echo", "0000bbbb");
    wait_for(
        &reg,
        "echo",
        &["0000aaaa", "0000bbbb"],
        Duration::from_secs(10),
    );

    let killed_at = Instant::now();
    drop(pe1); // SIGKILL
    let gone = loop {
        if resolve(&reg, "echo", None) == ["0000bbbb"] {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "killed PE never removed"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let bound = interval + timeout;
    println!("killed PE removed after {gone:?} (keep-alive interval {interval:?} + timeout {timeout:?} = {bound:?})");
    // The PE may have been probed just before the kill: up to one interval, then the
    // timeout, plus scheduling and the resolution round trip.
    assert!(
        gone <= bound + Duration::from_millis(400),
        "removal took {gone:?}, bound {bound:?}"
    );
}

#[test]
fn failure_reports_remove_pe_only_at_max_bad_pe_report_from_distinct_pus() {
    // All PUs here share 127.0.0.1: count them by association.
    let reg = start_registrar("max_bad_pe_report = 3\nfailure_report_scope = \"association\"\n");
    let _pe1 = start_pe(&reg, "calc", "00000001");
    let _pe2 = start_pe(&reg, "calc", "00000002");
    wait_for(
        &reg,
        "calc",
        &["00000001", "00000002"],
        Duration::from_secs(10),
    );
    // Each pg-resolve process is a distinct PU (its own association).
    resolve(&reg, "calc", Some("00000001"));
    resolve(&reg, "calc", Some("00000001"));
    assert_eq!(
        resolve(&reg, "calc", None),
        ["00000001", "00000002"],
        "removed before the third report"
    );
    resolve(&reg, "calc", Some("00000001"));
    wait_for(&reg, "calc", &["00000002"], Duration::from_secs(2));
}

/// With the shipped `failure_report_scope = "address"` one host cannot impeach a PE by
/// opening several associations: three PUs on 127.0.0.1 are one reporter; PUs on
/// 127.0.0.2 and 127.0.0.3 (other hosts on loopback) make it three.
#[test]
fn failure_reports_count_one_per_address() {
    let reg = start_registrar("max_bad_pe_report = 3\n");
    let _pe1 = start_pe(&reg, "calc", "00000001");
    let _pe2 = start_pe(&reg, "calc", "00000002");
    let both = ["00000001", "00000002"];
    wait_for(&reg, "calc", &both, Duration::from_secs(10));
    let report_from = |ip: &str| {
        let bind = format!("{ip}:0");
        let out = resolve_output(
            &reg.addr(),
            "calc",
            &["--report", "00000001", "--bind", &bind],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for _ in 0..3 {
        report_from("127.0.0.1");
    }
    assert_eq!(resolve(&reg, "calc", None), both, "one host impeached a PE");
    report_from("127.0.0.2");
    assert_eq!(resolve(&reg, "calc", None), both);
    report_from("127.0.0.3");
    wait_for(&reg, "calc", &["00000002"], Duration::from_secs(2));
}

#[test]
fn graceful_pe_shutdown_deregisters() {
    let reg = start_registrar("");
    let pe = start_pe(&reg, "web", "00000c0c");
    wait_for(&reg, "web", &["00000c0c"], Duration::from_secs(10));
    pe.signal(15);
    wait_for(&reg, "web", &[], Duration::from_secs(3));
}

#[test]
fn status_prints_the_handlespace_as_table_and_json() {
    let reg = start_registrar("");
    let _pe1 = start_pe(&reg, "shop", "00000abc");
    let _pe2 = start_pe(&reg, "shop", "00000def");
    wait_for(
        &reg,
        "shop",
        &["00000abc", "00000def"],
        Duration::from_secs(10),
    );
    let t0 = Instant::now();
    let table = loop {
        let out = Command::new(bin("poolgate"))
            .args(["status", "--address", &reg.metrics_addr()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains("00000def") && text.contains("00000abc") {
            break text;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "status never showed both PEs:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("{table}");
    assert!(table.contains("1 pools, 2 PEs"), "{table}");
    assert!(table.contains("shop"), "{table}");
    assert!(
        table.contains("00000001"),
        "home registrar id missing: {table}"
    );
    let out = Command::new(bin("poolgate"))
        .args(["status", "--json", "--address", &reg.metrics_addr()])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["role"], "registrar");
    assert_eq!(v["pools"][0]["handle"], "shop");
    assert_eq!(v["pools"][0]["elements"].as_array().unwrap().len(), 2);
}

#[test]
fn registrar_restart_is_survived_pes_reregister_and_pus_resolve_again() {
    let port = free_udp_port();
    let reg = start_registrar_on(port, "");
    let _pe1 = start_pe(&reg, "svc", "00000011");
    let _pe2 = start_pe(&reg, "svc", "00000022");
    wait_for(
        &reg,
        "svc",
        &["00000011", "00000022"],
        Duration::from_secs(10),
    );
    drop(reg); // SIGKILL: the handlespace is gone with it
    let restarted_at = Instant::now();
    let reg = start_registrar_on(port, "");
    let took = wait_for(
        &reg,
        "svc",
        &["00000011", "00000022"],
        Duration::from_secs(20),
    );
    println!(
        "PEs re-registered {:?} after the registrar restarted",
        restarted_at.elapsed().max(took)
    );
}

fn metric(reg: &Registrar, name: &str) -> f64 {
    reg.metric(name)
}

#[test]
fn associations_per_peer_address_are_limited_and_counted() {
    let reg = start_registrar("[registrar.limits]\nmax_associations_per_peer = 2\n");
    let _pe1 = start_pe(&reg, "lim", "00000001");
    let _pe2 = start_pe(&reg, "lim", "00000002");
    wait_until("two PEs registered", Duration::from_secs(10), || {
        metric(&reg, "poolgate_registrar_pool_elements") >= 2.0
    });
    // A third association from the same address is refused (and the PE keeps hunting).
    let _pe3 = start_pe(&reg, "lim", "00000003");
    wait_until("the limit hit", Duration::from_secs(10), || {
        metric(&reg, "poolgate_registrar_association_limit_hits_total") >= 1.0
    });
    assert_eq!(metric(&reg, "poolgate_registrar_pool_elements"), 2.0);
}

#[test]
fn pool_users_find_the_registrar_by_its_server_announce() {
    let announce = free_udp_port();
    let reg = start_registrar(&format!(
        "[registrar.announce]\nenabled = true\naddress = \"127.0.0.1:{announce}\"\ninterval = \"100ms\"\n"
    ));
    let _pe = start_pe(&reg, "found", "0000a110");
    wait_for(&reg, "found", &["0000a110"], Duration::from_secs(10));
    let out = Command::new(bin("pg-resolve"))
        .args([
            "--announce",
            &format!("127.0.0.1:{announce}"),
            "--pool",
            "found",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg-resolve --announce: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("0000a110"));
    assert!(metric(&reg, "poolgate_registrar_server_announces_total") >= 1.0);
}

#[test]
fn secured_pool_admits_only_pes_that_know_its_secret() {
    let reg = start_registrar(
        "[[registrar.pool]]\nhandle = \"vault\"\nsecret = \"correct horse battery staple\"\n",
    );
    let start =
        |id: &str, secret: &str| registrar::pe(&reg.addr(), "vault", id, &["--secret", secret]);
    let _bad = start("0000bad0", "wrong secret, same length!!");
    let good = start("0000900d", "correct horse battery staple");
    wait_for(&reg, "vault", &["0000900d"], Duration::from_secs(10));
    wait_until(
        "the forged registration counted",
        Duration::from_secs(5),
        || metric(&reg, "poolgate_registrar_auth_failures_total") >= 1.0,
    );
    assert_eq!(resolve(&reg, "vault", None), ["0000900d"]);
    // The PE's signed deregistration is accepted.
    good.signal(15);
    wait_for(&reg, "vault", &[], Duration::from_secs(5));
}

/// `[registrar.transport]` reaches the running registrar's engine: with a 100 ms
/// heartbeat interval it probes an idle PE's association several times a second, where
/// the shipped 5 s would send at most one in the same time (checked: none).
#[test]
fn transport_settings_reach_the_running_registrar() {
    let reg = start_registrar(
        "[registrar.keepalive]\ninterval = \"5s\"\ntimeout = \"1s\"\n\
         [registrar.transport]\nheartbeat_interval = \"100ms\"\n",
    );
    let _pe = start_pe(&reg, "hb", "0000cccc");
    wait_for(&reg, "hb", &["0000cccc"], Duration::from_secs(10));
    const SENT: &str = "poolgate_sctp_heartbeats_total{transport=\"registrar\",event=\"sent\"}";
    let before = metric(&reg, SENT);
    std::thread::sleep(Duration::from_millis(1500));
    let during = metric(&reg, SENT) - before;
    println!("heartbeats sent in 1.5 s at a 100 ms interval: {during}");
    assert!(during >= 5.0, "only {during} heartbeats in 1.5 s");
}

#[test]
fn the_configured_worker_threads_run_the_process() {
    let reg = start_registrar("threads = 3\n");
    assert_eq!(metric(&reg, "poolgate_worker_threads"), 3.0);
    // 0, the shipped registrar default: one per CPU.
    let reg = start_registrar("");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(metric(&reg, "poolgate_worker_threads"), cpus as f64);
}
