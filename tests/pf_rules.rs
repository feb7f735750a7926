//! What the rendered pf anchor does with knocks, read by a small evaluator
//! written here from pf.conf(5) and shared with nothing it checks: every
//! rule of the anchor is `quick`, so the first rule whose source and port
//! match decides; a `pass` with `overload <t>` puts a source that knocks
//! past the rate into `<t>` (the knock is made with enough connects; pf's
//! rate itself is the kernel's business); a `block` drops. The daemon's
//! part is played as pfknock(8) states it: a host in the intake
//! (`<ssh_renew>`) moves into the authorized table, a host in a hold table
//! leaves the service's stage tables, and the hold ends after the rate's
//! window.
//!
//! The anchors are the golden files, which tests/golden.rs pins byte for
//! byte to what the shipped renderer writes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

#[derive(Clone, Debug)]
struct Rule {
    block: bool,
    /// `None`: any source; else the table it must be in.
    from: Option<String>,
    ports: Vec<(u16, u16)>,
    overload: Option<String>,
}

fn golden(case: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case)
        .join("pfknock.pf");
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// What follows `key` in `line`.
fn after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_once(key).map(|(_, rest)| rest)
}

fn parse_ports(s: &str) -> Vec<(u16, u16)> {
    let s = s.trim();
    let inner = s
        .strip_prefix("{ ")
        .and_then(|x| x.split_once(" }").map(|(a, _)| a))
        .unwrap_or_else(|| s.split_whitespace().next().unwrap());
    inner
        .split(", ")
        .map(|p| match p.split_once(':') {
            Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
            None => {
                let n = p.parse().unwrap();
                (n, n)
            }
        })
        .collect()
}

/// The knock rules: tcp rules to this host's ports, IPv4 sources (the
/// link-local block is IPv6 only and left out).
fn rules(anchor: &str) -> Vec<Rule> {
    anchor
        .lines()
        .filter(|l| l.starts_with("pass in") || l.starts_with("block in"))
        .filter(|l| l.contains("proto tcp") && !l.contains("fe80::/10"))
        .map(|l| {
            let from = after(l, " from ")
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            let from = (from != "any").then(|| from.trim_matches(['<', '>']).to_owned());
            Rule {
                block: l.starts_with("block"),
                from,
                ports: parse_ports(after(l, " port ").unwrap()),
                overload: after(l, "overload <").map(|x| x.split('>').next().unwrap().to_owned()),
            }
        })
        .collect()
}

/// The rules as they were before wrong knocks were held.
fn without_hold(rules: &[Rule]) -> Vec<Rule> {
    rules
        .iter()
        .filter(|r| {
            r.overload.as_deref() != Some("ssh_hold") && r.from.as_deref() != Some("ssh_hold")
        })
        .cloned()
        .collect()
}

/// The kernel's tables, and the daemon's part.
#[derive(Default)]
struct Pf {
    tables: BTreeMap<String, BTreeSet<&'static str>>,
}

impl Pf {
    fn has(&self, t: &str, h: &str) -> bool {
        self.tables.get(t).is_some_and(|s| s.contains(h))
    }

    /// One knock (connects past the rate) from `h` on `port`.
    fn knock(&mut self, rules: &[Rule], h: &'static str, port: u16) {
        let hit = rules.iter().find(|r| {
            r.from.as_deref().is_none_or(|t| self.has(t, h))
                && r.ports.iter().any(|(a, b)| (*a..=*b).contains(&port))
        });
        if let Some(Rule {
            block: false,
            overload: Some(t),
            ..
        }) = hit
        {
            self.tables.entry(t.clone()).or_default().insert(h);
        }
        // The daemon: a host in the intake moves into the authorized
        // table; a held host's progress starts over; a host that knocked
        // the close port leaves the authorized, intake and stage tables,
        // and the close table.
        if self
            .tables
            .get_mut("ssh_renew")
            .is_some_and(|t| t.remove(h))
        {
            self.tables.entry("ssh".into()).or_default().insert(h);
        }
        if self.has("ssh_hold", h) {
            for (t, set) in self.tables.iter_mut() {
                if t.starts_with("ssh_s") {
                    set.remove(h);
                }
            }
        }
        if self.has("ssh_close", h) {
            for (t, set) in self.tables.iter_mut() {
                if ["ssh", "ssh_renew", "ssh_close"].contains(&t.as_str()) || t.starts_with("ssh_s")
                {
                    set.remove(h);
                }
            }
        }
    }

    /// The rate's window passes: holds end (and stages lapse no sooner).
    fn window_passes(&mut self) {
        self.tables.remove("ssh_hold");
    }
}

/// knock = [7001, 7002, 7003] (03-sequence-three-ports): only that order
/// opens; every other order of the three ports, knocked three rounds as a
/// scanner that saw them would, opens nothing and leaves the host held.
#[test]
fn a_scanned_sequence_opens_only_in_its_order() {
    let rules = rules(&golden("03-sequence-three-ports"));
    let orders = [
        [7001, 7002, 7003],
        [7001, 7003, 7002],
        [7002, 7001, 7003],
        [7002, 7003, 7001],
        [7003, 7001, 7002],
        [7003, 7002, 7001],
    ];
    for order in orders {
        let mut pf = Pf::default();
        for _round in 0..3 {
            for p in order {
                pf.knock(&rules, "192.0.2.9", p);
            }
            if pf.has("ssh", "192.0.2.9") {
                break;
            }
            pf.window_passes();
        }
        assert_eq!(
            pf.has("ssh", "192.0.2.9"),
            order == [7001, 7002, 7003],
            "{order:?}"
        );
    }
    // Without the hold, the reverse order opened in three rounds: the
    // check above is not vacuous.
    let lax = without_hold(&rules);
    let mut pf = Pf::default();
    for _ in 0..3 {
        for p in [7003, 7002, 7001] {
            pf.knock(&lax, "192.0.2.9", p);
        }
    }
    assert!(pf.has("ssh", "192.0.2.9"));
}

/// A rotating service (17-rotate-two-ports, 2 ports in 40000-49999): a
/// sweep of the whole range, each port knocked in turn, six times over
/// with the hold's end between, opens nothing; the host is held at its
/// first wrong port. The step's own ports, knocked in order, open.
#[test]
fn a_sweep_of_a_rotating_range_opens_nothing() {
    let anchor = golden("17-rotate-two-ports");
    let rules = rules(&anchor);
    for _ in 0..6 {
        let mut pf = Pf::default();
        for p in 40000..=49999 {
            pf.knock(&rules, "192.0.2.9", p);
        }
        assert!(!pf.has("ssh", "192.0.2.9"));
        assert!(pf.has("ssh_hold", "192.0.2.9"));
        pf.window_passes();
    }
    // Without the hold one sweep opened.
    let lax = without_hold(&rules);
    let mut pf = Pf::default();
    for p in 40000..=49999 {
        pf.knock(&lax, "192.0.2.9", p);
    }
    assert!(pf.has("ssh", "192.0.2.9"));
    // The ports of stage 1 and 2, as the rules name them.
    let stage = |t: &str| {
        rules
            .iter()
            .find(|r| r.overload.as_deref() == Some(t) && !r.block)
            .map(|r| r.ports[0].0)
            .unwrap()
    };
    let mut pf = Pf::default();
    pf.knock(&rules, "192.0.2.9", stage("ssh_s1"));
    pf.knock(&rules, "192.0.2.9", stage("ssh_renew"));
    assert!(pf.has("ssh", "192.0.2.9"));
    // A sweep that starts at the right port is held at the next one.
    let mut pf = Pf::default();
    pf.knock(&rules, "192.0.2.9", stage("ssh_s1"));
    pf.knock(&rules, "192.0.2.9", 40000);
    assert!(pf.has("ssh_hold", "192.0.2.9") && !pf.has("ssh_s1", "192.0.2.9"));
}

/// knock = [7001, 7002], close = 7010 (19-close-knock): the close port
/// takes an authorized host out, resets a sequence in progress, and is
/// never a wrong knock (no hold); another host keeps its authorization.
#[test]
fn the_close_port_closes_and_is_no_wrong_knock() {
    let rules = rules(&golden("19-close-knock"));
    let mut pf = Pf::default();
    for h in ["192.0.2.1", "192.0.2.2"] {
        pf.knock(&rules, h, 7001);
        pf.knock(&rules, h, 7002);
        assert!(pf.has("ssh", h), "{h} opened");
    }
    pf.knock(&rules, "192.0.2.1", 7010);
    assert!(!pf.has("ssh", "192.0.2.1"), "closed");
    assert!(pf.has("ssh", "192.0.2.2"), "the other host stays");
    assert!(
        !pf.has("ssh_hold", "192.0.2.1"),
        "a close knock holds nobody"
    );
    // Half a sequence, the close port, the rest: progress started over.
    pf.knock(&rules, "192.0.2.1", 7001);
    pf.knock(&rules, "192.0.2.1", 7010);
    pf.knock(&rules, "192.0.2.1", 7002);
    assert!(!pf.has("ssh", "192.0.2.1"));
    pf.window_passes();
    pf.knock(&rules, "192.0.2.1", 7001);
    pf.knock(&rules, "192.0.2.1", 7002);
    assert!(pf.has("ssh", "192.0.2.1"), "a knock opens again");
}

/// A rotating service in a small range (23-rotate-ports-meet), rendered
/// five seconds before a step starts: the last step's ports (40019 then
/// 40003), this step's (40012 then 40014) and the next step's (40007
/// then 40019) are all in force, and 40019 is the last step's first port
/// and the next step's second. A client whose clock is behind knocks the
/// last step's, one whose clock is ahead the next step's: each opens, as
/// does this step's. Knocked once, 40019 opens nothing. (Knocked twice
/// it is the last step's first port and the next step's second: a
/// sequence across steps, which counts as any does while both are in
/// force; the stage tables do not record a step.)
#[test]
fn a_port_the_last_step_and_the_next_share_counts_for_either() {
    let anchor = golden("23-rotate-ports-meet");
    let rules = rules(&anchor);
    for (host, ports) in [
        ("192.0.2.1", [40019, 40003]),
        ("192.0.2.2", [40012, 40014]),
        ("192.0.2.3", [40007, 40019]),
    ] {
        let mut pf = Pf::default();
        for p in ports {
            pf.knock(&rules, host, p);
        }
        assert!(pf.has("ssh", host), "{ports:?} did not open");
        assert!(!pf.has("ssh_hold", host), "{ports:?} held the host");
    }
    let mut pf = Pf::default();
    pf.knock(&rules, "192.0.2.4", 40019);
    assert!(!pf.has("ssh", "192.0.2.4") && pf.has("ssh_s1", "192.0.2.4"));
    // The second stage of one step after the first of another opens
    // nothing more than either would: the hold takes a port of no stage.
    let mut pf = Pf::default();
    pf.knock(&rules, "192.0.2.5", 40007);
    pf.knock(&rules, "192.0.2.5", 40001);
    assert!(!pf.has("ssh", "192.0.2.5") && pf.has("ssh_hold", "192.0.2.5"));
}
