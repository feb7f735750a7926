//! `pfknock run`: load the anchor, then expire entries on their deadlines,
//! renew hosts that knock again, log every authorization and expiry, and
//! restore the anchor when something flushes it.
//!
//! The decisions are `machine`'s, a pure state machine that returns
//! actions. `Daemon` holds it with the config and the kernel handles
//! (`Tables`, a `Loader`, a `Log`), carries its actions out (`events`) and
//! does what needs I/O itself (load, rotate, reload, stop); every step
//! takes `now`, so tests drive it with the kernel model and a fake clock.
//! `run` is the loop around it: one poll(2) over the signals, the
//! kernel's event sockets and the control socket, until the next
//! deadline.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use crate::config::{Config, Warning};
use crate::error::Result;
use crate::tables::{TableRef, Tables};

pub use crate::backend::Loader;
pub use events::{ElementLookup, KernelEvent};
pub use lines::{Level, Log, REPEAT_EVERY};
pub use machine::SAY_AT_ONCE;

/// The daemon's state.
pub struct Daemon<T, L, G> {
    pub cfg: Config,
    path: PathBuf,
    pub tables: T,
    loader: L,
    pub log: G,
    /// What the backend does by itself, asked once.
    caps: crate::tables::Caps,
    /// The decisions, polling or on the kernel's events (`machine`).
    machine: machine::Machine,
    /// Where the firewall sends events: the element look-up that answers
    /// the machine's questions about them.
    lookup: Option<Box<dyn ElementLookup + Send>>,
    /// A reading of the sets runs beside the loop (`events::Reading`),
    /// and whether one may (`run`'s loop sets it).
    reading: Option<events::Reading>,
    aside: bool,
    /// What the loop heard added to the sets while they are read beside
    /// it (`hear`), shared with that reading.
    heard: hearing::Heard,
    /// What that reading let go of, timed out while it ran, for the loop
    /// to say (`hearing::Gone`).
    gone: hearing::Gone,
    /// Events read during that reading that the machine has not heard yet
    /// (`hearing.rs`).
    to_hear: std::collections::VecDeque<KernelEvent>,
    /// What the last daemon kept, waiting for the start's reading of the
    /// sets (kernel events, `use_events_later`): the reconciliation comes
    /// once that reading is done, and a stop before then keeps it as it
    /// was.
    start_record: Option<Option<std::sync::Arc<state::Known>>>,
    /// Removals pfknock's commands noted (pf: nobody else says who
    /// deleted an entry). None: log every removal.
    pub notes: Option<notes::Notes>,
    /// The administrator unloaded the anchor (`pfknock unload` through the
    /// control socket): nothing is restored or rotated until `load` or
    /// SIGHUP.
    held: bool,
    /// Where a clean stop keeps what the daemon knew (`state`).
    pub state: Option<PathBuf>,
    /// The services that take signed knocks, with their keys as read at
    /// the start or the last reload (`run` hands them to the listener).
    pub spa: Vec<crate::spa::Service>,
    /// A reload loaded during a reading of the sets (`reload_reading`):
    /// the config before it, until the machine takes the reload in
    /// (`caught_up`).
    reloaded_from: Option<Config>,
    /// That load made a set anew under the reading: the sets are read
    /// again once it is done.
    reread: bool,
    /// While `pfknock load` is done through the control socket: the lines
    /// of notice or worse its reload logs (`say`), for its stderr too.
    echo: Option<Vec<String>>,
    /// Actions carried out since the memory they held was last given
    /// back (`events::BIG`).
    untrimmed: usize,
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
        let spa = crate::spa::keys::services(&cfg)?;
        let mut d = Daemon {
            machine: machine::Machine::polling(&cfg, caps.refreshes_entries),
            cfg,
            path: path.to_owned(),
            tables,
            loader,
            log,
            caps,
            lookup: None,
            reading: None,
            aside: false,
            heard: Default::default(),
            gone: Default::default(),
            to_hear: Default::default(),
            start_record: None,
            notes: None,
            held: false,
            state: None,
            spa,
            reloaded_from: None,
            reread: false,
            echo: None,
            untrimmed: 0,
        };
        let mut went = Vec::new();
        if !d.cfg.services.is_empty() {
            d.load_anchor()?;
            went = d.loader.went("pfknock run");
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
        // nftables: the authorized sets of services removed while no
        // daemon ran went with the load.
        for l in went {
            d.log.log(Level::Notice, &l);
        }
        d.machine.step_at(d.next_boundary(now));
        // nftables: the caller switches to kernel events next, which read
        // the sets by themselves; a first poll would list every element.
        if !d.caps.refreshes_entries {
            if !d.cfg.services.is_empty() {
                d.empty_leftovers();
            }
            if let Some(prev) = record {
                d.reconcile(prev, now);
            }
            d.tick(now);
        }
        Ok(d)
    }

    /// When the next step of a rotating service starts, if any.
    pub fn next_step(&self) -> Option<i64> {
        self.machine.next_step()
    }

    /// At a step boundary (the machine decides: `Machine::rotate`): load
    /// the knock ports of the new step and of the one before.
    pub fn rotate(&mut self, now: i64) {
        let cx = events::cx!(self);
        let acts = self.machine.rotate(&cx, now);
        self.carry_out(acts, events::ms(now));
    }

    /// A new step's ports, loaded in one transaction that keeps every set
    /// (nft) or table (pf) when they changed (`load`); the start of the
    /// step after. A secret that cannot be read or a load that fails
    /// keeps the ports loaded.
    fn step(&mut self, at: i64, load: bool) -> Result<Option<i64>> {
        if load {
            let mut next = self.cfg.clone();
            crate::rotate::apply(&mut next, at)?;
            let same = next.services.iter().zip(&self.cfg.services).all(|(a, b)| {
                a.knock == b.knock
                    && a.knock_prev == b.knock_prev
                    && a.knock_next == b.knock_next
                    && a.knock_later == b.knock_later
            });
            if !same {
                let old = std::mem::replace(&mut self.cfg, next);
                if let Err(e) = self.load_anchor() {
                    self.cfg = old;
                    return Err(e);
                }
            }
        }
        Ok(self.next_boundary(at))
    }

    fn next_boundary(&self, now: i64) -> Option<i64> {
        crate::rotate::next_boundary(&self.cfg, now, self.caps.timed_rules)
    }

    /// pf: the tables of the anchor that the config no longer names (a
    /// service removed while no daemon ran), emptied and said
    /// (`verbs::empty_leftovers`).
    fn empty_leftovers(&mut self) {
        let mut done = crate::verbs::Done::default();
        let cfg = self.cfg.clone();
        let r = crate::verbs::empty_leftovers(&cfg, &mut self.tables, "pfknock run", &mut done);
        for l in &done.stderr {
            self.log.log(Level::Notice, l);
        }
        if let Err(e) = r {
            let msg = format!(
                "anchor {}: emptying the tables the configuration no longer names: {e}",
                cfg.anchor.as_str()
            );
            self.log.log(Level::Err, &msg);
        }
    }

    /// Log a line; one of notice or worse also goes to the command being
    /// served, if it asked (`echo`).
    fn say(&mut self, level: Level, msg: &str) {
        if level <= Level::Notice
            && let Some(e) = self.echo.as_mut()
        {
            e.push(msg.to_owned());
        }
        self.log.log(level, msg);
    }

    fn load_anchor(&mut self) -> Result<()> {
        self.loader
            .load(&self.cfg, &self.path.display().to_string())
    }

    /// Warn when pf is disabled or the main ruleset does not call the
    /// anchor (the machine decides: `Machine::check_pf`).
    fn check_pf(&mut self) {
        let cx = events::cx!(self);
        let acts = self.machine.check_pf(&cx);
        self.carry_out(acts, 0);
    }

    /// When the next table is due, if any (seconds, rounded up).
    pub fn next_due(&self) -> Option<i64> {
        self.next_due_ms().map(|t| (t + 999).div_euclid(1000))
    }

    /// When the next table is due, in milliseconds: with kernel events
    /// each authorization has the kernel's own deadline.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.machine.next_due_ms()
    }

    /// While a reading of every set runs beside the loop: when the next
    /// authorization the daemon knows is due (ms).
    pub fn due_while_reading_ms(&self) -> Option<i64> {
        let cx = events::cx!(self);
        self.reading_runs().then(|| self.machine.next_expiry(&cx))?
    }

    /// While a reading of every set runs beside the loop, the
    /// authorizations due at `now_ms` expire at once
    /// (`Machine::due_while_read`), not once it is over.
    pub fn due_while_reading(&mut self, now_ms: i64) {
        if self.due_while_reading_ms().is_some_and(|t| t <= now_ms) {
            let cx = events::cx!(self);
            let acts = self.machine.due_while_read(&cx, now_ms);
            self.carry_out(acts, now_ms);
        }
    }

    /// When the loop is to wake at the latest, in milliseconds: when an
    /// entry is due (pf: at the start of its second; with kernel events:
    /// at the millisecond the kernel times it out), at a rotation step,
    /// and else a poll after `now_ms` where the daemon polls
    /// (`machine::poll_every`), an hour where the kernel's events wake it
    /// (nftables).
    pub fn wake_ms(&self, now_ms: i64) -> i64 {
        let idle_ms = match self.polls() {
            true => machine::poll_every(&self.cfg, self.caps.refreshes_entries).0 as i64,
            false => 3_600_000,
        };
        (self.next_due_ms().into_iter())
            .chain(self.next_step().map(|t| t * 1000))
            .fold(now_ms + idle_ms, i64::min)
            .max(now_ms)
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
        if !self.machine.polls() {
            if force {
                self.resync(now_ms);
            }
            self.events_tick(now_ms);
        } else {
            let text = self.notes.as_mut().map(|n| n.take()).unwrap_or_default();
            self.machine.noted(&text, now);
            let cx = events::cx!(self);
            let acts = self.machine.poll(&cx, now_ms, force);
            self.carry_out(acts, now_ms);
        }
        for line in self.machine.repeats.cleared() {
            self.log.log(Level::Notice, &line);
        }
    }

    /// Log an error that may come back every poll (see `Repeats`).
    fn fail(&mut self, level: Level, msg: &str, now: i64) {
        if let Some(line) = self.machine.repeats.report(msg, now) {
            self.log.log(level, &line);
        }
    }

    pub fn log_warnings(&mut self, warnings: &[Warning]) {
        for w in warnings {
            self.log.log(Level::Warning, &w.to_string());
        }
    }

    /// SIGINFO: one line per watched table.
    pub fn status(&mut self, now: i64) {
        let cx = events::cx!(self);
        let acts = self.machine.status(&cx, now, self.reading.is_some());
        self.carry_out(acts, events::ms(now));
        self.reading_status();
    }

    /// A clean exit: unload the anchor if the config says so.
    pub fn stop(&mut self, signal: &str) {
        self.finish_taking();
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
            // Stopped before the start's reading was done: the book is
            // not what the kernel holds; what the last daemon kept is
            // kept again for the next start.
            match self.start_record.take() {
                Some(Some(kept)) => state::write(p, &kept),
                Some(None) => {}
                None => self.write_record(p),
            }
        }
        self.log.log(Level::Notice, &format!("exiting on {signal}"));
    }

    /// Entries the daemon knows of per table (for tests and benchmarks).
    pub fn known(&self, t: &TableRef) -> Option<usize> {
        self.machine.known(t)
    }
}

mod blocks;
mod book;
mod commands;
mod control;
mod events;
mod feeds;
mod hearing;
mod lines;
mod machine;
pub mod notes;
mod pidfile;
mod process;
mod reload;
mod spa;
pub mod state;
pub use pidfile::{DEFAULT_PIDFILE, Pidfile};
pub use process::{RunOpts, SysLog, run};
