//! A binary min-heap over a `Vec`, laid out as the textbook has it: the
//! least entry at 0, the children of `i` at `2i + 1` and `2i + 2`, each
//! no less than its parent. std's `BinaryHeap` keeps the same layout but
//! does not promise it (its slice is "in arbitrary order"); the book walks
//! the tree in order (`Book::first_due`), so it keeps a heap whose layout
//! is its own.
#![forbid(unsafe_code)]

#[derive(Debug)]
pub(super) struct MinHeap<T>(Vec<T>);

impl<T> Default for MinHeap<T> {
    fn default() -> Self {
        MinHeap(Vec::new())
    }
}

impl<T: Ord + Copy> MinHeap<T> {
    /// A heap of `v`'s entries, in `O(n)`.
    pub(super) fn from_vec(v: Vec<T>) -> Self {
        let mut h = MinHeap(v);
        for i in (0..h.0.len() / 2).rev() {
            h.down(i);
        }
        h
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn peek(&self) -> Option<T> {
        self.0.first().copied()
    }

    /// The entries in the heap's layout.
    pub(super) fn as_slice(&self) -> &[T] {
        &self.0
    }

    pub(super) fn push(&mut self, t: T) {
        self.0.push(t);
        let mut i = self.0.len() - 1;
        while i > 0 {
            let p = (i - 1) / 2;
            if self.0[p] <= self.0[i] {
                break;
            }
            self.0.swap(p, i);
            i = p;
        }
    }

    /// The least entry, taken off. A heap down to a quarter of its room
    /// gives half of it back (a mass expiry of a million left 12 MB held
    /// for entries no longer there); each shrink moves fewer entries than
    /// were popped since the last.
    pub(super) fn pop(&mut self) -> Option<T> {
        let last = self.0.pop()?;
        if self.0.capacity() > 4096 && self.0.len() < self.0.capacity() / 4 {
            self.0.shrink_to(self.0.len() * 2);
        }
        let Some(first) = self.0.first_mut() else {
            return Some(last);
        };
        let top = std::mem::replace(first, last);
        self.down(0);
        Some(top)
    }

    fn down(&mut self, mut i: usize) {
        let n = self.0.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < n && self.0[l] < self.0[m] {
                m = l;
            }
            if r < n && self.0[r] < self.0[m] {
                m = r;
            }
            if m == i {
                return;
            }
            self.0.swap(i, m);
            i = m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Emptied a pop at a time, the heap gives its room back as it goes,
    /// and still gives its entries in order.
    #[test]
    fn it_gives_back_its_room_as_it_empties() {
        let n = 100_000u32;
        let mut h = MinHeap::default();
        (0..n).for_each(|i| h.push(i.wrapping_mul(40_503) % n));
        let full = h.0.capacity();
        assert!(full >= n as usize);
        let mut last = 0;
        for _ in 0..n - 100 {
            let x = h.pop().unwrap();
            assert!(x >= last);
            last = x;
            assert!(h.0.capacity() <= (4 * h.len() + 4).max(4096), "{}", h.len());
        }
        assert!(h.0.capacity() <= 4096, "{} of {full} kept", h.0.capacity());
        assert_eq!(h.len(), 100);
    }

    /// Against a sorted list: pushes and pops in a scrambled order, with
    /// repeats, and the layout's promise after every step.
    #[test]
    fn it_gives_back_in_order_and_keeps_its_layout() {
        let holds = |h: &MinHeap<u32>| {
            let v = h.as_slice();
            (1..v.len()).all(|i| v[(i - 1) / 2] <= v[i])
        };
        let mut h = MinHeap::default();
        let mut want = Vec::new();
        for i in 0..2000u32 {
            let x = i.wrapping_mul(2_654_435_761) % 500;
            h.push(x);
            want.push(x);
            if i % 3 == 0 {
                want.sort_unstable();
                assert_eq!(h.pop(), Some(want.remove(0)));
            }
            assert!(holds(&h));
        }
        want.sort_unstable();
        assert_eq!(h.peek(), want.first().copied());
        let mut got = Vec::new();
        while let Some(x) = h.pop() {
            got.push(x);
        }
        assert_eq!(got, want);
        let v: Vec<u32> = (0..1000u32).map(|i| i.wrapping_mul(40_503) % 977).collect();
        let h = MinHeap::from_vec(v.clone());
        assert!(holds(&h));
        assert_eq!(h.len(), v.len());
        assert_eq!(h.peek(), v.iter().min().copied());
        assert_eq!(MinHeap::<u32>::default().pop(), None);
    }
}
