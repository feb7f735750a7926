//! OpenBSD (amd64, arm64): `sys/net/pfvar.h` rev 1.548 (the header `tests/abi-headers.sh`
//! checks against).
#![forbid(unsafe_code)]
#![allow(non_camel_case_types)]

use core::mem::{align_of, offset_of, size_of};

use super::{Layout, pfioc_table, pfr_table};

#[repr(C)]
pub struct pfr_addr {
    pub pfra_u: [u32; 4],
    /// IFNAMSIZ
    pub pfra_ifname: [u8; 16],
    pub pfra_states: u32,
    pub pfra_weight: u16,
    pub pfra_af: u8,
    pub pfra_net: u8,
    pub pfra_not: u8,
    pub pfra_fback: u8,
    /// PFRKE_PLAIN, PFRKE_ROUTE, PFRKE_COST
    pub pfra_type: u8,
    pub pad: [u8; 7],
}

/// PFR_OP_ADDR_MAX = 3 (BLOCK, MATCH, PASS).
#[repr(C)]
pub struct pfr_astats {
    pub pfras_a: pfr_addr,
    pub pfras_packets: [[u64; 3]; 2],
    pub pfras_bytes: [[u64; 3]; 2],
    pub pfras_tzero: i64,
}

/// PFR_OP_TABLE_MAX = 4 (BLOCK, MATCH, PASS, XPASS).
#[repr(C)]
pub struct pfr_tstats {
    pub pfrts_t: pfr_table,
    pub pfrts_packets: [[u64; 4]; 2],
    pub pfrts_bytes: [[u64; 4]; 2],
    pub pfrts_match: u64,
    pub pfrts_nomatch: u64,
    pub pfrts_tzero: i64,
    pub pfrts_cnt: i32,
    pub pfrts_refcnt: [i32; 2],
}

// docs/pf-kernel.md "Structures", OpenBSD LP64.
const _: () = {
    assert!(size_of::<pfr_addr>() == 52 && align_of::<pfr_addr>() == 4);
    assert!(offset_of!(pfr_addr, pfra_ifname) == 16);
    assert!(offset_of!(pfr_addr, pfra_states) == 32);
    assert!(offset_of!(pfr_addr, pfra_weight) == 36);
    assert!(offset_of!(pfr_addr, pfra_af) == 38);
    assert!(offset_of!(pfr_addr, pfra_net) == 39);
    assert!(offset_of!(pfr_addr, pfra_not) == 40);
    assert!(offset_of!(pfr_addr, pfra_fback) == 41);
    assert!(offset_of!(pfr_addr, pfra_type) == 42);
    assert!(offset_of!(pfr_addr, pad) == 43);

    assert!(size_of::<pfr_astats>() == 160 && align_of::<pfr_astats>() == 8);
    assert!(offset_of!(pfr_astats, pfras_packets) == 56);
    assert!(offset_of!(pfr_astats, pfras_bytes) == 104);
    assert!(offset_of!(pfr_astats, pfras_tzero) == 152);

    assert!(size_of::<pfr_tstats>() == 1232 && align_of::<pfr_tstats>() == 8);
    assert!(offset_of!(pfr_tstats, pfrts_packets) == 1064);
    assert!(offset_of!(pfr_tstats, pfrts_bytes) == 1128);
    assert!(offset_of!(pfr_tstats, pfrts_match) == 1192);
    assert!(offset_of!(pfr_tstats, pfrts_nomatch) == 1200);
    assert!(offset_of!(pfr_tstats, pfrts_tzero) == 1208);
    assert!(offset_of!(pfr_tstats, pfrts_cnt) == 1216);
    assert!(offset_of!(pfr_tstats, pfrts_refcnt) == 1220);
};

pub const LAYOUT: Layout = layout! {
    os: "OpenBSD",
    af_inet6: 24,
    a_type: Some(offset_of!(pfr_addr, pfra_type)),
    op_addr_max: 3,
    op_pass: 2,
    tzero_unsigned: false,
    op_table_max: 4,
    tflag_counters: Some(super::PFR_TFLAG_COUNTERS),
    tflag_usrmask: 0x43,
    fb_nocount: Some(super::PFR_FB_NOCOUNT),
    request_maxcount: None,
    missing_anchor_errno: libc::ENOENT,
    // net/pfvar.h: enum { PF_LIMIT_STATES, PF_LIMIT_SRC_NODES,
    // PF_LIMIT_FRAGS, PF_LIMIT_TABLES, PF_LIMIT_TABLE_ENTRIES, ... }.
    limit_table_entries: 4,
    // net/pfvar.h: PF_LIMIT_SRC_NODES is 1; struct pf_src_node is 152
    // bytes on LP64.
    limit_src_nodes: 1,
    src_node_size: 152,
    psn_len_size: 8,
};
