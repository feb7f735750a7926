//! An overrun's reading taken in a part a turn of the loop: the elements,
//! the walk of what the book held, and the lines learned late.
use super::*;

/// Past `log_burst`, what an overrun learned late is one line with the
/// number, then each at debug; and past `SAY_AT_ONCE` it is said a part
/// a turn of the loop (asking to go on), in the order it was found, the
/// number said once, first.
#[test]
fn many_changes_learned_late_are_said_a_part_a_turn() {
    use super::super::resync::SAY_AT_ONCE;
    let cfg = config(""); // log_burst = 2
    let cx = cx(&cfg);
    let mut m = events();
    let (_, then) = asked(&m.kernel(&cx, KernelEvent::Overrun, T0));
    let n = 2 * SAY_AT_ONCE + SAY_AT_ONCE / 3;
    let host = |i: usize| IpAddr::from([198, 18, (i >> 8) as u8, i as u8]);
    let v4 = (0..n)
        .map(|i| (host(i), Some(T0 + 60_000)).into())
        .collect();
    let mut acts = m.answer(
        &cx,
        then,
        Answer::Dump(vec![Ok(v4), Ok(Default::default())]),
        T0,
    );
    let late = "(learned late: the kernel dropped notifications)";
    let mut said = Vec::new();
    let mut parts = 0;
    while let Some(Action::Ask(Query::Pause, t)) = acts.last().cloned() {
        acts.pop();
        assert!(acts.len() <= SAY_AT_ONCE + 1, "{} in a part", acts.len());
        said.append(&mut acts);
        parts += 1;
        assert!(parts < 10, "no end");
        acts = m.answer(&cx, t, Answer::Resumed, T0);
    }
    said.append(&mut acts);
    assert_eq!(parts, 2);
    let mut want = vec![info(&format!(
        "{n} changes to the authorizations of service ssh {late}"
    ))];
    want.extend((0..n).map(|i| {
        let line = format!("authorized {} {LINE} ttl=1m {late}", host(i));
        Action::Log(Level::Debug, line)
    }));
    assert_eq!(said.len(), want.len());
    assert_eq!(said, want);
    assert_eq!(m.count("ssh"), (n, Some(T0 / 1000 + 60)));
}

/// An overrun's reading that finds what the book held takes it in a part
/// a turn, and then walks what the book held a part a turn too (to find
/// what went), not in one piece: three parts of elements, three of the
/// walk. Nothing changed, so nothing is said.
#[test]
fn what_the_book_held_is_walked_a_part_a_turn_after_an_overrun() {
    use super::super::resync::TAKE_AT_ONCE;
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
    let n = 3 * TAKE_AT_ONCE;
    let host = |i: usize| IpAddr::from([198, 18, (i >> 8) as u8, i as u8]);
    let v4: Elements = (0..n)
        .map(|i| (host(i), Some(T0 + 60_000)).into())
        .collect();
    let add = KernelEvent::Elements {
        set: "ssh_4".into(),
        added: true,
        addrs: v4.iter().collect(),
    };
    others(&mut m, &cx, vec![add], T0);
    assert_eq!(m.count("ssh"), (n, Some(T0 / 1000 + 60)));
    let (_, then) = asked(&m.kernel(&cx, KernelEvent::Overrun, T0));
    let mut acts = m.answer(
        &cx,
        then,
        Answer::Dump(vec![Ok(v4), Ok(Default::default())]),
        T0,
    );
    let mut parts = 0;
    while let Some(Action::Ask(Query::Pause, t)) = acts.pop() {
        assert_eq!(acts, vec![]);
        parts += 1;
        assert!(parts < 20, "no end");
        acts = m.answer(&cx, t, Answer::Resumed, T0);
    }
    assert_eq!(acts, vec![]);
    assert_eq!(parts, 6);
    assert_eq!(m.count("ssh"), (n, Some(T0 / 1000 + 60)));
}

/// The lines of two services share one part's `SAY_AT_ONCE`: the first
/// service's three quarters of a part and a quarter of the second's in
/// one turn, the rest in the next.
#[test]
fn two_services_lines_learned_late_share_a_part() {
    use super::super::resync::SAY_AT_ONCE;
    let text = "log_burst = 2\n\
        [[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\nttl = \"60s\"\n\
        [[service]]\nname = \"web\"\nprotect = [80]\nknock = [2345]\nttl = \"60s\"\n";
    let cfg = Config::parse(text, Path::new("t.toml")).unwrap().0;
    let cx = cx(&cfg);
    let mut m = events();
    let (q, then) = asked(&m.kernel(&cx, KernelEvent::Overrun, T0));
    assert_eq!(
        q,
        Query::Dump(
            ["ssh_4", "ssh_6", "web_4", "web_6"]
                .map(String::from)
                .to_vec()
        )
    );
    let host = |k: u8, i: usize| IpAddr::from([198, 18 + k, (i >> 8) as u8, i as u8]);
    let each = SAY_AT_ONCE - SAY_AT_ONCE / 4;
    let dump = |k| {
        Ok((0..each)
            .map(|i| (host(k, i), Some(T0 + 60_000)).into())
            .collect())
    };
    let answer = Answer::Dump(vec![
        dump(0),
        Ok(Default::default()),
        dump(1),
        Ok(Default::default()),
    ]);
    let mut acts = m.answer(&cx, then, answer, T0);
    let Some(Action::Ask(Query::Pause, t)) = acts.pop() else {
        panic!("no second part: {} lines", acts.len());
    };
    // Two lines with the number, and SAY_AT_ONCE of the hosts.
    assert_eq!(acts.len(), 2 + SAY_AT_ONCE);
    let late = "(learned late: the kernel dropped notifications)";
    let web = format!("{each} changes to the authorizations of service web {late}");
    assert_eq!(acts[each + 1], info(&web));
    let rest = m.answer(&cx, t, Answer::Resumed, T0);
    assert_eq!(rest.len(), 2 * each - SAY_AT_ONCE);
    let last = format!(
        "authorized {} service=web table=web anchor=pfknock ttl=1m {late}",
        host(1, each - 1)
    );
    assert_eq!(rest.last(), Some(&Action::Log(Level::Debug, last)));
}

/// An element the reading gives without a deadline is due a ttl from
/// when it was taken in; a renewal learned late whose old deadline had
/// passed before it was read says the whole age of the authorization.
#[test]
fn a_reading_without_a_deadline_and_a_renewal_past_its_old_one() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
    authorize(&mut m, &cx, "198.18.0.1", T0);
    let now = T0 + 70_000;
    let (_, then) = asked(&m.kernel(&cx, KernelEvent::Overrun, now));
    let v4 = vec![
        (ip("198.18.0.1"), Some(now + 90_000)),
        (ip("198.18.0.2"), None),
    ];
    let acts = m.answer(
        &cx,
        then,
        Answer::Dump(vec![Ok(dumped(v4)), Ok(Default::default())]),
        now,
    );
    let late = "(learned late: the kernel dropped notifications)";
    assert_eq!(
        acts,
        vec![
            info(&format!(
                "renewed 198.18.0.1 {LINE} age=1m10s ttl=1m {late}"
            )),
            info(&format!("authorized 198.18.0.2 {LINE} ttl=1m {late}")),
        ]
    );
    // The first due is the one without a deadline, a ttl from now.
    assert_eq!(m.count("ssh"), (2, Some(now / 1000 + 60)));
}

/// A transaction by others is said `SAY_AT_ONCE` lines at its commit,
/// and a part at each `say_more`; what comes after it comes after all
/// of it, out of a reading (a knock) as during one (`heard`: a knock
/// after the commit in the same call).
#[test]
fn a_transaction_by_others_is_said_a_part_at_a_time_and_before_what_follows() {
    use super::super::resync::SAY_AT_ONCE;
    let cfg = config("");
    let cx = cx(&cfg);
    let n = 2 * SAY_AT_ONCE + 10;
    let (add, commit) = added_by_nft(0..n);
    let mut m = events();
    assert_eq!(m.kernel(&cx, add.clone(), T0), vec![]);
    assert_eq!(said(&m.kernel(&cx, commit.clone(), T0)), SAY_AT_ONCE);
    assert_eq!(said(&m.say_more(&cx, T0)), SAY_AT_ONCE);
    assert!(m.unsaid());
    let acts = m.kernel(&cx, knock("198.19.0.1"), T0);
    assert_eq!(said(&acts), 10, "the rest before the knock's look-up");
    assert_eq!(
        asked(&acts).0,
        Query::Left(vec![("ssh_4".into(), ip("198.19.0.1"))])
    );
    assert!(!m.unsaid());
    assert_eq!(m.count("ssh"), (n, Some(T0 / 1000 + 60)));
    let mut m = events();
    let acts = m.heard(&cx, &[add, commit, knock("198.19.0.1")], T0);
    assert_eq!(said(&acts), n, "the rest before the knock's look-up");
    let (q, _) = asked(&acts);
    assert_eq!(q, Query::Left(vec![("ssh_4".into(), ip("198.19.0.1"))]));
    assert!(!m.unsaid());
}

/// A reading's records go once it is taken in, and so does the room
/// they took: of a transaction of thousands by others heard during an
/// overrun's reading, each is said once at the commit, kept as said, and
/// taken in without a line with the reading (the loop queued none of
/// their elements: `Daemon::hear`); the records then hold nothing, no
/// room either (an emptied map that kept it held 75 MB at rest after a
/// churned start at a million). Their commit after says nothing.
#[test]
fn a_readings_records_give_back_their_room_once_it_is_taken_in() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
    let n = 5000;
    let full = heard_then_read(&mut m, &cx, n);
    assert!(full >= n, "{full}");
    assert_eq!(m.knocks.said_room(), 0);
    assert!(m.knocks.none_said());
    assert_eq!(m.count("ssh"), (n, Some(T0 / 1000 + 60)));
    let (_, commit) = added_by_nft(0..n);
    assert_eq!(m.kernel(&cx, commit, T0), vec![]);
    assert_eq!(m.count("ssh"), (n, Some(T0 / 1000 + 60)));
}

/// The book's maps are built full once a reading's records are gone:
/// a reading of a thousand that others added while it ran is taken in
/// with their records, then its set built again, once (the build's copy
/// not held beside the records). With no such records, at once too.
#[test]
fn a_set_read_is_built_full_once_the_readings_records_are_gone() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
    let n = 1000;
    heard_then_read(&mut m, &cx, n);
    assert!(m.knocks.none_said());
    assert_eq!(m.book.rebuilt(), 1);
    assert!(!m.book.unsettled());
    assert_eq!(m.count("ssh"), (n, Some(T0 / 1000 + 60)));
    // No records: built once taken in.
    let mut m = events();
    let (_, then) = asked(&m.kernel(&cx, KernelEvent::Overrun, T0));
    let found = (0..n)
        .map(|i| (many(i), Some(T0 + 60_000)).into())
        .collect();
    let mut acts = m.answer(
        &cx,
        then,
        Answer::Dump(vec![Ok(found), Ok(Default::default())]),
        T0,
    );
    while let Some(Action::Ask(Query::Pause, t)) = acts.pop() {
        acts = m.answer(&cx, t, Answer::Resumed, T0);
    }
    assert_eq!(m.book.rebuilt(), 1);
    assert_eq!(m.count("ssh"), (n, Some(T0 / 1000 + 60)));
}

/// An overrun's reading during which nft adds `n` hosts (of `many`), each
/// said as heard; the reading finds them all and is taken in, the events
/// still to come. The room the records took, at their most.
fn heard_then_read(m: &mut Machine, cx: &Ctx, n: usize) -> usize {
    let (_, then) = asked(&m.kernel(cx, KernelEvent::Overrun, T0));
    let (add, commit) = added_by_nft(0..n);
    let mut acts = m.heard(cx, &[add, commit], T0);
    acts.extend(m.say_all(cx, T0));
    assert_eq!(said(&acts), n);
    let full = m.knocks.said_room();
    assert!(full >= n, "{full}");
    let found = (0..n)
        .map(|i| (many(i), Some(T0 + 60_000)).into())
        .collect();
    let mut acts = m.answer(
        cx,
        then,
        Answer::Dump(vec![Ok(found), Ok(Default::default())]),
        T0,
    );
    while let Some(Action::Ask(Query::Pause, t)) = acts.pop() {
        acts = m.answer(cx, t, Answer::Resumed, T0);
    }
    assert_eq!(said(&acts), 0, "{acts:?}");
    full
}

/// Host `i` of a test's many, in 198.18.0.0/16.
fn many(i: usize) -> IpAddr {
    IpAddr::from([198, 18, (i >> 8) as u8, i as u8])
}

/// A transaction by nft[4242] that adds `hosts` (of `many`) to ssh_4,
/// each for a minute from T0: its element changes and its commit.
fn added_by_nft(hosts: std::ops::Range<usize>) -> (KernelEvent, KernelEvent) {
    let add = KernelEvent::Elements {
        set: "ssh_4".into(),
        added: true,
        addrs: hosts.map(|i| (many(i), Some(T0 + 60_000)).into()).collect(),
    };
    let commit = KernelEvent::Commit {
        pid: 4242,
        process: "nft".into(),
    };
    (add, commit)
}

/// How many lines `acts` says.
fn said(acts: &[Action]) -> usize {
    acts.iter().filter(|a| matches!(a, Action::Log(..))).count()
}

/// At a start, what the reading finds of a host said while it ran (added
/// by others, none of their elements queued) is not taken in beside its
/// record: once the sets are in, the record is, so the book holds it
/// once, as old as since it was said (a third of a churned start's
/// reading at a million), with no line; and the set is built full then,
/// also where the reading found nothing else. The commit that follows
/// says nothing, and changes nothing.
#[test]
fn a_starts_reading_takes_in_the_hosts_said_during_it_from_their_records() {
    let cfg = config("");
    let cx = cx(&cfg);
    let n = 1000;
    for held in [1, 0] {
        let mut m = events();
        let commit = start_heard_then_read(&mut m, &cx, n, held);
        assert_eq!(m.book.len(), n + held);
        assert_eq!(m.knocks.said_room(), 0);
        let first = T0 / 1000 + if held == 1 { 50 } else { 60 };
        assert_eq!(m.count("ssh"), (n + held, Some(first)));
        assert_eq!(m.booked(&cx), n + held);
        assert_eq!(m.book.rebuilt(), 1);
        assert!(!m.book.unsettled());
        let snap = m.snapshot(&cx);
        let table = crate::tables::TableRef::new(&cfg.anchor, &cfg.services[0].table);
        let hosts = snap.hosts(&table.to_string()).unwrap();
        assert_eq!(hosts.len(), n + held);
        for (h, since) in hosts {
            let old = h.addr() == many(n);
            assert_eq!(*since, T0 / 1000 + if old { -10 } else { 0 }, "{h}");
        }
        let mut acts = m.kernel(&cx, commit, T0 + 6_000);
        acts.extend(m.say_all(&cx, T0 + 6_000));
        assert_eq!(acts, vec![]);
        assert_eq!(m.book.len(), n + held);
        assert_eq!(m.count("ssh"), (n + held, Some(first)));
        assert_eq!(m.snapshot(&cx), snap);
    }
}

/// A start's reading during which nft adds `n` hosts (of `many`) at T0 +
/// 2 s, each said as heard; the reading finds them all, and `held` (0 or
/// 1) more held before the start, due at T0 + 50 s, and is taken in at T0
/// + 5 s: the commit, which the loop queued, still to come.
fn start_heard_then_read(m: &mut Machine, cx: &Ctx, n: usize, held: usize) -> KernelEvent {
    let (_, then) = asked(&m.resync(cx, T0));
    let (add, commit) = added_by_nft(0..n);
    let mut acts = m.heard(cx, &[add, commit.clone()], T0 + 2_000);
    acts.extend(m.say_all(cx, T0 + 2_000));
    assert_eq!(said(&acts), n);
    let until = |i| T0 + if i == n { 50_000 } else { 60_000 };
    let found = (0..n + held).map(|i| (many(i), Some(until(i))).into());
    let dumps = vec![Ok(found.collect()), Ok(Default::default())];
    let mut acts = m.answer(cx, then, Answer::Dump(dumps), T0 + 5_000);
    while let Some(Action::Ask(Query::Pause, t)) = acts.pop() {
        acts = m.answer(cx, t, Answer::Resumed, T0 + 5_000);
    }
    assert_eq!(said(&acts), 0, "{acts:?}");
    commit
}
