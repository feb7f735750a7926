//! The machine when someone else changes the table itself (once what
//! the transaction did to the authorized sets is said: `commit.rs`):
//! restore the table, then the authorizations it lost, with the time each
//! had left.
#![forbid(unsafe_code)]

use std::net::IpAddr;

use super::{
    Action, Auth, Ctx, Left, Machine, Query, Step, Then, auth_service, auth_table, left_secs, ms,
};
use crate::config::Service;
use crate::daemon::lines::Level;
use crate::kevents::Deadline;
use crate::name::Net;
use crate::tables::TableRef;

/// An element someone else added, by its notification at `now` (ms): its
/// time left now (the event may have waited), and as old as the kernel
/// has it (added with less than the ttl left, as a restore by another
/// tool does).
pub(super) fn added_auth(s: &Service, e: Deadline, now: i64) -> Auth {
    let ttl = ms(s.ttl.0 as i64);
    let left = e.at().map_or(ttl, |at| (at - now).max(0));
    Auth {
        since: now - (ttl - left).max(0),
        until: now + left,
    }
}

impl Machine {
    /// Someone changed the table: load it again (only what differs
    /// changes), then put back the authorizations it lost, with the time
    /// they had left.
    pub(super) fn restore(&mut self, cx: &Ctx, what: &[String], by: &str, out: &mut Vec<Action>) {
        if cx.cfg.services.is_empty() {
            return;
        }
        if cx.held {
            out.push(Action::Log(
                Level::Notice,
                format!("table changed by {by} while unloaded: left as it is until pfknock load"),
            ));
            return;
        }
        let shown = if what.len() > 3 {
            format!("{} and {} more", what[..3].join(", "), what.len() - 3)
        } else {
            what.join(", ")
        };
        let then = Then::of(Step::Restore {
            by: by.to_owned(),
            shown,
        });
        out.push(Action::Ask(Query::Load, then));
    }

    /// The table is loaded again (or not): look up every authorization
    /// known with a second or more left (a restore never gives more time
    /// than was left; one with less is logged at its deadline).
    pub(super) fn reloaded_for(
        &mut self,
        by: String,
        shown: String,
        r: Result<usize, String>,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        if let Err(e) = r {
            let msg = format!("table changed by {by} ({shown}) and cannot be restored: {e}");
            out.push(Action::Fail(Level::Err, msg));
            return;
        }
        let known: Vec<(String, IpAddr, Auth)> = self
            .book
            .iter()
            .filter(|(_, _, a)| left_secs(a.until, now) > 0)
            .map(|(i, addr, a)| (self.book.name(i).to_owned(), addr, a))
            .collect();
        let query = Query::Left(known.iter().map(|(s, a, _)| (s.clone(), *a)).collect());
        out.push(Action::Ask(
            query,
            Then::of(Step::Lost { by, shown, known }),
        ));
    }

    /// The authorizations the kernel no longer holds: put back per table,
    /// each with the whole seconds it had left.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn lost(
        &mut self,
        cx: &Ctx,
        by: String,
        shown: String,
        known: Vec<(String, IpAddr, Auth)>,
        left: Vec<Result<Left, String>>,
        now: i64,
        out: &mut Vec<Action>,
    ) {
        let mut readd: Vec<(TableRef, Vec<(Net, u64)>)> = Vec::new();
        let mut retrack = Vec::new();
        let mut gone = 0;
        for ((set, addr, a), l) in known.into_iter().zip(left) {
            if matches!(l, Ok(Some(_))) {
                continue;
            }
            let Some(s) = auth_service(cx.cfg, &set) else {
                continue;
            };
            gone += 1;
            let secs = left_secs(a.until, now);
            let table = auth_table(cx.cfg, s);
            match readd.iter_mut().find(|(t, _)| *t == table) {
                Some((_, list)) => list.push((Net::host(addr), secs)),
                None => readd.push((table, vec![(Net::host(addr), secs)])),
            }
            // Due when the kernel times the put-back element out.
            let until = now + ms(secs as i64);
            retrack.push((
                set,
                addr,
                Auth {
                    since: a.since,
                    until,
                },
            ));
        }
        let then = Then::of(Step::Restored {
            by,
            shown,
            gone,
            tables: readd.iter().map(|(t, _)| t.clone()).collect(),
            retrack,
        });
        out.push(Action::Ask(Query::Add(readd), then));
    }

    /// The lost authorizations are put back (or not): track them again,
    /// and one line for the restore.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn restored(
        &mut self,
        cx: &Ctx,
        change: &str,
        gone: usize,
        tables: Vec<TableRef>,
        retrack: Vec<(String, IpAddr, Auth)>,
        done: Vec<Result<usize, String>>,
        out: &mut Vec<Action>,
    ) {
        let mut restored = 0;
        for (t, r) in tables.iter().zip(done) {
            match r {
                Ok(n) => restored += n,
                Err(e) => out.push(Action::Log(
                    Level::Err,
                    format!("{t}: restoring authorizations: {e}"),
                )),
            }
        }
        for (set, addr, a) in retrack {
            out.extend(self.track(cx, &set, addr, a.since, a.until));
        }
        let of = if restored < gone {
            format!(" of {gone}")
        } else {
            String::new()
        };
        out.push(Action::Log(
            Level::Notice,
            format!("table restored after {change}: restored {restored} authorizations{of}"),
        ));
    }
}
