//! pf table ABI: `#[repr(C)]` structs and DIOCR* request numbers, one file
//! per OS, compiled on every host so that the marshalling code can be tested
//! on Linux. Every size and offset is pinned by a `const` assertion to the
//! values of docs/pf-kernel.md; a wrong one fails the build, and
//! tests/abi-headers.sh checks every one against the real headers. LP64 only (amd64,
//! arm64): FreeBSD/i386 lays the structs out differently and is not a target.
#![forbid(unsafe_code)]
#![allow(non_camel_case_types)]

/// Build a `Layout` from the `#[repr(C)]` structs in scope at the call site
/// (each OS file's own), plus the constants given, which differ per OS.
macro_rules! layout {
    ($($k:ident: $v:expr),* $(,)?) => {
        $crate::pf::abi::Layout {
            table_size: core::mem::size_of::<pfr_table>(),
            t_anchor: core::mem::offset_of!(pfr_table, pfrt_anchor),
            t_name: core::mem::offset_of!(pfr_table, pfrt_name),
            t_flags: core::mem::offset_of!(pfr_table, pfrt_flags),
            t_fback: core::mem::offset_of!(pfr_table, pfrt_fback),
            addr_size: core::mem::size_of::<pfr_addr>(),
            a_addr: core::mem::offset_of!(pfr_addr, pfra_u),
            a_af: core::mem::offset_of!(pfr_addr, pfra_af),
            a_net: core::mem::offset_of!(pfr_addr, pfra_net),
            a_not: core::mem::offset_of!(pfr_addr, pfra_not),
            a_fback: core::mem::offset_of!(pfr_addr, pfra_fback),
            astats_size: core::mem::size_of::<pfr_astats>(),
            as_packets: core::mem::offset_of!(pfr_astats, pfras_packets),
            as_bytes: core::mem::offset_of!(pfr_astats, pfras_bytes),
            as_tzero: core::mem::offset_of!(pfr_astats, pfras_tzero),
            tstats_size: core::mem::size_of::<pfr_tstats>(),
            ts_packets: core::mem::offset_of!(pfr_tstats, pfrts_packets),
            ts_bytes: core::mem::offset_of!(pfr_tstats, pfrts_bytes),
            ts_match: core::mem::offset_of!(pfr_tstats, pfrts_match),
            ts_nomatch: core::mem::offset_of!(pfr_tstats, pfrts_nomatch),
            ts_tzero: core::mem::offset_of!(pfr_tstats, pfrts_tzero),
            ts_cnt: core::mem::offset_of!(pfr_tstats, pfrts_cnt),
            ts_refcnt: core::mem::offset_of!(pfr_tstats, pfrts_refcnt),
            ioc_size: core::mem::size_of::<pfioc_table>(),
            io_table: core::mem::offset_of!(pfioc_table, pfrio_table),
            io_buffer: core::mem::offset_of!(pfioc_table, pfrio_buffer),
            io_esize: core::mem::offset_of!(pfioc_table, pfrio_esize),
            io_size: core::mem::offset_of!(pfioc_table, pfrio_size),
            io_size2: core::mem::offset_of!(pfioc_table, pfrio_size2),
            io_nadd: core::mem::offset_of!(pfioc_table, pfrio_nadd),
            io_ndel: core::mem::offset_of!(pfioc_table, pfrio_ndel),
            io_nchange: core::mem::offset_of!(pfioc_table, pfrio_nchange),
            io_flags: core::mem::offset_of!(pfioc_table, pfrio_flags),
            io_ticket: core::mem::offset_of!(pfioc_table, pfrio_ticket),
            $($k: $v),*
        }
    };
}

pub mod freebsd;
pub mod macos;
pub mod openbsd;

/// `PF_TABLE_NAME_SIZE`.
pub const TABLE_NAME_SIZE: usize = 32;
/// `MAXPATHLEN` / `PATH_MAX`: the anchor field.
pub const ANCHOR_SIZE: usize = 1024;
/// `PF_ANCHOR_NAME_SIZE` and `PF_ANCHOR_MAXPATH`, as `AnchorName` checks them.
pub use crate::name::{ANCHOR_MAXPATH, ANCHOR_NAME_SIZE};
/// OpenBSD's `PFRKE_MAX`: `pfra_type` must be below it.
pub const PFRKE_MAX: u8 = 3;
pub const AF_INET: u8 = 2;

/// `struct pfr_table`: the same on FreeBSD, OpenBSD and macOS.
#[repr(C)]
pub struct pfr_table {
    pub pfrt_anchor: [u8; ANCHOR_SIZE],
    pub pfrt_name: [u8; TABLE_NAME_SIZE],
    pub pfrt_flags: u32,
    pub pfrt_fback: u8,
}

/// `struct pfioc_table`, the parameter block of every DIOCR* request: the
/// same on all three in LP64 (macOS's `pfioc_table_64`; its alignment
/// attributes change nothing there).
#[repr(C)]
pub struct pfioc_table {
    pub pfrio_table: pfr_table,
    /// `void *`: an address, 8 bytes on LP64.
    pub pfrio_buffer: u64,
    pub pfrio_esize: i32,
    pub pfrio_size: i32,
    /// also naddr, setflag
    pub pfrio_size2: i32,
    /// also exists, nzero, nmatch, clrflag
    pub pfrio_nadd: i32,
    pub pfrio_ndel: i32,
    pub pfrio_nchange: i32,
    pub pfrio_flags: i32,
    pub pfrio_ticket: u32,
}

// docs/pf-kernel.md "Structures", LP64.
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<pfr_table>() == 1064 && align_of::<pfr_table>() == 4);
    assert!(offset_of!(pfr_table, pfrt_name) == 1024);
    assert!(offset_of!(pfr_table, pfrt_flags) == 1056);
    assert!(offset_of!(pfr_table, pfrt_fback) == 1060);
    assert!(size_of::<pfioc_table>() == 1104 && align_of::<pfioc_table>() == 8);
    assert!(offset_of!(pfioc_table, pfrio_buffer) == 1064);
    assert!(offset_of!(pfioc_table, pfrio_esize) == 1072);
    assert!(offset_of!(pfioc_table, pfrio_size) == 1076);
    assert!(offset_of!(pfioc_table, pfrio_size2) == 1080);
    assert!(offset_of!(pfioc_table, pfrio_nadd) == 1084);
    assert!(offset_of!(pfioc_table, pfrio_ndel) == 1088);
    assert!(offset_of!(pfioc_table, pfrio_nchange) == 1092);
    assert!(offset_of!(pfioc_table, pfrio_flags) == 1096);
    assert!(offset_of!(pfioc_table, pfrio_ticket) == 1100);
};

// PFR_FLAG_* (pfrio_flags), the same values on all three.
pub const PFR_FLAG_ATOMIC: i32 = 0x01;
pub const PFR_FLAG_DUMMY: i32 = 0x02;
pub const PFR_FLAG_FEEDBACK: i32 = 0x04;
pub const PFR_FLAG_CLSTATS: i32 = 0x08;
pub const PFR_FLAG_ADDRSTOO: i32 = 0x10;
pub const PFR_FLAG_REPLACE: i32 = 0x20;
pub const PFR_FLAG_ALLRSETS: i32 = 0x40;
pub const PFR_FLAG_ALLMASK: i32 = 0x7F;

// PFR_TFLAG_* (pfrt_flags). COUNTERS is absent on macOS.
pub const PFR_TFLAG_PERSIST: u32 = 0x01;
pub const PFR_TFLAG_CONST: u32 = 0x02;
pub const PFR_TFLAG_ACTIVE: u32 = 0x04;
pub const PFR_TFLAG_INACTIVE: u32 = 0x08;
pub const PFR_TFLAG_REFERENCED: u32 = 0x10;
pub const PFR_TFLAG_REFDANCHOR: u32 = 0x20;
pub const PFR_TFLAG_COUNTERS: u32 = 0x40;

// PFR_FB_* (pfra_fback). NOCOUNT is absent on macOS.
pub const PFR_FB_NONE: u8 = 0;
pub const PFR_FB_MATCH: u8 = 1;
pub const PFR_FB_ADDED: u8 = 2;
pub const PFR_FB_DELETED: u8 = 3;
pub const PFR_FB_CHANGED: u8 = 4;
pub const PFR_FB_CLEARED: u8 = 5;
pub const PFR_FB_DUPLICATE: u8 = 6;
pub const PFR_FB_NOTMATCH: u8 = 7;
pub const PFR_FB_CONFLICT: u8 = 8;
pub const PFR_FB_NOCOUNT: u8 = 9;

/// `_IOWR('D', n, struct pfioc_table)`, the 4.4BSD encoding all three use.
pub const fn iowr(size: usize, n: u8) -> u64 {
    0xC000_0000 | (((size as u64) & 0x1FFF) << 16) | ((b'D' as u64) << 8) | n as u64
}

// Command numbers n, the same on all three.
pub const N_CLRTABLES: u8 = 60;
pub const N_ADDTABLES: u8 = 61;
pub const N_DELTABLES: u8 = 62;
pub const N_GETTABLES: u8 = 63;
pub const N_GETTSTATS: u8 = 64;
pub const N_CLRTSTATS: u8 = 65;
pub const N_CLRADDRS: u8 = 66;
pub const N_ADDADDRS: u8 = 67;
pub const N_DELADDRS: u8 = 68;
pub const N_SETADDRS: u8 = 69;
pub const N_GETADDRS: u8 = 70;
pub const N_GETASTATS: u8 = 71;
pub const N_CLRASTATS: u8 = 72;
pub const N_TSTADDRS: u8 = 73;
pub const N_SETTFLAGS: u8 = 74;
/// DIOCGETLIMIT: `_IOWR('D', 39, struct pfioc_limit)`, a pool limit
/// (`set limit`) by index.
pub const N_GETLIMIT: u8 = 39;

/// `struct pfioc_limit`, the same on all three.
#[repr(C)]
pub struct pfioc_limit {
    pub index: i32,
    pub limit: u32,
}
const _: () = assert!(core::mem::size_of::<pfioc_limit>() == 8);

/// DIOCGETSRCNODES: `_IOWR('D', 84, struct pfioc_src_nodes)`. pfknock only
/// asks how many bytes the source nodes would take (`psn_len` 0 in, the
/// length out), never for the nodes.
pub const N_GETSRCNODES: u8 = 84;

/// `struct pfioc_src_nodes` on LP64: `psn_len`, then a pointer-sized
/// union aligned to 8 (`psn_buf`): 16 bytes on all three, so one request
/// number. `psn_len` is an `int` on FreeBSD and macOS and a `size_t` on
/// OpenBSD (`Layout.psn_len_size`); read here as its first 8 bytes.
#[repr(C)]
pub struct pfioc_src_nodes {
    pub psn_len: u64,
    pub psn_buf: u64,
}
const _: () = assert!(
    core::mem::size_of::<pfioc_src_nodes>() == 16
        && core::mem::offset_of!(pfioc_src_nodes, psn_buf) == 8
);

/// The name pf uses for a request, for error messages.
pub fn request_name(n: u8) -> &'static str {
    match n {
        N_CLRTABLES => "DIOCRCLRTABLES",
        N_ADDTABLES => "DIOCRADDTABLES",
        N_DELTABLES => "DIOCRDELTABLES",
        N_GETTABLES => "DIOCRGETTABLES",
        N_GETTSTATS => "DIOCRGETTSTATS",
        N_CLRTSTATS => "DIOCRCLRTSTATS",
        N_CLRADDRS => "DIOCRCLRADDRS",
        N_ADDADDRS => "DIOCRADDADDRS",
        N_DELADDRS => "DIOCRDELADDRS",
        N_SETADDRS => "DIOCRSETADDRS",
        N_GETADDRS => "DIOCRGETADDRS",
        N_GETASTATS => "DIOCRGETASTATS",
        N_CLRASTATS => "DIOCRCLRASTATS",
        N_TSTADDRS => "DIOCRTSTADDRS",
        N_SETTFLAGS => "DIOCRSETTFLAGS",
        _ => "DIOCR?",
    }
}

/// Where each field lives for one OS, read off its `#[repr(C)]` structs with
/// `offset_of!`, plus the constants that differ. Marshalling and the kernel
/// model both work from this, field by field, with `to_ne_bytes`.
#[derive(Debug)]
pub struct Layout {
    pub os: &'static str,
    pub af_inet6: u8,

    // struct pfr_table
    pub table_size: usize,
    pub t_anchor: usize,
    pub t_name: usize,
    pub t_flags: usize,
    pub t_fback: usize,

    // struct pfr_addr
    pub addr_size: usize,
    pub a_addr: usize,
    pub a_af: usize,
    pub a_net: usize,
    pub a_not: usize,
    pub a_fback: usize,
    /// OpenBSD's `pfra_type` (must be < PFRKE_MAX).
    pub a_type: Option<usize>,

    // struct pfr_astats
    pub astats_size: usize,
    pub as_packets: usize,
    pub as_bytes: usize,
    pub as_tzero: usize,
    /// `[DIR_MAX][OP_ADDR_MAX]` counters per entry.
    pub op_addr_max: usize,
    /// Index of PFR_OP_PASS.
    pub op_pass: usize,
    /// macOS declares tzero u64; FreeBSD and OpenBSD time_t (i64 on LP64).
    pub tzero_unsigned: bool,

    // struct pfr_tstats
    pub tstats_size: usize,
    pub ts_packets: usize,
    pub ts_bytes: usize,
    pub ts_match: usize,
    pub ts_nomatch: usize,
    pub ts_tzero: usize,
    pub ts_cnt: usize,
    pub ts_refcnt: usize,
    pub op_table_max: usize,

    // struct pfioc_table
    pub ioc_size: usize,
    pub io_table: usize,
    pub io_buffer: usize,
    pub io_esize: usize,
    pub io_size: usize,
    pub io_size2: usize,
    pub io_nadd: usize,
    pub io_ndel: usize,
    pub io_nchange: usize,
    pub io_flags: usize,
    pub io_ticket: usize,

    /// PFR_TFLAG_COUNTERS where it exists.
    pub tflag_counters: Option<u32>,
    pub tflag_usrmask: u32,
    /// PFR_FB_NOCOUNT where it exists.
    pub fb_nocount: Option<u8>,
    /// FreeBSD's `net.pf.request_maxcount` default (65535), used when the
    /// sysctl cannot be read: most elements per address request. GETTSTATS
    /// is not capped. docs/pf-kernel.md "Request cap".
    pub request_maxcount: Option<usize>,
    /// A missing filter anchor on GETTSTATS, besides ENOENT (pf_table.c):
    /// EINVAL where FreeBSD's ioctl layer checks the anchor itself (not
    /// every release does). docs/pf-kernel.md "Errors".
    pub missing_anchor_errno: i32,
    /// `PF_LIMIT_TABLE_ENTRIES`: the index of `set limit table-entries`
    /// for DIOCGETLIMIT (its place in each OS's `PF_LIMIT_*` enum).
    pub limit_table_entries: i32,
    /// `PF_LIMIT_SRC_NODES`: the index of `set limit src-nodes`.
    pub limit_src_nodes: i32,
    /// `sizeof(struct pf_src_node)` as DIOCGETSRCNODES counts it: the
    /// length it reports is this times the number of source nodes.
    pub src_node_size: usize,
    /// The size of `pfioc_src_nodes.psn_len`: 4 (`int`) or 8 (`size_t`).
    pub psn_len_size: usize,
}

impl Layout {
    /// DIOCGETLIMIT's request number.
    pub const fn limit_request(&self) -> u64 {
        iowr(core::mem::size_of::<pfioc_limit>(), N_GETLIMIT)
    }

    /// DIOCGETSRCNODES's request number.
    pub const fn src_nodes_request(&self) -> u64 {
        iowr(core::mem::size_of::<pfioc_src_nodes>(), N_GETSRCNODES)
    }

    pub const fn request(&self, n: u8) -> u64 {
        iowr(self.ioc_size, n)
    }

    /// The command number of `request` if it is a DIOCR* table request
    /// whose argument is this OS's `struct pfioc_table`: `_IOWR('D', n,
    /// ...)` with the struct's size encoded and n one of the table
    /// commands. The device checks every request with it, so no caller
    /// can hand the kernel a number that reads or writes another shape.
    pub const fn table_command(&self, request: u64) -> Option<u8> {
        let n = (request & 0xFF) as u8;
        if request == self.request(n) && n >= N_CLRTABLES && n <= N_SETTFLAGS {
            Some(n)
        } else {
            None
        }
    }
}

/// The layout of the OS this binary runs on.
pub fn native() -> Option<&'static Layout> {
    if cfg!(target_os = "freebsd") {
        Some(&freebsd::LAYOUT)
    } else if cfg!(target_os = "openbsd") {
        Some(&openbsd::LAYOUT)
    } else if cfg!(target_os = "macos") {
        Some(&macos::LAYOUT)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Request numbers as docs/pf-kernel.md "Requests" lists them for LP64.
    #[test]
    fn request_numbers() {
        for l in [&freebsd::LAYOUT, &openbsd::LAYOUT, &macos::LAYOUT] {
            assert_eq!(l.request(N_CLRTABLES), 0xC450443C, "{}", l.os);
            assert_eq!(l.request(N_ADDTABLES), 0xC450443D);
            assert_eq!(l.request(N_GETTSTATS), 0xC4504440);
            assert_eq!(l.request(N_ADDADDRS), 0xC4504443);
            assert_eq!(l.request(N_DELADDRS), 0xC4504444);
            assert_eq!(l.request(N_GETASTATS), 0xC4504447);
            assert_eq!(l.request(N_CLRASTATS), 0xC4504448);
            assert_eq!(l.request(N_SETTFLAGS), 0xC450444A);
        }
        // FreeBSD/i386's 1100-byte pfioc_table would give 0xC44C44nn.
        assert_eq!(iowr(1100, N_GETASTATS), 0xC44C4447);
    }

    /// The device takes the table requests and nothing else: not another
    /// struct's size, direction, group or command.
    #[test]
    fn only_table_requests_pass() {
        for l in [&freebsd::LAYOUT, &openbsd::LAYOUT, &macos::LAYOUT] {
            for n in N_CLRTABLES..=N_SETTFLAGS {
                assert_eq!(l.table_command(l.request(n)), Some(n), "{}", l.os);
            }
            let get = l.request(N_GETASTATS);
            for wrong in [
                iowr(1100, N_GETASTATS),              // another size
                get & !0x8000_0000,                   // _IOW, not _IOWR
                (get & !0xFF00) | (b'd' as u64) << 8, // another group
                l.request(N_CLRTABLES - 1),           // DIOCRxxx below the table range
                l.request(N_SETTFLAGS + 1),           // and above it
                0x2000_4401,                          // DIOCSTART, _IO('D', 1)
                get | 1 << 32,                        // bits above the 32 of a request
            ] {
                assert_eq!(l.table_command(wrong), None, "{}: {wrong:#x}", l.os);
            }
        }
    }
}
