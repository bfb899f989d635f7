//! SIGHUP reload on real processes: a running pool rotates its cookie keys and changes a
//! PE's weight while a client session keeps running; a broken file is refused and the
//! running configuration stays. The key rotation is proven by a failover: the PE that
//! takes the session over knows only the new key, so it can open the session's latest
//! cookie only if the serving PE really sealed it with the new key after the reload.

use std::time::{Duration, Instant};

use poolgate_integration::harness::line_pool::{Cluster, Setup};

/// The key the line pool writes as `[[ppe.key]] id = 1` (`harness::config::TEST_KEY`).
const OLD: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// The key rotated in as id 2.
const NEW: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

fn ppe_file(c: &Cluster, i: usize) -> std::path::PathBuf {
    c.dir.join(format!("ppe{i}.toml"))
}

/// Rewrites PPE `i`'s file with `edit` and sends it SIGHUP.
fn reload_ppe(c: &Cluster, i: usize, edit: impl Fn(String) -> String) {
    let path = ppe_file(c, i);
    let text = std::fs::read_to_string(&path).unwrap();
    let new = edit(text.clone());
    assert_ne!(text, new, "the edit changed nothing");
    std::fs::write(&path, new).unwrap();
    c.ppes[i].as_ref().unwrap().signal(1);
}

fn old_key_block() -> String {
    format!("[[ppe.key]]\nid = 1\nkey = \"{OLD}\"\n")
}

/// Waits until the registrar lists PE `id` with `policy` (its Debug form).
fn wait_policy(c: &Cluster, pe: u32, policy: &str, within: Duration) {
    let t0 = Instant::now();
    loop {
        let out = std::process::Command::new(poolgate_integration::bin("pg-resolve"))
            .args(["--registrar", &c.registrar_addr, "--pool", "fo"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{pe:08x}")))
            .unwrap_or("");
        if line.contains(&format!("({policy})")) {
            return;
        }
        assert!(
            t0.elapsed() < within,
            "PE {pe:08x} not listed with {policy} within {within:?}: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_rotates_keys_and_weights_while_a_session_runs() {
    let mut c = Cluster::start_with_policy(
        Setup {
            pes: 2,
            ..Setup::default()
        },
        "kind = \"weighted-round-robin\"\nweight = 1",
    );
    wait_policy(
        &c,
        0x100,
        "WeightedRoundRobin { weight: 1 }",
        Duration::from_secs(5),
    );
    let mut client = c.client();
    assert_eq!(client.ask("SQ 3"), "9");
    let serving = c.serving("SQ 3", Duration::from_secs(5));
    let other = 1 - serving;

    // Step 1: both PPEs learn key 2 (it seals from now on; key 1 still opens), and the
    // serving PE's weight goes to 5. The running session is not disturbed.
    for i in 0..2 {
        reload_ppe(&c, i, |t| {
            let t = t.replace(
                &old_key_block(),
                &format!("{}[[ppe.key]]\nid = 2\nkey = \"{NEW}\"\n", old_key_block()),
            );
            if i == serving {
                t.replace("weight = 1", "weight = 5")
            } else {
                t
            }
        });
    }
    wait_policy(
        &c,
        0x100 + serving as u32,
        "WeightedRoundRobin { weight: 5 }",
        Duration::from_secs(5),
    );
    wait_policy(
        &c,
        0x100 + other as u32,
        "WeightedRoundRobin { weight: 1 }",
        Duration::ZERO,
    );
    for i in 10..40u64 {
        assert_eq!(client.ask(&format!("SQ {i}")), format!("{}", i * i));
    }

    // Step 2: the other PPE drops key 1. A broken file sent to it first is refused and
    // changes nothing (it would also have dropped key 1).
    let good = std::fs::read_to_string(ppe_file(&c, other)).unwrap();
    reload_ppe(&c, other, |t| {
        t.replace(&old_key_block(), "")
            .replace("weight = 1", "weight = \"heavy\"")
    });
    std::thread::sleep(Duration::from_millis(300));
    wait_policy(
        &c,
        0x100 + other as u32,
        "WeightedRoundRobin { weight: 1 }",
        Duration::ZERO,
    );
    std::fs::write(ppe_file(&c, other), good).unwrap();
    reload_ppe(&c, other, |t| t.replace(&old_key_block(), ""));
    // More requests: new checkpoints, all sealed with key 2 by the serving PE.
    for i in 40..60u64 {
        assert_eq!(client.ask(&format!("SQ {i}")), format!("{}", i * i));
    }
    std::thread::sleep(Duration::from_millis(300));

    // Step 3: the serving backend dies with a request in flight. The session can only
    // resume on the other PE, which opens nothing but key-2 cookies.
    client.send("SLEEP 300 after-rotation");
    let victim = c.serving("SLEEP 300 after-rotation", Duration::from_secs(5));
    assert_eq!(victim, serving);
    c.kill_backend(victim);
    assert_eq!(client.recv().as_deref(), Some("after-rotation"));
    for i in 60..80u64 {
        assert_eq!(client.ask(&format!("SQ {i}")), format!("{}", i * i));
    }
    assert!(
        c.backends[other]
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r == "SQ 79"),
        "the session moved to the other PE"
    );
    assert!(c.ppu_counter("poolgate_ppu_failovers_resumed_total") >= 1.0);
    assert_eq!(
        c.ppu_counter("poolgate_ppu_sessions_unresumable_total"),
        0.0
    );
}

/// Reports PE `pe` unreachable once (a new association: a distinct reporter) and returns
/// the PE ids the registrar lists afterwards.
fn report(c: &Cluster, pe: u32) -> Vec<String> {
    let out = std::process::Command::new(poolgate_integration::bin("pg-resolve"))
        .args(["--registrar", &c.registrar_addr, "--pool", "fo"])
        .args(["--report", &format!("{pe:08x}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn sighup_applies_max_bad_pe_report_at_the_registrar_and_refuses_a_broken_file() {
    let c = Cluster::start(Setup {
        pes: 2,
        ..Setup::default()
    });
    let file = c.dir.join("registrar.toml");
    let good = std::fs::read_to_string(&file).unwrap();
    // The shipped MAX-BAD-PE-REPORT is above 1: one report leaves the PE listed.
    assert!(report(&c, 0x100).contains(&"00000100".to_string()));

    // A broken file is refused: the running value stays.
    std::fs::write(
        &file,
        good.replace("id = 1\n", "id = 1\nmax_bad_pe_report = \"x\"\n"),
    )
    .unwrap();
    c.registrar.as_ref().unwrap().signal(1);
    std::thread::sleep(Duration::from_millis(300));
    assert!(report(&c, 0x101).contains(&"00000101".to_string()));

    // MAX-BAD-PE-REPORT = 1 takes effect without a restart: the next report removes.
    std::fs::write(
        &file,
        good.replace("id = 1\n", "id = 1\nmax_bad_pe_report = 1\n"),
    )
    .unwrap();
    c.registrar.as_ref().unwrap().signal(1);
    let t0 = Instant::now();
    loop {
        let listed = report(&c, 0x101);
        if !listed.contains(&"00000101".to_string()) {
            assert!(listed.contains(&"00000100".to_string()), "{listed:?}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "PE 101 still listed after reports: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
