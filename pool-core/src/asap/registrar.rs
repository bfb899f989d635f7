//! The registrar (PR) side of ASAP (RFC 5352 §3): registration,
//! deregistration, handle resolution, endpoint keep-alives and failure
//! reports, over the [`Handlespace`].
//!
//! Sans-IO: the driver calls [`Registrar::handle_message`] with the peer
//! (association) a message came from, [`Registrar::handle_peer_closed`] when
//! an association goes away, and [`Registrar::handle_timeout`] at
//! [`Registrar::poll_timeout`]; it then drains [`Registrar::poll_action`] and
//! [`Registrar::poll_event`].
//!
//! Monitoring: every PE this registrar is home for gets an
//! ASAP_ENDPOINT_KEEP_ALIVE every `keep_alive_interval` on the association it
//! registered on; a PE that does not acknowledge within `keep_alive_timeout`
//! is removed. A PE silent since instant `t` is therefore removed by
//! `t + keep_alive_interval + keep_alive_timeout`.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::RngCore;

use super::auth::{self, AuthError, PoolSecret, ReplayGuard};
use super::{
    element_to_wire, handlespace_cause, policy_load, registration_from_wire, PeerId, WallClock,
};
use crate::handlespace::{Handlespace, HandlespaceConfig, HandlespaceError, RegisterOutcome};
use crate::policy::PolicyKind;
use crate::types::{Load, PeId, Policy, PoolHandle, RegistrarId, Transport};
use crate::wire::{
    self, AsapMessage, ErrorCause, OperationError, SelectionPolicy, MAX_RESOLUTION_PES,
};

/// A token bucket: `burst` reports at once, then one per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Most reports accepted back to back.
    pub burst: u32,
    /// One more report is allowed per this much time.
    pub per: Duration,
}

/// Registrar configuration; checked by [`RegistrarConfig::validate`].
#[derive(Clone, Debug)]
pub struct RegistrarConfig {
    /// This registrar's identifier (home registrar id of the PEs it monitors).
    pub id: RegistrarId,
    /// Time between endpoint keep-alives to a PE (default 1 s; sub-second works).
    pub keep_alive_interval: Duration,
    /// Time a PE has to acknowledge a keep-alive (default 1 s).
    pub keep_alive_timeout: Duration,
    /// MAX-BAD-PE-REPORT: distinct pool users that must report a PE
    /// unreachable before it is removed (default 3, as RSPLIB).
    pub max_bad_pe_reports: u32,
    /// What counts as one distinct pool user for MAX-BAD-PE-REPORT and the report
    /// rate (default: a peer address, where the driver told it).
    pub reporter_scope: ReporterScope,
    /// Reports older than this are forgotten, so reporters must agree within it.
    pub failure_report_memory: Duration,
    /// Rate limit of ENDPOINT_UNREACHABLE reports per reporter (see `reporter_scope`).
    pub failure_report_rate: RateLimit,
    /// Shortest registration life granted (shorter requests are raised).
    pub min_registration_life: Duration,
    /// Longest registration life granted (longer requests are cut).
    pub max_registration_life: Duration,
    /// Most PEs returned by one handle resolution.
    pub max_resolution_items: usize,
    /// Handlespace limits: max pools, max PEs per pool and in total.
    pub handlespace: HandlespaceConfig,
    /// Registration secrets per pool; registrations for these pools must be authenticated.
    pub pool_secrets: HashMap<PoolHandle, Vec<PoolSecret>>,
    /// Whether pools without a secret accept unauthenticated registrations.
    pub allow_open_pools: bool,
    /// Accepted distance between an auth timestamp and the registrar's clock.
    pub auth_window: Duration,
    /// Most nonces remembered within one window.
    pub max_remembered_nonces: usize,
    /// Authentication failures after which a peer's association is closed (0 = never).
    pub max_auth_failures_per_peer: u32,
    /// Most peers whose report rate is tracked at once (bounds memory).
    pub max_tracked_peers: usize,
    /// Transports announced in ASAP_SERVER_ANNOUNCE (empty: "use the source address").
    pub announce_transports: Vec<Transport>,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            id: 1,
            keep_alive_interval: Duration::from_secs(1),
            keep_alive_timeout: Duration::from_secs(1),
            max_bad_pe_reports: 3,
            reporter_scope: ReporterScope::Address,
            failure_report_memory: Duration::from_secs(60),
            failure_report_rate: RateLimit {
                burst: 10,
                per: Duration::from_millis(100),
            },
            min_registration_life: Duration::from_millis(100),
            max_registration_life: Duration::from_secs(3600),
            max_resolution_items: 3,
            handlespace: HandlespaceConfig::default(),
            pool_secrets: HashMap::new(),
            allow_open_pools: true,
            auth_window: Duration::from_secs(30),
            max_remembered_nonces: 1_000_000,
            max_auth_failures_per_peer: 10,
            max_tracked_peers: 100_000,
            announce_transports: Vec::new(),
        }
    }
}

/// What counts as one reporter of ENDPOINT_UNREACHABLE, against MAX-BAD-PE-REPORT and
/// the report rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReporterScope {
    /// Each association: a host that opens several associations is several pool users
    /// (and could impeach a PE alone). For pool users that share an address (tests and
    /// simulations on loopback, users behind one NAT).
    Association,
    /// Each peer address ([`Registrar::peer_address`]): one host is one reporter, however
    /// many associations it opens. Associations whose address the driver did not give
    /// count one by one.
    Address,
}

/// One reporter of ENDPOINT_UNREACHABLE (see [`ReporterScope`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Reporter {
    Association(PeerId),
    Address(IpAddr),
}

/// A registrar configuration value that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("{0} must be positive")]
    ZeroDuration(&'static str),
    /// MAX-BAD-PE-REPORT of 0 would remove PEs without any report.
    #[error("max_bad_pe_reports must be at least 1")]
    ZeroBadReports,
    /// Minimum registration life above the maximum.
    #[error("min_registration_life exceeds max_registration_life")]
    LifeRange,
    /// Resolution item count outside 1..=MAX_RESOLUTION_PES.
    #[error("max_resolution_items must be in 1..={MAX_RESOLUTION_PES}")]
    ResolutionItems,
    /// A rate limit with a zero burst or period.
    #[error("failure_report_rate needs a positive burst and period")]
    RateLimit,
    /// A pool listed with no secrets, or a secret that is empty.
    #[error("pool {0} has an empty secret list or an empty secret")]
    EmptySecret(String),
}

impl RegistrarConfig {
    /// Checks the configuration once, at the edge.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, d) in [
            ("keep_alive_interval", self.keep_alive_interval),
            ("keep_alive_timeout", self.keep_alive_timeout),
            ("min_registration_life", self.min_registration_life),
            ("auth_window", self.auth_window),
            ("failure_report_memory", self.failure_report_memory),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration(name));
            }
        }
        if self.max_bad_pe_reports == 0 {
            return Err(ConfigError::ZeroBadReports);
        }
        if self.min_registration_life > self.max_registration_life {
            return Err(ConfigError::LifeRange);
        }
        if self.max_resolution_items == 0 || self.max_resolution_items > MAX_RESOLUTION_PES {
            return Err(ConfigError::ResolutionItems);
        }
        if self.failure_report_rate.burst == 0 || self.failure_report_rate.per.is_zero() {
            return Err(ConfigError::RateLimit);
        }
        for (h, s) in &self.pool_secrets {
            if s.is_empty() || s.iter().any(|s| s.secret.is_empty()) {
                return Err(ConfigError::EmptySecret(h.to_string()));
            }
        }
        Ok(())
    }
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send an ASAP message on an association.
    Send {
        /// Association to send on.
        peer: PeerId,
        /// The message.
        msg: AsapMessage,
    },
    /// Close (abort) an association: the peer misbehaved. The registrar has
    /// already forgotten it (as if [`Registrar::handle_peer_closed`] ran).
    Close {
        /// Association to close.
        peer: PeerId,
    },
}

/// Why a PE left the handlespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemovalReason {
    /// The PE deregistered.
    Deregistered,
    /// Its registration life ran out.
    Expired,
    /// It did not acknowledge an endpoint keep-alive in time.
    KeepAliveTimeout,
    /// MAX-BAD-PE-REPORT distinct pool users reported it unreachable.
    FailureReports,
    /// The association it registered on closed.
    PeerClosed,
}

/// Something that happened, for logs and for ENRP (handle updates to peers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrarEvent {
    /// A PE registered (`updated`: it was already known: a re-registration).
    Registered {
        /// Pool.
        pool_handle: PoolHandle,
        /// The PE.
        pe_id: PeId,
        /// Re-registration rather than a new PE.
        updated: bool,
    },
    /// A PE left.
    Removed {
        /// Pool.
        pool_handle: PoolHandle,
        /// The PE.
        pe_id: PeId,
        /// Why.
        reason: RemovalReason,
    },
    /// A registration or deregistration failed authentication.
    AuthRejected {
        /// Association it came on.
        peer: PeerId,
        /// Pool.
        pool_handle: PoolHandle,
        /// Why.
        error: AuthError,
    },
}

/// Counters for Prometheus; monotonic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegistrarCounters {
    /// New PEs registered.
    pub registrations: u64,
    /// Re-registrations (updates in place).
    pub reregistrations: u64,
    /// Registrations refused (any cause).
    pub registrations_rejected: u64,
    /// Successful deregistrations.
    pub deregistrations: u64,
    /// Handle resolutions answered (including unknown pools).
    pub resolutions: u64,
    /// Handle resolutions for an unknown pool.
    pub resolutions_unknown_pool: u64,
    /// Endpoint keep-alives sent.
    pub keep_alives_sent: u64,
    /// PEs that missed a keep-alive ACK.
    pub keep_alive_failures: u64,
    /// ENDPOINT_UNREACHABLE reports accepted (counted towards removal).
    pub failure_reports: u64,
    /// PEs removed, for any reason but deregistration.
    pub removed_pes: u64,
    /// PEs removed because of failure reports.
    pub removed_by_reports: u64,
    /// Registrations whose life ran out.
    pub expired: u64,
    /// Authentication failures (bad or missing tag, unknown key, wrong association).
    pub auth_failures: u64,
    /// Replays (nonce seen or timestamp outside the window).
    pub replays: u64,
    /// Failure reports dropped by the per-PU rate limit.
    pub rate_limited: u64,
    /// Requests refused by a limit (pools, PEs, nonce memory, tracked peers).
    pub limit_hits: u64,
    /// Messages a registrar does not expect (responses, cookies, …), ignored.
    pub unexpected_messages: u64,
}

/// One PE in a [`RegistrarSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeSnapshot {
    /// PE identifier.
    pub id: PeId,
    /// Home registrar.
    pub home: RegistrarId,
    /// Policy with its latest data.
    pub policy: Policy,
    /// Reported load (adaptive policies).
    pub load: Option<Load>,
    /// User transports.
    pub user_transports: Vec<Transport>,
    /// Time since the latest (re-)registration.
    pub age: Duration,
    /// Time left of the registration life.
    pub expires_in: Option<Duration>,
    /// Association it registered on (PEs this registrar monitors).
    pub peer: Option<PeerId>,
    /// Distinct pool users currently reporting it unreachable.
    pub failure_reports: usize,
}

/// One pool in a [`RegistrarSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// Pool handle.
    pub handle: PoolHandle,
    /// The pool's policy.
    pub policy: PolicyKind,
    /// Whether registrations for it must be authenticated.
    pub secured: bool,
    /// Its PEs, by id.
    pub elements: Vec<PeSnapshot>,
}

/// The registrar's state for `poolgate status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrarSnapshot {
    /// This registrar.
    pub id: RegistrarId,
    /// Pools, by handle.
    pub pools: Vec<PoolSnapshot>,
    /// Counters.
    pub counters: RegistrarCounters,
}

type PeKey = (PoolHandle, PeId);

/// Keep-alive state of a PE this registrar is home for.
#[derive(Clone, Debug)]
struct Monitor {
    /// Association the PE registered on.
    peer: PeerId,
    /// Next keep-alive (idle) or the ACK deadline (awaiting).
    due: Instant,
    /// When the outstanding keep-alive was sent.
    awaiting_since: Option<Instant>,
}

/// Token bucket state of one reporter.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u32,
    last: Instant,
}

/// The registrar state machine.
pub struct Registrar {
    config: RegistrarConfig,
    hs: Handlespace,
    rng: Box<dyn RngCore + Send>,
    clock: WallClock,
    monitors: HashMap<PeKey, Monitor>,
    timers: BTreeSet<(Instant, PeKey)>,
    by_peer: HashMap<PeerId, HashSet<PeKey>>,
    /// Distinct reporters per PE with the time of their report.
    reports: HashMap<PeKey, Vec<(Reporter, Instant)>>,
    /// Report rate per reporter.
    buckets: HashMap<Reporter, Bucket>,
    /// Peer addresses the driver gave ([`Registrar::peer_address`]).
    addresses: HashMap<PeerId, IpAddr>,
    auth_failures: HashMap<PeerId, u32>,
    replay: ReplayGuard,
    /// PEs homed here without a local association (ENRP takeover or a peer's
    /// table naming this registrar): kept until they re-register or expire.
    adopted: HashSet<PeKey>,
    actions: VecDeque<Action>,
    events: VecDeque<RegistrarEvent>,
    counters: RegistrarCounters,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("id", &self.config.id)
            .field("pools", &self.hs.pool_count())
            .field("elements", &self.hs.element_count())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Registrar {
    /// A registrar with an empty handlespace.
    ///
    /// `clock` maps instants to wall-clock time for auth timestamps; `rng`
    /// drives the random selection policies.
    pub fn new(
        config: RegistrarConfig,
        clock: WallClock,
        rng: Box<dyn RngCore + Send>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let replay = ReplayGuard::new(
            super::millis(config.auth_window),
            config.max_remembered_nonces,
        );
        Ok(Self {
            hs: Handlespace::new(config.handlespace.clone()),
            config,
            rng,
            clock,
            monitors: HashMap::new(),
            timers: BTreeSet::new(),
            by_peer: HashMap::new(),
            reports: HashMap::new(),
            buckets: HashMap::new(),
            addresses: HashMap::new(),
            auth_failures: HashMap::new(),
            replay,
            adopted: HashSet::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            counters: RegistrarCounters::default(),
        })
    }

    /// Applies an operator's reloaded configuration without touching the handlespace or
    /// any association: keep-alive timing (from each PE's next keep-alive on),
    /// MAX-BAD-PE-REPORT, report limits, registration life bounds, resolution size,
    /// registration secrets and the open-pool rule take effect at once.
    ///
    /// Settings that shape state built at start (identifier, handlespace limits, nonce
    /// memory, tracked peers) keep their running values; their names are returned so the
    /// operator learns that they need a restart. An invalid configuration changes nothing.
    pub fn reconfigure(&mut self, new: RegistrarConfig) -> Result<Vec<&'static str>, ConfigError> {
        new.validate()?;
        let mut restart = Vec::new();
        if new.id != self.config.id {
            restart.push("id");
        }
        if new.handlespace != self.config.handlespace {
            restart.push("handlespace");
        }
        if new.max_remembered_nonces != self.config.max_remembered_nonces {
            restart.push("max_remembered_nonces");
        }
        if new.max_tracked_peers != self.config.max_tracked_peers {
            restart.push("max_tracked_peers");
        }
        if new.auth_window != self.config.auth_window {
            // The replay guard's window is sized at start.
            restart.push("auth_window");
        }
        let c = &mut self.config;
        c.keep_alive_interval = new.keep_alive_interval;
        c.keep_alive_timeout = new.keep_alive_timeout;
        c.max_bad_pe_reports = new.max_bad_pe_reports;
        c.reporter_scope = new.reporter_scope;
        c.failure_report_memory = new.failure_report_memory;
        c.failure_report_rate = new.failure_report_rate;
        c.min_registration_life = new.min_registration_life;
        c.max_registration_life = new.max_registration_life;
        c.max_resolution_items = new.max_resolution_items;
        c.pool_secrets = new.pool_secrets;
        c.allow_open_pools = new.allow_open_pools;
        c.max_auth_failures_per_peer = new.max_auth_failures_per_peer;
        c.announce_transports = new.announce_transports;
        Ok(restart)
    }

    /// The configuration in force.
    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// The handlespace (read-only; ENRP and status read it).
    pub fn handlespace(&self) -> &Handlespace {
        &self.hs
    }

    /// Counters so far.
    pub fn counters(&self) -> RegistrarCounters {
        self.counters
    }

    /// Re-anchors the wall clock (after the driver noticed a clock step).
    pub fn set_wall_clock(&mut self, clock: WallClock) {
        self.clock = clock;
    }

    /// The next action for the driver, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<RegistrarEvent> {
        self.events.pop_front()
    }

    /// The ASAP_SERVER_ANNOUNCE the driver should send periodically.
    pub fn server_announce(&self) -> AsapMessage {
        AsapMessage::ServerAnnounce {
            server_id: self.config.id,
            transports: self.config.announce_transports.clone(),
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let keep_alive = self.timers.first().map(|(t, _)| *t);
        match (keep_alive, self.hs.next_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends due keep-alives, removes PEs whose ACK is overdue and expired registrations.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((due, key)) = self.timers.first().cloned() {
            if due > now {
                break;
            }
            self.timers.pop_first();
            let Some(m) = self.monitors.get_mut(&key) else {
                continue;
            };
            if m.awaiting_since.is_some() {
                self.counters.keep_alive_failures += 1;
                self.remove_pe(&key, RemovalReason::KeepAliveTimeout);
            } else {
                m.awaiting_since = Some(now);
                m.due = now + self.config.keep_alive_timeout;
                let peer = m.peer;
                self.timers.insert((m.due, key.clone()));
                self.counters.keep_alives_sent += 1;
                self.actions.push_back(Action::Send {
                    peer,
                    msg: AsapMessage::EndpointKeepAlive {
                        home: false,
                        server_id: self.config.id,
                        pool_handle: key.0,
                        pe_id: key.1,
                    },
                });
            }
        }
        for removed in self.hs.expire(now) {
            let key = (removed.handle, removed.element.id);
            self.forget(&key);
            self.counters.expired += 1;
            self.counters.removed_pes += 1;
            self.events.push_back(RegistrarEvent::Removed {
                pool_handle: key.0,
                pe_id: key.1,
                reason: RemovalReason::Expired,
            });
        }
    }

    /// An association closed: its PEs can no longer be monitored and are removed.
    pub fn handle_peer_closed(&mut self, peer: PeerId) {
        // An address's rate bucket outlives the association (a host must not refill
        // its tokens by opening another one); idle buckets are pruned when full.
        self.buckets.remove(&Reporter::Association(peer));
        self.addresses.remove(&peer);
        self.auth_failures.remove(&peer);
        let Some(keys) = self.by_peer.remove(&peer) else {
            return;
        };
        let mut keys: Vec<PeKey> = keys.into_iter().collect();
        keys.sort();
        for key in keys {
            self.remove_pe(&key, RemovalReason::PeerClosed);
        }
    }

    /// Processes one ASAP message received on `peer`.
    pub fn handle_message(&mut self, now: Instant, peer: PeerId, msg: AsapMessage) {
        match msg {
            AsapMessage::Registration {
                pool_handle,
                element,
                auth,
            } => self.on_registration(now, peer, pool_handle, element, auth),
            AsapMessage::Deregistration {
                pool_handle,
                pe_id,
                auth,
            } => self.on_deregistration(now, peer, pool_handle, pe_id, auth),
            AsapMessage::HandleResolution { pool_handle } => {
                self.on_resolution(now, peer, pool_handle)
            }
            AsapMessage::EndpointKeepAliveAck { pool_handle, pe_id } => {
                self.on_keep_alive_ack(now, peer, (pool_handle, pe_id))
            }
            AsapMessage::EndpointUnreachable { pool_handle, pe_id } => {
                self.on_unreachable(now, peer, (pool_handle, pe_id))
            }
            _ => self.counters.unexpected_messages += 1,
        }
    }

    fn send(&mut self, peer: PeerId, msg: AsapMessage) {
        self.actions.push_back(Action::Send { peer, msg });
    }

    fn reject_registration(
        &mut self,
        peer: PeerId,
        pool_handle: PoolHandle,
        pe_id: PeId,
        cause: ErrorCause,
    ) {
        self.counters.registrations_rejected += 1;
        self.send(
            peer,
            AsapMessage::RegistrationResponse {
                reject: true,
                pool_handle,
                pe_id,
                error: Some(OperationError::single(cause)),
            },
        );
    }

    /// Counts an authentication failure and closes a peer that keeps failing.
    fn auth_failed(&mut self, peer: PeerId, pool_handle: PoolHandle, error: AuthError) {
        match error {
            AuthError::Overloaded => self.counters.limit_hits += 1,
            ref e if e.is_replay() => self.counters.replays += 1,
            _ => self.counters.auth_failures += 1,
        }
        self.events.push_back(RegistrarEvent::AuthRejected {
            peer,
            pool_handle,
            error,
        });
        let limit = self.config.max_auth_failures_per_peer;
        if limit > 0 {
            let n = self.auth_failures.entry(peer).or_insert(0);
            *n += 1;
            if *n == limit {
                self.actions.push_back(Action::Close { peer });
                // The association is going away: forget it now, so the driver
                // need not report the close back.
                self.handle_peer_closed(peer);
            }
        }
    }

    fn check_auth(
        &mut self,
        now: Instant,
        pool_handle: &PoolHandle,
        element: &wire::PoolElement,
        auth: Option<&wire::RegistrationAuth>,
    ) -> Result<(), AuthError> {
        let Some(secrets) = self.config.pool_secrets.get(pool_handle) else {
            return if self.config.allow_open_pools {
                Ok(())
            } else {
                Err(AuthError::NoSecret)
            };
        };
        let auth = auth.ok_or(AuthError::Missing)?;
        // Verify before touching the nonce memory, so forged registrations cannot fill it.
        auth::verify(secrets, pool_handle, element, auth)?;
        let now_ms = self.clock.unix_ms(now);
        self.replay.check(now_ms, pool_handle, auth)
    }

    fn on_registration(
        &mut self,
        now: Instant,
        peer: PeerId,
        pool_handle: PoolHandle,
        element: wire::PoolElement,
        auth: Option<wire::RegistrationAuth>,
    ) {
        let pe_id = element.id;
        if let Err(e) = self.check_auth(now, &pool_handle, &element, auth.as_ref()) {
            self.auth_failed(peer, pool_handle.clone(), e);
            self.reject_registration(peer, pool_handle, pe_id, ErrorCause::RejectedSecurity);
            return;
        }
        let requested = Duration::from_millis(u64::from(element.registration_life));
        let life = requested.clamp(
            self.config.min_registration_life,
            self.config.max_registration_life,
        );
        let reg = match registration_from_wire(&element, self.config.id, life) {
            Ok(r) => r,
            Err(cause) => {
                self.reject_registration(peer, pool_handle, pe_id, cause);
                return;
            }
        };
        let key = (pool_handle, pe_id);
        match self.hs.register(&key.0, reg, now) {
            Ok(outcome) => {
                let updated = outcome == RegisterOutcome::Updated;
                if updated {
                    self.counters.reregistrations += 1;
                } else {
                    self.counters.registrations += 1;
                }
                self.monitor(now, peer, &key);
                self.send(
                    peer,
                    AsapMessage::RegistrationResponse {
                        reject: false,
                        pool_handle: key.0.clone(),
                        pe_id,
                        error: None,
                    },
                );
                self.events.push_back(RegistrarEvent::Registered {
                    pool_handle: key.0,
                    pe_id,
                    updated,
                });
            }
            Err(e) => {
                if matches!(
                    e,
                    HandlespaceError::TooManyPools { .. }
                        | HandlespaceError::PoolFull { .. }
                        | HandlespaceError::TooManyElements { .. }
                ) {
                    self.counters.limit_hits += 1;
                }
                let cause = handlespace_cause(&e);
                self.reject_registration(peer, key.0, pe_id, cause);
            }
        }
    }

    /// (Re)starts monitoring a PE on `peer`: any registration is a sign of life.
    fn monitor(&mut self, now: Instant, peer: PeerId, key: &PeKey) {
        self.adopted.remove(key);
        let due = now + self.config.keep_alive_interval;
        if let Some(old) = self.monitors.remove(key) {
            self.timers.remove(&(old.due, key.clone()));
            if old.peer != peer {
                self.unlink_peer(old.peer, key);
            }
        }
        self.monitors.insert(
            key.clone(),
            Monitor {
                peer,
                due,
                awaiting_since: None,
            },
        );
        self.timers.insert((due, key.clone()));
        self.by_peer.entry(peer).or_default().insert(key.clone());
    }

    fn unlink_peer(&mut self, peer: PeerId, key: &PeKey) {
        if let Some(set) = self.by_peer.get_mut(&peer) {
            set.remove(key);
            if set.is_empty() {
                self.by_peer.remove(&peer);
            }
        }
    }

    /// Drops the registrar-side state of a PE that left the handlespace.
    fn forget(&mut self, key: &PeKey) {
        if let Some(m) = self.monitors.remove(key) {
            self.timers.remove(&(m.due, key.clone()));
            self.unlink_peer(m.peer, key);
        }
        self.reports.remove(key);
        self.adopted.remove(key);
    }

    fn remove_pe(&mut self, key: &PeKey, reason: RemovalReason) -> bool {
        let removed = self.hs.remove(&key.0, key.1).is_some();
        self.forget(key);
        if removed {
            match reason {
                RemovalReason::Deregistered => self.counters.deregistrations += 1,
                RemovalReason::FailureReports => {
                    self.counters.removed_by_reports += 1;
                    self.counters.removed_pes += 1;
                }
                _ => self.counters.removed_pes += 1,
            }
            self.events.push_back(RegistrarEvent::Removed {
                pool_handle: key.0.clone(),
                pe_id: key.1,
                reason,
            });
        }
        removed
    }

    /// Checks the authentication of a deregistration for a secured pool: a valid tag
    /// under one of the pool's secrets, not replayed.
    fn check_deregistration_auth(
        &mut self,
        now: Instant,
        pool_handle: &PoolHandle,
        pe_id: PeId,
        auth: Option<&wire::RegistrationAuth>,
    ) -> Result<(), AuthError> {
        let Some(secrets) = self.config.pool_secrets.get(pool_handle) else {
            return Ok(());
        };
        let auth = auth.ok_or(AuthError::Missing)?;
        auth::verify_deregistration(secrets, pool_handle, pe_id, auth)?;
        let now_ms = self.clock.unix_ms(now);
        self.replay.check(now_ms, pool_handle, auth)
    }

    fn on_deregistration(
        &mut self,
        now: Instant,
        peer: PeerId,
        pool_handle: PoolHandle,
        pe_id: PeId,
        auth: Option<wire::RegistrationAuth>,
    ) {
        let key = (pool_handle, pe_id);
        let error = if self.hs.pool_len(&key.0).is_none() {
            Some(ErrorCause::UnknownPoolHandle)
        } else if self.hs.get(&key.0, pe_id).is_none() {
            Some(ErrorCause::InvalidValues(None))
        } else if let Err(e) = self.check_deregistration_auth(now, &key.0, pe_id, auth.as_ref()) {
            // Secured pools: only a PE that knows the pool's secret may take a PE out.
            self.auth_failed(peer, key.0.clone(), e);
            Some(ErrorCause::RejectedSecurity)
        } else {
            self.remove_pe(&key, RemovalReason::Deregistered);
            None
        };
        self.send(
            peer,
            AsapMessage::DeregistrationResponse {
                pool_handle: key.0,
                pe_id,
                error: error.map(OperationError::single),
            },
        );
    }

    fn on_resolution(&mut self, now: Instant, peer: PeerId, pool_handle: PoolHandle) {
        self.counters.resolutions += 1;
        let n = self.config.max_resolution_items;
        let selected = self.hs.select(&pool_handle, n, now, &mut self.rng);
        let msg = match selected {
            Ok(pes) => {
                let policy = pes.first().map(|pe| SelectionPolicy::Known(pe.policy));
                AsapMessage::HandleResolutionResponse {
                    accept_updates: false,
                    policy,
                    elements: pes.into_iter().filter_map(element_to_wire).collect(),
                    pool_handle,
                    error: None,
                }
            }
            Err(e) => {
                self.counters.resolutions_unknown_pool += 1;
                AsapMessage::HandleResolutionResponse {
                    accept_updates: false,
                    pool_handle,
                    policy: None,
                    elements: Vec::new(),
                    error: Some(OperationError::single(handlespace_cause(&e))),
                }
            }
        };
        self.send(peer, msg);
    }

    fn on_keep_alive_ack(&mut self, now: Instant, peer: PeerId, key: PeKey) {
        let interval = self.config.keep_alive_interval;
        let Some(m) = self.monitors.get_mut(&key) else {
            return;
        };
        // Only the monitored association speaks for the PE.
        if m.peer != peer {
            return;
        }
        let Some(sent) = m.awaiting_since.take() else {
            return;
        };
        self.timers.remove(&(m.due, key.clone()));
        // Keep the cadence of one keep-alive per interval, but never schedule in the past.
        m.due = (sent + interval).max(now);
        self.timers.insert((m.due, key));
    }

    /// Tells the registrar the address `peer`'s association comes from, so that with
    /// [`ReporterScope::Address`] its failure reports count as that address's.
    pub fn peer_address(&mut self, peer: PeerId, addr: IpAddr) {
        self.addresses.insert(peer, addr);
    }

    fn reporter(&self, peer: PeerId) -> Reporter {
        match (self.config.reporter_scope, self.addresses.get(&peer)) {
            (ReporterScope::Address, Some(&a)) => Reporter::Address(a),
            _ => Reporter::Association(peer),
        }
    }

    fn on_unreachable(&mut self, now: Instant, peer: PeerId, key: PeKey) {
        let reporter = self.reporter(peer);
        if !self.take_token(now, reporter) {
            self.counters.rate_limited += 1;
            return;
        }
        if self.hs.get(&key.0, key.1).is_none() {
            return;
        }
        // A PE does not impeach itself through its own association.
        if self.monitors.get(&key).is_some_and(|m| m.peer == peer) {
            return;
        }
        self.counters.failure_reports += 1;
        let memory = self.config.failure_report_memory;
        let list = self.reports.entry(key.clone()).or_default();
        list.retain(|&(_, t)| t + memory > now);
        match list.iter_mut().find(|(r, _)| *r == reporter) {
            Some(entry) => entry.1 = now,
            None => list.push((reporter, now)),
        }
        if list.len() >= self.config.max_bad_pe_reports as usize {
            self.remove_pe(&key, RemovalReason::FailureReports);
        }
    }

    fn take_token(&mut self, now: Instant, reporter: Reporter) -> bool {
        let rate = self.config.failure_report_rate;
        if !self.buckets.contains_key(&reporter)
            && self.buckets.len() >= self.config.max_tracked_peers
        {
            // Buckets that refilled completely hold nothing worth keeping.
            let full = rate.per.saturating_mul(rate.burst);
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.last) < full);
            if self.buckets.len() >= self.config.max_tracked_peers {
                self.counters.limit_hits += 1;
                return false;
            }
        }
        let b = self.buckets.entry(reporter).or_insert(Bucket {
            tokens: rate.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last);
        let earned = elapsed.as_nanos() / rate.per.as_nanos();
        if earned > 0 {
            let earned32 = u32::try_from(earned).unwrap_or(u32::MAX);
            b.tokens = b.tokens.saturating_add(earned32).min(rate.burst);
            // Advance by whole periods only, so fractions are not lost.
            b.last = if b.tokens == rate.burst {
                now
            } else {
                b.last + rate.per * earned32
            };
        }
        if b.tokens == 0 {
            return false;
        }
        b.tokens -= 1;
        true
    }

    // ---- ENRP (RFC 5353) hooks: the handlespace as peers change it. ----
    //
    // None of these queue a `RegistrarEvent`: events are what ENRP forwards to
    // peers, and a change that came from a peer must not echo back.

    /// Applies a peer's ENRP_HANDLE_UPDATE (ADD_PE) or handle-table entry:
    /// the PE is (re-)registered with `home` as its home registrar.
    ///
    /// A PE this registrar monitors over a live association is left alone (the
    /// live association wins over a peer's possibly stale claim). With `home`
    /// equal to this registrar's id the PE is *adopted*: homed here, not
    /// monitored, kept until it re-registers here (then monitored) or its
    /// registration life runs out.
    pub fn apply_peer_update(
        &mut self,
        now: Instant,
        pool_handle: &PoolHandle,
        element: &wire::PoolElement,
        home: RegistrarId,
    ) -> Result<RegisterOutcome, ErrorCause> {
        let life = Duration::from_millis(u64::from(element.registration_life))
            .min(self.config.max_registration_life);
        let reg = registration_from_wire(element, home, life)?;
        let key = (pool_handle.clone(), element.id);
        if self.monitors.contains_key(&key) {
            // Registered here over a live association: we are its home. A peer's
            // claim is stale (it crossed the PE's move here) or the PE is leaving,
            // which closes its association here first (and the audit then repairs
            // our view). Either way the live association wins.
            return Ok(RegisterOutcome::Updated);
        }
        let outcome = self.hs.register(pool_handle, reg, now).map_err(|e| {
            if matches!(
                e,
                HandlespaceError::TooManyPools { .. }
                    | HandlespaceError::PoolFull { .. }
                    | HandlespaceError::TooManyElements { .. }
            ) {
                self.counters.limit_hits += 1;
            }
            handlespace_cause(&e)
        })?;
        if home == self.config.id {
            self.adopted.insert(key);
        } else {
            // Adopted here before, now re-registered at the peer.
            self.adopted.remove(&key);
        }
        Ok(outcome)
    }

    /// Applies a peer's ENRP_HANDLE_UPDATE (DEL_PE): removes the PE only if
    /// its home is `home` (a registrar cannot delete another one's PEs).
    /// Returns whether it was removed.
    pub fn apply_peer_removal(
        &mut self,
        pool_handle: &PoolHandle,
        pe_id: PeId,
        home: RegistrarId,
    ) -> bool {
        match self.hs.get(pool_handle, pe_id) {
            Some(pe) if pe.home == home && home != self.config.id => {}
            _ => return false,
        }
        let key = (pool_handle.clone(), pe_id);
        self.hs.remove(pool_handle, pe_id);
        self.forget(&key);
        true
    }

    /// ENRP takeover: every PE homed at `from` gets the home `to`. When `to`
    /// is this registrar the PEs are adopted (see
    /// [`apply_peer_update`](Self::apply_peer_update)); their keys are returned.
    pub fn take_over(&mut self, from: RegistrarId, to: RegistrarId) -> Vec<(PoolHandle, PeId)> {
        if from == to || from == self.config.id {
            return Vec::new();
        }
        let mut keys: Vec<PeKey> = self
            .hs
            .owned_by(from)
            .map(|(h, pe)| (h.clone(), pe.id))
            .collect();
        keys.sort();
        self.hs.take_over(from, to);
        if to == self.config.id {
            self.adopted.extend(keys.iter().cloned());
        }
        keys
    }

    /// Whether this registrar watches the PE over a live association (it is its home
    /// by the PE's own registration, not by adoption).
    pub fn monitors_pe(&self, pool_handle: &PoolHandle, pe_id: PeId) -> bool {
        self.monitors.contains_key(&(pool_handle.clone(), pe_id))
    }

    /// Number of PEs homed here that wait for a re-registration (adopted).
    pub fn adopted_count(&self) -> usize {
        self.adopted.len()
    }

    /// The state for `poolgate status`: pools and PEs sorted, with ages at `now`.
    pub fn snapshot(&self, now: Instant) -> RegistrarSnapshot {
        let mut handles: Vec<&PoolHandle> = self.hs.pools().collect();
        handles.sort();
        let pools = handles
            .into_iter()
            .map(|h| {
                let mut elements: Vec<PeSnapshot> = self
                    .hs
                    .elements(h)
                    .map(|pe| {
                        let key = (h.clone(), pe.id);
                        PeSnapshot {
                            id: pe.id,
                            home: pe.home,
                            policy: pe.policy,
                            load: policy_load(&pe.policy),
                            user_transports: pe.user_transports.clone(),
                            age: now.saturating_duration_since(pe.last_update),
                            expires_in: pe.expires_at().map(|t| t.saturating_duration_since(now)),
                            peer: self.monitors.get(&key).map(|m| m.peer),
                            failure_reports: self.reports.get(&key).map_or(0, Vec::len),
                        }
                    })
                    .collect();
                elements.sort_by_key(|e| e.id);
                PoolSnapshot {
                    handle: h.clone(),
                    policy: self.hs.pool_policy(h).unwrap_or(PolicyKind::RoundRobin),
                    secured: self.config.pool_secrets.contains_key(h),
                    elements,
                }
            })
            .collect();
        RegistrarSnapshot {
            id: self.config.id,
            pools,
            counters: self.counters,
        }
    }

    /// Verifies the registrar's indexes against the handlespace (tests, debugging).
    pub fn check_consistency(&self) -> Result<(), String> {
        self.hs.check_consistency()?;
        let mut timers = BTreeSet::new();
        let mut by_peer: HashMap<PeerId, HashSet<PeKey>> = HashMap::new();
        for (key, m) in &self.monitors {
            match self.hs.get(&key.0, key.1) {
                Some(pe) if pe.home == self.config.id => {}
                Some(_) => return Err(format!("monitor for PE {} homed elsewhere", key.1)),
                None => return Err(format!("monitor for PE {} not in the handlespace", key.1)),
            }
            timers.insert((m.due, key.clone()));
            by_peer.entry(m.peer).or_default().insert(key.clone());
        }
        for (h, pe) in self.hs.iter() {
            let key = (h.clone(), pe.id);
            if pe.home == self.config.id
                && !self.monitors.contains_key(&key)
                && !self.adopted.contains(&key)
            {
                return Err(format!("PE {} homed here but not monitored", pe.id));
            }
        }
        if timers != self.timers {
            return Err("keep-alive timers differ from the monitors".into());
        }
        if by_peer != self.by_peer {
            return Err("per-peer index differs from the monitors".into());
        }
        for key in self.reports.keys() {
            if self.hs.get(&key.0, key.1).is_none() {
                return Err(format!("failure reports kept for removed PE {}", key.1));
            }
        }
        for key in &self.adopted {
            match self.hs.get(&key.0, key.1) {
                Some(pe) if pe.home == self.config.id => {}
                _ => return Err(format!("adopted PE {} not homed here", key.1)),
            }
            if self.monitors.contains_key(key) {
                return Err(format!("adopted PE {} is also monitored", key.1));
            }
        }
        Ok(())
    }
}
