//! Weighted Round Robin (RFC 5356 §4.2, type 0x00000002).
//!
//! Like Round Robin, but a PE with weight w appears w times in a row in the
//! circular list, so it is selected w times per round. We do not store w
//! copies: each PE keeps the round it serves in and the selections (credit)
//! left in it; the list is ordered by (round, position). A PE whose credit
//! runs out moves to the next round with fresh credit.
//!
//! Weight 0 means the PE appears zero times: it is registered but never
//! selected (a way to drain a PE). A PE that joins serves in the current
//! round, behind the PEs already there.

use super::{OrderKey, SelectionState};

/// Whether a PE with this weight is listed at all.
pub(crate) fn selectable(weight: u32) -> bool {
    weight > 0
}

/// Ordered by round first, then by the fixed list position.
pub(crate) fn order_key(st: &SelectionState) -> OrderKey {
    (st.round, st.seq)
}

/// A joining PE serves in the current round with full credit.
pub(crate) fn on_join(weight: u32, current_round: u64, st: &mut SelectionState) {
    st.round = current_round;
    st.credit = weight;
}

/// One selection uses one credit; with none left the PE moves to the next round.
pub(crate) fn on_selected(weight: u32, st: &mut SelectionState) {
    st.credit = st.credit.saturating_sub(1);
    if st.credit == 0 {
        st.round += 1;
        st.credit = weight;
    }
}

/// A new weight takes effect at once: the credit left in this round is capped
/// by it. A PE coming back from weight 0 rejoins in the current round (its own
/// round is stale and would otherwise let it jump the queue).
pub(crate) fn on_reregistered(old: u32, new: u32, current_round: u64, st: &mut SelectionState) {
    if old == 0 {
        st.round = st.round.max(current_round);
        st.credit = new;
    } else if st.credit == 0 {
        st.credit = new;
    } else {
        st.credit = st.credit.min(new);
    }
}
