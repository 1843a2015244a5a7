//! An order-statistic index over join sequence numbers: "how many waiting
//! entries joined at or before this one" in O(log n).
//!
//! Every waiting fan's rank changes when the head of the queue is admitted, so
//! ranks are never stored per fan. Each connection asks this index for its own
//! rank when it is woken, which keeps a promotion at O(1) store work instead of
//! one round trip per waiting fan, and keeps ranks exact when fans leave from
//! the middle (which a plain "join sequence minus served counter" would not).
//!
//! It is a Fenwick tree over a sliding window of sequence numbers `[base,
//! base + capacity)`. Sequence numbers only grow, and admissions remove from
//! the low end, so when a new number falls past the window the index is
//! rebuilt from the first present entry: amortised O(1) per insert.

#[derive(Debug, Clone)]
pub struct RankIndex {
    base: u64,
    /// 1-based Fenwick tree; `tree.len() == present.len() + 1`.
    tree: Vec<u32>,
    present: Vec<bool>,
    len: usize,
}

const MIN_CAPACITY: usize = 1024;

impl Default for RankIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl RankIndex {
    pub fn new() -> Self {
        Self {
            base: 0,
            tree: vec![0; MIN_CAPACITY + 1],
            present: vec![false; MIN_CAPACITY],
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `seq`; returns false if it was already present.
    pub fn insert(&mut self, seq: u64) -> bool {
        if seq < self.base || seq - self.base >= self.present.len() as u64 {
            self.rebuild_to_fit(seq);
        }
        let slot = (seq - self.base) as usize;
        if self.present[slot] {
            return false;
        }
        self.present[slot] = true;
        self.len += 1;
        self.add(slot, 1);
        true
    }

    /// Removes `seq`; returns false if it was not present.
    pub fn remove(&mut self, seq: u64) -> bool {
        let Some(slot) = self.slot(seq) else {
            return false;
        };
        if !self.present[slot] {
            return false;
        }
        self.present[slot] = false;
        self.len -= 1;
        self.add(slot, -1);
        true
    }

    /// 1-based position of `seq` among present entries, if present.
    pub fn rank(&self, seq: u64) -> Option<u64> {
        let slot = self.slot(seq)?;
        if !self.present[slot] {
            return None;
        }
        let mut i = slot + 1;
        let mut sum: u64 = 0;
        while i > 0 {
            sum += u64::from(self.tree[i]);
            i &= i - 1;
        }
        Some(sum)
    }

    fn slot(&self, seq: u64) -> Option<usize> {
        let offset = seq.checked_sub(self.base)?;
        usize::try_from(offset)
            .ok()
            .filter(|&s| s < self.present.len())
    }

    fn add(&mut self, slot: usize, delta: i32) {
        let mut i = slot + 1;
        while i < self.tree.len() {
            self.tree[i] = self.tree[i].wrapping_add_signed(delta);
            i += i & i.wrapping_neg();
        }
    }

    /// Re-bases the window at the lowest present entry (or `seq`), sized to
    /// hold `seq` with room to grow, and rebuilds the tree in O(capacity).
    fn rebuild_to_fit(&mut self, seq: u64) {
        let present: Vec<u64> = self
            .present
            .iter()
            .enumerate()
            .filter(|(_, p)| **p)
            .map(|(i, _)| self.base + i as u64)
            .collect();
        let low = present.first().copied().unwrap_or(seq).min(seq);
        let high = present.last().copied().unwrap_or(seq).max(seq);
        let span = usize::try_from(high - low + 1).unwrap_or(usize::MAX / 4);
        let capacity = (span * 2).max(MIN_CAPACITY).next_power_of_two();
        self.base = low;
        self.present = vec![false; capacity];
        self.tree = vec![0; capacity + 1];
        for s in &present {
            self.present[(s - low) as usize] = true;
            self.tree[(s - low) as usize + 1] = 1;
        }
        // Linear-time Fenwick construction: push each node into its parent.
        for i in 1..=capacity {
            let parent = i + (i & i.wrapping_neg());
            if parent <= capacity {
                self.tree[parent] += self.tree[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn ranks_follow_join_order() {
        let mut idx = RankIndex::new();
        for s in 10..20 {
            assert!(idx.insert(s));
        }
        assert!(!idx.insert(12));
        assert_eq!(idx.rank(10), Some(1));
        assert_eq!(idx.rank(19), Some(10));
        assert!(idx.remove(13));
        assert!(!idx.remove(13));
        assert_eq!(idx.rank(13), None);
        assert_eq!(idx.rank(19), Some(9));
        assert_eq!(idx.len(), 9);
    }

    #[test]
    fn matches_a_sorted_set_through_window_moves() {
        // A deterministic pseudo-random walk: joins at the back, admissions
        // at the front, leaves from the middle, across many rebuilds.
        let mut idx = RankIndex::new();
        let mut model = BTreeSet::new();
        let mut next = 0u64;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for step in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 10 {
                0..=4 => {
                    idx.insert(next);
                    model.insert(next);
                    next += 1;
                }
                5..=7 => {
                    if let Some(&head) = model.iter().next() {
                        assert!(idx.remove(head));
                        model.remove(&head);
                    }
                }
                _ => {
                    if !model.is_empty() {
                        let nth = (x as usize / 10) % model.len();
                        let seq = *model.iter().nth(nth).expect("in range");
                        assert!(idx.remove(seq));
                        model.remove(&seq);
                    }
                }
            }
            if step % 997 == 0 {
                for (i, seq) in model.iter().enumerate() {
                    assert_eq!(idx.rank(*seq), Some(i as u64 + 1));
                }
            }
            assert_eq!(idx.len(), model.len());
        }
    }
}
