//! Rotating knocks: the knock ports of a service change every step, drawn
//! from its range by HMAC-SHA256 over a secret that server and client
//! share. The firewall still does all the detection; the daemon loads the
//! ports of the current step and of the one before at each boundary.
//!
//! The derivation, which docs/rotation.md states for other implementations:
//!
//! - step `t = floor(unix_time / step)`;
//! - the ports of step `t` lie at offsets of the range's first port with
//!   the parity of `t` (`lo + t mod 2`, `lo + t mod 2 + 2`, ...), so two
//!   consecutive steps never share a port; `n` is how many there are;
//! - knock port `i` (0-based) is `lo + (t mod 2) + 2 * j`, where `j` starts
//!   at `u32be(HMAC-SHA256(secret, "pfknock rotate v1" 0x00 name 0x00
//!   i64be(t) u32be(i))[0..4]) mod n` and moves on by one (mod `n`) while
//!   an earlier knock port of the same step has it.
#![forbid(unsafe_code)]

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::name::{Port, PortRange};
use crate::schema::{Config, Rotate};

/// What the HMAC's message starts with: the derivation's name and version.
pub const CONTEXT: &[u8] = b"pfknock rotate v1";

/// The fewest secret bytes accepted; `keygen` writes 32.
pub const SECRET_MIN: usize = 16;
/// The most secret bytes accepted.
pub const SECRET_MAX: usize = 512;

/// The step a time falls in.
pub fn step_of(now: i64, step: u64) -> i64 {
    now.div_euclid(step.max(1) as i64)
}

/// How many ports of `range` have the parity of step `t`.
pub fn slots(range: PortRange, t: i64) -> u32 {
    let (lo, hi) = (u32::from(range.lo.get()), u32::from(range.hi.get()));
    let par = t.rem_euclid(2) as u32;
    if hi < lo + par {
        0
    } else {
        (hi - lo - par) / 2 + 1
    }
}

/// The knock ports of step `t`, in knock order. `count` must not exceed
/// `slots(range, t)` (the config check sees to it).
pub fn ports(secret: &[u8], service: &str, t: i64, range: PortRange, count: usize) -> Vec<Port> {
    let n = slots(range, t);
    let par = t.rem_euclid(2) as u32;
    let mut taken: Vec<u32> = Vec::with_capacity(count);
    for i in 0..count.min(n as usize) {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
        mac.update(CONTEXT);
        mac.update(&[0]);
        mac.update(service.as_bytes());
        mac.update(&[0]);
        mac.update(&t.to_be_bytes());
        mac.update(&(i as u32).to_be_bytes());
        let out = mac.finalize().into_bytes();
        let mut j = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) % n;
        while taken.contains(&j) {
            j = (j + 1) % n;
        }
        taken.push(j);
    }
    taken
        .into_iter()
        .map(|j| {
            let p = u32::from(range.lo.get()) + par + 2 * j;
            Port::new(i64::from(p)).expect("inside the range")
        })
        .collect()
}

/// A secret file's text: hexadecimal digits, at least `SECRET_MIN` bytes'
/// worth, surrounding white space ignored.
pub fn parse_secret(text: &str) -> std::result::Result<Vec<u8>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty: expected hexadecimal digits (pfknock keygen writes them)".into());
    }
    if !t.len().is_multiple_of(2) {
        return Err("an odd number of hexadecimal digits".into());
    }
    let mut out = Vec::with_capacity(t.len() / 2);
    for pair in t.as_bytes().chunks(2) {
        let digit = |c: u8| (c as char).to_digit(16);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(a), Some(b)) => out.push((a * 16 + b) as u8),
            _ => return Err("not hexadecimal digits (pfknock keygen writes them)".into()),
        }
    }
    if out.len() < SECRET_MIN {
        return Err(format!(
            "{} bytes: a secret has at least {SECRET_MIN} (pfknock keygen writes 32)",
            out.len()
        ));
    }
    if out.len() > SECRET_MAX {
        return Err(format!("{} bytes: at most {SECRET_MAX}", out.len()));
    }
    Ok(out)
}

/// Read a secret file: only one that nobody but its owner, the user
/// pfknock runs as, can read or write (as root, in directories that root
/// alone can change), like ssh's keys.
pub fn read_secret(path: &Path) -> Result<Vec<u8>> {
    let text = crate::trusted::read_secret_file(path).map_err(|e| match e {
        Error::ConfigFile { file, source } if source.kind() == std::io::ErrorKind::NotFound => {
            Error::Config {
                msg: format!(
                    "no such file: write one with pfknock keygen {}",
                    crate::name::no_controls(&file.display().to_string())
                ),
                file,
                line: 0,
                key: "rotate.secret".into(),
            }
        }
        e => e,
    })?;
    parse_secret(&text).map_err(|msg| Error::Config {
        file: path.to_owned(),
        line: 0,
        key: String::new(),
        msg,
    })
}

/// Fill in the knock ports of every rotating service for the step `now`
/// falls in (`knock`) and the one before (`knock_prev`), reading each
/// secret once.
pub fn apply(cfg: &mut Config, now: i64) -> Result<()> {
    for s in &mut cfg.services {
        let Some(r) = &s.rotate else { continue };
        let secret = read_secret(&r.secret)?;
        fill(s, &secret, now);
    }
    Ok(())
}

/// A rotating service's ports as of `now`: this step's, the previous
/// step's and, from `lead` before the next step, the next's; and when this
/// step started.
pub fn fill(s: &mut crate::schema::Service, secret: &[u8], now: i64) {
    let Some(r) = s.rotate.clone() else { return };
    let (now_ports, prev_ports) = ports_now(secret, &s.name, &r, now);
    let t = step_of(now, r.step.0);
    let start = t * r.step.0 as i64;
    s.knock_next = if now >= start + r.step.0 as i64 - lead(r.step.0) {
        ports(secret, &s.name, t + 1, r.range, r.ports)
    } else {
        Vec::new()
    };
    s.knock_later = (1..=ahead(r.step.0))
        .map(|j| ports(secret, &s.name, t + j, r.range, r.ports))
        .collect();
    s.knock = now_ports;
    s.knock_prev = prev_ports;
    s.step_start = Some(start);
}

/// Where rules carry their own time window (nftables), each step's ports
/// are loaded this long ahead (seconds), so that a rotating service at
/// rest loads once in that time instead of once a step.
pub const AHEAD: u64 = 300;

/// The steps loaded ahead for a step of `step` seconds: `AHEAD`'s worth,
/// at least the next one, at most 16.
pub fn ahead(step: u64) -> i64 {
    (AHEAD / step.max(1)).clamp(1, 16) as i64
}

/// How long before a step starts its ports are in force already: half a
/// step, at most `LEAD`, so that a knock begun just before a boundary
/// (or by a client whose clock is a little ahead) finds them, whenever the
/// daemon gets to load them.
pub const LEAD: u64 = 10;

/// `LEAD` for a step of `step` seconds.
pub fn lead(step: u64) -> i64 {
    (step / 2).min(LEAD) as i64
}

/// The ports of the step `now` falls in and of the one before.
pub fn ports_now(secret: &[u8], service: &str, r: &Rotate, now: i64) -> (Vec<Port>, Vec<Port>) {
    let t = step_of(now, r.step.0);
    (
        ports(secret, service, t, r.range, r.ports),
        ports(secret, service, t - 1, r.range, r.ports),
    )
}

/// When the next step of any rotating service starts, after `now`.
pub fn next_boundary(cfg: &Config, now: i64, timed: bool) -> Option<i64> {
    cfg.services
        .iter()
        .filter_map(|s| s.rotate.as_ref())
        .map(|r| next_load(r.step.0, now, timed))
        .min()
}

/// When a service rotating every `step` seconds loads next after `now`.
/// Where rules carry their own time window (`timed`), a load holds the
/// ports of `ahead` steps after this one, each counting from `lead`
/// before its step, and the windows retire old ports by themselves: the
/// next load is due when the last step loaded starts to count (its lead),
/// a step before the first one not loaded would. Elsewhere (pf) the next
/// step's ports come in `lead` before it starts, and the boundary loads
/// again, to take the old ones out.
fn next_load(step: u64, now: i64, timed: bool) -> i64 {
    let t = step_of(now, step);
    if timed {
        let at = |k: i64| (t + k) * step as i64 - lead(step);
        let a = ahead(step);
        return if at(a) > now { at(a) } else { at(a + 1) };
    }
    let b = (t + 1) * step as i64;
    let pre = b - lead(step);
    if now < pre { pre } else { b }
}

/// `pfknock keygen FILE`: 32 bytes from the system's random source, as 64
/// hexadecimal digits, into a new file of mode 0600; never over an
/// existing one.
pub fn keygen(path: &Path) -> Result<()> {
    let key: [u8; 32] = crate::trusted::random()?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    crate::trusted::write_new(path, 0o600, &hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(lo: i64, hi: i64) -> PortRange {
        PortRange {
            lo: Port::new(lo).unwrap(),
            hi: Port::new(hi).unwrap(),
        }
    }

    #[test]
    fn consecutive_steps_never_share_a_port_and_a_step_never_repeats_one() {
        let key = [7u8; 32];
        let r = range(40000, 40009);
        for t in 0..2000 {
            let a = ports(&key, "ssh", t, r, 5);
            let b = ports(&key, "ssh", t + 1, r, 5);
            assert_eq!(a.len(), 5);
            assert!(a.iter().all(|p| !b.contains(p)), "step {t}: {a:?} {b:?}");
            let mut d = a.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), 5, "step {t}: {a:?}");
            assert!(a.iter().all(|p| (40000..=40009).contains(&p.get())));
        }
    }

    #[test]
    fn timed_rules_load_once_in_the_steps_ahead_pf_twice_a_step() {
        // Step 30 s, lead 10 s, 10 steps ahead: the lead of the step at
        // 300 (the last one loaded from step 0) is 290.
        assert_eq!(ahead(30), 10);
        for (now, timed, pf) in [
            (0, 290, 20),
            (19, 290, 20),
            (20, 290, 30),
            (29, 290, 30),
            (30, 320, 50),
            (290, 560, 300),
        ] {
            assert_eq!(next_load(30, now, true), timed, "nftables at {now}");
            assert_eq!(next_load(30, now, false), pf, "pf at {now}");
        }
        // From any time: always later, at a lead, and no later than the
        // first step a load did not hold starts to count (a step earlier
        // where more than one is loaded ahead).
        for step in [5, 30, 60, 90, 300, 3600] {
            let mut t = 7;
            for _ in 0..50 {
                let n = next_load(step, t, true);
                assert!(n > t, "step {step}: {t} -> {n}");
                assert_eq!((n + lead(step)) % step as i64, 0, "at a lead");
                let last = step_of(t, step) + ahead(step);
                let spare = if ahead(step) > 1 { step as i64 } else { 0 };
                let opens = (last + 1) * step as i64 - lead(step);
                assert!(n + spare <= opens, "step {step}: {t} -> {n}");
                t = n;
            }
        }
        assert_eq!((ahead(5), ahead(300), ahead(3600)), (16, 1, 1));
    }

    #[test]
    fn slots_count_the_ports_of_each_parity() {
        assert_eq!(slots(range(10, 10), 0), 1);
        assert_eq!(slots(range(10, 10), 1), 0);
        assert_eq!(slots(range(10, 11), 1), 1);
        assert_eq!(slots(range(1, 65535), 0), 32768);
        assert_eq!(slots(range(1, 65535), 1), 32767);
    }

    #[test]
    fn secrets_are_hex_of_a_sane_length() {
        assert_eq!(parse_secret(&"ab".repeat(16)).unwrap().len(), 16);
        assert_eq!(
            parse_secret(&format!("  {}\n", "0F".repeat(32))).unwrap()[0],
            15
        );
        assert!(parse_secret("").is_err());
        assert!(parse_secret(&"ab".repeat(15)).is_err());
        assert!(parse_secret(&"zz".repeat(16)).is_err());
        assert!(parse_secret(&"a".repeat(33)).is_err());
        assert!(parse_secret(&"é".repeat(32)).is_err());
    }
}
