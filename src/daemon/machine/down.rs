//! What the daemon knew when it stopped, and what changed while no
//! daemon ran: the machine's snapshot (kept in the state file by
//! `daemon::state`) and, at the next start, the lines that compare it with
//! what the kernel holds, each ending "while the daemon was down".
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::ops::Bound::{Excluded, Unbounded};

use super::watch::{Hosts, Watch};
use super::{Action, Auth, Ctx, Machine, Query, Step, Then};
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

    /// Hosts of `table`, each since when (none: nothing); of a host
    /// given twice, or one it had, the last.
    pub fn add_hosts(&mut self, table: &str, hosts: Vec<(Net, i64)>) {
        if hosts.is_empty() {
            return;
        }
        match self.0.get_mut(table) {
            Some(h) => h.extend(hosts),
            // Made from its entries at once: full nodes.
            None => {
                self.0.insert(table.to_owned(), hosts.into_iter().collect());
            }
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

/// What takes each host `Machine::each_known` gives: its table, the host
/// and since when (seconds); an error ends the walk.
pub type EachKnown<'a, E> = dyn FnMut(&str, Net, i64) -> Result<(), E> + 'a;

impl Machine {
    /// Each authorization the machine knows of, as `snapshot` holds them
    /// (by table, in table name and address order), handed to `f` one at
    /// a time. With kernel events, straight from the book: at a million a
    /// snapshot is a copy of every host, 55 MB beside the book at the
    /// stop (`benches/README.md`, churn.sh); and from the records of the
    /// hosts said during the start's reading whose events have not come
    /// yet (`Knocks::said_in`), which the book does not hold until they
    /// do. The first error `f` gives ends it.
    pub fn each_known<E>(&self, cx: &Ctx, f: &mut EachKnown<'_, E>) -> Result<(), E> {
        if !self.events {
            for (t, hosts) in self.snapshot(cx).tables() {
                for (n, since) in hosts {
                    f(t, *n, *since)?;
                }
            }
            return Ok(());
        }
        // Each service its own table (`config::check`), named once.
        let mut tables: Vec<(String, &str)> = (cx.cfg.services.iter())
            .map(|s| {
                (
                    TableRef::new(&cx.cfg.anchor, &s.table).to_string(),
                    s.table.as_str(),
                )
            })
            .collect();
        tables.sort_unstable();
        for (t, table) in &tables {
            for af in [Af::V4, Af::V6] {
                let set = nft_set_of(table, af);
                // In address order (`Book::iter_set`), as `Hosts` is.
                let secs = |(addr, a): (IpAddr, Auth)| (Net::host(addr), a.since.div_euclid(1000));
                let booked = self.book.find(&set).into_iter();
                let booked = booked.flat_map(|id| self.book.iter_set(id)).map(secs);
                let said = self.knocks.said_in(&set).map(secs);
                // Where both hold a host, the book's (taken in since).
                for (n, booked, said) in side_by_side(booked, said) {
                    if let Some(since) = booked.or(said) {
                        f(t, n, since)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// How many of the hosts of `set` said during the start's reading the
    /// book does not hold (taken in with the reading, or by a knock's
    /// event, not yet): both walked
    /// side by side in address order, where anything was said.
    pub(super) fn said_apart(&self, set: &str) -> usize {
        let mut said = self.knocks.said_in(set).peekable();
        if said.peek().is_none() {
            return 0;
        }
        let host = |(addr, _): (IpAddr, Auth)| (Net::host(addr), 0);
        let booked = self.book.find(set).into_iter();
        let booked = booked.flat_map(|id| self.book.iter_set(id)).map(host);
        (side_by_side(booked, said.map(host)))
            .filter(|(_, booked, _)| booked.is_none())
            .count()
    }

    /// Every authorization the machine knows of.
    pub fn snapshot(&self, cx: &Ctx) -> Known {
        let mut k = Known::new();
        if self.events {
            // A table's hosts come together (`each_known`), each table's
            // made into its `Hosts` at once.
            let (mut table, mut hosts) = (String::new(), Vec::new());
            let each = self.each_known(cx, &mut |t, n, since| {
                if t != table {
                    k.add_hosts(&table, std::mem::take(&mut hosts));
                    t.clone_into(&mut table);
                }
                hosts.push((n, since));
                Ok::<(), std::convert::Infallible>(())
            });
            let Ok(()) = each;
            k.add_hosts(&table, hosts);
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
    /// A table with more to say than `log_burst` has one line first with
    /// their number, and each at debug (`burst`).
    pub fn reconcile(&self, cx: &Ctx, prev: Option<Known>, cur: &Known, now: i64) -> Vec<Action> {
        let Some(prev) = prev else {
            return Self::no_record(cur.len());
        };
        let (mut out, mut new, mut gone) = (Vec::new(), Vec::new(), Vec::new());
        let names: BTreeSet<&str> = cur.tables().chain(prev.tables()).map(|(t, _)| t).collect();
        for t in names {
            let w = self.watch_of(t);
            let both = side_by_side(hosts_of(cur.hosts(t)), hosts_of(prev.hosts(t)));
            let said: Vec<_> = both
                .filter_map(|(n, after, before)| Some((n, self.verdict(w, after, before, now)?)))
                .collect();
            let level = burst(cx, w, said.len(), &mut out);
            for (n, (verb, since)) in said {
                let line = Self::down_line(w, level, verb, &n, since, now);
                if since.is_some() { &mut new } else { &mut gone }.extend(line);
            }
        }
        out.extend(new);
        out.extend(gone);
        out
    }

    /// `reconcile` with kernel events, what the kernel holds being the
    /// book: walked beside the record a part at a time (`TAKE_AT_ONCE`
    /// hosts, or `LINES_AT_ONCE` lines), each part at a turn of the loop
    /// (`Query::Pause`), so that a million compared do not keep a signal
    /// waiting. Three walks: one counts what each table has to say (and
    /// says the number where it passes `log_burst`), one says what is new
    /// or renewed, one what left, which `reconcile` says after all the
    /// rest; a walk passes over a table with nothing for it. A day down
    /// can be a million lines: none is held meanwhile. The book holds
    /// still (kernel events wait for the end, as they do for the
    /// reading's); the lines are `reconcile`'s, in its order.
    pub fn compare(&mut self, cx: &Ctx, prev: Known, now: i64, out: &mut Vec<Action>) {
        let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in &cx.cfg.services {
            let t = TableRef::new(&cx.cfg.anchor, &s.table).to_string();
            // Its IPv4 set, then its IPv6 set: address order.
            let sets = [Af::V4, Af::V6].map(|af| nft_set_of(s.table.as_str(), af));
            tables.insert(t, sets.into());
        }
        for (t, _) in prev.tables() {
            tables.entry(t.to_owned()).or_default();
        }
        let tables = tables.into_iter().map(|(name, sets)| Compared {
            unread: [0, 1].map(|f| sets.get(f).is_some_and(|s| self.unread.contains(s))),
            name,
            sets,
            said: [0, 0],
            level: Level::Info,
        });
        let c = Comparing {
            prev,
            tables: tables.collect(),
            at: 0,
            walk: Walk::Count,
            after: None,
            now,
        };
        self.compare_part(cx, Box::new(c), out);
    }

    /// The next part of a `compare`; the next after it is asked for at the
    /// loop's next turn.
    pub(super) fn compare_part(&mut self, cx: &Ctx, mut c: Box<Comparing>, out: &mut Vec<Action>) {
        // Hosts walked, and lines said (each costs more).
        let (mut hosts, mut lines) = (super::resync::TAKE_AT_ONCE, LINES_AT_ONCE);
        let aside = self.knocks.any_changed_while_read();
        loop {
            let Some(tab) = c.tables.get(c.at) else {
                c.walk = match c.walk {
                    Walk::Count => Walk::New,
                    Walk::New => Walk::Gone,
                    Walk::Gone => return self.knocks.compared(),
                };
                c.at = 0;
                continue;
            };
            // A table of no watch (the config no longer names it) says
            // nothing.
            let w = self.watch_of(&tab.name);
            let idle = c.walk != Walk::Count && tab.said[usize::from(c.walk == Walk::Gone)] == 0;
            if w.is_none() || idle {
                c.at += 1;
                continue;
            }
            let after = c.after;
            let cur = (tab.sets.iter().filter_map(|s| self.book.find(s)))
                .flat_map(|id| self.book.iter_set_after(id, after.map(|n| n.addr())))
                .map(|(addr, a)| (Net::host(addr), a.since.div_euclid(1000)));
            // Not the hosts of a set gone before the reading read it:
            // what became of them is not known.
            let unread = tab.unread;
            let kept = c.prev.hosts(&tab.name).map(|h| {
                let from = after.map_or(Unbounded, Excluded);
                (h.range((from, Unbounded)).map(|(n, s)| (*n, *s)))
                    .filter(move |(n, _)| !unread[usize::from(n.addr().is_ipv6())])
            });
            let (mut said, mut full) = (tab.said, false);
            for (n, held, kept) in side_by_side(cur, kept.into_iter().flatten()) {
                c.after = Some(n);
                hosts -= 1;
                // Changed since the start, and said as it came or when its
                // event comes: nothing of it is known of the time down.
                let set = tab.sets.get(usize::from(n.addr().is_ipv6()));
                let changed =
                    aside && set.is_some_and(|s| self.knocks.changed_while_read(s, n.addr()));
                let (held, kept) = if changed { (None, None) } else { (held, kept) };
                match (self.verdict(w, held, kept, c.now), c.walk) {
                    (Some((_, since)), Walk::Count) => said[usize::from(since.is_none())] += 1,
                    (Some((verb, since)), walk) if since.is_none() == (walk == Walk::Gone) => {
                        out.extend(Self::down_line(w, tab.level, verb, &n, since, c.now));
                        lines -= 1;
                    }
                    _ => {}
                }
                full = hosts == 0 || lines == 0;
                if full {
                    break;
                }
            }
            let tab = &mut c.tables[c.at];
            tab.said = said;
            if full {
                out.push(Action::Ask(Query::Pause, Then::of(Step::Comparing(c))));
                return;
            }
            if c.walk == Walk::Count {
                tab.level = burst(cx, w, said[0] + said[1], out);
            }
            c.at += 1;
            c.after = None;
        }
    }

    /// What one host's time in the kernel (`held`) and in the record
    /// (`kept`) say at `now`, if anything: authorized or renewed while no
    /// daemon ran, since when; or (no time) expired or removed.
    fn verdict(
        &self,
        w: Option<&Watch>,
        held: Option<i64>,
        kept: Option<i64>,
        now: i64,
    ) -> Option<(&'static str, Option<i64>)> {
        match (held, kept) {
            (Some(s), None) => Some(("authorized", Some(s))),
            // A new time stamp (pf), or a later start by more than the
            // rounding of a timer read back (nftables).
            (Some(s), Some(p)) if s > p + 2 => Some(("renewed", Some(s))),
            (None, Some(p)) => {
                // Only a firewall that times entries out itself
                // (nftables) expires anything while no daemon runs; on pf
                // an entry that left was removed.
                let ttl = w.and_then(|w| w.named.ttl);
                let expired =
                    self.polls.refreshes && ttl.is_some_and(|ttl| p + ttl.0 as i64 <= now);
                Some((if expired { "expired" } else { "removed" }, None))
            }
            _ => None,
        }
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

    /// No compare with a record follows the reading just taken in: what
    /// was kept of it for one goes (`Knocks::compared`).
    pub fn compared(&mut self) {
        self.knocks.compared();
    }

    /// Whether a compare with the last run's record follows the start's
    /// reading: then what changed during it is kept for the compare
    /// (`Knocks::took`), else it goes as it is taken in.
    pub fn compare_follows(&mut self, yes: bool) {
        self.knocks.compare = yes;
    }

    /// How many authorizations the machine knows of (kernel events): the
    /// book's, and those said during the start's reading whose events
    /// have not come yet, counted as `each_known` walks them (a million
    /// in some 10 ms; no snapshot).
    pub fn booked(&self, cx: &Ctx) -> usize {
        let mut n = 0;
        let counted = self.each_known(cx, &mut |_, _, _| {
            n += 1;
            Ok::<(), std::convert::Infallible>(())
        });
        let Ok(()) = counted;
        n
    }

    fn watch_of(&self, table: &str) -> Option<&Watch> {
        self.polls
            .watches
            .iter()
            .find(|w| w.named.table.to_string() == table)
    }

    /// Hosts of `table` that the start's reading over a record found,
    /// then let go of when they timed out while it ran, and that the
    /// record did not keep (`gone_while_read`): each authorized while no
    /// daemon ran, as the compare would have said had it found them, aged
    /// at its deadline. Their expiry lines follow.
    pub(super) fn found_and_gone(
        &self,
        cx: &Ctx,
        table: &str,
        found: Vec<(Net, Auth)>,
        out: &mut Vec<Action>,
    ) {
        let w = self.watch_of(table);
        let level = burst(cx, w, found.len(), out);
        for (n, a) in found {
            let since = Some(a.since.div_euclid(1000));
            let until = a.until.div_euclid(1000);
            out.extend(Self::down_line(w, level, "authorized", &n, since, until));
        }
    }

    fn down_line(
        w: Option<&Watch>,
        level: Level,
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
        Some(Action::Log(level, w.line(verb, n, &extra)))
    }
}

/// The level of a table's `n` lines said at a start: info, or where they
/// are more than `log_burst`, one line with their number (in `out`) and
/// each at debug.
fn burst(cx: &Ctx, w: Option<&Watch>, n: usize, out: &mut Vec<Action>) -> Level {
    let Some(w) = w.filter(|_| n > cx.cfg.log_burst as usize) else {
        return Level::Info;
    };
    let of = match &w.named.service {
        Some(s) => format!("service {s}"),
        None => format!("table {}", w.named.table),
    };
    let line = format!("{n} changes to the authorizations of {of} while the daemon was down");
    out.push(Action::Log(Level::Info, line));
    Level::Debug
}

/// A table's hosts, if it has any, with the time of each.
fn hosts_of(h: Option<&Hosts>) -> impl Iterator<Item = (Net, i64)> + '_ {
    h.into_iter().flatten().map(|(n, s)| (*n, *s))
}

/// Two tables' hosts side by side, each in address order, in one pass
/// over both: each host of either, with the time each has for it.
fn side_by_side(
    a: impl Iterator<Item = (Net, i64)>,
    b: impl Iterator<Item = (Net, i64)>,
) -> impl Iterator<Item = (Net, Option<i64>, Option<i64>)> {
    let mut a = a.peekable();
    let mut b = b.peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some((x, _)), Some((y, _))) if x < y => a.next().map(|(n, s)| (n, Some(s), None)),
        (Some((x, _)), Some((y, _))) if x > y => b.next().map(|(n, s)| (n, None, Some(s))),
        (Some(_), Some(_)) => {
            let (n, s) = a.next()?;
            let (_, p) = b.next()?;
            Some((n, Some(s), Some(p)))
        }
        (Some(_), None) => a.next().map(|(n, s)| (n, Some(s), None)),
        (None, Some(_)) => b.next().map(|(n, s)| (n, None, Some(s))),
        (None, None) => None,
    })
}

/// Lines a part of a start's `compare` makes or says at most: each is
/// formatted and sent to syslog, some microseconds, where a host walked
/// past without one costs less than one.
pub(super) const LINES_AT_ONCE: usize = super::resync::SAY_AT_ONCE;

/// A start's `compare`, between two parts: the tables and the one being
/// walked; which walk; and the last host walked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Comparing {
    prev: Known,
    tables: Vec<Compared>,
    /// The table being walked.
    at: usize,
    walk: Walk,
    after: Option<Net>,
    /// Seconds.
    now: i64,
}

/// A table a start's `compare` walks: by name, with its sets (IPv4's
/// first); how many lines it says of what is new or renewed, and of what
/// left (counted by the first walk); and at what level.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Compared {
    name: String,
    sets: Vec<String>,
    /// Its IPv4 and its IPv6 set went before the reading read them.
    unread: [bool; 2],
    said: [usize; 2],
    level: Level,
}

/// The walks of a start's `compare`, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walk {
    /// What each table has to say, counted.
    Count,
    /// What is new or renewed, said.
    New,
    /// What left, said.
    Gone,
}
