use super::*;
use std::collections::BTreeMap;

fn v4(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xc612_0000 | n))
}

#[test]
fn times_survive_the_packing() {
    for (since, until) in [
        (0, 0),
        (1_800_000_000_000, 1_800_000_060_000),
        (1_800_000_000_123, 1_800_000_060_456),
        // An age past 2^31 ms is kept to the second.
        (1_800_000_000_000, 1_800_000_000_000 + 30 * 86_400_000),
        (-5_000, 5_000),
        // until before since: an age of 0.
        (10_000, 9_000),
    ] {
        let got = Packed::new(Auth { since, until }).get();
        assert_eq!(got.until, until);
        let want = since.min(until);
        assert!(
            (got.since - want).abs() < 1000 && got.since <= until,
            "{since} {until}: {got:?}"
        );
        if until - since < i64::from(SECONDS) {
            assert_eq!(got.since, want);
        }
    }
}

#[test]
fn deadlines_keep_their_order_and_the_entries_their_size() {
    let ms = [
        0,
        1,
        65_535,
        65_536,
        1 << 32,
        (1 << 32) - 1,
        1_800_000_000_000,
        1_800_000_000_001,
        UNTIL_MAX,
    ];
    let at = |until| Packed::new(Auth { since: 0, until });
    for a in ms {
        assert_eq!(Until::new(a).get(), a);
        for b in ms {
            assert_eq!(at(a).due().cmp(&at(b).due()), a.cmp(&b), "{a} {b}");
        }
        // Taken due: never due again, its times as they were.
        let mut p = at(a);
        p.take();
        assert_eq!((p.due(), p.get()), (NEVER, at(a).get()));
    }
    // Out of range: the nearest end.
    assert_eq!(Until::new(-1).get(), 0);
    assert_eq!(Until::new(i64::MAX).get(), UNTIL_MAX);
    assert!(!Until::new(i64::MAX).taken());
    use std::mem::{align_of, size_of};
    assert_eq!(size_of::<Packed>(), 10);
    assert_eq!(align_of::<Packed>(), 2);
}

#[test]
fn due_entries_come_in_order_once_and_moved_ones_when_they_are_due() {
    let mut b = Book::default();
    let s = b.id("ssh_4");
    let t = b.id("ssh_6");
    assert_eq!(b.id("ssh_4"), s);
    let six: IpAddr = "fd00::7".parse().unwrap();
    assert!(b.insert(
        s,
        v4(1),
        Auth {
            since: 0,
            until: 300
        }
    ));
    assert!(b.insert(
        s,
        v4(2),
        Auth {
            since: 0,
            until: 100
        }
    ));
    assert!(b.insert(
        t,
        six,
        Auth {
            since: 0,
            until: 200
        }
    ));
    // v4(1) renewed: due at 400, not at 300.
    assert!(!b.insert(
        s,
        v4(1),
        Auth {
            since: 0,
            until: 400
        }
    ));
    assert_eq!(b.count(s), 2);
    assert_eq!(b.len(), 3);
    assert_eq!(b.next_due(), Some(100));
    let due: Vec<IpAddr> = b.take_due(300).iter().map(|d| d.1).collect();
    assert_eq!(due, [v4(2), six]);
    // Taken due, still in the book until removed.
    assert_eq!(b.get(s, v4(2)).map(|a| a.until), Some(100));
    assert!(b.take_due(399).is_empty());
    assert_eq!(b.take_due(400).len(), 1);
    assert_eq!(
        b.remove(s, v4(1)),
        Some(Auth {
            since: 0,
            until: 400
        })
    );
    assert_eq!(b.remove(s, v4(1)), None);
    b.clear_set(s);
    assert_eq!(b.count(s), 0);
    assert_eq!(b.count(t), 1);
    // A longer ttl moves nothing (the kernel keeps its deadline); a
    // shorter one brings the deadline forward.
    let was = b.get(t, six).map(|a| a.until);
    assert_eq!(b.retime(t, 10_000), 0);
    assert_eq!(b.get(t, six).map(|a| a.until), was);
    assert_eq!(b.retime(t, 50), 1);
    assert_eq!(b.get(t, six).map(|a| a.until), Some(50));
    assert_eq!(b.take_due(60).len(), 1);
}

/// An entry taken due is not due again, and counts for no set's first
/// due, until it is given a deadline anew (the kernel still held it).
#[test]
fn an_entry_taken_due_is_due_again_only_with_a_new_deadline() {
    let mut b = Book::default();
    let (s, t) = (b.id("ssh_4"), b.id("ssh_6"));
    let six: IpAddr = "fd00::7".parse().unwrap();
    let at = |until| Auth { since: 0, until };
    b.insert(s, v4(1), at(400));
    b.insert(s, v4(2), at(100));
    b.insert(t, six, at(200));
    // At most ten: were a taken entry due again, it would come each time.
    assert_eq!(b.take_due_at_most(300, 10).len(), 2);
    assert_eq!(b.get(t, six), Some(at(200)));
    assert_eq!(b.next_due(), Some(400));
    assert_eq!((b.first_due(&[s]), b.first_due(&[t])), (Some(400), None));
    assert!(b.take_due_at_most(399, 10).is_empty());
    b.insert(t, six, at(350));
    assert_eq!(b.next_due(), Some(350));
    let due: Vec<IpAddr> = b.take_due_at_most(400, 10).iter().map(|d| d.1).collect();
    assert_eq!(due, [six, v4(1)]);
    assert_eq!(b.next_due(), None);
}

#[test]
fn at_most_so_many_due_are_taken_and_the_rest_stay_due() {
    let mut b = Book::default();
    let s = b.id("ssh_4");
    for i in 1..=5u8 {
        let a = IpAddr::V4(Ipv4Addr::new(198, 18, 0, i));
        b.insert(
            s,
            a,
            Auth {
                since: 0,
                until: 10 * i64::from(i),
            },
        );
    }
    let first: Vec<i64> = b
        .take_due_at_most(100, 2)
        .iter()
        .map(|d| d.2.until)
        .collect();
    assert_eq!(first, [10, 20]);
    assert_eq!(b.next_due(), Some(30));
    assert_eq!(b.take_due_at_most(100, 2).len(), 2);
    assert_eq!(b.take_due_at_most(100, 2).len(), 1);
    assert_eq!(b.next_due(), None);
}

/// `first_due` for every choice among `sets` against the least
/// deadline of a scan of them.
fn agrees(b: &Book, sets: [u16; 3]) {
    let [s, t, u] = sets;
    for ids in [&[s][..], &[t], &[u], &[s, u], &[s, t, u], &[]] {
        let scan = ids
            .iter()
            .flat_map(|i| b.iter_set(*i))
            .map(|(_, a)| a.until)
            .min();
        assert_eq!(b.first_due(ids), scan, "{ids:?}");
    }
}

/// `first_due` against a scan, as entries come, are renewed (to later
/// and to sooner), go, and are taken due; with one set's entries far
/// ahead of the other's, and with IPv6 beside IPv4.
#[test]
fn the_first_deadline_of_some_sets_is_the_least_of_theirs() {
    let mut b = Book::default();
    let s = b.id("ssh_4");
    let t = b.id("web_4");
    let u = b.id("ssh_6");
    let check = |b: &Book| agrees(b, [s, t, u]);
    let at = |until| Auth { since: 0, until };
    check(&b);
    // web's entries all come before ssh's.
    for n in 0..5000 {
        b.insert(t, v4(n), at(1_000 + i64::from(n)));
        if n % 7 == 0 {
            b.insert(s, v4(n), at(100_000 - i64::from(n)));
        }
        if n % 11 == 0 {
            let six = IpAddr::V6(Ipv6Addr::from(0xfd00_u128 << 112 | u128::from(n)));
            b.insert(u, six, at(50_000 + i64::from(n % 13) * 1000));
        }
    }
    check(&b);
    // Renewed, the soonest of ssh's.
    for n in (2500..5000).filter(|n| n % 7 == 0) {
        b.insert(s, v4(n), at(200_000 + i64::from(n)));
    }
    check(&b);
    // Renewed to sooner, removed, taken due.
    b.insert(s, v4(4998), at(10));
    check(&b);
    b.remove(s, v4(4998));
    b.remove(t, v4(0));
    check(&b);
    let taken = b.take_due_at_most(2_000, 100);
    assert_eq!(taken.len(), 100);
    for (i, a, _) in &taken {
        b.remove(*i, *a);
    }
    check(&b);
    b.clear_set(t);
    check(&b);
    // ssh's entries first now: renewed, one by one.
    let soonest: Vec<IpAddr> = {
        let mut v: Vec<(i64, IpAddr)> = b.iter_set(s).map(|(ip, a)| (a.until, ip)).collect();
        v.sort_unstable();
        v.iter().take(50).map(|x| x.1).collect()
    };
    for ip in soonest {
        b.insert(s, ip, at(300_000));
        check(&b);
    }
}

#[test]
fn renewals_come_due_once_and_take_no_room() {
    let mut b = Book::default();
    let s = b.id("ssh_4");
    for round in 0..50 {
        for n in 0..100 {
            b.insert(
                s,
                v4(n),
                Auth {
                    since: 0,
                    until: 1000 + round,
                },
            );
        }
    }
    assert_eq!(b.len(), 100);
    assert_eq!(b.room(), 128, "one block");
    let due = b.take_due(10_000);
    assert_eq!(due.len(), 100, "each once, at its last deadline");
    assert!(due.iter().all(|d| d.2.until == 1049));
}

/// Runs joined in (`insert_run`) hold what inserting their entries one
/// by one holds, and the book says the same of every entry: its times,
/// its set, which is due first and when. Runs in address order, as a
/// reading is taken in, with an address given twice in a run (the last
/// is kept), entries inserted between runs, and one run over entries
/// already held; the other set is untouched.
#[test]
fn runs_joined_in_hold_what_inserts_one_by_one_hold() {
    let (mut b, mut one) = (Book::default(), Book::default());
    let (s, t) = (b.id("ssh_4"), b.id("ssh_6"));
    assert_eq!((one.id("ssh_4"), one.id("ssh_6")), (s, t));
    let six = |n: u32| IpAddr::V6(Ipv6Addr::from(0xfd00_u128 << 112 | u128::from(n)));
    let auth = |n: u32| Auth {
        since: 1_800_000_000_000 + i64::from(n),
        until: 1_800_000_060_000 + i64::from(n % 97) * 1000,
    };
    for k in 0..6u32 {
        let mut run = Vec::new();
        for n in k * 1000..(k + 1) * 1000 {
            run.push((v4(n), auth(n)));
            run.push((six(n), auth(n + 1)));
        }
        // Given twice, the second with other times; and one held before
        // (from the last run), given anew.
        run.push((v4(k * 1000), auth(7)));
        if k > 0 {
            run.push((six(k * 1000 - 1), auth(3)));
        }
        for (a, x) in &run {
            one.insert(s, *a, *x);
        }
        b.insert_run(s, run);
        for bk in [&mut b, &mut one] {
            bk.insert(t, six(k), auth(k + 2));
            bk.insert(s, v4(100_000 + k), auth(k));
        }
    }
    let all: Vec<_> = one.iter().collect();
    assert_eq!(b.iter().collect::<Vec<_>>(), all);
    assert_eq!((b.count(s), b.count(t)), (12_006, 6));
    assert_eq!(b.get(s, v4(2000)), Some(auth(7)));
    assert_eq!(b.get(s, six(1999)), Some(auth(3)));
    assert_eq!(b.first_due(&[s]), one.first_due(&[s]));
    assert_eq!(b.first_due(&[t]), one.first_due(&[t]));
    let now = 1_800_000_060_000 + 5000;
    let due = b.take_due(now);
    assert_eq!(due, one.take_due(now));
    assert!(due.len() > 300);
    assert!(due.iter().all(|(i, a, x)| b.get(*i, *a) == Some(*x)));
}

/// A set whose keys changed by as many as it held when its maps were last
/// built (and at least `REBUILD_MIN`) has them built again, each entry
/// and deadline kept: hosts in address order, the oldest removed as new
/// ones come, as under churn, checked against a plain map. `settle`
/// builds a set `settle_later` named that changed since, and no other.
#[test]
fn churned_maps_are_built_again_with_every_entry() {
    let mut b = Book::default();
    let (s, t) = (b.id("ssh_4"), b.id("ssh_6"));
    let auth = |n: u32| Auth {
        since: 1_800_000_000_000 + i64::from(n),
        until: 1_800_000_060_000 + i64::from(n),
    };
    let n0 = 2 * REBUILD_MIN as u32;
    let mut model: BTreeMap<IpAddr, Auth> = (0..n0).map(|n| (v4(n), auth(n))).collect();
    b.insert_run(s, model.iter().map(|(a, x)| (*a, *x)).collect());
    assert_eq!(b.rebuilt, 1, "built once its run was in");
    b.settle_later(s, false);
    b.settle_later(t, false);
    assert!(!b.unsettled());
    b.settle();
    assert_eq!(b.rebuilt, 1, "nothing changed since");
    for k in 0..n0 {
        assert_eq!(b.remove(s, v4(k)), model.remove(&v4(k)));
        let n = n0 + k;
        assert!(b.insert(s, v4(n), auth(n)));
        model.insert(v4(n), auth(n));
        // Not new: no change to the maps' shape.
        assert!(!b.insert(s, v4(n), auth(n)));
    }
    assert_eq!(b.rebuilt, 3, "{} changes, twice the {n0} held", 2 * n0);
    let want: Vec<_> = model.iter().map(|(a, x)| (s, *a, *x)).collect();
    assert_eq!(b.iter().collect::<Vec<_>>(), want);
    assert_eq!(b.first_due(&[s]), Some(auth(n0).until));
    let due = b.take_due(auth(n0 + 9).until);
    assert_eq!(due, want[..10].to_vec());
    b.insert(s, v4(0), auth(0));
    b.settle_later(t, false);
    assert!(!b.unsettled());
    b.settle_later(s, false);
    assert!(b.unsettled());
    assert_eq!(b.rebuilt, 3, "later");
    b.settle();
    assert_eq!(b.rebuilt, 4, "changed since: built");
    assert!(!b.unsettled());
    assert_eq!(b.get(s, v4(0)), Some(auth(0)));
    assert_eq!(b.count(s), n0 as usize + 1);
    // Unchanged, but with more to come (what a reading left to their
    // events): built once they came.
    b.settle_later(s, true);
    assert!(b.unsettled());
    b.settle();
    assert_eq!(b.rebuilt, 5);
    assert!(!b.unsettled());
}
