//! Requests sent but not answered yet, kept (bounded) for replay after failover.

use std::collections::VecDeque;

/// One complete, unanswered request.
#[derive(Debug)]
pub(crate) struct Pending<M> {
    /// Raw bytes, `None` when they did not fit into the budget.
    pub(crate) bytes: Option<Vec<u8>>,
    /// Plugin-specific facts about the request.
    pub(crate) meta: M,
}

/// FIFO of unanswered requests plus the request being received.
#[derive(Debug)]
pub(crate) struct ReplayQueue<M> {
    pub(crate) pending: VecDeque<Pending<M>>,
    partial: Vec<u8>,
    partial_overflow: bool,
    stored: usize,
    max: usize,
}

impl<M> ReplayQueue<M> {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            pending: VecDeque::new(),
            partial: Vec::new(),
            partial_overflow: false,
            stored: 0,
            max,
        }
    }

    /// Bytes of the request in progress.
    pub(crate) fn extend_partial(&mut self, chunk: &[u8]) {
        if self.partial_overflow {
            return;
        }
        if self.stored + chunk.len() > self.max {
            // Give the budget back: a request we cannot replay whole is useless.
            self.stored -= self.partial.len();
            self.partial = Vec::new();
            self.partial_overflow = true;
            return;
        }
        self.stored += chunk.len();
        self.partial.extend_from_slice(chunk);
    }

    /// The request in progress (if it still fits).
    pub(crate) fn partial(&self) -> Option<&[u8]> {
        (!self.partial_overflow).then_some(&self.partial[..])
    }

    /// The request in progress is complete.
    pub(crate) fn finish(&mut self, meta: M) {
        let bytes = if self.partial_overflow {
            None
        } else {
            Some(std::mem::take(&mut self.partial))
        };
        self.partial_overflow = false;
        self.pending.push_back(Pending { bytes, meta });
    }

    /// The bytes in progress were not a request (nothing will answer them).
    pub(crate) fn discard_partial(&mut self) {
        self.stored -= self.partial.len();
        self.partial.clear();
        self.partial_overflow = false;
    }

    /// The oldest request was answered.
    pub(crate) fn pop(&mut self) -> Option<Pending<M>> {
        let p = self.pending.pop_front()?;
        self.stored -= p.bytes.as_ref().map_or(0, Vec::len);
        Some(p)
    }

    /// Whether some unanswered request (or the one in progress) could not be kept.
    pub(crate) fn overflowed(&self) -> bool {
        self.partial_overflow || self.pending.iter().any(|p| p.bytes.is_none())
    }

    /// Bytes currently stored (for bounds tests).
    #[cfg(test)]
    pub(crate) fn stored(&self) -> usize {
        self.stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_enforced_and_released() {
        let mut q: ReplayQueue<u8> = ReplayQueue::new(10);
        q.extend_partial(b"abcd");
        q.finish(1);
        q.extend_partial(b"efghij");
        q.extend_partial(b"k");
        assert!(q.overflowed());
        assert_eq!(q.stored(), 4);
        q.finish(2);
        assert!(q.pending[1].bytes.is_none());
        assert_eq!(q.pop().unwrap().bytes.unwrap(), b"abcd");
        assert!(q.overflowed());
        assert!(q.pop().unwrap().bytes.is_none());
        assert!(!q.overflowed());
        assert_eq!(q.stored(), 0);
        q.extend_partial(b"xy");
        q.discard_partial();
        assert_eq!(q.stored(), 0);
    }
}
