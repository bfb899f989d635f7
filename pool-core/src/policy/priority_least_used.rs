//! Priority Least Used (RFC 5356 §5.3, type 0x40000003).
//!
//! Each PE reports its load and a *load increment*: how much its load grows
//! with one more request (a small, fast PE has a small increment). The PE
//! with the lowest load + increment, i.e. the lowest load it would have after
//! taking the request, is selected first. The registrar does not change the
//! values on selection (that is Least Used with Degradation); ties rotate
//! round robin.

use super::{load_sum, take_seq, OrderKey, SelectionState};
use crate::types::Load;

/// Lowest (load + load increment) first; ties by sequence number.
pub(crate) fn order_key(load: Load, increment: Load, st: &SelectionState) -> OrderKey {
    (load_sum(load, increment), st.seq)
}

/// The selected PE moves behind its equals.
pub(crate) fn on_selected(st: &mut SelectionState, next_seq: &mut u64) {
    st.seq = take_seq(next_seq);
}
