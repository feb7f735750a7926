//! After a reload on nftables: the knocks that the reload itself lost.
//!
//! A reload that changes a set's definition (its ttl, its size) makes the
//! set anew in one transaction, with the elements `nft::Nft::load` read
//! just before. A knock that lands between that reading and the commit
//! goes into the old set, which the commit deletes: the kernel logged it
//! (nfnetlink_log) and the daemon reads that log line only after the
//! reload, when the element is gone. For a few seconds after a reload,
//! such a knock is put back (a new authorization with its ttl; a renewal
//! with the time it was renewed to), unless someone removed that address
//! or flushed that set since the reload: nothing removed comes back.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::net::IpAddr;

use super::events::ms;
use super::{Daemon, Level, Loader, Log};
use crate::config::Service;
use crate::name::Net;
use crate::tables::Tables;

/// How long after a reload its lost knocks may still arrive (ms): the
/// kernel queues their log lines before the commit returns, so they are
/// the first the daemon reads after it; this is ample.
const WINDOW: i64 = 3000;

/// A reload whose lost knocks may still arrive.
pub(super) struct Reload {
    /// Until when (ms).
    pub(super) until: i64,
    /// (set, address) removed since the reload, by a command or by others.
    pub(super) removed: HashSet<(String, IpAddr)>,
    /// Sets flushed since the reload.
    pub(super) flushed: HashSet<String>,
    /// The window has not yet been timed from the reload's end.
    fresh: bool,
}

impl<T: Tables, L: Loader, G: Log> Daemon<T, L, G> {
    /// A reload has just been committed (`now` in seconds, when it began).
    pub(super) fn settle_start(&mut self, now: i64) {
        if let Some(e) = self.events.as_mut() {
            e.reload = Some(Reload {
                until: ms(now) + WINDOW,
                removed: HashSet::new(),
                flushed: HashSet::new(),
                fresh: true,
            });
        }
    }

    /// The reload that just ran (a SIGHUP, a `load` through the control
    /// socket) ended at `now` (ms): its lost knocks are read from then
    /// on, however long the reload itself took.
    pub fn settle_from(&mut self, now: i64) {
        if let Some(r) = self.events.as_mut().and_then(|e| e.reload.as_mut())
            && r.fresh
        {
            r.until = r.until.max(now + WINDOW);
            r.fresh = false;
        }
    }

    /// May a knock on `set` from `addr`, read at `now` (ms), be one the
    /// last reload lost?
    fn settling(&mut self, set: &str, addr: IpAddr, now: i64) -> bool {
        let Some(e) = self.events.as_mut() else {
            return false;
        };
        match &e.reload {
            Some(r) if now < r.until => {
                !r.flushed.contains(set) && !r.removed.contains(&(set.to_owned(), addr))
            }
            Some(_) => {
                e.reload = None;
                false
            }
            None => false,
        }
    }

    /// A new authorization whose element is gone: if the last reload lost
    /// it, put it back with the service's ttl; true when it did.
    pub(super) fn settle_lost(&mut self, s: &Service, set: &str, addr: IpAddr, now: i64) -> bool {
        if !self.settling(set, addr, now) {
            return false;
        }
        let Some(w) = self.auth_watch(s) else {
            return false;
        };
        let table = self.watches[w].named.table.clone();
        match self.tables.add_timed(&table, &[(Net::host(addr), s.ttl.0)]) {
            Ok(_) => true,
            Err(e) => {
                let msg = format!("{table}: putting back {addr}, lost in the reload: {e}");
                self.log.log(Level::Err, &msg);
                false
            }
        }
    }

    /// A renewal: if the last reload carried the element over with the
    /// time it had before this knock renewed it, give it the ttl again
    /// (delete and add: the kernel keeps a present element's timer).
    pub(super) fn settle_renewal(&mut self, s: &Service, set: &str, addr: IpAddr, now: i64) {
        if !self.settling(set, addr, now) {
            return;
        }
        let left = self.events.as_mut().map(|e| e.lookup.left(set, addr));
        let short = match left {
            Some(Ok(Some(Some(left_ms)))) => (left_ms as i64) < ms(s.ttl.0 as i64) - 2000,
            _ => false,
        };
        let Some(w) = self.auth_watch(s).filter(|_| short) else {
            return;
        };
        let table = self.watches[w].named.table.clone();
        let host = Net::host(addr);
        let r = self
            .tables
            .delete(&table, std::slice::from_ref(&host))
            .and_then(|_| self.tables.add_timed(&table, &[(host, s.ttl.0)]));
        if let Err(e) = r {
            let msg = format!("{table}: renewing {addr}, carried over by the reload: {e}");
            self.log.log(Level::Err, &msg);
        }
    }
}
