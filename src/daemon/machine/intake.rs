//! pf's intake, `T_renew`: every knock's overload lands there (pf cannot
//! tell the daemon what changed in `T` without a listing of all of it),
//! and the pass rule lets its hosts in at once. At each visit the daemon
//! stamps the hosts that knocked again where the service renews, moves
//! them and the new ones into `T` (`tables::move_hosts`: a host revoked
//! meanwhile stays out; one that knocked again is in `T` already, unless
//! it was deleted from there by hand before its knock, and then it goes
//! back), and empties the intake; what `T` holds after is known from the
//! writes, without listing it.
//!
//! A move needs room in pf's pool of table entries (the host is added to
//! `T` before it leaves the intake). Where there is none the move fails,
//! and the hosts stay in the intake, authorized: they are said and known
//! there (the intake watch's `known`), and one that outlives its ttl
//! there is deleted from it, as it would have expired from `T`.
#![forbid(unsafe_code)]

use super::watch::{Hosts, Polls, Watch, first_due};
use super::{Action, Ctx, Write};
use crate::config::Role;
use crate::daemon::lines::Level;
use crate::name::{Net, Secs};
use crate::policy;
use crate::tables::Entry;

/// Hosts, each with when it knocked.
type Knocks = Vec<(Net, i64)>;

/// What a visit of an intake writes, each host with when it knocked
/// (the intake's time stamp).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Intake {
    /// The watch of the service's authorized table.
    auth: usize,
    /// Authorized hosts that knocked again, stamped anew in `T` where
    /// the service renews (`renew`); all leave the intake.
    present: Vec<(Net, i64)>,
    renew: bool,
    /// Hosts that stayed in the intake past their ttl (no room to move
    /// them): deleted from it.
    overdue: Vec<(Net, i64)>,
    /// New hosts, moved into `T`.
    absent: Vec<(Net, i64)>,
    /// `T` not listed yet (a first poll after a start that could not list
    /// it: `Machine::at_start` makes it known otherwise): which hosts it
    /// holds is not known, so all are in `absent`, stamped where the
    /// service renews (a stamp finds only those `T` holds) and moved
    /// (a move adds only those it does not); `T`'s first listing, next,
    /// says what it holds, and each host counts from its knock.
    blind: bool,
}

impl Intake {
    /// The authorized table's watch, and how many hosts the move adds to
    /// it.
    pub(super) fn grows(&self) -> (usize, u64) {
        (self.auth, self.absent.len() as u64)
    }
}

impl Polls {
    /// The intake of the service of watch `i`, if it has one.
    pub(super) fn intake_of(&self, i: usize) -> Option<usize> {
        self.of_service(i, |r| r == Role::Renew).first().copied()
    }

    /// SIGINFO (`now` in seconds): a line for each intake that holds
    /// hosts a move had no room for (authorized there, not in `T`), with
    /// when the first of them expires.
    pub(super) fn waiting(&self, now: i64) -> Vec<Action> {
        let mut out = Vec::new();
        for (i, w) in self.watches.iter().enumerate() {
            if w.role() != Some(Role::Renew) || w.known.is_empty() {
                continue;
            }
            let Some(a) = self.of_service(i, |r| r == Role::Auth).first().copied() else {
                continue;
            };
            let auth = &self.watches[a].named;
            let due = first_due(&w.known, auth.ttl).map_or("none".to_owned(), |d| {
                format!("in {}", Secs(policy::age(d, now)))
            });
            out.push(Action::Log(
                Level::Info,
                format!(
                    "status {}: {} entries authorized there, waiting for room in <{}>, \
                     next expiry {due}",
                    w.named.table,
                    w.known.len(),
                    auth.table.name.as_str()
                ),
            ));
        }
        out
    }

    /// The writes a listing of intake `i` calls for: stamp, empty, expire
    /// what stayed too long, move (last, so that a move pf has no room for
    /// leaves only the hosts to move).
    pub(super) fn plan_intake(
        &mut self,
        cx: &Ctx,
        i: usize,
        entries: &[Entry],
        now: i64,
    ) -> Option<(Vec<Write>, Intake)> {
        let a = *self.of_service(i, |r| r == Role::Auth).first()?;
        if entries.is_empty() {
            self.watches[i].emptied();
            return None;
        }
        let svc = (self.watches[i].named.service.as_deref()).and_then(|s| cx.cfg.service(s));
        let renew = svc.is_none_or(|s| s.renew);
        let ttl = self.watches[a].named.ttl.map_or(i64::MAX, |t| t.0 as i64);
        let (auth, intake) = (&self.watches[a], &self.watches[i]);
        let blind = !auth.listed;
        // A host counts from its knock, which the intake stamped; not from
        // the write (a knock made while no daemon ran keeps its age).
        let (present, rest): (Knocks, Knocks) = (entries.iter())
            .map(|e| (e.net, e.tzero.min(now)))
            .partition(|(n, _)| !blind && auth.known.contains_key(n));
        // An allowed host never expires: it is moved.
        let (overdue, absent): (Knocks, Knocks) = rest.into_iter().partition(|(n, since)| {
            policy::age(now, *since) as i64 > ttl && !svc.is_some_and(|s| s.allows(n))
        });
        let nets = |v: &[(Net, i64)]| v.iter().map(|(n, _)| *n).collect::<Vec<Net>>();
        let (t, from) = (auth.named.table.clone(), intake.named.table.clone());
        let mut writes = Vec::new();
        let stamp = if blind { &absent } else { &present };
        if renew && !stamp.is_empty() {
            writes.push(Write::Stamp(t.clone(), nets(stamp)));
        }
        // Hosts `T` held at the last look leave the intake by a move, not
        // a delete: one taken out of `T` meanwhile (`pfctl -T delete` by
        // hand) that knocked again is put back, not lost with its knock.
        if !present.is_empty() {
            writes.push(Write::Move(from.clone(), t.clone(), nets(&present)));
        }
        if !overdue.is_empty() {
            writes.push(Write::Delete(from.clone(), nets(&overdue)));
        }
        if !absent.is_empty() {
            writes.push(Write::Move(from, t, nets(&absent)));
        }
        let plan = Intake {
            auth: a,
            present,
            renew,
            overdue,
            absent,
            blind,
        };
        Some((writes, plan))
    }

    /// The writes of intake `i`'s visit were carried out (`next` answers
    /// each in turn): what they did is said and known. A move that failed
    /// leaves its hosts said and known in the intake; the failure is
    /// returned.
    pub(super) fn intake_done(
        &mut self,
        i: usize,
        p: Intake,
        next: &mut impl FnMut() -> Result<usize, String>,
        now: i64,
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        // Hosts a start or a failed move already said (the intake keeps
        // them until it is emptied).
        let said = self.watches[i].known.clone();
        let stamp = match (p.renew, p.blind) {
            (false, _) => &[][..],
            (true, false) => &p.present[..],
            (true, true) => &p.absent[..],
        };
        let stamped = if stamp.is_empty() { 0 } else { next()? };
        // Hosts the move put back into `T` were not there: its listing,
        // next, says what it holds.
        if !p.present.is_empty() && next()? > 0 {
            self.watches[p.auth].force = true;
        }
        if !p.blind {
            self.renewed(p.auth, stamp, stamped, &said, now, out);
        }
        if !p.overdue.is_empty() {
            next()?;
            self.stayed(p.auth, &p.overdue, &said, now, out);
        }
        let moved = if p.absent.is_empty() {
            0
        } else {
            match next() {
                Ok(n) => n,
                Err(e) => {
                    self.unmoved(i, p.auth, &p.absent, said, out);
                    return Err(e);
                }
            }
        };
        if p.blind {
            self.unseen(p.auth, &p.absent, now);
        } else {
            self.moved(p.auth, &p.absent, moved, &said, now, out);
        }
        self.watches[i].emptied();
        Ok(())
    }

    /// Hosts that knocked again were stamped in the authorized table of
    /// watch `a` (`stamped` of them): each said, unless already, and
    /// known from its knock. Where the stamp found less (a host removed
    /// meanwhile), the table is listed next.
    fn renewed(
        &mut self,
        a: usize,
        hosts: &[(Net, i64)],
        stamped: usize,
        said: &Hosts,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let w = &mut self.watches[a];
        for (n, since) in hosts {
            say(w, "renewed", n, said, out);
            w.idle.forget(n);
            w.restored.remove(n);
            // From the knock, or from the table's own stamp where that is
            // later (a host allowed after it knocked, while no daemon ran).
            let since = w.known.get(n).map_or(*since, |k| (*k).max(*since));
            if stamped == hosts.len() {
                know(w, *n, since, now);
            }
        }
        if stamped < hosts.len() {
            w.force = true;
        }
    }

    /// New hosts were moved into the authorized table of watch `a`
    /// (`moved` of them stayed there). Where all did, each is said and
    /// known from its knock, the count grew by them and the next due is
    /// the first of them a ttl after its knock; otherwise someone changed
    /// the table meanwhile (a host revoked, one authorized by a knock not
    /// seen yet), and its listing, next, says each change once.
    fn moved(
        &mut self,
        a: usize,
        hosts: &[(Net, i64)],
        moved: usize,
        said: &Hosts,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let w = &mut self.watches[a];
        if moved < hosts.len() {
            w.force = true;
            return;
        }
        for (n, since) in hosts {
            say(w, "authorized", n, said, out);
            know(w, *n, *since, now);
        }
        w.count = w.count.map(|c| c + hosts.len() as u64);
        // `policy::decide`: due once older than the ttl.
        if let Some(ttl) = w.named.ttl
            && let Some(since) = hosts.iter().map(|(_, s)| *s).min()
        {
            let due = since + ttl.0 as i64 + 1;
            w.next_due = Some(w.next_due.map_or(due, |d| d.min(due)));
        }
    }

    /// Hosts stamped and moved into the authorized table of watch `a`
    /// before it was ever listed: its first listing, next, says what it
    /// holds; each host counts from its knock (`restored`), though pf
    /// stamped it at the write. Nothing is said: what a start finds, the
    /// start says (`Machine::reconcile`).
    fn unseen(&mut self, a: usize, hosts: &[(Net, i64)], now: i64) {
        let w = &mut self.watches[a];
        for (n, since) in hosts.iter().filter(|(_, s)| *s < now) {
            w.restored.insert(*n, *since);
        }
        w.force = true;
    }

    /// A move failed (pf's pool of table entries full): its hosts stay in
    /// intake `i`, authorized there; each is said once and known there.
    fn unmoved(
        &mut self,
        i: usize,
        a: usize,
        hosts: &[(Net, i64)],
        mut said: Hosts,
        out: &mut Vec<Action>,
    ) {
        for (n, since) in hosts {
            say(&self.watches[a], "authorized", n, &said, out);
            said.insert(*n, *since);
        }
        self.watches[i].known = said;
    }

    /// Hosts that stayed in the intake past their ttl were deleted from
    /// it: expired, as from the authorized table of watch `a`.
    fn stayed(
        &self,
        a: usize,
        hosts: &[(Net, i64)],
        said: &Hosts,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let w = &self.watches[a];
        let ttl = w.named.ttl.unwrap_or(Secs(0));
        for (n, since) in hosts {
            say(w, "authorized", n, said, out);
            let extra = format!("age={} ttl={ttl}", Secs(policy::age(now, *since)));
            out.push(Action::Log(Level::Info, w.line("expired", n, &extra)));
        }
    }
}

/// A line for `n` in the table of `w`, unless one was said (`said`).
fn say(w: &Watch, verb: &str, n: &Net, said: &Hosts, out: &mut Vec<Action>) {
    if !said.contains_key(n) {
        let ttl = format!("ttl={}", w.named.ttl.unwrap_or(Secs(0)));
        out.push(Action::Log(Level::Info, w.line(verb, n, &ttl)));
    }
}

/// `n` is in the table of `w` since `since` (its knock); pf stamped it at
/// the write, so a later listing keeps the knock (`restored`) where it
/// was before `now`.
fn know(w: &mut Watch, n: Net, since: i64, now: i64) {
    w.known.insert(n, since);
    if since < now {
        w.restored.insert(n, since);
    }
}
