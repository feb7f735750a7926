//! Sets and meters at their size, and forged datagrams (nftables): the
//! conditions the kernel does not report by itself, each logged once when
//! it starts and once when it ends, or at most every few minutes.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use super::events::ms;
use super::{Daemon, Level, Loader, Log};
use crate::config::Service;
use crate::name::Af;
use crate::names;
use crate::tables::{Pool, Tables};

/// How often pf's pool of table entries is looked at while it has room
/// (seconds); while it is full, every poll.
const POOL_EVERY: i64 = 10;

/// pf's global pools (`set limit`), as last seen.
#[derive(Default)]
pub(super) struct Pools {
    /// The pools that are full: (held, limit) each.
    pub(super) full: BTreeMap<Pool, (u64, u64)>,
    /// When to look next.
    next: i64,
}

impl<T: Tables, L: Loader, G: Log> Daemon<T, L, G> {
    /// Log once when an authorized set reaches its size (knocks it would
    /// take are not counted), and once when it has room again; the same
    /// lines as the poll's (`note_full_sets`), from the daemon's count.
    pub(super) fn note_fill(&mut self, set: &str) {
        let Some(size) = self.auth_service(set).map(|s| s.size) else {
            return;
        };
        let Some(e) = self.events.as_ref() else {
            return;
        };
        let Some(i) = e.book.find(set) else {
            return;
        };
        let n = e.book.count(i) as u64;
        if n >= size && self.full.insert(set.to_owned()) {
            self.log.log(
                Level::Warning,
                &format!(
                    "set {set} is full ({size} elements): knocks it would take are not \
                     counted until entries expire; raise the service's size"
                ),
            );
        } else if n < size && self.full.remove(set) {
            self.log
                .log(Level::Notice, &format!("set {set} has room again"));
        }
    }
    /// The service whose meter set this is, and the meter's window (ms).
    pub(super) fn meter_service(&self, set: &str) -> Option<(&Service, i64)> {
        self.cfg.services.iter().find_map(|s| {
            let mine = names::objects(s).into_iter().any(|o| {
                matches!(o, names::Object::Meter(_) | names::Object::Close)
                    && [Af::V4, Af::V6]
                        .iter()
                        .any(|a| names::nft_set(s, o, *a).as_deref() == Some(set))
            });
            mine.then(|| (s, ms(i64::from(s.rate.secs.max(1)))))
        })
    }
    /// A knock that a full meter did not count (its own log rule, at most
    /// once a second): logged once, and the meter looked at again each
    /// window until it has room.
    pub(super) fn meter_full(&mut self, set: &str, now: i64) {
        let Some((s, window)) = self.meter_service(set) else {
            return;
        };
        let size = s.meter_size();
        let Some(e) = self.events.as_mut() else {
            return;
        };
        if e.meters.insert(set.to_owned(), now + window).is_none() {
            self.log.log(
                Level::Warning,
                &format!(
                    "set {set} is full ({size} elements): knocks it would take are not \
                     counted until entries expire; raise the service's size"
                ),
            );
        }
    }
    /// Full meters due a look: one that has room is logged so, the others
    /// are looked at again a window later.
    pub(super) fn meters_tick(&mut self, now: i64) {
        let due: Vec<String> = self.events.as_ref().map_or(Vec::new(), |e| {
            e.meters
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(m, _)| m.clone())
                .collect()
        });
        for m in due {
            let Some((s, window)) = self.meter_service(&m) else {
                if let Some(e) = self.events.as_mut() {
                    e.meters.remove(&m);
                }
                continue;
            };
            let size = s.meter_size();
            let Some(e) = self.events.as_mut() else {
                return;
            };
            let room = match e.lookup.dump(&m) {
                Ok(elems) => (elems.len() as u64) < size,
                // Gone with the table: nothing full any more.
                Err(_) => true,
            };
            if room {
                e.meters.remove(&m);
                self.log
                    .log(Level::Notice, &format!("set {m} has room again"));
            } else {
                e.meters.insert(m, now + window);
            }
        }
    }
    /// A datagram the kernel did not send: logged at once, then at most
    /// once every `REPEAT_EVERY` seconds with how many came meanwhile, so
    /// a flood of them cannot flood the log.
    pub(super) fn forged(&mut self, on: &'static str, now: i64) {
        let Some(e) = self.events.as_mut() else {
            return;
        };
        // Each socket counts and says its own.
        let (count, last) = e.forged.entry(on).or_insert((0, i64::MIN));
        *count += 1;
        if now.saturating_sub(*last) < ms(super::REPEAT_EVERY) {
            return;
        }
        let n = std::mem::take(count);
        *last = now;
        self.log.log(
            Level::Warning,
            &format!(
                "{on}: {n} netlink message(s) that the kernel did not send ignored \
                 (forged by a local process with CAP_NET_ADMIN)"
            ),
        );
    }

    /// pf: at the `set limit table-entries` limit, a knock's overload
    /// insert fails without a word (pf.c ignores pfr_insert_kentry's error)
    /// and the connection that tripped it is killed all the same, so the
    /// knock opens nothing; at the `set limit src-nodes` limit pf creates
    /// no state for a source that has no node yet, so its knock is
    /// dropped. Each pool is logged once when it fills, and once when it
    /// has room again.
    pub(super) fn pool_tick(&mut self, now: i64) {
        if self.pool.full.is_empty() && now < self.pool.next {
            return;
        }
        self.pool.next = now + POOL_EVERY;
        let Ok(pools) = self.tables.pools() else {
            return;
        };
        for p in pools {
            let (name, used, limit) = (p.pool.limit_name(), p.used, p.limit);
            let was_full = self.pool.full.contains_key(&p.pool);
            if p.is_full() {
                self.pool.full.insert(p.pool, (used, limit));
            } else {
                self.pool.full.remove(&p.pool);
            }
            match (was_full, p.is_full()) {
                (false, true) => self.log.log(
                    Level::Warning,
                    &format!(
                        "pf's {name} limit is reached ({used} of {limit} {}): {}; raise it \
                         with set limit {name} in pf.conf",
                        p.pool.unit(),
                        p.pool.effect()
                    ),
                ),
                (true, false) => self.log.log(
                    Level::Notice,
                    &format!("pf's {name} limit has room again ({used} of {limit})"),
                ),
                _ => {}
            }
        }
    }
}
