//! The daemon's state machine (the shipped `daemon::Daemon`) over the
//! shipped marshalling and the kernel model, with a fake clock and a fake
//! pfctl that loads the rendered tables into the same model.

mod common;

use std::cell::{Cell, RefCell};
use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::rc::Rc;

use pfknock::config::Config;
use pfknock::daemon::{Daemon, Level, Loader, Log};
use pfknock::error::{Error, Result};
use pfknock::name::{AnchorName, Net};
use pfknock::pf::PfTables;
use pfknock::pf::abi::{self, Layout, freebsd, macos, openbsd};
use pfknock::pf::marshal::Device;
use pfknock::tables::Pool;
use pfknock_pf_model::{self as model, Model};

const NOW: i64 = 1_800_000_000;
const OSES: [&Layout; 3] = [&freebsd::LAYOUT, &openbsd::LAYOUT, &macos::LAYOUT];

/// One model shared by the device and the fake pfctl.
#[derive(Clone)]
struct Kernel(Rc<RefCell<Model>>);

impl Device for Kernel {
    fn ioctl(&mut self, r: u64, ioc: &mut [u8], buf: &mut [u8]) -> std::result::Result<(), i32> {
        self.0.borrow_mut().ioctl(r, ioc, buf)
    }
}

/// pfctl -a ANCHOR -f -: defines the rendered tables (a persist table keeps
/// its entries across a reload, as pf does), records each load.
#[derive(Clone)]
struct FakePfctl {
    k: Kernel,
    loads: Rc<RefCell<Vec<String>>>,
    fail: Rc<Cell<bool>>,
    /// Loads asked for, refused ones too.
    tries: Rc<Cell<usize>>,
    referenced: bool,
    enabled: Option<bool>,
    unloads: Rc<Cell<usize>>,
}

impl Loader for FakePfctl {
    fn load(&mut self, cfg: &Config, source: &str) -> Result<()> {
        let anchor = &cfg.anchor;
        let text = &pfknock::render::pf::render(cfg, source);
        self.tries.set(self.tries.get() + 1);
        if self.fail.get() {
            return Err(Error::Tool {
                says: pfknock::error::ToolSays::Failed,
                tool: "pfctl -a pfknock -f -".into(),
                msg: "stdin:5: syntax error".into(),
            });
        }
        let mut m = self.k.0.borrow_mut();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("table <") else {
                continue;
            };
            let (name, flags) = rest.split_once('>').unwrap();
            if let Some(list) = flags.trim().strip_prefix("const {") {
                let addrs: Vec<IpAddr> = list
                    .trim_end_matches('}')
                    .split(',')
                    .filter_map(|a| a.trim().split('/').next()?.parse().ok())
                    .collect();
                m.define_const(anchor.as_str(), name, &addrs);
            } else {
                m.define(anchor.as_str(), name, flags.contains("counters"));
            }
        }
        self.loads.borrow_mut().push(text.to_owned());
        Ok(())
    }
    fn referenced(&mut self, _: &AnchorName) -> Result<bool> {
        Ok(self.referenced)
    }
    fn enabled(&mut self) -> Option<bool> {
        self.enabled
    }
    fn unload(&mut self, cfg: &Config, _open: bool) -> Result<()> {
        let a = &cfg.anchor;
        self.k.0.borrow_mut().flush_anchor(a.as_str());
        self.unloads.set(self.unloads.get() + 1);
        Ok(())
    }
}

#[derive(Clone, Default)]
struct Mem(Rc<RefCell<Vec<(Level, String)>>>);

impl Log for Mem {
    fn log(&mut self, level: Level, msg: &str) {
        self.0.borrow_mut().push((level, msg.to_owned()));
    }
}

impl Mem {
    fn take(&self) -> Vec<String> {
        self.0
            .borrow_mut()
            .drain(..)
            .filter(|(l, _)| *l != Level::Debug)
            .map(|(_, m)| m)
            .collect()
    }
    fn take_all(&self) -> Vec<(Level, String)> {
        self.0.borrow_mut().drain(..).collect()
    }
}

struct Rig {
    d: Daemon<PfTables<Kernel>, FakePfctl, Mem>,
    k: Kernel,
    pfctl: FakePfctl,
    log: Mem,
    path: PathBuf,
    _dir: common::Scratch,
}

const SSH: &str = "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\nttl = \"60s\"\n";

fn scratch(name: &str, text: &str) -> (common::Scratch, PathBuf) {
    let d = common::Scratch::new(&format!("daemon-{name}"));
    let p = d.join("pfknock.toml");
    fs::write(&p, text).unwrap();
    (d, p)
}

fn rig(l: &'static Layout, name: &str, conf: &str) -> Rig {
    rig_with(l, name, conf, true, Some(true), |_| {})
}

/// A daemon started over a fresh kernel: `prep` sets the kernel up first
/// (tables of a hand-written ruleset, say); `referenced` and `enabled` are
/// what the fake pfctl answers about pf.conf and pf.
fn rig_with(
    l: &'static Layout,
    name: &str,
    conf: &str,
    referenced: bool,
    enabled: Option<bool>,
    prep: impl FnOnce(&mut Model),
) -> Rig {
    let (dir, path) = scratch(&format!("{}-{name}", l.os), conf);
    let k = Kernel(Rc::new(RefCell::new(Model::new(model::newest(l.os), NOW))));
    prep(&mut k.0.borrow_mut());
    let pfctl = FakePfctl {
        k: k.clone(),
        loads: Rc::default(),
        fail: Rc::default(),
        tries: Rc::default(),
        referenced,
        enabled,
        unloads: Rc::default(),
    };
    let log = Mem::default();
    let (cfg, _) = Config::load(&path).unwrap();
    let d = Daemon::start(
        cfg,
        &path,
        PfTables::new(k.clone(), l),
        pfctl.clone(),
        log.clone(),
        NOW,
    )
    .unwrap();
    Rig {
        d,
        k,
        pfctl,
        log,
        path,
        _dir: dir,
    }
}

impl Rig {
    fn m(&self) -> std::cell::RefMut<'_, Model> {
        self.k.0.borrow_mut()
    }
    /// A knock past the rate: pf's overload into `table`, which the last
    /// anchor loaded must name as an overload target.
    fn knock(&self, table: &str, a: &str) {
        let loads = self.pfctl.loads.borrow();
        let anchor = loads.last().expect("an anchor loaded");
        assert!(
            anchor.contains(&format!("overload <{table}>)")),
            "no knock overloads into <{table}>:\n{anchor}"
        );
        self.m().overload("pfknock", table, a.parse().unwrap());
    }
    /// Another daemon over the same kernel and config, started at `now`
    /// with the record `kept` (`None`: as `Daemon::start`), and its log.
    fn again(
        &self,
        l: &'static Layout,
        now: i64,
        kept: Option<Option<pfknock::daemon::state::Known>>,
    ) -> (Daemon<PfTables<Kernel>, FakePfctl, Mem>, Mem) {
        let log = Mem::default();
        let (cfg, _) = Config::load(&self.path).unwrap();
        let d = Daemon::start_with(
            cfg,
            &self.path,
            PfTables::new(self.k.clone(), l),
            self.pfctl.clone(),
            log.clone(),
            now,
            kept,
        )
        .unwrap();
        (d, log)
    }
    fn at(&mut self, t: i64) {
        self.m().now = t;
        self.d.tick(t);
    }
    /// SIGHUP at `t` with `conf`: the lines after `reloaded`.
    fn reload_to(&mut self, conf: &str, t: i64) -> Vec<String> {
        fs::write(&self.path, conf).unwrap();
        self.m().now = t;
        self.d.reload(t);
        let l = self.log.take();
        assert!(
            l.first().is_some_and(|l| l.starts_with("reloaded ")),
            "{l:?}"
        );
        l[1..].to_vec()
    }
    fn hosts(&self, table: &str) -> Vec<(String, i64)> {
        self.m()
            .dump("pfknock", table)
            .unwrap()
            .into_iter()
            .map(|(a, _, t)| (a.to_string(), t))
            .collect()
    }
}

#[test]
fn start_loads_the_anchor_and_logs() {
    let r = rig(&openbsd::LAYOUT, "start", SSH);
    assert_eq!(r.pfctl.loads.borrow().len(), 1);
    assert!(r.pfctl.loads.borrow()[0].contains("overload <ssh_renew>)"));
    assert!(r.m().has_table("pfknock", "ssh_renew"));
    let log = r.log.take();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(
        log[0].starts_with("started: 1 service(s) in anchor pfknock, 0 expire table(s), from "),
        "{log:?}"
    );
}

#[test]
fn unreferenced_anchor_and_disabled_pf_are_logged_loudly_once() {
    let mut r = rig_with(&freebsd::LAYOUT, "unref", SSH, false, Some(false), |_| {});
    let l = r.log.take_all();
    assert!(
        l.contains(&(
            Level::Warning,
            "pf is disabled: knocks open nothing until pfctl -e".into()
        )),
        "{l:?}"
    );
    assert!(l.iter().any(|(lv, m)| *lv == Level::Err
        && m.starts_with("the main ruleset has no anchor \"pfknock\" rule")));
    r.d.tick(NOW + 1);
    assert!(r.log.take().is_empty(), "warned once; polling keeps quiet");
}

#[test]
fn expires_at_the_deadline_not_a_poll_later() {
    for l in OSES {
        let mut r = rig(l, "deadline", SSH);
        r.log.take();
        r.knock("ssh_renew", "192.0.2.10");
        r.at(NOW);
        assert_eq!(
            r.log.take(),
            ["authorized 192.0.2.10 service=ssh table=ssh anchor=pfknock ttl=1m"],
            "{}",
            l.os
        );
        assert_eq!(
            r.d.next_due(),
            Some(NOW + 61),
            "pfctl's rule: older than 60s, at 61s"
        );
        r.at(NOW + 60);
        assert_eq!(r.hosts("ssh").len(), 1);
        r.at(NOW + 61);
        assert!(r.hosts("ssh").is_empty(), "{}", l.os);
        assert_eq!(
            r.log.take(),
            ["expired 192.0.2.10 service=ssh table=ssh anchor=pfknock age=1m1s ttl=1m"]
        );
        assert_eq!(r.d.next_due(), None);
    }
}

#[test]
fn idle_poll_costs_one_request_per_anchor() {
    let mut r = rig(&freebsd::LAYOUT, "cheap", SSH);
    r.knock("ssh_renew", "192.0.2.10");
    r.at(NOW);
    let ts = r.m().count(abi::N_GETTSTATS);
    let as_ = r.m().count(abi::N_GETASTATS);
    for t in 1..=30 {
        r.at(NOW + t);
    }
    // One table-stats request per poll, and one more every 10 s for
    // pf's pool of table entries (all anchors: the machine's `Pools`).
    assert_eq!(
        r.m().count(abi::N_GETTSTATS) - ts,
        33,
        "one table-stats request per poll"
    );
    // Two limits (table entries, source nodes) and the source nodes' count.
    assert_eq!(r.m().count(abi::N_GETLIMIT), 8, "at start, then every 10 s");
    assert_eq!(r.m().count(abi::N_GETSRCNODES), 4);
    assert_eq!(
        r.m().count(abi::N_GETASTATS) - as_,
        0,
        "no listing while nothing changes"
    );
    r.knock("ssh_renew", "192.0.2.11");
    r.at(NOW + 31);
    assert_eq!(
        r.m().count(abi::N_GETASTATS) - as_,
        1,
        "a new host: one listing"
    );
}

/// `poll = "50ms"`: at rest the loop wakes every 50 ms (`Daemon::wake_ms`,
/// what the loop waits for) and each wake costs one table-stats request;
/// a knock is logged at the first poll after it lands, 50 ms at most,
/// where the default poll of a second takes up to a second.
#[test]
fn a_poll_of_50ms_logs_a_knock_within_50ms() {
    for l in OSES {
        let mut r = rig(l, "fast", &format!("poll = \"50ms\"\n{SSH}"));
        r.at(NOW);
        r.log.take();
        let t0 = NOW * 1000;
        assert_eq!(r.d.wake_ms(t0), t0 + 50, "{}", l.os);
        let ts = r.m().count(abi::N_GETTSTATS);
        let as_ = r.m().count(abi::N_GETASTATS);
        let mut t = t0;
        for _ in 0..20 {
            t = r.d.wake_ms(t);
            r.d.tick_ms(t);
        }
        assert_eq!(t, t0 + 1000, "{}", l.os);
        assert_eq!(r.m().count(abi::N_GETTSTATS) - ts, 20, "{}", l.os);
        assert_eq!(r.m().count(abi::N_GETASTATS), as_, "{}: no listing", l.os);
        assert!(r.log.take().is_empty(), "{}", l.os);
        // The knock lands just after that poll: nothing until the next.
        r.knock("ssh_renew", "192.0.2.10");
        let next = r.d.wake_ms(t);
        assert_eq!(next - t, 50, "{}", l.os);
        r.d.tick_ms(next);
        assert_eq!(
            r.log.take(),
            ["authorized 192.0.2.10 service=ssh table=ssh anchor=pfknock ttl=1m"],
            "{}",
            l.os
        );
        let kept = [("192.0.2.10".to_string(), NOW)];
        assert_eq!(r.hosts("ssh"), kept, "{}", l.os);
        assert!(r.hosts("ssh_renew").is_empty(), "{}", l.os);
    }
}

/// An expiry when nothing else moved lists nothing: what is due is in
/// what the daemon knows, and the kernel is asked to delete just that
/// (DIOCRGETASTATS would walk the whole table). A table that moved is
/// listed as before.
#[test]
fn an_expiry_alone_costs_the_entries_due_not_a_listing() {
    for l in OSES {
        let mut r = rig(l, "due-only", SSH);
        r.knock("ssh_renew", "192.0.2.10");
        r.at(NOW);
        r.at(NOW + 10);
        r.knock("ssh_renew", "192.0.2.11");
        r.at(NOW + 11);
        r.log.take();
        let asts = r.m().count(abi::N_GETASTATS);
        let dels = r.m().count(abi::N_DELADDRS);
        r.at(NOW + 61);
        assert_eq!(
            r.log.take(),
            ["expired 192.0.2.10 service=ssh table=ssh anchor=pfknock age=1m1s ttl=1m"],
            "{}",
            l.os
        );
        assert_eq!(r.hosts("ssh").len(), 1, "{}", l.os);
        assert_eq!(
            r.m().count(abi::N_GETASTATS) - asts,
            0,
            "{}: no listing",
            l.os
        );
        assert_eq!(r.m().count(abi::N_DELADDRS) - dels, 1, "{}", l.os);
        // A new host moves the count: one listing, which finds it.
        r.knock("ssh_renew", "192.0.2.12");
        r.at(NOW + 62);
        assert_eq!(r.m().count(abi::N_GETASTATS) - asts, 1, "{}", l.os);
        assert_eq!(r.log.take().len(), 1, "{}", l.os);
        r.at(NOW + 71);
        assert_eq!(
            r.log.take(),
            ["expired 192.0.2.11 service=ssh table=ssh anchor=pfknock age=1m1s ttl=1m"],
            "{}",
            l.os
        );
        assert_eq!(r.m().count(abi::N_GETASTATS) - asts, 1, "{}", l.os);
        assert_eq!(r.hosts("ssh").len(), 1, "{}", l.os);
    }
}

/// New knocks cost a listing of the intake, however many land in one
/// poll: the hosts moved into `<ssh>` are counted in, so `<ssh>` is not
/// listed for them, in that poll or the next.
#[test]
fn knocks_landing_together_cost_one_listing_of_the_intake() {
    for l in OSES {
        let mut r = rig(l, "together", SSH);
        r.at(NOW);
        r.log.take();
        let asts = r.m().count(abi::N_GETASTATS);
        for h in ["192.0.2.21", "192.0.2.22", "192.0.2.23"] {
            r.knock("ssh_renew", h);
        }
        r.at(NOW + 1);
        r.at(NOW + 2);
        assert_eq!(r.hosts("ssh").len(), 3, "{}", l.os);
        assert!(r.hosts("ssh_renew").is_empty(), "{}", l.os);
        let said: Vec<String> = r.log.take();
        let want: Vec<String> = (21..24)
            .map(|h| format!("authorized 192.0.2.{h} service=ssh table=ssh anchor=pfknock ttl=1m"))
            .collect();
        assert_eq!(said, want, "{}", l.os);
        assert_eq!(
            r.m().count(abi::N_GETASTATS) - asts,
            1,
            "{}: the intake's listing alone",
            l.os
        );
    }
}

/// A knock the daemon reaches exactly a ttl after it (stopped
/// meanwhile, say) is authorized still, as `policy::decide` counts: due
/// once older than the ttl; a second later it expires.
#[test]
fn a_knock_a_ttl_old_in_the_intake_is_authorized_until_older() {
    for l in OSES {
        let mut r = rig(l, "intake-ttl", SSH);
        r.at(NOW);
        r.log.take();
        r.m().now = NOW + 40;
        r.knock("ssh_renew", "192.0.2.30");
        r.m().now = NOW + 100;
        r.at(NOW + 100);
        assert_eq!(r.hosts("ssh").len(), 1, "{}", l.os);
        assert_eq!(
            r.log.take(),
            ["authorized 192.0.2.30 service=ssh table=ssh anchor=pfknock ttl=1m"],
            "{}",
            l.os
        );
        r.at(NOW + 101);
        assert!(r.hosts("ssh").is_empty(), "{}", l.os);
        assert_eq!(
            r.log.take(),
            ["expired 192.0.2.30 service=ssh table=ssh anchor=pfknock age=1m1s ttl=1m"],
            "{}",
            l.os
        );
    }
}

/// An authorized host taken out of `<ssh>` by hand (`pfctl -T delete`)
/// that knocks again before the daemon's next poll: the kernel lets it in
/// from the intake, and the daemon keeps it so, moving it back into
/// `<ssh>` with the knock's stamp, where it used to drop the knock with
/// the intake's entry and log the host as removed. Without `renew` the
/// knock is a new authorization all the same (the host was gone), which
/// the daemon learns from `<ssh>`'s listing: no line then, and its expiry
/// counts from the knock.
#[test]
fn a_knock_after_a_hand_delete_is_kept() {
    let no_renew = format!("{SSH}renew = false\n");
    for (conf, said) in [(SSH, 1), (no_renew.as_str(), 0)] {
        for l in OSES {
            let mut r = rig(l, "hand-delete", conf);
            r.knock("ssh_renew", "192.0.2.40");
            r.at(NOW);
            r.at(NOW + 10);
            r.log.take();
            r.m().now = NOW + 20;
            r.m()
                .remove("pfknock", "ssh", "192.0.2.40".parse().unwrap());
            r.knock("ssh_renew", "192.0.2.40");
            r.at(NOW + 20);
            r.at(NOW + 21);
            let hosts = r.hosts("ssh");
            assert_eq!(hosts.len(), 1, "{} {conf}", l.os);
            assert_eq!(hosts[0].0, "192.0.2.40");
            assert!(r.hosts("ssh_renew").is_empty(), "{}", l.os);
            let renewed = ["renewed 192.0.2.40 service=ssh table=ssh anchor=pfknock ttl=1m"];
            assert_eq!(r.log.take(), renewed[..said], "{} {conf}", l.os);
            r.at(NOW + 80);
            assert_eq!(r.hosts("ssh").len(), 1, "{}: from the knock at 20s", l.os);
            r.at(NOW + 81);
            assert!(r.hosts("ssh").is_empty(), "{}", l.os);
            assert_eq!(
                r.log.take(),
                ["expired 192.0.2.40 service=ssh table=ssh anchor=pfknock age=1m1s ttl=1m"],
                "{} {conf}",
                l.os
            );
        }
    }
}

/// A knock counts from the intake's stamp, not from the move's: pf
/// stamps the host anew when the move adds it to `<ssh>`, and a later
/// listing of `<ssh>` (made for a host added there by hand) keeps the
/// knock's time all the same.
#[test]
fn a_moved_knock_counts_from_the_knock_after_a_listing() {
    for l in OSES {
        let mut r = rig(l, "knock-time", SSH);
        r.at(NOW);
        r.m().now = NOW + 1;
        r.knock("ssh_renew", "192.0.2.50");
        r.m().now = NOW + 2;
        r.at(NOW + 2);
        r.m().now = NOW + 3;
        r.m()
            .overload("pfknock", "ssh", "192.0.2.51".parse().unwrap());
        r.at(NOW + 3);
        r.log.take();
        r.at(NOW + 61);
        assert_eq!(r.hosts("ssh").len(), 2, "{}", l.os);
        r.at(NOW + 62);
        let left: Vec<String> = r.hosts("ssh").into_iter().map(|(a, _)| a).collect();
        assert_eq!(left, ["192.0.2.51"], "{}", l.os);
        assert_eq!(
            r.log.take(),
            ["expired 192.0.2.50 service=ssh table=ssh anchor=pfknock age=1m1s ttl=1m"],
            "{}",
            l.os
        );
    }
}

#[test]
fn renewal_gives_a_fresh_ttl_on_every_os() {
    for l in OSES {
        let mut r = rig(l, "renew", SSH);
        r.knock("ssh_renew", "192.0.2.10");
        r.at(NOW);
        r.log.take();
        // At 50s the host knocks again: pf puts it into <ssh_renew>.
        r.m().now = NOW + 50;
        r.knock("ssh_renew", "192.0.2.10");
        r.at(NOW + 50);
        assert_eq!(
            r.hosts("ssh"),
            [("192.0.2.10".into(), NOW + 50)],
            "{}",
            l.os
        );
        assert!(r.hosts("ssh_renew").is_empty());
        assert_eq!(
            r.log.take(),
            ["renewed 192.0.2.10 service=ssh table=ssh anchor=pfknock ttl=1m"]
        );
        r.at(NOW + 61);
        assert_eq!(
            r.hosts("ssh").len(),
            1,
            "{}: not expired on the old stamp",
            l.os
        );
        r.at(NOW + 111);
        assert!(r.hosts("ssh").is_empty(), "{}", l.os);
    }
}

#[test]
fn a_renewal_racing_the_deadline_wins() {
    for l in OSES {
        let mut r = rig(l, "renew-race", SSH);
        r.knock("ssh_renew", "192.0.2.10");
        r.at(NOW);
        // The knock lands in <ssh_renew> in the very second the entry is due.
        r.m().now = NOW + 61;
        r.knock("ssh_renew", "192.0.2.10");
        r.d.tick(NOW + 61);
        assert_eq!(
            r.hosts("ssh"),
            [("192.0.2.10".into(), NOW + 61)],
            "{}",
            l.os
        );
    }
}

#[test]
fn reload_keeps_every_authorization_and_applies_the_new_ttl() {
    let mut r = rig(&freebsd::LAYOUT, "reload", SSH);
    r.knock("ssh_renew", "192.0.2.10");
    r.at(NOW);
    r.log.take();
    fs::write(&r.path, SSH.replace("60s", "2m")).unwrap();
    r.d.reload(NOW + 10);
    assert_eq!(r.pfctl.loads.borrow().len(), 2);
    assert!(r.pfctl.loads.borrow()[1].contains("ttl 2m"));
    assert_eq!(r.hosts("ssh").len(), 1, "the entry survived the reload");
    let log = r.log.take();
    assert!(log.iter().any(|m| m.starts_with("reloaded ")), "{log:?}");
    assert!(
        !log.iter().any(|m| m.starts_with("authorized")),
        "no spurious authorizations: {log:?}"
    );
    r.at(NOW + 61);
    assert_eq!(r.hosts("ssh").len(), 1, "the new ttl holds");
    r.at(NOW + 121);
    assert!(r.hosts("ssh").is_empty());
}

#[test]
fn a_bad_reload_keeps_the_running_config() {
    let mut r = rig(&openbsd::LAYOUT, "badreload", SSH);
    r.knock("ssh_renew", "192.0.2.10");
    r.at(NOW);
    r.log.take();
    fs::write(&r.path, "[[service]]\nname = \"ssh\"\nrate = \"5\"\n").unwrap();
    r.d.reload(NOW + 1);
    let log = r.log.take_all();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].0, Level::Err);
    assert!(
        log[0].1.starts_with("reload: ")
            && log[0].1.ends_with(": keeping the running configuration"),
        "{log:?}"
    );
    assert_eq!(r.pfctl.loads.borrow().len(), 1, "nothing loaded");
    // pfctl refusing the new rules also keeps the old ones.
    fs::write(&r.path, SSH.replace("60s", "5m")).unwrap();
    r.pfctl.fail.set(true);
    r.d.reload(NOW + 2);
    assert!(r.log.take()[0].contains("stdin:5: syntax error"));
    assert_eq!(r.d.cfg.services[0].ttl.0, 60);
    r.pfctl.fail.set(false);
    r.at(NOW + 61);
    assert!(
        r.hosts("ssh").is_empty(),
        "still expiring on the old config"
    );
}

#[test]
fn anchor_flushed_is_restored() {
    for l in OSES {
        let mut r = rig(l, "flushed", SSH);
        r.log.take();
        r.m().flush_anchor("pfknock");
        r.at(NOW + 5);
        assert!(r.m().has_table("pfknock", "ssh"), "{}", l.os);
        assert_eq!(r.pfctl.loads.borrow().len(), 2);
        let log = r.log.take();
        assert_eq!(
            log,
            ["anchor pfknock restored: its tables were gone (pf flushed?)"],
            "{}",
            l.os
        );
        r.knock("ssh_renew", "192.0.2.10");
        r.at(NOW + 6);
        assert_eq!(
            r.log.take(),
            ["authorized 192.0.2.10 service=ssh table=ssh anchor=pfknock ttl=1m"]
        );
    }
}

/// A restore that pfctl refuses is tried again once a second, not at
/// every poll: at `poll = "50ms"`, 20 polls a second, one pfctl each
/// second; the error said once, then through the repeat filter; and the
/// anchor put back at the first try once pfctl takes it.
#[test]
fn a_refused_restore_is_tried_once_a_second_at_a_short_poll() {
    for l in OSES {
        let mut r = rig(l, "refused", &format!("poll = \"50ms\"\n{SSH}"));
        r.log.take();
        r.m().flush_anchor("pfknock");
        r.pfctl.fail.set(true);
        let tries = r.pfctl.tries.get();
        let t0 = (NOW + 1) * 1000;
        let mut t = t0;
        while t < t0 + 3000 {
            r.d.tick_ms(t);
            t = r.d.wake_ms(t);
        }
        assert_eq!(r.pfctl.tries.get() - tries, 3, "{}: once a second", l.os);
        let said = r.log.take();
        assert_eq!(said.len(), 1, "{}: {said:?}", l.os);
        assert!(
            said[0].starts_with("anchor pfknock is gone and cannot be restored: ")
                && said[0].contains("stdin:5: syntax error"),
            "{}: {said:?}",
            l.os
        );
        assert!(!r.m().has_table("pfknock", "ssh"), "{}", l.os);
        r.pfctl.fail.set(false);
        r.d.tick_ms(t);
        assert!(r.m().has_table("pfknock", "ssh"), "{}", l.os);
        assert_eq!(r.pfctl.tries.get() - tries, 4, "{}", l.os);
        let said = r.log.take();
        assert!(
            said.contains(&"anchor pfknock restored: its tables were gone (pf flushed?)".into()),
            "{}: {said:?}",
            l.os
        );
    }
}

#[test]
fn a_restart_loses_nothing() {
    let mut r = rig(&freebsd::LAYOUT, "restart", SSH);
    r.knock("ssh_renew", "192.0.2.10");
    r.at(NOW);
    // A new daemon over the same kernel, 30 s later.
    let log = Mem::default();
    let (cfg, _) = Config::load(&r.path).unwrap();
    r.m().now = NOW + 30;
    let mut d2 = Daemon::start(
        cfg,
        &r.path,
        PfTables::new(r.k.clone(), &freebsd::LAYOUT),
        r.pfctl.clone(),
        log.clone(),
        NOW + 30,
    )
    .unwrap();
    assert_eq!(
        log.take().len(),
        1,
        "only 'started': existing entries are not announced again"
    );
    assert_eq!(d2.next_due(), Some(NOW + 61), "age comes from the kernel");
    d2.tick(NOW + 61);
    assert!(r.hosts("ssh").is_empty());
}

/// What `unload` says went with the anchor (`verbs::authorizations`),
/// read from pf's tables: each service's authorized hosts and its intake,
/// not its knock progress, nor its allow list (a const table), nor a
/// table of another anchor. Before a load it cannot be read.
#[test]
fn unload_counts_the_authorized_hosts_and_the_intake_only() {
    use pfknock::verbs::authorizations;
    let conf = "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [7001, 7002]\n\
                allow = [\"198.51.100.0/24\"]\n\
                [[service]]\nname = \"web\"\nprotect = [443]\nknock = [1235]\n";
    for l in OSES {
        let mut r = rig_with(l, "unload-count", conf, true, Some(true), |m| {
            m.define("other", "ssh", false);
            m.overload("other", "ssh", "192.0.2.99".parse().unwrap());
        });
        r.knock("ssh_renew", "192.0.2.1");
        r.knock("web_renew", "192.0.2.2");
        r.at(NOW); // both moved into the authorized tables
        r.knock("ssh_renew", "192.0.2.3"); // waiting in the intake
        r.knock("ssh_s1", "192.0.2.4"); // a first knock of a sequence
        let (cfg, _) = Config::load(&r.path).unwrap();
        let mut t = PfTables::new(r.k.clone(), l);
        assert_eq!(authorizations(&cfg, &mut t), Some(3), "{}", l.os);
        r.m().flush_anchor("pfknock");
        assert_eq!(authorizations(&cfg, &mut t), None, "{}", l.os);
    }
}

#[test]
fn allow_list_never_expires_and_stages_lapse_after_the_window() {
    let conf = "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [7001, 7002, 7003]\nwindow = \"10s\"\nttl = \"60s\"\nallow = [\"198.51.100.0/24\"]\n";
    let mut r = rig(&openbsd::LAYOUT, "allow", conf);
    r.knock("ssh_renew", "198.51.100.7");
    r.knock("ssh_s1", "192.0.2.1");
    r.knock("ssh_s2", "192.0.2.2");
    r.at(NOW);
    r.log.take_all();
    r.at(NOW + 11);
    assert!(r.hosts("ssh_s1").is_empty() && r.hosts("ssh_s2").is_empty());
    let l = r.log.take_all();
    assert!(
        l.iter().all(|(lv, _)| *lv == Level::Debug),
        "lapsed stages are not worth a line: {l:?}"
    );
    r.at(NOW + 10_000);
    assert_eq!(r.hosts("ssh").len(), 1, "allow-listed");
    assert_eq!(r.hosts("ssh_allow").len(), 1);
}

/// A wrong knock on pf: the anchor's catch-all knock rule overloads the
/// host into `<ssh_hold>` (a knock port out of order); the daemon takes it
/// out of every stage table at once, so its progress starts over, and ends
/// the hold after the rate's window (10 s here), quietly. A host that is
/// not held keeps its progress.
#[test]
fn a_wrong_knock_resets_progress_and_the_hold_ends_after_the_window() {
    let conf = "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [7001, 7002, 7003]\n\
                rate = \"3/10\"\nwindow = \"30s\"\nttl = \"60s\"\n";
    for l in OSES {
        let mut r = rig(l, "hold", conf);
        r.knock("ssh_s1", "192.0.2.1");
        r.knock("ssh_s2", "192.0.2.1");
        r.knock("ssh_s1", "192.0.2.2");
        r.at(NOW);
        r.log.take_all();
        // 192.0.2.1 knocks 7001 again past its rate: wrong at stage 3.
        r.knock("ssh_hold", "192.0.2.1");
        r.at(NOW + 1);
        assert!(
            r.hosts("ssh_s1").iter().all(|(a, _)| a != "192.0.2.1") && r.hosts("ssh_s2").is_empty(),
            "{}: progress reset: {:?} {:?}",
            l.os,
            r.hosts("ssh_s1"),
            r.hosts("ssh_s2")
        );
        assert_eq!(
            r.hosts("ssh_s1").len(),
            1,
            "{}: the other host keeps it",
            l.os
        );
        assert_eq!(r.hosts("ssh_hold").len(), 1, "{}", l.os);
        assert!(r.hosts("ssh").is_empty(), "{}: nothing opened", l.os);
        let said = r.log.take_all();
        assert!(
            said.iter().all(|(lv, _)| *lv == Level::Debug)
                && said.iter().any(|(_, x)| x
                    == "held 192.0.2.1 for service ssh: a wrong knock; its progress starts over"),
            "{}: {said:?}",
            l.os
        );
        r.at(NOW + 10);
        assert_eq!(
            r.hosts("ssh_hold").len(),
            1,
            "{}: held for the window",
            l.os
        );
        r.at(NOW + 11);
        assert!(r.hosts("ssh_hold").is_empty(), "{}: the hold ends", l.os);
        assert!(
            r.log.take_all().iter().all(|(lv, _)| *lv == Level::Debug),
            "{}: an ended hold is not worth a line",
            l.os
        );
        // Held again later: a host that is back in the table is new again.
        r.knock("ssh_s1", "192.0.2.1");
        r.knock("ssh_hold", "192.0.2.1");
        r.at(NOW + 12);
        assert!(
            r.hosts("ssh_s1").iter().all(|(a, _)| a != "192.0.2.1"),
            "{}",
            l.os
        );
    }
}

/// A close knock on pf overloads the host into <T_close>; at its next look
/// the daemon takes it out of the authorized table and the stage tables,
/// logs it once, and empties <T_close>. Another authorized host stays; a
/// close knock from a host that was not authorized changes nothing.
#[test]
fn a_close_knock_takes_the_host_out_at_the_next_look() {
    let conf = "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [7001, 7002]\n\
                close = 7010\nrate = \"3/10\"\nwindow = \"30s\"\nttl = \"60s\"\n";
    for l in OSES {
        let mut r = rig(l, "close", conf);
        r.knock("ssh_renew", "192.0.2.1");
        r.knock("ssh_renew", "192.0.2.2");
        r.knock("ssh_s1", "192.0.2.1");
        r.at(NOW);
        r.log.take_all();
        r.knock("ssh_close", "192.0.2.1");
        r.knock("ssh_close", "192.0.2.3");
        r.at(NOW + 5);
        let left: Vec<String> = r.hosts("ssh").into_iter().map(|(a, _)| a).collect();
        assert_eq!(left, ["192.0.2.2"], "{}", l.os);
        assert!(r.hosts("ssh_s1").is_empty(), "{}: progress reset", l.os);
        assert!(r.hosts("ssh_close").is_empty(), "{}: emptied", l.os);
        assert_eq!(
            r.log.take(),
            ["closed 192.0.2.1 service=ssh table=ssh anchor=pfknock age=5s ttl=1m by knock"],
            "{}",
            l.os
        );
        // Not logged again as removed, nor as expired later.
        r.at(NOW + 6);
        r.at(NOW + 61);
        let said = r.log.take();
        assert!(
            said.iter().all(|x| !x.contains("192.0.2.1")),
            "{}: {said:?}",
            l.os
        );
        // A close knock from nobody authorized: nothing but a debug line.
        r.knock("ssh_close", "192.0.2.9");
        r.at(NOW + 62);
        assert!(r.log.take().is_empty(), "{}", l.os);
        assert!(r.hosts("ssh_close").is_empty(), "{}", l.os);
    }
}

#[test]
fn idle_expiry_follows_the_counters() {
    let conf = "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\nttl = \"60s\"\nexpire = \"idle\"\n";
    for l in [&freebsd::LAYOUT, &openbsd::LAYOUT] {
        let mut r = rig(l, "idle", conf);
        assert_eq!(
            r.m().table_flags("pfknock", "ssh").unwrap() & abi::PFR_TFLAG_COUNTERS,
            abi::PFR_TFLAG_COUNTERS
        );
        r.knock("ssh_renew", "192.0.2.10");
        r.at(NOW);
        r.log.take();
        let a: IpAddr = "192.0.2.10".parse().unwrap();
        for t in [20, 40, 59] {
            r.m().now = NOW + t;
            r.m().traffic("pfknock", "ssh", a, 4, 400);
            r.at(NOW + t);
        }
        r.at(NOW + 119);
        assert_eq!(r.hosts("ssh").len(), 1, "{}: in use until 59s", l.os);
        r.at(NOW + 120);
        assert!(r.hosts("ssh").is_empty(), "{}", l.os);
        assert_eq!(
            r.log.take(),
            ["expired 192.0.2.10 service=ssh table=ssh anchor=pfknock idle=1m1s ttl=1m"]
        );
    }
}

/// A restore puts an idle-expiry table's hosts back with new counters,
/// so the counters its polls knew are no measure of use after it: its
/// first poll lists it. Traffic after the restore that brings a host's
/// counter back to what it was before keeps it in.
#[test]
fn idle_expiry_after_a_restore_follows_the_new_counters() {
    let conf = "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\nttl = \"60s\"\nexpire = \"idle\"\n";
    for l in OSES {
        let mut r = rig(l, "idle-restore", conf);
        r.knock("ssh_renew", "192.0.2.10");
        r.at(NOW);
        let a: IpAddr = "192.0.2.10".parse().unwrap();
        r.m().now = NOW + 20;
        r.m().traffic("pfknock", "ssh", a, 4, 400);
        r.at(NOW + 20);
        r.m().flush_anchor("pfknock");
        r.at(NOW + 30);
        assert_eq!(r.hosts("ssh").len(), 1, "{}: put back", l.os);
        r.log.take();
        // The same four packets again, on the new counter.
        r.m().now = NOW + 40;
        r.m().traffic("pfknock", "ssh", a, 4, 400);
        for t in 40..100 {
            r.at(NOW + t);
        }
        assert_eq!(r.hosts("ssh").len(), 1, "{}: in use at 40s", l.os);
        assert_eq!(r.log.take(), Vec::<String>::new(), "{}", l.os);
        r.at(NOW + 101);
        assert!(r.hosts("ssh").is_empty(), "{}", l.os);
        assert_eq!(
            r.log.take(),
            ["expired 192.0.2.10 service=ssh table=ssh anchor=pfknock idle=1m1s ttl=1m"],
            "{}",
            l.os
        );
    }
}

#[test]
fn expire_tables_of_a_hand_written_ruleset() {
    let conf =
        "[[expire]]\ntable = \"portknock_ssh\"\nttl = \"60s\"\n\n[[expire]]\ntable = \"missing\"\n";
    let mut r = rig_with(
        &freebsd::LAYOUT,
        "expire-only",
        conf,
        true,
        Some(true),
        |m| {
            m.define("", "portknock_ssh", false);
            m.overload("", "portknock_ssh", "192.0.2.3".parse().unwrap());
        },
    );
    assert!(
        r.pfctl.loads.borrow().is_empty(),
        "no service: no anchor to load"
    );
    assert!(
        r.log
            .take()
            .contains(&"<missing>: no such table; will look again".to_owned())
    );
    r.d.tick(NOW + 1);
    assert!(r.log.take().is_empty(), "warned once");
    r.d.tick(NOW + 61);
    assert_eq!(
        r.log.take(),
        ["expired 192.0.2.3 service=- table=portknock_ssh anchor=- age=1m1s ttl=1m"]
    );
}

/// A SIGHUP from a config of services to one of `[[expire]]` tables only:
/// the anchor is loaded empty (its knock rules go: nothing would expire
/// what they let in), the services' tables are emptied and said, and the
/// expire table is swept. Knocks the old rules took are gone, the hand-
/// written table's host expires as before.
#[test]
fn a_reload_to_expire_tables_only_takes_the_knock_rules_away() {
    let mut r = rig_with(
        &freebsd::LAYOUT,
        "to-expire-only",
        SSH,
        true,
        Some(true),
        |m| {
            m.define("", "portknock_ssh", false);
            m.overload("", "portknock_ssh", "192.0.2.3".parse().unwrap());
        },
    );
    r.knock("ssh_renew", "192.0.2.10");
    r.at(NOW);
    assert_eq!(r.log.take().len(), 2, "started, .10 authorized");
    assert_eq!(r.hosts("ssh").len(), 1);
    let expire_only = "[[expire]]\ntable = \"portknock_ssh\"\nttl = \"60s\"\n";
    assert_eq!(
        r.reload_to(expire_only, NOW + 10),
        [
            "table <ssh> in anchor pfknock of service ssh emptied by the reload: 1 authorizations \
          went with it"
        ]
    );
    let loads = r.pfctl.loads.borrow().clone();
    assert_eq!(loads.len(), 2, "the anchor loaded again");
    let rules: Vec<&str> = (loads[1].lines())
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert!(rules.is_empty(), "the anchor keeps {rules:?}");
    for t in ["ssh", "ssh_renew"] {
        assert!(r.hosts(t).is_empty(), "<{t}> holds {:?}", r.hosts(t));
    }
    r.d.tick(NOW + 61);
    assert_eq!(
        r.log.take(),
        ["expired 192.0.2.3 service=- table=portknock_ssh anchor=- age=1m1s ttl=1m"]
    );
    // Back to the service: it starts with nobody.
    assert!(r.reload_to(SSH, NOW + 70).is_empty());
    assert!(r.hosts("ssh").is_empty());
}

#[test]
fn stop_unloads_only_when_asked() {
    let mut r = rig(&openbsd::LAYOUT, "stop", SSH);
    r.d.stop("SIGTERM");
    assert_eq!(r.pfctl.unloads.get(), 0);
    assert_eq!(r.log.take().last().unwrap(), "exiting on SIGTERM");
    let mut r = rig(
        &openbsd::LAYOUT,
        "stop-unload",
        &format!("unload = true\n{SSH}"),
    );
    r.d.stop("SIGTERM");
    assert_eq!(r.pfctl.unloads.get(), 1);
    assert!(!r.m().has_table("pfknock", "ssh"));
}

#[test]
fn sweep_now_lists_everything() {
    let mut r = rig(&freebsd::LAYOUT, "sweep", SSH);
    let before = r.m().count(abi::N_GETASTATS);
    r.d.sweep(NOW + 1);
    assert_eq!(
        r.m().count(abi::N_GETASTATS) - before,
        2,
        "ssh_renew and ssh"
    );
}

#[test]
fn an_entry_removed_by_hand_is_logged() {
    let mut r = rig(&freebsd::LAYOUT, "removed", SSH);
    r.knock("ssh_renew", "192.0.2.10");
    r.knock("ssh_renew", "192.0.2.11");
    r.at(NOW);
    r.log.take();
    // pfknock revoke (or pfctl -T delete) from another process.
    let t = pfknock::tables::TableRef::new(&r.d.cfg.anchor, &r.d.cfg.services[0].table);
    pfknock::tables::Tables::delete(&mut r.d.tables, &t, &["192.0.2.10".parse().unwrap()]).unwrap();
    r.at(NOW + 1);
    assert_eq!(
        r.log.take(),
        ["removed 192.0.2.10 service=ssh table=ssh anchor=pfknock age=1s ttl=1m"]
    );
}

#[test]
fn a_removal_a_pfknock_command_noted_is_not_logged_twice() {
    // pf says nothing of who deleted an entry: `pfknock revoke`, `expire`
    // and `flush` note their removals first and log them themselves; the
    // daemon logs only the others. Every OS row.
    for l in OSES {
        let mut r = rig(l, "noted", SSH);
        let notes = r.path.with_file_name("removed");
        r.d.notes = Some(pfknock::daemon::notes::Notes::new(&notes));
        for a in ["192.0.2.10", "192.0.2.11", "192.0.2.12"] {
            r.knock("ssh_renew", a);
        }
        r.at(NOW);
        r.log.take();
        let t = pfknock::tables::TableRef::new(&r.d.cfg.anchor, &r.d.cfg.services[0].table);
        let (a, b): (Net, Net) = ("192.0.2.10".parse().unwrap(), "192.0.2.11".parse().unwrap());
        // As pfknock revoke does: note, then delete.
        pfknock::daemon::notes::note(&notes, &t, Some(&[a]));
        pfknock::tables::Tables::delete(&mut r.d.tables, &t, &[a, b]).unwrap();
        r.at(NOW + 1);
        assert_eq!(
            r.log.take(),
            ["removed 192.0.2.11 service=ssh table=ssh anchor=pfknock age=1s ttl=1m"],
            "{}: only the unnoted removal",
            l.os
        );
        // A note for an address that is never removed does not hide a later
        // removal once it is old.
        pfknock::daemon::notes::note(&notes, &t, Some(&["192.0.2.12".parse().unwrap()]));
        r.at(NOW + 2);
        r.at(NOW + 2 + pfknock::daemon::notes::KEEP + 1);
        pfknock::tables::Tables::delete(&mut r.d.tables, &t, &["192.0.2.12".parse().unwrap()])
            .unwrap();
        r.at(NOW + 2 + pfknock::daemon::notes::KEEP + 2);
        assert_eq!(
            r.log.take(),
            ["removed 192.0.2.12 service=ssh table=ssh anchor=pfknock age=14s ttl=1m"],
            "{}",
            l.os
        );
    }
}

// ---- error paths, driven by the model's failure injection -------------------

#[test]
fn a_persistent_error_is_logged_once_then_rarely_and_when_it_clears() {
    let mut r = rig(&openbsd::LAYOUT, "repeat", SSH);
    r.log.take();
    r.m().fail_always = Some((abi::N_GETTSTATS, libc::EIO));
    for t in 1..=700 {
        r.at(NOW + t);
    }
    let errs: Vec<(Level, String)> = r.log.take_all();
    let errs: Vec<&String> = errs
        .iter()
        .filter(|(l, _)| *l == Level::Err)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(errs.len(), 3, "first, and at 300 s and 600 s: {errs:?}");
    assert!(!errs[0].contains("again"), "{}", errs[0]);
    assert!(
        errs[1].ends_with("(again, 300 times in 300 s)"),
        "{}",
        errs[1]
    );
    assert!(
        errs[2].ends_with("(again, 300 times in 300 s)"),
        "{}",
        errs[2]
    );
    r.m().fail_always = None;
    r.at(NOW + 701);
    let l = r.log.take_all();
    assert!(
        l.iter().any(|(lv, m)| *lv == Level::Notice
            && m.starts_with("cleared after 99 more time(s): anchor pfknock: ")),
        "{l:?}"
    );
    r.at(NOW + 702);
    assert!(r.log.take().is_empty(), "cleared once");
}

#[test]
fn a_failed_listing_is_logged_and_the_next_poll_catches_up() {
    for l in OSES {
        let mut r = rig(l, "listfail", SSH);
        r.log.take();
        r.knock("ssh_renew", "192.0.2.10");
        r.m().fail_next = Some((abi::N_GETASTATS, libc::EBUSY));
        r.at(NOW + 1);
        let first = r.log.take();
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(
            first[0].starts_with("<ssh_renew> in anchor pfknock: "),
            "{}: {first:?}",
            l.os
        );
        r.at(NOW + 2);
        let l2 = r.log.take();
        assert!(
            l2.iter()
                .any(|m| m.starts_with("authorized 192.0.2.10 service=ssh")),
            "{}: {l2:?}",
            l.os
        );
    }
}

#[test]
fn a_failed_delete_keeps_the_entry_and_is_retried() {
    for l in OSES {
        let mut r = rig(l, "delfail", SSH);
        r.log.take();
        r.knock("ssh_renew", "192.0.2.10");
        r.at(NOW);
        r.log.take();
        r.m().fail_next = Some((abi::N_DELADDRS, libc::EPERM));
        r.at(NOW + 61);
        let log = r.log.take();
        assert!(
            log.iter()
                .any(|m| m.starts_with("<ssh> in anchor pfknock: ")),
            "{}: {log:?}",
            l.os
        );
        assert!(
            !log.iter().any(|m| m.starts_with("expired")),
            "nothing claimed: {log:?}"
        );
        assert_eq!(r.hosts("ssh").len(), 1, "still there");
        r.at(NOW + 62);
        assert!(r.hosts("ssh").is_empty(), "{}: retried", l.os);
        assert!(
            r.log
                .take()
                .iter()
                .any(|m| m.starts_with("expired 192.0.2.10"))
        );
    }
}

/// FAILURE MODES: while the daemon is down nothing expires on pf; the
/// daemon that starts again expires every overdue entry at once.
#[test]
fn a_daemon_back_after_an_outage_expires_the_overdue_at_once() {
    for l in OSES {
        let mut r = rig(l, "outage", SSH);
        r.knock("ssh_renew", "192.0.2.10");
        r.at(NOW);
        // The daemon dies; ten minutes pass; the kernel keeps the entry.
        r.m().now = NOW + 600;
        r.knock("ssh_renew", "192.0.2.11"); // a fresh knock meanwhile
        // The fresh knock waits in the intake, let in from there.
        assert_eq!(
            (r.hosts("ssh").len(), r.hosts("ssh_renew").len()),
            (1, 1),
            "nothing expires or moves without the daemon"
        );
        let (_d2, log) = r.again(l, NOW + 600, None);
        let hosts: Vec<String> = r.hosts("ssh").into_iter().map(|(a, _)| a).collect();
        assert_eq!(
            hosts,
            ["192.0.2.11"],
            "{}: the overdue one went at start",
            l.os
        );
        assert!(
            log.take()
                .iter()
                .any(|m| m.starts_with("expired 192.0.2.10 service=ssh")),
            "{}",
            l.os
        );
    }
}

// ---- one truth: the admin's commands through the daemon -------------------

impl Rig {
    /// A command line, as `pfknock -c CONFIG ARGS` sends it to the daemon.
    fn ask(&mut self, args: &[&str], now: i64) -> pfknock::control::Reply {
        let req = pfknock::control::Request {
            config: self.path.clone(),
            argv: args.iter().map(|s| s.to_string()).collect(),
        };
        self.m().now = now;
        self.d.control(&req, now * 1000)
    }
}

#[test]
fn unload_through_the_daemon_stays_unloaded_until_load() {
    for l in OSES {
        let mut r = rig(l, "unload-held", SSH);
        r.knock("ssh_renew", "198.18.0.10");
        r.at(NOW);
        r.log.take();
        let loads = r.pfctl.loads.borrow().len();
        let rep = r.ask(&["unload"], NOW + 1);
        assert_eq!(rep.error, None, "{}", l.os);
        assert!(
            rep.done
                .stderr
                .iter()
                .any(|s| s.contains("keeps it unloaded")),
            "{rep:?}"
        );
        assert_eq!(
            r.log.take(),
            [
                "anchor pfknock unloaded by pfknock unload: 1 authorizations went with it; \
              kept unloaded until pfknock load or SIGHUP"
            ]
        );
        assert!(!r.m().has_table("pfknock", "ssh"), "unloaded");
        // Polls, deadlines and a rotation step go by: nothing comes back,
        // and nothing is logged as expired or removed.
        for t in [NOW + 2, NOW + 30, NOW + 61, NOW + 200] {
            r.at(t);
            r.d.rotate(t);
        }
        assert!(!r.m().has_table("pfknock", "ssh"), "{}: restored", l.os);
        assert_eq!(r.pfctl.loads.borrow().len(), loads, "nothing loaded");
        assert_eq!(r.log.take(), Vec::<String>::new());
        // load: loaded again, and kept.
        let rep = r.ask(&["load"], NOW + 201);
        assert_eq!(rep.error, None);
        assert!(r.m().has_table("pfknock", "ssh"));
        let log = r.log.take();
        assert!(
            log.contains(&"anchor pfknock loaded again".to_owned()),
            "{log:?}"
        );
        // Closed for the host it had before: the unload took it.
        assert!(r.hosts("ssh").is_empty());
    }
}

#[test]
fn an_edited_config_loaded_through_the_daemon_is_kept() {
    let mut r = rig(&freebsd::LAYOUT, "load-kept", SSH);
    r.knock("ssh_renew", "198.18.0.10");
    r.at(NOW);
    fs::write(&r.path, SSH.replace("60s", "5m")).unwrap();
    let rep = r.ask(&["load"], NOW + 1);
    assert_eq!(rep.error, None);
    assert!(
        rep.done.stderr[0].contains("loaded by the running daemon"),
        "{rep:?}"
    );
    assert_eq!(r.d.cfg.services[0].ttl.0, 300);
    // The old ttl would have expired it at NOW + 61.
    r.at(NOW + 100);
    assert_eq!(
        r.hosts("ssh").len(),
        1,
        "the daemon went back to the old ttl"
    );
    r.at(NOW + 301);
    assert!(r.hosts("ssh").is_empty());
    let log = r.log.take();
    assert!(
        log.iter()
            .any(|l| l.starts_with("expired 198.18.0.10 ") && l.ends_with("ttl=5m")),
        "{log:?}"
    );
}

#[test]
fn a_config_the_daemon_does_not_run_is_refused_and_changes_nothing() {
    let mut r = rig(&openbsd::LAYOUT, "other-config", SSH);
    r.knock("ssh_renew", "198.18.0.10");
    r.at(NOW);
    let req = pfknock::control::Request {
        config: "/nonexistent/other.toml".into(),
        argv: vec!["flush".into()],
    };
    let rep = r.d.control(&req, (NOW + 1) * 1000);
    let (msg, code) = rep.error.unwrap();
    assert!(
        msg.contains("works from") && msg.contains("other.toml"),
        "{msg}"
    );
    assert_eq!(code, 2);
    assert_eq!(r.hosts("ssh").len(), 1);
    // Nonsense is refused too.
    let rep = r.ask(&["revoke", "not-an-address"], NOW + 1);
    assert!(rep.error.is_some());
    let rep = r.ask(&["knock", "198.18.0.1", "1"], NOW + 1);
    assert!(rep.error.unwrap().0.contains("does load, unload"));
    assert_eq!(r.hosts("ssh").len(), 1);
}

#[test]
fn revoke_through_the_daemon_is_logged_once_and_never_comes_back() {
    for l in OSES {
        let mut r = rig(l, "revoke-once", SSH);
        r.knock("ssh_renew", "198.18.0.10");
        r.knock("ssh_renew", "198.18.0.11");
        r.at(NOW);
        r.log.take();
        let rep = r.ask(&["revoke", "198.18.0.10"], NOW + 5);
        assert_eq!(rep.error, None);
        assert_eq!(
            rep.done.stderr,
            ["<ssh> in anchor pfknock: 1/1 addresses deleted."]
        );
        r.at(NOW + 6);
        assert_eq!(
            r.log.take(),
            [
                "revoked 198.18.0.10 service=ssh table=ssh anchor=pfknock age=5s ttl=1m \
              by pfknock revoke"
            ],
            "{}",
            l.os
        );
        // pf flushed: the anchor comes back with what was authorized and
        // not revoked.
        r.m().flush_anchor("pfknock");
        r.at(NOW + 7);
        let hosts: Vec<String> = r.hosts("ssh").into_iter().map(|(a, _)| a).collect();
        assert_eq!(hosts, ["198.18.0.11"], "{}", l.os);
        let log = r.log.take();
        assert_eq!(
            log,
            [
                "anchor pfknock restored: its tables were gone (pf flushed?): put back 1 \
              authorizations with the time they had left"
            ]
        );
    }
}

#[test]
fn allow_and_flush_through_the_daemon_are_logged_once() {
    let mut r = rig(&openbsd::LAYOUT, "allow-once", SSH);
    r.log.take();
    let rep = r.ask(&["allow", "198.18.0.20"], NOW);
    assert_eq!(rep.error, None);
    r.at(NOW + 1);
    assert_eq!(
        r.log.take(),
        ["allowed 198.18.0.20 service=ssh table=ssh anchor=pfknock ttl=1m by pfknock allow"]
    );
    // An address no connection comes from is refused in words, and
    // changes nothing: not the table, not the log.
    for a in ["::ffff:198.18.0.21", "224.0.0.1", "0.0.0.0"] {
        let rep = r.ask(&["allow", a], NOW + 1);
        let (msg, code) = rep.error.expect(a);
        assert!(msg.starts_with(&format!("{a}: ")), "{msg}");
        assert_eq!(code, 2, "{a}");
    }
    let (msg, _) = r
        .ask(&["allow", "::ffff:198.18.0.21"], NOW + 1)
        .error
        .unwrap();
    assert!(msg.ends_with("give 198.18.0.21"), "{msg}");
    r.at(NOW + 1);
    assert_eq!(r.log.take(), Vec::<String>::new());
    let hosts: Vec<String> = r.hosts("ssh").into_iter().map(|(a, _)| a).collect();
    assert_eq!(hosts, ["198.18.0.20"]);
    let rep = r.ask(&["flush"], NOW + 2);
    assert_eq!(rep.error, None);
    r.at(NOW + 3);
    assert_eq!(
        r.log.take(),
        ["flushed 198.18.0.20 service=ssh table=ssh anchor=pfknock age=2s ttl=1m by pfknock flush"]
    );
    r.at(NOW + 120);
    assert_eq!(r.log.take(), Vec::<String>::new(), "no ghost expiry");
}

#[test]
fn a_restored_authorization_keeps_the_time_it_had_left() {
    for l in OSES {
        let mut r = rig(l, "restore-left", SSH);
        r.knock("ssh_renew", "198.18.0.10");
        r.at(NOW);
        r.at(NOW + 30);
        r.m().flush_anchor("pfknock");
        let listings = r.m().count(abi::N_GETASTATS);
        r.at(NOW + 31);
        assert_eq!(r.hosts("ssh").len(), 1, "{}: put back", l.os);
        r.log.take();
        // What went back is what <ssh> holds: it is not listed for it.
        r.at(NOW + 32);
        assert_eq!(r.m().count(abi::N_GETASTATS), listings, "{}", l.os);
        r.at(NOW + 59);
        assert_eq!(r.hosts("ssh").len(), 1);
        // A fresh ttl would keep it until NOW + 91.
        r.at(NOW + 61);
        assert!(r.hosts("ssh").is_empty(), "{}: a fresh ttl", l.os);
        assert_eq!(
            r.log.take(),
            ["expired 198.18.0.10 service=ssh table=ssh anchor=pfknock age=1m1s ttl=1m"],
            "{}",
            l.os
        );
    }
}

#[test]
fn a_shorter_ttl_on_reload_expires_and_logs_at_once() {
    let mut r = rig(&freebsd::LAYOUT, "shorter-ttl", &SSH.replace("60s", "5m"));
    r.knock("ssh_renew", "198.18.0.10");
    r.at(NOW);
    r.at(NOW + 20);
    r.log.take();
    fs::write(&r.path, SSH.replace("60s", "10s")).unwrap();
    r.m().now = NOW + 21;
    r.d.reload(NOW + 21);
    let log = r.log.take();
    assert!(
        log.contains(
            &"expired 198.18.0.10 service=ssh table=ssh anchor=pfknock age=21s ttl=10s".to_owned()
        ),
        "{log:?}"
    );
    assert!(r.hosts("ssh").is_empty());
}

/// A service removed while no daemon ran: pf keeps its `persist` tables
/// with their hosts, which no rule reads and nothing expires. The start
/// empties every table of the anchor the config no longer names, and says
/// so; the tables it names are left as they are, and the record of the
/// last run says nothing of the hosts that went.
#[test]
fn a_start_empties_the_tables_of_services_removed_while_no_daemon_ran() {
    use pfknock::tables::Tables;
    // web_close stays empty: a table with nothing in it is not said.
    let web = "[[service]]\nname = \"web\"\nprotect = [443]\nknock = [1235]\nclose = 1236\n\
               ttl = \"60s\"\n";
    for l in OSES {
        let mut r = rig(l, "start-leftovers", &format!("{SSH}{web}"));
        r.knock("ssh_renew", "198.18.0.10");
        r.knock("web_renew", "198.18.0.20");
        r.knock("web_renew", "198.18.0.21");
        r.at(NOW);
        let kept = r.d.snapshot();
        r.m().now = NOW + 5;
        r.knock("web_renew", "198.18.0.22"); // waiting in the intake
        // The daemon stops; web is removed; pfctl loads the new anchor.
        fs::write(&r.path, SSH).unwrap();
        let (cfg, _) = Config::load(&r.path).unwrap();
        r.pfctl.clone().load(&cfg, "t").unwrap();
        let (_d2, log) = r.again(l, NOW + 10, Some(Some(kept)));
        let said = log.take();
        for (t, n) in [("web", 2), ("web_renew", 1)] {
            let line = format!(
                "table <{t}> in anchor pfknock, which the configuration no longer names, \
                 emptied by pfknock run: {n} addresses went with it"
            );
            assert!(said.contains(&line), "{}: {said:?}", l.os);
            assert!(r.hosts(t).is_empty(), "{}", l.os);
        }
        assert_eq!(said.len(), 3, "{}: {said:?}", l.os);
        assert_eq!(r.hosts("ssh").len(), 1, "{}", l.os);
        let stats = PfTables::new(r.k.clone(), l)
            .table_stats(&cfg.anchor)
            .unwrap();
        assert_eq!(stats.iter().map(|s| s.count).sum::<u64>(), 1, "{}", l.os);
    }
}

#[test]
fn what_happened_while_the_daemon_was_down_is_logged_as_such() {
    use pfknock::tables::{TableRef, Tables};
    for l in OSES {
        let mut r = rig(l, "down", SSH);
        for a in ["198.18.0.10", "198.18.0.11", "198.18.0.12"] {
            r.knock("ssh_renew", a);
        }
        r.at(NOW);
        // A clean stop keeps what the daemon knew.
        let kept = r.d.snapshot();
        assert_eq!(kept.len(), 3);
        // While no daemon runs: one removed by hand, one knock, one knock
        // again (a renewal).
        r.m().now = NOW + 30;
        let table = TableRef::new(
            &AnchorName::new("pfknock").unwrap(),
            &pfknock::name::TableName::new("ssh").unwrap(),
        );
        PfTables::new(r.k.clone(), l)
            .delete(&table, &["198.18.0.11".parse().unwrap()])
            .unwrap();
        r.knock("ssh_renew", "198.18.0.13");
        r.knock("ssh_renew", "198.18.0.12");
        // Back 70 s after the knocks: .10 is overdue, .12 is not.
        r.m().now = NOW + 70;
        let (mut d2, log) = r.again(l, NOW + 70, Some(Some(kept)));
        let said = log.take();
        assert_eq!(
            said[1..],
            [
                "renewed 198.18.0.12 service=ssh table=ssh anchor=pfknock age=40s ttl=1m \
                 while the daemon was down",
                "authorized 198.18.0.13 service=ssh table=ssh anchor=pfknock age=40s ttl=1m \
                 while the daemon was down",
                "removed 198.18.0.11 service=ssh table=ssh anchor=pfknock ttl=1m \
                 while the daemon was down",
                "expired 198.18.0.10 service=ssh table=ssh anchor=pfknock age=1m10s ttl=1m",
            ],
            "{}",
            l.os
        );
        // The renewal and the knock count from their knocks (NOW + 30),
        // not from the start that moved them.
        r.m().now = NOW + 90;
        d2.tick(NOW + 90);
        assert_eq!(log.take(), Vec::<String>::new(), "{}", l.os);
        r.m().now = NOW + 91;
        d2.tick(NOW + 91);
        assert_eq!(
            log.take(),
            [
                "expired 198.18.0.12 service=ssh table=ssh anchor=pfknock age=1m1s ttl=1m",
                "expired 198.18.0.13 service=ssh table=ssh anchor=pfknock age=1m1s ttl=1m",
            ],
            "{}",
            l.os
        );
        // A knock while no daemon runs, waiting in the intake: found.
        r.m().now = NOW + 92;
        r.knock("ssh_renew", "198.18.0.14");
        drop(d2);
        // Without a record (a crash, a first start), it says it does not know.
        let (_d3, log) = r.again(l, NOW + 92, Some(None));
        let said = log.take();
        assert!(
            said[1].starts_with("no record of the last run")
                && said[1].contains(": 1 authorizations found"),
            "{said:?}"
        );
    }
}

/// A knock waits in the intake while no daemon runs, and the host is
/// then allowed by hand (`pfknock allow`, into `<ssh>`). Back after the
/// knock's ttl but not the allow's: the host is authorized from the allow,
/// said once, not expired from its old knock, and expires a ttl after the
/// allow, from both tables.
#[test]
fn a_stale_knock_of_a_host_allowed_while_down_does_not_expire_it() {
    use pfknock::tables::{TableRef, Tables};
    for l in OSES {
        let mut r = rig(l, "stale", SSH);
        r.at(NOW);
        let kept = r.d.snapshot();
        r.knock("ssh_renew", "198.18.0.20");
        r.m().now = NOW + 50;
        let table = TableRef::new(
            &AnchorName::new("pfknock").unwrap(),
            &pfknock::name::TableName::new("ssh").unwrap(),
        );
        let host = "198.18.0.20".parse().unwrap();
        assert_eq!(
            PfTables::new(r.k.clone(), l).add(&table, &[host]).unwrap(),
            1
        );
        r.m().now = NOW + 70;
        let (mut d2, log) = r.again(l, NOW + 70, Some(Some(kept)));
        assert_eq!(
            log.take()[1..],
            [
                "authorized 198.18.0.20 service=ssh table=ssh anchor=pfknock age=20s ttl=1m \
              while the daemon was down"
            ],
            "{}",
            l.os
        );
        assert_eq!(r.hosts("ssh").len(), 1, "{}: <ssh> lets it in", l.os);
        assert_eq!(r.hosts("ssh_renew"), [], "{}: the intake is emptied", l.os);
        r.m().now = NOW + 110;
        d2.tick(NOW + 110);
        assert_eq!(log.take(), Vec::<String>::new(), "{}", l.os);
        r.m().now = NOW + 111;
        d2.tick(NOW + 111);
        assert_eq!(
            log.take(),
            ["expired 198.18.0.20 service=ssh table=ssh anchor=pfknock age=1m1s ttl=1m"],
            "{}",
            l.os
        );
        assert_eq!(r.hosts("ssh"), [], "{}", l.os);
        assert_eq!(r.hosts("ssh_renew"), [], "{}", l.os);
    }
}

/// pf keeps one pool of entries for every table of every anchor (`set
/// limit table-entries`), and at its limit a knock's insert fails without
/// a word. The daemon reads the limit and the entries of all anchors
/// (DIOCGETLIMIT with each OS's own PF_LIMIT_TABLE_ENTRIES, DIOCRGETTSTATS
/// with PFR_FLAG_ALLRSETS), says once that the pool is full, SIGINFO says
/// so meanwhile, and once that it has room again.
#[test]
fn a_full_pool_of_table_entries_is_logged_when_it_fills_and_when_it_has_room() {
    for l in OSES {
        let mut r = rig_with(l, "pool", SSH, true, Some(true), |m| {
            // Another anchor's table holds two entries of the pool.
            m.define("other", "blocklist", false);
            m.overload("other", "blocklist", "198.51.100.1".parse().unwrap());
            m.overload("other", "blocklist", "198.51.100.2".parse().unwrap());
            m.table_entries_limit = 4;
        });
        r.log.take();
        r.knock("ssh_renew", "192.0.2.10");
        r.knock("ssh_renew", "192.0.2.11");
        r.knock("ssh_renew", "192.0.2.12");
        assert_eq!(r.m().lost_inserts, 1, "{}: the third found no room", l.os);
        let mut t = PfTables::new(r.k.clone(), l);
        let pools = pfknock::tables::Tables::pools(&mut t).unwrap();
        assert_eq!(
            (pools[0].pool, pools[0].used, pools[0].limit),
            (Pool::TableEntries, 4, 4),
            "{}",
            l.os
        );
        r.at(NOW + 10);
        let said = r.log.take();
        let full: Vec<&String> = said
            .iter()
            .filter(|x| x.contains("table-entries"))
            .collect();
        assert_eq!(
            full,
            [
                "pf's table-entries limit is reached (4 of 4 entries in all tables): knocks \
              are not added to tables until entries expire; raise it with set limit \
              table-entries in pf.conf"
            ],
            "{}",
            l.os
        );
        assert_eq!(
            said.iter().filter(|x| x.starts_with("authorized")).count(),
            2
        );
        r.d.status(NOW + 10);
        assert!(
            r.log
                .take()
                .iter()
                .any(|x| x == "status: pf's table-entries limit reached (4 of 4)"),
            "{}",
            l.os
        );
        r.at(NOW + 11);
        assert!(r.log.take().is_empty(), "{}: said once", l.os);
        // The two authorizations expire: room again, said once.
        r.at(NOW + 61);
        r.at(NOW + 62);
        let said = r.log.take();
        assert_eq!(said.iter().filter(|x| x.starts_with("expired")).count(), 2);
        let room: Vec<&String> = said
            .iter()
            .filter(|x| x.contains("table-entries"))
            .collect();
        assert_eq!(
            room,
            ["pf's table-entries limit has room again (2 of 4)"],
            "{}",
            l.os
        );
        r.at(NOW + 63);
        assert!(r.log.take().is_empty());
    }
}

/// `max-src-conn-rate` keeps a source node per source and knock rule, from
/// pf's one pool (`set limit src-nodes`); at its limit pf makes no state for
/// a new source and drops its knock. The daemon reads the limit and the
/// nodes (DIOCGETLIMIT with each OS's own PF_LIMIT_SRC_NODES,
/// DIOCGETSRCNODES asked for its length, divided by the OS's `struct
/// pf_src_node`), says once that the pool is full, SIGINFO says so
/// meanwhile, and once that it has room again. The table-entries pool,
/// with room all along, says nothing.
#[test]
fn a_full_pool_of_source_nodes_is_logged_when_it_fills_and_when_it_has_room() {
    for l in OSES {
        let mut r = rig_with(l, "srcnodes", SSH, true, Some(true), |m| {
            // pf.conf's own rules hold one node of a pool of three.
            m.other_src_nodes = 1;
            m.src_nodes_limit = 3;
        });
        r.log.take();
        for a in ["192.0.2.10", "192.0.2.11", "192.0.2.12"] {
            r.m().knock("pfknock", "ssh", a.parse().unwrap());
        }
        assert_eq!(r.m().lost_knocks, 1, "{}: the third got no node", l.os);
        assert_eq!(r.hosts("ssh").len(), 2, "{}", l.os);
        let mut t = PfTables::new(r.k.clone(), l);
        let pools = pfknock::tables::Tables::pools(&mut t).unwrap();
        assert_eq!(
            pools
                .iter()
                .map(|p| (p.pool, p.used, p.limit))
                .collect::<Vec<_>>(),
            [(Pool::TableEntries, 2, 200_000), (Pool::SrcNodes, 3, 3)],
            "{}",
            l.os
        );
        r.at(NOW + 10);
        let said = r.log.take();
        let pool: Vec<&String> = said.iter().filter(|x| x.contains("limit")).collect();
        assert_eq!(
            pool,
            [
                "pf's src-nodes limit is reached (3 of 3 source nodes): knocks from new \
                 sources are dropped until source nodes expire; raise it with set limit \
                 src-nodes in pf.conf"
            ],
            "{}",
            l.os
        );
        assert_eq!(
            said.iter().filter(|x| x.starts_with("authorized")).count(),
            2,
            "{}: the dropped knock is not logged as authorized",
            l.os
        );
        r.d.status(NOW + 10);
        assert!(
            r.log
                .take()
                .iter()
                .any(|x| x == "status: pf's src-nodes limit reached (3 of 3)"),
            "{}",
            l.os
        );
        r.at(NOW + 11);
        assert!(r.log.take().is_empty(), "{}: said once", l.os);
        // The knock rules' states end and pf purges their nodes.
        r.m().purge_src_nodes();
        r.at(NOW + 12);
        assert_eq!(
            r.log.take(),
            ["pf's src-nodes limit has room again (1 of 3)"],
            "{}",
            l.os
        );
        r.at(NOW + 13);
        assert!(r.log.take().is_empty(), "{}", l.os);
        // Room for a new source: its knock opens.
        r.m().knock("pfknock", "ssh", "192.0.2.12".parse().unwrap());
        assert_eq!(r.hosts("ssh").len(), 3, "{}", l.os);
    }
}

/// A signed knock, once the listener and root admitted it, goes through
/// the same table as a knock: opened, logged with its key, expired at the
/// ttl; a signed close takes it out, and one for nobody says so.
#[test]
fn a_signed_knock_opens_expires_and_closes_through_the_table() {
    use pfknock::spa::{ActionWord, Admitted};
    let keys = common::Scratch::new("daemon-spa-keys");
    let k = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let hex: String = k
        .verifying_key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    fs::write(keys.join("alice.pub"), format!("ed25519 {hex}\n")).unwrap();
    let conf = format!(
        "[[service]]\nname = \"ssh\"\nprotect = [22]\nttl = \"60s\"\n\
         spa = {{ port = 62201, keys = \"{}\" }}\n",
        keys.display()
    );
    let conf: &'static str = Box::leak(conf.into_boxed_str());
    for l in OSES {
        let mut r = rig(l, "spa", conf);
        assert_eq!(r.d.spa.len(), 1, "{}: the keys were read", l.os);
        assert_eq!(r.d.spa[0].keys[0].0, "alice");
        r.log.take();
        let a = |action, addr: &str| Admitted {
            service: "ssh".into(),
            action,
            addr: addr.parse().unwrap(),
            sender: addr.parse().unwrap(),
            key: "alice".into(),
            time: NOW as u64,
            nonce: [1; 16],
        };
        r.d.signed(&a(ActionWord::Open, "192.0.2.10"), NOW);
        assert_eq!(r.hosts("ssh"), [("192.0.2.10".to_owned(), NOW)], "{}", l.os);
        assert_eq!(
            r.log.take(),
            [
                "allowed 192.0.2.10 service=ssh table=ssh anchor=pfknock ttl=1m by signed \
              knock of key alice from 192.0.2.10"
            ],
            "{}",
            l.os
        );
        // Not logged again at the next look; expired at the ttl, once.
        r.at(NOW + 1);
        assert!(r.log.take().is_empty(), "{}", l.os);
        r.at(NOW + 61);
        assert!(r.hosts("ssh").is_empty(), "{}", l.os);
        assert_eq!(
            r.log.take(),
            ["expired 192.0.2.10 service=ssh table=ssh anchor=pfknock age=1m1s ttl=1m"],
            "{}",
            l.os
        );
        r.d.signed(&a(ActionWord::Open, "192.0.2.11"), NOW + 62);
        r.d.signed(&a(ActionWord::Close, "192.0.2.11"), NOW + 63);
        assert!(r.hosts("ssh").is_empty(), "{}", l.os);
        let said = r.log.take();
        assert!(
            said[1].starts_with("revoked 192.0.2.11 service=ssh table=ssh anchor=pfknock")
                && said[1].ends_with("by signed close knock of key alice from 192.0.2.11"),
            "{}: {said:?}",
            l.os
        );
        r.at(NOW + 130);
        assert!(
            r.log.take().is_empty(),
            "{}: nothing expires after the close",
            l.os
        );
        r.d.signed(&a(ActionWord::Close, "192.0.2.12"), NOW + 131);
        assert_eq!(
            r.log.take(),
            [
                "signed close knock of key alice from 192.0.2.12: 192.0.2.12 was not authorized \
              for ssh"
            ],
            "{}",
            l.os
        );
    }
}

/// A reload that removes a service: pf keeps the `persist` tables that
/// the anchor no longer names, with their entries, where no rule reads
/// them and no poll expires them, so the daemon empties them (the
/// authorized hosts, those waiting in its intake, its close table) and
/// says how many authorizations went. The other service's table is
/// untouched; the service added back later starts with no host.
#[test]
fn a_reload_that_removes_a_service_empties_its_tables() {
    let web = "[[service]]\nname = \"web\"\nprotect = [443]\nknock = [1235]\nclose = 1236\n\
               ttl = \"60s\"\n";
    let both = format!("{SSH}{web}");
    let mut r = rig(&freebsd::LAYOUT, "reload-removes", &both);
    r.knock("ssh_renew", "192.0.2.10");
    r.knock("web_renew", "192.0.2.20");
    r.at(NOW);
    r.knock("web_renew", "192.0.2.21");
    r.knock("web_close", "192.0.2.22");
    assert_eq!(r.log.take().len(), 3, "started, .10 and .20 authorized");
    assert_eq!(
        r.reload_to(SSH, NOW + 10),
        [
            "table <web> in anchor pfknock of service web emptied by the reload: 2 authorizations \
          went with it"
        ]
    );
    for t in ["web", "web_renew", "web_close"] {
        assert!(r.hosts(t).is_empty(), "<{t}> holds {:?}", r.hosts(t));
    }
    assert_eq!(r.hosts("ssh").len(), 1);
    r.at(NOW + 100);
    let l = r.log.take();
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("expired 192.0.2.10 "), "{l:?}");
    assert!(r.reload_to(&both, NOW + 200).is_empty());
    assert!(r.hosts("web").is_empty());
    r.at(NOW + 201);
    assert!(r.log.take().is_empty());
    // `pfknock load` through the daemon says on its stderr what the log
    // says of the hosts that went.
    r.knock("web_renew", "192.0.2.23");
    r.at(NOW + 202);
    assert_eq!(r.log.take().len(), 1, ".23 authorized");
    fs::write(&r.path, SSH).unwrap();
    let reply = r.ask(&["load"], NOW + 203);
    assert_eq!(reply.error, None);
    let went = "table <web> in anchor pfknock of service web emptied by the reload: 1 \
                authorizations went with it";
    let l = &reply.done.stderr;
    assert_eq!(l.len(), 2, "{l:?}");
    assert_eq!(l[0], went);
    assert!(l[1].ends_with("which keeps it so"), "{l:?}");
    assert_eq!(r.log.take()[1..], [went]);
    assert!(r.hosts("web").is_empty());
}
