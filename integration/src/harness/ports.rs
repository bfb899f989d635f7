//! Loopback ports: free ones for the processes to bind, and waiting for a listener to
//! come up or a killed one's port to become free again.

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use super::wait::poll;

/// A free UDP port on loopback (bound and released; good enough for tests).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a UDP port on loopback")
        .port()
}

/// A free TCP port on loopback.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a TCP port on loopback")
        .port()
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
