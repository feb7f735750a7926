//! Idle expiry where the daemon polls (pf): a table whose packets moved
//! is listed to see whose, at most every sixteenth of the ttl while
//! nothing in it is due.

use super::polls::{Pf, T, entry, listed, pf, poll};
use super::*;

/// A busy idle table is listed at most every ttl / 16, so an expiry
/// comes at most that late after the host's last packet, never early.
#[test]
fn an_idle_expiry_with_traffic_is_late_by_at_most_a_sixteenth_of_the_ttl() {
    let (cfg, mut m) = pf("expire = \"idle\"\n");
    let cx = cx(&cfg);
    let mut one = entry("198.18.0.1", T - 5);
    one.counted = true;
    let mut k = Pf::with(&[("ssh", vec![one]), ("ssh_renew", vec![])]);
    let mut lists = Vec::new();
    let mut said = Vec::new();
    for t in T..T + 100 {
        // .1 sends a packet every second until T + 20.
        if t <= T + 20 {
            k.tables.get_mut("ssh").unwrap()[0].packets += 1;
            *k.packets.entry("ssh".into()).or_default() += 1;
        }
        let out = poll(&mut m, &cx, &mut k, t);
        if !listed(&k).is_empty() {
            lists.push(t - T);
        }
        said.extend(out.into_iter().map(|a| (t, a)));
    }
    let at = said
        .iter()
        .find(|(_, a)| matches!(a, Action::Log(_, l) if l.starts_with("expired 198.18.0.1")))
        .map(|(t, _)| *t)
        .expect("expired");
    // Last packet T + 20, counted by a listing at most 3 s later.
    assert!((T + 81..=T + 84).contains(&at), "expired at T + {}", at - T);
    // A listing every 3 s while the traffic lasted, not every second,
    // and one when the expiry came due.
    assert_eq!(lists, [0, 3, 6, 9, 12, 15, 18, 21, 82]);
}

/// The wait for a busy idle table's listing is for tables with nothing
/// due: a host due while another's traffic moves the counters expires on
/// time, not a sixteenth of the ttl late.
#[test]
fn a_busy_idle_table_with_a_host_due_is_listed_at_once() {
    let (cfg, mut m) = pf("expire = \"idle\"\n");
    let cx = cx(&cfg);
    let mut busy = entry("198.18.0.1", T - 5);
    busy.counted = true;
    let mut quiet = entry("198.18.0.2", T - 5);
    quiet.counted = true;
    let mut k = Pf::with(&[("ssh", vec![busy, quiet]), ("ssh_renew", vec![])]);
    let mut said = Vec::new();
    for t in T..T + 70 {
        k.tables.get_mut("ssh").unwrap()[0].packets += 1;
        *k.packets.entry("ssh".into()).or_default() += 1;
        let out = poll(&mut m, &cx, &mut k, t);
        said.extend(out.into_iter().map(|a| (t - T, a)));
    }
    assert_eq!(
        said,
        [(
            61,
            info(&format!("expired 198.18.0.2 {LINE} idle=1m1s ttl=1m"))
        )]
    );
    let left: Vec<String> = k.tables["ssh"].iter().map(|e| e.net.to_string()).collect();
    assert_eq!(left, ["198.18.0.1"]);
}

#[test]
fn an_idle_expiry_table_is_listed_when_its_counters_move() {
    let (cfg, mut m) = pf("expire = \"idle\"\n");
    let cx = cx(&cfg);
    let mut k = Pf::with(&[
        ("ssh", vec![entry("198.18.0.1", T - 5)]),
        ("ssh_renew", vec![]),
    ]);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    assert_eq!(poll(&mut m, &cx, &mut k, T + 1), vec![]);
    assert_eq!(listed(&k), Vec::<String>::new(), "no traffic: not listed");
    // Traffic within a sixteenth of the ttl (60 s / 16: 3 s) of the last
    // listing waits; then the table is listed, to see whose.
    k.packets.insert("ssh".into(), 12);
    assert_eq!(poll(&mut m, &cx, &mut k, T + 2), vec![]);
    assert_eq!(listed(&k), Vec::<String>::new(), "traffic: waits");
    assert_eq!(poll(&mut m, &cx, &mut k, T + 3), vec![]);
    assert_eq!(listed(&k), ["ssh"], "traffic: listed, to see whose");
    assert_eq!(poll(&mut m, &cx, &mut k, T + 4), vec![]);
    assert_eq!(listed(&k), Vec::<String>::new());
    // An age-expiry table is not listed for traffic.
    let (cfg, mut m) = pf("");
    let cx = super::cx(&cfg);
    assert_eq!(poll(&mut m, &cx, &mut k, T), vec![]);
    k.packets.insert("ssh".into(), 30);
    assert_eq!(poll(&mut m, &cx, &mut k, T + 1), vec![]);
    assert_eq!(listed(&k), Vec::<String>::new());
    // nftables polled refreshes entries on traffic itself: an idle
    // table is listed at every poll.
    let (cfg, _) = pf("expire = \"idle\"\n");
    let mut n = Machine::polling(&cfg, true);
    let mut k = Pf::with(&[("ssh", vec![entry("198.18.0.1", T - 5)])]);
    let cx = super::cx(&cfg);
    assert_eq!(poll(&mut n, &cx, &mut k, T), vec![]);
    assert_eq!(poll(&mut n, &cx, &mut k, T + 1), vec![]);
    assert_eq!(listed(&k), ["ssh"]);
}
