//! The machine's deadlines and the conditions it logs once: expiry (one
//! look-up per due element), reading the sets again, full sets and
//! meters, forged datagrams, and the knocks a reload lost.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use super::{
    Action, Auth, COALESCE, Ctx, Elements, Left, Machine, Query, ReadError, Step, Then, Write, age,
    auth_service, auth_table, event_line, info, ms,
};
use crate::config::{Config, Service};
use crate::daemon::lines::Level;
use crate::name::{Af, ExpireMode, Net, Secs};
use crate::names::{self, nft_set_of};
use crate::tables::{Entry, TableRef};

/// How long after a reload its lost knocks may still arrive (ms): the
/// kernel queues their log lines before the commit returns, so they are
/// the first the daemon reads after it; this is ample.
const WINDOW: i64 = 3000;

/// After a reload on nftables: the knocks that the reload itself lost.
///
/// A reload that changes a set's definition in a way the kernel cannot
/// change in place (anything but its ttl and size, or those on a kernel
/// older than Linux 6.5) makes the set anew in one transaction, with the
/// elements `nft::Nft::load` read just before. A knock that lands between that reading and the commit
/// goes into the old set, which the commit deletes: the kernel logged it
/// (nfnetlink_log) and the daemon reads that log line only after the
/// reload, when the element is gone. For a few seconds after a reload,
/// such a knock is put back (a new authorization with its ttl; a renewal
/// with the time it was renewed to), unless someone removed that address
/// or flushed that set since the reload: nothing removed comes back.
pub(super) struct Reload {
    /// Until when (ms).
    until: i64,
    /// (set, address) removed since the reload, by a command or by others.
    pub(super) removed: HashSet<(String, IpAddr)>,
    /// Sets flushed since the reload.
    pub(super) flushed: HashSet<String>,
    /// The window has not yet been timed from the reload's end.
    fresh: bool,
}

/// The service whose meter set this is, and the meter's window (ms).
pub(in crate::daemon) fn meter_service<'c>(
    cfg: &'c Config,
    set: &str,
) -> Option<(&'c Service, i64)> {
    cfg.services.iter().find_map(|s| {
        let mine = names::objects(s).into_iter().any(|o| {
            matches!(o, names::Object::Meter(_) | names::Object::Close)
                && [Af::V4, Af::V6]
                    .iter()
                    .any(|a| names::nft_set(s, o, *a).as_deref() == Some(set))
        });
        mine.then(|| (s, ms(i64::from(s.rate.secs.max(1)))))
    })
}

fn full_line(set: &str, size: u64) -> String {
    format!(
        "set {set} is full ({size} elements): knocks it would take are not \
         counted until entries expire; raise the service's size"
    )
}

/// The line of an authorization that expired at `now`. With idle expiry
/// the kernel timed the element out after ttl without traffic, so the
/// idle time is the ttl; the age is since it was authorized (or renewed).
/// The ttl is the one it was given: the service's, or a shorter one it
/// had from before a reload that made the ttl longer (its deadline less
/// its start, when that is short of the service's by more than the
/// second a restore's whole seconds can lose).
pub(super) fn expired_line(cx: &Ctx, s: &Service, addr: IpAddr, a: Auth, now: i64) -> String {
    let age = age(now, a.since);
    let given = ((a.until - a.since + 500) / 1000).max(1) as u64;
    let ttl = if s.expire == ExpireMode::Idle || given + 2 >= s.ttl.0 {
        Secs(s.ttl.0)
    } else {
        Secs(given)
    };
    let extra = if s.expire == ExpireMode::Idle {
        format!("idle={ttl} age={age} ttl={ttl}")
    } else {
        format!("age={age} ttl={ttl}")
    };
    event_line(cx.cfg, "expired", s, addr, &extra)
}

/// Each line, or per service past `log_burst` one line with their number
/// (each at debug).
pub(super) fn say_expired(cx: &Ctx, expired: BTreeMap<String, Vec<String>>, out: &mut Vec<Action>) {
    let burst = cx.cfg.log_burst as usize;
    for (svc, lines) in expired {
        if lines.len() > burst {
            let n = lines.len();
            info(
                out,
                format!("expired {n} authorizations of service {svc} at once"),
            );
            out.extend(lines.into_iter().map(|l| Action::Log(Level::Debug, l)));
        } else {
            out.extend(lines.into_iter().map(|l| Action::Log(Level::Info, l)));
        }
    }
}

/// Due elements looked up in one tick at most; the rest are due at the
/// next, at once. A million timed out while the daemon read the sets at
/// its start: in one tick, their look-ups and lines made the daemon's
/// high-water mark 346 MB, and the loop looked at no signal until the
/// last was said. Ticks of 65,536 still held 30 MB of lines and actions
/// at once, most of a start's high-water mark at 300,000 (heaptrack);
/// 8,192 hold 4.
const DUE_AT_ONCE: usize = 1 << 13;

/// A full set's look while its kernel's count is being asked (in
/// `Machine::looks`): due at no time.
pub(super) const ASKED: i64 = i64::MAX;

/// How long after the kernel still counted a set full its count is asked
/// again (ms). The kernel frees timed-out elements once a second (its
/// collection; nft's default `gc-interval`, which pfknock keeps), and
/// counts them against the set's size until then (docs/nft-kernel.md).
const ROOM_LOOK: i64 = 250;

impl Machine {
    /// Deadlines: look up each due element once (and each full meter due
    /// a look, and ask the kernel's count of each full set due one).
    /// Gone: expired (one line, or one line for the lot past
    /// `log_burst`). Still there: its time was refreshed (traffic,
    /// `expire = "idle"`), so wait for it again.
    pub fn tick(&mut self, cx: &Ctx, now: i64) -> Vec<Action> {
        let mut out = self.say_all(cx, now);
        out.extend(self.ask_meters(cx, now));
        let sets: Vec<String> = (self.looks.iter())
            .filter(|(m, t)| **t <= now && auth_service(cx.cfg, m).is_some())
            .map(|(m, _)| m.clone())
            .collect();
        if !sets.is_empty() {
            out.push(self.ask_counts(sets));
        }
        out.extend(self.ask_due(now));
        out
    }

    /// The look at the full meters due at `now`: a dump of each.
    pub(super) fn ask_meters(&self, cx: &Ctx, now: i64) -> Option<Action> {
        let meters: Vec<String> = (self.looks.iter())
            .filter(|(m, t)| **t <= now && auth_service(cx.cfg, m).is_none())
            .map(|(m, _)| m.clone())
            .collect();
        let q = Query::Dump(meters.clone());
        (!meters.is_empty()).then(|| Action::Ask(q, Then::of(Step::Meters(meters))))
    }

    /// The look-up of the authorizations due at `now`, at most
    /// `DUE_AT_ONCE`.
    pub(super) fn ask_due(&mut self, now: i64) -> Option<Action> {
        let due: Vec<(String, IpAddr, Auth)> = self
            .book
            .take_due_at_most(now, DUE_AT_ONCE)
            .into_iter()
            .map(|(i, addr, a)| (self.book.name(i).to_owned(), addr, a))
            .collect();
        let q = Query::Left(due.iter().map(|(s, a, _)| (s.clone(), *a)).collect());
        (!due.is_empty()).then(|| Action::Ask(q, Then::of(Step::Due(due))))
    }

    pub(super) fn expire(
        &mut self,
        cx: &Ctx,
        due: Vec<(String, IpAddr, Auth)>,
        left: Vec<Result<Left, String>>,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let mut expired: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut cut = Vec::new();
        for ((set, addr, a), left) in due.into_iter().zip(left) {
            let left = match left {
                Ok(l) => l,
                Err(err) => {
                    // During a reading, a set deleted meanwhile is
                    // restored after it, by the event that said so.
                    let msg = format!("looking up {addr} in set {set}: {err}");
                    if !self.knocks.reading {
                        out.push(Action::Fail(Level::Err, msg));
                    }
                    // Look again at the next poll.
                    let until = now + cx.cfg.poll.0 as i64;
                    self.keep(cx, (&set, addr), a.since, until, out);
                    continue;
                }
            };
            let Some(s) = auth_service(cx.cfg, &set) else {
                self.forget(cx, &set, addr, out);
                continue;
            };
            match left {
                // Past a ttl that a reload shortened, its element keeping
                // the longer time it was given: delete it.
                Some(Some(left)) if self.is_cut(&set, &a, s, left) => cut.push((set, addr, a)),
                // Still there (refreshed by traffic, or the daemon's
                // estimate was early): due when the kernel says.
                Some(Some(left)) => {
                    let until = now + (left as i64).max(1);
                    self.keep(cx, (&set, addr), a.since, until, out);
                }
                // No timeout: not pfknock's to expire.
                Some(None) => {
                    self.forget(cx, &set, addr, out);
                }
                None => {
                    self.forget(cx, &set, addr, out);
                    if self.knocks.reading {
                        self.knocks.gone((set.clone(), addr));
                    }
                    let l = expired_line(cx, s, addr, a, now);
                    expired.entry(s.name.clone()).or_default().push(l);
                }
            }
        }
        say_expired(cx, expired, out);
        let mut tables: BTreeMap<String, Vec<(String, IpAddr, Auth)>> = BTreeMap::new();
        for (set, addr, a) in cut {
            if let Some(s) = auth_service(cx.cfg, &set) {
                tables
                    .entry(s.name.clone())
                    .or_default()
                    .push((set, addr, a));
            }
        }
        for (service, items) in tables {
            let Some(s) = cx.cfg.service(&service) else {
                continue;
            };
            let hosts = items.iter().map(|(_, addr, _)| Net::host(*addr)).collect();
            let q = Query::Writes(vec![Write::Delete(auth_table(cx.cfg, s), hosts)]);
            out.push(Action::Ask(q, Then::of(Step::Cut(items))));
        }
    }

    /// Is this authorization, its element still there at its deadline,
    /// one whose ttl a reload shortened after it was given? With `expire
    /// = "idle"` traffic may have refreshed it under the new ttl since:
    /// only one with more time left than that ttl is.
    fn is_cut(&self, set: &str, a: &Auth, s: &Service, left: u64) -> bool {
        self.cuts.get(set).is_some_and(|r| a.since < *r)
            && (s.expire != ExpireMode::Idle || left as i64 > ms(s.ttl.0 as i64))
    }

    /// The authorizations cut to a shorter ttl were deleted: each has
    /// expired. If the delete failed, say so and look again at the next
    /// poll.
    pub(super) fn was_cut(
        &mut self,
        cx: &Ctx,
        items: Vec<(String, IpAddr, Auth)>,
        done: Result<usize, String>,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        if let Err(e) = done {
            let n = items.len();
            let msg = format!("deleting {n} authorization(s) past a shortened ttl: {e}");
            out.push(Action::Fail(Level::Err, msg));
            let until = now + cx.cfg.poll.0 as i64;
            for (set, addr, a) in items {
                out.extend(self.track(cx, &set, addr, a.since, until));
            }
            return;
        }
        let mut expired: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (set, addr, a) in items {
            self.forget(cx, &set, addr, out);
            if let Some(s) = auth_service(cx.cfg, &set) {
                let l = expired_line(cx, s, addr, a, now);
                expired.entry(s.name.clone()).or_default().push(l);
            }
        }
        say_expired(cx, expired, out);
    }

    /// Log once when an authorized set reaches its size (knocks it would
    /// take are not counted), and once when it has room again; the same
    /// lines as the poll's, from the machine's count.
    pub(super) fn note_fill(&mut self, cx: &Ctx, set: &str) -> Vec<Action> {
        let Some(size) = auth_service(cx.cfg, set).map(|s| s.size) else {
            return Vec::new();
        };
        let Some(i) = self.book.find(set) else {
            return Vec::new();
        };
        let n = self.book.count(i) as u64;
        if n >= size && self.full.insert(set.to_owned()) {
            vec![Action::Log(Level::Warning, full_line(set, size))]
        } else if n < size && self.full.contains(set) && !self.looks.contains_key(set) {
            // Room when the kernel counts it too (`counted`).
            vec![self.ask_counts(vec![set.to_owned()])]
        } else {
            Vec::new()
        }
    }

    /// Ask the kernel's count of full sets the book says have room.
    fn ask_counts(&mut self, sets: Vec<String>) -> Action {
        for s in &sets {
            self.looks.insert(s.clone(), ASKED);
        }
        Action::Ask(Query::Counts(sets.clone()), Then::of(Step::Room(sets)))
    }

    /// The kernel's counts of full sets the book says have room: one it
    /// counts below its size (or does not count) has room again, said
    /// once; one it still counts full (timed-out elements not yet freed,
    /// which it counts against the size) is asked again `ROOM_LOOK`
    /// later; one the book says is full again, or that is no longer the
    /// config's, is not asked again.
    pub(super) fn counted(
        &mut self,
        cx: &Ctx,
        sets: Vec<String>,
        counts: Vec<Option<u64>>,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        for (set, kernel) in sets.into_iter().zip(counts) {
            self.looks.remove(&set);
            let Some(size) = auth_service(cx.cfg, &set).map(|s| s.size) else {
                self.full.remove(&set);
                continue;
            };
            let n = self.book.find(&set).map_or(0, |i| self.book.count(i)) as u64;
            if !self.full.contains(&set) || n >= size {
                continue;
            }
            if kernel.is_some_and(|k| k >= size) {
                self.looks.insert(set, now + ROOM_LOOK);
            } else {
                self.full.remove(&set);
                out.push(Action::Log(
                    Level::Notice,
                    format!("set {set} has room again"),
                ));
            }
        }
    }

    /// A knock that a full meter did not count (its own log rule, at most
    /// once a second): logged once, and the meter looked at again each
    /// window until it has room.
    pub(super) fn meter_full(&mut self, cx: &Ctx, set: &str, now: i64, out: &mut Vec<Action>) {
        let Some((s, window)) = meter_service(cx.cfg, set) else {
            return;
        };
        if self.looks.insert(set.to_owned(), now + window).is_none() {
            out.push(Action::Log(Level::Warning, full_line(set, s.meter_size())));
        }
    }

    /// Full meters looked at: one that has room is logged so, the others
    /// are looked at again a window later.
    pub(super) fn meters_looked(
        &mut self,
        cx: &Ctx,
        due: Vec<String>,
        dumps: Vec<Result<Elements, ReadError>>,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        for (m, got) in due.into_iter().zip(dumps) {
            let Some((s, window)) = meter_service(cx.cfg, &m) else {
                self.looks.remove(&m);
                continue;
            };
            let room = match got {
                Ok(elems) => (elems.len() as u64) < s.meter_size(),
                // Gone with the table: nothing full any more.
                Err(_) => true,
            };
            if room {
                self.looks.remove(&m);
                out.push(Action::Log(
                    Level::Notice,
                    format!("set {m} has room again"),
                ));
            } else {
                self.looks.insert(m, now + window);
            }
        }
    }

    /// A datagram the kernel did not send: logged at once, then at most
    /// once every `REPEAT_EVERY` seconds with how many came meanwhile, so
    /// a flood of them cannot flood the log.
    pub(super) fn forged(&mut self, on: &'static str, now: i64, out: &mut Vec<Action>) {
        // Each socket counts and says its own.
        let (count, last) = self.forged.entry(on).or_insert((0, i64::MIN));
        *count += 1;
        if now.saturating_sub(*last) < ms(crate::daemon::lines::REPEAT_EVERY) {
            return;
        }
        let n = std::mem::take(count);
        *last = now;
        out.push(Action::Log(
            Level::Warning,
            format!(
                "{on}: {n} netlink message(s) that the kernel did not send ignored \
                 (forged by a local process with CAP_NET_ADMIN)"
            ),
        ));
    }

    /// A reload has just been committed (`now` in seconds, when it began).
    pub fn reload_began(&mut self, now: i64) {
        self.reload = Some(Reload {
            until: ms(now) + WINDOW,
            removed: HashSet::new(),
            flushed: HashSet::new(),
            fresh: true,
        });
    }

    /// The reload that just ran (a SIGHUP, a `load` through the control
    /// socket) ended at `now` (ms): its lost knocks are read from then
    /// on, however long the reload itself took.
    pub fn reload_ended(&mut self, now: i64) {
        if let Some(r) = self.reload.as_mut()
            && r.fresh
        {
            r.until = r.until.max(now + WINDOW);
            r.fresh = false;
        }
    }

    /// A knock the last reload lost, put back (or not): its line.
    pub(super) fn put_back(
        &mut self,
        cx: &Ctx,
        service: &str,
        addr: IpAddr,
        r: Result<usize, String>,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let Some(s) = cx.cfg.service(service) else {
            return;
        };
        if let Err(e) = &r {
            let table = auth_table(cx.cfg, s);
            let msg = format!("{table}: putting back {addr}, lost in the reload: {e}");
            out.push(Action::Log(Level::Err, msg));
        }
        self.authorized(cx, s, addr, r.is_ok(), now, out);
    }

    /// May a knock on `set` from `addr`, read at `now` (ms), be one the
    /// last reload lost?
    pub(super) fn settling(&mut self, set: &str, addr: IpAddr, now: i64) -> bool {
        match &self.reload {
            Some(r) if now < r.until => {
                !r.flushed.contains(set) && !r.removed.contains(&(set.to_owned(), addr))
            }
            Some(_) => {
                self.reload = None;
                false
            }
            None => false,
        }
    }

    /// A renewal soon after a reload, its element looked up: if the reload
    /// carried it over with the time it had before this knock renewed it,
    /// give it the ttl again.
    pub(super) fn settle(
        &mut self,
        cx: &Ctx,
        service: &str,
        addr: IpAddr,
        left: Option<Result<Left, String>>,
        out: &mut Vec<Action>,
    ) {
        let Some(s) = cx.cfg.service(service) else {
            return;
        };
        let short = match left {
            Some(Ok(Some(Some(left_ms)))) => (left_ms as i64) < ms(s.ttl.0 as i64) - 2000,
            _ => false,
        };
        if short {
            let table = auth_table(cx.cfg, s);
            let what = format!("{table}: renewing {addr}, carried over by the reload");
            let q = Query::Renew(table, Net::host(addr), s.ttl.0);
            out.push(Action::Ask(q, Then::of(Step::Report(what))));
        }
    }

    /// After a reload at `now` (ms): a service whose ttl is now shorter
    /// has each authorization due at its start plus the new ttl where that
    /// is sooner, so what is past it expires, and is logged, at the next
    /// tick; its element, changed in place, keeps the longer time it was
    /// given, so it is deleted then (`is_cut`). A longer ttl leaves every
    /// deadline as it is: the kernel's elements keep theirs, and the new
    /// ttl is what knocks and renewals get from now on.
    pub fn retime(&mut self, old: &Config, new: &Config, now: i64) {
        for s in &new.services {
            if old.service(&s.name).is_none_or(|o| o.ttl.0 <= s.ttl.0) {
                continue;
            }
            for a in [Af::V4, Af::V6] {
                let set = nft_set_of(s.table.as_str(), a);
                if let Some(i) = self.book.find(&set)
                    && self.book.retime(i, ms(s.ttl.0 as i64)) > 0
                {
                    self.cuts.insert(set, now);
                }
            }
        }
    }

    /// After a reload from `old` to `new`: the authorized sets the load
    /// deleted (`deleted_sets`) took their elements with them. What the
    /// book held of each is forgotten, with a line for a set that held
    /// any, so that no look-up of a set that is gone follows at their
    /// deadlines.
    pub fn gone_with_reload(&mut self, old: &Config, new: &Config) -> Vec<Action> {
        let mut out = Vec::new();
        for (set, service) in deleted_sets(old, new) {
            self.full.remove(&set);
            self.looks.remove(&set);
            self.cuts.remove(&set);
            self.knocks.drop_set(&set);
            let Some(i) = self.book.find(&set) else {
                continue;
            };
            let n = self.book.count(i);
            self.book.clear_set(i);
            if n > 0 {
                out.push(Action::Log(
                    Level::Notice,
                    gone_line(&set, &service, Some(n as u64)),
                ));
            }
        }
        out
    }

    /// A reload during a reading of the sets deleted `sets` (the daemon
    /// said so, by the kernel's count): what the book holds of them is
    /// forgotten, and what the reading found of them is not taken in
    /// (`resync.rs`), until the machine takes the reload in.
    pub fn deleted_while_read(&mut self, cx: &Ctx, sets: &[String]) -> Vec<Action> {
        let mut out = Vec::new();
        for set in sets {
            out.extend(self.forget_set(cx, set));
            self.knocks.drop_set(set);
            self.dropped.insert(set.clone());
        }
        out
    }

    /// Does a reload that makes `sets` make again one that an earlier
    /// reload deleted during this reading? What the reading found of it
    /// is then not what it holds: it stays out of this reading.
    pub fn made_again(&self, sets: &HashSet<String>) -> bool {
        self.dropped.iter().any(|s| sets.contains(s))
    }

    /// The next deadline (ms): `COALESCE` after the first authorization
    /// due, so that those a transaction added together (their deadlines a
    /// few ms apart) are looked up in one tick and logged as one burst; or
    /// the next look at a full meter or at a full set's kernel count.
    pub fn next_due(&self) -> Option<i64> {
        let meters = self.looks.values().filter(|t| **t != ASKED).min().copied();
        self.book
            .next_due()
            .map(|t| t + COALESCE)
            .into_iter()
            .chain(meters)
            .min()
    }

    /// What the machine knows of authorized table `t`, as the kernel would
    /// list it (each entry's time stamp is when it was authorized or last
    /// renewed, in seconds: the second `now` falls in, less the age to the
    /// nearest second, so that `expire`'s ages are those the event lines,
    /// `show` and `revoke` give), for a service that expires by age, in the
    /// events mode: the kernel's listing is a dump that grows with the
    /// square of the set (minutes at a million), this is the book. `None`
    /// where the book cannot stand in: a table of no service, a stage or
    /// hold table, idle expiry (traffic refreshes entries unseen), or the
    /// daemon polls. Entries past their deadline (`now`, ms) are the
    /// kernel's to drop, not listed.
    pub fn booked_entries(&self, cfg: &Config, t: &TableRef, now: i64) -> Option<Vec<Entry>> {
        let mut naming = cfg.services.iter().filter(|s| auth_table(cfg, s) == *t);
        let s = naming.clone().next().filter(|_| self.events)?;
        if naming.any(|s| s.expire != ExpireMode::Age) {
            return None;
        }
        let secs = now.div_euclid(1000);
        let mut out = Vec::new();
        for a in [Af::V4, Af::V6] {
            let Some(i) = self.book.find(&nft_set_of(s.table.as_str(), a)) else {
                continue;
            };
            out.extend(
                self.book
                    .iter_set(i)
                    .filter(|(_, a)| a.until > now)
                    .map(|(addr, a)| Entry {
                        net: Net::host(addr),
                        tzero: secs - age(now, a.since).0 as i64,
                        packets: 0,
                        bytes: 0,
                        counted: false,
                    }),
            );
        }
        Some(out)
    }

    /// How many authorizations the machine knows of a table, and when the
    /// first is due (seconds, rounded up): the book's, and those said
    /// during the start's reading whose events have not come yet
    /// (`said_apart`).
    pub fn count(&self, table: &str) -> (usize, Option<i64>) {
        let sets = [Af::V4, Af::V6].map(|a| nft_set_of(table, a));
        let ids: Vec<u16> = sets.iter().filter_map(|s| self.book.find(s)).collect();
        let said = sets.iter().filter_map(|s| self.knocks.said_first_due(s));
        let first = self.book.first_due(&ids).into_iter().chain(said).min();
        let n = ids.iter().map(|i| self.book.count(*i)).sum::<usize>();
        (
            n + sets.iter().map(|s| self.said_apart(s)).sum::<usize>(),
            first.map(|t| (t + 999).div_euclid(1000)),
        )
    }

    /// Forget everything (the anchor was unloaded): how many
    /// authorizations went.
    pub fn clear(&mut self) -> usize {
        let n = self.book.len();
        self.book.clear();
        self.looks.clear();
        self.full.clear();
        self.cuts.clear();
        n
    }
}

/// The authorized sets a load of `cfg` makes: each service's, for each
/// family it takes.
pub fn auth_sets(cfg: &Config) -> HashSet<String> {
    (cfg.services.iter())
        .flat_map(|s| (s.family.afs().into_iter()).map(|a| nft_set_of(s.table.as_str(), a)))
        .collect()
}

/// The authorized sets a load of `new` deletes where `old` is loaded (a
/// service removed, a family it no longer takes, its table renamed), each
/// with the service whose it was.
pub fn deleted_sets(old: &Config, new: &Config) -> Vec<(String, String)> {
    let stays = auth_sets(new);
    (old.services.iter())
        .flat_map(|s| (s.family.afs().into_iter()).map(move |a| (s, a)))
        .map(|(s, a)| (nft_set_of(s.table.as_str(), a), s.name.clone()))
        .filter(|(set, _)| !stays.contains(set))
        .collect()
}

/// The line for authorized set `set` of `service`, deleted by a reload
/// with `n` authorizations (`None`: as many as it held, uncounted).
pub fn gone_line(set: &str, service: &str, n: Option<u64>) -> String {
    let went = n.map_or("its authorizations".to_owned(), |n| {
        format!("{n} authorizations")
    });
    format!("set {set} of service {service} deleted by the reload: {went} went with it")
}
