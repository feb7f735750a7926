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
    DataAttribute, ListAttribute, NfTablesMessage, SetAttribute, SetElementAttribute,
    SetElementList, SetElementMessage, SetMessage,
};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{Socket, constants::NETLINK_NETFILTER};

/// The nfnetlink multicast group of nf_tables' notifications.
const NFNLGRP_NFTABLES: u32 = 7;
/// A receive buffer that holds a burst (a deleted table is a few dozen
/// messages; nflog batches packets).
const RCVBUF: usize = 4 << 20;

pub use crate::kevents::KernelEvent;

mod changes;
mod counted;
mod lookups;
mod parse;
mod readings;
mod rules;
mod walks;
pub use changes::{change_elements, flush_set};
pub use parse::CountedElement;
use parse::*;

fn sock() -> io::Result<Socket> {
    let mut s = Socket::new(NETLINK_NETFILTER)?;
    s.bind_auto()?;
    s.set_rx_buf_sz(RCVBUF)?;
    Ok(s)
}

/// The receive buffer of the event sockets, where root may have it
/// (SO_RCVBUFFORCE, past net.core.rmem_max): a burst of 100,000 elements
/// a second is about 10 MB of notifications, and the daemon's loop may
/// be busy for a second (a reading of a million elements taken in).
/// A limit, not an allocation: the kernel holds that much only while the
/// daemon is behind.
const EVENTS_RCVBUF: usize = 64 << 20;

/// A socket for events: `sock`, with `EVENTS_RCVBUF` where the kernel
/// allows it (else `RCVBUF`, capped by rmem_max).
fn events_sock() -> io::Result<Socket> {
    let s = sock()?;
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(&s, EVENTS_RCVBUF);
    Ok(s)
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

/// The error code of an NLMSG_ERROR message (0 is an ACK; else minus the
/// errno).
fn error_code(m: &[u8]) -> i32 {
    m.get(16..20)
        .map_or(0, |e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))
}

/// An nf_tables request of the inet family, with these header flags.
fn inet_request(flags: u16, msg: NfTablesMessage) -> NetlinkMessage<NetfilterMessage> {
    let mut h = NetlinkHeader::default();
    h.flags = flags;
    NetlinkMessage::new(
        h,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Inet, 0, 0),
            msg,
        )),
    )
}

/// Send one request and wait for the kernel's answer to it: the messages
/// before the ACK, or the error.
fn request(
    s: &Socket,
    m: NetlinkMessage<NetfilterMessage>,
    seq: u32,
    buf: &mut [u8],
) -> io::Result<Vec<Vec<u8>>> {
    let mut got = Vec::new();
    request_each(s, m, seq, buf, |r| got.push(r.to_vec()))?;
    Ok(got)
}

/// `request`, handing each message of the answer to `each` as it comes
/// instead of keeping them.
fn request_each(
    s: &Socket,
    mut m: NetlinkMessage<NetfilterMessage>,
    seq: u32,
    buf: &mut [u8],
    mut each: impl FnMut(&[u8]),
) -> io::Result<()> {
    m.header.sequence_number = seq;
    m.finalize();
    let mut b = vec![0; m.header.length as usize];
    m.serialize(&mut b[..]);
    s.send(&b, 0)?;
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
                    let code = error_code(r);
                    return if code == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(-code))
                    };
                }
                // NLMSG_DONE
                3 => return Ok(()),
                _ => each(r),
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
        let s = events_sock()?;
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

/// nf_tables' notifications about the tables inet `tables` (pfknock's
/// and its guard).
pub struct Monitor {
    sock: Socket,
    tables: Vec<String>,
}

impl Monitor {
    pub fn open(tables: &[&str]) -> io::Result<Monitor> {
        let sock = events_sock()?;
        sock.add_membership(NFNLGRP_NFTABLES)?;
        Ok(Monitor {
            sock,
            tables: tables.iter().map(|t| (*t).to_owned()).collect(),
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

    /// A new socket in its place, joined to the same group and
    /// non-blocking: what the old one still held, and what came to it
    /// until the new one joined, is freed by the kernel when it is closed,
    /// none of it read (after an overrun, 64 MB of notifications read and
    /// dropped one by one held the loop for 200 ms). What comes after
    /// comes to the new one.
    pub fn renew(&mut self) -> io::Result<()> {
        let sock = events_sock()?;
        sock.add_membership(NFNLGRP_NFTABLES)?;
        sock.set_non_blocking(true)?;
        self.sock = sock;
        Ok(())
    }

    /// The next notifications (blocks, unless `set_nonblocking`).
    pub fn next(&self, buf: &mut [u8]) -> io::Result<Vec<KernelEvent>> {
        match recv(&self.sock, buf, 1 << (NFNLGRP_NFTABLES - 1)) {
            Ok(Some(n)) => {
                let now = crate::clock::now_ms();
                Ok(raw_messages(&buf[..n])
                    .into_iter()
                    .filter_map(|m| self.tables.iter().find_map(|t| notification(m, t, now)))
                    .collect())
            }
            Ok(None) => Ok(vec![KernelEvent::Forged("nf_tables monitor")]),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(vec![KernelEvent::Overrun]),
            Err(e) => Err(e),
        }
    }
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

/// An element's timeout, where it has one of its own (else the set's),
/// and its time left, in milliseconds.
type Timer = (Option<u64>, Option<u64>);

use crate::kevents::{Deadline4, Deadlines};
pub use readings::Deadline;

impl crate::kevents::ElementLookup for Lookup {
    fn left(&mut self, set: &str, addr: IpAddr) -> io::Result<Option<Option<u64>>> {
        self.get(set, addr)
    }
    fn left_many(&mut self, set: &str, addrs: &[IpAddr]) -> io::Result<Vec<Option<Option<u64>>>> {
        self.lefts(set, addrs)
    }
    /// The daemon's full reads (at start, after lost notifications) are
    /// rare and what it believes until the next one: settled ones.
    fn dump(&mut self, set: &str) -> io::Result<Deadlines> {
        self.dump_settled(set, &Vec::new, None).map(|(d, _)| d)
    }
    fn dump_noted(
        &mut self,
        set: &str,
    ) -> io::Result<(Deadlines, Option<crate::kevents::HowRead>)> {
        self.dump_settled(set, &Vec::new, None)
            .map(|(d, how)| (d, Some(how)))
    }
    fn dump_heard(
        &mut self,
        set: &str,
        heard: &dyn Fn() -> Vec<IpAddr>,
        gone: Option<&dyn Fn(Vec<Deadline>)>,
    ) -> io::Result<(Deadlines, Option<crate::kevents::HowRead>)> {
        self.dump_settled(set, heard, gone)
            .map(|(d, how)| (d, Some(how)))
    }
    fn read_known(
        &mut self,
        set: &str,
        n: usize,
        known: &mut dyn Iterator<Item = IpAddr>,
    ) -> io::Result<Option<Deadlines>> {
        Ok(if self.holds_ipv4(set) {
            self.known_or_none::<Deadline4>(set, n, known)?
                .map(Deadlines::V4)
        } else {
            self.known_or_none::<Deadline>(set, n, known)?
                .map(Deadlines::Any)
        })
    }
    /// NFTA_SET_COUNT: the number the kernel holds against the set's
    /// size when it refuses an add.
    fn counted(&mut self, set: &str) -> io::Result<Option<u64>> {
        self.set_count(set).map(|(count, _)| count)
    }
    fn reader(&self) -> Option<io::Result<Box<dyn crate::kevents::ElementLookup + Send>>> {
        Some(Lookup::open(&self.table).map(|l| Box::new(l) as _))
    }
}

/// A set as NFT_MSG_GETSET describes it (`Lookup::info`). `count`: the
/// elements the kernel counts (NFTA_SET_COUNT), those in it, those timed
/// out and not yet collected, and those of a transaction not yet
/// committed (`None` from a kernel that does not say); `timeout_ms`: the
/// set's timeout (NFTA_SET_TIMEOUT), which an element's look-up gives only
/// where its own differs; `size`: its size (NFTA_SET_DESC_SIZE), and
/// whether it holds ranges (NFTA_SET_FLAGS). The kernel leaves out a
/// timeout or size of 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetInfo {
    pub count: Option<u64>,
    pub timeout_ms: Option<u64>,
    /// NFTA_SET_KEY_LEN: 4 for a set of IPv4 addresses, 16 for IPv6.
    pub key_len: Option<u64>,
    pub size: Option<u64>,
    /// NFT_SET_INTERVAL: it holds ranges.
    pub interval: bool,
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

    /// `info`'s count and timeout.
    fn set_count(&mut self, set: &str) -> io::Result<(Option<u64>, Option<u64>)> {
        self.info(set).map(|i| (i.count, i.timeout_ms))
    }

    /// A set as the kernel describes it (NFT_MSG_GETSET of the one set, no
    /// element read): its count, timeout and size (`SetInfo`). ENOENT
    /// where the table or the set is not there.
    pub fn info(&mut self, set: &str) -> io::Result<SetInfo> {
        const NFTA_SET_FLAGS: u16 = 3;
        const NFTA_SET_KEY_LEN: u16 = 5;
        const NFT_SET_INTERVAL: u64 = 0x4;
        const NFTA_SET_DESC: u16 = 9;
        const NFTA_SET_DESC_SIZE: u16 = 1;
        const NFTA_SET_TIMEOUT: u16 = 11;
        const NFTA_SET_COUNT: u16 = 20;
        let m = inet_request(
            NLM_F_REQUEST | NLM_F_ACK,
            NfTablesMessage::GetSet(SetMessage {
                attributes: vec![
                    SetAttribute::Table(self.table.clone()),
                    SetAttribute::Name(set.to_owned()),
                ],
            }),
        );
        self.seq = self.seq.wrapping_add(1).max(1);
        let answer = request(&self.sock, m, self.seq, &mut self.buf)?;
        let be32 = |v: &[u8]| Some(u64::from(u32::from_be_bytes(v.get(..4)?.try_into().ok()?)));
        let mut i = SetInfo::default();
        for r in answer.iter().filter(|r| msg_type(r) == NFT_MSG_NEWSET) {
            for (t, v) in attrs(r.get(20..).unwrap_or_default()) {
                match t {
                    NFTA_SET_COUNT => i.count = be32(v),
                    NFTA_SET_KEY_LEN => i.key_len = be32(v),
                    NFTA_SET_FLAGS => {
                        i.interval = be32(v).is_some_and(|f| f & NFT_SET_INTERVAL != 0)
                    }
                    NFTA_SET_TIMEOUT => i.timeout_ms = be64(v),
                    NFTA_SET_DESC => {
                        let size = attrs(v).into_iter().find(|(t, _)| *t == NFTA_SET_DESC_SIZE);
                        i.size = size.and_then(|(_, v)| be32(v));
                    }
                    _ => {}
                }
            }
        }
        Ok(i)
    }

    /// One dump request of a set, the elements of each datagram handed to
    /// `each` as it comes, with the size of its message (parsed there: the
    /// raw answer is never held). The kernel sends one message a datagram
    /// (nf_tables_dump_set), each from a walk of its own.
    fn dump_each(
        &mut self,
        set: &str,
        mut each: impl FnMut(Vec<CountedElement>, usize),
    ) -> io::Result<()> {
        let m = self.getsetelem_msg(set, None, NLM_F_REQUEST | NLM_F_DUMP);
        self.seq = self.seq.wrapping_add(1).max(1);
        request_each(&self.sock, m, self.seq, &mut self.buf, |r| {
            if msg_type(r) == NFT_MSG_NEWSETELEM
                && let Some((_, _, _, e)) = raw_setelem_counted(r)
            {
                each(e, r.len());
            }
        })
    }

    /// Every element of a set with its timeout, time left and counter.
    ///
    /// A dump comes in many datagrams, and for each the kernel walks the
    /// set from its start, skipping what it sent before
    /// (nf_tables_dump_set). While the set's hash table is being resized
    /// (rhashtable grows in a deferred worker after a bulk insert) the walk
    /// order changes between datagrams: some elements come twice and as
    /// many not at all, and nothing in the answer says so (measured: 88k to
    /// 96k distinct of a 100k set just filled, `nft list set` alike). So a
    /// dump with an element twice is made again, a little later, up to
    /// `DUMP_TRIES` times, and the first without a repeat is the answer
    /// (if none is, every element any try saw, each once). A dump can also
    /// come short without a repeat: `dump_settled` for the reads that must
    /// be whole; `flush` empties a set by the kernel's flush (`flush_set`).
    pub fn dump_counted(&mut self, set: &str) -> io::Result<Vec<CountedElement>> {
        const DUMP_TRIES: u64 = 8;
        let mut all: Vec<CountedElement> = Vec::new();
        let mut at: std::collections::HashMap<IpAddr, usize> = std::collections::HashMap::new();
        for attempt in 1..=DUMP_TRIES {
            let mut this: Vec<CountedElement> = Vec::new();
            self.dump_each(set, |e, _| this.extend(e))?;
            if !sent_twice(&this) {
                return Ok(this);
            }
            for x in this {
                match at.get(&x.0) {
                    Some(&i) => all[i] = x,
                    None => {
                        at.insert(x.0, all.len());
                        all.push(x);
                    }
                }
            }
            if attempt < DUMP_TRIES {
                std::thread::sleep(std::time::Duration::from_millis(50 * attempt));
            }
        }
        Ok(all)
    }

    /// How many elements a set holds, for telling a full set: the
    /// kernel's own count where it says it (NFTA_SET_COUNT, the number it
    /// holds against the set's size when it refuses an add), in one
    /// request; else one dump, counted as it comes and kept nowhere (a
    /// resize of the set meanwhile can count one twice or not at all).
    pub fn count(&mut self, set: &str) -> io::Result<usize> {
        if let (Some(n), _) = self.set_count(set)? {
            return Ok(usize::try_from(n).unwrap_or(usize::MAX));
        }
        self.dumped(set)
    }

    /// How many elements one dump of a set gives, counted as they come and
    /// kept nowhere: exact for a set that no timeout or knock changes
    /// meanwhile (the connections kept at load).
    pub fn dumped(&mut self, set: &str) -> io::Result<usize> {
        let mut n = 0;
        self.dump_each(set, |e, _| n += e.len())?;
        Ok(n)
    }

    /// An NFT_MSG_GETSETELEM request, of some elements or a dump.
    fn getsetelem_msg(
        &self,
        set: &str,
        elements: Option<Vec<ListAttribute<SetElementAttribute>>>,
        flags: u16,
    ) -> NetlinkMessage<NetfilterMessage> {
        let mut attributes = vec![
            SetElementList::Table(self.table.clone()),
            SetElementList::Set(set.to_owned()),
        ];
        attributes.extend(elements.map(SetElementList::Elements));
        inet_request(
            flags,
            NfTablesMessage::GetSetElement(SetElementMessage { attributes }),
        )
    }

    /// One NFT_MSG_GETSETELEM request (of some elements, or a dump) and
    /// its answer.
    fn getsetelem(
        &mut self,
        set: &str,
        elements: Option<Vec<ListAttribute<SetElementAttribute>>>,
        flags: u16,
    ) -> io::Result<Vec<Vec<u8>>> {
        let m = self.getsetelem_msg(set, elements, flags);
        self.seq = self.seq.wrapping_add(1).max(1);
        request(&self.sock, m, self.seq, &mut self.buf)
    }
}

/// Did a dump send an element twice (a resize met it)? Its places sorted
/// by address, 4 bytes an element: at a million, a hash set of the
/// addresses took 38 MB beside the dump's 80.
fn sent_twice(d: &[CountedElement]) -> bool {
    let Ok(n) = u32::try_from(d.len()) else {
        return true;
    };
    let mut order: Vec<u32> = (0..n).collect();
    order.sort_unstable_by_key(|&i| d[i as usize].0);
    order
        .windows(2)
        .any(|w| d[w[0] as usize].0 == d[w[1] as usize].0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_that_sent_an_element_twice_is_told() {
        let e = |a: &str| (a.parse::<IpAddr>().unwrap(), None, Some(5), None);
        assert!(!sent_twice(&[]));
        assert!(!sent_twice(&[e("198.18.0.1")]));
        // An IPv4 address and its mapped IPv6 form are two elements.
        let mut d = vec![e("198.18.0.2"), e("::ffff:198.18.0.2"), e("198.18.0.1")];
        assert!(!sent_twice(&d));
        // Twice, far apart and with other times: told.
        d.extend((3..200).map(|i| e(&format!("198.18.1.{i}"))));
        d.push((d[1].0, None, Some(9), Some((1, 2))));
        assert!(sent_twice(&d));
    }
}
