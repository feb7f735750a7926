//! The daemon on pf, which tells nothing as it happens: poll the anchors'
//! table statistics, list only the tables whose count or packet counter
//! moved or that have an entry due, and expire, renew, restore and log from
//! what the listing shows.
#![forbid(unsafe_code)]

use std::collections::HashMap;

use super::*;

impl<T: Tables, L: Loader, G: Log> Daemon<T, L, G> {
    pub(super) fn poll(&mut self, now: i64, force: bool) {
        let stats = match self.read_stats(now) {
            Some(s) => s,
            None => return,
        };
        self.note_full_sets();
        self.pool_tick(now);
        for i in 0..self.watches.len() {
            let w = &self.watches[i];
            let Some(st) = stats.get(&w.named.table) else {
                if matches!(w.named.kind, Kind::Expire)
                    && self.warned_missing.insert(w.named.table.clone())
                {
                    self.log.log(
                        Level::Warning,
                        &format!("{}: no such table; will look again", w.named.table),
                    );
                }
                continue;
            };
            let need = force
                || w.force
                || !w.listed
                || w.count != Some(st.count)
                || w.next_due.is_some_and(|d| now >= d)
                || (w.named.mode == ExpireMode::Idle && w.packets != Some(st.packets))
                || (w.named.mode == ExpireMode::Idle && self.caps.refreshes_entries);
            if !need {
                continue;
            }
            let packets = st.packets;
            if let Err(e) = self.visit(i, now, packets) {
                let msg = format!("{}: {e}", self.watches[i].named.table);
                self.fail(Level::Err, &msg, now);
                // List it again next poll: what it holds is not known yet.
                let w = &mut self.watches[i];
                w.force = true;
            }
        }
    }

    /// Table statistics of every anchor the daemon watches, restoring the
    /// anchor first if its tables are gone. `None` when pf cannot be read.
    pub(super) fn read_stats(&mut self, now: i64) -> Option<HashMap<TableRef, TableStat>> {
        let mut anchors: Vec<AnchorName> = self
            .watches
            .iter()
            .map(|w| w.named.table.anchor.clone())
            .collect();
        anchors.sort();
        anchors.dedup();
        let mut out = HashMap::new();
        for a in anchors {
            let ours = a == self.cfg.anchor && !self.cfg.services.is_empty() && !self.held;
            let mut stats = self.stats_of(&a);
            let broken = ours && self.anchor_broken(&stats);
            let altered = ours && !broken && self.tables.intact(&self.cfg) == Some(false);
            if broken || altered {
                match self.load_anchor() {
                    Ok(()) => {
                        let why = if broken {
                            "its tables were gone (pf flushed?)"
                        } else {
                            "its rules or sets had been changed"
                        };
                        let back = self.put_back(&a, now);
                        let back = if back > 0 {
                            format!(": put back {back} authorizations with the time they had left")
                        } else {
                            String::new()
                        };
                        self.log.log(
                            Level::Notice,
                            &format!("anchor {} restored: {why}{back}", a.as_str()),
                        );
                        self.check_pf();
                        stats = self.stats_of(&a);
                    }
                    Err(e) => {
                        let msg =
                            format!("anchor {} is gone and cannot be restored: {e}", a.as_str());
                        self.fail(Level::Err, &msg, now);
                        continue;
                    }
                }
            }
            match stats {
                Ok(v) => {
                    for s in v {
                        if !s.active {
                            continue;
                        }
                        let Ok(name) = crate::name::TableName::new(&s.name) else {
                            continue;
                        };
                        out.insert(TableRef::new(&a, &name), s);
                    }
                }
                // Not our anchor, and not there: nothing to watch yet.
                Err(e) if e.outcome().is_some_and(|o| o.is_missing()) => {}
                Err(e) => {
                    let msg = format!("anchor {}: {e}", a);
                    self.fail(Level::Err, &msg, now);
                    return None;
                }
            }
        }
        Some(out)
    }

    /// After the anchor came back empty: add again every authorization the
    /// daemon knew of that has time left, keeping its age (the kernel
    /// stamps it now; `restored` keeps the old stamp). Returns how many.
    pub(super) fn put_back(&mut self, anchor: &AnchorName, now: i64) -> usize {
        let mut back = 0;
        for i in 0..self.watches.len() {
            let w = &self.watches[i];
            if w.role() != Some(Role::Auth) || w.named.table.anchor != *anchor {
                continue;
            }
            let Some(ttl) = w.named.ttl else { continue };
            let table = w.named.table.clone();
            let mut list: Vec<(Net, i64)> = w
                .known
                .iter()
                .filter(|(_, since)| policy::age(now, **since) < ttl.0)
                .map(|(n, since)| (*n, *since))
                .collect();
            // What a command removed stays removed.
            if let Some(notes) = self.notes.as_mut() {
                list.retain(|(n, _)| !notes.claims(&table, n));
            }
            list.sort();
            let timed: Vec<(Net, u64)> = list
                .iter()
                .map(|(n, since)| (*n, ttl.0.saturating_sub(policy::age(now, *since))))
                .collect();
            match self.tables.add_timed(&table, &timed) {
                Ok(n) => back += n,
                Err(e) => {
                    let msg = format!("{table}: putting back authorizations: {e}");
                    self.fail(Level::Err, &msg, now);
                    continue;
                }
            }
            let w = &mut self.watches[i];
            w.known = list.iter().copied().collect();
            w.restored = list.into_iter().collect();
            w.count = None;
        }
        back
    }

    /// Log once when a set fills up (knocks are no longer counted into it)
    /// and once when it has room again.
    pub(super) fn note_full_sets(&mut self) {
        let now: Vec<(String, u64)> = self.tables.full_sets();
        for (name, size) in &now {
            if self.full.insert(name.clone()) {
                self.log.log(
                    Level::Warning,
                    &format!(
                        "set {name} is full ({size} elements): knocks it would take are not \
                         counted until entries expire; raise the service's size"
                    ),
                );
            }
        }
        let gone: Vec<String> = self
            .full
            .iter()
            .filter(|n| !now.iter().any(|(m, _)| m == *n))
            .cloned()
            .collect();
        for name in gone {
            self.full.remove(&name);
            self.log
                .log(Level::Notice, &format!("set {name} has room again"));
        }
    }

    pub(super) fn stats_of(&mut self, a: &AnchorName) -> Result<Vec<TableStat>> {
        self.tables.table_stats(a)
    }

    pub(super) fn anchor_broken(&self, stats: &Result<Vec<TableStat>>) -> bool {
        match stats {
            Err(e) if e.outcome().is_some_and(|o| o.is_missing()) => true,
            Err(_) => false,
            Ok(v) => self.watches.iter().filter(|w| w.role().is_some()).any(|w| {
                !v.iter()
                    .any(|s| s.active && s.name == w.named.table.name.as_str())
            }),
        }
    }

    pub(super) fn visit(&mut self, i: usize, now: i64, packets: u64) -> Result<()> {
        let table = self.watches[i].named.table.clone();
        let entries = self.tables.entries(&table)?;
        if self.watches[i].role() == Some(Role::Renew) {
            self.renew(i, &entries, now)?;
        } else if self.watches[i].swept() {
            if self.watches[i].named.kind == Kind::Hold {
                self.reset_held(i, &entries)?;
            }
            self.expire(i, &entries, now)?;
        } else if self.watches[i].named.kind == Kind::Close {
            self.close_knocked(i, &entries, now)?;
        }
        let w = &mut self.watches[i];
        w.packets = Some(packets);
        w.listed = true;
        w.force = false;
        Ok(())
    }

    /// Hosts new in a hold table knocked a wrong port (pf overloaded them
    /// there): take them out of the service's stage tables, so that their
    /// progress starts over once the hold ends. The anchor's block rule
    /// keeps their knocks out meanwhile.
    pub(super) fn reset_held(&mut self, i: usize, entries: &[Entry]) -> Result<()> {
        let fresh: Vec<Net> = entries
            .iter()
            .map(|e| e.net)
            .filter(|n| !self.watches[i].known.contains_key(n))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let svc = self.watches[i].named.service.clone();
        for j in 0..self.watches.len() {
            let w = &self.watches[j];
            if w.named.service != svc || !matches!(w.role(), Some(Role::Stage(_))) {
                continue;
            }
            let table = w.named.table.clone();
            self.tables.delete(&table, &fresh)?;
            let w = &mut self.watches[j];
            for n in &fresh {
                w.known.remove(n);
            }
        }
        for n in &fresh {
            let l = format!(
                "held {n} for service {}: a wrong knock; its progress starts over",
                svc.as_deref().unwrap_or("?")
            );
            self.log.log(Level::Debug, &l);
        }
        Ok(())
    }

    /// Hosts in a close table knocked the close port (pf overloaded them
    /// there): take them out of the service's authorized table and its
    /// stage tables, log each that was authorized, and empty the table.
    pub(super) fn close_knocked(&mut self, i: usize, entries: &[Entry], now: i64) -> Result<()> {
        let nets: Vec<Net> = entries.iter().map(|e| e.net).collect();
        if nets.is_empty() {
            return Ok(());
        }
        let svc = self.watches[i].named.service.clone();
        let mut lines = Vec::new();
        for j in 0..self.watches.len() {
            let w = &self.watches[j];
            if w.named.service != svc || !matches!(w.role(), Some(Role::Auth | Role::Stage(_))) {
                continue;
            }
            let table = w.named.table.clone();
            if w.role() == Some(Role::Auth) {
                let ttl = w.named.ttl.unwrap_or(Secs(0));
                for n in &nets {
                    if let Some(since) = w.known.get(n) {
                        let extra =
                            format!("age={} ttl={ttl} by knock", Secs(policy::age(now, *since)));
                        lines.push(self.line("closed", n, w, &extra));
                    }
                }
            }
            self.tables.delete(&table, &nets)?;
            let w = &mut self.watches[j];
            for n in &nets {
                w.known.remove(n);
                w.restored.remove(n);
                w.idle.forget(n);
            }
            w.count = None;
        }
        let lines_said = !lines.is_empty();
        for l in lines {
            self.log.log(Level::Info, &l);
        }
        if !lines_said {
            let l = format!(
                "close knock for service {}: no authorized host among {} knocker(s)",
                svc.as_deref().unwrap_or("?"),
                nets.len()
            );
            self.log.log(Level::Debug, &l);
        }
        let table = self.watches[i].named.table.clone();
        self.tables.delete(&table, &nets)?;
        let w = &mut self.watches[i];
        w.known.clear();
        w.count = Some(0);
        Ok(())
    }

    /// Hosts in the renewal table knocked again while authorized: give
    /// their authorization a fresh time stamp, then empty the table.
    pub(super) fn renew(&mut self, i: usize, entries: &[Entry], now: i64) -> Result<()> {
        let w = &self.watches[i];
        let svc = w.named.service.clone();
        let Some(a) = self
            .watches
            .iter()
            .position(|x| x.named.service == svc && x.role() == Some(Role::Auth))
        else {
            return Ok(());
        };
        let nets: Vec<Net> = entries.iter().map(|e| e.net).collect();
        if !nets.is_empty() {
            let auth = self.watches[a].named.table.clone();
            let (present, absent): (Vec<Net>, Vec<Net>) = nets
                .iter()
                .partition(|n| self.watches[a].known.contains_key(n));
            self.tables.renew(&auth, &present)?;
            let added = if absent.is_empty() {
                0
            } else {
                self.tables.add(&auth, &absent)?
            };
            let ttl = self.watches[a].named.ttl.unwrap_or(Secs(0));
            for n in &present {
                let l = self.line("renewed", n, &self.watches[a], &format!("ttl={ttl}"));
                self.log.log(Level::Info, &l);
            }
            if added > 0 {
                for n in &absent {
                    let l = self.line("authorized", n, &self.watches[a], &format!("ttl={ttl}"));
                    self.log.log(Level::Info, &l);
                }
            }
            let aw = &mut self.watches[a];
            for n in &present {
                aw.idle.forget(n);
                aw.restored.remove(n);
            }
            aw.known.extend(absent.iter().map(|n| (*n, now)));
            aw.force = true;
            let renew_t = self.watches[i].named.table.clone();
            self.tables.delete(&renew_t, &nets)?;
        }
        let w = &mut self.watches[i];
        w.count = Some(0);
        w.known.clear();
        Ok(())
    }

    pub(super) fn expire(&mut self, i: usize, entries: &[Entry], now: i64) -> Result<()> {
        let w = &self.watches[i];
        let ttl = w.named.ttl.expect("swept").0;
        // Where the firewall refreshes entries on traffic, its time stamp is
        // the last activity: idle expiry is age since then.
        let idle = w.named.mode == ExpireMode::Idle && !self.caps.refreshes_entries;
        let d = self.decide(i, entries, ttl, idle, now);
        let gone: Vec<Net> = d.expire.iter().map(|x| x.net).collect();
        let deleted = if gone.is_empty() {
            0
        } else {
            self.tables.delete(&self.watches[i].named.table, &gone)?
        };

        let w = &self.watches[i];
        // A stage that lapses is a sequence left unfinished, a hold that
        // ends a wrong knock's wait: not worth a line.
        let level = if matches!(w.role(), Some(Role::Stage(_))) || w.named.kind == Kind::Hold {
            Level::Debug
        } else {
            Level::Info
        };
        let ttl_s = Secs(ttl);
        let mut lines = Vec::new();
        if w.listed && w.role() == Some(Role::Auth) {
            for e in entries {
                if !w.known.contains_key(&e.net) && !gone.contains(&e.net) {
                    lines.push((
                        Level::Info,
                        self.line("authorized", &e.net, w, &format!("ttl={ttl_s}")),
                    ));
                }
            }
        }
        for x in &d.expire {
            let what = if idle { "idle" } else { "age" };
            lines.push((
                level,
                self.line(
                    "expired",
                    &x.net,
                    w,
                    &format!("{what}={} ttl={ttl_s}", Secs(x.age)),
                ),
            ));
        }
        lines.extend(self.vanished(i, entries, level, ttl_s, now));
        let w = &self.watches[i];
        for (lv, l) in lines {
            self.log.log(lv, &l);
        }
        if deleted < gone.len() {
            self.log.log(
                Level::Debug,
                &format!(
                    "{}: {} of {} expired entries were already gone",
                    w.named.table,
                    gone.len() - deleted,
                    gone.len()
                ),
            );
        }
        self.remember(i, entries, &gone, d.next_due);
        Ok(())
    }

    /// What expires of table `i` and when the next entry is due: by age
    /// since the time stamp (or the restored one), or by idle time; the
    /// allow list never.
    fn decide(
        &mut self,
        i: usize,
        entries: &[Entry],
        ttl: u64,
        idle: bool,
        now: i64,
    ) -> policy::Decision {
        // A hold ends for everybody, allowed hosts too.
        let svc = (self.watches[i].named.kind != Kind::Hold)
            .then(|| self.service_of(&self.watches[i]).cloned())
            .flatten();
        let keep = |n: &Net| svc.as_ref().is_some_and(|s| s.allows(n));
        if idle {
            self.watches[i].idle.observe(entries, now);
        }
        let w = &self.watches[i];
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
    ) -> Vec<(Level, String)> {
        let present: HashSet<Net> = entries.iter().map(|e| e.net).collect();
        let mut vanished: Vec<(Net, i64)> = self.watches[i]
            .known
            .iter()
            .filter(|(n, _)| !present.contains(n))
            .map(|(n, t)| (*n, *t))
            .collect();
        vanished.sort();
        if let Some(notes) = self.notes.as_mut() {
            let table = &self.watches[i].named.table;
            vanished.retain(|(n, _)| !notes.claims(table, n));
        }
        let w = &self.watches[i];
        vanished
            .iter()
            .map(|(n, since)| {
                let l = if self.caps.refreshes_entries {
                    self.line("expired", n, w, &format!("ttl={ttl_s}"))
                } else {
                    let age = Secs(policy::age(now, *since));
                    self.line("removed", n, w, &format!("age={age} ttl={ttl_s}"))
                };
                (level, l)
            })
            .collect()
    }

    /// What the daemon knows of table `i` after a listing: the entries
    /// left, since when each counts, and when the next is due.
    fn remember(&mut self, i: usize, entries: &[Entry], gone: &[Net], next_due: Option<i64>) {
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
        w.next_due = next_due;
        for n in gone {
            w.idle.forget(n);
        }
    }
}
