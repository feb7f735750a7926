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

/// No place in a walk: an address the dump did not send.
pub(super) const NOWHERE: u32 = u32::MAX;

/// The first dump made a reading in its own memory: each address once,
/// in address order, with the deadline the dump last sent for it; with
/// the walk's elements as places in it (4 bytes each). At a million the
/// reading and the dump are never held at once (24 MB each); the places
/// and the order they are made with take 4 MB each. A place is a `u32`: a set holds at most `u32::MAX`
/// elements (NFTA_SET_DESC_SIZE), and none would fit in memory long
/// before.
pub(super) fn into_reading(mut elems: Vec<Deadline>) -> (Vec<Deadline>, Vec<u32>) {
    let n = u32::try_from(elems.len()).unwrap_or(NOWHERE);
    let mut order: Vec<u32> = (0..n).collect();
    // Stable: of an address twice, the later place last.
    order.sort_by_key(|&i| elems[i as usize].addr());
    let mut places = vec![0u32; order.len()];
    let mut rank = 0u32;
    for k in 0..order.len() {
        let a = elems[order[k] as usize].addr();
        if k > 0 && elems[order[k - 1] as usize].addr() != a {
            rank += 1;
        }
        places[order[k] as usize] = rank;
    }
    // Into address order in place, a cycle of the permutation at a time
    // (a place done is marked NOWHERE in `order`).
    for start in 0..order.len() {
        if order[start] == NOWHERE {
            continue;
        }
        let first = elems[start];
        let mut k = start;
        loop {
            let from = std::mem::replace(&mut order[k], NOWHERE) as usize;
            if from == start {
                elems[k] = first;
                break;
            }
            elems[k] = elems[from];
            k = from;
        }
    }
    drop(order);
    // Each address once: the last sent of a run.
    elems.dedup_by(|later, kept| {
        let same = later.addr() == kept.addr();
        if same {
            *kept = *later;
        }
        same
    });
    (elems, places)
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

    proptest! {
        /// A dump made a reading: each address once, in order, with the
        /// deadline it was last sent with (the reference: a map filled in
        /// the order things came); each place of the walk the place of
        /// its address in the reading.
        #[test]
        fn a_dump_becomes_a_reading_with_its_last_deadlines_and_its_places(d in dump()) {
            let mut m = BTreeMap::new();
            m.extend(d.iter().map(|e| (e.addr(), e.at())));
            let (read, places) = into_reading(d.clone());
            prop_assert_eq!(&read, &m.into_iter().map(Deadline::from).collect::<Vec<_>>());
            prop_assert_eq!(places.len(), d.len());
            for (e, p) in d.iter().zip(&places) {
                prop_assert_eq!(read[*p as usize].addr(), e.addr());
            }
        }

        /// `new` merged into a reading: the union, in order.
        #[test]
        fn new_addresses_merge_into_a_reading_in_order(a in dump(), b in dump()) {
            let (mut all, _) = into_reading(a.clone());
            let held: std::collections::BTreeSet<IpAddr> = all.iter().map(Deadline::addr).collect();
            let (new, _) = into_reading(b.into_iter().filter(|e| !held.contains(&e.addr())).collect());
            let mut want = all.clone();
            want.extend(new.iter().copied());
            want.sort();
            merge_in(&mut all, new);
            prop_assert_eq!(all, want);
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
