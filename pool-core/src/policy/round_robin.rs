//! Round Robin (RFC 5356 §4.1, type 0x00000001).
//!
//! The registrar keeps the pool as a circular list with a next pointer. A
//! handle resolution returns up to N PEs starting at the pointer, and the
//! pointer advances by one element per resolution (not by N: a pool user
//! takes the first entry, so advancing by N would skip PEs). Here the list
//! is ordered by sequence number: "advancing the pointer" gives the first
//! PE a fresh, largest sequence number, which moves it to the end.

use super::{take_seq, OrderKey, SelectionState};

/// All PEs share one key class; the sequence number is the list position.
pub(crate) fn order_key(st: &SelectionState) -> OrderKey {
    (0, st.seq)
}

/// The selected PE moves to the end of the circular list.
pub(crate) fn on_selected(st: &mut SelectionState, next_seq: &mut u64) {
    st.seq = take_seq(next_seq);
}
