//! The pool user (PU) side of ASAP (RFC 5352 §3.4–3.6, RFC 5356 §"Pool
//! User Considerations").
//!
//! Resolves pool handles at a registrar and caches the answer for a
//! configurable staleness; picks a PE from the cache with the pool's policy
//! ([`PuSelector`]); reports unreachable PEs to the registrar and drops them
//! from the cache; hunts through the registrar list when a registrar does not
//! answer or goes away.
//!
//! One association at a time, to the current registrar, opened on demand.
//! Actions come in order: `Close`, `Connect`, then `Send`s on it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::policy::PuSelector;
use crate::types::{PeId, PoolHandle};
use crate::wire::{AsapMessage, ErrorCause, PoolElement, SelectionPolicy};

/// Pool user configuration.
#[derive(Clone, Debug)]
pub struct PuConfig {
    /// Registrars to hunt through, in order of preference.
    pub registrars: Vec<SocketAddr>,
    /// How long a handle resolution answer is used before asking again.
    pub cache_staleness: Duration,
    /// Time a registrar has to answer a handle resolution.
    pub request_timeout: Duration,
    /// Registrars tried for one resolution before it fails.
    pub max_attempts: usize,
    /// Most pools cached at once (the oldest entry makes room).
    pub max_cached_pools: usize,
}

impl PuConfig {
    /// Defaults: staleness 1 s, request timeout 1 s, two rounds of the list, 1024 pools.
    pub fn new(registrars: Vec<SocketAddr>) -> Self {
        let max_attempts = 2 * registrars.len().max(1);
        Self {
            registrars,
            cache_staleness: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_attempts,
            max_cached_pools: 1024,
        }
    }
}

/// A pool user configuration that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PuConfigError {
    /// No registrar to ask.
    #[error("no registrar configured")]
    NoRegistrars,
    /// A value that must be positive is zero.
    #[error("{0} must be positive")]
    Zero(&'static str),
}

impl PuConfig {
    /// Checks the configuration once, at the edge.
    pub fn validate(&self) -> Result<(), PuConfigError> {
        if self.registrars.is_empty() {
            return Err(PuConfigError::NoRegistrars);
        }
        if self.request_timeout.is_zero() {
            return Err(PuConfigError::Zero("request_timeout"));
        }
        if self.max_attempts == 0 {
            return Err(PuConfigError::Zero("max_attempts"));
        }
        if self.max_cached_pools == 0 {
            return Err(PuConfigError::Zero("max_cached_pools"));
        }
        Ok(())
    }
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PuAction {
    /// Open an ASAP association to registrar `registrar` at `addr`.
    Connect {
        /// Index into [`PuConfig::registrars`].
        registrar: usize,
        /// Its address.
        addr: SocketAddr,
    },
    /// Send on the current registrar association.
    Send(AsapMessage),
    /// Close the current registrar association.
    Close,
}

/// Why a handle resolution failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolutionError {
    /// The registrar answered with an error (e.g. unknown pool handle).
    Registrar(ErrorCause),
    /// The registrar answered with no PE.
    Empty,
    /// No registrar answered within `max_attempts` tries.
    Timeout,
}

/// Something that happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PuEvent {
    /// A handle resolution filled the cache; [`PoolUserClient::select`] will now pick.
    Resolved {
        /// Pool.
        pool_handle: PoolHandle,
        /// PEs cached.
        elements: usize,
    },
    /// A handle resolution failed.
    ResolutionFailed {
        /// Pool.
        pool_handle: PoolHandle,
        /// Why.
        error: ResolutionError,
    },
    /// The current registrar went away or stopped answering; the next one is used.
    RegistrarLost {
        /// Index of the registrar.
        registrar: usize,
    },
}

/// What [`PoolUserClient::resolve`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolve {
    /// The cache is fresh and holds PEs: select now.
    Cached,
    /// A handle resolution is on its way: wait for [`PuEvent::Resolved`].
    Pending,
}

/// Counters of the PU side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PuCounters {
    /// Handle resolutions sent.
    pub resolutions_sent: u64,
    /// Selections served from the cache.
    pub cache_hits: u64,
    /// ENDPOINT_UNREACHABLE reports sent.
    pub failure_reports: u64,
    /// Registrar switches.
    pub hunts: u64,
    /// Resolutions that failed.
    pub resolution_failures: u64,
}

/// One pool's cached answer.
#[derive(Clone, Debug)]
struct CacheEntry {
    selector: PuSelector,
    elements: HashMap<PeId, PoolElement>,
    fetched_at: Instant,
}

/// An outstanding handle resolution.
#[derive(Clone, Copy, Debug)]
struct Pending {
    deadline: Instant,
    attempts: usize,
}

/// The pool user state machine.
pub struct PoolUserClient {
    config: PuConfig,
    /// Current registrar and whether an association to it was requested.
    registrar: usize,
    connected: bool,
    cache: HashMap<PoolHandle, CacheEntry>,
    pending: HashMap<PoolHandle, Pending>,
    rng: Box<dyn RngCore + Send>,
    actions: VecDeque<PuAction>,
    events: VecDeque<PuEvent>,
    counters: PuCounters,
}

impl std::fmt::Debug for PoolUserClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolUserClient")
            .field("registrar", &self.registrar)
            .field("cached_pools", &self.cache.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl PoolUserClient {
    /// A PU client; it connects on first need.
    pub fn new(config: PuConfig, rng: Box<dyn RngCore + Send>) -> Result<Self, PuConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            registrar: 0,
            connected: false,
            cache: HashMap::new(),
            pending: HashMap::new(),
            rng,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            counters: PuCounters::default(),
        })
    }

    /// Counters so far.
    pub fn counters(&self) -> PuCounters {
        self.counters
    }

    /// Index of the registrar in use.
    pub fn current_registrar(&self) -> usize {
        self.registrar
    }

    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<PuAction> {
        self.actions.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<PuEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    fn fresh(&self, now: Instant, handle: &PoolHandle) -> bool {
        self.cache.get(handle).is_some_and(|e| {
            !e.selector.is_empty()
                && now.saturating_duration_since(e.fetched_at) < self.config.cache_staleness
        })
    }

    /// Makes sure PEs of `handle` are cached: `Cached` if a fresh answer is
    /// there, otherwise a handle resolution is sent (once) and `Pending`.
    pub fn resolve(&mut self, now: Instant, handle: &PoolHandle) -> Resolve {
        if self.fresh(now, handle) {
            return Resolve::Cached;
        }
        if !self.pending.contains_key(handle) {
            self.pending.insert(
                handle.clone(),
                Pending {
                    deadline: now + self.config.request_timeout,
                    attempts: 1,
                },
            );
            self.send_resolution(handle.clone());
        }
        Resolve::Pending
    }

    /// Picks a PE of `handle` from a fresh cache with the pool's policy;
    /// `None` (and a resolution on its way) when the cache is stale or empty.
    pub fn select(&mut self, now: Instant, handle: &PoolHandle) -> Option<PoolElement> {
        if self.resolve(now, handle) == Resolve::Pending {
            return None;
        }
        let entry = self.cache.get_mut(handle)?;
        let id = entry.selector.select(&mut self.rng)?;
        self.counters.cache_hits += 1;
        entry.elements.get(&id).cloned()
    }

    /// The cached PEs of a pool (fresh or not), in no particular order.
    pub fn cached(&self, handle: &PoolHandle) -> impl Iterator<Item = &PoolElement> {
        self.cache
            .get(handle)
            .into_iter()
            .flat_map(|e| e.elements.values())
    }

    /// Drops a pool's cached answer (the next selection resolves again).
    pub fn invalidate(&mut self, handle: &PoolHandle) {
        self.cache.remove(handle);
    }

    /// A PE did not answer: drop it from the cache and tell the registrar
    /// (ASAP_ENDPOINT_UNREACHABLE), which may remove it.
    pub fn report_failure(&mut self, handle: &PoolHandle, pe_id: PeId) {
        if let Some(e) = self.cache.get_mut(handle) {
            e.selector.remove(pe_id);
            e.elements.remove(&pe_id);
        }
        self.counters.failure_reports += 1;
        self.send(AsapMessage::EndpointUnreachable {
            pool_handle: handle.clone(),
            pe_id,
        });
    }

    /// Processes a message from the current registrar.
    pub fn handle_message(&mut self, now: Instant, msg: AsapMessage) {
        if let AsapMessage::HandleResolutionResponse {
            pool_handle,
            policy,
            elements,
            error,
            ..
        } = msg
        {
            self.on_response(
                now,
                pool_handle,
                policy,
                elements,
                error.and_then(|e| e.causes.into_iter().next()),
            );
        }
    }

    fn on_response(
        &mut self,
        now: Instant,
        pool_handle: PoolHandle,
        _policy: Option<SelectionPolicy>,
        elements: Vec<PoolElement>,
        cause: Option<ErrorCause>,
    ) {
        // Unsolicited answers are not cached: they could fill the cache.
        if self.pending.remove(&pool_handle).is_none() {
            return;
        }
        let known: Vec<(PeId, crate::types::Policy)> = elements
            .iter()
            .filter_map(|pe| match pe.policy {
                SelectionPolicy::Known(p) => Some((pe.id, p)),
                SelectionPolicy::Unknown { .. } => None,
            })
            .collect();
        if let Some(cause) = cause {
            self.fail(pool_handle, ResolutionError::Registrar(cause));
            return;
        }
        if known.is_empty() {
            self.fail(pool_handle, ResolutionError::Empty);
            return;
        }
        if !self.cache.contains_key(&pool_handle)
            && self.cache.len() >= self.config.max_cached_pools
        {
            let oldest = self
                .cache
                .iter()
                .min_by_key(|(_, e)| e.fetched_at)
                .map(|(h, _)| h.clone());
            if let Some(h) = oldest {
                self.cache.remove(&h);
            }
        }
        let entry = self
            .cache
            .entry(pool_handle.clone())
            .or_insert_with(|| CacheEntry {
                selector: PuSelector::new(),
                elements: HashMap::new(),
                fetched_at: now,
            });
        // A refresh replaces the list but keeps the rotation of PEs still in it.
        let fresh_ids: Vec<PeId> = known.iter().map(|(id, _)| *id).collect();
        let stale: Vec<PeId> = entry
            .selector
            .ids()
            .filter(|id| !fresh_ids.contains(id))
            .collect();
        for id in stale {
            entry.selector.remove(id);
        }
        entry.selector.merge(known);
        entry.elements = elements
            .into_iter()
            .filter(|pe| fresh_ids.contains(&pe.id))
            .map(|pe| (pe.id, pe))
            .collect();
        entry.fetched_at = now;
        let n = entry.selector.len();
        self.events.push_back(PuEvent::Resolved {
            pool_handle,
            elements: n,
        });
    }

    fn fail(&mut self, pool_handle: PoolHandle, error: ResolutionError) {
        self.counters.resolution_failures += 1;
        self.cache.remove(&pool_handle);
        self.events
            .push_back(PuEvent::ResolutionFailed { pool_handle, error });
    }

    /// The registrar association closed or could not be established: move on.
    pub fn handle_registrar_closed(&mut self, now: Instant) {
        if !self.connected {
            return;
        }
        self.connected = false;
        self.events.push_back(PuEvent::RegistrarLost {
            registrar: self.registrar,
        });
        self.next_registrar(now);
    }

    /// Retries resolutions that timed out at the next registrar, or fails them.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<PoolHandle> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(h, _)| h.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        for h in &due {
            let Some(p) = self.pending.get_mut(h) else {
                continue;
            };
            if p.attempts >= self.config.max_attempts {
                self.pending.remove(h);
                self.fail(h.clone(), ResolutionError::Timeout);
            } else {
                p.attempts += 1;
            }
        }
        if self.connected {
            self.actions.push_back(PuAction::Close);
            self.connected = false;
            self.events.push_back(PuEvent::RegistrarLost {
                registrar: self.registrar,
            });
        }
        self.next_registrar(now);
    }

    /// Switches to the next registrar and resends every outstanding resolution.
    fn next_registrar(&mut self, now: Instant) {
        self.counters.hunts += 1;
        self.registrar = (self.registrar + 1) % self.config.registrars.len();
        let mut handles: Vec<PoolHandle> = self.pending.keys().cloned().collect();
        handles.sort();
        for h in handles {
            if let Some(p) = self.pending.get_mut(&h) {
                p.deadline = now + self.config.request_timeout;
            }
            self.send_resolution(h);
        }
    }

    fn send_resolution(&mut self, pool_handle: PoolHandle) {
        self.counters.resolutions_sent += 1;
        self.send(AsapMessage::HandleResolution { pool_handle });
    }

    fn send(&mut self, msg: AsapMessage) {
        if !self.connected {
            self.connected = true;
            self.actions.push_back(PuAction::Connect {
                registrar: self.registrar,
                addr: self.config.registrars[self.registrar],
            });
        }
        self.actions.push_back(PuAction::Send(msg));
    }
}
