//! The daemon with kernel events (the nftables mode of `daemon::Daemon`),
//! without root: the events it would read from netlink are handed to it by
//! the test, over a model of nftables' timed sets written here from the
//! kernel's documented behaviour (an element times out at its own
//! millisecond deadline; `add` of a present element changes nothing; a
//! reload of the ruleset keeps the elements of sets it keeps). The model
//! shares no code with the daemon: set names and times are its own.
//!
//! Every test reads the daemon's log lines in order, and what the model
//! holds, and what it must not.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pfknock::config::Config;
use pfknock::control::Request;
use pfknock::daemon::{Daemon, ElementLookup, KernelEvent, Level, Loader, Log};
use pfknock::error::Result;
use pfknock::kevents::Deadline;
use pfknock::name::{Af, AnchorName, Family, Net};
use pfknock::tables::{Caps, Entry, PoolUse, TableFlags, TableRef, TableStat, Tables};

/// 2027-01-15 08:00:00 UTC, in ms.
const T0: i64 = 1_800_000_000_000;

/// The daemon looks this long after a deadline, so that elements a
/// transaction added together expire in one look (daemon::events).
const COALESCE: i64 = 20;

/// One timed set: address → deadline (ms since the epoch).
#[derive(Default, Debug)]
struct Set {
    timeout_ms: i64,
    elems: BTreeMap<IpAddr, i64>,
}

#[derive(Default, Debug)]
struct State {
    now: i64,
    /// The table, if loaded: set name → set.
    sets: Option<BTreeMap<String, Set>>,
    loads: usize,
    unloads: usize,
    lookups: usize,
    /// Listings of a whole set (`Tables::entries`).
    listings: usize,
    /// A kernel older than Linux 6.5: a set whose ttl changed is made
    /// anew, its elements carried over, each timed from its start with
    /// the new ttl.
    carry: bool,
    /// A kernel that says it changes a set in place and then makes it
    /// anew (as `carry`) all the same.
    remakes: bool,
    /// The last load made a set anew that way.
    remade: bool,
    /// How long a dump of a set takes the kernel (ms): the clock moves on
    /// while it walks, as at a million elements (a minute).
    dump_takes: i64,
    /// How many removed elements a flush's echo can tell back (`None`:
    /// all), as a socket's buffer bounds it.
    echo_room: Option<usize>,
    /// What a dump says of how it read a set: nothing, or a line that
    /// doubts (true) or does not doubt that it is whole.
    dump_doubts: Option<bool>,
    /// A dump waits until this opens (a reading held running).
    gate: Option<Gate>,
    /// What each dump was told was heard added to its set meanwhile.
    heard: Vec<(String, Vec<IpAddr>)>,
}

impl State {
    /// Elements past their deadline are gone, as the kernel's lookups and
    /// dumps skip them.
    fn gc(&mut self) {
        let now = self.now;
        for s in self.sets.iter_mut().flat_map(|m| m.values_mut()) {
            s.elems.retain(|_, d| *d > now);
        }
    }
    fn set(&mut self, name: &str) -> Option<&mut Set> {
        self.gc();
        self.sets.as_mut()?.get_mut(name)
    }
}

/// The model, shared by the daemon's tables, its loader, its look-ups
/// and the test.
#[derive(Clone, Default)]
struct Nft(Arc<Mutex<State>>);

fn fam(a: IpAddr) -> &'static str {
    if a.is_ipv4() { "4" } else { "6" }
}

impl Nft {
    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }
    fn at(&self, now: i64) {
        self.st().now = now;
    }
    /// The kernel's `update @ssh_4 { ip saddr }` for a knock: a new element
    /// with the set's timeout, or a fresh timeout for a present one.
    fn knock(&self, set: &str, a: &str) -> IpAddr {
        let a: IpAddr = a.parse().unwrap();
        let mut st = self.st();
        let now = st.now;
        let s = st.set(set).expect("the set");
        let d = now + s.timeout_ms;
        s.elems.insert(a, d);
        a
    }
    fn deadline(&self, set: &str, a: IpAddr) -> Option<i64> {
        self.st().set(set)?.elems.get(&a).copied()
    }
    /// `nft delete element` by someone whose notification is lost.
    fn remove(&self, set: &str, a: &str) {
        let a: IpAddr = a.parse().unwrap();
        self.st().set(set).expect("the set").elems.remove(&a);
    }
    fn holds(&self, set: &str) -> Vec<IpAddr> {
        self.st()
            .set(set)
            .map(|s| s.elems.keys().copied().collect())
            .unwrap_or_default()
    }
    /// `nft delete table inet pfknock`.
    fn delete_table(&self) {
        self.st().sets = None;
    }
    fn sets_of(t: &TableRef) -> [String; 2] {
        [format!("{}_4", t.name), format!("{}_6", t.name)]
    }
}

/// The model's authorized sets of a service: one for each family it
/// takes.
fn model_sets(s: &pfknock::config::Service) -> Vec<String> {
    let fams: &[&str] = match s.family {
        Family::Any => &["4", "6"],
        Family::Only(Af::V4) => &["4"],
        Family::Only(Af::V6) => &["6"],
    };
    fams.iter().map(|f| format!("{}_{f}", s.table)).collect()
}

impl Loader for Nft {
    /// pfknock's load (`nft -f`): the authorized sets of each service,
    /// with its ttl; a set the config no longer has is deleted; sets that stay keep their elements, and each element
    /// its deadline (a changed ttl changes the set in place: Linux 6.5 and
    /// later update a set's timeout without touching its elements), or
    /// with `carry` its start plus the new ttl.
    fn load(&mut self, cfg: &Config, _source: &str) -> Result<()> {
        let mut st = self.st();
        st.loads += 1;
        st.remade = false;
        let mut old = st.sets.take().unwrap_or_default();
        let mut new = BTreeMap::new();
        for s in &cfg.services {
            for name in model_sets(s) {
                let mut set = old.remove(&name).unwrap_or_default();
                let ttl = s.ttl.0 as i64 * 1000;
                if (st.carry || st.remakes) && set.timeout_ms != ttl {
                    st.remade = st.remakes;
                }
                if st.carry || st.remakes {
                    let was = set.timeout_ms;
                    for d in set.elems.values_mut() {
                        *d = *d - was + ttl;
                    }
                }
                set.timeout_ms = ttl;
                new.insert(name, set);
            }
        }
        st.sets = Some(new);
        Ok(())
    }
    fn referenced(&mut self, _: &AnchorName) -> Result<bool> {
        Ok(true)
    }
    fn enabled(&mut self) -> Option<bool> {
        Some(true)
    }
    /// Linux 6.5 and later change a set's ttl in place (`carry`: an older
    /// one makes it anew); a set whose service changed (its comment names
    /// it) is made anew; one the new config no longer has is deleted, and
    /// one that neither has is not there: neither is made anew.
    fn remakes_none(&mut self, old: &Config, new: &Config, sets: &[String]) -> bool {
        let service = |cfg: &Config, set: &str| {
            (cfg.services.iter())
                .find(|s| model_sets(s).contains(&set.to_owned()))
                .map(|s| s.name.clone())
        };
        !self.st().carry
            && (sets.iter()).all(|set| match (service(old, set), service(new, set)) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            })
    }
    fn remade(&mut self) -> bool {
        self.st().remade
    }
    /// Closed (the table stays, without its authorized sets), or gone
    /// (`--open`), as `nft::Nft::close` and `unload` leave it.
    fn unload(&mut self, _cfg: &Config, open: bool) -> Result<()> {
        let mut st = self.st();
        st.unloads += 1;
        st.sets = (!open).then(BTreeMap::new);
        Ok(())
    }
}

impl Tables for Nft {
    fn entries(&mut self, t: &TableRef) -> Result<Vec<Entry>> {
        let mut st = self.st();
        st.listings += 1;
        let mut out = Vec::new();
        for name in Nft::sets_of(t) {
            if let Some(s) = st.set(&name) {
                for (a, d) in &s.elems {
                    out.push(Entry {
                        net: Net::host(*a),
                        tzero: (d - s.timeout_ms).div_euclid(1000),
                        packets: 0,
                        bytes: 0,
                        counted: false,
                    });
                }
            }
        }
        Ok(out)
    }
    fn table_stats(&mut self, anchor: &AnchorName) -> Result<Vec<TableStat>> {
        let mut st = self.st();
        st.gc();
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        for (name, s) in st.sets.iter().flatten() {
            let t = name.rsplit_once('_').unwrap().0.to_owned();
            *by.entry(t).or_default() += s.elems.len() as u64;
        }
        Ok(by
            .into_iter()
            .map(|(name, count)| TableStat {
                name,
                anchor: anchor.as_str().to_owned(),
                active: true,
                count,
                counters: None,
                packets: 0,
                tzero: 0,
            })
            .collect())
    }
    fn add(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize> {
        let mut st = self.st();
        let now = st.now;
        let mut n = 0;
        for a in addrs {
            let s = st
                .set(&format!("{}_{}", t.name, fam(a.addr())))
                .expect("set");
            let d = now + s.timeout_ms;
            n += usize::from(s.elems.insert(a.addr(), d).is_none());
        }
        Ok(n)
    }
    /// The kernel's flush of each set, its deletions told back, as many
    /// as the echo has room for.
    fn clear(&mut self, t: &TableRef) -> Result<Option<pfknock::tables::Cleared>> {
        let mut st = self.st();
        let room = st.echo_room.unwrap_or(usize::MAX);
        let mut c = pfknock::tables::Cleared {
            entries: Vec::new(),
            whole: true,
        };
        for name in Nft::sets_of(t) {
            let Some(s) = st.set(&name) else { continue };
            let timeout = s.timeout_ms;
            for (a, d) in std::mem::take(&mut s.elems) {
                if c.entries.len() == room {
                    c.whole = false;
                    continue;
                }
                c.entries.push(Entry {
                    net: Net::host(a),
                    tzero: (d - timeout).div_euclid(1000),
                    packets: 0,
                    bytes: 0,
                    counted: false,
                });
            }
        }
        Ok(Some(c))
    }
    fn delete(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize> {
        let mut st = self.st();
        let mut n = 0;
        for a in addrs {
            if let Some(s) = st.set(&format!("{}_{}", t.name, fam(a.addr()))) {
                n += usize::from(s.elems.remove(&a.addr()).is_some());
            }
        }
        Ok(n)
    }
    fn renew(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize> {
        let mut st = self.st();
        let now = st.now;
        let mut n = 0;
        for a in addrs {
            if let Some(s) = st.set(&format!("{}_{}", t.name, fam(a.addr()))) {
                let d = now + s.timeout_ms;
                if let Some(e) = s.elems.get_mut(&a.addr()) {
                    *e = d;
                    n += 1;
                }
            }
        }
        Ok(n)
    }
    fn create(&mut self, _: &[(TableRef, TableFlags)]) -> Result<usize> {
        Ok(0)
    }
    /// Elements with this many seconds left.
    fn add_timed(&mut self, t: &TableRef, entries: &[(Net, u64)]) -> Result<usize> {
        let mut st = self.st();
        let now = st.now;
        let mut n = 0;
        for (a, secs) in entries {
            let s = st
                .set(&format!("{}_{}", t.name, fam(a.addr())))
                .expect("set");
            n += usize::from(
                s.elems
                    .insert(a.addr(), now + *secs as i64 * 1000)
                    .is_none(),
            );
        }
        Ok(n)
    }
    fn caps(&self) -> Caps {
        Caps::NFT
    }
    fn pools(&mut self) -> Result<Vec<PoolUse>> {
        Ok(Vec::new())
    }
    fn full_sets(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
    fn intact(&self, _: &Config) -> Option<bool> {
        Some(self.0.lock().unwrap().sets.is_some())
    }
}

impl ElementLookup for Nft {
    fn left(&mut self, set: &str, addr: IpAddr) -> std::io::Result<Option<Option<u64>>> {
        let mut st = self.st();
        st.lookups += 1;
        let now = st.now;
        match st.set(set) {
            None => Err(std::io::Error::from_raw_os_error(libc::ENOENT)),
            Some(s) => Ok(s.elems.get(&addr).map(|d| Some((d - now) as u64))),
        }
    }
    fn dump(&mut self, set: &str) -> std::io::Result<pfknock::kevents::Deadlines> {
        let mut st = self.st();
        st.now += st.dump_takes;
        match st.set(set) {
            None => Err(std::io::Error::from_raw_os_error(libc::ENOENT)),
            Some(s) => Ok(s.elems.iter().map(|(a, d)| (*a, Some(*d)).into()).collect()),
        }
    }
    fn dump_noted(
        &mut self,
        set: &str,
    ) -> std::io::Result<(
        pfknock::kevents::Deadlines,
        Option<pfknock::kevents::HowRead>,
    )> {
        let doubts = self.st().dump_doubts;
        let how = doubts.map(|doubtful| pfknock::kevents::HowRead {
            line: format!("set {set}: read, doubting: {doubtful}"),
            doubtful,
        });
        Ok((self.dump(set)?, how))
    }
    fn dump_heard(
        &mut self,
        set: &str,
        heard: &dyn Fn() -> Vec<IpAddr>,
        gone: Option<&dyn Fn(Vec<pfknock::kevents::Deadline>)>,
    ) -> std::io::Result<(
        pfknock::kevents::Deadlines,
        Option<pfknock::kevents::HowRead>,
    )> {
        // The reading's dumps of authorized sets wait; a meter's does not.
        let gate = self.st().gate.clone().filter(|_| !set.contains("_m"));
        if let Some(g) = gate {
            let (open, cv) = &*g;
            let held = open.lock().unwrap();
            let _ = cv
                .wait_timeout_while(held, std::time::Duration::from_secs(10), |o| !*o)
                .unwrap();
        }
        // What the set held as the dump began: what timed out while it
        // ran is let go of (`gone`), as the kernel's reading does between
        // its dumps; without `gone` it is gone from the answer unsaid.
        let before: Vec<(IpAddr, i64)> = match self.st().set(set) {
            Some(s) => s.elems.iter().map(|(a, d)| (*a, *d)).collect(),
            None => Vec::new(),
        };
        let read = self.dump_noted(set)?;
        let now = self.st().now;
        let went = before.into_iter().filter(|(_, d)| *d <= now);
        let went: Vec<_> = went.map(|(a, d)| (a, Some(d)).into()).collect();
        if let Some(g) = gone.filter(|_| !went.is_empty()) {
            g(went);
        }
        let h = heard();
        self.st().heard.push((set.to_owned(), h));
        Ok(read)
    }
    /// The set's count of elements (those past their deadline are gone).
    fn counted(&mut self, set: &str) -> std::io::Result<Option<u64>> {
        match self.st().set(set) {
            None => Err(std::io::Error::from_raw_os_error(libc::ENOENT)),
            Some(s) => Ok(Some(s.elems.len() as u64)),
        }
    }
    /// The same kernel, for a reading beside the loop.
    fn reader(&self) -> Option<std::io::Result<Box<dyn ElementLookup + Send>>> {
        Some(Ok(Box::new(self.clone())))
    }
}

#[derive(Clone, Default)]
struct Mem(
    Arc<Mutex<Vec<(Level, String)>>>,
    /// Lines that wait for syslog, as `Log::waiting` says it.
    Arc<std::sync::atomic::AtomicUsize>,
    /// Syslog takes no line: each one logged waits (counted in `.1`).
    Arc<std::sync::atomic::AtomicBool>,
);

impl Log for Mem {
    fn log(&mut self, level: Level, msg: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        self.0.lock().unwrap().push((level, msg.to_owned()));
        if self.2.load(Relaxed) {
            self.1.fetch_add(1, Relaxed);
        }
    }
    fn waiting(&self) -> usize {
        self.1.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Mem {
    /// The lines logged since the last take, debug lines left out.
    fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .drain(..)
            .filter(|(l, _)| *l != Level::Debug)
            .map(|(_, m)| m)
            .collect()
    }
    /// The lines `f` takes, out of the log; the rest stay.
    fn take_where(&self, f: impl Fn(&str) -> bool) -> Vec<String> {
        let mut all = self.0.lock().unwrap();
        let (got, rest): (Vec<_>, Vec<_>) = all.drain(..).partition(|(_, m)| f(m));
        *all = rest;
        got.into_iter().map(|(_, m)| m).collect()
    }
}

const SSH: &str =
    "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\nrate = \"3/5\"\nttl = \"60s\"\n";

/// A second service, for reloads that remove one.
const WEB: &str = "[[service]]\nname = \"web\"\nprotect = [443]\nknock = [1235]\nttl = \"60s\"\n";

/// The lines of a reload that took ssh_6 (one authorization) and web_4
/// (two) away.
fn reloaded_without_ssh_6_and_web(l: &[String]) {
    assert_eq!(l.len(), 3, "{l:?}");
    assert!(l[0].starts_with("reloaded "), "{l:?}");
    assert_eq!(
        l[1..],
        [
            "set ssh_6 of service ssh deleted by the reload: 1 authorizations went with it",
            "set web_4 of service web deleted by the reload: 2 authorizations went with it",
        ]
    );
}

struct Rig {
    d: Daemon<Nft, Nft, Mem>,
    k: Nft,
    log: Mem,
    path: PathBuf,
    _dir: common::Scratch,
}

fn rig(name: &str, conf: &str) -> Rig {
    let dir = common::Scratch::new(&format!("nft-daemon-{name}"));
    let path = dir.join("pfknock.toml");
    fs::write(&path, conf).unwrap();
    let k = Nft::default();
    k.at(T0);
    let log = Mem::default();
    let (cfg, _) = Config::load(&path).unwrap();
    let mut d = Daemon::start(cfg, &path, k.clone(), k.clone(), log.clone(), T0 / 1000).unwrap();
    d.use_events(Box::new(k.clone()), T0);
    let started = log.take();
    assert!(started[0].starts_with("started: "), "{started:?}");
    Rig {
        d,
        k,
        log,
        path,
        _dir: dir,
    }
}

impl Rig {
    /// The clock moves to `t` (ms); the daemon acts if something is due.
    fn at(&mut self, t: i64) {
        self.k.at(t);
        if self.d.next_due_ms().is_some_and(|due| due <= t) {
            self.d.tick_ms(t);
        }
    }
    /// A knock at `t`: the kernel adds or refreshes, then its log packet
    /// reaches the daemon.
    fn knock(&mut self, t: i64, a: &str) -> IpAddr {
        self.at(t);
        let a = self.k.knock("ssh_4", a);
        self.event(
            t,
            KernelEvent::Knock {
                prefix: "pfknock ssh: ".into(),
                addr: a,
            },
        );
        a
    }
    /// The kernel's event `ev` at `t` (ms), and what is left to say of
    /// a transaction it ends, a part at a time, as the loop says it while
    /// the log takes the lines.
    fn event(&mut self, t: i64, ev: KernelEvent) {
        self.k.at(t);
        self.d.kernel(ev, t);
        for _ in 0..10_000 {
            if !self.d.unsaid() {
                break;
            }
            self.d.say_more(t);
        }
    }
    /// `count` hosts (`nth`) added to ssh_4 by another process at T0,
    /// until T0 + 60 s, and followed by the daemon (their lines taken).
    fn added_by_others(&mut self, count: u32) {
        let known: Vec<Deadline> = (0..count)
            .map(|i| Deadline::new(nth(i), Some(T0 + 60_000)))
            .collect();
        {
            let mut st = self.k.st();
            let elems = &mut st.sets.as_mut().unwrap().get_mut("ssh_4").unwrap().elems;
            elems.extend(known.iter().map(|e| (e.addr(), T0 + 60_000)));
        }
        let added = KernelEvent::Elements {
            set: "ssh_4".into(),
            added: true,
            addrs: known.into(),
        };
        self.others(T0, vec![added]);
        self.log.take();
    }
    /// The kernel drops notifications at `t` (ms): the reading of the
    /// sets that follows is held running until its gate opens (`open`).
    fn overrun_held(&mut self, t: i64) -> Gate {
        let gate = shut();
        self.k.st().gate = Some(gate.clone());
        self.event(t, KernelEvent::Overrun);
        assert!(self.d.reading().is_some());
        self.log.take();
        gate
    }
    /// A command through the control socket, at `t` (ms).
    fn command(&mut self, t: i64, argv: &[&str]) -> pfknock::control::Reply {
        self.k.at(t);
        let req = Request {
            config: self.path.clone(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
        };
        self.d.control(&req, t)
    }
    /// A transaction by another process: its notifications, then the
    /// commit that names it.
    fn others(&mut self, t: i64, evs: Vec<KernelEvent>) {
        for ev in evs {
            self.event(t, ev);
        }
        self.event(
            t,
            KernelEvent::Commit {
                pid: 4242,
                process: "nft".into(),
            },
        );
    }
}

/// What holds a reading running until it opens (`State::gate`).
type Gate = Arc<(Mutex<bool>, std::sync::Condvar)>;

/// A gate, shut: a reading given it is held running (`State::gate`).
fn shut() -> Gate {
    Arc::new((Mutex::new(false), std::sync::Condvar::new()))
}

/// Let the reading `gate` holds go on.
fn open(gate: &Gate) {
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
}

/// Service ssh's authorized table, as the daemon names it.
fn ssh_table() -> TableRef {
    TableRef::new(
        &AnchorName::new("pfknock").unwrap(),
        &pfknock::name::TableName::new("ssh").unwrap(),
    )
}

/// The `i`th of many IPv4 hosts, from 198.18.0.0 on.
fn nth(i: u32) -> IpAddr {
    IpAddr::from([198, 18 + (i >> 16) as u8, (i >> 8) as u8, i as u8])
}

fn s(ms: i64) -> i64 {
    ms * 1000
}

/// The record a stop keeps for the next start, written straight from the
/// book (`Daemon::write_record`, no copy of every host beside it): the
/// same file a snapshot written whole gives, each host of each service and
/// family once, and read back the snapshot itself.
#[test]
fn the_record_written_from_the_book_is_the_snapshot() {
    // web first: the record names its tables in order all the same.
    let mut r = rig("record-from-book", &format!("{WEB}{SSH}"));
    let hosts = [
        ("ssh_4", "pfknock ssh: ", "198.18.0.9"),
        ("ssh_4", "pfknock ssh: ", "198.18.0.3"),
        ("ssh_6", "pfknock ssh: ", "fd00::3"),
        ("web_4", "pfknock web: ", "198.18.0.20"),
        ("web_6", "pfknock web: ", "fd00::20"),
        ("web_6", "pfknock web: ", "fd00::2"),
    ];
    for (i, (set, prefix, a)) in hosts.into_iter().enumerate() {
        let t = T0 + s(i as i64);
        r.k.at(t);
        let addr = r.k.knock(set, a);
        let knock = KernelEvent::Knock {
            prefix: prefix.into(),
            addr,
        };
        r.event(t, knock);
    }
    let dir = r.path.parent().unwrap().to_owned();
    let (streamed, whole) = (dir.join("streamed.state"), dir.join("whole.state"));
    r.d.write_record(&streamed);
    let snap = r.d.snapshot();
    pfknock::daemon::state::write(&whole, &snap);
    let text = fs::read_to_string(&streamed).unwrap();
    assert_eq!(text, fs::read_to_string(&whole).unwrap());
    // Each host knocked, of its service, and no other.
    for (name, want) in [
        ("ssh", ["198.18.0.3", "198.18.0.9", "fd00::3"]),
        ("web", ["198.18.0.20", "fd00::2", "fd00::20"]),
    ] {
        let t = TableRef::new(
            &AnchorName::new("pfknock").unwrap(),
            &pfknock::name::TableName::new(name).unwrap(),
        );
        let held: Vec<String> = (snap.hosts(&t.to_string()).into_iter().flatten())
            .map(|(n, _)| n.addr().to_string())
            .collect();
        assert_eq!(held, want, "{text}");
    }
    assert_eq!(text.lines().count(), 6, "{text}");
    assert_eq!(pfknock::daemon::state::take(&streamed), Some(snap));
}

#[test]
fn an_authorization_is_logged_once_and_expires_at_the_kernels_millisecond() {
    let mut r = rig("expiry", SSH);
    let a = r.knock(T0 + 300, "198.18.0.9");
    assert_eq!(
        r.log.take(),
        ["authorized 198.18.0.9 service=ssh table=ssh anchor=pfknock ttl=1m"]
    );
    // The kernel's deadline, not a second rounded either way.
    assert_eq!(r.k.deadline("ssh_4", a), Some(T0 + 300 + s(60)));
    assert_eq!(r.d.next_due_ms(), Some(T0 + 300 + s(60) + COALESCE));
    // The connects past the limit of the same knock: no second line.
    r.knock(T0 + 700, "198.18.0.9");
    assert!(r.log.take().is_empty());
    // One millisecond early: still there, nothing logged, no look-up made
    // before it is due.
    let before = r.k.st().lookups;
    r.at(T0 + 700 + s(60) - 1);
    assert!(r.log.take().is_empty());
    assert_eq!(r.k.holds("ssh_4"), [a]);
    assert_eq!(r.k.st().lookups, before);
    r.at(T0 + 700 + s(60) + COALESCE - 1);
    assert!(r.log.take().is_empty());
    r.at(T0 + 700 + s(60) + COALESCE);
    assert_eq!(
        r.log.take(),
        ["expired 198.18.0.9 service=ssh table=ssh anchor=pfknock age=1m ttl=1m"]
    );
    assert!(r.k.holds("ssh_4").is_empty());
    assert_eq!(r.d.next_due_ms(), None);
}

#[test]
fn a_knock_again_after_two_seconds_is_one_renewed_line_and_moves_the_deadline() {
    let mut r = rig("renew", SSH);
    r.knock(T0, "198.18.0.9");
    r.log.take();
    r.knock(T0 + s(30), "198.18.0.9");
    let a = r.knock(T0 + s(30) + 400, "198.18.0.9");
    assert_eq!(
        r.log.take(),
        ["renewed 198.18.0.9 service=ssh table=ssh anchor=pfknock age=30s ttl=1m"]
    );
    // The deadline moved to the renewal's: nothing wakes the daemon at
    // the first one, and it expires at the second.
    let renewed = T0 + s(90) + 400;
    assert_eq!(r.d.next_due_ms(), Some(renewed + COALESCE));
    r.at(T0 + s(60) + COALESCE);
    assert_eq!(
        r.k.holds("ssh_4"),
        [a],
        "still open past the first deadline"
    );
    r.at(renewed + COALESCE - 1);
    assert!(r.log.take().is_empty());
    r.at(renewed + COALESCE);
    assert_eq!(
        r.log.take(),
        ["expired 198.18.0.9 service=ssh table=ssh anchor=pfknock age=1m ttl=1m"]
    );
    assert!(r.k.holds("ssh_4").is_empty());
    assert_eq!(r.d.next_due_ms(), None);
}

/// `pfknock flush` through the daemon, where the kernel empties each set
/// in one step and tells back what it removed: the reply and the log name
/// exactly those, the kernel holds none, the daemon knows none and says
/// no expiry later; where the kernel removed more than it could tell, the
/// reply says so, and the daemon still knows none.
#[test]
fn a_flush_says_what_the_kernel_told_back_and_forgets_the_rest_too() {
    for room in [None, Some(1)] {
        let mut r = rig("flush-echo", SSH);
        r.at(T0);
        for h in ["198.18.0.1", "198.18.0.2", "198.18.0.3"] {
            r.knock(T0, h);
        }
        r.log.take();
        r.k.st().echo_room = room;
        let reply = r.command(T0 + s(2), &["flush"]);
        assert!(reply.error.is_none(), "{:?}", reply.error);
        let said = reply.done.stderr.join("\n");
        let told = r.log.take_where(|l| l.starts_with("flushed "));
        assert!(r.k.holds("ssh_4").is_empty(), "{room:?}");
        let t = ssh_table();
        assert_eq!(r.d.known(&t), Some(0), "{room:?}");
        match room {
            None => {
                assert_eq!(said, "ssh in table inet pfknock: 3 addresses deleted.");
                assert_eq!(told.len(), 3, "{told:?}");
                assert!(
                    told[0].starts_with("flushed 198.18.0.1 service=ssh "),
                    "{told:?}"
                );
                assert!(
                    told[0].ends_with(" age=2s ttl=1m by pfknock flush"),
                    "{told:?}"
                );
            }
            Some(_) => {
                assert!(
                    said.starts_with("ssh in table inet pfknock: 1 addresses deleted, and more"),
                    "{said}"
                );
                assert_eq!(told.len(), 1, "{told:?}");
            }
        }
        r.at(T0 + s(120));
        let l = r.log.take();
        assert!(l.iter().all(|x| !x.starts_with("expired")), "{l:?}");
    }
}

/// `pfknock revoke` overtakes the knock's log packet: the host is not
/// tracked, and no restore brings it back.
#[test]
fn a_revoke_that_overtakes_the_knock_event_wins() {
    let mut r = rig("revoke-race", SSH);
    r.at(T0);
    let a = r.k.knock("ssh_4", "198.18.0.9");
    let reply = r.command(T0 + 5, &["revoke", "198.18.0.9"]);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    r.event(
        T0 + 10,
        KernelEvent::Knock {
            prefix: "pfknock ssh: ".into(),
            addr: a,
        },
    );
    let l = r.log.take();
    assert_eq!(l.len(), 2, "{l:?}");
    assert!(l[0].starts_with("revoked 198.18.0.9 service=ssh"), "{l:?}");
    assert_eq!(
        l[1],
        "authorized 198.18.0.9 service=ssh table=ssh anchor=pfknock ttl=1m \
         (removed again before the daemon saw it)"
    );
    // Someone deletes the table: it comes back without the revoked host.
    r.k.delete_table();
    r.others(
        T0 + s(1),
        vec![KernelEvent::Changed {
            what: "table",
            name: "pfknock".into(),
        }],
    );
    assert!(r.k.holds("ssh_4").is_empty(), "the revoked host came back");
    let l = r.log.take();
    assert!(
        l.iter().any(|x| x.contains("restored 0 authorizations")),
        "{l:?}"
    );
    assert_eq!(r.d.next_due_ms(), None);
}

/// A deleted table is loaded again and each authorization put back with
/// the whole seconds it had left, never more.
#[test]
fn a_restore_gives_back_the_time_left_and_no_more() {
    let mut r = rig("restore", SSH);
    let a = r.knock(T0, "198.18.0.9");
    let b = r.knock(T0 + s(40), "198.18.0.10");
    r.log.take();
    let loads = r.k.st().loads;
    r.k.delete_table();
    r.others(
        T0 + s(50) + 500,
        vec![
            KernelEvent::Changed {
                what: "set",
                name: "ssh_4".into(),
            },
            KernelEvent::Changed {
                what: "table",
                name: "pfknock".into(),
            },
        ],
    );
    assert_eq!(r.k.st().loads, loads + 1);
    assert_eq!(
        r.log.take(),
        [
            "table restored after a change by nft[4242] (set ssh_4, table pfknock): restored 2 authorizations"
        ]
    );
    // a had 9.5 s left, b 49.5 s: 9 and 49 whole seconds.
    assert_eq!(r.k.deadline("ssh_4", a), Some(T0 + s(50) + 500 + s(9)));
    assert_eq!(r.k.deadline("ssh_4", b), Some(T0 + s(50) + 500 + s(49)));
    // Each expires (and is logged) once, at the kernel's deadline.
    r.at(T0 + s(59) + 499);
    assert!(r.log.take().is_empty(), "not before the kernel's deadline");
    r.at(T0 + s(59) + 500 + COALESCE);
    let l = r.log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("expired 198.18.0.9 "), "{l:?}");
}

/// A reading that may have missed an element that stayed in the set (the
/// set changed throughout its dumps) says so as a warning, and is taken as
/// read; one that does not doubt says how at debug only.
#[test]
fn a_reading_that_may_miss_an_element_says_so_as_a_warning() {
    for doubtful in [true, false] {
        let mut r = rig("overrun-doubt", SSH);
        r.d.read_aside();
        r.k.st().dump_doubts = Some(doubtful);
        r.k.knock("ssh_4", "198.18.0.9");
        r.event(T0, KernelEvent::Overrun);
        r.log.take();
        r.d.read_done();
        let all = r.log.0.lock().unwrap().clone();
        let said: Vec<&(Level, String)> = all
            .iter()
            .filter(|(_, m)| m.starts_with("set ssh_4: read"))
            .collect();
        let level = if doubtful {
            Level::Warning
        } else {
            Level::Debug
        };
        let line = format!("set ssh_4: read, doubting: {doubtful}");
        assert_eq!(said, [&(level, line)], "{all:?}");
        assert!(
            all.iter()
                .any(|(_, m)| m.starts_with("authorized 198.18.0.9 ")),
            "taken as read: {all:?}"
        );
    }
}

/// The same overrun, with the reading beside the loop (as `run` does it):
/// until it is done, nothing is said but the warning, SIGINFO is answered
/// with a line that says so, and then the same lines come as when it runs
/// in the loop.
#[test]
fn an_overrun_read_beside_the_loop_says_the_same_once_the_reading_is_done() {
    let mut r = rig("overrun-aside", SSH);
    r.d.read_aside();
    r.knock(T0, "198.18.0.8");
    assert_eq!(r.log.take().len(), 1);
    r.at(T0 + 500);
    r.k.knock("ssh_4", "198.18.0.9");
    r.k.remove("ssh_4", "198.18.0.8");
    r.event(T0 + 600, KernelEvent::Overrun);
    assert_eq!(
        r.log.take(),
        ["the kernel dropped notifications: reading the sets again"]
    );
    assert!(r.d.reading().is_some());
    r.d.status(T0 / 1000 + 1);
    let l = r.log.take();
    assert!(
        l.iter()
            .any(|x| x.starts_with("status: reading the sets for ")),
        "{l:?}"
    );
    // The count is what is known before the reading: said as such.
    assert!(
        l.iter().any(|x| x.starts_with("status <ssh>")
            && x.contains(" entries so far (reading the sets), next expiry")),
        "{l:?}"
    );
    r.d.read_done();
    r.d.status(T0 / 1000 + 1);
    let l = r.log.take_where(|l| l.starts_with("status"));
    assert!(
        l.iter().all(|x| !x.contains("reading")) && l.iter().any(|x| x.starts_with("status <ssh>")),
        "{l:?}"
    );
    assert!(r.d.reading().is_none());
    let late = "(learned late: the kernel dropped notifications)";
    assert_eq!(
        r.log.take(),
        [
            format!("authorized 198.18.0.9 service=ssh table=ssh anchor=pfknock ttl=1m {late}"),
            format!("removed 198.18.0.8 service=ssh table=ssh anchor=pfknock age=1s ttl=1m {late}"),
        ]
    );
    let t = ssh_table();
    assert_eq!(r.d.known(&t), Some(1));
}

/// A start's parts: a scratch directory with SSH's config in it, the
/// config, the kernel model at T0 (nothing loaded yet) and a log.
fn start_parts(name: &str) -> (common::Scratch, PathBuf, Config, Nft, Mem) {
    let dir = common::Scratch::new(&format!("nft-daemon-{name}"));
    let path = dir.join("pfknock.toml");
    fs::write(&path, SSH).unwrap();
    let (cfg, _) = Config::load(&path).unwrap();
    let k = Nft::default();
    k.at(T0);
    (dir, path, cfg, k, Mem::default())
}

/// `run`'s start: the sets are read beside the loop, after the detach.
/// Until that reading is done the daemon knows nothing, says nothing of
/// the last run's record, answers SIGINFO with a line that says it reads,
/// and a stop keeps the record as it was; once done, it knows the sets
/// and says what happened while no daemon ran.
#[test]
fn the_start_reads_the_sets_beside_the_loop_and_then_compares_the_record() {
    let (dir, path, cfg, k, log) = start_parts("start-aside");
    let t = ssh_table();
    // The last run knew .7 (gone now), not .8.
    let key = |a: &str| (t.to_string(), a.parse::<Net>().unwrap());
    let record: pfknock::daemon::state::Known = [(key("198.18.0.7"), T0 / 1000 - 100)].into();
    let start = |record: &pfknock::daemon::state::Known, knocks: &[&str]| {
        let mut d = Daemon::start(
            cfg.clone(),
            &path,
            k.clone(),
            k.clone(),
            log.clone(),
            T0 / 1000,
        )
        .unwrap();
        // .8 knocked while no daemon ran (the load made the set).
        k.knock("ssh_4", "198.18.0.8");
        let st = dir.join("pfknock.pid.state");
        pfknock::daemon::state::write(&st, record);
        d.state = Some(st.clone());
        d.use_events_later(Box::new(k.clone()), pfknock::daemon::state::take(&st));
        // Knocks after the daemon listens, before the reading passes
        // them: in the set it reads, their events in the loop's queue.
        for a in knocks {
            k.knock("ssh_4", a);
        }
        d.read_aside();
        d.begin(T0 + 10);
        (d, st)
    };
    let (mut d, st) = start(&record, &[]);
    assert!(d.reading().is_some(), "the start's reading runs beside");
    assert_eq!(d.known(&t), Some(0));
    let l = log.take();
    assert!(
        l.iter().all(|x| !x.contains("while the daemon was down")),
        "{l:?}"
    );
    d.status(T0 / 1000 + 1);
    let l = log.take();
    assert!(
        l.iter()
            .any(|x| x.starts_with("status: reading the sets for ")),
        "{l:?}"
    );
    // Stopped during it: the record stays as it was, not the empty book.
    d.stop("SIGTERM");
    assert_eq!(pfknock::daemon::state::take(&st), Some(record.clone()));
    drop(d);
    log.take();
    // Again, to the end of the reading, with .10 knocking meanwhile.
    let (mut d, _) = start(&record, &["198.18.0.10"]);
    let ten: IpAddr = "198.18.0.10".parse().unwrap();
    d.read_done_heard(|| vec![("pfknock ssh: ".to_owned(), ten)]);
    assert!(d.reading().is_none());
    assert_eq!(
        d.known(&t),
        Some(1),
        "the knock's element waits for its event"
    );
    let l = log.take();
    let down = "while the daemon was down";
    assert!(
        l.iter()
            .any(|x| x.starts_with("authorized 198.18.0.8 ") && x.ends_with(down)),
        "{l:?}"
    );
    assert!(
        l.iter()
            .any(|x| x.contains(" 198.18.0.7 ") && x.ends_with(down)),
        "{l:?}"
    );
    // The knock that waited: said once, when its event comes.
    let until = k.deadline("ssh_4", ten);
    for _ in 0..3 {
        d.kernel(
            KernelEvent::Knock {
                prefix: "pfknock ssh: ".into(),
                addr: ten,
            },
            T0 + 15,
        );
    }
    let l = log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("authorized 198.18.0.10 "), "{l:?}");
    assert_eq!(d.known(&t), Some(2));
    // Due with the deadline the reading found: the kernel's.
    assert_eq!(d.next_due_ms(), until.map(|u| u + COALESCE));
    // A knock after the start is told once, as usual.
    k.knock("ssh_4", "198.18.0.9");
    d.kernel(
        KernelEvent::Knock {
            prefix: "pfknock ssh: ".into(),
            addr: "198.18.0.9".parse().unwrap(),
        },
        T0 + 20,
    );
    let l = log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("authorized 198.18.0.9 "), "{l:?}");
}

/// A reading that takes long (a dump of a million elements takes the
/// kernel a minute): each element is due at the kernel's own deadline,
/// not at one as much earlier as the reading was long, and nothing is
/// said of it before the kernel lets it go.
#[test]
fn a_long_reading_keeps_the_kernels_deadlines() {
    let mut r = rig("long-reading", SSH);
    let a = r.knock(T0, "198.18.0.5");
    r.log.take();
    let until = r.k.deadline("ssh_4", a).unwrap();
    assert_eq!(until, T0 + 60_000);
    r.k.st().dump_takes = 20_000;
    r.d.read_aside();
    r.event(T0 + 100, KernelEvent::Overrun);
    read_to_end(&mut r.d);
    // Each set's dump took 20 s; the knock was not missed.
    let now = r.k.st().now;
    assert!(now >= T0 + 40_100, "{now}");
    let l = r.log.take();
    assert!(l.iter().all(|x| !x.contains("198.18.0.5")), "{l:?}");
    assert_eq!(r.d.next_due_ms(), Some(until + COALESCE));
    r.k.st().dump_takes = 0;
    r.at(until - 1);
    assert_eq!(r.k.holds("ssh_4"), vec![a]);
    let l = r.log.take();
    assert!(l.is_empty(), "said before the kernel let it go: {l:?}");
    r.at(until + COALESCE);
    assert!(r.k.holds("ssh_4").is_empty());
    let l = r.log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("expired 198.18.0.5 "), "{l:?}");
}

/// A start's reading beside the loop that takes long (20 s a dump here,
/// minutes at a million): an authorization that times out while it runs
/// is let go of by the reading and said expired by the loop once the
/// reading knows, with the age its deadline gives, before the take-in
/// and once; one that stays is taken in and expires at its deadline; the
/// count found is what the kernel holds. Before, the model's reading
/// dropped it unsaid (the kernel's kept it, for the take-in to expire).
#[test]
fn an_authorization_that_times_out_during_the_start_is_said_once() {
    let (a, b) = ("198.18.0.1", "198.18.0.2");
    let (mut d, k, log, _path, _dir) = reading_rig_of("gone-while-read", SSH, |k| {
        let mut st = k.st();
        st.dump_takes = 20_000;
        let set = st.set("ssh_4").unwrap();
        set.elems.insert(a.parse().unwrap(), T0 + 5_000);
        set.elems.insert(b.parse().unwrap(), T0 + 50_000);
    });
    read_to_end(&mut d);
    let l = log.take();
    assert_eq!(lines_of(&l, "expired", a), 1, "{l:?}");
    let line = l
        .iter()
        .find(|x| x.starts_with("expired 198.18.0.1 "))
        .unwrap();
    assert!(line.contains("age=1m ttl=1m"), "{line}");
    assert_eq!(lines_of(&l, "expired", b), 0, "{l:?}");
    assert!(l.contains(&found_line(1)), "{l:?}");
    assert_eq!(k.holds("ssh_4"), vec![b.parse::<IpAddr>().unwrap()]);
    assert_eq!(d.known(&ssh_table()), Some(1));
    k.st().dump_takes = 0;
    tick_to(&mut d, &k, T0 + 50_000 + COALESCE);
    let l = log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("expired 198.18.0.2 "), "{l:?}");
    assert!(k.holds("ssh_4").is_empty());
}

/// A host others added while the start's reading ran (said, and kept as a
/// record), whose element times out during the reading's dump: the
/// reading lets go of it, but the loop says nothing of that, as its
/// record says it: expired once, at its deadline, from the book. And
/// one the reading found that stays: not said.
#[test]
fn a_host_said_during_the_reading_is_said_expired_once() {
    let gate = shut();
    let a: IpAddr = "198.18.0.3".parse().unwrap();
    let (mut d, k, log, _path, _dir) = reading_rig_with("gone-said", |k| {
        k.knock("ssh_4", "198.18.0.9");
        k.st().dump_takes = 20_000;
        k.st().gate = Some(gate.clone());
    });
    added_while_read(&mut d, &k, &log, "ssh_4", Deadline::new(a, Some(T0 + s(5))));
    open(&gate);
    read_to_end(&mut d);
    let now = k.st().now;
    assert!(now >= T0 + s(40), "{now}");
    tick_to(&mut d, &k, now);
    let l = log.take();
    assert_eq!(lines_of(&l, "expired", "198.18.0.3"), 1, "{l:?}");
    assert_eq!(lines_of(&l, "expired", "198.18.0.9"), 0, "{l:?}");
    assert_eq!(
        k.holds("ssh_4"),
        vec!["198.18.0.9".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(d.known(&ssh_table()), Some(1));
}

/// A reading of 80,000 elements after an overrun, beside the loop: its
/// answer is taken in a part at a time, one part a turn (signals are
/// answered between parts, a status line says the reading goes on); at
/// the end the daemon knows and says exactly what the same reading taken
/// in one piece gives: those that came, those that went, and the count.
#[test]
fn a_large_reading_is_taken_in_by_parts_and_says_the_same_as_in_one_piece() {
    let conf = format!("log_burst = 100000\n{SSH}size = 131072\n");
    let said = |aside: bool| {
        let mut r = rig(if aside { "parts-aside" } else { "parts" }, &conf);
        r.at(T0);
        // Known: 0..60,000. In the kernel after the overrun: 20,000..80,000.
        r.added_by_others(60_000);
        {
            let mut st = r.k.st();
            let elems = &mut st.sets.as_mut().unwrap().get_mut("ssh_4").unwrap().elems;
            for i in 0..20_000 {
                elems.remove(&nth(i));
            }
            elems.extend((60_000..80_000).map(|i| (nth(i), T0 + 90_000)));
        }
        if aside {
            r.d.read_aside();
        }
        r.event(T0 + 600, KernelEvent::Overrun);
        let (mut turns, mut said, mut most) = (0, Vec::new(), 0);
        while r.d.reading().is_some() && turns < 1000 {
            r.d.read_done();
            turns += 1;
            let part = r.log.take();
            most = most.max(part.len());
            said.extend(part);
            if r.d.reading().is_some() {
                r.d.status(T0 / 1000 + 1);
                let status = r.log.take_where(|l| l.starts_with("status"));
                assert!(
                    status.iter().any(|x| x
                        .starts_with("status: taking in what a reading of the sets found (begun ")),
                    "{status:?}"
                );
            }
        }
        let t = ssh_table();
        said.extend(r.log.take());
        (said, r.d.known(&t), turns, r.d.next_due_ms(), most)
    };
    let (one, known, turns, due, _) = said(false);
    assert_eq!(turns, 0);
    assert_eq!(known, Some(60_000));
    assert_eq!(one.len(), 1 + 20_000 + 20_000, "{:?}", &one[..3]);
    let (parts, known_parts, turns, due_parts, most) = said(true);
    // The 40,000 lines learned late are said SAY_AT_ONCE a turn at most,
    // the overrun's warning with the first.
    use pfknock::daemon::SAY_AT_ONCE;
    assert!(turns >= 40_000 / SAY_AT_ONCE, "{turns} turns");
    assert!(most <= 1 + SAY_AT_ONCE, "{most} lines in one turn");
    assert_eq!(parts.len(), one.len());
    let differ = parts.iter().zip(&one).position(|(a, b)| a != b);
    assert_eq!(differ, None, "{:?}", differ.map(|i| (&parts[i], &one[i])));
    assert_eq!(known_parts, known);
    assert_eq!(due_parts, due);
}

/// Lost notifications: the sets are read again, and what changed
/// meanwhile is logged as learned late (knocks whose events were lost, a
/// host someone removed); a knock event read after that renews nothing
/// and says nothing; lost events for good: back to polling.
#[test]
fn an_overrun_reads_the_sets_again_and_a_lost_source_falls_back_to_polling() {
    let mut r = rig("overrun", SSH);
    r.knock(T0, "198.18.0.8");
    assert_eq!(r.log.take().len(), 1);
    r.at(T0 + 500);
    r.k.knock("ssh_4", "198.18.0.9");
    r.k.knock("ssh_4", "198.18.0.10");
    r.k.remove("ssh_4", "198.18.0.8");
    r.event(T0 + 600, KernelEvent::Overrun);
    let late = "(learned late: the kernel dropped notifications)";
    assert_eq!(
        r.log.take(),
        [
            "the kernel dropped notifications: reading the sets again".to_owned(),
            format!("authorized 198.18.0.9 service=ssh table=ssh anchor=pfknock ttl=1m {late}"),
            format!("authorized 198.18.0.10 service=ssh table=ssh anchor=pfknock ttl=1m {late}"),
            format!("removed 198.18.0.8 service=ssh table=ssh anchor=pfknock age=1s ttl=1m {late}"),
        ]
    );
    // The knock events of .9, read 5 s late: no renewal, nothing said,
    // the kernel's deadline kept.
    r.event(
        T0 + s(5),
        KernelEvent::Knock {
            prefix: "pfknock ssh: ".into(),
            addr: "198.18.0.9".parse().unwrap(),
        },
    );
    assert!(r.log.take().is_empty());
    // .8's old deadline passes without a line (it was said removed).
    r.at(T0 + s(60) + COALESCE);
    assert!(r.log.take().is_empty());
    assert_eq!(r.d.next_due_ms(), Some(T0 + 500 + s(60) + COALESCE));
    r.at(T0 + 500 + s(60) + COALESCE);
    r.at(T0 + s(60) + COALESCE);
    let l = r.log.take();
    assert_eq!(l.len(), 2, "both expire, each once: {l:?}");
    assert!(r.d.next_due_ms().is_none());
    assert!(!r.d.polls());
    r.event(T0 + s(61), KernelEvent::Lost("nflog: ENOBUFS".into()));
    assert!(r.d.polls());
    let l = r.log.take();
    assert_eq!(
        l,
        ["kernel events lost (nflog: ENOBUFS): polling every 1s from now on"]
    );
    // The events mode ignores what still arrives.
    r.event(
        T0 + s(62),
        KernelEvent::Knock {
            prefix: "pfknock ssh: ".into(),
            addr: "198.18.0.11".parse().unwrap(),
        },
    );
    assert!(r.log.take().is_empty());
}

/// Polling after the events are lost runs nft(8) at every poll: at most
/// once a second, however short `poll` is (it is for pf); before that the
/// loop waits for the kernel's events, an hour at rest.
#[test]
fn a_lost_source_polls_at_most_once_a_second() {
    let mut r = rig("lost-fast", &format!("poll = \"50ms\"\n{SSH}"));
    r.at(T0);
    r.log.take();
    assert_eq!(r.d.wake_ms(T0), T0 + s(3600));
    r.event(T0 + 10, KernelEvent::Lost("monitor: EBADF".into()));
    assert_eq!(
        r.log.take(),
        ["kernel events lost (monitor: EBADF): polling every 1s from now on"]
    );
    assert_eq!(r.d.wake_ms(T0 + 10), T0 + 10 + s(1));
}

/// More than 8,192 due at once are looked up and said in ticks of 8,192
/// (the loop looks at signals between them), each element once.
#[test]
fn a_mass_expiry_goes_in_ticks_of_8192() {
    let conf = format!("{SSH}size = 131072\n");
    let mut r = rig("mass", &conf);
    r.at(T0);
    let n = 2 * 8_192 + 300;
    let addrs: Vec<Deadline> = (0..n)
        .map(|i: u32| {
            let a = [198, 18 + (i >> 16) as u8, (i >> 8) as u8, i as u8];
            Deadline::new(IpAddr::from(a), Some(T0 + 60_000))
        })
        .collect();
    {
        // Straight into the model's set (its knock looks at every element).
        let mut st = r.k.st();
        let elems = &mut st.sets.as_mut().unwrap().get_mut("ssh_4").unwrap().elems;
        for e in &addrs {
            elems.insert(e.addr(), T0 + 60_000);
        }
    }
    r.others(
        T0,
        vec![KernelEvent::Elements {
            set: "ssh_4".into(),
            added: true,
            addrs: addrs.into(),
        }],
    );
    r.log.take();
    r.at(T0 + s(60) + COALESCE);
    for _ in 0..2 {
        assert_eq!(
            r.log.take(),
            ["expired 8192 authorizations of service ssh at once"]
        );
        assert_eq!(r.d.next_due_ms(), Some(T0 + s(60) + COALESCE));
        r.at(T0 + s(60) + COALESCE);
    }
    assert_eq!(
        r.log.take(),
        ["expired 300 authorizations of service ssh at once"]
    );
    assert!(r.d.next_due_ms().is_none());
}

/// What another process does to the authorized sets is logged with who
/// did it, once; its adds are then expired as the daemon's own.
#[test]
fn changes_by_others_are_logged_with_who_made_them() {
    let mut r = rig("others", SSH);
    r.at(T0);
    let a = r.k.knock("ssh_4", "198.18.0.20");
    r.others(
        T0 + 2,
        vec![KernelEvent::Elements {
            set: "ssh_4".into(),
            added: true,
            addrs: vec![Deadline::new(a, Some(T0 + 2 + 60_000))].into(),
        }],
    );
    assert_eq!(
        r.log.take(),
        ["authorized 198.18.0.20 service=ssh table=ssh anchor=pfknock ttl=1m by nft[4242]"]
    );
    r.at(T0 + s(10));
    r.k.st().set("ssh_4").unwrap().elems.clear();
    r.others(
        T0 + s(10),
        vec![KernelEvent::Elements {
            set: "ssh_4".into(),
            added: false,
            addrs: vec![Deadline::new(a, None)].into(),
        }],
    );
    assert_eq!(
        r.log.take(),
        ["removed 198.18.0.20 service=ssh table=ssh anchor=pfknock age=10s ttl=1m by nft[4242]"]
    );
    r.at(T0 + s(61));
    assert!(r.log.take().is_empty(), "no ghost expiry");
}

/// A SIGHUP that shortens the ttl expires, and logs with the new ttl,
/// what is past it, at once; what is not gets the new deadline.
#[test]
fn a_shorter_ttl_expires_what_is_past_it_at_once() {
    let mut r = rig("retime", SSH);
    r.knock(T0, "198.18.0.9");
    r.knock(T0 + s(25), "198.18.0.10");
    r.log.take();
    fs::write(&r.path, SSH.replace("60s", "30s")).unwrap();
    r.k.at(T0 + s(40));
    r.d.reload((T0 + s(40)) / 1000);
    let l = r.log.take();
    assert!(l[0].starts_with("reloaded "), "{l:?}");
    assert!(
        l.iter()
            .any(|x| x.starts_with("expired 198.18.0.9 ") && x.ends_with("ttl=30s")),
        "{l:?}"
    );
    assert!(!l.iter().any(|x| x.contains("198.18.0.10")), "{l:?}");
    assert_eq!(r.d.next_due_ms(), Some(T0 + s(55) + COALESCE));
    // The set was changed in place: each element kept the minute it was
    // given, and the daemon deleted the one past the new ttl.
    let nine: IpAddr = "198.18.0.9".parse().unwrap();
    let ten: IpAddr = "198.18.0.10".parse().unwrap();
    assert_eq!(r.k.holds("ssh_4"), vec![ten]);
    assert_eq!(r.k.deadline("ssh_4", ten), Some(T0 + s(85)));
    let _ = nine;
    // At .10's new deadline it goes too, said once with the new ttl.
    r.at(T0 + s(55) + COALESCE);
    let l = r.log.take();
    assert_eq!(
        l,
        ["expired 198.18.0.10 service=ssh table=ssh anchor=pfknock age=30s ttl=30s"],
        "{l:?}"
    );
    assert!(r.k.holds("ssh_4").is_empty());
    r.at(T0 + s(90));
    assert!(r.log.take().is_empty(), "nothing more");
}

/// A SIGHUP that lengthens the ttl changes the set in place: what is
/// there keeps the deadline it was given, in the kernel and in the log;
/// a knock after it gets the new ttl.
#[test]
fn a_longer_ttl_leaves_every_deadline_and_gives_new_knocks_the_new_ttl() {
    let mut r = rig("longer", SSH);
    let a = r.knock(T0, "198.18.0.9");
    r.log.take();
    fs::write(&r.path, SSH.replace("60s", "5m")).unwrap();
    r.k.at(T0 + s(10));
    r.d.reload((T0 + s(10)) / 1000);
    assert!(r.log.take()[0].starts_with("reloaded "));
    assert_eq!(r.k.deadline("ssh_4", a), Some(T0 + s(60)));
    assert_eq!(r.d.next_due_ms(), Some(T0 + s(60) + COALESCE));
    let b = r.knock(T0 + s(20), "198.18.0.10");
    assert_eq!(r.k.deadline("ssh_4", b), Some(T0 + s(320)));
    assert_eq!(
        r.log.take(),
        ["authorized 198.18.0.10 service=ssh table=ssh anchor=pfknock ttl=5m"]
    );
    r.at(T0 + s(60) + COALESCE);
    assert_eq!(
        r.log.take(),
        ["expired 198.18.0.9 service=ssh table=ssh anchor=pfknock age=1m ttl=1m"]
    );
    assert_eq!(r.k.holds("ssh_4"), vec![b]);
}

/// `pfknock unload` through the daemon holds: a later change to the
/// table is not undone, and nothing is restored, until `load`.
#[test]
fn unload_through_the_daemon_holds_until_load() {
    let mut r = rig("unload", SSH);
    r.knock(T0, "198.18.0.9");
    r.log.take();
    let reply = r.command(T0 + s(1), &["unload"]);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert_eq!(r.k.st().unloads, 1);
    assert!(r.k.holds("ssh_4").is_empty());
    let loads = r.k.st().loads;
    r.k.delete_table();
    r.others(
        T0 + s(2),
        vec![KernelEvent::Changed {
            what: "table",
            name: "pfknock".into(),
        }],
    );
    assert_eq!(r.k.st().loads, loads, "the daemon undid unload");
    let l = r.log.take();
    assert!(
        l.iter()
            .any(|x| x.contains("unloaded by pfknock unload: 1 authorizations went with it")),
        "{l:?}"
    );
    assert!(
        l.iter()
            .any(|x| x.contains("left as it is until pfknock load")),
        "{l:?}"
    );
    // No expiry line for what went with the unload.
    r.at(T0 + s(61));
    assert!(r.log.take().is_empty());
    let reply = r.command(T0 + s(62), &["load"]);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert_eq!(r.k.st().loads, loads + 1);
    let l = r.log.take();
    assert!(
        l.iter().any(|x| x == "anchor pfknock loaded again"),
        "{l:?}"
    );
}

/// `pfknock unload` during the start's reading, with no record of the
/// last run, whether the reading has dumped the sets already or not
/// (`gated`): done at once, its reply now. The log says it once, with the
/// kernel's count of what went (two found by the reading, one knocked and
/// said during it); after the reading, nothing: what it found is not
/// taken in (the daemon knows of none, nothing comes due, no expiry at
/// the ttl), the knock's event says nothing, and there is no "no record"
/// line. The table stays unloaded. Over a record, the same command waits
/// for the reading: what changed while no daemon ran is said first.
#[test]
fn an_unload_during_the_starts_reading_is_done_at_once_but_over_a_record() {
    for gated in [false, true] {
        let gate = shut();
        let (mut d, k, log, path, _dir) = reading_rig_with("unload-reading", |k| {
            k.knock("ssh_4", "198.18.0.9");
            k.knock("ssh_4", "198.18.0.10");
            if gated {
                k.st().gate = Some(gate.clone());
            }
        });
        for _ in 0..5000 {
            if gated || k.st().heard.len() == 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(k.st().heard.len(), if gated { 0 } else { 2 });
        k.at(T0 + s(1));
        k.knock("ssh_4", "198.18.0.11");
        let knock = KernelEvent::Knock {
            prefix: "pfknock ssh: ".into(),
            addr: "198.18.0.11".parse().unwrap(),
        };
        d.hear(vec![knock.clone()], T0 + s(1));
        assert_eq!(lines_of(&log.take(), "authorized", "198.18.0.11"), 1);
        // And .12 added by nft, heard and said during the reading.
        let twelve = Deadline::new("198.18.0.12".parse().unwrap(), Some(T0 + s(61)));
        let by_nft = added_while_read(&mut d, &k, &log, "ssh_4", twelve);
        let req = Request {
            config: path.clone(),
            argv: vec!["unload".to_owned()],
        };
        let loads = k.st().loads;
        let reply = d.control_while_reading(&req, (T0 + s(2)) / 1000);
        let reply = reply.expect("it does not wait");
        assert!(reply.error.is_none(), "{:?}", reply.error);
        assert_eq!(k.st().unloads, 1);
        assert_eq!(
            log.take(),
            [
                "anchor pfknock unloaded by pfknock unload: 4 authorizations went with it; \
                 kept unloaded until pfknock load or SIGHUP"
            ],
            "gated: {gated}"
        );
        // Again, the reading still running: nothing went with it.
        if gated {
            let reply = d.control_while_reading(&req, (T0 + s(2)) / 1000);
            assert!(reply.expect("it does not wait").error.is_none());
            assert_eq!(
                log.take(),
                [
                    "anchor pfknock unloaded by pfknock unload: 0 authorizations went with it; \
                     kept unloaded until pfknock load or SIGHUP"
                ]
            );
        }
        let unloads = k.st().unloads;
        open(&gate);
        read_to_end(&mut d);
        // What the loop queued meanwhile, worked through after.
        for ev in std::iter::once(knock).chain(by_nft) {
            d.kernel(ev, T0 + s(3));
        }
        d.caught_up((T0 + s(3)) / 1000);
        let l = log.take();
        assert!(l.is_empty(), "gated: {gated}: {l:?}");
        assert_eq!(d.known(&ssh_table()), Some(0));
        assert_eq!(d.next_due_ms(), None);
        tick_to(&mut d, &k, T0 + s(120));
        assert!(log.take().is_empty());
        assert!(k.holds("ssh_4").is_empty(), "the daemon undid the unload");
        assert_eq!(k.st().unloads, unloads);
        assert_eq!(k.st().loads, loads, "the daemon loaded again");
    }
    // Over a record: held.
    let (mut d, k, _log, path, _dir) = record_rig("unload-record", None);
    let req = Request {
        config: path.clone(),
        argv: vec!["unload".to_owned()],
    };
    assert!(d.control_while_reading(&req, T0 / 1000 + 1).is_none());
    assert_eq!(k.st().unloads, 0);
}

/// Datagrams the kernel did not send: the first is logged at once, a
/// flood after it is one line with its number every five minutes.
#[test]
fn forged_datagrams_are_logged_without_flooding_the_log() {
    let mut r = rig("forged", SSH);
    r.event(T0, KernelEvent::Forged("nflog"));
    assert_eq!(
        r.log.take(),
        [
            "nflog: 1 netlink message(s) that the kernel did not send ignored \
          (forged by a local process with CAP_NET_ADMIN)"
        ]
    );
    for i in 0..1000 {
        r.event(T0 + i, KernelEvent::Forged("nflog"));
    }
    assert!(r.log.take().is_empty());
    r.event(T0 + s(300), KernelEvent::Forged("nflog"));
    let l = r.log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("nflog: 1001 netlink message(s)"), "{l:?}");
    assert!(r.k.holds("ssh_4").is_empty());
}

/// Meter ssh_m1_4 full in the kernel model (of a service of size 2:
/// meters hold four times `size`), its 8 elements timing out 4 s on.
fn full_meter(k: &Nft) {
    let mut st = k.st();
    let now = st.now;
    let mut m = Set {
        timeout_ms: 5000,
        ..Default::default()
    };
    for h in 1..=8 {
        m.elems
            .insert(format!("198.18.0.{h}").parse().unwrap(), now + 4000);
    }
    st.sets.as_mut().unwrap().insert("ssh_m1_4".into(), m);
}

/// A full meter: the kernel logs a knock it could not count (the knock
/// rule's own `ip saddr != @meter` rule); the daemon says so once, looks
/// at the meter once a rate window, and says when it has room again.
#[test]
fn a_full_meter_is_logged_when_it_fills_and_when_it_has_room() {
    let mut r = rig("meter", &format!("{SSH}size = 2\n"));
    full_meter(&r.k);
    let full = |r: &mut Rig, t: i64| {
        r.event(
            t,
            KernelEvent::Knock {
                prefix: "pfknock meter ssh_m1_4 full: ".into(),
                addr: "198.18.0.9".parse().unwrap(),
            },
        )
    };
    full(&mut r, T0 + 100);
    full(&mut r, T0 + 1100);
    assert_eq!(
        r.log.take(),
        [
            "set ssh_m1_4 is full (8 elements): knocks it would take are not counted \
          until entries expire; raise the service's size"
        ]
    );
    // SIGUSR2 says so too.
    r.d.status(T0 / 1000 + 2);
    let l = r.log.take();
    assert!(l.iter().any(|x| x.contains("set ssh_m1_4 full")), "{l:?}");
    // Looked at a window after the last knock it dropped (T0 + 6.1 s):
    // its elements timed out at T0 + 4 s, so it has room then.
    r.at(T0 + 6099);
    assert!(r.log.take().is_empty());
    r.at(T0 + 6100);
    assert_eq!(r.log.take(), ["set ssh_m1_4 has room again"]);
    assert_eq!(r.d.next_due_ms(), None, "no more looks");
}

/// A close knock: the kernel's rule took the host out of the set and said
/// so; the daemon logs it once, forgets it (no `expired` line later), and
/// a close knock from a host that was not authorized is no line. A full
/// close meter is logged as knock meters are.
#[test]
fn a_close_knock_is_one_closed_line_and_nothing_after() {
    let mut r = rig("close", &format!("{SSH}close = 1240\n"));
    let a = r.knock(T0 + 100, "198.18.0.9");
    r.knock(T0 + 200, "198.18.0.10");
    r.log.take();
    let close = |r: &mut Rig, t: i64, h: &str| {
        r.k.st()
            .set("ssh_4")
            .unwrap()
            .elems
            .remove(&h.parse().unwrap());
        r.event(
            t,
            KernelEvent::Knock {
                prefix: "pfknock close ssh: ".into(),
                addr: h.parse().unwrap(),
            },
        )
    };
    close(&mut r, T0 + s(5) + 100, "198.18.0.9");
    // Its later connects past the limit: the kernel logs them too.
    close(&mut r, T0 + s(5) + 200, "198.18.0.9");
    close(&mut r, T0 + s(5) + 300, "198.18.0.77");
    assert_eq!(
        r.log.take(),
        ["closed 198.18.0.9 service=ssh table=ssh anchor=pfknock age=5s ttl=1m by knock"]
    );
    assert!(!r.k.holds("ssh_4").contains(&a));
    r.at(T0 + 200 + s(60) + COALESCE);
    assert_eq!(
        r.log.take(),
        ["expired 198.18.0.10 service=ssh table=ssh anchor=pfknock age=1m ttl=1m"],
        "the closed host is not expired again"
    );
    r.event(
        T0 + s(62),
        KernelEvent::Knock {
            prefix: "pfknock meter ssh_close_4 full: ".into(),
            addr: "198.18.0.11".parse().unwrap(),
        },
    );
    let l = r.log.take();
    assert!(
        l.iter().any(|x| x.starts_with("set ssh_close_4 is full")),
        "{l:?}"
    );
}

/// Elements one transaction added expire a few ms apart in the kernel;
/// the daemon looks once for them all, so past `log_burst` they are one
/// line (the whole-second deadlines did that by accident; ms ones need
/// the look to wait `COALESCE`).
#[test]
fn elements_added_together_expire_in_one_line() {
    let mut r = rig("burst", &format!("log_burst = 3\n{SSH}"));
    r.at(T0);
    let addrs: Vec<IpAddr> = (0..5)
        .map(|i| {
            let a: IpAddr = format!("198.18.0.{}", 20 + i).parse().unwrap();
            r.k.st()
                .set("ssh_4")
                .unwrap()
                .elems
                .insert(a, T0 + s(60) + 3 * i);
            a
        })
        .collect();
    r.others(
        T0,
        vec![KernelEvent::Elements {
            set: "ssh_4".into(),
            added: true,
            addrs: addrs
                .iter()
                .enumerate()
                .map(|(i, a)| Deadline::new(*a, Some(T0 + 60_000 + 3 * i as i64)))
                .collect(),
        }],
    );
    assert_eq!(r.log.take().len(), 5, "an authorized line each");
    assert_eq!(r.d.next_due_ms(), Some(T0 + s(60) + COALESCE));
    r.at(T0 + s(60) + COALESCE);
    assert_eq!(
        r.log.take(),
        ["expired 5 authorizations of service ssh at once"]
    );
    assert!(r.k.holds("ssh_4").is_empty());
}

/// On a kernel older than Linux 6.5, a reload that makes a set anew (here:
/// a longer ttl) carries over the
/// elements the load read just before; a knock that lands between that
/// reading and the commit went into the old set, and the daemon reads its
/// log line only after the reload. Such a knock is put back with the new
/// ttl and logged once as an authorization; one removed since the reload
/// (a revoke) is not; nor is one read after the few seconds a reload's
/// knocks can take to arrive.
#[test]
fn a_knock_the_reload_lost_is_put_back_unless_removed_since() {
    let mut r = rig("reload-lost", SSH);
    r.k.st().carry = true;
    r.knock(T0, "198.18.0.9");
    r.log.take();
    fs::write(&r.path, SSH.replace("60s", "90s")).unwrap();
    r.k.at(T0 + s(10));
    r.d.reload((T0 + s(10)) / 1000);
    let l = r.log.take();
    assert!(l[0].starts_with("reloaded "), "{l:?}");
    // Two knocks the reload lost: in the old set only, their log lines
    // read after the reload; one of them revoked before it was read.
    let lost: IpAddr = "198.18.0.10".parse().unwrap();
    let revoked: IpAddr = "198.18.0.11".parse().unwrap();
    let knock = |addr| KernelEvent::Knock {
        prefix: "pfknock ssh: ".into(),
        addr,
    };
    r.k.st()
        .set("ssh_4")
        .unwrap()
        .elems
        .insert(revoked, T0 + s(100));
    let reply = r.command(T0 + s(10) + 5, &["revoke", "198.18.0.11"]);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    r.event(T0 + s(10) + 10, knock(lost));
    r.event(T0 + s(10) + 11, knock(revoked));
    let l = r.log.take();
    assert_eq!(
        l,
        vec![
            "revoked 198.18.0.11 service=ssh table=ssh anchor=pfknock age=0s ttl=1m30s \
             by pfknock revoke"
                .to_owned(),
            "authorized 198.18.0.10 service=ssh table=ssh anchor=pfknock ttl=1m30s".to_owned(),
            "authorized 198.18.0.11 service=ssh table=ssh anchor=pfknock ttl=1m30s \
             (removed again before the daemon saw it)"
                .to_owned(),
        ],
        "{l:?}"
    );
    assert_eq!(r.k.deadline("ssh_4", lost), Some(T0 + s(10) + 10 + s(90)));
    assert_eq!(
        r.k.deadline("ssh_4", revoked),
        None,
        "a revoked host came back"
    );
    // Its expiry is logged at the kernel's deadline.
    r.at(T0 + s(100) + 10 + COALESCE);
    let l = r.log.take();
    assert!(
        l.iter().any(|x| x.starts_with("expired 198.18.0.10 ")),
        "{l:?}"
    );
    // Long after the reload, a knock whose element is gone stays gone.
    let late: IpAddr = "198.18.0.12".parse().unwrap();
    r.event(T0 + s(20), knock(late));
    let l = r.log.take();
    assert!(
        l[0].ends_with("(removed again before the daemon saw it)"),
        "{l:?}"
    );
    assert_eq!(r.k.deadline("ssh_4", late), None);
}

/// On a kernel that makes the set anew (older than Linux 6.5), a renewal
/// the reload lost (the knock refreshed the element in the old set, and
/// the new set got it with the time it had before) gets the ttl
/// it was renewed to, so the kernel and the log agree on its deadline.
#[test]
fn a_renewal_the_reload_lost_gets_its_ttl() {
    let mut r = rig("reload-renewal", SSH);
    r.k.st().carry = true;
    let a = r.knock(T0, "198.18.0.9");
    r.log.take();
    fs::write(&r.path, SSH.replace("60s", "90s")).unwrap();
    r.k.at(T0 + s(50));
    r.d.reload((T0 + s(50)) / 1000);
    r.log.take();
    assert_eq!(
        r.k.deadline("ssh_4", a),
        Some(T0 + s(90)),
        "carried from its start"
    );
    // Its log line read after the reload; the kernel holds the old time.
    r.event(
        T0 + s(50) + 10,
        KernelEvent::Knock {
            prefix: "pfknock ssh: ".into(),
            addr: a,
        },
    );
    let l = r.log.take();
    assert_eq!(
        l,
        vec!["renewed 198.18.0.9 service=ssh table=ssh anchor=pfknock age=50s ttl=1m30s"],
        "{l:?}"
    );
    assert_eq!(r.k.deadline("ssh_4", a), Some(T0 + s(50) + 10 + s(90)));
    // Past the time it was carried over with: still there, nothing said.
    r.at(T0 + s(100));
    assert!(r.log.take().is_empty());
    assert_eq!(r.k.holds("ssh_4"), vec![a]);
    r.at(T0 + s(140) + 10 + COALESCE);
    let l = r.log.take();
    assert!(l[0].starts_with("expired 198.18.0.9 "), "{l:?}");
    assert!(r.k.holds("ssh_4").is_empty());
}

/// `pfknock expire` through the daemon lists an authorized set from the
/// daemon's book, not from the kernel (a dump that grows with the square
/// of the set): what is past the age is deleted and said, the rest kept,
/// and the kernel's set is never listed. A service that expires by idle
/// time is listed from the kernel: traffic refreshes its entries unseen.
#[test]
fn expire_through_the_daemon_reads_its_book_not_the_kernels_listing() {
    let mut r = rig("expire-book", SSH);
    let a = r.knock(T0, "198.18.0.9");
    let b = r.knock(T0 + s(10), "198.18.0.10");
    let c = r.knock(T0 + s(20), "198.18.0.11");
    r.log.take();
    let reply = r.command(T0 + s(25), &["expire", "-o", "12s"]);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert_eq!(r.k.st().listings, 0, "the kernel's set was listed");
    assert_eq!(r.k.holds("ssh_4"), vec![c]);
    let l = r.log.take();
    for x in [a, b] {
        assert!(
            l.iter()
                .any(|l| l.starts_with(&format!("expired {x} table=ssh "))
                    && l.ends_with("by pfknock expire")),
            "{l:?}"
        );
    }
    assert_eq!(l.len(), 2, "{l:?}");
    let out = format!("{:?}", reply.done);
    assert!(out.contains("2/3"), "{out}");
    // Nothing more is said of them later.
    r.at(T0 + s(90));
    let l = r.log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("expired 198.18.0.11 "), "{l:?}");
    // Idle expiry: the kernel's listing.
    let mut r = rig("expire-idle", &format!("{SSH}expire = \"idle\"\n"));
    r.knock(T0, "198.18.0.9");
    let reply = r.command(T0 + s(25), &["expire", "-o", "12s"]);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert_eq!(r.k.st().listings, 1);
    assert!(r.k.holds("ssh_4").is_empty());
}

/// `pfknock expire -o` through the daemon counts ages to the nearest
/// second, as the event lines, `show` and `revoke` (and `expire` with no
/// daemon) do: 2.7 s after a knock at 10.1 s the host is 3 s old, older
/// than 2 s, and goes, its line saying `age=3s`; 2.2 s after, it stays.
/// Counted in whole seconds (12 less 10) it was 2 s, and stayed.
#[test]
fn expire_through_the_daemon_counts_ages_to_the_nearest_second() {
    let mut r = rig("expire-round", SSH);
    let a = r.knock(T0 + 10_100, "198.18.0.9");
    r.log.take();
    let reply = r.command(T0 + 12_300, &["expire", "-o", "2s"]);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert_eq!(r.k.holds("ssh_4"), vec![a], "2.2 s is not older than 2 s");
    assert!(r.log.take().is_empty());
    let reply = r.command(T0 + 12_800, &["expire", "-o", "2s"]);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert!(
        r.k.holds("ssh_4").is_empty(),
        "2.7 s is 3 s, older than 2 s"
    );
    assert_eq!(
        r.log.take(),
        [format!(
            "expired {a} table=ssh anchor=pfknock age=3s by pfknock expire"
        )]
    );
    assert_eq!(reply.done.stdout, format!("{a}\n"));
}

/// While the start's reading of the sets runs beside the loop (a minute
/// or two at a million), a SIGHUP or SIGUSR1 waits until it is done, and
/// says so once (`run`'s loop asks `hold` and acts on the signal after
/// the reading); once the reading is done, nothing waits.
#[test]
fn a_signal_during_the_starts_reading_says_that_it_waits() {
    let (mut d, k, log, _path, _dir) = reading_rig_with("hold", |k| {
        k.knock("ssh_4", "198.18.0.9");
    });
    let nine: IpAddr = "198.18.0.9".parse().unwrap();
    assert!(d.hold("SIGHUP"));
    let l = log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(
        l[0].starts_with("SIGHUP: waits until the reading of the sets (begun ")
            && l[0].ends_with("s ago) is done"),
        "{l:?}"
    );
    read_to_end(&mut d);
    assert!(!d.hold("SIGUSR1"), "nothing to wait for");
    // The reading found .9, and nothing was said of the signal again.
    assert_eq!(k.holds("ssh_4"), vec![nine]);
    let l = log.take();
    assert!(l.iter().all(|x| !x.contains("waits until")), "{l:?}");
}

/// A daemon whose start's reading of the sets runs beside the loop, as
/// `run` starts it, over a kernel that holds .9 (knocked at T0) and .10
/// (knocked 10 s later); the clock at T0 + 10 s.
fn reading_rig(name: &str) -> (Daemon<Nft, Nft, Mem>, Nft, Mem, PathBuf, common::Scratch) {
    reading_rig_with(name, |k| {
        k.knock("ssh_4", "198.18.0.9");
        k.at(T0 + s(10));
        k.knock("ssh_4", "198.18.0.10");
    })
}

/// `reading_rig`, with the kernel as `prepare` leaves it once the table
/// is loaded at T0.
fn reading_rig_with(
    name: &str,
    prepare: impl FnOnce(&Nft),
) -> (Daemon<Nft, Nft, Mem>, Nft, Mem, PathBuf, common::Scratch) {
    reading_rig_of(name, SSH, prepare)
}

/// `reading_rig_with`, the kernel holding `hosts` of `set` (knocked at
/// T0), and the start's reading held running until `gate` opens.
fn held_rig(name: &str, set: &str, hosts: &[&str]) -> HeldRig {
    let gate = shut();
    let (d, k, log, path, dir) = reading_rig_with(name, |k| {
        for a in hosts {
            k.knock(set, a);
        }
        k.st().gate = Some(gate.clone());
    });
    (d, k, log, path, dir, gate)
}

/// What `held_rig` gives: `reading_rig_with`'s, and the gate.
type HeldRig = (
    Daemon<Nft, Nft, Mem>,
    Nft,
    Mem,
    PathBuf,
    common::Scratch,
    Gate,
);

/// `reading_rig_with`, for the config `conf`.
fn reading_rig_of(
    name: &str,
    conf: &str,
    prepare: impl FnOnce(&Nft),
) -> (Daemon<Nft, Nft, Mem>, Nft, Mem, PathBuf, common::Scratch) {
    let dir = common::Scratch::new(&format!("nft-daemon-{name}"));
    let path = dir.join("pfknock.toml");
    fs::write(&path, conf).unwrap();
    let k = Nft::default();
    let (cfg, _) = Config::load(&path).unwrap();
    k.at(T0);
    k.clone().load(&cfg, "").unwrap();
    prepare(&k);
    let log = Mem::default();
    let mut d = Daemon::start(cfg, &path, k.clone(), k.clone(), log.clone(), T0 / 1000).unwrap();
    d.use_events_later(Box::new(k.clone()), None);
    d.read_aside();
    d.begin(k.st().now);
    assert!(d.reading().is_some(), "the start's reading runs beside");
    log.take();
    (d, k, log, path, dir)
}

/// The start's line without a record, `n` authorizations found.
fn found_line(n: usize) -> String {
    format!(
        "no record of the last run (first start, a crash or a reboot): {n} \
         authorizations found; what happened while no daemon ran is not known"
    )
}

/// How many of the lines `l` say `verb` of address `a`.
fn lines_of(l: &[String], verb: &str, a: &str) -> usize {
    let head = format!("{verb} {a} ");
    l.iter().filter(|x| x.starts_with(&head)).count()
}

/// Hand the daemon its reading's answer until it is all taken in.
fn read_to_end(d: &mut Daemon<Nft, Nft, Mem>) {
    for _ in 0..100 {
        if d.reading().is_none() {
            break;
        }
        d.read_done();
    }
    assert!(d.reading().is_none());
}

/// The clock moves to `t` (ms); the daemon acts if something is due.
fn tick_to(d: &mut Daemon<Nft, Nft, Mem>, k: &Nft, t: i64) {
    k.at(t);
    if d.next_due_ms().is_some_and(|due| due <= t) {
        d.tick_ms(t);
    }
}

/// A SIGHUP during the start's reading of the sets (a minute or two at a
/// million) whose config keeps every set being read, changed in place at
/// most (here a shorter ttl and a larger size), is loaded at once: the
/// kernel has it and the log says so. The daemon takes it in once the
/// reading and the knocks that waited behind it are worked through
/// (`caught_up`): then what the reading found, and what was heard
/// meanwhile, is cut to the new ttl, as at any reload. Log, kernel and
/// daemon agree throughout: each knock said once, each expiry once, at
/// the new ttl.
#[test]
fn a_reload_that_keeps_the_sets_is_loaded_during_the_starts_reading() {
    let (mut d, k, log, path, _dir) = reading_rig("reload-reading");
    let (nine, ten): (IpAddr, IpAddr) = (
        "198.18.0.9".parse().unwrap(),
        "198.18.0.10".parse().unwrap(),
    );
    let loads = k.st().loads;
    // .10's knock is read by the loop while the sets are: it waits.
    fs::write(&path, SSH.replace("60s", "30s") + "size = 131072\n").unwrap();
    k.at(T0 + s(20));
    assert!(!d.reload_reading((T0 + s(20)) / 1000), "it does not wait");
    let l = log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(
        l[0].starts_with("reloaded ") && l[0].ends_with(": 1 service(s), 0 expire table(s)"),
        "{l:?}"
    );
    // In the kernel now: the set changed in place, its elements as they were.
    assert_eq!(k.st().loads, loads + 1);
    assert_eq!(k.st().set("ssh_4").unwrap().timeout_ms, 30_000);
    assert_eq!(k.deadline("ssh_4", nine), Some(T0 + s(60)));
    assert_eq!(k.deadline("ssh_4", ten), Some(T0 + s(70)));
    assert_eq!(d.cfg.services[0].ttl.0, 30);
    // The reading ends (its answer taken in a part a turn).
    let knock = |a: IpAddr| KernelEvent::Knock {
        prefix: "pfknock ssh: ".into(),
        addr: a,
    };
    for _ in 0..100 {
        if d.reading().is_none() {
            break;
        }
        d.read_done_heard(|| vec![("pfknock ssh: ".to_owned(), ten)]);
    }
    assert!(d.reading().is_none());
    // A knock after the reload: the new ttl from the kernel.
    k.at(T0 + s(21));
    let eleven = k.knock("ssh_4", "198.18.0.11");
    assert_eq!(k.deadline("ssh_4", eleven), Some(T0 + s(51)));
    // The loop works through what waited, then the machine takes the
    // reload in.
    d.kernel(knock(ten), T0 + s(21));
    d.kernel(knock(eleven), T0 + s(21));
    d.caught_up((T0 + s(22)) / 1000);
    let l = log.take();
    let said = |a: &str| lines_of(&l, "authorized", a);
    assert_eq!(
        (said("198.18.0.9"), said("198.18.0.10"), said("198.18.0.11")),
        (0, 1, 1),
        "{l:?}"
    );
    assert!(!l.iter().any(|x| x.starts_with("expired")), "{l:?}");
    // .9 and .10 keep the minute the kernel gave them, cut by the daemon
    // at their start plus the new 30 s; .11 has 30 s in the kernel.
    assert_eq!(d.next_due_ms(), Some(T0 + s(30) + COALESCE));
    tick_to(&mut d, &k, T0 + s(30) + COALESCE);
    assert_eq!(
        log.take(),
        ["expired 198.18.0.9 service=ssh table=ssh anchor=pfknock age=30s ttl=30s"]
    );
    assert_eq!(k.holds("ssh_4"), vec![ten, eleven]);
    tick_to(&mut d, &k, T0 + s(40) + COALESCE);
    assert_eq!(
        log.take(),
        ["expired 198.18.0.10 service=ssh table=ssh anchor=pfknock age=30s ttl=30s"]
    );
    assert_eq!(k.holds("ssh_4"), vec![eleven]);
    tick_to(&mut d, &k, T0 + s(51) + COALESCE);
    assert_eq!(
        log.take(),
        ["expired 198.18.0.11 service=ssh table=ssh anchor=pfknock age=30s ttl=30s"]
    );
    assert!(k.holds("ssh_4").is_empty());
    tick_to(&mut d, &k, T0 + s(90));
    assert!(log.take().is_empty(), "nothing more");
}

/// During the start's reading, a SIGHUP whose config would make a set
/// being read anew (another service's sets under the same name), or on
/// a kernel that makes a set anew to change its ttl (older than Linux
/// 6.5), waits until the reading is done, and loads nothing meanwhile; a
/// config that cannot be read is said at once and changes nothing.
#[test]
fn a_reload_that_could_remake_a_set_being_read_waits_and_a_bad_one_is_said_at_once() {
    let (mut d, k, log, path, _dir) = reading_rig("reload-reading-waits");
    let loads = k.st().loads;
    // The same set names, but another service's sets: made anew.
    let renamed = SSH.replace("\"ssh\"", "\"sshd\"") + "table = \"ssh\"\n";
    fs::write(&path, renamed).unwrap();
    assert!(
        d.reload_reading((T0 + s(20)) / 1000),
        "a set being read would be made anew"
    );
    assert!(log.take().is_empty());
    fs::write(&path, SSH.replace("60s", "30s")).unwrap();
    k.st().carry = true;
    assert!(
        d.reload_reading((T0 + s(20)) / 1000),
        "the kernel would make it anew"
    );
    assert!(log.take().is_empty());
    k.st().carry = false;
    fs::write(&path, SSH.replace("60s", "thirty")).unwrap();
    assert!(
        !d.reload_reading((T0 + s(20)) / 1000),
        "nothing to wait for"
    );
    let l = log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(
        l[0].starts_with("reload: ") && l[0].ends_with(": keeping the running configuration"),
        "{l:?}"
    );
    assert_eq!(k.st().loads, loads, "nothing loaded");
    assert_eq!(k.st().set("ssh_4").unwrap().timeout_ms, 60_000);
    assert_eq!(d.cfg.services[0].ttl.0, 60);
    read_to_end(&mut d);
    d.caught_up((T0 + s(22)) / 1000);
    assert_eq!(
        d.next_due_ms(),
        Some(T0 + s(60) + COALESCE),
        "the running ttl"
    );
}

/// A config of `[[expire]]` tables only, which nftables cannot do (its
/// sets time out by themselves), is refused by SIGHUP and by `pfknock
/// load` as `run` refuses it: the table, its rules and sets stay, and what
/// was authorized expires as before.
#[test]
fn a_reload_to_expire_tables_is_refused_and_changes_nothing() {
    let mut r = rig("reload-expire-only", SSH);
    r.knock(T0 + s(1), "198.18.0.10");
    assert_eq!(r.log.take().len(), 1, "authorized");
    let loads = r.k.st().loads;
    fs::write(&r.path, "[[expire]]\ntable = \"bruteforce\"\n").unwrap();
    r.k.at(T0 + s(2));
    r.d.reload((T0 + s(2)) / 1000);
    let l = r.log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(
        l[0].starts_with("reload: ")
            && l[0].contains("[[expire]] expires pf tables; nftables has none here")
            && l[0].ends_with(": keeping the running configuration"),
        "{l:?}"
    );
    let reply = r.command(T0 + s(3), &["load"]);
    let (msg, _) = reply.error.expect("load refused");
    assert!(msg.contains("[[expire]] expires pf tables"), "{msg}");
    assert!(r.log.take().is_empty());
    assert_eq!(r.k.st().loads, loads, "nothing loaded");
    assert_eq!(r.d.cfg.services.len(), 1);
    assert!(r.k.st().set("ssh_4").unwrap().elems.len() == 1);
    r.at(T0 + s(61) + COALESCE);
    let l = r.log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("expired 198.18.0.10 "), "{l:?}");
}

/// During the start's reading, a SIGHUP whose config deletes sets being
/// read (here a service removed, and IPv6 taken from another) and keeps
/// the rest is loaded at once: the kernel has it, and the log says what
/// went with each set, by the kernel's count just before (a set with
/// nothing in it says nothing). Whether the reading read those sets
/// before they went (`gated`: after), nothing more is said of them,
/// no look-up of them follows, and what stays expires as before.
#[test]
fn a_reload_that_deletes_sets_being_read_is_loaded_at_once_and_says_what_went() {
    for gated in [false, true] {
        let gate = shut();
        let (mut d, k, log, path, _dir) =
            reading_rig_of("reload-reading-deletes", &format!("{SSH}{WEB}"), |k| {
                k.knock("ssh_4", "198.18.0.9");
                k.knock("ssh_6", "fd00::9");
                k.knock("web_4", "198.18.0.20");
                k.knock("web_4", "198.18.0.21");
                if gated {
                    k.st().gate = Some(gate.clone());
                }
            });
        if !gated {
            // The reading's thread has dumped every set.
            for _ in 0..5000 {
                if k.st().heard.len() == 4 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let heard: Vec<String> = k.st().heard.iter().map(|h| h.0.clone()).collect();
            assert_eq!(heard, ["ssh_4", "ssh_6", "web_4", "web_6"]);
        }
        // Knocks in sets the reload deletes, heard (and said) during the
        // reading: their events after it take in nothing.
        let knock = |prefix: &str, a: &str| KernelEvent::Knock {
            prefix: prefix.into(),
            addr: a.parse().unwrap(),
        };
        let heard = [
            knock("pfknock ssh: ", "fd00::9"),
            knock("pfknock web: ", "198.18.0.20"),
        ];
        if gated {
            d.hear(heard.to_vec(), T0 + s(10));
            assert_eq!(log.take().len(), 2);
        }
        fs::write(&path, SSH.to_owned() + "family = \"inet\"\n").unwrap();
        k.at(T0 + s(20));
        if gated {
            // By `pfknock load`, which says the same on its stderr.
            let req = Request {
                config: path.clone(),
                argv: vec!["load".to_owned()],
            };
            let reply = d.control_while_reading(&req, (T0 + s(20)) / 1000);
            let reply = reply.expect("it does not wait");
            let l = &reply.done.stderr;
            assert_eq!(l.len(), 3, "{l:?}");
            reloaded_without_ssh_6_and_web(
                &[&["reloaded (in the log)".to_owned()], &l[..2]].concat(),
            );
        } else {
            assert!(!d.reload_reading((T0 + s(20)) / 1000), "it does not wait");
        }
        reloaded_without_ssh_6_and_web(&log.take());
        let sets: Vec<String> = k.st().sets.as_ref().unwrap().keys().cloned().collect();
        assert_eq!(sets, ["ssh_4"]);
        open(&gate);
        read_to_end(&mut d);
        if gated {
            for ev in heard {
                d.kernel(ev, T0 + s(21));
            }
        }
        d.caught_up((T0 + s(21)) / 1000);
        assert!(d.reading().is_none(), "not read again");
        // The reading's own line says what it found that is still there,
        // whether it read the sets that went before or after.
        let l = log.take();
        assert_eq!(l, [found_line(1)], "gated: {gated}");
        assert_eq!(d.next_due_ms(), Some(T0 + s(60) + COALESCE));
        let lookups = k.st().lookups;
        tick_to(&mut d, &k, T0 + s(60) + COALESCE);
        assert_eq!(
            log.take(),
            ["expired 198.18.0.9 service=ssh table=ssh anchor=pfknock age=1m ttl=1m"]
        );
        assert_eq!(k.st().lookups, lookups + 1, "one look-up, of .9");
        assert!(k.holds("ssh_4").is_empty());
        assert_eq!(d.next_due_ms(), None);
    }
}

/// An element nft added to a set during the reading, said as it came,
/// then the set deleted by a reload (IPv6 taken from the service): when
/// the loop works through the events it queued meanwhile, the element is
/// not said again, nor tracked (the reload said what went with the set;
/// before, the element was said twice, and so was the set's going).
#[test]
fn an_element_said_during_the_reading_of_a_set_a_reload_deleted_is_said_once() {
    let (mut d, k, log, path, _dir) = reading_rig("reload-reading-said");
    let twelve = Deadline::new("fd00::12".parse().unwrap(), Some(T0 + s(61)));
    k.at(T0 + s(1));
    let by_nft = added_while_read(&mut d, &k, &log, "ssh_6", twelve);
    fs::write(&path, SSH.to_owned() + "family = \"inet\"\n").unwrap();
    k.at(T0 + s(2));
    assert!(!d.reload_reading((T0 + s(2)) / 1000), "it does not wait");
    let l = log.take();
    assert!(
        l.iter().any(|x| x
            == "set ssh_6 of service ssh deleted by the reload: 1 authorizations went with it"),
        "{l:?}"
    );
    read_to_end(&mut d);
    for ev in by_nft {
        d.kernel(ev, T0 + s(3));
    }
    d.caught_up((T0 + s(3)) / 1000);
    // Not said again, nor what went with the set: only the reading's line.
    assert_eq!(log.take(), [found_line(2)]);
    tick_to(&mut d, &k, T0 + s(62) + COALESCE);
    let l = log.take();
    assert_eq!(
        l.iter().filter(|x| x.contains("fd00::12")).count(),
        0,
        "{l:?}"
    );
}

/// `e` added to `set` by nft (pid 4242) during a reading, at T0 + 1 s:
/// the kernel holds it, the daemon hears it and says it once; what the
/// loop queues of its events (the commit), to work through once the
/// reading is done.
fn added_while_read(
    d: &mut Daemon<Nft, Nft, Mem>,
    k: &Nft,
    log: &Mem,
    set: &str,
    e: Deadline,
) -> Vec<KernelEvent> {
    let until = e.at().unwrap();
    k.st().set(set).unwrap().elems.insert(e.addr(), until);
    let by_nft = [
        KernelEvent::Elements {
            set: set.into(),
            added: true,
            addrs: vec![e].into(),
        },
        KernelEvent::Commit {
            pid: 4242,
            process: "nft".into(),
        },
    ];
    let queued = d.hear(by_nft.to_vec(), T0 + s(1));
    let said = lines_of(&log.take(), "authorized", &e.addr().to_string());
    assert_eq!(said, 1, "{set} {}", e.addr());
    assert_eq!(queued, by_nft[1..]);
    queued
}

/// The kernel's notification of one element of ssh_4 added or deleted,
/// with its deadline.
fn ssh_4_change(added: bool, a: IpAddr, until: Option<i64>) -> KernelEvent {
    KernelEvent::Elements {
        set: "ssh_4".into(),
        added,
        addrs: vec![Deadline::new(a, until)].into(),
    }
}

/// The end of a transaction by `process[pid]`.
fn commit_by(pid: u32, process: &str) -> KernelEvent {
    KernelEvent::Commit {
        pid,
        process: process.into(),
    }
}

/// A start's reading of ssh (.9) and web (20,000 knocks at once in
/// web_4, more than a part of the take-in) whose answer is in, its first
/// part taken in (web_4 opened): the rest waits for the loop's next turns.
fn taking_in(name: &str) -> (Daemon<Nft, Nft, Mem>, Nft, Mem, PathBuf, common::Scratch) {
    let (mut d, k, log, path, dir) = reading_rig_of(name, &format!("{SSH}{WEB}"), |k| {
        k.knock("ssh_4", "198.18.0.9");
        let mut st = k.st();
        let until = st.now + 60_000;
        let set = st.set("web_4").unwrap();
        for i in 0..20_000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0xc613_0000 + i));
            set.elems.insert(a, until);
        }
    });
    for _ in 0..5000 {
        if k.st().heard.len() == 4 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    d.read_done();
    assert!(d.reading().is_some(), "still taking in");
    (d, k, log, path, dir)
}

/// A reload that deletes a set whose elements are being taken in (a part
/// each turn of the loop, at a million a few seconds): said once, with the
/// kernel's count; the rest of it is not taken in, and the reading's line
/// counts only what stays.
#[test]
fn a_reload_during_the_take_in_drops_the_rest_of_a_set_it_deleted() {
    let (mut d, k, log, path, _dir) = taking_in("reload-take-in");
    fs::write(&path, SSH).unwrap();
    k.at(T0 + s(20));
    assert!(!d.reload_reading((T0 + s(20)) / 1000));
    let l = log.take();
    assert_eq!(l.len(), 2, "{l:?}");
    assert_eq!(
        l[1],
        "set web_4 of service web deleted by the reload: 20000 authorizations went with it"
    );
    read_to_end(&mut d);
    d.caught_up((T0 + s(21)) / 1000);
    assert_eq!(
        log.take(),
        [
            "no record of the last run (first start, a crash or a reboot): 1 authorizations \
          found; what happened while no daemon ran is not known"
        ]
    );
    assert_eq!(d.next_due_ms(), Some(T0 + s(60) + COALESCE));
    let lookups = k.st().lookups;
    tick_to(&mut d, &k, T0 + s(60) + COALESCE);
    assert_eq!(log.take().len(), 1);
    assert_eq!(k.st().lookups, lookups + 1, "one look-up, of .9");
}

/// `pfknock unload` while a reading's answer is being taken in (20,000
/// elements of web_4, more than a part): done at once, counted by the
/// kernel; the rest of the answer is not taken in, nothing is said after
/// it, and nothing is looked up or expired later.
#[test]
fn an_unload_during_the_take_in_drops_the_rest_of_the_reading() {
    let (mut d, k, log, path, _dir) = taking_in("unload-take-in");
    let req = Request {
        config: path.clone(),
        argv: vec!["unload".to_owned()],
    };
    let reply = d.control_while_reading(&req, (T0 + s(20)) / 1000);
    assert!(reply.expect("it does not wait").error.is_none());
    assert_eq!(
        log.take(),
        [
            "anchor pfknock unloaded by pfknock unload: 20001 authorizations went with it; \
             kept unloaded until pfknock load or SIGHUP"
        ]
    );
    read_to_end(&mut d);
    d.caught_up((T0 + s(21)) / 1000);
    assert_eq!(log.take(), Vec::<String>::new());
    assert_eq!(d.next_due_ms(), None);
    let lookups = k.st().lookups;
    tick_to(&mut d, &k, T0 + s(120));
    assert_eq!(log.take(), Vec::<String>::new());
    assert_eq!(k.st().lookups, lookups);
}

/// A set one reload deleted during the reading, and a second one made
/// again, empty: what the reading found of it before is not what it
/// holds, so the sets are read again once the reading is done, and the
/// daemon knows the set as the kernel has it.
#[test]
fn a_set_deleted_and_made_again_during_the_reading_is_read_again() {
    let both = format!("{SSH}{WEB}");
    let (mut d, k, log, path, _dir) = reading_rig_of("reload-reading-again", &both, |k| {
        k.knock("web_4", "198.18.0.20");
    });
    fs::write(&path, SSH).unwrap();
    k.at(T0 + s(20));
    assert!(!d.reload_reading((T0 + s(20)) / 1000));
    assert_eq!(log.take().len(), 2);
    fs::write(&path, &both).unwrap();
    assert!(!d.reload_reading((T0 + s(20)) / 1000));
    let l = log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("reloaded "), "{l:?}");
    assert!(k.holds("web_4").is_empty(), "made again, empty");
    read_to_end(&mut d);
    d.caught_up((T0 + s(21)) / 1000);
    assert!(d.reading().is_some(), "read again");
    read_to_end(&mut d);
    log.take();
    // Nothing of .20 is known, so nothing is looked up or said at its
    // deadline.
    let lookups = k.st().lookups;
    assert_eq!(d.next_due_ms(), None);
    tick_to(&mut d, &k, T0 + s(61));
    assert!(log.take().is_empty());
    assert_eq!(k.st().lookups, lookups);
}

/// A kernel that was to change a set being read in place, and made it
/// anew instead (the load reads the set back and says so): the reload
/// stands, the log says what happened, and the sets are read again once
/// the reading is done, so that the daemon knows what the new set holds.
#[test]
fn a_set_made_anew_under_the_reading_is_read_again() {
    let (mut d, k, log, path, _dir) = reading_rig("reload-reading-remade");
    k.st().remakes = true;
    fs::write(&path, SSH.replace("60s", "30s")).unwrap();
    k.at(T0 + s(20));
    assert!(!d.reload_reading((T0 + s(20)) / 1000));
    let l = log.take();
    assert_eq!(l.len(), 2, "{l:?}");
    assert!(
        l[0].starts_with("reload: the kernel made a set anew instead of changing it in place"),
        "{l:?}"
    );
    assert!(l[1].starts_with("reloaded "), "{l:?}");
    read_to_end(&mut d);
    d.caught_up((T0 + s(21)) / 1000);
    assert!(d.reading().is_some(), "read again");
    read_to_end(&mut d);
    // The set made anew timed each element from its start with the new
    // ttl: .9 until T0 + 30 s, .10 until T0 + 40 s, as the daemon knows.
    let (nine, ten): (IpAddr, IpAddr) = (
        "198.18.0.9".parse().unwrap(),
        "198.18.0.10".parse().unwrap(),
    );
    assert_eq!(k.holds("ssh_4"), vec![nine, ten]);
    assert_eq!(k.deadline("ssh_4", nine), Some(T0 + s(30)));
    assert_eq!(d.next_due_ms(), Some(T0 + s(30) + COALESCE));
    tick_to(&mut d, &k, T0 + s(30) + COALESCE);
    tick_to(&mut d, &k, T0 + s(40) + COALESCE);
    let l = log.take();
    let expired = |a: &str| lines_of(&l, "expired", a);
    assert_eq!(
        (expired("198.18.0.9"), expired("198.18.0.10")),
        (1, 1),
        "{l:?}"
    );
    assert!(k.holds("ssh_4").is_empty());
}

/// The same, unloaded (`pfknock unload`) before the reading is done: the
/// sets are not read again (nothing is there to read while the daemon
/// keeps the table unloaded), the reload is taken in without a line of
/// what went (the unload said it), and nothing is loaded, restored or
/// expired after.
#[test]
fn a_set_made_anew_under_the_reading_then_unloaded_is_not_read_again() {
    let (mut d, k, log, path, _dir) = reading_rig("reload-reading-remade-unload");
    k.st().remakes = true;
    fs::write(&path, SSH.replace("60s", "30s")).unwrap();
    k.at(T0 + s(20));
    assert!(!d.reload_reading((T0 + s(20)) / 1000));
    assert_eq!(log.take().len(), 2);
    let loads = k.st().loads;
    let req = Request {
        config: path.clone(),
        argv: vec!["unload".to_owned()],
    };
    let reply = d.control_while_reading(&req, (T0 + s(21)) / 1000);
    assert!(reply.expect("it does not wait").error.is_none());
    let l = log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(
        l[0].starts_with("anchor pfknock unloaded by pfknock unload: 2 authorizations went"),
        "{l:?}"
    );
    read_to_end(&mut d);
    d.caught_up((T0 + s(22)) / 1000);
    assert!(d.reading().is_none(), "read again");
    tick_to(&mut d, &k, T0 + s(120));
    assert_eq!(log.take(), Vec::<String>::new());
    assert_eq!(d.known(&ssh_table()), Some(0));
    assert_eq!(k.st().loads, loads, "loaded again");
    assert!(k.holds("ssh_4").is_empty());
}

/// While the sets are read beside the loop, what the loop reads from the
/// kernel meanwhile is handed to the reading too (`Daemon::hear`): a
/// knock's address for its service's set of its family, and the
/// addresses a notification says were added; not a meter's or a close
/// knock's log, nor a deletion. The reading looks those up as well
/// (`netlink::Lookup::dump_settled`, tested over real nftables in
/// tests/events.rs), so that a knock behind the dump's walk costs no
/// second dump.
#[test]
fn what_the_loop_hears_during_a_reading_is_handed_to_it() {
    let (mut d, k, _log, _path, _dir, gate) = held_rig("heard", "ssh_4", &[]);
    let (eleven, six): (IpAddr, IpAddr) =
        ("198.18.0.11".parse().unwrap(), "fd00::6".parse().unwrap());
    let twelve: IpAddr = "198.18.0.12".parse().unwrap();
    d.hear(
        vec![
            KernelEvent::Knock {
                prefix: "pfknock ssh: ".into(),
                addr: eleven,
            },
            KernelEvent::Knock {
                prefix: "pfknock meter ssh_m1_4 full: ".into(),
                addr: twelve,
            },
            KernelEvent::Knock {
                prefix: "pfknock other: ".into(),
                addr: twelve,
            },
            KernelEvent::Elements {
                set: "ssh_6".into(),
                added: true,
                addrs: vec![Deadline::new(six, Some(T0 + 60_000))].into(),
            },
            KernelEvent::Elements {
                set: "ssh_4".into(),
                added: false,
                addrs: vec![Deadline::new(twelve, None)].into(),
            },
        ],
        T0 + s(10),
    );
    open(&gate);
    read_to_end(&mut d);
    let heard = std::mem::take(&mut k.st().heard);
    assert_eq!(
        heard,
        [
            ("ssh_4".to_owned(), vec![eleven]),
            ("ssh_6".to_owned(), vec![six])
        ]
    );
}

/// Knocks heard during the start's reading (minutes at a million) are
/// said as they come, each host once, its element looked up then: the log
/// does not wait for the reading. When their events come after it, in
/// the order the loop queued them, nothing more is said, and the book
/// holds each host with the kernel's deadline. A knock whose element was
/// gone at the look-up is said as the daemon says such a knock, and is
/// not taken in; a knock of a host that is not a service's is not said.
#[test]
fn knocks_heard_during_the_starts_reading_are_said_at_once_and_once() {
    let (mut d, k, log, _path, _dir, gate) = held_rig("said-at-once", "ssh_4", &[]);
    let t = ssh_table();
    k.at(T0 + s(5));
    let eleven = k.knock("ssh_4", "198.18.0.11");
    let six = k.knock("ssh_6", "fd00::6");
    let thirteen = k.knock("ssh_4", "198.18.0.13");
    k.remove("ssh_4", "198.18.0.13");
    // .15's element the reading does not find (taken out before it, put
    // back after it).
    let fifteen = k.knock("ssh_4", "198.18.0.15");
    let knock = |addr| KernelEvent::Knock {
        prefix: "pfknock ssh: ".into(),
        addr,
    };
    let other = KernelEvent::Knock {
        prefix: "pfknock other: ".into(),
        addr: eleven,
    };
    let queue = [
        knock(eleven),
        knock(six),
        knock(eleven),
        knock(thirteen),
        other,
        knock(fifteen),
    ];
    let queue = d.hear(queue.to_vec(), T0 + s(5));
    let l = log.take();
    assert_eq!(
        l,
        [
            "authorized 198.18.0.11 service=ssh table=ssh anchor=pfknock ttl=1m",
            "authorized fd00::6 service=ssh table=ssh anchor=pfknock ttl=1m",
            "authorized 198.18.0.13 service=ssh table=ssh anchor=pfknock ttl=1m \
             (removed again before the daemon saw it)",
            "authorized 198.18.0.15 service=ssh table=ssh anchor=pfknock ttl=1m",
        ]
    );
    assert!(d.reading().is_some(), "said before the reading is done");
    // Known as said, though the book waits for their events.
    assert_eq!(d.known(&t), Some(3));
    // Its knock's next packet: not said again.
    k.knock("ssh_4", "198.18.0.11");
    d.hear(vec![knock(eleven)], T0 + s(5));
    assert_eq!(log.take(), Vec::<String>::new());
    k.remove("ssh_4", "198.18.0.15");
    open(&gate);
    let waiting = vec![
        ("pfknock ssh: ".to_owned(), eleven),
        ("pfknock ssh: ".to_owned(), six),
        ("pfknock ssh: ".to_owned(), thirteen),
        ("pfknock ssh: ".to_owned(), fifteen),
    ];
    d.read_done_heard(|| waiting);
    read_to_end(&mut d);
    k.knock("ssh_4", "198.18.0.15");
    for ev in queue.into_iter().chain([knock(eleven)]) {
        d.kernel(ev, T0 + s(5));
    }
    let l = log.take();
    assert!(
        l.iter()
            .all(|x| !x.starts_with("authorized") && !x.starts_with("renewed")),
        "{l:?}"
    );
    // .11, fd00::6 and .15; not .13, which is gone.
    assert_eq!(d.known(&t), Some(3));
    let due = k.deadline("ssh_4", eleven).min(k.deadline("ssh_6", six));
    assert_eq!(d.next_due_ms(), due.map(|u| u + COALESCE));
    // Each expires once, at the kernel's deadline, and is said once.
    tick_to(&mut d, &k, T0 + s(5) + s(60) + COALESCE);
    let l = log.take();
    for a in ["198.18.0.11", "fd00::6", "198.18.0.15"] {
        assert_eq!(lines_of(&l, "expired", a), 1, "{a}: {l:?}");
    }
    // As old as since the knock, not since the reading began.
    assert!(
        l.iter()
            .any(|x| x.starts_with("expired 198.18.0.11 ") && x.contains(" age=1m ttl=1m")),
        "{l:?}"
    );
    assert!(l.iter().all(|x| !x.contains("198.18.0.13")), "{l:?}");
    assert_eq!(d.known(&t), Some(0));
}

/// `pfknock revoke` during the start's reading (minutes at a million) is
/// done at once, not once the reading is over: the kernel loses the host,
/// the log says `revoked`, and what the reading found of it is not taken
/// in, whether it was there before the start (.12) or knocked during the
/// reading and was said (.11); its knock's event, after the reading, says
/// nothing. A host that knocks again after its revoke (.13) is
/// authorized again, as any knock, and said so; so is it held.
#[test]
fn a_revoke_during_the_starts_reading_goes_at_once_and_the_reading_leaves_it_out() {
    let (mut d, k, log, path, _dir, gate) = held_rig("revoke-reading", "ssh_4", &["198.18.0.12"]);
    let t = ssh_table();
    let knock = |addr| KernelEvent::Knock {
        prefix: "pfknock ssh: ".into(),
        addr,
    };
    let revoke = |d: &mut Daemon<Nft, Nft, Mem>, a: &str, at: i64| {
        let req = Request {
            config: path.clone(),
            argv: vec!["revoke".to_owned(), a.to_owned()],
        };
        let reply = d.control_while_reading(&req, at / 1000);
        let reply = reply.expect("a revoke does not wait for the reading");
        assert!(reply.error.is_none(), "{:?}", reply.error);
    };
    k.at(T0 + s(5));
    let eleven = k.knock("ssh_4", "198.18.0.11");
    let thirteen = k.knock("ssh_4", "198.18.0.13");
    d.hear(vec![knock(eleven), knock(thirteen)], T0 + s(5));
    assert_eq!(log.take().len(), 2);
    k.at(T0 + s(6));
    for a in ["198.18.0.11", "198.18.0.12", "198.18.0.13"] {
        revoke(&mut d, a, T0 + s(6));
    }
    assert!(d.reading().is_some(), "done before the reading is over");
    assert_eq!(k.holds("ssh_4"), Vec::<IpAddr>::new());
    let l = log.take();
    assert_eq!(l.len(), 3, "{l:?}");
    for (x, a) in l.iter().zip(["198.18.0.11", "198.18.0.12", "198.18.0.13"]) {
        assert!(x.starts_with(&format!("revoked {a} service=ssh")), "{l:?}");
    }
    // .13 knocks again: a new authorization, said.
    k.at(T0 + s(7));
    k.knock("ssh_4", "198.18.0.13");
    d.hear(vec![knock(thirteen)], T0 + s(7));
    assert_eq!(
        log.take(),
        ["authorized 198.18.0.13 service=ssh table=ssh anchor=pfknock ttl=1m"]
    );
    // The reading found all three (it dumped before the revokes, as a
    // dump of a million may have).
    k.knock("ssh_4", "198.18.0.11");
    k.knock("ssh_4", "198.18.0.12");
    open(&gate);
    d.read_done_heard(|| {
        let p = "pfknock ssh: ".to_owned();
        vec![(p.clone(), eleven), (p.clone(), thirteen), (p, thirteen)]
    });
    read_to_end(&mut d);
    k.remove("ssh_4", "198.18.0.11");
    k.remove("ssh_4", "198.18.0.12");
    for ev in [knock(eleven), knock(thirteen), knock(thirteen)] {
        d.kernel(ev, T0 + s(7));
    }
    let l = log.take();
    assert!(
        l.iter()
            .all(|x| !x.starts_with("authorized") && !x.starts_with("renewed")),
        "{l:?}"
    );
    assert_eq!(d.known(&t), Some(1), "only .13, knocked after its revoke");
    tick_to(&mut d, &k, T0 + s(7) + s(60) + COALESCE);
    let l = log.take();
    assert_eq!(lines_of(&l, "expired", "198.18.0.13"), 1, "{l:?}");
    assert!(
        l.iter()
            .all(|x| !x.contains("198.18.0.11") && !x.contains("198.18.0.12")),
        "{l:?}"
    );
    assert_eq!(d.known(&t), Some(0));
    // What was revoked during that reading is past: .12, authorized again
    // after it, is taken in by a later reading (an overrun's) as any host.
    k.at(T0 + s(70));
    let twelve = k.knock("ssh_4", "198.18.0.12");
    d.kernel(knock(twelve), T0 + s(70));
    assert_eq!(lines_of(&log.take(), "authorized", "198.18.0.12"), 1);
    d.kernel(KernelEvent::Overrun, T0 + s(71));
    read_to_end(&mut d);
    assert_eq!(d.known(&t), Some(1), "{:?}", log.take());
}

/// The same for IPv6 hosts, whose records of hosts that left a set are
/// kept apart from IPv4 ones: fd00::12 revoked during the start's reading
/// goes from the kernel at once and the log says so once; the reading,
/// which found it, leaves it out, so that no line says it again and it
/// never expires; fd00::14, held too and not revoked, is taken in and
/// expires at its deadline.
#[test]
fn an_ipv6_host_revoked_during_the_starts_reading_stays_out_and_the_others_stay() {
    let (mut d, k, log, path, _dir, gate) =
        held_rig("revoke-reading-6", "ssh_6", &["fd00::12", "fd00::14"]);
    let t = ssh_table();
    k.at(T0 + s(6));
    let req = Request {
        config: path.clone(),
        argv: vec!["revoke".to_owned(), "fd00::12".to_owned()],
    };
    let reply = d.control_while_reading(&req, (T0 + s(6)) / 1000);
    let reply = reply.expect("a revoke does not wait for the reading");
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert!(d.reading().is_some(), "done before the reading is over");
    let fourteen: IpAddr = "fd00::14".parse().unwrap();
    assert_eq!(k.holds("ssh_6"), vec![fourteen]);
    let l = log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("revoked fd00::12 service=ssh"), "{l:?}");
    // The reading found both (it dumped before the revoke).
    k.knock("ssh_6", "fd00::12");
    open(&gate);
    d.read_done_heard(Vec::new);
    read_to_end(&mut d);
    k.remove("ssh_6", "fd00::12");
    let l = log.take();
    assert!(l.iter().all(|x| !x.contains("fd00::12")), "{l:?}");
    assert_eq!(d.known(&t), Some(1), "only fd00::14: {l:?}");
    tick_to(&mut d, &k, T0 + s(60) + COALESCE);
    let l = log.take();
    assert_eq!(lines_of(&l, "expired", "fd00::14"), 1, "{l:?}");
    assert!(l.iter().all(|x| !x.contains("fd00::12")), "{l:?}");
    assert_eq!(k.holds("ssh_6"), Vec::<IpAddr>::new());
    assert_eq!(d.known(&t), Some(0));
}

/// `pfknock allow` during the start's reading is done at once: the kernel
/// holds the host, the log says `allowed`. Once the reading is taken in,
/// the host is in the book with the time the allow gave it, whether the
/// reading found its element (.21, dumped after the allow) or not (.20,
/// dumped before it), and expires once, at the kernel's deadline; nothing
/// else is said of it. Allowed and then revoked in the same reading (.22):
/// not taken in. During an overrun's reading, a host allowed then says no
/// line learned late, new or renewed by the allow.
#[test]
fn an_allow_during_a_reading_goes_at_once_and_is_taken_in_with_its_time() {
    let (mut d, k, log, path, _dir, gate) = held_rig("allow-reading", "ssh_4", &[]);
    let t = ssh_table();
    let command = |d: &mut Daemon<Nft, Nft, Mem>, argv: &[&str], at: i64| {
        let req = Request {
            config: path.clone(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
        };
        let reply = d.control_while_reading(&req, at / 1000);
        let reply = reply.expect("it does not wait for the reading");
        assert!(reply.error.is_none(), "{:?}", reply.error);
    };
    k.at(T0 + s(5));
    for a in ["198.18.0.20", "198.18.0.21", "198.18.0.22"] {
        command(&mut d, &["allow", a], T0 + s(5));
    }
    command(&mut d, &["revoke", "198.18.0.22"], T0 + s(5));
    let l = log.take();
    assert_eq!(l.len(), 4, "{l:?}");
    assert!(l[0].starts_with("allowed 198.18.0.20 service=ssh"), "{l:?}");
    assert!(l[3].starts_with("revoked 198.18.0.22 service=ssh"), "{l:?}");
    assert_eq!(k.holds("ssh_4").len(), 2);
    assert!(d.reading().is_some(), "done before the reading is over");
    // The reading dumps .20's set as if before the allow.
    k.remove("ssh_4", "198.18.0.20");
    open(&gate);
    read_to_end(&mut d);
    k.knock("ssh_4", "198.18.0.20");
    k.at(T0 + s(5));
    assert_eq!(d.known(&t), Some(2));
    assert_eq!(d.next_due_ms(), Some(T0 + s(65) + COALESCE));
    tick_to(&mut d, &k, T0 + s(65) + COALESCE);
    let l = log.take();
    assert_eq!(lines_of(&l, "expired", "198.18.0.20"), 1, "{l:?}");
    assert_eq!(lines_of(&l, "expired", "198.18.0.21"), 1, "{l:?}");
    assert_eq!(l.len(), 3, "the reading's line and two expiries: {l:?}");
    assert_eq!(d.known(&t), Some(0));
    // An overrun's reading, which finds the hosts allowed meanwhile (.23
    // new, .24 known and renewed by the allow): no news.
    k.at(T0 + s(70));
    let knock = |a| KernelEvent::Knock {
        prefix: "pfknock ssh: ".into(),
        addr: a,
    };
    d.kernel(knock(k.knock("ssh_4", "198.18.0.24")), T0 + s(70));
    assert_eq!(log.take().len(), 1);
    *gate.0.lock().unwrap() = false;
    k.at(T0 + s(75));
    d.kernel(KernelEvent::Overrun, T0 + s(75));
    command(&mut d, &["allow", "198.18.0.23"], T0 + s(75));
    command(&mut d, &["allow", "198.18.0.24"], T0 + s(75));
    open(&gate);
    read_to_end(&mut d);
    let l = log.take();
    assert_eq!(l.len(), 3, "{l:?}");
    assert!(l[2].starts_with("renewed 198.18.0.24 service=ssh"), "{l:?}");
    assert!(l[2].ends_with("by pfknock allow"), "{l:?}");
    assert_eq!(d.known(&t), Some(2));
    // Each at the kernel's deadline, which the allow moved: none at .24's
    // deadline before it.
    tick_to(&mut d, &k, T0 + s(130) + COALESCE);
    assert_eq!(log.take(), Vec::<String>::new());
    tick_to(&mut d, &k, T0 + s(135) + COALESCE);
    let l = log.take();
    assert_eq!(lines_of(&l, "expired", "198.18.0.23"), 1, "{l:?}");
    assert_eq!(lines_of(&l, "expired", "198.18.0.24"), 1, "{l:?}");
}

/// A revoke while an overrun's reading is taken in, a part a turn: the
/// host the book held is said `revoked` once, not also as gone (learned
/// late) when the take-in reaches what the book held.
#[test]
fn a_revoke_during_an_overruns_take_in_is_said_once() {
    let conf = format!("{SSH}size = 131072\n");
    let mut r = rig("revoke-take-in", &conf);
    r.d.read_aside();
    r.at(T0);
    r.added_by_others(10_000);
    r.event(T0 + 600, KernelEvent::Overrun);
    r.d.read_done();
    assert!(r.d.reading().is_some(), "taken in by parts");
    let last = nth(9_999).to_string();
    let req = Request {
        config: r.path.clone(),
        argv: vec!["revoke".to_owned(), last.clone()],
    };
    let reply = r.d.control_while_reading(&req, (T0 + 700) / 1000);
    assert!(reply.expect("at once").error.is_none());
    read_to_end(&mut r.d);
    let l = r.log.take();
    assert_eq!(
        l.iter()
            .filter(|x| x.contains(&format!(" {last} ")))
            .count(),
        1,
        "{l:?}"
    );
    assert!(
        l.iter().any(|x| x.starts_with(&format!("revoked {last} "))),
        "{l:?}"
    );
    let t = ssh_table();
    assert_eq!(r.d.known(&t), Some(9_999));
}

/// During an overrun's reading, a knock of a host the book does not know
/// is said at once, as at a start, and the reading that finds its element
/// says no line learned late for it. A knock said so whose event a second
/// overrun took from the queue, and whose element no reading finds, went
/// meanwhile: said as learned late, once, so that the log does not leave
/// it authorized. A host the book knows is left to its event (a renewal).
#[test]
fn knocks_said_during_an_overrun_are_not_said_again_and_what_went_is_said() {
    let mut r = rig("said-overrun", SSH);
    r.d.read_aside();
    r.knock(T0, "198.18.0.8");
    assert_eq!(r.log.take().len(), 1);
    r.at(T0 + 500);
    let gate = shut();
    r.k.st().gate = Some(gate.clone());
    let knock = |addr: &str| KernelEvent::Knock {
        prefix: "pfknock ssh: ".into(),
        addr: addr.parse().unwrap(),
    };
    r.k.knock("ssh_4", "198.18.0.9");
    r.k.knock("ssh_4", "198.18.0.12");
    r.k.knock("ssh_4", "198.18.0.14");
    r.event(T0 + 600, KernelEvent::Overrun);
    assert!(r.d.reading().is_some());
    r.log.take();
    let heard = [
        knock("198.18.0.9"),
        knock("198.18.0.12"),
        knock("198.18.0.8"),
        knock("198.18.0.14"),
    ];
    r.d.hear(heard.to_vec(), T0 + 700);
    assert_eq!(
        r.log.take(),
        [
            "authorized 198.18.0.9 service=ssh table=ssh anchor=pfknock ttl=1m",
            "authorized 198.18.0.12 service=ssh table=ssh anchor=pfknock ttl=1m",
            "authorized 198.18.0.14 service=ssh table=ssh anchor=pfknock ttl=1m",
        ]
    );
    // .14's element the first reading does not find (taken out before
    // it, put back after it), the second does: no line.
    r.k.remove("ssh_4", "198.18.0.14");
    // .12 goes before the reading reaches it, by someone whose
    // notification is lost; then a second overrun takes the knocks'
    // events from the queue.
    r.k.remove("ssh_4", "198.18.0.12");
    open(&gate);
    read_to_end(&mut r.d);
    assert_eq!(r.log.take(), Vec::<String>::new());
    r.k.knock("ssh_4", "198.18.0.14");
    // .9, which that reading found, goes too: said once, as what the
    // book held.
    r.k.remove("ssh_4", "198.18.0.9");
    r.event(T0 + 800, KernelEvent::Overrun);
    read_to_end(&mut r.d);
    let late = "(learned late: the kernel dropped notifications)";
    let removed =
        |a: &str| format!("removed {a} service=ssh table=ssh anchor=pfknock age=0s ttl=1m {late}");
    assert_eq!(
        r.log.take(),
        [
            "the kernel dropped notifications: reading the sets again".to_owned(),
            removed("198.18.0.9"),
            removed("198.18.0.12"),
        ]
    );
    let t = ssh_table();
    assert_eq!(r.d.known(&t), Some(2));
}

/// A transaction `nft` commits during the start's reading (a minute or
/// more at a million) is said at once, with who made it, as after the
/// reading; neither the reading nor its event, after the reading, says it
/// again, and the book ends as the kernel does. Added: .21, which the
/// reading finds, and .23, which it does not (its element taken out
/// before the reading and put back after). Deleted: .12, held before the
/// start and found by the reading (put back during it), aged from its
/// deadline. .22 added and deleted again is said twice and not held; .14,
/// deleted by a pfknock command, is not said (the command says it).
#[test]
fn changes_by_others_during_the_starts_reading_are_said_at_once_and_once() {
    let (mut d, k, log, _path, _dir, gate) =
        held_rig("others-reading", "ssh_4", &["198.18.0.12", "198.18.0.14"]);
    let t = ssh_table();
    k.at(T0 + s(5));
    let (twelve, fourteen) = (
        "198.18.0.12".parse().unwrap(),
        "198.18.0.14".parse().unwrap(),
    );
    let twelve_until = k.deadline("ssh_4", twelve);
    let el = ssh_4_change;
    let commit = commit_by;
    let twenty_one = k.knock("ssh_4", "198.18.0.21");
    let twenty_two = k.knock("ssh_4", "198.18.0.22");
    let twenty_three = k.knock("ssh_4", "198.18.0.23");
    let until = k.deadline("ssh_4", twenty_one);
    k.remove("ssh_4", "198.18.0.22");
    k.remove("ssh_4", "198.18.0.14");
    k.remove("ssh_4", "198.18.0.23");
    let queue = [
        el(true, twenty_one, until),
        el(true, twenty_two, until),
        el(true, twenty_three, until),
        commit(4242, "nft"),
        el(false, twelve, twelve_until),
        el(false, twenty_two, until),
        commit(4243, "nft"),
        el(false, fourteen, twelve_until),
        commit(4244, "pfknock"),
    ];
    // The loop queues what waits for the reading's end: not the
    // elements, which are done once heard.
    let queued = d.hear(queue.to_vec(), T0 + s(5));
    let commits = |q: &[KernelEvent]| q.iter().all(|e| matches!(e, KernelEvent::Commit { .. }));
    assert!(queued.len() == 3 && commits(&queued), "{queued:?}");
    let at = |verb, a, extra| format!("{verb} {a} service=ssh table=ssh anchor=pfknock {extra}");
    assert_eq!(
        log.take(),
        [
            at("authorized", "198.18.0.21", "ttl=1m by nft[4242]"),
            at("authorized", "198.18.0.22", "ttl=1m by nft[4242]"),
            at("authorized", "198.18.0.23", "ttl=1m by nft[4242]"),
            at("removed", "198.18.0.12", "age=5s ttl=1m by nft[4243]"),
            at("removed", "198.18.0.22", "age=0s ttl=1m by nft[4243]"),
        ]
    );
    assert!(d.reading().is_some(), "said before the reading is done");
    open(&gate);
    read_to_end(&mut d);
    // .21 and .23, each said as nft added it, whether the reading found
    // it or not; not .12, which the reading found but was deleted
    // meanwhile.
    assert_eq!(log.take(), [found_line(2)]);
    k.remove("ssh_4", "198.18.0.12");
    k.knock("ssh_4", "198.18.0.23");
    for ev in queued {
        d.kernel(ev, T0 + s(5));
    }
    assert_eq!(log.take(), Vec::<String>::new());
    assert_eq!(k.holds("ssh_4"), [twenty_one, twenty_three]);
    assert_eq!(d.known(&t), Some(2));
    // Each expires once, at the kernel's deadline, as old as since it
    // was added.
    twenty_one_and_twenty_three_expire(&mut d, &k, &log);
}

/// Hosts said as they came during the start's reading are known as soon
/// as they are said, whether the reading finds them or not, though the
/// book takes them in only when their events come (the reading's copy is
/// not held beside their records): the end of the reading counts them,
/// the status line too, and a stop before their events keeps them in the
/// record, as old as since they were said. Their events then say
/// nothing, and each expires at the kernel's deadline. .21 the reading
/// finds, .23 it does not (taken out before it and put back after); .12
/// was held before the start.
#[test]
fn hosts_said_during_the_starts_reading_are_known_before_their_events_come() {
    let (mut d, k, log, _path, dir, gate) = held_rig("said-known", "ssh_4", &["198.18.0.12"]);
    let t = ssh_table();
    k.at(T0 + s(5));
    let twelve: IpAddr = "198.18.0.12".parse().unwrap();
    let twenty_one = k.knock("ssh_4", "198.18.0.21");
    let twenty_three = k.knock("ssh_4", "198.18.0.23");
    let until = k.deadline("ssh_4", twenty_one);
    k.remove("ssh_4", "198.18.0.23");
    let queue = [twenty_one, twenty_three]
        .map(|a| KernelEvent::Elements {
            set: "ssh_4".into(),
            added: true,
            addrs: vec![Deadline::new(a, until)].into(),
        })
        .into_iter()
        .chain([KernelEvent::Commit {
            pid: 4242,
            process: "nft".into(),
        }]);
    let queue: Vec<_> = queue.collect();
    let queue = d.hear(queue.to_vec(), T0 + s(5));
    assert_eq!(log.take().len(), 2);
    k.at(T0 + s(7));
    open(&gate);
    read_to_end(&mut d);
    assert_eq!(log.take(), [found_line(3)]);
    // Put back as it was: the kernel held it all along.
    k.at(T0 + s(5));
    k.knock("ssh_4", "198.18.0.23");
    assert_eq!(k.deadline("ssh_4", twenty_three), until);
    k.at(T0 + s(7));
    assert_eq!(d.known(&t), Some(3));
    d.status(T0 / 1000 + 7);
    assert_eq!(
        log.take(),
        ["status <ssh> in anchor pfknock: 3 entries, next expiry in 53s"]
    );
    // A stop before their events: each in the record.
    let st = dir.join("said.state");
    d.state = Some(st.clone());
    d.stop("SIGTERM");
    log.take();
    let key = |a: &str| (t.to_string(), a.parse::<Net>().unwrap());
    let record: pfknock::daemon::state::Known = [
        (key("198.18.0.12"), T0 / 1000),
        (key("198.18.0.21"), T0 / 1000 + 5),
        (key("198.18.0.23"), T0 / 1000 + 5),
    ]
    .into();
    assert_eq!(pfknock::daemon::state::take(&st), Some(record));
    // The events come: nothing said, nothing changed.
    for ev in queue {
        d.kernel(ev, T0 + s(7));
    }
    assert_eq!(log.take(), Vec::<String>::new());
    assert_eq!(d.known(&t), Some(3));
    tick_to(&mut d, &k, T0 + s(60) + COALESCE);
    assert_eq!(
        log.take(),
        ["expired 198.18.0.12 service=ssh table=ssh anchor=pfknock age=1m ttl=1m"]
    );
    assert!(!k.holds("ssh_4").contains(&twelve));
    twenty_one_and_twenty_three_expire(&mut d, &k, &log);
}

/// .21 and .23, added by nft at T0 + 5 s for a minute, expire once each
/// at the kernel's deadline, said as old as since they were added, and
/// the daemon knows none of ssh's after.
fn twenty_one_and_twenty_three_expire(d: &mut Daemon<Nft, Nft, Mem>, k: &Nft, log: &Mem) {
    tick_to(d, k, T0 + s(65) + COALESCE);
    let l = log.take();
    for a in ["198.18.0.21", "198.18.0.23"] {
        assert_eq!(lines_of(&l, "expired", a), 1, "{a}: {l:?}");
    }
    assert!(l.iter().all(|x| x.contains(" age=1m ttl=1m")), "{l:?}");
    assert_eq!(l.len(), 2, "{l:?}");
    assert_eq!(d.known(&ssh_table()), Some(0));
}

/// During an overrun's reading too, `nft`'s changes are said at once: a
/// host the book holds (.8), deleted, with the age the book gives it, and
/// left out of what the reading found (its element put back during it);
/// one added (.31), and taken in without a line learned late. Their
/// events, after the reading, say nothing more.
#[test]
fn changes_by_others_during_an_overrun_are_said_at_once_and_not_learned_late() {
    let mut r = rig("others-overrun", SSH);
    r.d.read_aside();
    let eight = r.knock(T0, "198.18.0.8");
    r.log.take();
    r.at(T0 + s(3));
    let gate = r.overrun_held(T0 + s(3));
    let thirty_one = r.k.knock("ssh_4", "198.18.0.31");
    let el = ssh_4_change;
    let commit = KernelEvent::Commit {
        pid: 4242,
        process: "nft".into(),
    };
    let queue = [
        el(true, thirty_one, r.k.deadline("ssh_4", thirty_one)),
        el(false, eight, r.k.deadline("ssh_4", eight)),
        commit,
    ];
    let queue = r.d.hear(queue.to_vec(), T0 + s(3));
    let at = |verb, a, extra| format!("{verb} {a} service=ssh table=ssh anchor=pfknock {extra}");
    assert_eq!(
        r.log.take(),
        [
            at("authorized", "198.18.0.31", "ttl=1m by nft[4242]"),
            at("removed", "198.18.0.8", "age=3s ttl=1m by nft[4242]"),
        ]
    );
    open(&gate);
    read_to_end(&mut r.d);
    r.k.remove("ssh_4", "198.18.0.8");
    for ev in queue {
        r.event(T0 + s(3), ev);
    }
    assert_eq!(r.log.take(), Vec::<String>::new());
    assert_eq!(r.k.holds("ssh_4"), [thirty_one]);
    assert_eq!(r.d.known(&ssh_table()), Some(1));
    r.at(T0 + s(63) + COALESCE);
    assert_eq!(
        r.log.take(),
        [at("expired", "198.18.0.31", "age=1m ttl=1m")]
    );
}

/// During an overrun's reading, a close knock of a host the daemon knows
/// is said at once: one the book holds (.9, its element found by the
/// reading, which takes it out), and one said as it knocked during the
/// reading (.12). A full meter is said at once. One it does not know
/// (.77) waits for its event, which the reading then answers. Their
/// events, after the reading, say nothing more.
#[test]
fn close_knocks_and_full_meters_during_a_reading_are_said_at_once_and_once() {
    let mut r = rig("close-reading", &format!("{SSH}close = 1240\n"));
    r.d.read_aside();
    r.knock(T0, "198.18.0.9");
    r.log.take();
    r.at(T0 + s(3));
    let gate = r.overrun_held(T0 + s(3));
    let ev = |prefix: &str, a: &str| KernelEvent::Knock {
        prefix: prefix.into(),
        addr: a.parse().unwrap(),
    };
    let (knock, close) = ("pfknock ssh: ", "pfknock close ssh: ");
    r.k.knock("ssh_4", "198.18.0.12");
    let first = [ev(knock, "198.18.0.12")];
    r.d.hear(first.to_vec(), T0 + s(3));
    r.log.take();
    r.k.remove("ssh_4", "198.18.0.12");
    let then = [
        ev(close, "198.18.0.9"),
        ev("pfknock meter ssh_m1_4 full: ", "198.18.0.40"),
        ev(close, "198.18.0.77"),
        ev(close, "198.18.0.12"),
        ev(close, "198.18.0.9"),
    ];
    r.d.hear(then.to_vec(), T0 + s(4));
    let l = r.log.take();
    let closed = |a, age| {
        format!("closed {a} service=ssh table=ssh anchor=pfknock age={age} ttl=1m by knock")
    };
    assert_eq!(l.len(), 3, "{l:?}");
    assert_eq!(l[0], closed("198.18.0.9", "4s"));
    assert!(l[1].starts_with("set ssh_m1_4 is full ("), "{l:?}");
    assert_eq!(l[2], closed("198.18.0.12", "1s"));
    open(&gate);
    read_to_end(&mut r.d);
    assert_eq!(r.log.take(), Vec::<String>::new());
    r.k.remove("ssh_4", "198.18.0.9");
    for e in first.into_iter().chain(then) {
        r.event(T0 + s(5), e);
    }
    let debug = r.log.take_where(|m| m.contains("close knock from"));
    // .9's later connect is the kernel's second log of one close knock:
    // said at debug, as it is outside a reading.
    let not = |a| format!("close knock from {a} for service ssh: it was not authorized");
    assert_eq!(debug, [not("198.18.0.77"), not("198.18.0.9")]);
    assert_eq!(r.log.take(), Vec::<String>::new());
    assert_eq!(r.d.known(&ssh_table()), Some(0));
    assert_eq!(r.k.holds("ssh_4"), Vec::<IpAddr>::new());
}

/// An authorization due during an overrun's reading (a minute or more at
/// a million) expires at its deadline, not once the reading is over: said
/// at once, and what the reading found of it (the dump passed it before
/// it timed out) is not taken in, nor said learned late. One due after
/// the reading expires as any does.
#[test]
fn an_authorization_due_during_an_overruns_reading_expires_at_once() {
    let mut r = rig("due-reading", SSH);
    r.d.read_aside();
    r.knock(T0, "198.18.0.9");
    r.knock(T0 + s(10), "198.18.0.10");
    r.log.take();
    r.at(T0 + s(55));
    let gate = r.overrun_held(T0 + s(55));
    assert_eq!(r.d.due_while_reading_ms(), Some(T0 + s(60) + COALESCE));
    r.k.at(T0 + s(60) + COALESCE);
    r.d.due_while_reading(T0 + s(60) + COALESCE);
    let at = |verb, a, extra| format!("{verb} {a} service=ssh table=ssh anchor=pfknock {extra}");
    assert_eq!(r.log.take(), [at("expired", "198.18.0.9", "age=1m ttl=1m")]);
    assert!(r.d.reading().is_some(), "said before the reading is done");
    assert_eq!(r.d.due_while_reading_ms(), Some(T0 + s(70) + COALESCE));
    // The dump read .9 before it timed out.
    r.k.at(T0 + s(59));
    (r.k.st()
        .sets
        .as_mut()
        .unwrap()
        .get_mut("ssh_4")
        .unwrap()
        .elems)
        .insert("198.18.0.9".parse().unwrap(), T0 + s(60));
    open(&gate);
    read_to_end(&mut r.d);
    assert_eq!(r.log.take(), Vec::<String>::new());
    assert_eq!(r.d.due_while_reading_ms(), None, "no reading runs");
    assert_eq!(r.d.known(&ssh_table()), Some(1));
    r.at(T0 + s(70) + COALESCE);
    assert_eq!(
        r.log.take(),
        [at("expired", "198.18.0.10", "age=1m ttl=1m")]
    );
    assert_eq!(r.d.known(&ssh_table()), Some(0));
}

/// A host said as it knocked during the start's reading (.11), and one
/// allowed then (.13), whose ttl ends before the reading does (a minute
/// is less than a reading of a million): each expires at its deadline,
/// said once while the reading runs; what the reading found of them (the
/// dump passed them before they timed out) is not taken in, and the
/// knock's event, after the reading, says nothing.
#[test]
fn hosts_said_during_the_starts_reading_expire_at_their_deadline_during_it() {
    let (mut d, k, log, path, _dir, gate) = held_rig("said-due", "ssh_4", &[]);
    k.at(T0 + s(5));
    let eleven = k.knock("ssh_4", "198.18.0.11");
    let knock = KernelEvent::Knock {
        prefix: "pfknock ssh: ".into(),
        addr: eleven,
    };
    d.hear(vec![knock.clone()], T0 + s(5));
    let req = Request {
        config: path.clone(),
        argv: vec!["allow".into(), "198.18.0.13".into()],
    };
    let reply = d.control_while_reading(&req, (T0 + s(5)) / 1000);
    assert!(reply.is_some_and(|r| r.error.is_none()));
    assert_eq!(log.take().len(), 2);
    assert_eq!(d.due_while_reading_ms(), Some(T0 + s(65) + COALESCE));
    k.at(T0 + s(65) + COALESCE);
    d.due_while_reading(T0 + s(65) + COALESCE);
    let at = |a| format!("expired {a} service=ssh table=ssh anchor=pfknock age=1m ttl=1m");
    let mut l = log.take();
    l.sort();
    assert_eq!(l, [at("198.18.0.11"), at("198.18.0.13")]);
    assert!(d.reading().is_some(), "said before the reading is done");
    assert_eq!(d.due_while_reading_ms(), None, "nothing else is due");
    // The dump read them before they timed out.
    k.at(T0 + s(64));
    for a in ["198.18.0.11", "198.18.0.13"] {
        let mut st = k.st();
        let set = st.sets.as_mut().unwrap().get_mut("ssh_4").unwrap();
        set.elems.insert(a.parse().unwrap(), T0 + s(65));
    }
    open(&gate);
    read_to_end(&mut d);
    k.at(T0 + s(66));
    d.kernel(knock, T0 + s(66));
    let l = log.take();
    assert!(l.iter().all(|x| !x.contains("198.18.0.1")), "{l:?}");
    assert_eq!(d.known(&ssh_table()), Some(0));
}

/// A renewal during a reading is said at once and once: of a host said
/// as it knocked during the start's reading (.11), and of one the book
/// holds during an overrun's reading (.8), however many packets the
/// knock is. Their events, after the reading, say nothing more, and each
/// expires once, a ttl after its renewal.
#[test]
fn renewals_during_a_reading_are_said_at_once_and_once() {
    let (mut d, k, log, _path, _dir, gate) = held_rig("renewed-reading", "ssh_4", &[]);
    let knock = |a: &str| KernelEvent::Knock {
        prefix: "pfknock ssh: ".into(),
        addr: a.parse().unwrap(),
    };
    let line = |verb, a, extra| format!("{verb} {a} service=ssh table=ssh anchor=pfknock {extra}");
    k.at(T0 + s(5));
    k.knock("ssh_4", "198.18.0.11");
    d.hear(vec![knock("198.18.0.11")], T0 + s(5));
    assert_eq!(log.take().len(), 1);
    k.at(T0 + s(15));
    k.knock("ssh_4", "198.18.0.11");
    let again = [knock("198.18.0.11"), knock("198.18.0.11")];
    d.hear(again.to_vec(), T0 + s(15));
    assert_eq!(
        log.take(),
        [line("renewed", "198.18.0.11", "age=10s ttl=1m")]
    );
    // Not due at its first deadline any more.
    k.at(T0 + s(65) + COALESCE);
    d.due_while_reading(T0 + s(65) + COALESCE);
    assert_eq!(log.take(), Vec::<String>::new());
    assert_eq!(d.due_while_reading_ms(), Some(T0 + s(75) + COALESCE));
    open(&gate);
    read_to_end(&mut d);
    log.take();
    k.at(T0 + s(66));
    for e in [knock("198.18.0.11")].into_iter().chain(again) {
        d.kernel(e, T0 + s(66));
    }
    assert_eq!(log.take(), Vec::<String>::new());
    tick_to(&mut d, &k, T0 + s(75) + COALESCE);
    assert_eq!(
        log.take(),
        [line("expired", "198.18.0.11", "age=1m ttl=1m")]
    );
    // An overrun's reading, the book holding .8.
    let mut r = rig("renewed-overrun", SSH);
    r.d.read_aside();
    r.knock(T0, "198.18.0.8");
    r.log.take();
    let gate = r.overrun_held(T0 + s(3));
    r.k.at(T0 + s(10));
    r.k.knock("ssh_4", "198.18.0.8");
    let again = [knock("198.18.0.8"), knock("198.18.0.8")];
    r.d.hear(again.to_vec(), T0 + s(10));
    assert_eq!(
        r.log.take(),
        [line("renewed", "198.18.0.8", "age=10s ttl=1m")]
    );
    open(&gate);
    read_to_end(&mut r.d);
    for e in again {
        r.event(T0 + s(11), e);
    }
    assert_eq!(r.log.take(), Vec::<String>::new());
    r.at(T0 + s(70) + COALESCE);
    assert_eq!(
        r.log.take(),
        [line("expired", "198.18.0.8", "age=1m ttl=1m")]
    );
}

/// `pfknock flush` during the start's reading is done at once, and the
/// reading takes in nothing of what it emptied: not .12, held before the
/// start, nor .11, said as it knocked before the flush; .13, which knocks
/// after it, is said and held. The knocks' events, after the reading, say
/// nothing more, and the book holds what the kernel holds.
#[test]
fn a_flush_during_the_starts_reading_goes_at_once_and_the_reading_leaves_it_out() {
    let (mut d, k, log, path, _dir, gate) = held_rig("flush-reading", "ssh_4", &["198.18.0.12"]);
    let knock = |a: &str| KernelEvent::Knock {
        prefix: "pfknock ssh: ".into(),
        addr: a.parse().unwrap(),
    };
    k.at(T0 + s(5));
    k.knock("ssh_4", "198.18.0.11");
    d.hear(vec![knock("198.18.0.11")], T0 + s(5));
    assert_eq!(log.take().len(), 1);
    let req = Request {
        config: path.clone(),
        argv: vec!["flush".into()],
    };
    let reply = d.control_while_reading(&req, (T0 + s(6)) / 1000);
    let reply = reply.expect("a flush does not wait for the reading");
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert!(k.holds("ssh_4").is_empty());
    let l = log.take();
    assert!(l.iter().any(|x| x.contains("198.18.0.12")), "{l:?}");
    k.at(T0 + s(7));
    let thirteen = k.knock("ssh_4", "198.18.0.13");
    d.hear(vec![knock("198.18.0.13")], T0 + s(7));
    assert_eq!(lines_of(&log.take(), "authorized", "198.18.0.13"), 1);
    // The reading dumps the set as if before the flush.
    k.knock("ssh_4", "198.18.0.11");
    k.knock("ssh_4", "198.18.0.12");
    open(&gate);
    read_to_end(&mut d);
    k.remove("ssh_4", "198.18.0.11");
    k.remove("ssh_4", "198.18.0.12");
    log.take();
    for a in ["198.18.0.11", "198.18.0.13"] {
        d.kernel(knock(a), T0 + s(8));
    }
    assert_eq!(log.take(), Vec::<String>::new());
    assert_eq!(k.holds("ssh_4"), [thirteen]);
    assert_eq!(d.known(&ssh_table()), Some(1));
    tick_to(&mut d, &k, T0 + s(67) + COALESCE);
    let l = log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(lines_of(&l, "expired", "198.18.0.13"), 1, "{l:?}");
}

/// A burst of knocks during the start's reading is said a part at a
/// time, as syslog takes the lines: while a part's worth wait for it,
/// the daemon says nothing more (a burst said at once overran syslog's
/// queue, and its lines were dropped); once they are taken, it goes on,
/// in order, until each knock is said once.
#[test]
fn a_burst_during_a_reading_is_said_as_syslog_takes_it() {
    let (mut d, k, log, _path, _dir, gate) = held_rig("burst-reading", "ssh_4", &[]);
    k.at(T0 + s(5));
    let burst: Vec<KernelEvent> = (0..3000)
        .map(|i| KernelEvent::Knock {
            prefix: "pfknock ssh: ".into(),
            addr: k.knock("ssh_4", &nth(i).to_string()),
        })
        .collect();
    let slow = std::sync::atomic::Ordering::Relaxed;
    log.1.store(5000, slow);
    let burst = d.hear(burst.to_vec(), T0 + s(5));
    assert!(log.take().is_empty(), "said past what waits");
    log.1.store(0, slow);
    d.reading_turn(T0 + s(5));
    let l = log.take();
    assert_eq!(l.len(), 3000);
    for (i, x) in l.iter().enumerate() {
        assert!(
            x.starts_with(&format!("authorized {} ", nth(i as u32))),
            "{x}"
        );
    }
    open(&gate);
    read_to_end(&mut d);
    log.take();
    for e in burst {
        d.kernel(e, T0 + s(6));
    }
    assert_eq!(log.take(), Vec::<String>::new());
    assert_eq!(d.known(&ssh_table()), Some(3000));
}

/// `pfknock load` through the control socket while the start's reading
/// runs: a config that makes no set being read anew is loaded at once, as
/// SIGHUP does it, and the reply says so; one that cannot be read is
/// answered at once with its error, nothing loaded; one that would make a
/// set being read anew, and `expire`, wait for the reading's end (`None`:
/// `run`'s loop holds the connection and answers after). (`revoke`,
/// `allow`, `flush` and `unload` are done at once: their own tests.)
#[test]
fn a_load_through_the_control_socket_during_a_reading_goes_at_once_where_sighup_would() {
    let (mut d, k, log, path, _dir) = reading_rig("control-reading");
    let loads = k.st().loads;
    let req = |argv: &[&str]| Request {
        config: path.clone(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
    };
    let now = (T0 + s(20)) / 1000;
    assert_eq!(d.control_while_reading(&req(&["expire"]), now), None);
    fs::write(&path, SSH.replace("60s", "thirty")).unwrap();
    let reply = d
        .control_while_reading(&req(&["load"]), now)
        .expect("at once");
    assert!(
        reply.error.is_some_and(|(e, _)| e.contains("thirty")),
        "{:?}",
        reply.done
    );
    assert!(log.take().is_empty(), "the command says it, not the log");
    assert_eq!(k.st().loads, loads);
    let renamed = SSH.replace("\"ssh\"", "\"sshd\"") + "table = \"ssh\"\n";
    fs::write(&path, renamed).unwrap();
    assert_eq!(
        d.control_while_reading(&req(&["load"]), now),
        None,
        "it waits"
    );
    assert_eq!(k.st().loads, loads);
    fs::write(&path, SSH.replace("60s", "30s")).unwrap();
    let reply = d
        .control_while_reading(&req(&["load"]), now)
        .expect("at once");
    assert_eq!(reply.error, None);
    assert!(
        reply
            .done
            .stderr
            .iter()
            .any(|l| l.contains(": loaded by the running daemon (pid ")),
        "{:?}",
        reply.done
    );
    assert_eq!(k.st().loads, loads + 1);
    assert_eq!(k.st().set("ssh_4").unwrap().timeout_ms, 30_000);
    let l = log.take();
    assert!(l.len() == 1 && l[0].starts_with("reloaded "), "{l:?}");
    // The machine takes it in after the reading, as after a SIGHUP.
    read_to_end(&mut d);
    d.caught_up((T0 + s(21)) / 1000);
    assert_eq!(d.next_due_ms(), Some(T0 + s(30) + COALESCE));
}

/// A reload that deletes authorized sets (a service removed, a family a
/// service no longer takes) deletes their elements with them: the log
/// says how many went with each set, the daemon forgets them, and no
/// look-up of a set that is gone follows at their deadlines. What the
/// reload keeps expires as before. `pfknock load` through the daemon
/// says the same lines on its stderr.
#[test]
fn a_reload_that_deletes_sets_says_what_went_with_them_and_forgets_it() {
    for by_load in [false, true] {
        reload_deleting_sets(by_load);
    }
}

fn reload_deleting_sets(by_load: bool) {
    let mut r = rig(&format!("reload-deletes-{by_load}"), &format!("{SSH}{WEB}"));
    let nine = r.knock(T0, "198.18.0.9");
    let six = r.k.knock("ssh_6", "fd00::9");
    let (w1, w2) = (
        r.k.knock("web_4", "198.18.0.20"),
        r.k.knock("web_4", "198.18.0.21"),
    );
    for a in [six, w1, w2] {
        let prefix = if a == six {
            "pfknock ssh: "
        } else {
            "pfknock web: "
        };
        r.event(
            T0 + 1,
            KernelEvent::Knock {
                prefix: prefix.into(),
                addr: a,
            },
        );
    }
    assert_eq!(r.log.take().len(), 4);
    // web removed, ssh narrowed to IPv4.
    fs::write(&r.path, SSH.to_owned() + "family = \"inet\"\n").unwrap();
    r.k.at(T0 + s(10));
    if by_load {
        let reply = r.command(T0 + s(10), &["load"]);
        assert!(reply.error.is_none(), "{:?}", reply.error);
        let l = &reply.done.stderr;
        assert_eq!(l.len(), 3, "{l:?}");
        reloaded_without_ssh_6_and_web(
            &[&["reloaded (said by the log)".to_owned()], &l[..2]].concat(),
        );
        assert!(l[2].ends_with("which keeps it so"), "{l:?}");
    } else {
        r.d.reload((T0 + s(10)) / 1000);
    }
    reloaded_without_ssh_6_and_web(&r.log.take());
    let sets: Vec<String> = r.k.st().sets.as_ref().unwrap().keys().cloned().collect();
    assert!(
        !sets.iter().any(|x| x == "ssh_6" || x.starts_with("web")),
        "{sets:?}"
    );
    assert_eq!(r.k.holds("ssh_4"), vec![nine]);
    // At the deadlines: .9's expiry, and nothing of the sets that went.
    assert_eq!(r.d.next_due_ms(), Some(T0 + s(60) + COALESCE));
    r.at(T0 + s(60) + COALESCE);
    assert_eq!(
        r.log.take(),
        ["expired 198.18.0.9 service=ssh table=ssh anchor=pfknock age=1m ttl=1m"]
    );
    assert_eq!(r.d.next_due_ms(), None);
    r.at(T0 + s(120));
    assert!(r.log.take().is_empty());
    assert!(r.k.holds("ssh_4").is_empty());
}

/// Hosts `nth(i)`, `i` in `range`, added to ssh_4 by another process:
/// put in the kernel model until T0 + 60 s, and their notification.
fn added_in(k: &Nft, range: std::ops::Range<u32>) -> KernelEvent {
    let addrs: Vec<Deadline> = range
        .map(|i| Deadline::new(nth(i), Some(T0 + 60_000)))
        .collect();
    let mut st = k.st();
    let elems = &mut st.set("ssh_4").unwrap().elems;
    elems.extend(addrs.iter().map(|e| (e.addr(), T0 + 60_000)));
    KernelEvent::Elements {
        set: "ssh_4".into(),
        added: true,
        addrs: addrs.into(),
    }
}

/// A transaction of hosts `nth(0..n)` by nft[4242] (`added_in`), then a
/// knock of 198.19.0.1 (the kernel holds it too): their events.
fn by_nft_then_a_knock(k: &Nft, n: u32) -> [KernelEvent; 3] {
    let added = added_in(k, 0..n);
    let addr = k.knock("ssh_4", "198.19.0.1");
    let commit = KernelEvent::Commit {
        pid: 4242,
        process: "nft".into(),
    };
    let prefix = "pfknock ssh: ".into();
    [added, commit, KernelEvent::Knock { prefix, addr }]
}

/// A transaction by others of 3,000 elements (one `nft -f`) is said a
/// part at a time, as syslog takes the lines: at its commit, one part
/// (`SAY_AT_ONCE`), and nothing more while a part's worth of lines wait
/// for syslog (said at once, 100,000 went past syslog's queue and were
/// dropped); once they are taken, the rest, in order, each once, and then
/// the knock whose event came after it. No deadline is looked at before
/// the transaction is all said. The book then holds what the kernel does.
#[test]
fn a_transaction_by_others_is_said_as_syslog_takes_the_lines() {
    use pfknock::daemon::SAY_AT_ONCE;
    use std::collections::VecDeque;
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::{Duration, Instant};
    let mut r = rig("others-parts", &format!("{SSH}size = 65536\n"));
    r.at(T0);
    let n = 3000;
    let mut q = VecDeque::from(by_nft_then_a_knock(&r.k, n));
    let later = Instant::now() + Duration::from_secs(60);
    let clock = || T0 + 5;
    r.log.2.store(true, Relaxed);
    assert!(!r.d.work_through(&mut q, &clock, later, None));
    let mut l = r.log.take();
    assert_eq!(l.len(), SAY_AT_ONCE, "one part at the commit");
    // Syslog has not taken them: nothing more.
    assert!(!r.d.work_through(&mut q, &clock, later, None));
    assert_eq!(r.log.take(), Vec::<String>::new());
    assert_eq!(q.len(), 1, "the knock waits behind the transaction");
    assert!(r.d.unsaid());
    // Syslog took all but a part's less one: the next part, and so on.
    r.log.1.store(SAY_AT_ONCE - 1, Relaxed);
    assert!(!r.d.work_through(&mut q, &clock, later, None));
    let next = r.log.take();
    assert_eq!(next.len(), SAY_AT_ONCE);
    l.extend(next);
    r.log.2.store(false, Relaxed);
    r.log.1.store(0, Relaxed);
    assert!(r.d.work_through(&mut q, &clock, later, None));
    l.extend(r.log.take());
    assert_eq!(l.len(), n as usize + 1);
    for (i, x) in l[..n as usize].iter().enumerate() {
        let want = format!(
            "authorized {} service=ssh table=ssh anchor=pfknock ttl=1m by nft[4242]",
            nth(i as u32)
        );
        assert_eq!(*x, want);
    }
    assert!(l[n as usize].starts_with("authorized 198.19.0.1 service=ssh"));
    assert_eq!(r.d.known(&ssh_table()), Some(n as usize + 1));
    assert_eq!(r.k.holds("ssh_4").len(), n as usize + 1);
    assert!(!r.d.unsaid());
}

/// What comes to the daemon while part of a transaction by others is
/// left to say comes after it: a command (here `pfknock revoke` of a
/// host the transaction added, not said yet) says the rest first, then
/// its own line; the host is then in neither the book nor the kernel. So
/// too a deadline looked at (`tick`), and a transaction heard during a
/// start's reading, said a part at a time there too.
#[test]
fn what_comes_while_a_transaction_is_said_comes_after_it() {
    use pfknock::daemon::SAY_AT_ONCE;
    use std::sync::atomic::Ordering::Relaxed;
    let mut r = rig("others-then", &format!("{SSH}size = 65536\n"));
    r.at(T0);
    let n = 2 * SAY_AT_ONCE as u32 + 10;
    r.d.kernel(added_in(&r.k, 0..n), T0 + 5);
    let commit = KernelEvent::Commit {
        pid: 4242,
        process: "nft".into(),
    };
    r.d.kernel(commit.clone(), T0 + 5);
    assert_eq!(r.log.take().len(), SAY_AT_ONCE);
    let last = nth(n - 1).to_string();
    let reply = r.command(T0 + 10, &["revoke", &last]);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    let l = r.log.take();
    assert_eq!(
        l.len(),
        n as usize - SAY_AT_ONCE + 1,
        "the rest, then the revoke"
    );
    assert!(l[l.len() - 2].starts_with(&format!("authorized {last} ")));
    assert!(l[l.len() - 1].starts_with(&format!("revoked {last} ")));
    assert_eq!(r.d.known(&ssh_table()), Some(n as usize - 1));
    assert!(!r.k.holds("ssh_4").contains(&nth(n - 1)));
    // A deadline looked at says what is left first.
    r.d.kernel(added_in(&r.k, n..2 * n), T0 + s(1));
    r.d.kernel(commit, T0 + s(1));
    assert_eq!(r.log.take().len(), SAY_AT_ONCE);
    r.d.tick_ms(T0 + s(2));
    assert_eq!(r.log.take().len(), n as usize - SAY_AT_ONCE);
    assert_eq!(r.d.known(&ssh_table()), Some(2 * n as usize - 1));
    // During a start's reading: heard a part at a time.
    let (mut d, k, log, _path, _dir, gate) = held_rig("others-reading", "ssh_4", &[]);
    let evs = by_nft_then_a_knock(&k, n);
    log.2.store(true, Relaxed);
    let evs = d.hear(evs.to_vec(), T0 + s(5));
    let mut l = log.take();
    assert_eq!(l.len(), SAY_AT_ONCE, "said past what waits");
    d.reading_turn(T0 + s(5));
    assert_eq!(log.take(), Vec::<String>::new(), "said past what waits");
    log.2.store(false, Relaxed);
    log.1.store(0, Relaxed);
    d.reading_turn(T0 + s(5));
    l.extend(log.take());
    assert_eq!(l.len(), n as usize + 1);
    assert!(l[n as usize - 1].starts_with(&format!("authorized {last} ")));
    assert!(l[n as usize].starts_with("authorized 198.19.0.1 "));
    assert!(!d.unsaid());
    open(&gate);
    read_to_end(&mut d);
    let l = log.take();
    assert!(l.iter().all(|x| !x.starts_with("authorized")), "{l:?}");
    for e in evs {
        d.kernel(e, T0 + s(6));
    }
    assert_eq!(log.take(), Vec::<String>::new(), "said once");
    assert_eq!(d.known(&ssh_table()), Some(n as usize + 1));
}

/// What an overrun learned late is said a part a turn (`Query::Pause`),
/// and the next part only once syslog took the lines before: while a
/// part's worth wait, the loop does not wait on the reading
/// (`reading_to_wait_on`), and its end is not taken. Each line then said
/// once, and the book holds what the kernel does.
#[test]
fn lines_learned_late_are_said_as_syslog_takes_them() {
    use pfknock::daemon::SAY_AT_ONCE;
    use std::sync::atomic::Ordering::Relaxed;
    let (mut d, k, log, _path, _dir) = reading_rig_with("late-parts", |_| {});
    read_to_end(&mut d);
    log.take();
    let n = 2 * SAY_AT_ONCE as u32 + 10;
    // Added while the kernel dropped their notifications.
    let _ = added_in(&k, 0..n);
    d.kernel(KernelEvent::Overrun, T0 + s(1));
    log.2.store(true, Relaxed);
    let mut parts = 0;
    for _ in 0..10 {
        if d.reading().is_none() {
            break;
        }
        assert!(d.reading_to_wait_on().is_some(), "the log has room");
        d.read_done();
        if d.reading().is_some() {
            parts += 1;
            assert!(log.waiting() >= SAY_AT_ONCE, "a part said");
            assert!(
                d.reading_to_wait_on().is_none(),
                "the next waits for syslog"
            );
            log.1.store(0, Relaxed);
        }
    }
    assert!(d.reading().is_none());
    assert!(parts >= 2, "{parts} parts");
    log.2.store(false, Relaxed);
    let all: Vec<(Level, String)> = log.0.lock().unwrap().drain(..).collect();
    let said: Vec<&String> = (all.iter())
        .filter(|(l, _)| *l != Level::Debug)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(said[0].starts_with("the kernel dropped notifications: reading the sets again"));
    assert!(said[1].starts_with(&format!("{n} changes to the authorizations of service ssh")));
    let mut late: Vec<&String> = (all.iter())
        .filter(|(l, m)| *l == Level::Debug && m.contains("(learned late"))
        .map(|(_, m)| m)
        .collect();
    late.sort_unstable();
    late.dedup();
    assert_eq!(late.len(), n as usize, "each once");
    assert_eq!(d.known(&ssh_table()), Some(n as usize));
}

/// A knock of a host `pfknock allow` authorized during the start's
/// reading is said as a renewal of that authorization (it was said
/// `authorized`, a new one), and moves its deadline; its event after
/// the reading says nothing. The book then holds it until the knock's
/// deadline, as the kernel does, and it expires once, then, aged from the
/// renewal as any renewed host is (not from the reading's start, which
/// found its element).
#[test]
fn a_knock_of_a_host_allowed_during_a_reading_renews_it() {
    let (mut d, k, log, path, _dir, gate) = held_rig("allow-knock", "ssh_4", &[]);
    k.at(T0 + s(5));
    let req = Request {
        config: path.clone(),
        argv: ["allow", "198.18.0.30"].map(String::from).to_vec(),
    };
    let reply = d
        .control_while_reading(&req, (T0 + s(5)) / 1000)
        .expect("at once");
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert_eq!(log.take().len(), 1, "allowed");
    k.at(T0 + s(15));
    let knock = KernelEvent::Knock {
        prefix: "pfknock ssh: ".into(),
        addr: k.knock("ssh_4", "198.18.0.30"),
    };
    d.hear(vec![knock.clone(), knock.clone()], T0 + s(15));
    assert_eq!(
        log.take(),
        ["renewed 198.18.0.30 service=ssh table=ssh anchor=pfknock age=10s ttl=1m"]
    );
    open(&gate);
    read_to_end(&mut d);
    log.take();
    d.kernel(knock.clone(), T0 + s(16));
    d.kernel(knock, T0 + s(16));
    assert_eq!(log.take(), Vec::<String>::new(), "said once");
    assert_eq!(d.known(&ssh_table()), Some(1));
    tick_to(&mut d, &k, T0 + s(65) + COALESCE);
    assert_eq!(
        log.take(),
        Vec::<String>::new(),
        "not due at the allow's deadline"
    );
    tick_to(&mut d, &k, T0 + s(75) + COALESCE);
    assert_eq!(
        log.take(),
        ["expired 198.18.0.30 service=ssh table=ssh anchor=pfknock age=1m ttl=1m"]
    );
    assert_eq!(d.known(&ssh_table()), Some(0));
}

/// A full meter heard during an overrun's reading is said full at once,
/// and looked at a rate window later while the reading still runs: said
/// to have room again once its elements timed out. Its event, after the
/// reading, says nothing more (not full again).
#[test]
fn a_full_meter_during_a_reading_is_said_to_have_room_again_during_it() {
    let mut r = rig("meter-reading", &format!("{SSH}size = 2\n"));
    full_meter(&r.k);
    r.d.read_aside();
    let gate = r.overrun_held(T0 + 100);
    let full = KernelEvent::Knock {
        prefix: "pfknock meter ssh_m1_4 full: ".into(),
        addr: "198.18.0.9".parse().unwrap(),
    };
    r.d.hear(vec![full.clone()], T0 + 100);
    let l = r.log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(
        l[0].starts_with("set ssh_m1_4 is full (8 elements)"),
        "{l:?}"
    );
    // A window (5 s) after the knock it dropped, past the elements'
    // deadline (T0 + 4 s): room.
    assert_eq!(r.d.due_while_reading_ms(), Some(T0 + 5100 + COALESCE));
    r.k.at(T0 + 5100 + COALESCE);
    r.d.due_while_reading(T0 + 5100 + COALESCE);
    assert_eq!(r.log.take(), ["set ssh_m1_4 has room again"]);
    assert!(r.d.reading().is_some(), "during the reading");
    open(&gate);
    read_to_end(&mut r.d);
    r.log.take();
    r.event(T0 + 5200, full);
    assert_eq!(r.log.take(), Vec::<String>::new(), "said once");
    assert_eq!(r.d.next_due_ms(), None, "no more looks");
}

/// A transaction by others heard during a start's reading, a part said
/// while syslog takes no line, and the reading over before the rest is:
/// the reading's end waits (the loop does not wait on it) until the rest
/// is said, each once, as syslog takes the lines; the loop queued none
/// of its elements, and its commit after the reading says nothing more
/// of it (the knock after it, not heard during the reading, is said as
/// any: a renewal of what the reading found).
#[test]
fn a_transaction_left_unsaid_when_the_reading_ends_is_said_then_once() {
    use pfknock::daemon::SAY_AT_ONCE;
    use std::sync::atomic::Ordering::Relaxed;
    let (mut d, k, log, _path, _dir, gate) = held_rig("unsaid-end", "ssh_4", &[]);
    let n = 3 * SAY_AT_ONCE as u32;
    let evs = by_nft_then_a_knock(&k, n);
    log.2.store(true, Relaxed);
    let mut queued = d.hear(evs[..2].to_vec(), T0 + s(5));
    assert!(
        matches!(queued[..], [KernelEvent::Commit { .. }]),
        "{queued:?}"
    );
    let mut l = log.take();
    assert_eq!(l.len(), SAY_AT_ONCE);
    assert!(d.unsaid());
    open(&gate);
    for _ in 0..5000 {
        if k.st().heard.len() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // The reading's answer is in, but waits for the rest to be said.
    d.read_done();
    assert!(d.reading().is_some() && d.reading_to_wait_on().is_none());
    assert_eq!(log.take(), Vec::<String>::new());
    // Syslog takes them, and the next: the loop's turns say the rest.
    log.2.store(false, Relaxed);
    log.1.store(0, Relaxed);
    d.reading_turn(T0 + s(5));
    assert!(!d.unsaid());
    assert!(d.reading_to_wait_on().is_some());
    read_to_end(&mut d);
    l.extend(log.take_where(|m| m.starts_with("authorized ")));
    log.take();
    let want: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "authorized {} service=ssh table=ssh anchor=pfknock ttl=1m by nft[4242]",
                nth(i)
            )
        })
        .collect();
    assert_eq!(l, want);
    queued.push(evs[2].clone());
    for e in queued {
        d.kernel(e, T0 + s(6));
    }
    let l = log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("renewed 198.19.0.1 "), "{l:?}");
    assert_eq!(d.known(&ssh_table()), Some(n as usize + 1));
}

/// A daemon whose start's reading runs beside the loop over a record of
/// the last run that knew .9 (in the kernel since the table was loaded
/// at T0) and .7 (gone); the reading held by `gate`, if any.
fn record_rig(
    name: &str,
    gate: Option<Gate>,
) -> (Daemon<Nft, Nft, Mem>, Nft, Mem, PathBuf, common::Scratch) {
    let (dir, path, cfg, k, log) = start_parts(name);
    k.clone().load(&cfg, "").unwrap();
    k.knock("ssh_4", "198.18.0.9");
    k.st().gate = gate;
    let mut d = Daemon::start(cfg, &path, k.clone(), k.clone(), log.clone(), T0 / 1000).unwrap();
    let key = |a: &str| (ssh_table().to_string(), a.parse::<Net>().unwrap());
    let record: pfknock::daemon::state::Known = [
        (key("198.18.0.9"), T0 / 1000 - 10),
        (key("198.18.0.7"), T0 / 1000 - 10),
    ]
    .into();
    d.use_events_later(Box::new(k.clone()), Some(record));
    d.read_aside();
    d.begin(T0 + 10);
    assert!(d.reading().is_some(), "the start's reading runs beside");
    log.take();
    (d, k, log, path, dir)
}

/// Over a record of the last run, the start's reading lets go of what
/// times out while it runs as well, and the loop says it with the record
/// in mind. A host the record kept (.7, back in the kernel) whose element
/// times out during the reading's dump is said once, by the comparison
/// with the record ("while the daemon was down"), not also by the loop
/// (two lines without the record's check). One the record did not keep
/// (.8) was authorized while no daemon ran, which the comparison cannot
/// find once it is gone: said so, then expired, each once and in that
/// order (neither line when the reading kept it to its take-in, nor in
/// the model, whose dump dropped it). .9, found, is taken in.
#[test]
fn over_a_record_what_times_out_during_the_reading_is_said_once() {
    let gate = shut();
    let (mut d, k, log, _path, _dir) = record_rig("record-gone", Some(gate.clone()));
    let (seven, eight): (IpAddr, IpAddr) =
        ("198.18.0.7".parse().unwrap(), "198.18.0.8".parse().unwrap());
    k.st().set("ssh_4").unwrap().elems.insert(seven, T0 + s(20));
    k.st().set("ssh_4").unwrap().elems.insert(eight, T0 + s(25));
    k.st().dump_takes = 30_000;
    open(&gate);
    read_to_end(&mut d);
    let l = log.take();
    let of =
        |a: &str| -> Vec<&String> { l.iter().filter(|x| x.contains(&format!(" {a} "))).collect() };
    let of_seven = of("198.18.0.7");
    assert_eq!(of_seven.len(), 1, "{l:?}");
    assert!(of_seven[0].ends_with("while the daemon was down"), "{l:?}");
    let of_eight = of("198.18.0.8");
    assert_eq!(of_eight.len(), 2, "{l:?}");
    assert!(of_eight[0].starts_with("authorized 198.18.0.8 "), "{l:?}");
    assert!(
        of_eight[0].ends_with("age=1m ttl=1m while the daemon was down"),
        "{l:?}"
    );
    assert!(of_eight[1].starts_with("expired 198.18.0.8 "), "{l:?}");
    assert!(of_eight[1].ends_with("age=1m ttl=1m"), "{l:?}");
    // .9 is known (taken in), .7 and .8 are not, nor in the kernel.
    assert_eq!(d.known(&ssh_table()), Some(1));
    assert!(!k.holds("ssh_4").contains(&seven));
    assert!(!k.holds("ssh_4").contains(&eight));
}

/// The table deleted by another process during the start's reading over
/// a record of the last run (which knew .9, still in the kernel, and .7,
/// gone): each authorized set is said to be gone before the reading read
/// it, and the comparison with the record says nothing of their hosts.
/// It said .9 and .7 "removed while the daemon was down", and .9 was in
/// the kernel when the daemon started. The restore has nothing to put
/// back, and says so.
#[test]
fn a_table_deleted_during_a_start_over_a_record_says_nothing_false_of_the_record() {
    let gate = shut();
    let (mut d, k, log, _path, _dir) = record_rig("record-deleted", Some(gate.clone()));
    k.delete_table();
    k.at(T0 + s(1));
    let deleted = [
        KernelEvent::Changed {
            what: "table",
            name: "pfknock".into(),
        },
        KernelEvent::Commit {
            pid: 4242,
            process: "nft".into(),
        },
    ];
    let deleted = d.hear(deleted.to_vec(), T0 + s(1));
    open(&gate);
    read_to_end(&mut d);
    for ev in deleted {
        d.kernel(ev, T0 + s(2));
    }
    for _ in 0..10 {
        d.tick_ms(T0 + s(2));
    }
    let gone = |set: &str| {
        format!(
            "set {set}: gone before this reading of the sets had read it: the authorizations \
             it held are not known, and a restore cannot put them back"
        )
    };
    assert_eq!(
        log.take(),
        [
            gone("ssh_4"),
            gone("ssh_6"),
            "table restored after a change by nft[4242] (table pfknock): restored 0 \
             authorizations"
                .to_owned()
        ]
    );
}

/// A start over the last run's record while hosts change during its
/// reading: what changed after the start was said as it came (or is said
/// when its event comes), and the compare with the record, after the
/// reading, says nothing of those hosts. Before, it said them as changed
/// while no daemon ran: .10 and .11 removed (the kernel held both at the
/// start) and .13 authorized then. The record knew .7, .10, .11 and .12
/// twenty seconds before the start; .10, .11 and .12 knocked again while
/// no daemon ran, .7 left. After the daemon listens, .10 knocks again (its
/// event still waiting at the reading's end) and `nft` adds .13; during
/// the reading `nft` deletes .11, so the reading finds .10, .11 and .13.
/// The compare says .12 renewed and .7 gone while the daemon was down;
/// the kernel ends with .10, .12 and .13, and so does the book.
#[test]
fn the_compare_with_the_record_says_nothing_of_what_changed_during_the_reading() {
    let (_dir, path, cfg, k, log) = start_parts("compare-during");
    let t = ssh_table();
    let ip = |a: &str| a.parse::<IpAddr>().unwrap();
    let then = T0 / 1000 - 20;
    let record: pfknock::daemon::state::Known =
        ["198.18.0.7", "198.18.0.10", "198.18.0.11", "198.18.0.12"]
            .map(|a| ((t.to_string(), a.parse::<Net>().unwrap()), then))
            .into();
    let mut d = Daemon::start(cfg, &path, k.clone(), k.clone(), log.clone(), T0 / 1000).unwrap();
    for a in ["198.18.0.10", "198.18.0.11", "198.18.0.12"] {
        k.knock("ssh_4", a);
    }
    k.at(T0 + s(5));
    d.use_events_later(Box::new(k.clone()), Some(record));
    // After the daemon listens, before the reading passes them: .10's
    // knock, and .13 added by nft (its event heard during the reading).
    k.knock("ssh_4", "198.18.0.10");
    let thirteen = k.knock("ssh_4", "198.18.0.13");
    let until = k.deadline("ssh_4", thirteen);
    d.read_aside();
    d.begin(T0 + s(5));
    assert!(d.reading().is_some());
    log.take();
    let eleven = ip("198.18.0.11");
    let gone_at = k.deadline("ssh_4", eleven);
    k.remove("ssh_4", "198.18.0.11");
    let el = ssh_4_change;
    let commit = |pid| commit_by(pid, "nft");
    let queue = [
        el(false, eleven, gone_at),
        commit(42),
        el(true, thirteen, until),
        commit(43),
    ];
    let queue = d.hear(queue.to_vec(), T0 + s(6));
    let at = |verb, a, extra| format!("{verb} {a} service=ssh table=ssh anchor=pfknock {extra}");
    assert_eq!(
        log.take(),
        [
            at("removed", "198.18.0.11", "age=6s ttl=1m by nft[42]"),
            at("authorized", "198.18.0.13", "ttl=1m by nft[43]"),
        ]
    );
    let ten = ip("198.18.0.10");
    d.read_done_heard(|| vec![("pfknock ssh: ".to_owned(), ten)]);
    assert!(d.reading().is_none());
    let l = log.take();
    let down = "while the daemon was down";
    assert_eq!(l.len(), 2, "{l:?}");
    assert!(
        l[0].starts_with("renewed 198.18.0.12 ") && l[0].ends_with(down),
        "{l:?}"
    );
    assert!(
        l[1].contains(" 198.18.0.7 ") && l[1].ends_with(down),
        "{l:?}"
    );
    // The events that waited: .10's knock said once; the others said.
    for ev in queue {
        d.kernel(ev, T0 + s(7));
    }
    let knock = KernelEvent::Knock {
        prefix: "pfknock ssh: ".into(),
        addr: ten,
    };
    d.kernel(knock, T0 + s(7));
    let l = log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("authorized 198.18.0.10 "), "{l:?}");
    let want = ["198.18.0.10", "198.18.0.12", "198.18.0.13"].map(ip);
    assert_eq!(k.holds("ssh_4"), want);
    assert_eq!(d.known(&t), Some(3));
    let snap = d.snapshot();
    let booked: Vec<IpAddr> = (snap.hosts(&t.to_string()).into_iter().flatten())
        .map(|(n, _)| n.addr())
        .collect();
    assert_eq!(booked, want, "the book holds what the kernel does");
}

/// A host nft adds, deletes and adds again during the start's reading
/// (.31, one transaction each): each change said once as it comes; the
/// loop queues none of their elements, so the reading's end and the
/// commits after it say nothing more (the build before said the deletion
/// and the second addition again once the reading was in). The book
/// holds it as the kernel does, from the second addition: not expired
/// at the first addition's deadline, expired once at the second's, as
/// old as since then. .32, added and deleted, stays out of both.
#[test]
fn a_host_added_deleted_and_added_again_during_the_starts_reading_is_said_once_each() {
    let (mut d, k, log, _path, _dir, gate) = held_rig("added-again", "ssh_4", &[]);
    let t = ssh_table();
    let el = ssh_4_change;
    let commit = |pid| commit_by(pid, "nft");
    k.at(T0 + s(5));
    let x = k.knock("ssh_4", "198.18.0.31");
    let y = k.knock("ssh_4", "198.18.0.32");
    let (first, gone) = (k.deadline("ssh_4", x), k.deadline("ssh_4", y));
    let mut queue = d.hear(
        vec![el(true, x, first), el(true, y, gone), commit(41)],
        T0 + s(5),
    );
    k.at(T0 + s(6));
    k.remove("ssh_4", "198.18.0.31");
    k.remove("ssh_4", "198.18.0.32");
    queue.extend(d.hear(
        vec![el(false, x, first), el(false, y, gone), commit(42)],
        T0 + s(6),
    ));
    k.at(T0 + s(7));
    k.knock("ssh_4", "198.18.0.31");
    let second = k.deadline("ssh_4", x);
    queue.extend(d.hear(vec![el(true, x, second), commit(43)], T0 + s(7)));
    let at = |verb, a, extra, pid| {
        format!("{verb} {a} service=ssh table=ssh anchor=pfknock {extra}ttl=1m by nft[{pid}]")
    };
    assert_eq!(
        log.take(),
        [
            at("authorized", "198.18.0.31", "", 41),
            at("authorized", "198.18.0.32", "", 41),
            at("removed", "198.18.0.31", "age=1s ", 42),
            at("removed", "198.18.0.32", "age=1s ", 42),
            at("authorized", "198.18.0.31", "", 43),
        ]
    );
    assert!(
        queue
            .iter()
            .all(|e| matches!(e, KernelEvent::Commit { .. })),
        "{queue:?}"
    );
    open(&gate);
    read_to_end(&mut d);
    assert_eq!(log.take(), [found_line(1)]);
    for ev in queue {
        d.kernel(ev, T0 + s(8));
    }
    assert_eq!(log.take(), Vec::<String>::new());
    assert_eq!(k.holds("ssh_4"), [x]);
    assert_eq!(d.known(&t), Some(1));
    tick_to(&mut d, &k, T0 + s(65) + COALESCE);
    assert_eq!(
        log.take(),
        Vec::<String>::new(),
        "not at the first deadline"
    );
    assert_eq!(k.holds("ssh_4"), [x]);
    tick_to(&mut d, &k, T0 + s(67) + COALESCE);
    assert_eq!(
        log.take(),
        ["expired 198.18.0.31 service=ssh table=ssh anchor=pfknock age=1m ttl=1m"]
    );
    assert_eq!(k.holds("ssh_4"), Vec::<IpAddr>::new());
    assert_eq!(d.known(&t), Some(0));
}
