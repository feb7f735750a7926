//! The machine where it polls (pf), alone: each test plays pf by hand —
//! the statistics, listings and write results it answers — and reads
//! every action: the lines, the queries (what the daemon would ask and
//! write) and what must not be written.

use super::*;
use crate::config::Config;
use crate::name::{AnchorName, TableName};
use crate::tables::{Entry, PoolUse, TableStat};

/// Seconds (the polls count in seconds; the machine is handed ms).
pub(super) const T: i64 = 1_800_000_000;

pub(super) fn pf(extra: &str) -> (Config, Machine) {
    let cfg = if extra.starts_with("knock") {
        let text = format!("[[service]]\nname = \"ssh\"\nprotect = [22]\nttl = \"60s\"\n{extra}");
        Config::parse(&text, std::path::Path::new("t.toml"))
            .unwrap()
            .0
    } else {
        config(extra)
    };
    let m = Machine::polling(&cfg, false);
    (cfg, m)
}

pub(super) fn anchor() -> AnchorName {
    AnchorName::new("pfknock").unwrap()
}

pub(super) fn table(name: &str) -> TableRef {
    TableRef::new(&anchor(), &TableName::new(name).unwrap())
}

pub(super) fn net(s: &str) -> Net {
    s.parse().unwrap()
}

pub(super) fn entry(s: &str, tzero: i64) -> Entry {
    Entry {
        net: net(s),
        tzero,
        packets: 0,
        bytes: 0,
        counted: true,
    }
}

pub(super) fn stat(name: &str, count: u64) -> TableStat {
    TableStat {
        name: name.to_owned(),
        anchor: "pfknock".to_owned(),
        active: true,
        count,
        counters: Some(true),
        packets: 0,
        tzero: 0,
    }
}

/// pf as a test plays it: the tables' entries, what each query was, and
/// a write that fails when `fail` says so.
#[derive(Default)]
pub(super) struct Pf {
    pub(super) tables: BTreeMap<String, Vec<Entry>>,
    /// No anchor at all (flushed).
    pub(super) gone: bool,
    pub(super) pools: Vec<PoolUse>,
    /// Writes to this table fail.
    pub(super) fail: Option<String>,
    pub(super) asked: Vec<Query>,
    /// The time pf stamps what is added (seconds).
    pub(super) now: i64,
    /// The load fails with this.
    pub(super) load_fails: Option<String>,
    /// A table is there but not in use (no rule refers to it).
    pub(super) inactive: Option<String>,
    /// nftables: are the rules and sets in place?
    pub(super) intact: Option<bool>,
    /// nftables: sets at their size.
    pub(super) full: Vec<(String, u64)>,
    /// Packets each table's rules counted.
    pub(super) packets: BTreeMap<String, u64>,
    /// Gone right after a listing (a race with someone's delete).
    pub(super) vanish: Vec<Net>,
}

impl Pf {
    pub(super) fn with(tables: &[(&str, Vec<Entry>)]) -> Self {
        Pf {
            tables: tables
                .iter()
                .map(|(n, e)| ((*n).to_owned(), e.clone()))
                .collect(),
            ..Pf::default()
        }
    }

    /// One write, as pf does it: how many entries it changed.
    fn write(&mut self, w: &Write) -> Result<usize, String> {
        let (t, nets) = match w {
            Write::Delete(t, nets) | Write::Stamp(t, nets) | Write::Move(_, t, nets) => (t, nets),
            Write::Empty(t) => (t, &Vec::new()),
        };
        if self.fail.as_deref() == Some(t.name.as_str()) {
            return Err("Operation not permitted".to_owned());
        }
        let now = self.now;
        let list = self.tables.entry(t.name.as_str().to_owned()).or_default();
        Ok(match w {
            Write::Empty(_) => std::mem::take(list).len(),
            Write::Delete(..) => {
                let before = list.len();
                list.retain(|e| !nets.contains(&e.net));
                before - list.len()
            }
            // pf renews only what the table holds, stamped now.
            Write::Stamp(..) => {
                let mut n = 0;
                for e in list.iter_mut().filter(|e| nets.contains(&e.net)) {
                    e.tzero = now;
                    n += 1;
                }
                n
            }
            // Added where absent, stamped now; then out of the intake,
            // and back out of the table where the intake no longer held
            // it.
            Write::Move(from, ..) => {
                let new: Vec<Net> = (nets.iter())
                    .filter(|n| !list.iter().any(|e| e.net == **n))
                    .copied()
                    .collect();
                list.extend(new.iter().map(|n| entry(&n.to_string(), now)));
                let intake = self.tables.entry(from.name.to_string()).or_default();
                let held: Vec<Net> = (new.iter())
                    .filter(|n| intake.iter().any(|e| e.net == **n))
                    .copied()
                    .collect();
                intake.retain(|e| !nets.contains(&e.net));
                let list = self.tables.get_mut(t.name.as_str()).expect("added to");
                list.retain(|e| !new.contains(&e.net) || held.contains(&e.net));
                held.len()
            }
        })
    }

    fn answer(&mut self, q: &Query) -> Answer {
        self.asked.push(q.clone());
        match q {
            Query::Stats { anchors, pools } => Answer::Stats {
                anchors: anchors
                    .iter()
                    .map(|_| {
                        if self.gone {
                            Err(ReadError::Missing)
                        } else {
                            Ok(self
                                .tables
                                .iter()
                                .map(|(n, e)| TableStat {
                                    active: self.inactive.as_deref() != Some(n.as_str()),
                                    packets: self.packets.get(n).copied().unwrap_or(0),
                                    ..stat(n, e.len() as u64)
                                })
                                .collect())
                        }
                    })
                    .collect(),
                intact: self.intact,
                full: self.full.clone(),
                pools: pools.then(|| Ok(self.pools.clone())),
            },
            Query::Entries(t) => {
                let listed = self.tables.get(t.name.as_str()).cloned();
                if let Some(list) = self.tables.get_mut(t.name.as_str()) {
                    list.retain(|e| !self.vanish.contains(&e.net));
                }
                Answer::Entries(listed.ok_or_else(|| "no such table".to_owned()))
            }
            Query::Writes(ws) => {
                let mut done = Vec::new();
                for w in ws {
                    let r = self.write(w);
                    let failed = r.is_err();
                    done.push(r);
                    if failed {
                        break;
                    }
                }
                Answer::Done(done)
            }
            Query::Load => {
                if let Some(e) = &self.load_fails {
                    return Answer::Done(vec![Err(e.clone())]);
                }
                self.gone = false;
                self.intact = self.intact.map(|_| true);
                self.inactive = None;
                Answer::Done(vec![Ok(0)])
            }
            Query::Add(per) => Answer::Done(per.iter().map(|(_, l)| Ok(l.len())).collect()),
            Query::PfState { .. } => Answer::PfState {
                enabled: Some(true),
                referenced: Some(Ok(true)),
            },
            other => panic!("pf is not asked {other:?}"),
        }
    }
}

/// A poll at `now` (seconds), carried out as the shell does (answers'
/// actions first): every action that is not a query, in order.
pub(super) fn poll(m: &mut Machine, cx: &Ctx, pf: &mut Pf, now: i64) -> Vec<Action> {
    pf.asked.clear();
    pf.now = now;
    let mut todo: std::collections::VecDeque<Action> = m.poll(cx, ms(now), false).into();
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let Some(a) = todo.pop_front() else {
            return out;
        };
        match a {
            Action::Ask(q, then) => {
                let answer = pf.answer(&q);
                for b in m.answer(cx, then, answer, ms(now)).into_iter().rev() {
                    todo.push_front(b);
                }
            }
            other => out.push(other),
        }
    }
    panic!("a poll that does not end: {out:?}");
}

pub(super) fn writes(pf: &Pf) -> Vec<Write> {
    pf.asked
        .iter()
        .filter_map(|q| match q {
            Query::Writes(w) => Some(w.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

pub(super) fn listed(pf: &Pf) -> Vec<String> {
    pf.asked
        .iter()
        .filter_map(|q| match q {
            Query::Entries(t) => Some(t.name.as_str().to_owned()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_poll_lists_only_what_moved_and_expires_at_the_deadline() {
    let (cfg, mut m) = pf("");
    let cx = cx(&cfg);
    let mut k = Pf::with(&[
        ("ssh", vec![entry("198.18.0.1", T - 10)]),
        ("ssh_renew", vec![]),
    ]);
    // The first look lists every table and says nothing of what is there.
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    assert_eq!(listed(&k), ["ssh_renew", "ssh"], "renewals first");
    assert_eq!(m.next_due_ms(), Some(ms(T + 51)));
    // Nothing moved: one request, no listing.
    assert_eq!(poll(&mut m, &cx, &mut k, T + 5), vec![]);
    assert_eq!(k.asked.len(), 1);
    // A host the kernel added: listed, and said once.
    k.tables
        .get_mut("ssh")
        .unwrap()
        .push(entry("198.18.0.2", T + 6));
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 7),
        [info(&format!("authorized 198.18.0.2 {LINE} ttl=1m"))]
    );
    assert_eq!(listed(&k), ["ssh"]);
    assert_eq!(writes(&k), []);
    assert!(
        !k.asked.contains(&Query::Writes(vec![])),
        "no query for nothing"
    );
    assert_eq!(poll(&mut m, &cx, &mut k, T + 8), vec![], "said once");
    // At the deadline, and not a second before: deleted, then said.
    assert_eq!(poll(&mut m, &cx, &mut k, T + 50), vec![]);
    assert_eq!(writes(&k), []);
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 51),
        [info(&format!("expired 198.18.0.1 {LINE} age=1m1s ttl=1m"))]
    );
    assert_eq!(
        writes(&k),
        [Write::Delete(table("ssh"), vec![net("198.18.0.1")])]
    );
    assert_eq!(
        k.tables["ssh"],
        [entry("198.18.0.2", T + 6)],
        "the other stays"
    );
    assert_eq!(m.known(&table("ssh")), Some(1));
    assert_eq!(m.next_due_ms(), Some(ms(T + 67)));
}

#[test]
fn a_failed_delete_says_nothing_expired_and_lists_again() {
    let (cfg, mut m) = pf("");
    let cx = cx(&cfg);
    let mut k = Pf::with(&[
        ("ssh", vec![entry("198.18.0.1", T - 100)]),
        ("ssh_renew", vec![]),
    ]);
    k.fail = Some("ssh".into());
    let fail = Action::Fail(
        Level::Err,
        "<ssh> in anchor pfknock: Operation not permitted".into(),
    );
    assert_eq!(poll(&mut m, &cx, &mut k, T), std::slice::from_ref(&fail));
    assert_eq!(k.tables["ssh"].len(), 1, "still there: not said as expired");
    // Listed again at the next poll although nothing moved; said again
    // (the daemon's repeat filter decides how often it is logged).
    assert_eq!(poll(&mut m, &cx, &mut k, T + 1), [fail]);
    assert_eq!(listed(&k), ["ssh"]);
    k.fail = None;
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 2),
        [info(&format!("expired 198.18.0.1 {LINE} age=1m42s ttl=1m"))]
    );
    assert!(k.tables["ssh"].is_empty());
    assert_eq!(poll(&mut m, &cx, &mut k, T + 3), vec![], "once");
}

#[test]
fn a_close_knock_takes_the_knocker_out_and_says_it_once() {
    let (cfg, mut m) = pf("close = 7010\n");
    let cx = cx(&cfg);
    let one = entry("198.18.0.1", T - 5);
    let two = entry("198.18.0.2", T - 5);
    let mut k = Pf::with(&[
        ("ssh", vec![one, two]),
        ("ssh_renew", vec![]),
        ("ssh_close", vec![]),
    ]);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    k.tables
        .insert("ssh_close".into(), vec![entry("198.18.0.1", T + 1)]);
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 2),
        [info(&format!(
            "closed 198.18.0.1 {LINE} age=7s ttl=1m by knock"
        ))]
    );
    assert_eq!(k.tables["ssh"], [two], "the other host stays");
    assert!(k.tables["ssh_close"].is_empty());
    // Nothing more about it: not removed, not expired.
    assert_eq!(poll(&mut m, &cx, &mut k, T + 3), vec![]);
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 70),
        [info(&format!("expired 198.18.0.2 {LINE} age=1m15s ttl=1m"))]
    );
    // A close knock from a host that was not authorized changes nothing
    // else and says it at debug.
    k.tables
        .insert("ssh_close".into(), vec![entry("198.18.0.7", T + 71)]);
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 72),
        [Action::Log(
            Level::Debug,
            "close knock for service ssh: no authorized host among 1 knocker(s)".into()
        )]
    );
}

#[test]
fn a_wrong_knock_resets_the_knockers_progress_only() {
    let (cfg, mut m) = pf("knock = [1234, 1235, 1236]\nrate = \"3/2\"\n");
    let cx = cx(&cfg);
    let names: Vec<String> = m
        .polls
        .watches
        .iter()
        .map(|w| w.named.table.name.as_str().to_owned())
        .collect();
    assert_eq!(names, ["ssh_renew", "ssh", "ssh_s1", "ssh_s2", "ssh_hold"]);
    let (a, b) = (entry("198.18.0.1", T - 1), entry("198.18.0.2", T - 1));
    let mut k = Pf::with(&[
        ("ssh_renew", vec![]),
        ("ssh", vec![]),
        ("ssh_s1", vec![a, b]),
        ("ssh_s2", vec![a]),
        ("ssh_hold", vec![]),
    ]);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    k.tables
        .insert("ssh_hold".into(), vec![entry("198.18.0.1", T + 1)]);
    let held = Action::Log(
        Level::Debug,
        "held 198.18.0.1 for service ssh: a wrong knock; its progress starts over".into(),
    );
    assert_eq!(poll(&mut m, &cx, &mut k, T + 1), [held]);
    assert_eq!(k.tables["ssh_s1"], [b], "the other host keeps its progress");
    assert!(k.tables["ssh_s2"].is_empty());
    assert!(k.tables["ssh"].is_empty(), "nothing opened");
    // Held: not reset again while the hold lasts; the hold ends after the
    // rate's window (2 s here), quietly.
    assert_eq!(poll(&mut m, &cx, &mut k, T + 3), vec![]);
    assert_eq!(writes(&k), []);
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 4),
        [Action::Log(
            Level::Debug,
            "expired 198.18.0.1 service=ssh table=ssh_hold anchor=pfknock age=3s ttl=2s".into()
        )]
    );
    assert!(k.tables["ssh_hold"].is_empty());
}

#[test]
fn a_full_pool_is_said_when_it_fills_and_when_it_has_room() {
    let (cfg, mut m) = pf("");
    let cx = cx(&cfg);
    let mut k = Pf::with(&[("ssh", vec![]), ("ssh_renew", vec![])]);
    let pool = |used| PoolUse {
        pool: crate::tables::Pool::SrcNodes,
        used,
        limit: 3,
    };
    k.pools = vec![pool(1)];
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    k.pools = vec![pool(3)];
    // Looked at every 10 s while there is room.
    assert_eq!(poll(&mut m, &cx, &mut k, T + 5), vec![]);
    let full = Action::Log(
        Level::Warning,
        "pf's src-nodes limit is reached (3 of 3 source nodes): knocks from new sources are \
         dropped until source nodes expire; raise it with set limit src-nodes in pf.conf"
            .into(),
    );
    assert_eq!(poll(&mut m, &cx, &mut k, T + 10), [full]);
    // While full, every poll; said once.
    assert_eq!(poll(&mut m, &cx, &mut k, T + 11), vec![]);
    assert!(matches!(k.asked[0], Query::Stats { pools: true, .. }));
    assert_eq!(
        m.status(&cx, T + 11, false).last(),
        Some(&info("status: pf's src-nodes limit reached (3 of 3)"))
    );
    k.pools = vec![pool(2)];
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 12),
        [Action::Log(
            Level::Notice,
            "pf's src-nodes limit has room again (2 of 3)".into()
        )]
    );
}

#[test]
fn lost_events_hand_over_to_polls_that_list_every_table() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = Machine::polling(&cfg, true);
    m.use_events();
    assert!(!m.polls());
    let acts = m.kernel(&cx, KernelEvent::Lost("ENOBUFS".into()), ms(T));
    assert_eq!(acts.last(), Some(&Action::Poll));
    assert!(m.polls());
    // nftables polled: the kernel times entries out itself, so what left
    // a set expired, and there is no renewal table.
    let mut k = Pf::with(&[("ssh", vec![entry("198.18.0.1", T - 5)])]);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    assert_eq!(listed(&k), ["ssh"]);
    k.tables.insert("ssh".into(), vec![]);
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 60),
        [info(&format!("expired 198.18.0.1 {LINE} ttl=1m"))]
    );
    assert_eq!(writes(&k), [], "the kernel deleted it, not the daemon");
}

#[test]
fn a_reload_keeps_what_each_table_knows_and_lists_it_again_when_its_ttl_changed() {
    let (cfg, mut m) = pf("");
    let cx0 = cx(&cfg);
    let mut k = Pf::with(&[
        ("ssh", vec![entry("198.18.0.1", T - 10)]),
        ("ssh_renew", vec![]),
    ]);
    assert_eq!(poll(&mut m, &cx0, &mut k, T), vec![]);
    let same = config("");
    assert!(m.reloaded(&cfg, &same, T + 1).is_empty());
    assert_eq!(poll(&mut m, &cx(&same), &mut k, T + 2), vec![]);
    assert_eq!(listed(&k), Vec::<String>::new(), "nothing to list again");
    let text = "log_burst = 2\n[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\nttl = \"5s\"\n";
    let shorter = Config::parse(text, std::path::Path::new("t.toml"))
        .unwrap()
        .0;
    assert!(m.reloaded(&same, &shorter, T + 3).is_empty());
    assert_eq!(
        poll(&mut m, &cx(&shorter), &mut k, T + 3),
        [info(&format!("expired 198.18.0.1 {LINE} age=13s ttl=5s"))]
    );
    assert_eq!(m.known(&table("ssh")), Some(0));
}

#[test]
fn a_full_set_is_said_when_it_fills_and_when_it_has_room() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = Machine::polling(&cfg, true);
    let mut k = Pf::with(&[("ssh", vec![])]);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    k.full = vec![("ssh_4".into(), 65536)];
    let full = Action::Log(
        Level::Warning,
        "set ssh_4 is full (65536 elements): knocks it would take are not counted until \
         entries expire; raise the service's size"
            .into(),
    );
    assert_eq!(poll(&mut m, &cx, &mut k, T + 1), [full]);
    assert_eq!(poll(&mut m, &cx, &mut k, T + 2), vec![], "once");
    assert!(
        m.status(&cx, T + 2, false)
            .iter()
            .any(|a| matches!(a, Action::Log(_, l) if l.ends_with(", set ssh_4 full"))),
        "{:?}",
        m.status(&cx, T + 2, false)
    );
    k.full = vec![("ssh_6".into(), 65536)];
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 3),
        [
            Action::Log(
                Level::Warning,
                "set ssh_6 is full (65536 elements): knocks it would take are not counted \
                 until entries expire; raise the service's size"
                    .into()
            ),
            Action::Log(Level::Notice, "set ssh_4 has room again".into()),
        ]
    );
}

#[test]
fn an_expiry_raced_by_a_delete_is_said_and_so_is_the_race() {
    let (cfg, mut m) = pf("");
    let cx = cx(&cfg);
    let old = entry("198.18.0.1", T - 100);
    let mut k = Pf::with(&[("ssh", vec![old]), ("ssh_renew", vec![])]);
    k.vanish = vec![old.net];
    assert_eq!(
        poll(&mut m, &cx, &mut k, T),
        [
            info(&format!("expired 198.18.0.1 {LINE} age=1m40s ttl=1m")),
            Action::Log(
                Level::Debug,
                "<ssh> in anchor pfknock: 1 of 1 expired entries were already gone".into()
            ),
        ]
    );
    assert_eq!(m.known(&table("ssh")), Some(0));
}

#[test]
fn the_allow_list_never_expires_but_a_hold_ends_for_everybody() {
    let (cfg, mut m) = pf("knock = [1234, 1235]\nrate = \"3/2\"\nallow = [\"198.18.0.50\"]\n");
    let cx = cx(&cfg);
    let allowed = entry("198.18.0.50", T - 1000);
    let mut k = Pf::with(&[
        ("ssh_renew", vec![]),
        ("ssh", vec![allowed]),
        ("ssh_s1", vec![]),
        ("ssh_hold", vec![entry("198.18.0.50", T - 10)]),
    ]);
    let acts = poll(&mut m, &cx, &mut k, T);
    assert_eq!(
        acts,
        [
            Action::Log(
                Level::Debug,
                "held 198.18.0.50 for service ssh: a wrong knock; its progress starts over".into()
            ),
            Action::Log(
                Level::Debug,
                "expired 198.18.0.50 service=ssh table=ssh_hold anchor=pfknock age=10s ttl=2s"
                    .into()
            )
        ]
    );
    assert_eq!(k.tables["ssh"], [allowed], "never expired");
    assert_eq!(m.next_due_ms(), None, "nothing to wait for");
}

#[test]
fn idle_expiry_counts_from_the_last_traffic_not_the_time_stamp() {
    let (cfg, mut m) = pf("expire = \"idle\"\n");
    let cx = cx(&cfg);
    // Stamped long ago, seen now: idle from now on, not expired.
    let mut k = Pf::with(&[
        ("ssh", vec![entry("198.18.0.1", T - 100)]),
        ("ssh_renew", vec![]),
    ]);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    assert_eq!(writes(&k), []);
    // Traffic at T + 30 (its counters move): idle from then.
    k.tables.get_mut("ssh").unwrap()[0].packets = 7;
    k.packets.insert("ssh".into(), 7);
    assert_eq!(poll(&mut m, &cx, &mut k, T + 30), vec![]);
    assert_eq!(poll(&mut m, &cx, &mut k, T + 61), vec![]);
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 91),
        [info(&format!("expired 198.18.0.1 {LINE} idle=1m1s ttl=1m"))]
    );
}
