//! Knocks heard while a reading of every set runs beside the loop (at a
//! start, or after the kernel dropped notifications). Their events wait
//! in the loop's queue until the reading is taken in, so that the machine
//! still sees the kernel's changes in order; but a host that knocked is
//! said at once (`knocks_heard`): its element is looked up, and the line
//! is the one its event would have brought (`authorized ... ttl=`).
//! When the event comes, after the reading, the host is taken into the
//! book without a second line (`waited`). So too a transaction someone
//! else commits meanwhile (`others_heard`): its elements are said at once
//! with who made it, and kept as records; the loop queues none of them
//! (`Daemon::hear`), and the reading's take-in takes the records into
//! the book (`Knocks::take_records`), so that neither the reading nor anything
//! after it says them again. What falls due meanwhile, in the book or
//! among those said or allowed, expires at its deadline
//! (`due_while_read`).
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::{
    Action, Auth, COALESCE, Ctx, Left, Machine, Query, Step, Then, af, age, auth_service,
    event_line, info, ms,
};
use crate::config::Service;
use crate::kevents::{Deadline, KernelEvent};
use crate::name::{Af, Net, Secs};
use crate::names::{self, nft_set_of};
use crate::tables::TableRef;

use super::down::Known;

/// The service whose knock prefix this is.
fn knocking<'c>(cx: &Ctx<'c>, prefix: &str) -> Option<&'c Service> {
    let mut all = cx.cfg.services.iter();
    all.find(|s| prefix == names::knock_prefix(&s.name))
}

/// The line of a knock's authorization; `kept`: its element is there.
pub(super) fn authorized_line(cx: &Ctx, s: &Service, addr: IpAddr, kept: bool) -> String {
    let ttl = Secs(s.ttl.0);
    let extra = if kept {
        format!("ttl={ttl}")
    } else {
        format!("ttl={ttl} (removed again before the daemon saw it)")
    };
    event_line(cx.cfg, "authorized", s, addr, &extra)
}

impl Machine {
    /// Does the reading `then` asks for let go of the elements that time
    /// out while it runs, for the loop to say at once (`gone_while_read`),
    /// rather than keep them to its take-in, which expired them then? A
    /// reading that takes what it finds as known: at a start (with or
    /// without the last run's record), on SIGUSR1, or of a set made anew.
    /// Not after lost notifications, where the reading is compared with
    /// the book.
    pub fn lets_go(&self, then: &Then) -> bool {
        then.resyncs()
    }

    /// Elements of `set` that the reading beside the loop let go of: their
    /// deadlines (`until`) passed, and the kernel no longer held them.
    /// Each expired at its deadline, said as the take-in would have said
    /// it, with the age its deadline gives (the service's ttl): but not
    /// one the book holds (it expires it), nor one said, allowed, revoked
    /// or gone since the reading began, nor of a set flushed meanwhile
    /// (`Knocks::changed_while_read`: that is said, and the reading's copy
    /// of it is not taken in), nor of a set no service takes (a reload
    /// during the reading deleted it, and said so). At a start over the
    /// last run's `record`, the compare after the reading says what became
    /// of each host the record kept (expired while the daemon was down, as
    /// of one that timed out before the reading reached it); one the
    /// record did not keep was authorized while no daemon ran, which the
    /// compare will not find, so that is said first (`found_and_gone`).
    pub fn gone_while_read(
        &mut self,
        cx: &Ctx,
        set: &str,
        gone: Vec<Deadline>,
        record: Option<&Known>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let s = auth_service(cx.cfg, set).filter(|_| self.takes(cx, set));
        let Some(s) = s else {
            return out;
        };
        let ttl = ms(s.ttl.0 as i64);
        let table = TableRef::new(&cx.cfg.anchor, &s.table).to_string();
        let kept = record.map(|r| r.hosts(&table));
        let (mut lines, mut found) = (std::collections::BTreeMap::new(), Vec::new());
        for e in gone {
            let (addr, Some(until)) = (e.addr(), e.at()) else {
                continue;
            };
            if self.tracked(set, addr).is_some() || self.knocks.changed_while_read(set, addr) {
                continue;
            }
            let a = Auth {
                since: until - ttl,
                until,
            };
            match kept {
                Some(Some(h)) if h.contains_key(&Net::host(addr)) => continue,
                Some(_) => found.push((Net::host(addr), a)),
                None => {}
            }
            let line = super::due::expired_line(cx, s, addr, a, until);
            lines
                .entry(s.name.clone())
                .or_insert_with(Vec::new)
                .push(line);
        }
        self.found_and_gone(cx, &table, found, &mut out);
        super::due::say_expired(cx, lines, &mut out);
        out
    }

    /// While a reading runs: when an authorization the book holds, or
    /// one said or allowed during the reading, is due, to be looked up,
    /// or a full meter (ms).
    pub fn next_expiry(&self, cx: &Ctx) -> Option<i64> {
        let said = self.knocks.next_due();
        let meters = (self.looks.iter())
            .filter(|(m, _)| auth_service(cx.cfg, m).is_none())
            .map(|(_, t)| *t);
        let t = self.book.next_due().into_iter().chain(said).chain(meters);
        t.min().map(|t| t.saturating_add(COALESCE))
    }

    /// The authorizations due at `now` while a reading of every set runs
    /// beside the loop (after lost notifications the book holds what it
    /// knew; at a start it is empty): looked up and expired at once, as
    /// at any time, and what the reading found of one expired is not
    /// taken in (`expire`, `Knocks::gone`). The kernel's other events
    /// that could come first are heard meanwhile (`heard.rs`): a knock
    /// that renewed it leaves its element there, a deletion forgets it.
    /// So too a full meter's look (the kernel's, not the book's: whether
    /// it has room again). An authorized set's room waits for the
    /// reading's end, with the rest of `tick`: it is the book's count.
    pub fn due_while_read(&mut self, cx: &Ctx, now: i64) -> Vec<Action> {
        self.knocks.reading = true;
        let mut out: Vec<Action> = self.ask_due(now).into_iter().collect();
        out.extend(self.ask_meters(cx, now));
        // Those said or allowed during the reading, not in the book.
        let due = self.knocks.take_due(now);
        if !due.is_empty() {
            let q = Query::Left(due.iter().map(|(s, a, _)| (s.clone(), *a)).collect());
            out.push(Action::Ask(q, Then::of(Step::Due(due))));
        }
        out
    }

    /// An authorization looked up (when due, or for a renewal) is `since`
    /// to `until` now: in the book, or, one said or allowed during a
    /// reading and not in the book, in its record (`Knocks::moved`).
    pub(super) fn keep(
        &mut self,
        cx: &Ctx,
        (set, addr): (&str, IpAddr),
        since: i64,
        until: i64,
        out: &mut Vec<Action>,
    ) {
        let a = Auth { since, until };
        if self.tracked(set, addr).is_some() || !self.knocks.moved(set, addr, a) {
            out.extend(self.track(cx, set, addr, since, until));
        }
    }

    /// The kernel dropped notifications: the events in the queue went
    /// with them, and the reading that follows says the rest. Of the
    /// knocks said as they came, those the book holds are compared as
    /// any it holds; the others it says only if they went.
    pub(super) fn knocks_overrun(&mut self) {
        self.knocks.waiting = HashMap::new();
        let said = self.knocks.take_said();
        let untracked: Vec<_> = (said.into_iter())
            .filter(|((set, addr), _)| self.tracked(set, *addr).is_none())
            .collect();
        self.knocks.dropped.extend(untracked);
    }

    /// Kernel events heard while a reading of the sets runs beside the
    /// loop, their events waiting in the queue, at `now` (ms): said in
    /// order, the knocks up to each other event (`knocks_heard`), then
    /// that event: a full meter, a close knock (`close_heard`), a change
    /// by others (`others_heard`).
    pub fn heard(&mut self, cx: &Ctx, evs: &[KernelEvent], now: i64) -> Vec<Action> {
        let mut out = Vec::new();
        let mut knocks: Vec<(&str, IpAddr)> = Vec::new();
        for ev in evs {
            // What follows a transaction comes after all it did.
            self.said_all(cx, now, &mut out);
            let (meter, close) = match ev {
                KernelEvent::Knock { prefix, .. } => (
                    names::meter_of_prefix(prefix),
                    names::close_of_prefix(prefix),
                ),
                _ => (None, None),
            };
            if let KernelEvent::Knock { prefix, addr } = ev
                && meter.is_none()
                && close.is_none()
            {
                knocks.push((prefix.as_str(), *addr));
                continue;
            }
            out.extend(self.knocks_heard(cx, &std::mem::take(&mut knocks), now));
            match (ev, meter, close) {
                (KernelEvent::Knock { addr, .. }, Some(m), _) => {
                    // Its event after the reading says nothing more.
                    *self.knocks.again.entry((m.to_owned(), *addr)).or_default() += 1;
                    self.meter_full(cx, m, now, &mut out)
                }
                (KernelEvent::Knock { addr, .. }, _, Some(c)) => {
                    self.close_heard(cx, c, *addr, now, &mut out)
                }
                _ => out.extend(self.others_heard(cx, ev, now)),
            }
        }
        out.extend(self.knocks_heard(cx, &knocks, now));
        out
    }

    /// Knocks (prefix, address) heard while a reading of the sets runs
    /// beside the loop at `now`, their events waiting in the queue: each
    /// host not tracked and not said yet in this reading is looked up, to
    /// be said at once (`said_heard`). One the book tracks (an overrun's
    /// reading) or said already may be renewed: looked up as its event
    /// would (`renewal`), once for a knock's packets.
    fn knocks_heard(&mut self, cx: &Ctx, knocks: &[(&str, IpAddr)], now: i64) -> Vec<Action> {
        let (mut ask, mut out, mut renewing) = (Vec::new(), Vec::new(), HashSet::new());
        for &(prefix, addr) in knocks {
            let Some(s) = knocking(cx, prefix) else {
                continue;
            };
            let set = nft_set_of(s.table.as_str(), af(addr));
            let key = (set, addr);
            // Said already, unless revoked since: a knock after a revoke
            // is a new authorization.
            let again = self.knocks.unremove(&key);
            let said = (!again).then(|| self.knocks.said(&key)).flatten();
            // Allowed during the reading: known as well as one said.
            let tracked =
                (self.tracked(&key.0, addr)).or_else(|| self.knocks.allowed.get(&key).copied());
            if tracked.is_some() || said.is_some() {
                *self.knocks.again.entry(key.clone()).or_default() += 1;
            }
            if let Some(a) = tracked.or(said.flatten()) {
                let spread = ms(i64::from(s.rate.secs.clamp(1, 2)));
                if s.renew && now - a.since >= spread && renewing.insert(key.clone()) {
                    let (service, since) = (s.name.clone(), a.since);
                    let then = Then::of(Step::Renewal {
                        service,
                        addr,
                        since,
                    });
                    out.push(Action::Ask(Query::Left(vec![key]), then));
                }
                continue;
            }
            // Said gone, or being looked up.
            if said.is_some() {
                continue;
            }
            self.knocks.say_knock(key.clone());
            ask.push((s.name.clone(), key));
        }
        if !ask.is_empty() {
            let keys = ask.iter().map(|(_, k)| k.clone()).collect();
            let knocks = ask.into_iter().map(|(s, (_, a))| (s, a)).collect();
            out.push(Action::Ask(
                Query::Left(keys),
                Then::of(Step::Heard(knocks)),
            ));
        }
        out
    }

    /// The elements of knocks heard during a reading, looked up at `now`:
    /// each said, as its event would say it. A look-up that failed leaves
    /// the knock to its event.
    pub(super) fn said_heard(
        &mut self,
        cx: &Ctx,
        knocks: Vec<(String, IpAddr)>,
        got: Vec<Result<Left, String>>,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        for ((service, addr), got) in knocks.into_iter().zip(got) {
            let Some(s) = cx.cfg.service(&service) else {
                continue;
            };
            let key = (nft_set_of(s.table.as_str(), af(addr)), addr);
            let Ok(left) = got else {
                self.knocks.unsay(&key);
                continue;
            };
            info(out, authorized_line(cx, s, addr, left.is_some()));
            let a = left.map(|l| Auth {
                since: now,
                until: l.map_or(now + ms(s.ttl.0 as i64), |l| now + l as i64),
            });
            self.knocks.say(key, a);
        }
    }

    /// A change `pfknock revoke` or `allow` (or a signed knock) made
    /// through the daemon while a reading of the sets runs (it does not
    /// wait for the reading, minutes at a million), at `now` (seconds).
    /// Revoked: what the reading found of the host is not taken in, and a
    /// knock of it said before is not taken in when its event comes.
    /// Allowed: the host is taken in with the authorization the allow
    /// gave once the reading is (`take_allowed`), and the reading's copy
    /// says no line. Flushed (`pfknock flush`): what the reading found of
    /// the set is not taken in, but for hosts said or allowed since.
    pub fn changed_while_read(&mut self, cx: &Ctx, c: &crate::verbs::Change, now: i64) {
        use crate::verbs::Change::{Added, Cleared, Removed};
        let t = match c {
            Added(t, _) | Removed(t, _) | Cleared(t) => t,
        };
        let Some(s) = cx.cfg.services.iter().find(|s| s.table == t.name) else {
            return;
        };
        let (Added(_, n) | Removed(_, n)) = c else {
            // Flushed: those said or allowed went with it.
            for set in [Af::V4, Af::V6].map(|a| nft_set_of(s.table.as_str(), a)) {
                self.knocks.flush(set);
            }
            return;
        };
        if *n != Net::host(n.addr()) {
            return;
        }
        let key = (nft_set_of(s.table.as_str(), af(n.addr())), n.addr());
        if matches!(c, Added(..)) {
            let since = ms(now);
            let until = since + ms(s.ttl.0 as i64);
            self.knocks.unremove(&key);
            self.knocks.allow(key, Auth { since, until });
            return;
        }
        self.knocks.gone(key);
    }

    /// An event other than a knock heard while a reading of the sets runs
    /// beside the loop, in the order the kernel sent it. A transaction
    /// someone else committed is said at once, as `committed` would say
    /// it, and noted (`other_heard`): the loop queued none of its
    /// elements, and neither the reading nor its commit, after it, says
    /// it again. A change to the table itself waits for its event, queued,
    /// which restores the table.
    fn others_heard(&mut self, cx: &Ctx, ev: &KernelEvent, now: i64) -> Vec<Action> {
        let mut out = Vec::new();
        match ev {
            KernelEvent::Elements { .. } => self.knocks.batch.push(ev.clone()),
            // What came before went with what the kernel dropped.
            KernelEvent::Overrun => self.knocks.batch.clear(),
            KernelEvent::Commit { pid, process } => {
                let batch = std::mem::take(&mut self.knocks.batch);
                self.commit(cx, batch, (*pid, process), true, now, &mut out);
            }
            _ => {}
        }
        out
    }

    /// One element someone else added to or deleted from authorized set
    /// `set` of `s` during a reading, said `by` them. Added: kept as said
    /// with the deadline the kernel gave it, taken in without a line once
    /// the reading is (`take_in_records`). Deleted: said
    /// with its age (from the book, from when it was said, else from its
    /// deadline), and left out of what the reading found, as a revoke's.
    pub(super) fn other_heard(
        &mut self,
        cx: &Ctx,
        (s, set): (&Service, &str),
        (added, e): (bool, Deadline),
        by: Option<&str>,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let addr = e.addr();
        let key = (set.to_owned(), addr);
        let a = super::restore::added_auth(s, e, now);
        let extra = |a: &str| by.map(|by| format!("{a}ttl={} by {by}", Secs(s.ttl.0)));
        if added {
            // Known: its event says nothing either.
            if self.tracked(set, addr).is_some() {
                return;
            }
            let again = self.knocks.unremove(&key);
            if !again && matches!(self.knocks.said(&key), Some(Some(_))) {
                return;
            }
            if let Some(x) = extra("") {
                info(out, event_line(cx.cfg, "authorized", s, addr, &x));
            }
            self.knocks.say(key, Some(a));
            return;
        }
        let known = self.knocks.known(&key);
        let known = self.forget(cx, set, addr, out).or(known);
        let since = known.map_or(a.since, |k| k.since);
        if let Some(x) = extra(&format!("age={} ", age(now, since))) {
            info(out, event_line(cx.cfg, "removed", s, addr, &x));
        }
        self.knocks.gone(key);
    }

    /// A close knock heard while a reading runs: where the host is known
    /// (in the book, which is only during an overrun's reading, or said or
    /// allowed during this one) it is said at once, as `closed` says it,
    /// and left out of what the reading found; its event says nothing
    /// (`Knocks::close_said`). Of a host not known, whether the close knock
    /// found it authorized is the reading's to tell: left to its event.
    fn close_heard(
        &mut self,
        cx: &Ctx,
        service: &str,
        addr: IpAddr,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let Some(s) = cx.cfg.service(service) else {
            return;
        };
        let key = (nft_set_of(s.table.as_str(), af(addr)), addr);
        let known = self.knocks.known(&key);
        let Some(a) = self.forget(cx, &key.0, addr, out).or(known) else {
            return;
        };
        let extra = format!("age={} ttl={} by knock", age(now, a.since), Secs(s.ttl.0));
        info(out, event_line(cx.cfg, "closed", s, addr, &extra));
        self.knocks.closed.insert(key.clone());
        self.knocks.gone(key);
    }

    /// The hosts allowed while the reading ran, once it is taken in: each
    /// in the book with the authorization the allow gave, unless the
    /// book holds a later deadline for it (a knock since). What changed
    /// during a reading not after an overrun (`missed`) is kept for the
    /// compare with the record (`Knocks::read`).
    pub(super) fn take_allowed(&mut self, cx: &Ctx, missed: bool, out: &mut Vec<Action>) {
        for ((set, addr), a) in self.knocks.read(!missed) {
            // The same deadline as the reading found: its age is known.
            if self.tracked(&set, addr).is_none_or(|b| b.until <= a.until) {
                out.extend(self.track(cx, &set, addr, a.since, a.until));
            }
        }
    }

    /// The knocks that waited in the queue while the start's reading ran
    /// (prefix, address): their elements are not taken in silently with
    /// the rest, but when their knock comes, as any knock is.
    pub fn knocks_waiting(&mut self, cx: &Ctx, knocks: Vec<(String, IpAddr)>) {
        for (prefix, addr) in knocks {
            if let Some(s) = knocking(cx, &prefix) {
                let set = nft_set_of(s.table.as_str(), af(addr));
                self.knocks.waiting.insert((set, addr), None);
            }
        }
    }

    /// A knock whose event waited behind the start's reading: said now
    /// with the time the kernel gave it, unless it was said as it came;
    /// the book then holds what the reading found, else what the look-up
    /// found then. Nothing where a reload during the reading deleted its
    /// set. False where none of this knows it: the knock goes on as any
    /// knock does.
    pub(super) fn waited(
        &mut self,
        cx: &Ctx,
        s: &Service,
        set: &str,
        addr: IpAddr,
        out: &mut Vec<Action>,
    ) -> bool {
        let key = (set.to_owned(), addr);
        // A reload during the reading deleted its set: the reload said
        // what went with it.
        if !self.dropped.is_empty() && self.dropped.contains(set) {
            self.knocks.unsay(&key);
            self.knocks.unwait(&key);
            return true;
        }
        let k = &mut self.knocks;
        if k.waiting.is_empty() && k.none_said() {
            return false;
        }
        let found = k.unwait(&key).flatten();
        let said = k.unsay(&key);
        let a = match (found, said) {
            // Since the knock was heard, until the reading's deadline.
            (Some(a), Some(Some(e))) => Auth {
                since: e.since,
                until: a.until,
            },
            (Some(a), _) => {
                info(out, authorized_line(cx, s, addr, true));
                a
            }
            (None, Some(Some(a))) => a,
            // Said gone when it came, and not found since.
            (None, Some(None)) => return true,
            (None, None) => return false,
        };
        out.extend(self.track(cx, set, addr, a.since, a.until));
        true
    }
}
