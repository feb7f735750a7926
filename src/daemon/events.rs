//! The shell around `daemon::machine`, for both of its modes: it hands
//! the machine the kernel's events (nftables, see `crate::netlink`), the
//! time and the answers to its queries, and carries out its actions on
//! the kernel (`ElementLookup`, `Tables`, the `Loader`) and the log.
#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;

use super::hearing::{Gone, Heard, heard_of};
use super::machine::{Action, Answer, Elements, Left, Query, ReadError, Then, Write};
use super::{Daemon, Level, Loader, Log};
use crate::kevents::Deadline;
pub use crate::kevents::{ElementLookup, HowRead, KernelEvent};
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

    /// `use_events` for `run`: the sets are read by `begin`, in the loop
    /// (beside it, with `read_aside`), and what changed while no daemon
    /// ran (`record`, as `state::take` gave it) is said once they are.
    /// At a million elements that reading takes minutes: `run` returns,
    /// and its service manager sees a daemon, long before.
    pub fn use_events_later(
        &mut self,
        lookup: Box<dyn ElementLookup + Send>,
        record: Option<super::state::Known>,
    ) {
        self.lookup = Some(lookup);
        self.machine.use_events();
        self.machine.compare_follows(record.is_some());
        self.start_record = Some(record.map(std::sync::Arc::new));
    }

    /// The loop's first step: the start's reading of the sets, if
    /// `use_events_later` left it to the loop; reconciled at once where it
    /// did not run beside the loop.
    pub fn begin(&mut self, now: i64) {
        if self.start_record.is_some() {
            self.resync(now);
            self.read_started();
        }
    }

    /// The start's reading is done (not beside the loop, or ended): say
    /// what changed while no daemon ran, and give back what it held.
    fn read_started(&mut self) {
        if self.reading.is_some() {
            return;
        }
        if let Some(record) = self.start_record.take() {
            // The reading's worker, which shared it, is done.
            let record =
                record.map(|r| std::sync::Arc::try_unwrap(r).unwrap_or_else(|r| (*r).clone()));
            self.reconcile(record, crate::clock::now());
            crate::sys_unix::release_free_memory();
        }
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
        if overrun && self.reading.is_none() {
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
        let mut todo: VecDeque<Action> = acts.into();
        let mut done = 0usize;
        while let Some(a) = todo.pop_front() {
            done += 1;
            match a {
                Action::Log(level, line) => self.say(level, &line),
                Action::Fail(level, msg) => self.fail(level, &msg, now.div_euclid(1000)),
                Action::Poll => self.lookup = None,
                Action::Ask(Query::Dump(sets), then) if self.aside && then.reads_every_set() => {
                    let known = self.known_sets();
                    self.heard = Heard::default();
                    let heard = self.heard.clone();
                    // A reading that takes what it finds as known lets go
                    // of what times out while it runs, and the loop says
                    // it (`Machine::lets_go`, `say_gone`), over a record
                    // too.
                    self.gone = Gone::default();
                    let gone = self.machine.lets_go(&then).then(|| self.gone.clone());
                    let with = (sets, known, heard, gone);
                    match Reading::start(self.lookup.as_deref(), with, then, now) {
                        Ok(mut r) => {
                            r.rest = std::mem::take(&mut todo);
                            self.reading = Some(r);
                            return;
                        }
                        Err(back) => {
                            let (sets, then) = *back;
                            self.answer_now(Query::Dump(sets), then, now, &mut todo)
                        }
                    }
                }
                // Taking a reading in, a turn at a time.
                Action::Ask(Query::Pause, then) if self.aside => match Reading::parked(then, now) {
                    Ok(mut r) => {
                        r.rest = std::mem::take(&mut todo);
                        self.reading = Some(r);
                        return;
                    }
                    Err(then) => self.answer_now(Query::Pause, *then, now, &mut todo),
                },
                Action::Ask(q, then) => self.answer_now(q, then, now, &mut todo),
            }
        }
        // What large batches held (their lines, their look-ups) goes
        // back: one batch, or many (a mass expiry goes in ticks of 8,192).
        self.untrimmed += done;
        if self.untrimmed >= BIG {
            self.untrimmed = 0;
            crate::sys_unix::release_free_memory();
        }
    }

    /// Ask the kernel, and put what the answer calls for first in `todo`.
    fn answer_now(&mut self, q: Query, then: Then, now: i64, todo: &mut VecDeque<Action>) {
        let answer = self.ask(q);
        let cx = cx!(self);
        let more = self.machine.answer(&cx, then, answer, now);
        // In the answer's own memory (a `Vec` becomes a queue in place),
        // the rest behind it: a tick's lines are not held twice.
        let mut first = VecDeque::from(more);
        first.append(todo);
        *todo = first;
    }

    /// From now on, a reading of every set (after the kernel dropped
    /// notifications) runs beside the loop where the look-up has a reader
    /// of its own (`run`'s loop; `reading`, `read_done`).
    pub fn read_aside(&mut self) {
        self.aside = true;
    }

    /// Is a reading of the sets running beside the loop? Then the machine
    /// takes nothing else until it ends (`read_done`).
    pub fn reading(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.reading.as_ref().map(|r| r.done.as_fd())
    }

    /// `reading`, to wait on: none while the machine, between two parts
    /// of what it says (`Query::Pause`: lines learned late, what changed
    /// while no daemon ran), waits for syslog to take the lines before.
    /// Nor while what the loop heard during the reading waits to be
    /// heard or said (`heard_all`): the reading's end waits for it.
    pub fn reading_to_wait_on(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        let parked = self.reading.as_ref().is_some_and(|r| r.worker.is_none());
        let ready = if parked {
            self.log_has_room()
        } else {
            self.heard_all()
        };
        self.reading().filter(|_| ready)
    }

    /// The reading beside the loop ended (its socket is readable): hand
    /// the machine its answer, with the time it was asked at, and carry
    /// out what was waiting behind it.
    pub fn read_done(&mut self) {
        self.read_done_heard(Vec::new);
    }

    /// `read_done`, told which knocks (prefix, address) wait in the
    /// loop's queue, read while the sets were: the start takes their
    /// elements in as news when their events come, not silently with the
    /// rest (asked only once the reading's answer is in).
    pub fn read_done_heard(&mut self, heard: impl FnOnce() -> Vec<(String, std::net::IpAddr)>) {
        // All the loop heard during the reading is heard and said first
        // (`reading_turn`, as the log takes the lines): the element
        // changes among it are in no other queue.
        if self.reading_runs() {
            self.say_gone(Some(crate::clock::now_ms()));
        }
        if self.reading_runs() && !self.heard_all() {
            return;
        }
        let Some(r) = self.reading.take() else {
            return;
        };
        // The room it took is given back: a start's reading may hear many.
        self.to_hear = Default::default();
        if r.worker.is_some() {
            let knocks = heard();
            if !knocks.is_empty() {
                let cx = cx!(self);
                self.machine.knocks_waiting(&cx, knocks);
            }
        }
        let n = r.sets;
        let answer = match r.worker {
            Some(w) => {
                let read = w.join().unwrap_or_else(|_| {
                    let e = ReadError::Failed("the reading of the sets failed".to_owned());
                    (vec![Err(e); n], Vec::new())
                });
                // Its worker is done: all it let go of is said first.
                self.say_gone(None);
                self.answer_of(read)
            }
            None => Answer::Resumed,
        };
        let cx = cx!(self);
        let more = self.machine.answer(&cx, r.then, answer, r.now);
        let mut todo = r.rest;
        for m in more.into_iter().rev() {
            todo.push_front(m);
        }
        self.carry_out(todo.into(), r.now);
        if let Some(taking) = self.reading.as_mut() {
            // Its answer is being taken in: the same reading, for the
            // status line.
            taking.since = r.since;
            return;
        }
        // What the reading held goes back.
        crate::sys_unix::release_free_memory();
        self.read_started();
    }

    /// A stop: a reading's answer being taken in is taken in to the end
    /// first (a second or two at a million), so that what a stop keeps
    /// is what the kernel holds; a reading still running is left (the
    /// book is as it was before it).
    pub(super) fn finish_taking(&mut self) {
        for _ in 0..1 << 20 {
            match &self.reading {
                Some(r) if r.worker.is_none() => self.read_done(),
                _ => return,
            }
        }
    }

    /// SIGINFO's line for a reading that runs, or whose answer is being
    /// taken in (a part each turn of the loop).
    pub(super) fn reading_status(&mut self) {
        if let Some(r) = &self.reading {
            let secs = r.since.elapsed().as_secs();
            let line = if r.worker.is_some() {
                format!(
                    "status: reading the sets for {secs}s; knocks and changes by others \
                     are said as they come, other kernel events wait until it ends"
                )
            } else {
                format!(
                    "status: taking in what a reading of the sets found (begun {secs}s ago); \
                     kernel events wait until it ends"
                )
            };
            self.log.log(Level::Info, &line);
        }
    }

    /// Does a reading of the sets run beside the loop (not taken in yet)?
    pub(super) fn reading_runs(&self) -> bool {
        self.reading.as_ref().is_some_and(|r| r.worker.is_some())
    }

    /// A SIGHUP or SIGUSR1 that comes while a reading of the sets runs, or
    /// while its answer is taken in, waits until it ends: said once, so
    /// that the log tells why its reload or sweep is not there yet.
    /// Whether it waits.
    pub fn hold(&mut self, signal: &str) -> bool {
        let Some(r) = &self.reading else {
            return false;
        };
        let secs = r.since.elapsed().as_secs();
        let line =
            format!("{signal}: waits until the reading of the sets (begun {secs}s ago) is done");
        self.log.log(Level::Notice, &line);
        true
    }

    /// The kernel's count of each set; `None` for one it cannot count,
    /// which the machine takes as its book says.
    pub(super) fn counts(&mut self, sets: &[String]) -> Vec<Option<u64>> {
        let Some(l) = self.lookup.as_mut() else {
            return vec![None; sets.len()];
        };
        sets.iter().map(|s| l.counted(s).ok().flatten()).collect()
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

    /// Writes, in order, up to the first that fails: what each did.
    fn writes(&mut self, writes: Vec<Write>) -> Answer {
        let mut done = Vec::new();
        for w in writes {
            let r = match w {
                Write::Delete(t, nets) => self.tables.delete(&t, &nets),
                Write::Stamp(t, nets) => self.tables.renew(&t, &nets),
                Write::Move(from, to, nets) => {
                    crate::tables::move_hosts(&mut self.tables, &from, &to, &nets)
                        .map(|kept| kept.len())
                }
                Write::Empty(t) => self.tables.entries(&t).and_then(|e| {
                    let nets: Vec<crate::name::Net> = e.iter().map(|x| x.net).collect();
                    if nets.is_empty() {
                        return Ok(0);
                    }
                    self.tables.delete(&t, &nets)
                }),
            };
            let failed = r.is_err();
            done.push(r.map_err(|e| e.to_string()));
            if failed {
                break;
            }
        }
        Answer::Done(done)
    }

    /// The kernel's answer to a query.
    fn ask(&mut self, q: Query) -> Answer {
        match q {
            Query::Left(items) => Answer::Left(self.lefts(&items)),
            Query::Dump(sets) => {
                let known = self.known_sets();
                let read = dump_sets(
                    self.lookup.as_deref_mut(),
                    &sets,
                    &known,
                    (&Heard::default(), None),
                );
                self.answer_of(read)
            }
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
            Query::Writes(writes) => self.writes(writes),
            Query::Pause => Answer::Resumed,
            Query::Counts(sets) => Answer::Counts(self.counts(&sets)),
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

/// Actions carried out past which the memory they held is given back
/// (malloc_trim): a mass expiry, a reading's lines. Counted over batches:
/// a mass expiry's ticks of 8,192 each held under it, and at a million
/// under churn the daemon stayed 30 MB above its size for good.
const BIG: usize = 10_000;

/// A reading of every set: each set's elements, and a line for each on
/// how it was read (`dump_sets`).
type Read = (Vec<Result<Elements, ReadError>>, Vec<HowRead>);

/// What the last daemon kept of each set, for a start's reading: the
/// record itself, shared with the reading's worker (at a million, a list
/// of the addresses beside it would be 17 MB more), and each set's table
/// and family. Nothing where there is no record.
#[derive(Clone, Default)]
pub(super) struct KnownSets {
    record: Option<std::sync::Arc<super::state::Known>>,
    sets: HashMap<String, (String, crate::name::Af)>,
}

impl KnownSets {
    /// How many addresses the record kept of `set`, and those addresses
    /// (in address order), where there is a record.
    fn of(&self, set: &str) -> Option<(usize, impl Iterator<Item = IpAddr> + '_)> {
        let r = self.record.as_ref()?;
        let (table, af) = self.sets.get(set)?;
        let kept = move || {
            (r.hosts(table).into_iter().flatten())
                .map(|(n, _)| n.addr())
                .filter(move |a| a.is_ipv4() == (*af == crate::name::Af::V4))
        };
        Some((kept().count(), kept()))
    }
}

impl<T: Tables, L: Loader, G: Log> Daemon<T, L, G> {
    /// A reading's answer for the machine, its lines on how each set was
    /// read logged first.
    fn answer_of(&mut self, (read, notes): Read) -> Answer {
        for n in notes {
            let level = if n.doubtful {
                Level::Warning
            } else {
                Level::Debug
            };
            self.log.log(level, &n.line);
        }
        Answer::Dump(read)
    }

    /// The start's record, set by set, while it waits for the start's
    /// reading (`ElementLookup::read_known`).
    fn known_sets(&self) -> KnownSets {
        let Some(Some(record)) = &self.start_record else {
            return KnownSets::default();
        };
        let mut sets = HashMap::new();
        for s in &self.cfg.services {
            let t = crate::tables::TableRef::new(&self.cfg.anchor, &s.table).to_string();
            for af in [crate::name::Af::V4, crate::name::Af::V6] {
                sets.insert(
                    crate::names::nft_set_of(s.table.as_str(), af),
                    (t.clone(), af),
                );
            }
        }
        KnownSets {
            record: Some(record.clone()),
            sets,
        }
    }
}

/// Every set's elements, as the machine takes them, and a line (debug) for
/// each set of the record on how it was read: by a look-up of what the
/// record holds (and of what was `heard` added meanwhile), where the
/// kernel's count says that is all, else whole.
fn dump_sets(
    mut lookup: Option<&mut (dyn ElementLookup + Send + 'static)>,
    sets: &[String],
    known: &KnownSets,
    (heard, gone): (&Heard, Option<&Gone>),
) -> Read {
    let mut notes = Vec::new();
    let mut read = |l: &mut (dyn ElementLookup + Send), set: &str| {
        let Some((k, kept)) = known.of(set) else {
            return dump_noting(l, set, (heard, gone), &mut notes);
        };
        let said = |line| HowRead {
            line,
            doubtful: false,
        };
        let more = heard_of(heard, set);
        let mut all = kept.chain(more.iter().copied());
        let looked = l.read_known(set, k + more.len(), &mut all)?;
        if let Some(e) = looked {
            let n = e.len();
            let also = match more.len() {
                0 => String::new(),
                m => format!(" and of the {m} heard added meanwhile"),
            };
            notes.push(said(format!(
                "set {set}: read by a look-up of each of the {k} the last daemon \
                 kept{also}: {n} found, as many as the kernel counts"
            )));
            return Ok(e);
        }
        notes.push(said(format!(
            "set {set}: read whole: the kernel does not count just the {k} the last daemon \
             kept"
        )));
        dump_noting(l, set, (heard, gone), &mut notes)
    };
    let out = sets
        .iter()
        .map(|set| match lookup.as_mut().map(|l| read(&mut **l, set)) {
            Some(Ok(elems)) => Ok(elems),
            Some(Err(e)) if e.raw_os_error() == Some(libc::ENOENT) => Err(ReadError::Missing),
            Some(Err(e)) => Err(ReadError::Failed(e.to_string())),
            None => Err(ReadError::Failed("no kernel events".to_owned())),
        })
        .collect();
    (out, notes)
}

/// A set dumped (what was `heard` added to it meanwhile looked up too),
/// the line on how, if any, kept in `notes`.
fn dump_noting(
    l: &mut (dyn ElementLookup + Send),
    set: &str,
    (heard, gone): (&Heard, Option<&Gone>),
    notes: &mut Vec<HowRead>,
) -> std::io::Result<crate::kevents::Deadlines> {
    let let_go = |d: Vec<Deadline>| gone.map_or((), |g| super::hearing::let_go(g, set, d));
    let let_go = gone.map(|_| &let_go as &dyn Fn(Vec<Deadline>));
    let (d, how) = l.dump_heard(set, &|| heard_of(heard, set), let_go)?;
    notes.extend(how);
    Ok(d)
}

/// A reading of every authorized set that runs beside the loop, on a
/// look-up of its own (`ElementLookup::reader`): at a million elements
/// the kernel's dump takes a minute or more (it walks the set again for
/// each datagram), and meanwhile the loop answers SIGINFO and SIGTERM and
/// keeps reading the kernel's events, so that the kernel drops none; the
/// machine takes them once the answer is in, as it would have after a
/// reading in the loop.
pub(super) struct Reading {
    then: Then,
    /// What followed the query in the machine's list.
    rest: VecDeque<Action>,
    now: i64,
    sets: usize,
    since: std::time::Instant,
    /// Readable once the worker is done (at once when parked).
    done: UnixStream,
    /// None: the answer is in, and being taken in (`parked`).
    worker: Option<std::thread::JoinHandle<Read>>,
}

impl Reading {
    /// Start the worker; without a look-up of its own (or a socket pair),
    /// the query comes back to be answered in the loop.
    fn start(
        lookup: Option<&(dyn ElementLookup + Send)>,
        (sets, known, heard, gone): (Vec<String>, KnownSets, Heard, Option<Gone>),
        then: Then,
        now: i64,
    ) -> Result<Reading, Box<(Vec<String>, Then)>> {
        let Some(Ok(mut reader)) = lookup.and_then(|l| l.reader()) else {
            return Err(Box::new((sets, then)));
        };
        let Ok((done, signal)) = UnixStream::pair() else {
            return Err(Box::new((sets, then)));
        };
        let n = sets.len();
        let worker = crate::sys_unix::spawn(move || {
            crate::sys_unix::yield_to_loop();
            let r = dump_sets(
                Some(reader.as_mut()),
                &sets,
                &known,
                (&heard, gone.as_ref()),
            );
            let _ = std::io::Write::write_all(&mut &signal, &[1]);
            r
        });
        Ok(Reading {
            then,
            rest: VecDeque::new(),
            now,
            sets: n,
            since: std::time::Instant::now(),
            done,
            worker: Some(worker),
        })
    }

    /// The machine goes on with `then` at the loop's next turn: a reading
    /// whose socket is readable at once. Without a socket pair, `then`
    /// comes back (the machine goes on now).
    fn parked(then: Then, now: i64) -> Result<Reading, Box<Then>> {
        let Ok((done, signal)) = UnixStream::pair() else {
            return Err(Box::new(then));
        };
        if std::io::Write::write_all(&mut &signal, &[1]).is_err() {
            return Err(Box::new(then));
        }
        Ok(Reading {
            then,
            rest: VecDeque::new(),
            now,
            sets: 0,
            since: std::time::Instant::now(),
            done,
            worker: None,
        })
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
