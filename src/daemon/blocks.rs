//! An ordered map kept as a sorted run of blocks, each a vector of at most
//! `BLOCK` entries in key order, and the least deadline of each block in a
//! tree: what the book holds of a set, and which of it is due first.
//!
//! A B-tree (`std::collections::BTreeMap`) takes some 16.6 bytes for an
//! IPv4 entry of 14 (a 4-byte address and a 10-byte deadline) when its
//! nodes are full, and 31 where keys come in order, as a reading's do
//! (each full node splits in two and the first half never fills again).
//! Built full again, it needs a sorted copy of every entry beside the new
//! nodes: at a million a 14 MB spike, the high-water of a churned start
//! (`benches/README.md`). Here a block that fills where keys come in
//! order is left full and the next key starts a block of its own; one
//! that fills from within splits in halves. So entries in key order take
//! their own 14 bytes and some 0.3 more (a block's vector, a pointer and
//! two lengths, for 128 entries), others from that up to twice it; and
//! `repack` fills every block again a block at a time, with no copy of
//! the whole. A look-up is a binary search over the blocks' first keys,
//! then one within a block; an insertion or removal moves at most a
//! block's entries (1.8 KB for IPv4).
//!
//! Deadlines are found without a heap of their own (which took 12 bytes
//! an IPv4 entry and 24 an IPv6 one, more with the stale entries a
//! renewal left in it): each block's least deadline is a leaf of a
//! tournament tree (each node the least of its two children; its leaves
//! a power of two, so 16 to 32 bytes a block of up to 1.8 KB). The first
//! due is the root. An entry new or due sooner lowers
//! the path above its block; only one that was its block's least and is
//! gone, taken due or due later has the block scanned again. A block
//! made or gone moves the leaves past it a place and makes the nodes
//! above them again, as it moves the list of blocks past it anyway: keys
//! in order, whose blocks come at the end, cost a path.
#![forbid(unsafe_code)]

use std::ops::Bound;

/// Entries a block holds at most.
const BLOCK: usize = 128;

/// A value that comes due: its deadline, in an order of its own
/// (`NEVER` for one that is not to come due again, as one taken due).
pub(super) trait Due {
    fn due(&self) -> u64;
}

pub(super) const NEVER: u64 = u64::MAX;

#[derive(Clone, Debug)]
pub(super) struct Blocks<K, V> {
    /// Each non-empty and in key order, each key below the next block's.
    blocks: Vec<Vec<(K, V)>>,
    len: usize,
    /// The least deadline of each block (leaf `half + i` for block `i`,
    /// `half` a power of two, the rest `NEVER`), and of each node's two
    /// children (node `k`: `2k` and `2k + 1`), the root at 1. Empty where
    /// deadlines are not kept (`untimed`).
    tree: Vec<u64>,
    timed: bool,
}

impl<K, V> Default for Blocks<K, V> {
    fn default() -> Self {
        Blocks {
            blocks: Vec::new(),
            len: 0,
            tree: Vec::new(),
            timed: true,
        }
    }
}

/// Equal when they hold the same entries, however they are cut in
/// blocks.
impl<K: PartialEq, V: PartialEq> PartialEq for Blocks<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .blocks
                .iter()
                .flatten()
                .eq(other.blocks.iter().flatten())
    }
}

impl<K: Eq, V: Eq> Eq for Blocks<K, V> {}

/// A block of one entry, with room for `BLOCK`.
fn block_of<K, V>(k: K, v: V) -> Vec<(K, V)> {
    let mut b = Vec::with_capacity(BLOCK);
    b.push((k, v));
    b
}

fn least<K, V: Due>(b: &[(K, V)]) -> u64 {
    b.iter().map(|(_, v)| v.due()).min().unwrap_or(NEVER)
}

impl<K: Ord + Copy, V: Copy + Due> Blocks<K, V> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The block that holds `k`, or would: the last whose first key is
    /// not past it, else the first.
    fn find(&self, k: &K) -> usize {
        (self.blocks)
            .partition_point(|b| b[0].0 <= *k)
            .saturating_sub(1)
    }

    pub(super) fn get(&self, k: &K) -> Option<&V> {
        let b = self.blocks.get(self.find(k))?;
        let i = b.binary_search_by(|(x, _)| x.cmp(k)).ok()?;
        Some(&b[i].1)
    }

    /// Keep `v` for `k`: what it held before, if anything.
    pub(super) fn insert(&mut self, k: K, v: V) -> Option<V> {
        let i = self.find(&k);
        let Some(b) = self.blocks.get_mut(i) else {
            self.blocks.push(block_of(k, v));
            self.len = 1;
            self.build();
            return None;
        };
        let j = match b.binary_search_by(|(x, _)| x.cmp(&k)) {
            Ok(j) => {
                let old = std::mem::replace(&mut b[j].1, v);
                if v.due() > old.due() {
                    self.raised(i, old.due());
                } else {
                    self.lower(i, v.due());
                }
                return Some(old);
            }
            Err(j) => j,
        };
        self.len += 1;
        if b.len() < BLOCK {
            b.insert(j, (k, v));
            self.lower(i, v.due());
            return None;
        }
        if j == BLOCK {
            // Past a full block's last key: a block of its own, so that
            // keys coming in order fill each block whole.
            self.blocks.insert(i + 1, block_of(k, v));
            self.block_in(i + 1);
        } else if j == 0 {
            // Before the first block's first key (keys coming down).
            self.blocks.insert(0, block_of(k, v));
            self.block_in(0);
        } else {
            let mut upper = Vec::with_capacity(BLOCK);
            upper.extend(b.drain(BLOCK / 2..));
            match j.checked_sub(BLOCK / 2) {
                Some(u) => upper.insert(u, (k, v)),
                None => b.insert(j, (k, v)),
            }
            self.blocks.insert(i + 1, upper);
            self.block_in(i + 1);
            self.mend(i);
        }
        None
    }

    pub(super) fn remove(&mut self, k: &K) -> Option<V> {
        let i = self.find(k);
        let b = self.blocks.get_mut(i)?;
        let j = b.binary_search_by(|(x, _)| x.cmp(k)).ok()?;
        let (_, v) = b.remove(j);
        self.len -= 1;
        self.after_removal(i, v.due());
        Some(v)
    }

    /// The first entry, taken off.
    pub(super) fn pop_first(&mut self) -> Option<(K, V)> {
        let b = self.blocks.first_mut()?;
        let e = b.remove(0);
        self.len -= 1;
        self.after_removal(0, e.1.due());
        Some(e)
    }

    /// Block `i` lost an entry due at `d`: gone if it is empty.
    fn after_removal(&mut self, i: usize, d: u64) {
        if self.blocks[i].is_empty() {
            self.blocks.remove(i);
            self.block_out(i);
        } else {
            self.raised(i, d);
        }
    }

    /// Every entry, in key order (tests).
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.blocks.iter().flatten().map(|(k, v)| (k, v))
    }

    /// `f` given every entry, in key order, its value to change.
    pub(super) fn change_each(&mut self, mut f: impl FnMut(&K, &mut V)) {
        self.blocks.iter_mut().flatten().for_each(|(k, v)| f(k, v));
        self.build();
    }

    #[cfg(test)]
    pub(super) fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }

    /// The entries from `from` on, in key order.
    pub(super) fn range_from(&self, from: Bound<K>) -> impl Iterator<Item = (&K, &V)> + '_ {
        let (i, j) = match from {
            Bound::Unbounded => (0, 0),
            Bound::Included(k) | Bound::Excluded(k) => {
                let i = self.find(&k);
                let b = self.blocks.get(i).map_or(&[][..], |b| &b[..]);
                let past = |x: &K| match from {
                    Bound::Excluded(_) => *x <= k,
                    _ => *x < k,
                };
                (i, b.partition_point(|(x, _)| past(x)))
            }
        };
        let first = self.blocks.get(i).map_or(&[][..], |b| &b[j..]);
        let rest = self.blocks.get(i + 1..).unwrap_or_default();
        (first.iter().chain(rest.iter().flatten())).map(|(k, v)| (k, v))
    }

    /// Every block filled again, one at a time: each old block goes as
    /// its entries are moved, so that no more than a block is held twice.
    pub(super) fn repack(&mut self) {
        let old = std::mem::take(&mut self.blocks);
        let mut blocks = Vec::with_capacity(self.len.div_ceil(BLOCK));
        let mut cur: Vec<(K, V)> = Vec::with_capacity(BLOCK);
        for b in old {
            for e in b {
                if cur.len() == BLOCK {
                    blocks.push(std::mem::replace(&mut cur, Vec::with_capacity(BLOCK)));
                }
                cur.push(e);
            }
        }
        if !cur.is_empty() {
            blocks.push(cur);
        }
        self.blocks = blocks;
        self.build();
    }

    /// The least deadline, if any entry comes due.
    pub(super) fn first_due(&self) -> Option<u64> {
        self.tree.get(1).copied().filter(|d| *d != NEVER)
    }

    /// The entry due first (of those due alike, the first in key order),
    /// as it was before `mark` changed it in place (to come due later, or
    /// never).
    pub(super) fn take_first(&mut self, mark: impl FnOnce(&mut V)) -> Option<(K, V)> {
        let d = self.first_due()?;
        let half = self.tree.len() / 2;
        let mut k = 1;
        while k < half {
            k = if self.tree[2 * k] == d {
                2 * k
            } else {
                2 * k + 1
            };
        }
        let b = &mut self.blocks[k - half];
        let e = b.iter_mut().find(|(_, v)| v.due() == d)?;
        let was = *e;
        mark(&mut e.1);
        self.mend(k - half);
        Some(was)
    }

    /// No deadlines kept from now on: for entries that are only to be
    /// looked up and taken off (`Book::take_set`).
    pub(super) fn untimed(&mut self) {
        self.timed = false;
        self.tree = Vec::new();
    }

    /// An entry of block `i` came due at `d` (new, or sooner): its leaf
    /// and the path above it lowered to `d` where they were later.
    fn lower(&mut self, i: usize, d: u64) {
        let mut k = self.tree.len() / 2 + i;
        while k >= 1 && self.tree.get(k).is_some_and(|t| *t > d) {
            self.tree[k] = d;
            k /= 2;
        }
    }

    /// An entry of block `i` that was due at `d` is gone or due later:
    /// the block's least scanned again if it was that one.
    fn raised(&mut self, i: usize, d: u64) {
        if d != NEVER && self.tree.get(self.tree.len() / 2 + i) == Some(&d) {
            self.mend(i);
        }
    }

    /// Block `i` changed: its leaf and the path above it again.
    fn mend(&mut self, i: usize) {
        if self.tree.is_empty() {
            return;
        }
        let mut k = self.tree.len() / 2 + i;
        self.tree[k] = least(&self.blocks[i]);
        while k > 1 {
            k /= 2;
            self.tree[k] = self.tree[2 * k].min(self.tree[2 * k + 1]);
        }
    }

    /// Block `i` is new (those from `i` on were one place lower): the
    /// leaves from `i` on move up a place, the tree grows if it must, and
    /// the nodes above the leaves that moved are made again. The blocks'
    /// entries are not scanned, but for block `i`'s own.
    fn block_in(&mut self, i: usize) {
        if !self.timed {
            return;
        }
        let n = self.blocks.len();
        let half = self.tree.len() / 2;
        if n > half {
            return self.build();
        }
        self.tree.copy_within(half + i..half + n - 1, half + i + 1);
        self.tree[half + i] = least(&self.blocks[i]);
        self.remake(i, n);
    }

    /// Block `i` is gone: the leaves past it move down a place.
    fn block_out(&mut self, i: usize) {
        if !self.timed {
            return;
        }
        let n = self.blocks.len();
        let half = self.tree.len() / 2;
        self.tree.copy_within(half + i + 1..half + n + 1, half + i);
        self.tree[half + n] = NEVER;
        self.remake(i, n + 1);
    }

    /// The nodes above leaves `from` to `to` (not included) made again
    /// from their children, a level at a time.
    fn remake(&mut self, from: usize, to: usize) {
        let half = self.tree.len() / 2;
        let (mut lo, mut hi) = (half + from, half + to - 1);
        while lo > 1 {
            (lo, hi) = (lo / 2, hi / 2);
            for k in lo..=hi {
                self.tree[k] = self.tree[2 * k].min(self.tree[2 * k + 1]);
            }
        }
    }

    /// The tree built again over the blocks as they are now.
    fn build(&mut self) {
        if !self.timed {
            return;
        }
        let half = self.blocks.len().next_power_of_two();
        self.tree.clear();
        self.tree.resize(2 * half, NEVER);
        for (i, b) in self.blocks.iter().enumerate() {
            self.tree[half + i] = least(b);
        }
        for k in (1..half).rev() {
            self.tree[k] = self.tree[2 * k].min(self.tree[2 * k + 1]);
        }
    }

    /// How many entries the blocks have room for (tests).
    #[cfg(test)]
    pub(super) fn room(&self) -> usize {
        self.shape().1
    }

    /// How many blocks, and how many entries they have room for (tests).
    #[cfg(test)]
    fn shape(&self) -> (usize, usize) {
        (
            self.blocks.len(),
            self.blocks.iter().map(Vec::capacity).sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// `u32::MAX` is taken: never due.
    impl Due for u32 {
        fn due(&self) -> u64 {
            if *self == u32::MAX {
                NEVER
            } else {
                u64::from(*self)
            }
        }
    }

    impl Due for () {
        fn due(&self) -> u64 {
            NEVER
        }
    }

    /// One step done to both: insert, remove, take the first, take the
    /// first due, or fill the blocks again.
    #[derive(Clone, Debug)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
        PopFirst,
        TakeDue,
        Repack,
    }

    /// The model's first due: the least value not taken, of those alike
    /// the least key.
    fn first_due(m: &BTreeMap<u16, u32>) -> Option<(u16, u32)> {
        (m.iter())
            .filter(|(_, v)| **v != u32::MAX)
            .min_by_key(|(k, v)| (**v, **k))
            .map(|(k, v)| (*k, *v))
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (any::<u16>(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k % 2048, v)),
            3 => any::<u16>().prop_map(|k| Op::Remove(k % 2048)),
            1 => Just(Op::PopFirst),
            2 => Just(Op::TakeDue),
            1 => Just(Op::Repack),
        ]
    }

    /// The blocks' own rules: none empty, none over `BLOCK`, keys in
    /// order across them, the length their sum; each leaf of the tree its
    /// block's least deadline, each node the least of its children.
    fn check(b: &Blocks<u16, u32>) {
        assert!(b.blocks.iter().all(|x| !x.is_empty() && x.len() <= BLOCK));
        let keys: Vec<u16> = b.iter().map(|(k, _)| *k).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(keys.len(), b.len());
        let half = b.tree.len() / 2;
        assert!(half >= b.blocks.len());
        assert!(half.is_power_of_two() || b.tree.is_empty() && b.blocks.is_empty());
        for (i, leaf) in b.tree[half..].iter().enumerate() {
            assert_eq!(*leaf, b.blocks.get(i).map_or(NEVER, |x| least(x)));
        }
        for k in 1..half {
            assert_eq!(b.tree[k], b.tree[2 * k].min(b.tree[2 * k + 1]));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Against `BTreeMap` as the model: every answer the same, after
        /// each step; and in order, every range.
        #[test]
        fn blocks_are_an_ordered_map(ops in proptest::collection::vec(op(), 0..3000), probe in any::<u16>()) {
            let (mut b, mut m) = (Blocks::default(), BTreeMap::new());
            for o in ops {
                match o {
                    Op::Insert(k, v) => prop_assert_eq!(b.insert(k, v), m.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(b.remove(&k), m.remove(&k)),
                    Op::PopFirst => prop_assert_eq!(b.pop_first(), m.pop_first()),
                    Op::TakeDue => {
                        let want = first_due(&m);
                        prop_assert_eq!(b.take_first(|v| *v = u32::MAX), want);
                        if let Some((k, _)) = want {
                            m.insert(k, u32::MAX);
                        }
                    }
                    Op::Repack => b.repack(),
                }
                prop_assert_eq!(b.len(), m.len());
                prop_assert_eq!(b.first_due(), first_due(&m).map(|(_, v)| u64::from(v)));
            }
            check(&b);
            prop_assert!(b.iter().eq(m.iter()));
            prop_assert!(b.values().eq(m.values()));
            let k = probe % 2100;
            prop_assert_eq!(b.get(&k), m.get(&k));
            for from in [Bound::Included(k), Bound::Excluded(k), Bound::Unbounded] {
                prop_assert!(b.range_from(from).eq(m.range((from, Bound::Unbounded))));
            }
            b.change_each(|_, v| *v = v.wrapping_add(1));
            check(&b);
            prop_assert!(b.values().copied().eq(m.values().map(|v| v.wrapping_add(1))));
            let least = m.values().map(|v| v.wrapping_add(1)).filter(|v| *v != u32::MAX).min();
            prop_assert_eq!(b.first_due(), least.map(u64::from));
        }
    }

    /// Keys in order, up or down, fill each block whole, and `repack`
    /// fills them again after removals: the room is the entries' own.
    #[test]
    fn keys_in_order_fill_each_block() {
        let n = 100 * BLOCK as u32;
        let mut up = Blocks::default();
        (0..n).for_each(|k| assert_eq!(up.insert(k, ()), None));
        assert_eq!(up.shape(), (100, 100 * BLOCK));
        let mut down = Blocks::default();
        (0..n)
            .rev()
            .for_each(|k| assert_eq!(down.insert(k, ()), None));
        assert_eq!(down.shape(), (100, 100 * BLOCK));
        assert_eq!(up, down);
        // Every other one gone: half full, until packed again.
        (0..n)
            .step_by(2)
            .for_each(|k| assert_eq!(up.remove(&k), Some(())));
        assert_eq!(up.shape(), (100, 100 * BLOCK));
        up.repack();
        assert_eq!(up.shape(), (50, 50 * BLOCK));
        assert!(up.iter().map(|(k, _)| *k).eq((1..n).step_by(2)));
        // From within, a full block splits in halves.
        let mut b: Blocks<u32, ()> = Blocks::default();
        (0..BLOCK as u32).for_each(|k| _ = b.insert(2 * k, ()));
        b.insert(3, ());
        assert_eq!(b.shape(), (2, 2 * BLOCK));
        assert_eq!(b.blocks.iter().map(Vec::len).collect::<Vec<_>>(), [65, 64]);
    }
}
