//! The machine when the kernel's view and the daemon's part: changes by
//! others, restores, lost notifications, reloads.

use super::*;
use crate::kevents::Deadline;

#[test]
fn an_overrun_reads_every_set_again_and_says_what_changed_meanwhile() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
    authorize(&mut m, &cx, "198.18.0.1", T0);
    authorize(&mut m, &cx, "198.18.0.2", T0);
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
    // Meanwhile .1 was removed, .2 renewed (at T0 + 20 s), .7 and fd00::1
    // authorized: four changes, past log_burst (2): one line, each at
    // debug.
    let v4 = vec![
        (ip("198.18.0.2"), Some(now + 50_000)),
        (ip("198.18.0.7"), Some(now + 50_000)),
    ];
    let v6 = vec![(ip("fd00::1"), Some(now + 60_000))];
    let acts = m.answer(
        &cx,
        then,
        Answer::Dump(vec![Ok(dumped(v4)), Ok(dumped(v6))]),
        now,
    );
    let late = "(learned late: the kernel dropped notifications)";
    assert_eq!(
        acts[0],
        info(&format!(
            "4 changes to the authorizations of service ssh {late}"
        ))
    );
    let debug: Vec<&str> = acts[1..]
        .iter()
        .map(|a| match a {
            Action::Log(Level::Debug, l) => l.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        debug,
        [
            format!("renewed 198.18.0.2 {LINE} age=30s ttl=1m {late}"),
            format!("authorized 198.18.0.7 {LINE} ttl=1m {late}"),
            format!("removed 198.18.0.1 {LINE} age=30s ttl=1m {late}"),
            format!("authorized fd00::1 {LINE} ttl=1m {late}"),
        ]
    );
    assert_eq!(m.count("ssh"), (3, Some(now / 1000 + 50)));
    // Read again with nothing changed: no line.
    let (_, then) = asked(&m.kernel(&cx, KernelEvent::Overrun, now + 1));
    let v4 = vec![
        (ip("198.18.0.2"), Some(now + 50_000)),
        (ip("198.18.0.7"), Some(now + 50_000)),
    ];
    let v6 = vec![(ip("fd00::1"), Some(now + 60_000))];
    assert_eq!(
        m.answer(
            &cx,
            then,
            Answer::Dump(vec![Ok(dumped(v4)), Ok(dumped(v6))]),
            now + 1
        ),
        vec![]
    );
}

#[test]
fn after_an_overrun_a_failed_dump_keeps_the_set_and_a_gone_set_is_restored() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
    for a in ["198.18.0.1", "198.18.0.2", "198.18.0.3"] {
        authorize(&mut m, &cx, a, T0);
    }
    let now = T0 + 30_000;
    // A dump that fails keeps what the book had for that set; a set that
    // is gone (its deletion's notification dropped too) is restored as
    // any change by others is.
    let (_, then) = asked(&m.kernel(&cx, KernelEvent::Overrun, now + 2));
    let d = vec![
        Err(ReadError::Failed("EIO".into())),
        Err(ReadError::Missing),
    ];
    let acts = m.answer(&cx, then, Answer::Dump(d), now + 2);
    assert_eq!(acts[0], Action::Log(Level::Err, "set ssh_4: EIO".into()));
    let (q, then) = asked(&acts);
    assert_eq!((acts.len(), q), (2, Query::Load));
    assert_eq!(m.count("ssh").0, 3);
    let (q, _) = asked(&m.answer(&cx, then, Answer::Done(vec![Ok(0)]), now + 2));
    let Query::Left(items) = q else { panic!() };
    assert_eq!(
        items.len(),
        3,
        "every authorization is looked up to be put back"
    );
}

#[test]
fn lost_events_hand_over_to_polling() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
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

#[test]
fn a_restore_loads_then_puts_back_what_was_lost_with_the_time_it_had() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
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
    let mut m = events();
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
fn a_held_anchor_is_not_restored() {
    let cfg = config("");
    let mut held = cx(&cfg);
    held.held = true;
    let mut m = events();
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
}

#[test]
fn changes_by_others_are_said_with_who_made_them_and_ours_are_followed_quietly() {
    let cfg = config("");
    let mut m = events();
    let gone = KernelEvent::Changed {
        what: "table",
        name: "pfknock".into(),
    };
    // Elements another process added and deleted: one line each, with
    // who did it.
    let cx = cx(&cfg);
    let add = added("ssh_4", "198.18.0.5", T0 + 60_000);
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
        addrs: vec![Deadline::new(ip("198.18.0.5"), None)].into(),
    };
    let acts = others(&mut m, &cx, vec![del.clone()], T0 + 2_000);
    assert_eq!(
        acts,
        vec![info(&format!(
            "removed 198.18.0.5 {LINE} age=2s ttl=1m by nft[4242]"
        ))]
    );
    // Elements of a set that is no service's: not pfknock's to log.
    let stranger = added("other_4", "198.18.0.6", T0 + 2_000 + 60_000);
    assert_eq!(others(&mut m, &cx, vec![stranger], T0 + 2_000), vec![]);
    assert_eq!(m.count("ssh").0, 0);
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
fn a_shorter_ttl_on_reload_makes_what_is_past_it_due_at_once() {
    let old = config("");
    let new = config("").clone();
    let mut shorter = new.clone();
    shorter.services[0].ttl = crate::name::Secs(20);
    let mut longer = new.clone();
    longer.services[0].ttl = crate::name::Secs(600);
    let cx = cx(&old);
    let mut m = events();
    authorize(&mut m, &cx, "198.18.0.1", T0);
    m.retime(&old, &new, T0 + 1_000);
    assert_eq!(
        m.next_due(),
        Some(T0 + 60_000 + COALESCE),
        "same ttl: unchanged"
    );
    // A longer ttl: the kernel's element keeps its deadline, and so does
    // the machine; nothing is cut.
    m.retime(&old, &longer, T0 + 1_000);
    assert_eq!(m.next_due(), Some(T0 + 60_000 + COALESCE));
    assert!(m.cuts.is_empty());
    m.retime(&old, &shorter, T0 + 1_000);
    assert_eq!(m.next_due(), Some(T0 + 20_000 + COALESCE));
}

/// Three authorizations at T0, T0 + 1 s and T0 + 2 s under a ttl of a
/// minute, then a reload at T0 + 5 s that makes it 20 s: the machine, and
/// the new config.
fn shortened() -> (Machine, Config) {
    let old = config("");
    let mut new = old.clone();
    new.services[0].ttl = crate::name::Secs(20);
    let cx_old = cx(&old);
    let mut m = events();
    authorize(&mut m, &cx_old, "198.18.0.1", T0);
    authorize(&mut m, &cx_old, "198.18.0.2", T0 + 1_000);
    authorize(&mut m, &cx_old, "198.18.0.3", T0 + 2_000);
    m.retime(&old, &new, T0 + 5_000);
    (m, new)
}

/// A reload that shortens the ttl changes the set in place: the kernel's
/// elements keep the longer time they were given. At its new deadline an
/// authorization from before the reload is deleted and logged as expired
/// with the new ttl; one renewed since, under the new ttl, is not cut.
#[test]
fn an_authorization_past_a_shortened_ttl_is_deleted_and_logged_once() {
    let (mut m, new) = shortened();
    let cx = cx(&new);
    // .2 knocks again after the reload: the kernel gives it the new ttl.
    let acts = m.kernel(&cx, knock("198.18.0.2"), T0 + 8_000);
    let (_, then) = asked(&acts);
    let acts = m.answer(&cx, then, left(Some(Some(20_000))), T0 + 8_000);
    assert_eq!(
        acts,
        vec![info(&format!("renewed 198.18.0.2 {LINE} age=7s ttl=20s"))]
    );
    // T0 + 20 s: .1 is due; its element has the 40 s left of its old
    // minute. It is deleted, then said.
    let at = T0 + 20_000 + COALESCE;
    let acts = m.tick(&cx, at);
    let (q, then) = asked(&acts);
    assert_eq!(q, Query::Left(vec![("ssh_4".into(), ip("198.18.0.1"))]));
    let acts = m.answer(&cx, then, left(Some(Some(40_000))), at);
    let (q, then) = asked(&acts);
    let table = auth_table(&new, &new.services[0]);
    let delete =
        |a: &str| Query::Writes(vec![Write::Delete(table.clone(), vec![Net::host(ip(a))])]);
    assert_eq!(
        (acts.len(), q),
        (1, delete("198.18.0.1")),
        "nothing said before the delete"
    );
    let acts = m.answer(&cx, then, Answer::Done(vec![Ok(1)]), at);
    assert_eq!(
        acts,
        vec![info(&format!("expired 198.18.0.1 {LINE} age=20s ttl=20s"))]
    );
    assert_eq!(m.count("ssh").0, 2);
    // At T0 + 28 s, .2 (renewed after the reload) is due and still there
    // (refreshed again, say): waited for, not cut. .3 was cut before.
    let at = T0 + 28_000 + COALESCE;
    let (q, then) = asked(&m.tick(&cx, at));
    let Query::Left(items) = q else {
        panic!("{q:?}")
    };
    let lefts = items
        .iter()
        .map(|(_, a)| {
            Ok(Some(Some(if *a == ip("198.18.0.2") {
                5_000
            } else {
                33_000
            })))
        })
        .collect();
    let acts = m.answer(&cx, then, Answer::Left(lefts), at);
    let (q, _) = asked(&acts);
    assert_eq!((acts.len(), q), (1, delete("198.18.0.3")));
}

/// A delete past a shortened ttl that fails is said, and the host looked
/// at again at the next poll.
#[test]
fn a_failed_cut_is_said_and_tried_again() {
    let (mut m, new) = shortened();
    let cx = cx(&new);
    let at = T0 + 20_000 + COALESCE;
    let (_, then) = asked(&m.tick(&cx, at));
    let (_, then) = asked(&m.answer(&cx, then, left(Some(Some(40_000))), at));
    let acts = m.answer(&cx, then, Answer::Done(vec![Err("EPERM".into())]), at);
    assert!(
        matches!(&acts[..], [Action::Fail(Level::Err, l)] if l.contains("shortened ttl: EPERM")),
        "{acts:?}"
    );
    assert_eq!(m.count("ssh").0, 3);
    let poll = new.poll.0 as i64;
    let (q, _) = asked(&m.tick(&cx, at + poll));
    assert!(
        matches!(&q, Query::Left(items) if items.iter().any(|(_, a)| *a == ip("198.18.0.1"))),
        "{q:?}"
    );
}

#[test]
fn a_transaction_cut_by_an_overrun_is_said_by_the_reading_not_by_its_commit() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
    let add = added("ssh_4", "198.18.0.5", T0 + 60_000);
    assert_eq!(m.kernel(&cx, add, T0), vec![]);
    // The reading of the sets: the element is gone again (a later
    // transaction, its notifications dropped, deleted it).
    let (_, then) = asked(&m.kernel(&cx, KernelEvent::Overrun, T0));
    let acts = m.answer(
        &cx,
        then,
        Answer::Dump(vec![Ok(Default::default()), Ok(Default::default())]),
        T0,
    );
    assert_eq!(acts, vec![]);
    // The first transaction's commit, read after: it says nothing of an
    // element the set does not hold.
    let commit = KernelEvent::Commit {
        pid: 4242,
        process: "nft".into(),
    };
    assert_eq!(m.kernel(&cx, commit, T0 + 1), vec![]);
    assert_eq!(m.count("ssh").0, 0);
}

#[test]
fn the_starts_reading_is_silent_and_keeps_each_elements_age() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
    let acts = m.resync(&cx, T0);
    let (q, then) = asked(&acts);
    assert_eq!(
        (acts.len(), q),
        (1, Query::Dump(vec!["ssh_4".into(), "ssh_6".into()]))
    );
    // Authorized 30 s ago (30 s of 60 left), and one with no timeout;
    // the answer comes 7 s later (a reading of a million takes a
    // minute): the kernel's deadline stands, not 7 s later.
    let v4 = vec![
        (ip("198.18.0.1"), Some(T0 + 30_000)),
        (ip("198.18.0.2"), None),
    ];
    let acts = m.answer(
        &cx,
        then,
        Answer::Dump(vec![Ok(dumped(v4)), Ok(dumped(Vec::new()))]),
        T0 + 7_000,
    );
    assert_eq!(
        acts,
        vec![],
        "what is there at start is known without a line"
    );
    assert_eq!(m.count("ssh"), (2, Some(T0 / 1000 + 30)));
    // At its deadline: gone, and a minute old.
    let due = T0 + 30_000 + COALESCE;
    let (_, then) = asked(&m.tick(&cx, due));
    let acts = m.answer(&cx, then, left(None), due);
    assert_eq!(
        acts,
        vec![info(&format!("expired 198.18.0.1 {LINE} age=1m ttl=1m"))]
    );
}

#[test]
fn without_renewal_or_with_idle_expiry_a_later_deadline_is_no_renewal_learned_late() {
    for extra in ["renew = false\n", "expire = \"idle\"\n"] {
        let cfg = config(extra);
        let cx = cx(&cfg);
        let mut m = events();
        authorize(&mut m, &cx, "198.18.0.1", T0);
        let now = T0 + 30_000;
        let (_, then) = asked(&m.kernel(&cx, KernelEvent::Overrun, now));
        // Its deadline moved 20 s (traffic, where idle; nothing else can).
        let v4 = vec![(ip("198.18.0.1"), Some(now + 50_000))];
        let acts = m.answer(
            &cx,
            then,
            Answer::Dump(vec![Ok(dumped(v4)), Ok(Default::default())]),
            now,
        );
        assert_eq!(acts, vec![], "{extra}");
        // The kernel's deadline is kept; the age runs from the start.
        assert_eq!(m.count("ssh"), (1, Some(now / 1000 + 50)), "{extra}");
    }
}

#[test]
fn as_many_changes_learned_late_as_log_burst_are_each_a_line() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
    let (_, then) = asked(&m.kernel(&cx, KernelEvent::Overrun, T0));
    let v4 = vec![
        (ip("198.18.0.1"), Some(T0 + 60_000)),
        (ip("198.18.0.2"), Some(T0 + 60_000)),
    ];
    let acts = m.answer(
        &cx,
        then,
        Answer::Dump(vec![Ok(dumped(v4)), Ok(Default::default())]),
        T0,
    );
    let late = "(learned late: the kernel dropped notifications)";
    assert_eq!(
        acts,
        vec![
            info(&format!("authorized 198.18.0.1 {LINE} ttl=1m {late}")),
            info(&format!("authorized 198.18.0.2 {LINE} ttl=1m {late}")),
        ]
    );
}

/// An element another tool added with less than the ttl left (a restore
/// of its own) is as old in the book as in the kernel, so `expire`,
/// which lists authorized sets from the book, measures it as pfctl
/// would; a stage table, or a service that expires by idle time, is not
/// listed from the book.
#[test]
fn an_element_added_by_others_is_as_old_as_the_kernel_has_it() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
    let add = added("ssh_4", "198.18.0.5", T0 + 20_000);
    others(&mut m, &cx, vec![add], T0);
    let t = auth_table(&cfg, &cfg.services[0]);
    let got = m.booked_entries(&cfg, &t, T0 + 1_000).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].tzero, T0 / 1000 - 40);
    assert_eq!(m.count("ssh"), (1, Some(T0 / 1000 + 20)));
    // Past its deadline it is the kernel's to drop: not listed.
    assert!(m.booked_entries(&cfg, &t, T0 + 20_000).unwrap().is_empty());
    let other = TableRef::new(&cfg.anchor, &crate::name::TableName::new("ssh_s1").unwrap());
    assert_eq!(m.booked_entries(&cfg, &other, T0), None);
    let idle = config("expire = \"idle\"\n");
    assert_eq!(m.booked_entries(&idle, &t, T0), None);
    assert_eq!(Machine::default().booked_entries(&cfg, &t, T0), None);
    // An event that waited (behind a reading of the sets) keeps the
    // kernel's deadline and age: heard at T0 with 50 s left, taken 30 s
    // later.
    let late = added("ssh_4", "198.18.0.6", T0 + 50_000);
    others(&mut m, &cx, vec![late], T0 + 30_000);
    let got = m.booked_entries(&cfg, &t, T0 + 31_000).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].tzero, T0 / 1000 - 10, "as old as the kernel has it");
    assert_eq!(m.booked_entries(&cfg, &t, T0 + 49_999).unwrap().len(), 1);
    assert!(
        m.booked_entries(&cfg, &t, T0 + 50_000).unwrap().is_empty(),
        "due at the kernel's deadline, not 30 s after it"
    );
}

/// The book lists an entry with the age the event lines give, to the
/// nearest second, whatever the fractions of its start and of now: 2.8 s
/// is 3 s (as whole seconds, 12 less 10, it was 2), 2.2 s is 2 s.
#[test]
fn the_book_lists_ages_to_the_nearest_second() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
    let add = added("ssh_4", "198.18.0.5", T0 + 70_100);
    others(&mut m, &cx, vec![add], T0 + 10_100);
    let t = auth_table(&cfg, &cfg.services[0]);
    let age_at =
        |now: i64| now.div_euclid(1000) - m.booked_entries(&cfg, &t, now).unwrap()[0].tzero;
    assert_eq!(age_at(T0 + 12_900), 3);
    assert_eq!(age_at(T0 + 12_300), 2);
    assert_eq!(age_at(T0 + 13_050), 3);
    assert_eq!(age_at(T0 + 10_100), 0);
}

/// An expired line names the ttl the authorization was given: the
/// service's, also for one put back with whole seconds (up to a second
/// short of it), or a shorter one from before a reload made it longer.
#[test]
fn an_expired_line_names_the_ttl_it_was_given() {
    let cfg = config("");
    let cx = cx(&cfg);
    let mut m = events();
    // Put back with 29 of its 29.9 s left: due 0.9 s short of a minute.
    m.track(&cx, "ssh_4", ip("198.18.0.1"), T0, T0 + 59_100);
    // Given 20 s under an older, shorter ttl.
    m.track(&cx, "ssh_4", ip("198.18.0.2"), T0, T0 + 20_000);
    for (at, a, want) in [
        (T0 + 20_000, "198.18.0.2", "age=20s ttl=20s"),
        (T0 + 59_100, "198.18.0.1", "age=59s ttl=1m"),
    ] {
        let (_, then) = asked(&m.tick(&cx, at));
        let acts = m.answer(&cx, then, left(None), at);
        assert_eq!(acts, vec![info(&format!("expired {a} {LINE} {want}"))]);
    }
}

/// With `expire = "idle"` traffic renews an element under the ttl of the
/// moment: after a reload that shortens the ttl, one found at its new
/// deadline with more time left than the new ttl still has the old one
/// and is cut; one with the new ttl left or less was refreshed since and
/// is waited for.
#[test]
fn an_idle_authorization_is_cut_only_with_more_left_than_the_new_ttl() {
    for (left_ms, cut) in [
        (40_000, true),
        (20_001, true),
        (20_000, false),
        (5_000, false),
    ] {
        let old = config("expire = \"idle\"\n");
        let mut new = old.clone();
        new.services[0].ttl = crate::name::Secs(20);
        let mut m = events();
        authorize(&mut m, &cx(&old), "198.18.0.1", T0);
        m.retime(&old, &new, T0 + 5_000);
        let cx = cx(&new);
        let at = T0 + 20_000 + COALESCE;
        let (q, then) = asked(&m.tick(&cx, at));
        assert_eq!(q, Query::Left(vec![("ssh_4".into(), ip("198.18.0.1"))]));
        let acts = m.answer(&cx, then, left(Some(Some(left_ms))), at);
        if cut {
            // Deleted first, then said once, with the new ttl.
            let (q, then) = asked(&acts);
            let table = auth_table(&new, &new.services[0]);
            let delete = Query::Writes(vec![Write::Delete(
                table,
                vec![Net::host(ip("198.18.0.1"))],
            )]);
            assert_eq!((acts.len(), q), (1, delete), "{left_ms} ms left");
            let acts = m.answer(&cx, then, Answer::Done(vec![Ok(1)]), at);
            assert_eq!(
                acts,
                vec![info(&format!(
                    "expired 198.18.0.1 {LINE} idle=20s age=20s ttl=20s"
                ))],
                "{left_ms} ms left"
            );
            assert_eq!(m.count("ssh").0, 0);
        } else {
            // Nothing deleted, nothing said: due when the kernel says.
            assert!(acts.is_empty(), "{left_ms} ms left: {acts:?}");
            assert_eq!(m.next_due(), Some(at + left_ms as i64 + COALESCE));
            assert_eq!(m.count("ssh").0, 1);
        }
    }
}

/// Another process's add of `addr` to `set`, due at `until` (ms).
fn added(set: &str, addr: &str, until: i64) -> KernelEvent {
    KernelEvent::Elements {
        set: set.into(),
        added: true,
        addrs: vec![Deadline::new(ip(addr), Some(until))].into(),
    }
}
