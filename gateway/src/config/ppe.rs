//! PPE (proxy pool element) configuration (`[ppe]`, shipped as `config/ppe.toml`).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use pool_core::types::{Load, Policy, PoolHandle};
use serde::Deserialize;

use super::common::{self, MetricsConfig, TransportSettings};
use super::plugin::{PluginKind, PluginOptions};
use super::values::{Addr, HostPort, Secret};
use super::{Checker, Role, Section};

/// Shortest pool key accepted: AES-256-GCM needs 32 bytes.
pub const MIN_POOL_KEY_LEN: usize = 32;

/// Everything the PPE reads from `[ppe]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PpeConfig {
    /// Pool handle this PE registers into.
    pub pool: String,
    /// PE identifier; 0 = pick a random non-zero one at start.
    pub id: u32,
    /// Member selection policy and its parameters.
    pub policy: PolicyConfig,
    /// Registrars to register at (UDP addresses of SCTP over UDP), tried in order.
    pub registrars: Vec<Addr>,
    /// Registration life announced to the registrar (re-registration happens before it ends).
    #[serde(deserialize_with = "super::values::duration")]
    pub registration_life: Duration,
    /// UDP addresses where PUs open ASAP sessions (SCTP over UDP); port 0 = any free port.
    pub listen: Vec<Addr>,
    /// SCTP port advertised in the registration.
    pub sctp_port: u16,
    /// The legacy backend this PE fronts.
    pub backend: BackendConfig,
    /// Session-state plugin (which legacy protocol the backend speaks).
    pub plugin: PluginKind,
    /// Options of the plugin (must match the PPU listeners of this pool).
    pub plugin_options: PluginOptions,
    /// How often a session's state is checkpointed into a cookie for the PU.
    #[serde(deserialize_with = "super::values::duration")]
    pub cookie_interval: Duration,
    /// Most concurrent sessions.
    pub max_sessions: u32,
    /// On drain (SIGTERM): deregister, then give running sessions this long to finish.
    #[serde(deserialize_with = "super::values::duration")]
    pub drain_grace: Duration,
    /// Pool keys sealing and opening state cookies (`[[ppe.key]]`).
    #[serde(rename = "key")]
    pub keys: Vec<PoolKey>,
    /// Metrics endpoint.
    pub metrics: MetricsConfig,
    /// SCTP engine settings of every association (`[ppe.transport]`).
    pub transport: TransportSettings,
    /// Worker threads of the process (0 = one per CPU).
    pub threads: u32,
}

/// Selection policy settings (RFC 5356).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Which policy.
    pub kind: PolicyKind,
    /// Weight for the weighted policies (≥ 1).
    pub weight: u32,
    /// Priority for the priority policies (higher is preferred).
    pub priority: u32,
    /// Load degradation per new session, as a fraction 0.0–1.0 (least-used-degradation).
    pub load_degradation: f64,
    /// Load increment per new session, as a fraction 0.0–1.0 (priority-least-used).
    pub load_increment: f64,
}

/// The RFC 5356 policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// Round Robin.
    RoundRobin,
    /// Weighted Round Robin.
    WeightedRoundRobin,
    /// Random.
    Random,
    /// Weighted Random.
    WeightedRandom,
    /// Priority.
    Priority,
    /// Least Used.
    LeastUsed,
    /// Least Used with Degradation.
    LeastUsedDegradation,
    /// Priority Least Used.
    PriorityLeastUsed,
    /// Randomized Least Used.
    RandomizedLeastUsed,
}

/// A fraction 0.0–1.0 as an RFC 5356 load value.
fn fraction_to_load(f: f64) -> Load {
    (f.clamp(0.0, 1.0) * Load::MAX as f64).round() as Load
}

impl PolicyConfig {
    /// The policy with its per-PE data, reporting `load` (0 = idle).
    pub fn to_policy(&self, load: Load) -> Policy {
        match self.kind {
            PolicyKind::RoundRobin => Policy::RoundRobin,
            PolicyKind::WeightedRoundRobin => Policy::WeightedRoundRobin {
                weight: self.weight,
            },
            PolicyKind::Random => Policy::Random,
            PolicyKind::WeightedRandom => Policy::WeightedRandom {
                weight: self.weight,
            },
            PolicyKind::Priority => Policy::Priority {
                priority: self.priority,
            },
            PolicyKind::LeastUsed => Policy::LeastUsed { load },
            PolicyKind::LeastUsedDegradation => Policy::LeastUsedDegradation {
                load,
                degradation: fraction_to_load(self.load_degradation),
            },
            PolicyKind::PriorityLeastUsed => Policy::PriorityLeastUsed {
                load,
                increment: fraction_to_load(self.load_increment),
            },
            PolicyKind::RandomizedLeastUsed => Policy::RandomizedLeastUsed { load },
        }
    }
}

/// The legacy backend and its health check.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// `host:port` of the backend.
    pub address: HostPort,
    /// Connect timeout for backend connections.
    #[serde(deserialize_with = "super::values::duration")]
    pub connect_timeout: Duration,
    /// Time between backend health checks (a TCP connect).
    #[serde(deserialize_with = "super::values::duration")]
    pub check_interval: Duration,
    /// How long a health check may take before it counts as failed.
    #[serde(deserialize_with = "super::values::duration")]
    pub check_timeout: Duration,
}

/// A pool key for state cookies.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolKey {
    /// Key identifier carried in the cookie (the highest id seals new cookies).
    pub id: u16,
    /// Key as hex (at least 64 hex digits = 32 bytes); prefer `key_file`.
    #[serde(default)]
    pub key: Option<String>,
    /// File holding the raw key bytes (at least 32).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The loaded key, filled in by validation.
    #[serde(skip)]
    pub material: Secret,
}

impl PpeConfig {
    /// The pool handle as the handlespace type (validated non-empty and bounded).
    pub fn pool_handle(&self) -> Option<PoolHandle> {
        PoolHandle::new(self.pool.as_bytes().to_vec())
    }

    /// The key that seals new cookies: the one with the highest id.
    pub fn sealing_key(&self) -> Option<&PoolKey> {
        self.keys.iter().max_by_key(|k| k.id)
    }
}

impl Section for PpeConfig {
    const ROLE: Role = Role::Ppe;

    fn metrics(&self) -> &MetricsConfig {
        &self.metrics
    }

    fn threads(&self) -> u32 {
        self.threads
    }

    fn validate(&mut self, check: &mut Checker<'_>) {
        common::threads(check, "ppe.threads", self.threads);
        common::pool_handle(check, "ppe.pool", &self.pool);
        common::address_list(check, "ppe.registrars", &self.registrars, "registrar");
        common::address_list(check, "ppe.listen", &self.listen, "listen");
        common::positive(check, "ppe.registration_life", self.registration_life);
        self.transport.validate(check, "ppe.transport");
        if self.sctp_port == 0 {
            check.error("ppe.sctp_port", "port 0 is not a valid SCTP port");
        }
        let p = &self.policy;
        if matches!(
            p.kind,
            PolicyKind::WeightedRoundRobin | PolicyKind::WeightedRandom
        ) && p.weight == 0
        {
            check.error("ppe.policy.weight", "a weighted policy needs weight ≥ 1");
        }
        for (key, v) in [
            ("load_degradation", p.load_degradation),
            ("load_increment", p.load_increment),
        ] {
            if !(0.0..=1.0).contains(&v) {
                check.error(
                    &format!("ppe.policy.{key}"),
                    "must be a fraction between 0.0 and 1.0",
                );
            }
        }
        let b = &self.backend;
        common::positive(check, "ppe.backend.connect_timeout", b.connect_timeout);
        common::keepalive(
            check,
            "ppe.backend.check_interval",
            "ppe.backend.check_timeout",
            b.check_interval,
            b.check_timeout,
        );
        self.plugin_options
            .validate(check, "ppe.plugin_options", self.plugin);
        common::positive(check, "ppe.cookie_interval", self.cookie_interval);
        if self.max_sessions == 0 {
            check.error("ppe.max_sessions", "must be at least 1");
        }

        if self.keys.is_empty() {
            check.error(
                "ppe.key",
                "at least one pool key is needed to seal state cookies; make one with \
                 `head -c 32 /dev/urandom > /etc/poolgate/pool.key` and add [[ppe.key]] id = 1, key_file = \"/etc/poolgate/pool.key\"",
            );
        }
        let mut ids = HashSet::new();
        for (i, k) in self.keys.iter_mut().enumerate() {
            let path = format!("ppe.key[{i}]");
            if !ids.insert(k.id) {
                check.error(
                    &format!("{path}.id"),
                    format!("key id {} is used twice", k.id),
                );
            }
            let bytes = match (&k.key, &k.key_file) {
                (Some(_), Some(_)) => {
                    check.error(&path, "give either `key` or `key_file`, not both");
                    None
                }
                (None, None) => {
                    check.error(&path, "a pool key needs `key` or `key_file`");
                    None
                }
                (Some(hex_text), None) => match hex::decode(hex_text.trim()) {
                    Ok(b) => Some(b),
                    Err(_) => {
                        check.error(
                            &format!("{path}.key"),
                            "not hex (write the key as hex digits, or use key_file)",
                        );
                        None
                    }
                },
                (None, Some(f)) => check.read_secret_file(&format!("{path}.key_file"), f),
            };
            if let Some(bytes) = bytes {
                let key = if k.key.is_some() { "key" } else { "key_file" };
                if bytes.len() < MIN_POOL_KEY_LEN {
                    check.error(
                        &format!("{path}.{key}"),
                        format!(
                            "pool key is {} bytes; at least {MIN_POOL_KEY_LEN} are needed",
                            bytes.len()
                        ),
                    );
                } else {
                    k.material = Secret::new(bytes);
                }
            }
        }
        common::positive(check, "ppe.drain_grace", self.drain_grace);
        self.metrics.validate(check, "ppe.metrics");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_map_onto_the_load_range() {
        assert_eq!(fraction_to_load(0.0), 0);
        assert_eq!(fraction_to_load(1.0), Load::MAX);
        assert_eq!(fraction_to_load(2.0), Load::MAX);
        assert_eq!(fraction_to_load(f64::NAN), 0);
        let half = fraction_to_load(0.5);
        assert!(half > Load::MAX / 2 - 2 && half < Load::MAX / 2 + 2);
    }

    #[test]
    fn policy_kinds_map_to_pool_core() {
        let mut p = PolicyConfig {
            kind: PolicyKind::WeightedRandom,
            weight: 3,
            priority: 9,
            load_degradation: 0.0,
            load_increment: 1.0,
        };
        assert_eq!(p.to_policy(5), Policy::WeightedRandom { weight: 3 });
        p.kind = PolicyKind::PriorityLeastUsed;
        assert_eq!(
            p.to_policy(5),
            Policy::PriorityLeastUsed {
                load: 5,
                increment: Load::MAX
            }
        );
        p.kind = PolicyKind::Priority;
        assert_eq!(p.to_policy(5), Policy::Priority { priority: 9 });
    }
}
