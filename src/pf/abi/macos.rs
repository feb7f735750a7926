//! macOS (x86_64; arm64 taken to be the same, every field being naturally
//! aligned): xnu `bsd/net/pfvar.h`. No COUNTERS table flag, no NOCOUNT.
#![forbid(unsafe_code)]
#![allow(non_camel_case_types)]

use core::mem::{align_of, offset_of, size_of};

use super::{ANCHOR_SIZE, Layout, TABLE_NAME_SIZE};

#[repr(C)]
pub struct pfr_table {
    pub pfrt_anchor: [u8; ANCHOR_SIZE],
    pub pfrt_name: [u8; TABLE_NAME_SIZE],
    pub pfrt_flags: u32,
    pub pfrt_fback: u8,
}

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

/// The kernel's `pfioc_table_64`; `pfioc_table_32` has the same layout.
#[repr(C)]
pub struct pfioc_table {
    pub pfrio_table: pfr_table,
    pub pfrio_buffer: u64,
    pub pfrio_esize: i32,
    pub pfrio_size: i32,
    pub pfrio_size2: i32,
    pub pfrio_nadd: i32,
    pub pfrio_ndel: i32,
    pub pfrio_nchange: i32,
    pub pfrio_flags: i32,
    pub pfrio_ticket: u32,
}

// pf-abi.md §2, column "macOS".
const _: () = {
    assert!(size_of::<pfr_table>() == 1064);
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
    assert!(size_of::<pfioc_table>() == 1104 && align_of::<pfioc_table>() == 8);
    assert!(offset_of!(pfioc_table, pfrio_buffer) == 1064);
    assert!(offset_of!(pfioc_table, pfrio_esize) == 1072);
    assert!(offset_of!(pfioc_table, pfrio_flags) == 1096);
    assert!(offset_of!(pfioc_table, pfrio_ticket) == 1100);
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
    flag_atomic: true,
    request_maxcount: None,
    clrastats_stamps_now: false,
    missing_anchor_errno: libc::ENOENT,
    zero_fills_short_buffer: false,
};
