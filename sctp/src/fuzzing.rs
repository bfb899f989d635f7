//! Fuzz bodies as plain functions, run by `cargo fuzz` (sctp/fuzz) and by proptest.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::wire::{finish_packet, Packet};
use crate::{Endpoint, EndpointConfig};

/// Decodes arbitrary bytes as a packet (and again with a fixed-up checksum); when it
/// decodes, re-encoding and decoding must give the same packet.
pub fn packet_decode(data: &[u8]) {
    let _ = Packet::decode(data);
    if data.len() >= 12 {
        let mut d = data.to_vec();
        finish_packet(&mut d);
        if let Ok(p) = Packet::decode(&d) {
            let again = Packet::decode(&p.encode()).expect("re-encoded packet decodes");
            assert_eq!(again, p);
        }
    }
}

/// Feeds arbitrary packets to a client endpoint that has just sent INIT and to a server
/// endpoint, with their checksums fixed so they reach the state machines. Nothing may panic.
pub fn association_input(data: &[u8]) {
    let now = Instant::now();
    let client_addr: SocketAddr = "10.0.0.1:9899".parse().expect("literal");
    let server_addr: SocketAddr = "10.0.0.2:9899".parse().expect("literal");
    let mut client = Endpoint::new(EndpointConfig::default(), 1).expect("default config");
    let mut server = Endpoint::new(EndpointConfig::default(), 2).expect("default config");
    let h = client.connect(now, &[server_addr], 5000, 5000).expect("fresh endpoint");
    // Learn the client's tag from its INIT so fuzz input can use it.
    let init = client.poll_transmit(now).expect("INIT");
    let tag = init.contents.get(16..20).map(|b| [b[0], b[1], b[2], b[3]]).unwrap_or_default();
    let mut t = now;
    for piece in data.split(|b| *b == 0xff).take(64) {
        let mut pkt = piece.to_vec();
        if pkt.len() >= 12 {
            // Half of the inputs are steered to the client's tag and ports.
            if pkt[0] & 1 == 0 {
                pkt[0..2].copy_from_slice(&5000u16.to_be_bytes());
                pkt[2..4].copy_from_slice(&5000u16.to_be_bytes());
                pkt[4..8].copy_from_slice(&tag);
            }
            finish_packet(&mut pkt);
        }
        t += Duration::from_millis(u64::from(pkt.len() as u8));
        client.handle_datagram(t, None, server_addr, &pkt);
        server.handle_datagram(t, None, client_addr, &pkt);
        while client.poll_transmit(t).is_some() {}
        while server.poll_transmit(t).is_some() {}
        client.handle_timeout(t);
        server.handle_timeout(t);
        while client.poll_event().is_some() {}
        while server.poll_event().is_some() {}
        let _ = client.send(h, 0, 11, true, bytes::Bytes::from_static(b"x"));
    }
}
