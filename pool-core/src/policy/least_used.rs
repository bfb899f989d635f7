//! Least Used (RFC 5356 §5.1, type 0x40000001).
//!
//! The PEs with the lowest reported load are selected first. The load only
//! changes when the PE re-registers, so between reports every resolution
//! would return the same PE; RFC 5356 therefore breaks ties round robin: the
//! selected PE moves behind every PE with the same load (Dreibholz's
//! simulations of LU rely on this).

use super::{take_seq, OrderKey, SelectionState};
use crate::types::Load;

/// Lowest load first; ties by sequence number.
pub(crate) fn order_key(load: Load, st: &SelectionState) -> OrderKey {
    (u64::from(load), st.seq)
}

/// The selected PE moves behind its equally loaded peers.
pub(crate) fn on_selected(st: &mut SelectionState, next_seq: &mut u64) {
    st.seq = take_seq(next_seq);
}
