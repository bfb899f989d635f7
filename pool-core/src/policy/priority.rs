//! Priority (RFC 5356 §4.5, type 0x00000005).
//!
//! The PEs with the highest priority value are selected first. Among PEs of
//! equal priority selection rotates round robin, so that equal peers share the
//! work instead of the first registered one taking all of it.

use super::{take_seq, OrderKey, SelectionState};

/// Highest priority sorts first; ties by sequence number.
pub(crate) fn order_key(priority: u32, st: &SelectionState) -> OrderKey {
    (u64::from(u32::MAX - priority), st.seq)
}

/// The selected PE moves behind its equals.
pub(crate) fn on_selected(st: &mut SelectionState, next_seq: &mut u64) {
    st.seq = take_seq(next_seq);
}
