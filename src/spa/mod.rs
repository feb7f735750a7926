//! Signed knocks (single-packet authorization): one UDP datagram, signed
//! with the client's own Ed25519 key, asks to open (or close) a service
//! for an address. The server holds public keys only, one file per
//! client. `packet` is the datagram's layout; `Checker` decides, from
//! the bytes, the sender and the time, whether a datagram is admitted;
//! `keys` reads and writes key files; `listen` is the unprivileged
//! process that reads the datagrams, and `channel` what it tells root.
//!
//! The order of the checks is the order of their cost: layout, service,
//! time window, key id, replay record, signature, address. Only a
//! datagram whose signature verifies enters the replay record, so a
//! forger cannot fill it.
#![forbid(unsafe_code)]

pub mod channel;
pub mod keys;
pub mod listen;
pub mod packet;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

pub use packet::{Action, Knock, Refused, Target};

/// A client's public key, as its file names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubKey {
    /// The file's name without `.pub`: what the log calls the key.
    pub name: String,
    pub bytes: [u8; 32],
}

/// The first 8 bytes of SHA-256 of a public key.
pub fn key_id(public: &[u8; 32]) -> [u8; 8] {
    use sha2::Digest;
    let h = sha2::Sha256::digest(public);
    h[..8].try_into().expect("32 bytes")
}

/// One service's signed knocks, as the checker needs them.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Service {
    pub name: String,
    pub port: u16,
    /// Seconds a stamp may be off the receiver's clock, either way.
    pub window: u64,
    /// Take "the sender's address", and signed addresses from anywhere.
    pub nat: bool,
    pub keys: Vec<(String, [u8; 32])>,
    /// The service's `from` (networks, as the config writes them): the
    /// sender and the address opened must be in one. Empty: any.
    #[serde(default)]
    pub from: Vec<String>,
    /// The address families the service takes: 4, 6, or both.
    #[serde(default = "both")]
    pub families: Vec<u8>,
}

fn both() -> Vec<u8> {
    vec![4, 6]
}

/// What an admitted datagram asks for.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Admitted {
    pub service: String,
    pub action: ActionWord,
    pub addr: IpAddr,
    pub sender: IpAddr,
    pub key: String,
    pub time: u64,
    pub nonce: [u8; 16],
}

/// `Action` as the channel carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ActionWord {
    Open,
    Close,
}

impl From<Action> for ActionWord {
    fn from(a: Action) -> Self {
        match a {
            Action::Open => ActionWord::Open,
            Action::Close => ActionWord::Close,
        }
    }
}

/// A nonce remembered: the key id, the nonce, and until when.
pub type Seen = ([u8; 8], [u8; 16], u64);

/// The most nonces remembered: beyond, signed knocks are refused until
/// the oldest age out (only a key holder can fill it).
pub const NONCES_MAX: usize = 1 << 16;

/// Nonces seen within their window, each kept until its stamp can no
/// longer pass the time check.
#[derive(Default, Debug)]
pub struct Replay {
    seen: HashMap<([u8; 8], [u8; 16]), u64>,
}

impl Replay {
    pub fn seen(&self, key: [u8; 8], nonce: [u8; 16]) -> bool {
        self.seen.contains_key(&(key, nonce))
    }
    /// Remember a nonce until `until` (seconds since 1970); false when
    /// the record is full even after forgetting what aged out.
    pub fn insert(&mut self, key: [u8; 8], nonce: [u8; 16], until: u64, now: u64) -> bool {
        if self.seen.len() >= NONCES_MAX {
            self.seen.retain(|_, t| *t >= now);
            if self.seen.len() >= NONCES_MAX {
                return false;
            }
        }
        self.seen.insert((key, nonce), until);
        true
    }
    /// What is remembered still at `now`: key id, nonce, until.
    pub fn live(&self, now: u64) -> Vec<Seen> {
        let mut v: Vec<_> = self
            .seen
            .iter()
            .filter(|(_, t)| **t >= now)
            .map(|((k, n), t)| (*k, *n, *t))
            .collect();
        v.sort_unstable();
        v
    }
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

struct Known {
    svc: Service,
    keys: HashMap<[u8; 8], (String, ed25519_dalek::VerifyingKey)>,
    from: Vec<crate::name::Net>,
}

impl Known {
    /// May this address knock, or be opened: in `from`, of a family the
    /// service takes?
    fn admits(&self, a: IpAddr) -> bool {
        let af = if a.is_ipv4() { 4 } else { 6 };
        self.svc.families.contains(&af)
            && (self.from.is_empty() || self.from.iter().any(|n| n.contains(a)))
    }
}

/// The checks, in order, with the replay record they keep.
pub struct Checker {
    services: BTreeMap<String, Known>,
    replay: Replay,
    /// Stamps before this are refused: after a start without a replay
    /// record, what an earlier process admitted could otherwise pass
    /// again.
    not_before: u64,
}

impl Checker {
    /// The checker for these services. A key that is not a point of the
    /// curve is left out (the config check refuses it first). Stamps
    /// before `not_before` are refused.
    pub fn new(services: &[Service], not_before: u64) -> Checker {
        let services = services
            .iter()
            .map(|s| {
                let keys = s
                    .keys
                    .iter()
                    .filter_map(|(n, b)| {
                        let k = ed25519_dalek::VerifyingKey::from_bytes(b).ok()?;
                        Some((key_id(b), (n.clone(), k)))
                    })
                    .collect();
                // A network that does not read is left out: `from` then
                // admits less, never more (the config check refuses it
                // first).
                let from = s.from.iter().filter_map(|n| n.parse().ok()).collect();
                (
                    s.name.clone(),
                    Known {
                        svc: s.clone(),
                        keys,
                        from,
                    },
                )
            })
            .collect();
        Checker {
            services,
            replay: Replay::default(),
            not_before,
        }
    }

    /// Decide on a datagram that came from `from` to `port` at `now`.
    pub fn check(
        &mut self,
        d: &[u8],
        from: IpAddr,
        port: u16,
        now: u64,
    ) -> Result<Admitted, Refused> {
        let u = packet::parse(d)?;
        let k = &u.knock;
        let known = self.services.get(&k.service).ok_or(Refused::Service)?;
        let s = &known.svc;
        if s.port != port {
            return Err(Refused::Service);
        }
        if k.time.abs_diff(now) > s.window || k.time < self.not_before {
            return Err(Refused::Stale);
        }
        let (name, key) = known.keys.get(&k.key_id).ok_or(Refused::Key)?;
        if self.replay.seen(k.key_id, k.nonce) {
            return Err(Refused::Replay);
        }
        key.verify_strict(u.body, &u.sig)
            .map_err(|_| Refused::Signature)?;
        let addr = address(s, k.target, from)?;
        if !known.admits(canonical(from)) || !known.admits(addr) {
            return Err(Refused::From);
        }
        let a = Admitted {
            service: k.service.clone(),
            action: k.action.into(),
            addr,
            sender: from,
            key: name.clone(),
            time: k.time,
            nonce: k.nonce,
        };
        if !self
            .replay
            .insert(k.key_id, k.nonce, k.time + s.window, now)
        {
            return Err(Refused::Busy);
        }
        Ok(a)
    }

    /// Check again what the listener admitted (root does, before it acts
    /// on it): the service and its key still, the time window by this
    /// clock, the address rule, and this process's own replay record.
    pub fn recheck(&mut self, a: &Admitted, now: u64) -> Result<(), Refused> {
        let known = self.services.get(&a.service).ok_or(Refused::Service)?;
        let s = &known.svc;
        if a.time.abs_diff(now) > s.window || a.time < self.not_before {
            return Err(Refused::Stale);
        }
        let (id, _) = known
            .keys
            .iter()
            .find(|(_, (n, _))| *n == a.key)
            .ok_or(Refused::Key)?;
        if (!s.nat && a.addr != canonical(a.sender)) || !packet::host_address(a.addr) {
            return Err(Refused::Address);
        }
        if !known.admits(canonical(a.sender)) || !known.admits(a.addr) {
            return Err(Refused::From);
        }
        if self.replay.seen(*id, a.nonce) {
            return Err(Refused::Replay);
        }
        if !self.replay.insert(*id, a.nonce, a.time + s.window, now) {
            return Err(Refused::Busy);
        }
        Ok(())
    }

    /// The checker for the services after a reload, with this one's
    /// replay record and start.
    pub fn renewed(self, services: &[Service]) -> Checker {
        Checker {
            replay: self.replay,
            ..Checker::new(services, self.not_before)
        }
    }

    pub fn remembered(&self) -> usize {
        self.replay.seen.len()
    }

    /// The replay record still live at `now`, and the start it keeps,
    /// for the next daemon (`remember`).
    pub fn record(&self, now: u64) -> (u64, Vec<Seen>) {
        (self.not_before, self.replay.live(now))
    }

    /// Take back what `record` kept: the nonces that are still live, up to
    /// the record's bound.
    pub fn remember(&mut self, entries: &[Seen], now: u64) {
        for (k, n, until) in entries {
            if *until >= now && !self.replay.insert(*k, *n, *until, now) {
                break;
            }
        }
    }
}

/// The address a knock opens, by the service's rule: the signed one,
/// which must be the sender's unless `nat`; the sender's only with `nat`.
fn address(s: &Service, t: Target, from: IpAddr) -> Result<IpAddr, Refused> {
    let from = canonical(from);
    let a = match t {
        Target::Sender if s.nat => from,
        Target::Sender => return Err(Refused::Address),
        Target::Addr(a) if s.nat || canonical(a) == from => canonical(a),
        Target::Addr(_) => return Err(Refused::Address),
    };
    if packet::host_address(a) {
        Ok(a)
    } else {
        Err(Refused::Address)
    }
}

/// An IPv4 address that came in on an IPv6 socket as `::ffff:a.b.c.d` is
/// the IPv4 address.
pub fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v) => v.to_ipv4_mapped().map_or(a, IpAddr::V4),
        _ => a,
    }
}

#[cfg(test)]
mod tests;
