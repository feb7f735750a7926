//! The polls' restores, alone: an anchor found flushed or changed is
//! loaded again with what it held, with the time each had left, and
//! nothing else.

use super::polls::{Pf, T, anchor, entry, listed, net, pf, poll, table, writes};
use super::*;

#[test]
fn a_flushed_anchor_is_loaded_again_with_what_it_held_but_not_what_a_command_removed() {
    let (cfg, mut m) = pf("");
    let cx = cx(&cfg);
    let a = entry("198.18.0.1", T - 10);
    let b = entry("198.18.0.2", T - 20);
    let c = entry("198.18.0.3", T - 59);
    let mut k = Pf::with(&[("ssh", vec![a, b, c]), ("ssh_renew", vec![])]);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    // pfctl -a pfknock -F all; and a pfknock revoke of b noted.
    k.tables.clear();
    k.gone = true;
    m.noted("pfknock\tssh\t198.18.0.2\n", T + 1);
    let acts = poll(&mut m, &cx, &mut k, T + 2);
    assert_eq!(
        acts,
        [Action::Log(
            Level::Notice,
            "anchor pfknock restored: its tables were gone (pf flushed?): put back 1 \
             authorizations with the time they had left"
                .into()
        )]
    );
    // pf's own state looked at again: is the anchor still called?
    assert!(k.asked.contains(&Query::PfState {
        anchor: Some(anchor())
    }));
    // a with the 48 s it had left; b not (revoked); c not (its time is up).
    assert!(k.asked.contains(&Query::Load));
    assert!(k.asked.contains(&Query::Add(vec![(
        table("ssh"),
        vec![(net("198.18.0.1"), 48)]
    )])));
    // Its age goes on from the old stamp: due when it was due before.
    k.tables
        .insert("ssh".into(), vec![entry("198.18.0.1", T + 2)]);
    k.tables.insert("ssh_renew".into(), vec![]);
    assert_eq!(poll(&mut m, &cx, &mut k, T + 3), vec![]);
    assert_eq!(poll(&mut m, &cx, &mut k, T + 50), vec![]);
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 51),
        [info(&format!("expired 198.18.0.1 {LINE} age=1m1s ttl=1m"))]
    );

    // Held unloaded (pfknock unload): nothing is loaded, nothing put back.
    let mut held = cx;
    held.held = true;
    k.gone = true;
    assert_eq!(poll(&mut m, &held, &mut k, T + 60), vec![]);
    assert!(!k.asked.contains(&Query::Load), "{:?}", k.asked);
    assert_eq!(writes(&k), []);
}

#[test]
fn a_restore_puts_back_authorizations_only_and_a_failed_one_is_said_and_tried_again() {
    let (cfg, mut m) = pf("knock = [1234, 1235]\n");
    let cx = cx(&cfg);
    let (a, b) = (entry("198.18.0.1", T - 10), entry("198.18.0.2", T - 1));
    let mut k = Pf::with(&[("ssh_renew", vec![]), ("ssh", vec![a]), ("ssh_s1", vec![b])]);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    // A table that is there but no rule uses (pfctl -F rules): the
    // anchor is broken all the same.
    k.inactive = Some("ssh".into());
    k.load_fails = Some("pfctl: syntax error".into());
    let gone = Action::Fail(
        Level::Err,
        "anchor pfknock is gone and cannot be restored: pfctl: syntax error".into(),
    );
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 1),
        std::slice::from_ref(&gone)
    );
    assert_eq!(
        listed(&k),
        Vec::<String>::new(),
        "nothing listed: not known"
    );
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 2),
        [gone],
        "tried at each poll"
    );
    k.load_fails = None;
    let acts = poll(&mut m, &cx, &mut k, T + 3);
    assert_eq!(
        acts,
        [Action::Log(
            Level::Notice,
            "anchor pfknock restored: its tables were gone (pf flushed?): put back 1 \
             authorizations with the time they had left"
                .into()
        )]
    );
    // A sequence's progress is not an authorization: not put back.
    assert!(k.asked.contains(&Query::Add(vec![(
        table("ssh"),
        vec![(net("198.18.0.1"), 47)]
    )])));

    // nftables, polled: a set or rule changed (a flushed chain) is loaded
    // again as well, said as such.
    let mut n = Machine::polling(&cfg, true);
    let mut k = Pf::with(&[("ssh", vec![a]), ("ssh_s1", vec![])]);
    k.intact = Some(true);
    assert_eq!(poll(&mut n, &cx, &mut k, T), vec![]);
    k.intact = Some(false);
    assert_eq!(
        poll(&mut n, &cx, &mut k, T + 1),
        [Action::Log(
            Level::Notice,
            "anchor pfknock restored: its rules or sets had been changed: put back 1 \
             authorizations with the time they had left"
                .into()
        )]
    );
    assert_eq!(poll(&mut n, &cx, &mut k, T + 2), vec![], "once");
}

#[test]
fn a_restore_gives_back_only_what_has_time_left_and_says_nothing_of_none() {
    let (cfg, mut m) = pf("");
    let cx = cx(&cfg);
    // One authorization exactly at its ttl at the restore: nothing left.
    let mut k = Pf::with(&[
        ("ssh", vec![entry("198.18.0.1", T - 58)]),
        ("ssh_renew", vec![]),
    ]);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    k.tables.clear();
    k.gone = true;
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 2),
        [Action::Log(
            Level::Notice,
            "anchor pfknock restored: its tables were gone (pf flushed?)".into()
        )]
    );
    assert!(k.asked.contains(&Query::Add(vec![(table("ssh"), vec![])])));
}

#[test]
fn a_flushed_anchor_gets_back_the_hosts_the_intake_held_for_lack_of_room() {
    // No room to move .9 (knocked at T + 1) out of the intake.
    let (cfg, mut m, mut k, _) = super::renewals::unmoved("");
    k.fail = None;
    // pfctl -a pfknock -F all: .9 goes back, into ssh, with its 58 s.
    k.tables.clear();
    k.gone = true;
    poll(&mut m, &cx(&cfg), &mut k, T + 3);
    assert!(
        k.asked.contains(&Query::Add(vec![(
            table("ssh"),
            vec![(net("198.18.0.9"), 58)]
        )])),
        "{:?}",
        k.asked
    );
}
