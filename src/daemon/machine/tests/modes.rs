//! The machine's parts that both modes share, alone: step boundaries,
//! pf's own state, what changed while no daemon ran, errors that repeat.

use super::polls::{Pf, T, anchor, entry, listed, net, pf, poll};
use super::*;
use crate::daemon::lines::REPEAT_EVERY;
use std::net::Ipv6Addr;

#[test]
fn a_step_boundary_loads_the_new_ports_unless_held_and_a_failure_is_tried_a_poll_later() {
    let (cfg, mut m) = pf("");
    let cx = cx(&cfg);
    assert_eq!(m.rotate(&cx, T), vec![], "no rotating service: never");
    m.step_at(Some(T + 30));
    assert_eq!(m.rotate(&cx, T + 29), vec![], "not before the boundary");
    let acts = m.rotate(&cx, T + 30);
    let (q, then) = asked(&acts);
    assert_eq!(
        q,
        Query::Rotate {
            at: T + 30,
            load: true
        }
    );
    assert_eq!(
        acts.len(),
        1,
        "nothing said: the ports are the step's secret"
    );
    assert_eq!(
        m.answer(&cx, then, Answer::Rotated(Ok(Some(T + 60))), ms(T + 30)),
        vec![]
    );
    assert_eq!(m.next_step(), Some(T + 60));
    // A load that fails: said (through the repeat filter), the ports kept,
    // tried again a poll later.
    let (_, then) = asked(&m.rotate(&cx, T + 60));
    let failed = Answer::Rotated(Err("pfctl: syntax error".into()));
    assert_eq!(
        m.answer(&cx, then, failed, ms(T + 60)),
        [Action::Fail(
            Level::Err,
            "rotate: pfctl: syntax error: keeping the knock ports loaded".into()
        )]
    );
    assert_eq!(m.next_step(), Some(T + 60 + cfg.poll.0 as i64 / 1000));
    // Held unloaded (pfknock unload): only on to the next boundary.
    let mut held = cx;
    held.held = true;
    let (q, _) = asked(&m.rotate(&held, T + 90));
    assert_eq!(
        q,
        Query::Rotate {
            at: T + 90,
            load: false
        }
    );
}

#[test]
fn pf_disabled_is_said_once_until_enabled_and_an_uncalled_anchor_at_each_look() {
    let (cfg, mut m) = pf("");
    let cx = cx(&cfg);
    let (q, _) = asked(&m.check_pf(&cx));
    assert_eq!(
        q,
        Query::PfState {
            anchor: Some(anchor())
        }
    );
    let state = |enabled, referenced| Answer::PfState {
        enabled,
        referenced: Some(referenced),
    };
    let off = Action::Log(
        Level::Warning,
        "pf is disabled: knocks open nothing until pfctl -e".into(),
    );
    let uncalled = Action::Log(
        Level::Err,
        "the main ruleset has no anchor \"pfknock\" rule: knocks open nothing until pf.conf \
         calls the anchor"
            .into(),
    );
    let mut look = |a: Answer| {
        let (_, then) = asked(&m.check_pf(&cx));
        m.answer(&cx, then, a, 0)
    };
    assert_eq!(
        look(state(Some(false), Ok(true))),
        std::slice::from_ref(&off)
    );
    assert_eq!(look(state(Some(false), Ok(true))), vec![], "once");
    assert_eq!(look(state(None, Ok(true))), vec![], "not known: nothing");
    assert_eq!(look(state(Some(true), Ok(true))), vec![]);
    assert_eq!(look(state(Some(false), Ok(false))), [off, uncalled.clone()]);
    assert_eq!(look(state(Some(false), Ok(false))), [uncalled]);
    assert_eq!(
        look(state(Some(true), Err("pfctl: Permission denied".into()))),
        [Action::Log(
            Level::Warning,
            "cannot read the main ruleset: pfctl: Permission denied".into()
        )]
    );
    // No service: the anchor is not asked about.
    let text = "[[expire]]\ntable = \"bruteforce\"\nttl = \"60s\"\n";
    let empty = Config::parse(text, std::path::Path::new("t.toml"))
        .unwrap()
        .0;
    let (q, _) = asked(&m.check_pf(&super::cx(&empty)));
    assert_eq!(q, Query::PfState { anchor: None });
}

#[test]
fn what_changed_while_no_daemon_ran_is_said_as_such() {
    // log_burst at its default (50).
    let (cfg, mut m) = pf("knock = [1234]\n");
    let cx = cx(&cfg);
    let mut k = Pf::with(&[("ssh_renew", vec![]), ("ssh", vec![])]);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    let t = "<ssh> in anchor pfknock".to_owned();
    let key = |a: &str| (t.clone(), net(a));
    let prev: Known = [
        (key("198.18.0.1"), T - 100),
        (key("198.18.0.2"), T - 100),
        (key("198.18.0.3"), T - 100),
    ]
    .into();
    let cur: Known = [
        (key("198.18.0.1"), T - 100),
        (key("198.18.0.2"), T - 10),
        (key("198.18.0.4"), T - 5),
    ]
    .into();
    let down = |s: &str| info(&format!("{s} while the daemon was down"));
    let three = [
        down(&format!("renewed 198.18.0.2 {LINE} age=10s ttl=1m")),
        down(&format!("authorized 198.18.0.4 {LINE} age=5s ttl=1m")),
        down(&format!("removed 198.18.0.3 {LINE} ttl=1m")),
    ];
    assert_eq!(m.reconcile(&cx, Some(prev.clone()), &cur, T), three);
    // Where the firewall times entries out itself, one past its ttl
    // expired; one with time left was removed.
    let n = Machine::polling(&cfg, true);
    let mut more = prev.clone();
    more.insert(key("198.18.0.5"), T - 10);
    assert_eq!(
        n.reconcile(&cx, Some(more), &cur, T)[2..],
        [
            down(&format!("expired 198.18.0.3 {LINE} ttl=1m")),
            down(&format!("removed 198.18.0.5 {LINE} ttl=1m")),
        ]
    );
    assert_eq!(
        m.reconcile(&cx, None, &cur, T),
        [Action::Log(
            Level::Notice,
            "no record of the last run (first start, a crash or a reboot): 3 authorizations \
             found; what happened while no daemon ran is not known"
                .into()
        )]
    );
    // As many as log_burst (2 here): each a line.
    let (cfg, _) = pf("");
    let mut two = cur.clone();
    two.insert(key("198.18.0.3"), T - 100);
    let cx = super::cx(&cfg);
    assert_eq!(m.reconcile(&cx, Some(prev.clone()), &two, T), three[..2]);
    // Past log_burst: one line with their number, each at debug.
    let mut burst = vec![info(
        "3 changes to the authorizations of service ssh while the daemon was down",
    )];
    burst.extend(three.map(|a| match a {
        Action::Log(_, l) => Action::Log(Level::Debug, l),
        a => a,
    }));
    assert_eq!(m.reconcile(&cx, Some(prev), &cur, T), burst);
}

#[test]
fn an_error_that_repeats_is_said_once_then_rarely_and_when_it_is_gone() {
    let mut m = Machine::default();
    let r = &mut m.repeats;
    assert_eq!(r.report("<ssh>: EIO", T), Some("<ssh>: EIO".into()));
    assert_eq!(r.cleared(), Vec::<String>::new());
    assert_eq!(r.report("<ssh>: EIO", T + 1), None);
    assert_eq!(r.report("<ssh>: EIO", T + REPEAT_EVERY - 1), None);
    assert_eq!(r.cleared(), Vec::<String>::new());
    assert_eq!(
        r.report("<ssh>: EIO", T + REPEAT_EVERY),
        Some(format!("<ssh>: EIO (again, 3 times in {REPEAT_EVERY} s)"))
    );
    assert_eq!(r.cleared(), Vec::<String>::new());
    assert_eq!(r.cleared(), ["cleared: <ssh>: EIO"], "a look without it");
    assert_eq!(
        r.report("<ssh>: EIO", T + 1000),
        Some("<ssh>: EIO".into()),
        "new again"
    );
}

#[test]
fn the_snapshot_a_stop_keeps_holds_authorizations_only() {
    let (cfg, mut m) = pf("knock = [1234, 1235]\n");
    let cx = cx(&cfg);
    let mut k = Pf::with(&[
        ("ssh_renew", vec![]),
        ("ssh", vec![entry("198.18.0.1", T - 10)]),
        ("ssh_s1", vec![entry("198.18.0.2", T - 1)]),
        ("ssh_hold", vec![]),
    ]);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    let t = "<ssh> in anchor pfknock".to_owned();
    let want: Known = [((t.clone(), net("198.18.0.1")), T - 10)].into();
    assert_eq!(m.snapshot(&cx), want, "a sequence's progress is not kept");
    // Deciding on events: the book, since the second of the knock.
    let cfg = config("");
    let cx = super::cx(&cfg);
    let mut e = Machine::polling(&cfg, true);
    e.use_events();
    authorize(&mut e, &cx, "198.18.0.3", T0 + 1500);
    let want: Known = [((t.clone(), net("198.18.0.3")), T0 / 1000 + 1)].into();
    assert_eq!(e.snapshot(&cx), want);
    // A renewal is a time stamp more than 2 s later than the one kept:
    // less is the rounding of a timer read back.
    let kept = |since| Known::from([((t.clone(), net("198.18.0.3")), since)]);
    let now = T0 / 1000 + 5;
    assert_eq!(
        e.reconcile(&cx, Some(kept(T0 / 1000 - 1)), &want, now),
        vec![]
    );
    let mut out = Vec::new();
    e.compare(&cx, kept(T0 / 1000 - 1), now, &mut out);
    assert_eq!(out, vec![]);
    e.compare(&cx, kept(T0 / 1000 - 2), now, &mut out);
    let l = "renewed 198.18.0.3 service=ssh table=ssh anchor=pfknock age=4s ttl=1m while \
             the daemon was down";
    assert_eq!(out, vec![info(l)]);
    // One kept host that left, past its ttl: said by the walk for what
    // left, after the rest.
    let mut one_left = kept(T0 / 1000 - 1);
    one_left.insert((t, net("198.18.0.9")), T0 / 1000 - 100);
    out.clear();
    e.compare(&cx, one_left, now, &mut out);
    let l = "expired 198.18.0.9 service=ssh table=ssh anchor=pfknock ttl=1m while the \
             daemon was down";
    assert_eq!(out, vec![info(l)]);
}

#[test]
fn an_unload_forgets_the_anchors_authorizations_and_says_how_many() {
    let (cfg, mut m) = pf("knock = [1234, 1235]\n");
    let cx = cx(&cfg);
    let mut k = Pf::with(&[
        ("ssh_renew", vec![]),
        (
            "ssh",
            vec![entry("198.18.0.1", T - 10), entry("198.18.0.2", T - 10)],
        ),
        ("ssh_s1", vec![entry("198.18.0.3", T - 1)]),
        ("ssh_hold", vec![]),
    ]);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    assert_eq!(m.unloaded(&cx), 2, "authorizations, not progress");
    assert_eq!(m.known(&super::polls::table("ssh")), Some(0));
    assert_eq!(m.next_due_ms(), None);
    let cfg = config("");
    let cx = super::cx(&cfg);
    let mut e = Machine::polling(&cfg, true);
    e.use_events();
    authorize(&mut e, &cx, "198.18.0.3", T0);
    authorize(&mut e, &cx, "198.18.0.4", T0);
    authorize(&mut e, &cx, "198.18.0.5", T0);
    assert_eq!(e.unloaded(&cx), 3);
    assert_eq!(e.next_due_ms(), None);
}

#[test]
fn sigusr2_says_each_tables_entries_next_expiry_and_its_own_full_sets() {
    let text = "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\nttl = \"60s\"\n\
                [[service]]\nname = \"web\"\nprotect = [443]\nknock = [1235]\nttl = \"2m\"\n";
    let cfg = Config::parse(text, std::path::Path::new("t.toml"))
        .unwrap()
        .0;
    let cx = super::cx(&cfg);
    let mut m = Machine::polling(&cfg, true);
    let mut k = Pf::with(&[("ssh", vec![entry("198.18.0.1", T - 10)]), ("web", vec![])]);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    let status = |m: &Machine| m.status(&cx, T, false);
    assert_eq!(
        status(&m),
        [
            info("status <ssh> in anchor pfknock: 1 entries, next expiry in 51s"),
            info("status <web> in anchor pfknock: 0 entries, next expiry none"),
        ]
    );
    k.full = vec![
        ("ssh_6".into(), 8),
        ("ssh_4".into(), 8),
        ("web_m1_4".into(), 4),
    ];
    let _ = poll(&mut m, &cx, &mut k, T);
    assert_eq!(
        status(&m),
        [
            info(
                "status <ssh> in anchor pfknock: 1 entries, next expiry in 51s, sets ssh_4 and ssh_6 full"
            ),
            info("status <web> in anchor pfknock: 0 entries, next expiry none, set web_m1_4 full"),
        ]
    );
}

#[test]
fn a_commands_change_is_followed_by_the_polls_without_a_line() {
    use crate::verbs::Change;
    let (cfg, mut m) = pf("");
    let cx = cx(&cfg);
    let ssh = super::polls::table("ssh");
    let mut k = Pf::with(&[
        ("ssh", vec![entry("198.18.0.1", T - 10)]),
        ("ssh_renew", vec![]),
    ]);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    // pfknock allow 198.18.0.2, revoke 198.18.0.1: their own lines said it.
    k.tables
        .insert("ssh".into(), vec![entry("198.18.0.2", T + 1)]);
    assert_eq!(
        m.follow(&cx, &Change::Added(ssh.clone(), net("198.18.0.2")), T + 1),
        vec![]
    );
    assert_eq!(
        m.follow(&cx, &Change::Removed(ssh.clone(), net("198.18.0.1")), T + 1),
        vec![]
    );
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 2),
        vec![],
        "neither said again"
    );
    assert_eq!(listed(&k), ["ssh"], "listed again: its count is not known");
    assert_eq!(m.known(&ssh), Some(1));
    // pfknock flush: nothing known, nothing said.
    k.tables.insert("ssh".into(), vec![]);
    assert_eq!(m.follow(&cx, &Change::Cleared(ssh.clone()), T + 3), vec![]);
    assert_eq!(m.known(&ssh), Some(0));
    assert_eq!(poll(&mut m, &cx, &mut k, T + 4), vec![]);
    // A table the polls do not watch: nothing changes.
    let other = super::polls::table("other");
    assert_eq!(m.follow(&cx, &Change::Cleared(other), T + 5), vec![]);
}

/// A line the test expects: table, verb, host.
type Said = (String, String, IpAddr);

/// 30,000 hosts of two services, IPv4 and IPv6, each one of five cases
/// by its number: kept as it was; renewed while down; new; gone and due
/// (expired); gone before its time (removed). What the record keeps,
/// what each set holds, and the lines due, in the order due: table by
/// table in address order, then what left.
fn record_and_sets(now: i64) -> (Known, BTreeMap<String, Elements>, Vec<Said>) {
    let table = |s: &str| format!("<{s}> in anchor pfknock");
    let (mut prev, mut sets) = (Known::new(), BTreeMap::<String, Elements>::new());
    let (mut want, mut gone) = (Vec::new(), Vec::new());
    for i in 0..30_000u32 {
        let (svc, addr) = match i % 3 {
            0 => ("ssh", IpAddr::from([198, 18, (i >> 8) as u8, i as u8])),
            1 => (
                "ssh",
                IpAddr::from(Ipv6Addr::from((0xfd00 << 112) | u128::from(i))),
            ),
            _ => ("web", IpAddr::from([198, 19, (i >> 8) as u8, i as u8])),
        };
        let since = now - 30 - i64::from(i % 7);
        let set = format!("{svc}_{}", if addr.is_ipv4() { 4 } else { 6 });
        let (kernel, record) = match i % 5 {
            0 => (Some(since), Some(since)),
            1 => (Some(since + 10), Some(since)),
            2 => (Some(since), None),
            3 => (None, Some(now - 61)),
            _ => (None, Some(since)),
        };
        if let Some(k) = kernel {
            sets.entry(set)
                .or_default()
                .push((addr, Some((k + 60) * 1000)).into());
        }
        if let Some(r) = record {
            prev.insert((table(svc), Net::host(addr)), r);
        }
        let verb = ["", "renewed", "authorized", "expired", "removed"][i as usize % 5];
        let said = (table(svc), verb.to_owned(), addr);
        match i % 5 {
            0 => {}
            1 | 2 => want.push(said),
            _ => gone.push(said),
        }
    }
    // A table the config no longer names: nothing to say of it.
    prev.insert((table("old"), net("198.18.250.1")), now - 5);
    want.sort_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
    gone.sort_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
    want.extend(gone);
    (prev, sets, want)
}

/// Each line's table, verb and host; and whether it was said at debug.
fn said_of(acts: &[Action]) -> Vec<(Said, bool)> {
    (acts.iter())
        .map(|a| {
            let Action::Log(level @ (Level::Info | Level::Debug), l) = a else {
                panic!("{a:?}")
            };
            let w: Vec<&str> = l.split(' ').collect();
            let svc = w.iter().find_map(|x| x.strip_prefix("service=")).unwrap();
            assert!(l.ends_with("while the daemon was down"), "{l}");
            let said = (
                format!("<{svc}> in anchor pfknock"),
                w[0].to_owned(),
                w[1].parse().unwrap(),
            );
            (said, *level == Level::Debug)
        })
        .collect()
}

/// A start's `compare` asked of `m`, each part answered in turn: its
/// lines, and how many parts.
fn compared_in_parts(m: &mut Machine, cx: &Ctx, prev: Known, now: i64) -> (Vec<Action>, usize) {
    let mut acts = Vec::new();
    m.compare(cx, prev, now, &mut acts);
    let (mut got, mut parts) = (Vec::new(), 1);
    let part = super::super::down::LINES_AT_ONCE;
    while let Some(Action::Ask(Query::Pause, t)) = acts.last().cloned() {
        assert!(parts < 100, "a compare that does not end");
        // No part says more than a part's worth of lines (and the line
        // of a table past log_burst).
        assert!(acts.len() <= part + 2, "{}", acts.len());
        acts.pop();
        got.append(&mut acts);
        acts = m.answer(cx, t, Answer::Resumed, T0);
        parts += 1;
    }
    assert!(acts.len() <= part + 1, "{}", acts.len());
    got.append(&mut acts);
    (got, parts)
}

#[test]
fn a_start_compares_its_record_with_the_book_a_part_at_a_time_as_in_one_piece() {
    // log_burst between web's 8,000 lines and ssh's 16,000.
    let text = "log_burst = 10000\n[[service]]\nname = \"ssh\"\nprotect = [22]\n\
                knock = [1234]\nttl = \"60s\"\n[[service]]\nname = \"web\"\n\
                protect = [443]\nknock = [2345]\nttl = \"60s\"\n";
    let cfg = Config::parse(text, std::path::Path::new("t.toml"))
        .unwrap()
        .0;
    let cx = super::cx(&cfg);
    let now = T0 / 1000;
    let (prev, mut sets, want) = record_and_sets(now);
    let held: usize = sets.values().map(Elements::len).sum();
    // The book, from a start's reading, taken in to the end.
    let mut m = Machine::polling(&cfg, true);
    m.use_events();
    let (q, then) = asked(&m.resync(&cx, T0));
    let Query::Dump(names) = q else { panic!() };
    let dump = names.iter().map(|s| Ok(sets.remove(s).unwrap_or_default()));
    let mut acts = m.answer(&cx, then, Answer::Dump(dump.collect()), T0);
    for _ in 0..100 {
        let Some(Action::Ask(Query::Pause, t)) = acts.pop() else {
            break;
        };
        acts = m.answer(&cx, t, Answer::Resumed, T0);
    }
    assert_eq!(m.booked(&cx), held);
    let one_piece = m.reconcile(&cx, Some(prev.clone()), &m.snapshot(&cx), now);
    let (got, parts) = compared_in_parts(&mut m, &cx, prev, now);
    assert!(
        parts > want.len() / super::super::down::LINES_AT_ONCE,
        "{parts}"
    );
    assert_eq!(got, one_piece);
    // First, the number of ssh's; then each line what the test made of
    // its host, in the same order: ssh's at debug, web's at info.
    let ssh = "<ssh> in anchor pfknock";
    let n = want.iter().filter(|w| w.0 == ssh).count();
    assert_eq!(n, 16_000);
    let head =
        format!("{n} changes to the authorizations of service ssh while the daemon was down");
    assert_eq!(got[0], info(&head));
    let said = said_of(&got[1..]);
    assert_eq!(said.len(), want.len());
    let apart = (said.iter().zip(&want)).find(|((a, debug), b)| a != *b || *debug != (a.0 == ssh));
    assert!(apart.is_none(), "first apart: {apart:?}");
}

/// On pf, a reload that removes services empties the tables only they
/// named, each service's in one request: not a table the new config
/// still names (here an `[[expire]]` table in the anchor), not a const
/// allow list, not those of an anchor the new config left. The answer
/// says how many authorizations (the table and its intake) went, or the
/// error.
#[test]
fn a_reload_on_pf_empties_only_the_tables_of_the_services_it_removed() {
    let more = "[[service]]\nname = \"web\"\nprotect = [443]\nknock = [1235]\nclose = 1236\n\
                allow = [\"192.0.2.1\"]\n\
                [[service]]\nname = \"db\"\nprotect = [5432]\nknock = [1238]\n";
    let (old, mut m) = pf(more);
    let new = config("[[expire]]\ntable = \"db\"\nanchor = \"pfknock\"\nttl = \"1h\"\n");
    let acts = m.reloaded(&old, &new, T);
    assert_eq!(acts.len(), 2, "{acts:?}");
    // db's table is an `[[expire]]` table now: its intake alone goes.
    let (q, _) = asked(&acts[1..]);
    assert_eq!(names(&q), ["db_renew"]);
    let (q, then) = asked(&acts[..1]);
    assert_eq!(names(&q), ["web", "web_renew", "web_close"]);
    let cx = cx(&new);
    let done = Answer::Done(vec![Ok(2), Ok(1), Ok(5)]);
    assert_eq!(
        m.answer(&cx, then.clone(), done, ms(T)),
        [Action::Log(
            Level::Notice,
            "table <web> in anchor pfknock of service web emptied by the reload: 3 \
             authorizations went with it"
                .into()
        )]
    );
    let failed = Answer::Done(vec![Ok(0), Err("Operation not permitted".into())]);
    assert_eq!(
        m.answer(&cx, then.clone(), failed, ms(T)),
        [Action::Log(
            Level::Err,
            "table <web> in anchor pfknock: emptying the tables of service web: Operation not \
             permitted"
                .into()
        )]
    );
    assert_eq!(m.answer(&cx, then, Answer::Done(vec![Ok(0); 3]), ms(T)), []);
    // Another anchor: the old one's tables are left (the reload says so).
    let text = "anchor = \"other\"\n[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\n";
    let moved = Config::parse(text, Path::new("t.toml")).unwrap().0;
    let (old, mut m) = pf(more);
    assert_eq!(m.reloaded(&old, &moved, T), []);
}

/// A config of no service (`[[expire]]` tables only) in the anchor of
/// the old one's services loads it empty: on pf every service's tables
/// are emptied, with events their sets are forgotten; in another anchor
/// it loads nothing and changes nothing.
#[test]
fn a_reload_to_no_service_empties_the_anchor_it_leaves_without_rules() {
    let more = "[[service]]\nname = \"web\"\nprotect = [443]\nknock = [1235]\nclose = 1236\n\
                allow = [\"192.0.2.1\"]\n\
                [[service]]\nname = \"db\"\nprotect = [5432]\nknock = [1238]\n";
    let (old, mut m) = pf(more);
    // A config of no service in the same anchor loads it empty: every
    // service's tables go. In another anchor it loads nothing.
    let text = "[[expire]]\ntable = \"bruteforce\"\nttl = \"1h\"\n";
    let none = Config::parse(text, Path::new("t.toml")).unwrap().0;
    let acts = m.reloaded(&old, &none, T);
    let emptied: Vec<Vec<String>> = (acts.iter())
        .map(|a| names(&asked(std::slice::from_ref(a)).0))
        .collect();
    assert_eq!(
        emptied,
        [
            vec!["ssh", "ssh_renew"],
            vec!["web", "web_renew", "web_close"],
            vec!["db", "db_renew"]
        ]
    );
    let elsewhere = Config::parse(&format!("anchor = \"other\"\n{text}"), Path::new("t.toml"));
    let elsewhere = elsewhere.unwrap().0;
    assert_eq!(m.reloaded(&old, &elsewhere, T), []);
    assert!(!super::super::reload_loads(&elsewhere, &none));
    let mut e = events();
    authorize(&mut e, &super::cx(&old), "198.18.0.9", T);
    assert_eq!(e.reloaded(&old, &elsewhere, T), []);
    assert_eq!(e.count("ssh").0, 1, "still known: its set is still there");
    assert_eq!(e.reloaded(&old, &config(""), T).len(), 0, "ssh_4 kept");
    assert_eq!(e.reloaded(&old, &none, T).len(), 1, "ssh_4 deleted");
    assert_eq!(e.count("ssh").0, 0, "forgotten with its set");
    // A set a reload deleted during a reading stays out of it until the
    // machine takes a reload in, of any config.
    let ssh_4 = std::collections::HashSet::from(["ssh_4".to_owned()]);
    e.deleted_while_read(&super::cx(&old), &["ssh_4".to_owned()]);
    assert!(e.made_again(&ssh_4));
    e.reloaded(&old, &none, T);
    assert!(!e.made_again(&ssh_4), "the reading is over");
}

/// The tables a query of `Write::Empty`s empties.
fn names(q: &Query) -> Vec<String> {
    match q {
        Query::Writes(w) => (w.iter())
            .map(|w| match w {
                Write::Empty(t) => t.name.to_string(),
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("{other:?}"),
    }
}
