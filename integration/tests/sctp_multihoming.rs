//! Multi-homing in network namespaces: two namespaces joined by two veth links, one
//! association over both (each side advertises both addresses), a numbered transfer
//! echoed back, and the primary link taken down mid-transfer. The association must
//! survive with nothing lost or reordered (the sender checks every echo); the switchover
//! time (longest silence between echoes) is printed.
//!
//! Needs root and `ip`; skips with a message otherwise. Only addresses inside the
//! namespaces it creates are used, and they are always deleted.

use std::process::Command;
use std::time::{Duration, Instant};

use poolgate_integration::harness::sctp_peer::SctpPeer;

struct Netns {
    names: Vec<String>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let has_ip = Command::new("ip").arg("-V").output().is_ok();
    if !root || !has_ip {
        eprintln!(
            "SKIPPED: multi-homing test needs root and iproute2 `ip` (root={root}, ip={has_ip})"
        );
        return false;
    }
    true
}

#[test]
fn association_survives_primary_link_down_mid_transfer() {
    if !can_run() {
        return;
    }
    let tag = std::process::id() % 100_000;
    let (na, nb) = (format!("pgmh-a-{tag}"), format!("pgmh-b-{tag}"));
    let _guard = Netns {
        names: vec![na.clone(), nb.clone()],
    };
    ip(&["netns", "add", &na]);
    ip(&["netns", "add", &nb]);
    for (i, (va, vb)) in [
        (format!("pgma1{tag}"), format!("pgmb1{tag}")),
        (format!("pgma2{tag}"), format!("pgmb2{tag}")),
    ]
    .iter()
    .enumerate()
    {
        let net = i + 1;
        // Names are at most 15 bytes.
        ip(&[
            "link", "add", va, "netns", &na, "type", "veth", "peer", "name", vb, "netns", &nb,
        ]);
        ip(&[
            "-n",
            &na,
            "addr",
            "add",
            &format!("10.201.{net}.1/24"),
            "dev",
            va,
        ]);
        ip(&[
            "-n",
            &nb,
            "addr",
            "add",
            &format!("10.201.{net}.2/24"),
            "dev",
            vb,
        ]);
        ip(&["-n", &na, "link", "set", va, "up"]);
        ip(&["-n", &nb, "link", "set", vb, "up"]);
    }
    ip(&["-n", &na, "link", "set", "lo", "up"]);
    ip(&["-n", &nb, "link", "set", "lo", "up"]);
    let timers = [
        "--hb-ms",
        "200",
        "--rto-min-ms",
        "50",
        "--rto-initial-ms",
        "200",
        "--rto-max-ms",
        "400",
    ];
    let timers2 = [
        "--max-rtx",
        "10",
        "--path-max-rtx",
        "1",
        "--deadline-s",
        "40",
    ];
    // Returns once the server's socket is bound (it prints LISTEN).
    let (server, _) = SctpPeer::serve(
        Some(&nb),
        &[
            &["--bind", "0.0.0.0:9899"][..],
            &["--local-addresses", "10.201.1.2,10.201.2.2"],
            &timers,
            &timers2,
        ]
        .concat(),
    );
    let count = 4000;
    let count_arg = count.to_string();
    let client = SctpPeer::start(
        Some(&na),
        &[
            &["--bind", "0.0.0.0:9899"][..],
            &["--local-addresses", "10.201.1.1,10.201.2.1"],
            &timers,
            &timers2,
            &["send", "--connect", "10.201.1.2:9899,10.201.2.2:9899"],
            &[
                "--count",
                &count_arg,
                "--size",
                "1000",
                "--interval-us",
                "1000",
            ],
        ]
        .concat(),
    );
    let (_, first) = client.next_line(Duration::from_secs(10));
    assert!(first.contains("CONNECTED"), "{first}");
    std::thread::sleep(Duration::from_millis(1000));
    // Mid-transfer: the primary link goes down (both ends lose carrier).
    let down_at = Instant::now();
    ip(&["-n", &na, "link", "set", &format!("pgma1{tag}"), "down"]);
    let mut lines = Vec::new();
    let done = loop {
        let (at, l) = client.next_line(Duration::from_secs(30));
        let rel = at.saturating_duration_since(down_at).as_millis();
        println!("client +{rel} ms after link down: {l}");
        lines.push(l.clone());
        if l.contains("DONE") {
            break l;
        }
        let word = l.split_whitespace().nth(1);
        assert!(
            word != Some("ERROR") && word != Some("DOWN"),
            "association failed: {l}"
        );
    };
    let field = |k: &str| -> u64 {
        done.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} in {done}"))
    };
    assert_eq!(field("sent="), count);
    assert_eq!(field("echoed="), count, "messages lost");
    assert!(
        lines.iter().any(|l| l.contains("PATH_DOWN 10.201.1.2")),
        "primary path never reported down: {lines:?}"
    );
    println!(
        "multi-homing: link down mid-transfer, all {count} messages echoed in order; switchover (longest gap between echoes) {} ms",
        field("max_gap_ms=")
    );
    drop(client);
    drop(server);
}
