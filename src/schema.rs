//! The checked configuration as values: what `config` makes of the TOML
//! text and every other module reads. Types, defaults and the predicates
//! that need nothing but the values themselves; the names derived from them
//! are `names`'s, the checking is `config`'s.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::PathBuf;

use crate::name::{
    AnchorName, ExpireMode, Family, IfName, Millis, Net, Port, PortRange, Proto, Rate, Secs,
    TableName,
};

/// Where pfknock looks for its config when `-c` is not given.
pub const DEFAULT_CONFIG: &str = if cfg!(target_os = "freebsd") {
    "/usr/local/etc/pfknock.toml"
} else {
    "/etc/pfknock.toml"
};

pub const DEFAULT_ANCHOR: &str = "pfknock";
pub const DEFAULT_RATE: &str = "5/15";
pub const DEFAULT_TTL: Secs = Secs(60);
pub const DEFAULT_WINDOW: Secs = Secs(10);

pub const DEFAULT_POLL: Millis = Millis(1000);
/// The shortest `poll`: a hundred requests a second per anchor.
pub const POLL_MIN: Millis = Millis(10);

/// nftables: elements per set unless `size` says otherwise (nft's own
/// default is 65535).
pub const DEFAULT_SIZE: u64 = 65536;
/// nftables: IPv6 knocks count per network of this prefix length unless
/// `prefix6` says otherwise.
pub const DEFAULT_PREFIX6: u8 = 64;
/// Meters, holds and IPv6 networks hold this many times `size`.
pub const METER_FACTOR: u64 = 4;
/// The largest `size`: 2^24 elements (about 16.8 million).
pub const SIZE_MAX: u64 = 1 << 24;

/// A checked configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub anchor: AnchorName,
    /// syslog facility of the daemon's log.
    pub facility: Facility,
    /// How often the daemon looks for new authorizations (pf).
    pub poll: Millis,
    /// Unload the anchor when the daemon exits.
    pub unload: bool,
    /// Linux: the nfnetlink_log group the authorizing rules log to, which
    /// the daemon reads.
    pub nflog_group: u16,
    /// More expiries than this within a second are logged as one line.
    pub log_burst: u32,
    /// Linux: where every load writes the table as nft text, for the
    /// admin's nftables.conf to include, so that a reload of the whole
    /// ruleset (`flush ruleset`, then `include`) keeps pfknock's table in
    /// place in the same transaction.
    pub nft_include: Option<PathBuf>,
    /// The user the signed-knock listener runs as.
    pub spa_user: String,
    pub services: Vec<Service>,
    pub expires: Vec<ExpireTable>,
}

/// The syslog facilities pfknock logs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Facility {
    Auth,
    Authpriv,
    Daemon,
    User,
    Local(u8),
}

impl std::str::FromStr for Facility {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auth" => Facility::Auth,
            "authpriv" => Facility::Authpriv,
            "daemon" => Facility::Daemon,
            "user" => Facility::User,
            _ => match s.strip_prefix("local").and_then(|n| n.parse::<u8>().ok()) {
                Some(n) if n <= 7 && s.len() == 6 => Facility::Local(n),
                _ => {
                    return Err(format!(
                        "expected auth, authpriv, daemon, user or local0 to local7, got \"{}\"",
                        crate::name::shown(s)
                    ));
                }
            },
        })
    }
}

/// One `[[service]]`: knock ports guarding protected ports.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub name: String,
    /// The table of authorized hosts; the other tables derive from it.
    pub table: TableName,
    pub protect: Vec<PortRange>,
    pub proto: Vec<Proto>,
    /// The knock ports, in order; with `rotate`, those of the current
    /// step, filled in by `rotate::apply` (empty until then).
    pub knock: Vec<Port>,
    /// With `rotate`: the ports of the step before, loaded beside the
    /// current ones. Empty otherwise.
    pub knock_prev: Vec<Port>,
    /// With `rotate`: the ports of the next step, from `rotate::LEAD`
    /// before it starts (empty before that, and without `rotate`).
    pub knock_next: Vec<Port>,
    /// With `rotate`: the ports of each of the next `rotate::ahead` steps,
    /// for rules that carry their own time window (nftables), loaded
    /// ahead so that the daemon loads once in that many steps. Empty
    /// without `rotate`.
    pub knock_later: Vec<Vec<Port>>,
    /// With `rotate`: when the current step started (seconds since 1970),
    /// filled in with the ports.
    pub step_start: Option<i64>,
    /// Knock ports drawn from a range every step (`rotate`).
    pub rotate: Option<Rotate>,
    /// The close knock's port: a host that knocks it (at `rate`) is taken
    /// out of the authorized hosts.
    pub close: Option<Port>,
    /// Signed knocks: a UDP port, and the keys that may sign.
    pub spa: Option<Spa>,
    pub rate: Rate,
    pub ttl: Secs,
    pub expire: ExpireMode,
    pub window: Secs,
    /// Who may knock; empty means any.
    pub from: Vec<Net>,
    /// Always authorized, never expired: a const table.
    pub allow: Vec<Net>,
    pub on: Option<IfName>,
    /// Where the protected ports are: this host (default), hosts behind
    /// it, or anywhere.
    pub to: Dest,
    pub family: Family,
    pub log: bool,
    pub block: bool,
    pub renew: bool,
    /// nftables: the most elements each of the service's sets holds.
    pub size: u64,
    /// nftables: IPv6 knock progress (meters, stages, holds) counts per
    /// network of this prefix length, so that one network cannot fill the
    /// sets; 128 counts per address.
    pub prefix6: u8,
    /// The config line of each knock port, for warnings found later.
    pub knock_lines: Vec<usize>,
}

/// A service's `rotate`: its knock ports change every `step`, derived
/// from the secret (see `crate::rotate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotate {
    /// The secret file, absolute (a relative one is taken from the
    /// config's directory).
    pub secret: PathBuf,
    pub step: Secs,
    /// The ports to draw from.
    pub range: PortRange,
    /// How many knock ports: 1 is a rate knock, more a sequence.
    pub ports: usize,
}

/// A service's `spa`: signed knocks on a UDP port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spa {
    pub port: Port,
    /// The directory of public keys (`NAME.pub`), absolute.
    pub keys: PathBuf,
    /// How far a stamp may be off this host's clock, either way.
    pub window: Secs,
    /// Take "the address this arrives from", and signed addresses from
    /// anywhere.
    pub nat: bool,
}

/// The nfnetlink_log group of the authorizing rules on Linux.
pub const DEFAULT_NFLOG_GROUP: u16 = 4747;
/// Expiries within a second above which one line sums them up.
pub const DEFAULT_LOG_BURST: u32 = 50;

/// The default step of `rotate`.
pub const DEFAULT_STEP: Secs = Secs(30);

/// The destination of a service's protected ports (`to`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    /// This host only: routed traffic is never opened, blocked or counted
    /// (pf `to (self)`, which follows address changes; nftables' input
    /// hook).
    SelfHost,
    /// Hosts behind this one, as forwarding (after `rdr`/DNAT) sees them:
    /// pf filters a redirected packet by its translated destination.
    Nets(Vec<Net>),
    /// Any destination, this host's and forwarded alike.
    Any,
}

impl Dest {
    /// Could a packet be addressed to both?
    pub fn meets(&self, o: &Dest) -> bool {
        match (self, o) {
            (Dest::Any, _) | (_, Dest::Any) | (Dest::SelfHost, Dest::SelfHost) => true,
            (Dest::Nets(a), Dest::Nets(b)) => a.iter().any(|x| {
                b.iter().any(|y| {
                    x.addr().is_ipv6() == y.addr().is_ipv6()
                        && x.range().0 <= y.range().1
                        && y.range().0 <= x.range().1
                })
            }),
            _ => false,
        }
    }
}

/// The role of one table of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Authorized hosts.
    Auth,
    /// Hosts that completed stage k (1-based) of a sequence.
    Stage(usize),
    /// Authorized hosts that knocked again; the daemon renews and empties it.
    Renew,
    /// The const allow list.
    Allow,
}

impl Service {
    /// Does this service keep the TCP connections to its ports that were
    /// open when nftables loaded it (`names::nft_kept_set`)? Those to this
    /// host only: the loader reads them from the host's own sockets.
    pub fn keeps_flows(&self) -> bool {
        self.proto.contains(&crate::name::Proto::Tcp) && matches!(self.to, Dest::SelfHost)
    }

    /// How many knock ports a client knocks on, in order.
    pub fn stages(&self) -> usize {
        match &self.rotate {
            Some(r) => r.ports,
            None => self.knock.len(),
        }
    }

    /// The most elements of each set that counts knocks from any source
    /// (meters, holds, IPv6 networks): `METER_FACTOR` times `size`, so that
    /// a flood of handshakes from more sources than the authorized set
    /// holds cannot fill them (pfknock.toml(5), `size`).
    pub fn meter_size(&self) -> u64 {
        self.size.saturating_mul(METER_FACTOR).min(SIZE_MAX)
    }

    /// Can a knock land on a wrong port: a port of the sequence out of
    /// order, or a port of a rotating range that is not this step's? On
    /// nftables such a knock resets the host's progress and holds it back
    /// (`Object::Hold`).
    pub fn has_wrong_ports(&self) -> bool {
        self.rotate.is_some() || self.stages() > 1
    }

    /// The ports of stage `k` (0-based): the knock port, and with
    /// `rotate` the previous step's too.
    pub fn stage_ports(&self, k: usize) -> Vec<Port> {
        let mut v: Vec<Port> = self
            .knock
            .get(k)
            .into_iter()
            .chain(self.knock_prev.get(k))
            .chain(self.knock_next.get(k))
            .copied()
            .collect();
        v.dedup();
        v
    }

    /// Every knock port loaded: the current step's, the previous' and,
    /// near the end of a step, the next's.
    pub fn all_knock_ports(&self) -> Vec<Port> {
        self.knock
            .iter()
            .chain(&self.knock_prev)
            .chain(&self.knock_next)
            .copied()
            .collect()
    }

    /// The ports that answer as knock ports do: every knock port loaded,
    /// and the close port.
    pub fn knock_like_ports(&self) -> Vec<Port> {
        let mut v = self.all_knock_ports();
        v.extend(self.close);
        v
    }

    /// Connections a client must complete on each knock port.
    pub fn hits(&self) -> u32 {
        self.rate.conns + 1
    }

    /// Does the service's allow list cover this entry (an address, or a
    /// network inside an allowed one)? The one predicate for the daemon,
    /// `expire` and `allow`.
    pub fn allows(&self, n: &Net) -> bool {
        self.allow
            .iter()
            .any(|a| a.prefix() <= n.prefix() && a.contains(n.addr()))
    }
}

/// One `[[expire]]`: expiry only, for a table of a hand-written pf.conf.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpireTable {
    pub table: TableName,
    pub anchor: AnchorName,
    pub ttl: Secs,
    pub expire: ExpireMode,
}

/// A problem worth a word that does not stop pfknock.
#[derive(Clone, Debug, PartialEq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: usize,
    pub key: String,
    pub msg: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": warning: {}", self.msg)
    }
}
