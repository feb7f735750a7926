use super::*;

fn key(set: &str, addr: &str) -> (String, IpAddr) {
    (set.to_owned(), addr.parse().unwrap())
}

/// The records by set number keep IPv4 and IPv6 hosts apart, each to
/// its own set: a host that left is known as left until it is back,
/// one said gone is said gone until its event comes, and the room
/// goes with them.
#[test]
fn records_by_set_number_keep_each_family_and_set_apart() {
    let mut k = Knocks::default();
    let hosts = [
        key("ssh_4", "198.18.0.1"),
        key("ssh_6", "fd00::1"),
        key("web_6", "fd00::1"),
    ];
    for h in &hosts[..2] {
        k.gone(h.clone());
    }
    k.say(hosts[2].clone(), None);
    assert!(k.was_removed("ssh_4", hosts[0].1));
    assert!(k.was_removed("ssh_6", hosts[1].1));
    assert!(!k.was_removed("web_6", hosts[1].1));
    assert!(!k.was_removed("ssh_6", "fd00::2".parse().unwrap()));
    assert!(!k.was_removed("ssh_4", "198.18.0.2".parse().unwrap()));
    assert_eq!(k.said(&hosts[2]), Some(None));
    assert_eq!(k.said(&hosts[1]), None);
    assert!(!k.none_said());
    // Back: no longer left, and only once.
    assert!(k.unremove(&hosts[1]));
    assert!(!k.unremove(&hosts[1]));
    assert!(!k.was_removed("ssh_6", hosts[1].1));
    assert!(k.was_removed("ssh_4", hosts[0].1));
    assert_eq!(k.unsay(&hosts[2]), Some(None));
    assert_eq!(k.unsay(&hosts[2]), None);
    assert!(k.none_said());
    assert_eq!(k.said_room(), 0);
    // A reload deleted ssh_4: its records go, the others stay.
    k.gone(hosts[1].clone());
    k.drop_set("ssh_4");
    assert!(!k.was_removed("ssh_4", hosts[0].1));
    assert!(k.was_removed("ssh_6", hosts[1].1));
}

/// What changed during the start's reading, each way it is kept, is
/// known as changed to the compare with the record: during the
/// reading, and once it is taken in for a compare (not after an
/// overrun's), until the compare is done; nothing else is.
#[test]
fn what_changed_during_the_reading_is_known_to_the_compare() {
    let a = Auth {
        since: 0,
        until: 5_000,
    };
    let changed = |k: &Knocks, (set, addr): &(String, IpAddr)| k.changed_while_read(set, *addr);
    let hosts = [
        key("ssh_4", "198.18.0.1"), // said with an element
        key("ssh_4", "198.18.0.2"), // said gone
        key("ssh_4", "198.18.0.3"), // left
        key("ssh_6", "fd00::4"),    // allowed
        key("ssh_4", "198.18.0.5"), // waiting
        key("ssh_4", "198.18.0.6"), // knocked again
        key("ssh_4", "198.18.0.7"), // closed
        key("web_4", "198.18.0.8"), // its set flushed
    ];
    let others = [key("ssh_4", "198.18.0.9"), key("ssh_6", "fd00::1")];
    for for_compare in [true, false] {
        let mut k = Knocks::default();
        assert!(!k.any_changed_while_read());
        k.say(hosts[0].clone(), Some(a));
        k.say(hosts[1].clone(), None);
        k.gone(hosts[2].clone());
        k.allow(hosts[3].clone(), a);
        k.waiting.insert(hosts[4].clone(), None);
        k.again.insert(hosts[5].clone(), 1);
        k.closed.insert(hosts[6].clone());
        k.flush(hosts[7].0.clone());
        assert!(k.any_changed_while_read());
        assert!(hosts.iter().all(|h| changed(&k, h)), "during the reading");
        assert!(!others.iter().any(|h| changed(&k, h)));
        k.read(for_compare);
        let kept = hosts.iter().filter(|h| changed(&k, h)).count();
        // Those said, waiting, knocked again and closed stay until
        // their events come; the rest only for a compare.
        assert_eq!(kept, if for_compare { 8 } else { 5 }, "{for_compare}");
        k.compared();
        assert!(!changed(&k, &hosts[2]) && !changed(&k, &hosts[3]));
        assert!(!changed(&k, &hosts[7]));
        assert!(!others.iter().any(|h| changed(&k, h)));
    }
}

/// One said with an element is kept with its deadline, which comes
/// due once; said gone since, it is no longer due.
#[test]
fn those_said_come_due_once_unless_said_gone() {
    let mut k = Knocks::default();
    let (a, b) = (key("ssh_6", "fd00::7"), key("ssh_4", "198.18.0.7"));
    let (at5, at6) = (
        Auth {
            since: 0,
            until: 5_000,
        },
        Auth {
            since: 0,
            until: 6_000,
        },
    );
    k.say(a.clone(), Some(at5));
    k.say(b.clone(), Some(at6));
    assert_eq!(k.next_due(), Some(5_000));
    assert_eq!(k.said(&a), Some(Some(at5)));
    k.gone(b.clone());
    assert_eq!(k.said(&b), Some(None));
    assert_eq!(k.take_due(10_000), vec![(a.0.clone(), a.1, at5)]);
    assert_eq!(k.take_due(10_000), vec![]);
    assert_eq!(k.unsay(&a), Some(Some(at5)));
}

/// Once the reading is taken in, the records of hosts others added are
/// handed over set by set, and those of hosts others added and deleted
/// again go with nothing to take in; a knock's record, with what its
/// look-up found or that it was gone, stays for its knock's event.
#[test]
fn records_are_handed_over_but_a_knocks_which_waits_for_its_event() {
    let mut k = Knocks::default();
    let at = |until| Auth { since: 0, until };
    let (added, again) = (key("ssh_4", "198.18.0.1"), key("ssh_6", "fd00::1"));
    let (gone, knock, knock_gone) = (
        key("ssh_4", "198.18.0.2"),
        key("ssh_4", "198.18.0.3"),
        key("ssh_6", "fd00::3"),
    );
    k.say(added.clone(), Some(at(5_000)));
    k.say(again.clone(), Some(at(6_000)));
    k.say(gone.clone(), Some(at(7_000)));
    k.gone(gone.clone());
    k.say_knock(knock.clone());
    k.say(knock.clone(), Some(at(8_000)));
    k.say_knock(knock_gone.clone());
    let mut got: Vec<(String, IpAddr, Auth)> = Vec::new();
    for (set, mut r) in k.take_records() {
        while let Some((a, auth)) = r.pop_first() {
            got.push((set.clone(), a, auth));
        }
    }
    got.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
    let want = [(added, at(5_000)), (again, at(6_000))].map(|((s, a), t)| (s, a, t));
    assert_eq!(got, want);
    for g in [&gone, &want_key(&want[0]), &want_key(&want[1])] {
        assert_eq!(k.said(g), None, "{g:?}");
    }
    assert_eq!(k.said(&knock), Some(Some(at(8_000))));
    assert_eq!(k.said(&knock_gone), Some(None));
    assert!(
        k.take_records()
            .iter_mut()
            .all(|(_, r)| r.pop_first().is_none())
    );
    assert_eq!(k.said(&knock), Some(Some(at(8_000))), "still its event's");
}

fn want_key((s, a, _): &(String, IpAddr, Auth)) -> (String, IpAddr) {
    (s.clone(), *a)
}
