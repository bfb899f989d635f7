//! Transparent session failover with the `line` plugin, real processes on loopback: the
//! serving backend, and separately the serving PPE, are SIGKILLed in the middle of a
//! session — with a request in flight — and the client gets every answer right.

mod failover_common;

use std::time::{Duration, Instant};

use failover_common::{Cluster, Setup};

/// Runs `n` squared-number requests (some pipelined) and checks every answer.
fn run_requests(c: &mut failover_common::Client, from: u64, n: u64) {
    let mut i = from;
    while i < from + n {
        // Every fifth round pipelines four requests.
        if i % 5 == 0 {
            for k in 0..4 {
                c.send(&format!("SQ {}", i + k));
            }
            for k in 0..4 {
                assert_eq!(c.recv().as_deref(), Some(format!("{}", (i + k) * (i + k)).as_str()));
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
    assert_eq!(client.recv().as_deref(), Some("in-flight-1"), "in-flight request answered after failover");
    let stall = t0.elapsed();
    // The request was replayed to another backend.
    let now = cluster.serving("SLEEP 500 in-flight-1", Duration::ZERO);
    let replayed_on: Vec<usize> = (0..cluster.backends.len())
        .filter(|&i| i != victim && cluster.backends[i].requests.lock().unwrap().iter().any(|r| r == "SLEEP 500 in-flight-1"))
        .collect();
    assert!(now == victim || !replayed_on.is_empty());
    assert_eq!(replayed_on.len(), 1, "replayed exactly once on one other backend");
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
    let cluster = Cluster::start(Setup { pes: 1, ..Setup::default() });
    let mut client = cluster.client();
    client.send("SQ 7");
    client.send("SLEEP 100 last");
    client.w.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(client.recv().as_deref(), Some("49"));
    assert_eq!(client.recv().as_deref(), Some("last"));
    assert_eq!(client.recv(), None, "the PPU closes after the backend closed");
}
