//! What the events mode knows of each authorization: per authorized set,
//! address → since and until (ms), and the deadlines in order.
//!
//! Kept small, since a set may hold millions: each set has one ordered map
//! per family keyed by the address's bytes (sorted blocks, `Blocks`: no
//! hash table's slack, which at a million entries is twice the data, nor
//! a B-tree's nodes, 16.6 bytes an IPv4 entry at best), each value is 10
//! bytes (the deadline in 47 bits, a bit that says it was taken due, and
//! the age at it in a compact code), aligned to two bytes, so that nothing
//! is padding. Which entry is due first the blocks themselves say (the
//! least deadline of each block, in a tree): no heap of deadlines beside
//! them.
#![forbid(unsafe_code)]

use super::blocks::{Blocks, Due, NEVER};
use crate::kevents::Word;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One authorization, in milliseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Auth {
    pub(super) since: i64,
    pub(super) until: i64,
}

/// A deadline in 47 bits, ms since the epoch from 1970 to the year 6429
/// (one before 1970 is kept as 1970, one past the last as the last), and
/// above them a bit that says the entry was taken due (`take_due`), so
/// that it is not due again until it is given a deadline anew: in a
/// `Word`, which needs no wider alignment than two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Until(Word);

const UNTIL_MAX: i64 = (1 << 47) - 1;
const TAKEN: u64 = 1 << 47;

impl Until {
    fn new(ms: i64) -> Until {
        let v = ms.clamp(0, UNTIL_MAX) as u64;
        Until(Word::new(v))
    }

    fn get(self) -> i64 {
        (self.0.get() & !TAKEN) as i64
    }

    fn taken(self) -> bool {
        self.0.get() & TAKEN != 0
    }
}

/// An `Auth` in 10 bytes: the deadline, and how long before it the
/// authorization began, in ms below 2^31 ms (24.8 days), else in whole
/// seconds with the top bit set (up to 68 years; a longer age is kept as
/// that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Packed(Until, [u16; 2]);

const SECONDS: u32 = 1 << 31;

impl Packed {
    fn new(a: Auth) -> Packed {
        let until = Until::new(a.until);
        let age = (until.get() - a.since).max(0) as u64;
        let code = if age < u64::from(SECONDS) {
            age as u32
        } else {
            SECONDS | (age / 1000).min(u64::from(SECONDS - 1)) as u32
        };
        Packed(until, [(code >> 16) as u16, code as u16])
    }

    /// Taken due: not due again until it is given a deadline anew.
    fn take(&mut self) {
        self.0.0 = Word::new(self.0.0.get() | TAKEN);
    }

    fn get(self) -> Auth {
        let until = self.0.get();
        let code = u32::from(self.1[0]) << 16 | u32::from(self.1[1]);
        let age = if code & SECONDS == 0 {
            i64::from(code)
        } else {
            i64::from(code & !SECONDS) * 1000
        };
        Auth {
            since: until - age,
            until,
        }
    }
}

/// Its deadline, until it is taken due.
impl Due for Packed {
    fn due(&self) -> u64 {
        if self.0.taken() {
            NEVER
        } else {
            self.0.get() as u64
        }
    }
}

/// One authorized set's entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Entries {
    v4: Blocks<[u8; 4], Packed>,
    v6: Blocks<[u8; 16], Packed>,
}

impl Entries {
    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    fn first_due(&self) -> Option<u64> {
        self.v4
            .first_due()
            .into_iter()
            .chain(self.v6.first_due())
            .min()
    }

    /// Both maps' blocks filled again (`Blocks::repack`).
    fn rebuild(&mut self) {
        self.v4.repack();
        self.v6.repack();
    }
}

/// How full a set's maps are likely to be: how many entries they held
/// when last built full, and how many keys were added or removed since.
///
/// Keys in address order (a reading's parts, hosts numbered as they come)
/// fill each block whole; keys from within split full blocks in halves,
/// and removals leave blocks part empty. So a set's maps are built again
/// (`Blocks::repack`, a block at a time) once they have changed by as
/// many keys as they held when last built (at least `REBUILD_MIN`): a
/// cost of one walk per that many changes, some ms at a million. (With
/// B-trees, whose rebuild held a sorted copy of every entry beside the
/// new nodes, this took the book under churn in address order from 42.9
/// back to 28.6 bytes an IPv4 authorization.)
#[derive(Clone, Copy, Debug, Default)]
struct Fill {
    built: usize,
    changed: usize,
    /// To be built once the machine is quiet (`settle_later`).
    later: bool,
}

/// A set this small is not built again: its blocks are a few KB.
const REBUILD_MIN: usize = 1 << 12;

/// The book: sets by index (`u16`, as their names are met), and their
/// entries.
#[derive(Default)]
pub(super) struct Book {
    names: Vec<String>,
    sets: Vec<Entries>,
    /// Per set, by index.
    fill: Vec<Fill>,
    /// Sets built again (tests).
    #[cfg(test)]
    rebuilt: usize,
}

impl Book {
    /// The index of a set, met now if not before.
    pub(super) fn id(&mut self, set: &str) -> u16 {
        match self.names.iter().position(|s| s == set) {
            Some(i) => i as u16,
            None => {
                self.names.push(set.to_owned());
                self.sets.push(Entries::default());
                self.fill.push(Fill::default());
                (self.names.len() - 1) as u16
            }
        }
    }

    /// The index of a set already met.
    pub(super) fn find(&self, set: &str) -> Option<u16> {
        self.names.iter().position(|s| s == set).map(|i| i as u16)
    }

    pub(super) fn name(&self, id: u16) -> &str {
        &self.names[id as usize]
    }

    /// How many sets it has met (their indexes are below).
    pub(super) fn met(&self) -> u16 {
        self.names.len() as u16
    }

    /// Keep `a` for `addr` (due at `a.until`); true when it was not known.
    pub(super) fn insert(&mut self, id: u16, addr: IpAddr, a: Auth) -> bool {
        let e = &mut self.sets[id as usize];
        let p = Packed::new(a);
        let new = match addr {
            IpAddr::V4(v) => e.v4.insert(v.octets(), p).is_none(),
            IpAddr::V6(v) => e.v6.insert(v.octets(), p).is_none(),
        };
        if new {
            self.changed(id, 1);
        }
        new
    }

    pub(super) fn get(&self, id: u16, addr: IpAddr) -> Option<Auth> {
        let e = self.sets.get(id as usize)?;
        match addr {
            IpAddr::V4(v) => e.v4.get(&v.octets()),
            IpAddr::V6(v) => e.v6.get(&v.octets()),
        }
        .map(|p| p.get())
    }

    pub(super) fn remove(&mut self, id: u16, addr: IpAddr) -> Option<Auth> {
        let e = self.sets.get_mut(id as usize)?;
        let p = match addr {
            IpAddr::V4(v) => e.v4.remove(&v.octets()),
            IpAddr::V6(v) => e.v6.remove(&v.octets()),
        }?;
        self.changed(id, 1);
        Some(p.get())
    }

    /// `n` keys of set `id` were added or removed: its maps are built
    /// again once as many have changed as they held when last built.
    fn changed(&mut self, id: u16, n: usize) {
        let i = id as usize;
        let Some(f) = self.fill.get_mut(i) else {
            return;
        };
        f.changed += n;
        if f.changed >= f.built.max(REBUILD_MIN) {
            self.build(i);
        }
    }

    /// Set `i`'s maps built again.
    fn build(&mut self, i: usize) {
        let (Some(e), Some(f)) = (self.sets.get_mut(i), self.fill.get_mut(i)) else {
            return;
        };
        e.rebuild();
        *f = Fill {
            built: e.len(),
            changed: 0,
            later: false,
        };
        #[cfg(test)]
        {
            self.rebuilt += 1;
        }
    }

    /// Set `id` is taken in whole (a reading): its maps are to be built
    /// again if they changed since they last were, or if `more` are to
    /// come (`settle`), so that they start full.
    pub(super) fn settle_later(&mut self, id: u16, more: bool) {
        if let Some(f) = self.fill.get_mut(id as usize) {
            f.later = f.changed > 0 || more;
        }
    }

    /// Is a set to be built again (`settle_later`)?
    pub(super) fn unsettled(&self) -> bool {
        self.fill.iter().any(|f| f.later)
    }

    /// Build again the sets `settle_later` named.
    pub(super) fn settle(&mut self) {
        for i in 0..self.fill.len() {
            if self.fill[i].later {
                self.build(i);
            }
        }
    }

    /// Sets built again (tests).
    #[cfg(test)]
    pub(super) fn rebuilt(&self) -> usize {
        self.rebuilt
    }

    /// Every entry of one set, taken out of the book as it is (no copy:
    /// at a million, a copy into a hash map took a turn of the loop of
    /// 100 ms and more).
    pub(super) fn take_set(&mut self, id: u16) -> Taken {
        let mut e = (self.sets.get_mut(id as usize).map(std::mem::take)).unwrap_or_default();
        self.reset_fill(id);
        e.v4.untimed();
        e.v6.untimed();
        Taken(e)
    }

    /// Keep each of `run`'s entries, as `insert` does one by one (of an
    /// address given twice, the last).
    ///
    /// This is how a reading is taken in, in address order a part at a
    /// time: each block fills whole. The maps are built again as they
    /// double (`changed`), and once the set is in and the reading's
    /// records are gone (`settle_later`), which fills again what a host
    /// taken in from within (an event's, during the reading) split.
    pub(super) fn insert_run(&mut self, id: u16, run: Vec<(IpAddr, Auth)>) {
        let e = &mut self.sets[id as usize];
        let mut new = 0;
        for (addr, a) in run {
            let p = Packed::new(a);
            new += usize::from(match addr {
                IpAddr::V4(v) => e.v4.insert(v.octets(), p).is_none(),
                IpAddr::V6(v) => e.v6.insert(v.octets(), p).is_none(),
            });
        }
        self.changed(id, new);
    }

    /// Forget every entry of one set.
    pub(super) fn clear_set(&mut self, id: u16) {
        if let Some(e) = self.sets.get_mut(id as usize) {
            *e = Entries::default();
        }
        self.reset_fill(id);
    }

    /// Set `id` is empty again.
    fn reset_fill(&mut self, id: u16) {
        if let Some(f) = self.fill.get_mut(id as usize) {
            *f = Fill::default();
        }
    }

    /// Give back what the book holds, once it is empty: for a book whose
    /// entries are removed as often as they come (`Knocks::said`), so
    /// that its lists of blocks and trees go too.
    pub(super) fn thin(&mut self) {
        if self.len() == 0 {
            self.clear();
        }
    }

    /// The entries the blocks have room for (tests).
    #[cfg(test)]
    pub(super) fn room(&self) -> usize {
        (self.sets.iter()).map(|e| e.v4.room() + e.v6.room()).sum()
    }

    /// Forget every entry (the set names stay met).
    pub(super) fn clear(&mut self) {
        self.sets.iter_mut().for_each(|e| *e = Entries::default());
        self.fill.iter_mut().for_each(|f| *f = Fill::default());
    }

    pub(super) fn count(&self, id: u16) -> usize {
        self.sets.get(id as usize).map_or(0, Entries::len)
    }

    pub(super) fn len(&self) -> usize {
        self.sets.iter().map(Entries::len).sum()
    }

    /// Every entry: set index, address, times.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u16, IpAddr, Auth)> + '_ {
        (0..self.sets.len() as u16).flat_map(|i| self.iter_set(i).map(move |(a, t)| (i, a, t)))
    }

    /// The entries of one set.
    pub(super) fn iter_set(&self, id: u16) -> impl Iterator<Item = (IpAddr, Auth)> + '_ {
        self.iter_set_after(id, None)
    }

    /// The entries of one set past `after`, in address order (IPv4 before
    /// IPv6): a walk taken a part at a time.
    pub(super) fn iter_set_after(
        &self,
        id: u16,
        after: Option<IpAddr>,
    ) -> impl Iterator<Item = (IpAddr, Auth)> + '_ {
        use std::ops::Bound::{Excluded, Unbounded};
        let e = self.sets.get(id as usize);
        let (b4, b6) = match after {
            None => (Some(Unbounded), Unbounded),
            Some(IpAddr::V4(v)) => (Some(Excluded(v.octets())), Unbounded),
            Some(IpAddr::V6(v)) => (None, Excluded(v.octets())),
        };
        let v4 = (e.zip(b4).into_iter())
            .flat_map(|(e, b)| e.v4.range_from(b))
            .map(|(a, p)| (IpAddr::V4(Ipv4Addr::from(*a)), p.get()));
        let v6 = (e.into_iter())
            .flat_map(move |e| e.v6.range_from(b6))
            .map(|(a, p)| (IpAddr::V6(Ipv6Addr::from(*a)), p.get()));
        v4.chain(v6)
    }

    /// Every entry of one set due at its start plus `ttl` ms where that
    /// is sooner than its deadline (a reload that shortened the ttl; a
    /// longer one leaves the kernel's deadlines, and so these, as they
    /// are). How many moved.
    pub(super) fn retime(&mut self, id: u16, ttl: i64) -> usize {
        let Some(e) = self.sets.get_mut(id as usize) else {
            return 0;
        };
        let mut moved = 0;
        let mut cut = |p: &mut Packed| {
            let mut a = p.get();
            if a.since + ttl < a.until {
                a.until = a.since + ttl;
                *p = Packed::new(a);
                moved += 1;
            }
        };
        e.v4.change_each(|_, p| cut(p));
        e.v6.change_each(|_, p| cut(p));
        moved
    }

    /// The first deadline of an entry not taken due.
    pub(super) fn next_due(&self) -> Option<i64> {
        (self.sets.iter())
            .filter_map(Entries::first_due)
            .min()
            .map(|d| d as i64)
    }

    /// The first deadline among the entries of the sets `ids` (an entry
    /// taken due and not yet removed is not counted).
    pub(super) fn first_due(&self, ids: &[u16]) -> Option<i64> {
        (ids.iter())
            .filter_map(|i| self.sets.get(*i as usize)?.first_due())
            .min()
            .map(|d| d as i64)
    }

    /// The entries due at `now` (ms), in deadline order, taken due (not
    /// due again unless given a deadline anew) but still in the book.
    #[cfg(test)]
    pub(super) fn take_due(&mut self, now: i64) -> Vec<(u16, IpAddr, Auth)> {
        self.take_due_at_most(now, usize::MAX)
    }

    /// `take_due`, at most `limit` of them (the rest stay due). Each is
    /// the first due of all the sets' blocks, taken one at a time: a walk
    /// down one set's tree, a scan of one block and a mend of the path.
    pub(super) fn take_due_at_most(&mut self, now: i64, limit: usize) -> Vec<(u16, IpAddr, Auth)> {
        let now = now.max(0) as u64;
        let mut out = Vec::new();
        while out.len() < limit {
            let first = (self.sets.iter().enumerate())
                .filter_map(|(i, e)| Some((e.first_due()?, i)))
                .min();
            let Some((d, i)) = first.filter(|(d, _)| *d <= now) else {
                break;
            };
            let e = &mut self.sets[i];
            let taken = if e.v4.first_due() == Some(d) {
                (e.v4.take_first(Packed::take)).map(|(a, p)| (IpAddr::V4(Ipv4Addr::from(a)), p))
            } else {
                (e.v6.take_first(Packed::take)).map(|(a, p)| (IpAddr::V6(Ipv6Addr::from(a)), p))
            };
            out.extend(taken.map(|(ip, p)| (i as u16, ip, p.get())));
        }
        // Of those due alike, in the order of their sets and addresses.
        out.sort_by_key(|(i, ip, a)| (a.until, *i, *ip));
        out
    }
}

/// One set's entries taken out of the book (`Book::take_set`), to be
/// compared with a reading of the set: looked up, then walked off in
/// address order (IPv4 before IPv6) a part at a time, each freed as it
/// goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Taken(Entries);

impl Taken {
    pub(super) fn get(&self, addr: IpAddr) -> Option<Auth> {
        match addr {
            IpAddr::V4(v) => self.0.v4.get(&v.octets()),
            IpAddr::V6(v) => self.0.v6.get(&v.octets()),
        }
        .map(|p| p.get())
    }

    /// The first entry left, in address order, taken off.
    pub(super) fn pop_first(&mut self) -> Option<(IpAddr, Auth)> {
        if let Some((a, p)) = self.0.v4.pop_first() {
            return Some((IpAddr::V4(Ipv4Addr::from(a)), p.get()));
        }
        let (a, p) = self.0.v6.pop_first()?;
        Some((IpAddr::V6(Ipv6Addr::from(a)), p.get()))
    }
}

#[cfg(test)]
mod tests;
