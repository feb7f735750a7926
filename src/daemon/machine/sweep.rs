//! What a table's listing calls for, where the daemon polls: a renewal
//! table's hosts get a fresh time stamp in the authorized table; an
//! authorized, stage, hold or `[[expire]]` table is swept by age or idle
//! time (the allow list never); a hold table's new hosts lose their
//! progress (pf's wrong knocks); a close table's hosts leave the service.
//! `plan` turns a listing into the writes it needs (`Query::Writes`) and
//! a `Plan`; `done` says what the writes did, once the kernel did it.
#![forbid(unsafe_code)]

use std::collections::{BTreeSet, HashSet};

use super::intake::Intake;
use super::watch::Polls;
use super::{Action, Ctx, Write};
use crate::catalogue::Kind;
use crate::config::Role;
use crate::daemon::lines::Level;
use crate::name::{ExpireMode, Net, Secs};
use crate::policy::{self, Decision};
use crate::tables::Entry;

/// What a visit's writes are for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Plan {
    /// An intake's hosts: stamped, moved, taken out (`intake.rs`).
    Renew(Intake),
    /// A table swept: a hold table's new hosts (`held`) first taken out of
    /// the stage tables (`stages`, watch indices); then what `decision`
    /// expires deleted.
    Sweep {
        entries: Vec<Entry>,
        held: Vec<Net>,
        stages: Vec<usize>,
        decision: Decision,
        idle: bool,
    },
    /// An age-expiring table where only time moved: what `decision`
    /// expires, decided from what is known, deleted.
    Due { decision: Decision },
    /// A close table's hosts taken out of the service's authorized and
    /// stage tables (`tables`, watch indices), then the close table
    /// emptied; `lines` say those that were authorized.
    Close {
        nets: Vec<Net>,
        tables: Vec<usize>,
        lines: Vec<String>,
    },
}

impl Polls {
    /// The watches of the service of watch `i` whose role `role` takes.
    pub(super) fn of_service(&self, i: usize, role: fn(Role) -> bool) -> Vec<usize> {
        let svc = &self.watches[i].named.service;
        (0..self.watches.len())
            .filter(|j| {
                let x = &self.watches[*j];
                x.named.service == *svc && x.role().is_some_and(role)
            })
            .collect()
    }

    /// The writes the listing of watch `i` calls for, and what they are
    /// for; `None`: nothing to do.
    pub(super) fn plan(
        &mut self,
        cx: &Ctx,
        i: usize,
        entries: Vec<Entry>,
        now: i64,
    ) -> Option<(Vec<Write>, Plan)> {
        let w = &self.watches[i];
        if w.role() == Some(Role::Renew) {
            let (writes, plan) = self.plan_intake(cx, i, &entries, now)?;
            Some((writes, Plan::Renew(plan)))
        } else if w.swept() {
            Some(self.plan_sweep(cx, i, entries, now))
        } else if w.named.kind == Kind::Close && !entries.is_empty() {
            Some(self.plan_close(i, &entries, now))
        } else {
            None
        }
    }

    /// Watch `i`, an age-expiring table where only time moved: what is due,
    /// from what is known (pf has no read of some entries), one pass over
    /// it and no copy.
    pub(super) fn plan_due(&self, cx: &Ctx, i: usize, now: i64) -> (Vec<Write>, Plan) {
        let w = &self.watches[i];
        let svc = (w.named.kind != Kind::Hold)
            .then(|| w.named.service.as_deref().and_then(|s| cx.cfg.service(s)))
            .flatten();
        let keep = |n: &Net| svc.is_some_and(|s| s.allows(n));
        let ttl = w.named.ttl.map_or(0, |t| t.0);
        let known = w.known.iter().map(|(n, since)| (*n, *since));
        // In address order, as a listing gives them (`Hosts`).
        let decision = policy::decide_since(known, ttl, now, keep);
        let writes = if decision.expire.is_empty() {
            Vec::new()
        } else {
            let gone = decision.expire.iter().map(|x| x.net).collect();
            vec![Write::Delete(w.named.table.clone(), gone)]
        };
        (writes, Plan::Due { decision })
    }

    /// A swept table: a hold table's new hosts out of the stage tables,
    /// then what is due out of the table.
    fn plan_sweep(
        &mut self,
        cx: &Ctx,
        i: usize,
        entries: Vec<Entry>,
        now: i64,
    ) -> (Vec<Write>, Plan) {
        let w = &self.watches[i];
        let held: Vec<Net> = if w.named.kind == Kind::Hold {
            entries
                .iter()
                .map(|e| e.net)
                .filter(|n| !w.known.contains_key(n))
                .collect()
        } else {
            Vec::new()
        };
        let stages = if held.is_empty() {
            Vec::new()
        } else {
            self.of_service(i, |r| matches!(r, Role::Stage(_)))
        };
        let w = &self.watches[i];
        let ttl = w.named.ttl.map_or(0, |t| t.0);
        // Where the firewall refreshes entries on traffic, its time stamp
        // is the last activity: idle expiry is age since then.
        let idle = w.named.mode == ExpireMode::Idle && !self.refreshes;
        let decision = self.decide(cx, i, &entries, ttl, idle, now);
        let mut writes: Vec<Write> = stages
            .iter()
            .map(|s| Write::Delete(self.watches[*s].named.table.clone(), held.clone()))
            .collect();
        if !decision.expire.is_empty() {
            let gone = decision.expire.iter().map(|x| x.net).collect();
            writes.push(Write::Delete(self.watches[i].named.table.clone(), gone));
        }
        let plan = Plan::Sweep {
            entries,
            held,
            stages,
            decision,
            idle,
        };
        (writes, plan)
    }

    /// A close table's hosts: out of the service's authorized and stage
    /// tables, a line for each that was authorized, then out of the close
    /// table.
    fn plan_close(&mut self, i: usize, entries: &[Entry], now: i64) -> (Vec<Write>, Plan) {
        let nets: Vec<Net> = entries.iter().map(|e| e.net).collect();
        // The intake first, as `revoke` (`tables::move_hosts`); it knows
        // the hosts a move had no room for, authorized there.
        let tables = self.of_service(i, |r| {
            matches!(r, Role::Auth | Role::Stage(_) | Role::Renew)
        });
        let intake = tables
            .iter()
            .find(|j| self.watches[**j].role() == Some(Role::Renew));
        let mut lines = Vec::new();
        for j in tables
            .iter()
            .filter(|j| self.watches[**j].role() == Some(Role::Auth))
        {
            let a = &self.watches[*j];
            let ttl = a.named.ttl.unwrap_or(Secs(0));
            for n in &nets {
                let waiting = intake.and_then(|k| self.watches[*k].known.get(n));
                if let Some(since) = a.known.get(n).or(waiting) {
                    let extra =
                        format!("age={} ttl={ttl} by knock", Secs(policy::age(now, *since)));
                    lines.push(a.line("closed", n, &extra));
                }
            }
        }
        let mut writes: Vec<Write> = tables
            .iter()
            .map(|j| Write::Delete(self.watches[*j].named.table.clone(), nets.clone()))
            .collect();
        writes.push(Write::Delete(
            self.watches[i].named.table.clone(),
            nets.clone(),
        ));
        let plan = Plan::Close {
            nets,
            tables,
            lines,
        };
        (writes, plan)
    }

    /// The writes of watch `i`'s plan were carried out, each answered up
    /// to the first that failed: what they did is said and known. The
    /// first failure is returned (said by the caller) and ends it there.
    pub(super) fn done(
        &mut self,
        i: usize,
        plan: Plan,
        d: Vec<Result<usize, String>>,
        now: i64,
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        let mut d = d.into_iter();
        let mut next = move || {
            d.next()
                .unwrap_or_else(|| Err("not carried out".to_owned()))
        };
        match plan {
            Plan::Renew(p) => self.intake_done(i, p, &mut next, now, out)?,
            Plan::Sweep {
                entries,
                held,
                stages,
                decision,
                idle,
            } => {
                for s in stages {
                    next()?;
                    let w = &mut self.watches[s];
                    for n in &held {
                        w.known.remove(n);
                    }
                }
                self.held_lines(i, &held, out);
                let deleted = if decision.expire.is_empty() {
                    0
                } else {
                    next()?
                };
                self.swept(i, &entries, &decision, idle, deleted, now, out);
            }
            Plan::Due { decision } => {
                let n = (!decision.expire.is_empty()).then(&mut next).transpose()?;
                self.due_done(i, decision, n.unwrap_or(0), out);
            }
            Plan::Close {
                nets,
                tables,
                lines,
            } => {
                for j in tables {
                    next()?;
                    let w = &mut self.watches[j];
                    for n in &nets {
                        w.known.remove(n);
                        w.restored.remove(n);
                        w.idle.forget(n);
                    }
                    w.count = None;
                }
                self.closed(i, nets.len(), lines, out);
                next()?;
                self.watches[i].emptied();
            }
        }
        Ok(())
    }

    /// A line each (at debug) for a hold table's new hosts.
    fn held_lines(&self, i: usize, held: &[Net], out: &mut Vec<Action>) {
        let svc = self.watches[i].named.service.as_deref().unwrap_or("?");
        for n in held {
            let l = format!("held {n} for service {svc}: a wrong knock; its progress starts over");
            out.push(Action::Log(Level::Debug, l));
        }
    }

    /// The entries due of watch `i` were deleted (`deleted` of them; the
    /// others were already gone): a line each, and what is known without
    /// them.
    fn due_done(&mut self, i: usize, d: Decision, deleted: usize, out: &mut Vec<Action>) {
        let w = &mut self.watches[i];
        let level = if matches!(w.role(), Some(Role::Stage(_))) || w.named.kind == Kind::Hold {
            Level::Debug
        } else {
            Level::Info
        };
        let ttl_s = w.named.ttl.unwrap_or(Secs(0));
        for x in &d.expire {
            let extra = format!("age={} ttl={ttl_s}", Secs(x.age));
            out.push(Action::Log(level, w.line("expired", &x.net, &extra)));
            w.known.remove(&x.net);
            w.restored.remove(&x.net);
        }
        if deleted < d.expire.len() {
            // Someone took some out too: the next poll lists the table.
            w.count = None;
        } else {
            w.count = Some(w.known.len() as u64);
        }
        w.next_due = d.next_due;
    }

    /// A close table's `knockers` are out of the service: a line for each
    /// that was authorized, or one at debug for none.
    fn closed(&self, i: usize, knockers: usize, lines: Vec<String>, out: &mut Vec<Action>) {
        if lines.is_empty() {
            let l = format!(
                "close knock for service {}: no authorized host among {knockers} knocker(s)",
                self.watches[i].named.service.as_deref().unwrap_or("?"),
            );
            out.push(Action::Log(Level::Debug, l));
        }
        out.extend(lines.into_iter().map(|l| Action::Log(Level::Info, l)));
    }

    /// A sweep's deletions were done: the lines (new authorizations seen,
    /// expiries, entries that left without the daemon) and what is known
    /// after it.
    #[allow(clippy::too_many_arguments)]
    fn swept(
        &mut self,
        i: usize,
        entries: &[Entry],
        d: &Decision,
        idle: bool,
        deleted: usize,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let gone: HashSet<Net> = d.expire.iter().map(|x| x.net).collect();
        let w = &self.watches[i];
        // A stage that lapses is a sequence left unfinished, a hold that
        // ends a wrong knock's wait: not worth a line.
        let level = if matches!(w.role(), Some(Role::Stage(_))) || w.named.kind == Kind::Hold {
            Level::Debug
        } else {
            Level::Info
        };
        let ttl_s = w.named.ttl.unwrap_or(Secs(0));
        if w.listed && w.role() == Some(Role::Auth) {
            for e in entries {
                if !w.known.contains_key(&e.net) && !gone.contains(&e.net) {
                    let l = w.line("authorized", &e.net, &format!("ttl={ttl_s}"));
                    out.push(Action::Log(Level::Info, l));
                }
            }
        }
        let what = if idle { "idle" } else { "age" };
        for x in &d.expire {
            let extra = format!("{what}={} ttl={ttl_s}", Secs(x.age));
            out.push(Action::Log(level, w.line("expired", &x.net, &extra)));
        }
        self.vanished(i, entries, level, ttl_s, now, out);
        if deleted < gone.len() {
            out.push(Action::Log(
                Level::Debug,
                format!(
                    "{}: {} of {} expired entries were already gone",
                    self.watches[i].named.table,
                    gone.len() - deleted,
                    gone.len()
                ),
            ));
        }
        self.remember(i, entries, &gone, d.next_due);
    }

    /// What expires of table `i` and when the next entry is due: by age
    /// since the time stamp (or the restored one), or by idle time; the
    /// allow list never (a hold ends for everybody, allowed hosts too).
    fn decide(
        &mut self,
        cx: &Ctx,
        i: usize,
        entries: &[Entry],
        ttl: u64,
        idle: bool,
        now: i64,
    ) -> Decision {
        let w = &mut self.watches[i];
        let svc = (w.named.kind != Kind::Hold)
            .then(|| w.named.service.as_deref().and_then(|s| cx.cfg.service(s)))
            .flatten();
        let keep = |n: &Net| svc.is_some_and(|s| s.allows(n));
        if idle {
            w.idle.observe(entries, now);
        }
        let since = |e: &Entry| {
            if idle {
                policy::idle_since(e, &w.idle, now)
            } else {
                w.restored
                    .get(&e.net)
                    .map_or(e.tzero, |s| (*s).min(e.tzero))
            }
        };
        policy::decide(entries, ttl, now, since, keep)
    }

    /// Lines for the entries that left the table without this daemon:
    /// expired by the kernel where it times entries out itself
    /// (nftables), else removed by someone (pfknock revoke, pfctl -T
    /// delete). A removal a pfknock command noted was logged by that
    /// command.
    fn vanished(
        &mut self,
        i: usize,
        entries: &[Entry],
        level: Level,
        ttl_s: Secs,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        // Both in address order: looked up in order, said in order.
        let present: BTreeSet<Net> = entries.iter().map(|e| e.net).collect();
        let w = &self.watches[i];
        let mut vanished: Vec<(Net, i64)> = w
            .known
            .iter()
            .filter(|(n, _)| !present.contains(n))
            .map(|(n, t)| (*n, *t))
            .collect();
        vanished.retain(|(n, _)| !self.claims.claims(&w.named.table, n));
        for (n, since) in vanished {
            let l = if self.refreshes {
                w.line("expired", &n, &format!("ttl={ttl_s}"))
            } else {
                let age = Secs(policy::age(now, since));
                w.line("removed", &n, &format!("age={age} ttl={ttl_s}"))
            };
            out.push(Action::Log(level, l));
        }
    }

    /// What the daemon knows of table `i` after a listing: the entries
    /// left, since when each counts, and when the next is due.
    fn remember(&mut self, i: usize, entries: &[Entry], gone: &HashSet<Net>, due: Option<i64>) {
        let w = &mut self.watches[i];
        let restored = std::mem::take(&mut w.restored);
        w.known = entries
            .iter()
            .filter(|e| !gone.contains(&e.net))
            .map(|e| {
                let since = restored.get(&e.net).map_or(e.tzero, |s| (*s).min(e.tzero));
                (e.net, since)
            })
            .collect();
        w.restored = restored
            .into_iter()
            .filter(|(n, _)| w.known.contains_key(n))
            .collect();
        w.count = Some(w.known.len() as u64);
        w.next_due = due;
        for n in gone {
            w.idle.forget(n);
        }
    }
}
