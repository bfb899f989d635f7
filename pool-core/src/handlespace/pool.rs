//! One pool: its PEs in a slab, an id lookup, and the selection index its policy needs.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use rand::Rng;

use super::element::PoolElement;
use crate::policy::{self, fenwick::Fenwick, JoinContext, Mechanism, PolicyKind};
use crate::types::{PeId, PoolHandle, RegistrarId, TransportProtocol, TransportUse};

/// Slot of a PE inside its pool's slab; stable while the PE is registered.
pub(crate) type Slot = u32;

/// The structure selection runs on, chosen by the pool's policy.
#[derive(Debug)]
enum SelectionIndex {
    /// Ordered policies: (primary key, tie-breaker, slot), smallest first.
    Ordered(BTreeSet<(u64, u64, Slot)>),
    /// Random: dense list of member slots (`SelectionState::pos` points back).
    Uniform(Vec<Slot>),
    /// Weighted policies: dense member list plus their weights.
    Weighted { members: Vec<Slot>, tree: Fenwick },
}

/// A pool of the handlespace.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) handle: PoolHandle,
    pub(crate) kind: PolicyKind,
    pub(crate) protocol: TransportProtocol,
    pub(crate) transport_use: TransportUse,
    slots: Vec<Option<PoolElement>>,
    free: Vec<Slot>,
    by_id: HashMap<PeId, Slot>,
    index: SelectionIndex,
    next_seq: u64,
}

impl Pool {
    pub(crate) fn new(
        handle: PoolHandle,
        kind: PolicyKind,
        protocol: TransportProtocol,
        transport_use: TransportUse,
    ) -> Self {
        let index = match kind.mechanism() {
            Mechanism::Ordered => SelectionIndex::Ordered(BTreeSet::new()),
            Mechanism::Uniform => SelectionIndex::Uniform(Vec::new()),
            Mechanism::Weighted => SelectionIndex::Weighted {
                members: Vec::new(),
                tree: Fenwick::default(),
            },
        };
        Self {
            handle,
            kind,
            protocol,
            transport_use,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            index,
            next_seq: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn slot_of(&self, id: PeId) -> Option<Slot> {
        self.by_id.get(&id).copied()
    }

    pub(crate) fn element(&self, slot: Slot) -> &PoolElement {
        self.slots[slot as usize]
            .as_ref()
            .expect("slot refers to a registered PE")
    }

    pub(crate) fn get(&self, id: PeId) -> Option<&PoolElement> {
        self.slot_of(id).map(|s| self.element(s))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &PoolElement> {
        self.slots.iter().filter_map(Option::as_ref)
    }

    /// The weighted-round-robin round being served: that of the first PE in line.
    fn current_round(&self) -> u64 {
        match &self.index {
            SelectionIndex::Ordered(set) => set
                .first()
                .map(|&(_, _, s)| self.element(s).sel.round)
                .unwrap_or(0),
            _ => 0,
        }
    }

    fn take_seq(&mut self) -> u64 {
        policy::take_seq(&mut self.next_seq)
    }

    /// Adds a new PE (the caller checked limits, consistency and uniqueness).
    pub(crate) fn insert(&mut self, mut pe: PoolElement) -> Slot {
        let ctx = JoinContext {
            seq: self.take_seq(),
            current_round: self.current_round(),
        };
        pe.sel = policy::on_join(&pe.policy, ctx);
        let id = pe.id;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(pe);
                s
            }
            None => {
                // Grow by an eighth rather than doubling: the slab is the
                // biggest per-PE cost, and small pools are the common case.
                if self.slots.len() == self.slots.capacity() {
                    self.slots.reserve_exact((self.slots.len() / 8).max(4));
                }
                self.slots.push(Some(pe));
                (self.slots.len() - 1) as Slot
            }
        };
        self.by_id.insert(id, slot);
        self.link(slot);
        slot
    }

    /// Replaces the data of a registered PE in place; `apply` edits it.
    ///
    /// The PE leaves and re-enters the selection index only if its key moved,
    /// so re-registrations that repeat the same load cost two lookups.
    pub(crate) fn update(&mut self, slot: Slot, apply: impl FnOnce(&mut PoolElement)) {
        let before = self.index_key(slot);
        let current_round = self.current_round();
        let pe = self.slots[slot as usize].as_mut().expect("registered PE");
        let old_policy = pe.policy;
        apply(pe);
        policy::on_reregistered(&old_policy, &pe.policy, current_round, &mut pe.sel);
        let after = self.index_key(slot);
        if before == after {
            return;
        }
        match &mut self.index {
            SelectionIndex::Ordered(_) => {
                self.unlink_key(slot, before);
                self.link(slot);
            }
            SelectionIndex::Uniform(_) => {}
            SelectionIndex::Weighted { tree, .. } => {
                // Keep the position; only the weight changes.
                let pos = self.slots[slot as usize]
                    .as_ref()
                    .expect("registered PE")
                    .sel
                    .pos;
                tree.set(pos as usize, after.map(|k| k.0).unwrap_or(0));
            }
        }
    }

    /// Changes a PE's home registrar; selection state is untouched.
    pub(crate) fn set_home(&mut self, slot: Slot, home: RegistrarId) {
        self.slots[slot as usize]
            .as_mut()
            .expect("registered PE")
            .home = home;
    }

    /// Removes a PE and frees its slot.
    pub(crate) fn remove(&mut self, slot: Slot) -> PoolElement {
        self.unlink(slot);
        let pe = self.slots[slot as usize].take().expect("registered PE");
        self.by_id.remove(&pe.id);
        if slot as usize + 1 == self.slots.len() {
            self.slots.pop();
        } else {
            self.free.push(slot);
        }
        // Capacity is kept while the pool lives (it is dropped with its
        // last PE): shrinking on every removal would cost more than it saves.
        pe
    }

    /// What identifies the PE's place in the index: its ordered key (if
    /// listed) or its weight. Used to skip index work when nothing moved.
    fn index_key(&self, slot: Slot) -> Option<(u64, u64)> {
        let pe = self.element(slot);
        match self.kind.mechanism() {
            Mechanism::Ordered => {
                policy::selectable(&pe.policy).then(|| policy::order_key(&pe.policy, &pe.sel))
            }
            Mechanism::Uniform => Some((0, 0)),
            Mechanism::Weighted => Some((policy::weight(&pe.policy), 0)),
        }
    }

    fn link(&mut self, slot: Slot) {
        let key = self.index_key(slot);
        let slots = &mut self.slots;
        match &mut self.index {
            SelectionIndex::Ordered(set) => {
                if let Some((a, b)) = key {
                    set.insert((a, b, slot));
                }
            }
            SelectionIndex::Uniform(members) => {
                let pe = slots[slot as usize].as_mut().expect("registered PE");
                pe.sel.pos = members.len() as u32;
                members.push(slot);
            }
            SelectionIndex::Weighted { members, tree } => {
                let pe = slots[slot as usize].as_mut().expect("registered PE");
                pe.sel.pos = members.len() as u32;
                members.push(slot);
                tree.push(key.map(|k| k.0).unwrap_or(0));
            }
        }
    }

    fn unlink(&mut self, slot: Slot) {
        let key = self.index_key(slot);
        self.unlink_key(slot, key);
    }

    /// Takes the PE out of the index, given the key it was linked under.
    fn unlink_key(&mut self, slot: Slot, key: Option<(u64, u64)>) {
        let slots = &mut self.slots;
        match &mut self.index {
            SelectionIndex::Ordered(set) => {
                if let Some((a, b)) = key {
                    let removed = set.remove(&(a, b, slot));
                    debug_assert!(removed, "ordered index out of sync");
                }
            }
            SelectionIndex::Uniform(members) => {
                let pos = slots[slot as usize]
                    .as_ref()
                    .expect("registered PE")
                    .sel
                    .pos as usize;
                members.swap_remove(pos);
                if let Some(&moved) = members.get(pos) {
                    slots[moved as usize].as_mut().expect("member").sel.pos = pos as u32;
                }
            }
            SelectionIndex::Weighted { members, tree } => {
                let pos = slots[slot as usize]
                    .as_ref()
                    .expect("registered PE")
                    .sel
                    .pos as usize;
                let last = members.len() - 1;
                if pos != last {
                    let w = tree.get(last);
                    tree.set(pos, w);
                }
                tree.pop();
                members.swap_remove(pos);
                if let Some(&moved) = members.get(pos) {
                    slots[moved as usize].as_mut().expect("member").sel.pos = pos as u32;
                }
            }
        }
    }

    /// Selects up to `n` distinct, unexpired PEs into `out` (slots, in
    /// selection order) and updates the policy state of the first
    /// `max_increment` of them. `scratch` is reused working memory.
    pub(crate) fn select<R: Rng + ?Sized>(
        &mut self,
        n: usize,
        now: Instant,
        max_increment: usize,
        rng: &mut R,
        out: &mut Vec<Slot>,
        scratch: &mut Vec<(usize, u64)>,
    ) {
        out.clear();
        if n == 0 {
            return;
        }
        let slots = &mut self.slots;
        let live = |slots: &[Option<PoolElement>], s: Slot| {
            !slots[s as usize]
                .as_ref()
                .expect("indexed PE")
                .is_expired(now)
        };
        match &mut self.index {
            SelectionIndex::Ordered(set) => {
                for &(_, _, s) in set.iter() {
                    if out.len() == n {
                        break;
                    }
                    if live(slots, s) {
                        out.push(s);
                    }
                }
                for &s in out.iter().take(max_increment) {
                    let pe = slots[s as usize].as_mut().expect("selected PE");
                    let (a, b) = policy::order_key(&pe.policy, &pe.sel);
                    set.remove(&(a, b, s));
                    policy::on_selected(&pe.policy, &mut pe.sel, &mut self.next_seq);
                    if policy::selectable(&pe.policy) {
                        let (a, b) = policy::order_key(&pe.policy, &pe.sel);
                        set.insert((a, b, s));
                    }
                }
            }
            SelectionIndex::Uniform(members) => {
                // Partial Fisher-Yates: members[..i] are the ones drawn so far.
                let len = members.len();
                let mut i = 0;
                while out.len() < n && i < len {
                    let j = rng.random_range(i..len);
                    members.swap(i, j);
                    for p in [i, j] {
                        let s = members[p];
                        slots[s as usize].as_mut().expect("member").sel.pos = p as u32;
                    }
                    if live(slots, members[i]) {
                        out.push(members[i]);
                    }
                    i += 1;
                }
            }
            SelectionIndex::Weighted { members, tree } => {
                // Draw without replacement: zero each drawn weight, restore after.
                scratch.clear();
                while out.len() < n {
                    let total = tree.total();
                    if total == 0 {
                        break;
                    }
                    let Some(pos) = tree.find(rng.random_range(0..total)) else {
                        break;
                    };
                    scratch.push((pos, tree.get(pos)));
                    tree.set(pos, 0);
                    if live(slots, members[pos]) {
                        out.push(members[pos]);
                    }
                }
                for &(pos, w) in scratch.iter() {
                    tree.set(pos, w);
                }
            }
        }
    }

    /// Checks that every index agrees with the slab (tests and debugging).
    pub(crate) fn check_consistency(&self) -> Result<(), String> {
        let live: Vec<Slot> = (0..self.slots.len() as Slot)
            .filter(|&s| self.slots[s as usize].is_some())
            .collect();
        if live.len() != self.by_id.len() {
            return Err(format!(
                "{} live slots, {} ids",
                live.len(),
                self.by_id.len()
            ));
        }
        for &s in &live {
            let pe = self.element(s);
            if self.by_id.get(&pe.id) != Some(&s) {
                return Err(format!("id {} not mapped to slot {s}", pe.id));
            }
            if PolicyKind::of(&pe.policy) != self.kind {
                return Err(format!("PE {} has a foreign policy", pe.id));
            }
        }
        for &s in &self.free {
            if self.slots.get(s as usize).is_none_or(Option::is_some) {
                return Err(format!("free slot {s} is in use"));
            }
        }
        match &self.index {
            SelectionIndex::Ordered(set) => {
                let expected: BTreeSet<(u64, u64, Slot)> = live
                    .iter()
                    .filter_map(|&s| self.index_key(s).map(|(a, b)| (a, b, s)))
                    .collect();
                if &expected != set {
                    return Err("ordered index differs from the slab".into());
                }
            }
            SelectionIndex::Uniform(members) | SelectionIndex::Weighted { members, .. } => {
                if members.len() != live.len() {
                    return Err("member list length differs".into());
                }
                for (p, &s) in members.iter().enumerate() {
                    match &self.slots[s as usize] {
                        Some(pe) if pe.sel.pos as usize == p => {}
                        _ => return Err(format!("member {p} points to a bad slot")),
                    }
                }
                if let SelectionIndex::Weighted { tree, .. } = &self.index {
                    if tree.len() != members.len() {
                        return Err("weight tree length differs".into());
                    }
                    let mut sum = 0u64;
                    for (p, &s) in members.iter().enumerate() {
                        let w = policy::weight(&self.element(s).policy);
                        if tree.get(p) != w {
                            return Err(format!("weight of member {p} is stale"));
                        }
                        sum += w;
                    }
                    if tree.total() != sum {
                        return Err("weight tree total is wrong".into());
                    }
                }
            }
        }
        Ok(())
    }
}
