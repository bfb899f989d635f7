//! Handlespace checksum of the PEs a registrar owns (RFC 5353, ENRP_PRESENCE;
//! RFC 5354 PE Checksum parameter).
//!
//! Peers compare it to detect that their copies of a registrar's PEs drifted
//! apart, and then ask for a handle table. It is a 16-bit Internet checksum
//! (RFC 1071: one's-complement sum of 16-bit big-endian words, complemented):
//! each PE contributes its pool handle, zero-padded to an even length, then its
//! 32-bit PE identifier in network byte order. This is the layout RSPLIB puts
//! on the wire. Because the sum is associative and commutative, a registrar
//! keeps a running sum and adds or subtracts one PE in O(handle length).

use crate::types::{PeId, PoolHandle};

/// Unfolded sum of one PE's 16-bit words (fits: at most 130 words of 0xFFFF).
pub(crate) fn pe_words(handle: &PoolHandle, id: PeId) -> u32 {
    let mut sum = 0u32;
    let mut chunks = handle.as_bytes().chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
    }
    sum + (id >> 16) + (id & 0xFFFF)
}

/// A running handlespace checksum over any number of PEs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChecksumAccumulator {
    /// Plain sum of the PEs' words; 64 bits never overflow in practice
    /// (2^64 / (130 * 65535) PEs), and subtraction undoes addition exactly.
    sum: u64,
}

impl ChecksumAccumulator {
    /// An empty accumulator (checksum of no PEs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one PE.
    pub fn add(&mut self, handle: &PoolHandle, id: PeId) {
        self.add_words(pe_words(handle, id));
    }

    /// Removes one PE previously added.
    pub fn remove(&mut self, handle: &PoolHandle, id: PeId) {
        self.remove_words(pe_words(handle, id));
    }

    pub(crate) fn add_words(&mut self, words: u32) {
        self.sum = self.sum.wrapping_add(u64::from(words));
    }

    pub(crate) fn remove_words(&mut self, words: u32) {
        self.sum = self.sum.wrapping_sub(u64::from(words));
    }

    /// Adds every PE of another accumulator.
    pub fn merge(&mut self, other: &ChecksumAccumulator) {
        self.sum = self.sum.wrapping_add(other.sum);
    }

    /// The 16-bit checksum: end-around carry fold, then one's complement.
    pub fn finish(&self) -> u16 {
        let mut s = self.sum;
        while s > 0xFFFF {
            s = (s & 0xFFFF) + (s >> 16);
        }
        !(s as u16)
    }
}
