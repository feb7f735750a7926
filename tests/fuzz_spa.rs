//! The signed-knock checker against a million datagrams (or
//! PFKNOCK_FUZZ_CASES): random bytes of every length, and valid
//! datagrams with bytes flipped, cut, added or spliced from another. No
//! case may panic, and none may be admitted unless it is, byte for byte,
//! a datagram a key holder made, and then only once.
use std::net::IpAddr;

use pfknock::spa::{Action, Checker, Knock, Service, Target, key_id};

/// xorshift64*: the test's own randomness, seeded and printed, so a
/// failure can be run again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const NOW: u64 = 1_800_000_000;

#[test]
fn a_million_datagrams_panic_nothing_and_admit_only_what_was_signed() {
    let cases: usize = std::env::var("PFKNOCK_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let seed = std::env::var("PFKNOCK_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("fuzz_spa: {cases} cases, PFKNOCK_FUZZ_SEED={seed}");
    let mut rng = Rng(seed);
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let svc = |name: &str, nat| Service {
        name: name.into(),
        port: 62201,
        window: 30,
        nat,
        keys: vec![("alice".into(), key.verifying_key().to_bytes())],
        from: Vec::new(),
        families: vec![4, 6],
    };
    let mut checker = Checker::new(&[svc("ssh", false), svc("www", true)], 0);
    let from: IpAddr = "198.18.0.5".parse().unwrap();
    // Valid datagrams to start from: both services, every address kind,
    // open and close.
    let mut valid = Vec::new();
    for i in 0..64u8 {
        let target = match i % 3 {
            0 => Target::Sender,
            1 => Target::Addr(from),
            _ => Target::Addr("fd00::5".parse().unwrap()),
        };
        valid.push(
            Knock {
                action: if i % 2 == 0 {
                    Action::Open
                } else {
                    Action::Close
                },
                target,
                time: NOW - 10 + u64::from(i % 20),
                nonce: [i; 16],
                key_id: key_id(key.verifying_key().as_bytes()),
                service: if i % 4 < 2 { "ssh" } else { "www" }.into(),
            }
            .sign(&key),
        );
    }
    let mut admitted = std::collections::HashSet::new();
    let (mut ok, mut verified_shape) = (0usize, 0usize);
    for _ in 0..cases {
        let d = match rng.below(4) {
            0 => {
                let n = rng.below(300);
                (0..n).map(|_| rng.next() as u8).collect()
            }
            1 => {
                let mut d = valid[rng.below(valid.len())].clone();
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(d.len());
                    d[i] ^= 1 << rng.below(8);
                }
                d
            }
            2 => {
                let mut d = valid[rng.below(valid.len())].clone();
                if rng.below(2) == 0 {
                    d.truncate(rng.below(d.len()));
                } else {
                    d.extend((0..1 + rng.below(64)).map(|_| rng.next() as u8));
                }
                d
            }
            _ => {
                let a = &valid[rng.below(valid.len())];
                let b = &valid[rng.below(valid.len())];
                let cut = rng.below(a.len().min(b.len()));
                [&a[..cut], &b[cut..]].concat()
            }
        };
        if pfknock::spa::packet::parse(&d).is_ok() {
            verified_shape += 1;
        }
        let sender = if rng.below(2) == 0 {
            from
        } else {
            "198.18.0.6".parse().unwrap()
        };
        if let Ok(a) = checker.check(&d, sender, 62201, NOW) {
            ok += 1;
            assert!(
                valid.contains(&d),
                "admitted a datagram nobody signed: {d:02x?}"
            );
            assert!(admitted.insert(d.clone()), "admitted twice: {a:?}");
        }
    }
    eprintln!("fuzz_spa: {verified_shape} well-formed, {ok} admitted (each a signed one, once)");
    assert!(
        verified_shape > cases / 10,
        "the mutations hardly reach the signature"
    );
}
