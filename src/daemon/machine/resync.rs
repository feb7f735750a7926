//! Reading every authorized set again: at start (what is there is taken as
//! known, without a line), and after the kernel dropped notifications,
//! when what changed meanwhile is logged as such: each authorization the
//! daemon did not hear of, each one that went, each renewal, marked as
//! learned late, and a set that is gone restored as any change by others
//! is. Lines past `log_burst` for a service are one line, each at debug.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use super::{
    Action, Auth, COALESCE, Ctx, Elements, Machine, Query, ReadError, Step, Taken, Then, age,
    auth_service, event_line, ms,
};
use crate::config::Service;
use crate::daemon::lines::Level;
use crate::kevents::Deadline;
use crate::name::{Af, ExpireMode, Secs};
use crate::names::nft_set_of;

/// Said of every change learned from a listing instead of a notification.
const LATE: &str = "(learned late: the kernel dropped notifications)";

/// Elements of a reading of every set taken in at once; the rest wait
/// for the loop's next turn (`Query::Pause`), where signals are answered:
/// a million took 1.9 s in one piece, a part of 8,192 6 to 8 ms here.
pub(super) const TAKE_AT_ONCE: usize = 1 << 13;

/// Lines learned late said at most in one turn of the loop; the rest at
/// the next (`Query::Pause`), so that a signal waits for a part of them,
/// not for all: 59,000 in one piece held SIGUSR2 for 250 ms here. So too
/// the lines of a transaction by others (`commit.rs`), and the next part
/// only once syslog took all but a part's: SIGUSR2's line waits behind
/// two parts at most. With parts of 1,024, a million added by nft at
/// 100,000 a second held it 43 ms (median), 78 ms (90th percentile);
/// with 256, 14 and 17 ms, as fast to say all (`benches/README.md`).
pub const SAY_AT_ONCE: usize = 1 << 8;

/// A reading of every set, being taken in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Taking {
    /// The sets not yet opened, each with its ttl (ms) and its dump.
    sets: VecDeque<((String, i64), Result<Elements, ReadError>)>,
    cur: Option<Current>,
    /// After lost notifications: what changed is said.
    missed: bool,
    /// What is learned late, by service, in the order found; made into
    /// lines only as they are said.
    lines: BTreeMap<String, Vec<Late>>,
    /// How many of the first service's have been said.
    said: usize,
    gone_sets: Vec<String>,
    /// Once the sets are in: the records of hosts said as they came
    /// whose events are in no queue, by set, to take in
    /// (`Knocks::take_records`).
    records: Option<Vec<(String, Taken)>>,
}

/// A change learned late, to be said: the verb, the host, its
/// authorization and when it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Late {
    verb: &'static str,
    addr: IpAddr,
    a: Auth,
    now: i64,
}

/// The set being taken in: what the book held of it (what the set no
/// longer holds went meanwhile), and its elements not yet taken, last
/// first: each part taken is given back to the allocator as the book
/// grows (at a million, the reading's 12 MB, IPv4, or 24, IPv6, would
/// otherwise stay beside the book until the set is done).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Current {
    set: String,
    ttl: i64,
    old: Taken,
    left: Elements,
    /// Whether it found hosts said during the reading, which their
    /// records take in (`take_one`).
    later: bool,
}

impl Current {
    fn new(set: String, ttl: i64, old: Taken, mut elems: Elements) -> Current {
        elems.reverse();
        Current {
            set,
            ttl,
            old,
            left: elems,
            later: false,
        }
    }
}

impl Then {
    pub(super) fn of(s: Step) -> Then {
        Then(Box::new(s))
    }

    /// Is this the reading of every authorized set (at start, after an
    /// overrun), the one read that may take minutes?
    pub fn reads_every_set(&self) -> bool {
        matches!(*self.0, Step::Resync { .. })
    }

    /// Is this a reading of every set whose elements the machine takes
    /// as known, not as news (at start, at SIGUSR1, after a reload that
    /// made a set anew)? Not the one after lost notifications.
    pub(super) fn resyncs(&self) -> bool {
        matches!(*self.0, Step::Resync { missed: false, .. })
    }
}

impl Machine {
    /// Read every authorized set and take what is there as known, without
    /// a line for each (at start).
    pub fn resync(&mut self, cx: &Ctx, _now: i64) -> Vec<Action> {
        self.book.clear();
        vec![self.read_sets(cx, false)]
    }

    /// The kernel dropped notifications: read every set again, and say
    /// what changed.
    pub(super) fn overrun(&mut self, cx: &Ctx) -> Vec<Action> {
        // A transaction whose commit may be among what was dropped: the
        // reading of the sets says what it did.
        self.batch.clear();
        // Knocks that waited in the queue went with the rest: the
        // reading says them, as learned late (those said as they came,
        // only if they went: `heard.rs`).
        self.knocks_overrun();
        let warn = "the kernel dropped notifications: reading the sets again".to_owned();
        vec![Action::Log(Level::Warning, warn), self.read_sets(cx, true)]
    }

    fn read_sets(&self, cx: &Ctx, missed: bool) -> Action {
        let mut sets = Vec::new();
        for s in &cx.cfg.services {
            for a in [Af::V4, Af::V6] {
                sets.push((nft_set_of(s.table.as_str(), a), ms(s.ttl.0 as i64)));
            }
        }
        let query = Query::Dump(sets.iter().map(|(s, _)| s.clone()).collect());
        Action::Ask(query, Then::of(Step::Resync { sets, missed }))
    }

    pub(super) fn resynced(
        &mut self,
        cx: &Ctx,
        sets: Vec<(String, i64)>,
        missed: bool,
        dumps: Vec<Result<Elements, ReadError>>,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        self.unread.clear();
        let t = Taking {
            sets: sets.into_iter().zip(dumps).collect(),
            cur: None,
            missed,
            lines: BTreeMap::new(),
            said: 0,
            gone_sets: Vec::new(),
            records: None,
        };
        self.take_in(cx, Box::new(t), now, out);
    }

    /// Take in up to `TAKE_AT_ONCE` elements of a reading of every set;
    /// if more are left, ask to go on at the loop's next turn, else say
    /// what it found.
    pub(super) fn take_in(
        &mut self,
        cx: &Ctx,
        mut t: Box<Taking>,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let mut budget = TAKE_AT_ONCE;
        loop {
            let Some(c) = t.cur.as_mut() else {
                let Some(((set, ttl), got)) = t.sets.pop_front() else {
                    break;
                };
                self.open_set(cx, &mut t, set, ttl, got, out);
                continue;
            };
            // A reload between two parts deleted it: the rest went too.
            if !self.takes(cx, &c.set) {
                t.cur = None;
                continue;
            }
            // This turn's part, taken into the book in one go.
            let mut run = Vec::with_capacity(budget.min(c.left.len()));
            while budget > 0
                && let Some(e) = c.left.pop()
            {
                budget -= 1;
                let took = self.take_one(cx, c, e, (t.missed, &mut t.lines), now);
                run.extend(took.map(|a| (e.addr(), a)));
            }
            c.left.shrink_to_fit();
            if !run.is_empty() {
                let id = self.book.id(&c.set);
                self.book.insert_run(id, run);
                out.extend(self.note_fill(cx, &c.set));
            }
            // Then what the book held that the set no longer holds, in
            // address order, as a listing gives them (at start there is
            // none).
            while c.left.is_empty() && budget > 0 {
                let Some((addr, a)) = c.old.pop_first() else {
                    break;
                };
                budget -= 1;
                if t.missed
                    && self.tracked(&c.set, addr).is_none()
                    && !self.knocks.was_removed(&c.set, addr)
                {
                    self.went(cx, &c.set, addr, a, now, &mut t.lines);
                }
            }
            if budget == 0 {
                out.push(Action::Ask(Query::Pause, Then::of(Step::Taking(t))));
                return;
            }
            self.set_in(c);
            t.cur = None;
        }
        if !self.take_in_records(cx, &mut t, &mut budget, out) {
            out.push(Action::Ask(Query::Pause, Then::of(Step::Taking(t))));
            return;
        }
        // Knocks said as they came whose events the overrun took, and
        // which the reading did not find: they went meanwhile.
        for (set, addr, a) in self.knocks.said_dropped_went() {
            if t.missed && self.tracked(&set, addr).is_none() {
                self.went(cx, &set, addr, a, now, &mut t.lines);
            }
        }
        self.take_allowed(cx, t.missed, out);
        self.settle_when_quiet();
        if !self.say_late(cx, &mut t, out) {
            out.push(Action::Ask(Query::Pause, Then::of(Step::Taking(t))));
            return;
        }
        if !t.gone_sets.is_empty() {
            let by = "an unknown process (the kernel dropped its notifications)";
            self.restore(cx, &t.gone_sets, by, out);
        }
    }

    /// Hosts said as they came whose events are in no queue (others'
    /// changes, heard while the reading ran: `Daemon::hear`), taken into
    /// the book from their records once the sets are in, as their events
    /// would have; not one the book holds already (the reading's copy,
    /// after an overrun), nor one of a set a reload deleted meanwhile.
    /// Up to `budget` of them; false while some are left.
    fn take_in_records(
        &mut self,
        cx: &Ctx,
        t: &mut Taking,
        budget: &mut usize,
        out: &mut Vec<Action>,
    ) -> bool {
        let records = t.records.get_or_insert_with(|| self.knocks.take_records());
        while let Some((set, r)) = records.last_mut() {
            if *budget == 0 {
                return false;
            }
            let Some((addr, a)) = r.pop_first() else {
                records.pop();
                continue;
            };
            *budget -= 1;
            if self.takes(cx, set) && self.tracked(set, addr).is_none() {
                out.extend(self.track(cx, set, addr, a.since, a.until));
                self.knocks.took(set, addr);
            }
        }
        true
    }

    /// The set `c` is in: its maps are built full once the reading's
    /// records are gone (`settle_when_quiet`): taken in (`take_records`),
    /// and a knock's by its event.
    fn set_in(&mut self, c: &Current) {
        let id = match c.later {
            true => Some(self.book.id(&c.set)),
            false => self.book.find(&c.set),
        };
        if let Some(id) = id {
            self.book.settle_later(id, c.later);
        }
    }

    /// One element of the set being taken in: what the book is to hold of
    /// it, if anything yet.
    fn take_one(
        &mut self,
        cx: &Ctx,
        c: &mut Current,
        e: Deadline,
        (missed, lines): (bool, &mut BTreeMap<String, Vec<Late>>),
        now: i64,
    ) -> Option<Auth> {
        let addr = e.addr();
        // Revoked while the reading ran (`heard.rs`).
        if self.knocks.was_removed(&c.set, addr) {
            return None;
        }
        // The kernel's own deadline, however long the reading took
        // (a deadline already past: due at once).
        let until = e.at().unwrap_or(now + c.ttl);
        // As old as the kernel's deadline says, but not younger than the
        // reading's time; one said while the reading ran, since it was.
        let said = self.knocks.said_record(&c.set, addr);
        let since = said.map_or((until - c.ttl).min(now), |a| a.since);
        let fresh = Auth { since, until };
        // A knock that waited in the queue while the start read:
        // its element is said when its event comes (`waited`).
        if !missed
            && !self.knocks.waiting.is_empty()
            && let Some(w) = self.knocks.waiting.get_mut(&(c.set.clone(), addr))
        {
            *w = Some(fresh);
            return None;
        }
        // Said as it came: its record is taken into the book once the
        // sets are in (`take_records`; a knock's by its event, `waited`),
        // as is a host said that the reading did not find; its copy is
        // not taken in beside the record. At a million under churn a
        // third of what the start's reading found was said so (495,067
        // of 1,458,419), and churn.sh's high-water fell from 90.5 to 78.7
        // MB. (After an overrun the reading compares what it finds with
        // what the book held, and takes them in as before.)
        if !missed && said.is_some() {
            c.later = true;
            return None;
        }
        // (At start the book is empty: nothing is old.)
        Some(match c.old.get(addr) {
            // Allowed during the reading, or said as it came then: its
            // line was said (`heard.rs`).
            _ if missed && self.knocks.was_allowed(&c.set, addr) => fresh,
            Some(o) => self.kept(cx, &c.set, addr, o, fresh, now, lines),
            None if missed && self.knocks.was_said(&c.set, addr) => fresh,
            None if missed => {
                self.late(cx, &c.set, addr, "authorized", fresh, now, lines);
                fresh
            }
            None => fresh,
        })
    }

    /// The next set of a reading: its entries taken out of the book to be
    /// compared, or why there is none.
    fn open_set(
        &mut self,
        cx: &Ctx,
        t: &mut Taking,
        set: String,
        ttl: i64,
        got: Result<Elements, ReadError>,
        out: &mut Vec<Action>,
    ) {
        let covered = self.takes(cx, &set);
        match got {
            // Read before that reload deleted it: what it held went with
            // it, and the reload said so.
            Ok(_) if !covered => {
                self.take_set(&set);
            }
            Ok(elems) => {
                let old = self.take_set(&set);
                t.cur = Some(Current::new(set, ttl, old, elems));
            }
            // A family the service does not have; after lost
            // notifications, one it has is a set someone deleted.
            Err(ReadError::Missing) => {
                if t.missed && covered {
                    t.gone_sets.push(format!("set {set}"));
                } else if covered {
                    // Loaded by the daemon, and gone (with the table, by
                    // another process) before or while this reading read it.
                    self.unread.insert(set.clone());
                    out.push(Action::Log(
                        Level::Warning,
                        format!(
                            "set {set}: gone before this reading of the sets had read it: the \
                         authorizations it held are not known, and a restore cannot put \
                         them back"
                        ),
                    ));
                }
            }
            Err(ReadError::Failed(e)) => {
                out.push(Action::Log(Level::Err, format!("set {set}: {e}")))
            }
        }
    }

    /// Is authorized set `set` taken in from a reading? Not one a reload
    /// during the reading deleted (`dropped`), nor a family its service
    /// does not take.
    pub(super) fn takes(&self, cx: &Ctx, set: &str) -> bool {
        !self.dropped.contains(set)
            && auth_service(cx.cfg, set).is_some_and(|s| {
                let af = if set.ends_with("_6") { Af::V6 } else { Af::V4 };
                s.family.covers(af)
            })
    }

    /// A set's entries, taken out of the book.
    fn take_set(&mut self, set: &str) -> Taken {
        match self.book.find(set) {
            Some(i) => self.book.take_set(i),
            None => Taken::default(),
        }
    }

    /// An authorization in the book and in the set: renewed meanwhile if
    /// the kernel's deadline moved by more than a knock's spread (not where
    /// traffic moves it: `expire = "idle"`).
    #[allow(clippy::too_many_arguments)]
    fn kept(
        &mut self,
        cx: &Ctx,
        set: &str,
        addr: IpAddr,
        old: Auth,
        fresh: Auth,
        now: i64,
        lines: &mut BTreeMap<String, Vec<Late>>,
    ) -> Auth {
        let renewable =
            auth_service(cx.cfg, set).is_some_and(|s| s.renew && s.expire != ExpireMode::Idle);
        if renewable && fresh.until > old.until + 2000 {
            // Its age, as a renewal's line gives it, runs from before.
            self.late(cx, set, addr, "renewed", old, now, lines);
            return fresh;
        }
        Auth {
            since: old.since,
            until: fresh.until,
        }
    }

    /// An authorization in the book that the set no longer holds: expired
    /// if its deadline passed, else removed by someone unknown.
    fn went(
        &mut self,
        cx: &Ctx,
        set: &str,
        addr: IpAddr,
        a: Auth,
        now: i64,
        lines: &mut BTreeMap<String, Vec<Late>>,
    ) {
        let verb = if a.until <= now + COALESCE {
            "expired"
        } else {
            "removed"
        };
        self.late(cx, set, addr, verb, a, now, lines);
    }

    /// One change learned late, kept for `say_late`.
    #[allow(clippy::too_many_arguments)]
    fn late(
        &self,
        cx: &Ctx,
        set: &str,
        addr: IpAddr,
        verb: &'static str,
        a: Auth,
        now: i64,
        lines: &mut BTreeMap<String, Vec<Late>>,
    ) {
        let Some(s) = auth_service(cx.cfg, set) else {
            return;
        };
        let late = Late { verb, addr, a, now };
        lines.entry(s.name.clone()).or_default().push(late);
    }

    /// Its line.
    fn late_line(cx: &Ctx, s: &Service, l: &Late) -> String {
        let ttl = Secs(s.ttl.0);
        let extra = match l.verb {
            "authorized" => format!("ttl={ttl} {LATE}"),
            "renewed" => format!("age={} ttl={ttl} {LATE}", age(l.now, l.a.since)),
            _ => format!(
                "age={} ttl={ttl} {LATE}",
                age(l.now.min(l.a.until), l.a.since)
            ),
        };
        event_line(cx.cfg, l.verb, s, l.addr, &extra)
    }

    /// The sets a reading took in are built full (`Book::settle`) once
    /// nothing the reading heard is still held: its records taken into
    /// the book (at a million under churn, some 600,000 of them), and
    /// those of knocks by their events.
    pub(super) fn settle_when_quiet(&mut self) {
        if self.book.unsettled() && !self.knocks.reading && self.knocks.none_said() {
            self.book.settle();
        }
    }

    /// The lines learned late: each, or per service past `log_burst` one
    /// line with their number (each at debug); at most `SAY_AT_ONCE` of
    /// them. False while some are left to say.
    fn say_late(&self, cx: &Ctx, t: &mut Taking, out: &mut Vec<Action>) -> bool {
        let burst = cx.cfg.log_burst as usize;
        let mut budget = SAY_AT_ONCE;
        while let Some(e) = t.lines.first_entry() {
            if budget == 0 {
                return false;
            }
            let n = e.get().len();
            let svc = cx.cfg.services.iter().find(|s| s.name == *e.key());
            let Some(s) = svc else {
                e.remove();
                t.said = 0;
                continue;
            };
            let level = if n > burst { Level::Debug } else { Level::Info };
            if n > burst && t.said == 0 {
                out.push(Action::Log(
                    Level::Info,
                    format!(
                        "{n} changes to the authorizations of service {} {LATE}",
                        s.name
                    ),
                ));
            }
            let upto = n.min(t.said + budget);
            for l in &e.get()[t.said..upto] {
                out.push(Action::Log(level, Self::late_line(cx, s, l)));
            }
            budget -= upto - t.said;
            t.said = upto;
            if upto < n {
                return false;
            }
            e.remove();
            t.said = 0;
        }
        true
    }
}
