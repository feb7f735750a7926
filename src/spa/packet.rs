//! The signed knock's datagram, version 1: how it is laid out, made and
//! read. Pure: no I/O, no clock (the caller gives the time).
//!
//! All integers are big-endian. Offsets in bytes:
//!
//! | off | len | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `PKS1` |
//! | 4 | 1 | action: 1 open, 2 close |
//! | 5 | 1 | address kind: 0 the sender's, 4 IPv4, 6 IPv6 |
//! | 6 | 16 | address: IPv4 in the first 4 bytes; unused bytes zero |
//! | 22 | 8 | time: seconds since 1970 |
//! | 30 | 16 | nonce: random |
//! | 46 | 8 | key id: the first 8 bytes of SHA-256 of the public key |
//! | 54 | 1 | n: the service name's length, 1 to 64 |
//! | 55 | n | the service name, as the config spells it |
//! | 55+n | 64 | Ed25519 signature of bytes 0 to 55+n |
//!
//! A datagram of any other length, or with any byte outside these
//! values, is refused before its signature is looked at.
#![forbid(unsafe_code)]

use std::net::IpAddr;

pub const MAGIC: &[u8; 4] = b"PKS1";
/// The bytes before the service name.
pub const HEAD: usize = 55;
pub const SIG: usize = 64;
pub const NAME_MAX: usize = 64;
/// The smallest and the largest datagram.
pub const MIN: usize = HEAD + 1 + SIG;
pub const MAX: usize = HEAD + NAME_MAX + SIG;

/// What a signed knock asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Open,
    Close,
}

impl Action {
    pub fn word(self) -> &'static str {
        match self {
            Action::Open => "open",
            Action::Close => "close",
        }
    }
}

/// The address to open: the one the datagram comes from (for clients
/// behind NAT), or one the client signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Sender,
    Addr(IpAddr),
}

/// A datagram's fields, signed or to be signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Knock {
    pub action: Action,
    pub target: Target,
    pub time: u64,
    pub nonce: [u8; 16],
    pub key_id: [u8; 8],
    pub service: String,
}

/// Why a datagram was refused, cheapest check first.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Refused {
    /// Wrong length, magic, action, address kind, padding or name.
    Malformed,
    /// No such service, or it takes no signed knocks on this port.
    Service,
    /// Stamped outside the time window (or before the replay record
    /// could cover it).
    Stale,
    /// No key of the service has this id.
    Key,
    /// The signature does not verify with the key.
    Signature,
    /// Its nonce was seen already in the window.
    Replay,
    /// A signed address that is not the sender's, without `nat`; or "the
    /// sender's" without `nat`; or an address no host has.
    Address,
    /// The sender or the address to open is outside the service's
    /// `from`, or of a family it does not take.
    From,
    /// The replay record is full: refused until nonces age out.
    Busy,
}

impl Refused {
    pub const ALL: [Refused; 9] = [
        Refused::Malformed,
        Refused::Service,
        Refused::Stale,
        Refused::Key,
        Refused::Signature,
        Refused::Replay,
        Refused::Address,
        Refused::From,
        Refused::Busy,
    ];
    pub fn words(self) -> &'static str {
        match self {
            Refused::Malformed => "malformed",
            Refused::Service => "unknown service",
            Refused::Stale => "outside the time window",
            Refused::Key => "unknown key",
            Refused::Signature => "bad signature",
            Refused::Replay => "replayed",
            Refused::Address => "address not the sender's",
            Refused::From => "outside the service's from or family",
            Refused::Busy => "replay record full",
        }
    }
}

/// A service name as a datagram may carry it: the config's name syntax.
fn name_ok(b: &[u8]) -> bool {
    (1..=NAME_MAX).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

impl Knock {
    /// The signed part: bytes 0 to 55+n.
    pub fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MAX);
        b.extend_from_slice(MAGIC);
        b.push(match self.action {
            Action::Open => 1,
            Action::Close => 2,
        });
        let mut addr = [0u8; 16];
        b.push(match self.target {
            Target::Sender => 0,
            Target::Addr(IpAddr::V4(a)) => {
                addr[..4].copy_from_slice(&a.octets());
                4
            }
            Target::Addr(IpAddr::V6(a)) => {
                addr = a.octets();
                6
            }
        });
        b.extend_from_slice(&addr);
        b.extend_from_slice(&self.time.to_be_bytes());
        b.extend_from_slice(&self.nonce);
        b.extend_from_slice(&self.key_id);
        b.push(self.service.len() as u8);
        b.extend_from_slice(self.service.as_bytes());
        b
    }

    /// The datagram: the body and its signature.
    pub fn sign(&self, key: &ed25519_dalek::SigningKey) -> Vec<u8> {
        use ed25519_dalek::Signer;
        let mut b = self.body();
        let sig = key.sign(&b);
        b.extend_from_slice(&sig.to_bytes());
        b
    }
}

/// A datagram's fields, read but not yet verified: the signed bytes and
/// the signature come with them.
pub struct Unverified<'a> {
    pub knock: Knock,
    pub body: &'a [u8],
    pub sig: ed25519_dalek::Signature,
}

/// Read a datagram's layout; nothing here trusts it yet.
pub fn parse(d: &[u8]) -> Result<Unverified<'_>, Refused> {
    use Refused::Malformed;
    if !(MIN..=MAX).contains(&d.len()) || &d[..4] != MAGIC {
        return Err(Malformed);
    }
    let n = d[54] as usize;
    if d.len() != HEAD + n + SIG || !name_ok(&d[HEAD..HEAD + n]) {
        return Err(Malformed);
    }
    let action = match d[4] {
        1 => Action::Open,
        2 => Action::Close,
        _ => return Err(Malformed),
    };
    let a: [u8; 16] = d[6..22].try_into().expect("16 bytes");
    let target = match d[5] {
        0 if a == [0; 16] => Target::Sender,
        4 if a[4..] == [0; 12] => {
            Target::Addr(IpAddr::from(<[u8; 4]>::try_from(&a[..4]).expect("4")))
        }
        6 => Target::Addr(IpAddr::from(a)),
        _ => return Err(Malformed),
    };
    let body = &d[..HEAD + n];
    let sig = ed25519_dalek::Signature::from_bytes(
        d[HEAD + n..].try_into().expect("the length was checked"),
    );
    Ok(Unverified {
        knock: Knock {
            action,
            target,
            time: u64::from_be_bytes(d[22..30].try_into().expect("8")),
            nonce: d[30..46].try_into().expect("16"),
            key_id: d[46..54].try_into().expect("8"),
            service: String::from_utf8(d[HEAD..HEAD + n].to_vec()).map_err(|_| Malformed)?,
        },
        body,
        sig,
    })
}

/// Can a host have this address (not unspecified, multicast, broadcast
/// or loopback from afar)?
pub fn host_address(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => {
            !(v.is_unspecified() || v.is_multicast() || v.is_broadcast() || v.octets()[0] == 0)
        }
        IpAddr::V6(v) => !(v.is_unspecified() || v.is_multicast()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knock(target: Target, service: &str) -> Knock {
        Knock {
            action: Action::Open,
            target,
            time: 1_800_000_000,
            nonce: [9; 16],
            key_id: [1, 2, 3, 4, 5, 6, 7, 8],
            service: service.into(),
        }
    }

    #[test]
    fn a_datagram_reads_back_as_it_was_made_and_lies_where_the_table_says() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        for t in [
            Target::Sender,
            Target::Addr("198.18.0.5".parse().unwrap()),
            Target::Addr("fd00::5".parse().unwrap()),
        ] {
            let k = knock(t, "ssh");
            let d = k.sign(&key);
            assert_eq!(d.len(), HEAD + 3 + SIG);
            assert_eq!(&d[..4], b"PKS1");
            assert_eq!(&d[22..30], &1_800_000_000u64.to_be_bytes());
            assert_eq!(&d[55..58], b"ssh");
            let u = parse(&d).unwrap();
            assert_eq!(u.knock, k);
            use ed25519_dalek::Verifier;
            assert!(key.verifying_key().verify(u.body, &u.sig).is_ok());
        }
        let d = knock(Target::Addr("198.18.0.5".parse().unwrap()), "ssh").sign(&key);
        assert_eq!(d[5], 4);
        assert_eq!(&d[6..10], &[198, 18, 0, 5]);
    }

    #[test]
    fn the_datagram_in_docs_spa_md_is_the_one_this_code_makes() {
        let doc = include_str!("../../docs/spa.md");
        let want = doc
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("504b5331"))
            .expect("the datagram in docs/spa.md");
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let public: String = key
            .verifying_key()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(doc.contains(&public), "docs/spa.md: public key");
        let k = Knock {
            action: Action::Open,
            target: Target::Addr("198.51.100.7".parse().unwrap()),
            time: 1_800_000_000,
            nonce: core::array::from_fn(|i| i as u8),
            key_id: crate::spa::key_id(key.verifying_key().as_bytes()),
            service: "ssh".into(),
        };
        let got: String = k.sign(&key).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn any_byte_out_of_place_is_malformed() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let d = knock(Target::Addr("198.18.0.5".parse().unwrap()), "ssh").sign(&key);
        let bad = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut x = d.clone();
            f(&mut x);
            parse(&x).err()
        };
        assert_eq!(bad(&|x| x.truncate(x.len() - 1)), Some(Refused::Malformed));
        assert_eq!(bad(&|x| x.push(0)), Some(Refused::Malformed));
        assert_eq!(bad(&|x| x[0] = b'X'), Some(Refused::Malformed));
        assert_eq!(bad(&|x| x[4] = 3), Some(Refused::Malformed));
        assert_eq!(bad(&|x| x[5] = 5), Some(Refused::Malformed));
        assert_eq!(bad(&|x| x[12] = 1), Some(Refused::Malformed));
        assert_eq!(bad(&|x| x[54] = 4), Some(Refused::Malformed));
        assert_eq!(bad(&|x| x[56] = b' '), Some(Refused::Malformed));
        assert!(parse(&d).is_ok());
        assert!(parse(&[]).is_err());
        assert!(parse(&[0u8; MAX + 1]).is_err());
    }
}
