//! Two endpoints wired back to back, packet by packet: the fixture the association's
//! unit tests share (`tests.rs`, `reconfig_tests.rs`). A (10.0.0.1, SCTP port 1) connects
//! to B (10.0.0.2, port 2); nothing is lost unless a test drops it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::wire::{Chunk, CommonHeader, Packet};
use crate::{AssocHandle, Endpoint, EndpointConfig, Event};

pub(crate) const A: &str = "10.0.0.1:9899";
pub(crate) const B: &str = "10.0.0.2:9899";

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Every packet an endpoint wants sent now.
pub(crate) fn out(ep: &mut Endpoint, now: Instant) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| ep.poll_transmit(now).map(|t| t.contents)).collect()
}

/// Every pending event of an endpoint.
pub(crate) fn events(ep: &mut Endpoint) -> Vec<Event> {
    std::iter::from_fn(|| ep.poll_event().map(|(_, e)| e)).collect()
}

pub(crate) struct Pair {
    pub a: Endpoint,
    pub b: Endpoint,
    pub now: Instant,
    /// A's handle of the association.
    pub ha: AssocHandle,
}

impl Pair {
    /// A has started the handshake (its INIT is queued); nothing exchanged yet.
    pub fn connecting(ca: EndpointConfig, cb: EndpointConfig) -> Pair {
        let now = Instant::now();
        let mut a = Endpoint::new(ca, 1).unwrap();
        let b = Endpoint::new(cb, 2).unwrap();
        let ha = a.connect(now, &[addr(B)], 1, 2).unwrap();
        Pair { a, b, now, ha }
    }

    /// The handshake done; both `Connected` events taken (and checked).
    pub fn established_with(ca: EndpointConfig, cb: EndpointConfig) -> Pair {
        let mut p = Pair::connecting(ca, cb);
        p.exchange();
        assert_eq!(events(&mut p.a), vec![Event::Connected]);
        assert_eq!(events(&mut p.b), vec![Event::Connected]);
        p
    }

    /// B's handle of the association.
    pub fn hb(&self) -> AssocHandle {
        self.b.handles()[0]
    }

    pub fn deliver_to_b(&mut self, pkts: Vec<Vec<u8>>) {
        for p in pkts {
            self.b.handle_datagram(self.now, Some(addr(B)), addr(A), &p);
        }
    }

    pub fn deliver_to_a(&mut self, pkts: Vec<Vec<u8>>) {
        for p in pkts {
            self.a.handle_datagram(self.now, Some(addr(A)), addr(B), &p);
        }
    }

    /// Passes packets both ways until neither side has any (at most 20 rounds).
    pub fn exchange(&mut self) {
        for _ in 0..20 {
            let pa = out(&mut self.a, self.now);
            let pb = out(&mut self.b, self.now);
            if pa.is_empty() && pb.is_empty() {
                return;
            }
            self.deliver_to_b(pa);
            self.deliver_to_a(pb);
        }
    }

    /// Exchanges packets and runs timers for `span` of simulated time.
    pub fn run(&mut self, span: Duration) {
        let end = self.now + span;
        loop {
            self.exchange();
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = t.max(self.now);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                }
                _ => return,
            }
        }
    }

    /// A packet as B would send it to A.
    pub fn packet_of_b(&self, chunks: Vec<Chunk>) -> Vec<u8> {
        let tag = self.a.association_ref(self.ha).unwrap().local_tag;
        Packet {
            header: CommonHeader {
                src_port: 2,
                dst_port: 1,
                vtag: tag,
            },
            chunks,
        }
        .encode()
    }

    /// A packet as A would send it to B.
    pub fn packet_of_a(&self, chunks: Vec<Chunk>) -> Vec<u8> {
        let tag = self.a.association_ref(self.ha).unwrap().peer_tag;
        Packet {
            header: CommonHeader {
                src_port: 1,
                dst_port: 2,
                vtag: tag,
            },
            chunks,
        }
        .encode()
    }
}
