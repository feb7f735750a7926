//! `pfknock run`: load the anchor, then expire entries on their deadlines,
//! renew hosts that knock again, log every authorization and expiry, and
//! restore the anchor when something flushes it.
//!
//! `Daemon` is the state machine: every step takes `now` and works on
//! `Tables`, a `Loader` and a `Log`, so tests drive it with the kernel model
//! and a fake clock. `run` is the loop around it: signals forwarded from a
//! thread over a channel, and a wait until the next deadline or poll.
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::cmd::{Kind, Named, named_tables};
use crate::config::{Config, Role, Warning};
use crate::error::{Error, Result};
use crate::name::{AnchorName, ExpireMode, Net, Secs};
use crate::policy::{self, IdleTracker};
use crate::render;
use crate::tables::{Entry, TableRef, TableStat, Tables};

/// What a signal asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// SIGHUP: re-read the config, reload the anchor.
    Reload,
    /// SIGUSR1: sweep every table now.
    Sweep,
    /// SIGINFO: log a status summary.
    Info,
    /// SIGTERM, SIGINT: exit cleanly.
    Stop(i32),
}

/// Renders and loads the config's rules: pfctl(8) on a BSD, nft(8) on
/// Linux.
pub trait Loader {
    fn load(&mut self, cfg: &Config, source: &str) -> Result<()>;
    /// Does the main ruleset call the anchor?
    fn referenced(&mut self, anchor: &AnchorName) -> Result<bool>;
    /// Is pf enabled? `None` when it cannot be told.
    fn enabled(&mut self) -> Option<bool>;
    /// Take the knock rules away. On pf the main ruleset then decides
    /// (its `block` keeps the ports closed); on nftables the table is left
    /// closed: the protected ports drop all but the allow list.
    fn unload(&mut self, cfg: &Config) -> Result<()>;
}

/// The real loader.
pub struct Pfctl;

impl Loader for Pfctl {
    fn load(&mut self, cfg: &Config, source: &str) -> Result<()> {
        crate::pfctl::load(&cfg.anchor, &render::pf::render(cfg, source))
    }
    fn referenced(&mut self, anchor: &AnchorName) -> Result<bool> {
        crate::pfctl::anchor_referenced(anchor)
    }
    fn enabled(&mut self) -> Option<bool> {
        crate::pfctl::enabled()
    }
    fn unload(&mut self, cfg: &Config) -> Result<()> {
        crate::pfctl::unload(&cfg.anchor)
    }
}

/// Priorities, as syslog's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Err,
    Warning,
    Notice,
    Info,
    Debug,
}

pub trait Log {
    fn log(&mut self, level: Level, msg: &str);
}

/// How often an error that keeps coming back is logged again.
pub const REPEAT_EVERY: i64 = 300;

/// Errors that come back every poll (a table that cannot be read, an
/// anchor that cannot be restored): each is logged when it first occurs,
/// then at most every `REPEAT_EVERY` seconds with the number of repeats,
/// and once more when a poll goes by without it.
#[derive(Default)]
struct Repeats {
    /// Message → (repeats since it was last logged, when it was logged).
    open: HashMap<String, (u64, i64)>,
    /// Messages seen during the current poll.
    seen: HashSet<String>,
}

impl Repeats {
    /// The line to log for `msg` now, if any.
    fn report(&mut self, msg: &str, now: i64) -> Option<String> {
        self.seen.insert(msg.to_owned());
        match self.open.get_mut(msg) {
            None => {
                self.open.insert(msg.to_owned(), (0, now));
                Some(msg.to_owned())
            }
            Some((n, last)) => {
                *n += 1;
                if now - *last < REPEAT_EVERY {
                    return None;
                }
                let line = format!("{msg} (again, {} times in {} s)", *n, now - *last);
                *n = 0;
                *last = now;
                Some(line)
            }
        }
    }

    /// End of a poll: the lines for errors that did not come back.
    fn cleared(&mut self) -> Vec<String> {
        let gone: Vec<String> = self
            .open
            .keys()
            .filter(|m| !self.seen.contains(*m))
            .cloned()
            .collect();
        self.seen.clear();
        gone.into_iter()
            .map(|m| {
                let (n, _) = self.open.remove(&m).unwrap_or_default();
                if n > 0 {
                    format!("cleared after {n} more time(s): {m}")
                } else {
                    format!("cleared: {m}")
                }
            })
            .collect()
    }
}

/// A table the daemon watches, and what it knows of it.
struct Watch {
    named: Named,
    /// Entry count and table packet counter at the last listing.
    count: Option<u64>,
    packets: Option<u64>,
    next_due: Option<i64>,
    /// Addresses present at the last listing.
    known: HashSet<Net>,
    idle: IdleTracker,
    listed: bool,
    force: bool,
}

impl Watch {
    fn new(named: Named) -> Self {
        Watch {
            named,
            count: None,
            packets: None,
            next_due: None,
            known: HashSet::new(),
            idle: IdleTracker::default(),
            listed: false,
            force: false,
        }
    }

    fn role(&self) -> Option<Role> {
        match self.named.kind {
            Kind::Service(r) => Some(r),
            Kind::Expire => None,
        }
    }

    /// Does this table get swept (expired) by the daemon?
    fn swept(&self) -> bool {
        self.named.ttl.is_some()
    }
}

/// The daemon's state.
pub struct Daemon<T, L, G> {
    pub cfg: Config,
    path: PathBuf,
    pub tables: T,
    loader: L,
    pub log: G,
    watches: Vec<Watch>,
    warned_disabled: bool,
    warned_missing: HashSet<TableRef>,
    /// Sets logged as full, until they have room again.
    full: HashSet<String>,
    /// Errors that repeat poll after poll, logged once and then rarely.
    repeats: Repeats,
}

/// The tables to watch. Renewal tables come first, so that a renewal is
/// applied before the sweep of the same tick looks at the authorized
/// table; there are none where the firewall renews by itself.
fn watches_for(cfg: &Config, self_renewing: bool) -> Vec<Watch> {
    let mut named = named_tables(cfg);
    named.sort_by_key(|n| !matches!(n.kind, Kind::Service(Role::Renew)));
    named
        .into_iter()
        .filter(|n| match n.kind {
            Kind::Service(Role::Allow) => false,
            Kind::Service(Role::Renew) => !self_renewing,
            _ => true,
        })
        .map(Watch::new)
        .collect()
}

impl<T: Tables, L: Loader, G: Log> Daemon<T, L, G> {
    /// Load the anchor and take a first look at every table. A failed load
    /// is fatal here (there is nothing running to keep).
    pub fn start(cfg: Config, path: &Path, tables: T, loader: L, log: G, now: i64) -> Result<Self> {
        let mut d = Daemon {
            watches: watches_for(&cfg, tables.refreshes_entries()),
            cfg,
            path: path.to_owned(),
            tables,
            loader,
            log,
            warned_disabled: false,
            warned_missing: HashSet::new(),
            full: HashSet::new(),
            repeats: Repeats::default(),
        };
        if !d.cfg.services.is_empty() {
            d.load_anchor()?;
        }
        d.check_pf();
        d.log.log(
            Level::Notice,
            &format!(
                "started: {} service(s) in anchor {}, {} expire table(s), from {}",
                d.cfg.services.len(),
                d.cfg.anchor.as_str(),
                d.cfg.expires.len(),
                d.path.display()
            ),
        );
        d.tick(now);
        Ok(d)
    }

    fn load_anchor(&mut self) -> Result<()> {
        self.loader
            .load(&self.cfg, &self.path.display().to_string())
    }

    /// Warn when pf is disabled or the main ruleset does not call the
    /// anchor: in both cases the knock rules do nothing.
    fn check_pf(&mut self) {
        match self.loader.enabled() {
            Some(false) if !self.warned_disabled => {
                self.warned_disabled = true;
                self.log.log(
                    Level::Warning,
                    "pf is disabled: knocks open nothing until pfctl -e",
                );
            }
            Some(true) => self.warned_disabled = false,
            _ => {}
        }
        if self.cfg.services.is_empty() {
            return;
        }
        match self.loader.referenced(&self.cfg.anchor) {
            Ok(true) => {}
            Ok(false) => self.log.log(
                Level::Err,
                &format!(
                    "the main ruleset has no anchor \"{}\" rule: knocks open nothing until pf.conf calls the anchor",
                    self.cfg.anchor.as_str()
                ),
            ),
            Err(e) => self.log.log(Level::Warning, &format!("cannot read the main ruleset: {e}")),
        }
    }

    /// When the next table is due, if any.
    pub fn next_due(&self) -> Option<i64> {
        self.watches.iter().filter_map(|w| w.next_due).min()
    }

    fn service_of(&self, w: &Watch) -> Option<&crate::config::Service> {
        w.named.service.as_deref().and_then(|s| self.cfg.service(s))
    }

    fn line(&self, verb: &str, net: &Net, w: &Watch, extra: &str) -> String {
        let t = &w.named.table;
        let mut s = format!(
            "{verb} {net} service={} table={} anchor={}",
            w.named.service.as_deref().unwrap_or("-"),
            t.name,
            if t.anchor.is_main() {
                "-"
            } else {
                t.anchor.as_str()
            }
        );
        if !extra.is_empty() {
            s.push(' ');
            s.push_str(extra);
        }
        s
    }

    /// One poll: read table statistics (one request per anchor), restore
    /// the anchor if it is gone, and list only the tables whose count or
    /// packet counter moved, or that have a deadline due.
    pub fn tick(&mut self, now: i64) {
        self.tick_inner(now, false)
    }

    /// SIGUSR1: list and sweep every table now.
    pub fn sweep(&mut self, now: i64) {
        self.tick_inner(now, true)
    }

    fn tick_inner(&mut self, now: i64, force: bool) {
        self.poll(now, force);
        for line in self.repeats.cleared() {
            self.log.log(Level::Notice, &line);
        }
    }

    /// Log an error that may come back every poll (see `Repeats`).
    fn fail(&mut self, level: Level, msg: &str, now: i64) {
        if let Some(line) = self.repeats.report(msg, now) {
            self.log.log(level, &line);
        }
    }

    fn poll(&mut self, now: i64, force: bool) {
        let stats = match self.read_stats(now) {
            Some(s) => s,
            None => return,
        };
        self.note_full_sets();
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
                || (w.named.mode == ExpireMode::Idle && self.tables.refreshes_entries());
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
    fn read_stats(&mut self, now: i64) -> Option<HashMap<TableRef, TableStat>> {
        let mut anchors: Vec<AnchorName> = self
            .watches
            .iter()
            .map(|w| w.named.table.anchor.clone())
            .collect();
        anchors.sort();
        anchors.dedup();
        let mut out = HashMap::new();
        for a in anchors {
            let ours = a == self.cfg.anchor && !self.cfg.services.is_empty();
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
                        self.log.log(
                            Level::Notice,
                            &format!("anchor {} restored: {why}", a.as_str()),
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
                        if !s.active() {
                            continue;
                        }
                        let Ok(name) = crate::name::TableName::new(&s.name) else {
                            continue;
                        };
                        out.insert(TableRef::new(&a, &name), s);
                    }
                }
                Err(Error::Table {
                    errno: libc::ENOENT,
                    ..
                }) => {}
                Err(e) => {
                    let msg = format!("anchor {}: {e}", a);
                    self.fail(Level::Err, &msg, now);
                    return None;
                }
            }
        }
        Some(out)
    }

    /// Log once when a set fills up (knocks are no longer counted into it)
    /// and once when it has room again.
    fn note_full_sets(&mut self) {
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

    fn stats_of(&mut self, a: &AnchorName) -> Result<Vec<TableStat>> {
        self.tables.table_stats(a)
    }

    fn anchor_broken(&self, stats: &Result<Vec<TableStat>>) -> bool {
        match stats {
            Err(Error::Table {
                errno: libc::ENOENT,
                ..
            }) => true,
            Err(_) => false,
            Ok(v) => self.watches.iter().filter(|w| w.role().is_some()).any(|w| {
                !v.iter()
                    .any(|s| s.active() && s.name == w.named.table.name.as_str())
            }),
        }
    }

    fn visit(&mut self, i: usize, now: i64, packets: u64) -> Result<()> {
        let table = self.watches[i].named.table.clone();
        let entries = self.tables.entries(&table)?;
        if self.watches[i].role() == Some(Role::Renew) {
            self.renew(i, &entries)?;
        } else if self.watches[i].swept() {
            self.expire(i, &entries, now)?;
        }
        let w = &mut self.watches[i];
        w.packets = Some(packets);
        w.listed = true;
        w.force = false;
        Ok(())
    }

    /// Hosts in the renewal table knocked again while authorized: give
    /// their authorization a fresh time stamp, then empty the table.
    fn renew(&mut self, i: usize, entries: &[Entry]) -> Result<()> {
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
            let (present, absent): (Vec<Net>, Vec<Net>) =
                nets.iter().partition(|n| self.watches[a].known.contains(n));
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
            }
            aw.known.extend(absent.iter().copied());
            aw.force = true;
            let renew_t = self.watches[i].named.table.clone();
            self.tables.delete(&renew_t, &nets)?;
        }
        let w = &mut self.watches[i];
        w.count = Some(0);
        w.known.clear();
        Ok(())
    }

    fn expire(&mut self, i: usize, entries: &[Entry], now: i64) -> Result<()> {
        let w = &self.watches[i];
        let ttl = w.named.ttl.expect("swept").0;
        // Where the firewall refreshes entries on traffic, its time stamp is
        // the last activity: idle expiry is age since then.
        let idle = w.named.mode == ExpireMode::Idle && !self.tables.refreshes_entries();
        let svc = self.service_of(w).cloned();
        let keep = |n: &Net| {
            svc.as_ref().is_some_and(|s| {
                s.allow
                    .iter()
                    .any(|a| a.prefix <= n.prefix && a.contains(n.addr))
            })
        };
        if idle {
            self.watches[i].idle.observe(entries, now);
        }
        let w = &self.watches[i];
        let d = policy::decide(
            entries,
            ttl,
            now,
            |e| {
                if idle {
                    w.idle.last_active(&e.net).unwrap_or(now)
                } else {
                    e.tzero
                }
            },
            keep,
        );
        let gone: Vec<Net> = d.expire.iter().map(|x| x.net).collect();
        let deleted = if gone.is_empty() {
            0
        } else {
            self.tables.delete(&w.named.table, &gone)?
        };

        let w = &self.watches[i];
        // A stage that lapses is a sequence left unfinished: not worth a line.
        let level = if matches!(w.role(), Some(Role::Stage(_))) {
            Level::Debug
        } else {
            Level::Info
        };
        let ttl_s = Secs(ttl);
        let mut lines = Vec::new();
        if w.listed && w.role() == Some(Role::Auth) {
            for e in entries {
                if !w.known.contains(&e.net) && !gone.contains(&e.net) {
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
        // Entries that left the table without this daemon: expired by the
        // kernel where it times entries out itself (nftables), else removed
        // by someone (pfknock revoke, pfctl -T delete).
        let present: HashSet<Net> = entries.iter().map(|e| e.net).collect();
        let mut vanished: Vec<&Net> = w.known.iter().filter(|n| !present.contains(n)).collect();
        vanished.sort();
        for n in vanished {
            let l = if self.tables.refreshes_entries() {
                self.line("expired", n, w, &format!("ttl={ttl_s}"))
            } else {
                self.line("removed", n, w, "")
            };
            lines.push((level, l));
        }
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

        let w = &mut self.watches[i];
        w.known = entries
            .iter()
            .map(|e| e.net)
            .filter(|n| !gone.contains(n))
            .collect();
        w.count = Some(w.known.len() as u64);
        w.next_due = d.next_due;
        for n in &gone {
            w.idle.forget(n);
        }
        Ok(())
    }

    /// SIGHUP: re-read the config. A bad config, or one pfctl refuses, is
    /// logged and the running one stays; a good one is loaded atomically and
    /// every table's state carries over.
    pub fn reload(&mut self, now: i64) {
        let (cfg, warnings) = match Config::load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                self.log.log(
                    Level::Err,
                    &format!("reload: {e}: keeping the running configuration"),
                );
                return;
            }
        };
        self.log_warnings(&warnings);
        let old = std::mem::replace(&mut self.cfg, cfg);
        if !self.cfg.services.is_empty()
            && let Err(e) = self.load_anchor()
        {
            self.cfg = old;
            self.log.log(
                Level::Err,
                &format!("reload: {e}: keeping the running configuration"),
            );
            return;
        }
        if old.anchor != self.cfg.anchor && !old.services.is_empty() {
            self.log.log(
                Level::Warning,
                &format!(
                    "anchor {} is still loaded: remove it with pfctl -a {} -F all",
                    old.anchor.as_str(),
                    old.anchor.as_str()
                ),
            );
        }
        let mut carried: HashMap<TableRef, Watch> = self
            .watches
            .drain(..)
            .map(|w| (w.named.table.clone(), w))
            .collect();
        self.watches = watches_for(&self.cfg, self.tables.refreshes_entries())
            .into_iter()
            .map(|fresh| match carried.remove(&fresh.named.table) {
                Some(mut w) => {
                    let changed =
                        w.named.ttl != fresh.named.ttl || w.named.mode != fresh.named.mode;
                    w.named = fresh.named;
                    w.force = changed;
                    w
                }
                None => fresh,
            })
            .collect();
        self.check_pf();
        self.log.log(
            Level::Notice,
            &format!(
                "reloaded {}: {} service(s), {} expire table(s)",
                self.path.display(),
                self.cfg.services.len(),
                self.cfg.expires.len()
            ),
        );
        self.tick(now);
    }

    pub fn log_warnings(&mut self, warnings: &[Warning]) {
        for w in warnings {
            self.log.log(Level::Warning, &w.to_string());
        }
    }

    /// SIGINFO: one line per watched table.
    pub fn status(&mut self, now: i64) {
        let lines: Vec<String> = self
            .watches
            .iter()
            .filter(|w| w.swept())
            .map(|w| {
                format!(
                    "status {}: {} entries, next expiry {}",
                    w.named.table,
                    w.known.len(),
                    w.next_due.map_or("none".to_owned(), |d| format!(
                        "in {}",
                        Secs(policy::age(d, now))
                    ))
                )
            })
            .collect();
        for l in lines {
            self.log.log(Level::Info, &l);
        }
    }

    /// A clean exit: unload the anchor if the config says so.
    pub fn stop(&mut self, signal: &str) {
        if self.cfg.unload && !self.cfg.services.is_empty() {
            match self.loader.unload(&self.cfg) {
                Ok(()) => self.log.log(
                    Level::Notice,
                    &format!("anchor {} unloaded", self.cfg.anchor.as_str()),
                ),
                Err(e) => self.log.log(Level::Err, &format!("unload: {e}")),
            }
        }
        self.log.log(Level::Notice, &format!("exiting on {signal}"));
    }

    /// Entries the daemon knows of per table (for tests and benchmarks).
    pub fn known(&self, t: &TableRef) -> Option<usize> {
        self.watches
            .iter()
            .find(|w| w.named.table == *t)
            .map(|w| w.known.len())
    }
}

// ---- the process ------------------------------------------------------------

/// nftables: `table inet pfknock`, hooked in directly.
pub struct NftLoader(pub crate::nft::Nft);

impl Loader for NftLoader {
    /// The nftables table names no source file: `Nft::load` applies the
    /// table as data, not as text.
    fn load(&mut self, cfg: &Config, _source: &str) -> Result<()> {
        self.0.load(cfg)
    }
    fn referenced(&mut self, _: &AnchorName) -> Result<bool> {
        Ok(true)
    }
    fn enabled(&mut self) -> Option<bool> {
        Some(true)
    }
    fn unload(&mut self, cfg: &Config) -> Result<()> {
        self.0.close(cfg)
    }
}

/// syslog (`crate::syslog`: never blocks), and stderr too when running in the foreground on a terminal
/// (under daemon(8) -S or rc_bg, stderr would feed the same line to syslog
/// a second time).
pub struct SysLog {
    pub stderr: bool,
}

impl Log for SysLog {
    fn log(&mut self, level: Level, msg: &str) {
        let prio = match level {
            Level::Err => libc::LOG_ERR,
            Level::Warning => libc::LOG_WARNING,
            Level::Notice => libc::LOG_NOTICE,
            Level::Info => libc::LOG_INFO,
            Level::Debug => libc::LOG_DEBUG,
        };
        let msg = crate::name::no_controls(msg);
        crate::syslog::log(prio, &msg);
        if self.stderr && level != Level::Debug {
            crate::say!("pfknock: {msg}");
        }
    }
}

/// Where the daemon keeps its pid when `-p` does not say: one daemon per
/// system, whoever starts it.
pub const DEFAULT_PIDFILE: &str = "/var/run/pfknock.pid";

/// A pidfile as pidfile(3) keeps one: opened without following a symbolic
/// link, a regular file, locked for the life of the daemon, and removed at
/// the end only if the path still names the file that was locked.
pub struct Pidfile {
    path: PathBuf,
    file: std::fs::File,
}

impl Pidfile {
    pub fn create(path: &Path) -> Result<Pidfile> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source: std::io::Error| Error::Device {
            path: path.display().to_string(),
            op: "pidfile",
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    Error::Other(format!(
                        "{}: a symbolic link: refusing to write a pidfile through it",
                        path.display()
                    ))
                } else {
                    io(e)
                }
            })?;
        if !f.metadata().map_err(io)?.file_type().is_file() {
            return Err(Error::Other(format!(
                "{}: not a regular file: refusing to use it as a pidfile",
                path.display()
            )));
        }
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = f.read_to_string(&mut pid);
                return Err(Error::Other(format!(
                    "{}: locked: pfknock is already running (pid {})",
                    path.display(),
                    crate::name::shown(pid.trim())
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let p = Pidfile {
            path: path.to_owned(),
            file: f,
        };
        p.write_pid().map_err(io)?;
        Ok(p)
    }

    /// Write this process's pid (again, after detaching).
    pub fn write_pid(&self) -> std::io::Result<()> {
        use std::io::{Seek, Write};
        let mut f = &self.file;
        f.set_len(0)?;
        f.rewind()?;
        writeln!(f, "{}", std::process::id())
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let (Ok(ours), Ok(now)) = (self.file.metadata(), std::fs::symlink_metadata(&self.path))
        else {
            return;
        };
        if now.file_type().is_file() && now.dev() == ours.dev() && now.ino() == ours.ino() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Options of `pfknock run`.
pub struct RunOpts<'a> {
    pub config: &'a Path,
    pub foreground: bool,
    pub pidfile: Option<&'a Path>,
    pub check_only: bool,
}

/// The daemon process, started as a daemon in base is: read and check the
/// config, take the pidfile, open the kernel interface and load the rules,
/// and only then detach, so that every failure up to there reaches stderr
/// and the exit status; after it, syslog. Paths are made absolute first:
/// daemon(3) changes to `/`.
pub fn run(o: RunOpts<'_>) -> Result<()> {
    use std::io::IsTerminal;
    let abs = |p: &Path| {
        std::path::absolute(p).map_err(|source| Error::ConfigFile {
            file: p.to_owned(),
            source,
        })
    };
    let config = abs(o.config)?;
    let mut log = SysLog {
        stderr: std::io::stderr().is_terminal(),
    };
    // Log with the default facility until the config names another, so a
    // fatal config error reaches syslog too (main prints it on stderr).
    crate::syslog::open(crate::config::Facility::Auth);
    let fatal = |e: Error| {
        crate::syslog::log(libc::LOG_ERR, &e.to_string());
        e
    };
    // The daemon loads rules as root: a config that anyone else could
    // have written is refused, whoever starts it.
    let text = crate::config::read_trusted(&config, true).map_err(fatal)?;
    let (cfg, warnings) = Config::parse(&text, &config).map_err(fatal)?;
    crate::syslog::open(cfg.facility);
    if o.check_only {
        for w in &warnings {
            crate::say!("pfknock: {}", crate::name::no_controls(&w.to_string()));
        }
        // The load's own test: what nftables would refuse fails here.
        if let Ok(crate::Backend::Nft(nft)) = crate::backend()
            && !cfg.services.is_empty()
        {
            nft.check(&render::nft::render(&cfg, &config.display().to_string()))?;
        }
        return crate::out(&format!(
            "{}: ok\n",
            crate::name::no_controls(&o.config.display().to_string())
        ));
    }
    let backend = crate::backend().map_err(fatal)?;
    let pidpath = abs(o.pidfile.unwrap_or(Path::new(DEFAULT_PIDFILE)))?;
    let pid = Pidfile::create(&pidpath).map_err(fatal)?;
    if !o.foreground {
        log.stderr = false;
    }
    // Signals are caught from here on (the thread that reads them starts
    // after detaching): a SIGHUP during the first load is not fatal.
    let signals = catch_signals()?;
    match backend {
        crate::Backend::Pf => {
            let t = crate::pf::open(true).map_err(fatal)?;
            let d = Daemon::start(cfg, &config, t, Pfctl, log, crate::now()).map_err(fatal)?;
            detach_and_serve(d, pid, signals, o.foreground, &warnings)
        }
        crate::Backend::Nft(nft) => {
            let t = crate::nft::NftTables::new(nft.clone());
            let d =
                Daemon::start(cfg, &config, t, NftLoader(nft), log, crate::now()).map_err(fatal)?;
            detach_and_serve(d, pid, signals, o.foreground, &warnings)
        }
    }
}

fn catch_signals() -> Result<signal_hook::iterator::Signals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    #[cfg(any(target_os = "freebsd", target_os = "openbsd", target_os = "macos"))]
    let sigs = [SIGHUP, SIGUSR1, SIGTERM, SIGINT, libc::SIGINFO];
    #[cfg(not(any(target_os = "freebsd", target_os = "openbsd", target_os = "macos")))]
    let sigs = [SIGHUP, SIGUSR1, SIGTERM, SIGINT];
    signal_hook::iterator::Signals::new(sigs).map_err(|source| Error::Device {
        path: "signals".into(),
        op: "register",
        source,
    })
}

/// Detach (unless in the foreground), then take signals and serve.
fn detach_and_serve<T: Tables, L: Loader>(
    d: Daemon<T, L, SysLog>,
    pid: Pidfile,
    mut signals: signal_hook::iterator::Signals,
    foreground: bool,
    warnings: &[Warning],
) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    use std::sync::mpsc;
    if !foreground {
        // Before any thread: daemon(3) forks. The pidfile's lock is on the
        // open file, which the child keeps; it then writes its own pid.
        crate::sys_unix::daemonize().map_err(|source| Error::Device {
            path: "daemon(3)".into(),
            op: "fork",
            source,
        })?;
        pid.write_pid().map_err(|source| Error::Device {
            path: "pidfile".into(),
            op: "write",
            source,
        })?;
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let ev = match sig {
                SIGHUP => Event::Reload,
                SIGUSR1 => Event::Sweep,
                SIGTERM | SIGINT => Event::Stop(sig),
                _ => Event::Info,
            };
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    let r = serve(d, warnings, &rx);
    drop(pid);
    r
}

/// The loop: wait for the next deadline, poll or signal; act; repeat.
fn serve<T: Tables, L: Loader>(
    mut d: Daemon<T, L, SysLog>,
    warnings: &[Warning],
    rx: &std::sync::mpsc::Receiver<Event>,
) -> Result<()> {
    use signal_hook::consts::SIGINT;
    use std::sync::mpsc;
    use std::time::Duration;
    d.log_warnings(warnings);
    loop {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_millis() as i64);
        let now = now_ms / 1000;
        let poll = d.cfg.poll.0 as i64;
        // Wake at the start of the second an entry is due, or at the next
        // poll, whichever is first.
        let wake = d
            .next_due()
            .map_or(now + poll, |t| t.min(now + poll))
            .max(now);
        let wait = Duration::from_millis((wake * 1000 - now_ms).max(0) as u64);
        match rx.recv_timeout(wait) {
            Ok(Event::Reload) => d.reload(crate::now()),
            Ok(Event::Sweep) => d.sweep(crate::now()),
            Ok(Event::Info) => d.status(crate::now()),
            Ok(Event::Stop(sig)) => {
                d.stop(if sig == SIGINT { "SIGINT" } else { "SIGTERM" });
                return Ok(());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => d.tick(crate::now()),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                d.stop("loss of the signal thread");
                return Ok(());
            }
        }
    }
}
