//! SIGHUP (and `pfknock load` through the control socket): the config
//! read again and loaded, and the machine told. While the sets are read
//! beside the loop (a minute or two at a million), a reload that makes
//! none of the sets that reading reads anew (it keeps each as it is or
//! changed in place, or deletes it) is loaded at once: the kernel has it,
//! and the machine takes it in once the reading and the kernel's events
//! that waited behind it are worked through (`caught_up`). Any other
//! waits for the reading to end.
#![forbid(unsafe_code)]

use super::machine::{auth_sets, deleted_sets, gone_line, reload_loads};
use super::{Daemon, Level, Loader, Log};
use crate::cli::Command;
use crate::config::Config;
use crate::control::{Reply, Request};
use crate::error::Result;
use crate::tables::Tables;

impl<T: Tables, L: Loader, G: Log> Daemon<T, L, G> {
    /// SIGHUP: re-read the config. A bad config, or one pfctl refuses, is
    /// logged and the running one stays; a good one is loaded atomically and
    /// every table's state carries over. An anchor held unloaded
    /// (`pfknock unload`) is loaded again.
    pub fn reload(&mut self, now: i64) {
        if let Err(e) = self.try_reload(now) {
            self.refused(&e);
        }
    }

    fn refused(&mut self, e: &crate::error::Error) {
        self.log.log(
            Level::Err,
            &format!("reload: {e}: keeping the running configuration"),
        );
    }

    /// `reload`, with its failure returned (to the command that asked).
    pub fn try_reload(&mut self, now: i64) -> Result<()> {
        self.say_all(super::events::ms(now));
        self.caught_up(now);
        let (cfg, spa, warnings) = read_config(&self.path, now, self.caps)?;
        self.log_warnings(&warnings);
        let old = self.put_in(cfg, spa)?;
        self.said_reloaded();
        self.take_in(&old, now);
        self.tick(now);
        Ok(())
    }

    /// SIGHUP while the sets are read beside the loop. A config that
    /// cannot be read or loaded is said at once, as `reload` says it. One
    /// that makes none of the sets the reading reads anew
    /// (`keeps_reading`) is loaded at once; the machine takes it in later
    /// (`caught_up`). A set it deletes is said at once, with the kernel's
    /// count of it just before. Whether the SIGHUP must wait for the end
    /// of the reading instead (any other config: its load could make a set
    /// being read anew).
    pub fn reload_reading(&mut self, now: i64) -> bool {
        self.say_all(super::events::ms(now));
        match self.reload_at_once(now) {
            None => true,
            Some(Err(e)) => {
                self.refused(&e);
                false
            }
            Some(Ok(())) => false,
        }
    }

    /// `pfknock load` through the control socket while the sets are read
    /// beside the loop: done at once where SIGHUP would be
    /// (`reload_reading`), its reply as `control` gives it; `pfknock
    /// revoke` and `allow` always at once (`Machine::changed_while_read`).
    /// `None` for any other command, or a load that must wait: it is
    /// answered once the reading is done.
    pub fn control_while_reading(&mut self, req: &Request, now: i64) -> Option<Reply> {
        match self.command_of(req) {
            Ok(Command::Load) => {}
            // At once: the reading leaves out what a revoke removed (or a
            // flush), and takes in what an allow added with the time it
            // gave.
            Ok(Command::Revoke { .. } | Command::Allow { .. } | Command::Flush { .. }) => {
                return Some(self.control(req, super::events::ms(now)));
            }
            Ok(Command::Unload { .. }) if self.unloads_at_once() => {
                return Some(self.control(req, super::events::ms(now)));
            }
            _ => return None,
        }
        self.echo = Some(Vec::new());
        let r = self.reload_at_once(now);
        let echoed = self.echo.take().unwrap_or_default();
        let r = r?;
        let mut done = crate::verbs::Done::default();
        if r.is_ok() {
            done.stderr = echoed;
            done.stderr.push(self.loaded_note());
        }
        Some(Reply {
            pid: std::process::id(),
            done,
            error: r.err().map(|e| (e.to_string(), e.exit_code())),
        })
    }

    /// May `pfknock unload` be done during this reading? Not during the
    /// start's reading over a record: what changed while no daemon ran is
    /// said first, once the reading is taken in.
    fn unloads_at_once(&self) -> bool {
        !matches!(self.start_record, Some(Some(_)))
    }

    /// The reload of `reload_reading`: `None` where it must wait, else
    /// whether it was loaded.
    fn reload_at_once(&mut self, now: i64) -> Option<Result<()>> {
        let (cfg, spa, warnings) = match read_config(&self.path, now, self.caps) {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        // Its warnings are said when it is loaded, now or after.
        if !self.keeps_reading(&cfg) {
            return None;
        }
        self.log_warnings(&warnings);
        // The sets it deletes, counted by the kernel while they are there:
        // the reading may not have reached them.
        let gone = match reload_loads(&self.cfg, &cfg) {
            true => deleted_sets(&self.cfg, &cfg),
            false => Vec::new(), // nothing is loaded
        };
        let sets: Vec<String> = gone.iter().map(|(set, _)| set.clone()).collect();
        let counts = self.counts(&sets);
        let old = match self.put_in(cfg, spa) {
            Ok(old) => old,
            Err(e) => return Some(Err(e)),
        };
        self.reloaded_from.get_or_insert(old);
        // A set an earlier load of this reading deleted is made again:
        // what the reading found of it is not what it holds, so this
        // reading leaves it to the next.
        if self.machine.made_again(&auth_sets(&self.cfg)) {
            self.reread = true;
        }
        if self.loader.remade() {
            // The kernel did not take a change in place after all: the set
            // was made anew under the reading.
            self.say(
                Level::Warning,
                "reload: the kernel made a set anew instead of changing it in place: \
                 the sets are read again once this reading is done",
            );
            self.reread = true;
        }
        self.said_reloaded();
        for ((set, service), n) in gone.iter().zip(counts) {
            if n != Some(0) {
                self.say(Level::Notice, &gone_line(set, service, n));
            }
        }
        // What the reading found of them, or will find, is not taken in.
        let cx = super::events::cx!(self);
        let acts = self.machine.deleted_while_read(&cx, &sets);
        self.carry_out(acts, super::events::ms(now));
        Some(Ok(()))
    }

    /// A reload loaded during a reading (`reload_reading`), taken in by
    /// the machine once the reading and the kernel's events that waited
    /// behind it are worked through (`run`'s loop calls this when its
    /// queue is empty): then every authorization it knows, those the
    /// reading found and those it heard of meanwhile, is cut to a ttl
    /// the reload shortened, as at any reload.
    pub fn caught_up(&mut self, now: i64) {
        if self.reading.is_some() {
            return;
        }
        let Some(old) = self.reloaded_from.take() else {
            return;
        };
        self.take_in(&old, now);
        if std::mem::take(&mut self.reread) {
            self.resync(super::events::ms(now));
        }
        self.tick(now);
        self.settle_from(crate::clock::now_ms());
    }

    /// The machine takes in a reload from `old` to the running config:
    /// shorter ttls cut, pf's state looked at, the next rotation step.
    fn take_in(&mut self, old: &Config, now: i64) {
        let acts = self.machine.reloaded(old, &self.cfg, now);
        self.carry_out(acts, super::events::ms(now));
        self.check_pf();
        self.machine.step_at(self.next_boundary(now));
    }

    /// Does loading `new` make none of the sets a reading reads (each
    /// service's authorized sets) anew: each left as it is, changed in
    /// place with its elements untouched, or deleted? Only where the
    /// kernel takes such a change (`Loader::remakes_none`), and not while
    /// the anchor is held unloaded.
    fn keeps_reading(&mut self, new: &Config) -> bool {
        if self.held || self.machine.polls() {
            return false;
        }
        let read: Vec<String> = auth_sets(&self.cfg).into_iter().collect();
        self.loader.remakes_none(&self.cfg, new, &read)
    }

    /// Load `cfg` in place of the running config: the config before, or
    /// the error, with the running config kept.
    fn put_in(&mut self, cfg: Config, spa: Vec<crate::spa::Service>) -> Result<Config> {
        let old = std::mem::replace(&mut self.cfg, cfg);
        if reload_loads(&old, &self.cfg)
            && let Err(e) = self.load_anchor()
        {
            self.cfg = old;
            return Err(e);
        }
        self.spa = spa;
        if self.held {
            self.held = false;
            self.say(
                Level::Notice,
                &format!("anchor {} loaded again", self.cfg.anchor.as_str()),
            );
        }
        if old.anchor != self.cfg.anchor && !old.services.is_empty() {
            self.say(
                Level::Warning,
                &format!(
                    "anchor {} is still loaded: remove it with pfctl -a {} -F all",
                    old.anchor.as_str(),
                    old.anchor.as_str()
                ),
            );
        }
        Ok(old)
    }

    fn said_reloaded(&mut self) {
        self.log.log(
            Level::Notice,
            &format!(
                "reloaded {}: {} service(s), {} expire table(s)",
                self.path.display(),
                self.cfg.services.len(),
                self.cfg.expires.len()
            ),
        );
    }
}

/// The config at `path`, its signed-knock keys and its warnings; refused
/// where this firewall cannot do it (`backend::supported`).
fn read_config(
    path: &std::path::Path,
    now: i64,
    caps: crate::tables::Caps,
) -> Result<(
    Config,
    Vec<crate::spa::Service>,
    Vec<crate::config::Warning>,
)> {
    let (cfg, warnings) = Config::load_at(path, now)?;
    crate::backend::supported(caps, &cfg, path)?;
    let spa = crate::spa::keys::services(&cfg)?;
    Ok((cfg, spa, warnings))
}
