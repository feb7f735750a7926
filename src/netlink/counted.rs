//! A set read by a look-up of each element it should hold, where the
//! kernel counts its elements (NFTA_SET_COUNT): whole when the count held
//! still and every counted element was found. The cost grows with the
//! elements asked of, where a dump walks the set again for each datagram.
//!
//! Memory: at a million elements each copy of a reading is 10 MB (IPv4)
//! or 22 (IPv6, `kevents::Elem`), so the
//! look-ups go 4,096 addresses at a time, and a dump's reading is checked
//! in the dump's own vector (`first_by_look_ups`), never beside a second.
#![forbid(unsafe_code)]

use std::io;
use std::net::IpAddr;

use super::readings::in_address_order;
use super::walks::Walk;
use super::{Lookup, Timer};
use crate::kevents::Elem;

/// Addresses looked up between two looks at the clock.
const PART: usize = 4096;

/// Look-ups under way: the count they began with, and whether an element
/// found was (re)started since they began.
struct LookUps {
    before: u64,
    set_timeout: Option<u64>,
    began: i64,
    touched: bool,
}

impl LookUps {
    /// A part's answers as deadlines (`None`: not held; `Some(None)`: held
    /// without a timeout), each made when the answer came.
    fn deadlines(&mut self, lefts: Vec<Option<Timer>>) -> Vec<Option<Option<i64>>> {
        let at = crate::clock::now_ms();
        let window = u64::try_from(at - self.began).unwrap_or(0) + 1000;
        let mut out = Vec::with_capacity(lefts.len());
        for l in lefts {
            out.push(l.map(|(timeout, left)| {
                // Its timer started since the look-ups began (a second of
                // the kernel's rounding allowed), or it has none to tell by.
                let ran =
                    (timeout.or(self.set_timeout).zip(left)).map(|(t, l)| t.saturating_sub(l));
                self.touched |= ran.is_none_or(|r| r <= window);
                left.map(|l| super::parse::deadline(at, l))
            }));
        }
        out
    }
}

impl Lookup {
    /// The count the look-ups begin with, where the kernel gives one and
    /// `n` addresses can hold it; `None` leaves the set to a dump.
    fn look_ups(&mut self, set: &str, n: usize) -> io::Result<Option<LookUps>> {
        let (Some(before), set_timeout) = self.set_count(set)? else {
            return Ok(None);
        };
        Ok((before <= n as u64).then(|| LookUps {
            before,
            set_timeout,
            began: crate::clock::now_ms(),
            touched: false,
        }))
    }

    /// Did the set hold still through the look-ups: the same count after
    /// them, and no element found (re)started meanwhile?
    fn held_still(&mut self, set: &str, l: &LookUps) -> io::Result<bool> {
        Ok(!l.touched && self.set_count(set)?.0 == Some(l.before))
    }

    /// The set read by a look-up of each of `known`: whole when the count
    /// is the same before and after the look-ups and each counted element
    /// was found, none of them (re)started during the look-ups. A count
    /// above `known`'s, or one that moved, or one the look-ups fall short
    /// of (an element added while no daemon ran, or one that timed out and
    /// is not yet collected) leaves it to a dump (`None`), as does a
    /// kernel that counts nothing. An element added during the look-ups,
    /// by a knock or by a transaction, comes to the daemon as an event,
    /// which it takes after the reading; one found that its timer says was
    /// added or renewed during them leaves it to a dump too (found, it
    /// could stand for an element the count holds and no look-up found: a
    /// kept host that left while no daemon ran and knocked again
    /// meanwhile, while another timed out).
    /// `known` gives its `n` addresses as the look-ups go, a part at a
    /// time: the list is never held whole.
    pub(super) fn known_or_none<E: Elem>(
        &mut self,
        set: &str,
        n: usize,
        known: &mut dyn Iterator<Item = IpAddr>,
    ) -> io::Result<Option<Vec<E>>> {
        let Some(mut l) = self.look_ups(set, n)? else {
            return Ok(None);
        };
        let mut found: Vec<E> = Vec::with_capacity(l.before as usize);
        let mut part = Vec::with_capacity(PART);
        // Bounded: `n` addresses at most.
        for _ in 0..n.div_ceil(PART) {
            part.clear();
            part.extend((&mut *known).take(PART));
            if part.is_empty() || l.before == 0 {
                break;
            }
            let lefts = self.timed_lefts(set, &part)?;
            let got = part.iter().zip(l.deadlines(lefts));
            found.extend(got.filter_map(|(a, d)| E::make(*a, d?)));
        }
        // Each once: an address heard added may be one the dump gave too.
        let found = in_address_order(found);
        let whole = self.held_still(set, &l)? && found.len() as u64 == l.before;
        Ok(whole.then_some(found))
    }

    /// `known_or_none` for a dump's elements and the addresses `heard`
    /// added meanwhile, in the dump's own memory: each element the
    /// look-ups find takes the deadline they gave (one as true as the
    /// dump's, and later), and where the reading is whole, what the set
    /// holds is made of the dump's vector in place.
    /// Where it is not, `first` stays as the dump gave it, but for those
    /// later deadlines (`Checked::Not`), unless it repeated an element:
    /// its vector is then spent (`Checked::Spent`), and the set is to be
    /// dumped again.
    pub(super) fn first_by_look_ups<E: Elem>(
        &mut self,
        set: &str,
        first: &mut Walk<E>,
        heard: &[IpAddr],
    ) -> io::Result<Checked<E>> {
        let k = first.elems.len();
        let Some(mut l) = self.look_ups(set, k + heard.len())? else {
            return Ok(Checked::Not);
        };
        let mut found = vec![false; k];
        let mut part = Vec::with_capacity(PART);
        // None is counted: none is looked up.
        let (asked, heard) = match l.before {
            0 => (0, &[][..]),
            _ => (k, heard),
        };
        for start in (0..asked).step_by(PART) {
            let end = k.min(start + PART);
            part.clear();
            part.extend(first.elems[start..end].iter().map(E::addr));
            let lefts = self.timed_lefts(set, &part)?;
            for (i, d) in (start..end).zip(l.deadlines(lefts)) {
                if let Some(d) = d {
                    first.elems[i].set_at(d);
                    found[i] = true;
                }
            }
        }
        let mut also = Vec::new();
        for part in heard.chunks(PART) {
            let lefts = self.timed_lefts(set, part)?;
            let got = part.iter().zip(l.deadlines(lefts));
            also.extend(got.filter_map(|(a, d)| E::make(*a, d?)));
        }
        let hits = found.iter().filter(|f| **f).count() + also.len();
        // Short of the count even with an address twice: not whole, and
        // the dump is left as it came.
        if !self.held_still(set, &l)? || (hits as u64) < l.before {
            return Ok(Checked::Not);
        }
        let mut elems = std::mem::take(&mut first.elems);
        let mut i = 0;
        elems.retain(|_| {
            i += 1;
            found[i - 1]
        });
        drop(found);
        elems.extend(also);
        let elems = in_address_order(elems);
        Ok(if elems.len() as u64 == l.before {
            Checked::Whole(elems)
        } else {
            Checked::Spent
        })
    }
}

/// What `first_by_look_ups` made of a dump.
pub(super) enum Checked<E> {
    /// Whole: what the set holds, in address order.
    Whole(Vec<E>),
    /// Not whole; the dump is as it was, for a dump after it.
    Not,
    /// Not whole, found short only once each address was counted once:
    /// the dump's vector is spent.
    Spent,
}
