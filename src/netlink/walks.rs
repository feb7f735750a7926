//! Reading a set whole while it changes, from dumps that can come short.
//!
//! The kernel sends a set's dump in datagrams, and for each it walks the
//! set from its start again, counting past the elements it visited before
//! (nf_tables_dump_set and the backend's walk: `iter->count < iter->skip`).
//! Within one datagram the walk sees every element that stays in the set.
//! Between two, an element removed before the point reached (a timed-out
//! one freed by the kernel's collection, once a second, or one deleted)
//! makes the count land one element late, so the next datagram begins past
//! an element it never sent; an element added there makes it begin one
//! early, and an element comes twice. So a dump can miss elements that
//! were in the set all along, and only where one datagram ends and the
//! next begins. Measured here: 300,000 elements timing out at 3,000 a
//! second, the union of three dumps missed 223 that were there throughout.
//!
//! So each place where a dump may have missed something, a gap between
//! the last element of one datagram and the first of the next, is checked
//! against the next dump: in the set's walk order (the same for both, as
//! long as its hash table was not resized, which the check of that order
//! tells), the gap lies between two elements the next dump also sent; if
//! no datagram of the next dump ends between those two, it sent every
//! element of the gap that stayed. Otherwise the gaps of the next dump
//! that lie there are the ones left, for the dump after it. A reading is
//! whole once none is left; elements added or deleted meanwhile come to
//! the daemon as events, and those that timed out are looked up at their
//! deadlines. The kernel's side of this, with its sources:
//! docs/nft-kernel.md.
#![forbid(unsafe_code)]

use std::net::IpAddr;

use super::readings::{Deadline, NOWHERE, into_reading, merge_in};
use crate::kevents::Elem;

/// A dump as the kernel sent it: its elements in the order of the set's
/// walk, and its gaps: the index of the first element of each datagram
/// after the first, where the datagram may have begun late, and the end
/// (`elems.len()`) where the last datagram may have been full (the walk
/// after it found nothing past the count: removals before it can hide the
/// last elements). A datagram that began early sent again the last
/// elements of the datagram before it (an element added before the point
/// reached): those are left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Walk<E = Deadline> {
    pub(super) elems: Vec<E>,
    pub(super) gaps: Vec<usize>,
    /// Where the last datagram began, its size and the largest's (bytes).
    last: usize,
    last_bytes: usize,
    largest: usize,
    /// A datagram began early: the set changed during the dump.
    early: bool,
}

impl<E> Default for Walk<E> {
    fn default() -> Self {
        Walk {
            elems: Vec::new(),
            gaps: Vec::new(),
            last: 0,
            last_bytes: 0,
            largest: 0,
            early: false,
        }
    }
}

/// What a walk keeps of an element: enough to tell two apart. The first
/// dump's elements whole; a later one's as places in the reading (`Ref`),
/// one place an address.
pub(super) trait Sent: Copy {
    type Key: PartialEq;
    fn key(&self) -> Self::Key;
}

impl<E: Elem> Sent for E {
    type Key = IpAddr;
    fn key(&self) -> IpAddr {
        self.addr()
    }
}

impl Sent for Ref {
    type Key = Ref;
    fn key(&self) -> Ref {
        *self
    }
}

/// The most an element of pfknock's sets takes in a dump (its key,
/// timeout, expiration and counter, with their headers, are about 100
/// bytes): a datagram with more room left than this was not full.
const ELEMENT_MAX: usize = 256;

/// The smallest and largest buffer the kernel may fill for a dump when it
/// cannot have the one the reader asked for (NLMSG_GOODSIZE: a page, at
/// most 8 KB, less the socket buffer's overhead): a datagram of that size
/// may be full.
const GOODSIZE: std::ops::RangeInclusive<usize> = 3000..=8192;

impl<E: Sent> Walk<E> {
    /// A datagram's elements (of `bytes` as sent), after those before it.
    /// It began early when its first elements are the last ones of the
    /// datagram before, in the same order (others sent again mean another
    /// order: a resize).
    pub(super) fn push(&mut self, datagram: Vec<E>, bytes: usize) {
        if datagram.is_empty() {
            return;
        }
        let before = &self.elems[self.last..];
        let again = (1..=before.len().min(datagram.len()))
            .rev()
            .find(|&k| {
                let tail = before[before.len() - k..].iter().map(Sent::key);
                tail.eq(datagram[..k].iter().map(Sent::key))
            })
            .unwrap_or(0);
        // A gap even where it began early: a resize between the two could
        // look the same.
        if !self.elems.is_empty() {
            self.gaps.push(self.elems.len());
        }
        self.last = self.elems.len();
        self.early |= again > 0;
        (self.last_bytes, self.largest) = (bytes, self.largest.max(bytes));
        self.elems.extend(datagram.into_iter().skip(again));
    }

    /// The dump is over: the end is a gap unless the last datagram was
    /// surely not full (smaller than any buffer the kernel fills, or than
    /// the largest of this dump by more than an element).
    pub(super) fn finish(mut self) -> Walk<E> {
        let b = self.last_bytes + ELEMENT_MAX;
        let short =
            b < *GOODSIZE.start() || (self.last_bytes > *GOODSIZE.end() && b < self.largest);
        if !self.elems.is_empty() && !short {
            self.gaps.push(self.elems.len());
        }
        self
    }
}

/// How far from a gap the walk looks for an element the next dump also
/// sent, before it gives the gap up (the set lost that many around it
/// between the two dumps): then the next dump's own gaps are all that is
/// left, as if it were the first.
const REACH: usize = 4096;

/// The gaps of a walk (`gaps`, each the index of the element after it)
/// that `next`, a later dump that sent none twice, leaves open: as gaps
/// of `next`, given where `next` first sent each element of the walk
/// (`places`). `None` where the two walk the set in different orders (its
/// hash table was resized in between or during one, or an element was
/// taken out and put back), or no element sent by both is within `REACH`
/// of a gap: `next`'s own gaps are then what is left.
pub(super) fn gaps_left<E>(places: &[u32], gaps: &[usize], next: &Walk<E>) -> Option<Vec<usize>> {
    // The elements both sent come in the same order in both.
    let mut last = None;
    for &j in places.iter().filter(|j| **j != NOWHERE) {
        if last.is_some_and(|l| l >= j) {
            return None;
        }
        last = Some(j);
    }
    let in_next = |i: usize| Some(places[i] as usize).filter(|_| places[i] != NOWHERE);
    let mut left = Vec::new();
    for &g in gaps {
        // The nearest elements both sent before and after the gap (or the
        // walk's start and end).
        let before = match (g.saturating_sub(REACH)..g).rev().find_map(in_next) {
            Some(j) => j + 1,
            None if g <= REACH => 0,
            None => return None,
        };
        let after = match (g..places.len().min(g + REACH)).find_map(in_next) {
            Some(j) => j,
            None if g + REACH >= places.len() => next.elems.len(),
            None => return None,
        };
        // `next`'s gaps between the two.
        let lo = next.gaps.partition_point(|x| *x < before);
        let hi = next.gaps.partition_point(|x| *x <= after);
        left.extend_from_slice(&next.gaps[lo..hi]);
    }
    left.sort_unstable();
    left.dedup();
    Some(left)
}

/// A later dump's element, as `Against` keeps it: its place in the
/// reading, or `FRESH` and its place among the addresses new to the
/// reading. The reading and the fresh addresses stay under 2^31 (each
/// element of the reading takes 10 or 22 bytes: 20 or 44 GB).
pub(super) type Ref = u32;

const FRESH: Ref = 1 << 31;

/// A later dump taken against the reading (`all`, in address order) as it
/// comes: each element's deadline goes into the reading at once, as
/// `join` would put it there (the last sent), and the walk keeps the
/// element's place, 4 bytes where the element takes 10 (IPv4) or 22
/// (IPv6). The reading and a later dump are no longer held whole at once
/// (at a million IPv6, 44 MB then, 26 now; IPv4, 14). An address new to
/// the reading (added since, or passed over before) goes to `fresh`; one
/// sent again at the start of a datagram (begun early) is found among the
/// new addresses of that datagram and the one before (`recent` on), and
/// keeps its place, so that the walk sees it sent again. One sent twice
/// further apart (a resize) is in `fresh` twice, and made one when the
/// fresh addresses are put in order (`into_reading`), with the deadline
/// sent last: no hash map of every new address (at 180,000 new IPv6
/// addresses in a dump, 6.5 MB).
struct Against<'a, E> {
    all: &'a mut [E],
    fresh: Vec<E>,
    /// Where the new addresses of the datagram before this one begin, and
    /// this one's.
    recent: usize,
    this: usize,
    walk: Walk<Ref>,
}

impl<'a, E: Elem> Against<'a, E> {
    fn new(all: &'a mut [E]) -> Against<'a, E> {
        Against {
            all,
            fresh: Vec::new(),
            recent: 0,
            this: 0,
            walk: Walk::default(),
        }
    }

    /// A datagram's elements; one with none is no datagram of the walk
    /// (`Walk::push`), and moves no window.
    fn push(&mut self, datagram: Vec<E>, bytes: usize) {
        if datagram.is_empty() {
            return;
        }
        (self.recent, self.this) = (self.this, self.fresh.len());
        let refs = datagram.into_iter().map(|e| self.place(e)).collect();
        self.walk.push(refs, bytes);
    }

    fn place(&mut self, e: E) -> Ref {
        let a = e.addr();
        let k = self.all.partition_point(|x| x.addr() < a);
        if let Some(x) = self.all.get_mut(k)
            && x.addr() == a
        {
            x.set_at(e.at());
            return k as Ref;
        }
        let recent = &mut self.fresh[self.recent..];
        if let Some(i) = recent.iter().rposition(|x| x.addr() == a) {
            recent[i].set_at(e.at());
            return FRESH | (self.recent + i) as Ref;
        }
        self.fresh.push(e);
        FRESH | (self.fresh.len() - 1) as Ref
    }
}

/// The walk before (`at`, places in the reading of `n` elements, or
/// `NOWHERE` where the reading let go of one: `cull`) made, in its own
/// memory, where `next` (a walk of places) first sent each of its
/// elements (`NOWHERE`: not at all); false where the two sent the
/// elements both sent in different orders (the set's hash table resized
/// in between, or an element taken out and put back), and `at` is then
/// of no use. And how many of the reading's addresses `next` sent. Beside
/// the two walks it takes a bit a place for what each sent, where a map
/// of each place to where `next` first sent it took 4 bytes (6 MB at 1.5
/// million): in the same order, the element of the walk before that
/// `next` sent is the next element of `next` that the walk before sent
/// and that was not met yet.
fn sent_again(at: &mut [u32], next: &[Ref], n: usize) -> (bool, usize) {
    let mut before = Bits::new(n);
    let mut now = Bits::new(n);
    at.iter()
        .filter(|p| **p != NOWHERE)
        .for_each(|&p| before.set(p));
    next.iter()
        .filter(|r| **r & FRESH == 0)
        .for_each(|&r| now.set(r));
    let d = now.count();
    let mut j = 0;
    for p in at.iter_mut() {
        if *p == NOWHERE || !now.get(*p) {
            *p = NOWHERE;
            continue;
        }
        while let Some(&r) = next.get(j)
            && (r & FRESH != 0 || !before.get(r))
        {
            j += 1;
        }
        if next.get(j) != Some(p) {
            return (false, d);
        }
        before.clear(*p);
        *p = j as u32;
        j += 1;
    }
    (true, d)
}

/// A bit for each place in the reading.
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn get(&self, p: u32) -> bool {
        self.0[p as usize / 64] & 1 << (p % 64) != 0
    }
    fn set(&mut self, p: u32) {
        self.0[p as usize / 64] |= 1 << (p % 64);
    }
    fn clear(&mut self, p: u32) {
        self.0[p as usize / 64] &= !(1 << (p % 64));
    }
    fn count(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// The fresh addresses (`fresh`, in address order, each once; `rank`: the
/// place there of each new address as the walk numbered them) merged into
/// the reading, and the walk's elements made places in the reading that
/// results, in the walk's own memory.
fn merge_fresh<E: Elem>(
    all: &mut Vec<E>,
    fresh: Vec<E>,
    rank: &[u32],
    mut walk: Vec<Ref>,
) -> Vec<u32> {
    for r in &mut walk {
        *r = if *r & FRESH == 0 {
            let a = all[*r as usize].addr();
            *r + fresh.partition_point(|x| x.addr() < a) as u32
        } else {
            let k = rank[(*r & !FRESH) as usize];
            let a = fresh[k as usize].addr();
            k + all.partition_point(|x| x.addr() < a) as u32
        };
    }
    merge_in(all, fresh);
    walk
}

/// Did a dump (with `distinct` addresses) see the set calm: no element
/// sent twice, no datagram begun early?
fn is_calm<E>(w: &Walk<E>, distinct: usize) -> bool {
    distinct == w.elems.len() && !w.early
}

/// How a reading by dumps ended, and after how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Settled {
    /// No gap left open.
    Whole(u64),
    /// The last two held the same addresses.
    Same(u64),
    /// Gaps still open after the last: the set changed throughout.
    Changing(u64),
}

/// What `settle` asks of the kernel: its dumps, and between two of them,
/// whether the elements whose deadlines passed are still there.
pub(super) trait Dumps<E> {
    /// One dump, each datagram's elements handed to `each` as it comes,
    /// with its size.
    fn dump(&mut self, each: &mut dyn FnMut(Vec<E>, usize)) -> std::io::Result<()>;
    /// Wait this long before the next dump.
    fn pause(&mut self, d: std::time::Duration);
    /// The time (ms, on the deadlines' clock) before which an element's
    /// deadline has passed, if the reading is to let go of those gone
    /// (`cull`); `None`: it keeps every element a dump sent.
    fn now(&self) -> Option<i64>;
    /// Each address's deadline in the set now (`Some(None)`: there, with
    /// no timeout), or `None`: not there.
    fn look(&mut self, addrs: &[IpAddr]) -> std::io::Result<Vec<Option<Option<i64>>>>;
    /// Elements let go of: their deadlines passed, and the kernel no
    /// longer holds them (the reader says them, as they will not be in
    /// the reading).
    fn gone(&mut self, gone: Vec<E>);
}

/// `Dumps` of a dump and a pause alone: nothing is let go of.
#[cfg(test)]
struct Plain<D, P>(D, P);

#[cfg(test)]
impl<E, D, P> Dumps<E> for Plain<D, P>
where
    D: FnMut(&mut dyn FnMut(Vec<E>, usize)) -> std::io::Result<()>,
    P: Fn(std::time::Duration),
{
    fn dump(&mut self, each: &mut dyn FnMut(Vec<E>, usize)) -> std::io::Result<()> {
        (self.0)(each)
    }
    fn pause(&mut self, d: std::time::Duration) {
        (self.1)(d)
    }
    fn now(&self) -> Option<i64> {
        None
    }
    fn look(&mut self, addrs: &[IpAddr]) -> std::io::Result<Vec<Option<Option<i64>>>> {
        Ok(vec![None; addrs.len()])
    }
    fn gone(&mut self, _: Vec<E>) {}
}

/// Elements looked up at once when the reading lets go of those gone
/// (`cull`), and handed to `Dumps::gone` at once, at most.
pub(super) const CULL_AT_ONCE: usize = 8192;

/// Between two dumps: each element of the reading whose deadline has
/// passed is looked up; one the set no longer holds is let go of (handed
/// to `Dumps::gone`, `CULL_AT_ONCE` at a time), one still there (renewed)
/// takes the deadline the kernel gives now. The places of the walk before
/// follow the reading: a place let go of is `NOWHERE`, which no later dump
/// can send (an address added again is new to the reading), so it is no
/// element both sent, and the walk before is no longer the same walk as
/// any later one. What the dumps prove stays true: an element gone when it
/// was looked up was not in the set throughout. At a million under churn,
/// most of what a start's first dump found times out while the later dumps
/// run (a thousand a second, for minutes): held to the end, they made
/// most of the reading (`benches/README.md`).
fn cull<E: Elem>(all: &mut Vec<E>, walk: &mut [u32], k: &mut dyn Dumps<E>) -> std::io::Result<()> {
    let Some(now) = k.now() else {
        return Ok(());
    };
    let mut dead = Bits::new(all.len());
    let (mut any, mut i) = (false, 0);
    while i < all.len() {
        let mut due = Vec::new();
        while i < all.len() && due.len() < CULL_AT_ONCE {
            if all[i].at().is_some_and(|t| t <= now) {
                due.push(i);
            }
            i += 1;
        }
        let addrs: Vec<IpAddr> = due.iter().map(|&j| all[j].addr()).collect();
        let mut gone = Vec::new();
        for (&j, held) in due.iter().zip(k.look(&addrs)?) {
            match held {
                Some(at) => all[j].set_at(at),
                None => {
                    dead.set(j as u32);
                    gone.push(all[j]);
                }
            }
        }
        if !gone.is_empty() {
            any = true;
            k.gone(gone);
        }
    }
    if !any {
        return Ok(());
    }
    // Each block's count of places let go of before it.
    let mut before = Vec::with_capacity(dead.0.len());
    let mut n = 0u32;
    for w in &dead.0 {
        before.push(n);
        n += w.count_ones();
    }
    for p in walk.iter_mut().filter(|p| **p != NOWHERE) {
        let (b, bit) = (*p as usize / 64, *p % 64);
        *p = if dead.get(*p) {
            NOWHERE
        } else {
            *p - before[b] - (dead.0[b] & ((1u64 << bit) - 1)).count_ones()
        };
    }
    let mut j = 0;
    all.retain(|_| {
        j += 1;
        !dead.get(j as u32 - 1)
    });
    // The room back: a vector of this size is mapped apart, and shrinks
    // in place.
    all.shrink_to_fit();
    Ok(())
}

/// Dumps after `first` (each taken by `dump`) until the reading is whole:
/// each gap of one closed by a later one (`gaps_left`), or two in a row
/// that walked the set alike and saw it calm (a set that does not change:
/// their gaps fall at the same places), at most `passes` dumps in all. Every element
/// any of them sent, each with the deadline of the last that sent it, in
/// address order.
#[cfg(test)]
pub(super) fn settle<E: Elem>(
    first: Walk<E>,
    passes: u64,
    dump: impl FnMut(&mut dyn FnMut(Vec<E>, usize)) -> std::io::Result<()>,
    pause: impl Fn(std::time::Duration),
) -> std::io::Result<(Vec<E>, Settled)> {
    settle_culling(first, passes, &mut Plain(dump, pause))
}

/// `settle`, letting go before each later dump of the elements whose
/// deadlines passed and that the set no longer holds (`cull`): every
/// element any dump sent, but those.
pub(super) fn settle_culling<E: Elem>(
    first: Walk<E>,
    passes: u64,
    k: &mut dyn Dumps<E>,
) -> std::io::Result<(Vec<E>, Settled)> {
    // The reading, made in the first dump's memory; of the dump before,
    // only its walk is kept, as places in the reading.
    let (n, early) = (first.elems.len(), first.early);
    let (mut all, mut before_walk) = into_reading(first.elems);
    let distinct = all.len();
    // One datagram, surely not full: nothing passed over.
    if first.gaps.is_empty() {
        return Ok((all, Settled::Whole(1)));
    }
    // A dump that sent an element twice (beyond a datagram begun early)
    // walked the set in two orders, resized meanwhile: its gaps say
    // nothing (`None`).
    let mut calm = distinct == n && !early;
    let mut before = first.gaps.clone();
    let mut gaps = (distinct == n).then_some(first.gaps);
    for pass in 2..=passes {
        // Not at once: the kernel collects timed-out elements once a
        // second, and a dump of as many as the last takes as long, so it
        // would meet those collections where the last did, and pass over
        // elements at the same places.
        k.pause(std::time::Duration::from_millis(370 * (pass - 1)));
        cull(&mut all, &mut before_walk, k)?;
        let mut against = Against::new(&mut all);
        k.dump(&mut |datagram, bytes| against.push(datagram, bytes))?;
        let Against { fresh, walk, .. } = against;
        let next = walk.finish();
        // The new addresses in order, each once, and where each went.
        let (fresh, rank) = into_reading(fresh);
        let same_walk = next.elems == before_walk;
        // Where `next` first sent each element of the walk before, in
        // that walk's own memory.
        let mut at = before_walk;
        let (in_order, d) = sent_again(&mut at, &next.elems, all.len());
        let d = d + fresh.len();
        // The same walk as the dump before: the same addresses in the same
        // order, their datagrams ending at the same places, and neither
        // seeing the set change (no element sent twice, no datagram begun
        // early). The same addresses alone prove nothing: a dump that
        // passed over an element as an add and a removal met it, and the
        // next that passed over it as others did, can hold the same.
        let now_calm = is_calm(&next, d);
        let same = calm && now_calm && next.gaps == before && same_walk;
        calm = now_calm;
        before.clone_from(&next.gaps);
        gaps = match gaps.and_then(|g| in_order.then(|| gaps_left(&at, &g, &next)).flatten()) {
            _ if d < next.elems.len() => None,
            Some(g) => Some(g),
            None => Some(next.gaps.clone()),
        };
        drop(at);
        before_walk = merge_fresh(&mut all, fresh, &rank, next.elems);
        if gaps.as_ref().is_some_and(Vec::is_empty) {
            return Ok((all, Settled::Whole(pass)));
        }
        if same {
            return Ok((all, Settled::Same(pass)));
        }
    }
    Ok((all, Settled::Changing(passes)))
}

#[cfg(test)]
mod tests;
