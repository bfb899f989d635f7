//! Fuzz bodies as plain functions, run by `cargo fuzz` (sctp/fuzz) and by proptest so CI
//! covers them too.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::wire::{finish_packet, Chunk, Packet, ReConfigBody, ReconfigParam, ReconfigResult};
use crate::{AssocHandle, Endpoint, EndpointConfig};

/// Decodes arbitrary bytes as a packet (and again with a fixed-up checksum); whatever
/// decodes must re-encode to a packet that decodes to the same value.
pub fn packet_decode(data: &[u8]) {
    let _ = Packet::decode(data);
    // The endpoint's peek at the first chunk and the by-value DATA decoding agree with
    // the chunk iterator and the by-reference decoding.
    let mut chunks = crate::wire::ChunkIter::new(bytes::Bytes::copy_from_slice(data));
    let first = chunks.next().and_then(Result::ok);
    assert_eq!(
        crate::wire::first_chunk_type(data).ok(),
        first.as_ref().map(|c| c.typ)
    );
    for raw in first.into_iter().chain(chunks.map_while(Result::ok)) {
        assert_eq!(Chunk::decode_owned(raw.clone()), Chunk::decode(&raw));
    }
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
            if mode & 0x60 == 0x60 {
                // A RE-CONFIG whose sequence numbers and TSNs are near what the target
                // expects, so the reset logic itself is exercised, not only the checks.
                let target = if mode & 8 == 0 {
                    lab.client.association_ref(lab.h)
                } else {
                    lab.server
                        .handles()
                        .first()
                        .and_then(|h| lab.server.association_ref(*h))
                };
                let hints = target.and_then(|a| a.reconfig_hints()).unwrap_or_default();
                pkt.truncate(12);
                Chunk::ReConfig(ReConfigBody::Params(crafted_reconfig(&body[12..], hints)))
                    .encode(&mut pkt);
            }
            if mode & 4 == 0 {
                finish_packet(&mut pkt);
            }
        }
        let (ep, local, remote) = if mode & 8 == 0 {
            (&mut lab.client, client_addr, server_addr)
        } else {
            (&mut lab.server, server_addr, client_addr)
        };
        if mode & 0x81 == 0x81 {
            // As one segment of a larger receive buffer (a GRO train): what the engine
            // keeps of it is copied out or stays a slice by its own rules.
            let mut buffer = pkt.clone();
            buffer.resize(pkt.len() * 8 + 4096, 0);
            let buffer = bytes::Bytes::from(buffer);
            let len = buffer.len();
            ep.handle_datagram_in(lab.now, Some(local), remote, buffer.slice(..pkt.len()), len);
        } else {
            ep.handle_datagram(lab.now, Some(local), remote, &pkt);
        }
        if mode & 0xd0 == 0xd0 {
            let streams: Vec<u16> = body.iter().take(2).map(|b| u16::from(b % 5)).collect();
            let _ = lab.client.reset_streams(lab.h, &streams);
            if let Some(h) = lab.server.handles().first().copied() {
                let _ = lab
                    .server
                    .reset_streams(h, &streams[..streams.len().min(1)]);
            }
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

/// Up to two RE-CONFIG parameters built from fuzz bytes around the target's `hints`
/// (next expected request sequence number, cumulative TSN, latest own request).
fn crafted_reconfig(bytes: &[u8], hints: (u32, u32, u32)) -> Vec<ReconfigParam> {
    let (peer_seq, cum, own_seq) = hints;
    let mut it = bytes.iter().copied();
    let mut next = || it.next().unwrap_or(0);
    let mut params = Vec::new();
    for _ in 0..(1 + next() % 2) {
        let kind = next() % 6;
        let seq = peer_seq.wrapping_add(u32::from(next() % 3)).wrapping_sub(1);
        let streams: Vec<u16> = (0..next() % 4).map(|_| u16::from(next() % 8)).collect();
        let tsn = cum.wrapping_add(u32::from(next() % 8)).wrapping_sub(2);
        params.push(match kind {
            0 => ReconfigParam::OutgoingSsnReset {
                req_seq: seq,
                resp_seq: own_seq,
                last_tsn: tsn,
                streams,
            },
            1 => ReconfigParam::IncomingSsnReset {
                req_seq: seq,
                streams,
            },
            2 => ReconfigParam::SsnTsnReset { req_seq: seq },
            3 => ReconfigParam::Response {
                resp_seq: own_seq.wrapping_add(u32::from(next() % 2)),
                result: ReconfigResult::from_code(u32::from(next() % 8)),
                next_tsns: None,
            },
            4 => ReconfigParam::AddOutgoingStreams {
                req_seq: seq,
                count: u16::from(next()),
            },
            _ => ReconfigParam::AddIncomingStreams {
                req_seq: seq,
                count: u16::from(next()),
            },
        });
    }
    params
}
