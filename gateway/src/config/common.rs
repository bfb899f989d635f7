//! Settings and checks shared by the roles.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use super::values::{format_duration, Addr};
use super::Checker;

/// The Prometheus metrics endpoint (`GET /metrics`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve metrics at all.
    pub enabled: bool,
    /// TCP address of the HTTP endpoint.
    pub listen: Addr,
}

impl MetricsConfig {
    pub(crate) fn validate(&self, check: &mut Checker<'_>, path: &str) {
        if self.enabled && !self.listen.0.ip().is_loopback() {
            check.warning(
                &format!("{path}.listen"),
                "metrics are served to the network without authentication; prefer a loopback or management address",
            );
        }
    }
}

/// A pair of keep-alive timings: how often to probe and how long to wait for the answer.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepAlive {
    /// Time between probes.
    #[serde(deserialize_with = "super::values::duration")]
    pub interval: Duration,
    /// How long to wait for an answer before declaring the peer dead.
    #[serde(deserialize_with = "super::values::duration")]
    pub timeout: Duration,
}

/// Error unless `d` is positive.
pub(crate) fn positive(check: &mut Checker<'_>, path: &str, d: Duration) {
    if d.is_zero() {
        check.error(path, "must be longer than zero");
    }
}

/// Most worker threads a role's process may ask for.
pub const MAX_THREADS: u32 = 1024;

/// A role's `threads`: 0 (one per CPU) to [`MAX_THREADS`].
pub(crate) fn threads(check: &mut Checker<'_>, path: &str, threads: u32) {
    if threads > MAX_THREADS {
        check.error(
            path,
            format!("at most {MAX_THREADS} worker threads (0 = one per CPU)"),
        );
    }
}

/// Keep-alive timing: both positive, and the timeout no longer than the interval —
/// a longer timeout means probes overlap and a dead peer is declared late.
pub(crate) fn keepalive(
    check: &mut Checker<'_>,
    interval_path: &str,
    timeout_path: &str,
    interval: Duration,
    timeout: Duration,
) {
    positive(check, interval_path, interval);
    positive(check, timeout_path, timeout);
    if timeout > interval && !interval.is_zero() {
        check.error(
            timeout_path,
            format!(
                "keep-alive timeout ({}) is longer than the interval ({}); probes would overlap — make the timeout at most the interval",
                format_duration(timeout),
                format_duration(interval)
            ),
        );
    }
}

/// Error when a pool handle is empty or too long for the handlespace.
pub(crate) fn pool_handle(check: &mut Checker<'_>, path: &str, handle: &str) {
    if handle.is_empty() {
        check.error(path, "pool handle must not be empty");
    } else if handle.len() > pool_core::types::MAX_POOL_HANDLE_LEN {
        check.error(
            path,
            format!(
                "pool handle is {} bytes; at most {} are allowed",
                handle.len(),
                pool_core::types::MAX_POOL_HANDLE_LEN
            ),
        );
    }
}

/// Error on an empty address list and on duplicates inside it.
pub(crate) fn address_list(check: &mut Checker<'_>, path: &str, addrs: &[Addr], what: &str) {
    if addrs.is_empty() {
        check.error(path, format!("at least one {what} address is needed"));
    }
    let mut seen = HashSet::new();
    for (i, a) in addrs.iter().enumerate() {
        if !seen.insert(a.0) {
            check.error(
                &format!("{path}[{i}]"),
                format!("address {a} is listed twice"),
            );
        }
    }
}

/// Smallest receive window and send buffer: the largest message (256 KiB) must fit.
pub const MIN_TRANSPORT_WINDOW: u64 = 256 * 1024;
/// Largest receive window and send buffer (per association).
pub const MAX_TRANSPORT_WINDOW: u64 = 256 << 20;
/// Bounds of the UDP socket's kernel buffers.
pub const SOCKET_BUFFER_RANGE: std::ops::RangeInclusive<u64> = 65_536..=(1 << 30);
/// Most retransmissions before a path or an association gives up.
pub const MAX_RETRANSMISSIONS: u32 = 64;

/// `[<role>.transport]`: the SCTP engine's failure detection, timers and buffers, for
/// every association of the role (applied at start; a reload names them for a restart).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TransportSettings {
    /// Time between HEARTBEATs on an idle path [HB.interval].
    #[serde(deserialize_with = "super::values::duration")]
    pub heartbeat_interval: Duration,
    /// First retransmission timeout [RTO.Initial].
    #[serde(deserialize_with = "super::values::duration")]
    pub rto_initial: Duration,
    /// Lower bound of the retransmission timeout [RTO.Min].
    #[serde(deserialize_with = "super::values::duration")]
    pub rto_min: Duration,
    /// Upper bound of the retransmission timeout [RTO.Max].
    #[serde(deserialize_with = "super::values::duration")]
    pub rto_max: Duration,
    /// Unanswered retransmissions or heartbeats before a path is marked inactive
    /// [Path.Max.Retrans].
    pub path_max_retransmissions: u32,
    /// Unanswered retransmissions or heartbeats before the association is declared
    /// dead [Association.Max.Retrans].
    pub max_retransmissions: u32,
    /// Receive window advertised per association, in bytes.
    pub receive_window: u64,
    /// Send buffer per association (queued plus unacknowledged), in bytes.
    pub send_buffer: u64,
    /// SO_RCVBUF and SO_SNDBUF of the UDP socket, in bytes (the kernel caps them at
    /// `net.core.rmem_max` / `wmem_max`).
    pub socket_buffer: u64,
}

impl Default for TransportSettings {
    /// The engine's defaults, as shipped in `config/ppu.toml` and `config/ppe.toml`.
    fn default() -> Self {
        TransportSettings {
            heartbeat_interval: Duration::from_secs(30),
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            path_max_retransmissions: 5,
            max_retransmissions: 10,
            receive_window: 1 << 20,
            send_buffer: 1 << 20,
            socket_buffer: 4 << 20,
        }
    }
}

impl TransportSettings {
    /// Checks every key; `path` is the section, e.g. `ppu.transport`.
    pub(crate) fn validate(&self, check: &mut Checker<'_>, path: &str) {
        let key = |k: &str| format!("{path}.{k}");
        positive(check, &key("heartbeat_interval"), self.heartbeat_interval);
        positive(check, &key("rto_initial"), self.rto_initial);
        positive(check, &key("rto_min"), self.rto_min);
        positive(check, &key("rto_max"), self.rto_max);
        if self.rto_min > self.rto_max {
            check.error(
                &key("rto_min"),
                format!(
                    "rto_min ({}) is longer than rto_max ({})",
                    format_duration(self.rto_min),
                    format_duration(self.rto_max)
                ),
            );
        } else if self.rto_initial < self.rto_min || self.rto_initial > self.rto_max {
            check.error(
                &key("rto_initial"),
                format!(
                    "must lie within rto_min and rto_max ({} to {})",
                    format_duration(self.rto_min),
                    format_duration(self.rto_max)
                ),
            );
        }
        for (k, v) in [
            ("path_max_retransmissions", self.path_max_retransmissions),
            ("max_retransmissions", self.max_retransmissions),
        ] {
            if v == 0 || v > MAX_RETRANSMISSIONS {
                check.error(&key(k), format!("must be 1 to {MAX_RETRANSMISSIONS}"));
            }
        }
        if self.path_max_retransmissions > self.max_retransmissions {
            check.warning(
                &key("path_max_retransmissions"),
                format!(
                    "larger than max_retransmissions ({}): the association is declared dead before a path is given up, so a multi-homed peer never gets its traffic moved to another address",
                    self.max_retransmissions
                ),
            );
        }
        for (k, v) in [
            ("receive_window", self.receive_window),
            ("send_buffer", self.send_buffer),
        ] {
            if !(MIN_TRANSPORT_WINDOW..=MAX_TRANSPORT_WINDOW).contains(&v) {
                check.error(
                    &key(k),
                    format!("must be {MIN_TRANSPORT_WINDOW} to {MAX_TRANSPORT_WINDOW} bytes (the largest message, 256 KiB, must fit)"),
                );
            }
        }
        if !SOCKET_BUFFER_RANGE.contains(&self.socket_buffer) {
            check.error(
                &key("socket_buffer"),
                format!(
                    "must be {} to {} bytes",
                    SOCKET_BUFFER_RANGE.start(),
                    SOCKET_BUFFER_RANGE.end()
                ),
            );
        }
    }

    /// Sets these values on a transport's configuration. Call only with validated
    /// settings (the ranges above make every conversion lossless).
    pub fn apply(&self, t: &mut crate::transport::sctp_udp::SctpUdpConfig) {
        let a = &mut t.engine.association;
        a.heartbeat_interval = Some(self.heartbeat_interval);
        a.rto_initial = self.rto_initial;
        a.rto_min = self.rto_min;
        a.rto_max = self.rto_max;
        a.path_max_retransmissions = self.path_max_retransmissions;
        a.max_retransmissions = self.max_retransmissions;
        a.receive_buffer = u32::try_from(self.receive_window).unwrap_or(u32::MAX);
        a.send_buffer = usize::try_from(self.send_buffer).unwrap_or(usize::MAX);
        t.send_budget = a.send_buffer;
        t.socket_buffer = usize::try_from(self.socket_buffer).unwrap_or(usize::MAX);
    }
}
