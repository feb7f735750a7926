//! pf's global pools (table entries, source nodes) at their limit: a
//! condition the kernel does not report by itself, logged once when it
//! starts and once when it ends. (nftables' full sets and meters are the
//! machine's: `machine/due.rs`.)
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use super::{Daemon, Level, Loader, Log};
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
