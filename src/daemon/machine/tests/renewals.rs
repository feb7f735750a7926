//! Renewals where the daemon polls (pf): an authorized host that knocks
//! again lands in the renewal table; the daemon stamps it anew in the
//! authorized table and empties the renewal table, and knows what the
//! authorized table holds from its writes, without listing it.

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
            Write::Put(table("ssh"), vec![nine]),
            Write::Delete(table("ssh_renew"), vec![a, nine]),
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
    // The renewed host counts from its stamp, not from its first knock.
    assert_eq!(poll(&mut m, &cx, &mut k, T + 31), vec![]);
    assert_eq!(poll(&mut m, &cx, &mut k, T + 62), vec![]);
    assert_eq!(
        poll(&mut m, &cx, &mut k, T + 63),
        [
            info(&format!("expired 198.18.0.1 {LINE} age=1m1s ttl=1m")),
            info(&format!("expired 198.18.0.9 {LINE} age=1m1s ttl=1m")),
        ]
    );
    assert_eq!(listed(&k), Vec::<String>::new(), "due from what is known");
    assert!(k.tables["ssh"].is_empty());
}

#[test]
fn a_renewal_that_finds_its_host_gone_lists_the_table() {
    let (cfg, mut m, mut k) = renewals_waiting();
    let cx = cx(&cfg);
    // Someone deleted 198.18.0.1 after it knocked again: the stamp finds
    // nothing, and the listing that follows says it left.
    k.tables.insert("ssh".into(), vec![]);
    let out = poll(&mut m, &cx, &mut k, T + 2);
    assert_eq!(listed(&k), ["ssh_renew", "ssh"]);
    assert_eq!(
        out,
        [
            info(&format!("renewed 198.18.0.1 {LINE} ttl=1m")),
            info(&format!("authorized 198.18.0.9 {LINE} ttl=1m")),
            info(&format!("removed 198.18.0.1 {LINE} age=32s ttl=1m")),
        ]
    );
    assert_eq!(m.known(&table("ssh")), Some(1));
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
