//! Pool member selection policies (RFC 5356).
//!
//! Each policy lives in its own file and says three things: how a PE is ordered
//! (or weighted) for selection, what happens to its per-PE selection state when
//! the registrar hands it out, and what happens when the PE re-registers. The
//! data structures that make selection fast (an ordered B-tree index, a dense
//! member list, a Fenwick tree) live in [`crate::handlespace`]; this module only
//! decides *what* they hold.
//!
//! Pool users apply the same policy to the list a handle resolution returned:
//! see [`PuSelector`].
//!
//! Semantics, where RFC 5356 leaves room, follow RSPLIB (the reference
//! implementation by the RFC's authors):
//! - ordered policies (RR, WRR, Priority, LU, LUD, PLU) return up to N PEs in
//!   selection order, but only the first `max_increment` of them (default 1)
//!   count as "selected": only those advance the round-robin pointer or gain
//!   degradation. This is RFC 5356's "the next pointer is advanced by one".
//! - equal keys are broken round robin (a PE that was just selected moves
//!   behind every PE with the same key), so Least Used rotates among equally
//!   loaded PEs instead of hammering the first one.
//! - random policies draw N *distinct* PEs without replacement.

pub(crate) mod fenwick;
pub mod least_used;
pub mod least_used_degradation;
pub mod priority;
pub mod priority_least_used;
pub mod pu;
pub mod random;
pub mod randomized_least_used;
pub mod round_robin;
pub mod weighted_random;
pub mod weighted_round_robin;

pub use pu::PuSelector;

use crate::types::Policy;

/// A policy without its per-PE data: what a pool is configured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// RFC 5356 §4.1 Round Robin.
    RoundRobin,
    /// RFC 5356 §4.2 Weighted Round Robin.
    WeightedRoundRobin,
    /// RFC 5356 §4.3 Random.
    Random,
    /// RFC 5356 §4.4 Weighted Random.
    WeightedRandom,
    /// RFC 5356 §4.5 Priority.
    Priority,
    /// RFC 5356 §5.1 Least Used.
    LeastUsed,
    /// RFC 5356 §5.2 Least Used with Degradation.
    LeastUsedDegradation,
    /// RFC 5356 §5.3 Priority Least Used.
    PriorityLeastUsed,
    /// RFC 5356 §5.4 Randomized Least Used.
    RandomizedLeastUsed,
}

impl PolicyKind {
    /// The kind of a policy (drops the per-PE data).
    pub fn of(policy: &Policy) -> Self {
        match policy {
            Policy::RoundRobin => Self::RoundRobin,
            Policy::WeightedRoundRobin { .. } => Self::WeightedRoundRobin,
            Policy::Random => Self::Random,
            Policy::WeightedRandom { .. } => Self::WeightedRandom,
            Policy::Priority { .. } => Self::Priority,
            Policy::LeastUsed { .. } => Self::LeastUsed,
            Policy::LeastUsedDegradation { .. } => Self::LeastUsedDegradation,
            Policy::PriorityLeastUsed { .. } => Self::PriorityLeastUsed,
            Policy::RandomizedLeastUsed { .. } => Self::RandomizedLeastUsed,
        }
    }

    /// The RFC 5356 §7 type code of this policy.
    pub fn type_code(self) -> u32 {
        match self {
            Self::RoundRobin => 0x0000_0001,
            Self::WeightedRoundRobin => 0x0000_0002,
            Self::Random => 0x0000_0003,
            Self::WeightedRandom => 0x0000_0004,
            Self::Priority => 0x0000_0005,
            Self::LeastUsed => 0x4000_0001,
            Self::LeastUsedDegradation => 0x4000_0002,
            Self::PriorityLeastUsed => 0x4000_0003,
            Self::RandomizedLeastUsed => 0x4000_0004,
        }
    }

    /// Whether the policy adapts to load reports (type codes 0x4000_00xx).
    pub fn is_adaptive(self) -> bool {
        self.type_code() & 0x4000_0000 != 0
    }

    /// Which selection structure the handlespace keeps for this policy.
    pub(crate) fn mechanism(self) -> Mechanism {
        match self {
            Self::Random => Mechanism::Uniform,
            Self::WeightedRandom | Self::RandomizedLeastUsed => Mechanism::Weighted,
            Self::RoundRobin
            | Self::WeightedRoundRobin
            | Self::Priority
            | Self::LeastUsed
            | Self::LeastUsedDegradation
            | Self::PriorityLeastUsed => Mechanism::Ordered,
        }
    }
}

/// How a policy picks PEs, and so which index the handlespace maintains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mechanism {
    /// Smallest [`OrderKey`] first (B-tree ordered set).
    Ordered,
    /// Uniformly at random (dense member list).
    Uniform,
    /// Proportional to [`weight`] (Fenwick tree).
    Weighted,
}

/// Sort key of an ordered policy: (primary, tie-breaker). Smaller is selected first.
pub(crate) type OrderKey = (u64, u64);

/// Per-PE state a registrar keeps for selection; not part of the registration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SelectionState {
    /// Round-robin sequence number: tie-breaker, renewed when selected.
    pub seq: u64,
    /// Weighted round robin: the round this PE is currently serving in.
    pub round: u64,
    /// Weighted round robin: selections left in the current round.
    pub credit: u32,
    /// Least Used with Degradation: accumulated degradation since the last report.
    pub degradation: u32,
    /// Position in the dense member list (uniform and weighted mechanisms).
    pub pos: u32,
}

/// Context the pool hands to a policy when a PE joins.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JoinContext {
    /// A fresh sequence number (larger than every one in use).
    pub seq: u64,
    /// Weighted round robin: the round now being served.
    pub current_round: u64,
}

/// Whether an ordered policy lists this PE at all (WRR with weight 0 does not).
pub(crate) fn selectable(policy: &Policy) -> bool {
    match policy {
        Policy::WeightedRoundRobin { weight } => weighted_round_robin::selectable(*weight),
        _ => true,
    }
}

/// Sort key of a PE under an ordered policy.
pub(crate) fn order_key(policy: &Policy, st: &SelectionState) -> OrderKey {
    match *policy {
        Policy::RoundRobin => round_robin::order_key(st),
        Policy::WeightedRoundRobin { .. } => weighted_round_robin::order_key(st),
        Policy::Priority { priority } => priority::order_key(priority, st),
        Policy::LeastUsed { load } => least_used::order_key(load, st),
        Policy::LeastUsedDegradation { load, .. } => least_used_degradation::order_key(load, st),
        Policy::PriorityLeastUsed { load, increment } => {
            priority_least_used::order_key(load, increment, st)
        }
        // Not ordered; the handlespace never asks.
        Policy::Random | Policy::WeightedRandom { .. } | Policy::RandomizedLeastUsed { .. } => {
            (0, st.seq)
        }
    }
}

/// Selection weight of a PE under a weighted policy (0 = never drawn).
pub(crate) fn weight(policy: &Policy) -> u64 {
    match *policy {
        Policy::WeightedRandom { weight } => weighted_random::weight(weight),
        Policy::RandomizedLeastUsed { load } => randomized_least_used::weight(load),
        _ => 1,
    }
}

/// Initial selection state of a PE that joins a pool.
pub(crate) fn on_join(policy: &Policy, ctx: JoinContext) -> SelectionState {
    let mut st = SelectionState {
        seq: ctx.seq,
        ..SelectionState::default()
    };
    if let Policy::WeightedRoundRobin { weight } = *policy {
        weighted_round_robin::on_join(weight, ctx.current_round, &mut st);
    }
    st
}

/// Update of the selection state when the registrar hands the PE out.
///
/// `next_seq` is the pool's sequence counter; a policy that rotates takes a
/// fresh number from it to move behind its equals.
pub(crate) fn on_selected(policy: &Policy, st: &mut SelectionState, next_seq: &mut u64) {
    match *policy {
        Policy::RoundRobin => round_robin::on_selected(st, next_seq),
        Policy::WeightedRoundRobin { weight } => weighted_round_robin::on_selected(weight, st),
        Policy::Priority { .. } => priority::on_selected(st, next_seq),
        Policy::LeastUsed { .. } => least_used::on_selected(st, next_seq),
        Policy::LeastUsedDegradation { degradation, .. } => {
            least_used_degradation::on_selected(degradation, st, next_seq)
        }
        Policy::PriorityLeastUsed { .. } => priority_least_used::on_selected(st, next_seq),
        Policy::Random | Policy::WeightedRandom { .. } | Policy::RandomizedLeastUsed { .. } => {}
    }
}

/// Update of the selection state when the PE re-registers with new policy data.
///
/// `current_round` is the round the pool is serving (weighted round robin).
pub(crate) fn on_reregistered(
    old: &Policy,
    new: &Policy,
    current_round: u64,
    st: &mut SelectionState,
) {
    match (*old, *new) {
        (
            Policy::WeightedRoundRobin { weight: old },
            Policy::WeightedRoundRobin { weight: new },
        ) => weighted_round_robin::on_reregistered(old, new, current_round, st),
        (_, Policy::LeastUsedDegradation { .. }) => least_used_degradation::on_reregistered(st),
        _ => {}
    }
}

/// Load plus an addend, widened so that neither overflows nor saturates: the
/// order among PEs above 100 % (load + degradation) stays meaningful.
pub(crate) fn load_sum(load: u32, addend: u32) -> u64 {
    u64::from(load) + u64::from(addend)
}

/// Takes the next sequence number from a pool counter.
pub(crate) fn take_seq(next_seq: &mut u64) -> u64 {
    let seq = *next_seq;
    *next_seq += 1;
    seq
}
