//! What the kernel tells the daemon as it happens (nftables): the events
//! `netlink` reads and the one look-up it answers. The daemon consumes
//! them and `netlink` produces them; neither knows the other.
#![forbid(unsafe_code)]

use std::net::IpAddr;

/// One thing the kernel told the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    /// A packet of the authorizing rule's `log group`: a knock that
    /// authorized (or renewed) `addr`.
    Knock { prefix: String, addr: IpAddr },
    /// Elements a transaction added to or deleted from a set of the table,
    /// with their time left in milliseconds where they have one.
    Elements {
        set: String,
        added: bool,
        addrs: Vec<(IpAddr, Option<u64>)>,
    },
    /// A table, chain, rule or set of the table was added or deleted.
    Changed { what: &'static str, name: String },
    /// The end of a transaction, and the process that committed it.
    Commit { pid: u32, process: String },
    /// The kernel dropped notifications: read everything again.
    Overrun,
    /// A source of events failed for good: back to polling.
    Lost(String),
    /// A datagram on this socket that the kernel did not send (another
    /// process's, to the socket's port id): ignored unread.
    Forged(&'static str),
}

/// An element and its deadline (ms since the epoch on the daemon's clock;
/// `None`: no timeout).
pub type Deadline = (IpAddr, Option<i64>);

/// Is an element still in a set, and for how long (milliseconds; `None`
/// inside: no timeout)? `None`: not there.
/// How a set was read whole, for the log: a line at debug, or, where an
/// element that stayed in the set may be missing from the reading (the set
/// changed throughout its dumps), a warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HowRead {
    pub line: String,
    pub doubtful: bool,
}

pub trait ElementLookup {
    fn left(&mut self, set: &str, addr: IpAddr) -> std::io::Result<Option<Option<u64>>>;
    /// `left` for each of `addrs`, in order (a lookup may batch them).
    fn left_many(
        &mut self,
        set: &str,
        addrs: &[IpAddr],
    ) -> std::io::Result<Vec<Option<Option<u64>>>> {
        addrs.iter().map(|a| self.left(set, *a)).collect()
    }
    /// Every element of a set with its deadline, in milliseconds since the
    /// epoch on the daemon's clock (`None`: no timeout), at start and
    /// after lost notifications. A deadline and not a time left: a reading
    /// of a million elements takes a minute, and each time left is true
    /// only at the moment the kernel gave it.
    fn dump(&mut self, set: &str) -> std::io::Result<Vec<Deadline>>;
    /// `dump`, with a line on how the set was read, where there is one to
    /// say.
    fn dump_noted(&mut self, set: &str) -> std::io::Result<(Vec<Deadline>, Option<HowRead>)> {
        Ok((self.dump(set)?, None))
    }
    /// `dump_noted`, where `heard` gives, when asked, the addresses the
    /// daemon heard added to the set (knocks, notifications) since the
    /// reading began: a reading that checks its dump by a look-up of each
    /// element it gave looks those up too, so that an element added behind
    /// the dump's walk does not make it dump the set again.
    fn dump_heard(
        &mut self,
        set: &str,
        heard: &dyn Fn() -> Vec<IpAddr>,
    ) -> std::io::Result<(Vec<Deadline>, Option<HowRead>)> {
        let _ = heard;
        self.dump_noted(set)
    }
    /// `dump`, by a look-up of each of the `n` addresses of `known` (what
    /// the last daemon kept), where the kernel can tell that the set holds
    /// nothing else: `None` where it cannot, and the set is dumped instead.
    fn read_known(
        &mut self,
        _set: &str,
        _n: usize,
        _known: &mut dyn Iterator<Item = IpAddr>,
    ) -> std::io::Result<Option<Vec<Deadline>>> {
        Ok(None)
    }
    /// How many elements the kernel counts against a set's size: those
    /// timed out and not yet freed by its collection too. `None` where it
    /// does not say.
    fn counted(&mut self, _set: &str) -> std::io::Result<Option<u64>> {
        Ok(None)
    }
    /// A look-up of its own, for a reading that runs beside the daemon's
    /// loop; `None` where there is none (the reading runs in the loop).
    fn reader(&self) -> Option<std::io::Result<Box<dyn ElementLookup + Send>>> {
        None
    }
}
