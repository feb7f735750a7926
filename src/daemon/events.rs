//! The daemon on a firewall that tells it what happens (nftables, see
//! `crate::netlink`): no polls. The decisions are `daemon::machine`'s;
//! this is the shell around it, which hands it the kernel's events, the
//! time and the answers to its queries, and carries out its actions on
//! the kernel (`ElementLookup`, `Tables`, the `Loader`) and the log.
#![forbid(unsafe_code)]

use super::machine::{Action, Answer, DumpError, Left, Machine, Query};
use super::{Daemon, Loader, Log};
pub use crate::kevents::{ElementLookup, KernelEvent};
use crate::tables::Tables;

pub(super) use super::machine::ms;

/// `Ctx` for the machine, from the daemon's fields (a macro, so that the
/// borrow of the config stays apart from the machine's).
macro_rules! cx {
    ($d:expr) => {
        $crate::daemon::machine::Ctx {
            cfg: &$d.cfg,
            held: $d.held,
            ours: &crate::tool::ours,
        }
    };
}
pub(super) use cx;

impl<T: Tables, L: Loader, G: Log> Daemon<T, L, G> {
    /// From now on, learn from the kernel instead of polling. Reads each
    /// authorized set once, to know what is there already.
    /// `now` in milliseconds, as every time of this mode.
    pub fn use_events(&mut self, lookup: Box<dyn ElementLookup + Send>, now: i64) {
        self.lookup = Some(lookup);
        self.events = Some(Machine::default());
        self.resync(now);
    }

    /// Does the daemon poll (pf), or wait for events (nftables)?
    pub fn polls(&self) -> bool {
        self.events.is_none()
    }

    /// Read every authorized set again.
    pub(super) fn resync(&mut self, now: i64) {
        let cx = cx!(self);
        if let Some(m) = self.events.as_mut() {
            let acts = m.resync(&cx, now);
            self.carry_out(acts, now);
        }
    }

    /// An event from the kernel, `now` in milliseconds.
    pub fn kernel(&mut self, ev: KernelEvent, now: i64) {
        let cx = cx!(self);
        if let Some(m) = self.events.as_mut() {
            let acts = m.kernel(&cx, ev, now);
            self.carry_out(acts, now);
        }
    }

    /// The deadlines of the events mode.
    pub(super) fn events_tick(&mut self, now: i64) {
        let cx = cx!(self);
        if let Some(m) = self.events.as_mut() {
            let acts = m.tick(&cx, now);
            self.carry_out(acts, now);
        }
    }

    /// Carry out the machine's actions in order; the actions that follow
    /// from an answer come before the rest.
    pub(super) fn carry_out(&mut self, acts: Vec<Action>, now: i64) {
        for a in acts {
            match a {
                Action::Log(level, line) => self.log.log(level, &line),
                Action::Fail(level, msg) => self.fail(level, &msg, now.div_euclid(1000)),
                Action::Poll => {
                    self.events = None;
                    self.lookup = None;
                    self.full.clear();
                    for w in &mut self.watches {
                        w.force = true;
                    }
                }
                Action::Ask(q, then) => {
                    let answer = self.ask(q);
                    let cx = cx!(self);
                    let Some(m) = self.events.as_mut() else {
                        return;
                    };
                    let more = m.answer(&cx, then, answer, now);
                    self.carry_out(more, now);
                }
            }
        }
    }

    /// Each element's time left, asked set by set (a set's in batches).
    fn lefts(&mut self, items: &[(String, std::net::IpAddr)]) -> Vec<Result<Left, String>> {
        let mut out: Vec<Result<Left, String>> = vec![Ok(None); items.len()];
        let Some(l) = self.lookup.as_mut() else {
            return vec![Err("no kernel events".to_owned()); items.len()];
        };
        let mut sets: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
        for (i, (set, _)) in items.iter().enumerate() {
            sets.entry(set.as_str()).or_default().push(i);
        }
        for (set, at) in sets {
            let addrs: Vec<std::net::IpAddr> = at.iter().map(|i| items[*i].1).collect();
            match l.left_many(set, &addrs) {
                Ok(v) => at.iter().zip(v).for_each(|(i, x)| out[*i] = Ok(x)),
                Err(e) => at.iter().for_each(|i| out[*i] = Err(e.to_string())),
            }
        }
        out
    }

    /// The kernel's answer to a query.
    fn ask(&mut self, q: Query) -> Answer {
        match q {
            Query::Left(items) => Answer::Left(self.lefts(&items)),
            Query::Dump(sets) => Answer::Dump(
                sets.iter()
                    .map(|set| match self.lookup.as_mut().map(|l| l.dump(set)) {
                        Some(Ok(elems)) => Ok(elems),
                        Some(Err(e)) if e.raw_os_error() == Some(libc::ENOENT) => {
                            Err(DumpError::Missing)
                        }
                        Some(Err(e)) => Err(DumpError::Failed(e.to_string())),
                        None => Err(DumpError::Failed("no kernel events".to_owned())),
                    })
                    .collect(),
            ),
            Query::Load => Answer::Done(vec![
                self.load_anchor().map(|()| 0).map_err(|e| e.to_string()),
            ]),
            Query::Add(per_table) => Answer::Done(
                per_table
                    .iter()
                    .map(|(t, list)| self.tables.add_timed(t, list).map_err(|e| e.to_string()))
                    .collect(),
            ),
            Query::Renew(t, host, secs) => Answer::Done(vec![
                self.tables
                    .delete(&t, std::slice::from_ref(&host))
                    .and_then(|_| self.tables.add_timed(&t, &[(host, secs)]))
                    .map_err(|e| e.to_string()),
            ]),
        }
    }
}

impl<T: Tables, L: Loader, G: Log> Daemon<T, L, G> {
    /// The reload that just ran (a SIGHUP, a `load` through the control
    /// socket) ended at `now` (ms): the knocks it lost are read from then
    /// on, however long it took.
    pub fn settle_from(&mut self, now: i64) {
        if let Some(m) = self.events.as_mut() {
            m.reload_ended(now);
        }
    }
}
