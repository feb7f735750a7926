//! What the daemon knew when it stopped, and what changed while no
//! daemon ran: the machine's snapshot (kept in the state file by
//! `daemon::state`) and, at the next start, the lines that compare it with
//! what the kernel holds, each ending "while the daemon was down".
#![forbid(unsafe_code)]

use std::collections::HashMap;

use super::{Action, Ctx, Machine, auth_service};
use crate::config::Role;
use crate::daemon::lines::Level;
use crate::name::{Net, Secs};
use crate::policy;
use crate::tables::TableRef;

/// One authorization: its table as the log names it, its address, and
/// since when it counts (time stamp, or last renewal; seconds).
pub type Known = HashMap<(String, Net), i64>;

impl Machine {
    /// Every authorization the machine knows of.
    pub fn snapshot(&self, cx: &Ctx) -> Known {
        let mut k = Known::new();
        if self.events {
            for (i, addr, a) in self.book.iter() {
                if let Some(s) = auth_service(cx.cfg, self.book.name(i)) {
                    let t = TableRef::new(&cx.cfg.anchor, &s.table);
                    k.insert((t.to_string(), Net::host(addr)), a.since.div_euclid(1000));
                }
            }
            return k;
        }
        let auth = self
            .polls
            .watches
            .iter()
            .filter(|w| w.role() == Some(Role::Auth));
        for w in auth {
            for (n, since) in &w.known {
                k.insert((w.named.table.to_string(), *n), *since);
            }
        }
        k
    }

    /// At start (`now` in seconds): what the kernel holds (`cur`) against
    /// what the last daemon kept (`prev`). New and renewed authorizations
    /// and those that left are said; without a record, one line says that
    /// what happened is not known.
    pub fn reconcile(&self, prev: Option<Known>, cur: &Known, now: i64) -> Vec<Action> {
        let Some(prev) = prev else {
            return Self::no_record(cur.len());
        };
        let mut out = Vec::new();
        let mut sorted: Vec<(&(String, Net), &i64)> = cur.iter().collect();
        sorted.sort();
        for ((t, n), since) in sorted {
            let verb = match prev.get(&(t.clone(), *n)) {
                None => "authorized",
                // A new time stamp (pf), or a later start by more than
                // the rounding of a timer read back (nftables).
                Some(p) if *since > p + 2 => "renewed",
                Some(_) => continue,
            };
            out.extend(self.down_line(verb, t, n, Some(*since), now));
        }
        let mut gone: Vec<(&(String, Net), &i64)> =
            prev.iter().filter(|(k, _)| !cur.contains_key(*k)).collect();
        gone.sort();
        for ((t, n), since) in gone {
            // Only a firewall that times entries out itself (nftables)
            // expires anything while no daemon runs; on pf an entry that
            // left was removed.
            let ttl = self.watch_of(t).and_then(|w| w.named.ttl);
            let expired =
                self.polls.refreshes && ttl.is_some_and(|ttl| since + ttl.0 as i64 <= now);
            let verb = if expired { "expired" } else { "removed" };
            out.extend(self.down_line(verb, t, n, None, now));
        }
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

    fn watch_of(&self, table: &str) -> Option<&super::watch::Watch> {
        self.polls
            .watches
            .iter()
            .find(|w| w.named.table.to_string() == table)
    }

    fn down_line(
        &self,
        verb: &str,
        table: &str,
        n: &Net,
        since: Option<i64>,
        now: i64,
    ) -> Option<Action> {
        let w = self.watch_of(table)?;
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
