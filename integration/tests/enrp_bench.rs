//! Benchmark with real registrar processes on loopback: 10,000 PEs registered at
//! registrar 1 (one ASAP association carrying all of them, 10 pools of 1,000),
//! replicated to registrar 2 by handle updates; then registrar 3 starts empty
//! and loads the whole handlespace from a peer (HANDLE_TABLE_REQUEST/RESPONSE in
//! pieces). Prints the time of each phase and the ENRP bytes per registration.
//!
//! Numbers are for the build profile the test runs in (debug unless
//! `--release`); the test asserts generous bounds only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pool_core::types::{
    Policy, PoolHandle, Transport as PeTransport, TransportProtocol, TransportUse,
};
use pool_core::wire::{AsapMessage, PoolElement, SelectionPolicy};
use poolgate::transport::sctp_udp::SctpUdp;
use poolgate::transport::{AssocEvent, Message, Transport, PPID_ASAP};
use poolgate_integration::harness::enrp_scope::*;
use poolgate_integration::harness::wait::wait_until;
use poolgate_integration::transport_for;

const PES: u32 = 10_000;
const POOLS_N: u32 = 10;

fn registration(i: u32) -> AsapMessage {
    AsapMessage::Registration {
        pool_handle: PoolHandle::new(format!("bench{}", i % POOLS_N)).unwrap(),
        element: PoolElement {
            id: i + 1,
            home_registrar: 0,
            registration_life: 600_000,
            user_transport: PeTransport {
                protocol: TransportProtocol::Tcp,
                port: 7000 + (i % 1000) as u16,
                transport_use: TransportUse::DataOnly,
                addresses: vec!["127.0.0.1".parse().unwrap()],
            },
            policy: SelectionPolicy::Known(Policy::RoundRobin),
            asap_transport: None,
        },
        auth: None,
    }
}

/// Registers `PES` PEs over one association and answers keep-alives until dropped.
async fn mass_register(registrar: SocketAddr) -> tokio::task::JoinHandle<usize> {
    let (transport, _l) = SctpUdp::bind(transport_for("127.0.0.1:0".parse().unwrap())).unwrap();
    let assoc = transport
        .connect(&[registrar], 3863, Duration::from_secs(5))
        .await
        .unwrap();
    let (sender, mut events) = assoc.split();
    let sender2 = sender.clone();
    let reader = tokio::spawn(async move {
        let _keep = transport;
        let mut accepted = 0;
        while let Some(ev) = events.recv().await {
            let AssocEvent::Message(m) = ev else { continue };
            match AsapMessage::decode(&m.data) {
                Ok(AsapMessage::RegistrationResponse { reject: false, .. }) => accepted += 1,
                Ok(AsapMessage::EndpointKeepAlive {
                    pool_handle, pe_id, ..
                }) => {
                    let ack = AsapMessage::EndpointKeepAliveAck { pool_handle, pe_id };
                    let _ = sender2
                        .send(
                            Message::new(PPID_ASAP, ack.to_bytes().unwrap()),
                            Duration::from_secs(5),
                        )
                        .await;
                }
                _ => {}
            }
            if accepted == PES as usize {
                // Keep the association (and the PEs) alive: park here.
                std::future::pending::<()>().await;
            }
        }
        accepted
    });
    for i in 0..PES {
        let bytes = registration(i).to_bytes().unwrap();
        sender
            .send(Message::new(PPID_ASAP, bytes), Duration::from_secs(10))
            .await
            .unwrap();
    }
    reader
}

#[test]
fn load_10000_pes_from_a_peer() {
    let (mut regs, _dir) = scope_with(3, "60s", "30s");
    regs[0].start();
    regs[1].start();
    wait_until("ENRP peers up", Duration::from_secs(15), || {
        regs[..2]
            .iter()
            .all(|r| r.metric("poolgate_registrar_enrp_live_peers") == Some(1.0))
    });
    let bytes_before = regs[0]
        .metric("poolgate_registrar_enrp_bytes_sent_total")
        .unwrap_or(0.0);
    let updates_before = regs[0]
        .metric("poolgate_registrar_enrp_updates_sent_total")
        .unwrap_or(0.0);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr: SocketAddr = regs[0].addr().parse().unwrap();
    let t0 = Instant::now();
    let _pe_task = rt.block_on(mass_register(addr));
    let sent = t0.elapsed();
    let at_home = wait_until(
        "10,000 PEs at registrar 1",
        Duration::from_secs(120),
        || regs[0].metric("poolgate_registrar_pool_elements") == Some(f64::from(PES)),
    );
    let replicated = wait_until(
        "10,000 PEs replicated to registrar 2",
        Duration::from_secs(120),
        || regs[1].metric("poolgate_registrar_pool_elements") == Some(f64::from(PES)),
    );
    let total = t0.elapsed();
    let bytes = regs[0]
        .metric("poolgate_registrar_enrp_bytes_sent_total")
        .unwrap()
        - bytes_before;
    let updates = regs[0]
        .metric("poolgate_registrar_enrp_updates_sent_total")
        .unwrap()
        - updates_before;
    println!(
        "registration of {PES} PEs at registrar 1: sent in {sent:?}, all registered {:?}, all at registrar 2 after {total:?} (+{replicated:?})",
        sent + at_home
    );
    println!(
        "ENRP traffic per registration (one peer): {:.1} bytes in {:.2} messages (HANDLE_UPDATE with the HMAC trailer; presence included)",
        bytes / f64::from(PES),
        updates / f64::from(PES)
    );
    assert_eq!(
        updates,
        f64::from(PES),
        "one handle update per registration per peer"
    );

    // A new registrar loads the whole handlespace from its mentor.
    let t1 = Instant::now();
    regs[2].start();
    let load = wait_until(
        "registrar 3 loaded 10,000 PEs",
        Duration::from_secs(120),
        || regs[2].metric("poolgate_registrar_pool_elements") == Some(f64::from(PES)),
    );
    let sync = wait_until("checksums agree", Duration::from_secs(30), || {
        let a = regs[0].checksums();
        a.is_some() && regs.iter().all(|r| r.checksums() == a)
    });
    let responses = regs[0]
        .metric("poolgate_registrar_enrp_table_responses_sent_total")
        .unwrap_or(0.0)
        + regs[1]
            .metric("poolgate_registrar_enrp_table_responses_sent_total")
            .unwrap_or(0.0);
    println!(
        "new registrar loaded {PES} PEs from a peer in {load:?} (process start included; {responses} table responses), checksums equal after {:?}",
        t1.elapsed().max(load + sync)
    );
    assert!(load < Duration::from_secs(60));
    drop(rt);
}
