//! Loopback ports: free ones for the processes to bind, and waiting for a listener to
//! come up or a killed one's port to become free again.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::Mutex;
use std::time::Duration;

use super::wait::poll;

/// Ports handed out by this process, as (TCP?, port): never twice, so tests running in
/// parallel threads cannot be given the same one.
static HANDED: Mutex<BTreeSet<(bool, u16)>> = Mutex::new(BTreeSet::new());

/// Where ports are handed out from: below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`, 32768.. by default), so a process that binds port
/// 0 or opens a connection can never take a port handed out here before its user has
/// bound it. (A port taken and released, as before, could be the very next one the
/// kernel gives to a backend binding port 0 in another test.)
fn range() -> std::ops::Range<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    10_000..low.max(12_000)
}

/// A port of `range()` that `bind` accepts and this process never handed out; the
/// search starts at a place that depends on the process, so test binaries run one
/// after another do not walk the same ports.
fn pick(tcp: bool, bind: impl Fn(u16) -> bool) -> u16 {
    let r = range();
    let len = u32::from(r.end - r.start);
    let mut handed = HANDED.lock().unwrap_or_else(|e| e.into_inner());
    let seed = std::process::id().wrapping_mul(2_654_435_761) ^ handed.len() as u32;
    for i in 0..len {
        let p = r.start + ((seed.wrapping_add(i.wrapping_mul(7_919))) % len) as u16;
        if !handed.contains(&(tcp, p)) && bind(p) {
            handed.insert((tcp, p));
            return p;
        }
    }
    panic!("no free {} port in {r:?}", if tcp { "TCP" } else { "UDP" });
}

/// A free UDP port on loopback, not handed out before by this process and outside the
/// kernel's ephemeral range (see [`range`]).
pub fn free_udp_port() -> u16 {
    pick(false, |p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
}

/// A free TCP port on loopback, not handed out before by this process and outside the
/// kernel's ephemeral range (see [`range`]).
pub fn free_tcp_port() -> u16 {
    pick(true, |p| TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// Waits until something accepts TCP connections on `port`; panics after `within`.
pub fn wait_listen(port: u16, within: Duration) {
    let up = poll(within, Duration::from_millis(10), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(up.is_some(), "nothing listens on {port}");
}

/// Waits until TCP `port` can be bound again (after its listener was killed); panics
/// after `within`.
pub fn wait_port_free(port: u16, within: Duration) {
    let free = poll(within, Duration::from_millis(10), || {
        TcpListener::bind(("127.0.0.1", port)).ok()
    });
    assert!(free.is_some(), "port {port} stays busy");
}
