//! The daemon against the kernel model with a simulated clock:
//!
//! 1. poll cost with an unchanged 1M-entry table: requests per poll and
//!    time per poll (O(tables), not O(entries));
//! 2. heap over an hour of churn, 10k authorizations expiring after 60 s:
//!    the daemon's own heap (the model's is not counted) every 10 minutes;
//! 3. pf expiry by age at 100k and 1M: an age table whose time stamps are
//!    spread over the ttl, polled every second for a minute while a
//!    sixtieth of it expires: requests per poll (a listing walks the whole
//!    table; the floor is one delete of the entries due);
//! 4. the events mode (nftables) at 1M authorizations, IPv4 and IPv6: the
//!    daemon's heap per authorization (what it keeps: address, since,
//!    until, and the deadline order), and the time per knock event.
//!
//! 5. pf knocks at 100k and 1M: ten authorized hosts knock again every
//!    second, or ten new ones knock; requests per poll (the floor: a
//!    listing of the ten and the writes for them; a renewal lists the
//!    renewal table only, a new knock still the whole authorized table).
//!
//! 6. a pf start at 100k and 1M, without a record and with one: requests
//!    and time from the load to the end of the first poll (the floor: one
//!    listing of the authorized table).
//!
//! 7. a pf restore at 100k and 1M (the anchor flushed, `pfctl -F all`):
//!    requests and time of the poll that restores it and the next (the
//!    floor: one add of the hosts to a new table).
//!
//! 8. pf, a table of 100k and 1M changed by someone else (`pfctl -T add`
//!    of one host, or `-T delete`) every ten seconds for a minute: the
//!    requests and time of the polls that follow (pf says only the
//!    count, so the table is listed whole; the floor shown is that one
//!    listing).
//!
//! 9. a start (nftables) whose reading gives a million authorizations,
//!    IPv4 and IPv6: the daemon's heap once it has taken them in, and its
//!    peak while it does (the floor: the reading's own vector).
//!
//! 10. `churn.sh` at a million in the machine alone: the heap under an
//!     hour of churn after a start's reading (`churn`), and during a
//!     start's reading under churn, with its peak as the reading and the
//!     events that waited behind it are taken in (`churned-start`); the
//!     same over an overrun's reading, the book full (`churned-overrun`).
//!     IPv4 hosts; `FAMILY=6` churns IPv6 ones, as `churn.sh` does.
//!
//!     cargo bench --bench daemon [due | renew | idle | start | restore | changed | events | reading | churn | churned-start | churned-overrun]

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use pfknock::config::Config;
use pfknock::daemon::{Daemon, Level, Loader, Log};
use pfknock::error::Result;
use pfknock::name::AnchorName;
use pfknock::pf::PfTables;
use pfknock::pf::abi::{self, freebsd};
use pfknock::pf::marshal::Device;
use pfknock_pf_model::Model;

#[path = "common/meter.rs"]
mod meter;
use meter::{CUR, Counting, paused};

#[global_allocator]
static A: Counting = Counting;

#[derive(Clone)]
struct Kernel(Rc<RefCell<Model>>);

impl Device for Kernel {
    fn ioctl(&mut self, r: u64, ioc: &mut [u8], buf: &mut [u8]) -> std::result::Result<(), i32> {
        paused(|| self.0.borrow_mut().ioctl(r, ioc, buf))
    }
}

struct Pfctl(Kernel);

impl Loader for Pfctl {
    fn load(&mut self, cfg: &Config, source: &str) -> Result<()> {
        let a = &cfg.anchor;
        let text = &pfknock::render::pf::render(cfg, source);
        paused(|| {
            for l in text.lines() {
                if let Some(rest) = l.strip_prefix("table <") {
                    let name = rest.split('>').next().unwrap();
                    self.0.0.borrow_mut().define(a.as_str(), name, false);
                }
            }
        });
        Ok(())
    }
    fn referenced(&mut self, _: &AnchorName) -> Result<bool> {
        Ok(true)
    }
    fn enabled(&mut self) -> Option<bool> {
        Some(true)
    }
    fn unload(&mut self, _: &Config, _: bool) -> Result<()> {
        Ok(())
    }
}

struct Count(usize);

impl Log for Count {
    fn log(&mut self, _: Level, _: &str) {
        self.0 += 1;
    }
}

const NOW: i64 = 1_800_000_000;

fn host(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xC612_0000 + i))
}

fn daemon(conf: &str) -> (Daemon<PfTables<Kernel>, Pfctl, Count>, Kernel) {
    let (cfg, _) = Config::parse(conf, Path::new("bench.toml")).unwrap();
    let k = Kernel(Rc::new(RefCell::new(paused(|| {
        Model::new(&pfknock_pf_model::FREEBSD_14, NOW)
    }))));
    k.0.borrow_mut().maxcount = 2_000_000;
    let d = Daemon::start(
        cfg,
        Path::new("bench.toml"),
        tables(&k),
        Pfctl(k.clone()),
        Count(0),
        NOW,
    )
    .unwrap();
    (d, k)
}

fn tables(k: &Kernel) -> PfTables<Kernel> {
    let mut t = PfTables::new(k.clone(), &freebsd::LAYOUT);
    t.pf.set_maxcount(2_000_000);
    t
}

fn poll_cost() {
    let (mut d, k) = daemon("[[service]]\nname=\"ssh\"\nprotect=[22]\nknock=[1234]\nttl=\"1d\"\n");
    paused(|| {
        k.0.borrow_mut()
            .fill("pfknock", "ssh", (0..1_000_000).map(host), |_| NOW)
    });
    d.tick(NOW + 1); // the one listing of the new entries
    let (ts, as_) = {
        let m = k.0.borrow();
        (m.count(abi::N_GETTSTATS), m.count(abi::N_GETASTATS))
    };
    let polls = 3600;
    let start = Instant::now();
    for t in 2..2 + polls {
        d.tick(NOW + t);
    }
    let el = start.elapsed();
    let m = k.0.borrow();
    println!(
        "poll, unchanged 1M-entry table: {polls} polls, {} GETTSTATS, {} GETASTATS, {:.1} us/poll",
        m.count(abi::N_GETTSTATS) - ts,
        m.count(abi::N_GETASTATS) - as_,
        el.as_secs_f64() * 1e6 / polls as f64
    );
}

fn due_polls(n: u32) {
    let (mut d, k) = daemon("[[service]]\nname=\"ssh\"\nprotect=[22]\nknock=[1234]\nttl=\"1h\"\n");
    // Entry i stamped i/n of an hour ago: a sixtieth is due within a minute.
    paused(|| {
        k.0.borrow_mut()
            .fill("pfknock", "ssh", (0..n).map(host), |i| {
                NOW - (i as i64 * 3600 / i64::from(n))
            })
    });
    d.tick(NOW + 1); // the one listing of the new entries
    let count = |k: &Kernel| {
        let m = k.0.borrow();
        (
            m.count(abi::N_GETTSTATS),
            m.count(abi::N_GETASTATS),
            m.count(abi::N_DELADDRS),
        )
    };
    let (ts, as_, del) = count(&k);
    let left = |k: &Kernel| k.0.borrow().dump("pfknock", "ssh").map_or(0, |v| v.len());
    let before = left(&k);
    let polls: u32 = 60;
    let start = Instant::now();
    for t in 2..2 + i64::from(polls) {
        d.tick(NOW + t);
    }
    let el = start.elapsed();
    let (ts2, as2, del2) = count(&k);
    println!(
        "poll, age table of {n}, a minute of expiry: {polls} polls, {} expired; {} GETTSTATS, \
         {} GETASTATS, {} DELADDRS; {:.1} ms/poll",
        before - left(&k),
        ts2 - ts,
        as2 - as_,
        del2 - del,
        el.as_secs_f64() * 1e3 / f64::from(polls)
    );
}

/// `n` authorizations in `<ssh>`, their time stamps spread over the hour
/// before `NOW`; the model's clock at `now`. Room for twice as many in
/// pf's pool (a restore adds them again before the old are gone).
fn held(k: &Kernel, n: u32, now: i64) {
    paused(|| {
        let mut m = k.0.borrow_mut();
        m.table_entries_limit = 4_000_000;
        m.fill("pfknock", "ssh", (0..n).map(host), |i| {
            NOW - (i % 3600) as i64
        });
        m.now = now;
    });
}

/// A pf daemon started again over `n` authorizations (its anchor
/// loaded), with or without the record the last one kept: requests and
/// time until the end of its first poll, beside one listing of the table.
fn pf_start(n: u32) {
    let conf = "[[service]]\nname=\"ssh\"\nprotect=[22]\nknock=[1234]\nttl=\"1d\"\n";
    let (d, k) = daemon(conf);
    held(&k, n, NOW + 10);
    drop(d);
    // The floor: one listing of the authorized table.
    let t = pfknock::tables::TableRef::new(
        &AnchorName::new("pfknock").unwrap(),
        &pfknock::name::TableName::new("ssh").unwrap(),
    );
    let before = k.0.borrow().count(abi::N_GETASTATS);
    let start = Instant::now();
    let listed = pfknock::tables::Tables::entries(&mut tables(&k), &t)
        .unwrap()
        .len();
    let floor = start.elapsed();
    println!(
        "start, {n} authorized: the floor, one listing of {listed}: {} GETASTATS, {:.0} ms",
        k.0.borrow().count(abi::N_GETASTATS) - before,
        floor.as_secs_f64() * 1e3
    );
    let (cfg, _) = Config::parse(conf, Path::new("bench.toml")).unwrap();
    let start_with = |record| {
        Daemon::start_with(
            cfg.clone(),
            Path::new("bench.toml"),
            tables(&k),
            Pfctl(k.clone()),
            Count(0),
            NOW + 10,
            record,
        )
        .unwrap()
    };
    for record in [false, true] {
        // What a daemon that ran before kept.
        let kept = record.then(|| start_with(None).snapshot());
        let before = k.0.borrow().count(abi::N_GETASTATS);
        let start = Instant::now();
        let d = start_with(Some(kept));
        let el = start.elapsed();
        let lines = d.log.0;
        // What the daemon holds once started: what its drop gives back.
        let heap = CUR.load(Relaxed);
        drop(d);
        let held = heap.wrapping_sub(CUR.load(Relaxed));
        println!(
            "start, {n} authorized, {} record: {} GETASTATS, {:.0} ms (the model's own \
             work included), {} lines; the daemon holds {:.1} MB, {:.0} bytes each",
            if record { "with a" } else { "no" },
            k.0.borrow().count(abi::N_GETASTATS) - before,
            el.as_secs_f64() * 1e3,
            lines,
            held as f64 / 1e6,
            held as f64 / f64::from(n)
        );
    }
}

/// The anchor flushed under `n` authorizations, and restored.
fn pf_restore(n: u32) {
    let conf = "[[service]]\nname=\"ssh\"\nprotect=[22]\nknock=[1234]\nttl=\"1d\"\n";
    let (mut d, k) = daemon(conf);
    held(&k, n, NOW + 1);
    d.tick(NOW + 1);
    // The floor: one add of the hosts to a new table.
    paused(|| k.0.borrow_mut().define("floor", "t", false));
    let t = pfknock::tables::TableRef::new(
        &AnchorName::new("floor").unwrap(),
        &pfknock::name::TableName::new("t").unwrap(),
    );
    let hosts: Vec<pfknock::name::Net> =
        (0..n).map(|i| pfknock::name::Net::host(host(i))).collect();
    let count = |k: &Kernel| {
        let m = k.0.borrow();
        [abi::N_ADDADDRS, abi::N_GETASTATS].map(|r| m.count(r))
    };
    let before = count(&k);
    let start = Instant::now();
    let added = pfknock::tables::Tables::add(&mut tables(&k), &t, &hosts).unwrap();
    let floor = start.elapsed();
    let after = count(&k);
    println!(
        "restore, {n} authorized: the floor, one add of {added}: {} ADDADDRS, {:.0} ms",
        after[0] - before[0],
        floor.as_secs_f64() * 1e3
    );
    paused(|| k.0.borrow_mut().flush_anchor("pfknock"));
    let lines = d.log.0;
    let before = count(&k);
    let start = Instant::now();
    d.tick(NOW + 2);
    let el = start.elapsed();
    let mid = count(&k);
    let start = Instant::now();
    d.tick(NOW + 3);
    let next = start.elapsed();
    let after = count(&k);
    println!(
        "restore, {n} authorized: {} ADDADDRS, {} GETASTATS, {:.0} ms (the model's own work \
         included), {} lines; the next poll {} GETASTATS, {:.0} ms; {} back",
        mid[0] - before[0],
        mid[1] - before[1],
        el.as_secs_f64() * 1e3,
        d.log.0 - lines,
        after[1] - mid[1],
        next.as_secs_f64() * 1e3,
        k.0.borrow().dump("pfknock", "ssh").map_or(0, |v| v.len())
    );
}

/// pf knocks at `n` authorizations: every second for a minute, ten
/// authorized hosts knock again (`renew`), or ten new hosts knock; either
/// way pf puts them in the intake (`ssh_renew`), as the anchor says, and
/// the daemon stamps the first anew and moves the others. Requests per
/// poll (the floor: a listing of the ten, and the writes for them).
fn knock_polls(n: u32, renew: bool) {
    let (mut d, k) = daemon("[[service]]\nname=\"ssh\"\nprotect=[22]\nknock=[1234]\nttl=\"1d\"\n");
    paused(|| {
        let mut m = k.0.borrow_mut();
        // pf.conf's `set limit table-entries`, raised as it must be.
        m.table_entries_limit = 2_000_000;
        m.fill("pfknock", "ssh", (0..n).map(host), |_| NOW);
    });
    d.tick(NOW + 1); // the one listing of the new entries
    let count = |k: &Kernel| {
        let m = k.0.borrow();
        [
            abi::N_GETTSTATS,
            abi::N_GETASTATS,
            abi::N_CLRASTATS,
            abi::N_ADDADDRS,
            abi::N_DELADDRS,
        ]
        .map(|r| m.count(r))
    };
    let before = count(&k);
    let polls: u32 = 60;
    let mut el = std::time::Duration::ZERO;
    let mut knocked = 0u32;
    for t in 2..2 + i64::from(polls) {
        paused(|| {
            let mut m = k.0.borrow_mut();
            m.now = NOW + t;
            for j in 0..10 {
                let h = if renew {
                    host((t as u32 * 7919 + j * 104_729) % n)
                } else {
                    host(n + t as u32 * 10 + j)
                };
                knocked += u32::from(m.overload("pfknock", "ssh_renew", h));
            }
        });
        let start = Instant::now();
        d.tick(NOW + t);
        el += start.elapsed();
    }
    let after = count(&k);
    let per = |i: usize| (after[i] - before[i]) as f64 / f64::from(polls);
    println!(
        "poll, {n} authorized, 10 {} a second for a minute: {knocked} in; per poll \
         {:.1} GETTSTATS, {:.2} GETASTATS, {:.1} CLRASTATS, {:.1} ADDADDRS, {:.1} DELADDRS; \
         {:.2} ms/poll (the model's own work included)",
        if renew { "renewals" } else { "new knocks" },
        per(0),
        per(1),
        per(2),
        per(3),
        per(4),
        el.as_secs_f64() * 1e3 / f64::from(polls)
    );
}

/// pf, an idle-expiry table of `n` authorizations (ttl 1h) in which one
/// host sends a packet every second for a minute: listings of the table
/// per poll. pf has no read of which entries counted packets; the daemon
/// lists a table whose packets moved at most every ttl / 16 (225 s here),
/// where it listed it at every poll.
fn idle_traffic_polls(n: u32) {
    let (mut d, k) = daemon(
        "[[service]]\nname=\"ssh\"\nprotect=[22]\nknock=[1234]\nttl=\"1h\"\nexpire=\"idle\"\n",
    );
    paused(|| {
        let mut m = k.0.borrow_mut();
        m.table_entries_limit = 2_000_000;
        m.fill("pfknock", "ssh", (0..n).map(host), |_| NOW);
    });
    d.tick(NOW + 1);
    let before = k.0.borrow().count(abi::N_GETASTATS);
    let polls: u32 = 60;
    let mut el = std::time::Duration::ZERO;
    for t in 2..2 + i64::from(polls) {
        paused(|| {
            let mut m = k.0.borrow_mut();
            m.now = NOW + t;
            m.traffic("pfknock", "ssh", host(7), 1, 60);
        });
        let start = Instant::now();
        d.tick(NOW + t);
        el += start.elapsed();
    }
    let after = k.0.borrow().count(abi::N_GETASTATS);
    println!(
        "poll, idle table of {n}, one host's packet a second for a minute: {:.2} GETASTATS \
         per poll ({} GETTSTATS in all); {:.2} ms/poll (the model's own work included)",
        (after - before) as f64 / f64::from(polls),
        k.0.borrow().count(abi::N_GETTSTATS),
        el.as_secs_f64() * 1e3 / f64::from(polls)
    );
}

/// pf, `<ssh>` of `n` changed by someone else every ten seconds for a
/// minute, a host added or one deleted by turns: what the polls after a
/// change cost, beside one listing of the table.
fn changed_polls(n: u32) {
    let (mut d, k) = daemon("[[service]]\nname=\"ssh\"\nprotect=[22]\nknock=[1234]\nttl=\"1d\"\n");
    paused(|| {
        let mut m = k.0.borrow_mut();
        m.table_entries_limit = 2_000_000;
        m.fill("pfknock", "ssh", (0..n).map(host), |_| NOW);
    });
    d.tick(NOW + 1);
    let t = pfknock::tables::TableRef::new(
        &AnchorName::new("pfknock").unwrap(),
        &pfknock::name::TableName::new("ssh").unwrap(),
    );
    let start = Instant::now();
    pfknock::tables::Tables::entries(&mut tables(&k), &t).unwrap();
    let floor = start.elapsed();
    let before = k.0.borrow().count(abi::N_GETASTATS);
    let (mut el, mut changes) = (std::time::Duration::ZERO, 0u32);
    for t in 2..62 {
        if t % 10 == 0 {
            changes += 1;
            paused(|| {
                let mut m = k.0.borrow_mut();
                m.now = NOW + t;
                if changes % 2 == 1 {
                    m.overload("pfknock", "ssh", host(n + t as u32));
                } else {
                    m.remove("pfknock", "ssh", host(t as u32));
                }
            });
        }
        let start = Instant::now();
        d.tick(NOW + t);
        el += start.elapsed();
    }
    println!(
        "poll, {n} authorized, changed by another {changes} times in a minute: {:.1} \
         GETASTATS and {:.0} ms a change (the model's own work included); the floor, \
         one listing: 2 GETASTATS, {:.0} ms; {} lines",
        (k.0.borrow().count(abi::N_GETASTATS) - before) as f64 / f64::from(changes),
        el.as_secs_f64() * 1e3 / f64::from(changes),
        floor.as_secs_f64() * 1e3,
        d.log.0
    );
}

fn churn() {
    let (mut d, k) = daemon("[[service]]\nname=\"ssh\"\nprotect=[22]\nknock=[1234]\nttl=\"60s\"\n");
    let base = CUR.load(Relaxed);
    let mut next = 0u32;
    let mut peak = 0usize;
    print!("heap over an hour of 10k authorizations (KiB at 0, 10, ..., 60 min):");
    for s in 0..=3600i64 {
        // 10 000 per hour: 25 every 9 seconds.
        if s % 9 == 0 {
            paused(|| {
                let mut m = k.0.borrow_mut();
                m.now = NOW + s;
                for _ in 0..25 {
                    m.overload("pfknock", "ssh_renew", host(next));
                    next += 1;
                }
            });
        }
        paused(|| k.0.borrow_mut().now = NOW + s);
        d.tick(NOW + s);
        let cur = CUR.load(Relaxed).saturating_sub(base);
        peak = peak.max(cur);
        if s % 600 == 0 {
            print!(" {:.1}", cur as f64 / 1024.0);
        }
    }
    println!();
    println!(
        "  {next} authorizations, {} log lines, peak {:.1} KiB, live entries at the end: {}",
        d.log.0,
        peak as f64 / 1024.0,
        k.0.borrow().dump("pfknock", "ssh").unwrap().len()
    );
}

/// nftables as the events mode meets it: no table is read (the sets are
/// empty at start), and every looked-up element is there with its ttl.
struct Quiet;

impl pfknock::tables::Tables for Quiet {
    fn entries(&mut self, _: &pfknock::tables::TableRef) -> Result<Vec<pfknock::tables::Entry>> {
        Ok(Vec::new())
    }
    fn table_stats(&mut self, _: &AnchorName) -> Result<Vec<pfknock::tables::TableStat>> {
        Ok(Vec::new())
    }
    fn add(&mut self, _: &pfknock::tables::TableRef, a: &[pfknock::name::Net]) -> Result<usize> {
        Ok(a.len())
    }
    fn delete(&mut self, _: &pfknock::tables::TableRef, a: &[pfknock::name::Net]) -> Result<usize> {
        Ok(a.len())
    }
    fn renew(&mut self, _: &pfknock::tables::TableRef, a: &[pfknock::name::Net]) -> Result<usize> {
        Ok(a.len())
    }
    fn create(
        &mut self,
        t: &[(pfknock::tables::TableRef, pfknock::tables::TableFlags)],
    ) -> Result<usize> {
        Ok(t.len())
    }
    fn add_timed(
        &mut self,
        _: &pfknock::tables::TableRef,
        e: &[(pfknock::name::Net, u64)],
    ) -> Result<usize> {
        Ok(e.len())
    }
    fn caps(&self) -> pfknock::tables::Caps {
        pfknock::tables::Caps {
            entry_counters: true,
            ..pfknock::tables::Caps::NFT
        }
    }
    fn full_sets(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
    fn pools(&mut self) -> Result<Vec<pfknock::tables::PoolUse>> {
        Ok(Vec::new())
    }
    fn intact(&self, _: &Config) -> Option<bool> {
        Some(true)
    }
}

struct Present(u64);

impl pfknock::daemon::ElementLookup for Present {
    fn left(&mut self, _: &str, _: IpAddr) -> std::io::Result<Option<Option<u64>>> {
        Ok(Some(Some(self.0)))
    }
    fn dump(&mut self, _: &str) -> std::io::Result<pfknock::kevents::Deadlines> {
        Ok(Default::default())
    }
}

struct Nothing;

impl Loader for Nothing {
    fn load(&mut self, _: &Config, _: &str) -> Result<()> {
        Ok(())
    }
    fn referenced(&mut self, _: &AnchorName) -> Result<bool> {
        Ok(true)
    }
    fn enabled(&mut self) -> Option<bool> {
        Some(true)
    }
    fn unload(&mut self, _: &Config, _: bool) -> Result<()> {
        Ok(())
    }
}

/// `scattered`: addresses in no order (i times an odd constant, a
/// bijection), as knocks come; else ascending, the worst case for a
/// B-tree's fill.
fn events_at_a_million(v6: bool, scattered: bool) {
    const N: u32 = 1_000_000;
    let conf = "[[service]]\nname=\"ssh\"\nprotect=[22]\nknock=[1234]\nttl=\"1d\"\nsize=2000000\n";
    let (cfg, _) = Config::parse(conf, Path::new("bench.toml")).unwrap();
    let now = NOW * 1000;
    let mut d = Daemon::start(cfg, Path::new("bench.toml"), Quiet, Nothing, Count(0), NOW).unwrap();
    d.use_events(Box::new(Present(86_400_000)), now);
    let base = CUR.load(Relaxed);
    let prefix = pfknock::names::knock_prefix("ssh");
    let start = Instant::now();
    for i in 0..N {
        let n = if scattered {
            i.wrapping_mul(2_654_435_761)
        } else {
            i
        };
        let addr = if v6 {
            IpAddr::V6(std::net::Ipv6Addr::from(
                0xfd00_u128 << 112 | u128::from(n) << 16 | 7,
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(n))
        };
        let ev = pfknock::daemon::KernelEvent::Knock {
            prefix: prefix.clone(),
            addr,
        };
        // One knock every 10 us of simulated time.
        d.kernel(ev, now + i64::from(i) / 100);
    }
    let el = start.elapsed();
    let held = CUR.load(Relaxed).saturating_sub(base);
    // SIGUSR2's status line, worked out over the million.
    let lines = d.log.0;
    let start = Instant::now();
    d.status(NOW + 1);
    let status = start.elapsed();
    assert_eq!(d.log.0, lines + 1);
    let t = pfknock::tables::TableRef::new(
        &AnchorName::new("pfknock").unwrap(),
        &pfknock::name::TableName::new("ssh").unwrap(),
    );
    println!(
        "events mode, {N} {} authorizations, {}: {:.1} MB held, {:.1} bytes each; {:.2} us per knock event; status line {:.2} ms; known {}, {} lines",
        if v6 { "IPv6" } else { "IPv4" },
        if scattered { "scattered" } else { "ascending" },
        held as f64 / 1e6,
        held as f64 / f64::from(N),
        el.as_secs_f64() * 1e6 / f64::from(N),
        status.as_secs_f64() * 1e3,
        d.known(&t).unwrap_or(0),
        d.log.0
    );
    // A restart with a record: what the last daemon kept, written and
    // taken as the state file is, compared with what the kernel holds
    // (here the same: nothing is said).
    let start = Instant::now();
    let kept = d.snapshot();
    let snap = start.elapsed();
    let (compare, parts, longest) = compare_in_parts(&mut d, kept);
    println!(
        "  restart with a record of the million: snapshot {:.0} ms; compare {:.0} ms in {parts} \
         parts, the longest {:.1} ms; {} lines",
        snap.as_secs_f64() * 1e3,
        compare.as_secs_f64() * 1e3,
        longest.as_secs_f64() * 1e3,
        d.log.0 - lines - 1
    );
    // A record of a million others (of the other family): each kept host
    // left while no daemon ran, each in the book is new: 2M lines.
    let table = t.to_string();
    let mut others = pfknock::daemon::state::Known::new();
    for i in 0..N {
        let addr = if v6 {
            IpAddr::V4(Ipv4Addr::from(i))
        } else {
            IpAddr::V6(std::net::Ipv6Addr::from(0xfd01_u128 << 112 | u128::from(i)))
        };
        others.insert_at(&table, pfknock::name::Net::host(addr), NOW - 10);
    }
    let lines = d.log.0;
    let (compare, parts, longest) = compare_in_parts(&mut d, others);
    println!(
        "  restart with a record of a million others: compare {:.0} ms in {parts} parts, the \
         longest {:.1} ms; {} lines",
        compare.as_secs_f64() * 1e3,
        longest.as_secs_f64() * 1e3,
        d.log.0 - lines
    );
}

/// A dump of one set, as `netlink::Lookup` gives it: its elements in
/// address order, each with its deadline; and what a look-up of any
/// element finds (a day left; `None`: the kernel timed it out).
struct Dumped(String, pfknock::kevents::Deadlines, Option<Option<u64>>);

impl pfknock::daemon::ElementLookup for Dumped {
    fn left(&mut self, _: &str, _: IpAddr) -> std::io::Result<Option<Option<u64>>> {
        Ok(self.2)
    }
    fn dump(&mut self, set: &str) -> std::io::Result<pfknock::kevents::Deadlines> {
        Ok(if set == self.0 {
            std::mem::take(&mut self.1)
        } else {
            Default::default()
        })
    }
}

/// A start (nftables) whose reading of the sets gives a million
/// authorizations, taken in by the machine a part at a time: the heap the
/// daemon holds after, and its peak while it takes them in, the
/// reading's own vector included (10 bytes an IPv4 element, 22 an IPv6
/// one, the most the reading can hold at the end of a dump).
fn start_reading_at_a_million(v6: bool) {
    const N: u32 = 1_000_000;
    let conf = "[[service]]\nname=\"ssh\"\nprotect=[22]\nknock=[1234]\nttl=\"1d\"\nsize=2000000\n";
    let (cfg, _) = Config::parse(conf, Path::new("bench.toml")).unwrap();
    let now = NOW * 1000;
    let mut d = Daemon::start(cfg, Path::new("bench.toml"), Quiet, Nothing, Count(0), NOW).unwrap();
    let base = CUR.load(Relaxed);
    let elems: pfknock::kevents::Deadlines = (0..N)
        .map(|i| {
            let addr = if v6 {
                IpAddr::V6(std::net::Ipv6Addr::from(
                    0xfd00_u128 << 112 | u128::from(i) << 16 | 7,
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i))
            };
            (addr, Some(now + 3_600_000 + i64::from(i % 3600) * 1000)).into()
        })
        .collect();
    let set = if v6 { "ssh_6" } else { "ssh_4" };
    let reading = CUR.load(Relaxed) - base;
    meter::PEAK.store(CUR.load(Relaxed), Relaxed);
    let lookup = Box::new(Dumped(set.to_owned(), elems, Some(Some(86_400_000))));
    let (el, parts, longest) = in_parts(&mut d, |d| d.use_events(lookup, now));
    let held = CUR.load(Relaxed).saturating_sub(base);
    let peak = meter::PEAK.load(Relaxed).saturating_sub(base);
    let t = pfknock::tables::TableRef::new(
        &AnchorName::new("pfknock").unwrap(),
        &pfknock::name::TableName::new("ssh").unwrap(),
    );
    println!(
        "events mode, a start's reading of {N} {} authorizations taken in: {:.0} ms in {parts} \
         parts, the longest {:.1} ms; {:.1} MB held after, {:.1} bytes each; peak {:.1} MB, the \
         reading's vector {:.1} MB of it; known {}",
        if v6 { "IPv6" } else { "IPv4" },
        el.as_secs_f64() * 1e3,
        longest.as_secs_f64() * 1e3,
        held as f64 / 1e6,
        held as f64 / f64::from(N),
        peak as f64 / 1e6,
        reading as f64 / 1e6,
        d.known(&t).unwrap_or(0),
    );
    // The stop's record of them, written from the book
    // (`Daemon::write_record`) and, as before, from a snapshot: the
    // heap's peak above what the daemon holds, each, and the two files.
    let dir = std::env::temp_dir().join(format!("pfknock-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (book, snap) = (dir.join("book.state"), dir.join("snapshot.state"));
    let at = CUR.load(Relaxed);
    meter::PEAK.store(at, Relaxed);
    d.write_record(&book);
    let from_book = meter::PEAK.load(Relaxed).saturating_sub(at);
    meter::PEAK.store(at, Relaxed);
    pfknock::daemon::state::write(&snap, &d.snapshot());
    let from_snapshot = meter::PEAK.load(Relaxed).saturating_sub(at);
    let same = std::fs::read(&book).unwrap() == std::fs::read(&snap).unwrap();
    let size = std::fs::metadata(&book).map_or(0, |m| m.len());
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "  the stop's record ({:.1} MB): {:.2} MB above the daemon from its book, {:.1} MB from \
         a snapshot; the same file: {same}",
        size as f64 / 1e6,
        from_book as f64 / 1e6,
        from_snapshot as f64 / 1e6,
    );
}

/// `benches/churn.sh` at a million, in the machine alone: a start's
/// reading of a million IPv4 authorizations in address order, their
/// deadlines spread over a ttl of 1,000 s; then for 2,000 s others add a
/// thousand new hosts a second (one transaction, the next addresses up)
/// and as many time out, so that the set is replaced twice. The heap the
/// daemon holds every 250 s, and the longest second's work (the
/// transaction and the expiry tick), where the set's maps are built
/// again.
/// `churn.sh`'s numbers at a million: held, ttl (ms), new hosts a second.
const N: u32 = 1_000_000;
const TTL: i64 = 1_000_000;
const RATE: u32 = 1_000;

/// `churn.sh`'s service (ttl 1,000 s), a daemon started on it, the heap
/// then, and the time (ms).
fn churned() -> (Daemon<Quiet, Nothing, Count>, usize, i64) {
    let conf =
        "[[service]]\nname=\"ssh\"\nprotect=[22]\nknock=[1234]\nttl=\"1000s\"\nsize=2000000\n";
    let (cfg, _) = Config::parse(conf, Path::new("bench.toml")).unwrap();
    let d = Daemon::start(cfg, Path::new("bench.toml"), Quiet, Nothing, Count(0), NOW).unwrap();
    (d, CUR.load(Relaxed), NOW * 1000)
}

/// Whether the churn cases churn IPv6 hosts (`FAMILY=6`, as `churn.sh`
/// has it) in the IPv6 set.
fn churn_v6() -> bool {
    std::env::var("FAMILY").is_ok_and(|f| f == "6")
}

/// The set the churn cases churn.
fn churn_set() -> &'static str {
    if churn_v6() { "ssh_6" } else { "ssh_4" }
}

/// The family the churn cases churn, for their lines.
fn churn_family() -> &'static str {
    if churn_v6() { "IPv6" } else { "IPv4" }
}

/// `churn.sh`'s `i`th host (fd00::/8 with `FAMILY=6`).
fn churned_host(i: u32) -> IpAddr {
    if churn_v6() {
        return IpAddr::V6(std::net::Ipv6Addr::from(
            0xfd00_u128 << 112 | u128::from(i) << 16 | 7,
        ));
    }
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i))
}

/// `churn.sh`'s set at `now0`: `N` hosts in address order, their
/// deadlines spread over the ttl.
fn spread(now0: i64) -> pfknock::kevents::Deadlines {
    (0..N)
        .map(|i| {
            let until = now0 + 1_000 + (TTL - 1_000) * i64::from(i + 1) / i64::from(N);
            (churned_host(i), Some(until)).into()
        })
        .collect()
}

/// One second of `churn.sh` at `now`: others add `RATE` new hosts from
/// the `next`th on, in one transaction.
fn added_by_others(next: u32, now: i64) -> [pfknock::daemon::KernelEvent; 2] {
    let addrs = (next..next + RATE)
        .map(|i| pfknock::kevents::Deadline::new(churned_host(i), Some(now + TTL)))
        .collect();
    [
        pfknock::daemon::KernelEvent::Elements {
            set: churn_set().into(),
            added: true,
            addrs,
        },
        pfknock::daemon::KernelEvent::Commit {
            pid: 4242,
            process: "nft".into(),
        },
    ]
}

fn churn_at_a_million() {
    let (mut d, base, now0) = churned();
    let elems = spread(now0);
    // Each looked up once due is gone: the kernel timed it out.
    let lookup = Box::new(Dumped(churn_set().to_owned(), elems, None));
    in_parts(&mut d, |d| d.use_events(lookup, now0));
    let mb = || CUR.load(Relaxed).saturating_sub(base) as f64 / 1e6;
    print!(
        "events mode, churn over a million {} in address order, MB held after the reading {:.1}, then every 250 s:",
        churn_family(),
        mb()
    );
    let (mut next, mut longest) = (N, std::time::Duration::ZERO);
    for s in 1..=2_000i64 {
        let now = now0 + s * 1_000;
        let evs = added_by_others(next, now);
        next += RATE;
        let t = Instant::now();
        for ev in evs {
            d.kernel(ev, now);
        }
        d.tick_ms(now + 100);
        longest = longest.max(t.elapsed());
        if s % 250 == 0 {
            print!(" {:.1}", mb());
        }
    }
    let t = pfknock::tables::TableRef::new(
        &AnchorName::new("pfknock").unwrap(),
        &pfknock::name::TableName::new("ssh").unwrap(),
    );
    println!(
        "; known {} at the end, {:.1} bytes each; the longest second {:.1} ms; {} lines",
        d.known(&t).unwrap_or(0),
        mb() * 1e6 / d.known(&t).unwrap_or(1) as f64,
        longest.as_secs_f64() * 1e3,
        d.log.0
    );
}

/// `Dumped` with a reader of its own, as `netlink::Lookup` has: the
/// reading runs beside the loop (`Daemon::read_aside`) and takes the
/// dump's elements.
struct Aside(std::sync::Arc<std::sync::Mutex<Dumped>>);

impl pfknock::daemon::ElementLookup for Aside {
    fn left(&mut self, set: &str, addr: IpAddr) -> std::io::Result<Option<Option<u64>>> {
        self.0.lock().unwrap().left(set, addr)
    }
    fn dump(&mut self, set: &str) -> std::io::Result<pfknock::kevents::Deadlines> {
        self.0.lock().unwrap().dump(set)
    }
    fn reader(&self) -> Option<std::io::Result<Box<dyn pfknock::daemon::ElementLookup + Send>>> {
        Some(Ok(Box::new(Aside(self.0.clone()))))
    }
}

/// `benches/churn.sh`'s start at a million, in the machine alone: a
/// start's reading of a million IPv4 authorizations runs beside the loop
/// for 600 s while others add a thousand new hosts a second (one
/// transaction each, the next addresses up, ttl 1,000 s). Each is said as
/// it comes and recorded until its event, waiting in the loop's queue
/// behind the reading, comes (`heard.rs`). The reading finds nine in ten
/// of those, as churn.sh's did (495,067 of 548,000 here): those added in
/// its first 540 s. The heap the daemon holds every 100 s of the reading
/// (the loop's queue of events included), its peak while the reading and
/// then the queue are taken in, and what it holds after.
fn churned_start_at_a_million() {
    let (mut d, base, now0) = churned();
    let held = (0..N).map(|i| {
        let until = now0 + TTL + 600_000 * i64::from(i) / i64::from(N);
        (churned_host(i), Some(until))
    });
    // `added_by_others`' hosts of its first 540 seconds.
    let found = (0..540 * RATE).map(|k| {
        let until = now0 + i64::from(k / RATE + 1) * 1_000 + TTL;
        (churned_host(N + k), Some(until))
    });
    let elems = held.chain(found).map(Into::into).collect();
    let dumped = Dumped(churn_set().to_owned(), elems, Some(Some(86_400_000)));
    let lookup = Box::new(Aside(std::sync::Arc::new(std::sync::Mutex::new(dumped))));
    d.read_aside();
    d.use_events(lookup, now0);
    print!(
        "events mode, a start's reading of a million {} under churn, MB every 100 s of it:",
        churn_family()
    );
    read_under_churn(&mut d, base, now0);
}

/// An overrun's reading at a million under churn, in the machine alone:
/// the book holds a million IPv4 authorizations due over 1,000 s when the
/// kernel drops notifications, and the reading of the sets that follows
/// runs beside the loop for 600 s while others add a thousand new hosts a
/// second and a thousand of the book's fall due (each looked up and
/// expired at its deadline, and left out of what the reading finds). The
/// heap every 100 s of the reading, its peak while the reading and the
/// events that waited behind it are taken in, and what it holds after.
fn overrun_under_churn_at_a_million() {
    let (mut d, base, now0) = churned();
    // Each looked up once due is gone: the kernel timed it out.
    let dumped = std::sync::Arc::new(std::sync::Mutex::new(Dumped(
        churn_set().to_owned(),
        spread(now0),
        None,
    )));
    d.read_aside();
    d.use_events(Box::new(Aside(dumped.clone())), now0);
    for _ in 0..1 << 20 {
        if d.reading().is_none() {
            break;
        }
        d.read_done();
    }
    print!(
        "events mode, an overrun's reading over a million {} under churn, MB held before it {:.1}, every 100 s of it:",
        churn_family(),
        CUR.load(Relaxed).saturating_sub(base) as f64 / 1e6
    );
    // What the reading will find: the book's as they were.
    dumped.lock().unwrap().1 = spread(now0);
    d.kernel(pfknock::daemon::KernelEvent::Overrun, now0);
    read_under_churn(&mut d, base, now0);
}

/// A reading of the sets runs beside the loop of `d` (its heap `base`
/// at its start, `now0` ms) for `READ` s while others add `RATE` new
/// hosts a second, then is taken in, and the events that waited behind
/// it: the heap every 100 s, its peak while taken in, and after.
fn read_under_churn(d: &mut Daemon<Quiet, Nothing, Count>, base: usize, now0: i64) {
    const READ: i64 = 600;
    let mb = || CUR.load(Relaxed).saturating_sub(base) as f64 / 1e6;
    let mut pending = std::collections::VecDeque::new();
    let mut next = N;
    for s in 1..=READ {
        let now = now0 + s * 1_000;
        let evs = added_by_others(next, now);
        next += RATE;
        pending.extend(d.hear(evs.into(), now));
        d.reading_turn(now + 100);
        if s % 100 == 0 {
            print!(" {:.1}", mb());
        }
    }
    let heard = d.log.0;
    meter::PEAK.store(CUR.load(Relaxed), Relaxed);
    let now = now0 + (READ + 1) * 1_000;
    for _ in 0..1 << 20 {
        if d.reading().is_none() {
            break;
        }
        d.read_done();
    }
    let end = Instant::now() + std::time::Duration::from_secs(600);
    d.work_through(&mut pending, &|| now, end, None);
    drop(pending);
    let peak = meter::PEAK.load(Relaxed).saturating_sub(base) as f64 / 1e6;
    let t = pfknock::tables::TableRef::new(
        &AnchorName::new("pfknock").unwrap(),
        &pfknock::name::TableName::new("ssh").unwrap(),
    );
    println!(
        "; peak {peak:.1} while taken in; {:.1} after; known {}; {heard} lines during the \
         reading, {} in all",
        mb(),
        d.known(&t).unwrap_or(0),
        d.log.0
    );
}

/// A start's compare with `kept`, a part at a turn of the loop, as `run`
/// has it (`read_aside`): how long in all, in how many parts, and the
/// longest part, which is what a signal may wait for (the last gives back
/// memory, malloc_trim).
fn compare_in_parts(
    d: &mut Daemon<Quiet, Nothing, Count>,
    kept: pfknock::daemon::state::Known,
) -> (std::time::Duration, usize, std::time::Duration) {
    in_parts(d, |d| d.reconcile(Some(kept), NOW + 2))
}

/// `first`, and what it leaves to the loop's later turns, a part at a
/// turn as `run` has it (`read_aside`): how long in all, in how many
/// parts, and the longest part.
fn in_parts(
    d: &mut Daemon<Quiet, Nothing, Count>,
    first: impl FnOnce(&mut Daemon<Quiet, Nothing, Count>),
) -> (std::time::Duration, usize, std::time::Duration) {
    d.read_aside();
    let start = Instant::now();
    first(d);
    let (mut parts, mut longest) = (1, start.elapsed());
    for _ in 0..1 << 20 {
        if d.reading().is_none() {
            break;
        }
        let part = Instant::now();
        d.read_done();
        longest = longest.max(part.elapsed());
        parts += 1;
    }
    (start.elapsed(), parts, longest)
}

fn main() {
    let only = std::env::args().nth(1);
    if only.as_deref() == Some("due") {
        due_polls(100_000);
        due_polls(1_000_000);
        return;
    }
    if only.as_deref() == Some("renew") {
        for renew in [true, false] {
            knock_polls(100_000, renew);
            knock_polls(1_000_000, renew);
        }
        return;
    }
    if only.as_deref() == Some("start") {
        pf_start(100_000);
        pf_start(1_000_000);
        return;
    }
    if only.as_deref() == Some("changed") {
        changed_polls(100_000);
        changed_polls(1_000_000);
        return;
    }
    if only.as_deref() == Some("restore") {
        pf_restore(100_000);
        pf_restore(1_000_000);
        return;
    }
    if only.as_deref() == Some("idle") {
        idle_traffic_polls(100_000);
        idle_traffic_polls(1_000_000);
        return;
    }
    if only.as_deref() == Some("reading") {
        start_reading_at_a_million(false);
        start_reading_at_a_million(true);
        return;
    }
    if only.as_deref() == Some("churn") {
        churn_at_a_million();
        return;
    }
    if only.as_deref() == Some("churned-start") {
        churned_start_at_a_million();
        return;
    }
    if only.as_deref() == Some("churned-overrun") {
        overrun_under_churn_at_a_million();
        return;
    }
    if only.as_deref() != Some("events") {
        poll_cost();
        due_polls(100_000);
        due_polls(1_000_000);
        for renew in [true, false] {
            knock_polls(100_000, renew);
            knock_polls(1_000_000, renew);
        }
        idle_traffic_polls(100_000);
        idle_traffic_polls(1_000_000);
        pf_start(100_000);
        pf_start(1_000_000);
        pf_restore(100_000);
        pf_restore(1_000_000);
        churn();
    }
    churn_at_a_million();
    for v6 in [false, true] {
        start_reading_at_a_million(v6);
        for scattered in [false, true] {
            events_at_a_million(v6, scattered);
        }
    }
}
