//! Linux: what the kernel says of table inet pfknock as it happens, over
//! nfnetlink: rust-netlink's `netlink-sys` sockets, `netlink-packet-netfilter`
//! to build every request. Everything the kernel sends (nflog packets,
//! nf_tables answers and notifications) is read by a small attribute walker
//! here, with checked slicing only: the crate's parser formats every
//! attribute it reads (a 10k-element dump took 4 s of CPU through it, 3 ms
//! by hand), and it panicked on 5,693 of 1,000,000 mutated datagrams
//! (`no_datagram_makes_a_parser_panic` runs the walker on the same kind
//! of input). A datagram is read only if the kernel sent it: port id 0,
//! and for the monitor the nf_tables group; another process's (a forgery
//! needs CAP_NET_ADMIN) is dropped unread and reported. No `unsafe` here.
//!
//! What the kernel sends, measured on Linux 6.18 (tests/events.rs) and
//! read in net/netfilter/nf_tables_api.c and nft_dynset.c:
//!
//! - An element a rule adds from the packet path (`add @set`, `update
//!   @set`: nft_dynset) sends no notification. So the rule that authorizes
//!   also says `log group G`, and nfnetlink_log hands that packet to us
//!   (`Nflog`): an authorization, or a renewal by a new knock.
//! - An element that times out sends nothing either: the daemon keeps its
//!   own deadlines and asks for the element when one is due (`Lookup`, one
//!   NFT_MSG_GETSETELEM request per element, no listing, no fork).
//! - Changes made through the control plane (nft, `pfknock allow`,
//!   `revoke`, a flush, `nft delete table`) are multicast to
//!   NFNLGRP_NFTABLES (`Monitor`): NEWSETELEM/DELSETELEM with the elements,
//!   DELRULE/DELCHAIN/DELSET/DELTABLE, and after each transaction a NEWGEN
//!   naming the process that committed it.
#![forbid(unsafe_code)]

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::nflog::{ConfigCmd, ConfigMode, ConfigNla, Timeout, config_request};
use netlink_packet_netfilter::nftables::{
    DataAttribute, ListAttribute, NfTablesMessage, SetElementAttribute, SetElementList,
    SetElementMessage,
};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{Socket, constants::NETLINK_NETFILTER};

/// The nfnetlink multicast group of nf_tables' notifications.
const NFNLGRP_NFTABLES: u32 = 7;
/// A receive buffer that holds a burst (a deleted table is a few dozen
/// messages; nflog batches packets).
const RCVBUF: usize = 4 << 20;

pub use crate::kevents::KernelEvent;

fn sock() -> io::Result<Socket> {
    let mut s = Socket::new(NETLINK_NETFILTER)?;
    s.bind_auto()?;
    s.set_rx_buf_sz(RCVBUF)?;
    Ok(s)
}

/// The netlink messages of a datagram, as bytes (header included).
fn raw_messages(buf: &[u8]) -> Vec<&[u8]> {
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

fn msg_type(m: &[u8]) -> u16 {
    m.get(4..6).map_or(0, |b| u16::from_ne_bytes([b[0], b[1]]))
}

fn msg_seq(m: &[u8]) -> u32 {
    m.get(8..12)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// The attributes in `b`: (type without flags, payload).
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
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

fn be64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

fn cstr(b: &[u8]) -> &str {
    std::str::from_utf8(b.split(|c| *c == 0).next().unwrap_or_default()).unwrap_or_default()
}

const NFT_MSG_NEWSETELEM: u16 = (10 << 8) | 12;

/// A NEWSETELEM or DELSETELEM message read by hand (a dump of a million
/// elements is thousands of them; the generic parser formats every
/// attribute it reads): (family, table, set, elements).
fn raw_setelem(m: &[u8]) -> Option<(u8, &str, &str, Vec<TimedElement>)> {
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
fn counter_of(expr: &[u8]) -> Option<(u64, u64)> {
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

/// `raw_setelem`, with each element's counter where it has one.
type CountedElement = (IpAddr, Option<u64>, Option<u64>, Option<(u64, u64)>);

fn raw_setelem_counted(m: &[u8]) -> Option<(u8, &str, &str, Vec<CountedElement>)> {
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

/// One datagram, if the kernel sent it (port id 0) to this socket or to
/// `group` (a bit mask, as the kernel reports a multicast group; 0 for
/// unicast). Anything else is a process's forgery: `Ok(None)`, its bytes
/// never parsed.
fn recv(s: &Socket, buf: &mut [u8], group: u32) -> io::Result<Option<usize>> {
    let (n, from) = s.recv_from(&mut &mut buf[..], 0)?;
    if from.port_number() != 0 || from.multicast_groups() & !group != 0 {
        return Ok(None);
    }
    Ok(Some(n))
}

/// Send one request and wait for the kernel's answer to it: the messages
/// before the ACK, or the error.
fn request(
    s: &Socket,
    mut m: NetlinkMessage<NetfilterMessage>,
    seq: u32,
    buf: &mut [u8],
) -> io::Result<Vec<Vec<u8>>> {
    m.header.sequence_number = seq;
    m.finalize();
    let mut b = vec![0; m.header.length as usize];
    m.serialize(&mut b[..]);
    s.send(&b, 0)?;
    let mut got = Vec::new();
    // Bounded: a request gets its answer (a dump of 16M elements at most,
    // some thousands a datagram) and its ACK or DONE, on a socket of its
    // own.
    for _ in 0..(1 << 16) {
        let Some(n) = recv(s, buf, 0)? else {
            continue;
        };
        for r in raw_messages(&buf[..n]) {
            if msg_seq(r) != seq {
                continue;
            }
            match msg_type(r) {
                // NLMSG_ERROR: 0 is the ACK.
                2 => {
                    let code = r
                        .get(16..20)
                        .map_or(0, |e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]));
                    return if code == 0 {
                        Ok(got)
                    } else {
                        Err(io::Error::from_raw_os_error(-code))
                    };
                }
                // NLMSG_DONE
                3 => return Ok(got),
                _ => got.push(r.to_vec()),
            }
        }
    }
    Err(io::Error::other("no answer from the kernel"))
}

/// The packets of one nflog group.
pub struct Nflog(Socket);

impl Nflog {
    /// Bind group `group`; only one socket in a network namespace may.
    pub fn bind(group: u16) -> io::Result<Nflog> {
        let s = sock()?;
        // The network and transport headers are all we read. Each packet
        // is sent at once (queue threshold 1; the kernel's default batches
        // up to a second, nfnetlink_log.c NFULNL_TIMEOUT_DEFAULT 100 in
        // hundredths), so a knock is logged within milliseconds and before
        // anything a command does after it.
        let m = config_request(
            NetfilterProtoFamily::Unspec,
            group,
            vec![
                ConfigCmd::Bind.into(),
                ConfigMode::new_packet(64).into(),
                ConfigNla::QThresh(1),
                Timeout::new(1).into(),
            ],
        );
        // The kernel answers EPERM when another socket holds the group
        // (nfnetlink_log.c nfulnl_recv_config: instance owned by another
        // portid); as root that, not a privilege, is the cause.
        let root = crate::sys_unix::euid() == 0;
        request(&s, m, 1, &mut vec![0u8; 1 << 16]).map_err(|e| match e.raw_os_error() {
            Some(libc::EBUSY) => io::Error::new(
                e.kind(),
                format!("nflog group {group} is bound by another program (set nflog_group)"),
            ),
            Some(libc::EPERM) if root => io::Error::new(
                e.kind(),
                format!(
                    "nflog group {group} is bound by another program, another pfknock daemon \
                     perhaps (stop it, or set nflog_group)"
                ),
            ),
            _ => e,
        })?;
        Ok(Nflog(s))
    }

    /// The socket, for poll(2).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.0)
    }

    /// Reads return at once (`WouldBlock` when there is nothing), for a
    /// loop that waits in poll(2).
    pub fn set_nonblocking(&self) -> io::Result<()> {
        self.0.set_non_blocking(true)
    }

    /// The next knocks (blocks, unless `set_nonblocking`).
    /// A burst larger than the socket's buffer (ENOBUFS) is an `Overrun`:
    /// those knocks were counted by the kernel; the sets must be read again.
    pub fn next(&self, buf: &mut [u8]) -> io::Result<Vec<KernelEvent>> {
        match recv(&self.0, buf, 0) {
            Ok(Some(n)) => Ok(raw_messages(&buf[..n])
                .into_iter()
                .filter_map(knock)
                .collect()),
            Ok(None) => Ok(vec![KernelEvent::Forged("nflog")]),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(vec![KernelEvent::Overrun]),
            Err(e) => Err(e),
        }
    }
}

/// NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET (linux/netfilter/nfnetlink.h,
/// nfnetlink_log.h): a logged packet.
const NFULNL_PACKET: u16 = 4 << 8;
/// Its attributes (enum nfulnl_attr_type): the packet from its network
/// header on, and the rule's prefix, NUL-terminated.
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;

/// A logged packet, read by hand with checked slicing (a general parser
/// of nfnetlink messages panicked on hostile bytes): the rule's prefix
/// and the packet's source address.
fn knock(m: &[u8]) -> Option<KernelEvent> {
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
fn source(p: &[u8]) -> Option<IpAddr> {
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

/// nf_tables' notifications about table inet `table`.
pub struct Monitor {
    sock: Socket,
    table: String,
}

impl Monitor {
    pub fn open(table: &str) -> io::Result<Monitor> {
        let sock = sock()?;
        sock.add_membership(NFNLGRP_NFTABLES)?;
        Ok(Monitor {
            sock,
            table: table.to_owned(),
        })
    }

    /// The socket, for poll(2).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.sock)
    }

    /// Reads return at once (`WouldBlock` when there is nothing).
    pub fn set_nonblocking(&self) -> io::Result<()> {
        self.sock.set_non_blocking(true)
    }

    /// The next notifications (blocks, unless `set_nonblocking`).
    pub fn next(&self, buf: &mut [u8]) -> io::Result<Vec<KernelEvent>> {
        match recv(&self.sock, buf, 1 << (NFNLGRP_NFTABLES - 1)) {
            Ok(Some(n)) => Ok(raw_messages(&buf[..n])
                .into_iter()
                .filter_map(|m| notification(m, &self.table))
                .collect()),
            Ok(None) => Ok(vec![KernelEvent::Forged("nf_tables monitor")]),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(vec![KernelEvent::Overrun]),
            Err(e) => Err(e),
        }
    }
}

/// A notification about table inet `table`, read by hand: the type, the
/// family, and the attributes that name things (nf_tables.h: the table is
/// attribute 1 of every kind, the chain of a rule 2, a chain's and a set's
/// own name 3 and 2).
fn notification(m: &[u8], table: &str) -> Option<KernelEvent> {
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
                addrs: e.into_iter().map(|(a, _, left)| (a, left)).collect(),
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

/// Add elements to (`add`) or delete them from a set of table inet
/// `table`, in transactions of our own: the kernel then names the
/// committer `pfknock` (NEWGEN), and the daemon leaves the change to the
/// command's own log line. Elements may carry a timeout and the time
/// left, in milliseconds. One transaction per 1,000 elements (a netlink
/// datagram must fit the socket's send buffer).
pub fn change_elements(
    table: &str,
    set: &str,
    add: bool,
    elems: &[(IpAddr, Option<(u64, u64)>)],
) -> io::Result<()> {
    use netlink_packet_core::NLM_F_CREATE;
    use netlink_packet_netfilter::none::ControlMessage;
    let s = sock()?;
    let mut buf = vec![0u8; 1 << 16];
    let mut seq = 1u32;
    for chunk in elems.chunks(1000) {
        let mut batch = Vec::new();
        let mut push = |inner: netlink_packet_netfilter::NetfilterMessageInner,
                        family,
                        res_id,
                        flags,
                        seq: u32| {
            let mut h = NetlinkHeader::default();
            h.flags = flags;
            h.sequence_number = seq;
            let mut m = NetlinkMessage::new(
                h,
                NetlinkPayload::from(NetfilterMessage::new(
                    NetfilterHeader::new(family, 0, res_id),
                    inner,
                )),
            );
            m.finalize();
            let mut b = vec![0u8; m.header.length as usize];
            m.serialize(&mut b[..]);
            batch.extend(b);
        };
        // NFNL_MSG_BATCH_BEGIN/END carry the subsystem (NFNL_SUBSYS_NFTABLES) in res_id.
        push(
            ControlMessage::BatchBegin.into(),
            NetfilterProtoFamily::Unspec,
            10,
            NLM_F_REQUEST,
            seq,
        );
        let list = chunk
            .iter()
            .map(|(addr, times)| {
                let mut e = vec![SetElementAttribute::Key(DataAttribute::Value(key_of(
                    *addr,
                )))];
                if let Some((timeout, left)) = times {
                    e.push(SetElementAttribute::Timeout(*timeout));
                    e.push(SetElementAttribute::Expiration(*left));
                }
                ListAttribute::Element(e)
            })
            .collect();
        let msg = SetElementMessage {
            attributes: vec![
                SetElementList::Table(table.to_owned()),
                SetElementList::Set(set.to_owned()),
                SetElementList::Elements(list),
            ],
        };
        let (inner, flags) = if add {
            (
                NfTablesMessage::NewSetElement(msg),
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
            )
        } else {
            (
                NfTablesMessage::DeleteSetElement(msg),
                NLM_F_REQUEST | NLM_F_ACK,
            )
        };
        let want = seq + 1;
        push(inner.into(), NetfilterProtoFamily::Inet, 0, flags, want);
        push(
            ControlMessage::BatchEnd.into(),
            NetfilterProtoFamily::Unspec,
            10,
            NLM_F_REQUEST,
            seq + 2,
        );
        seq += 3;
        s.send(&batch, 0)?;
        // The element message's ACK or error ends this transaction.
        'wait: for _ in 0..64 {
            let Some(n) = recv(&s, &mut buf, 0)? else {
                continue;
            };
            for r in raw_messages(&buf[..n]) {
                if msg_type(r) == 2 {
                    let code = r
                        .get(16..20)
                        .map_or(0, |e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]));
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    if msg_seq(r) == want {
                        break 'wait;
                    }
                }
            }
        }
    }
    Ok(())
}

/// A set element's key: the address in network order.
fn key_of(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// An element's address, its timeout and its time left, in milliseconds.
pub type TimedElement = (IpAddr, Option<u64>, Option<u64>);

impl crate::kevents::ElementLookup for Lookup {
    fn left(&mut self, set: &str, addr: IpAddr) -> io::Result<Option<Option<u64>>> {
        self.get(set, addr)
    }
    fn dump(&mut self, set: &str) -> io::Result<Vec<(IpAddr, Option<u64>)>> {
        Lookup::dump(self, set)
    }
}

/// One element at a time: is it in the set, and for how long still?
pub struct Lookup {
    sock: Socket,
    table: String,
    seq: u32,
    buf: Vec<u8>,
}

impl Lookup {
    pub fn open(table: &str) -> io::Result<Lookup> {
        Ok(Lookup {
            sock: sock()?,
            table: table.to_owned(),
            seq: 1,
            buf: vec![0u8; 1 << 20],
        })
    }

    /// Every element of a set, with its time left: one dump request, read
    /// as the kernel sends it (no listing through nft, no JSON).
    pub fn dump(&mut self, set: &str) -> io::Result<Vec<(IpAddr, Option<u64>)>> {
        Ok(self
            .dump_timed(set)?
            .into_iter()
            .map(|(a, _, left)| (a, left))
            .collect())
    }

    /// `dump_timed`, with each element's counter where the set counts.
    pub fn dump_counted(&mut self, set: &str) -> io::Result<Vec<CountedElement>> {
        let mut out = Vec::new();
        for r in self.getsetelem(set, None, NLM_F_REQUEST | NLM_F_DUMP)? {
            if msg_type(&r) == NFT_MSG_NEWSETELEM
                && let Some((_, _, _, e)) = raw_setelem_counted(&r)
            {
                out.extend(e);
            }
        }
        Ok(out)
    }

    /// `dump`, with each element's own timeout too (milliseconds).
    pub fn dump_timed(&mut self, set: &str) -> io::Result<Vec<TimedElement>> {
        Ok(self
            .dump_counted(set)?
            .into_iter()
            .map(|(a, t, l, _)| (a, t, l))
            .collect())
    }

    /// One NFT_MSG_GETSETELEM request (of some elements, or a dump) and
    /// its answer.
    fn getsetelem(
        &mut self,
        set: &str,
        elements: Option<Vec<ListAttribute<SetElementAttribute>>>,
        flags: u16,
    ) -> io::Result<Vec<Vec<u8>>> {
        let mut attributes = vec![
            SetElementList::Table(self.table.clone()),
            SetElementList::Set(set.to_owned()),
        ];
        attributes.extend(elements.map(SetElementList::Elements));
        let mut h = NetlinkHeader::default();
        h.flags = flags;
        let m = NetlinkMessage::new(
            h,
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::Inet, 0, 0),
                NfTablesMessage::GetSetElement(SetElementMessage { attributes }),
            )),
        );
        self.seq = self.seq.wrapping_add(1).max(1);
        request(&self.sock, m, self.seq, &mut self.buf)
    }

    /// The element's time left in milliseconds (`Some(None)` for one
    /// without a timeout), or `None` when the set does not hold it.
    pub fn get(&mut self, set: &str, addr: IpAddr) -> io::Result<Option<Option<u64>>> {
        let one = ListAttribute::Element(vec![SetElementAttribute::Key(DataAttribute::Value(
            key_of(addr),
        ))]);
        match self.getsetelem(set, Some(vec![one]), NLM_F_REQUEST | NLM_F_ACK) {
            Ok(answer) => Ok(answer
                .iter()
                .filter(|r| msg_type(r) == NFT_MSG_NEWSETELEM)
                .filter_map(|r| raw_setelem(r))
                .flat_map(|(_, _, _, e)| e)
                .find(|(a, _, _)| *a == addr)
                .map(|(_, _, left)| left)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
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
            notification(&g, "pfknock"),
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
            notification(&d, "pfknock"),
            Some(KernelEvent::Elements {
                set: "ssh_4".into(),
                added: false,
                addrs: vec![("198.18.0.9".parse().unwrap(), Some(1500))],
            })
        );
        // Cut anywhere, a message yields no garbage and no panic.
        for n in 0..d.len() {
            let _ = notification(&d[..n], "pfknock");
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
        let seeds: Vec<Vec<u8>> = vec![
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
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for i in 0..cases {
            let mut d = seeds[i % seeds.len()].clone();
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
            for m in raw_messages(&d) {
                let _ = knock(m);
                let _ = notification(m, "pfknock");
                let _ = raw_setelem_counted(m);
            }
            let _ = knock(&d);
            let _ = notification(&d, "pfknock");
            let _ = raw_setelem_counted(&d);
        }
    }
}
