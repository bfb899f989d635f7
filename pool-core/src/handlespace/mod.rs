//! The handlespace: every pool of an operation scope with its pool elements.
//!
//! A registrar keeps one. It answers four kinds of questions fast:
//! - by pool handle (handle resolution, registration): a hash map of pools,
//!   so the cost does not depend on how many pools there are; inside a pool,
//!   selection runs on an index its policy needs (see [`crate::policy`]),
//!   O(log n) in the pool size;
//! - by time (registrations whose life ran out): one ordered set of expiry
//!   instants, so [`Handlespace::expire`] touches only what expires;
//! - by home registrar (ENRP takeover, handle table, checksum): a set of the
//!   PEs each registrar owns, with its running checksum;
//! - by (handle, PE id) for re-registration and deregistration.
//!
//! Sans-IO: time is passed in, randomness is a caller's `Rng`.

mod checksum;
mod element;
mod error;
mod pool;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Instant;

use rand::Rng;

pub use checksum::ChecksumAccumulator;
pub use element::{PoolElement, Registration};
pub use error::{HandlespaceError, OperationErrorCause};

use crate::policy::PolicyKind;
use crate::types::{PeId, PoolHandle, RegistrarId};
use pool::{Pool, Slot};

/// Index of a pool in the handlespace's pool slab.
type PoolIdx = u32;

/// Limits and selection settings, validated once and then fixed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlespaceConfig {
    /// Most pools the handlespace holds; more registrations get Lack of Resources.
    pub max_pools: usize,
    /// Most PEs in one pool.
    pub max_elements_per_pool: usize,
    /// Most PEs in the whole handlespace.
    pub max_elements: usize,
    /// How many of the PEs returned by one handle resolution count as selected
    /// (advance round robin, gain degradation). RSPLIB's default is 1.
    pub max_increment: usize,
}

impl Default for HandlespaceConfig {
    fn default() -> Self {
        Self {
            max_pools: 100_000,
            max_elements_per_pool: 100_000,
            max_elements: 1_000_000,
            max_increment: 1,
        }
    }
}

/// What a registration did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// A new PE joined (and possibly created its pool).
    Added,
    /// An existing PE was updated in place (re-registration).
    Updated,
}

/// A PE taken out of the handlespace (expired or deregistered), with its pool handle.
#[derive(Clone, Debug)]
pub struct Removed {
    /// The pool it was in.
    pub handle: PoolHandle,
    /// The PE as it was.
    pub element: PoolElement,
}

/// The PEs one registrar owns and their running checksum.
#[derive(Debug, Default)]
struct Owner {
    members: HashSet<(PoolIdx, Slot)>,
    checksum: ChecksumAccumulator,
}

/// All pools and pool elements a registrar knows.
#[derive(Debug)]
pub struct Handlespace {
    config: HandlespaceConfig,
    pools: Vec<Option<Pool>>,
    free_pools: Vec<PoolIdx>,
    by_handle: HashMap<PoolHandle, PoolIdx>,
    /// (expiry, pool, slot) of every PE whose life is representable.
    timers: BTreeSet<(Instant, PoolIdx, Slot)>,
    owners: HashMap<RegistrarId, Owner>,
    elements: usize,
    /// Reused selection buffers, so a handle resolution does not allocate twice.
    out: Vec<Slot>,
    scratch: Vec<(usize, u64)>,
}

impl Default for Handlespace {
    fn default() -> Self {
        Self::new(HandlespaceConfig::default())
    }
}

impl Handlespace {
    /// An empty handlespace with the given limits.
    ///
    /// Pool and per-pool limits above `u32::MAX` are lowered to it (indexes are
    /// 32-bit), and a `max_increment` of 0 means the default, 1, as in RSPLIB.
    pub fn new(mut config: HandlespaceConfig) -> Self {
        let max32 = u32::MAX as usize;
        config.max_pools = config.max_pools.min(max32);
        config.max_elements_per_pool = config.max_elements_per_pool.min(max32);
        config.max_increment = config.max_increment.max(1);
        Self {
            config,
            pools: Vec::new(),
            free_pools: Vec::new(),
            by_handle: HashMap::new(),
            timers: BTreeSet::new(),
            owners: HashMap::new(),
            elements: 0,
            out: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &HandlespaceConfig {
        &self.config
    }

    /// Number of pools.
    pub fn pool_count(&self) -> usize {
        self.by_handle.len()
    }

    /// Number of PEs in all pools.
    pub fn element_count(&self) -> usize {
        self.elements
    }

    fn pool(&self, idx: PoolIdx) -> &Pool {
        self.pools[idx as usize].as_ref().expect("live pool index")
    }

    fn pool_mut(&mut self, idx: PoolIdx) -> &mut Pool {
        self.pools[idx as usize].as_mut().expect("live pool index")
    }

    fn find(&self, handle: &PoolHandle) -> Option<&Pool> {
        self.by_handle.get(handle).map(|&i| self.pool(i))
    }

    /// Number of PEs in a pool, `None` if the pool does not exist.
    pub fn pool_len(&self, handle: &PoolHandle) -> Option<usize> {
        self.find(handle).map(Pool::len)
    }

    /// The policy a pool uses, `None` if the pool does not exist.
    pub fn pool_policy(&self, handle: &PoolHandle) -> Option<PolicyKind> {
        self.find(handle).map(|p| p.kind)
    }

    /// Handles of all pools, in no particular order.
    pub fn pools(&self) -> impl Iterator<Item = &PoolHandle> {
        self.by_handle.keys()
    }

    /// One PE, by pool handle and PE identifier.
    pub fn get(&self, handle: &PoolHandle, id: PeId) -> Option<&PoolElement> {
        self.find(handle)?.get(id)
    }

    /// The PEs of one pool (none if the pool does not exist), in no particular order.
    pub fn elements(&self, handle: &PoolHandle) -> impl Iterator<Item = &PoolElement> {
        self.find(handle).into_iter().flat_map(Pool::iter)
    }

    /// Every PE with its pool handle (for a full ENRP handle table).
    pub fn iter(&self) -> impl Iterator<Item = (&PoolHandle, &PoolElement)> {
        self.pools
            .iter()
            .flatten()
            .flat_map(|p| p.iter().map(move |pe| (&p.handle, pe)))
    }

    /// The PEs whose home is `registrar` (for takeover and ENRP handle updates).
    pub fn owned_by(
        &self,
        registrar: RegistrarId,
    ) -> impl Iterator<Item = (&PoolHandle, &PoolElement)> {
        self.owners
            .get(&registrar)
            .into_iter()
            .flat_map(|o| o.members.iter())
            .map(move |&(p, s)| {
                let pool = self.pool(p);
                (&pool.handle, pool.element(s))
            })
    }

    /// Number of PEs whose home is `registrar`.
    pub fn owned_count(&self, registrar: RegistrarId) -> usize {
        self.owners.get(&registrar).map_or(0, |o| o.members.len())
    }

    /// Registrars that own at least one PE.
    pub fn registrars(&self) -> impl Iterator<Item = RegistrarId> + '_ {
        self.owners.keys().copied()
    }

    /// The handlespace checksum of the PEs `registrar` owns (RFC 5353), in O(1).
    pub fn checksum(&self, registrar: RegistrarId) -> u16 {
        self.owners
            .get(&registrar)
            .map_or(ChecksumAccumulator::new(), |o| o.checksum)
            .finish()
    }

    /// The earliest registration expiry, for the driver's timer.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.timers.first().map(|&(t, _, _)| t)
    }

    /// Registers a PE, or updates it in place if `(handle, id)` is already known.
    ///
    /// A new PE must match its pool's policy type, transport protocol and
    /// data/control use (the first PE of a pool sets them). An update may move
    /// the PE to another home registrar.
    pub fn register(
        &mut self,
        handle: &PoolHandle,
        reg: Registration,
        now: Instant,
    ) -> Result<RegisterOutcome, HandlespaceError> {
        let first = reg
            .user_transports
            .first()
            .ok_or(HandlespaceError::InvalidRegistration("no user transport"))?;
        if reg.user_transports.iter().any(|t| t.addresses.is_empty())
            || reg
                .asap_transport
                .as_ref()
                .is_some_and(|t| t.addresses.is_empty())
        {
            return Err(HandlespaceError::InvalidRegistration(
                "transport without address",
            ));
        }
        let (protocol, transport_use) = (first.protocol, first.transport_use);
        let kind = PolicyKind::of(&reg.policy);

        let pool_idx = match self.by_handle.get(handle) {
            Some(&idx) => {
                let pool = self.pool(idx);
                if pool.kind != kind {
                    return Err(HandlespaceError::InconsistentPolicy {
                        pool: pool.kind.type_code(),
                        element: kind.type_code(),
                    });
                }
                if pool.protocol != protocol {
                    return Err(HandlespaceError::InconsistentTransport {
                        pool: pool.protocol,
                        element: protocol,
                    });
                }
                if pool.transport_use != transport_use {
                    return Err(HandlespaceError::InconsistentDataControl {
                        pool: pool.transport_use,
                        element: transport_use,
                    });
                }
                if let Some(slot) = pool.slot_of(reg.id) {
                    self.reregister(idx, slot, reg, now);
                    return Ok(RegisterOutcome::Updated);
                }
                if pool.len() >= self.config.max_elements_per_pool {
                    return Err(HandlespaceError::PoolFull {
                        limit: self.config.max_elements_per_pool,
                    });
                }
                if self.elements >= self.config.max_elements {
                    return Err(HandlespaceError::TooManyElements {
                        limit: self.config.max_elements,
                    });
                }
                idx
            }
            None => {
                if self.by_handle.len() >= self.config.max_pools {
                    return Err(HandlespaceError::TooManyPools {
                        limit: self.config.max_pools,
                    });
                }
                if self.elements >= self.config.max_elements
                    || self.config.max_elements_per_pool == 0
                {
                    return Err(HandlespaceError::TooManyElements {
                        limit: self.config.max_elements,
                    });
                }
                let pool = Pool::new(handle.clone(), kind, protocol, transport_use);
                let idx = match self.free_pools.pop() {
                    Some(i) => {
                        self.pools[i as usize] = Some(pool);
                        i
                    }
                    None => {
                        self.pools.push(Some(pool));
                        (self.pools.len() - 1) as PoolIdx
                    }
                };
                self.by_handle.insert(handle.clone(), idx);
                idx
            }
        };

        let words = checksum::pe_words(handle, reg.id);
        let pe = PoolElement::from_registration(reg, now, words);
        let (home, expires_at) = (pe.home, pe.expires_at);
        let slot = self.pool_mut(pool_idx).insert(pe);
        self.elements += 1;
        if let Some(t) = expires_at {
            self.timers.insert((t, pool_idx, slot));
        }
        let owner = self.owners.entry(home).or_default();
        owner.members.insert((pool_idx, slot));
        owner.checksum.add_words(words);
        Ok(RegisterOutcome::Added)
    }

    /// Re-registration: new data, same slot; only moved indexes are touched.
    fn reregister(&mut self, pool_idx: PoolIdx, slot: Slot, reg: Registration, now: Instant) {
        let pe = self.pool(pool_idx).element(slot);
        let (old_home, old_expiry, words) = (pe.home, pe.expires_at, pe.checksum_words);
        let new_expiry = now.checked_add(reg.registration_life);
        let new_home = reg.home;
        self.pool_mut(pool_idx).update(slot, |pe| {
            pe.home = reg.home;
            pe.user_transports = reg.user_transports;
            pe.asap_transport = reg.asap_transport;
            pe.policy = reg.policy;
            pe.registration_life = reg.registration_life;
            pe.last_update = now;
            pe.expires_at = new_expiry;
        });
        if old_expiry != new_expiry {
            if let Some(t) = old_expiry {
                self.timers.remove(&(t, pool_idx, slot));
            }
            if let Some(t) = new_expiry {
                self.timers.insert((t, pool_idx, slot));
            }
        }
        if old_home != new_home {
            self.disown(old_home, pool_idx, slot, words);
            let owner = self.owners.entry(new_home).or_default();
            owner.members.insert((pool_idx, slot));
            owner.checksum.add_words(words);
        }
    }

    fn disown(&mut self, home: RegistrarId, pool_idx: PoolIdx, slot: Slot, words: u32) {
        if let Some(owner) = self.owners.get_mut(&home) {
            owner.members.remove(&(pool_idx, slot));
            owner.checksum.remove_words(words);
            if owner.members.is_empty() {
                self.owners.remove(&home);
            }
        }
    }

    /// Takes a PE out of every index; drops its pool when it was the last PE.
    fn remove_slot(&mut self, pool_idx: PoolIdx, slot: Slot, timer_done: bool) -> Removed {
        let pool = self.pool_mut(pool_idx);
        let element = pool.remove(slot);
        let now_empty = pool.len() == 0;
        self.elements -= 1;
        if !timer_done {
            if let Some(t) = element.expires_at {
                self.timers.remove(&(t, pool_idx, slot));
            }
        }
        self.disown(element.home, pool_idx, slot, element.checksum_words);
        let handle = if now_empty {
            let pool = self.pools[pool_idx as usize]
                .take()
                .expect("live pool index");
            self.by_handle.remove(&pool.handle);
            self.free_pools.push(pool_idx);
            pool.handle
        } else {
            self.pool(pool_idx).handle.clone()
        };
        Removed { handle, element }
    }

    /// Deregisters a PE; `None` if it is not registered.
    pub fn remove(&mut self, handle: &PoolHandle, id: PeId) -> Option<Removed> {
        let pool_idx = *self.by_handle.get(handle)?;
        let slot = self.pool(pool_idx).slot_of(id)?;
        Some(self.remove_slot(pool_idx, slot, false))
    }

    /// Removes every PE whose registration life ran out by `now`, earliest first.
    ///
    /// Cost: O(k log n) for k expired PEs; nothing else is looked at.
    pub fn expire(&mut self, now: Instant) -> Vec<Removed> {
        let mut removed = Vec::new();
        while let Some(&(t, pool_idx, slot)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            removed.push(self.remove_slot(pool_idx, slot, true));
        }
        removed
    }

    /// Moves every PE owned by `from` to `to` (ENRP takeover of a dead peer).
    /// Returns how many PEs moved.
    pub fn take_over(&mut self, from: RegistrarId, to: RegistrarId) -> usize {
        if from == to {
            return self.owned_count(from);
        }
        let Some(old) = self.owners.remove(&from) else {
            return 0;
        };
        let moved = old.members.len();
        for &(p, s) in &old.members {
            self.pool_mut(p).set_home(s, to);
        }
        let owner = self.owners.entry(to).or_default();
        owner.members.extend(old.members);
        // Sums add: the checksum of `to` grows by exactly that of the moved PEs.
        owner.checksum.merge(&old.checksum);
        moved
    }

    /// Selects up to `n` PEs of a pool for a handle resolution, by the pool's policy.
    ///
    /// PEs whose life ran out by `now` but were not yet [`expire`](Self::expire)d
    /// are skipped. The policy state of the selected PEs is updated (round
    /// robin pointer, degradation) as [`HandlespaceConfig::max_increment`] says.
    pub fn select<R: Rng + ?Sized>(
        &mut self,
        handle: &PoolHandle,
        n: usize,
        now: Instant,
        rng: &mut R,
    ) -> Result<Vec<&PoolElement>, HandlespaceError> {
        let idx = self.select_slots(handle, n, now, rng)?;
        let pool = self.pool(idx);
        Ok(self.out.iter().map(|&s| pool.element(s)).collect())
    }

    /// Like [`select`](Self::select), but writes PE identifiers into `out`
    /// (cleared first) and does not allocate once `out` has capacity.
    pub fn select_ids<R: Rng + ?Sized>(
        &mut self,
        handle: &PoolHandle,
        n: usize,
        now: Instant,
        rng: &mut R,
        out: &mut Vec<PeId>,
    ) -> Result<(), HandlespaceError> {
        out.clear();
        let idx = self.select_slots(handle, n, now, rng)?;
        let pool = self.pool(idx);
        out.extend(self.out.iter().map(|&s| pool.element(s).id));
        Ok(())
    }

    fn select_slots<R: Rng + ?Sized>(
        &mut self,
        handle: &PoolHandle,
        n: usize,
        now: Instant,
        rng: &mut R,
    ) -> Result<PoolIdx, HandlespaceError> {
        let idx = *self
            .by_handle
            .get(handle)
            .ok_or(HandlespaceError::UnknownPoolHandle)?;
        let max_increment = self.config.max_increment;
        let pool = self.pools[idx as usize].as_mut().expect("live pool index");
        pool.select(n, now, max_increment, rng, &mut self.out, &mut self.scratch);
        Ok(idx)
    }

    /// Verifies every internal index against the PEs themselves, in O(n).
    ///
    /// Meant for tests and debugging; an `Err` names the first mismatch.
    pub fn check_consistency(&self) -> Result<(), String> {
        let mut elements = 0;
        let mut owners: HashMap<RegistrarId, (usize, ChecksumAccumulator)> = HashMap::new();
        let mut timers = BTreeSet::new();
        for (i, pool) in self.pools.iter().enumerate() {
            let Some(pool) = pool else { continue };
            let i = i as PoolIdx;
            if self.by_handle.get(&pool.handle) != Some(&i) {
                return Err(format!("pool {} not in the handle map", pool.handle));
            }
            if pool.len() == 0 {
                return Err(format!("pool {} is empty but alive", pool.handle));
            }
            pool.check_consistency()?;
            for pe in pool.iter() {
                let slot = pool.slot_of(pe.id).expect("checked by the pool");
                elements += 1;
                let o = owners.entry(pe.home).or_default();
                o.0 += 1;
                o.1.add(&pool.handle, pe.id);
                let own = self
                    .owners
                    .get(&pe.home)
                    .is_some_and(|o| o.members.contains(&(i, slot)));
                if !own {
                    return Err(format!("PE {} missing from its owner's set", pe.id));
                }
                if let Some(t) = pe.expires_at {
                    timers.insert((t, i, slot));
                }
            }
        }
        if elements != self.elements {
            return Err(format!("count {} but {elements} PEs", self.elements));
        }
        if self.by_handle.len() != self.pools.iter().flatten().count() {
            return Err("handle map has stale pools".into());
        }
        if timers != self.timers {
            return Err("expiry index differs from the PEs".into());
        }
        if owners.len() != self.owners.len() {
            return Err("owner map has stale registrars".into());
        }
        for (r, (n, acc)) in owners {
            let o = &self.owners[&r];
            if o.members.len() != n {
                return Err(format!(
                    "registrar {r} owns {} sets but {n} PEs",
                    o.members.len()
                ));
            }
            if o.checksum.finish() != acc.finish() {
                return Err(format!("checksum of registrar {r} drifted"));
            }
        }
        Ok(())
    }
}
