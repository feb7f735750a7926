//! What the machine does the same way whether it decides on the kernel's
//! events (nftables) or polls (pf; nftables once its events are lost):
//! follow pfknock's own commands, take a new config, forget an unloaded
//! anchor, rotate knock ports at step boundaries, say when it is next due
//! and what it holds (SIGINFO).
#![forbid(unsafe_code)]

use super::{Action, Ctx, Machine, Query, Step, Then, Write, af, meter_service, ms};
use crate::config::Config;
use crate::daemon::lines::Level;
use crate::name::{Af, Net, Secs};
use crate::names::nft_set_of;
use crate::policy;
use crate::tables::TableRef;

impl Machine {
    /// A machine that polls the tables `cfg` names; `refreshes`: the
    /// firewall refreshes entries itself (nftables).
    pub fn polling(cfg: &Config, refreshes: bool) -> Self {
        Machine {
            polls: super::Polls::new(cfg, refreshes),
            ..Machine::default()
        }
    }

    /// Decide on the kernel's events from now on (they read the sets by
    /// themselves: `resync`).
    pub fn use_events(&mut self) {
        self.events = true;
    }

    /// Does the machine poll?
    pub fn polls(&self) -> bool {
        !self.events
    }

    /// Follow what a pfknock verb changed (`now` in seconds), without a
    /// line: the verb's audit lines said it.
    pub fn follow(&mut self, cx: &Ctx, c: &crate::verbs::Change, now: i64) -> Vec<Action> {
        use crate::verbs::Change;
        if !self.events {
            self.polls.follow(c, now);
            return Vec::new();
        }
        let mut out = self.say_all(cx, ms(now));
        let table = match c {
            Change::Added(t, _) | Change::Removed(t, _) | Change::Cleared(t) => t,
        };
        let Some(s) = cx.cfg.services.iter().find(|s| s.table == table.name) else {
            return out;
        };
        match c {
            Change::Added(_, n) if Net::host(n.addr()) == *n => {
                let set = nft_set_of(s.table.as_str(), af(n.addr()));
                // From the start of the second: early, never late (the
                // deadline's look-up then finds the kernel's own).
                let now = ms(now);
                out.extend(self.track(cx, &set, n.addr(), now, now + ms(s.ttl.0 as i64)));
            }
            Change::Removed(_, n) => {
                let set = nft_set_of(s.table.as_str(), af(n.addr()));
                self.forget(cx, &set, n.addr(), &mut out);
            }
            Change::Cleared(_) => {
                for a in [Af::V4, Af::V6] {
                    let set = nft_set_of(s.table.as_str(), a);
                    out.extend(self.forget_set(cx, &set));
                }
            }
            Change::Added(..) => {}
        }
        out
    }

    /// A new config (`old` before it) was loaded at `now` (seconds): each
    /// table it still names keeps what was known of it; with events,
    /// deadlines follow a changed ttl and the reload's lost knocks are
    /// watched for (`reload_ended` when it is over), and the sets it
    /// deleted are forgotten (`gone_with_reload`: its lines); on pf the
    /// tables of the services it removed are emptied (`empty_removed`).
    /// A reload that loads nothing (`reload_loads`) says nothing went.
    pub fn reloaded(&mut self, old: &Config, new: &Config, now: i64) -> Vec<Action> {
        self.polls.reload(new);
        // Any reading it was loaded during is over (`deleted_while_read`).
        self.dropped.clear();
        let loaded = reload_loads(old, new);
        if !self.events {
            return if loaded {
                empty_removed(old, new)
            } else {
                Vec::new()
            };
        }
        self.retime(old, new, ms(now));
        self.reload_began(now);
        if !loaded {
            return Vec::new();
        }
        self.gone_with_reload(old, new)
    }

    /// The anchor was unloaded (its authorizations went with it): forget
    /// them. How many went.
    pub fn unloaded(&mut self, cx: &Ctx) -> usize {
        let mut n = self.polls.clear(&cx.cfg.anchor);
        if self.events {
            n += self.clear();
        }
        n
    }

    /// The next deadline (ms).
    pub fn next_due_ms(&self) -> Option<i64> {
        if self.events {
            self.next_due()
        } else {
            self.polls.next_due().map(ms)
        }
    }

    /// Entries known of a table.
    pub fn known(&self, t: &TableRef) -> Option<usize> {
        if self.events {
            return Some(self.count(t.name.as_str()).0);
        }
        self.polls
            .watches
            .iter()
            .find(|w| w.named.table == *t)
            .map(|w| w.known.len())
    }

    /// SIGINFO (`now` in seconds): one line per table swept, with its
    /// entries, its next expiry and the sets of it that are full; one per
    /// pf pool at its limit. While the sets are being read (`reading`),
    /// the entries are those known so far, and the line says so.
    pub fn status(&self, cx: &Ctx, now: i64, reading: bool) -> Vec<Action> {
        let mut out = Vec::new();
        for w in self.polls.watches.iter().filter(|w| w.swept()) {
            let name = w.named.table.name.as_str();
            let (n, due) = if self.events {
                self.count(name)
            } else {
                (w.known.len(), w.next_due)
            };
            let mut full: Vec<&str> = self
                .polls
                .full
                .iter()
                .chain(&self.full)
                .chain(self.looks.keys())
                .filter(|set| {
                    [Af::V4, Af::V6]
                        .iter()
                        .any(|a| **set == nft_set_of(name, *a))
                        || meter_service(cx.cfg, set).is_some_and(|(s, _)| s.table.as_str() == name)
                })
                .map(|s| s.as_str())
                .collect();
            // A full set whose room is being checked is in both.
            full.sort_unstable();
            full.dedup();
            let full = match full.len() {
                0 => String::new(),
                1 => format!(", set {} full", full[0]),
                _ => format!(", sets {} full", full.join(" and ")),
            };
            let due = due.map_or("none".to_owned(), |d| {
                format!("in {}", Secs(policy::age(d, now)))
            });
            let so_far = if reading {
                " so far (reading the sets)"
            } else {
                ""
            };
            let line = format!(
                "status {}: {n} entries{so_far}, next expiry {due}{full}",
                w.named.table
            );
            out.push(Action::Log(Level::Info, line));
        }
        if !self.events {
            out.extend(self.polls.waiting(now));
        }
        for (pool, (used, limit)) in &self.polls.pools.full {
            out.push(Action::Log(
                Level::Info,
                format!(
                    "status: pf's {} limit reached ({used} of {limit})",
                    pool.limit_name()
                ),
            ));
        }
        out
    }

    /// When the next step of a rotating service begins (seconds), as the
    /// config says after a start or a reload.
    pub fn step_at(&mut self, at: Option<i64>) {
        self.step = at;
    }

    pub fn next_step(&self) -> Option<i64> {
        self.step
    }

    /// At a step boundary (`now` in seconds): the new step's ports are
    /// loaded, except while the anchor is held unloaded, which only moves
    /// on to the next boundary. The ports themselves are the secret of
    /// the step: never said, at any level.
    pub fn rotate(&mut self, cx: &Ctx, now: i64) -> Vec<Action> {
        if self.step.is_none_or(|d| now < d) {
            return Vec::new();
        }
        let q = Query::Rotate {
            at: now,
            load: !cx.held,
        };
        vec![Action::Ask(q, Then::of(Step::Rotated))]
    }

    /// The step's ports are loaded (or stay, held): on to the next
    /// boundary. A failure keeps the ports loaded, is said, and is tried
    /// again a poll later (`now` in ms).
    pub(super) fn rotated(
        &mut self,
        cx: &Ctx,
        r: Result<Option<i64>, String>,
        now: i64,
    ) -> Vec<Action> {
        match r {
            Ok(next) => {
                self.step = next;
                Vec::new()
            }
            Err(e) => {
                self.step =
                    Some(now.div_euclid(1000) + (cx.cfg.poll.0 as i64).div_euclid(1000).max(1));
                let msg = format!("rotate: {e}: keeping the knock ports loaded");
                vec![Action::Fail(Level::Err, msg)]
            }
        }
    }

    /// Look whether pf is enabled and the main ruleset calls the anchor:
    /// where either is not so, the knock rules do nothing.
    pub fn check_pf(&self, cx: &Ctx) -> Vec<Action> {
        Self::check_pf_query(cx)
    }

    pub(super) fn check_pf_query(cx: &Ctx) -> Vec<Action> {
        let anchor = (!cx.cfg.services.is_empty()).then(|| cx.cfg.anchor.clone());
        vec![Action::Ask(
            Query::PfState { anchor },
            Then::of(Step::PfState),
        )]
    }

    /// pf disabled: said once until it is enabled again. The anchor not
    /// called: said at each look (a start, a reload, a restore).
    pub(super) fn pf_state(
        &mut self,
        cx: &Ctx,
        enabled: Option<bool>,
        referenced: Option<Result<bool, String>>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        match enabled {
            Some(false) if !self.warned_disabled => {
                self.warned_disabled = true;
                out.push(Action::Log(
                    Level::Warning,
                    "pf is disabled: knocks open nothing until pfctl -e".to_owned(),
                ));
            }
            Some(true) => self.warned_disabled = false,
            _ => {}
        }
        match referenced {
            Some(Ok(false)) => out.push(Action::Log(
                Level::Err,
                format!(
                    "the main ruleset has no anchor \"{}\" rule: knocks open nothing until pf.conf calls the anchor",
                    cx.cfg.anchor.as_str()
                ),
            )),
            Some(Err(e)) => out.push(Action::Log(
                Level::Warning,
                format!("cannot read the main ruleset: {e}"),
            )),
            Some(Ok(true)) | None => {}
        }
        out
    }
}

/// Does a reload from `old` to `new` load the anchor? Where `new` has
/// services; and where `old` had some in the same anchor, which is then
/// loaded empty: its knock rules go, since nothing would expire what they
/// let in. Otherwise a config of `[[expire]]` tables only loads nothing.
pub fn reload_loads(old: &Config, new: &Config) -> bool {
    !new.services.is_empty() || (!old.services.is_empty() && old.anchor == new.anchor)
}

/// The tables of services a reload removed from the anchor (pf keeps a
/// `persist` table the ruleset no longer names, with its entries, where
/// no rule reads them and no poll expires them; re-added later, they would
/// come back with every host they held): each service's emptied, in one
/// request. Not a table the new config still names (another service's,
/// an `[[expire]]` table), nor a const allow list, nor those of an anchor
/// the new config left (the reload says to flush it).
fn empty_removed(old: &Config, new: &Config) -> Vec<Action> {
    use crate::catalogue::{Kind, named_tables};
    use crate::config::Role;
    let stays: std::collections::HashSet<TableRef> =
        named_tables(new).into_iter().map(|n| n.table).collect();
    let mut by: Vec<(String, Vec<(TableRef, bool)>)> = Vec::new();
    for n in named_tables(old) {
        let ours = matches!(n.kind, Kind::Service(r) if r != Role::Allow)
            || matches!(n.kind, Kind::Hold | Kind::Close);
        if !ours || n.table.anchor != new.anchor || stays.contains(&n.table) {
            continue;
        }
        let Some(service) = n.service else { continue };
        let auth = matches!(n.kind, Kind::Service(Role::Auth | Role::Renew));
        match by.iter_mut().find(|(s, _)| *s == service) {
            Some((_, v)) => v.push((n.table, auth)),
            None => by.push((service, vec![(n.table, auth)])),
        }
    }
    by.into_iter()
        .map(|(service, tables)| {
            let table = (tables.iter())
                .find(|(t, _)| old.service(&service).is_some_and(|s| s.table == t.name))
                .map_or_else(|| tables[0].0.clone(), |(t, _)| t.clone());
            let auth = tables.iter().map(|(_, a)| *a).collect();
            let writes = tables.into_iter().map(|(t, _)| Write::Empty(t)).collect();
            let then = Then::of(Step::Emptied(Emptied {
                service,
                table,
                auth,
            }));
            Action::Ask(Query::Writes(writes), then)
        })
        .collect()
}

/// A removed service's tables, being emptied (`empty_removed`): its
/// name, its authorized table, and which of the tables emptied hold
/// authorizations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Emptied {
    service: String,
    table: TableRef,
    auth: Vec<bool>,
}

impl Emptied {
    /// Emptied: how many authorizations went, or why a table could not be
    /// emptied.
    pub(super) fn said(&self, done: Vec<Result<usize, String>>) -> Vec<Action> {
        let (service, table) = (&self.service, &self.table);
        let mut n = 0;
        for (r, a) in done.into_iter().zip(&self.auth) {
            match r {
                Ok(k) if *a => n += k,
                Ok(_) => {}
                Err(e) => {
                    let msg =
                        format!("table {table}: emptying the tables of service {service}: {e}");
                    return vec![Action::Log(Level::Err, msg)];
                }
            }
        }
        if n == 0 {
            return Vec::new();
        }
        let msg = format!(
            "table {table} of service {service} emptied by the reload: {n} authorizations went \
             with it"
        );
        vec![Action::Log(Level::Notice, msg)]
    }
}
