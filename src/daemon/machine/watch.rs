//! What the polls know (`polls.rs`): per table the daemon watches, its
//! entries with the time each counts from, its counters at the last
//! listing and its next deadline; the sets and pf pools logged as full;
//! the removals pfknock's commands noted. And how that follows a new
//! config, an unload and a command's change.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, HashSet};

use super::claims::Claims;
use crate::catalogue::{Kind, Named, named_tables};
use crate::config::{Config, Role};
use crate::daemon::lines::line;
use crate::name::{AnchorName, ExpireMode, Net, Secs};
use crate::policy::IdleTracker;
use crate::tables::{Entry, Pool, TableRef};

/// How often pf's pools are looked at while they have room (seconds);
/// while one is full, every poll.
const POOL_EVERY: i64 = 10;

/// A table the daemon watches, and what it knows of it.
pub(in crate::daemon) struct Watch {
    pub(in crate::daemon) named: Named,
    /// Entry count and table packet counter at the last listing.
    pub(super) count: Option<u64>,
    pub(super) packets: Option<u64>,
    pub(in crate::daemon) next_due: Option<i64>,
    /// Entries seen at the last listing, with the time each counts from.
    pub(in crate::daemon) known: Hosts,
    /// Entries put back after a flush, with the time stamp they had: the
    /// kernel stamped them anew, their age goes on from the old one.
    pub(super) restored: Hosts,
    pub(super) idle: IdleTracker,
    pub(super) listed: bool,
    /// When it was last listed (seconds).
    pub(super) listed_at: i64,
    pub(super) force: bool,
}

/// Hosts of a table, each with the time it counts from, in address
/// order: the order pf lists a table in and the state file keeps, so
/// that a table's listing, a record and a reconcile are each one pass
/// in order rather than a million look-ups at random.
pub(in crate::daemon) type Hosts = BTreeMap<Net, i64>;

/// An idle table with traffic is listed at most every ttl / `IDLE_LAG`
/// (`Watch::may_wait`).
pub(super) const IDLE_LAG: u64 = 16;

impl Watch {
    fn new(named: Named) -> Self {
        Watch {
            named,
            count: None,
            packets: None,
            next_due: None,
            known: Hosts::new(),
            restored: Hosts::new(),
            idle: IdleTracker::default(),
            listed: false,
            listed_at: i64::MIN,
            force: false,
        }
    }

    /// pf, an idle-expiry table whose only change is that its packets
    /// moved (someone used an authorization) and whose next expiry is not
    /// due: its listing waits until a sixteenth of the ttl (`IDLE_LAG`)
    /// has passed since the last. pf has no read of which entries counted
    /// packets, only of all of them, so a busy table of a million would
    /// be read whole every poll. The wait makes an expiry late by at most
    /// that much, never early: a host seen active counts from the listing
    /// that saw it, at most that long after its last packet.
    pub(super) fn may_wait(&self, count: u64, packets: u64, now: i64) -> bool {
        let lag = self.named.ttl.map_or(0, |t| (t.0 / IDLE_LAG) as i64);
        self.named.mode == ExpireMode::Idle
            && self.listed
            && !self.force
            && self.count == Some(count)
            && self.packets != Some(packets)
            && self.next_due.is_none_or(|d| now < d)
            && now < self.listed_at.saturating_add(lag)
    }

    pub(in crate::daemon) fn role(&self) -> Option<Role> {
        match self.named.kind {
            Kind::Service(r) => Some(r),
            Kind::Hold | Kind::Close | Kind::Expire => None,
        }
    }

    /// A start listed the table at `now` (`Machine::at_start`): it is
    /// known as a listing knows it, so that the first poll sorts the
    /// intake's hosts by what the table holds (one there knocked again,
    /// one not there is new), and lists the table again only if its count
    /// moved or an entry is due. An idle-expiry table is listed all the
    /// same, for the packet counters its expiry starts from.
    pub(super) fn primed(&mut self, entries: &[Entry], now: i64) {
        self.known = entries.iter().map(|e| (e.net, e.tzero)).collect();
        self.restored.clear();
        self.count = Some(self.known.len() as u64);
        self.listed = true;
        self.listed_at = now;
        self.force = self.named.mode == ExpireMode::Idle;
        self.due_from_known();
    }

    /// The next due by age, from what is known (an allowed host too: the
    /// sweep that finds it due keeps it).
    pub(super) fn due_from_known(&mut self) {
        self.next_due = first_due(&self.known, self.named.ttl);
    }

    /// The daemon emptied the table: known to hold nothing.
    pub(super) fn emptied(&mut self) {
        self.known.clear();
        self.count = Some(0);
    }

    /// Does this table get swept (expired) by the daemon?
    pub(in crate::daemon) fn swept(&self) -> bool {
        self.named.ttl.is_some()
    }

    /// One log line about `net` in this table.
    pub(in crate::daemon) fn line(&self, verb: &str, net: &Net, extra: &str) -> String {
        line(
            verb,
            net,
            self.named.service.as_deref(),
            &self.named.table,
            extra,
        )
    }

    /// Forget what was known (the table went, or will be listed anew).
    fn forget_all(&mut self) {
        self.known.clear();
        self.restored.clear();
        self.idle = IdleTracker::default();
    }
}

/// When the first of `hosts` (each with the time it counts from) is due
/// with `ttl`: `policy::decide`, once older than the ttl.
pub(super) fn first_due(hosts: &Hosts, ttl: Option<Secs>) -> Option<i64> {
    Some(hosts.values().min()? + ttl?.0 as i64 + 1)
}

/// pf's global pools (`set limit`) as last seen.
#[derive(Default)]
pub(in crate::daemon) struct Pools {
    /// The pools that are full: (held, limit) each.
    pub(in crate::daemon) full: BTreeMap<Pool, (u64, u64)>,
    /// When to look next (seconds).
    next: i64,
}

/// The polls' state.
#[derive(Default)]
pub struct Polls {
    pub(in crate::daemon) watches: Vec<Watch>,
    /// Sets logged as full, until they have room again.
    pub(in crate::daemon) full: HashSet<String>,
    pub(in crate::daemon) pools: Pools,
    /// `[[expire]]` tables said to be missing.
    pub(super) warned_missing: HashSet<TableRef>,
    /// Removals pfknock's commands noted.
    pub(super) claims: Claims,
    /// The firewall refreshes entries itself (nftables, polled): no
    /// renewal tables, idle expiry is age, and what leaves a table
    /// expired.
    pub(super) refreshes: bool,
    /// The last restore of our anchor that failed: the second, and what
    /// the loader said. It is not tried again within that second, so a
    /// short `poll` does not run the loader at every poll.
    pub(super) restore_failed: Option<(i64, String)>,
}

/// The tables to watch. Renewal tables come first, so that a renewal is
/// applied before the sweep of the same poll looks at the authorized
/// table; there are none where the firewall renews by itself.
fn watches_for(cfg: &Config, refreshes: bool) -> Vec<Watch> {
    let mut named = named_tables(cfg);
    named.sort_by_key(|n| !matches!(n.kind, Kind::Service(Role::Renew)));
    named
        .into_iter()
        .filter(|n| match n.kind {
            Kind::Service(Role::Allow) => false,
            // Where the firewall times entries out itself, it holds and
            // resets in its own rules too.
            Kind::Service(Role::Renew) | Kind::Hold | Kind::Close => !refreshes,
            _ => true,
        })
        .map(Watch::new)
        .collect()
}

impl Polls {
    pub fn new(cfg: &Config, refreshes: bool) -> Self {
        Polls {
            watches: watches_for(cfg, refreshes),
            refreshes,
            ..Polls::default()
        }
    }

    /// A new config: the tables it names, each one it still names with
    /// what was known of it (listed again if its ttl or mode changed).
    pub(super) fn reload(&mut self, cfg: &Config) {
        let mut carried: HashMap<TableRef, Watch> = self
            .watches
            .drain(..)
            .map(|w| (w.named.table.clone(), w))
            .collect();
        self.watches = watches_for(cfg, self.refreshes)
            .into_iter()
            .map(|fresh| match carried.remove(&fresh.named.table) {
                Some(mut w) => {
                    let changed =
                        w.named.ttl != fresh.named.ttl || w.named.mode != fresh.named.mode;
                    w.named = fresh.named;
                    w.force = changed;
                    w
                }
                None => fresh,
            })
            .collect();
    }

    /// The anchor's tables went with an unload: forget what was known of
    /// them. How many authorizations went.
    pub(super) fn clear(&mut self, anchor: &AnchorName) -> usize {
        self.full.clear();
        let mut dropped = 0;
        for w in self.watches.iter_mut() {
            if w.named.table.anchor != *anchor || w.role().is_none() {
                continue;
            }
            if w.role() == Some(Role::Auth) {
                dropped += w.known.len();
            }
            w.forget_all();
            w.count = None;
            w.next_due = None;
        }
        dropped
    }

    /// Follow a pfknock verb's change of a table (seconds).
    pub(super) fn follow(&mut self, c: &crate::verbs::Change, now: i64) {
        use crate::verbs::Change;
        let table = match c {
            Change::Added(t, _) | Change::Removed(t, _) | Change::Cleared(t) => t,
        };
        let Some(w) = self.watches.iter_mut().find(|w| w.named.table == *table) else {
            return;
        };
        w.count = None;
        match c {
            Change::Added(_, n) => {
                w.known.insert(*n, now);
                w.restored.remove(n);
                w.idle.forget(n);
            }
            Change::Removed(_, n) => {
                w.known.remove(n);
                w.restored.remove(n);
                w.idle.forget(n);
            }
            Change::Cleared(_) => w.forget_all(),
        }
    }

    /// Events are gone: every table is listed at the next poll.
    pub(super) fn take_over(&mut self) {
        self.full.clear();
        for w in &mut self.watches {
            w.force = true;
        }
    }

    /// When the next table is due (seconds).
    pub(super) fn next_due(&self) -> Option<i64> {
        self.watches.iter().filter_map(|w| w.next_due).min()
    }

    /// Are pf's pools due a look? Then the next is `POOL_EVERY` later.
    pub(super) fn pools_due(&mut self, now: i64) -> bool {
        if self.pools.full.is_empty() && now < self.pools.next {
            return false;
        }
        self.pools.next = now + POOL_EVERY;
        true
    }
}
