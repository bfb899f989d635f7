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
