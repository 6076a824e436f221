//! Backend ids: the `BACKENDS` slot a backend lives in and that slot's generation.
//!
//! The backend maps are arrays indexed by slot (the programs' cheapest lookup), so slots are
//! reused. A conntrack or affinity entry keeps a backend's whole id, and a program takes
//! the slot's backend only when the generation still matches: an entry that outlived its
//! backend is seen as stale, never sent to the backend that got the slot since. Freed slots
//! also wait in a queue behind every other free slot before they are given out again.
//!
//! Generations run from 1 to 255 and never 0, so no id given out here equals an id of the
//! agents before slots (their ids were plain counters): an upgrade that starts the backend
//! map afresh leaves no old conntrack entry naming a new backend.

use std::collections::VecDeque;

use skiff_ebpf_common::{
    Backend,
    service::{BACKEND_INDEX_BITS, BACKEND_INDEX_MASK, backend_index},
};

/// The highest generation: a slot's ids cycle through generations 1 to this.
const GENERATIONS: u32 = u32::MAX >> BACKEND_INDEX_BITS;

/// Hands out backend ids over `capacity` slots (1 to `capacity`; slot 0 is never used).
#[derive(Debug)]
pub struct BackendIds {
    capacity: u32,
    /// The lowest slot never given out.
    next_fresh: u32,
    /// The last id of each free slot that has been used, longest free first.
    freed: VecDeque<u32>,
}

impl BackendIds {
    /// Ids for a map of `capacity` backends that holds nothing yet.
    pub fn new(capacity: u32) -> Self {
        Self {
            capacity,
            next_fresh: 1,
            freed: VecDeque::new(),
        }
    }

    /// Takes over the slots a `BACKENDS` map holds (position = slot; free slots keep their
    /// last id), as a previous agent left them: live slots stay taken, and a freed slot's
    /// next id has a newer generation than any entry may still name.
    pub fn adopt(slots: &[Backend]) -> Self {
        let capacity = slots.len().saturating_sub(1) as u32;
        let used = |index: usize| slots[index].id != 0 || !slots[index].is_free();
        let next_fresh = (1..slots.len())
            .rev()
            .find(|&i| used(i))
            .map_or(1, |i| i + 1);
        let freed = (1..next_fresh)
            .filter(|&i| slots[i].is_free())
            .map(|i| {
                let last = slots[i].id;
                if backend_index(last) as usize == i {
                    last
                } else {
                    i as u32
                }
            })
            .collect();
        Self {
            capacity,
            next_fresh: next_fresh as u32,
            freed,
        }
    }

    /// How many backends fit.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// A free slot's next id: a never-used slot first, else the slot free the longest, one
    /// generation on. `None` when every slot is taken.
    pub fn allocate(&mut self) -> Option<u32> {
        if self.next_fresh <= self.capacity {
            self.next_fresh += 1;
            return Some((self.next_fresh - 1) | (1 << BACKEND_INDEX_BITS));
        }
        let last = self.freed.pop_front()?;
        let generation = (last >> BACKEND_INDEX_BITS) % GENERATIONS + 1;
        Some(backend_index(last) | generation << BACKEND_INDEX_BITS)
    }

    /// Gives `id`'s slot back (its backend was removed, or never written).
    pub fn release(&mut self, id: u32) {
        debug_assert!(id & BACKEND_INDEX_MASK != 0, "slot 0 is never given out");
        self.freed.push_back(id);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use skiff_ebpf_common::service::PROTO_TCP;

    use super::*;

    fn live(id: u32) -> Backend {
        Backend {
            id,
            ..Backend::new([10, 244, 0, 1], 80, PROTO_TCP, 0)
        }
    }

    const fn generation(g: u32) -> u32 {
        g << BACKEND_INDEX_BITS
    }

    #[test]
    fn every_slot_but_zero_is_given_out_once_before_any_is_reused() {
        let mut ids = BackendIds::new(3);
        let first: Vec<u32> = (0..3).map(|_| ids.allocate().unwrap()).collect();
        let g1 = generation(1);
        assert_eq!(first, [1 | g1, 2 | g1, 3 | g1]);
        assert_eq!(ids.allocate(), None, "full");
        ids.release(2 | g1);
        ids.release(1 | g1);
        let again = ids.allocate().unwrap();
        assert_eq!(
            again,
            2 | generation(2),
            "the slot free the longest, a generation on"
        );
        assert_eq!(backend_index(ids.allocate().unwrap()), 1);
        assert_eq!(ids.allocate(), None);
    }

    #[test]
    fn a_reused_slot_cycles_through_255_ids_none_with_generation_zero() {
        let mut ids = BackendIds::new(1);
        let mut seen = BTreeSet::new();
        let first = ids.allocate().unwrap();
        let mut id = first;
        for _ in 0..255 {
            assert_eq!(backend_index(id), 1);
            assert_ne!(
                id >> BACKEND_INDEX_BITS,
                0,
                "generation 0 is the old agents' ids"
            );
            assert!(seen.insert(id), "id {id:#x} given out twice");
            ids.release(id);
            id = ids.allocate().unwrap();
        }
        assert_eq!(id, first, "after 255 ids, the first comes round again");
    }

    #[test]
    fn an_adopted_map_keeps_live_slots_and_reuses_freed_ones_a_generation_on() {
        let slots = [
            Backend::default(),
            live(1 | generation(1)),
            Backend::freed(2 | generation(4)),
            live(3 | generation(255)),
            Backend::default(),
            Backend::default(),
        ];
        let mut ids = BackendIds::adopt(&slots);
        assert_eq!(ids.capacity(), 5);
        assert_eq!(
            ids.allocate(),
            Some(4 | generation(1)),
            "never-used slots first"
        );
        assert_eq!(ids.allocate(), Some(5 | generation(1)));
        assert_eq!(ids.allocate(), Some(2 | generation(5)));
        assert_eq!(ids.allocate(), None, "slots 1 and 3 are live");
    }
}
