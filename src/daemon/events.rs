//! The shell around `daemon::machine`, for both of its modes: it hands
//! the machine the kernel's events (nftables, see `crate::netlink`), the
//! time and the answers to its queries, and carries out its actions on
//! the kernel (`ElementLookup`, `Tables`, the `Loader`) and the log.
#![forbid(unsafe_code)]

use super::machine::{Action, Answer, Left, Query, ReadError, Write};
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
            ours: &$crate::tool::ours,
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
        self.machine.use_events();
        self.resync(now);
    }

    /// Does the daemon poll (pf), or wait for events (nftables)?
    pub fn polls(&self) -> bool {
        self.machine.polls()
    }

    /// Read every authorized set again.
    pub(super) fn resync(&mut self, now: i64) {
        let cx = cx!(self);
        let acts = self.machine.resync(&cx, now);
        self.carry_out(acts, now);
    }

    /// An event from the kernel, `now` in milliseconds.
    pub fn kernel(&mut self, ev: KernelEvent, now: i64) {
        if self.machine.polls() {
            return;
        }
        let overrun = matches!(ev, KernelEvent::Overrun);
        let cx = cx!(self);
        let acts = self.machine.kernel(&cx, ev, now);
        self.carry_out(acts, now);
        if overrun {
            // The sets were read again: what the reading held goes back.
            crate::sys_unix::release_free_memory();
        }
    }

    /// The deadlines of the events mode.
    pub(super) fn events_tick(&mut self, now: i64) {
        let cx = cx!(self);
        let acts = self.machine.tick(&cx, now);
        self.carry_out(acts, now);
    }

    /// Carry out the machine's actions in order (`now` in ms); the
    /// actions that follow from an answer come before the rest. A queue,
    /// not recursion: a poll of many tables is a long chain of answers.
    pub(super) fn carry_out(&mut self, acts: Vec<Action>, now: i64) {
        let mut todo: std::collections::VecDeque<Action> = acts.into();
        while let Some(a) = todo.pop_front() {
            match a {
                Action::Log(level, line) => self.log.log(level, &line),
                Action::Fail(level, msg) => self.fail(level, &msg, now.div_euclid(1000)),
                Action::Poll => self.lookup = None,
                Action::Ask(q, then) => {
                    let answer = self.ask(q);
                    let cx = cx!(self);
                    let more = self.machine.answer(&cx, then, answer, now);
                    for m in more.into_iter().rev() {
                        todo.push_front(m);
                    }
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
                            Err(ReadError::Missing)
                        }
                        Some(Err(e)) => Err(ReadError::Failed(e.to_string())),
                        None => Err(ReadError::Failed("no kernel events".to_owned())),
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
            Query::Stats { anchors, pools } => {
                let anchors = anchors
                    .iter()
                    .map(|a| {
                        self.tables.table_stats(a).map_err(|e| {
                            if e.outcome().is_some_and(|o| o.is_missing()) {
                                ReadError::Missing
                            } else {
                                ReadError::Failed(e.to_string())
                            }
                        })
                    })
                    .collect();
                Answer::Stats {
                    anchors,
                    intact: self.tables.intact(&self.cfg),
                    full: self.tables.full_sets(),
                    pools: pools.then(|| self.tables.pools().map_err(|e| e.to_string())),
                }
            }
            Query::Entries(t) => {
                Answer::Entries(self.tables.entries(&t).map_err(|e| e.to_string()))
            }
            Query::Writes(writes) => {
                let mut done = Vec::new();
                for w in writes {
                    let r = match w {
                        Write::Delete(t, nets) => self.tables.delete(&t, &nets),
                        Write::Stamp(t, nets) => self.tables.renew(&t, &nets),
                        Write::Put(t, nets) => self.tables.add(&t, &nets),
                    };
                    let failed = r.is_err();
                    done.push(r.map_err(|e| e.to_string()));
                    if failed {
                        break;
                    }
                }
                Answer::Done(done)
            }
            Query::PfState { anchor } => Answer::PfState {
                enabled: self.loader.enabled(),
                referenced: anchor.map(|a| self.loader.referenced(&a).map_err(|e| e.to_string())),
            },
            Query::Rotate { at, load } => {
                Answer::Rotated(self.step(at, load).map_err(|e| e.to_string()))
            }
        }
    }
}

impl<T: Tables, L: Loader, G: Log> Daemon<T, L, G> {
    /// The reload that just ran (a SIGHUP, a `load` through the control
    /// socket) ended at `now` (ms): the knocks it lost are read from then
    /// on, however long it took.
    pub fn settle_from(&mut self, now: i64) {
        if !self.machine.polls() {
            self.machine.reload_ended(now);
        }
    }
}
