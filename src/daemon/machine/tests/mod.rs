//! The machine alone: events and answers in, actions out. Each test
//! plays the kernel by hand (what a look-up, a dump, a load or an add
//! answers) and reads every action: the lines the log gets, and the
//! queries, which are what the daemon would do to the kernel, including
//! what it must not do (no put-back of a revoked host, no load while the
//! anchor is held).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use super::*;

mod changes;
mod idle;
mod modes;
mod parts;
mod polls;
mod renewals;
mod restores;
use crate::config::Config;

/// 2027-01-15 08:00:00 UTC, in ms.
const T0: i64 = 1_800_000_000_000;

fn config(extra: &str) -> Config {
    let text = format!(
        "log_burst = 2\n[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\nttl = \"60s\"\n{extra}"
    );
    Config::parse(&text, Path::new("t.toml")).unwrap().0
}

/// A machine that decides on the kernel's events (nftables).
fn events() -> Machine {
    let mut m = Machine::default();
    m.use_events();
    m
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

/// A dump's elements, from (address, deadline) pairs.
fn dumped(v: Vec<(IpAddr, Option<i64>)>) -> Elements {
    v.into_iter().map(crate::kevents::Deadline::from).collect()
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

/// A transaction of `evs` by nft[4242], committed at `now`: what it said,
/// all of it (`Machine::say_all`).
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
    let mut acts = m.kernel(cx, commit, now);
    acts.extend(m.say_all(cx, now));
    acts
}

#[test]
fn a_knock_is_looked_up_once_logged_once_and_renewed_by_a_later_knock() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
    let acts = authorize(&mut m, &cx, "198.18.0.1", T0);
    assert_eq!(
        acts,
        vec![info(&format!("authorized 198.18.0.1 {LINE} ttl=1m"))]
    );
    assert_eq!(m.count("ssh"), (1, Some(T0 / 1000 + 60)));
    assert_eq!(m.next_due(), Some(T0 + 60_000 + COALESCE));
    // The knock's other packets: no line, no query.
    assert_eq!(m.kernel(&cx, knock("198.18.0.1"), T0 + 300), vec![]);
    // A knock 10 s later: the kernel's element has its whole time again,
    // so it renewed: one line.
    let acts = m.kernel(&cx, knock("198.18.0.1"), T0 + 10_000);
    let (q, then) = asked(&acts);
    assert_eq!(
        (acts.len(), q),
        (1, Query::Left(vec![("ssh_4".into(), ip("198.18.0.1"))]))
    );
    let acts = m.answer(&cx, then, left(Some(Some(60_000))), T0 + 10_000);
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
    let mut m = events();
    authorize(&mut m, &cx, "198.18.0.1", T0);
    assert_eq!(m.kernel(&cx, knock("198.18.0.1"), T0 + 30_000), vec![]);
    assert_eq!(m.next_due(), Some(T0 + 60_000 + COALESCE));
}

#[test]
fn a_revoke_that_overtook_the_knock_event_is_not_undone() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
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
    let mut m = events();
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
    let mut m = events();
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
fn a_knock_the_reload_lost_is_put_back_unless_removed_since_or_late() {
    let cfg = config("");
    let cx = cx(&cfg);
    let table = TableRef::new(&cfg.anchor, &cfg.services[0].table);
    let mut m = events();
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
    let mut m = events();
    authorize(&mut m, &cx, "198.18.0.1", T0);
    m.reload_began(T0 / 1000 + 30);
    m.reload_ended(T0 + 30_500);
    let (_, then) = asked(&m.kernel(&cx, knock("198.18.0.1"), T0 + 31_000));
    // The element has its old 29 s: renewed in the kernel (delete, add),
    // then the line.
    let acts = m.answer(&cx, then, left(Some(Some(29_000))), T0 + 31_000);
    let host = Net::host(ip("198.18.0.1"));
    let Action::Ask(Query::Renew(t, h, 60), then) = acts[0].clone() else {
        panic!("{acts:?}")
    };
    assert_eq!((t, h), (table, host));
    assert_eq!(
        acts[1],
        info(&format!("renewed 198.18.0.1 {LINE} age=31s ttl=1m"))
    );
    let acts = m.answer(
        &cx,
        then,
        Answer::Done(vec![Err("EBUSY".into())]),
        T0 + 31_000,
    );
    assert_eq!(
        acts,
        vec![Action::Log(
            Level::Err,
            "<ssh> in anchor pfknock: renewing 198.18.0.1, carried over by the reload: EBUSY"
                .into()
        )]
    );
    assert_eq!(m.count("ssh"), (1, Some(T0 / 1000 + 91)));
    // A packet of the same knock in the window: looked up; the kernel
    // renewed it already (59 s left): nothing to do.
    let (_, then) = asked(&m.kernel(&cx, knock("198.18.0.1"), T0 + 32_000));
    assert_eq!(
        m.answer(&cx, then, left(Some(Some(59_000))), T0 + 32_000),
        vec![]
    );
    // Past the window (3 s from the reload's end), a renewal whose
    // element is whole: the line, no renewal in the kernel.
    let (_, then) = asked(&m.kernel(&cx, knock("198.18.0.1"), T0 + 35_000));
    let acts = m.answer(&cx, then, left(Some(Some(60_000))), T0 + 35_000);
    assert_eq!(
        acts,
        vec![info(&format!("renewed 198.18.0.1 {LINE} age=4s ttl=1m"))]
    );
}

#[test]
fn a_knock_event_read_late_renews_nothing_and_a_gone_element_says_nothing() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
    authorize(&mut m, &cx, "198.18.0.1", T0);
    // Read 10 s after the knock (the element has 50 s left): no line, the
    // kernel's deadline kept.
    let (_, then) = asked(&m.kernel(&cx, knock("198.18.0.1"), T0 + 10_000));
    let acts = m.answer(&cx, then, left(Some(Some(50_000))), T0 + 10_000);
    assert!(
        matches!(&acts[..], [Action::Log(Level::Debug, l)] if l.ends_with("read late: it renewed nothing")),
        "{acts:?}"
    );
    assert_eq!(m.count("ssh"), (1, Some(T0 / 1000 + 60)));
    // Gone when looked up (a revoke overtook it): nothing said or kept
    // beyond what the book had; its removal's own event says it.
    let (_, then) = asked(&m.kernel(&cx, knock("198.18.0.1"), T0 + 20_000));
    assert_eq!(m.answer(&cx, then, left(None), T0 + 20_000), vec![]);
    // A look-up that fails: as the event says.
    let (_, then) = asked(&m.kernel(&cx, knock("198.18.0.1"), T0 + 30_000));
    let acts = m.answer(
        &cx,
        then,
        Answer::Left(vec![Err("EIO".into())]),
        T0 + 30_000,
    );
    assert_eq!(
        acts,
        vec![info(&format!("renewed 198.18.0.1 {LINE} age=30s ttl=1m"))]
    );
    assert_eq!(m.count("ssh"), (1, Some(T0 / 1000 + 90)));
}

#[test]
fn a_close_knock_closes_an_authorized_host_and_is_quiet_for_others() {
    let cfg = config("close = 7010\n");
    let cx = cx(&cfg);
    let mut m = events();
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
    let mut m = events();
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
    // The book has room: said once the kernel's count agrees.
    let room = vec![Action::Log(
        Level::Notice,
        "set ssh_4 has room again".into(),
    )];
    let (q, then) = asked(&m.follow(&cx, &removed, T0 / 1000));
    assert_eq!(q, Query::Counts(vec!["ssh_4".into()]));
    assert_eq!(m.answer(&cx, then, Answer::Counts(vec![Some(1)]), T0), room);
    // Full again, then flushed by a command: room again, said once; a
    // kernel that does not count is taken at the book's word.
    authorize(&mut m, &cx, "198.18.0.3", T0);
    let flushed = crate::verbs::Change::Cleared(TableRef::new(&cfg.anchor, &cfg.services[0].table));
    let (_, then) = asked(&m.follow(&cx, &flushed, T0 / 1000));
    assert_eq!(m.answer(&cx, then, Answer::Counts(vec![None]), T0), room);
    assert_eq!(m.tick(&cx, T0 + 10_000), vec![]);
    assert_eq!(m.count("ssh"), (0, None));
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
        .map(|i| (ip(&format!("198.18.1.{i}")), Some(1_000)).into())
        .collect();
    assert_eq!(
        m.answer(&cx, then, Answer::Dump(vec![Ok(eight)]), T0 + 16_000),
        vec![]
    );
    let (_, then) = asked(&m.tick(&cx, T0 + 31_000));
    assert_eq!(
        m.answer(
            &cx,
            then,
            Answer::Dump(vec![Ok(Default::default())]),
            T0 + 31_000
        ),
        vec![Action::Log(
            Level::Notice,
            format!("set {meter} has room again")
        )]
    );
    assert_eq!(m.tick(&cx, T0 + 50_000), vec![]);
}

/// An authorization that timed out leaves the book at once, and the
/// kernel's count up to a second later (its collection): until that count
/// is below the size, the set takes no knock, and no line says it has
/// room. Asked once however many left together, again `ROOM_LOOK` later
/// while the kernel counts it full, and not at all once it fills again.
#[test]
fn a_full_set_has_room_when_the_kernel_counts_so() {
    let cfg = config("size = 2\n");
    let cx = cx(&cfg);
    let mut m = events();
    authorize(&mut m, &cx, "198.18.0.1", T0);
    authorize(&mut m, &cx, "198.18.0.2", T0);
    let due = T0 + 60_000 + COALESCE;
    let (_, then) = asked(&m.tick(&cx, due));
    let gone = vec![Ok(None), Ok(None)];
    let acts = m.answer(&cx, then, Answer::Left(gone), due);
    let asks: Vec<&Action> = acts
        .iter()
        .filter(|a| matches!(a, Action::Ask(..)))
        .collect();
    assert_eq!(asks.len(), 1, "{acts:?}");
    let Action::Ask(q, then) = asks[0].clone() else {
        unreachable!()
    };
    assert_eq!(q, Query::Counts(vec!["ssh_4".into()]));
    assert!(
        acts.iter()
            .all(|a| !matches!(a, Action::Log(_, l) if l.contains("room"))),
        "{acts:?}"
    );
    // Still counted full: nothing said, asked again a quarter second on.
    assert_eq!(
        m.answer(&cx, then, Answer::Counts(vec![Some(2)]), due),
        vec![]
    );
    assert_eq!(m.next_due(), Some(due + 250));
    assert_eq!(m.tick(&cx, due + 249), vec![]);
    let (q, then) = asked(&m.tick(&cx, due + 250));
    assert_eq!(q, Query::Counts(vec!["ssh_4".into()]));
    assert_eq!(
        m.answer(&cx, then, Answer::Counts(vec![Some(1)]), due + 250),
        vec![Action::Log(
            Level::Notice,
            "set ssh_4 has room again".into()
        )]
    );
    assert_eq!(m.next_due(), None);
    // Full again, and one expires while the kernel still counts it;
    // then full once more before the next look: no look, no line.
    authorize(&mut m, &cx, "198.18.0.3", due);
    authorize(&mut m, &cx, "198.18.0.4", due);
    let removed = crate::verbs::Change::Removed(
        TableRef::new(&cfg.anchor, &cfg.services[0].table),
        Net::host(ip("198.18.0.3")),
    );
    let (_, then) = asked(&m.follow(&cx, &removed, due / 1000));
    assert_eq!(
        m.answer(&cx, then, Answer::Counts(vec![Some(2)]), due),
        vec![]
    );
    authorize(&mut m, &cx, "198.18.0.5", due);
    let (_, then) = asked(&m.tick(&cx, due + 250));
    assert_eq!(
        m.answer(&cx, then, Answer::Counts(vec![Some(1)]), due + 250),
        vec![]
    );
    assert_eq!(m.next_due(), Some(due + 60_000 + COALESCE));
}

#[test]
fn forged_datagrams_are_said_at_once_then_counted() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
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
    let mut m = events();
    let (_, then) = asked(&m.kernel(&cx, knock("198.18.0.1"), T0));
    let acts = m.answer(&cx, then, Answer::Done(vec![Ok(1)]), T0);
    assert!(matches!(&acts[..], [Action::Log(Level::Err, l)] if l.starts_with("internal: answer")));
    assert_eq!(m.count("ssh").0, 0);
}

#[test]
fn a_commands_change_is_followed_without_a_line() {
    let cfg = config("");
    let cx = cx(&cfg);
    let table = TableRef::new(&cfg.anchor, &cfg.services[0].table);
    let mut m = events();
    // `pfknock allow`: tracked from the start of its second, ttl on.
    let host = Net::host(ip("198.18.0.4"));
    let added = crate::verbs::Change::Added(table.clone(), host);
    assert_eq!(m.follow(&cx, &added, T0 / 1000 + 5), vec![]);
    assert_eq!(m.count("ssh"), (1, Some(T0 / 1000 + 65)));
    assert_eq!(m.next_due(), Some(T0 + 65_000 + COALESCE));
    // A network is no set element of the events mode: not tracked.
    let net: Net = "198.18.1.0/24".parse().unwrap();
    let added = crate::verbs::Change::Added(table.clone(), net);
    assert_eq!(m.follow(&cx, &added, T0 / 1000 + 5), vec![]);
    assert_eq!(m.count("ssh").0, 1);
    // A table of no service: nothing.
    let other = TableRef::new(&cfg.anchor, &crate::name::TableName::new("web").unwrap());
    let added = crate::verbs::Change::Added(other, Net::host(ip("198.18.0.5")));
    assert_eq!(m.follow(&cx, &added, T0 / 1000 + 5), vec![]);
    assert_eq!(m.count("ssh").0, 1);
}

#[test]
fn a_full_prefix_naming_no_meter_of_the_config_is_ignored() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
    for set in ["ssh_4", "web_m1_4"] {
        let ev = KernelEvent::Knock {
            prefix: names::meter_full_prefix(set),
            addr: ip("198.18.0.9"),
        };
        assert_eq!(m.kernel(&cx, ev, T0), vec![], "{set}");
    }
    assert_eq!(m.next_due(), None);
}
