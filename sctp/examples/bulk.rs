//! Engine cost alone: bulk transfer between two endpoints in memory (datagrams handed
//! across in-process, no sockets, no clock but `Instant::now`), in MB/s. The comparison
//! with TCP over real sockets, through the product's driver, is `pg-transport-bench`
//! in `integration/`. Run: `cargo run --release -p poolgate-sctp --example bulk [MB]`.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use sctp::{Endpoint, EndpointConfig, Event};

// The allocator the poolgate binary ships with.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MSG: usize = 64 * 1024;

fn config() -> EndpointConfig {
    let mut c = EndpointConfig::default();
    c.association.pmtu = 65_507;
    c.association.receive_buffer = 8 << 20;
    c.association.send_buffer = 8 << 20;
    c.association.max_message_size = 1 << 20;
    c
}

fn in_memory(total: usize) -> f64 {
    let a_addr: SocketAddr = "10.0.0.1:9899".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:9899".parse().unwrap();
    let mut a = Endpoint::new(config(), 1).unwrap();
    let mut b = Endpoint::new(config(), 2).unwrap();
    let start = Instant::now();
    let h = a.connect(start, &[b_addr], 1, 1).unwrap();
    let payload = Bytes::from(vec![0x5a; MSG]);
    let (mut sent, mut received) = (0usize, 0usize);
    let mut buf = Vec::with_capacity(70_000);
    while received < total {
        let now = Instant::now();
        while sent < total && a.send(h, 0, 11, true, payload.clone()).is_ok() {
            sent += MSG;
        }
        while let Some((dst, _)) = a.poll_transmit_into(now, &mut buf) {
            let _ = dst;
            b.handle_datagram(now, Some(b_addr), a_addr, &buf);
        }
        while let Some((_, _)) = b.poll_transmit_into(now, &mut buf) {
            a.handle_datagram(now, Some(a_addr), b_addr, &buf);
        }
        while let Some((_, e)) = b.poll_event() {
            if let Event::Data { bytes, .. } = e {
                received += bytes.len();
            }
        }
        while a.poll_event().is_some() {}
        if a.poll_timeout().is_some_and(|t| t <= now) {
            a.handle_timeout(now);
        }
        if b.poll_timeout().is_some_and(|t| t <= now) {
            b.handle_timeout(now);
        }
    }
    total as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn main() {
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    println!("in-memory engine: {:.0} MB/s", in_memory(mb << 20));
}
