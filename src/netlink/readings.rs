//! Readings of a set by dump, as the daemon takes them: each element with
//! its deadline, in address order, so that readings join in one pass and
//! in place, and a dump is looked into by a sorted index of its addresses
//! (no hash map of a million beside them).

use std::io;
use std::net::IpAddr;

pub use crate::kevents::Deadline;
use crate::kevents::{Deadline4, Deadlines, Elem, HowRead};

use super::counted::Checked;
use super::walks::{self, Walk};

/// Elements found by look-ups, in address order, each address once: of
/// an address looked up twice (a dump that sent it twice; one heard added
/// that the dump gave too), the later deadline, which is also the later
/// answer's (a kernel's deadline moves only later, by a renewal). Sorted
/// in place: a stable sort would take a scratch half as large (6 or 12
/// MB at a million).
pub(super) fn in_address_order<E: Elem>(mut d: Vec<E>) -> Vec<E> {
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
/// reading and the dump are never held at once (10 MB each IPv4, 22
/// IPv6); the places and the order they are made with take 4 MB each. A
/// place is a `u32`: a set holds at most `u32::MAX` elements
/// (NFTA_SET_DESC_SIZE), and none would fit in memory long before. A
/// later dump's addresses new to the reading are put in order the same
/// way (`walks::settle`).
pub(super) fn into_reading<E: Elem>(mut elems: Vec<E>) -> (Vec<E>, Vec<u32>) {
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
pub(super) fn merge_in<E: Elem>(all: &mut Vec<E>, new: Vec<E>) {
    if all.is_empty() {
        *all = new;
        return;
    }
    let Some(&fill) = new.first() else {
        return;
    };
    let (mut i, mut j) = (all.len(), new.len());
    all.reserve_exact(j);
    all.resize(i + j, fill);
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
    /// Every element of a set with its deadline (ms since the epoch, on
    /// `clock::now_ms`; `None`: no timeout), and a line on how it was
    /// read. A dump while the set changes can pass over elements that stay
    /// in it, where one datagram ends and the next begins (`walks`).
    /// Where the kernel counts the set's elements, the first dump is taken
    /// as whole when a look-up of each element it gave, and of each
    /// address `heard` says was added meanwhile (one a knock added behind
    /// the dump's walk), says the set holds them and nothing else
    /// (`first_by_look_ups`, in the dump's own vector), at a small part of
    /// a second dump's cost (the kernel walks the set again for each dump
    /// datagram).
    /// Otherwise (the set changing, a timed-out element not yet collected,
    /// a kernel that does not count) it is dumped again until each place
    /// where a dump may have passed over an element was read by a later
    /// one, or two in a row walk it alike, seeing it calm (`walks::settle`): at
    /// most `SETTLE_PASSES` dumps; if none settles (the set keeps changing),
    /// every address any of them held, each with the deadline the last one
    /// that held it gave, and a line that says an element may be missing.
    /// Deadlines, not times left: at a million elements a dump takes a
    /// minute, and a time left is only true at the moment its datagram came.
    /// A set of IPv4 keys (NFTA_SET_KEY_LEN 4) is read in 10 bytes an
    /// element, any other in 22 (`kevents::Elem`).
    /// With `gone`, the elements whose deadlines passed while the dumps
    /// ran and that the set no longer holds are let go of between two
    /// dumps, and handed to `gone` (`walks::cull`), not kept to the end.
    pub fn dump_settled(
        &mut self,
        set: &str,
        heard: &dyn Fn() -> Vec<IpAddr>,
        gone: Option<&dyn Fn(Vec<Deadline>)>,
    ) -> io::Result<(Deadlines, HowRead)> {
        Ok(if self.holds_ipv4(set) {
            let (d, how) = self.settled::<Deadline4>(set, heard, gone)?;
            (Deadlines::V4(d), how)
        } else {
            let (d, how) = self.settled::<Deadline>(set, heard, gone)?;
            (Deadlines::Any(d), how)
        })
    }

    /// Are the set's keys four bytes (IPv4 addresses)? Where the kernel
    /// does not say (or the set is not there: the reading then says why),
    /// no.
    pub(super) fn holds_ipv4(&mut self, set: &str) -> bool {
        self.info(set).is_ok_and(|i| i.key_len == Some(4))
    }

    fn settled<E: Elem>(
        &mut self,
        set: &str,
        heard: &dyn Fn() -> Vec<IpAddr>,
        gone: Option<&dyn Fn(Vec<Deadline>)>,
    ) -> io::Result<(Vec<E>, HowRead)> {
        const SETTLE_PASSES: u64 = 7;
        let mut first = self.dump_walk::<E>(set)?;
        let gave = first.elems.len();
        let more = heard();
        let also = if more.is_empty() {
            String::new()
        } else {
            format!(" and of the {} heard added meanwhile", more.len())
        };
        match self.first_by_look_ups(set, &mut first, &more)? {
            Checked::Whole(found) => {
                let how = format!(
                    "set {set}: read by one dump and a look-up of each of the {gave} it \
                     gave{also}: {} found, as many as the kernel counts",
                    found.len()
                );
                let how = HowRead {
                    line: how,
                    doubtful: false,
                };
                return Ok((found, how));
            }
            Checked::Not => {}
            // It gave an element twice (its walk met a resize) and
            // nothing else was amiss: dumped again, to settle.
            Checked::Spent => first = self.dump_walk(set)?,
        }
        drop(more);
        let mut reader = Reader {
            lookup: self,
            set,
            gone,
        };
        let (d, settled) = walks::settle_culling(first, SETTLE_PASSES, &mut reader)?;
        let how = match settled {
            walks::Settled::Whole(1) => format!("set {set}: read by one dump, in one datagram"),
            walks::Settled::Whole(n) => format!(
                "set {set}: read by {n} dumps, each place where one may have passed over an \
                 element read by a later one"
            ),
            walks::Settled::Same(n) => format!(
                "set {set}: read by {n} dumps, the last walking the set as the one before \
                 it did, neither seeing it change"
            ),
            walks::Settled::Changing(n) => format!(
                "set {set}: read by {n} dumps, the set changing throughout: each address any \
                 of them held, and an element that was there all along may be missing"
            ),
        };
        let doubtful = matches!(settled, walks::Settled::Changing(_));
        Ok((
            d,
            HowRead {
                line: how,
                doubtful,
            },
        ))
    }

    /// One dump of a set, as the kernel sent it (`walks::Walk`): each
    /// element with its deadline, taken from its time left as its
    /// datagram came.
    pub(super) fn dump_walk<E: Elem>(&mut self, set: &str) -> std::io::Result<Walk<E>> {
        let mut w = Walk::default();
        self.dump_deadlines(set, &mut |d, bytes| w.push(d, bytes))?;
        Ok(w.finish())
    }

    /// One dump of a set, each datagram's elements handed to `each` as
    /// it comes, with their deadlines (from their time left then) and the
    /// size of its message. An element of a family `E` cannot hold (an
    /// IPv6 one in a set whose keys the kernel said are four bytes) ends
    /// it with an error, and nothing is read.
    pub(super) fn dump_deadlines<E: Elem>(
        &mut self,
        set: &str,
        each: &mut dyn FnMut(Vec<E>, usize),
    ) -> std::io::Result<()> {
        let mut other = false;
        self.dump_each(set, |e, bytes| {
            let at = crate::clock::now_ms();
            let d = e.into_iter().filter_map(|(a, _, left, _)| {
                let until = left.map(|l| super::parse::deadline(at, l));
                let d = E::make(a, until);
                other |= d.is_none();
                d
            });
            each(d.collect(), bytes);
        })?;
        if other {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("set {set}: the kernel sent an element of another family than its keys"),
            ));
        }
        Ok(())
    }
}

/// A set's dumps and look-ups, as `walks::settle_culling` asks them.
struct Reader<'a> {
    lookup: &'a mut super::Lookup,
    set: &'a str,
    gone: Option<&'a dyn Fn(Vec<Deadline>)>,
}

impl<E: Elem> walks::Dumps<E> for Reader<'_> {
    fn dump(&mut self, each: &mut dyn FnMut(Vec<E>, usize)) -> io::Result<()> {
        self.lookup.dump_deadlines(self.set, each)
    }
    fn pause(&mut self, d: std::time::Duration) {
        std::thread::sleep(d)
    }
    fn now(&self) -> Option<i64> {
        self.gone.is_some().then(crate::clock::now_ms)
    }
    fn look(&mut self, addrs: &[IpAddr]) -> io::Result<Vec<Option<Option<i64>>>> {
        let left = self.lookup.lefts(self.set, addrs)?;
        let at = crate::clock::now_ms();
        let deadline = |l: Option<u64>| l.map(|l| super::parse::deadline(at, l));
        Ok(left.into_iter().map(|l| l.map(deadline)).collect())
    }
    fn gone(&mut self, gone: Vec<E>) {
        if let Some(f) = self.gone {
            f(gone.into_iter().map(E::deadline).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::net::IpAddr;

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
