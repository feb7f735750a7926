//! A transaction someone else committed, said a part at a time: a line
//! for each element it added to or deleted from an authorized set, with
//! who made it. One `nft -f` can add 100,000 elements, and its lines said
//! at once went past syslog's queue (`syslog::QUEUE`), most of them
//! dropped. So the machine says `SAY_AT_ONCE` of them at the commit and
//! keeps the rest (`Unsaid`); the daemon asks for the next part once
//! syslog took the lines before (`say_more`). Anything else the machine
//! is given first says what is left (`said_all`): what follows a
//! transaction comes after it, as its events did.
#![forbid(unsafe_code)]

use std::collections::VecDeque;

use super::resync::SAY_AT_ONCE;
use super::{Action, Ctx, Machine, Secs, age, auth_service, event_line, info};
use crate::config::Service;
use crate::kevents::{Deadline, KernelEvent};

/// What is left to say of a transaction by someone else.
pub(super) struct Unsaid {
    /// Its notifications not said yet, in order; of the first, its
    /// elements from `at` on.
    events: VecDeque<KernelEvent>,
    at: usize,
    /// Tables, chains, rules and sets it added or deleted: the table is
    /// restored once its elements are said.
    broken: Vec<String>,
    /// Who made it: `process[pid]`.
    by: String,
    /// A pfknock command's, which logs what it did itself: followed
    /// without a line.
    quiet: bool,
    /// Heard while a reading of the sets ran (`heard.rs`).
    heard: bool,
}

impl Machine {
    /// The commit of a transaction by process `process[pid]`, whose
    /// notifications are `batch`; `heard`: while a reading of the sets
    /// runs. One of this daemon's own is followed already.
    pub(super) fn commit(
        &mut self,
        cx: &Ctx,
        batch: Vec<KernelEvent>,
        (pid, process): (u32, &str),
        heard: bool,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        if (cx.ours)(pid) {
            return;
        }
        self.unsaid = Some(Unsaid {
            events: batch.into(),
            at: 0,
            broken: Vec::new(),
            by: format!("{process}[{pid}]"),
            quiet: process == "pfknock",
            heard,
        });
        self.say_part(cx, now, out);
    }

    /// Is part of a transaction by someone else left to say?
    pub fn unsaid(&self) -> bool {
        self.unsaid.is_some()
    }

    /// The next part of what is left to say of a transaction, at `now`.
    pub fn say_more(&mut self, cx: &Ctx, now: i64) -> Vec<Action> {
        let mut out = Vec::new();
        self.say_part(cx, now, &mut out);
        out
    }

    /// All that is left to say of a transaction, at `now`: before
    /// anything else the machine is given.
    pub(super) fn said_all(&mut self, cx: &Ctx, now: i64, out: &mut Vec<Action>) {
        while self.unsaid.is_some() {
            self.say_part(cx, now, out);
        }
    }

    /// The same, for the daemon: before what it does itself.
    pub fn say_all(&mut self, cx: &Ctx, now: i64) -> Vec<Action> {
        let mut out = Vec::new();
        self.said_all(cx, now, &mut out);
        out
    }

    /// Say up to `SAY_AT_ONCE` elements of the transaction (all of them
    /// where none gets a line); at its end, restore the table if it
    /// touched the table itself.
    fn say_part(&mut self, cx: &Ctx, now: i64, out: &mut Vec<Action>) {
        let Some(mut u) = self.unsaid.take() else {
            return;
        };
        let mut n = 0;
        while n < SAY_AT_ONCE || u.quiet {
            let Some(ev) = u.events.front() else {
                break;
            };
            let elem = match ev {
                KernelEvent::Elements { set, added, addrs } => {
                    addrs.get(u.at).map(|e| (set, *added, e))
                }
                _ => None,
            };
            let (set, added, e) = match (elem, ev) {
                (Some(elem), _) => elem,
                (None, KernelEvent::Changed { what, name }) if !u.heard => {
                    u.broken.push(format!("{what} {name}"));
                    u.events.pop_front();
                    continue;
                }
                _ => {
                    u.events.pop_front();
                    u.at = 0;
                    continue;
                }
            };
            u.at += 1;
            n += 1;
            let Some(s) = auth_service(cx.cfg, set) else {
                continue;
            };
            let by = (!u.quiet).then_some(u.by.as_str());
            match u.heard {
                true => self.other_heard(cx, (s, set), (added, e), by, now, out),
                false => self.other_committed(cx, (s, set), (added, e), by, now, out),
            }
        }
        if !u.events.is_empty() {
            self.unsaid = Some(u);
            return;
        }
        if !u.broken.is_empty() {
            u.broken.dedup();
            self.restore(cx, &u.broken, &u.by, out);
        }
        self.settle_when_quiet();
    }

    /// One element someone else added to or deleted from authorized set
    /// `set` of `s`, said `by` them, as its commit's event came at `now`
    /// (no reading runs).
    fn other_committed(
        &mut self,
        cx: &Ctx,
        (s, set): (&Service, &str),
        (added, e): (bool, Deadline),
        by: Option<&str>,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        // A reload or an unload during a reading deleted its set, and
        // said what went with it: this came before (and was said then, if
        // the reading heard it).
        if !self.dropped.is_empty() && self.dropped.contains(set) {
            return;
        }
        let addr = e.addr();
        if !added {
            if let Some(a) = self.forget(cx, set, addr, out)
                && let Some(by) = by
            {
                let extra = format!("age={} ttl={} by {by}", age(now, a.since), Secs(s.ttl.0));
                info(out, event_line(cx.cfg, "removed", s, addr, &extra));
            }
            return;
        }
        // Said while a reading ran and still held (a knock's record:
        // `Knocks::said_added`).
        let said = self.knocks.said_added(set, addr);
        if self.tracked(set, addr).is_some() {
            return;
        }
        if let Some(said) = said {
            if let Some(a) = said {
                out.extend(self.track(cx, set, addr, a.since, a.until));
            }
            return;
        }
        // Its time left now: the event may have waited.
        if let Some(by) = by {
            let extra = format!("ttl={} by {by}", Secs(s.ttl.0));
            info(out, event_line(cx.cfg, "authorized", s, addr, &extra));
        }
        let a = super::restore::added_auth(s, e, now);
        out.extend(self.track(cx, set, addr, a.since, a.until));
    }
}
