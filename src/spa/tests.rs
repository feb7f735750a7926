//! The checker against datagrams made here: each refusal for its own
//! reason, in the order of cost, and nothing admitted twice.
use super::*;

const NOW: u64 = 1_800_000_000;

fn key(n: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[n; 32])
}

fn service(nat: bool) -> Service {
    Service {
        name: "ssh".into(),
        port: 62201,
        window: 30,
        nat,
        keys: vec![("alice".into(), key(1).verifying_key().to_bytes())],
        from: Vec::new(),
        families: vec![4, 6],
    }
}

fn knock(target: Target, time: u64, nonce: u8) -> Knock {
    Knock {
        action: Action::Open,
        target,
        time,
        nonce: [nonce; 16],
        key_id: key_id(&key(1).verifying_key().to_bytes()),
        service: "ssh".into(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn at(a: &str) -> Target {
    Target::Addr(ip(a))
}

#[test]
fn a_signed_knock_is_admitted_once_from_its_own_address() {
    let mut c = Checker::new(&[service(false)], 0);
    let d = knock(at("198.18.0.5"), NOW, 1).sign(&key(1));
    let a = c.check(&d, ip("198.18.0.5"), 62201, NOW + 3).unwrap();
    assert_eq!(
        (a.service.as_str(), a.addr, a.key.as_str(), a.action),
        ("ssh", ip("198.18.0.5"), "alice", ActionWord::Open)
    );
    // The same bytes again: from the same address, from another, later
    // in the window.
    for (from, t) in [
        ("198.18.0.5", NOW + 4),
        ("198.18.0.6", NOW + 5),
        ("198.18.0.5", NOW + 30),
    ] {
        assert_eq!(c.check(&d, ip(from), 62201, t), Err(Refused::Replay));
    }
    // After the window: stale, whatever the record says.
    assert_eq!(
        c.check(&d, ip("198.18.0.5"), 62201, NOW + 31),
        Err(Refused::Stale)
    );
    // An IPv4 sender seen on an IPv6 socket is the same sender.
    let d = knock(at("198.18.0.5"), NOW, 2).sign(&key(1));
    assert!(c.check(&d, ip("::ffff:198.18.0.5"), 62201, NOW).is_ok());
}

#[test]
fn each_wrong_part_is_refused_for_its_own_reason() {
    let mut c = Checker::new(&[service(false)], 0);
    let from = ip("198.18.0.5");
    let ok = knock(at("198.18.0.5"), NOW, 1);
    let check =
        |c: &mut Checker, k: &Knock, sk: &ed25519_dalek::SigningKey, port: u16, now: u64| {
            c.check(&k.sign(sk), from, port, now)
        };
    assert_eq!(check(&mut c, &ok, &key(1), 22, NOW), Err(Refused::Service));
    let mut other = ok.clone();
    other.service = "www".into();
    assert_eq!(
        check(&mut c, &other, &key(1), 62201, NOW),
        Err(Refused::Service)
    );
    assert_eq!(
        check(&mut c, &ok, &key(1), 62201, NOW + 31),
        Err(Refused::Stale)
    );
    assert_eq!(
        check(&mut c, &ok, &key(1), 62201, NOW - 31),
        Err(Refused::Stale)
    );
    // Another key's signature under alice's id; another id.
    assert_eq!(
        check(&mut c, &ok, &key(2), 62201, NOW),
        Err(Refused::Signature)
    );
    let mut unknown = ok.clone();
    unknown.key_id = key_id(&key(2).verifying_key().to_bytes());
    assert_eq!(
        check(&mut c, &unknown, &key(2), 62201, NOW),
        Err(Refused::Key)
    );
    // A flipped bit anywhere in the signed part or the signature.
    let d = ok.sign(&key(1));
    for i in [4usize, 22, 30, 40, 56, 60, d.len() - 1] {
        let mut x = d.clone();
        x[i] ^= 0x01;
        assert!(c.check(&x, from, 62201, NOW).is_err(), "byte {i}");
    }
    // Someone else's address, "the sender's", an unspecified one.
    for t in [at("198.18.0.6"), Target::Sender, at("0.0.0.0")] {
        let k = Knock {
            target: t,
            ..ok.clone()
        };
        assert_eq!(
            check(&mut c, &k, &key(1), 62201, NOW),
            Err(Refused::Address)
        );
    }
    // None of this used the nonce up: the knock itself still opens.
    assert!(check(&mut c, &ok, &key(1), 62201, NOW).is_ok());
}

#[test]
fn nat_takes_the_senders_address_and_a_signed_one_from_anywhere() {
    let mut c = Checker::new(&[service(true)], 0);
    let d = knock(Target::Sender, NOW, 1).sign(&key(1));
    assert_eq!(
        c.check(&d, ip("198.18.7.7"), 62201, NOW).unwrap().addr,
        ip("198.18.7.7")
    );
    let d = knock(at("fd00::7"), NOW, 2).sign(&key(1));
    assert_eq!(
        c.check(&d, ip("198.18.7.7"), 62201, NOW).unwrap().addr,
        ip("fd00::7")
    );
}

#[test]
fn a_close_is_admitted_as_such_and_old_stamps_refused_after_a_cold_start() {
    let mut c = Checker::new(&[service(false)], NOW + 10);
    let mut k = knock(at("198.18.0.5"), NOW + 10, 1);
    k.action = Action::Close;
    let a = c
        .check(&k.sign(&key(1)), ip("198.18.0.5"), 62201, NOW + 10)
        .unwrap();
    assert_eq!(a.action, ActionWord::Close);
    let k = knock(at("198.18.0.5"), NOW + 9, 2);
    assert_eq!(
        c.check(&k.sign(&key(1)), ip("198.18.0.5"), 62201, NOW + 10),
        Err(Refused::Stale)
    );
}

#[test]
fn from_and_family_bound_who_may_knock_and_what_opens() {
    let s = Service {
        from: vec!["198.18.0.0/24".into()],
        families: vec![4],
        ..service(true)
    };
    let mut c = Checker::new(&[s], 0);
    let d = |t, n| knock(t, NOW, n).sign(&key(1));
    // From outside `from`, or opening an address outside it, or of a
    // family the service does not take: refused.
    for (t, from, n) in [
        (Target::Sender, "198.18.1.5", 1),
        (at("198.18.1.5"), "198.18.0.5", 2),
        (at("fd00::5"), "198.18.0.5", 3),
    ] {
        assert_eq!(c.check(&d(t, n), ip(from), 62201, NOW), Err(Refused::From));
    }
    assert!(
        c.check(&d(Target::Sender, 4), ip("198.18.0.5"), 62201, NOW)
            .is_ok()
    );
}

#[test]
fn root_checks_again_and_keeps_its_own_record() {
    let mut listener = Checker::new(&[service(false)], 0);
    let mut root = Checker::new(&[service(false)], 0);
    let d = knock(at("198.18.0.5"), NOW, 1).sign(&key(1));
    let a = listener.check(&d, ip("198.18.0.5"), 62201, NOW).unwrap();
    assert_eq!(root.recheck(&a, NOW + 1), Ok(()));
    // A listener that lies, or was restarted and forgot: root refuses.
    assert_eq!(root.recheck(&a, NOW + 2), Err(Refused::Replay));
    let mut b = a.clone();
    b.nonce = [9; 16];
    assert_eq!(root.recheck(&b, NOW + 40), Err(Refused::Stale));
    let forged = Admitted {
        addr: ip("198.18.0.99"),
        ..b.clone()
    };
    assert_eq!(root.recheck(&forged, NOW), Err(Refused::Address));
    let unkeyed = Admitted {
        key: "mallory".into(),
        ..b.clone()
    };
    assert_eq!(root.recheck(&unkeyed, NOW), Err(Refused::Key));
    assert_eq!(root.recheck(&b, NOW), Ok(()));
}

#[test]
fn the_record_is_bounded_and_forgets_only_what_aged_out() {
    let mut r = Replay::default();
    for i in 0..NONCES_MAX as u64 {
        let mut n = [0u8; 16];
        n[..8].copy_from_slice(&i.to_be_bytes());
        assert!(r.insert([0; 8], n, if i == 0 { 10 } else { 100 }, 0));
    }
    assert!(!r.insert([0; 8], [0xff; 16], 100, 5), "full");
    assert!(
        r.insert([0; 8], [0xff; 16], 100, 11),
        "the one aged out made room"
    );
    assert_eq!(r.live(0).len(), NONCES_MAX);
    assert!(!r.seen([0; 8], [0; 16]));
}

#[test]
fn the_record_a_stop_keeps_refuses_the_same_replays_after_a_start() {
    let mut before = Checker::new(&[service(false)], 0);
    let d = knock(at("198.18.0.5"), NOW, 1).sign(&key(1));
    assert!(before.check(&d, ip("198.18.0.5"), 62201, NOW).is_ok());
    let (nb, live) = before.record(NOW + 10);
    assert_eq!((nb, live.len()), (0, 1));
    // Aged out by the time of the record: not kept.
    assert!(before.record(NOW + 31).1.is_empty());
    let mut after = Checker::new(&[service(false)], nb);
    after.remember(&live, NOW + 20);
    assert_eq!(
        after.check(&d, ip("198.18.0.5"), 62201, NOW + 20),
        Err(Refused::Replay)
    );
    let fresh = knock(at("198.18.0.5"), NOW + 20, 2).sign(&key(1));
    assert!(
        after
            .check(&fresh, ip("198.18.0.5"), 62201, NOW + 20)
            .is_ok()
    );
}

#[test]
fn a_setup_without_from_or_families_takes_any_sender_of_both_families() {
    let s: Service =
        serde_json::from_str(r#"{"name":"ssh","port":62201,"window":30,"nat":true,"keys":[]}"#)
            .unwrap();
    assert_eq!((s.from.len(), s.families), (0, vec![4, 6]));
}

#[test]
fn a_stamp_exactly_one_window_off_is_taken_one_more_second_is_not() {
    for skew in [-30i64, 30] {
        let mut listener = Checker::new(&[service(false)], 0);
        let mut root = Checker::new(&[service(false)], 0);
        let t = (NOW as i64 + skew) as u64;
        let d = knock(at("198.18.0.5"), t, 1).sign(&key(1));
        let a = listener.check(&d, ip("198.18.0.5"), 62201, NOW).unwrap();
        assert_eq!(root.recheck(&a, NOW), Ok(()), "skew {skew}");
        let late = knock(at("198.18.0.5"), t, 2).sign(&key(1));
        let off = (NOW as i64 - skew.signum()) as u64;
        assert_eq!(
            listener.check(&late, ip("198.18.0.5"), 62201, off),
            Err(Refused::Stale)
        );
        let b = Admitted {
            nonce: [2; 16],
            ..a
        };
        assert_eq!(root.recheck(&b, off), Err(Refused::Stale), "skew {skew}");
    }
}

#[test]
fn root_refuses_stamps_from_before_its_own_start_whatever_the_listener_took() {
    let mut listener = Checker::new(&[service(false)], 0);
    let mut root = Checker::new(&[service(false)], NOW + 10);
    for (t, n, want) in [(NOW + 9, 1, Err(Refused::Stale)), (NOW + 10, 2, Ok(()))] {
        let d = knock(at("198.18.0.5"), t, n).sign(&key(1));
        let a = listener
            .check(&d, ip("198.18.0.5"), 62201, NOW + 10)
            .unwrap();
        assert_eq!(root.recheck(&a, NOW + 10), want, "stamp {t}");
    }
}

#[test]
fn root_refuses_an_address_no_host_has_and_keeps_what_it_admitted() {
    let mut root = Checker::new(&[service(false)], 0);
    let a = Admitted {
        service: "ssh".into(),
        action: ActionWord::Open,
        addr: ip("224.0.0.1"),
        sender: ip("224.0.0.1"),
        key: "alice".into(),
        time: NOW,
        nonce: [1; 16],
    };
    assert_eq!(root.recheck(&a, NOW), Err(Refused::Address));
    let ok = Admitted {
        addr: ip("198.18.0.5"),
        sender: ip("198.18.0.5"),
        ..a
    };
    assert_eq!(root.recheck(&ok, NOW), Ok(()));
    // Kept until its stamp can no longer pass, then not.
    assert_eq!(root.record(NOW + 30).1.len(), 1);
    assert!(root.record(NOW + 31).1.is_empty());
    assert_eq!(root.remembered(), 1);
    // A reload keeps the record.
    let mut root = root.renewed(&[service(false)]);
    assert_eq!(root.recheck(&ok, NOW + 1), Err(Refused::Replay));
}

#[test]
fn the_words_of_the_log_are_each_their_own() {
    let mut w: Vec<&str> = Refused::ALL.iter().map(|r| r.words()).collect();
    assert!(w.iter().all(|x| x.len() > 4), "{w:?}");
    w.sort();
    w.dedup();
    assert_eq!(w.len(), Refused::ALL.len());
    assert_eq!(Refused::Signature.words(), "bad signature");
    assert_eq!(
        (Action::Open.word(), Action::Close.word()),
        ("open", "close")
    );
    assert_eq!(
        channel::refused_words(&[(Refused::Signature, 3), (Refused::Malformed, 2)]),
        "5 refused (3 bad signature, 2 malformed)"
    );
}

#[test]
fn names_of_1_to_64_bytes_make_datagrams_of_120_to_183() {
    assert_eq!((packet::MIN, packet::MAX), (120, 183));
    for n in [1, 64] {
        let mut k = knock(at("198.18.0.5"), NOW, 1);
        k.service = "s".repeat(n);
        let d = k.sign(&key(1));
        assert_eq!(d.len(), 119 + n);
        assert_eq!(packet::parse(&d).unwrap().knock, k);
    }
}

#[test]
fn root_checks_from_for_the_sender_and_the_address_alike() {
    let s = Service {
        from: vec!["198.18.0.0/24".into()],
        ..service(true)
    };
    let mut root = Checker::new(&[s], 0);
    let a = |addr: &str, sender: &str, n: u8| Admitted {
        service: "ssh".into(),
        action: ActionWord::Open,
        addr: ip(addr),
        sender: ip(sender),
        key: "alice".into(),
        time: NOW,
        nonce: [n; 16],
    };
    assert_eq!(
        root.recheck(&a("198.18.0.5", "198.18.9.9", 1), NOW),
        Err(Refused::From)
    );
    assert_eq!(
        root.recheck(&a("198.18.9.9", "198.18.0.5", 2), NOW),
        Err(Refused::From)
    );
    assert_eq!(root.recheck(&a("198.18.0.5", "198.18.0.6", 3), NOW), Ok(()));
    assert_eq!(root.recheck(&a("198.18.0.7", "198.18.0.6", 4), NOW), Ok(()));
    assert_eq!(root.remembered(), 2);
}
