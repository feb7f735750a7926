//! A model of pf's table ioctls, for tests on machines without pf.
//!
//! It does not share pfknock's beliefs: it imports nothing from `marshal`
//! or from the `Layout`s of `abi`. Its byte offsets are its own (`Abi`,
//! written from the real headers: FreeBSD and OpenBSD `net/pfvar.h` as zig
//! 0.17 ships them, xnu `bsd/net/pfvar.h`), and the kernels' behaviour is in
//! per-OS, per-version rows (`Kernel`), each fact with the source it comes
//! from. docs/pf-kernel.md sets the same facts out in prose. Its request
//! command bytes, flags and feedback codes are its own too (`mod k`,
//! written from the headers), so a wrong constant in `abi` fails the tests
//! that drive `marshal` against this model, not only tests/abi-headers.sh.
//!
//! Only what pfknock sends is modelled; other requests answer ENOTTY.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use pfknock::pf::marshal::Device;

/// The errors the model returns, with the numbers of the BSDs' sys/errno.h
/// (FreeBSD, OpenBSD and macOS agree on these), written here rather than
/// taken from the host's libc.
mod errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const ESRCH: i32 = 3;
    pub const ENOMEM: i32 = 12;
    pub const EFAULT: i32 = 14;
    pub const ENODEV: i32 = 19;
    pub const EINVAL: i32 = 22;
    pub const ENOTTY: i32 = 25;
}

/// The constants of the headers, as the model knows them: FreeBSD and
/// OpenBSD `net/pfvar.h` (zig 0.17's copies), xnu `bsd/net/pfvar.h`; the
/// same values on all three unless noted. Written here, not taken from
/// `abi`, so that the two are checked against each other.
mod k {
    // #define DIOCGETLIMIT _IOWR('D', 39, struct pfioc_limit), and struct
    // pfioc_limit { int index; unsigned limit; } (8 bytes), the same in
    // FreeBSD's and OpenBSD's net/pfvar.h and xnu's bsd/net/pfvar.h.
    pub const N_GETLIMIT: u8 = 39;
    pub const LIMIT_SIZE: usize = 8;
    // #define PFR_KENTRY_HIWAT 200000: the default `set limit
    // table-entries`, the same in all three.
    pub const KENTRY_HIWAT: u64 = 200_000;
    // #define DIOCGETSRCNODES _IOWR('D', 84, struct pfioc_src_nodes), and
    // struct pfioc_src_nodes { int psn_len; union { buf pointer } } (16
    // bytes on LP64: the union is pointer-aligned; xnu aligns it to 8).
    pub const N_GETSRCNODES: u8 = 84;
    pub const SRC_NODES_SIZE: usize = 16;
    // #define PFSNODE_HIWAT 10000: the default `set limit src-nodes`.
    pub const SNODE_HIWAT: u64 = 10_000;
    // #define DIOCRADDTABLES _IOWR('D', 61, struct pfioc_table), ...
    pub const N_ADDTABLES: u8 = 61;
    pub const N_GETTSTATS: u8 = 64;
    pub const N_ADDADDRS: u8 = 67;
    pub const N_DELADDRS: u8 = 68;
    pub const N_GETASTATS: u8 = 71;
    pub const N_CLRASTATS: u8 = 72;
    // enum { PFR_FLAG_ATOMIC = 0x01 (FreeBSD, xnu; OpenBSD has none),
    // PFR_FLAG_DUMMY = 0x02, PFR_FLAG_FEEDBACK = 0x04, PFR_FLAG_CLSTATS =
    // 0x08, PFR_FLAG_ADDRSTOO = 0x10, PFR_FLAG_REPLACE = 0x20,
    // PFR_FLAG_ALLRSETS = 0x40, PFR_FLAG_ALLMASK = 0x7f }
    pub const PFR_FLAG_ATOMIC: i32 = 0x01;
    pub const PFR_FLAG_DUMMY: i32 = 0x02;
    pub const PFR_FLAG_FEEDBACK: i32 = 0x04;
    pub const PFR_FLAG_CLSTATS: i32 = 0x08;
    pub const PFR_FLAG_ALLRSETS: i32 = 0x40;
    pub const PFR_FLAG_ALLMASK: i32 = 0x7f;
    // enum { PFR_FB_NONE, PFR_FB_MATCH, PFR_FB_ADDED, PFR_FB_DELETED,
    // PFR_FB_CHANGED, PFR_FB_CLEARED, PFR_FB_DUPLICATE, PFR_FB_NOTMATCH,
    // PFR_FB_CONFLICT, ... }
    pub const PFR_FB_NONE: u8 = 0;
    pub const PFR_FB_ADDED: u8 = 2;
    pub const PFR_FB_DELETED: u8 = 3;
    pub const PFR_FB_CLEARED: u8 = 5;
    pub const PFR_FB_DUPLICATE: u8 = 6;
    pub const PFR_FB_CONFLICT: u8 = 8;
}

/// Byte offsets of one OS's structs on LP64, from its headers.
#[derive(Debug)]
pub struct Abi {
    pub ioc_size: usize,
    /// struct pfioc_table: pfrio_table at 0, then these.
    pub io_buffer: usize,
    pub io_esize: usize,
    pub io_size: usize,
    pub io_nadd: usize,
    pub io_ndel: usize,
    pub io_flags: usize,
    /// struct pfr_table (the same on all three).
    pub table_size: usize,
    pub t_name: usize,
    pub t_flags: usize,
    /// struct pfr_addr
    pub addr_size: usize,
    pub a_af: usize,
    pub a_net: usize,
    pub a_not: usize,
    pub a_fback: usize,
    pub a_type: Option<usize>,
    pub af_inet6: u8,
    /// struct pfr_astats
    pub astats_size: usize,
    pub as_packets: usize,
    pub as_bytes: usize,
    pub as_tzero: usize,
    pub op_addr_max: usize,
    pub op_pass: usize,
    /// struct pfr_tstats
    pub tstats_size: usize,
    pub ts_packets: usize,
    /// PFR_OP_TABLE_MAX: BLOCK, (MATCH,) PASS, XPASS.
    pub op_table_max: usize,
    pub ts_tzero: usize,
    pub ts_cnt: usize,
    /// PFR_TFLAG_COUNTERS, where it exists.
    pub tflag_counters: Option<u32>,
    pub tflag_usrmask: u32,
    /// PFR_FB_NOCOUNT, where it exists.
    pub fb_nocount: Option<u8>,
    /// PF_LIMIT_TABLE_ENTRIES, the index of `set limit table-entries`.
    pub limit_table_entries: i32,
    /// PF_LIMIT_MAX: indexes at or past it are EINVAL.
    pub limit_max: i32,
    /// PF_LIMIT_SRC_NODES, the index of `set limit src-nodes`.
    pub limit_src_nodes: i32,
    /// sizeof(struct pf_src_node): DIOCGETSRCNODES reports that many
    /// bytes per node.
    pub src_node_size: usize,
    /// The size of pfioc_src_nodes' psn_len: `int`, or OpenBSD's `size_t`.
    pub psn_len_size: usize,
}

// FreeBSD net/pfvar.h: struct pfr_addr is the 16-byte union then af, net,
// not, fback (20 bytes); pfr_astats adds [2][2] packets and bytes and a
// time_t (96); pfr_tstats is pfr_table + [2][3] + [2][3] + match, nomatch,
// tzero, cnt, refcnt[2] (1200). sys/socket.h: AF_INET6 28.
pub const FREEBSD_ABI: Abi = Abi {
    ioc_size: 1104,
    io_buffer: 1064,
    io_esize: 1072,
    io_size: 1076,
    io_nadd: 1084,
    io_ndel: 1088,
    io_flags: 1096,
    table_size: 1064,
    t_name: 1024,
    t_flags: 1056,
    addr_size: 20,
    a_af: 16,
    a_net: 17,
    a_not: 18,
    a_fback: 19,
    a_type: None,
    af_inet6: 28,
    astats_size: 96,
    as_packets: 24,
    as_bytes: 56,
    as_tzero: 88,
    op_addr_max: 2,
    op_pass: 1,
    tstats_size: 1200,
    ts_packets: 1064,
    op_table_max: 3,
    ts_tzero: 1176,
    ts_cnt: 1184,
    tflag_counters: Some(0x40),
    tflag_usrmask: 0x43,
    fb_nocount: Some(9),
    // enum { PF_LIMIT_* }, netpfil/pf/pf.h: STATES, SRC_NODES, FRAGS, TABLE_ENTRIES, ANCHORS, ETH_ANCHORS.
    limit_table_entries: 3,
    limit_max: 6,
    limit_src_nodes: 1,
    // netpfil/pf/pf.h struct pf_src_node (the copy handed to userland):
    // list entry 16, addr 16, raddr 16, rule 8, kif 8, bytes 16, packets
    // 16, states 4, conn 4, conn_rate 16, creation 4, expire 4, af, naf,
    // ruletype: 131, padded to 136.
    src_node_size: 136,
    psn_len_size: 4,
};

// OpenBSD net/pfvar.h 1.548: pfr_addr has ifname[IFNAMSIZ], states, weight
// before af, net, not, fback, type, pad[7] (52 bytes); PFR_OP_ADDR_MAX 3
// (BLOCK, MATCH, PASS), so pfr_astats is 160 and pfr_tstats ([2][4]) 1232.
// sys/socket.h: AF_INET6 24.
// struct pfioc_table, struct pfr_table, COUNTERS, USRMASK and NOCOUNT as FreeBSD.
pub const OPENBSD_ABI: Abi = Abi {
    addr_size: 52,
    a_af: 38,
    a_net: 39,
    a_not: 40,
    a_fback: 41,
    a_type: Some(42),
    af_inet6: 24,
    astats_size: 160,
    as_packets: 56,
    as_bytes: 104,
    as_tzero: 152,
    op_addr_max: 3,
    op_pass: 2,
    tstats_size: 1232,
    ts_packets: 1064,
    op_table_max: 4,
    ts_tzero: 1208,
    ts_cnt: 1216,
    // enum { PF_LIMIT_* }, net/pfvar.h: STATES, SRC_NODES, FRAGS, TABLES, TABLE_ENTRIES, PKTDELAY_PKTS, ANCHORS.
    limit_table_entries: 4,
    limit_max: 7,
    limit_src_nodes: 1,
    // struct pf_src_node: RB_ENTRY (three pointers and an int color) 32,
    // addr 16, raddr 16, rule 8, kif 8, bytes 16, packets 16, states 4,
    // conn 4, conn_rate 16, creation 4, expire 4, af, naf, type: 147,
    // padded to 152.
    src_node_size: 152,
    psn_len_size: 8,
    ..FREEBSD_ABI
};

// xnu bsd/net/pfvar.h: pfr_addr as FreeBSD's; pfr_astats' tzero is a
// u_int64_t; no PFR_TFLAG_COUNTERS (PFR_TFLAG_USRMASK 0x03) and no
// PFR_FB_NOCOUNT. pfioc_table_64 has the LP64 layout of the others.
// bsd/sys/socket.h: AF_INET6 30.
pub const MACOS_ABI: Abi = Abi {
    tflag_counters: None,
    tflag_usrmask: 0x03,
    fb_nocount: None,
    af_inet6: 30,
    // enum { PF_LIMIT_* }, xnu bsd/net/pfvar.h: STATES, APP_STATES, SRC_NODES, FRAGS, TABLES, TABLE_ENTRIES.
    limit_table_entries: 5,
    limit_max: 6,
    limit_src_nodes: 2,
    // struct pf_src_node: RB_ENTRY of three pointers 24, addr 16, raddr
    // 16, rule 8, kif 8, bytes 16, packets 16, states 4, conn 4,
    // conn_rate 16, creation 8, expire 8, af, ruletype: 146, padded to 152.
    src_node_size: 152,
    psn_len_size: 4,
    ..FREEBSD_ABI
};

/// What CLRASTATS writes into an entry's time stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stamp {
    Zero,
    Now,
}

/// One kernel: an OS at a version, and how its table ioctls behave. Every
/// field says where it was read.
#[derive(Debug)]
pub struct Kernel {
    pub os: &'static str,
    pub version: &'static str,
    pub abi: &'static Abi,
    /// pfr_clr_astats -> pfr_clstats_kentries(..., tzero, ...).
    pub clrastats: Stamp,
    /// pfr_add_addrs collects the addresses on an SLIST with
    /// SLIST_INSERT_HEAD and copies feedback out walking it from the head:
    /// the feedback comes back in reverse order, each element rewritten by
    /// pfr_fill_feedback, which sets pfra_not only when it is 1.
    pub addaddrs_feedback_reversed: bool,
    /// Per-entry counters exist only after the first counted packet
    /// (pfr_update_stats allocates them) and CLRASTATS frees them again
    /// (pfr_clstats_kentries): until then GETASTATS says PFR_FB_NOCOUNT.
    pub lazy_counters: bool,
    /// GETASTATS and GETTSTATS copy out a kernel buffer that was not zeroed
    /// (malloc without M_ZERO in pf_ioctl.c): a short read hands the caller
    /// size * esize bytes of whatever the kernel had.
    pub short_read_garbage: bool,
    /// `net.pf.request_maxcount` (default): most elements in one
    /// ADDADDRS/DELADDRS/CLRASTATS/GETASTATS request (pf_ioctl.c,
    /// pfrio_size > V_pf_ioctl_maxcount -> EINVAL). GETTSTATS is not capped.
    pub request_maxcount: Option<usize>,
    /// errno for GETTSTATS naming an anchor that does not exist.
    pub missing_anchor_errno: i32,
    /// GETASTATS admits flags (FreeBSD's ioctl layer refuses any).
    pub getastats_flags: i32,
    /// PFR_FLAG_ATOMIC admitted on address requests.
    pub atomic: bool,
    /// pfr_commit_ktable copies PFR_TFLAG_COUNTERS from the shadow table
    /// without allocating counters for kept entries: loading a ruleset that
    /// adds `counters` to a populated table dereferences NULL on the next
    /// counted packet.
    pub counters_flip_crashes: bool,
}

// FreeBSD 13.0: freebsd/freebsd-src releng/13.0 sys/netpfil/pf/pf_table.c,
// pfr_clr_astats
// stamps 0; pfr_commit_ktable takes the shadow's flags (counters included)
// without pfr_kentry_counter allocation for kept entries; sys/netpfil/pf/
// pf_ioctl.c DIOCRGETASTATS: mallocarray(M_TEMP, M_NOWAIT) (no M_ZERO), flags
// refused (CLSTATS explicitly), size over V_pf_ioctl_maxcount EINVAL.
pub const FREEBSD_13_0: Kernel = Kernel {
    os: "FreeBSD",
    version: "13.0",
    abi: &FREEBSD_ABI,
    clrastats: Stamp::Zero,
    addaddrs_feedback_reversed: false,
    lazy_counters: false,
    short_read_garbage: true,
    request_maxcount: Some(65535),
    missing_anchor_errno: errno::EINVAL,
    getastats_flags: 0,
    atomic: false,
    counters_flip_crashes: true,
};

// FreeBSD 14 and later: freebsd/freebsd-src main (commit 006ee642)
// sys/netpfil/pf/pf_table.c pfr_clr_astats calls
// pfr_clstats_kentries(&workq, 0, 0): it stamps 0, as 13.0 did (an earlier
// row said time_second; no copy read says so). pfr_commit_ktable has no
// counter allocation for kept entries there either, so the counters flip
// is as dangerous as on 13.0. The rest as 13.0 (pf_ioctl.c: mallocarray
// M_NOWAIT without M_ZERO, the request cap).
pub const FREEBSD_14: Kernel = Kernel {
    version: "14",
    ..FREEBSD_13_0
};

// OpenBSD 7.x: openbsd/src sys/net/pf_table.c pfr_add_addrs (ioq built with
// SLIST_INSERT_HEAD, feedback through pfr_fill_feedback), pfr_clr_astats ->
// pfr_clstats_kentries(&workq, gettime(), 0), pfr_walktree PFRW_GET_ASTATS
// (NOCOUNT while pfrke_counters is NULL), pfr_update_stats (counters
// allocated on the first counted packet of a COUNTERS table);
// pfr_get_astats has no ACCEPT_FLAGS; pf_ioctl.c has no request cap;
// pfr_table_count < 0 -> ENOENT.
pub const OPENBSD_7: Kernel = Kernel {
    os: "OpenBSD",
    version: "7",
    abi: &OPENBSD_ABI,
    clrastats: Stamp::Now,
    addaddrs_feedback_reversed: true,
    lazy_counters: true,
    short_read_garbage: false,
    request_maxcount: None,
    missing_anchor_errno: errno::ENOENT,
    getastats_flags: k::PFR_FLAG_ALLMASK,
    atomic: false,
    counters_flip_crashes: false,
};

// macOS: apple-oss-distributions/xnu bsd/net/pf_table.c (OpenBSD 4.x lineage): pfr_clr_astats ->
// pfr_clstats_kentries(&workq, 0, 0); counters inline in every kentry
// (pfr_update_stats counts always); ACCEPT_FLAGS admits PFR_FLAG_ATOMIC;
// feedback in input order; bsd/net/pf_ioctl.c has no request cap.
pub const MACOS: Kernel = Kernel {
    os: "macOS",
    version: "xnu",
    abi: &MACOS_ABI,
    clrastats: Stamp::Zero,
    addaddrs_feedback_reversed: false,
    lazy_counters: false,
    short_read_garbage: false,
    request_maxcount: None,
    missing_anchor_errno: errno::ENOENT,
    // ATOMIC, which `atomic` admits everywhere.
    getastats_flags: 0,
    atomic: true,
    counters_flip_crashes: false,
};

/// Every kernel row, oldest first within an OS.
pub const KERNELS: [&Kernel; 4] = [&FREEBSD_13_0, &FREEBSD_14, &OPENBSD_7, &MACOS];

/// The newest row for an OS name ("FreeBSD", "OpenBSD", "macOS").
pub fn newest(os: &str) -> &'static Kernel {
    KERNELS
        .iter()
        .rev()
        .find(|k| k.os == os)
        .copied()
        .unwrap_or_else(|| panic!("no kernel row for {os}"))
}

const AF_INET: u8 = 2;
const ANCHOR_LEN: usize = 1024;
const NAME_LEN: usize = 32;
const TFLAG_ACTIVE: u32 = 0x04;
const TFLAG_PERSIST: u32 = 0x01;
const TFLAG_CONST: u32 = 0x02;

/// `_IOWR('D', n, struct pfioc_table)`, as sys/ioccom.h encodes it.
fn request_number(ioc_size: usize, n: u8) -> u64 {
    0xC000_0000 | (((ioc_size as u64) & 0x1FFF) << 16) | (0x44 << 8) | n as u64
}

fn rd32(b: &[u8], off: usize) -> i32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    i32::from_ne_bytes(w)
}

fn wr32(b: &mut [u8], off: usize, v: i32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn wr64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// A NUL-terminated field, or EINVAL when bytes follow the NUL (pf's
/// pfr_validate_table checks the padding) or there is no NUL at all.
fn field(b: &[u8]) -> Result<String, i32> {
    let end = b.iter().position(|&c| c == 0).ok_or(errno::EINVAL)?;
    if b[end..].iter().any(|&c| c != 0) {
        return Err(errno::EINVAL);
    }
    String::from_utf8(b[..end].to_vec()).map_err(|_| errno::EINVAL)
}

type Key = (u8, [u8; 16], u8);
/// [PFR_DIR_MAX][PFR_OP_ADDR_MAX], room for the largest (OpenBSD's 3).
type Counts = [[u64; 3]; 2];

#[derive(Clone, Debug, Default)]
struct KEntry {
    not: bool,
    tzero: i64,
    /// None: no counters allocated (NOCOUNT where the OS has it).
    counters: Option<(Counts, Counts)>,
}

#[derive(Clone, Debug, Default)]
struct KTable {
    flags: u32,
    entries: BTreeMap<Key, KEntry>,
    /// pfrkt_packets[dir][op].
    packets: [[u64; 4]; 2],
}

/// The kernel's tables for one kernel row.
pub struct Model {
    pub kernel: &'static Kernel,
    abi: &'static Abi,
    /// Wall-clock seconds, as `time_second` / `gettime()`.
    pub now: i64,
    /// `net.pf.request_maxcount` as set now (FreeBSD).
    pub maxcount: usize,
    tables: BTreeMap<(String, String), KTable>,
    anchors: BTreeSet<String>,
    /// Requests seen, by command number.
    pub calls: BTreeMap<u8, usize>,
    /// Answer this errno to this request number once.
    pub fail_next: Option<(u8, i32)>,
    /// Answer this errno to this request number until cleared.
    pub fail_always: Option<(u8, i32)>,
    /// After each GETASTATS answered "too small", this many new hosts
    /// arrive in that table (overloads racing the reader).
    pub grow_on_short_read: usize,
    grown: u32,
    /// Every (anchor, table) an address or stats request named.
    pub touched: BTreeSet<(String, String)>,
    /// Set when the real kernel would have panicked.
    pub panicked: Option<String>,
    /// `set limit table-entries`: one pool for every table's entries
    /// (FreeBSD: the pfr_kentry UMA zone's limit; OpenBSD, xnu: the pool's
    /// hard limit).
    pub table_entries_limit: u64,
    /// Overload inserts that found the pool full (pf.c ignores the error).
    pub lost_inserts: usize,
    /// `set limit src-nodes`: one pool for every rule's source nodes.
    pub src_nodes_limit: u64,
    /// Source nodes of knock rules: (anchor, table the rule overloads,
    /// source).
    knock_nodes: BTreeSet<(String, String, IpAddr)>,
    /// Source nodes that other rules (pf.conf's own) hold.
    pub other_src_nodes: u64,
    /// Knocks dropped because no source node could be made.
    pub lost_knocks: usize,
}

fn tkey(anchor: &str, name: &str) -> (String, String) {
    (anchor.trim_start_matches('/').to_owned(), name.to_owned())
}

impl Model {
    pub fn new(kernel: &'static Kernel, now: i64) -> Self {
        Model {
            kernel,
            abi: kernel.abi,
            now,
            maxcount: kernel.request_maxcount.unwrap_or(usize::MAX),
            tables: BTreeMap::new(),
            anchors: BTreeSet::new(),
            calls: BTreeMap::new(),
            fail_next: None,
            fail_always: None,
            table_entries_limit: k::KENTRY_HIWAT,
            lost_inserts: 0,
            src_nodes_limit: k::SNODE_HIWAT,
            knock_nodes: BTreeSet::new(),
            other_src_nodes: 0,
            lost_knocks: 0,
            grow_on_short_read: 0,
            grown: 0,
            touched: BTreeSet::new(),
            panicked: None,
        }
    }

    fn host_key(&self, a: IpAddr) -> Key {
        let mut b = [0u8; 16];
        match a {
            IpAddr::V4(v) => {
                b[..4].copy_from_slice(&v.octets());
                (AF_INET, b, 32)
            }
            IpAddr::V6(v) => (self.abi.af_inet6, v.octets(), 128),
        }
    }

    fn key_ip(&self, k: &Key) -> IpAddr {
        if k.0 == self.abi.af_inet6 {
            IpAddr::from(k.1)
        } else {
            IpAddr::from([k.1[0], k.1[1], k.1[2], k.1[3]])
        }
    }

    fn fresh(&self, t: &KTable, tzero: i64) -> KEntry {
        let eager = match self.abi.tflag_counters {
            None => true,
            Some(c) => t.flags & c != 0 && !self.kernel.lazy_counters,
        };
        KEntry {
            not: false,
            tzero,
            counters: eager.then(Default::default),
        }
    }

    /// Load a ruleset declaring `table <name> persist [counters]`: the
    /// table is created, or keeps its entries with the new flags, as
    /// pfr_ina_define + pfr_commit_ktable do.
    pub fn define(&mut self, anchor: &str, name: &str, counters: bool) {
        let cf = self.abi.tflag_counters.unwrap_or(0);
        let want = if counters { cf } else { 0 };
        self.anchors.insert(anchor.to_owned());
        let crashes = self.kernel.counters_flip_crashes;
        let t = self.tables.entry(tkey(anchor, name)).or_default();
        let had = t.flags & cf;
        if crashes && had != want && want != 0 && !t.entries.is_empty() {
            self.panicked = Some(format!(
                "{} {}: counters added to populated table <{name}> (pfr_commit_ktable)",
                self.kernel.os, self.kernel.version
            ));
        }
        t.flags = TFLAG_ACTIVE | TFLAG_PERSIST | want;
    }

    /// Define a const table with entries, as `table <t> const { ... }` does.
    pub fn define_const(&mut self, anchor: &str, name: &str, addrs: &[IpAddr]) {
        self.define(anchor, name, false);
        let keys: Vec<Key> = addrs.iter().map(|a| self.host_key(*a)).collect();
        let now = self.now;
        let t = self
            .tables
            .get(&tkey(anchor, name))
            .expect("defined")
            .clone();
        let e = self.fresh(&t, now);
        let t = self.tables.get_mut(&tkey(anchor, name)).expect("defined");
        t.flags |= TFLAG_CONST;
        for k in keys {
            t.entries.insert(k, e.clone());
        }
    }

    /// Remove an anchor and its tables (`pfctl -F all` in the anchor).
    pub fn flush_anchor(&mut self, anchor: &str) {
        self.anchors.remove(anchor);
        self.tables.retain(|(a, _), _| a != anchor);
    }

    /// Entries of every table, the pool `table_entries_limit` caps.
    pub fn entries_total(&self) -> u64 {
        self.tables.values().map(|t| t.entries.len() as u64).sum()
    }

    /// pf's overload: insert the host with tzero = now, leaving an existing
    /// entry (and its time stamp) alone. The table must exist. With the
    /// pool full the insert fails and nothing says so (pf.c
    /// pf_overload_task ignores pfr_insert_kentry's error).
    pub fn overload(&mut self, anchor: &str, name: &str, a: IpAddr) -> bool {
        let key = self.host_key(a);
        let now = self.now;
        let full = self.entries_total() >= self.table_entries_limit;
        let Some(t) = self.tables.get(&tkey(anchor, name)) else {
            return false;
        };
        if t.entries.contains_key(&key) {
            return false;
        }
        if full {
            self.lost_inserts += 1;
            return false;
        }
        let e = self.fresh(t, now);
        self.tables
            .get_mut(&tkey(anchor, name))
            .expect("exists")
            .entries
            .insert(key, e);
        true
    }

    /// Source nodes held: every rule's, the pool `src_nodes_limit` caps.
    pub fn src_nodes(&self) -> u64 {
        self.knock_nodes.len() as u64 + self.other_src_nodes
    }

    /// A knock that trips its rule: `max-src-conn-rate` tracks the source
    /// in a source node of its own for the rule (pf.c pf_insert_src_node);
    /// with the pool full none is made, no state is created and the packet
    /// is dropped (REASON_SRCLIMIT), so nothing is overloaded. Otherwise
    /// as `overload`.
    pub fn knock(&mut self, anchor: &str, name: &str, a: IpAddr) -> bool {
        let node = (
            anchor.trim_start_matches('/').to_owned(),
            name.to_owned(),
            a,
        );
        if !self.knock_nodes.contains(&node) {
            if self.src_nodes() >= self.src_nodes_limit {
                self.lost_knocks += 1;
                return false;
            }
            self.knock_nodes.insert(node);
        }
        self.overload(anchor, name, a)
    }

    /// The knock rules' states are gone and their source nodes purged
    /// (`set timeout src.track`, 0 by default).
    pub fn purge_src_nodes(&mut self) {
        self.knock_nodes.clear();
    }

    /// Packets a rule on the table passed outbound without a matching entry
    /// (PFR_OP_XPASS, the last op of the table counters).
    pub fn xpass(&mut self, anchor: &str, name: &str, packets: u64) {
        let x = self.abi.op_table_max - 1;
        if let Some(t) = self.tables.get_mut(&tkey(anchor, name)) {
            t.packets[1][x] += packets;
        }
    }

    /// A table rules refer to but no ruleset defines: REFERENCED, not
    /// ACTIVE (pfr_attach_table on an undefined name).
    pub fn reference_only(&mut self, anchor: &str, name: &str) {
        self.anchors.insert(anchor.to_owned());
        self.tables.entry(tkey(anchor, name)).or_default().flags = 0x10;
    }

    /// `packets` passed by a rule on the table from `a` (pfr_update_stats):
    /// per-entry counters move only where the table keeps them.
    pub fn traffic(&mut self, anchor: &str, name: &str, a: IpAddr, packets: u64, bytes: u64) {
        self.traffic_dir(anchor, name, a, packets, bytes, false)
    }

    /// As `traffic`, in one direction (`out`: PFR_DIR_OUT).
    pub fn traffic_dir(
        &mut self,
        anchor: &str,
        name: &str,
        a: IpAddr,
        packets: u64,
        bytes: u64,
        out: bool,
    ) {
        let dir = out as usize;
        let key = self.host_key(a);
        let (cf, pass, lazy) = (
            self.abi.tflag_counters,
            self.abi.op_pass,
            self.kernel.lazy_counters,
        );
        let Some(t) = self.tables.get_mut(&tkey(anchor, name)) else {
            return;
        };
        t.packets[dir][pass] += packets;
        let counting = cf.is_none_or(|c| t.flags & c != 0);
        if let Some(e) = t.entries.get_mut(&key)
            && counting
        {
            if e.counters.is_none() && lazy {
                e.counters = Some(Default::default());
            }
            if let Some((p, b)) = e.counters.as_mut() {
                p[dir][pass] += packets;
                b[dir][pass] += bytes;
            }
        }
    }

    /// Insert many entries at once with a given time stamp (benchmarks).
    pub fn fill(
        &mut self,
        anchor: &str,
        name: &str,
        addrs: impl Iterator<Item = IpAddr>,
        tzero: impl Fn(usize) -> i64,
    ) {
        let keys: Vec<Key> = addrs.map(|a| self.host_key(a)).collect();
        let t = self
            .tables
            .get(&tkey(anchor, name))
            .expect("defined")
            .clone();
        let proto = self.fresh(&t, 0);
        let t = self.tables.get_mut(&tkey(anchor, name)).expect("defined");
        for (i, k) in keys.into_iter().enumerate() {
            let mut e = proto.clone();
            e.tzero = tzero(i);
            t.entries.insert(k, e);
        }
    }

    /// The table's entries as (address, prefix, tzero), for assertions.
    pub fn dump(&self, anchor: &str, name: &str) -> Option<Vec<(IpAddr, u8, i64)>> {
        let t = self.tables.get(&tkey(anchor, name))?;
        Some(
            t.entries
                .iter()
                .map(|(k, e)| (self.key_ip(k), k.2, e.tzero))
                .collect(),
        )
    }

    /// Delete a host entry, as another process would (`pfctl -T delete`,
    /// `pfknock revoke`) between two of the tested code's requests.
    pub fn remove(&mut self, anchor: &str, name: &str, a: IpAddr) -> bool {
        let key = self.host_key(a);
        self.tables
            .get_mut(&tkey(anchor, name))
            .is_some_and(|t| t.entries.remove(&key).is_some())
    }

    /// Flip an entry's negation (`!addr`), as a hand-written table may hold.
    pub fn negate(&mut self, anchor: &str, name: &str, a: IpAddr) {
        let key = self.host_key(a);
        if let Some(e) = self
            .tables
            .get_mut(&tkey(anchor, name))
            .and_then(|t| t.entries.get_mut(&key))
        {
            e.not = !e.not;
        }
    }

    pub fn has_table(&self, anchor: &str, name: &str) -> bool {
        self.tables.contains_key(&tkey(anchor, name))
    }

    pub fn table_flags(&self, anchor: &str, name: &str) -> Option<u32> {
        self.tables.get(&tkey(anchor, name)).map(|t| t.flags)
    }

    pub fn count(&self, n: u8) -> usize {
        self.calls.get(&n).copied().unwrap_or(0)
    }

    // ---- decoding, with the kernel's checks ---------------------------------

    /// `pfr_validate_table` + `pfr_fix_anchor` on a struct pfr_table at the
    /// start of `b`: (anchor, name, flags) or EINVAL.
    fn read_table(
        &self,
        b: &[u8],
        allow: u32,
        need_name: bool,
    ) -> Result<(String, String, u32), i32> {
        let a = self.abi;
        let name = field(&b[a.t_name..a.t_name + NAME_LEN])?;
        if need_name && name.is_empty() {
            return Err(errno::EINVAL);
        }
        let anchor = field(&b[..ANCHOR_LEN])?;
        let anchor = anchor.trim_start_matches('/').to_owned();
        if anchor == "_pf" {
            return Err(errno::EINVAL);
        }
        let flags = rd32(b, a.t_flags) as u32;
        if flags & !allow != 0 {
            return Err(errno::EINVAL);
        }
        Ok((anchor, name, flags))
    }

    /// `pfr_validate_addr`: the key and negation, or EINVAL.
    fn read_addr(&self, b: &[u8]) -> Result<(Key, bool), i32> {
        let a = self.abi;
        let (af, net) = (b[a.a_af], b[a.a_net]);
        let max = match af {
            AF_INET => 32,
            x if x == a.af_inet6 => 128,
            _ => return Err(errno::EINVAL),
        };
        if net > max {
            return Err(errno::EINVAL);
        }
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&b[..16]);
        // No bit set past the prefix, in the whole 16-byte union.
        let net = net as usize;
        for (i, &byte) in addr.iter().enumerate() {
            let bits = net.saturating_sub(i * 8).min(8);
            let host = 0xFFu8.checked_shr(bits as u32).unwrap_or(0);
            if byte & host != 0 {
                return Err(errno::EINVAL);
            }
        }
        if b[a.a_not] > 1 || b[a.a_fback] != 0 {
            return Err(errno::EINVAL);
        }
        if let Some(t) = a.a_type
            && b[t] >= 3
        {
            return Err(errno::EINVAL);
        }
        Ok(((af, addr, net as u8), b[a.a_not] == 1))
    }

    fn check_flags(&self, flags: i32, accepted: i32) -> Result<(), i32> {
        let mut ok = accepted;
        if self.kernel.atomic {
            ok |= k::PFR_FLAG_ATOMIC;
        }
        if flags & k::PFR_FLAG_ALLMASK & !ok != 0 {
            return Err(errno::EINVAL);
        }
        Ok(())
    }

    fn active(&mut self, anchor: &str, name: &str) -> Result<&mut KTable, i32> {
        match self.tables.get_mut(&tkey(anchor, name)) {
            Some(t) if t.flags & TFLAG_ACTIVE != 0 => Ok(t),
            _ => Err(errno::ESRCH),
        }
    }

    fn garbage(&self, buf: &mut [u8]) {
        if self.kernel.short_read_garbage {
            buf.fill(0xA5);
        }
    }

    fn get_astats(
        &mut self,
        ioc: &mut [u8],
        buf: &mut [u8],
        size: usize,
        flags: i32,
    ) -> Result<(), i32> {
        let a = self.abi;
        self.check_flags(flags, self.kernel.getastats_flags)?;
        let (anchor, name, _) = self.read_table(ioc, 0, true)?;
        self.touched.insert((anchor.clone(), name.clone()));
        let (now, grow, base) = (self.now, self.grow_on_short_read, self.grown);
        let n = self.active(&anchor, &name)?.entries.len();
        if n > size {
            self.garbage(&mut buf[..size * a.astats_size]);
            wr32(ioc, a.io_size, n as i32);
            let keys: Vec<Key> = (0..grow as u32)
                .map(|i| {
                    // 198.18.128.0/17
                    self.host_key(IpAddr::from(std::net::Ipv4Addr::from(
                        0xC612_8000u32 + base + i,
                    )))
                })
                .collect();
            let t = self
                .tables
                .get(&tkey(&anchor, &name))
                .expect("active")
                .clone();
            let e = self.fresh(&t, now);
            let t = self.active(&anchor, &name)?;
            for k in keys {
                t.entries.insert(k, e.clone());
            }
            self.grown += grow as u32;
            return Ok(());
        }
        let nocount = a.fb_nocount;
        let clear = flags & k::PFR_FLAG_CLSTATS != 0;
        let lazy = self.kernel.lazy_counters;
        let t = self.active(&anchor, &name)?;
        for ((k, e), out) in t
            .entries
            .iter_mut()
            .zip(buf.chunks_exact_mut(a.astats_size))
        {
            out.fill(0);
            out[..16].copy_from_slice(&k.1);
            out[a.a_af] = k.0;
            out[a.a_net] = k.2;
            out[a.a_not] = e.not as u8;
            match &e.counters {
                Some((p, b)) => {
                    for dir in 0..2 {
                        for op in 0..a.op_addr_max {
                            let i = 8 * (dir * a.op_addr_max + op);
                            wr64(out, a.as_packets + i, p[dir][op]);
                            wr64(out, a.as_bytes + i, b[dir][op]);
                        }
                    }
                }
                None => out[a.a_fback] = nocount.unwrap_or(0),
            }
            wr64(out, a.as_tzero, e.tzero as u64);
            if clear {
                e.tzero = now;
                if lazy {
                    e.counters = None;
                } else if let Some(c) = e.counters.as_mut() {
                    *c = Default::default();
                }
            }
        }
        wr32(ioc, a.io_size, n as i32);
        Ok(())
    }

    fn addr_request(
        &mut self,
        n: u8,
        ioc: &mut [u8],
        buf: &mut [u8],
        size: usize,
        flags: i32,
    ) -> Result<(), i32> {
        let a = self.abi;
        self.check_flags(flags, k::PFR_FLAG_DUMMY | k::PFR_FLAG_FEEDBACK)?;
        let (anchor, name, _) = self.read_table(ioc, 0, true)?;
        self.touched.insert((anchor.clone(), name.clone()));
        let mut addrs = Vec::with_capacity(size);
        for b in buf.chunks_exact(a.addr_size).take(size) {
            addrs.push(self.read_addr(b)?);
        }
        let dummy = flags & k::PFR_FLAG_DUMMY != 0;
        let feedback = flags & k::PFR_FLAG_FEEDBACK != 0;
        let now = self.now;
        let stamp = match self.kernel.clrastats {
            Stamp::Zero => 0,
            Stamp::Now => now,
        };
        let (lazy, reversed) = (
            self.kernel.lazy_counters,
            self.kernel.addaddrs_feedback_reversed && n == k::N_ADDADDRS,
        );
        let proto = {
            let t = self.active(&anchor, &name)?.clone();
            self.fresh(&t, now)
        };
        let room = self
            .table_entries_limit
            .saturating_sub(self.entries_total());
        let t = self.active(&anchor, &name)?;
        if n != k::N_CLRASTATS && t.flags & TFLAG_CONST != 0 {
            return Err(errno::EPERM);
        }
        let mut seen: BTreeSet<Key> = BTreeSet::new();
        let mut fb = Vec::with_capacity(size);
        let mut count = 0;
        for (k, not) in &addrs {
            let p = t.entries.get(k);
            let f = match n {
                k::N_ADDADDRS => {
                    if seen.contains(k) {
                        k::PFR_FB_DUPLICATE
                    } else if let Some(p) = p {
                        if p.not != *not {
                            k::PFR_FB_CONFLICT
                        } else {
                            k::PFR_FB_NONE
                        }
                    } else {
                        count += 1;
                        k::PFR_FB_ADDED
                    }
                }
                k::N_DELADDRS => match p {
                    None => k::PFR_FB_NONE,
                    Some(p) if p.not != *not => k::PFR_FB_CONFLICT,
                    Some(_) if seen.contains(k) => k::PFR_FB_DUPLICATE,
                    Some(_) => {
                        count += 1;
                        k::PFR_FB_DELETED
                    }
                },
                _ => match p {
                    None => k::PFR_FB_NONE,
                    Some(_) => {
                        count += 1;
                        k::PFR_FB_CLEARED
                    }
                },
            };
            seen.insert(*k);
            fb.push(f);
        }
        // pfr_add_addrs: an entry the pool cannot give is ENOMEM, before
        // anything is inserted (FreeBSD pfr_create_kentry -> senderr).
        let adds = fb.iter().filter(|f| **f == k::PFR_FB_ADDED).count() as u64;
        if n == k::N_ADDADDRS && !dummy && adds > room {
            return Err(errno::ENOMEM);
        }
        if !dummy {
            for ((k, not), f) in addrs.iter().zip(&fb) {
                match (n, *f) {
                    (k::N_ADDADDRS, k::PFR_FB_ADDED) => {
                        let mut e = proto.clone();
                        e.not = *not;
                        t.entries.insert(*k, e);
                    }
                    (k::N_DELADDRS, k::PFR_FB_DELETED) => {
                        t.entries.remove(k);
                    }
                    (k::N_CLRASTATS, k::PFR_FB_CLEARED) => {
                        let e = t.entries.get_mut(k).expect("present");
                        e.tzero = stamp;
                        if lazy {
                            e.counters = None;
                        } else if let Some(c) = e.counters.as_mut() {
                            *c = Default::default();
                        }
                    }
                    _ => {}
                }
            }
        }
        if feedback {
            if reversed {
                // pfr_fill_feedback into one stack pfr_addr, element by
                // element from the head of the list: the last input first;
                // pfra_not is written only when 1, so a 0 keeps the value
                // left by the element before.
                let mut ad = vec![0u8; a.addr_size];
                let order: Vec<usize> = (0..addrs.len()).rev().collect();
                for (slot, &i) in order.iter().enumerate() {
                    let ((k, not), f) = (&addrs[i], fb[i]);
                    ad[..16].copy_from_slice(&k.1);
                    ad[a.a_af] = k.0;
                    ad[a.a_net] = k.2;
                    if *not {
                        ad[a.a_not] = 1;
                    }
                    ad[a.a_fback] = f;
                    buf[slot * a.addr_size..(slot + 1) * a.addr_size].copy_from_slice(&ad);
                }
            } else {
                for (b, f) in buf.chunks_exact_mut(a.addr_size).zip(&fb) {
                    b[a.a_fback] = *f;
                }
            }
        }
        let off = if n == k::N_DELADDRS {
            a.io_ndel
        } else {
            a.io_nadd
        };
        wr32(ioc, off, count);
        Ok(())
    }

    fn get_tstats(
        &mut self,
        ioc: &mut [u8],
        buf: &mut [u8],
        size: usize,
        flags: i32,
    ) -> Result<(), i32> {
        let a = self.abi;
        self.check_flags(flags, k::PFR_FLAG_ALLRSETS)?;
        let (anchor, _, _) = self.read_table(ioc, 0, false)?;
        let all = flags & k::PFR_FLAG_ALLRSETS != 0;
        if !all && !anchor.is_empty() && !self.anchors.contains(&anchor) {
            return Err(self.kernel.missing_anchor_errno);
        }
        let matching: Vec<(&(String, String), &KTable)> = self
            .tables
            .iter()
            .filter(|((t, _), _)| all || *t == anchor)
            .collect();
        let n = matching.len();
        if n > size {
            wr32(ioc, a.io_size, n as i32);
            self.garbage(&mut buf[..size * a.tstats_size]);
            return Ok(());
        }
        for (((an, name), t), out) in matching
            .into_iter()
            .zip(buf.chunks_exact_mut(a.tstats_size))
        {
            out.fill(0);
            out[..an.len()].copy_from_slice(an.as_bytes());
            out[a.t_name..a.t_name + name.len()].copy_from_slice(name.as_bytes());
            wr32(out, a.t_flags, t.flags as i32);
            wr32(out, a.ts_cnt, t.entries.len() as i32);
            for dir in 0..2 {
                for op in 0..a.op_table_max {
                    let i = 8 * (dir * a.op_table_max + op);
                    wr64(out, a.ts_packets + i, t.packets[dir][op]);
                }
            }
        }
        wr32(ioc, a.io_size, n as i32);
        Ok(())
    }

    fn add_tables(
        &mut self,
        ioc: &mut [u8],
        buf: &mut [u8],
        size: usize,
        flags: i32,
    ) -> Result<(), i32> {
        let a = self.abi;
        self.check_flags(flags, k::PFR_FLAG_DUMMY)?;
        let mut todo = Vec::new();
        for b in buf.chunks_exact(a.table_size).take(size) {
            todo.push(self.read_table(b, a.tflag_usrmask, true)?);
        }
        let mut nadd = 0;
        for (anchor, name, f) in todo {
            let exists = self
                .tables
                .get(&tkey(&anchor, &name))
                .is_some_and(|t| t.flags & TFLAG_ACTIVE != 0);
            if exists {
                continue;
            }
            nadd += 1;
            if flags & k::PFR_FLAG_DUMMY == 0 {
                if !anchor.is_empty() {
                    self.anchors.insert(anchor.clone());
                }
                self.tables.entry(tkey(&anchor, &name)).or_default().flags = f | TFLAG_ACTIVE;
            }
        }
        wr32(ioc, a.io_nadd, nadd);
        Ok(())
    }
}

impl Device for Model {
    fn ioctl(&mut self, request: u64, ioc: &mut [u8], buf: &mut [u8]) -> Result<(), i32> {
        let a = self.abi;
        if request == request_number(k::LIMIT_SIZE, k::N_GETLIMIT) {
            // pf_ioctl.c DIOCGETLIMIT: an index past PF_LIMIT_MAX is EINVAL.
            if ioc.len() != k::LIMIT_SIZE {
                return Err(errno::EFAULT);
            }
            *self.calls.entry(k::N_GETLIMIT).or_default() += 1;
            let index = rd32(ioc, 0);
            if !(0..a.limit_max).contains(&index) {
                return Err(errno::EINVAL);
            }
            let limit = if index == a.limit_table_entries {
                self.table_entries_limit.min(u64::from(u32::MAX)) as u32
            } else if index == a.limit_src_nodes {
                self.src_nodes_limit.min(u64::from(u32::MAX)) as u32
            } else {
                // Another pool's limit: not modelled.
                0
            };
            ioc[4..8].copy_from_slice(&limit.to_ne_bytes());
            return Ok(());
        }
        if request == request_number(k::SRC_NODES_SIZE, k::N_GETSRCNODES) {
            // pf_ioctl.c DIOCGETSRCNODES with psn_len 0: the length the
            // nodes would take, nothing copied out. A buffer is not
            // modelled: pfknock never asks for the nodes.
            if ioc.len() != k::SRC_NODES_SIZE {
                return Err(errno::EFAULT);
            }
            *self.calls.entry(k::N_GETSRCNODES).or_default() += 1;
            // OpenBSD's psn_len is a size_t, the others' an int.
            let w = a.psn_len_size;
            if ioc[..w].iter().any(|b| *b != 0) {
                return Err(errno::EINVAL);
            }
            let len = self.src_nodes() * a.src_node_size as u64;
            if w == 8 {
                ioc[..8].copy_from_slice(&len.to_ne_bytes());
            } else {
                let len = i32::try_from(len).unwrap_or(i32::MAX);
                ioc[..4].copy_from_slice(&len.to_ne_bytes());
            }
            return Ok(());
        }
        if ioc.len() != a.ioc_size {
            return Err(errno::EFAULT);
        }
        let n = (request & 0xFF) as u8;
        if request != request_number(a.ioc_size, n) {
            return Err(errno::ENOTTY);
        }
        *self.calls.entry(n).or_default() += 1;
        if let Some((f, e)) = self.fail_next
            && f == n
        {
            self.fail_next = None;
            return Err(e);
        }
        if let Some((f, e)) = self.fail_always
            && f == n
        {
            return Err(e);
        }
        let (esize, size, flags) = (
            rd32(ioc, a.io_esize),
            rd32(ioc, a.io_size),
            rd32(ioc, a.io_flags),
        );
        let want = match n {
            k::N_GETASTATS => a.astats_size,
            k::N_ADDADDRS | k::N_DELADDRS | k::N_CLRASTATS => a.addr_size,
            k::N_GETTSTATS => a.tstats_size,
            k::N_ADDTABLES => a.table_size,
            _ => return Err(errno::ENOTTY),
        };
        // pf_ioctl.c: every DIOCR* request checks pfrio_esize first.
        if esize < 0 || esize as usize != want {
            return Err(errno::ENODEV);
        }
        let capped = self.kernel.request_maxcount.is_some() && n != k::N_GETTSTATS;
        if size < 0 || (capped && size as usize > self.maxcount) {
            return Err(if n == k::N_ADDTABLES {
                errno::ENOMEM
            } else {
                errno::EINVAL
            });
        }
        let size = size as usize;
        if buf.len() < size * want {
            return Err(errno::EFAULT);
        }
        match n {
            k::N_GETASTATS => self.get_astats(ioc, buf, size, flags),
            k::N_GETTSTATS => self.get_tstats(ioc, buf, size, flags),
            k::N_ADDTABLES => self.add_tables(ioc, buf, size, flags),
            _ => self.addr_request(n, ioc, buf, size, flags),
        }
    }
}
