//! Weighted Random (RFC 5356 §4.4, type 0x00000004).
//!
//! A PE is drawn with probability proportional to its weight. N PEs are drawn
//! without replacement: after each draw the PE's weight is taken out of the
//! pool's Fenwick tree until the resolution is done (O(N log n)). Weight 0
//! means the PE is never drawn.

/// The weight a PE carries in the pool's Fenwick tree.
pub(crate) fn weight(weight: u32) -> u64 {
    u64::from(weight)
}
