//! The daemon's log: priorities, the sink, and the one shape of a line
//! about an entry. The lowest room of the daemon: the machine and the
//! shells around it all speak through it.
#![forbid(unsafe_code)]

use crate::name::Net;
use crate::tables::TableRef;

/// Priorities, as syslog's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Err,
    Warning,
    Notice,
    Info,
    Debug,
}

pub trait Log {
    fn log(&mut self, level: Level, msg: &str);
    /// How many lines wait to be sent (syslog's queue, which drops past
    /// its bound): a burst waits for them rather than being lost.
    fn waiting(&self) -> usize {
        0
    }
}

/// How often an error that keeps coming back is logged again.
pub const REPEAT_EVERY: i64 = 300;

/// One log line about an entry: `VERB NET service=S table=T anchor=A`,
/// then `extra`.
pub(super) fn line(
    verb: &str,
    net: &Net,
    service: Option<&str>,
    t: &TableRef,
    extra: &str,
) -> String {
    let mut s = format!(
        "{verb} {net} service={} table={} anchor={}",
        service.unwrap_or("-"),
        t.name,
        if t.anchor.is_main() {
            "-"
        } else {
            t.anchor.as_str()
        }
    );
    if !extra.is_empty() {
        s.push(' ');
        s.push_str(extra);
    }
    s
}
