//! list + decide + delete for 1k, 100k and 1M entries against the kernel
//! model: wall time, time spent inside the model, and the peak of
//! pfknock's own heap use (the model's allocations are not counted), next
//! to the size of the kernel's astats buffer for the same table.
//!
//!     cargo bench --bench table_ops
//!
//! Figures go into notes, not into timed tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use pfknock::name::{AnchorName, Net, TableName};
use pfknock::pf::PfTables;
use pfknock::pf::abi::{Layout, freebsd, openbsd};
use pfknock::pf::marshal::Device;
use pfknock::policy;
use pfknock::tables::{TableRef, Tables};
use pfknock_pf_model::Model;

#[path = "common/meter.rs"]
mod meter;
use meter::{CUR, Counting, PAUSED, PEAK};

#[global_allocator]
static A: Counting = Counting;

/// The model behind a meter: its time and allocations are its own.
struct Metered(Model, Duration);

impl Device for Metered {
    fn ioctl(&mut self, req: u64, ioc: &mut [u8], buf: &mut [u8]) -> Result<(), i32> {
        PAUSED.store(true, Relaxed);
        let t = Instant::now();
        let r = self.0.ioctl(req, ioc, buf);
        self.1 += t.elapsed();
        PAUSED.store(false, Relaxed);
        r
    }
}

fn addr(i: usize) -> IpAddr {
    if i % 4 == 3 {
        IpAddr::V6(Ipv6Addr::from(0xfd00_u128 << 112 | i as u128))
    } else {
        IpAddr::V4(Ipv4Addr::from(0xC612_0000u32 + i as u32))
    }
}

fn run(l: &'static Layout, n: usize) {
    const NOW: i64 = 1_800_000_000;
    PAUSED.store(true, Relaxed);
    let mut m = Model::new(pfknock_pf_model::newest(l.os), NOW);
    m.maxcount = n + 1;
    m.define("pfknock", "ssh", false);
    // Half the entries are past a 60 s ttl.
    m.fill("pfknock", "ssh", (0..n).map(addr), |i| {
        if i % 2 == 0 { NOW - 120 } else { NOW - 30 }
    });
    let mut k = PfTables::new(Metered(m, Duration::ZERO), l);
    k.pf.set_maxcount(n + 1);
    let t = TableRef::new(
        &AnchorName::new("pfknock").unwrap(),
        &TableName::new("ssh").unwrap(),
    );
    PAUSED.store(false, Relaxed);
    let base = CUR.load(Relaxed);
    PEAK.store(base, Relaxed);

    let start = Instant::now();
    let entries = k.entries(&t).unwrap();
    let d = policy::decide(&entries, 60, NOW, |e| e.tzero, |_| false);
    let nets: Vec<Net> = d.expire.iter().map(|x| x.net).collect();
    drop(entries);
    let deleted = k.delete(&t, &nets).unwrap();
    let total = start.elapsed();

    let peak = PEAK.load(Relaxed) - base;
    let model = k.pf.dev.1;
    drop(nets);
    // The model was allocated unmetered: free it unmetered too.
    PAUSED.store(true, Relaxed);
    drop(k);
    PAUSED.store(false, Relaxed);
    let kbuf = n * l.astats_size;
    assert_eq!(deleted, n / 2 + n % 2);
    println!(
        "{:<8} {:>9} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>6.2}",
        l.os,
        n,
        total.as_secs_f64() * 1e3,
        model.as_secs_f64() * 1e3,
        (total - model).as_secs_f64() * 1e3,
        peak as f64 / 1048576.0,
        kbuf as f64 / 1048576.0,
        peak as f64 / kbuf as f64
    );
}

fn main() {
    println!(
        "{:<8} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6}",
        "layout", "entries", "total ms", "model ms", "pfknock ms", "peak MiB", "kbuf MiB", "ratio"
    );
    for l in [&freebsd::LAYOUT, &openbsd::LAYOUT] {
        for n in [1_000, 100_000, 1_000_000] {
            run(l, n);
        }
    }
}
