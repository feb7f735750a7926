//! What the daemon knew when it stopped, and what changed while no
//! daemon ran: the machine's snapshot (kept in the state file by
//! `daemon::state`) and, at the next start, the lines that compare it with
//! what the kernel holds, each ending "while the daemon was down".
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};

use super::watch::{Hosts, Watch};
use super::{Action, Ctx, Machine};
use crate::config::Role;
use crate::daemon::lines::Level;
use crate::name::{Af, Net, Secs};
use crate::names::nft_set_of;
use crate::policy;
use crate::tables::{Entry, TableRef};

/// Every authorization: per table, as the log names it, each host and
/// since when it counts (time stamp, or last renewal; seconds). A table's
/// name is held once, not once a host: a million are compared at a start
/// with a record, in the loop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Known(BTreeMap<String, Hosts>);

impl Known {
    pub fn new() -> Self {
        Known::default()
    }

    /// Host `n` of `table`, since `since`.
    pub fn insert(&mut self, (table, n): (String, Net), since: i64) {
        self.0.entry(table).or_default().insert(n, since);
    }

    /// `insert`, the table's name borrowed (copied once, for its first
    /// host).
    pub fn insert_at(&mut self, table: &str, n: Net, since: i64) {
        match self.0.get_mut(table) {
            Some(hosts) => {
                hosts.insert(n, since);
            }
            None => self.insert((table.to_owned(), n), since),
        }
    }

    pub fn len(&self) -> usize {
        self.0.values().map(Hosts::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(Hosts::is_empty)
    }

    /// Each table, by name, with its hosts.
    pub fn tables(&self) -> impl Iterator<Item = (&str, &Hosts)> {
        self.0.iter().map(|(t, h)| (t.as_str(), h))
    }

    /// The hosts of `table`, if it has any.
    pub fn hosts(&self, table: &str) -> Option<&Hosts> {
        self.0.get(table)
    }
}

impl FromIterator<((String, Net), i64)> for Known {
    fn from_iter<I: IntoIterator<Item = ((String, Net), i64)>>(it: I) -> Self {
        let mut k = Known::new();
        for (key, since) in it {
            k.insert(key, since);
        }
        k
    }
}

impl<const N: usize> From<[((String, Net), i64); N]> for Known {
    fn from(a: [((String, Net), i64); N]) -> Self {
        a.into_iter().collect()
    }
}

impl Machine {
    /// Every authorization the machine knows of.
    pub fn snapshot(&self, cx: &Ctx) -> Known {
        let mut k = Known::new();
        if self.events {
            // Set by set, each service's table named once.
            // The book's order is its own: gathered, then sorted once
            // into address order (`Hosts`).
            for s in &cx.cfg.services {
                let mut hosts = Vec::new();
                for af in [Af::V4, Af::V6] {
                    let Some(id) = self.book.find(&nft_set_of(s.table.as_str(), af)) else {
                        continue;
                    };
                    hosts.reserve(self.book.count(id));
                    let set = self.book.iter_set(id);
                    hosts.extend(set.map(|(addr, a)| (Net::host(addr), a.since.div_euclid(1000))));
                }
                if !hosts.is_empty() {
                    let t = TableRef::new(&cx.cfg.anchor, &s.table).to_string();
                    match k.0.entry(t).or_default() {
                        e if e.is_empty() => *e = hosts.into_iter().collect(),
                        e => e.extend(hosts),
                    }
                }
            }
            return k;
        }
        for w in self.polls.watches.iter() {
            // pf's intake knows only the hosts a move had no room for:
            // authorized there, kept as its service's.
            let t = match w.role() {
                Some(Role::Auth) => w.named.table.to_string(),
                Some(Role::Renew) if !w.known.is_empty() => {
                    let s = w.named.service.as_deref().and_then(|s| cx.cfg.service(s));
                    let Some(s) = s else { continue };
                    TableRef::new(&cx.cfg.anchor, &s.table).to_string()
                }
                _ => continue,
            };
            for (n, since) in &w.known {
                k.insert_at(&t, *n, *since);
            }
        }
        k
    }

    /// The tables a start with polling reads for `at_start`: every
    /// authorized table and each service's intake (pf's `T_renew`).
    pub fn start_tables(&self) -> Vec<TableRef> {
        (self.polls.watches.iter())
            .filter(|w| matches!(w.role(), Some(Role::Auth | Role::Renew)))
            .map(|w| w.named.table.clone())
            .collect()
    }

    /// What the kernel holds at a start, from the listings of
    /// `start_tables` (a table that could not be read left out): each
    /// authorized table's hosts and its intake's. A host only in the
    /// intake was authorized by a knock made while no daemon ran; one in
    /// both knocked again then (a renewal, where the service renews).
    /// Either counts from that knock. The intake's hosts are marked as
    /// said, so that the first poll, which moves them, does not say them
    /// again. Each authorized table is known as listed at `now` (seconds,
    /// `Watch::primed`): the first poll sorts its intake by it, and lists
    /// it again only if it changed since.
    pub fn at_start(&mut self, cx: &Ctx, listed: Vec<(TableRef, Vec<Entry>)>, now: i64) -> Known {
        let mut k = Known::new();
        let mut intakes = Vec::new();
        for (t, entries) in listed {
            let Some(i) = self.polls.watches.iter().position(|w| w.named.table == t) else {
                continue;
            };
            let w = &mut self.polls.watches[i];
            if w.role() == Some(Role::Renew) {
                w.known = entries.iter().map(|e| (e.net, e.tzero)).collect();
                intakes.push(i);
                continue;
            }
            w.primed(&entries, now);
            // The same hosts, since the same time stamps.
            k.0.insert(t.to_string(), w.known.clone());
        }
        for i in intakes {
            let w = &self.polls.watches[i];
            let svc = w.named.service.as_deref().and_then(|s| cx.cfg.service(s));
            let Some(s) = svc else { continue };
            let auth = TableRef::new(&cx.cfg.anchor, &s.table).to_string();
            for (n, knocked) in &w.known {
                let since = match k.hosts(&auth).and_then(|h| h.get(n)) {
                    Some(was) if !s.renew => *was,
                    Some(was) => (*was).max(*knocked),
                    None => *knocked,
                };
                k.insert_at(&auth, *n, since);
            }
        }
        k
    }

    /// At start (`now` in seconds): what the kernel holds (`cur`) against
    /// what the last daemon kept (`prev`). New and renewed authorizations
    /// and those that left are said, table by table in address order;
    /// without a record, one line says that what happened is not known.
    /// Both sides are in address order (`Hosts`): each table's two are
    /// walked side by side in one pass, and what is said needs no sorting.
    pub fn reconcile(&self, prev: Option<Known>, cur: &Known, now: i64) -> Vec<Action> {
        let Some(prev) = prev else {
            return Self::no_record(cur.len());
        };
        let mut out = Vec::new();
        let mut gone = Vec::new();
        let names: BTreeSet<&str> = cur.tables().chain(prev.tables()).map(|(t, _)| t).collect();
        for t in names {
            let w = self.watch_of(t);
            // Only a firewall that times entries out itself (nftables)
            // expires anything while no daemon runs; on pf an entry that
            // left was removed.
            let ttl = w.and_then(|w| w.named.ttl);
            for (n, after, before) in side_by_side(cur.hosts(t), prev.hosts(t)) {
                let (verb, since) = match (after, before) {
                    (Some(s), None) => ("authorized", s),
                    // A new time stamp (pf), or a later start by more
                    // than the rounding of a timer read back (nftables).
                    (Some(s), Some(p)) if s > p + 2 => ("renewed", s),
                    (None, Some(p)) => {
                        let expired =
                            self.polls.refreshes && ttl.is_some_and(|ttl| p + ttl.0 as i64 <= now);
                        let verb = if expired { "expired" } else { "removed" };
                        gone.extend(Self::down_line(w, verb, &n, None, now));
                        continue;
                    }
                    _ => continue,
                };
                out.extend(Self::down_line(w, verb, &n, Some(since), now));
            }
        }
        out.extend(gone);
        out
    }

    /// Without a record: one line, with the number of authorizations
    /// found (on kernel events, the book's: no snapshot of a million
    /// to count them).
    pub fn no_record(found: usize) -> Vec<Action> {
        let line = format!(
            "no record of the last run (first start, a crash or a reboot): {found} \
             authorizations found; what happened while no daemon ran is not known"
        );
        vec![Action::Log(Level::Notice, line)]
    }

    /// How many authorizations the book holds (kernel events).
    pub fn booked(&self) -> usize {
        self.book.len()
    }

    fn watch_of(&self, table: &str) -> Option<&Watch> {
        self.polls
            .watches
            .iter()
            .find(|w| w.named.table.to_string() == table)
    }

    fn down_line(
        w: Option<&Watch>,
        verb: &str,
        n: &Net,
        since: Option<i64>,
        now: i64,
    ) -> Option<Action> {
        let w = w?;
        let mut extra = String::new();
        if let Some(s) = since {
            extra.push_str(&format!("age={} ", Secs(policy::age(now, s))));
        }
        if let Some(ttl) = w.named.ttl {
            extra.push_str(&format!("ttl={ttl} "));
        }
        extra.push_str("while the daemon was down");
        Some(Action::Log(Level::Info, w.line(verb, n, &extra)))
    }
}

/// Two tables' hosts side by side, in address order, in one pass over
/// both: each host of either, with the time each has for it.
fn side_by_side<'a>(
    a: Option<&'a Hosts>,
    b: Option<&'a Hosts>,
) -> impl Iterator<Item = (Net, Option<i64>, Option<i64>)> + 'a {
    let mut a = a.into_iter().flatten().peekable();
    let mut b = b.into_iter().flatten().peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some((x, _)), Some((y, _))) if x < y => a.next().map(|(n, s)| (*n, Some(*s), None)),
        (Some((x, _)), Some((y, _))) if x > y => b.next().map(|(n, s)| (*n, None, Some(*s))),
        (Some(_), Some(_)) => {
            let (n, s) = a.next()?;
            let (_, p) = b.next()?;
            Some((*n, Some(*s), Some(*p)))
        }
        (Some(_), None) => a.next().map(|(n, s)| (*n, Some(*s), None)),
        (None, Some(_)) => b.next().map(|(n, s)| (*n, None, Some(*s))),
        (None, None) => None,
    })
}
