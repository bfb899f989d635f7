//! Hostile traffic does not stop service: while a flood of garbage datagrams and of
//! INITs (valid CRC32c, random tags) hits the registrar's UDP port, a PE registers and
//! pool users resolve it. INITs cost the registrar no state (stateless cookies).

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use poolgate_integration::harness::metrics;
use poolgate_integration::harness::registrar::{pe, resolves, Registrar};
use sctp::wire::{finish_packet, Chunk, CommonHeader, InitChunk};

/// Datagrams per second from each of the two flooding threads: thousands of times
/// the legitimate traffic, yet within what one core can take in (an unbounded flood
/// from this same 2-core machine would only measure the kernel dropping packets).
const FLOOD_RATE: f64 = 25_000.0;

fn init_packet(seed: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    CommonHeader {
        src_port: (seed % 60000) as u16 + 1024,
        dst_port: 3863,
        vtag: 0,
    }
    .encode(&mut out);
    Chunk::Init(InitChunk {
        initiate_tag: seed | 1,
        a_rwnd: 65536,
        outbound_streams: 10,
        inbound_streams: 10,
        initial_tsn: seed,
        params: Vec::new(),
    })
    .encode(&mut out);
    finish_packet(&mut out);
    out
}

#[test]
fn init_and_garbage_flood_does_not_stop_registration_or_resolution() {
    let reg = Registrar::start("", "warn");
    let metrics = reg.metrics;
    let addr = reg.addr();

    // The flood: bounded in time, stops by itself.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (0..2)
        .map(|k| {
            let (stop, sent, addr) = (stop.clone(), sent.clone(), addr.clone());
            std::thread::spawn(move || {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                let until = Instant::now() + Duration::from_secs(20);
                let mut i: u32 = k * 1_000_003;
                let garbage = [0xA5u8; 200];
                // Paced: FLOOD_RATE datagrams/s per thread, in bursts every 10 ms.
                let start = Instant::now();
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    let due = (start.elapsed().as_secs_f64() * FLOOD_RATE) as u64;
                    if n >= due {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    i = i.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let _ = if i % 2 == 0 {
                        s.send_to(&init_packet(i), &addr)
                    } else {
                        s.send_to(&garbage[..(i % 200) as usize], &addr)
                    };
                    n += 1;
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let flood_start = Instant::now();
    std::thread::sleep(Duration::from_millis(300));

    let t0 = Instant::now();
    let _pe = pe(&addr, "flood", "0000f100", &[]);
    // Resolve for three seconds under the flood: every attempt must succeed.
    let mut first = None;
    let (mut ok, mut failed) = (0u32, 0u32);
    let mut latencies = Vec::new();
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(3) || first.is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "PE never resolvable under the flood"
        );
        let r0 = Instant::now();
        if resolves(&addr, "flood", "0000f100") {
            first.get_or_insert(t0.elapsed());
            ok += 1;
            latencies.push(r0.elapsed());
        } else if first.is_some() {
            failed += 1;
        }
    }
    let flood_time = flood_start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().unwrap();
    }
    // What the flood did is visible to the operator: garbage counted as dropped,
    // INITs answered without state or held back by the per-source rate limit, and
    // the one real PE's association held.
    let text = metrics::scrape(("127.0.0.1", metrics), Duration::from_secs(5)).unwrap_or_default();
    let series = |name: &str| -> f64 {
        metrics::value(&text, name)
            .unwrap_or_else(|| panic!("no {name} in the registrar's metrics"))
    };
    let dropped = series(
        "poolgate_sctp_packets_dropped_total{transport=\"registrar\",reason=\"malformed\"}",
    ) + series(
        "poolgate_sctp_packets_dropped_total{transport=\"registrar\",reason=\"bad_checksum\"}",
    );
    let stateless = series(
        "poolgate_sctp_stateless_replies_total{transport=\"registrar\",outcome=\"init_answered\"}",
    ) + series(
        "poolgate_sctp_stateless_replies_total{transport=\"registrar\",outcome=\"rate_limited\"}",
    ) + series(
        "poolgate_sctp_stateless_replies_total{transport=\"registrar\",outcome=\"dropped\"}",
    );
    println!("registrar counted {dropped} garbage packets dropped, {stateless} INITs handled statelessly");
    assert!(dropped > 1_000.0, "garbage not counted: {dropped}");
    assert!(stateless > 1_000.0, "INITs not counted: {stateless}");
    assert!(series("poolgate_sctp_associations{transport=\"registrar\"}") >= 1.0);
    let n = sent.load(Ordering::Relaxed);
    latencies.sort();
    println!(
        "flood of {n} datagrams ({:.0}/s, half INITs); PE resolvable after {:?}; {ok} resolutions (p50 {:?}, max {:?}), {failed} failed",
        n as f64 / flood_time.as_secs_f64(),
        first.unwrap_or_default(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    );
    assert!(n > 50_000, "the flood was too small to mean anything: {n}");
    assert!(ok >= 5, "too few resolutions under the flood: {ok}");
    assert_eq!(failed, 0, "resolutions failed under the flood");
}
