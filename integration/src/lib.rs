//! Support code for integration tests and load tools: process handling, free ports,
//! policy parsing for the command-line test tools.

pub mod capture;

use std::net::SocketAddr;
use std::path::PathBuf;

use pool_core::types::Policy;
use poolgate::transport::sctp_udp::SctpUdpConfig;

/// Engine settings for a test tool bound at `bind` (loopback: 64 KiB datagrams).
pub fn transport_for(bind: SocketAddr) -> SctpUdpConfig {
    SctpUdpConfig::for_address(bind)
}

/// Parses `rr`, `wrr:W`, `random`, `wrand:W`, `prio:P`, `lu:LOAD`, `lud:LOAD:DEG`,
/// `plu:LOAD:INC`, `rlu:LOAD`.
pub fn parse_policy(s: &str) -> Result<Policy, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let num = |i: usize| -> Result<u32, String> {
        parts
            .get(i)
            .ok_or(format!("policy `{s}` needs a value"))?
            .parse()
            .map_err(|e| format!("policy `{s}`: {e}"))
    };
    Ok(match parts[0] {
        "rr" => Policy::RoundRobin,
        "wrr" => Policy::WeightedRoundRobin { weight: num(1)? },
        "random" => Policy::Random,
        "wrand" => Policy::WeightedRandom { weight: num(1)? },
        "prio" => Policy::Priority { priority: num(1)? },
        "lu" => Policy::LeastUsed { load: num(1)? },
        "lud" => Policy::LeastUsedDegradation {
            load: num(1)?,
            degradation: num(2)?,
        },
        "plu" => Policy::PriorityLeastUsed {
            load: num(1)?,
            increment: num(2)?,
        },
        "rlu" => Policy::RandomizedLeastUsed { load: num(1)? },
        other => return Err(format!("unknown policy `{other}`")),
    })
}

/// Directory holding the workspace's built binaries (`target/<profile>`), derived
/// from the running executable: a test (`target/<profile>/deps/<test>`) or a tool
/// (`target/<profile>/<tool>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("profile dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Path of a workspace binary; panics with a clear message when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not built: run the whole suite (cargo test --workspace) so every binary is built",
        p.display()
    );
    p
}

/// A free UDP port on loopback (bound and released; good enough for tests).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free TCP port on loopback.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (SIGKILL) when dropped.
pub struct Child(pub std::process::Child);

impl Child {
    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY-free: kill(2) through the libc-free `kill` command keeps this crate
        // free of unsafe; the tests run on Linux where it exists.
        let _ = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.0.id().to_string())
            .status();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
