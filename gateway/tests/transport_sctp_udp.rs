//! The SCTP-over-UDP transport on loopback: two real UDP sockets, our engine, the driver.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use poolgate::transport::sctp_udp::{SctpUdp, SctpUdpConfig};
use poolgate::transport::{AssocEvent, DownReason, Message, Transport, PPID_ASAP, PPID_ENRP};

/// Loopback carries 65,507-byte UDP payloads; a 1,500-byte link 1,472.
const PMTU_LOOPBACK: usize = 65_507;

fn config(port_listen: bool) -> SctpUdpConfig {
    config_pmtu(port_listen, PMTU_LOOPBACK)
}

fn config_pmtu(port_listen: bool, pmtu: usize) -> SctpUdpConfig {
    let mut c = SctpUdpConfig::new("127.0.0.1:0".parse().unwrap());
    c.engine.association.pmtu = pmtu;
    if port_listen {
        c.engine.listen_ports = vec![3863];
    }
    c
}

async fn next_message(a: &mut poolgate::transport::Association) -> Message {
    loop {
        match a
            .recv_timeout(Duration::from_secs(10))
            .await
            .expect("event in time")
        {
            Some(AssocEvent::Message(m)) => return m,
            Some(AssocEvent::Down(r)) => panic!("association down: {r}"),
            Some(_) => continue,
            None => panic!("association gone"),
        }
    }
}

#[tokio::test]
async fn ordered_messages_both_ways_with_ppids_and_graceful_close() {
    let (server, mut listener) = SctpUdp::bind(config(true)).unwrap();
    let (client, _l) = SctpUdp::bind(config(false)).unwrap();
    let mut c = client
        .connect(&[server.local_addr()], 3863, Duration::from_secs(5))
        .await
        .unwrap();
    let mut s = listener.accept().await.unwrap();
    for i in 0..2000u32 {
        let ppid = if i % 2 == 0 { PPID_ASAP } else { PPID_ENRP };
        c.send(
            Message::new(ppid, Bytes::from(i.to_be_bytes().to_vec())),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    }
    for i in 0..2000u32 {
        let m = next_message(&mut s).await;
        assert_eq!(m.data.as_ref(), &i.to_be_bytes());
        assert_eq!(m.ppid, if i % 2 == 0 { PPID_ASAP } else { PPID_ENRP });
    }
    s.send(
        Message::new(PPID_ASAP, &b"reply"[..]),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(next_message(&mut c).await.data.as_ref(), b"reply");
    c.close();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < until, "no Down after close");
        match s.recv_timeout(Duration::from_secs(10)).await.unwrap() {
            Some(AssocEvent::Down(r)) => {
                assert_eq!(r, DownReason::Shutdown);
                break;
            }
            Some(_) => continue,
            None => panic!("closed without Down"),
        }
    }
}

#[tokio::test]
async fn bulk_transfer_with_back_pressure_arrives_intact_at_loopback_pmtu() {
    bulk(PMTU_LOOPBACK).await;
}

#[tokio::test]
async fn bulk_transfer_with_back_pressure_arrives_intact_at_ethernet_pmtu() {
    bulk(1472).await;
}

async fn bulk(pmtu: usize) {
    let (server, mut listener) = SctpUdp::bind(config_pmtu(true, pmtu)).unwrap();
    let (client, _l) = SctpUdp::bind(config_pmtu(false, pmtu)).unwrap();
    let c = client
        .connect(&[server.local_addr()], 3863, Duration::from_secs(5))
        .await
        .unwrap();
    let mut s = listener.accept().await.unwrap();
    const N: usize = 400;
    const SIZE: usize = 64 * 1024;
    let sender = tokio::spawn(async move {
        for i in 0..N {
            let mut v = vec![(i % 251) as u8; SIZE];
            v[0..8].copy_from_slice(&(i as u64).to_be_bytes());
            c.send(Message::new(PPID_ASAP, v), Duration::from_secs(10))
                .await
                .unwrap();
        }
        c
    });
    for i in 0..N {
        let m = next_message(&mut s).await;
        assert_eq!(m.data.len(), SIZE);
        assert_eq!(&m.data[0..8], &(i as u64).to_be_bytes());
        assert!(m.data[8..].iter().all(|&b| b == (i % 251) as u8));
    }
    let _c = sender.await.unwrap();
    let st = client.stats();
    let (datagrams, calls) = (
        st.datagrams_out.load(Ordering::Relaxed),
        st.send_calls.load(Ordering::Relaxed),
    );
    let rst = server.stats();
    let (rdatagrams, rcalls) = (
        rst.datagrams_in.load(Ordering::Relaxed),
        rst.recv_calls.load(Ordering::Relaxed),
    );
    println!("pmtu {pmtu}: {datagrams} datagrams sent in {calls} send calls; {rdatagrams} received in {rcalls} receive calls");
    assert!(calls <= datagrams && rcalls <= rdatagrams);
    if pmtu < 10_000 {
        // Full-sized packets to one peer leave as GSO trains (loopback supports GSO).
        assert!(
            calls * 2 < datagrams,
            "no GSO batching: {datagrams} datagrams in {calls} calls"
        );
    }
}

#[tokio::test]
async fn connect_to_silent_port_times_out_within_deadline() {
    // A bound UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (client, _l) = SctpUdp::bind(config(false)).unwrap();
    let t0 = Instant::now();
    let r = client
        .connect(
            &[silent.local_addr().unwrap()],
            3863,
            Duration::from_millis(500),
        )
        .await;
    assert!(r.is_err());
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "deadline not honoured: {:?}",
        t0.elapsed()
    );
}

/// A consumer that takes messages but keeps their bytes closes the peer's window: it
/// never holds more than two receive buffers (the window plus zero-window probes the
/// engine keeps in sequence), and the sender waits; once it
/// releases them, the rest arrives intact and in order.
#[tokio::test]
async fn slow_consumer_bounds_received_memory_by_the_receive_window() {
    const WINDOW: u32 = 1 << 20;
    const N: usize = 64;
    const SIZE: usize = 64 * 1024;
    let mut sc = config(true);
    sc.engine.association.receive_buffer = WINDOW;
    let (server, mut listener) = SctpUdp::bind(sc).unwrap();
    let (client, _l) = SctpUdp::bind(config(false)).unwrap();
    let c = client
        .connect(&[server.local_addr()], 3863, Duration::from_secs(5))
        .await
        .unwrap();
    let mut s = listener.accept().await.unwrap();
    let sender = tokio::spawn(async move {
        for i in 0..N {
            let v = vec![i as u8; SIZE];
            c.send(Message::new(PPID_ASAP, v), Duration::from_secs(20))
                .await
                .unwrap();
        }
        c
    });
    let mut held = Vec::new();
    loop {
        match s.recv_timeout(Duration::from_millis(800)).await {
            Ok(Some(AssocEvent::Message(m))) => held.push(m),
            Ok(Some(AssocEvent::Down(r))) => panic!("down: {r}"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("gone"),
            Err(_) => break, // quiet: the window is closed
        }
    }
    let held_bytes: usize = held.iter().map(|m| m.data.len()).sum();
    assert!(held_bytes > 0, "nothing arrived");
    assert!(
        held_bytes <= 2 * WINDOW as usize,
        "consumer holds {held_bytes} bytes, more than twice the {WINDOW}-byte window"
    );
    assert!(
        held.len() < N,
        "everything arrived although nothing was released"
    );
    let mut next = 0usize;
    for m in held.drain(..) {
        assert_eq!(m.data[0], next as u8);
        next += 1;
    }
    while next < N {
        let m = next_message(&mut s).await;
        assert_eq!(m.data.len(), SIZE);
        assert!(m.data.iter().all(|&b| b == next as u8));
        next += 1;
    }
    let _c = sender.await.unwrap();
}
