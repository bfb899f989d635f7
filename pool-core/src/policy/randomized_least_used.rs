//! Randomized Least Used (RFC 5356 §5.4, type 0x40000004).
//!
//! A PE is drawn at random with a probability that falls with its load: its
//! weight is its unused capacity, `0xFFFFFFFF - load` (RSPLIB's reading of the
//! RFC), but at least 1 so that a fully loaded PE is unlikely yet not
//! impossible to draw. N PEs are drawn without replacement, like Weighted
//! Random.

use crate::types::Load;

/// Unused capacity, at least 1.
pub(crate) fn weight(load: Load) -> u64 {
    u64::from(u32::MAX - load).max(1)
}
