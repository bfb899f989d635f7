//! Support code for integration tests and load tools: the process harness (real
//! registrar/PPE/PPU/backend processes on loopback), packet capture, policy parsing for
//! the command-line test tools.

pub mod capture;
pub mod harness;

pub use harness::ports::{free_tcp_port, free_udp_port};
pub use harness::process::{bin, bin_dir, Child};

use std::net::SocketAddr;

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
