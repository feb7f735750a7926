//! A burst said a part at a time, as the log takes its lines
//! (`Log::waiting`): a burst of knocks said at once (60,000 after a
//! SIGSTOP) overran syslog's queue, and so did a transaction of 100,000
//! elements by `nft`, and the lines past it were dropped.
//!
//! What the daemon's loop hears while a reading of the sets runs beside
//! it: each event is handed to the reading (the addresses it adds, for
//! the reading's check that it missed none) and to the machine, which
//! says knocks, changes by others and the rest at once
//! (`Machine::heard`), `HEAR_AT_ONCE` events at a time. A transaction by
//! others, heard then or not, is said a part at a time
//! (`Machine::say_more`).
#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::events::{KernelEvent, cx};
use super::lines::Log;
use super::{Daemon, Loader};
use crate::kevents::Deadline;
use crate::tables::Tables;

/// The addresses heard added to each set (knocks, notifications) while a
/// reading of the sets runs beside the loop, shared with its worker, which
/// looks them up too where it checks what it read by look-ups
/// (`ElementLookup::dump_heard`): an element a knock added behind the
/// dump's walk then costs no second dump.
pub(super) type Heard = Arc<Mutex<HashMap<String, Vec<IpAddr>>>>;

/// Addresses heard of one set during one reading, at most: past that (a
/// set changing fast), its check by look-ups fails as it would have, and
/// the set is dumped again.
const HEARD_MAX: usize = 1 << 16;

/// What `heard` holds of `set` now.
pub(super) fn heard_of(heard: &Heard, set: &str) -> Vec<IpAddr> {
    heard
        .lock()
        .map(|m| m.get(set).cloned().unwrap_or_default())
        .unwrap_or_default()
}

/// The elements of a reading that timed out while it ran, by set, as its
/// worker let go of them (`ElementLookup::dump_heard`'s `gone`, at most
/// `walks::CULL_AT_ONCE` a part), for the loop to say (`say_gone`).
pub(super) type Gone = Arc<Mutex<VecDeque<(String, Vec<Deadline>)>>>;

/// Hand what a reading of `set` let go of to the loop.
pub(super) fn let_go(gone: &Gone, set: &str, d: Vec<Deadline>) {
    if let Ok(mut q) = gone.lock() {
        q.push_back((set.to_owned(), d));
    }
}

/// Events the machine hears at once, at most: about as many lines, as
/// many as it says of a transaction at once.
const HEAR_AT_ONCE: usize = super::machine::SAY_AT_ONCE;

impl<T: Tables, L: Loader, G: Log> Daemon<T, L, G> {
    /// Kernel events the loop read, at `now` (ms); what it is to queue
    /// for after the reading of the sets, if one runs beside it (else
    /// all of them). The addresses they add to a set (a knock's, by its
    /// service; a notification's) are `Heard` by the reading at once,
    /// and the machine hears them in order (`hear_more`). Element changes
    /// are done once heard (said, and kept as records that the reading's
    /// take-in takes in: `heard.rs`), so they are not queued: a start's
    /// reading at a million under churn hears some 600,000, which waited
    /// in the queue beside their records (24 bytes each, IPv6); and an
    /// event of a host added, deleted and added again, taken in once the
    /// reading was, said the deletion and the second addition again.
    /// The rest waits in the queue: a knock's element is the reading's
    /// to tell, a change to the table restores it after.
    pub fn hear(&mut self, evs: Vec<KernelEvent>, now: i64) -> Vec<KernelEvent> {
        if !self.reading_runs() {
            return evs;
        }
        self.hand_to_reading(&evs);
        let mut queue = Vec::new();
        for ev in evs {
            if !matches!(ev, KernelEvent::Elements { .. }) {
                queue.push(ev.clone());
            }
            self.to_hear.push_back(ev);
        }
        self.hear_more(now);
        queue
    }

    /// Has the machine heard all the loop handed it during the reading,
    /// and said all of it? The reading's answer waits until then: the
    /// element changes heard are in no queue but this one.
    pub(super) fn heard_all(&self) -> bool {
        self.to_hear.is_empty() && !self.machine.unsaid() && self.gone_said()
    }

    /// Is nothing the reading let go of left to say?
    fn gone_said(&self) -> bool {
        self.gone.lock().map_or(true, |q| q.is_empty())
    }

    /// Say what the reading let go of (`Gone`: timed out while it ran), a
    /// part at a time while the log has room (with `now`, ms: a turn of
    /// the loop), or all of it (`None`: its worker is done, and its
    /// answer is taken in next): before what the loop heard since, as
    /// their deadlines passed before the reading looked them up. At a
    /// start over the last run's record, with it (`gone_while_read`).
    pub fn say_gone(&mut self, now: Option<i64>) {
        while now.is_none() || self.log_has_room() {
            let part = self.gone.lock().ok().and_then(|mut q| q.pop_front());
            let Some((set, gone)) = part else {
                return;
            };
            let record = match &self.start_record {
                Some(Some(r)) => Some(r.clone()),
                _ => None,
            };
            let cx = cx!(self);
            let acts = (self.machine).gone_while_read(&cx, &set, gone, record.as_deref());
            self.carry_out(acts, now.unwrap_or_else(crate::clock::now_ms));
        }
    }

    /// Hand the machine what it has not heard yet, `HEAR_AT_ONCE` events
    /// at a time while fewer lines than that wait for syslog; the rest at
    /// the loop's next turns, once syslog took what waits (so a status
    /// line waits behind a part at most). What is left when the reading
    /// ends is worked through as any event.
    pub fn hear_more(&mut self, now: i64) {
        while self.log_has_room() {
            if self.machine.unsaid() {
                self.say_more(now);
                continue;
            }
            // A part ends at a commit, whose transaction is said a part
            // at a time too.
            let commit = |e: &KernelEvent| matches!(e, KernelEvent::Commit { .. });
            let n = match self.to_hear.iter().take(HEAR_AT_ONCE).position(commit) {
                Some(i) => i + 1,
                None if self.to_hear.is_empty() => return,
                None => self.to_hear.len().min(HEAR_AT_ONCE),
            };
            let part: Vec<KernelEvent> = self.to_hear.drain(..n).collect();
            let acts = self.machine.heard(&cx!(self), &part, now);
            self.carry_out(acts, now);
        }
    }

    /// The kernel's events that wait in `pending`, in order, each at the
    /// time `clock` says (ms), as long as the log takes their lines and
    /// until `end`: each event, or part of a transaction by others, once
    /// syslog took the lines before but a part's (a burst waits for
    /// syslog rather than going past its queue); at most `limit` events
    /// (a command waits behind them), though what they leave unsaid is
    /// said. Whether all were.
    pub fn work_through(
        &mut self,
        pending: &mut VecDeque<KernelEvent>,
        clock: &dyn Fn() -> i64,
        end: Instant,
        limit: Option<usize>,
    ) -> bool {
        let mut left = limit.unwrap_or(usize::MAX);
        while self.log_has_room() {
            if self.unsaid() {
                self.say_more(clock());
            } else if left == 0 {
                break;
            } else if let Some(ev) = pending.pop_front() {
                left -= 1;
                self.kernel(ev, clock());
            } else {
                return true;
            }
            if Instant::now() >= end {
                break;
            }
        }
        pending.is_empty() && !self.unsaid()
    }

    /// Does the log take lines: fewer than a part's wait for syslog?
    pub fn log_has_room(&self) -> bool {
        self.log.waiting() < HEAR_AT_ONCE
    }

    /// Is part of a transaction by others left to say?
    pub fn unsaid(&self) -> bool {
        self.machine.unsaid()
    }

    /// Its next part, at `now` (ms): once the log has room.
    pub fn say_more(&mut self, now: i64) {
        let acts = self.machine.say_more(&cx!(self), now);
        self.carry_out(acts, now);
    }

    /// All that is left of it, at `now` (ms): before a command, a signed
    /// knock or a reload, which come after it.
    pub fn say_all(&mut self, now: i64) {
        if self.machine.unsaid() {
            let acts = self.machine.say_all(&cx!(self), now);
            self.carry_out(acts, now);
        }
    }

    /// One turn of the loop while a reading runs, at `now` (ms): what
    /// the reading let go of (`say_gone`), what waits to be heard, and
    /// what falls due (`due_while_reading`).
    pub fn reading_turn(&mut self, now: i64) {
        self.say_gone(Some(now));
        self.hear_more(now);
        self.due_while_reading(now);
    }

    /// How long the loop may wait while a reading runs: until the next
    /// authorization due, a second at most, and `syslog::RETRY` while
    /// events wait to be heard, or lines to be said (of a transaction, or
    /// of what the reading let go of).
    pub fn reading_wait(&self, now: i64) -> Duration {
        let due = self.due_while_reading_ms().map(|t| (t - now).max(0) as u64);
        let wait = Duration::from_millis(due.unwrap_or(1000).min(1000));
        match self.to_hear.is_empty() && !self.unsaid() && self.gone_said() {
            true => wait,
            false => wait.min(crate::syslog::RETRY),
        }
    }

    fn hand_to_reading(&mut self, evs: &[KernelEvent]) {
        let Ok(mut heard) = self.heard.lock() else {
            return;
        };
        for ev in evs {
            let (set, addrs) = match ev {
                KernelEvent::Knock { prefix, addr } => {
                    let s = (self.cfg.services.iter())
                        .find(|s| *prefix == crate::names::knock_prefix(&s.name));
                    let Some(s) = s else { continue };
                    let af = crate::name::Af::of(*addr);
                    (crate::names::nft_set_of(s.table.as_str(), af), vec![*addr])
                }
                KernelEvent::Elements {
                    set,
                    added: true,
                    addrs,
                } => (set.clone(), addrs.iter().map(|d| d.addr()).collect()),
                _ => continue,
            };
            let v = heard.entry(set).or_default();
            let room = HEARD_MAX.saturating_sub(v.len());
            v.extend(addrs.into_iter().take(room));
        }
    }
}
