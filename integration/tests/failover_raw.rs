//! The `raw` plugin: failover is transparent only while the backend has sent nothing;
//! afterwards a failure closes the client connection (the honest abort) — promptly.

use std::time::{Duration, Instant};

use poolgate_integration::harness::line_pool::{Cluster, Setup};

#[test]
fn raw_backend_killed_before_it_spoke_is_transparent() {
    let mut cluster = Cluster::start(Setup {
        pes: 2,
        plugin: "raw",
        ..Setup::default()
    });
    let mut client = cluster.client();
    client.send("SLEEP 500 first-answer");
    let victim = cluster.serving("SLEEP 500 first-answer", Duration::from_secs(5));
    cluster.kill_backend(victim);
    assert_eq!(client.recv().as_deref(), Some("first-answer"));
    assert_eq!(client.ask("SQ 9"), "81");
}

#[test]
fn raw_backend_killed_after_it_spoke_closes_the_client() {
    let mut cluster = Cluster::start(Setup {
        pes: 2,
        plugin: "raw",
        ..Setup::default()
    });
    let mut client = cluster.client();
    assert_eq!(client.ask("ECHO hello"), "hello");
    client.send("SLEEP 500 never");
    let victim = cluster.serving("SLEEP 500 never", Duration::from_secs(5));
    let t0 = Instant::now();
    cluster.kill_backend(victim);
    assert_eq!(
        client.recv(),
        None,
        "the client connection is closed, not hung"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        t0.elapsed()
    );
}
