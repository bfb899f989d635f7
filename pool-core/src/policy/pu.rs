//! Pool-user side selection (the "Pool User Considerations" of RFC 5356).
//!
//! A handle resolution returns a handful of PEs; the pool user caches them and
//! applies the pool's policy to that list for each new session: round robin
//! walks the list, Least Used takes the least loaded entry (rotating among
//! equals), Least Used with Degradation raises its local copy of the load on
//! every pick, the random policies draw. The lists are short (a registrar
//! returns a few entries), so a linear scan beats any index here.

use rand::Rng;

use super::{load_sum, randomized_least_used, weighted_random, PolicyKind};
use crate::types::{PeId, Policy};

/// One cached entry with the pool user's own selection state.
#[derive(Clone, Debug)]
struct Entry {
    id: PeId,
    policy: Policy,
    /// Round-robin position; renewed when picked.
    seq: u64,
    /// Weighted round robin: picks left in the current round.
    credit: u32,
    /// Weighted round robin: the round this entry serves in.
    round: u64,
    /// Least Used with Degradation: local degradation since the entry arrived.
    degradation: u32,
}

/// A pool user's cached PE list for one pool, with the policy state to pick from it.
#[derive(Clone, Debug, Default)]
pub struct PuSelector {
    entries: Vec<Entry>,
    next_seq: u64,
}

impl PuSelector {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty (time for a handle resolution).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Cached PE identifiers in round-robin order of arrival.
    pub fn ids(&self) -> impl Iterator<Item = PeId> + '_ {
        self.entries.iter().map(|e| e.id)
    }

    /// Merges the entries of a handle resolution response, in response order.
    ///
    /// An entry already cached keeps its round-robin position (so a refresh
    /// does not restart the rotation) but takes the new policy data; its
    /// local degradation is reset, because the response carries a fresh load.
    /// New entries are appended behind the cached ones. Entries missing from
    /// the response stay until [`remove`](Self::remove)d or [`clear`](Self::clear)ed.
    pub fn merge(&mut self, response: impl IntoIterator<Item = (PeId, Policy)>) {
        for (id, policy) in response {
            if let Some(e) = self.entries.iter_mut().find(|e| e.id == id) {
                if let (
                    Policy::WeightedRoundRobin { weight: old },
                    Policy::WeightedRoundRobin { weight: new },
                ) = (e.policy, policy)
                {
                    if old != new {
                        e.credit = e.credit.min(new);
                    }
                }
                e.policy = policy;
                e.degradation = 0;
            } else {
                let seq = self.next_seq;
                self.next_seq += 1;
                let round = self.entries.iter().map(|e| e.round).min().unwrap_or(0);
                let credit = match policy {
                    Policy::WeightedRoundRobin { weight } => weight,
                    _ => 0,
                };
                self.entries.push(Entry {
                    id,
                    policy,
                    seq,
                    credit,
                    round,
                    degradation: 0,
                });
            }
        }
    }

    /// Drops one entry (the PE failed or was reported unreachable).
    pub fn remove(&mut self, id: PeId) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.id != id);
        self.entries.len() != before
    }

    /// Drops every entry (cache expired).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Picks one PE by the policy of the cached entries.
    ///
    /// The policy is taken from the first entry (a pool has one policy; the
    /// registrar refuses inconsistent ones). `None` when the cache is empty or
    /// no entry may be picked (all weights 0).
    pub fn select<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Option<PeId> {
        let kind = PolicyKind::of(&self.entries.first()?.policy);
        let idx = match kind {
            PolicyKind::Random => Some(rng.random_range(0..self.entries.len())),
            PolicyKind::WeightedRandom => self.draw(rng, |p| match *p {
                Policy::WeightedRandom { weight } => weighted_random::weight(weight),
                _ => 0,
            }),
            PolicyKind::RandomizedLeastUsed => self.draw(rng, |p| match *p {
                Policy::RandomizedLeastUsed { load } => randomized_least_used::weight(load),
                _ => 0,
            }),
            PolicyKind::WeightedRoundRobin => self.min_by_key(|e| match e.policy {
                Policy::WeightedRoundRobin { weight } if weight > 0 => Some((e.round, e.seq)),
                _ => None,
            }),
            PolicyKind::RoundRobin => self.min_by_key(|e| Some((0, e.seq))),
            PolicyKind::Priority => self.min_by_key(|e| match e.policy {
                Policy::Priority { priority } => Some((u64::from(u32::MAX - priority), e.seq)),
                _ => None,
            }),
            PolicyKind::LeastUsed => self.min_by_key(|e| match e.policy {
                Policy::LeastUsed { load } => Some((u64::from(load), e.seq)),
                _ => None,
            }),
            PolicyKind::LeastUsedDegradation => self.min_by_key(|e| match e.policy {
                Policy::LeastUsedDegradation { load, .. } => {
                    Some((load_sum(load, e.degradation), e.seq))
                }
                _ => None,
            }),
            PolicyKind::PriorityLeastUsed => self.min_by_key(|e| match e.policy {
                Policy::PriorityLeastUsed { load, increment } => {
                    Some((load_sum(load, increment), e.seq))
                }
                _ => None,
            }),
        }?;
        let seq = self.next_seq;
        self.next_seq += 1;
        let e = &mut self.entries[idx];
        match e.policy {
            Policy::WeightedRoundRobin { weight } => {
                e.credit = e.credit.saturating_sub(1);
                if e.credit == 0 {
                    e.round += 1;
                    e.credit = weight;
                }
            }
            Policy::LeastUsedDegradation { degradation, .. } => {
                e.degradation = e.degradation.saturating_add(degradation);
                e.seq = seq;
            }
            _ => e.seq = seq,
        }
        Some(e.id)
    }

    fn min_by_key(&self, key: impl Fn(&Entry) -> Option<(u64, u64)>) -> Option<usize> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| key(e).map(|k| (k, i)))
            .min()
            .map(|(_, i)| i)
    }

    fn draw<R: Rng + ?Sized>(&self, rng: &mut R, weight: impl Fn(&Policy) -> u64) -> Option<usize> {
        let total: u64 = self.entries.iter().map(|e| weight(&e.policy)).sum();
        if total == 0 {
            return None;
        }
        let mut t = rng.random_range(0..total);
        for (i, e) in self.entries.iter().enumerate() {
            let w = weight(&e.policy);
            if t < w {
                return Some(i);
            }
            t -= w;
        }
        None
    }
}
