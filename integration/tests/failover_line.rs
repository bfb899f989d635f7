//! Transparent session failover with the `line` plugin, real processes on loopback: the
//! serving backend, and separately the serving PPE, are SIGKILLed in the middle of a
//! session — with a request in flight — and the client gets every answer right.

use std::time::{Duration, Instant};

use poolgate_integration::harness::line_pool::{Client, Cluster, Setup};

/// Runs `n` squared-number requests (some pipelined) and checks every answer.
fn run_requests(c: &mut Client, from: u64, n: u64) {
    let mut i = from;
    while i < from + n {
        // Every fifth round pipelines four requests.
        if i % 5 == 0 {
            for k in 0..4 {
                c.send(&format!("SQ {}", i + k));
            }
            for k in 0..4 {
                assert_eq!(
                    c.recv().as_deref(),
                    Some(format!("{}", (i + k) * (i + k)).as_str())
                );
            }
            i += 4;
        } else {
            assert_eq!(c.ask(&format!("SQ {i}")), format!("{}", i * i));
            i += 1;
        }
    }
}

/// Kills what serves the session while a slow request is in flight; `ppe` picks the PPE
/// instead of the backend.
fn kill_mid_session(ppe: bool) {
    let mut cluster = Cluster::start(Setup::default());
    let mut client = cluster.client();
    run_requests(&mut client, 0, 30);
    // A request the backend answers only after 500 ms; kill its server meanwhile.
    client.send("SLEEP 500 in-flight-1");
    let victim = cluster.serving("SLEEP 500 in-flight-1", Duration::from_secs(5));
    let t0 = Instant::now();
    if ppe {
        cluster.kill_ppe(victim);
    } else {
        cluster.kill_backend(victim);
    }
    assert_eq!(
        client.recv().as_deref(),
        Some("in-flight-1"),
        "in-flight request answered after failover"
    );
    let stall = t0.elapsed();
    // The request was replayed to another backend.
    let now = cluster.serving("SLEEP 500 in-flight-1", Duration::ZERO);
    let replayed_on: Vec<usize> = (0..cluster.backends.len())
        .filter(|&i| {
            i != victim
                && cluster.backends[i]
                    .requests
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|r| r == "SLEEP 500 in-flight-1")
        })
        .collect();
    assert!(now == victim || !replayed_on.is_empty());
    assert_eq!(
        replayed_on.len(),
        1,
        "replayed exactly once on one other backend"
    );
    // Detection (100 ms keep-alive + 100 ms timeout, or the backend's EOF) + 500 ms of work.
    assert!(stall < Duration::from_secs(3), "stall {stall:?}");
    run_requests(&mut client, 100, 40);
    // Still on the new backend, and the session survives a second failure there too.
    client.send("SLEEP 300 in-flight-2");
    let second = cluster.serving("SLEEP 300 in-flight-2", Duration::from_secs(5));
    assert_ne!(second, victim);
    if ppe {
        cluster.kill_ppe(second);
    } else {
        cluster.kill_backend(second);
    }
    assert_eq!(client.recv().as_deref(), Some("in-flight-2"));
    run_requests(&mut client, 200, 20);
    // Both failovers are counted by cause, both resumed, nothing given up.
    let cause = if ppe {
        "keepalive_timeout"
    } else {
        "pe_closed"
    };
    let series = format!("poolgate_ppu_failovers_total{{listener=\"t\",cause=\"{cause}\"}}");
    let lines = cluster.ppu_metrics("poolgate_ppu_failovers_total{");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&series) && l.ends_with(" 2")),
        "{lines:?}"
    );
    assert_eq!(
        cluster.ppu_counter("poolgate_ppu_failovers_resumed_total"),
        2.0
    );
    assert_eq!(
        cluster.ppu_counter("poolgate_ppu_sessions_unresumable_total"),
        0.0
    );
    assert_eq!(
        cluster.ppu_counter("poolgate_ppu_failover_stall_seconds_count"),
        2.0
    );
    // The SCTP transport under the sessions reports too: an association came up for
    // the first PE and for each of the two it failed over to, and DATA carried the
    // 90 requests: at least 36 messages, as every five requests are a pipelined
    // four, which may travel in one message, and a single one.
    let sctp = |series: &str| -> f64 {
        let lines = cluster.ppu_metrics(series);
        lines
            .iter()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {lines:?}"))
    };
    let up = sctp("poolgate_sctp_association_events_total{transport=\"sessions\",event=\"up\"}");
    let chunks = sctp("poolgate_sctp_data_chunks_total{transport=\"sessions\",direction=\"out\"}");
    assert!(
        up >= 3.0 && chunks >= 36.0,
        "associations up {up}, DATA chunks out {chunks}"
    );
}

#[test]
fn backend_sigkill_mid_session_is_transparent() {
    kill_mid_session(false);
}

#[test]
fn ppe_sigkill_mid_session_is_transparent() {
    kill_mid_session(true);
}

#[test]
fn client_half_close_ends_the_session_cleanly() {
    let cluster = Cluster::start(Setup {
        pes: 1,
        ..Setup::default()
    });
    let mut client = cluster.client();
    client.send("SQ 7");
    client.send("SLEEP 100 last");
    client.w.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(client.recv().as_deref(), Some("49"));
    assert_eq!(client.recv().as_deref(), Some("last"));
    assert_eq!(
        client.recv(),
        None,
        "the PPU closes after the backend closed"
    );
}

#[test]
fn ppe_drain_hands_the_session_over_without_lost_work() {
    let cluster = Cluster::start(Setup {
        pes: 2,
        ..Setup::default()
    });
    let mut client = cluster.client();
    assert_eq!(client.ask("ECHO before-drain"), "before-drain");
    let victim = cluster.serving("ECHO before-drain", Duration::from_secs(5));
    cluster.drain_ppe(victim);
    // The PPE deregisters, waits its drain grace (1 s), then hands the session over with
    // a final cookie; requests keep being answered all along.
    let t0 = Instant::now();
    let mut i = 0u64;
    let mut moved = false;
    while t0.elapsed() < Duration::from_secs(5) {
        let marker = format!("ECHO drain-{i}");
        assert_eq!(client.ask(&marker), format!("drain-{i}"));
        if cluster.serving(&marker, Duration::from_secs(1)) != victim {
            moved = true;
            break;
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        moved,
        "session still on the draining PE after {:?}",
        t0.elapsed()
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "moved before the drain grace: {:?}",
        t0.elapsed()
    );
    cluster.wait_pool(1, Duration::from_secs(5));
}

#[test]
fn pipelined_bulk_survives_a_backend_kill_with_back_pressure() {
    let mut cluster = Cluster::start(Setup {
        pes: 2,
        ..Setup::default()
    });
    let mut client = cluster.client();
    const N: usize = 3000;
    let pad = "x".repeat(200);
    let mut w = client.w.try_clone().unwrap();
    let p = pad.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        for i in 0..N {
            w.write_all(format!("ECHO {i} {p}\n").as_bytes()).unwrap();
        }
    });
    // Read slowly at first so buffers fill up on the way.
    std::thread::sleep(Duration::from_millis(300));
    let mut killed = false;
    for i in 0..N {
        assert_eq!(client.recv(), Some(format!("{i} {pad}")), "reply {i}");
        if i == N / 3 && !killed {
            let victim = cluster.serving(&format!("ECHO {i} {pad}"), Duration::from_secs(1));
            cluster.kill_backend(victim);
            killed = true;
        }
    }
    writer.join().unwrap();
}

/// A PPE frozen with SIGSTOP sends nothing — no FIN, no ABORT — so only the PU's session
/// keep-alive can notice: the request in flight must still be answered, by another PE.
#[test]
fn a_frozen_ppe_is_left_after_the_session_keepalive_timeout() {
    let cluster = Cluster::start(Setup {
        pes: 2,
        ..Setup::default()
    });
    let mut client = cluster.client();
    run_requests(&mut client, 0, 10);
    assert_eq!(client.ask("ECHO before-freeze"), "before-freeze");
    let victim = cluster.serving("ECHO before-freeze", Duration::from_secs(5));
    let frozen = cluster.pool.ppes[victim].as_ref().expect("PPE running");
    frozen.signal(19);
    let t0 = Instant::now();
    client.send("ECHO while-frozen");
    assert_eq!(client.recv().as_deref(), Some("while-frozen"));
    let stall = t0.elapsed();
    println!("answered {stall:?} after the freeze");
    assert_ne!(
        cluster.serving("ECHO while-frozen", Duration::from_secs(1)),
        victim
    );
    // Detection: 100 ms keep-alive interval + 100 ms timeout, well before SCTP's own
    // retransmission budget would end the association.
    assert!(stall < Duration::from_secs(2), "stall {stall:?}");
    let failovers = cluster.pool.ppu_metrics("poolgate_ppu_failovers_total");
    assert!(
        failovers
            .iter()
            .any(|l| l.contains("cause=\"keepalive_timeout\"") && !l.ends_with(" 0")),
        "{failovers:?}"
    );
    run_requests(&mut client, 100, 20);
    frozen.signal(18);
}

/// A line longer than the plugin's `max_line` (64 KiB): the plugin stops tracking the
/// session, which keeps relaying every byte; the event is counted by stream and kind.
#[test]
fn a_line_too_long_for_the_plugin_is_relayed_and_counted() {
    let cluster = Cluster::start(Setup {
        pes: 1,
        ..Setup::default()
    });
    let mut client = cluster.client();
    assert_eq!(client.ask("SQ 3"), "9");
    let long = "x".repeat(70_000);
    assert_eq!(client.ask(&format!("ECHO {long}")), long);
    assert_eq!(client.ask("SQ 4"), "16");
    let errors = cluster.pool.ppu_metrics("poolgate_ppu_plugin_errors_total");
    assert!(
        errors.iter().any(|l| l.contains("stream=\"client\"")
            && l.contains("kind=\"line_too_long\"")
            && l.ends_with(" 1")),
        "{errors:?}"
    );
}
