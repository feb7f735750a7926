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
    /// reading of the sets, keeps the kernel's deadline; and at 10 bytes
    /// an IPv4 element, 22 an IPv6 one, where the time left beside the
    /// address took 40, a million waiting take 30 or 18 MB less).
    Elements {
        set: String,
        added: bool,
        addrs: Deadlines,
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
/// `None`: no timeout), in 22 bytes. A reading of an IPv6 set holds one
/// for each element, a million and more at once (an IPv4 set's, a
/// `Deadline4` of 10): as a tuple `(IpAddr, Option<i64>)` each took 40
/// bytes (17 for the address, 16 for the deadline, padding to 8), 18 MB
/// more a million; with the deadline in a whole `u64`, 24.
///
/// The address's bytes (an IPv4 one in the first four, the rest zero), and
/// a word of 48 bits (`Word`): bit 47 says IPv6, bit 46 that there is a
/// deadline, and the low 46 bits hold it in two's complement (from about
/// 1,115 years before the epoch to as many after, the year 3085; one
/// beyond is kept as the bound: pfknock's own durations are at most 100
/// years, `name::duration`, so only an element another program added
/// with a timeout of over a thousand years is read as ending then). Ordered as the tuple is: by address (IPv4 before IPv6), then
/// by deadline (none first).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Deadline {
    addr: [u8; 16],
    word: Word,
}

/// 48 bits in three 16-bit words, most significant first, so that nothing
/// aligns what holds it wider than two bytes: a reading's element here,
/// and an entry of the daemon's book (`daemon::book`'s deadline). Bits
/// above 48 are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Word([u16; 3]);

impl Word {
    pub(crate) fn new(w: u64) -> Word {
        Word([(w >> 32) as u16, (w >> 16) as u16, w as u16])
    }

    pub(crate) fn get(self) -> u64 {
        let [a, b, c] = self.0.map(u64::from);
        a << 32 | b << 16 | c
    }
}

const V6: u64 = 1 << 47;
const TIMED: u64 = 1 << 46;
const AT: u64 = TIMED - 1;
const AT_MAX: i64 = (1 << 45) - 1;

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
            word: Word::new(v6),
        };
        d.set_at(at);
        d
    }

    pub fn addr(&self) -> IpAddr {
        if self.word.get() & V6 == 0 {
            let [a, b, c, d, ..] = self.addr;
            IpAddr::from([a, b, c, d])
        } else {
            IpAddr::from(self.addr)
        }
    }

    pub fn at(&self) -> Option<i64> {
        at_of(self.word.get())
    }

    pub fn set_at(&mut self, at: Option<i64>) {
        self.word = Word::new((self.word.get() & V6) | word_of(at));
    }
}

/// A deadline in a word's low 47 bits: bit 46 says there is one, and
/// the low 46 hold it (clamped to their range).
fn word_of(at: Option<i64>) -> u64 {
    at.map_or(0, |t| TIMED | (t.clamp(-AT_MAX - 1, AT_MAX) as u64 & AT))
}

/// `word_of` undone: bit 45 is the sign, shifted up to bit 63 and back.
fn at_of(word: u64) -> Option<i64> {
    (word & TIMED != 0).then_some((((word & AT) << 18) as i64) >> 18)
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
        let key = |d: &Deadline| (d.word.get() & V6, d.addr, d.at());
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

/// What a reading keeps of an element: its address and its deadline.
/// Two shapes: `Deadline` holds either family in 22 bytes, `Deadline4`
/// an IPv4 one in 10 (a set holds one family, so a reading of an IPv4
/// set of a million takes 10 MB where it would take 22). Ordered as `Deadline`
/// is: by address, then by deadline (none first).
pub trait Elem: Copy + Ord + std::fmt::Debug + Send + 'static {
    /// `None` where this shape cannot hold the address's family.
    fn make(addr: IpAddr, at: Option<i64>) -> Option<Self>;
    fn addr(&self) -> IpAddr;
    fn at(&self) -> Option<i64>;
    fn set_at(&mut self, at: Option<i64>);
    fn deadline(self) -> Deadline;
}

impl Elem for Deadline {
    fn make(addr: IpAddr, at: Option<i64>) -> Option<Deadline> {
        Some(Deadline::new(addr, at))
    }
    fn addr(&self) -> IpAddr {
        Deadline::addr(self)
    }
    fn at(&self) -> Option<i64> {
        Deadline::at(self)
    }
    fn set_at(&mut self, at: Option<i64>) {
        Deadline::set_at(self, at)
    }
    fn deadline(self) -> Deadline {
        self
    }
}

/// An IPv4 element and its deadline in 10 bytes: the address's four
/// bytes and `Deadline`'s word (bit 47 clear).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Deadline4 {
    addr: [u8; 4],
    word: Word,
}

impl Elem for Deadline4 {
    fn make(addr: IpAddr, at: Option<i64>) -> Option<Deadline4> {
        let IpAddr::V4(v) = addr else {
            return None;
        };
        let mut d = Deadline4 {
            addr: v.octets(),
            word: Word::new(0),
        };
        d.set_at(at);
        Some(d)
    }
    fn addr(&self) -> IpAddr {
        IpAddr::from(self.addr)
    }
    fn at(&self) -> Option<i64> {
        at_of(self.word.get())
    }
    fn set_at(&mut self, at: Option<i64>) {
        self.word = Word::new(word_of(at));
    }
    fn deadline(self) -> Deadline {
        Deadline {
            addr: std::array::from_fn(|i| self.addr.get(i).copied().unwrap_or(0)),
            word: self.word,
        }
    }
}

impl Ord for Deadline4 {
    fn cmp(&self, other: &Deadline4) -> std::cmp::Ordering {
        (self.addr, self.at()).cmp(&(other.addr, other.at()))
    }
}

impl PartialOrd for Deadline4 {
    fn partial_cmp(&self, other: &Deadline4) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Debug for Deadline4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.deadline().fmt(f)
    }
}

/// A reading of a set as the daemon takes it in: its elements, in 10
/// bytes each while all are IPv4, else in 22 (`Elem`). Made from
/// `Deadline`s it takes the smaller shape itself; two readings are equal
/// when they hold the same elements in the same order, whatever their
/// shape.
#[derive(Clone)]
pub enum Deadlines {
    V4(Vec<Deadline4>),
    Any(Vec<Deadline>),
}

impl Default for Deadlines {
    fn default() -> Deadlines {
        Deadlines::V4(Vec::new())
    }
}

impl Deadlines {
    pub fn len(&self) -> usize {
        match self {
            Deadlines::V4(v) => v.len(),
            Deadlines::Any(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> Option<Deadline> {
        match self {
            Deadlines::V4(v) => v.get(i).map(|d| d.deadline()),
            Deadlines::Any(v) => v.get(i).copied(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Deadline> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// The last element, taken out.
    pub fn pop(&mut self) -> Option<Deadline> {
        match self {
            Deadlines::V4(v) => v.pop().map(Elem::deadline),
            Deadlines::Any(v) => v.pop(),
        }
    }

    pub fn push(&mut self, d: Deadline) {
        if let Deadlines::V4(v) = self {
            if let Some(d4) = Deadline4::make(d.addr(), d.at()) {
                v.push(d4);
                return;
            }
            let mut any = Vec::with_capacity(v.capacity());
            any.extend(v.iter().map(|d| d.deadline()));
            *self = Deadlines::Any(any);
        }
        if let Deadlines::Any(v) = self {
            v.push(d);
        }
    }

    /// `other`'s elements after these.
    pub fn append(&mut self, other: Deadlines) {
        match (&mut *self, other) {
            (Deadlines::V4(v), Deadlines::V4(mut w)) => v.append(&mut w),
            (Deadlines::Any(v), Deadlines::Any(mut w)) => v.append(&mut w),
            (_, other) => other.iter().for_each(|d| self.push(d)),
        }
    }

    pub fn reverse(&mut self) {
        match self {
            Deadlines::V4(v) => v.reverse(),
            Deadlines::Any(v) => v.reverse(),
        }
    }

    pub fn shrink_to_fit(&mut self) {
        match self {
            Deadlines::V4(v) => v.shrink_to_fit(),
            Deadlines::Any(v) => v.shrink_to_fit(),
        }
    }
}

impl FromIterator<Deadline> for Deadlines {
    fn from_iter<I: IntoIterator<Item = Deadline>>(it: I) -> Deadlines {
        let it = it.into_iter();
        let mut d = Deadlines::V4(Vec::with_capacity(it.size_hint().0));
        it.for_each(|e| d.push(e));
        d
    }
}

impl From<Vec<Deadline>> for Deadlines {
    fn from(v: Vec<Deadline>) -> Deadlines {
        v.into_iter().collect()
    }
}

impl PartialEq for Deadlines {
    fn eq(&self, other: &Deadlines) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Deadlines {}

impl std::fmt::Debug for Deadlines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

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
    fn dump(&mut self, set: &str) -> std::io::Result<Deadlines>;
    /// `dump`, with a line on how the set was read, where there is one to
    /// say.
    fn dump_noted(&mut self, set: &str) -> std::io::Result<(Deadlines, Option<HowRead>)> {
        Ok((self.dump(set)?, None))
    }
    /// `dump_noted`, where `heard` gives, when asked, the addresses the
    /// daemon heard added to the set (knocks, notifications) since the
    /// reading began: a reading that checks its dump by a look-up of each
    /// element it gave looks those up too, so that an element added behind
    /// the dump's walk does not make it dump the set again.
    ///
    /// With `gone`, an element whose deadline passed while the reading ran
    /// and that the set no longer holds may be left out of it, and handed
    /// to `gone` instead, as soon as that is known (each once): a start's
    /// reading at a million under churn sees most of what its first dump
    /// found time out before its last one.
    fn dump_heard(
        &mut self,
        set: &str,
        heard: &dyn Fn() -> Vec<IpAddr>,
        gone: Option<&dyn Fn(Vec<Deadline>)>,
    ) -> std::io::Result<(Deadlines, Option<HowRead>)> {
        let _ = (heard, gone);
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
    ) -> std::io::Result<Option<Deadlines>> {
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

    /// Any IPv4 address, or one of two (the same address, often).
    fn v4() -> impl Strategy<Value = [u8; 4]> {
        prop_oneof![any::<[u8; 4]>(), (0u8..2).prop_map(|b| [198, 18, 0, b])]
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
    fn a_deadline_is_22_bytes_and_an_ipv4_one_10() {
        assert_eq!(std::mem::size_of::<Deadline>(), 22);
        assert_eq!(std::mem::size_of::<Deadline4>(), 10);
    }

    /// A reading of IPv4 elements takes the 12-byte shape, and one IPv6
    /// element turns it to the 24-byte one, keeping what it held; either
    /// way the elements come back as pushed.
    #[test]
    fn a_reading_takes_the_smaller_shape_while_it_can() {
        let four = |i: u8| Deadline::new(IpAddr::from([198, 18, 0, i]), Some(i64::from(i)));
        let mut d: Deadlines = (1..=3).map(four).collect();
        assert!(matches!(d, Deadlines::V4(_)));
        let six = Deadline::new("fd00::1".parse().unwrap(), None);
        d.push(six);
        assert!(matches!(d, Deadlines::Any(_)));
        let want = vec![four(1), four(2), four(3), six];
        assert_eq!(d.iter().collect::<Vec<_>>(), want);
        assert_eq!(d, Deadlines::Any(want.clone()));
        assert_eq!(
            Deadlines::from(want[..3].to_vec()),
            Deadlines::Any(want[..3].to_vec())
        );
        assert_ne!(
            Deadlines::from(want[..2].to_vec()),
            Deadlines::Any(want[1..3].to_vec())
        );
        d.reverse();
        assert_eq!((d.pop(), d.len()), (Some(four(1)), 3));
        assert_eq!(Deadlines::default(), Deadlines::Any(Vec::new()));
        // Appended: the smaller shape while both are in it.
        let mut a: Deadlines = (1..=2).map(four).collect();
        a.append((3..=4).map(four).collect());
        assert!(matches!(a, Deadlines::V4(_)));
        assert_eq!(a, (1..=4).map(four).collect());
        a.append(vec![six, four(5)].into());
        assert!(matches!(a, Deadlines::Any(_)));
        let mut b = Deadlines::from(vec![six]);
        b.append((1..=2).map(four).collect());
        let want = [vec![six], (1..=2).map(four).collect()].concat();
        assert_eq!(b.iter().collect::<Vec<_>>(), want);
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            [(1..=4).map(four).collect(), vec![six, four(5)]].concat()
        );
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

        /// An IPv4 address and its deadline in 10 bytes: the pair back
        /// as given, ordered as the 24-byte shape is; no IPv6 one.
        #[test]
        fn an_ipv4_deadline_in_12_bytes_is_the_one_in_24(
            a in (v4(), at()),
            b in (v4(), at()),
            t in any::<i64>(),
        ) {
            let (wa, wb) = (Deadline::new(a.0.into(), a.1), Deadline::new(b.0.into(), b.1));
            let na = Deadline4::make(a.0.into(), a.1).unwrap();
            let nb = Deadline4::make(b.0.into(), b.1).unwrap();
            prop_assert_eq!(na.deadline(), wa);
            prop_assert_eq!((Elem::addr(&na), Elem::at(&na)), (wa.addr(), wa.at()));
            prop_assert_eq!(na.cmp(&nb), wa.cmp(&wb));
            let mut n = na;
            Elem::set_at(&mut n, Some(t));
            prop_assert_eq!(Elem::at(&n), Some(t.clamp(-AT_MAX - 1, AT_MAX)));
            prop_assert_eq!(Elem::addr(&n), wa.addr());
            prop_assert!(Deadline4::make("fd00::1".parse().unwrap(), a.1).is_none());
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
