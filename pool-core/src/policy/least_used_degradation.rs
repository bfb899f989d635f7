//! Least Used with Degradation (RFC 5356 §5.2, type 0x40000002).
//!
//! Least Used, but the registrar does not wait for the next load report to
//! notice that a PE got work: each PE carries a *load degradation* (policy
//! data: how much one more request adds to its load), and every time the
//! registrar selects the PE it adds that amount to a per-PE degradation
//! counter. PEs are ordered by load + degradation counter. A re-registration
//! reports the real load, so it resets the counter to zero. Ties rotate round
//! robin, as for Least Used.

use super::{load_sum, take_seq, OrderKey, SelectionState};
use crate::types::Load;

/// Lowest (load + accumulated degradation) first; ties by sequence number.
pub(crate) fn order_key(load: Load, st: &SelectionState) -> OrderKey {
    (load_sum(load, st.degradation), st.seq)
}

/// Selection adds the load degradation and moves the PE behind its equals.
pub(crate) fn on_selected(load_degradation: Load, st: &mut SelectionState, next_seq: &mut u64) {
    st.degradation = st.degradation.saturating_add(load_degradation);
    st.seq = take_seq(next_seq);
}

/// A fresh load report supersedes the estimate: the counter starts again at 0.
pub(crate) fn on_reregistered(st: &mut SelectionState) {
    st.degradation = 0;
}
