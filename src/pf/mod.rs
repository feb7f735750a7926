//! pf's tables through /dev/pf: `PfTables` implements `Tables` over the
//! marshalling in `marshal`, which talks to a `Device`: the real /dev/pf
//! (`sys_bsd`) on FreeBSD, OpenBSD and macOS, or the kernel model in tests
//! (`model/`, a crate of its own).
#![deny(unsafe_code)]

pub mod abi;
pub mod marshal;

#[cfg(any(target_os = "freebsd", target_os = "openbsd", target_os = "macos"))]
#[allow(unsafe_code)]
mod sys_bsd;

use marshal::{Device, Pf};

use crate::error::Result;
use crate::name::{AnchorName, Net};
use crate::tables::{Entry, TableFlags, TableRef, TableStat, Tables};

#[cfg(any(target_os = "freebsd", target_os = "openbsd", target_os = "macos"))]
pub use sys_bsd::DevPf;

/// Where pf does not exist there is no device to hold.
#[cfg(not(any(target_os = "freebsd", target_os = "openbsd", target_os = "macos")))]
pub struct DevPf(std::convert::Infallible);

#[cfg(not(any(target_os = "freebsd", target_os = "openbsd", target_os = "macos")))]
impl Device for DevPf {
    fn ioctl(&mut self, _: u64, _: &mut [u8], _: &mut [u8]) -> Result<(), i32> {
        match self.0 {}
    }
}

/// Whether this OS has pf (and /dev/pf) at all.
pub const AVAILABLE: bool = cfg!(any(
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "macos"
));

/// Open /dev/pf, read-write when the command changes tables.
pub fn open(write: bool) -> Result<PfTables<DevPf>> {
    #[cfg(any(target_os = "freebsd", target_os = "openbsd", target_os = "macos"))]
    {
        let layout = abi::native().expect("a pf OS has a layout");
        let t = PfTables::new(DevPf::open(write, layout)?, layout);
        #[cfg(target_os = "freebsd")]
        let t = {
            let mut t = t;
            if let Some(n) = sys_bsd::request_maxcount() {
                t.pf.set_maxcount(n);
            }
            t
        };
        Ok(t)
    }
    #[cfg(not(any(target_os = "freebsd", target_os = "openbsd", target_os = "macos")))]
    {
        let _ = write;
        Err(crate::error::Error::Other(
            "pf is not available on this system".into(),
        ))
    }
}

/// `Tables` over pf's table ioctls.
pub struct PfTables<D> {
    pub pf: Pf<D>,
    /// Whether DIOCRCLRASTATS stamps the time (learnt on first renewal).
    clrastats_stamps_now: Option<bool>,
}

impl<D: Device> PfTables<D> {
    pub fn new(dev: D, layout: &'static abi::Layout) -> Self {
        PfTables {
            pf: Pf::new(dev, layout),
            clrastats_stamps_now: None,
        }
    }
}

impl<D: Device> Tables for PfTables<D> {
    fn entries(&mut self, t: &TableRef) -> Result<Vec<Entry>> {
        self.pf.get_astats(t)
    }

    fn table_stats(&mut self, anchor: &AnchorName) -> Result<Vec<TableStat>> {
        self.pf.get_tstats(anchor)
    }

    fn add(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize> {
        if addrs.is_empty() {
            return Ok(0);
        }
        self.pf.add_addrs(t, addrs).map(|(n, _)| n)
    }

    fn delete(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize> {
        if addrs.is_empty() {
            return Ok(0);
        }
        self.pf.del_addrs(t, addrs).map(|(n, _)| n)
    }

    /// DIOCRADDADDRS with feedback: one request for all.
    fn add_each(&mut self, t: &TableRef, addrs: &[Net]) -> Result<Vec<Net>> {
        if addrs.is_empty() {
            return Ok(Vec::new());
        }
        let (_, fb) = self.pf.add_addrs(t, addrs)?;
        Ok(with(fb, abi::PFR_FB_ADDED))
    }

    /// DIOCRDELADDRS with feedback: one request for all.
    fn delete_each(&mut self, t: &TableRef, addrs: &[Net]) -> Result<Vec<Net>> {
        if addrs.is_empty() {
            return Ok(Vec::new());
        }
        let (_, fb) = self.pf.del_addrs(t, addrs)?;
        Ok(with(fb, abi::PFR_FB_DELETED))
    }

    /// DIOCRCLRASTATS, then the stamps read back: OpenBSD stamps now, in
    /// place; FreeBSD (13.0 and every later copy read) and macOS stamp 0
    /// (the entry would look infinitely old), and those entries are
    /// deleted and added again (two requests, the addresses absent in
    /// between). What the kernel did is learnt on the first renewal and
    /// kept for the process (docs/pf-kernel.md, Time stamps).
    fn renew(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize> {
        if addrs.is_empty() {
            return Ok(0);
        }
        let stale: Vec<Net> = match self.clrastats_stamps_now {
            Some(false) => addrs.to_vec(),
            _ => {
                let (_, fb) = self.pf.clr_astats(t, addrs)?;
                let cleared: Vec<Net> = fb
                    .into_iter()
                    .filter(|(_, f)| *f == abi::PFR_FB_CLEARED)
                    .map(|(a, _)| a)
                    .collect();
                if cleared.is_empty() || self.clrastats_stamps_now == Some(true) {
                    return Ok(cleared.len());
                }
                let zero: Vec<Net> = self
                    .pf
                    .get_astats(t)?
                    .into_iter()
                    .filter(|e| e.tzero == 0 && cleared.contains(&e.net))
                    .map(|e| e.net)
                    .collect();
                self.clrastats_stamps_now = Some(zero.is_empty());
                if zero.is_empty() {
                    return Ok(cleared.len());
                }
                zero
            }
        };
        let (_, fb) = self.pf.del_addrs(t, &stale)?;
        let present: Vec<Net> = fb
            .into_iter()
            .filter(|(_, f)| *f == abi::PFR_FB_DELETED)
            .map(|(a, _)| a)
            .collect();
        if present.is_empty() {
            return Ok(0);
        }
        self.pf.add_addrs(t, &present).map(|(n, _)| n)
    }

    fn create(&mut self, tables: &[(TableRef, TableFlags)]) -> Result<usize> {
        if tables.is_empty() {
            return Ok(0);
        }
        self.pf.add_tables(tables)
    }

    /// pf entries carry no timer: the kernel stamps them now
    /// (docs/pf-kernel.md "Time stamps"), and the daemon, which expires
    /// them, keeps the age they had (`daemon`'s restore).
    fn add_timed(&mut self, t: &TableRef, entries: &[(Net, u64)]) -> Result<usize> {
        let nets: Vec<Net> = entries.iter().map(|(n, _)| *n).collect();
        self.add(t, &nets)
    }

    fn caps(&self) -> crate::tables::Caps {
        crate::tables::Caps::PF
    }

    /// pf tables have no size of their own (`set limit table-entries` is
    /// global).
    fn full_sets(&self) -> Vec<(String, u64)> {
        Vec::new()
    }

    /// The pool of table entries, and the source nodes where the kernel
    /// answers for them (a kernel that refuses DIOCGETSRCNODES still has
    /// its table entries watched).
    fn pools(&mut self) -> Result<Vec<crate::tables::PoolUse>> {
        use crate::tables::{Pool, PoolUse};
        let (used, limit) = self.pf.table_entries()?;
        let mut pools = vec![PoolUse {
            pool: Pool::TableEntries,
            used,
            limit,
        }];
        if let Ok((used, limit)) = self.pf.src_nodes() {
            pools.push(PoolUse {
                pool: Pool::SrcNodes,
                used,
                limit,
            });
        }
        Ok(pools)
    }

    /// The anchor's rules are pfctl's to read; a flushed anchor shows as
    /// missing tables instead.
    fn intact(&self, _cfg: &crate::config::Config) -> Option<bool> {
        None
    }
}

/// The addresses whose feedback is `f`.
fn with(fb: Vec<(Net, u8)>, f: u8) -> Vec<Net> {
    fb.into_iter()
        .filter(|(_, x)| *x == f)
        .map(|(a, _)| a)
        .collect()
}
