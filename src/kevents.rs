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
    /// each with its deadline where it has one: its time left when the
    /// notification came, from then (so an event that waited, behind a
    /// reading of the sets, keeps the kernel's deadline; and at 24 bytes
    /// an element, where the time left beside the address took 40, a
    /// million waiting take 16 MB less).
    Elements {
        set: String,
        added: bool,
        addrs: Vec<Deadline>,
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
/// `None`: no timeout), in 24 bytes. A reading of a set holds one for each
/// element, a million at once and at times two such vectors: as a tuple
/// `(IpAddr, Option<i64>)` each took 40 bytes (17 for the address, 16 for
/// the deadline, padding to 8), 16 MB more a million.
///
/// The address's bytes (an IPv4 one in the first four, the rest zero), and
/// one word: bit 63 says IPv6, bit 62 that there is a deadline, and the
/// low 62 bits hold it in two's complement (from about 73 million years
/// before the epoch to as many after; one beyond is kept as the bound).
/// Ordered as the tuple is: by address (IPv4 before IPv6), then by
/// deadline (none first).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Deadline {
    addr: [u8; 16],
    word: u64,
}

const V6: u64 = 1 << 63;
const TIMED: u64 = 1 << 62;
const AT: u64 = TIMED - 1;
const AT_MAX: i64 = (1 << 61) - 1;

impl Deadline {
    pub fn new(addr: IpAddr, at: Option<i64>) -> Deadline {
        let (bytes, v6) = match addr {
            IpAddr::V4(v) => {
                let mut b = [0; 16];
                b[..4].copy_from_slice(&v.octets());
                (b, 0)
            }
            IpAddr::V6(v) => (v.octets(), V6),
        };
        let mut d = Deadline {
            addr: bytes,
            word: v6,
        };
        d.set_at(at);
        d
    }

    pub fn addr(&self) -> IpAddr {
        if self.word & V6 == 0 {
            let [a, b, c, d, ..] = self.addr;
            IpAddr::from([a, b, c, d])
        } else {
            IpAddr::from(self.addr)
        }
    }

    pub fn at(&self) -> Option<i64> {
        // Bit 61 is the sign: shifted up to bit 63 and back.
        (self.word & TIMED != 0).then_some((((self.word & AT) << 2) as i64) >> 2)
    }

    pub fn set_at(&mut self, at: Option<i64>) {
        self.word &= V6;
        if let Some(t) = at {
            self.word |= TIMED | (t.clamp(-AT_MAX - 1, AT_MAX) as u64 & AT);
        }
    }
}

impl From<(IpAddr, Option<i64>)> for Deadline {
    fn from((addr, at): (IpAddr, Option<i64>)) -> Deadline {
        Deadline::new(addr, at)
    }
}

impl From<Deadline> for (IpAddr, Option<i64>) {
    fn from(d: Deadline) -> (IpAddr, Option<i64>) {
        (d.addr(), d.at())
    }
}

impl Ord for Deadline {
    fn cmp(&self, other: &Deadline) -> std::cmp::Ordering {
        let key = |d: &Deadline| (d.word & V6, d.addr, d.at());
        key(self).cmp(&key(other))
    }
}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Deadline) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Debug for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (self.addr(), self.at()).fmt(f)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
            // Near each other across the families: an IPv6 address
            // whose first bytes are an IPv4 one's, and the ends.
            (0u8..3).prop_map(|b| IpAddr::from([b, 0, 0, 0])),
            (0u8..3).prop_map(|b| IpAddr::from([b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
        ]
    }

    fn at() -> impl Strategy<Value = Option<i64>> {
        proptest::option::of(prop_oneof![
            -AT_MAX - 1..=AT_MAX,
            -3i64..3,
            Just(AT_MAX),
            Just(-AT_MAX - 1),
        ])
    }

    #[test]
    fn a_deadline_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Deadline>(), 24);
    }

    proptest! {
        /// Each address and deadline back as given, and ordered as the
        /// pair is.
        #[test]
        fn a_deadline_keeps_its_pair_and_its_order(a in (addr(), at()), b in (addr(), at())) {
            let (da, db) = (Deadline::from(a), Deadline::from(b));
            prop_assert_eq!(<(IpAddr, Option<i64>)>::from(da), a);
            prop_assert_eq!(da.cmp(&db), a.cmp(&b));
            prop_assert_eq!(da == db, a == b);
        }

        /// One beyond the bounds is kept as the bound, and set anew the
        /// address stays.
        #[test]
        fn a_deadline_beyond_the_bounds_is_the_bound(a in addr(), t in any::<i64>(), u in at()) {
            let mut d = Deadline::new(a, Some(t));
            prop_assert_eq!(d.at(), Some(t.clamp(-AT_MAX - 1, AT_MAX)));
            d.set_at(u);
            prop_assert_eq!((d.addr(), d.at()), (a, u));
        }
    }
}
