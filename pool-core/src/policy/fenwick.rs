//! Fenwick (binary indexed) tree of selection weights.
//!
//! Weighted draws need "which member does running weight t fall into" in
//! O(log n) while weights change on every re-registration. A Fenwick tree over
//! the pool's dense member list gives prefix sums, point updates, appends and
//! removal of the last position, all in O(log n).

/// Prefix sums over a growable list of `u64` weights.
#[derive(Clone, Debug, Default)]
pub(crate) struct Fenwick {
    /// 1-based tree: `tree[i - 1]` holds the sum of positions `(i - lowbit(i), i]`.
    tree: Vec<u64>,
    /// The weights themselves, so that a point value is O(1).
    weights: Vec<u64>,
}

fn lowbit(i: usize) -> usize {
    i & i.wrapping_neg()
}

impl Fenwick {
    /// Number of positions.
    pub(crate) fn len(&self) -> usize {
        self.weights.len()
    }

    /// Weight at position `i`.
    pub(crate) fn get(&self, i: usize) -> u64 {
        self.weights[i]
    }

    /// Sum of positions `0..i`.
    pub(crate) fn prefix(&self, mut i: usize) -> u64 {
        let mut sum = 0u64;
        while i > 0 {
            sum = sum.wrapping_add(self.tree[i - 1]);
            i -= lowbit(i);
        }
        sum
    }

    /// Sum of all weights.
    pub(crate) fn total(&self) -> u64 {
        self.prefix(self.len())
    }

    /// Appends a position with weight `w`.
    pub(crate) fn push(&mut self, w: u64) {
        let i = self.weights.len() + 1;
        // Node i covers (i - lowbit(i), i]: the sum of the positions it spans
        // that already exist, plus the new one.
        let node = self.prefix(i - 1).wrapping_sub(self.prefix(i - lowbit(i))) + w;
        self.tree.push(node);
        self.weights.push(w);
    }

    /// Removes the last position. Nodes below it only cover positions below
    /// it, so truncation keeps the tree consistent.
    pub(crate) fn pop(&mut self) -> Option<u64> {
        self.tree.pop();
        self.weights.pop()
    }

    /// Sets position `i` to weight `w`.
    pub(crate) fn set(&mut self, i: usize, w: u64) {
        let old = std::mem::replace(&mut self.weights[i], w);
        let delta = w.wrapping_sub(old);
        let mut j = i + 1;
        while j <= self.tree.len() {
            self.tree[j - 1] = self.tree[j - 1].wrapping_add(delta);
            j += lowbit(j);
        }
    }

    /// The position whose weight interval contains `target`, i.e. the smallest
    /// `i` with `prefix(i + 1) > target`; `None` when `target >= total()`.
    pub(crate) fn find(&self, mut target: u64) -> Option<usize> {
        let n = self.tree.len();
        if n == 0 {
            return None;
        }
        let mut pos = 0usize;
        let mut step = 1usize << (usize::BITS - 1 - n.leading_zeros());
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next - 1] <= target {
                target -= self.tree[next - 1];
                pos = next;
            }
            step >>= 1;
        }
        (pos < n).then_some(pos)
    }

    /// Drops every position but keeps the allocation.
    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        self.tree.clear();
        self.weights.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::Fenwick;
    use proptest::prelude::*;

    fn naive_find(w: &[u64], mut target: u64) -> Option<usize> {
        for (i, &x) in w.iter().enumerate() {
            if target < x {
                return Some(i);
            }
            target -= x;
        }
        None
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(u64),
        Pop,
        Set(usize, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..1000).prop_map(Op::Push),
            Just(Op::Pop),
            (any::<usize>(), 0u64..1000).prop_map(|(i, w)| Op::Set(i, w)),
        ]
    }

    proptest! {
        #[test]
        fn matches_naive_model(ops in proptest::collection::vec(op(), 0..200), probes in proptest::collection::vec(0u64..100_000, 1..20)) {
            let mut f = Fenwick::default();
            let mut model: Vec<u64> = Vec::new();
            for op in ops {
                match op {
                    Op::Push(w) => { f.push(w); model.push(w); }
                    Op::Pop => { prop_assert_eq!(f.pop(), model.pop()); }
                    Op::Set(i, w) => if !model.is_empty() {
                        let i = i % model.len();
                        f.set(i, w);
                        model[i] = w;
                    },
                }
                for i in 0..=model.len() {
                    prop_assert_eq!(f.prefix(i), model[..i].iter().sum::<u64>());
                }
            }
            let total: u64 = model.iter().sum();
            prop_assert_eq!(f.total(), total);
            for p in probes {
                prop_assert_eq!(f.find(p), naive_find(&model, p));
            }
            f.clear();
            prop_assert_eq!(f.total(), 0);
        }
    }
}
