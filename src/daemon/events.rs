//! The daemon on a firewall that tells it what happens (nftables, see
//! `crate::netlink`): no polls. Authorizations and renewals arrive as
//! events, expiry is the daemon's own deadline checked with one lookup per
//! due element, and changes by others arrive as notifications, each
//! logged once with who made it. Nothing here lists a table on a timer.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::{Daemon, Level, Loader, Log};
use crate::catalogue::Kind;
use crate::config::{Role, Service};
pub use crate::kevents::{ElementLookup, KernelEvent};
use crate::name::Af;
use crate::name::{Net, Secs};
use crate::names::nft_set_of;
use crate::tables::{TableRef, Tables};

pub(super) use super::book::Auth;

/// How long after an authorization's deadline the daemon looks (ms): the
/// kernel's expiries of one transaction fall within it, and an `expired`
/// line still follows the kernel's by less than 50 ms.
pub(super) const COALESCE: i64 = 20;

/// Seconds to milliseconds.
pub(super) const fn ms(secs: i64) -> i64 {
    secs.saturating_mul(1000)
}

pub(super) struct Events {
    pub(super) lookup: Box<dyn ElementLookup + Send>,
    /// Every authorization: since when, until when (ms), by set and
    /// address, and the deadlines in order.
    pub(super) book: super::book::Book,
    /// Notifications of the transaction in progress, until its commit.
    pub(super) batch: Vec<KernelEvent>,
    /// Forged datagrams not yet logged, per socket, and when its last line
    /// was (ms).
    pub(super) forged: BTreeMap<&'static str, (u64, i64)>,
    /// Meters logged as full, and when to look again whether they have
    /// room (ms): the kernel tells when a full meter drops a knock, not
    /// when it has room again.
    pub(super) meters: BTreeMap<String, i64>,
    /// The last reload, while its knocks may still arrive
    /// (`daemon::settle`).
    pub(super) reload: Option<super::settle::Reload>,
}

/// What a restore puts back: per table the entries and the whole seconds
/// each had left; per set the address, since and until (ms) to track
/// again; how many were gone.
struct Lost {
    readd: HashMap<TableRef, Vec<(Net, u64)>>,
    retrack: Vec<(String, IpAddr, i64, i64)>,
    gone: usize,
}

/// Whole seconds left until `until` (ms), rounded down: what a restore
/// gives back.
fn left_secs(until: i64, now: i64) -> u64 {
    (until - now).max(0) as u64 / 1000
}

/// The age of an authorization made at `since` (ms), as logged.
fn age(now: i64, since: i64) -> Secs {
    Secs(crate::policy::age(
        now.div_euclid(1000),
        since.div_euclid(1000),
    ))
}

fn af(a: IpAddr) -> Af {
    if a.is_ipv6() { Af::V6 } else { Af::V4 }
}

impl<T: Tables, L: Loader, G: Log> Daemon<T, L, G> {
    /// From now on, learn from the kernel instead of polling. Reads each
    /// authorized set once, to know what is there already.
    /// `now` in milliseconds, as every time of this mode.
    pub fn use_events(&mut self, lookup: Box<dyn ElementLookup + Send>, now: i64) {
        self.events = Some(Events {
            lookup,
            book: super::book::Book::default(),
            batch: Vec::new(),
            forged: BTreeMap::new(),
            meters: BTreeMap::new(),
            reload: None,
        });
        self.resync(now);
    }

    /// Does the daemon poll (pf), or wait for events (nftables)?
    pub fn polls(&self) -> bool {
        self.events.is_none()
    }

    /// The service whose authorized set this is.
    pub(super) fn auth_service(&self, set: &str) -> Option<&Service> {
        self.cfg.services.iter().find(|s| {
            [Af::V4, Af::V6]
                .iter()
                .any(|a| nft_set_of(s.table.as_str(), *a) == set)
        })
    }

    pub(super) fn auth_watch(&self, s: &Service) -> Option<usize> {
        self.watches.iter().position(|w| {
            w.named.service.as_deref() == Some(&s.name)
                && matches!(w.named.kind, Kind::Service(Role::Auth))
        })
    }

    /// One log line about an authorization of service `s`.
    fn event_line(&self, verb: &str, s: &Service, addr: IpAddr, extra: &str) -> Option<String> {
        let w = &self.watches[self.auth_watch(s)?];
        Some(self.line(verb, &Net::host(addr), w, extra))
    }

    pub(super) fn track(&mut self, set: &str, addr: IpAddr, since: i64, until: i64) {
        let Some(e) = self.events.as_mut() else {
            return;
        };
        let i = e.book.id(set);
        e.book.insert(i, addr, Auth { since, until });
        self.note_fill(set);
    }

    /// Forget every authorization of a set (a flush).
    pub(super) fn forget_set(&mut self, set: &str) {
        let Some(e) = self.events.as_mut() else {
            return;
        };
        if let Some(r) = e.reload.as_mut() {
            r.flushed.insert(set.to_owned());
        }
        if let Some(i) = e.book.find(set) {
            e.book.clear_set(i);
        }
        self.note_fill(set);
    }

    pub(super) fn forget(&mut self, set: &str, addr: IpAddr) -> Option<Auth> {
        let e = self.events.as_mut()?;
        if let Some(r) = e.reload.as_mut() {
            r.removed.insert((set.to_owned(), addr));
        }
        let i = e.book.find(set)?;
        let a = e.book.remove(i, addr)?;
        self.note_fill(set);
        Some(a)
    }

    fn tracked(&self, set: &str, addr: IpAddr) -> Option<Auth> {
        let e = self.events.as_ref()?;
        e.book.get(e.book.find(set)?, addr)
    }

    /// Read every authorized set and take what is there as known, without
    /// a line for each (at start, and after lost notifications).
    pub(super) fn resync(&mut self, now: i64) {
        let mut found = Vec::new();
        for s in &self.cfg.services {
            if self.auth_watch(s).is_none() {
                continue;
            }
            for a in [Af::V4, Af::V6] {
                found.push((nft_set_of(s.table.as_str(), a), ms(s.ttl.0 as i64)));
            }
        }
        if let Some(e) = self.events.as_mut() {
            e.book.clear();
        }
        for (set, ttl) in found {
            let Some(got) = self.events.as_mut().map(|e| e.lookup.dump(&set)) else {
                return;
            };
            match got {
                Ok(elems) => {
                    for (addr, left) in elems {
                        let left = left.map_or(ttl, |ms| ms as i64);
                        self.track(&set, addr, now - (ttl - left).max(0), now + left);
                    }
                }
                // A family the service does not have.
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
                Err(err) => self.log.log(Level::Err, &format!("set {set}: {err}")),
            }
        }
    }

    /// An event from the kernel, `now` in milliseconds.
    pub fn kernel(&mut self, ev: KernelEvent, now: i64) {
        if self.events.is_none() {
            return;
        }
        match ev {
            KernelEvent::Knock { prefix, addr } => {
                if let Some(meter) = crate::names::meter_of_prefix(&prefix) {
                    self.meter_full(meter, now)
                } else if let Some(service) = crate::names::close_of_prefix(&prefix) {
                    self.closed(service, addr, now)
                } else {
                    self.knocked(&prefix, addr, now)
                }
            }
            KernelEvent::Elements { .. } | KernelEvent::Changed { .. } => {
                if let Some(e) = self.events.as_mut() {
                    e.batch.push(ev);
                }
            }
            KernelEvent::Commit { pid, process } => {
                let batch = self
                    .events
                    .as_mut()
                    .map(|e| std::mem::take(&mut e.batch))
                    .unwrap_or_default();
                if !crate::tool::ours(pid) {
                    // A pfknock command (allow, revoke, flush, expire)
                    // logs what it did itself: follow, without a line.
                    let quiet = process == "pfknock";
                    self.committed(batch, &format!("{process}[{pid}]"), quiet, now);
                }
            }
            KernelEvent::Overrun => {
                self.log.log(
                    Level::Warning,
                    "the kernel dropped notifications: reading the sets again",
                );
                self.resync(now);
            }
            KernelEvent::Forged(on) => self.forged(on, now),
            KernelEvent::Lost(why) => {
                self.log.log(
                    Level::Err,
                    &format!(
                        "kernel events lost ({why}): polling every {} from now on",
                        self.cfg.poll
                    ),
                );
                self.events = None;
                self.full.clear();
                for w in &mut self.watches {
                    w.force = true;
                }
            }
        }
    }

    /// A close knock: the rule took `addr` out of the authorized set (if
    /// it was there) and said so. One line when it was authorized; a knock
    /// from a host that was not changes nothing and says it at debug.
    fn closed(&mut self, service: &str, addr: IpAddr, now: i64) {
        let Some(s) = self.cfg.service(service).cloned() else {
            return;
        };
        let set = nft_set_of(s.table.as_str(), af(addr));
        match self.forget(&set, addr) {
            Some(a) => {
                let extra = format!("age={} ttl={} by knock", age(now, a.since), Secs(s.ttl.0));
                if let Some(l) = self.event_line("closed", &s, addr, &extra) {
                    self.log.log(Level::Info, &l);
                }
            }
            None => self.log.log(
                Level::Debug,
                &format!("close knock from {addr} for service {service}: it was not authorized"),
            ),
        }
    }

    fn knocked(&mut self, prefix: &str, addr: IpAddr, now: i64) {
        let Some(s) = self
            .cfg
            .services
            .iter()
            .find(|s| prefix == crate::names::knock_prefix(&s.name))
            .cloned()
        else {
            return;
        };
        let set = nft_set_of(s.table.as_str(), af(addr));
        let ttl = Secs(s.ttl.0);
        let until = now + ms(s.ttl.0 as i64);
        match self.tracked(&set, addr) {
            Some(a) if s.renew => {
                // One knock is several packets past the meter's limit,
                // each logged by the kernel: one line for them all (those
                // within 2 s of the authorization or the last renewal, as
                // one knock's connects are), the deadline moved for each.
                self.settle_renewal(&s, &set, addr, now);
                if now - a.since >= ms(i64::from(s.rate.secs.clamp(1, 2))) {
                    let extra = format!("age={} ttl={ttl}", age(now, a.since));
                    if let Some(l) = self.event_line("renewed", &s, addr, &extra) {
                        self.log.log(Level::Info, &l);
                    }
                    self.track(&set, addr, now, until);
                } else {
                    self.track(&set, addr, a.since, until);
                }
            }
            // `add` keeps the element as it was: a knock while authorized
            // changes nothing when renewal is off.
            Some(_) => {}
            None => {
                // nftables logs a knock only once its `add` succeeded; an
                // element that is gone already was removed in between (a
                // revoke or flush that overtook this event): it is not
                // tracked, so nothing can bring it back.
                let gone = matches!(
                    self.events.as_mut().map(|e| e.lookup.left(&set, addr)),
                    Some(Ok(None))
                ) && !self.settle_lost(&s, &set, addr, now);
                let extra = if gone {
                    format!("ttl={ttl} (removed again before the daemon saw it)")
                } else {
                    format!("ttl={ttl}")
                };
                if let Some(l) = self.event_line("authorized", &s, addr, &extra) {
                    self.log.log(Level::Info, &l);
                }
                if !gone {
                    self.track(&set, addr, now, until);
                }
            }
        }
    }

    /// A transaction by someone else: log what it did to authorizations,
    /// and restore the table if it touched the table itself.
    fn committed(&mut self, batch: Vec<KernelEvent>, by: &str, quiet: bool, now: i64) {
        let mut broken: Vec<String> = Vec::new();
        for ev in batch {
            match ev {
                KernelEvent::Elements { set, added, addrs } => {
                    let Some(s) = self.auth_service(&set).cloned() else {
                        continue;
                    };
                    for (addr, left) in addrs {
                        if added {
                            if self.tracked(&set, addr).is_some() {
                                continue;
                            }
                            let left = left.map_or(ms(s.ttl.0 as i64), |ms| ms as i64);
                            let extra = format!("ttl={} by {by}", Secs(s.ttl.0));
                            if let Some(l) = self.event_line("authorized", &s, addr, &extra)
                                && !quiet
                            {
                                self.log.log(Level::Info, &l);
                            }
                            self.track(&set, addr, now, now + left);
                        } else if let Some(a) = self.forget(&set, addr) {
                            let extra =
                                format!("age={} ttl={} by {by}", age(now, a.since), Secs(s.ttl.0));
                            if let Some(l) = self.event_line("removed", &s, addr, &extra)
                                && !quiet
                            {
                                self.log.log(Level::Info, &l);
                            }
                        }
                    }
                }
                KernelEvent::Changed { what, name } => broken.push(format!("{what} {name}")),
                _ => {}
            }
        }
        if !broken.is_empty() {
            broken.dedup();
            self.restore(&broken, by, now);
        }
    }

    /// Someone changed the table: load it again (only what differs
    /// changes), then put back the authorizations it lost, with the time
    /// they had left.
    fn restore(&mut self, what: &[String], by: &str, now: i64) {
        if self.cfg.services.is_empty() {
            return;
        }
        if self.held {
            self.log.log(
                Level::Notice,
                &format!("table changed by {by} while unloaded: left as it is until pfknock load"),
            );
            return;
        }
        let shown = if what.len() > 3 {
            format!("{} and {} more", what[..3].join(", "), what.len() - 3)
        } else {
            what.join(", ")
        };
        if let Err(e) = self.load_anchor() {
            let msg = format!("table changed by {by} ({shown}) and cannot be restored: {e}");
            self.fail(Level::Err, &msg, now.div_euclid(1000));
            return;
        }
        let Lost {
            readd,
            retrack,
            gone,
        } = self.lost_authorizations(now);
        let mut restored = 0;
        for (t, list) in readd {
            match self.tables.add_timed(&t, &list) {
                Ok(n) => restored += n,
                Err(e) => self
                    .log
                    .log(Level::Err, &format!("{t}: restoring authorizations: {e}")),
            }
        }
        for (set, addr, since, until) in retrack {
            self.track(&set, addr, since, until);
        }
        self.log.log(
            Level::Notice,
            &format!(
                "table restored after a change by {by} ({shown}): restored {restored} authorizations{}",
                if restored < gone {
                    format!(" of {gone}")
                } else {
                    String::new()
                }
            ),
        );
    }

    /// The authorizations the daemon knows that the kernel no longer
    /// holds, each with the whole seconds it had left (at least one): what
    /// to put back per table, what to track again, and how many.
    fn lost_authorizations(&mut self, now: i64) -> Lost {
        let mut readd: HashMap<TableRef, Vec<(Net, u64)>> = HashMap::new();
        let known: Vec<((String, IpAddr), Auth)> = self
            .events
            .as_ref()
            .map(|e| {
                e.book
                    .iter()
                    .map(|(i, a, v)| ((e.book.name(i).to_owned(), a), v))
                    .collect()
            })
            .unwrap_or_default();
        let mut lookups = Vec::new();
        for ((set, addr), a) in known {
            // Less than a second left: not put back (a restore never
            // gives more time than was left); its deadline logs it.
            if left_secs(a.until, now) == 0 {
                continue;
            }
            lookups.push((set, addr, a));
        }
        let mut gone = 0usize;
        let mut retrack = Vec::new();
        for (set, addr, a) in lookups {
            let present = match self.events.as_mut().map(|e| e.lookup.left(&set, addr)) {
                Some(Ok(p)) => p.is_some(),
                _ => false,
            };
            if present {
                continue;
            }
            let Some(s) = self.auth_service(&set).cloned() else {
                continue;
            };
            let Some(w) = self.auth_watch(&s) else {
                continue;
            };
            gone += 1;
            let left = left_secs(a.until, now);
            readd
                .entry(self.watches[w].named.table.clone())
                .or_default()
                .push((Net::host(addr), left));
            // Due when the kernel times the put-back element out.
            retrack.push((set, addr, a.since, now + ms(left as i64)));
        }
        Lost {
            readd,
            retrack,
            gone,
        }
    }

    /// Deadlines: look up each due element once. Gone: expired (one line,
    /// or one line for the lot past `log_burst`). Still there: its time
    /// was refreshed (traffic, `expire = "idle"`), so wait for it again.
    pub(super) fn events_tick(&mut self, now: i64) {
        self.meters_tick(now);
        let Some(e) = self.events.as_mut() else {
            return;
        };
        let due: Vec<(String, IpAddr, Auth)> = e
            .book
            .take_due(now)
            .into_iter()
            .map(|(i, addr, a)| (e.book.name(i).to_owned(), addr, a))
            .collect();
        let mut expired: HashMap<String, Vec<String>> = HashMap::new();
        for (set, addr, a) in due {
            let left = match self.events.as_mut().map(|e| e.lookup.left(&set, addr)) {
                Some(Ok(l)) => l,
                Some(Err(err)) => {
                    let msg = format!("looking up {addr} in set {set}: {err}");
                    self.fail(Level::Err, &msg, now.div_euclid(1000));
                    // Look again at the next poll.
                    self.track(&set, addr, a.since, now + ms(self.cfg.poll.0 as i64));
                    continue;
                }
                None => return,
            };
            let Some(s) = self.auth_service(&set).cloned() else {
                self.forget(&set, addr);
                continue;
            };
            match left {
                // Still there (refreshed by traffic, or the daemon's
                // estimate was early): due when the kernel says.
                Some(Some(left)) => {
                    self.track(&set, addr, a.since, now + (left as i64).max(1));
                }
                // No timeout: not pfknock's to expire.
                Some(None) => {
                    self.forget(&set, addr);
                }
                None => {
                    self.forget(&set, addr);
                    // Idle expiry: the kernel timed the element out after
                    // ttl without traffic, so the idle time is the ttl;
                    // the age is since it was authorized (or renewed).
                    let age = age(now, a.since);
                    let extra = if s.expire == crate::name::ExpireMode::Idle {
                        format!("idle={} age={age} ttl={}", Secs(s.ttl.0), Secs(s.ttl.0))
                    } else {
                        format!("age={age} ttl={}", Secs(s.ttl.0))
                    };
                    if let Some(l) = self.event_line("expired", &s, addr, &extra) {
                        expired.entry(s.name.clone()).or_default().push(l);
                    }
                }
            }
        }
        self.log_expired(expired);
    }

    /// The expired lines of one tick: each, or per service past
    /// `log_burst` one line with their number (each at debug).
    fn log_expired(&mut self, expired: HashMap<String, Vec<String>>) {
        let burst = self.cfg.log_burst as usize;
        for (svc, lines) in expired {
            if lines.len() > burst {
                self.log.log(
                    Level::Info,
                    &format!(
                        "expired {} authorizations of service {svc} at once",
                        lines.len()
                    ),
                );
                for l in lines {
                    self.log.log(Level::Debug, &l);
                }
            } else {
                for l in lines {
                    self.log.log(Level::Info, &l);
                }
            }
        }
    }

    /// After a reload: an authorization of a service whose ttl changed is
    /// due at its start plus the new ttl (the load carried the kernel's
    /// elements over the same way), so a shorter ttl expires, and logs,
    /// what is now past it at the next tick.
    pub(super) fn retime(&mut self, old: &crate::config::Config) {
        let changed: Vec<(String, i64)> = self
            .cfg
            .services
            .iter()
            .filter(|s| old.service(&s.name).is_some_and(|o| o.ttl != s.ttl))
            .flat_map(|s| {
                [Af::V4, Af::V6].map(|a| (nft_set_of(s.table.as_str(), a), s.ttl.0 as i64))
            })
            .collect();
        let Some(e) = self.events.as_mut() else {
            return;
        };
        for (set, ttl) in changed {
            if let Some(i) = e.book.find(&set) {
                e.book.retime(i, ms(ttl));
            }
        }
    }

    /// The next deadline of the events mode (ms): `COALESCE` after the
    /// first authorization due, so that those a transaction added together
    /// (their deadlines a few ms apart) are looked up in one tick and
    /// logged as one burst.
    pub(super) fn events_due(&self) -> Option<i64> {
        let e = self.events.as_ref()?;
        let meters = e.meters.values().min().copied();
        e.book
            .next_due()
            .map(|t| t + COALESCE)
            .into_iter()
            .chain(meters)
            .min()
    }

    /// How many authorizations the events mode knows of a table, and
    /// when the first is due (seconds, rounded up).
    pub(super) fn events_count(&self, table: &str) -> (usize, Option<i64>) {
        self.events.as_ref().map_or((0, None), |e| {
            let ids: Vec<u16> = [Af::V4, Af::V6]
                .iter()
                .filter_map(|a| e.book.find(&nft_set_of(table, *a)))
                .collect();
            let first = ids
                .iter()
                .flat_map(|i| e.book.iter_set(*i))
                .map(|(_, a)| a.until)
                .min();
            (
                ids.iter().map(|i| e.book.count(*i)).sum(),
                first.map(|t| (t + 999).div_euclid(1000)),
            )
        })
    }
}
