//! `pfknock run`: load the anchor, then expire entries on their deadlines,
//! renew hosts that knock again, log every authorization and expiry, and
//! restore the anchor when something flushes it.
//!
//! `Daemon` is the state machine: every step takes `now` and works on
//! `Tables`, a `Loader` and a `Log`, so tests drive it with the kernel model
//! and a fake clock. `run` is the loop around it: one poll(2) over the
//! signals, the kernel's event sockets and the control socket, until the
//! next deadline.
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::catalogue::{Kind, Named, named_tables};
use crate::config::{Config, Role, Warning};
use crate::error::Result;
use crate::name::{AnchorName, ExpireMode, Net, Secs};
use crate::policy::{self, IdleTracker};
use crate::tables::{Entry, TableRef, TableStat, Tables};

pub use crate::backend::Loader;
pub use events::{ElementLookup, KernelEvent};
use lines::line;
pub use lines::{Level, Log, REPEAT_EVERY};

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
    /// Entries seen at the last listing, with their time stamps.
    known: HashMap<Net, i64>,
    /// Entries this daemon put back after a flush, with the time stamp
    /// they had: the kernel stamped them anew, their age goes on from the
    /// old one.
    restored: HashMap<Net, i64>,
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
            known: HashMap::new(),
            restored: HashMap::new(),
            idle: IdleTracker::default(),
            listed: false,
            force: false,
        }
    }

    fn role(&self) -> Option<Role> {
        match self.named.kind {
            Kind::Service(r) => Some(r),
            Kind::Hold | Kind::Close | Kind::Expire => None,
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
    /// Sets logged as full by the polls, until they have room again (the
    /// events mode keeps its own: `Machine::full`, `Machine::meters`).
    full: HashSet<String>,
    /// Errors that repeat poll after poll, logged once and then rarely.
    repeats: Repeats,
    /// What the backend does by itself, asked once.
    caps: crate::tables::Caps,
    /// When the next step of a rotating service starts.
    step_due: Option<i64>,
    /// Kernel events instead of polls, where the firewall sends them: the
    /// decisions (`machine`), and the element look-up that answers them.
    events: Option<machine::Machine>,
    lookup: Option<Box<dyn ElementLookup + Send>>,
    /// Removals pfknock's commands noted (pf: nobody else says who
    /// deleted an entry). None: log every removal.
    pub notes: Option<notes::Notes>,
    /// The administrator unloaded the anchor (`pfknock unload` through the
    /// control socket): nothing is restored or rotated until `load` or
    /// SIGHUP.
    held: bool,
    /// Where a clean stop keeps what the daemon knew (`state`).
    pub state: Option<PathBuf>,
    /// pf's global pools: table entries, source nodes (`fill::Pools`).
    pool: fill::Pools,
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
            // Where the firewall times entries out itself, it holds and
            // resets in its own rules too.
            Kind::Service(Role::Renew) | Kind::Hold | Kind::Close => !self_renewing,
            _ => true,
        })
        .map(Watch::new)
        .collect()
}

impl<T: Tables, L: Loader, G: Log> Daemon<T, L, G> {
    /// Load the anchor and take a first look at every table. A failed load
    /// is fatal here (there is nothing running to keep).
    pub fn start(cfg: Config, path: &Path, tables: T, loader: L, log: G, now: i64) -> Result<Self> {
        Self::start_with(cfg, path, tables, loader, log, now, None)
    }

    /// `start`, and, where the daemon polls (pf), the reconciliation with
    /// what the last daemon kept (`state`) between the first look at the
    /// tables and the first expiry, so that an entry found overdue is
    /// logged once, as the expiry does it. With kernel events, the caller
    /// reconciles once it has read the sets (`use_events`).
    pub fn start_with(
        cfg: Config,
        path: &Path,
        tables: T,
        loader: L,
        log: G,
        now: i64,
        record: Option<Option<state::Known>>,
    ) -> Result<Self> {
        let caps = tables.caps();
        let mut d = Daemon {
            watches: watches_for(&cfg, caps.refreshes_entries),
            cfg,
            path: path.to_owned(),
            tables,
            loader,
            log,
            warned_disabled: false,
            warned_missing: HashSet::new(),
            full: HashSet::new(),
            repeats: Repeats::default(),
            caps,
            step_due: None,
            events: None,
            lookup: None,
            notes: None,
            held: false,
            state: None,
            pool: fill::Pools::default(),
        };
        if !d.cfg.services.is_empty() {
            d.load_anchor()?;
        }
        d.check_pf();
        d.log.log(
            Level::Notice,
            &format!(
                "started: {} service(s) in {}, {} expire table(s), from {}",
                d.cfg.services.len(),
                if d.caps.refreshes_entries {
                    format!("table inet {}", crate::render::nft::TABLE)
                } else {
                    format!("anchor {}", d.cfg.anchor.as_str())
                },
                d.cfg.expires.len(),
                d.path.display()
            ),
        );
        d.step_due = crate::rotate::next_boundary(&d.cfg, now, d.caps.timed_rules);
        // nftables: the caller switches to kernel events next, which read
        // the sets by themselves; a first poll would list every element.
        if !d.caps.refreshes_entries {
            if let Some(prev) = record {
                d.reconcile(prev, now);
            }
            d.tick(now);
        }
        Ok(d)
    }

    /// When the next step of a rotating service starts, if any.
    pub fn next_step(&self) -> Option<i64> {
        self.step_due
    }

    /// At a step boundary: load the knock ports of the new step and of
    /// the one before, in one transaction that keeps every set (nft) or
    /// table (pf). A secret that cannot be read or a load that fails
    /// keeps the ports loaded, logs, and is tried again at the next poll.
    pub fn rotate(&mut self, now: i64) {
        if self.step_due.is_none_or(|d| now < d) {
            return;
        }
        if self.held {
            self.step_due = crate::rotate::next_boundary(&self.cfg, now, self.caps.timed_rules);
            return;
        }
        let mut next = self.cfg.clone();
        let r = crate::rotate::apply(&mut next, now).and_then(|()| {
            if next.services.iter().zip(&self.cfg.services).all(|(a, b)| {
                a.knock == b.knock && a.knock_prev == b.knock_prev && a.knock_next == b.knock_next
            }) {
                return Ok(false);
            }
            let old = std::mem::replace(&mut self.cfg, next.clone());
            match self.load_anchor() {
                Ok(()) => Ok(true),
                Err(e) => {
                    self.cfg = old;
                    Err(e)
                }
            }
        });
        match r {
            Ok(_) => {
                // The ports themselves are the secret of the step: never
                // logged, at any level.
                self.step_due = crate::rotate::next_boundary(&self.cfg, now, self.caps.timed_rules);
            }
            Err(e) => {
                let msg = format!("rotate: {e}: keeping the knock ports loaded");
                self.fail(Level::Err, &msg, now);
                self.step_due = Some(now + self.cfg.poll.0 as i64);
            }
        }
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

    /// When the next table is due, if any (seconds, rounded up).
    pub fn next_due(&self) -> Option<i64> {
        self.next_due_ms().map(|t| (t + 999).div_euclid(1000))
    }

    /// When the next table is due, in milliseconds: with kernel events
    /// each authorization has the kernel's own deadline.
    pub fn next_due_ms(&self) -> Option<i64> {
        if let Some(m) = &self.events {
            return m.next_due();
        }
        self.watches
            .iter()
            .filter_map(|w| w.next_due)
            .min()
            .map(events::ms)
    }

    fn service_of(&self, w: &Watch) -> Option<&crate::config::Service> {
        w.named.service.as_deref().and_then(|s| self.cfg.service(s))
    }

    fn line(&self, verb: &str, net: &Net, w: &Watch, extra: &str) -> String {
        line(verb, net, w.named.service.as_deref(), &w.named.table, extra)
    }

    /// One poll: read table statistics (one request per anchor), restore
    /// the anchor if it is gone, and list only the tables whose count or
    /// packet counter moved, or that have a deadline due.
    pub fn tick(&mut self, now: i64) {
        self.tick_ms(events::ms(now))
    }

    /// `tick`, at a time in milliseconds.
    pub fn tick_ms(&mut self, now_ms: i64) {
        self.tick_inner(now_ms, false)
    }

    /// SIGUSR1: list and sweep every table now.
    pub fn sweep(&mut self, now: i64) {
        self.tick_inner(events::ms(now), true)
    }

    fn tick_inner(&mut self, now_ms: i64, force: bool) {
        let now = now_ms.div_euclid(1000);
        if self.events.is_some() {
            if force {
                self.resync(now_ms);
            }
            self.events_tick(now_ms);
        } else {
            if let Some(n) = self.notes.as_mut() {
                n.take(now);
            }
            self.poll(now, force);
        }
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

    /// SIGHUP: re-read the config. A bad config, or one pfctl refuses, is
    /// logged and the running one stays; a good one is loaded atomically and
    /// every table's state carries over. An anchor held unloaded
    /// (`pfknock unload`) is loaded again.
    pub fn reload(&mut self, now: i64) {
        if let Err(e) = self.try_reload(now) {
            self.log.log(
                Level::Err,
                &format!("reload: {e}: keeping the running configuration"),
            );
        }
    }

    /// `reload`, with its failure returned (to the command that asked).
    pub fn try_reload(&mut self, now: i64) -> Result<()> {
        let (cfg, warnings) = Config::load_at(&self.path, now)?;
        self.log_warnings(&warnings);
        let old = std::mem::replace(&mut self.cfg, cfg);
        if !self.cfg.services.is_empty()
            && let Err(e) = self.load_anchor()
        {
            self.cfg = old;
            return Err(e);
        }
        if self.held {
            self.held = false;
            self.log.log(
                Level::Notice,
                &format!("anchor {} loaded again", self.cfg.anchor.as_str()),
            );
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
        self.watches = watches_for(&self.cfg, self.caps.refreshes_entries)
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
        if let Some(m) = self.events.as_mut() {
            m.retime(&old, &self.cfg);
            m.reload_began(now);
        }
        self.check_pf();
        self.step_due = crate::rotate::next_boundary(&self.cfg, now, self.caps.timed_rules);
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
        Ok(())
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
                let (n, due) = match &self.events {
                    Some(m) => m.count(w.named.table.name.as_str()),
                    None => (w.known.len(), w.next_due),
                };
                // Full sets, and the meters the events mode found full.
                let theirs = self
                    .events
                    .iter()
                    .flat_map(|m| m.full.iter().chain(m.meters.keys()));
                let full: Vec<&String> = self
                    .full
                    .iter()
                    .chain(theirs)
                    .filter(|set| {
                        [crate::name::Af::V4, crate::name::Af::V6].iter().any(|a| {
                            **set == crate::names::nft_set_of(w.named.table.name.as_str(), *a)
                        }) || machine::meter_service(&self.cfg, set)
                            .is_some_and(|(s, _)| s.table == w.named.table.name)
                    })
                    .collect();
                format!(
                    "status {}: {n} entries, next expiry {}{}",
                    w.named.table,
                    due.map_or("none".to_owned(), |d| format!(
                        "in {}",
                        Secs(policy::age(d, now))
                    )),
                    if full.is_empty() {
                        String::new()
                    } else {
                        let mut names: Vec<&str> = full.iter().map(|s| s.as_str()).collect();
                        names.sort_unstable();
                        let word = if names.len() == 1 { "set" } else { "sets" };
                        format!(", {word} {} full", names.join(" and "))
                    }
                )
            })
            .collect();
        for l in lines {
            self.log.log(Level::Info, &l);
        }
        for (pool, (used, limit)) in &self.pool.full {
            self.log.log(
                Level::Info,
                &format!(
                    "status: pf's {} limit reached ({used} of {limit})",
                    pool.limit_name()
                ),
            );
        }
    }

    /// A clean exit: unload the anchor if the config says so.
    pub fn stop(&mut self, signal: &str) {
        if self.cfg.unload && !self.cfg.services.is_empty() {
            match self.loader.unload(&self.cfg, false) {
                Ok(()) => self.log.log(
                    Level::Notice,
                    &format!("anchor {} unloaded", self.cfg.anchor.as_str()),
                ),
                Err(e) => self.log.log(Level::Err, &format!("unload: {e}")),
            }
        }
        if let Some(p) = &self.state {
            state::write(p, &self.snapshot());
        }
        self.log.log(Level::Notice, &format!("exiting on {signal}"));
    }

    /// Entries the daemon knows of per table (for tests and benchmarks).
    pub fn known(&self, t: &TableRef) -> Option<usize> {
        if let Some(m) = &self.events {
            return Some(m.count(t.name.as_str()).0);
        }
        self.watches
            .iter()
            .find(|w| w.named.table == *t)
            .map(|w| w.known.len())
    }
}

mod book;
mod control;
mod events;
mod fill;
mod lines;
mod machine;
pub mod notes;
mod poll;
mod process;
pub mod state;
pub use process::{DEFAULT_PIDFILE, Pidfile, RunOpts, SysLog, run};
