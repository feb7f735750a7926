//! Which entries to expire and when the next one is due: pure functions of
//! (entries, rule, now), like the loop of `pfctl -T expire`.
#![forbid(unsafe_code)]

use std::collections::HashMap;

use crate::name::Net;
use crate::tables::Entry;

/// An entry past its ttl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired {
    pub net: Net,
    /// Seconds since the moment its age counts from.
    pub age: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub expire: Vec<Expired>,
    /// The first second at which another entry of the table will be past
    /// its ttl, if any entry remains that can expire.
    pub next_due: Option<i64>,
}

/// Age of an entry counted from `since` at `now`, never negative.
pub fn age(now: i64, since: i64) -> u64 {
    now.saturating_sub(since).max(0) as u64
}

/// Decide one table. An entry expires when `now - since(e) > ttl`, strictly,
/// as `pfctl -T expire` decides; entries for which `keep` holds (the allow
/// list) never do.
pub fn decide(
    entries: &[Entry],
    ttl: u64,
    now: i64,
    since: impl Fn(&Entry) -> i64,
    keep: impl Fn(&Net) -> bool,
) -> Decision {
    decide_since(entries.iter().map(|e| (e.net, since(e))), ttl, now, keep)
}

/// `decide`, for entries given with the time each counts from.
pub fn decide_since(
    entries: impl Iterator<Item = (Net, i64)>,
    ttl: u64,
    now: i64,
    keep: impl Fn(&Net) -> bool,
) -> Decision {
    let mut d = Decision::default();
    let ttl_i = i64::try_from(ttl).unwrap_or(i64::MAX);
    for (net, s) in entries {
        if keep(&net) {
            continue;
        }
        let a = age(now, s);
        if a > ttl {
            d.expire.push(Expired { net, age: a });
        } else {
            let due = s.saturating_add(ttl_i).saturating_add(1);
            d.next_due = Some(d.next_due.map_or(due, |n| n.min(due)));
        }
    }
    d
}

/// Last activity of each entry of an idle-expiry table, from its packet
/// counters. Only the daemon keeps one: an entry seen for the first time
/// (and every entry after a restart) counts as active now, so a restart
/// never expires a session early.
#[derive(Clone, Debug, Default)]
pub struct IdleTracker {
    seen: HashMap<Net, (u64, u64, i64)>,
}

impl IdleTracker {
    /// Fold in a fresh listing of the table at `now`. Entries that left the
    /// table are forgotten, so memory follows the table's size.
    pub fn observe(&mut self, entries: &[Entry], now: i64) {
        let mut next = HashMap::with_capacity(entries.len());
        for e in entries {
            let last = match self.seen.get(&e.net) {
                Some(&(p, b, t)) if p == e.packets && b == e.bytes => t,
                _ => now,
            };
            next.insert(e.net, (e.packets, e.bytes, last));
        }
        self.seen = next;
    }

    /// When the entry last moved (or was first seen).
    pub fn last_active(&self, net: &Net) -> Option<i64> {
        self.seen.get(net).map(|&(_, _, t)| t)
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Forget everything (after a renewal reset, say).
    pub fn forget(&mut self, net: &Net) {
        self.seen.remove(net);
    }
}

/// When an entry of an idle-expiry table was last active. While the kernel
/// keeps no counters for it (PFR_FB_NOCOUNT: OpenBSD allocates them on the
/// first counted packet and frees them on CLRASTATS), nothing has been
/// counted since the moment its time stamp records, so that is the answer,
/// across restarts too. Otherwise the tracker's view of its counters.
pub fn idle_since(e: &Entry, tracker: &IdleTracker, now: i64) -> i64 {
    if !e.counted && e.tzero > 0 {
        e.tzero.min(now)
    } else {
        tracker.last_active(&e.net).unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn entry(i: u32, tzero: i64) -> Entry {
        Entry {
            net: Net::host(IpAddr::V4(Ipv4Addr::from(0xC612_0000 + i))),
            tzero,
            packets: 0,
            bytes: 0,
            counted: false,
        }
    }

    #[test]
    fn strictly_older_than_ttl_like_pfctl() {
        let es = [entry(1, 1000), entry(2, 1001), entry(3, 0)];
        let d = decide(&es, 60, 1061, |e| e.tzero, |_| false);
        // 61 > 60 expires; 60 does not; tzero 0 (FreeBSD CLRASTATS) at once.
        assert_eq!(
            d.expire.iter().map(|x| (x.net, x.age)).collect::<Vec<_>>(),
            [(es[0].net, 61), (es[2].net, 1061)]
        );
        assert_eq!(d.next_due, Some(1062));
    }

    #[test]
    fn idle_tracker_restarts_as_just_seen() {
        let mut t = IdleTracker::default();
        let mut e = entry(1, 0);
        t.observe(&[e], 100);
        assert_eq!(t.last_active(&e.net), Some(100));
        t.observe(&[e], 150);
        assert_eq!(t.last_active(&e.net), Some(100), "no traffic, no move");
        e.packets = 5;
        t.observe(&[e], 160);
        assert_eq!(t.last_active(&e.net), Some(160));
        assert_eq!((t.len(), t.is_empty()), (1, false));
        // After a renewal the entry counts as new: active at its next look.
        t.forget(&e.net);
        assert_eq!(t.last_active(&e.net), None);
        t.observe(&[e], 165);
        assert_eq!(t.last_active(&e.net), Some(165));
        t.observe(&[], 170);
        assert!(t.is_empty(), "gone entries are forgotten");
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn nocount_entries_are_idle_since_their_stamp() {
        let mut t = IdleTracker::default();
        let mut e = entry(1, 1000);
        t.observe(&[e], 5000);
        // NOCOUNT: idle since tzero, not since the daemon first saw it.
        assert_eq!(idle_since(&e, &t, 5000), 1000);
        // A stamp of 0 says nothing: the tracker decides.
        e.tzero = 0;
        assert_eq!(idle_since(&e, &t, 5000), 5000);
        // Counted: the tracker decides, whatever the stamp.
        e.tzero = 1000;
        e.counted = true;
        e.packets = 3;
        t.observe(&[e], 6000);
        assert_eq!(idle_since(&e, &t, 6100), 6000);
        // A stamp in the future (clock stepped back) is never "older".
        let f = entry(2, 9000);
        assert_eq!(idle_since(&f, &t, 6100), 6100);
    }

    proptest! {
        #[test]
        fn never_young_never_kept_always_old(
            tzeros in proptest::collection::vec(0i64..2_000, 0..200),
            ttl in 0u64..1_000,
            now in 0i64..3_000,
            kept in proptest::collection::vec(any::<bool>(), 200),
        ) {
            let es: Vec<Entry> = tzeros.iter().enumerate().map(|(i, &t)| entry(i as u32, t)).collect();
            let keep_set: Vec<Net> = es.iter().zip(&kept).filter(|(_, k)| **k).map(|(e, _)| e.net).collect();
            let d = decide(&es, ttl, now, |e| e.tzero, |n| keep_set.contains(n));
            for x in &d.expire {
                let e = es.iter().find(|e| e.net == x.net).unwrap();
                // never an entry younger than (or exactly) its ttl
                prop_assert!(now - e.tzero > ttl as i64);
                // never an allow-listed one
                prop_assert!(!keep_set.contains(&x.net));
            }
            // every old, unkept entry goes
            for e in &es {
                if now - e.tzero > ttl as i64 && !keep_set.contains(&e.net) {
                    prop_assert!(d.expire.iter().any(|x| x.net == e.net));
                }
            }
            // the next deadline is in the future and is exact
            if let Some(n) = d.next_due {
                prop_assert!(n > now);
                let again = decide(&es, ttl, n, |e| e.tzero, |n| keep_set.contains(n));
                prop_assert!(again.expire.len() > d.expire.len());
                let before = decide(&es, ttl, n - 1, |e| e.tzero, |n| keep_set.contains(n));
                prop_assert_eq!(before.expire.len(), d.expire.len());
            }
        }
    }
}
