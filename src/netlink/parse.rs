//! What the kernel sends, read by hand: netlink messages split with
//! checked lengths, their attributes walked, the nflog packet, the
//! nf_tables notification and set elements taken out. No slicing that can
//! panic: every read is `get` or a checked length (the fuzz test below).
#![forbid(unsafe_code)]

use std::net::IpAddr;

use super::*;

/// The netlink messages of a datagram, as bytes (header included).
pub(super) fn raw_messages(buf: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        out.push(&buf[off..off + len]);
        off += (len + 3) & !3;
    }
    out
}

pub(super) fn msg_type(m: &[u8]) -> u16 {
    m.get(4..6).map_or(0, |b| u16::from_ne_bytes([b[0], b[1]]))
}

pub(super) fn msg_seq(m: &[u8]) -> u32 {
    m.get(8..12)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// The attributes in `b`: (type without flags, payload).
pub(super) fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    out
}

pub(super) fn be64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

pub(super) fn cstr(b: &[u8]) -> &str {
    std::str::from_utf8(b.split(|c| *c == 0).next().unwrap_or_default()).unwrap_or_default()
}

pub(super) const NFT_MSG_NEWSET: u16 = (10 << 8) | 9;
pub(super) const NFT_MSG_NEWSETELEM: u16 = (10 << 8) | 12;
pub(super) const NFT_MSG_DELSETELEM: u16 = (10 << 8) | 14;

/// A NEWSETELEM or DELSETELEM message read by hand (a dump of a million
/// elements is thousands of them; the generic parser formats every
/// attribute it reads): (family, table, set, elements).
pub(super) fn raw_setelem(m: &[u8]) -> Option<(u8, &str, &str, Vec<TimedElement>)> {
    let (family, table, set, elems) = raw_setelem_counted(m)?;
    Some((
        family,
        table,
        set,
        elems.into_iter().map(|(a, t, l, _)| (a, t, l)).collect(),
    ))
}

/// An element's counter (packets, bytes), from its expression
/// (NFTA_SET_ELEM_EXPR, or one of NFTA_SET_ELEM_EXPRESSIONS): an
/// expression named "counter" whose data holds NFTA_COUNTER_BYTES (1) and
/// NFTA_COUNTER_PACKETS (2), big-endian (linux/netfilter/nf_tables.h).
pub(super) fn counter_of(expr: &[u8]) -> Option<(u64, u64)> {
    let mut named = false;
    let mut data = None;
    for (t, x) in attrs(expr) {
        match t {
            1 => named = cstr(x) == "counter",
            2 => data = Some(x),
            _ => {}
        }
    }
    if !named {
        return None;
    }
    let (mut bytes, mut packets) = (None, None);
    for (t, x) in attrs(data?) {
        match t {
            1 => bytes = be64(x),
            2 => packets = be64(x),
            _ => {}
        }
    }
    Some((packets?, bytes?))
}

/// An element as a dump or a notification tells it: its address, its
/// timeout and time left (ms), its counter (packets, bytes).
pub type CountedElement = (IpAddr, Option<u64>, Option<u64>, Option<(u64, u64)>);

/// `raw_setelem`, with each element's counter where it has one.
pub(super) fn raw_setelem_counted(m: &[u8]) -> Option<(u8, &str, &str, Vec<CountedElement>)> {
    let family = *m.get(16)?;
    let (mut table, mut set, mut elems) = ("", "", Vec::new());
    for (ty, v) in attrs(m.get(20..)?) {
        match ty {
            1 => table = cstr(v),
            2 => set = cstr(v),
            3 => {
                for (_, e) in attrs(v) {
                    let (mut key, mut timeout, mut left, mut counter) = (None, None, None, None);
                    for (t, x) in attrs(e) {
                        match t {
                            1 => {
                                key = attrs(x).into_iter().find(|(t, _)| *t == 1).and_then(
                                    |(_, d)| match d.len() {
                                        4 => <[u8; 4]>::try_from(d).ok().map(IpAddr::from),
                                        16 => <[u8; 16]>::try_from(d).ok().map(IpAddr::from),
                                        _ => None,
                                    },
                                )
                            }
                            4 => timeout = be64(x),
                            5 => left = be64(x),
                            // NFTA_SET_ELEM_EXPR (enum nft_set_elem_attributes:
                            // UNSPEC, KEY, DATA, FLAGS, TIMEOUT, EXPIRATION,
                            // USERDATA, EXPR = 7, PAD, OBJREF, KEY_END,
                            // EXPRESSIONS = 11)
                            7 => counter = counter.or_else(|| counter_of(x)),
                            // NFTA_SET_ELEM_EXPRESSIONS: NFTA_LIST_ELEMs
                            11 => {
                                counter = counter.or_else(|| {
                                    attrs(x).into_iter().find_map(|(_, e)| counter_of(e))
                                })
                            }
                            _ => {}
                        }
                    }
                    if let Some(k) = key {
                        elems.push((k, timeout, left, counter));
                    }
                }
            }
            _ => {}
        }
    }
    Some((family, table, set, elems))
}

/// NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET (linux/netfilter/nfnetlink.h,
/// nfnetlink_log.h): a logged packet.
pub(super) const NFULNL_PACKET: u16 = 4 << 8;
/// Its attributes (enum nfulnl_attr_type): the packet from its network
/// header on, and the rule's prefix, NUL-terminated.
pub(super) const NFULA_PAYLOAD: u16 = 9;
pub(super) const NFULA_PREFIX: u16 = 10;

/// A logged packet, read by hand with checked slicing (a general parser
/// of nfnetlink messages panicked on hostile bytes): the rule's prefix
/// and the packet's source address.
pub(super) fn knock(m: &[u8]) -> Option<KernelEvent> {
    if msg_type(m) != NFULNL_PACKET {
        return None;
    }
    let mut prefix = None;
    let mut addr = None;
    for (ty, v) in attrs(m.get(20..)?) {
        match ty {
            NFULA_PREFIX => prefix = Some(cstr(v).to_owned()),
            NFULA_PAYLOAD => addr = source(v),
            _ => {}
        }
    }
    Some(KernelEvent::Knock {
        prefix: prefix?,
        addr: addr?,
    })
}

/// The source address of an IP packet.
pub(super) fn source(p: &[u8]) -> Option<IpAddr> {
    match p.first()? >> 4 {
        4 if p.len() >= 20 => {
            let b: [u8; 4] = p[12..16].try_into().ok()?;
            Some(IpAddr::from(b))
        }
        6 if p.len() >= 40 => {
            let b: [u8; 16] = p[8..24].try_into().ok()?;
            Some(IpAddr::from(b))
        }
        _ => None,
    }
}

/// The deadline of an element with `left` ms left at `now` (ms).
pub(super) fn deadline(now: i64, left: u64) -> i64 {
    now.saturating_add(left.min(i64::MAX as u64) as i64)
}

/// A notification about table inet `table`, read by hand: the type, the
/// family, and the attributes that name things (nf_tables.h: the table is
/// attribute 1 of every kind, the chain of a rule 2, a chain's and a set's
/// own name 3 and 2), its elements' deadlines from `now` (ms).
pub(super) fn notification(m: &[u8], table: &str, now: i64) -> Option<KernelEvent> {
    let ty = msg_type(m);
    if ty >> 8 != 10 {
        return None;
    }
    let body = attrs(m.get(20..)?);
    let text = |n: u16| body.iter().find(|(t, _)| *t == n).map(|(_, v)| cstr(v));
    let inet = *m.get(16)? == 1;
    let ours = |n: u16| inet && text(n) == Some(table);
    let changed = |what: &'static str, name: u16| KernelEvent::Changed {
        what,
        name: text(name).unwrap_or_default().to_owned(),
    };
    match ty & 0xff {
        // NEWTABLE, DELTABLE
        0 | 2 => ours(1).then(|| changed("table", 1)),
        // NEWCHAIN, DELCHAIN
        3 | 5 => ours(1).then(|| changed("chain", 3)),
        // NEWRULE, DELRULE
        6 | 8 => ours(1).then(|| changed("rule", 2)),
        // NEWSET, DELSET
        9 | 11 => ours(1).then(|| changed("set", 2)),
        // NEWSETELEM, DELSETELEM
        12 | 14 => {
            let (family, t, set, e) = raw_setelem(m)?;
            (family == 1 && t == table).then(|| KernelEvent::Elements {
                set: set.to_owned(),
                added: ty & 0xff == 12,
                addrs: (e.into_iter())
                    .map(|(a, _, left)| Deadline::new(a, left.map(|l| deadline(now, l))))
                    .collect(),
            })
        }
        // NEWGEN: who committed the transaction.
        15 => {
            let pid = body
                .iter()
                .find(|(t, _)| *t == 2)
                .and_then(|(_, v)| Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?)))
                .unwrap_or(0);
            Some(KernelEvent::Commit {
                pid,
                process: text(3).unwrap_or_default().to_owned(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attribute: length, type, value, padded to 4 bytes.
    fn nla(ty: u16, v: &[u8]) -> Vec<u8> {
        let mut b = ((v.len() + 4) as u16).to_ne_bytes().to_vec();
        b.extend(ty.to_ne_bytes());
        b.extend(v);
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        b
    }

    #[test]
    fn an_elements_counter_is_read_from_its_expression() {
        let data = [nla(1, &480u64.to_be_bytes()), nla(2, &8u64.to_be_bytes())].concat();
        let counter = [nla(1, b"counter\0"), nla(0x8000 | 2, &data)].concat();
        assert_eq!(counter_of(&counter), Some((8, 480)));
        let limit = [nla(1, b"limit\0"), nla(0x8000 | 2, &data)].concat();
        assert_eq!(counter_of(&limit), None, "not a counter");
        assert_eq!(
            counter_of(&[nla(1, b"counter\0")].concat()),
            None,
            "no data"
        );
        assert_eq!(counter_of(&[0xff; 3]), None, "garbage");
    }

    #[test]
    fn the_source_of_either_family() {
        let mut v4 = vec![0x45u8; 20];
        v4[12..16].copy_from_slice(&[198, 18, 0, 7]);
        assert_eq!(source(&v4), Some("198.18.0.7".parse().unwrap()));
        let mut v6 = vec![0u8; 40];
        v6[0] = 0x60;
        v6[8..24].copy_from_slice(&"fd00::9".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(source(&v6), Some("fd00::9".parse().unwrap()));
        assert_eq!(source(&v4[..19]), None);
        assert_eq!(source(&[0x70; 40]), None);
        assert_eq!(source(&[]), None);
    }

    /// A message as the kernel lays it out: header, nfgenmsg, attributes.
    fn msg(ty: u16, family: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        b[4..6].copy_from_slice(&ty.to_ne_bytes());
        b.extend([family, 0, 0, 0]);
        for (t, v) in attrs {
            b.extend(((v.len() + 4) as u16).to_ne_bytes());
            b.extend(t.to_ne_bytes());
            b.extend(*v);
            while !b.len().is_multiple_of(4) {
                b.push(0);
            }
        }
        let len = b.len() as u32;
        b[0..4].copy_from_slice(&len.to_ne_bytes());
        b
    }

    #[test]
    fn notifications_name_what_changed_and_who() {
        let t = |ty: u16, fam: u8, table: &[u8]| {
            notification(
                &msg((10 << 8) | ty, fam, &[(1, table), (3, b"input\0")]),
                "pfknock",
                0,
            )
        };
        assert_eq!(
            t(5, 1, b"pfknock\0"),
            Some(KernelEvent::Changed {
                what: "chain",
                name: "input".into()
            })
        );
        assert_eq!(t(5, 1, b"other\0"), None, "another table");
        assert_eq!(t(5, 2, b"pfknock\0"), None, "table ip pfknock is not ours");
        assert_eq!(
            t(1, 1, b"pfknock\0"),
            None,
            "a GETTABLE answer is no change"
        );
        let g = msg(
            (10 << 8) | 15,
            0,
            &[
                (1, &7u32.to_be_bytes()),
                (2, &4242u32.to_be_bytes()),
                (3, b"nft\0"),
            ],
        );
        assert_eq!(
            notification(&g, "pfknock", 0),
            Some(KernelEvent::Commit {
                pid: 4242,
                process: "nft".into()
            })
        );
        // DELSETELEM: elements { { key { value } expiration } }.
        let mut key = Vec::new();
        key.extend(8u16.to_ne_bytes());
        key.extend(1u16.to_ne_bytes());
        key.extend([198, 18, 0, 9]);
        let mut elem = Vec::new();
        elem.extend(((key.len() + 4) as u16).to_ne_bytes());
        elem.extend((1u16 | 0x8000).to_ne_bytes());
        elem.extend(&key);
        elem.extend(12u16.to_ne_bytes());
        elem.extend(5u16.to_ne_bytes());
        elem.extend(1500u64.to_be_bytes());
        let mut list = Vec::new();
        list.extend(((elem.len() + 4) as u16).to_ne_bytes());
        list.extend((1u16 | 0x8000).to_ne_bytes());
        list.extend(&elem);
        let d = msg(
            (10 << 8) | 14,
            1,
            &[(1, b"pfknock\0"), (2, b"ssh_4\0"), (3, &list)],
        );
        assert_eq!(
            notification(&d, "pfknock", 7_000),
            Some(KernelEvent::Elements {
                set: "ssh_4".into(),
                added: false,
                addrs: vec![Deadline::new("198.18.0.9".parse().unwrap(), Some(8_500))].into(),
            })
        );
        // Cut anywhere, a message yields no garbage and no panic.
        for n in 0..d.len() {
            let _ = notification(&d[..n], "pfknock", 0);
            let _ = raw_messages(&d[..n]);
        }
    }

    #[test]
    fn truncated_datagrams_yield_nothing() {
        assert!(raw_messages(&[]).is_empty());
        assert!(raw_messages(&[200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_empty());
        assert!(raw_messages(&[3, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0]).is_empty());
    }

    /// A packet of the knock rule's `log group`, as nfnetlink_log sends
    /// it: packet header, prefix, payload from the IP header on.
    fn logged(prefix: &[u8], packet: &[u8]) -> Vec<u8> {
        msg(
            NFULNL_PACKET,
            2,
            &[
                (1, &[0x08, 0x00, 1, 0]),
                (NFULA_PREFIX, prefix),
                (NFULA_PAYLOAD, packet),
            ],
        )
    }

    fn v4_from(a: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0x45u8; 40];
        p[12..16].copy_from_slice(&a);
        p
    }

    #[test]
    fn a_logged_packet_is_a_knock_and_nothing_else_is() {
        let m = logged(b"pfknock ssh: \0", &v4_from([198, 18, 0, 7]));
        assert_eq!(
            knock(&m),
            Some(KernelEvent::Knock {
                prefix: "pfknock ssh: ".into(),
                addr: "198.18.0.7".parse().unwrap()
            })
        );
        // No prefix, no payload, another message type: nothing.
        let no_prefix = msg(NFULNL_PACKET, 2, &[(NFULA_PAYLOAD, &v4_from([1, 2, 3, 4]))]);
        assert_eq!(knock(&no_prefix), None);
        let no_payload = msg(NFULNL_PACKET, 2, &[(NFULA_PREFIX, b"pfknock ssh: \0")]);
        assert_eq!(knock(&no_payload), None);
        let mut other = m.clone();
        other[4..6].copy_from_slice(&(NFULNL_PACKET | 1).to_ne_bytes());
        assert_eq!(knock(&other), None);
    }

    /// xorshift64*: the fuzz test's own random numbers, seeded, so that a
    /// failure is reproduced by running it again.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Real messages of every kind the daemon reads: nflog packets (v4,
    /// v6), set element notifications with counters, a chain's, a NEWGEN.
    fn seeds() -> Vec<Vec<u8>> {
        let mut key = nla(1, &[198, 18, 0, 9]);
        key[2..4].copy_from_slice(&(1u16 | 0x8000).to_ne_bytes());
        let counter = [
            nla(1, b"counter\0"),
            nla(
                0x8000 | 2,
                &[nla(1, &480u64.to_be_bytes()), nla(2, &8u64.to_be_bytes())].concat(),
            ),
        ]
        .concat();
        let elem = nla(
            0x8000 | 1,
            &[
                key,
                nla(5, &1500u64.to_be_bytes()),
                nla(0x8000 | 7, &counter),
            ]
            .concat(),
        );
        let list = nla(0x8000 | 1, &elem);
        let mut v6 = vec![0u8; 60];
        v6[0] = 0x60;
        vec![
            logged(b"pfknock ssh: \0", &v4_from([198, 18, 0, 7])),
            logged(b"pfknock ssh: \0", &v6),
            msg(
                (10 << 8) | 14,
                1,
                &[(1, b"pfknock\0"), (2, b"ssh_4\0"), (3, &list)],
            ),
            msg(
                (10 << 8) | 12,
                1,
                &[(1, b"pfknock\0"), (2, b"ssh_4\0"), (3, &list)],
            ),
            msg((10 << 8) | 5, 1, &[(1, b"pfknock\0"), (3, b"input\0")]),
            msg(
                (10 << 8) | 15,
                0,
                &[
                    (1, &7u32.to_be_bytes()),
                    (2, &9u32.to_be_bytes()),
                    (3, b"nft\0"),
                ],
            ),
        ]
    }

    /// One to six mutations: a bit flipped, a byte set, a length field
    /// made wrong, a cut, random bytes added, a splice from another seed,
    /// two bytes swapped.
    fn mutate(d: &mut Vec<u8>, rng: &mut Rng, seeds: &[Vec<u8>]) {
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(d.len());
            match rng.below(7) {
                0 => d[at] ^= 1 << rng.below(8),
                1 => d[at] = [0, 0xff, 0x80, 4][rng.below(4)],
                // A length field (message or attribute) made wrong.
                2 => {
                    let at = at & !3;
                    let v = [0u16, 1, 3, 4, 5, 0xffff, rng.next() as u16][rng.below(7)];
                    if let Some(f) = d.get_mut(at..at + 2) {
                        f.copy_from_slice(&v.to_ne_bytes());
                    }
                }
                3 => d.truncate(at),
                4 => d.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
                5 => {
                    let other = &seeds[rng.below(seeds.len())];
                    let from = rng.below(other.len());
                    d.splice(at..at, other[from..].iter().copied());
                }
                _ => {
                    let b = rng.below(d.len());
                    d.swap(at, b);
                }
            }
            if d.is_empty() {
                break;
            }
        }
    }

    /// Every entry point that reads a datagram (the splitter, the knock,
    /// notification and set element parsers) on mutated real messages:
    /// bytes flipped, lengths changed, cut, grown, spliced. None may
    /// panic. 200,000 cases here; PFKNOCK_FUZZ_CASES=1000000 for more.
    #[test]
    fn no_datagram_makes_a_parser_panic() {
        let cases: usize = std::env::var("PFKNOCK_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000);
        let seeds = seeds();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for i in 0..cases {
            let mut d = seeds[i % seeds.len()].clone();
            mutate(&mut d, &mut rng, &seeds);
            for m in raw_messages(&d) {
                let _ = knock(m);
                let _ = notification(m, "pfknock", 0);
                let _ = raw_setelem_counted(m);
            }
            let _ = knock(&d);
            let _ = notification(&d, "pfknock", 0);
            let _ = raw_setelem_counted(&d);
        }
    }
}
