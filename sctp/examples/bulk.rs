//! Throughput check: bulk transfer between two endpoints, first in memory (engine cost
//! only), then over real loopback UDP sockets with a minimal blocking driver, compared
//! with loopback TCP. Run: `cargo run --release -p poolgate-sctp --example bulk [MB]`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sctp::{Endpoint, EndpointConfig, Event};

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

/// Runs one endpoint on a UDP socket until `done` says stop.
fn drive(sock: &UdpSocket, ep: &mut Endpoint, mut on_tick: impl FnMut(&mut Endpoint) -> bool) {
    let mut rx = vec![0u8; 65_536];
    let mut tx = Vec::with_capacity(65_536);
    let local = sock.local_addr().unwrap();
    loop {
        if on_tick(ep) {
            // Flush what is left (final SACKs) briefly.
            let now = Instant::now();
            while let Some((dst, _)) = ep.poll_transmit_into(now, &mut tx) {
                let _ = sock.send_to(&tx, dst);
            }
            return;
        }
        let now = Instant::now();
        while let Some((dst, _)) = ep.poll_transmit_into(now, &mut tx) {
            let _ = sock.send_to(&tx, dst);
        }
        let wait = ep
            .poll_timeout()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(50))
            .clamp(Duration::from_micros(100), Duration::from_millis(50));
        sock.set_read_timeout(Some(wait)).unwrap();
        if let Ok((n, from)) = sock.recv_from(&mut rx) {
            let now = Instant::now();
            ep.handle_datagram(now, Some(local), from, &rx[..n]);
            // Drain whatever else is already queued without blocking.
            sock.set_nonblocking(true).unwrap();
            while let Ok((n, from)) = sock.recv_from(&mut rx) {
                ep.handle_datagram(now, Some(local), from, &rx[..n]);
            }
            sock.set_nonblocking(false).unwrap();
        }
        let now = Instant::now();
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
    }
}

fn set_bufs(sock: &UdpSocket) {
    // Bigger socket buffers absorb bursts of 64 KB datagrams (capped by rmem_max).
    let s = socket2::SockRef::from(sock);
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
}

fn udp(total: usize) -> f64 {
    let sa = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sb = UdpSocket::bind("127.0.0.1:0").unwrap();
    set_bufs(&sa);
    set_bufs(&sb);
    let b_addr = sb.local_addr().unwrap();
    let receiver = std::thread::spawn(move || {
        let mut b = Endpoint::new(config(), 2).unwrap();
        let mut received = 0usize;
        let mut start = None;
        drive(&sb, &mut b, |ep| {
            while let Some((_, e)) = ep.poll_event() {
                if let Event::Data { bytes, .. } = e {
                    start.get_or_insert_with(Instant::now);
                    received += bytes.len();
                }
            }
            received >= total
        });
        start.map(|s: Instant| s.elapsed()).unwrap_or_default()
    });
    let mut a = Endpoint::new(config(), 1).unwrap();
    let h = a.connect(Instant::now(), &[b_addr], 1, 1).unwrap();
    let payload = Bytes::from(vec![0x5a; MSG]);
    let mut sent = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    drive(&sa, &mut a, |ep| {
        while let Some((_, _e)) = ep.poll_event() {}
        while sent < total && ep.send(h, 0, 11, true, payload.clone()).is_ok() {
            sent += MSG;
        }
        (sent >= total
            && ep
                .association_ref(h)
                .is_some_and(|x| x.buffered_amount() == 0))
            || Instant::now() > deadline
    });
    let took = receiver.join().unwrap();
    let stats = a.association_ref(h).map(|x| x.stats().clone());
    eprintln!("sender stats: {stats:?}");
    total as f64 / took.as_secs_f64() / 1e6
}

fn tcp(total: usize) -> f64 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; MSG];
        let mut n = 0;
        let start = Instant::now();
        while n < total {
            n += s.read(&mut buf).unwrap();
        }
        start.elapsed()
    });
    let mut c = TcpStream::connect(addr).unwrap();
    let buf = vec![0x5au8; MSG];
    let mut n = 0;
    while n < total {
        c.write_all(&buf).unwrap();
        n += MSG;
    }
    let took = t.join().unwrap();
    total as f64 / took.as_secs_f64() / 1e6
}

/// Request/response round trips per second with 100-byte messages over loopback UDP.
fn udp_rr(rounds: usize) -> f64 {
    let sa = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sb = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b_addr = sb.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut b = Endpoint::new(config(), 2).unwrap();
        let mut answered = 0usize;
        drive(&sb, &mut b, |ep| {
            while let Some((h, e)) = ep.poll_event() {
                if let Event::Data { bytes, .. } = e {
                    let _ = ep.send(h, 0, 11, true, bytes);
                    answered += 1;
                }
            }
            answered >= rounds
        });
    });
    let mut a = Endpoint::new(config(), 1).unwrap();
    let h = a.connect(Instant::now(), &[b_addr], 1, 1).unwrap();
    let msg = Bytes::from(vec![1u8; 100]);
    let mut done = 0usize;
    let mut start = None;
    let mut in_flight = false;
    drive(&sa, &mut a, |ep| {
        while let Some((_, e)) = ep.poll_event() {
            match e {
                Event::Connected => start = Some(Instant::now()),
                Event::Data { .. } => {
                    done += 1;
                    in_flight = false;
                }
                _ => {}
            }
        }
        if start.is_some() && !in_flight && done < rounds {
            ep.send(h, 0, 11, true, msg.clone()).unwrap();
            in_flight = true;
        }
        done >= rounds
    });
    server.join().unwrap();
    rounds as f64 / start.unwrap().elapsed().as_secs_f64()
}

fn tcp_rr(rounds: usize) -> f64 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = [0u8; 100];
        for _ in 0..rounds {
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        }
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_nodelay(true).unwrap();
    let mut buf = [1u8; 100];
    let start = Instant::now();
    for _ in 0..rounds {
        c.write_all(&buf).unwrap();
        c.read_exact(&mut buf).unwrap();
    }
    t.join().unwrap();
    rounds as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // glibc returns freed 64 KB blocks to the kernel and faults them in again; a
    // driver should keep them (or use another allocator). Same setting for all runs.
    // SAFETY: plain libc call with constant arguments before any threads start.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
    }
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let total = mb << 20;
    let which = std::env::args().nth(2).unwrap_or_else(|| "all".into());
    if which == "all" || which == "mem" {
        println!("in-memory engine: {:.0} MB/s", in_memory(total));
    }
    if which == "all" || which == "udp" {
        println!("loopback UDP:     {:.0} MB/s", udp(total));
    }
    if which == "all" || which == "tcp" {
        println!("loopback TCP:     {:.0} MB/s", tcp(total));
    }
    if which == "all" || which == "rr" {
        println!("request/response UDP: {:.0} round trips/s", udp_rr(20_000));
        println!("request/response TCP: {:.0} round trips/s", tcp_rr(20_000));
    }
}
