//! The pool element (PE) side of ASAP (RFC 5352 §3.1–3.3, §3.7).
//!
//! Registers with one registrar of a list (server hunt: on rejection, timeout
//! or association loss the next one is tried), re-registers before the
//! registration life runs out and whenever the load moved by more than a
//! threshold, answers endpoint keep-alives, and deregisters on shutdown.
//!
//! The PE keeps one association at a time, to the current registrar. Actions
//! come in order: `Close` (drop the old association), `Connect` (open one to
//! registrar *i*), then `Send`s that go on the current association (the
//! driver queues them until the association is up).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngCore;

use super::auth::{self, PoolSecret};
use super::{millis, policy_load, policy_with_load, WallClock};
use crate::types::{Load, PeId, Policy, PoolHandle, RegistrarId, Transport};
use crate::wire::{self, AsapMessage, ErrorCause, SelectionPolicy};

/// Pool element configuration.
#[derive(Clone, Debug)]
pub struct PeConfig {
    /// Pool to join.
    pub pool_handle: PoolHandle,
    /// PE identifier; `None` draws a random one (and a new one if the registrar says it is taken).
    pub pe_id: Option<PeId>,
    /// Where pool users reach this PE.
    pub user_transport: Transport,
    /// Where the PE takes ASAP control, if announced separately.
    pub asap_transport: Option<Transport>,
    /// Selection policy with its initial data (load for adaptive policies).
    pub policy: Policy,
    /// Registration life asked for.
    pub registration_life: Duration,
    /// Time between re-registrations; must be below the registration life.
    pub reregistration_interval: Duration,
    /// Re-register at once when the load moved at least this much since the last registration.
    pub load_change_threshold: Load,
    /// Registrars to hunt through, in order of preference.
    pub registrars: Vec<SocketAddr>,
    /// Pool registration secret, if the pool is secured.
    pub auth: Option<PoolSecret>,
    /// Time a registrar has to answer a (de)registration.
    pub response_timeout: Duration,
    /// Pause after every registrar of the list failed once in a row.
    pub retry_delay: Duration,
}

impl PeConfig {
    /// A configuration with defaults: life 30 s, re-registration every 10 s,
    /// load threshold 5 %, response timeout 2 s, retry delay 1 s.
    pub fn new(
        pool_handle: PoolHandle,
        user_transport: Transport,
        policy: Policy,
        registrars: Vec<SocketAddr>,
    ) -> Self {
        Self {
            pool_handle,
            pe_id: None,
            user_transport,
            asap_transport: None,
            policy,
            registration_life: Duration::from_secs(30),
            reregistration_interval: Duration::from_secs(10),
            load_change_threshold: u32::MAX / 20,
            registrars,
            auth: None,
            response_timeout: Duration::from_secs(2),
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// A pool element configuration that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeConfigError {
    /// No registrar to register with.
    #[error("no registrar configured")]
    NoRegistrars,
    /// The user transport has no address.
    #[error("user transport without address")]
    NoAddress,
    /// Re-registration must come before the registration life runs out.
    #[error("reregistration_interval must be positive and below registration_life")]
    Reregistration,
    /// Registration life beyond the wire field (u32 milliseconds).
    #[error("registration_life does not fit the 32-bit millisecond field")]
    LifeTooLong,
    /// A timeout that must be positive is zero.
    #[error("{0} must be positive")]
    ZeroDuration(&'static str),
}

impl PeConfig {
    /// Checks the configuration once, at the edge.
    pub fn validate(&self) -> Result<(), PeConfigError> {
        if self.registrars.is_empty() {
            return Err(PeConfigError::NoRegistrars);
        }
        if self.user_transport.addresses.is_empty() {
            return Err(PeConfigError::NoAddress);
        }
        if self.reregistration_interval.is_zero()
            || self.reregistration_interval >= self.registration_life
        {
            return Err(PeConfigError::Reregistration);
        }
        if u32::try_from(self.registration_life.as_millis()).is_err() {
            return Err(PeConfigError::LifeTooLong);
        }
        if self.response_timeout.is_zero() {
            return Err(PeConfigError::ZeroDuration("response_timeout"));
        }
        Ok(())
    }
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeAction {
    /// Open an ASAP association to registrar `registrar` (index into the list) at `addr`.
    Connect {
        /// Index into [`PeConfig::registrars`].
        registrar: usize,
        /// Its address.
        addr: SocketAddr,
    },
    /// Send on the current registrar association.
    Send(AsapMessage),
    /// Close the current registrar association.
    Close,
}

/// Something that happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeEvent {
    /// The PE is registered (first time, or again after a server hunt).
    Registered {
        /// Index of the registrar.
        registrar: usize,
    },
    /// A registrar refused the registration.
    RegistrationRejected {
        /// Index of the registrar.
        registrar: usize,
        /// The first cause it gave, if any.
        cause: Option<ErrorCause>,
    },
    /// The registrar the PE was registered with stopped answering or went away.
    RegistrarLost {
        /// Index of the registrar.
        registrar: usize,
    },
    /// Shutdown finished (`acknowledged`: the registrar confirmed the deregistration).
    Deregistered {
        /// Whether a DEREGISTRATION_RESPONSE arrived.
        acknowledged: bool,
    },
}

/// Counters of the PE side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeCounters {
    /// Registrations and re-registrations sent.
    pub registrations_sent: u64,
    /// Re-registrations triggered by a load change.
    pub load_updates: u64,
    /// Re-registrations triggered by a policy change ([`PoolElementClient::set_policy`]).
    pub policy_updates: u64,
    /// Rejections received.
    pub rejections: u64,
    /// Registrar switches (server hunt steps).
    pub hunts: u64,
    /// Endpoint keep-alives answered.
    pub keep_alives_answered: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not started.
    Idle,
    /// Waiting for the answer to a first registration at `registrar`.
    Registering { registrar: usize, deadline: Instant },
    /// Registered; `pending` is the deadline of an outstanding re-registration.
    Registered {
        registrar: usize,
        refresh_at: Instant,
        pending: Option<Instant>,
    },
    /// Pausing before trying `next`.
    Waiting { next: usize, until: Instant },
    /// Waiting for the deregistration answer.
    Deregistering { deadline: Instant },
    /// Shut down.
    Stopped,
}

/// The pool element state machine.
pub struct PoolElementClient {
    config: PeConfig,
    pe_id: PeId,
    random_id: bool,
    policy: Policy,
    /// Load carried by the latest registration sent.
    sent_load: Option<Load>,
    /// The policy or its parameters changed since the latest registration sent.
    policy_changed: bool,
    home: Option<RegistrarId>,
    state: State,
    /// Registrars tried in a row without success.
    failures_in_row: usize,
    rng: Box<dyn RngCore + Send>,
    clock: WallClock,
    actions: VecDeque<PeAction>,
    events: VecDeque<PeEvent>,
    counters: PeCounters,
}

impl std::fmt::Debug for PoolElementClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolElementClient")
            .field("pool", &self.config.pool_handle)
            .field("pe_id", &self.pe_id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl PoolElementClient {
    /// A PE client; nothing happens until [`start`](Self::start).
    pub fn new(
        config: PeConfig,
        clock: WallClock,
        mut rng: Box<dyn RngCore + Send>,
    ) -> Result<Self, PeConfigError> {
        config.validate()?;
        let (pe_id, random_id) = match config.pe_id {
            Some(id) => (id, false),
            None => (rng.next_u32(), true),
        };
        Ok(Self {
            pe_id,
            random_id,
            policy: config.policy,
            sent_load: None,
            policy_changed: false,
            home: None,
            state: State::Idle,
            failures_in_row: 0,
            config,
            rng,
            clock,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            counters: PeCounters::default(),
        })
    }

    /// This PE's identifier.
    pub fn pe_id(&self) -> PeId {
        self.pe_id
    }

    /// The pool handle.
    pub fn pool_handle(&self) -> &PoolHandle {
        &self.config.pool_handle
    }

    /// The current policy with its data.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Whether the PE is registered, and with which registrar.
    pub fn registered_with(&self) -> Option<usize> {
        match self.state {
            State::Registered { registrar, .. } => Some(registrar),
            _ => None,
        }
    }

    /// The home registrar's id, once a keep-alive told it.
    pub fn home_registrar(&self) -> Option<RegistrarId> {
        self.home
    }

    /// Counters so far.
    pub fn counters(&self) -> PeCounters {
        self.counters
    }

    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<PeAction> {
        self.actions.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<PeEvent> {
        self.events.pop_front()
    }

    /// Starts registering with the first registrar of the list.
    pub fn start(&mut self, now: Instant) {
        if self.state == State::Idle {
            self.try_registrar(now, 0);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Idle | State::Stopped => None,
            State::Registering { deadline, .. } | State::Deregistering { deadline } => {
                Some(deadline)
            }
            State::Registered {
                refresh_at,
                pending,
                ..
            } => Some(pending.unwrap_or(refresh_at)),
            State::Waiting { until, .. } => Some(until),
        }
    }

    /// Handles whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // A step can make the next one due at once (a zero retry delay);
        // the bound keeps a misconfiguration from spinning here.
        for _ in 0..8 {
            match self.poll_timeout() {
                Some(t) if t <= now => {}
                _ => return,
            }
            let before = self.state;
            self.step(now);
            if self.state == before {
                return;
            }
        }
    }

    fn step(&mut self, now: Instant) {
        match self.state {
            State::Registering {
                registrar,
                deadline,
            } if deadline <= now => {
                self.actions.push_back(PeAction::Close);
                self.hunt(now, registrar);
            }
            State::Registered {
                registrar,
                pending: Some(deadline),
                ..
            } if deadline <= now => {
                self.actions.push_back(PeAction::Close);
                self.events.push_back(PeEvent::RegistrarLost { registrar });
                self.hunt(now, registrar);
            }
            State::Registered {
                refresh_at,
                pending: None,
                ..
            } if refresh_at <= now => self.send_registration(now),
            State::Waiting { next, until } if until <= now => self.try_registrar(now, next),
            State::Deregistering { deadline } if deadline <= now => {
                self.actions.push_back(PeAction::Close);
                self.state = State::Stopped;
                self.events.push_back(PeEvent::Deregistered {
                    acknowledged: false,
                });
            }
            _ => {}
        }
    }

    /// The current registrar association closed or could not be established.
    pub fn handle_registrar_closed(&mut self, now: Instant) {
        match self.state {
            State::Registering { registrar, .. } => self.hunt(now, registrar),
            State::Registered { registrar, .. } => {
                self.events.push_back(PeEvent::RegistrarLost { registrar });
                self.hunt(now, registrar);
            }
            State::Deregistering { .. } => {
                self.state = State::Stopped;
                self.events.push_back(PeEvent::Deregistered {
                    acknowledged: false,
                });
            }
            State::Idle | State::Waiting { .. } | State::Stopped => {}
        }
    }

    /// Reports a new load (adaptive policies); re-registers at once when it
    /// moved by at least the threshold since the last registration.
    pub fn set_load(&mut self, now: Instant, load: Load) {
        self.policy = policy_with_load(self.policy, load);
        if let State::Registered { pending: None, .. } = self.state {
            if self.load_moved() {
                self.counters.load_updates += 1;
                self.send_registration(now);
            }
        }
    }

    /// Replaces the policy or its parameters (weight, priority, …; an operator's reload).
    /// The current load is kept. A registered PE re-registers at once (after an
    /// outstanding re-registration is answered); the registrar updates the entry in place.
    pub fn set_policy(&mut self, now: Instant, policy: Policy) {
        let policy = match policy_load(&self.policy) {
            Some(load) => policy_with_load(policy, load),
            None => policy,
        };
        if policy == self.policy {
            return;
        }
        self.policy = policy;
        self.policy_changed = true;
        if let State::Registered { pending: None, .. } = self.state {
            self.counters.policy_updates += 1;
            self.send_registration(now);
        }
    }

    fn load_moved(&self) -> bool {
        match (policy_load(&self.policy), self.sent_load) {
            (Some(now), Some(sent)) => now.abs_diff(sent) >= self.config.load_change_threshold,
            _ => false,
        }
    }

    /// Deregisters (drain) and then stops; without a registration, stops at once.
    pub fn shutdown(&mut self, now: Instant) {
        match self.state {
            State::Registered { .. } => {
                let auth = self.config.auth.as_ref().and_then(|secret| {
                    let nonce = self.rng.next_u64();
                    auth::sign_deregistration(
                        secret,
                        &self.config.pool_handle,
                        self.pe_id,
                        nonce,
                        self.clock.unix_ms(now),
                    )
                    .ok()
                });
                self.actions
                    .push_back(PeAction::Send(AsapMessage::Deregistration {
                        pool_handle: self.config.pool_handle.clone(),
                        pe_id: self.pe_id,
                        auth,
                    }));
                self.state = State::Deregistering {
                    deadline: now + self.config.response_timeout,
                };
            }
            State::Deregistering { .. } | State::Stopped => {}
            State::Idle | State::Waiting { .. } => {
                self.state = State::Stopped;
                self.events.push_back(PeEvent::Deregistered {
                    acknowledged: false,
                });
            }
            State::Registering { .. } => {
                self.actions.push_back(PeAction::Close);
                self.state = State::Stopped;
                self.events.push_back(PeEvent::Deregistered {
                    acknowledged: false,
                });
            }
        }
    }

    /// Processes a message from the current registrar.
    pub fn handle_message(&mut self, now: Instant, msg: AsapMessage) {
        match msg {
            AsapMessage::EndpointKeepAlive {
                server_id,
                pool_handle,
                pe_id,
                ..
            } if pool_handle == self.config.pool_handle && pe_id == self.pe_id => {
                self.home = Some(server_id);
                self.counters.keep_alives_answered += 1;
                self.actions
                    .push_back(PeAction::Send(AsapMessage::EndpointKeepAliveAck {
                        pool_handle,
                        pe_id,
                    }));
            }
            AsapMessage::RegistrationResponse {
                reject,
                pool_handle,
                pe_id,
                error,
            } if pool_handle == self.config.pool_handle && pe_id == self.pe_id => {
                self.on_registration_response(now, reject, error)
            }
            AsapMessage::DeregistrationResponse {
                pool_handle, pe_id, ..
            } if pool_handle == self.config.pool_handle && pe_id == self.pe_id => {
                if let State::Deregistering { .. } = self.state {
                    self.actions.push_back(PeAction::Close);
                    self.state = State::Stopped;
                    self.events
                        .push_back(PeEvent::Deregistered { acknowledged: true });
                }
            }
            _ => {}
        }
    }

    fn on_registration_response(
        &mut self,
        now: Instant,
        reject: bool,
        error: Option<wire::OperationError>,
    ) {
        let (registrar, was_registered) = match self.state {
            State::Registering { registrar, .. } => (registrar, false),
            State::Registered {
                registrar,
                pending: Some(_),
                ..
            } => (registrar, true),
            _ => return,
        };
        if reject {
            self.counters.rejections += 1;
            let cause = error.and_then(|e| e.causes.into_iter().next());
            if self.random_id && cause == Some(ErrorCause::NonUniquePeIdentifier) {
                self.pe_id = self.rng.next_u32();
            }
            self.events
                .push_back(PeEvent::RegistrationRejected { registrar, cause });
            if was_registered {
                self.events.push_back(PeEvent::RegistrarLost { registrar });
            }
            self.actions.push_back(PeAction::Close);
            self.hunt(now, registrar);
            return;
        }
        self.failures_in_row = 0;
        self.state = State::Registered {
            registrar,
            refresh_at: now + self.config.reregistration_interval,
            pending: None,
        };
        if !was_registered {
            self.events.push_back(PeEvent::Registered { registrar });
        }
        // The load or the policy may have moved while the answer was on its way.
        if self.policy_changed {
            self.counters.policy_updates += 1;
            self.send_registration(now);
        } else if self.load_moved() {
            self.counters.load_updates += 1;
            self.send_registration(now);
        }
    }

    /// Moves on from a registrar that failed: the next one at once, or after
    /// `retry_delay` once every registrar failed in a row.
    fn hunt(&mut self, now: Instant, failed: usize) {
        self.counters.hunts += 1;
        self.failures_in_row += 1;
        let next = (failed + 1) % self.config.registrars.len();
        if self.failures_in_row % self.config.registrars.len() == 0 {
            self.state = State::Waiting {
                next,
                until: now + self.config.retry_delay,
            };
        } else {
            self.try_registrar(now, next);
        }
    }

    fn try_registrar(&mut self, now: Instant, registrar: usize) {
        self.actions.push_back(PeAction::Connect {
            registrar,
            addr: self.config.registrars[registrar],
        });
        self.state = State::Registering {
            registrar,
            deadline: now,
        };
        self.send_registration(now);
    }

    /// Sends a (re-)registration with fresh auth and arms its answer deadline.
    fn send_registration(&mut self, now: Instant) {
        let element = wire::PoolElement {
            id: self.pe_id,
            home_registrar: self.home.unwrap_or(0),
            registration_life: u32::try_from(millis(self.config.registration_life))
                .unwrap_or(u32::MAX),
            user_transport: self.config.user_transport.clone(),
            policy: SelectionPolicy::Known(self.policy),
            asap_transport: self.config.asap_transport.clone(),
        };
        let auth = self.config.auth.as_ref().and_then(|secret| {
            let nonce = self.rng.next_u64();
            // Elements that cannot be encoded are refused by the codec anyway.
            auth::sign(
                secret,
                &self.config.pool_handle,
                &element,
                nonce,
                self.clock.unix_ms(now),
            )
            .ok()
        });
        self.sent_load = policy_load(&self.policy);
        self.policy_changed = false;
        self.counters.registrations_sent += 1;
        self.actions
            .push_back(PeAction::Send(AsapMessage::Registration {
                pool_handle: self.config.pool_handle.clone(),
                element,
                auth,
            }));
        let deadline = now + self.config.response_timeout;
        match &mut self.state {
            State::Registering { deadline: d, .. } => *d = deadline,
            State::Registered { pending, .. } => *pending = Some(deadline),
            _ => {}
        }
    }
}
