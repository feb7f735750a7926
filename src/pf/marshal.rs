//! Safe marshalling of the DIOCR* table requests, in the manner of pfctl's
//! `pfctl_radix.c`: build a `pfioc_table` header and an element buffer field
//! by field at the offsets of the OS's `Layout`, hand both to a `Device`, and
//! decode what comes back. Getters use the grow-and-retry size protocol;
//! address changes go in chunks that respect FreeBSD's
//! `net.pf.request_maxcount`.
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::abi::{self, Layout};
use crate::error::{Error, Result};
use crate::name::{AnchorName, Net};
use crate::tables::{Entry, TableFlags, TableRef, TableStat};

/// Whatever carries a request to pf: /dev/pf on a BSD, the kernel model in
/// tests. `ioc` is a `pfioc_table` of `layout.ioc_size` bytes whose buffer
/// field the device points at `buf`. An error is the errno.
pub trait Device {
    fn ioctl(&mut self, request: u64, ioc: &mut [u8], buf: &mut [u8]) -> Result<(), i32>;
}

/// Attempts of the grow-and-retry loop before giving up on a table that
/// keeps growing faster than it can be read.
const GROW_TRIES: usize = 16;

/// Room offered on the first read, so that a knock table (a few hosts) and
/// an anchor's table list (a few tables) take one request each.
const ASTATS_HINT: usize = 64;
const TSTATS_HINT: usize = 16;

pub fn put_i32(b: &mut [u8], off: usize, v: i32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

pub fn get_i32(b: &[u8], off: usize) -> i32 {
    i32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

pub fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

pub fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// A NUL-terminated string field.
pub fn get_cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Table requests for one OS's layout over one device.
pub struct Pf<D> {
    pub dev: D,
    pub layout: &'static Layout,
    /// Most elements one request may carry.
    maxcount: usize,
}

impl<D: Device> Pf<D> {
    pub fn new(dev: D, layout: &'static Layout) -> Self {
        Pf {
            dev,
            layout,
            maxcount: layout.request_maxcount.unwrap_or(usize::MAX),
        }
    }

    /// Use another per-request cap (FreeBSD's sysctl, when raised).
    pub fn set_maxcount(&mut self, n: usize) {
        self.maxcount = n.max(1);
    }

    /// A `pfioc_table` header naming `table` in `anchor`.
    fn header(&self, anchor: &str, table: &str, esize: usize, size: usize, flags: i32) -> Vec<u8> {
        let l = self.layout;
        let mut h = vec![0u8; l.ioc_size];
        let t = l.io_table;
        h[t + l.t_anchor..t + l.t_anchor + anchor.len()].copy_from_slice(anchor.as_bytes());
        h[t + l.t_name..t + l.t_name + table.len()].copy_from_slice(table.as_bytes());
        put_i32(&mut h, l.io_esize, esize as i32);
        put_i32(&mut h, l.io_size, size as i32);
        put_i32(&mut h, l.io_flags, flags);
        h
    }

    fn call(
        &mut self,
        n: u8,
        anchor: &str,
        table: &str,
        h: &mut [u8],
        buf: &mut [u8],
    ) -> Result<()> {
        let req = self.layout.request(n);
        self.dev
            .ioctl(req, h, buf)
            .map_err(|errno| Error::table(table, anchor, abi::request_name(n), errno))
    }

    fn encode_addr(&self, b: &mut [u8], n: &Net) {
        let l = self.layout;
        match n.addr() {
            IpAddr::V4(a) => {
                b[l.a_addr..l.a_addr + 4].copy_from_slice(&a.octets());
                b[l.a_af] = abi::AF_INET;
            }
            IpAddr::V6(a) => {
                b[l.a_addr..l.a_addr + 16].copy_from_slice(&a.octets());
                b[l.a_af] = l.af_inet6;
            }
        }
        b[l.a_net] = n.prefix();
    }

    /// An address element as the kernel wrote it; `None` for a family pf
    /// should never report.
    fn decode_addr(&self, b: &[u8]) -> Option<Net> {
        let l = self.layout;
        let addr = if b[l.a_af] == abi::AF_INET {
            let o: [u8; 4] = b[l.a_addr..l.a_addr + 4].try_into().ok()?;
            IpAddr::V4(Ipv4Addr::from(o))
        } else if b[l.a_af] == l.af_inet6 {
            let o: [u8; 16] = b[l.a_addr..l.a_addr + 16].try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(o))
        } else {
            return None;
        };
        // A prefix longer than the family's, or host bits set, is no
        // network: the entry is left out rather than trusted.
        Net::new(addr, b[l.a_net])
    }

    fn too_many(&self, t: &str, anchor: &str, n: usize) -> Error {
        Error::Other(format!(
            "table <{t}>{}: {n} entries, more than one request may carry \
             (net.pf.request_maxcount is {}): raise it with net.pf.request_maxcount=\"{n}\" \
             in /boot/loader.conf and a reboot (a loader tunable, read-only at run time)",
            if anchor.is_empty() {
                String::new()
            } else {
                format!(" in anchor {anchor}")
            },
            self.maxcount
        ))
    }

    /// Run a getter with the size protocol: offer room for `hint`
    /// elements, and while the kernel answers that it needs more (rc 0,
    /// size = needed, nothing copied), grow the buffer and ask again.
    fn get_sized(
        &mut self,
        n: u8,
        anchor: &str,
        table: &str,
        esize: usize,
        hint: usize,
        flags: i32,
    ) -> Result<(Vec<u8>, usize)> {
        // FreeBSD caps GETASTATS by net.pf.request_maxcount, not GETTSTATS
        // (docs/pf-kernel.md "Request cap").
        let most = if n == abi::N_GETTSTATS {
            usize::MAX
        } else {
            self.maxcount
        };
        let mut cap = hint.min(most);
        let mut buf: Vec<u8> = Vec::new();
        for _ in 0..GROW_TRIES {
            buf.clear();
            buf.resize(cap * esize, 0);
            let mut h = self.header(anchor, table, esize, cap, flags);
            self.call(n, anchor, table, &mut h, &mut buf)?;
            let got = get_i32(&h, self.layout.io_size);
            let Ok(got) = usize::try_from(got) else {
                return Err(Error::Other(format!(
                    "table <{table}>: kernel returned size {got}"
                )));
            };
            if got <= cap {
                buf.truncate(got * esize);
                return Ok((buf, got));
            }
            if got > most {
                return Err(self.too_many(table, anchor, got));
            }
            // Some slack for entries that arrive between two calls.
            cap = (got + got / 16 + 16).min(most);
        }
        Err(Error::Other(format!(
            "table <{table}>: it keeps growing faster than it can be read"
        )))
    }

    /// DIOCRGETASTATS: every entry with its time stamp and counters.
    pub fn get_astats(&mut self, t: &TableRef) -> Result<Vec<Entry>> {
        let l = self.layout;
        let (buf, n) = self.get_sized(
            abi::N_GETASTATS,
            t.anchor.as_str(),
            t.name.as_str(),
            l.astats_size,
            ASTATS_HINT,
            0,
        )?;
        let mut out = Vec::with_capacity(n);
        for e in buf.chunks_exact(l.astats_size) {
            let Some(net) = self.decode_addr(&e[..l.addr_size]) else {
                continue;
            };
            let counted = l.fb_nocount.is_none_or(|nc| e[l.a_fback] != nc);
            let sum = |off: usize| -> u64 {
                (0..2 * l.op_addr_max)
                    .map(|i| get_u64(e, off + 8 * i))
                    .fold(0u64, u64::wrapping_add)
            };
            let raw = get_u64(e, l.as_tzero);
            let tzero = if l.tzero_unsigned {
                raw.min(i64::MAX as u64) as i64
            } else {
                raw as i64
            };
            out.push(Entry {
                net,
                tzero,
                packets: sum(l.as_packets),
                bytes: sum(l.as_bytes),
                counted,
            });
        }
        Ok(out)
    }

    /// Send `addrs` with request `n` in chunks; returns the summed count
    /// the kernel reports at `count_off` and each address's feedback, in
    /// the order of `addrs` with repeats left out (they are sent once).
    /// Feedback is matched by the address the kernel wrote back, not by
    /// position: OpenBSD's pfr_add_addrs returns it in reverse order
    /// (docs/pf-kernel.md "Feedback").
    fn addr_op(
        &mut self,
        n: u8,
        t: &TableRef,
        addrs: &[Net],
        count_off: usize,
    ) -> Result<(usize, Vec<(Net, u8)>)> {
        let l = self.layout;
        let mut seen = std::collections::HashSet::with_capacity(addrs.len());
        let unique: Vec<Net> = addrs.iter().copied().filter(|a| seen.insert(*a)).collect();
        let mut total = 0usize;
        let mut fback = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(self.maxcount) {
            let mut buf = vec![0u8; chunk.len() * l.addr_size];
            for (b, a) in buf.chunks_exact_mut(l.addr_size).zip(chunk) {
                self.encode_addr(b, a);
            }
            let mut h = self.header(
                t.anchor.as_str(),
                t.name.as_str(),
                l.addr_size,
                chunk.len(),
                abi::PFR_FLAG_FEEDBACK,
            );
            self.call(n, t.anchor.as_str(), t.name.as_str(), &mut h, &mut buf)?;
            total += get_i32(&h, count_off).max(0) as usize;
            let mut back: std::collections::HashMap<Net, u8> = buf
                .chunks_exact(l.addr_size)
                .filter_map(|b| self.decode_addr(b).map(|a| (a, b[l.a_fback])))
                .collect();
            for a in chunk {
                // An address the kernel did not write back has no verdict.
                fback.push((*a, back.remove(a).unwrap_or(abi::PFR_FB_NONE)));
            }
        }
        Ok((total, fback))
    }

    /// DIOCRADDADDRS: returns the number added and per-address feedback
    /// (ADDED, NONE when present, CONFLICT).
    pub fn add_addrs(&mut self, t: &TableRef, addrs: &[Net]) -> Result<(usize, Vec<(Net, u8)>)> {
        let off = self.layout.io_nadd;
        self.addr_op(abi::N_ADDADDRS, t, addrs, off)
    }

    /// DIOCRDELADDRS, in chunks: returns the number deleted and feedback.
    pub fn del_addrs(&mut self, t: &TableRef, addrs: &[Net]) -> Result<(usize, Vec<(Net, u8)>)> {
        let off = self.layout.io_ndel;
        self.addr_op(abi::N_DELADDRS, t, addrs, off)
    }

    /// DIOCRCLRASTATS: zero the entries' counters. The time stamp becomes
    /// now on OpenBSD and FreeBSD 14, but 0 on FreeBSD 13 and macOS: see
    /// `PfTables::renew`.
    pub fn clr_astats(&mut self, t: &TableRef, addrs: &[Net]) -> Result<(usize, Vec<(Net, u8)>)> {
        let off = self.layout.io_nadd; // nzero aliases nadd
        self.addr_op(abi::N_CLRASTATS, t, addrs, off)
    }

    /// One of pf's `set limit`s (DIOCGETLIMIT), by its `PF_LIMIT_*` index.
    fn limit(&mut self, index: i32) -> Result<u64> {
        let mut lim = [0u8; 8];
        lim[..4].copy_from_slice(&index.to_ne_bytes());
        self.dev
            .ioctl(self.layout.limit_request(), &mut lim, &mut [])
            .map_err(|errno| Error::table("", "", "DIOCGETLIMIT", errno))?;
        Ok(u64::from(u32::from_ne_bytes([
            lim[4], lim[5], lim[6], lim[7],
        ])))
    }

    /// pf's `set limit table-entries` (DIOCGETLIMIT), and how many entries
    /// all active tables of every anchor hold now (DIOCRGETTSTATS with
    /// PFR_FLAG_ALLRSETS): pf keeps one pool of table entries for them all,
    /// and a knock's insert past its limit fails without a word (pf.c's
    /// overload ignores pfr_insert_kentry's error).
    pub fn table_entries(&mut self) -> Result<(u64, u64)> {
        let l = self.layout;
        let limit = self.limit(l.limit_table_entries)?;
        let (buf, _) = self.get_sized(
            abi::N_GETTSTATS,
            "",
            "",
            l.tstats_size,
            TSTATS_HINT,
            abi::PFR_FLAG_ALLRSETS,
        )?;
        let used = buf
            .chunks_exact(l.tstats_size)
            .filter(|e| get_u32(e, l.t_flags) & abi::PFR_TFLAG_ACTIVE != 0)
            .map(|e| get_i32(e, l.ts_cnt).max(0) as u64)
            .sum();
        Ok((used, limit))
    }

    /// pf's `set limit src-nodes` (DIOCGETLIMIT), and how many source nodes
    /// pf holds (DIOCGETSRCNODES asked for its length only: that many
    /// `struct pf_src_node`). `max-src-conn-rate` needs one per source and
    /// rule; at the limit pf creates no state for a new source, so its
    /// knock is dropped.
    pub fn src_nodes(&mut self) -> Result<(u64, u64)> {
        let l = self.layout;
        let limit = self.limit(l.limit_src_nodes)?;
        let mut psn = [0u8; 16];
        self.dev
            .ioctl(l.src_nodes_request(), &mut psn, &mut [])
            .map_err(|errno| Error::table("", "", "DIOCGETSRCNODES", errno))?;
        let len = match l.psn_len_size {
            8 => u64::from_ne_bytes(psn[..8].try_into().expect("8 bytes")),
            _ => u64::try_from(get_i32(&psn, 0)).unwrap_or(0),
        };
        Ok((len / l.src_node_size as u64, limit))
    }

    /// DIOCRGETTSTATS for the tables of one anchor.
    pub fn get_tstats(&mut self, anchor: &AnchorName) -> Result<Vec<TableStat>> {
        let l = self.layout;
        let (buf, _) = self
            .get_sized(
                abi::N_GETTSTATS,
                anchor.as_str(),
                "",
                l.tstats_size,
                TSTATS_HINT,
                0,
            )
            .map_err(|e| match e {
                // FreeBSD's ioctl layer says EINVAL where pf_table.c says
                // ENOENT: the filter anchor does not exist.
                Error::Table {
                    table,
                    anchor,
                    op,
                    errno,
                    ..
                } if errno == l.missing_anchor_errno => Error::Table {
                    table,
                    anchor,
                    op,
                    outcome: crate::error::Outcome::MissingAnchor,
                    errno: libc::ENOENT,
                },
                e => e,
            })?;
        Ok(buf
            .chunks_exact(l.tstats_size)
            .map(|e| TableStat {
                name: get_cstr(&e[l.t_name..l.t_name + abi::TABLE_NAME_SIZE]),
                anchor: get_cstr(&e[l.t_anchor..l.t_anchor + abi::ANCHOR_SIZE]),
                active: get_u32(e, l.t_flags) & abi::PFR_TFLAG_ACTIVE != 0,
                counters: l.tflag_counters.map(|c| get_u32(e, l.t_flags) & c != 0),
                count: get_i32(e, l.ts_cnt).max(0) as u64,
                packets: (0..2 * l.op_table_max)
                    .map(|i| get_u64(e, l.ts_packets + 8 * i))
                    .fold(0u64, u64::wrapping_add),
                tzero: get_u64(e, l.ts_tzero) as i64,
            })
            .collect())
    }

    /// DIOCRADDTABLES: create tables (and their anchors).
    pub fn add_tables(&mut self, tables: &[(TableRef, TableFlags)]) -> Result<usize> {
        let l = self.layout;
        let mut buf = vec![0u8; tables.len() * l.table_size];
        for (b, (t, f)) in buf.chunks_exact_mut(l.table_size).zip(tables) {
            b[l.t_anchor..l.t_anchor + t.anchor.as_str().len()]
                .copy_from_slice(t.anchor.as_str().as_bytes());
            b[l.t_name..l.t_name + t.name.as_str().len()]
                .copy_from_slice(t.name.as_str().as_bytes());
            let mut flags = 0;
            if f.persist {
                flags |= abi::PFR_TFLAG_PERSIST;
            }
            if f.counters {
                flags |= l.tflag_counters.unwrap_or(0);
            }
            put_u32(b, l.t_flags, flags);
        }
        let first = tables.first().map(|(t, _)| t);
        let (anchor, name) = first.map_or(("", ""), |t| (t.anchor.as_str(), t.name.as_str()));
        let mut h = self.header("", "", l.table_size, tables.len(), 0);
        self.call(abi::N_ADDTABLES, anchor, name, &mut h, &mut buf)?;
        Ok(get_i32(&h, l.io_nadd).max(0) as usize)
    }
}
