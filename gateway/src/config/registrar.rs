//! Registrar configuration (`[registrar]`, shipped as `config/registrar.toml`).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use pool_core::wire::MAX_RESOLUTION_PES;
use serde::Deserialize;

use super::common::{self, KeepAlive, MetricsConfig, TransportSettings};
use super::values::{Addr, Secret};
use super::{Checker, Role, Section};

/// Everything the registrar reads from `[registrar]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrarConfig {
    /// Registrar identifier; 0 = pick a random non-zero one at start.
    pub id: u32,
    /// UDP addresses for SCTP over UDP (several = multi-homed).
    pub listen: Vec<Addr>,
    /// SCTP port of ASAP (PEs and PUs talk to it).
    pub sctp_port: u16,
    /// SCTP port of ENRP (registrar peers talk to it).
    pub enrp_sctp_port: u16,
    /// Endpoint keep-alive towards the PEs this registrar is home of.
    pub keepalive: KeepAlive,
    /// Failure reports (ENDPOINT_UNREACHABLE) that remove a PE (RFC 5352 MAX-BAD-PE-REPORT).
    pub max_bad_pe_report: u32,
    /// What counts as one distinct reporter against `max_bad_pe_report` and the report
    /// rate: a peer address (one host, however many associations) or an association.
    pub failure_report_scope: FailureReportScope,
    /// Most PEs one handle resolution returns (RFC 5351 §2.2.4 `MAX-NUMBER-OF-ITEMS`).
    pub max_resolution_items: u32,
    /// Registration life bounds and policy for unlisted pools.
    pub registration: RegistrationConfig,
    /// Resource limits against floods and hostile peers.
    pub limits: Limits,
    /// Pools with registration secrets (`[[registrar.pool]]`).
    #[serde(rename = "pool")]
    pub pools: Vec<PoolEntry>,
    /// Server announces, so PEs and PUs find registrars without a static list.
    pub announce: Announce,
    /// Static ENRP peers (`[[registrar.peer]]`).
    #[serde(rename = "peer")]
    pub peers: Vec<Peer>,
    /// Metrics endpoint.
    pub metrics: MetricsConfig,
    /// ENRP timing, secret and limits (`[registrar.enrp]`).
    pub enrp: EnrpSettings,
    /// SCTP engine settings of every association (`[registrar.transport]`).
    pub transport: TransportSettings,
    /// Worker threads of the process (0 = one per CPU).
    pub threads: u32,
}

/// `[registrar.enrp]`: ENRP between registrars.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrpSettings {
    /// Time between presence messages.
    #[serde(deserialize_with = "super::values::duration")]
    pub presence_interval: Duration,
    /// Silence after which a peer is probed.
    #[serde(deserialize_with = "super::values::duration")]
    pub max_time_last_heard: Duration,
    /// Time a probed peer has to answer.
    #[serde(deserialize_with = "super::values::duration")]
    pub max_time_no_response: Duration,
    /// Time to collect takeover agreement.
    #[serde(deserialize_with = "super::values::duration")]
    pub takeover_timeout: Duration,
    /// Age of a peer's last table after which it is audited although the checksums
    /// agree (the 16-bit checksum cannot see every drift).
    #[serde(deserialize_with = "super::values::duration")]
    pub full_audit_interval: Duration,
    /// Inline shared secret ("" = none).
    #[serde(default)]
    pub secret: String,
    /// Shared secret from a file.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Most PEs one peer may own here.
    pub max_pes_per_peer: u32,
    /// The secret after validation (from `secret` or `secret_file`).
    #[serde(skip)]
    pub resolved_secret: Secret,
}

/// Registration life bounds and what to do with pools not listed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfig {
    /// Shortest registration life accepted from a PE (shorter ones are raised).
    #[serde(deserialize_with = "super::values::duration")]
    pub min_life: Duration,
    /// Longest registration life accepted (longer ones are lowered).
    #[serde(deserialize_with = "super::values::duration")]
    pub max_life: Duration,
    /// Whether PEs may register into pools not listed in `[[registrar.pool]]`.
    pub unlisted_pools: UnlistedPools,
}

/// `registrar.failure_report_scope`: who counts as one reporter of a PE's failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureReportScope {
    /// One peer address is one reporter, however many associations it opens.
    Address,
    /// Every association is a reporter (pool users sharing an address: loopback, NAT).
    Association,
}

/// Treatment of registrations into pools without a `[[registrar.pool]]` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnlistedPools {
    /// Accept them without a secret (plain RFC 5352 behaviour).
    Accept,
    /// Reject them: only listed pools exist.
    Reject,
}

/// Resource limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Most pools in the handlespace.
    pub max_pools: u32,
    /// Most PEs in one pool.
    pub max_pes_per_pool: u32,
    /// Largest ASAP/ENRP message accepted, in bytes.
    pub max_message_size: u32,
    /// Most SCTP associations from one peer address.
    pub max_associations_per_peer: u32,
    /// Failure reports accepted per PU per second (more are dropped and counted).
    pub failure_reports_per_pu_per_sec: u32,
}

/// One pool with a registration secret.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolEntry {
    /// Pool handle.
    pub handle: String,
    /// Registration secret written inline (prefer `secret_file`).
    #[serde(default)]
    pub secret: Option<String>,
    /// File holding the registration secret (trailing newline ignored).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The loaded secret, filled in by validation.
    #[serde(skip)]
    pub resolved_secret: Secret,
}

/// Server announces (ASAP SERVER_ANNOUNCE) over UDP.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announce {
    /// Send announces at all.
    pub enabled: bool,
    /// Destination (multicast group or unicast/broadcast address) and port.
    pub address: Addr,
    /// Time between announces.
    #[serde(deserialize_with = "super::values::duration")]
    pub interval: Duration,
}

/// A static ENRP peer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Expected registrar id of the peer (checked when it answers), if known.
    #[serde(default)]
    pub id: Option<u32>,
    /// UDP addresses of the peer (several = multi-homed).
    pub addresses: Vec<Addr>,
}

/// Shortest registration secret we accept without a warning.
pub const MIN_SECRET_LEN: usize = 16;

impl Section for RegistrarConfig {
    const ROLE: Role = Role::Registrar;

    fn metrics(&self) -> &MetricsConfig {
        &self.metrics
    }

    fn threads(&self) -> u32 {
        self.threads
    }

    fn validate(&mut self, check: &mut Checker<'_>) {
        common::threads(check, "registrar.threads", self.threads);
        common::address_list(check, "registrar.listen", &self.listen, "listen");
        self.transport.validate(check, "registrar.transport");
        if self.sctp_port == 0 {
            check.error("registrar.sctp_port", "port 0 is not a valid SCTP port");
        }
        if self.enrp_sctp_port == 0 {
            check.error(
                "registrar.enrp_sctp_port",
                "port 0 is not a valid SCTP port",
            );
        }
        common::keepalive(
            check,
            "registrar.keepalive.interval",
            "registrar.keepalive.timeout",
            self.keepalive.interval,
            self.keepalive.timeout,
        );
        if self.max_bad_pe_report == 0 {
            check.error("registrar.max_bad_pe_report", "must be at least 1");
        }
        if !(1..=MAX_RESOLUTION_PES).contains(&(self.max_resolution_items as usize)) {
            check.error(
                "registrar.max_resolution_items",
                format!("must be between 1 and {MAX_RESOLUTION_PES}"),
            );
        }
        let reg = &self.registration;
        common::positive(check, "registrar.registration.min_life", reg.min_life);
        if reg.min_life > reg.max_life {
            check.error(
                "registrar.registration.max_life",
                "max_life is shorter than min_life",
            );
        }
        let l = &self.limits;
        for (key, v) in [
            ("max_pools", l.max_pools),
            ("max_pes_per_pool", l.max_pes_per_pool),
            ("max_associations_per_peer", l.max_associations_per_peer),
            (
                "failure_reports_per_pu_per_sec",
                l.failure_reports_per_pu_per_sec,
            ),
        ] {
            if v == 0 {
                check.error(&format!("registrar.limits.{key}"), "must be at least 1");
            }
        }
        if !(1024..=16 * 1024 * 1024).contains(&l.max_message_size) {
            check.error(
                "registrar.limits.max_message_size",
                "must be between 1024 and 16777216 bytes",
            );
        }
        if self.pools.len() > l.max_pools as usize {
            check.error(
                "registrar.pool",
                format!(
                    "{} pools listed but limits.max_pools is {}",
                    self.pools.len(),
                    l.max_pools
                ),
            );
        }

        let mut handles = HashSet::new();
        for (i, pool) in self.pools.iter_mut().enumerate() {
            let path = format!("registrar.pool[{i}]");
            common::pool_handle(check, &format!("{path}.handle"), &pool.handle);
            if !handles.insert(pool.handle.clone()) {
                check.error(
                    &format!("{path}.handle"),
                    format!("pool `{}` is listed twice", pool.handle),
                );
            }
            let bytes = match (&pool.secret, &pool.secret_file) {
                (Some(_), Some(_)) => {
                    check.error(&path, "give either `secret` or `secret_file`, not both");
                    None
                }
                (None, None) => {
                    check.error(&path, "a listed pool needs `secret` or `secret_file`");
                    None
                }
                (Some(s), None) => Some(s.clone().into_bytes()),
                (None, Some(f)) => check
                    .read_secret_file(&format!("{path}.secret_file"), f)
                    .map(trim_newline),
            };
            if let Some(bytes) = bytes {
                let key = if pool.secret.is_some() {
                    "secret"
                } else {
                    "secret_file"
                };
                if bytes.is_empty() {
                    check.error(&format!("{path}.{key}"), "registration secret is empty");
                } else if bytes.len() < MIN_SECRET_LEN {
                    check.warning(
                        &format!("{path}.{key}"),
                        format!(
                            "registration secret is only {} bytes; use at least {MIN_SECRET_LEN}",
                            bytes.len()
                        ),
                    );
                }
                pool.resolved_secret = Secret::new(bytes);
            }
        }

        if self.announce.enabled {
            common::positive(check, "registrar.announce.interval", self.announce.interval);
        }
        let mut ids = HashSet::new();
        for (i, peer) in self.peers.iter().enumerate() {
            let path = format!("registrar.peer[{i}]");
            common::address_list(check, &format!("{path}.addresses"), &peer.addresses, "peer");
            if let Some(id) = peer.id {
                if id == 0 {
                    check.error(&format!("{path}.id"), "registrar id 0 is reserved");
                } else if !ids.insert(id) || (self.id != 0 && id == self.id) {
                    check.error(
                        &format!("{path}.id"),
                        format!("registrar id {id} is used twice"),
                    );
                }
            }
        }
        if self.registration.unlisted_pools == UnlistedPools::Accept
            && self.listen.iter().any(|a| !a.0.ip().is_loopback())
        {
            check.warning(
                "registrar.registration.unlisted_pools",
                "anyone who reaches the listen address can register into any pool; list pools with secrets and set unlisted_pools = \"reject\"",
            );
        }
        let e = &mut self.enrp;
        for (key, d) in [
            ("presence_interval", e.presence_interval),
            ("max_time_last_heard", e.max_time_last_heard),
            ("max_time_no_response", e.max_time_no_response),
            ("takeover_timeout", e.takeover_timeout),
            ("full_audit_interval", e.full_audit_interval),
        ] {
            common::positive(check, &format!("registrar.enrp.{key}"), d);
        }
        if e.max_pes_per_peer == 0 {
            check.error("registrar.enrp.max_pes_per_peer", "must be at least 1");
        }
        let enrp_secret = match (&e.secret, &e.secret_file) {
            (s, Some(_)) if !s.is_empty() => {
                check.error(
                    "registrar.enrp",
                    "give either `secret` or `secret_file`, not both",
                );
                None
            }
            (_, Some(f)) => check
                .read_secret_file("registrar.enrp.secret_file", f)
                .map(trim_newline),
            (s, None) => Some(s.clone().into_bytes()),
        };
        if let Some(bytes) = enrp_secret {
            if !bytes.is_empty() && bytes.len() < MIN_SECRET_LEN {
                check.warning(
                    "registrar.enrp.secret",
                    format!(
                        "ENRP secret is only {} bytes; use at least {MIN_SECRET_LEN}",
                        bytes.len()
                    ),
                );
            }
            if bytes.is_empty()
                && !self.peers.is_empty()
                && self.listen.iter().any(|a| !a.0.ip().is_loopback())
            {
                check.warning(
                    "registrar.enrp.secret",
                    "ENRP peers are configured without a shared secret: anyone who reaches the listen address can change the handlespace",
                );
            }
            self.enrp.resolved_secret = Secret::new(bytes);
        }
        self.metrics.validate(check, "registrar.metrics");
    }
}

/// A secret file's content without its trailing newline (editors add one).
fn trim_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::super::tests::tempdir::TempDir;
    use super::super::{load, Sources};
    use super::*;

    fn load_text(text: &str) -> (TempDir, PathBuf, Result<RegistrarConfig, String>) {
        let dir = TempDir::new();
        let file = dir.path().join("registrar.toml");
        std::fs::write(&file, text).unwrap();
        let sources = Sources {
            files: vec![file.clone()],
            ..Sources::default()
        };
        let r = load::<RegistrarConfig>(&sources)
            .map(|l| l.config)
            .map_err(|d| {
                d.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        (dir, file, r)
    }

    #[test]
    fn max_resolution_items_defaults_to_three_and_takes_a_good_value() {
        let (_d, _f, c) = load_text("[registrar]\n");
        assert_eq!(c.unwrap().max_resolution_items, 3);
        let (_d, _f, c) = load_text("[registrar]\nmax_resolution_items = 1\n");
        let c = c.unwrap();
        assert_eq!(c.max_resolution_items, 1);
        let core = crate::registrar::core_config(&c, 7).unwrap();
        assert_eq!(core.max_resolution_items, 1);
    }

    #[test]
    fn bad_max_resolution_items_is_refused_with_file_line_and_key() {
        for bad in ["0", "129"] {
            let (_d, file, c) = load_text(&format!(
                "[registrar]\nid = 1\nmax_resolution_items = {bad}\n"
            ));
            let e = c.expect_err(bad);
            assert!(
                e.contains(&format!("{}:3", file.display())),
                "file and line in {e:?}"
            );
            assert!(e.contains("key `registrar.max_resolution_items`"), "{e}");
            assert!(e.contains("between 1 and 128"), "{e}");
        }
        let (_d, file, c) = load_text("[registrar]\nmax_resolution_items = \"three\"\n");
        let e = c.expect_err("a string");
        assert!(e.contains(&format!("{}:2", file.display())), "{e}");
        assert!(e.contains("registrar.max_resolution_items"), "{e}");
    }

    #[test]
    fn trailing_newline_is_dropped_once() {
        assert_eq!(trim_newline(b"abc\n".to_vec()), b"abc");
        assert_eq!(trim_newline(b"abc\r\n".to_vec()), b"abc");
        assert_eq!(trim_newline(b"abc\n\n".to_vec()), b"abc\n");
        assert_eq!(trim_newline(b"abc".to_vec()), b"abc");
    }
}
