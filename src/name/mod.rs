//! Values that can only hold what pf accepts.
//!
//! Every name or number that reaches pf rule text or an ioctl buffer passes
//! through one of these types first, so nothing in a config can inject a rule
//! or be truncated silently.
#![forbid(unsafe_code)]

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// `PF_TABLE_NAME_SIZE`: the name and its NUL must fit in 32 bytes.
pub const TABLE_NAME_MAX: usize = 31;
/// `PF_ANCHOR_NAME_SIZE`: one component of an anchor path, NUL included.
pub const ANCHOR_NAME_SIZE: usize = 64;
/// `PF_ANCHOR_MAXPATH`: MAXPATHLEN less one component and a '/'.
pub const ANCHOR_MAXPATH: usize = 1024 - ANCHOR_NAME_SIZE - 1;
/// Below `PF_ANCHOR_MAXPATH`: the longest anchor path pf can nest.
pub const ANCHOR_PATH_MAX: usize = ANCHOR_MAXPATH - 1;
/// `IFNAMSIZ` less its NUL.
pub const IFNAME_MAX: usize = 15;

/// An input value as error messages show it: control characters and
/// quotes escaped, and cut after 80 bytes with "…", so that no input can
/// put a newline or an escape sequence into a log line or a terminal, nor
/// a megabyte into one message.
pub fn shown(s: &str) -> String {
    const MAX: usize = 80;
    let mut end = s.len().min(MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out: String = s[..end]
        .chars()
        .flat_map(|c| {
            if c.is_control() || c == '"' || c == '\\' {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if end < s.len() {
        out.push('…');
    }
    out
}

/// `s` with every control character escaped (`\n`, `\u{1b}`): for text
/// that goes into a log line or a terminal.
pub fn no_controls(s: &str) -> String {
    escaped(s, false)
}

/// `s` for a comment line of rendered rules: control characters and
/// backslashes escaped (pf.conf continues a line, comments too, after a
/// final backslash).
pub fn comment_safe(s: &str) -> String {
    escaped(s, true)
}

fn escaped(s: &str, backslash: bool) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() || (backslash && c == '\\') {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// A pf table name: 1 to 31 bytes of letters, digits, `_` and `-`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName(String);

impl TableName {
    pub fn new(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("table name is empty".into());
        }
        if s.len() > TABLE_NAME_MAX {
            return Err(format!(
                "table name \"{}\" is {} bytes, pf allows at most {TABLE_NAME_MAX}",
                shown(s),
                s.len()
            ));
        }
        if let Some(c) = s.bytes().find(|&b| !is_name_byte(b)) {
            return Err(format!(
                "table name \"{}\" has '{}': only letters, digits, '_' and '-' are allowed",
                shown(s),
                (c as char).escape_default()
            ));
        }
        Ok(TableName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TableName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TableName::new(s)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A pf anchor path: `name` or `outer/inner`, each component letters, digits,
/// `_` and `-`, not starting with `_` (pf reserves those). The empty path is
/// the main ruleset.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AnchorName(String);

impl AnchorName {
    /// The main ruleset.
    pub fn main() -> Self {
        AnchorName(String::new())
    }

    pub fn new(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("anchor name is empty".into());
        }
        if s.len() > ANCHOR_PATH_MAX {
            return Err(format!(
                "anchor path is {} bytes, pf allows at most {ANCHOR_PATH_MAX}",
                s.len()
            ));
        }
        for comp in s.split('/') {
            if comp.is_empty() {
                return Err(format!(
                    "anchor \"{}\" has an empty path component",
                    shown(s)
                ));
            }
            if comp.len() >= ANCHOR_NAME_SIZE {
                return Err(format!(
                    "anchor \"{}\": path component of {} bytes, pf allows at most {} \
                     (PF_ANCHOR_NAME_SIZE)",
                    shown(s),
                    comp.len(),
                    ANCHOR_NAME_SIZE - 1
                ));
            }
            if comp.starts_with('_') {
                return Err(format!(
                    "anchor \"{}\": names starting with '_' are reserved by pf",
                    shown(s)
                ));
            }
            if let Some(c) = comp.bytes().find(|&b| !is_name_byte(b)) {
                return Err(format!(
                    "anchor \"{}\" has '{}': only letters, digits, '_', '-' and '/' are allowed",
                    shown(s),
                    (c as char).escape_default()
                ));
            }
        }
        Ok(AnchorName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_main(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for AnchorName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AnchorName::new(s)
    }
}

impl fmt::Display for AnchorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("main ruleset")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// An interface or interface group name (`vtnet0`, `egress`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfName(String);

impl IfName {
    pub fn new(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > IFNAME_MAX {
            return Err(format!(
                "interface name \"{}\" must be 1 to {IFNAME_MAX} bytes",
                shown(s)
            ));
        }
        let ok = s.as_bytes()[0].is_ascii_alphabetic()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        if !ok {
            return Err(format!(
                "interface name \"{}\" must start with a letter and hold only letters, digits, '_' and '.'",
                shown(s)
            ));
        }
        Ok(IfName(s.to_owned()))
    }
}

impl FromStr for IfName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        IfName::new(s)
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A TCP or UDP port, 1 to 65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port(u16);

impl Port {
    pub fn new(n: i64) -> Result<Self, String> {
        if (1..=65535).contains(&n) {
            Ok(Port(n as u16))
        } else {
            Err(format!("port {n} is out of range 1-65535"))
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Port {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let n: i64 = s
            .trim()
            .parse()
            .map_err(|_| format!("expected a port number, got \"{}\"", shown(s)))?;
        Port::new(n)
    }
}

/// An inclusive port range; `lo == hi` for a single port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    pub lo: Port,
    pub hi: Port,
}

impl PortRange {
    pub fn single(p: Port) -> Self {
        PortRange { lo: p, hi: p }
    }

    pub fn contains(&self, p: Port) -> bool {
        self.lo <= p && p <= self.hi
    }

    pub fn overlaps(&self, o: &PortRange) -> bool {
        self.lo <= o.hi && o.lo <= self.hi
    }
}

impl FromStr for PortRange {
    type Err = String;
    /// `22`, `6000-6010` or `6000:6010` (pf's own spelling).
    fn from_str(s: &str) -> Result<Self, String> {
        let Some((a, b)) = s.split_once(['-', ':']) else {
            return Ok(PortRange::single(s.parse()?));
        };
        let (lo, hi): (Port, Port) = (a.parse()?, b.parse()?);
        if lo > hi {
            return Err(format!("port range {s} runs backwards"));
        }
        Ok(PortRange { lo, hi })
    }
}

impl PortRange {
    /// nftables' form: `22`, `6000-6010`.
    pub fn nft(&self) -> String {
        if self.lo == self.hi {
            self.lo.to_string()
        } else {
            format!("{}-{}", self.lo, self.hi)
        }
    }
}

impl fmt::Display for PortRange {
    /// pf's inclusive range operator is `:`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}:{}", self.lo, self.hi)
        }
    }
}

/// pf's `max-src-conn-rate N/S`: more than `conns` completed connections
/// within `secs` seconds trip the overload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub conns: u32,
    pub secs: u32,
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected N/S, got \"{}\"", shown(s));
        let (n, d) = s.split_once('/').ok_or_else(bad)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(n) || !digits(d) {
            return Err(bad());
        }
        let conns: u32 = n.parse().map_err(|_| bad())?;
        let secs: u32 = d.parse().map_err(|_| bad())?;
        // pf keeps the limit as N * 1000 in a u32 (pf_init_threshold).
        if conns == 0 || conns > 4_000_000 {
            return Err(format!("rate {s}: N must be 1 to 4000000"));
        }
        if secs == 0 {
            return Err(format!("rate {s}: S must be at least 1 second"));
        }
        // nftables' limit units end at a week (render/nft.rs).
        if secs > 604_800 {
            return Err(format!(
                "rate {s}: S must be at most 604800 seconds (a week)"
            ));
        }
        Ok(Rate { conns, secs })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.conns, self.secs)
    }
}

/// An address or a network with no host bits set: `198.51.100.7`,
/// `198.51.100.0/24`, `2001:db8::/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// A network of `prefix` bits; `None` when the prefix is longer than
    /// the family's or host bits are set (as the kernel could report).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let n = Net { addr, prefix };
        (prefix <= max_prefix(addr) && n.contains(addr) && n.range().0 == n.first()).then_some(n)
    }

    /// The network's address (its first).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length, at most the family's width.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The first address as a number of the family's width, host bits
    /// cleared.
    fn first(&self) -> u128 {
        match self.addr {
            IpAddr::V4(v) => mask_v4(u32::from(v), self.prefix) as u128,
            IpAddr::V6(v) => mask_v6(u128::from(v), self.prefix),
        }
    }

    pub fn host(addr: IpAddr) -> Self {
        Net {
            addr,
            prefix: max_prefix(addr),
        }
    }

    pub fn is_host(&self) -> bool {
        self.prefix == max_prefix(self.addr)
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask_v4(u32::from(a), self.prefix) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask_v6(u128::from(a), self.prefix) == u128::from(n),
            _ => false,
        }
    }

    /// The first and last address, as numbers of the family's width.
    pub fn range(&self) -> (u128, u128) {
        let (a, bits) = match self.addr {
            IpAddr::V4(v) => (u32::from(v) as u128, 32u32),
            IpAddr::V6(v) => (u128::from(v), 128),
        };
        let host = bits.saturating_sub(self.prefix as u32);
        let span = if host >= 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        };
        (a, a + span)
    }

    pub fn af(&self) -> Af {
        Af::of(self.addr)
    }

    /// Why no connection the firewall sees can come from any address of
    /// this network, if none can: it is IPv4-mapped (a packet from an
    /// IPv4 host carries its IPv4 address, and pf and nftables match it
    /// so), multicast, the unspecified address, or IPv4's limited
    /// broadcast. An authorization of it would hold an entry that opens
    /// nothing.
    pub fn never_a_source(&self) -> Option<String> {
        let (lo, _) = self.range();
        let within = |net: u128, prefix: u8, width: u32| {
            self.prefix >= prefix && lo >> (width - prefix as u32) == net >> (width - prefix as u32)
        };
        match self.addr {
            IpAddr::V6(_) if within(0xffff << 32, 96, 128) => {
                let v4 = Ipv4Addr::from((lo & 0xffff_ffff) as u32);
                let as_v4 = Net::new(IpAddr::V4(v4), self.prefix - 96).expect("masked");
                Some(format!(
                    "an IPv4-mapped IPv6 address: an IPv4 host's packets carry its \
                     IPv4 address; give {as_v4}"
                ))
            }
            IpAddr::V4(_) if within(0xe000_0000, 4, 32) => Some(multicast()),
            IpAddr::V6(_) if within(0xff << 120, 8, 128) => Some(multicast()),
            IpAddr::V4(_) if self.is_host() && lo == 0xffff_ffff => {
                Some("the broadcast address: no connection comes from it".into())
            }
            _ if self.is_host() && lo == 0 => {
                Some("the unspecified address: no connection comes from it".into())
            }
            _ => None,
        }
    }
}

fn multicast() -> String {
    "multicast: no connection comes from it".into()
}

fn max_prefix(a: IpAddr) -> u8 {
    if a.is_ipv4() { 32 } else { 128 }
}

fn mask_v4(a: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        a & u32::MAX
            .checked_shl(32u32.saturating_sub(prefix.into()))
            .unwrap_or(0)
    }
}

fn mask_v6(a: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        a & u128::MAX
            .checked_shl(128u32.saturating_sub(prefix.into()))
            .unwrap_or(0)
    }
}

impl FromStr for Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("\"{}\" is not an IPv4 or IPv6 address", shown(s)))?;
        let max = max_prefix(addr);
        let prefix = match p {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(format!(
                        "\"{}\": prefix length must be 0 to {max}",
                        shown(s)
                    ));
                }
            },
        };
        let host_bits = match addr {
            IpAddr::V4(v) => mask_v4(u32::from(v), prefix) != u32::from(v),
            IpAddr::V6(v) => mask_v6(u128::from(v), prefix) != u128::from(v),
        };
        if host_bits {
            return Err(format!(
                "\"{}\" has host bits set past the /{prefix} prefix",
                shown(s)
            ));
        }
        Ok(Net { addr, prefix })
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// An address family: of an address, a set, a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Af {
    V4,
    V6,
}

impl Af {
    pub fn of(a: IpAddr) -> Af {
        if a.is_ipv4() { Af::V4 } else { Af::V6 }
    }
}

/// The families a service's rules cover (`family`): both, or one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Any,
    Only(Af),
}

impl Family {
    pub fn covers(self, af: Af) -> bool {
        match self {
            Family::Any => true,
            Family::Only(a) => a == af,
        }
    }

    /// The families covered, IPv4 first.
    pub fn afs(self) -> Vec<Af> {
        [Af::V4, Af::V6]
            .into_iter()
            .filter(|a| self.covers(*a))
            .collect()
    }

    /// As the config and pf write it: `any`, `inet`, `inet6`.
    pub fn word(self) -> &'static str {
        match self {
            Family::Any => "any",
            Family::Only(Af::V4) => "inet",
            Family::Only(Af::V6) => "inet6",
        }
    }
}

impl FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "any" => Ok(Family::Any),
            "inet" => Ok(Family::Only(Af::V4)),
            "inet6" => Ok(Family::Only(Af::V6)),
            _ => Err(format!(
                "expected \"any\", \"inet\" or \"inet6\", got \"{}\"",
                shown(s)
            )),
        }
    }
}

/// Protocol of the protected ports (knock ports are always TCP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(format!("expected \"tcp\" or \"udp\", got \"{}\"", shown(s))),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// How an authorization's age is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireMode {
    /// Since the kernel inserted the entry (`pfctl -T expire`).
    Age,
    /// Since the entry's packet counters last moved.
    Idle,
}

impl FromStr for ExpireMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "age" => Ok(ExpireMode::Age),
            "idle" => Ok(ExpireMode::Idle),
            _ => Err(format!(
                "expected \"age\" or \"idle\", got \"{}\"",
                shown(s)
            )),
        }
    }
}

impl fmt::Display for ExpireMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExpireMode::Age => "age",
            ExpireMode::Idle => "idle",
        })
    }
}

mod duration;
pub use duration::{Millis, Secs, format_ms, parse_written_ms};

#[cfg(test)]
mod tests;
