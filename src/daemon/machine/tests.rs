//! The machine alone: events and answers in, actions out. Each test
//! plays the kernel by hand (what a look-up, a dump, a load or an add
//! answers) and reads every action: the lines the log gets, and the
//! queries, which are what the daemon would do to the kernel, including
//! what it must not do (no put-back of a revoked host, no load while the
//! anchor is held).

use std::net::IpAddr;
use std::path::Path;

use super::*;
use crate::config::Config;

/// 2027-01-15 08:00:00 UTC, in ms.
const T0: i64 = 1_800_000_000_000;

fn config(extra: &str) -> Config {
    let text = format!(
        "log_burst = 2\n[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\nttl = \"60s\"\n{extra}"
    );
    Config::parse(&text, Path::new("t.toml")).unwrap().0
}

fn never(_: u32) -> bool {
    false
}

fn cx(cfg: &Config) -> Ctx<'_> {
    Ctx {
        cfg,
        held: false,
        ours: &never,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn knock(a: &str) -> KernelEvent {
    KernelEvent::Knock {
        prefix: "pfknock ssh: ".into(),
        addr: ip(a),
    }
}

fn info(s: &str) -> Action {
    Action::Log(Level::Info, s.to_owned())
}

/// The one query of `acts` (its last action), and its `Then`.
fn asked(acts: &[Action]) -> (Query, Then) {
    match acts.last() {
        Some(Action::Ask(q, t)) => (q.clone(), t.clone()),
        other => panic!("no query at the end: {other:?} in {acts:?}"),
    }
}

fn left(l: Left) -> Answer {
    Answer::Left(vec![Ok(l)])
}

/// A knock of `a` at `now` that the kernel holds with `held` ms left:
/// its actions, from the event and from the answer.
fn authorize(m: &mut Machine, cx: &Ctx, a: &str, now: i64) -> Vec<Action> {
    let acts = m.kernel(cx, knock(a), now);
    let (q, then) = asked(&acts);
    assert_eq!(q, Query::Left(vec![("ssh_4".into(), ip(a))]));
    m.answer(cx, then, left(Some(Some(60_000))), now)
}

const LINE: &str = "service=ssh table=ssh anchor=pfknock";

#[test]
fn a_knock_is_looked_up_once_logged_once_and_renewed_by_a_later_knock() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = Machine::default();
    let acts = authorize(&mut m, &cx, "198.18.0.1", T0);
    assert_eq!(
        acts,
        vec![info(&format!("authorized 198.18.0.1 {LINE} ttl=1m"))]
    );
    assert_eq!(m.count("ssh"), (1, Some(T0 / 1000 + 60)));
    assert_eq!(m.next_due(), Some(T0 + 60_000 + COALESCE));
    // The knock's other packets: no line, no query.
    assert_eq!(m.kernel(&cx, knock("198.18.0.1"), T0 + 300), vec![]);
    // A knock 10 s later renews, with no look-up.
    let acts = m.kernel(&cx, knock("198.18.0.1"), T0 + 10_000);
    assert_eq!(
        acts,
        vec![info(&format!("renewed 198.18.0.1 {LINE} age=10s ttl=1m"))]
    );
    assert_eq!(m.count("ssh"), (1, Some(T0 / 1000 + 70)));
    // The old deadlines (of the knock and its packet 300 ms later) come
    // up and ask nothing.
    assert_eq!(m.tick(&cx, T0 + 60_000 + COALESCE), vec![]);
    assert_eq!(m.tick(&cx, T0 + 60_300 + COALESCE), vec![]);
    assert_eq!(m.next_due(), Some(T0 + 70_000 + COALESCE));
    // A knock for no service of the config changes nothing.
    let other = KernelEvent::Knock {
        prefix: "pfknock web: ".into(),
        addr: ip("198.18.0.2"),
    };
    assert_eq!(m.kernel(&cx, other, T0 + 10_000), vec![]);
    assert_eq!(m.count("ssh").0, 1);
}

#[test]
fn without_renewal_a_knock_while_authorized_changes_nothing() {
    let cfg = config("renew = false\n");
    let cx = cx(&cfg);
    let mut m = Machine::default();
    authorize(&mut m, &cx, "198.18.0.1", T0);
    assert_eq!(m.kernel(&cx, knock("198.18.0.1"), T0 + 30_000), vec![]);
    assert_eq!(m.next_due(), Some(T0 + 60_000 + COALESCE));
}

#[test]
fn a_revoke_that_overtook_the_knock_event_is_not_undone() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = Machine::default();
    let acts = m.kernel(&cx, knock("198.18.0.1"), T0);
    let (_, then) = asked(&acts);
    // The element is gone by the time the daemon looks.
    let acts = m.answer(&cx, then, left(None), T0);
    assert_eq!(
        acts,
        vec![info(&format!(
            "authorized 198.18.0.1 {LINE} ttl=1m (removed again before the daemon saw it)"
        ))]
    );
    assert_eq!(m.count("ssh"), (0, None));
    assert_eq!(m.next_due(), None, "nothing to expire, nothing to put back");
    assert_eq!(m.tick(&cx, T0 + 61_000), vec![]);
}

#[test]
fn a_deadline_is_one_look_up_then_expired_or_waited_for() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = Machine::default();
    authorize(&mut m, &cx, "198.18.0.1", T0);
    authorize(&mut m, &cx, "198.18.0.2", T0 + 5_000);
    assert_eq!(m.tick(&cx, T0 + 59_000), vec![], "nothing due yet");
    let due = T0 + 60_000 + COALESCE;
    let (q, then) = asked(&m.tick(&cx, due));
    assert_eq!(q, Query::Left(vec![("ssh_4".into(), ip("198.18.0.1"))]));
    // Refreshed by traffic (expire = "idle"): 30 s more, no line.
    assert_eq!(m.answer(&cx, then, left(Some(Some(30_000))), due), vec![]);
    assert_eq!(m.count("ssh").0, 2);
    // The second is gone at its deadline: one line.
    let due2 = T0 + 65_000 + COALESCE;
    let (_, then) = asked(&m.tick(&cx, due2));
    let acts = m.answer(&cx, then, left(None), due2);
    assert_eq!(
        acts,
        vec![info(&format!("expired 198.18.0.2 {LINE} age=1m ttl=1m"))]
    );
    // The first, looked at again when the kernel said.
    assert_eq!(m.next_due(), Some(due + 30_000 + COALESCE));
    // A look-up that fails is said (through the repeat filter) and tried
    // again a poll (1 s) later, with the entry kept.
    let (_, then) = asked(&m.tick(&cx, due + 30_000 + COALESCE));
    let now = due + 30_000 + COALESCE;
    let acts = m.answer(&cx, then, Answer::Left(vec![Err("ENOBUFS".into())]), now);
    assert_eq!(
        acts,
        vec![Action::Fail(
            Level::Err,
            "looking up 198.18.0.1 in set ssh_4: ENOBUFS".into()
        )]
    );
    assert_eq!(m.count("ssh").0, 1);
    assert_eq!(m.next_due(), Some(now + 1_000 + COALESCE));
}

#[test]
fn expiries_past_log_burst_are_one_line_and_each_at_debug() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = Machine::default();
    for i in 1..=3 {
        authorize(&mut m, &cx, &format!("198.18.0.{i}"), T0 + i);
    }
    let due = T0 + 60_003 + COALESCE;
    let (q, then) = asked(&m.tick(&cx, due));
    let Query::Left(items) = q else { panic!() };
    assert_eq!(items.len(), 3, "one query for the three");
    let acts = m.answer(&cx, then, Answer::Left(vec![Ok(None); 3]), due);
    assert_eq!(
        acts[0],
        info("expired 3 authorizations of service ssh at once")
    );
    assert_eq!(acts.len(), 4);
    assert!(
        acts[1..].iter().all(
            |a| matches!(a, Action::Log(Level::Debug, l) if l.starts_with("expired 198.18.0."))
        )
    );
    assert_eq!(m.count("ssh"), (0, None));
}

#[test]
fn an_overrun_reads_every_set_again_without_a_line_per_element() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = Machine::default();
    authorize(&mut m, &cx, "198.18.0.1", T0);
    let now = T0 + 30_000;
    let acts = m.kernel(&cx, KernelEvent::Overrun, now);
    assert_eq!(
        acts[0],
        Action::Log(
            Level::Warning,
            "the kernel dropped notifications: reading the sets again".into()
        )
    );
    let (q, then) = asked(&acts);
    assert_eq!(q, Query::Dump(vec!["ssh_4".into(), "ssh_6".into()]));
    // Meanwhile 198.18.0.1 was removed and two others came.
    let v4 = vec![
        (ip("198.18.0.7"), Some(50_000)),
        (ip("198.18.0.8"), Some(5_000)),
    ];
    let v6 = vec![(ip("fd00::1"), Some(60_000))];
    let acts = m.answer(&cx, then, Answer::Dump(vec![Ok(v4), Ok(v6)]), now);
    assert_eq!(acts, vec![]);
    assert_eq!(m.count("ssh").0, 3);
    assert_eq!(m.next_due(), Some(now + 5_000 + COALESCE));
    // A family the service does not have is no error; a failed dump is.
    let (_, then) = asked(&m.kernel(&cx, KernelEvent::Overrun, now));
    let d = vec![
        Err(DumpError::Missing),
        Err(DumpError::Failed("EIO".into())),
    ];
    let acts = m.answer(&cx, then, Answer::Dump(d), now);
    assert_eq!(acts, vec![Action::Log(Level::Err, "set ssh_6: EIO".into())]);
    assert_eq!(m.count("ssh").0, 0);
}

#[test]
fn lost_events_hand_over_to_polling() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = Machine::default();
    let acts = m.kernel(&cx, KernelEvent::Lost("recv: EBADF".into()), T0);
    assert_eq!(
        acts,
        vec![
            Action::Log(
                Level::Err,
                "kernel events lost (recv: EBADF): polling every 1s from now on".into()
            ),
            Action::Poll
        ]
    );
}

fn others(m: &mut Machine, cx: &Ctx, evs: Vec<KernelEvent>, now: i64) -> Vec<Action> {
    let mut acts = Vec::new();
    for ev in evs {
        acts.extend(m.kernel(cx, ev, now));
    }
    assert_eq!(acts, vec![], "nothing before the commit");
    let commit = KernelEvent::Commit {
        pid: 4242,
        process: "nft".into(),
    };
    m.kernel(cx, commit, now)
}

#[test]
fn a_restore_loads_then_puts_back_what_was_lost_with_the_time_it_had() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = Machine::default();
    authorize(&mut m, &cx, "198.18.0.1", T0);
    authorize(&mut m, &cx, "198.18.0.2", T0 + 10_000);
    let now = T0 + 20_500;
    let gone = KernelEvent::Changed {
        what: "table",
        name: "pfknock".into(),
    };
    let acts = others(&mut m, &cx, vec![gone], now);
    let (q, then) = asked(&acts);
    assert_eq!((acts.len(), q), (1, Query::Load));
    let (q, then) = asked(&m.answer(&cx, then, Answer::Done(vec![Ok(0)]), now));
    assert_eq!(
        q,
        Query::Left(vec![
            ("ssh_4".into(), ip("198.18.0.1")),
            ("ssh_4".into(), ip("198.18.0.2"))
        ])
    );
    // The load kept .2 (a set it left alone), .1 is gone.
    let answer = Answer::Left(vec![Ok(None), Ok(Some(Some(49_500)))]);
    let (q, then) = asked(&m.answer(&cx, then, answer, now));
    let table = TableRef::new(&cfg.anchor, &cfg.services[0].table);
    let host = Net::host(ip("198.18.0.1"));
    // 39.5 s left: 39 whole seconds back, never more.
    assert_eq!(q, Query::Add(vec![(table, vec![(host, 39)])]));
    let acts = m.answer(&cx, then, Answer::Done(vec![Ok(1)]), now);
    assert_eq!(
        acts,
        vec![Action::Log(
            Level::Notice,
            "table restored after a change by nft[4242] (table pfknock): restored 1 authorizations"
                .into()
        )]
    );
    // Due when the kernel times it out.
    assert_eq!(m.next_due(), Some(now + 39_000 + COALESCE));
}

#[test]
fn a_restore_says_what_it_could_not_put_back_and_a_failed_load_is_said_as_such() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = Machine::default();
    authorize(&mut m, &cx, "198.18.0.1", T0);
    let now = T0 + 1_000;
    let gone = |name: &str| KernelEvent::Changed {
        what: "set",
        name: name.into(),
    };
    let acts = others(&mut m, &cx, vec![gone("ssh_4"), gone("ssh_6")], now);
    let (_, then) = asked(&acts);
    let (_, then) = asked(&m.answer(&cx, then, Answer::Done(vec![Ok(0)]), now));
    let (_, then) = asked(&m.answer(&cx, then, left(None), now));
    let acts = m.answer(&cx, then, Answer::Done(vec![Err("ENOSPC".into())]), now);
    assert_eq!(
        acts[0],
        Action::Log(
            Level::Err,
            "<ssh> in anchor pfknock: restoring authorizations: ENOSPC".into()
        )
    );
    assert!(
        matches!(&acts[1], Action::Log(Level::Notice, l) if l.ends_with("(set ssh_4, set ssh_6): restored 0 authorizations of 1")),
        "{acts:?}"
    );
    // A load that fails: said through the repeat filter, nothing more.
    let acts = others(&mut m, &cx, vec![gone("ssh_4")], now);
    let (_, then) = asked(&acts);
    let acts = m.answer(&cx, then, Answer::Done(vec![Err("nft: busy".into())]), now);
    assert_eq!(
        acts,
        vec![Action::Fail(
            Level::Err,
            "table changed by nft[4242] (set ssh_4) and cannot be restored: nft: busy".into()
        )]
    );
}

#[test]
fn a_held_anchor_is_not_restored_and_our_own_commits_are_followed_quietly() {
    let cfg = config("");
    let mut held = cx(&cfg);
    held.held = true;
    let mut m = Machine::default();
    let gone = KernelEvent::Changed {
        what: "table",
        name: "pfknock".into(),
    };
    let acts = others(&mut m, &held, vec![gone.clone()], T0);
    assert_eq!(
        acts,
        vec![Action::Log(
            Level::Notice,
            "table changed by nft[4242] while unloaded: left as it is until pfknock load".into()
        )]
    );
    // Elements another process added and deleted: one line each, with
    // who did it.
    let cx = cx(&cfg);
    let add = KernelEvent::Elements {
        set: "ssh_4".into(),
        added: true,
        addrs: vec![(ip("198.18.0.5"), Some(60_000))],
    };
    let acts = others(&mut m, &cx, vec![add.clone()], T0);
    assert_eq!(
        acts,
        vec![info(&format!(
            "authorized 198.18.0.5 {LINE} ttl=1m by nft[4242]"
        ))]
    );
    let del = KernelEvent::Elements {
        set: "ssh_4".into(),
        added: false,
        addrs: vec![(ip("198.18.0.5"), None)],
    };
    let acts = others(&mut m, &cx, vec![del.clone()], T0 + 2_000);
    assert_eq!(
        acts,
        vec![info(&format!(
            "removed 198.18.0.5 {LINE} age=2s ttl=1m by nft[4242]"
        ))]
    );
    // A pfknock command's transaction: followed, no line.
    for ev in [
        add,
        KernelEvent::Commit {
            pid: 77,
            process: "pfknock".into(),
        },
    ] {
        assert_eq!(m.kernel(&cx, ev, T0 + 3_000), vec![]);
    }
    assert_eq!(m.count("ssh").0, 1);
    // This process's own (its nft child's): not even followed.
    let ours = |pid: u32| pid == 99;
    let own = Ctx {
        cfg: &cfg,
        held: false,
        ours: &ours,
    };
    for ev in [
        del,
        gone,
        KernelEvent::Commit {
            pid: 99,
            process: "nft".into(),
        },
    ] {
        assert_eq!(m.kernel(&own, ev, T0 + 4_000), vec![]);
    }
    assert_eq!(m.count("ssh").0, 1);
}

#[test]
fn a_knock_the_reload_lost_is_put_back_unless_removed_since_or_late() {
    let cfg = config("");
    let cx = cx(&cfg);
    let table = TableRef::new(&cfg.anchor, &cfg.services[0].table);
    let mut m = Machine::default();
    m.reload_began(T0 / 1000);
    m.reload_ended(T0 + 1_500);
    // A knock that landed in the old set: gone when looked up.
    let (_, then) = asked(&m.kernel(&cx, knock("198.18.0.1"), T0 + 1_600));
    let (q, then) = asked(&m.answer(&cx, then, left(None), T0 + 1_600));
    let host = Net::host(ip("198.18.0.1"));
    assert_eq!(q, Query::Add(vec![(table.clone(), vec![(host, 60)])]));
    let acts = m.answer(&cx, then, Answer::Done(vec![Ok(1)]), T0 + 1_600);
    assert_eq!(
        acts,
        vec![info(&format!("authorized 198.18.0.1 {LINE} ttl=1m"))]
    );
    assert_eq!(m.count("ssh").0, 1);
    // Removed by a revoke since the reload: not put back.
    let removed = crate::verbs::Change::Removed(table.clone(), Net::host(ip("198.18.0.2")));
    assert_eq!(m.follow(&cx, &removed, T0 / 1000 + 1), vec![]);
    let (_, then) = asked(&m.kernel(&cx, knock("198.18.0.2"), T0 + 1_700));
    let acts = m.answer(&cx, then, left(None), T0 + 1_700);
    assert_eq!(
        acts,
        vec![info(&format!(
            "authorized 198.18.0.2 {LINE} ttl=1m (removed again before the daemon saw it)"
        ))]
    );
    // A put-back that fails is said, and not tracked.
    let (_, then) = asked(&m.kernel(&cx, knock("198.18.0.3"), T0 + 1_800));
    let (_, then) = asked(&m.answer(&cx, then, left(None), T0 + 1_800));
    let acts = m.answer(
        &cx,
        then,
        Answer::Done(vec![Err("ENOMEM".into())]),
        T0 + 1_800,
    );
    assert_eq!(
        acts[0],
        Action::Log(
            Level::Err,
            "<ssh> in anchor pfknock: putting back 198.18.0.3, lost in the reload: ENOMEM".into()
        )
    );
    assert_eq!(m.count("ssh").0, 1);
    // After the window (3 s from the reload's end): nothing put back.
    let (_, then) = asked(&m.kernel(&cx, knock("198.18.0.4"), T0 + 4_600));
    let acts = m.answer(&cx, then, left(None), T0 + 4_600);
    assert!(
        matches!(&acts[..], [Action::Log(Level::Info, l)] if l.ends_with("(removed again before the daemon saw it)"))
    );
}

#[test]
fn a_renewal_the_reload_carried_over_with_its_old_time_gets_the_ttl() {
    let cfg = config("");
    let cx = cx(&cfg);
    let table = TableRef::new(&cfg.anchor, &cfg.services[0].table);
    let mut m = Machine::default();
    authorize(&mut m, &cx, "198.18.0.1", T0);
    m.reload_began(T0 / 1000 + 30);
    m.reload_ended(T0 + 30_500);
    let acts = m.kernel(&cx, knock("198.18.0.1"), T0 + 31_000);
    // The look-up first, then the renewal's line.
    let Action::Ask(Query::Left(_), then) = acts[0].clone() else {
        panic!("{acts:?}")
    };
    assert_eq!(
        acts[1],
        info(&format!("renewed 198.18.0.1 {LINE} age=31s ttl=1m"))
    );
    // The element has its old 29 s: renewed in the kernel (delete, add).
    let (q, then) = asked(&m.answer(&cx, then, left(Some(Some(29_000))), T0 + 31_000));
    assert_eq!(q, Query::Renew(table, Net::host(ip("198.18.0.1")), 60));
    assert_eq!(
        m.answer(&cx, then, Answer::Done(vec![Ok(1)]), T0 + 31_000),
        vec![]
    );
    // One the kernel renewed already (59 s left) is left alone.
    let acts = m.kernel(&cx, knock("198.18.0.1"), T0 + 33_000);
    let Action::Ask(_, then) = acts[0].clone() else {
        panic!("{acts:?}")
    };
    assert_eq!(
        m.answer(&cx, then, left(Some(Some(59_000))), T0 + 33_000),
        vec![]
    );
    assert_eq!(m.count("ssh"), (1, Some(T0 / 1000 + 93)));
    // Past the window (3 s from the reload's end), no look-up.
    let acts = m.kernel(&cx, knock("198.18.0.1"), T0 + 35_000);
    assert_eq!(
        acts,
        vec![info(&format!("renewed 198.18.0.1 {LINE} age=2s ttl=1m"))]
    );
}

#[test]
fn a_shorter_ttl_on_reload_makes_what_is_past_it_due_at_once() {
    let old = config("");
    let new = config("").clone();
    let mut shorter = new.clone();
    shorter.services[0].ttl = crate::name::Secs(20);
    let cx = cx(&old);
    let mut m = Machine::default();
    authorize(&mut m, &cx, "198.18.0.1", T0);
    m.retime(&old, &new);
    assert_eq!(
        m.next_due(),
        Some(T0 + 60_000 + COALESCE),
        "same ttl: unchanged"
    );
    m.retime(&old, &shorter);
    assert_eq!(m.next_due(), Some(T0 + 20_000 + COALESCE));
}

#[test]
fn a_close_knock_closes_an_authorized_host_and_is_quiet_for_others() {
    let cfg = config("close = 7010\n");
    let cx = cx(&cfg);
    let mut m = Machine::default();
    authorize(&mut m, &cx, "198.18.0.1", T0);
    let close = |a: &str| KernelEvent::Knock {
        prefix: "pfknock close ssh: ".into(),
        addr: ip(a),
    };
    let acts = m.kernel(&cx, close("198.18.0.1"), T0 + 5_000);
    assert_eq!(
        acts,
        vec![info(&format!(
            "closed 198.18.0.1 {LINE} age=5s ttl=1m by knock"
        ))]
    );
    assert_eq!(m.count("ssh"), (0, None));
    let acts = m.kernel(&cx, close("198.18.0.1"), T0 + 5_100);
    assert_eq!(
        acts,
        vec![Action::Log(
            Level::Debug,
            "close knock from 198.18.0.1 for service ssh: it was not authorized".into()
        )]
    );
    assert_eq!(m.tick(&cx, T0 + 61_000), vec![], "no expiry after a close");
}

#[test]
fn a_full_set_and_a_full_meter_are_each_said_when_full_and_when_there_is_room() {
    let cfg = config("size = 2\n");
    let cx = cx(&cfg);
    let mut m = Machine::default();
    authorize(&mut m, &cx, "198.18.0.1", T0);
    let acts = authorize(&mut m, &cx, "198.18.0.2", T0);
    assert_eq!(
        acts[1],
        Action::Log(
            Level::Warning,
            "set ssh_4 is full (2 elements): knocks it would take are not counted until entries expire; raise the service's size".into()
        )
    );
    let removed = crate::verbs::Change::Removed(
        TableRef::new(&cfg.anchor, &cfg.services[0].table),
        Net::host(ip("198.18.0.1")),
    );
    assert_eq!(
        m.follow(&cx, &removed, T0 / 1000),
        vec![Action::Log(
            Level::Notice,
            "set ssh_4 has room again".into()
        )]
    );
    // The meter: its own log prefix when it drops a knock; said once.
    let s = &cfg.services[0];
    let meter = names::objects(s)
        .into_iter()
        .find_map(|o| match o {
            names::Object::Meter(_) => names::nft_set(s, o, Af::V4),
            _ => None,
        })
        .unwrap();
    let full = KernelEvent::Knock {
        prefix: names::meter_full_prefix(&meter),
        addr: ip("198.18.0.9"),
    };
    let acts = m.kernel(&cx, full.clone(), T0);
    assert!(
        matches!(&acts[..], [Action::Log(Level::Warning, l)] if l.starts_with(&format!("set {meter} is full (8 elements)"))),
        "{acts:?}"
    );
    assert_eq!(m.kernel(&cx, full, T0 + 1_000), vec![]);
    // Looked at a window (the rate's 15 s) after the last drop: still full.
    let (q, then) = asked(&m.tick(&cx, T0 + 16_000));
    assert_eq!(q, Query::Dump(vec![meter.clone()]));
    let eight = (1..=8)
        .map(|i| (ip(&format!("198.18.1.{i}")), Some(1_000)))
        .collect();
    assert_eq!(
        m.answer(&cx, then, Answer::Dump(vec![Ok(eight)]), T0 + 16_000),
        vec![]
    );
    let (_, then) = asked(&m.tick(&cx, T0 + 31_000));
    assert_eq!(
        m.answer(&cx, then, Answer::Dump(vec![Ok(vec![])]), T0 + 31_000),
        vec![Action::Log(
            Level::Notice,
            format!("set {meter} has room again")
        )]
    );
    assert_eq!(m.tick(&cx, T0 + 50_000), vec![]);
}

#[test]
fn forged_datagrams_are_said_at_once_then_counted() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = Machine::default();
    let acts = m.kernel(&cx, KernelEvent::Forged("nflog"), T0);
    assert_eq!(acts.len(), 1);
    for i in 1..=5 {
        assert_eq!(m.kernel(&cx, KernelEvent::Forged("nflog"), T0 + i), vec![]);
    }
    // Another socket says its own at once.
    assert_eq!(
        m.kernel(&cx, KernelEvent::Forged("monitor"), T0 + 6).len(),
        1
    );
    let acts = m.kernel(&cx, KernelEvent::Forged("nflog"), T0 + 300_000);
    assert!(
        matches!(&acts[..], [Action::Log(Level::Warning, l)] if l.starts_with("nflog: 6 netlink message(s)")),
        "{acts:?}"
    );
}

#[test]
fn an_answer_to_another_question_is_an_error_line_not_a_panic() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = Machine::default();
    let (_, then) = asked(&m.kernel(&cx, knock("198.18.0.1"), T0));
    let acts = m.answer(&cx, then, Answer::Done(vec![Ok(1)]), T0);
    assert!(matches!(&acts[..], [Action::Log(Level::Err, l)] if l.starts_with("internal: answer")));
    assert_eq!(m.count("ssh").0, 0);
}
