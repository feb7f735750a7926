//! Commands on the control socket, in the loop's turn: each comes after
//! the kernel events read before it, which happened before it, so the log
//! keeps their order. Those events are worked through as syslog takes
//! their lines (`Daemon::work_through`), so a command that comes during a
//! transaction of 100,000 by others waits for it to be said instead of
//! saying it at once past syslog's queue. While the sets are read beside
//! the loop, most commands wait for the reading's end (`Daemon::
//! control_while_reading` does the rest at once; an unload waits behind a
//! command held before it). Signed knocks take their turn the same way
//! (during a reading they are done at once).
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::os::unix::net::UnixStream;

use super::Daemon;
use super::Loader;
use super::SysLog;
use super::feeds::Feeds;
use super::process::Pending;
use crate::control::Request;
use crate::tables::Tables;

/// Commands taken and not answered yet, at most.
pub(super) const WAITING_MAX: usize = 16;

/// Things waiting, in order, each for the events that were ahead of it
/// in the loop's queue (`None`: not known yet, while a reading runs or
/// the kernel's sockets hold events not read).
#[derive(Debug)]
pub(super) struct Queue<T> {
    items: VecDeque<(T, Option<usize>)>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            items: VecDeque::new(),
        }
    }
}

impl<T> Queue<T> {
    /// `t` comes with `ahead` events before it (`None`: not known yet).
    pub(super) fn push(&mut self, t: T, ahead: Option<usize>) {
        self.items.push_back((t, ahead));
    }

    /// How many wait.
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// All that came before is read, and `pending` events are queued:
    /// those not knowing what they wait for wait for these.
    pub(super) fn read(&mut self, pending: usize) {
        for (_, ahead) in &mut self.items {
            ahead.get_or_insert(pending);
        }
    }

    /// How many events may be worked through before the first waiting
    /// one is due (`None`: as many as there are).
    pub(super) fn limit(&self) -> Option<usize> {
        self.items.front().and_then(|(_, a)| *a)
    }

    /// `n` events were worked through.
    pub(super) fn worked(&mut self, n: usize) {
        for (_, ahead) in &mut self.items {
            if let Some(a) = ahead {
                *a = a.saturating_sub(n);
            }
        }
    }

    /// The first waiting one, if nothing it waits for is left (`unsaid`:
    /// part of a transaction by others is still to be said).
    pub(super) fn due(&mut self, unsaid: bool) -> Option<T> {
        match self.items.front() {
            Some((_, Some(0))) if !unsaid => self.items.pop_front().map(|(t, _)| t),
            _ => None,
        }
    }
}

/// What waits in the loop's turn for the events before it.
pub(super) enum Waiter {
    /// A command's connection and what it asked.
    Command(UnixStream, Request),
    /// A signed knock the listener admitted.
    Signed(crate::spa::Admitted),
}

pub(super) type Waiting = Queue<Waiter>;

/// Signed knocks waiting at most: past this one is done at once (its
/// line may then come before events that came before it).
const SIGNED_MAX: usize = 1024;

/// Take up to `WAITING_MAX` commands; more wait in the socket's backlog.
/// The events the kernel queued before them are read first. During a
/// reading a command the daemon can do at once is answered, and the rest
/// say they are held.
pub(super) fn take<T: Tables, L: Loader>(
    d: &mut Daemon<T, L, SysLog>,
    ctl: &crate::control::Listener,
    feeds: &mut Feeds,
    pending: &mut Pending,
    waiting: &mut Waiting,
) {
    while waiting.len() < WAITING_MAX {
        let Ok((mut s, _)) = ctl.sock.accept() else {
            break;
        };
        let _ = s.set_nonblocking(false);
        let req = match crate::control::read_request(&mut s) {
            Ok(req) => req,
            Err(why) => {
                crate::control::write_reply(&mut s, &unreadable(&why));
                continue;
            }
        };
        if d.reading().is_some() {
            // An unload behind a held command waits its turn with it: a
            // load held before it would otherwise undo it.
            let behind = waiting.len() > 0
                && matches!(d.command_of(&req), Ok(crate::cli::Command::Unload { .. }));
            let now = crate::clock::now();
            match (!behind)
                .then(|| d.control_while_reading(&req, now))
                .flatten()
            {
                Some(reply) => crate::control::write_reply(&mut s, &reply),
                None => {
                    crate::control::write_held(&mut s);
                    waiting.push(Waiter::Command(s, req), None);
                }
            }
            continue;
        }
        // The events the kernel queued before it, read first: all of
        // them, where a turn's read leaves some, once the loop's reads
        // have caught up (`caught_up`).
        wait(d, (feeds, pending, waiting), Waiter::Command(s, req));
    }
}

/// A signed knock: done at once while the sets are read (as `allow` and
/// `revoke` are), else after the events before it.
pub(super) fn signed<T: Tables, L: Loader>(
    d: &mut Daemon<T, L, SysLog>,
    (feeds, pending, waiting): (&mut Feeds, &mut Pending, &mut Waiting),
    a: crate::spa::Admitted,
) {
    if d.reading().is_some() || waiting.len() >= SIGNED_MAX {
        d.signed(&a, crate::clock::now());
    } else {
        wait(d, (feeds, pending, waiting), Waiter::Signed(a));
    }
}

/// `w` waits for the events the kernel queued before it, read first:
/// all of them, where a turn's read leaves some, once the loop's reads
/// have caught up (`caught_up`).
fn wait<T: Tables, L: Loader>(
    d: &mut Daemon<T, L, SysLog>,
    (feeds, pending, waiting): (&mut Feeds, &mut Pending, &mut Waiting),
    w: Waiter,
) {
    let evs = feeds.drain();
    super::feeds::queue(pending, evs);
    waiting.push(w, None);
    caught_up(d, feeds, pending, waiting);
}

/// The loop read all the kernel queued (no reading of the sets runs, and
/// the event sockets were read to their end): the commands waiting for
/// that now wait for the events queued.
pub(super) fn caught_up<T: Tables, L: Loader>(
    d: &Daemon<T, L, SysLog>,
    feeds: &Feeds,
    pending: &Pending,
    waiting: &mut Waiting,
) {
    if d.reading().is_none() && !feeds.behind() {
        waiting.read(pending.len());
    }
}

/// Answer the commands, and do the signed knocks, whose events are
/// worked through and said.
pub(super) fn answer_due<T: Tables, L: Loader>(
    d: &mut Daemon<T, L, SysLog>,
    waiting: &mut Waiting,
) {
    while let Some(w) = waiting.due(d.unsaid()) {
        match w {
            Waiter::Command(mut s, req) => {
                let reply = d.control(&req, crate::clock::now_ms());
                d.settle_from(crate::clock::now_ms());
                crate::control::write_reply(&mut s, &reply);
            }
            Waiter::Signed(a) => d.signed(&a, crate::clock::now()),
        }
    }
}

/// The answer to a request that could not be read.
/// The daemon stops with things waiting: none is done. Each command is
/// told so, and fails (it changed nothing: the admin may run it again,
/// with the daemon or without); a signed knock waiting is dropped, as one
/// lost on the way (its client knocks again).
pub(super) fn stopped(waiting: &mut Waiting) {
    while let Some((w, _)) = waiting.items.pop_front() {
        if let Waiter::Command(mut s, _) = w {
            let why = "daemon: stopped before this command's turn: nothing was done";
            let reply = crate::control::Reply {
                pid: std::process::id(),
                error: Some((why.to_owned(), crate::error::EXIT_FAIL)),
                ..Default::default()
            };
            crate::control::write_reply(&mut s, &reply);
        }
    }
}

fn unreadable(why: &str) -> crate::control::Reply {
    crate::control::Reply {
        pid: std::process::id(),
        error: Some((format!("control socket: {why}"), crate::error::EXIT_USAGE)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_waits_for_the_events_before_it_and_for_what_they_left_unsaid() {
        let mut q = Queue::default();
        q.push('a', Some(3));
        q.push('b', Some(5));
        assert_eq!(q.limit(), Some(3));
        assert_eq!(q.due(false), None);
        q.worked(2);
        assert_eq!((q.limit(), q.due(false)), (Some(1), None));
        q.worked(1);
        // Its events are worked through, but one brought a transaction
        // whose lines are not all said.
        assert_eq!(q.due(true), None);
        assert_eq!(q.due(false), Some('a'));
        assert_eq!((q.limit(), q.due(false)), (Some(2), None));
        q.worked(7);
        assert_eq!(q.due(false), Some('b'));
        assert!(q.len() == 0 && q.limit().is_none());
    }

    #[test]
    fn a_command_held_for_a_reading_waits_for_the_events_queued_at_its_end() {
        let mut q = Queue::default();
        q.push('a', None);
        q.push('b', None);
        q.worked(100);
        assert_eq!((q.limit(), q.due(false)), (None, None));
        q.read(4);
        assert_eq!(q.limit(), Some(4));
        q.worked(4);
        assert_eq!(
            (q.due(false), q.due(false), q.due(false)),
            (Some('a'), Some('b'), None)
        );
        // Nothing ahead: due at once.
        q.push('c', Some(0));
        assert_eq!(q.due(false), Some('c'));
    }
}
