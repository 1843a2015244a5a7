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
//!
//! After a lost queue is rebuilt, spots of two store epochs wait together,
//! and an epoch's sequence numbers start far above the last one's
//! ([`crate::store::EPOCH_SEQ_SCALE`]). One window across that gap would be
//! enormous, so the index keeps one window per cluster of numbers (numbers
//! more than [`SPLIT_GAP`] past a window's highest start another), and a rank
//! adds up the windows before its own: in practice one window, two for a
//! while after a rebuild.

/// The order-statistic index: windows in order of their numbers.
#[derive(Debug, Clone, Default)]
pub struct RankIndex {
    /// Every present number of window `i` is below window `i + 1`'s base;
    /// no window is empty.
    windows: Vec<Window>,
}

/// How far past a window's highest number a new one starts another window.
const SPLIT_GAP: u64 = 1 << 16;

impl RankIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.windows.iter().map(|w| w.len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The window that holds `seq` if anything does: the last one whose base
    /// is at or below it.
    fn find(&self, seq: u64) -> Option<usize> {
        self.windows
            .partition_point(|w| w.base <= seq)
            .checked_sub(1)
    }

    /// Adds `seq`; returns false if it was already present.
    pub fn insert(&mut self, seq: u64) -> bool {
        let at = match self.find(seq) {
            Some(i) => {
                let w = &self.windows[i];
                if w.slot(seq).is_some() || w.high().is_none_or(|h| seq - h < SPLIT_GAP) {
                    return self.windows[i].insert(seq);
                }
                i + 1
            }
            None => match self.windows.first() {
                Some(w) if w.low().is_none_or(|l| l - seq < SPLIT_GAP) => {
                    return self.windows[0].insert(seq);
                }
                _ => 0,
            },
        };
        let mut window = Window::new();
        window.insert(seq);
        self.windows.insert(at, window);
        true
    }

    /// Removes `seq`; returns false if it was not present.
    pub fn remove(&mut self, seq: u64) -> bool {
        let Some(i) = self.find(seq) else {
            return false;
        };
        let removed = self.windows[i].remove(seq);
        if self.windows[i].len == 0 {
            self.windows.remove(i);
        }
        removed
    }

    /// 1-based position of `seq` among present entries, if present.
    pub fn rank(&self, seq: u64) -> Option<u64> {
        let i = self.find(seq)?;
        let within = self.windows[i].rank(seq)?;
        let before: usize = self.windows[..i].iter().map(|w| w.len).sum();
        Some(before as u64 + within)
    }
}

/// One Fenwick tree over `[base, base + capacity)`.
#[derive(Debug, Clone)]
struct Window {
    base: u64,
    /// 1-based Fenwick tree; `tree.len() == present.len() + 1`.
    tree: Vec<u32>,
    present: Vec<bool>,
    len: usize,
}

const MIN_CAPACITY: usize = 1024;

impl Window {
    fn new() -> Self {
        Self {
            base: 0,
            tree: vec![0; MIN_CAPACITY + 1],
            present: vec![false; MIN_CAPACITY],
            len: 0,
        }
    }

    fn low(&self) -> Option<u64> {
        let i = self.present.iter().position(|p| *p)?;
        Some(self.base + i as u64)
    }

    fn high(&self) -> Option<u64> {
        let i = self.present.iter().rposition(|p| *p)?;
        Some(self.base + i as u64)
    }

    fn insert(&mut self, seq: u64) -> bool {
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

    fn remove(&mut self, seq: u64) -> bool {
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

    fn rank(&self, seq: u64) -> Option<u64> {
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

    #[test]
    fn two_epochs_rank_in_order_without_one_huge_window() {
        let mut idx = RankIndex::new();
        let later = 1_764_000_060_000 * 1000;
        let earlier = 1_764_000_000_000 * 1000;
        for s in later..later + 5 {
            assert!(idx.insert(s));
        }
        // The rebuilt spots of the earlier epoch go ahead, out of order.
        for s in [earlier + 7, earlier + 3, earlier + 5] {
            assert!(idx.insert(s));
        }
        assert!(!idx.insert(earlier + 3));
        assert_eq!(idx.windows.len(), 2);
        assert!(idx.windows.iter().all(|w| w.present.len() <= 1024));
        assert_eq!(idx.rank(earlier + 3), Some(1));
        assert_eq!(idx.rank(earlier + 7), Some(3));
        assert_eq!(idx.rank(later), Some(4));
        assert_eq!(idx.rank(later + 4), Some(8));
        for s in [earlier + 3, earlier + 5, earlier + 7] {
            assert!(idx.remove(s));
        }
        assert_eq!(idx.windows.len(), 1);
        assert_eq!(idx.rank(later), Some(1));
        assert_eq!(idx.len(), 5);
        assert!(!idx.remove(earlier));
    }
}
