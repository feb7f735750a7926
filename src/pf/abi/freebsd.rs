//! FreeBSD 13, 14 and 15 (amd64, arm64): `sys/net/pfvar.h`.
#![forbid(unsafe_code)]
#![allow(non_camel_case_types)]

use core::mem::{align_of, offset_of, size_of};

use super::{Layout, pfioc_table, pfr_table};

#[repr(C)]
pub struct pfr_addr {
    /// `union { struct in_addr; struct in6_addr; }`, 4-byte aligned.
    pub pfra_u: [u32; 4],
    pub pfra_af: u8,
    pub pfra_net: u8,
    pub pfra_not: u8,
    pub pfra_fback: u8,
}

/// PFR_DIR_MAX = 2, PFR_OP_ADDR_MAX = 2 (BLOCK, PASS).
#[repr(C)]
pub struct pfr_astats {
    pub pfras_a: pfr_addr,
    pub pfras_packets: [[u64; 2]; 2],
    pub pfras_bytes: [[u64; 2]; 2],
    /// time_t
    pub pfras_tzero: i64,
}

/// PFR_OP_TABLE_MAX = 3 (BLOCK, PASS, XPASS).
#[repr(C)]
pub struct pfr_tstats {
    pub pfrts_t: pfr_table,
    pub pfrts_packets: [[u64; 3]; 2],
    pub pfrts_bytes: [[u64; 3]; 2],
    pub pfrts_match: u64,
    pub pfrts_nomatch: u64,
    pub pfrts_tzero: i64,
    pub pfrts_cnt: i32,
    pub pfrts_refcnt: [i32; 2],
}

// docs/pf-kernel.md "Structures", FreeBSD LP64.
const _: () = {
    assert!(size_of::<pfr_addr>() == 20 && align_of::<pfr_addr>() == 4);
    assert!(offset_of!(pfr_addr, pfra_af) == 16);
    assert!(offset_of!(pfr_addr, pfra_net) == 17);
    assert!(offset_of!(pfr_addr, pfra_not) == 18);
    assert!(offset_of!(pfr_addr, pfra_fback) == 19);

    assert!(size_of::<pfr_astats>() == 96 && align_of::<pfr_astats>() == 8);
    assert!(offset_of!(pfr_astats, pfras_packets) == 24);
    assert!(offset_of!(pfr_astats, pfras_bytes) == 56);
    assert!(offset_of!(pfr_astats, pfras_tzero) == 88);

    assert!(size_of::<pfr_tstats>() == 1200 && align_of::<pfr_tstats>() == 8);
    assert!(offset_of!(pfr_tstats, pfrts_packets) == 1064);
    assert!(offset_of!(pfr_tstats, pfrts_bytes) == 1112);
    assert!(offset_of!(pfr_tstats, pfrts_match) == 1160);
    assert!(offset_of!(pfr_tstats, pfrts_nomatch) == 1168);
    assert!(offset_of!(pfr_tstats, pfrts_tzero) == 1176);
    assert!(offset_of!(pfr_tstats, pfrts_cnt) == 1184);
    assert!(offset_of!(pfr_tstats, pfrts_refcnt) == 1188);

    assert!(LAYOUT.request(super::N_GETASTATS) == 0xC4504447);
};

pub const LAYOUT: Layout = layout! {
    os: "FreeBSD",
    af_inet6: 28,
    a_type: None,
    op_addr_max: 2,
    op_pass: 1,
    tzero_unsigned: false,
    op_table_max: 3,
    tflag_counters: Some(super::PFR_TFLAG_COUNTERS),
    tflag_usrmask: 0x43,
    fb_nocount: Some(super::PFR_FB_NOCOUNT),
    request_maxcount: Some(65535),
    missing_anchor_errno: libc::EINVAL,
    // netpfil/pf/pf.h: enum { PF_LIMIT_STATES, PF_LIMIT_SRC_NODES,
    // PF_LIMIT_FRAGS, PF_LIMIT_TABLE_ENTRIES, ... }.
    limit_table_entries: 3,
    // netpfil/pf/pf.h: PF_LIMIT_SRC_NODES is 1; struct pf_src_node (the
    // exported copy DIOCGETSRCNODES counts in, not pf_ksrc_node) is 136
    // bytes on LP64 (15.0 headers; the 13/14-era struct, without 15's
    // `naf` byte, ends at 130 instead of 131 and pads to the same 136).
    limit_src_nodes: 1,
    src_node_size: 136,
    psn_len_size: 4,
};

/// The last pf netlink command (`PFNL_CMD_MAX`, netpfil/pf/pf_nl.h) of the
/// newest FreeBSD headers read (15.0's): 33, `PFNL_CMD_TABLE_DEL_ADDR`.
/// None of commands 26 to 33 lists a table's entries with their time
/// stamps or clears them (DIOCRGETASTATS, DIOCRCLRASTATS), which `show`,
/// expiry and renewal need, so pfknock keeps the ioctls on FreeBSD
/// (docs/pf-kernel.md, "FreeBSD's netlink"). tests/abi-headers.sh fails
/// when newer headers add commands, so that the choice is made again.
pub const PFNL_CMD_MAX_READ: u32 = 33;
