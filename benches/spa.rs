//! What the signed-knock listener can read a second, by kind of datagram:
//! garbage (refused by its layout), a stale stamp, an unknown key, a bad
//! signature under a known key id (the dearest refusal: a full Ed25519
//! verification), and valid datagrams (verified and recorded). One core,
//! `spa::Checker` alone, as the listener runs it.
//!
//!     cargo bench --bench spa
//!
//! Figures go into notes, not into timed tests.

use std::net::IpAddr;
use std::time::Instant;

use pfknock::spa::{Action, Checker, Knock, Service, Target, key_id};

const NOW: u64 = 1_800_000_000;
const N: usize = 100_000;

fn main() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let other = ed25519_dalek::SigningKey::from_bytes(&[6; 32]);
    let from: IpAddr = "198.18.0.5".parse().unwrap();
    let svc = Service {
        name: "ssh".into(),
        port: 62201,
        window: 30,
        nat: false,
        keys: vec![("alice".into(), key.verifying_key().to_bytes())],
        from: Vec::new(),
        families: vec![4, 6],
    };
    let knock = |i: usize, time: u64, id: &ed25519_dalek::SigningKey| {
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
        Knock {
            action: Action::Open,
            target: Target::Addr(from),
            time,
            nonce,
            key_id: key_id(id.verifying_key().as_bytes()),
            service: "ssh".into(),
        }
    };
    let kinds: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "garbage (layout)",
            (0..N).map(|i| vec![i as u8; 150]).collect(),
        ),
        (
            "stale stamp",
            (0..N)
                .map(|i| knock(i, NOW - 600, &key).sign(&key))
                .collect(),
        ),
        (
            "unknown key id",
            (0..N).map(|i| knock(i, NOW, &other).sign(&other)).collect(),
        ),
        (
            "bad signature",
            (0..N).map(|i| knock(i, NOW, &key).sign(&other)).collect(),
        ),
        (
            "valid, admitted",
            (0..N).map(|i| knock(i, NOW, &key).sign(&key)).collect(),
        ),
    ];
    println!("{:<20} {:>12} {:>10}", "datagram", "per second", "ns each");
    for (what, ds) in kinds {
        let mut c = Checker::new(std::slice::from_ref(&svc), 0);
        let n = if what.starts_with("valid") {
            pfknock::spa::NONCES_MAX
        } else {
            N
        };
        let t = Instant::now();
        let mut ok = 0;
        for d in &ds[..n] {
            ok += usize::from(c.check(d, from, 62201, NOW).is_ok());
        }
        let el = t.elapsed();
        assert_eq!(ok, if what.starts_with("valid") { n } else { 0 }, "{what}");
        println!(
            "{what:<20} {:>12.0} {:>10.0}",
            n as f64 / el.as_secs_f64(),
            el.as_nanos() as f64 / n as f64
        );
    }
}
