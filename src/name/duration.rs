//! Durations as text, one codec for all of pfknock: the config reads
//! `90s`, `1h30m` or `2w`, the log and the man pages write `1m30s`, and
//! nft(8) writes and reads `1d2h3m4s5ms`. A duration is numbers, each
//! followed by one unit, largest first when written; spaces may separate
//! the parts when read.
#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;

use super::shown;

/// A unit: its name, and its length in milliseconds.
type Unit = (&'static str, u64);

const MS: Unit = ("ms", 1);
const S: Unit = ("s", 1000);
const M: Unit = ("m", 60_000);
const H: Unit = ("h", 3_600_000);
const D: Unit = ("d", 86_400_000);
const W: Unit = ("w", 604_800_000);

/// What a config may say: whole seconds and up. No month (`M` and `m` are
/// too easy to confuse) and no milliseconds (pf's stamps are seconds).
const CONFIG: &[Unit] = &[W, D, H, M, S];
/// What a config may say of the daemon's own timers (`poll`): those and
/// milliseconds.
const TIMER: &[Unit] = &[W, D, H, M, S, MS];
/// What pfknock writes, and what nft(8) writes and reads.
const WRITTEN: &[Unit] = &[D, H, M, S, MS];

/// Why a duration does not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bad {
    Empty,
    Unit,
    NoNumber,
    NoUnit,
    NumberTooLarge,
    TooLong,
}

/// `text` in milliseconds, in `units`.
fn parse(text: &str, units: &[Unit]) -> Result<u64, Bad> {
    let t = text.trim();
    if t.is_empty() {
        return Err(Bad::Empty);
    }
    let b = t.as_bytes();
    let (mut i, mut total) = (0usize, 0u64);
    while i < b.len() {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let (digits, rest) = (&t[start..i], &t[i..]);
        // The longest unit that fits: `ms` before `m`.
        let Some(&(name, size)) = units
            .iter()
            .filter(|(n, _)| rest.starts_with(n))
            .max_by_key(|(n, _)| n.len())
        else {
            return Err(if rest.is_empty() {
                Bad::NoUnit
            } else {
                Bad::Unit
            });
        };
        if digits.is_empty() {
            return Err(Bad::NoNumber);
        }
        let n: u64 = digits.parse().map_err(|_| Bad::NumberTooLarge)?;
        total = n
            .checked_mul(size)
            .and_then(|v| total.checked_add(v))
            .ok_or(Bad::TooLong)?;
        i += name.len();
    }
    Ok(total)
}

/// `ms` as written: the shortest exact form, largest unit first (`0s`
/// for nothing). nft refuses a number of 100,000,000 or more in any one
/// part (`timeout 100000000s` is "value too large", nft 1.0.6), which
/// days keep it from.
pub fn format_ms(ms: u128) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut n = ms;
    for &(unit, size) in WRITTEN {
        let size = u128::from(size);
        if n >= size {
            out.push_str(&format!("{}{unit}", n / size));
            n %= size;
        }
    }
    out
}

/// nft's `1d2h3m4s5ms` in milliseconds.
pub fn parse_written_ms(text: &str) -> Option<u64> {
    parse(text, WRITTEN).ok()
}

/// A duration in whole seconds (pf's time stamps have a second's
/// precision), at most 100 years when read from text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Secs(pub u64);

/// The longest duration a config may give: pf's time stamps are time_t,
/// kept far away from overflow.
const LONGEST: u64 = 100 * 365 * 86400;

impl FromStr for Secs {
    type Err = String;
    /// `90s`, `10m`, `1h30m`, `2d`: numbers each followed by one of
    /// s, m, h, d, w. A bare number is refused: a unit is always needed.
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Secs(read(s, CONFIG)? / 1000))
    }
}

/// `s` in milliseconds, in `units`, at most 100 years; the error says
/// what is wrong and which units there are.
fn read(s: &str, units: &[Unit]) -> Result<u64, String> {
    let names: Vec<&str> = units.iter().rev().map(|u| u.0).collect();
    let (last, rest) = names.split_last().expect("units");
    let listed = |word: &str| format!("{} {word} {last}", rest.join(", "));
    let bad = |b: Bad| {
        let why = match b {
            Bad::Empty => "empty".to_owned(),
            Bad::Unit => format!("units are {}", listed("and")),
            Bad::NoNumber => "a unit needs a number before it".to_owned(),
            Bad::NoUnit => format!("a number needs a unit ({})", listed("or")),
            Bad::NumberTooLarge => "number too large".to_owned(),
            Bad::TooLong => "longer than 100 years".to_owned(),
        };
        format!("bad duration \"{}\": {why}", shown(s))
    };
    match parse(s, units) {
        Ok(ms) if ms > LONGEST * 1000 => Err(bad(Bad::TooLong)),
        Ok(ms) => Ok(ms),
        Err(b) => Err(bad(b)),
    }
}

impl fmt::Display for Secs {
    /// The shortest exact form: `90s` prints as `1m30s`, `0` as `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_ms(u128::from(self.0) * 1000))
    }
}

/// A duration in milliseconds, for a timer of the daemon's own (`poll`),
/// which pf's one-second stamps do not bound; at most 100 years.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

impl FromStr for Millis {
    type Err = String;
    /// `250ms`, `1s`, `1m30s`: as `Secs` reads, and `ms` too.
    fn from_str(s: &str) -> Result<Self, String> {
        read(s, TIMER).map(Millis)
    }
}

impl fmt::Display for Millis {
    /// The shortest exact form: `1500ms` prints as `1s500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_ms(u128::from(self.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        for ms in [
            0,
            1,
            999,
            1000,
            59_999,
            60_000,
            5_400_000,
            86_400_001,
            123_456_789_012,
        ] {
            let t = format_ms(u128::from(ms));
            assert_eq!(parse_written_ms(&t), Some(ms), "{t}");
        }
        assert_eq!(format_ms(5_400_000), "1h30m");
        assert_eq!(format_ms(90_061_005), "1d1h1m1s5ms");
        // nft's own output.
        assert_eq!(parse_written_ms("59s999ms"), Some(59_999));
        assert_eq!(parse_written_ms("2d"), Some(172_800_000));
        assert_eq!(parse_written_ms("5x"), None);
        assert_eq!(parse_written_ms("5"), None);
    }

    #[test]
    fn a_config_reads_seconds_and_up_only() {
        let p = |s: &str| s.parse::<Secs>();
        assert_eq!(p("2w"), Ok(Secs(1_209_600)));
        assert_eq!(p(" 1h 30m "), Ok(Secs(5400)));
        let e = |s: &str| p(s).unwrap_err();
        assert!(e("5ms").contains("a unit needs a number"), "{}", e("5ms"));
        assert!(e("1 h").contains("units are"), "{}", e("1 h"));
        assert!(e("101y").contains("units are"));
        assert!(e("5300w").contains("100 years"));
        assert!(e("99999999999999999999s").contains("number too large"));
        assert!(e("").contains("empty"));
    }

    #[test]
    fn a_timer_reads_milliseconds_too() {
        let p = |s: &str| s.parse::<Millis>();
        assert_eq!(p("250ms"), Ok(Millis(250)));
        assert_eq!(p("1s500ms"), Ok(Millis(1500)));
        assert_eq!(p("1m"), Ok(Millis(60_000)));
        assert_eq!(p("1h"), Ok(Millis(3_600_000)));
        assert_eq!(Millis(1500).to_string(), "1s500ms");
        assert_eq!(Millis(1000).to_string(), "1s");
        let e = |s: &str| p(s).unwrap_err();
        assert!(e("5").contains("needs a unit (ms,"), "{}", e("5"));
        assert!(e("5y").contains("units are ms,"), "{}", e("5y"));
        assert!(e("5300w").contains("100 years"));
    }
}
