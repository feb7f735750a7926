//! macOS (x86_64; arm64 taken to be the same, every field being naturally
//! aligned): xnu `bsd/net/pfvar.h`. No COUNTERS table flag, no NOCOUNT.
#![forbid(unsafe_code)]
#![allow(non_camel_case_types)]

use core::mem::{align_of, offset_of, size_of};

use super::{Layout, pfioc_table, pfr_table};

#[repr(C)]
pub struct pfr_addr {
    pub pfra_u: [u32; 4],
    pub pfra_af: u8,
    pub pfra_net: u8,
    pub pfra_not: u8,
    pub pfra_fback: u8,
}

#[repr(C)]
pub struct pfr_astats {
    pub pfras_a: pfr_addr,
    pub pfras_packets: [[u64; 2]; 2],
    pub pfras_bytes: [[u64; 2]; 2],
    /// declared u_int64_t in xnu
    pub pfras_tzero: u64,
}

#[repr(C)]
pub struct pfr_tstats {
    pub pfrts_t: pfr_table,
    pub pfrts_packets: [[u64; 3]; 2],
    pub pfrts_bytes: [[u64; 3]; 2],
    pub pfrts_match: u64,
    pub pfrts_nomatch: u64,
    pub pfrts_tzero: u64,
    pub pfrts_cnt: i32,
    pub pfrts_refcnt: [i32; 2],
}

// docs/pf-kernel.md "Structures", macOS (xnu bsd/net/pfvar.h).
const _: () = {
    assert!(size_of::<pfr_addr>() == 20 && align_of::<pfr_addr>() == 4);
    assert!(offset_of!(pfr_addr, pfra_af) == 16);
    assert!(offset_of!(pfr_addr, pfra_fback) == 19);
    assert!(size_of::<pfr_astats>() == 96);
    assert!(offset_of!(pfr_astats, pfras_packets) == 24);
    assert!(offset_of!(pfr_astats, pfras_bytes) == 56);
    assert!(offset_of!(pfr_astats, pfras_tzero) == 88);
    assert!(size_of::<pfr_tstats>() == 1200);
    assert!(offset_of!(pfr_tstats, pfrts_tzero) == 1176);
    assert!(offset_of!(pfr_tstats, pfrts_cnt) == 1184);
    assert!(offset_of!(pfr_tstats, pfrts_refcnt) == 1188);
};

pub const LAYOUT: Layout = layout! {
    os: "macOS",
    af_inet6: 30,
    a_type: None,
    op_addr_max: 2,
    op_pass: 1,
    tzero_unsigned: true,
    op_table_max: 3,
    tflag_counters: None,
    tflag_usrmask: 0x03,
    fb_nocount: None,
    request_maxcount: None,
    missing_anchor_errno: libc::ENOENT,
    // xnu bsd/net/pfvar.h: enum { PF_LIMIT_STATES, PF_LIMIT_APP_STATES,
    // PF_LIMIT_SRC_NODES, PF_LIMIT_FRAGS, PF_LIMIT_TABLES,
    // PF_LIMIT_TABLE_ENTRIES, PF_LIMIT_MAX }.
    limit_table_entries: 5,
    // xnu bsd/net/pfvar.h: PF_LIMIT_SRC_NODES is 2; struct pf_src_node
    // (RB_ENTRY of three pointers, two pf_addr, rule union, kif, bytes[2],
    // packets[2], states, conn, pf_threshold, u64 creation and expire, af,
    // ruletype) is 152 bytes on LP64.
    limit_src_nodes: 2,
    src_node_size: 152,
    psn_len_size: 4,
};
