//! Knocks heard while a reading of every set runs beside the loop (at a
//! start, or after the kernel dropped notifications). Their events wait
//! in the loop's queue until the reading is taken in, so that the machine
//! still sees the kernel's changes in order; but a host that knocked is
//! said at once (`knocks_heard`): its element is looked up, and the line
//! is the one its event would have brought (`authorized ... ttl=`).
//! When the event comes, after the reading, the host is taken into the
//! book without a second line (`waited`). So too a transaction someone
//! else commits meanwhile (`others_heard`): its elements are said at once
//! with who made it, and neither the reading nor the event says them
//! again. What falls due meanwhile, in the book or among those said or
//! allowed, expires at its deadline (`due_while_read`).
#![forbid(unsafe_code)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use super::{
    Action, Auth, COALESCE, Ctx, Left, Machine, Query, Step, Then, af, age, auth_service,
    event_line, info, ms,
};
use crate::config::Service;
use crate::kevents::{Deadline, KernelEvent};
use crate::name::{Af, Net, Secs};
use crate::names::{self, nft_set_of};

/// What the machine holds of the knocks heard during a reading, per
/// (set, address).
#[derive(Default)]
pub(super) struct Knocks {
    /// Knocks whose events wait in the queue behind the start's reading,
    /// with the element the reading found (`knocks_waiting`).
    pub(super) waiting: HashMap<(String, IpAddr), Option<Auth>>,
    /// Knocks said as they came, and elements others added (`other_heard`),
    /// their events still in the queue: what the look-up found, or the
    /// event told (`None`: the element was gone, or went since).
    said: HashMap<(String, IpAddr), Option<Auth>>,
    /// Knocks said as they came whose events the kernel's overrun took
    /// from the queue: the reading it brings finds their elements, or
    /// says they went (`said_dropped_went`).
    dropped: HashMap<(String, IpAddr), Option<Auth>>,
    /// Hosts that left their set while the reading ran (`pfknock revoke`,
    /// a close knock, a deletion by others, an expiry: `gone`): what it
    /// found of them is not taken in.
    removed: HashSet<(String, IpAddr)>,
    /// Hosts `pfknock allow` (or a signed knock) added while the reading
    /// ran, and their authorizations: taken in once it is (`take_allowed`).
    allowed: HashMap<(String, IpAddr), Auth>,
    /// Element changes heard during the reading whose transaction's
    /// commit has not come yet (`others_heard`).
    batch: Vec<KernelEvent>,
    /// Hosts whose close knock was said as it came (`close_heard`): its
    /// event, after the reading, says nothing.
    closed: HashSet<(String, IpAddr)>,
    /// Authorizations expire while the reading runs (`due_while_read`).
    pub(super) reading: bool,
    /// The deadlines of those said and allowed (`said`, `allowed`), so
    /// that they too expire while the reading runs; one no longer theirs
    /// is passed over (`take_due`).
    due: BTreeSet<(i64, String, IpAddr)>,
    /// Knock packets heard during the reading of hosts known or said by
    /// then: what they did is said and kept as they come (a renewal), so
    /// their events, after the reading, do nothing (`heard_again`); each
    /// would move the deadline on by as long as it waited. So too a full
    /// meter's (keyed by the meter): said full, and looked at, as it came.
    again: HashMap<(String, IpAddr), u32>,
    /// Sets `pfknock flush` emptied while the reading ran: what it found
    /// of them is not taken in, but for hosts said or allowed since.
    flushed: HashSet<String>,
}

impl Knocks {
    /// Forget what is known of `set` (a reload deleted it).
    pub(super) fn drop_set(&mut self, set: &str) {
        self.waiting.retain(|(w, _), _| w != set);
        self.said.retain(|(w, _), _| w != set);
        self.dropped.retain(|(w, _), _| w != set);
        self.removed.retain(|(w, _)| w != set);
        self.allowed.retain(|(w, _), _| w != set);
        self.closed.retain(|(w, _)| w != set);
        self.again.retain(|(w, _), _| w != set);
        self.flushed.remove(set);
    }

    /// Is this knock event one of those heard during a reading of a host
    /// known or said by then? Then it is done.
    pub(super) fn heard_again(&mut self, set: &str, addr: IpAddr) -> bool {
        if self.again.is_empty() {
            return false;
        }
        let key = (set.to_owned(), addr);
        let Some(n) = self.again.get_mut(&key) else {
            return false;
        };
        *n -= 1;
        if *n == 0 {
            self.again.remove(&key);
        }
        true
    }

    /// `key` said, with what its look-up found (`None`: gone).
    fn say(&mut self, key: (String, IpAddr), a: Option<Auth>) {
        if let Some(a) = a {
            self.due.insert((a.until, key.0.clone(), key.1));
        }
        self.said.insert(key, a);
    }

    /// `key` allowed, with the authorization the allow gave.
    fn allow(&mut self, key: (String, IpAddr), a: Auth) {
        self.due.insert((a.until, key.0.clone(), key.1));
        self.allowed.insert(key, a);
    }

    /// The first deadline of those said or allowed (maybe no longer
    /// theirs: then its wake finds nothing due).
    pub(super) fn next_due(&self) -> Option<i64> {
        self.due.first().map(|(t, _, _)| *t)
    }

    /// Those said or allowed whose deadline is `now` or before, with
    /// their authorizations.
    pub(super) fn take_due(&mut self, now: i64) -> Vec<(String, IpAddr, Auth)> {
        let mut out = Vec::new();
        while self.due.first().is_some_and(|(t, _, _)| *t <= now) {
            let Some((t, set, addr)) = self.due.pop_first() else {
                break;
            };
            let key = (set, addr);
            let a = self.said.get(&key).copied().flatten();
            let a = a.or_else(|| self.allowed.get(&key).copied());
            if let Some(a) = a.filter(|a| a.until == t) {
                out.push((key.0, key.1, a));
            }
        }
        out
    }

    /// One said or allowed, looked up when due or renewed, is now `a`:
    /// its record takes it. False where there is no such record.
    pub(super) fn moved(&mut self, set: &str, addr: IpAddr, a: Auth) -> bool {
        let key = (set.to_owned(), addr);
        let had = match self.said.get_mut(&key) {
            Some(Some(x)) => x,
            _ => match self.allowed.get_mut(&key) {
                Some(x) => x,
                None => return false,
            },
        };
        *had = a;
        self.due.insert((a.until, key.0, addr));
        true
    }

    /// What is known of `key` that the book does not hold: said during
    /// the reading, or allowed.
    fn known(&self, key: &(String, IpAddr)) -> Option<Auth> {
        let said = self.said.get(key).copied().flatten();
        said.or_else(|| self.allowed.get(key).copied())
    }

    /// `key` left its set while the reading ran (a revoke, a close knock,
    /// a deletion by others): what the reading found of it is not taken
    /// in, and a knock of it said before is not taken in when its event
    /// comes.
    pub(super) fn gone(&mut self, key: (String, IpAddr)) {
        if let Some(said) = self.said.get_mut(&key) {
            *said = None;
        }
        self.allowed.remove(&key);
        self.removed.insert(key);
    }

    /// Was this close knock said as it came? Then its event says nothing.
    pub(super) fn close_said(&mut self, set: &str, addr: IpAddr) -> bool {
        !self.closed.is_empty() && self.closed.remove(&(set.to_owned(), addr))
    }

    /// Did `pfknock allow` add `addr` to `set` while the reading ran?
    /// Then its line was said, and what the reading found of it says
    /// none learned late.
    pub(super) fn was_allowed(&self, set: &str, addr: IpAddr) -> bool {
        !self.allowed.is_empty() && self.allowed.contains_key(&(set.to_owned(), addr))
    }

    /// Did `pfknock revoke` (a close knock, a deletion by others) remove
    /// `addr` from `set` while the reading ran, or `pfknock flush` empty
    /// `set`, and no knock or allow bring it back since?
    pub(super) fn was_removed(&self, set: &str, addr: IpAddr) -> bool {
        if self.removed.is_empty() && self.flushed.is_empty() {
            return false;
        }
        let key = (set.to_owned(), addr);
        self.removed.contains(&key) || (self.flushed.contains(set) && self.known(&key).is_none())
    }

    /// The reading is taken in: what was revoked during it is past, and
    /// what was allowed is handed over, to be taken into the book. A
    /// transaction whose commit came after the reading is said by its
    /// events.
    pub(super) fn read(&mut self) -> HashMap<(String, IpAddr), Auth> {
        self.removed = HashSet::new();
        self.flushed = HashSet::new();
        self.batch = Vec::new();
        self.reading = false;
        self.due = BTreeSet::new();
        std::mem::take(&mut self.allowed)
    }

    /// Was a knock of `addr` in `set` said as it came (its event in the
    /// queue, or taken by an overrun)? Then a reading takes its element
    /// in without a line learned late.
    pub(super) fn was_said(&mut self, set: &str, addr: IpAddr) -> bool {
        let key = (set.to_owned(), addr);
        self.dropped.remove(&key).is_some() || self.said.contains_key(&key)
    }

    /// When a host said while the reading ran was authorized.
    pub(super) fn said_since(&self, set: &str, addr: IpAddr) -> Option<i64> {
        if self.said.is_empty() {
            return None;
        }
        let said = self.said.get(&(set.to_owned(), addr));
        said.copied().flatten().map(|a| a.since)
    }

    /// A host someone else added while the reading ran, now that the
    /// event comes: `Some` if it was said then, with what the book is to
    /// hold of it (`None`: deleted again since).
    pub(super) fn said_added(&mut self, set: &str, addr: IpAddr) -> Option<Option<Auth>> {
        if self.said.is_empty() {
            return None;
        }
        self.said.remove(&(set.to_owned(), addr))
    }

    /// Those said whose events an overrun took and whose elements its
    /// reading did not find: they went meanwhile.
    pub(super) fn said_dropped_went(&mut self) -> Vec<(String, IpAddr, Auth)> {
        let dropped = std::mem::take(&mut self.dropped);
        let went = dropped
            .into_iter()
            .filter_map(|((s, a), x)| Some((s, a, x?)));
        went.collect()
    }
}

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
        self.knocks.waiting.clear();
        let said = std::mem::take(&mut self.knocks.said);
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
            let again = self.knocks.removed.remove(&key);
            let said = (!again)
                .then(|| self.knocks.said.get(&key).copied())
                .flatten();
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
            self.knocks.said.insert(key.clone(), None);
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
                self.knocks.said.remove(&key);
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
                let k = &mut self.knocks;
                let of_set = |key: &&(String, IpAddr)| key.0 == set;
                let keys: Vec<_> = (k.said.keys().filter(of_set))
                    .chain(k.allowed.keys().filter(of_set))
                    .cloned()
                    .collect();
                keys.into_iter().for_each(|key| k.gone(key));
                k.flushed.insert(set);
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
            self.knocks.removed.remove(&key);
            self.knocks.allow(key, Auth { since, until });
            return;
        }
        self.knocks.gone(key);
    }

    /// An event other than a knock heard while a reading of the sets runs
    /// beside the loop, in the order the kernel sent it (the event itself
    /// waits in the queue). A transaction someone else committed is said
    /// at once, as `committed` would say it when its event comes, and
    /// noted (`other_heard`), so that neither the reading nor the event
    /// says it again. A change to the table itself waits for its event,
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
    /// with the deadline the kernel gave it, taken in without a line by
    /// the reading or by its event (`Knocks::said_added`). Deleted: said
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
            let again = self.knocks.removed.remove(&key);
            if !again && matches!(self.knocks.said.get(&key), Some(Some(_))) {
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
    /// book holds a later deadline for it (a knock since).
    pub(super) fn take_allowed(&mut self, cx: &Ctx, out: &mut Vec<Action>) {
        for ((set, addr), a) in self.knocks.read() {
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
            self.knocks.said.remove(&key);
            self.knocks.waiting.remove(&key);
            return true;
        }
        let k = &mut self.knocks;
        if k.waiting.is_empty() && k.said.is_empty() {
            return false;
        }
        let found = k.waiting.remove(&key).flatten();
        let said = k.said.remove(&key);
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
