//! Errors that come back at every look (a table that cannot be read, an
//! anchor that cannot be restored): said when they first occur, then
//! rarely, and once more when they are gone.
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};

use crate::daemon::lines::REPEAT_EVERY;

/// Errors that come back every poll (a table that cannot be read, an
/// anchor that cannot be restored): each is logged when it first occurs,
/// then at most every `REPEAT_EVERY` seconds with the number of repeats,
/// and once more when a poll goes by without it.
#[derive(Default)]
pub struct Repeats {
    /// Message → (repeats since it was last logged, when it was logged).
    open: HashMap<String, (u64, i64)>,
    /// Messages seen during the current poll.
    seen: HashSet<String>,
}

impl Repeats {
    /// The line to log for `msg` now, if any.
    pub fn report(&mut self, msg: &str, now: i64) -> Option<String> {
        self.seen.insert(msg.to_owned());
        match self.open.get_mut(msg) {
            None => {
                self.open.insert(msg.to_owned(), (0, now));
                Some(msg.to_owned())
            }
            Some((n, last)) => {
                *n += 1;
                if now - *last < REPEAT_EVERY {
                    return None;
                }
                let line = format!("{msg} (again, {} times in {} s)", *n, now - *last);
                *n = 0;
                *last = now;
                Some(line)
            }
        }
    }

    /// End of a poll: the lines for errors that did not come back.
    pub fn cleared(&mut self) -> Vec<String> {
        let gone: Vec<String> = self
            .open
            .keys()
            .filter(|m| !self.seen.contains(*m))
            .cloned()
            .collect();
        self.seen.clear();
        gone.into_iter()
            .map(|m| {
                let (n, _) = self.open.remove(&m).unwrap_or_default();
                if n > 0 {
                    format!("cleared after {n} more time(s): {m}")
                } else {
                    format!("cleared: {m}")
                }
            })
            .collect()
    }
}
