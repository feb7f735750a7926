//! A command's work, done by the daemon on its behalf (`crate::control`):
//! `load` and `unload` change what the daemon keeps loaded, and `allow`,
//! `revoke`, `flush` and `expire` run on the daemon's own tables, so that
//! it follows each change instead of undoing it, and logs it once.
#![forbid(unsafe_code)]

use clap::Parser;

use super::{Daemon, Level, Loader, Log};
use crate::cli::{Cli, Command};
use crate::control::{Reply, Request};
use crate::error::{Error, Result};
use crate::name::{AnchorName, Net};
use crate::tables::{Caps, Entry, PoolUse, TableFlags, TableRef, TableStat, Tables};
use crate::verbs::{self, Change, Done};

/// The daemon's tables for `expire`: an authorized table is listed from
/// the machine's book where it can stand in for the kernel's listing
/// (`Machine::booked_entries`), so that an expire costs the look-ups and
/// deletes of what is due, not a dump of the whole set; everything else
/// goes to the kernel.
struct Booked<'a, T> {
    tables: &'a mut T,
    machine: &'a super::machine::Machine,
    cfg: &'a crate::config::Config,
    /// Milliseconds.
    now: i64,
}

#[deny(clippy::missing_trait_methods)]
impl<T: Tables> Tables for Booked<'_, T> {
    fn entries(&mut self, t: &TableRef) -> Result<Vec<Entry>> {
        match self.machine.booked_entries(self.cfg, t, self.now) {
            Some(e) => Ok(e),
            None => self.tables.entries(t),
        }
    }
    fn table_stats(&mut self, anchor: &AnchorName) -> Result<Vec<TableStat>> {
        self.tables.table_stats(anchor)
    }
    fn add(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize> {
        self.tables.add(t, addrs)
    }
    fn delete(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize> {
        self.tables.delete(t, addrs)
    }
    fn add_each(&mut self, t: &TableRef, addrs: &[Net]) -> Result<Vec<Net>> {
        self.tables.add_each(t, addrs)
    }
    fn delete_each(&mut self, t: &TableRef, addrs: &[Net]) -> Result<Vec<Net>> {
        self.tables.delete_each(t, addrs)
    }
    fn renew(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize> {
        self.tables.renew(t, addrs)
    }
    fn create(&mut self, tables: &[(TableRef, TableFlags)]) -> Result<usize> {
        self.tables.create(tables)
    }
    fn add_timed(&mut self, t: &TableRef, entries: &[(Net, u64)]) -> Result<usize> {
        self.tables.add_timed(t, entries)
    }
    fn caps(&self) -> Caps {
        self.tables.caps()
    }
    fn full_sets(&self) -> Vec<(String, u64)> {
        self.tables.full_sets()
    }
    fn pools(&mut self) -> Result<Vec<PoolUse>> {
        self.tables.pools()
    }
    fn intact(&self, cfg: &crate::config::Config) -> Option<bool> {
        self.tables.intact(cfg)
    }
    fn entry(&mut self, t: &TableRef, net: &Net) -> Result<Option<Entry>> {
        self.tables.entry(t, net)
    }
    fn counted(&mut self, counts: &[(String, u64)]) {
        self.tables.counted(counts)
    }
    fn clear(&mut self, t: &TableRef) -> Result<Option<crate::tables::Cleared>> {
        self.tables.clear(t)
    }
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

impl<T: Tables, L: Loader, G: Log> Daemon<T, L, G> {
    /// Do what a command asked at `now_ms` (ms: `expire` counts the ages
    /// in its book from it), and say what it would have printed.
    pub fn control(&mut self, req: &Request, now_ms: i64) -> Reply {
        let now = now_ms.div_euclid(1000);
        self.say_all(super::events::ms(now));
        let mut done = Done::default();
        let r = self.serve(req, now_ms, &mut done);
        for l in &done.audit {
            self.log.log(Level::Info, l);
        }
        let changes = std::mem::take(&mut done.changes);
        self.follow(&changes, now);
        Reply {
            pid: std::process::id(),
            done,
            error: r.err().map(|e| (e.to_string(), e.exit_code())),
        }
    }

    /// A signed knock that the listener admitted and root checked again:
    /// open the address for the service as `pfknock allow` would, or
    /// close it as `pfknock revoke` would, logged with the key.
    pub fn signed(&mut self, a: &crate::spa::Admitted, now: i64) {
        use crate::spa::ActionWord;
        self.say_all(super::events::ms(now));
        let mut done = Done::default();
        let by = format!(
            "signed {}knock of key {} from {}",
            if a.action == ActionWord::Close {
                "close "
            } else {
                ""
            },
            a.key,
            a.sender
        );
        let cfg = self.cfg.clone();
        let addr = crate::name::Net::host(a.addr);
        let svc = Some(a.service.as_str());
        let t = &mut self.tables;
        let r = match a.action {
            ActionWord::Open => verbs::allow(&cfg, t, addr, svc, false, &by, &mut done),
            ActionWord::Close => verbs::revoke(&cfg, t, addr, svc, now, &by, &mut done),
        };
        for l in &done.audit {
            self.log.log(Level::Info, l);
        }
        if r.is_ok() && done.audit.is_empty() {
            self.log.log(
                Level::Info,
                &format!("{by}: {} was not authorized for {}", a.addr, a.service),
            );
        }
        if let Err(e) = r {
            self.log.log(
                Level::Err,
                &format!(
                    "{} {} for service {} ({by}): {e}",
                    match a.action {
                        ActionWord::Open => "open",
                        ActionWord::Close => "close",
                    },
                    a.addr,
                    a.service
                ),
            );
        }
        let changes = std::mem::take(&mut done.changes);
        self.follow(&changes, now);
    }

    fn serve(&mut self, req: &Request, now_ms: i64, done: &mut Done) -> Result<()> {
        let now = now_ms.div_euclid(1000);
        let cfg = self.cfg.clone();
        match self.command_of(req)? {
            Command::Load => {
                self.echo = Some(Vec::new());
                let r = self.try_reload(now);
                done.stderr = self.echo.take().unwrap_or_default();
                r?;
                done.stderr.push(self.loaded_note());
                Ok(())
            }
            Command::Unload { open } => self.unload_held(open, now, done),
            Command::Allow {
                address,
                service,
                force,
            } => {
                let (t, svc) = (&mut self.tables, service.as_deref());
                let addr = verbs::address(&address)?;
                verbs::allow(&cfg, t, addr, svc, force, "pfknock allow", done)
            }
            Command::Revoke {
                address, service, ..
            } => {
                let (t, svc) = (&mut self.tables, service.as_deref());
                let addr = verbs::address(&address)?;
                verbs::revoke(&cfg, t, addr, svc, now, "pfknock revoke", done)
            }
            Command::Flush { service } => verbs::flush(
                &cfg,
                &mut self.tables,
                service.as_deref(),
                now,
                "pfknock flush",
                done,
            ),
            Command::Expire {
                service,
                table,
                anchor,
                older_than,
                dry_run,
            } => {
                let sel = verbs::expire_selection(
                    &cfg,
                    service.as_deref(),
                    table.as_deref(),
                    anchor.as_deref(),
                )?;
                let how = crate::verbs::ExpireHow {
                    older_than,
                    dry_run,
                };
                let mut t = Booked {
                    tables: &mut self.tables,
                    machine: &self.machine,
                    cfg: &cfg,
                    now: now_ms,
                };
                verbs::expire(&cfg, &mut t, &sel, how, now, "pfknock expire", done)
            }
            _ => Err(Error::Usage(
                "the daemon does load, unload, allow, revoke, flush and expire only".into(),
            )),
        }
    }

    /// What `load` prints when the daemon loaded it.
    pub(super) fn loaded_note(&self) -> String {
        format!(
            "{}: loaded by the running daemon (pid {}), which keeps it so",
            self.path.display(),
            std::process::id()
        )
    }

    /// The command a request carries, if it is for this daemon's config.
    pub(super) fn command_of(&self, req: &Request) -> Result<Command> {
        let argv = std::iter::once("pfknock".to_owned()).chain(req.argv.iter().cloned());
        let cli = Cli::try_parse_from(argv)
            .map_err(|e| Error::Usage(format!("the daemon cannot read this command: {e}")))?;
        if !same_file(&req.config, &self.path) {
            return Err(Error::Usage(format!(
                "the running daemon (pid {}) works from {}, not {}: give -c {}, or stop \
                 the daemon to work on another config",
                std::process::id(),
                self.path.display(),
                req.config.display(),
                self.path.display()
            )));
        }
        Ok(cli.command)
    }

    /// `pfknock unload` while the daemon runs: unload, drop what the
    /// daemon knew of the anchor's authorizations (they went with it), and
    /// keep it unloaded until `load` or SIGHUP. During a reading of the
    /// sets (`unloads_at_once`) the book is not yet what the kernel holds:
    /// the kernel counts what goes, just before, and what the reading
    /// found of the sets is not taken in (`Machine::deleted_while_read`,
    /// as for a set a reload deletes).
    fn unload_held(&mut self, open: bool, now: i64, done: &mut Done) -> Result<()> {
        // (Held unloaded already, the sets are gone: none is counted.)
        let read: Vec<String> = match (&self.reading, self.held) {
            (Some(_), false) => super::machine::auth_sets(&self.cfg).into_iter().collect(),
            _ => Vec::new(),
        };
        let counts = self.counts(&read);
        self.loader.unload(&self.cfg, open)?;
        self.held = true;
        let cx = super::events::cx!(self);
        let went = if self.reading.is_some() {
            let acts = self.machine.deleted_while_read(&cx, &read);
            self.machine.unloaded(&cx);
            self.carry_out(acts, super::events::ms(now));
            // A start with no record says what it found once its reading
            // is taken in; none of it is now.
            if matches!(self.start_record, Some(None)) {
                self.start_record = None;
            }
            // Nothing is there to read again.
            self.reread = false;
            counts.into_iter().sum::<Option<u64>>()
        } else {
            Some(self.machine.unloaded(&cx) as u64)
        };
        let went = verbs::unloaded_line(&self.cfg, open, went);
        self.log.log(
            Level::Notice,
            &format!("{went}; kept unloaded until pfknock load or SIGHUP"),
        );
        if let Some(w) = verbs::unload_words(self.caps.refreshes_entries, open) {
            done.stderr.push(w);
        }
        done.stderr.push(format!(
            "the running daemon (pid {}) keeps it unloaded until pfknock load or SIGHUP",
            std::process::id()
        ));
        Ok(())
    }

    /// Follow what a verb changed, without a line: the verb's audit lines
    /// said it. While a reading of the sets runs, the machine notes what a
    /// revoke or an allow changed, for the reading's take-in, and follows
    /// only the removals (`Machine::changed_while_read`): the book is the
    /// reading's until it is taken in.
    fn follow(&mut self, changes: &[Change], now: i64) {
        for c in changes {
            let cx = super::events::cx!(self);
            if self.reading.is_some() {
                self.machine.changed_while_read(&cx, c, now);
                if matches!(c, Change::Added(..)) {
                    continue;
                }
            }
            let acts = self.machine.follow(&cx, c, now);
            self.carry_out(acts, super::events::ms(now));
        }
    }
}
