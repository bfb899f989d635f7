//! Fuzz bodies as plain functions, run by `cargo fuzz` (sctp/fuzz) and by proptest so CI
//! covers them too.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::wire::{finish_packet, Packet};
use crate::{AssocHandle, Endpoint, EndpointConfig};

/// Decodes arbitrary bytes as a packet (and again with a fixed-up checksum); whatever
/// decodes must re-encode to a packet that decodes to the same value.
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

struct Lab {
    now: Instant,
    client: Endpoint,
    server: Endpoint,
    client_addr: SocketAddr,
    server_addr: SocketAddr,
    h: AssocHandle,
}

impl Lab {
    fn pump(&mut self, rounds: usize) {
        for _ in 0..rounds {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit(self.now) {
                self.server.handle_datagram(
                    self.now,
                    Some(self.server_addr),
                    self.client_addr,
                    &t.contents,
                );
                moved = true;
            }
            while let Some(t) = self.server.poll_transmit(self.now) {
                self.client.handle_datagram(
                    self.now,
                    Some(self.client_addr),
                    self.server_addr,
                    &t.contents,
                );
                moved = true;
            }
            while self.client.poll_event().is_some() {}
            while self.server.poll_event().is_some() {}
            if !moved {
                break;
            }
        }
    }
}

/// Sets up an established association, then feeds arbitrary packets (split at 0xff;
/// the first byte of each piece steers it) into both ends, interleaved with real
/// traffic and timer runs. Nothing may panic, and the engines must keep answering.
pub fn association_input(data: &[u8]) {
    let now = Instant::now();
    let client_addr: SocketAddr = "10.0.0.1:9899".parse().expect("literal");
    let server_addr: SocketAddr = "10.0.0.2:9899".parse().expect("literal");
    let mut client = Endpoint::new(EndpointConfig::default(), 1).expect("default config");
    let server = Endpoint::new(EndpointConfig::default(), 2).expect("default config");
    let h = client
        .connect(now, &[server_addr], 5000, 5000)
        .expect("fresh endpoint");
    let mut lab = Lab {
        now,
        client,
        server,
        client_addr,
        server_addr,
        h,
    };
    lab.pump(8);
    let tags = |lab: &Lab| {
        let c = lab
            .client
            .association_ref(lab.h)
            .map(|a| (a.local_tag, a.peer_tag))
            .unwrap_or_default();
        c
    };
    for piece in data.split(|b| *b == 0xff).take(64) {
        let Some((&mode, body)) = piece.split_first() else {
            continue;
        };
        let mut pkt = body.to_vec();
        let (client_tag, server_tag) = tags(&lab);
        if pkt.len() >= 12 {
            pkt[0..2].copy_from_slice(&5000u16.to_be_bytes());
            pkt[2..4].copy_from_slice(&5000u16.to_be_bytes());
            match mode & 3 {
                0 => pkt[4..8].copy_from_slice(&client_tag.to_be_bytes()),
                1 => pkt[4..8].copy_from_slice(&server_tag.to_be_bytes()),
                _ => {}
            }
            if mode & 4 == 0 {
                finish_packet(&mut pkt);
            }
        }
        if mode & 8 == 0 {
            lab.client
                .handle_datagram(lab.now, Some(client_addr), server_addr, &pkt);
        } else {
            lab.server
                .handle_datagram(lab.now, Some(server_addr), client_addr, &pkt);
        }
        if mode & 16 != 0 {
            let _ = lab.client.send(
                lab.h,
                u16::from(mode >> 5),
                11,
                mode & 32 == 0,
                bytes::Bytes::from(vec![mode; 3000]),
            );
        }
        lab.now += Duration::from_millis(u64::from(mode) * 8);
        lab.client.handle_timeout(lab.now);
        lab.server.handle_timeout(lab.now);
        lab.pump(4);
    }
}
