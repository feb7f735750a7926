//! Readings of a set by dump, as the daemon takes them: each element with
//! its deadline, in address order, so that readings join in one pass and
//! in place, and a dump is looked into by a sorted index of its addresses
//! (no hash map of a million beside them).

use std::net::IpAddr;

pub use crate::kevents::Deadline;

use super::walks::Walk;

/// Elements found by look-ups, in address order, each address once: of
/// an address looked up twice (a dump that sent it twice; one heard added
/// that the dump gave too), the later deadline, which is also the later
/// answer's (a kernel's deadline moves only later, by a renewal). Sorted
/// in place: a stable sort would take a scratch half as large (20 MB at a
/// million).
pub(super) fn in_address_order(mut d: Vec<Deadline>) -> Vec<Deadline> {
    d.sort_unstable();
    d.dedup_by(|later, kept| {
        let same = later.addr() == kept.addr();
        if same {
            kept.set_at(later.at());
        }
        same
    });
    d
}

/// The first dump's places in its walk, in the order of their addresses
/// (of an address sent twice, the earlier place first): where it last
/// sent each, in 4 bytes an element, where a copy of the addresses beside
/// their places would take 24. A place is a `u32`: a set holds at most
/// `u32::MAX` elements (NFTA_SET_DESC_SIZE), and none would fit in memory
/// long before.
pub(super) struct Index<'a> {
    elems: &'a [Deadline],
    order: Vec<u32>,
}

/// No place in a walk: an address the dump did not send.
pub(super) const NOWHERE: u32 = u32::MAX;

impl<'a> Index<'a> {
    pub(super) fn of(elems: &'a [Deadline]) -> Index<'a> {
        let n = u32::try_from(elems.len()).unwrap_or(NOWHERE);
        let mut order: Vec<u32> = (0..n).collect();
        // Stable: of an address twice, the earlier place first.
        order.sort_by_key(|&i| elems[i as usize].addr());
        Index { elems, order }
    }

    /// The address at `k` in address order.
    fn addr(&self, k: usize) -> IpAddr {
        self.elems[self.order[k] as usize].addr()
    }

    /// Each address once, with the place the dump last sent it.
    fn last_of_each(&self) -> impl Iterator<Item = (IpAddr, usize)> + '_ {
        let n = self.order.len();
        (0..n)
            .filter(move |&k| k + 1 == n || self.addr(k + 1) != self.addr(k))
            .map(move |k| (self.addr(k), self.order[k] as usize))
    }

    pub(super) fn distinct(&self) -> usize {
        self.last_of_each().count()
    }
}

/// Join a dump (by its index) into `all`, a reading in address order:
/// each address with the deadline the dump last sent for it. In place:
/// what is new to `all` (few, where the set is read again soon) is merged
/// in from the back, so `all` is never held twice.
pub(super) fn join(all: &mut Vec<Deadline>, idx: &Index) {
    let elems = idx.elems;
    let mut new = Vec::new();
    let mut i = 0;
    for (a, at) in idx.last_of_each() {
        while all.get(i).is_some_and(|x| x.addr() < a) {
            i += 1;
        }
        match all.get_mut(i) {
            Some(x) if x.addr() == a => x.set_at(elems[at].at()),
            _ => new.push(Deadline::new(a, elems[at].at())),
        }
    }
    merge_in(all, new);
}

/// `new`, in address order and each address not in `all`, merged into
/// `all` in place, from the back.
pub(super) fn merge_in(all: &mut Vec<Deadline>, new: Vec<Deadline>) {
    if all.is_empty() {
        *all = new;
        return;
    }
    let (mut i, mut j) = (all.len(), new.len());
    all.reserve_exact(j);
    all.resize(i + j, Deadline::new(IpAddr::from([0u8; 4]), None));
    while j > 0 {
        let k = i + j - 1;
        if i > 0 && all[i - 1].addr() > new[j - 1].addr() {
            all[k] = all[i - 1];
            i -= 1;
        } else {
            all[k] = new[j - 1];
            j -= 1;
        }
    }
}

impl super::Lookup {
    /// One dump of a set, as the kernel sent it (`walks::Walk`): each
    /// element with its deadline, taken from its time left as its
    /// datagram came.
    pub(super) fn dump_walk(&mut self, set: &str) -> std::io::Result<Walk> {
        let mut w = Walk::default();
        self.dump_deadlines(set, &mut |d, bytes| w.push(d, bytes))?;
        Ok(w.finish())
    }

    /// One dump of a set, each datagram's elements handed to `each` as
    /// it comes, with their deadlines (from their time left then) and the
    /// size of its message.
    pub(super) fn dump_deadlines(
        &mut self,
        set: &str,
        each: &mut dyn FnMut(Vec<Deadline>, usize),
    ) -> std::io::Result<()> {
        self.dump_each(set, |e, bytes| {
            let at = crate::clock::now_ms();
            let d = e.into_iter().map(|(a, _, left, _)| {
                let until = left.map(|l| super::parse::deadline(at, l));
                Deadline::new(a, until)
            });
            each(d.collect(), bytes);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn addr(i: u16) -> IpAddr {
        if i.is_multiple_of(3) {
            IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, i])
        } else {
            IpAddr::from([198, 18, (i >> 8) as u8, i as u8])
        }
    }

    /// A dump as it comes: addresses in any order, some twice.
    fn dump() -> impl Strategy<Value = Vec<Deadline>> {
        proptest::collection::vec((0u16..64, proptest::option::of(0i64..1000)), 0..80).prop_map(
            |v| {
                v.into_iter()
                    .map(|(i, d)| Deadline::new(addr(i), d))
                    .collect()
            },
        )
    }

    /// The reference: a map filled in the order things came.
    fn later_wins<'a>(dumps: impl IntoIterator<Item = &'a Vec<Deadline>>) -> Vec<Deadline> {
        let mut m = BTreeMap::new();
        for d in dumps {
            m.extend(d.iter().map(|e| (e.addr(), e.at())));
        }
        m.into_iter().map(Deadline::from).collect()
    }

    proptest! {
        /// Dumps joined one after another, from nothing: each address
        /// once, in order, with the deadline the last dump to send it
        /// last sent.
        #[test]
        fn dumps_join_in_place_with_the_later_ones_deadline(ds in proptest::collection::vec(dump(), 0..4)) {
            let mut all = Vec::new();
            for d in &ds {
                join(&mut all, &Index::of(d));
            }
            prop_assert_eq!(all, later_wins(&ds));
        }

        /// Each address of a dump counted once.
        #[test]
        fn an_index_counts_each_address_once(d in dump()) {
            let idx = Index::of(&d);
            let distinct: std::collections::BTreeSet<IpAddr> = d.iter().map(Deadline::addr).collect();
            prop_assert_eq!(idx.distinct(), distinct.len());
        }

        /// Each address once, in order, with the latest of its
        /// deadlines (none: no timeout, the earliest).
        #[test]
        fn found_in_order_keeps_each_address_once_with_its_latest_deadline(d in dump()) {
            let mut latest = BTreeMap::new();
            for (a, t) in d.iter().map(|e| (e.addr(), e.at())) {
                let e = latest.entry(a).or_insert(t);
                *e = (*e).max(t);
            }
            let latest: Vec<Deadline> = latest.into_iter().map(Deadline::from).collect();
            prop_assert_eq!(in_address_order(d.clone()), latest);
        }
    }
}
