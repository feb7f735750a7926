//! The one owner of every name pfknock puts into a firewall.
//!
//! Both renderers, the table commands and the daemon take their table, set
//! and meter names from here, and `config` refuses a config in which two
//! objects of one rendered ruleset would share a name. A name is derived
//! from the service's table name `T` by a suffix:
//!
//! | object | pf table | nftables set |
//! | --- | --- | --- |
//! | authorized hosts | `T` | `T_4`, `T_6` |
//! | stage k of a sequence | `T_s<k>` | `T_s<k>_4`, `T_s<k>_6` |
//! | intake: new and renewed authorizations (pf only) | `T_renew` | |
//! | allow list | `T_allow` | `T_allow_4`, `T_allow_6` |
//! | knock meter of port k (nftables only) | | `T_m<k>_4`, `T_m<k>_6` |
//! | hosts held after a wrong knock | `T_hold` | `T_hold_4`, `T_hold_6` |
//! | close knocks (pf: overloaded hosts; nftables: their meter) | `T_close` | `T_close_4`, `T_close_6` |
//!
//! The connections open at load to every service's protected ports are
//! in one pair of sets for all services, `kept.4` and `kept.6`
//! (`nft_kept_set`): the dot, which nftables takes in a set's name and
//! pfknock never in a table's, keeps them apart from every derived name.
//!
//! A rotating service's stage k is counted in an nftables chain `T_k<k>`
//! that each step's port jumps to: chains are a namespace of their own,
//! where only the base chains (prerouting, input, output, forward) and
//! the chains the input chain jumps to (knocks, signed, protect) live
//! beside them, and no `T_k<k>` can be one of those or another
//! service's.
//!
//! Suffixes can make one service's derived name equal another service's
//! table (`ssh` with a meter `ssh_m1_4`, and a service whose table is
//! `ssh_m1`), so uniqueness is checked over the whole list, not by rule.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use crate::name::{Af, TableName};
use crate::schema::{Role, Service};

/// Where a derived name lives: pf's tables and nftables' sets are two
/// namespaces (a name may be in both), each checked for clashes alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    PfTables,
    NftSets,
}

impl Af {
    pub fn suffix(self) -> &'static str {
        match self {
            Af::V4 => "_4",
            Af::V6 => "_6",
        }
    }
}

/// What an object is to its service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    /// One of the service's pf tables (and, but for `Renew`, its sets).
    Table(Role),
    /// The meter that counts completed connects to knock port k (1-based).
    Meter(usize),
    /// Hosts whose last knock hit a wrong port: their progress was reset,
    /// and their knocks count nothing until the entry times out (nftables)
    /// or the daemon expires it (pf).
    Hold,
    /// IPv6 networks of `prefix6` and how many of their addresses may
    /// still be authorized (nftables): one network cannot fill the
    /// authorized set.
    Admit,
    /// Knocks on the close port: on pf the hosts past the rate, which the
    /// daemon takes out of the authorized hosts; on nftables the meter
    /// that counts them (the rule itself takes the host out).
    Close,
    /// Signed-knock datagrams per source (nftables): past the limit they
    /// are dropped before the listener reads them.
    Spa,
}

impl Object {
    /// Words for messages.
    pub fn describe(self) -> String {
        match self {
            Object::Table(Role::Auth) => "authorized hosts".into(),
            Object::Table(Role::Stage(k)) => format!("stage {k}"),
            Object::Table(Role::Renew) => "intake (new and renewed authorizations)".into(),
            Object::Table(Role::Allow) => "allow list".into(),
            Object::Meter(k) => format!("meter of knock port {k}"),
            Object::Hold => "hosts held back after a wrong knock".into(),
            Object::Admit => "authorizations per IPv6 network".into(),
            Object::Close => "close knocks".into(),
            Object::Spa => "signed knocks per source".into(),
        }
    }
}

fn derived(s: &Service, suffix: &str) -> String {
    format!("{}{suffix}", s.table)
}

/// The pf table of an object (`None` for a meter: pf counts inside the
/// knock rule's source node).
pub fn pf_table(s: &Service, o: Object) -> Option<TableName> {
    let name = match o {
        Object::Table(Role::Auth) => s.table.to_string(),
        Object::Table(Role::Stage(k)) => derived(s, &format!("_s{k}")),
        Object::Table(Role::Renew) => derived(s, "_renew"),
        Object::Table(Role::Allow) => derived(s, "_allow"),
        Object::Hold => derived(s, "_hold"),
        Object::Close => derived(s, "_close"),
        Object::Meter(_) | Object::Admit | Object::Spa => return None,
    };
    // Lengths are checked by `config` before a Service exists.
    Some(TableName::new(&name).expect("derived table name checked by config"))
}

/// The nftables set of an object for one family (`None` for renewals:
/// nftables renews in the knock rule itself).
pub fn nft_set(s: &Service, o: Object, af: Af) -> Option<String> {
    let base = match o {
        Object::Table(Role::Renew) => return None,
        Object::Table(_) => pf_table(s, o)?.to_string(),
        Object::Meter(k) => derived(s, &format!("_m{k}")),
        Object::Hold => derived(s, "_hold"),
        Object::Close => derived(s, "_close"),
        Object::Spa => derived(s, "_spa"),
        Object::Admit if af == Af::V6 => derived(s, "_admit"),
        Object::Admit => return None,
    };
    Some(format!("{base}{}", af.suffix()))
}

/// The nftables set of the flows to any service's protected ports that
/// were open when the table was loaded, for one family: one for all
/// services (`Service::keeps_flows`).
pub fn nft_kept_set(af: Af) -> &'static str {
    match af {
        Af::V4 => "kept.4",
        Af::V6 => "kept.6",
    }
}

/// The chain that counts stage `k` (0-based) of a rotating service whose
/// authorized table is `table` (nftables): each step's ports jump to it
/// in their time window.
pub fn stage_chain(table: &str, k: usize) -> String {
    format!("{table}_k{}", k + 1)
}

/// The nflog prefix of a service's authorizing knock rule: the daemon
/// learns of each authorization from the packet logged with it.
pub fn knock_prefix(service: &str) -> String {
    format!("pfknock {service}: ")
}

/// The nflog prefix of a service's close knock (a host it took out of
/// the authorized set). Service names have no spaces, so no knock prefix
/// is one.
pub fn close_prefix(service: &str) -> String {
    format!("pfknock close {service}: ")
}

/// The service a `close_prefix` names, if `prefix` is one.
pub fn close_of_prefix(prefix: &str) -> Option<&str> {
    prefix.strip_prefix("pfknock close ")?.strip_suffix(": ")
}

/// The nflog prefix of the rule that logs a knock a full meter did not
/// count, naming the meter set.
pub fn meter_full_prefix(meter: &str) -> String {
    format!("pfknock meter {meter} full: ")
}

/// The meter set a `meter_full_prefix` names, if `prefix` is one.
pub fn meter_of_prefix(prefix: &str) -> Option<&str> {
    prefix
        .strip_prefix("pfknock meter ")?
        .strip_suffix(" full: ")
}

/// The nftables set behind a pf-style table name, for one family.
pub fn nft_set_of(table: &str, af: Af) -> String {
    format!("{table}{}", af.suffix())
}

/// Every object of a service, in render order.
pub fn objects(s: &Service) -> Vec<Object> {
    let mut v = vec![Object::Table(Role::Auth)];
    for k in 1..s.stages() {
        v.push(Object::Table(Role::Stage(k)));
    }
    v.push(Object::Table(Role::Renew));
    if !s.allow.is_empty() {
        v.push(Object::Table(Role::Allow));
    }
    for k in 1..=s.stages() {
        v.push(Object::Meter(k));
    }
    if s.has_wrong_ports() {
        v.push(Object::Hold);
    }
    if s.prefix6 < 128 && s.family.covers(Af::V6) {
        v.push(Object::Admit);
    }
    if s.close.is_some() {
        v.push(Object::Close);
    }
    if s.spa.is_some() {
        v.push(Object::Spa);
    }
    v
}

/// Every name one service puts into one namespace.
pub fn names(s: &Service, b: Space) -> Vec<(String, Object)> {
    let mut v = Vec::new();
    for o in objects(s) {
        match b {
            Space::PfTables => {
                if let Some(t) = pf_table(s, o) {
                    v.push((t.to_string(), o));
                }
            }
            Space::NftSets => {
                for af in [Af::V4, Af::V6] {
                    if let Some(n) = nft_set(s, o, af) {
                        v.push((n, o));
                    }
                }
            }
        }
    }
    v
}

/// Suffixes a service's derived names may add to its table name, for the
/// length check (stage and meter suffixes grow with the number of ports).
pub fn suffixes(knock_ports: usize) -> Vec<String> {
    let mut v = vec![
        "_renew".to_owned(),
        "_allow".to_owned(),
        "_hold".to_owned(),
        "_close".to_owned(),
    ];
    v.extend((1..knock_ports).map(|k| format!("_s{k}")));
    v
}

/// A clash: service `later` (an index into the list) derives a name that
/// service `earlier` (maybe the same) already has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clash {
    pub earlier: usize,
    pub later: usize,
    pub space: Space,
    pub name: String,
    pub what_earlier: Object,
    pub what_later: Object,
}

/// Every name the services met so far put into each backend's ruleset,
/// so that each new service is checked against them in its own time (a
/// config of n services costs n, not n squared).
#[derive(Default)]
pub struct Names {
    seen: [BTreeMap<String, (usize, Object)>; 2],
}

impl Names {
    /// Add service `i`; the first of its names that an earlier object (or
    /// one of its own) already has, if any.
    pub fn add(&mut self, i: usize, s: &Service) -> Option<Clash> {
        for (k, b) in [Space::PfTables, Space::NftSets].into_iter().enumerate() {
            for (name, o) in names(s, b) {
                if let Some(&(j, prev)) = self.seen[k].get(&name) {
                    return Some(Clash {
                        earlier: j,
                        later: i,
                        space: b,
                        name,
                        what_earlier: prev,
                        what_later: o,
                    });
                }
                self.seen[k].insert(name, (i, o));
            }
        }
        None
    }
}

/// The pf tables a service owns, by the names derived here.
impl Service {
    /// The table of hosts that passed stage `k` (1-based, `k < knock.len()`).
    pub fn stage_table(&self, k: usize) -> TableName {
        pf_table(self, Object::Table(Role::Stage(k))).expect("a pf table")
    }

    pub fn renew_table(&self) -> TableName {
        pf_table(self, Object::Table(Role::Renew)).expect("a pf table")
    }

    pub fn allow_table(&self) -> TableName {
        pf_table(self, Object::Table(Role::Allow)).expect("a pf table")
    }

    /// The pf table the close knock overloads into, where there is one.
    pub fn close_table(&self) -> Option<TableName> {
        self.close.and_then(|_| pf_table(self, Object::Close))
    }

    /// The pf table of hosts held back after a wrong knock, where a knock
    /// can be wrong (`has_wrong_ports`).
    pub fn hold_table(&self) -> Option<TableName> {
        self.has_wrong_ports()
            .then(|| pf_table(self, Object::Hold))
            .flatten()
    }

    /// Every pf table this service owns in the anchor, in render order.
    pub fn tables(&self) -> Vec<(TableName, Role)> {
        objects(self)
            .into_iter()
            .filter_map(|o| match o {
                Object::Table(r) => Some((pf_table(self, o)?, r)),
                Object::Meter(_) | Object::Hold | Object::Admit | Object::Close | Object::Spa => {
                    None
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod prefix_tests {
    use super::*;

    #[test]
    fn a_meter_prefix_reads_back() {
        assert_eq!(
            meter_of_prefix(&meter_full_prefix("ssh_m1_4")),
            Some("ssh_m1_4")
        );
        assert_eq!(meter_of_prefix(&knock_prefix("ssh")), None);
    }
}
