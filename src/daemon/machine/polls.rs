//! The machine where the kernel tells nothing as it happens (pf, and
//! nftables once its events are lost): a poll asks for the anchors'
//! table statistics (one request per anchor), restores an anchor whose
//! tables are gone or whose rules were changed, and lists only the tables
//! whose count or packet counter moved; a table where only time moved and
//! an entry is due by age is swept from what the polls know (pf has no
//! read of some entries); what a
//! listing shows is decided in `sweep.rs`, what the polls know is in
//! `watch.rs`. As everywhere in the machine, each step is a query and the
//! answer's `Then`: `Query::Stats`, `Query::Entries`, `Query::Writes`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use super::sweep::Plan;
use super::watch::Polls;
use super::{Action, Answer, Ctx, Machine, Query, ReadError, Step, Then, first_done};
use crate::catalogue::Kind;
use crate::config::Role;
use crate::daemon::lines::Level;
use crate::name::{AnchorName, ExpireMode, Net, TableName};
use crate::policy;
use crate::tables::{Entry, PoolUse, TableRef, TableStat};

/// A write to a table, where the daemon polls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    Delete(TableRef, Vec<Net>),
    /// A fresh time stamp for present hosts (pf: their statistics
    /// cleared).
    Stamp(TableRef, Vec<Net>),
    /// Move hosts from the first table (pf's intake) into the second
    /// (`tables::move_hosts`): a host the first no longer holds when it is
    /// taken out (revoked meanwhile) does not stay in the second. Answers
    /// how many it added to the second and left there.
    Move(TableRef, TableRef, Vec<Net>),
    /// Every entry of a table deleted (pf tells only a count of a flush,
    /// so it is listed first): how many.
    Empty(TableRef),
}

/// A poll in progress: what was read so far, and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Run {
    force: bool,
    /// The anchors, each one's statistics as read.
    anchors: Vec<AnchorName>,
    stats: Vec<Result<Vec<TableStat>, ReadError>>,
    /// Are the config's rules and sets in place (nftables)?
    intact: Option<bool>,
    /// Sets at their size (nftables).
    full: Vec<(String, u64)>,
    pools: Option<Result<Vec<PoolUse>, String>>,
    /// The anchor being read; it was just restored.
    at: usize,
    restored: bool,
    /// What the statistics showed, per table.
    seen: BTreeMap<TableRef, TableStat>,
    /// The next watch to look at.
    pub(super) next: usize,
}

/// The steps of a poll (`Then` of its queries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PollStep {
    /// The anchors' statistics were read.
    Stats(Run),
    /// Our anchor was loaded again, for the reason given.
    Load { run: Run, why: &'static str },
    /// What it held was put back: per watch, each host and since when.
    PutBack {
        run: Run,
        why: &'static str,
        lists: Vec<(usize, Vec<(Net, i64)>)>,
    },
    /// The restored anchor's statistics, read again.
    Reread(Run),
    /// The table of watch `run.next` was listed.
    Listed { run: Run, packets: u64 },
    /// The writes its listing called for were carried out.
    Wrote { run: Run, packets: u64, plan: Plan },
}

/// How often the daemon polls: `poll`, and at most once a second where
/// the firewall times entries out itself (nftables, whose events were
/// lost), since a poll there runs nft(8).
pub fn poll_every(cfg: &crate::config::Config, refreshes: bool) -> crate::name::Millis {
    match refreshes {
        true => cfg.poll.max(crate::name::Millis(1000)),
        false => cfg.poll,
    }
}

fn ask(q: Query, step: PollStep) -> Action {
    Action::Ask(q, Then::of(Step::Poll(Box::new(step))))
}

impl Machine {
    /// A poll at `now` (ms); `force`: list every table (SIGUSR1).
    pub fn poll(&mut self, _cx: &Ctx, now: i64, force: bool) -> Vec<Action> {
        let p = &mut self.polls;
        let mut anchors: Vec<AnchorName> = p
            .watches
            .iter()
            .map(|w| w.named.table.anchor.clone())
            .collect();
        anchors.sort();
        anchors.dedup();
        let pools = p.pools_due(now.div_euclid(1000));
        let run = Run {
            force,
            anchors: anchors.clone(),
            stats: Vec::new(),
            intact: None,
            full: Vec::new(),
            pools: None,
            at: 0,
            restored: false,
            seen: BTreeMap::new(),
            next: 0,
        };
        vec![ask(Query::Stats { anchors, pools }, PollStep::Stats(run))]
    }

    /// Take the notes pfknock's commands left (`daemon::notes`), at `now`
    /// (seconds).
    pub fn noted(&mut self, text: &str, now: i64) {
        self.polls.claims.take(text, now);
    }

    /// The answer to a poll's query.
    pub(super) fn polled(&mut self, cx: &Ctx, step: PollStep, a: Answer, now: i64) -> Vec<Action> {
        let now = now.div_euclid(1000);
        let p = &mut self.polls;
        match (step, a) {
            (
                PollStep::Stats(mut run),
                Answer::Stats {
                    anchors,
                    intact,
                    full,
                    pools,
                },
            ) => {
                run.stats = anchors;
                run.stats.resize(run.anchors.len(), Err(no_answer()));
                (run.intact, run.full, run.pools) = (intact, full, pools);
                p.anchors_from(cx, run, now)
            }
            (PollStep::Load { run, why }, Answer::Done(d)) => p.loaded(cx, run, why, d, now),
            (PollStep::PutBack { run, why, lists }, Answer::Done(d)) => {
                p.put_back(cx, run, why, lists, d)
            }
            (PollStep::Reread(mut run), Answer::Stats { anchors, full, .. }) => {
                run.stats[run.at] = anchors.into_iter().next().unwrap_or(Err(no_answer()));
                run.full = full;
                run.restored = true;
                p.anchors_from(cx, run, now)
            }
            (PollStep::Listed { run, packets }, Answer::Entries(e)) => {
                p.listed(cx, run, packets, e, now)
            }
            (PollStep::Wrote { run, packets, plan }, Answer::Done(d)) => {
                p.wrote(cx, run, packets, plan, d, now)
            }
            (step, a) => vec![Action::Log(
                Level::Err,
                format!("internal: answer {a:?} to the wrong question ({step:?})"),
            )],
        }
    }
}

/// Why our anchor `a` is not put back: what the loader said.
fn cannot_restore(a: &AnchorName, e: &str) -> String {
    format!("anchor {a} is gone and cannot be restored: {e}")
}

fn no_answer() -> ReadError {
    ReadError::Failed("no answer".to_owned())
}

impl Polls {
    /// Take in each anchor's statistics in turn; restore ours first if its
    /// tables are gone or its rules changed. A read that fails ends the
    /// poll (nothing is known).
    fn anchors_from(&mut self, cx: &Ctx, mut run: Run, now: i64) -> Vec<Action> {
        let mut out = Vec::new();
        while run.at < run.anchors.len() {
            let a = run.anchors[run.at].clone();
            let ours = a == cx.cfg.anchor && !cx.cfg.services.is_empty() && !cx.held;
            if ours && !run.restored {
                let broken = self.anchor_broken(&run.stats[run.at]);
                let altered = !broken && run.intact == Some(false);
                if broken || altered {
                    // It failed this second: said again (the repeat
                    // filter counts it), not tried again.
                    if let Some((at, e)) = &self.restore_failed
                        && *at == now
                    {
                        out.push(Action::Fail(Level::Err, cannot_restore(&a, e)));
                        run.at += 1;
                        continue;
                    }
                    let why = if broken {
                        "its tables were gone (pf flushed?)"
                    } else {
                        "its rules or sets had been changed"
                    };
                    out.push(ask(Query::Load, PollStep::Load { run, why }));
                    return out;
                }
            }
            run.restored = false;
            match std::mem::replace(&mut run.stats[run.at], Ok(Vec::new())) {
                Ok(v) => {
                    for s in v.into_iter().filter(|s| s.active) {
                        if let Ok(name) = TableName::new(&s.name) {
                            run.seen.insert(TableRef::new(&a, &name), s);
                        }
                    }
                }
                // Not our anchor, and not there: nothing to watch yet.
                Err(ReadError::Missing) => {}
                Err(ReadError::Failed(e)) => {
                    out.push(Action::Fail(Level::Err, format!("anchor {a}: {e}")));
                    return out;
                }
            }
            run.at += 1;
        }
        self.note_full_sets(&run.full, &mut out);
        if let Some(Ok(pools)) = run.pools.take() {
            self.pools_seen(&pools, &mut out);
        }
        out.extend(self.visits_from(cx, run, now));
        out
    }

    fn anchor_broken(&self, stats: &Result<Vec<TableStat>, ReadError>) -> bool {
        match stats {
            Err(ReadError::Missing) => true,
            Err(ReadError::Failed(_)) => false,
            Ok(v) => self.watches.iter().filter(|w| w.role().is_some()).any(|w| {
                !v.iter()
                    .any(|s| s.active && s.name == w.named.table.name.as_str())
            }),
        }
    }

    /// Our anchor was loaded again: put back every authorization known
    /// that has time left, with the time it had (the kernel stamps it now;
    /// `restored` keeps the old stamp), but not what a command removed.
    fn loaded(
        &mut self,
        cx: &Ctx,
        mut run: Run,
        why: &'static str,
        d: Vec<Result<usize, String>>,
        now: i64,
    ) -> Vec<Action> {
        let a = run.anchors[run.at].clone();
        if let Err(e) = first_done(d) {
            let mut out = vec![Action::Fail(Level::Err, cannot_restore(&a, &e))];
            self.restore_failed = Some((now, e));
            run.at += 1;
            out.extend(self.anchors_from(cx, run, now));
            return out;
        }
        self.restore_failed = None;
        let mut lists = Vec::new();
        let mut add = Vec::new();
        for (i, w) in self.watches.iter().enumerate() {
            if w.role() != Some(Role::Auth) || w.named.table.anchor != a {
                continue;
            }
            let Some(ttl) = w.named.ttl else { continue };
            let table = &w.named.table;
            // pf's intake knows the hosts a move had no room for: they go
            // back into the authorized table.
            let intake = self.intake_of(i).map(|k| &self.watches[k].known);
            let mut list: Vec<(Net, i64)> = (w.known.iter())
                .chain(intake.into_iter().flatten())
                .filter(|(_, since)| policy::age(now, **since) < ttl.0)
                .map(|(n, since)| (*n, *since))
                .collect();
            list.retain(|(n, _)| !self.claims.claims(table, n));
            list.sort();
            list.dedup_by_key(|(n, _)| *n);
            let timed: Vec<(Net, u64)> = list
                .iter()
                .map(|(n, since)| (*n, ttl.0.saturating_sub(policy::age(now, *since))))
                .collect();
            add.push((table.clone(), timed));
            lists.push((i, list));
        }
        vec![ask(Query::Add(add), PollStep::PutBack { run, why, lists })]
    }

    /// The put-back answered: say the restore, check pf's own state, and
    /// read the anchor's statistics again.
    fn put_back(
        &mut self,
        cx: &Ctx,
        run: Run,
        why: &'static str,
        lists: Vec<(usize, Vec<(Net, i64)>)>,
        d: Vec<Result<usize, String>>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let mut back = 0;
        let mut d = d.into_iter();
        for (i, list) in lists {
            let w = &mut self.watches[i];
            match d.next().unwrap_or(Err("no answer".to_owned())) {
                Ok(n) => {
                    back += n;
                    w.known = list.iter().copied().collect();
                    w.restored = list.into_iter().collect();
                    // All went back: the table holds what is known, and
                    // is not listed for it (an idle table is, for its
                    // packet counters). Fewer: someone added some
                    // meanwhile; its listing says what it holds.
                    if n == w.known.len() && w.named.mode == ExpireMode::Age {
                        w.count = Some(n as u64);
                        w.due_from_known();
                    } else {
                        w.count = None;
                    }
                    if let Some(k) = self.intake_of(i) {
                        self.watches[k].emptied();
                    }
                }
                Err(e) => {
                    let msg = format!("{}: putting back authorizations: {e}", w.named.table);
                    out.push(Action::Fail(Level::Err, msg));
                }
            }
        }
        let a = run.anchors[run.at].clone();
        let back = if back > 0 {
            format!(": put back {back} authorizations with the time they had left")
        } else {
            String::new()
        };
        out.push(Action::Log(
            Level::Notice,
            format!("anchor {} restored: {why}{back}", a.as_str()),
        ));
        out.extend(Machine::check_pf_query(cx));
        let q = Query::Stats {
            anchors: vec![a],
            pools: false,
        };
        out.push(ask(q, PollStep::Reread(run)));
        out
    }

    /// Log once when a set fills up (knocks are no longer counted into
    /// it) and once when it has room again.
    fn note_full_sets(&mut self, now: &[(String, u64)], out: &mut Vec<Action>) {
        for (name, size) in now {
            if self.full.insert(name.clone()) {
                out.push(Action::Log(
                    Level::Warning,
                    format!(
                        "set {name} is full ({size} elements): knocks it would take are not \
                         counted until entries expire; raise the service's size"
                    ),
                ));
            }
        }
        let mut gone: Vec<String> = self
            .full
            .iter()
            .filter(|n| !now.iter().any(|(m, _)| m == *n))
            .cloned()
            .collect();
        gone.sort();
        for name in gone {
            self.full.remove(&name);
            out.push(Action::Log(
                Level::Notice,
                format!("set {name} has room again"),
            ));
        }
    }

    /// pf: at the `set limit table-entries` limit, a knock's overload
    /// insert fails without a word (pf.c ignores pfr_insert_kentry's
    /// error) and the connection that tripped it is killed all the same,
    /// so the knock opens nothing; at the `set limit src-nodes` limit pf
    /// creates no state for a source that has no node yet, so its knock is
    /// dropped. Each pool is logged once when it fills, and once when it
    /// has room again.
    fn pools_seen(&mut self, pools: &[PoolUse], out: &mut Vec<Action>) {
        for p in pools {
            let (name, used, limit) = (p.pool.limit_name(), p.used, p.limit);
            let was_full = self.pools.full.contains_key(&p.pool);
            if p.is_full() {
                self.pools.full.insert(p.pool, (used, limit));
            } else {
                self.pools.full.remove(&p.pool);
            }
            match (was_full, p.is_full()) {
                (false, true) => out.push(Action::Log(
                    Level::Warning,
                    format!(
                        "pf's {name} limit is reached ({used} of {limit} {}): {}; raise it \
                         with set limit {name} in pf.conf",
                        p.pool.unit(),
                        p.pool.effect()
                    ),
                )),
                (true, false) => out.push(Action::Log(
                    Level::Notice,
                    format!("pf's {name} limit has room again ({used} of {limit})"),
                )),
                _ => {}
            }
        }
    }

    /// Look at each watch from `run.next` on: list the next table whose
    /// count or packet counter moved, or that was never listed; sweep one
    /// where only an age deadline came from what is known.
    pub(super) fn visits_from(&mut self, cx: &Ctx, mut run: Run, now: i64) -> Vec<Action> {
        let mut out = Vec::new();
        let mut due_only = None;
        for (i, w) in self.watches.iter().enumerate().skip(run.next) {
            let Some(st) = run.seen.get(&w.named.table) else {
                if matches!(w.named.kind, Kind::Expire)
                    && self.warned_missing.insert(w.named.table.clone())
                {
                    out.push(Action::Log(
                        Level::Warning,
                        format!("{}: no such table; will look again", w.named.table),
                    ));
                }
                continue;
            };
            let idle = w.named.mode == ExpireMode::Idle;
            if !run.force && !self.refreshes && w.may_wait(st.count, st.packets, now) {
                continue;
            }
            let moved = run.force
                || w.force
                || !w.listed
                || w.count != Some(st.count)
                || (idle && w.packets != Some(st.packets))
                || (idle && self.refreshes);
            let due = w.next_due.is_some_and(|d| now >= d);
            if due && !moved && !idle && !self.refreshes {
                // Only time moved: what is due is in what the daemon
                // knows (pf has no read of some entries; DIOCRGETASTATS
                // walks the whole table), so the writes cost the entries
                // that are due, not the table.
                due_only = Some((i, st.packets));
                break;
            }
            if moved || due {
                let (packets, q) = (st.packets, Query::Entries(w.named.table.clone()));
                run.next = i;
                out.push(ask(q, PollStep::Listed { run, packets }));
                return out;
            }
        }
        if let Some((i, packets)) = due_only {
            run.next = i;
            let (writes, plan) = self.plan_due(cx, i, now);
            if !writes.is_empty() {
                let q = Query::Writes(writes);
                out.push(ask(q, PollStep::Wrote { run, packets, plan }));
                return out;
            }
            if let Err(e) = self.done(i, plan, Vec::new(), now, &mut out) {
                self.visit_failed(i, &e, &mut out);
            } else {
                self.visited(i, packets);
            }
            run.next += 1;
            out.extend(self.visits_from(cx, run, now));
        }
        out
    }

    /// A visit of watch `i` ended: what it knows is as listed.
    pub(super) fn visited(&mut self, i: usize, packets: u64) {
        let w = &mut self.watches[i];
        w.packets = Some(packets);
        w.listed = true;
        w.force = false;
    }

    /// A visit of watch `i` failed: said (through the repeat filter), and
    /// the table is listed again next poll (what it holds is not known).
    pub(super) fn visit_failed(&mut self, i: usize, e: &str, out: &mut Vec<Action>) {
        let w = &mut self.watches[i];
        out.push(Action::Fail(Level::Err, format!("{}: {e}", w.named.table)));
        w.force = true;
    }

    /// The entries of the table the visit listed: decide (`sweep.rs`).
    fn listed(
        &mut self,
        cx: &Ctx,
        mut run: Run,
        packets: u64,
        entries: Result<Vec<Entry>, String>,
        now: i64,
    ) -> Vec<Action> {
        let i = run.next;
        let mut out = Vec::new();
        if entries.is_ok() {
            self.watches[i].listed_at = now;
        }
        match entries {
            Err(e) => self.visit_failed(i, &e, &mut out),
            Ok(entries) => match self.plan(cx, i, entries, now) {
                Some((writes, plan)) if !writes.is_empty() => {
                    out.push(ask(
                        Query::Writes(writes),
                        PollStep::Wrote { run, packets, plan },
                    ));
                    return out;
                }
                Some((_, plan)) => match self.done(i, plan, Vec::new(), now, &mut out) {
                    Ok(()) => self.visited(i, packets),
                    Err(e) => self.visit_failed(i, &e, &mut out),
                },
                None => self.visited(i, packets),
            },
        }
        run.next += 1;
        out.extend(self.visits_from(cx, run, now));
        out
    }

    /// The writes of a visit were carried out (up to the first that
    /// failed): say what they did.
    fn wrote(
        &mut self,
        cx: &Ctx,
        mut run: Run,
        packets: u64,
        plan: Plan,
        d: Vec<Result<usize, String>>,
        now: i64,
    ) -> Vec<Action> {
        let i = run.next;
        let mut out = Vec::new();
        // The hosts a renewal added to the authorized table are not in the
        // statistics this poll read before it.
        let grew = match &plan {
            Plan::Renew(p) => Some(p.grows()),
            _ => None,
        };
        match self.done(i, plan, d, now, &mut out) {
            Ok(()) => self.visited(i, packets),
            Err(e) => self.visit_failed(i, &e, &mut out),
        }
        if let Some((a, n)) = grew
            && let Some(st) = run.seen.get_mut(&self.watches[a].named.table)
        {
            st.count += n;
        }
        run.next += 1;
        out.extend(self.visits_from(cx, run, now));
        out
    }
}
