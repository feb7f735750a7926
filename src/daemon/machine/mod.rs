//! The daemon's decisions where the kernel tells it what happens
//! (nftables), as a pure state machine: it takes what happened (a kernel
//! event, a deadline, a command's change, a reload) and the time, and
//! returns `Action`s: log lines, and queries for the kernel (look up, dump,
//! load, add, renew). It reads and writes nothing itself. A query comes
//! with a `Then`, and its answer goes back through `Machine::answer`,
//! which returns the actions that follow from it; the caller
//! (`daemon::events`) carries them out in order, an answer's actions
//! before the rest, on the kernel and the log.
//!
//! So every path is a sequence of values: tests drive it with events and
//! answers and read the actions (`machine/tests.rs`), with no kernel, no
//! clock and no root.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use super::book::{Auth, Book, Taken};
use super::lines::{Level, line};
use crate::config::{Config, Service};
use crate::kevents::KernelEvent;
use crate::name::{Af, AnchorName, Net, Secs};
use crate::names::{self, nft_set_of};
use crate::tables::{Entry, PoolUse, TableRef, TableStat};

mod claims;
mod commit;
mod down;
mod due;
mod heard;
mod intake;
mod knocks;
mod modes;
mod polls;
mod repeats;
mod restore;
mod resync;
mod sweep;
#[cfg(test)]
mod tests;
mod watch;

pub use claims::KEEP;
pub use down::{EachKnown, Known};
pub(super) use due::meter_service;
pub use due::{auth_sets, deleted_sets, gone_line};
pub use modes::reload_loads;
pub use polls::{Write, poll_every};
pub use resync::SAY_AT_ONCE;
pub use watch::Polls;

/// How long after an authorization's deadline the daemon looks (ms): the
/// kernel's expiries of one transaction fall within it, and an `expired`
/// line still follows the kernel's by less than 50 ms.
pub const COALESCE: i64 = 20;

/// Seconds to milliseconds.
pub const fn ms(secs: i64) -> i64 {
    secs.saturating_mul(1000)
}

/// Is an element in its set, and for how long (ms; `None` inside: no
/// timeout)? `None`: not there.
pub type Left = Option<Option<u64>>;

/// A set's elements with their deadlines (ms since the epoch; `None`: no
/// timeout).
pub type Elements = crate::kevents::Deadlines;

/// What the machine asks of the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// Is each element still there, and for how long?
    Left(Vec<(String, IpAddr)>),
    /// Every element of each set.
    Dump(Vec<String>),
    /// Load the table again (only what differs changes).
    Load,
    /// Add hosts, each with the whole seconds given, per table.
    Add(Vec<(TableRef, Vec<(Net, u64)>)>),
    /// Give a present host the whole seconds given: delete and add (the
    /// kernel keeps a present element's timer on `add`).
    Renew(TableRef, Net, u64),
    /// Where the daemon polls: each anchor's table statistics, with pf's
    /// global pools when `pools`; with them, whether the config's rules
    /// and sets are in place and which sets are full (nftables).
    Stats {
        anchors: Vec<AnchorName>,
        pools: bool,
    },
    /// A table's entries, with their time stamps and counters.
    Entries(TableRef),
    /// Writes, in order, up to the first that fails.
    Writes(Vec<Write>),
    /// A rotating service's step begins at `at` (seconds): load its ports
    /// if `load` (not while the anchor is held), and say when the next
    /// begins.
    Rotate { at: i64, load: bool },
    /// Is pf enabled; does the main ruleset call `anchor` (if given)?
    PfState { anchor: Option<AnchorName> },
    /// Nothing: the machine goes on at the loop's next turn (`Resumed`).
    Pause,
    /// How many elements the kernel counts against each set's size.
    Counts(Vec<String>),
}

/// Why a read (a dump, a table's statistics) brought nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// No such set (a family the service does not have, a table gone).
    Missing,
    Failed(String),
}

/// The kernel's answer to a `Query`, one result per item asked: `Left`
/// for `Query::Left`, `Dump` for `Query::Dump`, `Stats` for
/// `Query::Stats`, `Entries` for `Query::Entries`, `Done` for the others
/// (how many entries each changed; for `Writes` up to the first that
/// failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Left(Vec<Result<Left, String>>),
    Dump(Vec<Result<Elements, ReadError>>),
    Done(Vec<Result<usize, String>>),
    Stats {
        anchors: Vec<Result<Vec<TableStat>, ReadError>>,
        intact: Option<bool>,
        full: Vec<(String, u64)>,
        pools: Option<Result<Vec<PoolUse>, String>>,
    },
    Entries(Result<Vec<Entry>, String>),
    /// When the next step begins, or why the ports stay as loaded.
    Rotated(Result<Option<i64>, String>),
    /// pf enabled (`None`: cannot be told); the anchor called.
    PfState {
        enabled: Option<bool>,
        referenced: Option<Result<bool, String>>,
    },
    Resumed,
    /// The kernel's count of each set (`None`: it does not say).
    Counts(Vec<Option<u64>>),
}

/// What the caller does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Log(Level, String),
    /// Log an error that may come back at every look (through the
    /// daemon's repeat filter).
    Fail(Level, String),
    /// Ask the kernel, and give the answer to `Machine::answer` with the
    /// `Then`.
    Ask(Query, Then),
    /// Kernel events are gone for good: the machine polls from now on
    /// (drop what answers events).
    Poll,
}

/// What the machine does with an answer (its own; opaque outside).
/// Boxed: an action is as large as its largest kind, and most actions
/// are log lines (a `Step` inline made each 184 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Then(Box<Step>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// A reload removed a service's tables from pf's ruleset: emptied.
    Emptied(modes::Emptied),
    /// A knock of a host not tracked: is its element there?
    Fresh { service: String, addr: IpAddr },
    /// Knocks heard during a reading: are their elements there?
    Heard(Vec<(String, IpAddr)>),
    /// A knock the last reload lost, put back.
    PutBack { service: String, addr: IpAddr },
    /// A knock's packet soon after a reload: did the reload carry the
    /// element over with its old time?
    Settle { service: String, addr: IpAddr },
    /// A knock of a host authorized since `since`, 2 s or more ago: how
    /// long has its element left?
    Renewal {
        service: String,
        addr: IpAddr,
        since: i64,
    },
    /// Log the failure of a write, if it failed.
    Report(String),
    /// Deadlines come up: which of these elements are gone?
    Due(Vec<(String, IpAddr, Auth)>),
    /// These authorizations, past the ttl a reload shortened, were
    /// deleted (or not).
    Cut(Vec<(String, IpAddr, Auth)>),
    /// The table was loaded again after a change by `by`.
    Restore { by: String, shown: String },
    /// Which of the authorizations known (with their time left) did the
    /// change take?
    Lost {
        by: String,
        shown: String,
        known: Vec<(String, IpAddr, Auth)>,
    },
    /// The lost ones were put back.
    Restored {
        by: String,
        shown: String,
        gone: usize,
        tables: Vec<TableRef>,
        retrack: Vec<(String, IpAddr, Auth)>,
    },
    /// Every authorized set read again, with each service's ttl (ms);
    /// `missed`: after lost notifications, so what changed is said.
    Resync {
        sets: Vec<(String, i64)>,
        missed: bool,
    },
    /// Its answer, being taken in a turn at a time.
    Taking(Box<resync::Taking>),
    /// A start's compare of the book with the record, a turn at a time.
    Comparing(Box<down::Comparing>),
    /// Full meters due a look.
    Meters(Vec<String>),
    /// Full sets the book says have room, their kernel counts asked.
    Room(Vec<String>),
    /// A poll's step (`polls.rs`).
    Poll(Box<polls::PollStep>),
    /// A rotation's step began (`modes.rs`).
    Rotated,
    /// pf's own state was read (`modes.rs`).
    PfState,
}

/// What a step needs from the daemon around the machine.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    /// The anchor is held unloaded (`pfknock unload`).
    pub held: bool,
    /// Did this process commit the transaction of `pid` (one of its own
    /// tools)? Such a transaction is followed already.
    pub ours: &'a dyn Fn(u32) -> bool,
}

/// The state: every authorization, and the conditions logged once.
#[derive(Default)]
pub struct Machine {
    /// The kernel tells what happens (nftables): decide on its events.
    /// Else poll (`polls`).
    pub(super) events: bool,
    /// What the polls know.
    pub(super) polls: Polls,
    /// When the next step of a rotating service begins (seconds).
    step: Option<i64>,
    /// Errors that repeat look after look, said once and then rarely.
    pub(super) repeats: repeats::Repeats,
    /// pf was said to be disabled.
    warned_disabled: bool,
    /// Every authorization: since when, until when (ms).
    pub(super) book: Book,
    /// Notifications of the transaction in progress, until its commit;
    /// what is left to say of one committed (`commit.rs`).
    batch: Vec<KernelEvent>,
    unsaid: Option<commit::Unsaid>,
    /// Forged datagrams not yet logged, per socket, and when its last line
    /// was (ms).
    forged: BTreeMap<&'static str, (u64, i64)>,
    /// Meters logged as full, and when to look again whether they have
    /// room (ms): the kernel tells when a full meter drops a knock, not
    /// when it has room again. So too authorized sets the book says have
    /// room, until the kernel's count agrees (`due::ASKED` while asked).
    pub(super) looks: BTreeMap<String, i64>,
    /// Authorized sets logged as full, until they have room again.
    pub(super) full: HashSet<String>,
    /// The last reload, while its knocks may still arrive (`due.rs`).
    reload: Option<due::Reload>,
    /// Sets whose ttl a reload shortened, and when (ms): an authorization
    /// made before is cut at its start plus the new ttl, though its
    /// element keeps the longer time it was given (`due.rs`).
    pub(super) cuts: BTreeMap<String, i64>,
    /// Knocks heard while a reading of the sets ran (`knocks.rs`, `heard.rs`).
    knocks: knocks::Knocks,
    /// Sets a reload deleted during the reading: not taken in from it.
    pub(super) dropped: HashSet<String>,
    /// Authorized sets gone before the last reading read them (another
    /// process deleted them): a comparison with the record passes over them.
    pub(super) unread: HashSet<String>,
}

/// Whole seconds left until `until` (ms), rounded down: what a restore
/// gives back.
fn left_secs(until: i64, now: i64) -> u64 {
    (until - now).max(0) as u64 / 1000
}

/// The age of an authorization made at `since` (ms), as logged: the
/// time since, to the nearest second (a ttl of 3 s said expired 3.02 s
/// on is 3s old, where the seconds of each, taken apart, made it 4s
/// past a second's turn).
fn age(now: i64, since: i64) -> Secs {
    Secs(crate::policy::age(now, since).saturating_add(500) / 1000)
}

fn af(a: IpAddr) -> Af {
    if a.is_ipv6() { Af::V6 } else { Af::V4 }
}

/// The service whose authorized set this is.
pub(super) fn auth_service<'c>(cfg: &'c Config, set: &str) -> Option<&'c Service> {
    cfg.services.iter().find(|s| {
        [Af::V4, Af::V6]
            .iter()
            .any(|a| nft_set_of(s.table.as_str(), *a) == set)
    })
}

/// The table a service authorizes into.
fn auth_table(cfg: &Config, s: &Service) -> TableRef {
    TableRef::new(&cfg.anchor, &s.table)
}

/// One log line about an authorization of service `s`.
fn event_line(cfg: &Config, verb: &str, s: &Service, addr: IpAddr, extra: &str) -> String {
    line(
        verb,
        &Net::host(addr),
        Some(&s.name),
        &auth_table(cfg, s),
        extra,
    )
}

fn info(out: &mut Vec<Action>, line: String) {
    out.push(Action::Log(Level::Info, line));
}

impl Machine {
    /// What the machine knows of `addr` in `set`.
    fn tracked(&self, set: &str, addr: IpAddr) -> Option<Auth> {
        self.book.get(self.book.find(set)?, addr)
    }

    /// Know `addr` in `set` as authorized from `since` until `until` (ms).
    pub fn track(
        &mut self,
        cx: &Ctx,
        set: &str,
        addr: IpAddr,
        since: i64,
        until: i64,
    ) -> Vec<Action> {
        let i = self.book.id(set);
        self.book.insert(i, addr, Auth { since, until });
        self.note_fill(cx, set)
    }

    /// Forget `addr` in `set` (removed): what was known of it.
    pub fn forget(
        &mut self,
        cx: &Ctx,
        set: &str,
        addr: IpAddr,
        out: &mut Vec<Action>,
    ) -> Option<Auth> {
        if let Some(r) = self.reload.as_mut() {
            r.removed.insert((set.to_owned(), addr));
        }
        let i = self.book.find(set)?;
        let a = self.book.remove(i, addr)?;
        out.extend(self.note_fill(cx, set));
        Some(a)
    }

    /// Forget every authorization of a set (a flush).
    pub fn forget_set(&mut self, cx: &Ctx, set: &str) -> Vec<Action> {
        if let Some(r) = self.reload.as_mut() {
            r.flushed.insert(set.to_owned());
        }
        if let Some(i) = self.book.find(set) {
            self.book.clear_set(i);
        }
        self.note_fill(cx, set)
    }

    /// An event from the kernel, `now` in milliseconds.
    pub fn kernel(&mut self, cx: &Ctx, ev: KernelEvent, now: i64) -> Vec<Action> {
        let mut out = self.say_all(cx, now);
        match ev {
            KernelEvent::Knock { prefix, addr } => {
                if let Some(meter) = names::meter_of_prefix(&prefix) {
                    if !self.knocks.heard_again(meter, addr) {
                        self.meter_full(cx, meter, now, &mut out)
                    }
                } else if let Some(service) = names::close_of_prefix(&prefix) {
                    self.closed(cx, service, addr, now, &mut out)
                } else {
                    self.knocked(cx, &prefix, addr, now, &mut out)
                }
            }
            KernelEvent::Elements { .. } | KernelEvent::Changed { .. } => self.batch.push(ev),
            KernelEvent::Commit { pid, process } => {
                let batch = std::mem::take(&mut self.batch);
                self.commit(cx, batch, (pid, &process), false, now, &mut out);
            }
            KernelEvent::Overrun => out.extend(self.overrun(cx)),
            KernelEvent::Forged(on) => self.forged(on, now, &mut out),
            KernelEvent::Lost(why) => {
                let polls = std::mem::take(&mut self.polls);
                *self = Machine {
                    polls,
                    ..Machine::default()
                };
                self.polls.take_over();
                out.push(Action::Log(
                    Level::Err,
                    format!(
                        "kernel events lost ({why}): polling every {} from now on",
                        poll_every(cx.cfg, true)
                    ),
                ));
                out.push(Action::Poll);
            }
        }
        out
    }

    /// The kernel's answer to a query this machine asked.
    pub fn answer(&mut self, cx: &Ctx, then: Then, answer: Answer, now: i64) -> Vec<Action> {
        let mut out = self.say_all(cx, now);
        match (*then.0, answer) {
            (Step::Fresh { service, addr }, Answer::Left(l)) => {
                let gone = matches!(l.first(), Some(Ok(None)));
                self.fresh(cx, &service, addr, gone, now, &mut out)
            }
            (Step::Heard(knocks), Answer::Left(l)) => self.said_heard(cx, knocks, l, now, &mut out),
            (Step::PutBack { service, addr }, Answer::Done(d)) => {
                self.put_back(cx, &service, addr, first_done(d), now, &mut out)
            }
            (Step::Settle { service, addr }, Answer::Left(l)) => {
                self.settle(cx, &service, addr, l.into_iter().next(), &mut out)
            }
            (
                Step::Renewal {
                    service,
                    addr,
                    since,
                },
                Answer::Left(l),
            ) => self.renewal(
                cx,
                &service,
                addr,
                since,
                l.into_iter().next(),
                now,
                &mut out,
            ),
            (Step::Emptied(e), Answer::Done(d)) => out.extend(e.said(d)),
            (Step::Report(what), Answer::Done(d)) => out.extend(
                (first_done(d).err()).map(|e| Action::Log(Level::Err, format!("{what}: {e}"))),
            ),
            (Step::Due(items), Answer::Left(l)) => self.expire(cx, items, l, now, &mut out),
            (Step::Cut(items), Answer::Done(d)) => {
                self.was_cut(cx, items, first_done(d), now, &mut out)
            }
            (Step::Restore { by, shown }, Answer::Done(d)) => {
                self.reloaded_for(by, shown, first_done(d), now, &mut out)
            }
            (Step::Lost { by, shown, known }, Answer::Left(l)) => {
                self.lost(cx, by, shown, known, l, now, &mut out)
            }
            (
                Step::Restored {
                    by,
                    shown,
                    gone,
                    tables,
                    retrack,
                },
                Answer::Done(d),
            ) => {
                let line = format!("a change by {by} ({shown})");
                self.restored(cx, &line, gone, tables, retrack, d, &mut out)
            }
            (Step::Resync { sets, missed }, Answer::Dump(d)) => {
                self.resynced(cx, sets, missed, d, now, &mut out)
            }
            (Step::Taking(t), Answer::Resumed) => self.take_in(cx, t, now, &mut out),
            (Step::Comparing(c), Answer::Resumed) => self.compare_part(cx, c, &mut out),
            (Step::Meters(due), Answer::Dump(d)) => self.meters_looked(cx, due, d, now, &mut out),
            (Step::Room(sets), Answer::Counts(c)) => self.counted(cx, sets, c, now, &mut out),
            (Step::Poll(step), a) => out = self.polled(cx, *step, a, now),
            (Step::Rotated, Answer::Rotated(r)) => out = self.rotated(cx, r, now),
            (
                Step::PfState,
                Answer::PfState {
                    enabled,
                    referenced,
                },
            ) => out = self.pf_state(cx, enabled, referenced),
            (step, a) => out.push(Action::Log(
                Level::Err,
                format!("internal: answer {a:?} to the wrong question ({step:?})"),
            )),
        }
        out
    }

    /// A close knock: the rule took `addr` out of the authorized set (if
    /// it was there) and said so. One line when it was authorized; a knock
    /// from a host that was not changes nothing and says it at debug.
    fn closed(&mut self, cx: &Ctx, service: &str, addr: IpAddr, now: i64, out: &mut Vec<Action>) {
        let Some(s) = cx.cfg.service(service) else {
            return;
        };
        let set = nft_set_of(s.table.as_str(), af(addr));
        match self.forget(cx, &set, addr, out) {
            _ if self.knocks.close_said(&set, addr) => {} // said as it came
            Some(a) => {
                let extra = format!("age={} ttl={} by knock", age(now, a.since), Secs(s.ttl.0));
                info(out, event_line(cx.cfg, "closed", s, addr, &extra));
            }
            None => out.push(Action::Log(
                Level::Debug,
                format!("close knock from {addr} for service {service}: it was not authorized"),
            )),
        }
    }

    fn knocked(&mut self, cx: &Ctx, prefix: &str, addr: IpAddr, now: i64, out: &mut Vec<Action>) {
        let Some(s) = cx
            .cfg
            .services
            .iter()
            .find(|s| prefix == names::knock_prefix(&s.name))
        else {
            return;
        };
        let set = nft_set_of(s.table.as_str(), af(addr));
        if self.waited(cx, s, &set, addr, out) || self.knocks.heard_again(&set, addr) {
            return;
        }
        let until = now + ms(s.ttl.0 as i64);
        match self.tracked(&set, addr) {
            Some(a) if s.renew => {
                // One knock is several packets past the meter's limit,
                // each logged by the kernel: one line for them all (those
                // within 2 s of the authorization or the last renewal, as
                // one knock's connects are), the deadline moved for each.
                if now - a.since >= ms(i64::from(s.rate.secs.clamp(1, 2))) {
                    // A renewal, if the kernel's element says so (see
                    // `renewal`).
                    let then = Then::of(Step::Renewal {
                        service: s.name.clone(),
                        addr,
                        since: a.since,
                    });
                    out.push(Action::Ask(Query::Left(vec![(set, addr)]), then));
                    return;
                }
                // Soon after a reload: did it carry the element over with
                // its time from before this knock?
                if self.settling(&set, addr, now) {
                    let then = Then::of(Step::Settle {
                        service: s.name.clone(),
                        addr,
                    });
                    out.push(Action::Ask(Query::Left(vec![(set.clone(), addr)]), then));
                }
                out.extend(self.track(cx, &set, addr, a.since, until));
            }
            // `add` keeps the element as it was: a knock while authorized
            // changes nothing when renewal is off.
            Some(_) => {}
            // nftables logs a knock only once its `add` succeeded; is the
            // element still there, or did a revoke or flush overtake this
            // event?
            None => {
                let then = Then::of(Step::Fresh {
                    service: s.name.clone(),
                    addr,
                });
                out.push(Action::Ask(Query::Left(vec![(set, addr)]), then));
            }
        }
    }

    /// A knock event of an authorized host, its element looked up. The
    /// kernel renewed it when its time is whole again (within a knock's
    /// spread): one line. Left with less, the reload that just ran carried
    /// it over with its old time: renewed in the kernel now, one line; or
    /// the event was read late (after the kernel dropped notifications, it
    /// renewed nothing the last reading of the set did not show): no line,
    /// only the kernel's deadline kept. Gone: removed since, which its own
    /// event says. A look-up that fails: as the event says.
    #[allow(clippy::too_many_arguments)]
    fn renewal(
        &mut self,
        cx: &Ctx,
        service: &str,
        addr: IpAddr,
        since: i64,
        left: Option<Result<Left, String>>,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let Some(s) = cx.cfg.service(service) else {
            return;
        };
        let set = nft_set_of(s.table.as_str(), af(addr));
        let ttl = ms(s.ttl.0 as i64);
        let renewed = |out: &mut Vec<Action>| {
            let extra = format!("age={} ttl={}", age(now, since), Secs(s.ttl.0));
            info(out, event_line(cx.cfg, "renewed", s, addr, &extra));
        };
        match left {
            Some(Ok(Some(Some(left)))) if left as i64 >= ttl - 2000 => {
                renewed(out);
                self.keep(cx, (&set, addr), now, now + left as i64, out);
            }
            Some(Ok(Some(Some(_)))) if self.settling(&set, addr, now) => {
                let table = auth_table(cx.cfg, s);
                let what = format!("{table}: renewing {addr}, carried over by the reload");
                let q = Query::Renew(table, Net::host(addr), s.ttl.0);
                out.push(Action::Ask(q, Then::of(Step::Report(what))));
                renewed(out);
                self.keep(cx, (&set, addr), now, now + ttl, out);
            }
            Some(Ok(Some(Some(left)))) => {
                out.push(Action::Log(
                    Level::Debug,
                    format!(
                        "knock from {addr} for service {service} read late: it renewed nothing"
                    ),
                ));
                self.keep(cx, (&set, addr), since, now + left as i64, out);
            }
            Some(Ok(Some(None) | None)) => {}
            Some(Err(_)) | None => {
                renewed(out);
                self.keep(cx, (&set, addr), now, now + ttl, out);
            }
        }
    }

    /// A new authorization, its element looked up: one that is gone was
    /// removed in between (it is not tracked, so nothing can bring it
    /// back), unless the last reload lost it, which puts it back.
    fn fresh(
        &mut self,
        cx: &Ctx,
        service: &str,
        addr: IpAddr,
        gone: bool,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let Some(s) = cx.cfg.service(service) else {
            return;
        };
        let set = nft_set_of(s.table.as_str(), af(addr));
        if gone && self.settling(&set, addr, now) {
            let add = vec![(auth_table(cx.cfg, s), vec![(Net::host(addr), s.ttl.0)])];
            let then = Then::of(Step::PutBack {
                service: service.to_owned(),
                addr,
            });
            out.push(Action::Ask(Query::Add(add), then));
            return;
        }
        self.authorized(cx, s, addr, !gone, now, out);
    }

    /// The line of a new authorization, and the book: `kept` when the
    /// element is there.
    fn authorized(
        &mut self,
        cx: &Ctx,
        s: &Service,
        addr: IpAddr,
        kept: bool,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        info(out, heard::authorized_line(cx, s, addr, kept));
        if kept {
            let set = nft_set_of(s.table.as_str(), af(addr));
            out.extend(self.track(cx, &set, addr, now, now + ms(s.ttl.0 as i64)));
        }
    }
}

/// The one result of a single write.
pub(super) fn first_done(d: Vec<Result<usize, String>>) -> Result<usize, String> {
    d.into_iter()
        .next()
        .unwrap_or_else(|| Err("no answer".to_owned()))
}
