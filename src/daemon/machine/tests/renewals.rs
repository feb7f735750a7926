//! Renewals where the daemon polls (pf): an authorized host that knocks
//! again lands in the renewal table; the daemon stamps it anew in the
//! authorized table, moves a host that was not authorized into it, and
//! empties the renewal table, and knows what the authorized table holds
//! from its writes, without listing it.

use super::polls::{Pf, T, entry, listed, net, pf, poll, table, writes};
use super::*;
use crate::config::Config;

/// 198.18.0.1 authorized since T - 30 and read by a first poll at T; then
/// it knocked again, and 198.18.0.9 is in the renewal table but not
/// authorized (expired in between).
fn renewals_waiting() -> (Config, Machine, Pf) {
    let (cfg, mut m) = pf("");
    let mut k = Pf::with(&[
        ("ssh", vec![entry("198.18.0.1", T - 30)]),
        ("ssh_renew", vec![]),
    ]);
    assert_eq!(poll(&mut m, &cx(&cfg), &mut k, T), vec![]);
    k.tables.insert(
        "ssh_renew".into(),
        vec![entry("198.18.0.1", T + 1), entry("198.18.0.9", T + 1)],
    );
    (cfg, m, k)
}

#[test]
fn a_renewal_stamps_the_authorized_host_and_adds_one_that_was_not() {
    let (cfg, mut m, mut k) = renewals_waiting();
    let cx = cx(&cfg);
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 2),
        [
            info(&format!("renewed 198.18.0.1 {LINE} ttl=1m")),
            info(&format!("authorized 198.18.0.9 {LINE} ttl=1m")),
        ]
    );
    let (a, nine) = (net("198.18.0.1"), net("198.18.0.9"));
    assert_eq!(
        writes(&k),
        [
            Write::Stamp(table("ssh"), vec![a]),
            Write::Move(table("ssh_renew"), table("ssh"), vec![a]),
            Write::Move(table("ssh_renew"), table("ssh"), vec![nine]),
        ]
    );
    // A renewal the kernel refuses: nothing said, the table kept for the
    // next poll.
    k.tables
        .insert("ssh_renew".into(), vec![entry("198.18.0.1", T + 3)]);
    k.fail = Some("ssh".into());
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 4),
        [Action::Fail(
            Level::Err,
            "<ssh_renew> in anchor pfknock: Operation not permitted".into()
        )]
    );
    assert_eq!(k.tables["ssh_renew"].len(), 1);
}

#[test]
fn a_renewal_is_known_without_listing_the_authorized_table() {
    let (cfg, mut m, mut k) = renewals_waiting();
    let cx = cx(&cfg);
    assert_eq!(poll(&mut m, &cx, &mut k, T + 2).len(), 2);
    // The writes said what the authorized table holds: it is not listed,
    // in this poll (whose statistics were read before the add) or later.
    assert_eq!(listed(&k), ["ssh_renew"]);
    assert_eq!(poll(&mut m, &cx, &mut k, T + 3), vec![]);
    assert_eq!(listed(&k), Vec::<String>::new());
    assert_eq!(m.known(&table("ssh")), Some(2));
    // Both count from their knock at T + 1 (as the intake stamped it):
    // the renewed host not from its first knock, the moved one not from
    // the move.
    assert_eq!(poll(&mut m, &cx, &mut k, T + 31), vec![]);
    assert_eq!(poll(&mut m, &cx, &mut k, T + 61), vec![]);
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 62),
        [
            info(&format!("expired 198.18.0.1 {LINE} age=1m1s ttl=1m")),
            info(&format!("expired 198.18.0.9 {LINE} age=1m1s ttl=1m")),
        ]
    );
    assert_eq!(listed(&k), Vec::<String>::new(), "due from what is known");
    assert!(k.tables["ssh"].is_empty());
}

/// Someone took 198.18.0.1 out of `<ssh>` by hand (`pfctl -T delete`)
/// while the intake held its knock again, which the kernel lets in all
/// the same: the stamp finds nothing, the move out of the intake puts it
/// back rather than dropping the knock, and the listing that follows
/// finds it there, with nothing more to say. (Before, the host ended in
/// neither table, and the log said it was removed.)
#[test]
fn a_renewal_that_finds_its_host_gone_puts_it_back() {
    let (cfg, mut m, mut k) = renewals_waiting();
    let cx = cx(&cfg);
    k.tables.insert("ssh".into(), vec![]);
    let out = poll(&mut m, &cx, &mut k, T + 2);
    assert_eq!(listed(&k), ["ssh_renew", "ssh"]);
    assert_eq!(
        out,
        [
            info(&format!("renewed 198.18.0.1 {LINE} ttl=1m")),
            info(&format!("authorized 198.18.0.9 {LINE} ttl=1m")),
        ]
    );
    let held: Vec<String> = k.tables["ssh"].iter().map(|e| e.net.to_string()).collect();
    assert_eq!(held, ["198.18.0.1", "198.18.0.9"]);
    assert!(k.tables["ssh_renew"].is_empty());
    assert_eq!(m.known(&table("ssh")), Some(2));
    assert_eq!(poll(&mut m, &cx, &mut k, T + 3), vec![]);
    assert_eq!(listed(&k), Vec::<String>::new());
}

#[test]
fn a_renewal_of_a_host_the_kernel_added_meanwhile_says_it_once() {
    let (cfg, mut m) = pf("");
    let cx = cx(&cfg);
    let mut k = Pf::with(&[("ssh", vec![]), ("ssh_renew", vec![])]);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    // 198.18.0.9 knocked twice between two polls: authorized by the first
    // knock (the daemon has not seen it yet), renewed by the second.
    k.tables
        .insert("ssh".into(), vec![entry("198.18.0.9", T + 1)]);
    k.tables
        .insert("ssh_renew".into(), vec![entry("198.18.0.9", T + 1)]);
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 2),
        [info(&format!("authorized 198.18.0.9 {LINE} ttl=1m"))]
    );
    assert_eq!(k.tables["ssh"].len(), 1);
}

#[test]
fn a_host_revoked_while_it_moves_stays_out() {
    let (cfg, mut m, mut k) = renewals_waiting();
    let cx = cx(&cfg);
    // 198.18.0.9 is revoked right after the daemon listed the renewal
    // table, before its writes (it was only there): the move finds it
    // gone from the intake and takes it back out; only the renewal is
    // said, and the authorized table's listing says nothing more.
    k.vanish = vec![net("198.18.0.9")];
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 2),
        [info(&format!("renewed 198.18.0.1 {LINE} ttl=1m"))]
    );
    let held = |t: &str| -> Vec<String> { k.tables[t].iter().map(|e| e.net.to_string()).collect() };
    assert_eq!(held("ssh"), ["198.18.0.1"]);
    assert_eq!(held("ssh_renew"), Vec::<String>::new());
    assert_eq!(listed(&k), ["ssh_renew", "ssh"]);
    assert_eq!(m.known(&table("ssh")), Some(1));
}

#[test]
fn without_renew_a_knock_again_changes_nothing_but_a_new_host_is_moved() {
    let (cfg, mut m) = pf("renew = false\n");
    let cx = cx(&cfg);
    let mut k = Pf::with(&[
        ("ssh", vec![entry("198.18.0.1", T - 30)]),
        ("ssh_renew", vec![]),
    ]);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    k.tables.insert(
        "ssh_renew".into(),
        vec![entry("198.18.0.1", T + 1), entry("198.18.0.9", T + 1)],
    );
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 2),
        [info(&format!("authorized 198.18.0.9 {LINE} ttl=1m"))]
    );
    let (a, nine) = (net("198.18.0.1"), net("198.18.0.9"));
    assert_eq!(
        writes(&k),
        [
            Write::Move(table("ssh_renew"), table("ssh"), vec![a]),
            Write::Move(table("ssh_renew"), table("ssh"), vec![nine]),
        ]
    );
    // 198.18.0.1 still counts from its first knock.
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 31),
        [info(&format!("expired 198.18.0.1 {LINE} age=1m1s ttl=1m"))]
    );
}

#[test]
fn a_knock_made_while_no_daemon_ran_keeps_its_age() {
    let (cfg, mut m) = pf("");
    let cx = cx(&cfg);
    // The intake stamped the knock 50 s before the daemon's first poll.
    // The first poll moves it without a word: what a start finds, the
    // start says (`Machine::reconcile`, tests/daemon.rs).
    let mut k = Pf::with(&[
        ("ssh", vec![]),
        ("ssh_renew", vec![entry("198.18.0.9", T - 50)]),
    ]);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    assert_eq!(k.tables["ssh"].len(), 1);
    assert!(k.tables["ssh_renew"].is_empty());
    assert_eq!(poll(&mut m, &cx, &mut k, T + 10), vec![]);
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 11),
        [info(&format!("expired 198.18.0.9 {LINE} age=1m1s ttl=1m"))]
    );
    assert!(k.tables["ssh"].is_empty());
}

/// 198.18.0.9 knocked at T + 1 and pf had no room to move it out of the
/// intake at the poll of T + 2 (writes to ssh fail, as an add does with
/// ENOMEM; still so on return): what that poll said.
pub(super) fn unmoved(extra: &str) -> (Config, Machine, Pf, Vec<Action>) {
    let (cfg, mut m) = pf(extra);
    let mut tables = vec![("ssh", vec![]), ("ssh_renew", vec![])];
    if extra.contains("close") {
        tables.push(("ssh_close", vec![]));
    }
    let mut k = Pf::with(&tables);
    assert_eq!(poll(&mut m, &cx(&cfg), &mut k, T), vec![]);
    k.tables
        .insert("ssh_renew".into(), vec![entry("198.18.0.9", T + 1)]);
    k.fail = Some("ssh".into());
    let out = poll(&mut m, &cx(&cfg), &mut k, T + 2);
    (cfg, m, k, out)
}

#[test]
fn a_move_pf_has_no_room_for_leaves_the_host_authorized_in_the_intake_until_its_ttl() {
    let (cfg, mut m, mut k, out) = unmoved("");
    let cx = cx(&cfg);
    assert_eq!(
        out,
        [
            info(&format!("authorized 198.18.0.9 {LINE} ttl=1m")),
            Action::Fail(
                Level::Err,
                "<ssh_renew> in anchor pfknock: Operation not permitted".into()
            ),
        ]
    );
    assert_eq!(k.tables["ssh_renew"].len(), 1, "still authorized there");
    // SIGINFO counts it where it is.
    assert_eq!(
        m.status(&cx, T + 2, false),
        [
            info("status <ssh> in anchor pfknock: 0 entries, next expiry none"),
            info(
                "status <ssh_renew> in anchor pfknock: 1 entries authorized there, waiting \
                 for room in <ssh>, next expiry in 1m"
            ),
        ]
    );
    // Tried again at each poll, said once.
    let out = poll(&mut m, &cx, &mut k, T + 3);
    assert!(out.iter().all(|a| matches!(a, Action::Fail(..))), "{out:?}");
    // Past its ttl it leaves the intake, as it would have left ssh.
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 62),
        [info(&format!("expired 198.18.0.9 {LINE} age=1m1s ttl=1m"))]
    );
    assert!(k.tables["ssh_renew"].is_empty());
    assert!(k.tables["ssh"].is_empty());
}

#[test]
fn room_again_moves_the_host_without_a_second_line() {
    let (cfg, mut m, mut k, _) = unmoved("");
    let cx = cx(&cfg);
    k.fail = None;
    assert_eq!(poll(&mut m, &cx, &mut k, T + 3), vec![]);
    assert_eq!(k.tables["ssh"].len(), 1);
    assert!(k.tables["ssh_renew"].is_empty());
    // It counts from its knock.
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 62),
        [info(&format!("expired 198.18.0.9 {LINE} age=1m1s ttl=1m"))]
    );
}

#[test]
fn a_close_knock_takes_out_a_host_left_in_the_intake() {
    let (cfg, mut m, mut k, _) = unmoved("close = 7010\n");
    k.fail = None;
    k.tables
        .insert("ssh_close".into(), vec![entry("198.18.0.9", T + 3)]);
    // Room again: moved (said already), then closed; said once, from
    // the knock.
    let out = poll(&mut m, &cx(&cfg), &mut k, T + 4);
    assert_eq!(
        out,
        [info(&format!(
            "closed 198.18.0.9 {LINE} age=3s ttl=1m by knock"
        ))]
    );
    assert!(
        k.tables["ssh"].is_empty() && k.tables["ssh_renew"].is_empty(),
        "{out:?}"
    );
}
