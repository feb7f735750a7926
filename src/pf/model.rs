//! A model of pf's table ioctls, for tests on machines without pf.
//!
//! It implements `Device` by decoding the same bytes the kernel would, at
//! the offsets of the chosen OS's `Layout`, and applies the rules pf-abi.md
//! sets out from the FreeBSD, OpenBSD and xnu sources: request numbers,
//! esize (ENODEV), admitted flags (EINVAL), table and address validation,
//! ESRCH/ENOENT, FreeBSD's `request_maxcount` cap, the getters' size
//! protocol (too small: rc 0, size = needed, nothing copied, FreeBSD zero
//! fills), FEEDBACK, DUMMY, time stamps at insert, CLRASTATS stamping 0 or
//! now, and per-entry counters only for `counters` tables. Only what pfknock
//! sends is modelled; other requests answer ENOTTY.
//!
//! It shares nothing with `marshal` but the `Layout` (itself pinned by const
//! assertions), so a marshalling bug is not mirrored here.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::abi::{self, Layout};
use super::marshal::{Device, get_cstr, get_i32, get_u32, put_i32, put_u32};

type Key = (u8, [u8; 16], u8);

#[derive(Clone, Debug, Default)]
struct KEntry {
    not: bool,
    tzero: i64,
    packets: [[u64; 3]; 2],
    bytes: [[u64; 3]; 2],
}

#[derive(Clone, Debug, Default)]
struct KTable {
    flags: u32,
    entries: BTreeMap<Key, KEntry>,
    /// pfrkt_packets[dir][op], summed: every match moves it.
    packets: u64,
}

/// The kernel's tables for one OS.
pub struct Model {
    pub layout: &'static Layout,
    /// Wall-clock seconds, as `time_second` / `gettime()`.
    pub now: i64,
    /// FreeBSD's `net.pf.request_maxcount`.
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
}

fn table_key(anchor: &str, name: &str) -> (String, String) {
    (anchor.trim_start_matches('/').to_owned(), name.to_owned())
}

impl Model {
    pub fn new(layout: &'static Layout, now: i64) -> Self {
        Model {
            layout,
            now,
            maxcount: layout.request_maxcount.unwrap_or(usize::MAX),
            tables: BTreeMap::new(),
            anchors: BTreeSet::new(),
            calls: BTreeMap::new(),
            fail_next: None,
            fail_always: None,
            grow_on_short_read: 0,
            grown: 0,
            touched: BTreeSet::new(),
        }
    }

    fn counters_flag(&self) -> u32 {
        self.layout.tflag_counters.unwrap_or(0)
    }

    /// Define an active table, as loading a ruleset with `table <t> persist`
    /// does; `counters` where the OS has the flag.
    pub fn define(&mut self, anchor: &str, name: &str, counters: bool) {
        let mut flags = abi::PFR_TFLAG_ACTIVE | abi::PFR_TFLAG_PERSIST;
        if counters {
            flags |= self.counters_flag();
        }
        self.anchors.insert(anchor.to_owned());
        self.tables
            .entry(table_key(anchor, name))
            .or_default()
            .flags = flags;
    }

    /// Define a const table with entries, as `table <t> const { ... }` does.
    pub fn define_const(&mut self, anchor: &str, name: &str, addrs: &[IpAddr]) {
        self.define(anchor, name, false);
        let now = self.now;
        let t = self
            .tables
            .get_mut(&table_key(anchor, name))
            .expect("defined");
        t.flags |= abi::PFR_TFLAG_CONST;
        for a in addrs {
            t.entries.insert(
                host_key(self.layout, *a),
                KEntry {
                    tzero: now,
                    ..Default::default()
                },
            );
        }
    }

    /// Remove an anchor and its tables (FreeBSD's rc.d/pf `pfctl -F all`).
    pub fn flush_anchor(&mut self, anchor: &str) {
        self.anchors.remove(anchor);
        self.tables.retain(|(a, _), _| a != anchor);
    }

    /// pf's overload: insert the host with tzero = now, leaving an existing
    /// entry (and its time stamp) alone. The table must exist.
    pub fn overload(&mut self, anchor: &str, name: &str, a: IpAddr) -> bool {
        let now = self.now;
        let key = host_key(self.layout, a);
        match self.tables.get_mut(&table_key(anchor, name)) {
            Some(t) if !t.entries.contains_key(&key) => {
                t.entries.insert(
                    key,
                    KEntry {
                        tzero: now,
                        ..Default::default()
                    },
                );
                true
            }
            _ => false,
        }
    }

    /// A packet from `a` passed by a rule on the table: per-entry counters
    /// move only where the table keeps them (always on macOS).
    pub fn traffic(&mut self, anchor: &str, name: &str, a: IpAddr, packets: u64, bytes: u64) {
        let keeps = self.layout.tflag_counters.is_none();
        let (cf, pass) = (self.counters_flag(), self.layout.op_pass);
        if let Some(t) = self.tables.get_mut(&table_key(anchor, name)) {
            t.packets += packets;
            let counted = keeps || t.flags & cf != 0;
            if let Some(e) = t.entries.get_mut(&host_key(self.layout, a))
                && counted
            {
                e.packets[0][pass] += packets;
                e.bytes[0][pass] += bytes;
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
        let l = self.layout;
        let t = self
            .tables
            .get_mut(&table_key(anchor, name))
            .expect("defined");
        for (i, a) in addrs.enumerate() {
            t.entries.insert(
                host_key(l, a),
                KEntry {
                    tzero: tzero(i),
                    ..Default::default()
                },
            );
        }
    }

    /// The table's entries as (address, tzero), for assertions.
    pub fn dump(&self, anchor: &str, name: &str) -> Option<Vec<(IpAddr, u8, i64)>> {
        let t = self.tables.get(&table_key(anchor, name))?;
        Some(
            t.entries
                .iter()
                .map(|((af, a, net), e)| (key_ip(self.layout, *af, a), *net, e.tzero))
                .collect(),
        )
    }

    /// Flip an entry's negation (`!addr`), as a hand-written table may hold.
    pub fn negate(&mut self, anchor: &str, name: &str, a: IpAddr) {
        let key = host_key(self.layout, a);
        if let Some(e) = self
            .tables
            .get_mut(&table_key(anchor, name))
            .and_then(|t| t.entries.get_mut(&key))
        {
            e.not = !e.not;
        }
    }

    pub fn has_table(&self, anchor: &str, name: &str) -> bool {
        self.tables.contains_key(&table_key(anchor, name))
    }

    pub fn table_flags(&self, anchor: &str, name: &str) -> Option<u32> {
        self.tables.get(&table_key(anchor, name)).map(|t| t.flags)
    }

    pub fn count(&self, n: u8) -> usize {
        self.calls.get(&n).copied().unwrap_or(0)
    }

    // ---- decoding, with the kernel's checks ---------------------------------

    /// `pfr_validate_table` + `pfr_fix_anchor`: (anchor, name) or EINVAL.
    fn read_table(
        &self,
        b: &[u8],
        allow_flags: u32,
        need_name: bool,
    ) -> Result<(String, String, u32), i32> {
        let l = self.layout;
        let name_f = &b[l.t_name..l.t_name + abi::TABLE_NAME_SIZE];
        let name = get_cstr(name_f);
        if need_name && name.is_empty() {
            return Err(libc::EINVAL);
        }
        if name_f[name.len()..].iter().any(|&c| c != 0) {
            return Err(libc::EINVAL);
        }
        let anchor_f = &b[l.t_anchor..l.t_anchor + abi::ANCHOR_SIZE];
        let raw = get_cstr(anchor_f);
        if anchor_f[raw.len()..].iter().any(|&c| c != 0) {
            return Err(libc::EINVAL);
        }
        let anchor = raw.trim_start_matches('/').to_owned();
        if anchor == "_pf" {
            return Err(libc::EINVAL);
        }
        let flags = get_u32(b, l.t_flags);
        if flags & !allow_flags != 0 {
            return Err(libc::EINVAL);
        }
        Ok((anchor, name, flags))
    }

    /// `pfr_validate_addr`: the key and negation, or EINVAL.
    fn read_addr(&self, b: &[u8]) -> Result<(Key, bool), i32> {
        let l = self.layout;
        let af = b[l.a_af];
        let net = b[l.a_net];
        let max = if af == abi::AF_INET {
            32
        } else if af == l.af_inet6 {
            128
        } else {
            return Err(libc::EINVAL);
        };
        if net > max {
            return Err(libc::EINVAL);
        }
        let addr: [u8; 16] = b[l.a_addr..l.a_addr + 16].try_into().expect("16");
        // No bit set past the prefix, in the whole 16-byte union.
        for (i, &byte) in addr.iter().enumerate() {
            let keep = (net as usize).saturating_sub(i * 8).min(8);
            let mask = if keep == 8 { 0xFF } else { !(0xFFu8 >> keep) };
            if byte & !mask != 0 {
                return Err(libc::EINVAL);
            }
        }
        if b[l.a_not] > 1 || b[l.a_fback] != 0 {
            return Err(libc::EINVAL);
        }
        if let Some(t) = l.a_type
            && b[t] >= 3
        {
            return Err(libc::EINVAL);
        }
        Ok(((af, addr, net), b[l.a_not] == 1))
    }

    fn check_flags(&self, flags: i32, accepted: i32) -> Result<(), i32> {
        let mut ok = accepted;
        if self.layout.flag_atomic {
            ok |= abi::PFR_FLAG_ATOMIC;
        }
        if flags & abi::PFR_FLAG_ALLMASK & !ok != 0 {
            return Err(libc::EINVAL);
        }
        Ok(())
    }

    fn active_table(&mut self, anchor: &str, name: &str) -> Result<&mut KTable, i32> {
        match self.tables.get_mut(&table_key(anchor, name)) {
            Some(t) if t.flags & abi::PFR_TFLAG_ACTIVE != 0 => Ok(t),
            _ => Err(libc::ESRCH),
        }
    }

    fn get_astats(
        &mut self,
        ioc: &mut [u8],
        buf: &mut [u8],
        size: usize,
        flags: i32,
    ) -> Result<(), i32> {
        let l = self.layout;
        if l.request_maxcount.is_some() {
            // FreeBSD admits no flag here, CLSTATS explicitly refused.
            self.check_flags(flags, 0)?;
        }
        let (anchor, name, _) = self.read_table(&ioc[l.io_table..], 0, true)?;
        self.touched.insert((anchor.clone(), name.clone()));
        let (cf, nocount, keeps) = (
            self.counters_flag(),
            l.fb_nocount,
            l.tflag_counters.is_none(),
        );
        let stamp_now = flags & abi::PFR_FLAG_CLSTATS != 0;
        let now = self.now;
        let grow = self.grow_on_short_read;
        let base = self.grown;
        let t = self.active_table(&anchor, &name)?;
        let n = t.entries.len();
        if n > size {
            if l.zero_fills_short_buffer {
                buf[..size * l.astats_size].fill(0);
            }
            put_i32(ioc, l.io_size, n as i32);
            for i in 0..grow as u32 {
                let a = IpAddr::from(std::net::Ipv4Addr::from(
                    (0xC612_0000u32 | 0x8000) + base + i,
                )); // 198.18.128.0/17
                t.entries.insert(
                    host_key(l, a),
                    KEntry {
                        tzero: now,
                        ..Default::default()
                    },
                );
            }
            self.grown += grow as u32;
            return Ok(());
        }
        let counted = keeps || t.flags & cf != 0;
        for ((k, e), out) in t
            .entries
            .iter_mut()
            .zip(buf.chunks_exact_mut(l.astats_size))
        {
            out.fill(0);
            out[l.a_addr..l.a_addr + 16].copy_from_slice(&k.1);
            out[l.a_af] = k.0;
            out[l.a_net] = k.2;
            out[l.a_not] = e.not as u8;
            if counted {
                for dir in 0..2 {
                    for op in 0..l.op_addr_max {
                        let i = 8 * (dir * l.op_addr_max + op);
                        out[l.as_packets + i..l.as_packets + i + 8]
                            .copy_from_slice(&e.packets[dir][op].to_ne_bytes());
                        out[l.as_bytes + i..l.as_bytes + i + 8]
                            .copy_from_slice(&e.bytes[dir][op].to_ne_bytes());
                    }
                }
            } else {
                out[l.a_fback] = nocount.unwrap_or(abi::PFR_FB_NONE);
            }
            out[l.as_tzero..l.as_tzero + 8].copy_from_slice(&e.tzero.to_ne_bytes());
            if stamp_now && counted {
                // OpenBSD's read-and-clear.
                e.packets = Default::default();
                e.bytes = Default::default();
                e.tzero = now;
            }
        }
        put_i32(ioc, l.io_size, n as i32);
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
        let l = self.layout;
        self.check_flags(flags, abi::PFR_FLAG_DUMMY | abi::PFR_FLAG_FEEDBACK)?;
        let (anchor, name, _) = self.read_table(&ioc[l.io_table..], 0, true)?;
        self.touched.insert((anchor.clone(), name.clone()));
        let mut addrs = Vec::with_capacity(size);
        for b in buf.chunks_exact(l.addr_size).take(size) {
            addrs.push(self.read_addr(b)?);
        }
        let dummy = flags & abi::PFR_FLAG_DUMMY != 0;
        let (now, zero_now) = (self.now, l.clrastats_stamps_now);
        let t = self.active_table(&anchor, &name)?;
        if n != abi::N_CLRASTATS && t.flags & abi::PFR_TFLAG_CONST != 0 {
            return Err(libc::EPERM);
        }
        let mut seen: BTreeSet<Key> = BTreeSet::new();
        let mut fb = Vec::with_capacity(size);
        let mut count = 0;
        for (k, not) in &addrs {
            let p = t.entries.get(k);
            let f = match n {
                abi::N_ADDADDRS => {
                    if seen.contains(k) {
                        abi::PFR_FB_DUPLICATE
                    } else if let Some(p) = p {
                        if p.not != *not {
                            abi::PFR_FB_CONFLICT
                        } else {
                            abi::PFR_FB_NONE
                        }
                    } else {
                        count += 1;
                        abi::PFR_FB_ADDED
                    }
                }
                abi::N_DELADDRS => match p {
                    None => abi::PFR_FB_NONE,
                    Some(p) if p.not != *not => abi::PFR_FB_CONFLICT,
                    Some(_) if seen.contains(k) => abi::PFR_FB_DUPLICATE,
                    Some(_) => {
                        count += 1;
                        abi::PFR_FB_DELETED
                    }
                },
                _ => match p {
                    None => abi::PFR_FB_NONE,
                    Some(_) => {
                        count += 1;
                        abi::PFR_FB_CLEARED
                    }
                },
            };
            seen.insert(*k);
            fb.push(f);
        }
        if !dummy {
            for ((k, not), f) in addrs.iter().zip(&fb) {
                match (n, *f) {
                    (abi::N_ADDADDRS, abi::PFR_FB_ADDED) => {
                        t.entries.insert(
                            *k,
                            KEntry {
                                not: *not,
                                tzero: now,
                                ..Default::default()
                            },
                        );
                    }
                    (abi::N_DELADDRS, abi::PFR_FB_DELETED) => {
                        t.entries.remove(k);
                    }
                    (abi::N_CLRASTATS, abi::PFR_FB_CLEARED) => {
                        let e = t.entries.get_mut(k).expect("present");
                        e.packets = Default::default();
                        e.bytes = Default::default();
                        e.tzero = if zero_now { now } else { 0 };
                    }
                    _ => {}
                }
            }
        }
        if flags & abi::PFR_FLAG_FEEDBACK != 0 {
            for (b, f) in buf.chunks_exact_mut(l.addr_size).zip(&fb) {
                b[l.a_fback] = *f;
            }
        }
        let off = if n == abi::N_DELADDRS {
            l.io_ndel
        } else {
            l.io_nadd
        };
        put_i32(ioc, off, count);
        Ok(())
    }

    fn get_tstats(
        &mut self,
        ioc: &mut [u8],
        buf: &mut [u8],
        size: usize,
        flags: i32,
    ) -> Result<(), i32> {
        let l = self.layout;
        self.check_flags(flags, abi::PFR_FLAG_ALLRSETS)?;
        let (anchor, _, _) = self.read_table(&ioc[l.io_table..], 0, false)?;
        let all = flags & abi::PFR_FLAG_ALLRSETS != 0;
        if !all && !anchor.is_empty() && !self.anchors.contains(&anchor) {
            return Err(l.missing_anchor_errno);
        }
        let matching: Vec<(&(String, String), &KTable)> = self
            .tables
            .iter()
            .filter(|((a, _), _)| all || *a == anchor)
            .collect();
        let n = matching.len();
        // FreeBSD clamps the caller's size to the count first.
        let size = if l.request_maxcount.is_some() {
            size.min(n)
        } else {
            size
        };
        if n > size {
            put_i32(ioc, l.io_size, n as i32);
            return Ok(());
        }
        for (((a, name), t), out) in matching
            .into_iter()
            .zip(buf.chunks_exact_mut(l.tstats_size))
        {
            out.fill(0);
            out[l.t_anchor..l.t_anchor + a.len()].copy_from_slice(a.as_bytes());
            out[l.t_name..l.t_name + name.len()].copy_from_slice(name.as_bytes());
            put_u32(out, l.t_flags, t.flags);
            put_i32(out, l.ts_cnt, t.entries.len() as i32);
            out[l.ts_packets..l.ts_packets + 8].copy_from_slice(&t.packets.to_ne_bytes());
        }
        put_i32(ioc, l.io_size, n as i32);
        Ok(())
    }

    fn add_tables(
        &mut self,
        ioc: &mut [u8],
        buf: &mut [u8],
        size: usize,
        flags: i32,
    ) -> Result<(), i32> {
        let l = self.layout;
        self.check_flags(flags, abi::PFR_FLAG_DUMMY)?;
        let mut todo = Vec::new();
        for b in buf.chunks_exact(l.table_size).take(size) {
            todo.push(self.read_table(b, l.tflag_usrmask, true)?);
        }
        let mut nadd = 0;
        for (anchor, name, f) in todo {
            let exists = self
                .tables
                .get(&table_key(&anchor, &name))
                .is_some_and(|t| t.flags & abi::PFR_TFLAG_ACTIVE != 0);
            if exists {
                continue;
            }
            nadd += 1;
            if flags & abi::PFR_FLAG_DUMMY == 0 {
                if !anchor.is_empty() {
                    self.anchors.insert(anchor.clone());
                }
                self.tables
                    .entry(table_key(&anchor, &name))
                    .or_default()
                    .flags = f | abi::PFR_TFLAG_ACTIVE;
            }
        }
        put_i32(ioc, l.io_nadd, nadd);
        Ok(())
    }
}

fn host_key(l: &Layout, a: IpAddr) -> Key {
    let mut b = [0u8; 16];
    match a {
        IpAddr::V4(v) => {
            b[..4].copy_from_slice(&v.octets());
            (abi::AF_INET, b, 32)
        }
        IpAddr::V6(v) => (l.af_inet6, v.octets(), 128),
    }
}

fn key_ip(l: &Layout, af: u8, a: &[u8; 16]) -> IpAddr {
    if af == l.af_inet6 {
        IpAddr::from(*a)
    } else {
        IpAddr::from([a[0], a[1], a[2], a[3]])
    }
}

impl Device for Model {
    fn ioctl(&mut self, request: u64, ioc: &mut [u8], buf: &mut [u8]) -> Result<(), i32> {
        let l = self.layout;
        if ioc.len() != l.ioc_size {
            return Err(libc::EFAULT);
        }
        let n = (request & 0xFF) as u8;
        if request != l.request(n) {
            return Err(libc::ENOTTY);
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
        let esize = get_i32(ioc, l.io_esize);
        let size = get_i32(ioc, l.io_size);
        let flags = get_i32(ioc, l.io_flags);
        let want_esize = match n {
            abi::N_GETASTATS => l.astats_size,
            abi::N_ADDADDRS | abi::N_DELADDRS | abi::N_CLRASTATS => l.addr_size,
            abi::N_GETTSTATS => l.tstats_size,
            abi::N_ADDTABLES => l.table_size,
            _ => return Err(libc::ENOTTY),
        };
        if esize as usize != want_esize {
            return Err(libc::ENODEV);
        }
        if size < 0 || (l.request_maxcount.is_some() && size as usize > self.maxcount) {
            return Err(if n == abi::N_ADDTABLES {
                libc::ENOMEM
            } else {
                libc::EINVAL
            });
        }
        let size = size as usize;
        if buf.len() < size * want_esize {
            return Err(libc::EFAULT);
        }
        match n {
            abi::N_GETASTATS => self.get_astats(ioc, buf, size, flags),
            abi::N_GETTSTATS => self.get_tstats(ioc, buf, size, flags),
            abi::N_ADDTABLES => self.add_tables(ioc, buf, size, flags),
            _ => self.addr_request(n, ioc, buf, size, flags),
        }
    }
}
