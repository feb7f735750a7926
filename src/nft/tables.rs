//! `Tables` over the sets of `table inet pfknock`: read and changed over
//! netlink, listed with nft(8) where a listing is needed.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::name::{AnchorName, Net};
use crate::render::nft::TABLE;
use crate::tables::{Entry, PoolUse, TableFlags, TableRef, TableStat, Tables};

use super::*;

/// `Tables` over the sets of `table inet pfknock`.
pub struct NftTables {
    pub nft: Nft,
    /// Wall clock, to turn `expires` into a time stamp.
    pub now: fn() -> i64,
    /// Sets found at their size by the last `table_stats`.
    full: Vec<(String, u64)>,
    /// Set names and rules per chain at the last `table_stats`.
    seen: Option<(Vec<String>, RuleCounts)>,
    /// Counts the caller has just read (`Tables::counted`), used once by
    /// the next `table_stats` instead of a dump of those sets.
    counted: HashMap<String, u64>,
}

impl NftTables {
    pub fn new(nft: Nft) -> Self {
        NftTables {
            nft,
            now: crate::clock::now,
            full: Vec::new(),
            seen: None,
            counted: HashMap::new(),
        }
    }

    /// The table's two sets with their elements. The sets come from a
    /// terse listing (nft reads no element for it); on Linux the elements
    /// come straight from the kernel over netlink (a dump, no JSON), which
    /// keeps `show` and `expire` near 100 ms at 100k entries.
    fn family_sets(&self, t: &TableRef) -> Result<Vec<Set>> {
        let mut mine = self.sets_terse(t)?;
        for s in &mut mine {
            // Interval sets (allow lists) hold ranges: nft tells them.
            s.elems = if s.timeout.is_some() {
                self.elements_of(s)?
            } else {
                let text = self
                    .nft
                    .run(&["-j", "list", "set", "inet", TABLE, &s.name], None)?;
                parse_sets(&text)?
                    .into_iter()
                    .flat_map(|x| x.elems)
                    .collect()
            };
        }
        Ok(mine)
    }

    #[cfg(target_os = "linux")]
    fn elements_of(&self, s: &Set) -> Result<Vec<Elem>> {
        let got = crate::netlink::Lookup::open(TABLE)
            .and_then(|mut l| l.dump_counted(&s.name))
            .map_err(|e| Error::Tool {
                says: crate::error::ToolSays::Failed,
                tool: format!("netlink: set {}", s.name),
                msg: crate::error::io_words(&e),
            })?;
        Ok(got.into_iter().map(|x| elem_of(s, x)).collect())
    }

    /// How many elements a set of a terse listing holds: for sets with
    /// timeouts (the large ones) the kernel's count, or where it gives
    /// none a netlink dump (`netlink::Lookup::count`); for other sets
    /// without ranges (the connections kept at load, `kept.4` and `kept.6`) one
    /// dump; from nft's listing for allow lists, which hold ranges (nft
    /// tells them; a dump gives each end). One nft process a kept set
    /// made `show` take 2.2 s at 250 services.
    fn count_of(&self, s: &Set) -> Result<u64> {
        #[cfg(target_os = "linux")]
        if !s.interval {
            let timed = s.timeout.is_some();
            return crate::netlink::Lookup::open(TABLE)
                .and_then(|mut l| {
                    if timed {
                        l.count(&s.name)
                    } else {
                        l.dumped(&s.name)
                    }
                })
                .map(|n| n as u64)
                .map_err(|e| Error::Tool {
                    says: crate::error::ToolSays::Failed,
                    tool: format!("netlink: set {}", s.name),
                    msg: crate::error::io_words(&e),
                });
        }
        let text = self
            .nft
            .run(&["-j", "list", "set", "inet", TABLE, &s.name], None)?;
        Ok(parse_sets(&text)?
            .iter()
            .map(|x| x.elems.len() as u64)
            .sum())
    }

    #[cfg(not(target_os = "linux"))]
    fn elements_of(&self, s: &Set) -> Result<Vec<Elem>> {
        let text = self
            .nft
            .run(&["-j", "list", "set", "inet", TABLE, &s.name], None)?;
        Ok(parse_sets(&text)?
            .into_iter()
            .flat_map(|x| x.elems)
            .collect())
    }

    /// Which of `addrs` the table holds: a netlink lookup for each host
    /// (its cost grows with `addrs`, not with the set), else one listing
    /// (a set dump costs the kernel O(n^2/chunk): nf_tables_dump_set walks
    /// the set from its start for every datagram, skipping what it sent).
    /// A caller that has just listed the set (expire, flush) thus never
    /// lists it twice.
    fn present(&mut self, t: &TableRef, addrs: &[Net]) -> Result<Vec<Net>> {
        #[cfg(target_os = "linux")]
        if addrs.iter().all(|n| n.is_host()) {
            // No listing of the ruleset: a set that is not there holds
            // nothing (the kernel answers ENOENT for each address alike).
            let mut l = crate::netlink::Lookup::open(TABLE).map_err(|e| Error::Tool {
                says: crate::error::ToolSays::Failed,
                tool: format!("netlink: table inet {TABLE}"),
                msg: crate::error::io_words(&e),
            })?;
            let mut out = Vec::new();
            for (set, v6) in [
                (format!("{}_4", t.name), false),
                (format!("{}_6", t.name), true),
            ] {
                let mut mine: Vec<Net> = addrs
                    .iter()
                    .filter(|n| n.addr().is_ipv6() == v6)
                    .copied()
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                mine.sort_unstable();
                mine.dedup();
                let ips: Vec<std::net::IpAddr> = mine.iter().map(|n| n.addr()).collect();
                let held = l.holds(&set, &ips).map_err(|e| Error::Tool {
                    says: crate::error::ToolSays::Failed,
                    tool: format!("netlink: set {set}"),
                    msg: crate::error::io_words(&e),
                })?;
                out.extend(
                    mine.into_iter()
                        .zip(held)
                        .filter(|(_, h)| *h)
                        .map(|(n, _)| n),
                );
            }
            return Ok(out);
        }
        let want: std::collections::HashSet<&Net> = addrs.iter().collect();
        Ok(self
            .entries(t)?
            .iter()
            .map(|e| e.net)
            .filter(|n| want.contains(n))
            .collect())
    }

    /// The table's sets for `t` (one per family) without their elements:
    /// names, timeouts and sizes.
    fn sets_terse(&self, t: &TableRef) -> Result<Vec<Set>> {
        let name = t.name.as_str();
        let mine = self.sets_named(&[format!("{name}_4"), format!("{name}_6")])?;
        if mine.is_empty() {
            return Err(no_table(t));
        }
        Ok(mine)
    }

    /// Those of `names` that are sets of pfknock's table, without their
    /// elements. On Linux the kernel describes each (one request a set,
    /// whatever else the ruleset holds: a listing of every set takes
    /// 26 ms at 250 services, and `show` or `expire` asks for each
    /// service's); elsewhere from a terse listing of every set.
    #[cfg(target_os = "linux")]
    fn sets_named(&self, names: &[String]) -> Result<Vec<Set>> {
        let failed = |name: &str, e: std::io::Error| Error::Tool {
            says: crate::error::ToolSays::Failed,
            tool: format!("netlink: set {name}"),
            msg: crate::error::io_words(&e),
        };
        let mut l = crate::netlink::Lookup::open(TABLE).map_err(|e| failed(&names[0], e))?;
        let mut out = Vec::new();
        for name in names {
            match l.info(name) {
                Ok(i) => out.push(Set {
                    name: name.clone(),
                    timeout: i.timeout_ms.map(|ms| ms / 1000),
                    size: i.size,
                    interval: i.interval,
                    elems: Vec::new(),
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(failed(name, e)),
            }
        }
        Ok(out)
    }

    #[cfg(not(target_os = "linux"))]
    fn sets_named(&self, names: &[String]) -> Result<Vec<Set>> {
        let terse = self.nft.sets_listing()?;
        Ok(parse_sets(&terse)?
            .into_iter()
            .filter(|s| names.contains(&s.name))
            .collect())
    }

    /// Run one `nft -f` with an element command per address family.
    /// Add or delete addresses, one set per family, in one commit each.
    /// On Linux over netlink in pfknock's own name (the daemon sees who
    /// committed it and leaves the log line to the command); elsewhere
    /// one `nft -f`.
    fn elements(&self, verb: &str, t: &TableRef, addrs: &[Net]) -> Result<()> {
        // On Linux the ruleset is listed only when the kernel says a set
        // is not there, to say why; elsewhere first.
        let sets = if cfg!(target_os = "linux") {
            None
        } else {
            Some(self.sets_terse(t)?)
        };
        let mut todo: Vec<(String, Vec<Net>)> = Vec::new();
        for (suffix, v6) in [("_4", false), ("_6", true)] {
            let list: Vec<Net> = addrs
                .iter()
                .filter(|n| n.addr().is_ipv6() == v6)
                .copied()
                .collect();
            if list.is_empty() {
                continue;
            }
            let set = format!("{}{suffix}", t.name);
            if sets
                .as_ref()
                .is_some_and(|s| !s.iter().any(|s| s.name == set))
            {
                return Err(no_set(t, v6, list[0]));
            }
            todo.push((set, list));
        }
        let full = || {
            Error::Other(format!(
                "{t}: the set is full: raise the service's size in the config, \
                 or expire or revoke entries first"
            ))
        };
        #[cfg(target_os = "linux")]
        for (set, list) in &todo {
            let elems: Vec<(std::net::IpAddr, Option<(u64, u64)>)> =
                list.iter().map(|n| (n.addr(), None)).collect();
            crate::netlink::change_elements(TABLE, set, verb == "add", &elems).map_err(|e| {
                // ENFILE is what the kernel answers for a set at its size,
                // ENOENT for a set (or table) that is not there.
                if e.raw_os_error() == Some(libc::ENFILE) {
                    full()
                } else if e.raw_os_error() == Some(libc::ENOENT) {
                    match self.sets_terse(t) {
                        Err(e) => e,
                        Ok(_) => no_set(t, set.ends_with("_6"), list[0]),
                    }
                } else {
                    Error::Tool {
                        says: crate::error::ToolSays::Failed,
                        tool: format!("netlink: {verb} element inet {TABLE} {set}"),
                        msg: crate::error::io_words(&e),
                    }
                }
            })?;
        }
        #[cfg(not(target_os = "linux"))]
        if !todo.is_empty() {
            let script: String = todo
                .iter()
                .map(|(set, list)| {
                    let l: Vec<String> = list.iter().map(|n| n.to_string()).collect();
                    format!("{verb} element inet {TABLE} {set} {{ {} }}\n", l.join(", "))
                })
                .collect();
            self.nft
                .run(&["-f", "-"], Some(&script))
                .map(|_| ())
                .map_err(|e| match e {
                    Error::Tool {
                        says: crate::error::ToolSays::SetFull,
                        ..
                    } => full(),
                    e => e,
                })?;
        }
        Ok(())
    }
}

pub(super) fn no_table(t: &TableRef) -> Error {
    Error::Tool {
        says: crate::error::ToolSays::Failed,
        tool: "nft".into(),
        msg: format!(
            "table inet {TABLE}: no set {}_4 or {}_6 (is it loaded? pfknock load)",
            t.name, t.name
        ),
    }
}

/// A table without the set of an address's family.
fn no_set(t: &TableRef, v6: bool, first: Net) -> Error {
    Error::Usage(format!(
        "{first}: {t} has no {} set (family of the service)",
        if v6 { "IPv6" } else { "IPv4" }
    ))
}

pub(super) fn hosts_only(addrs: &[Net]) -> Result<()> {
    match addrs.iter().find(|n| !n.is_host()) {
        Some(n) => Err(Error::Usage(crate::tables::hosts_only_words(n))),
        None => Ok(()),
    }
}

impl Tables for NftTables {
    /// One element by a netlink lookup, not a listing: its age is the set's
    /// timeout less the time it has left (an element restored with its own
    /// remaining time reads as older than it is).
    #[cfg(target_os = "linux")]
    fn entry(&mut self, t: &TableRef, net: &Net) -> Result<Option<Entry>> {
        let fam = if net.addr().is_ipv4() { "4" } else { "6" };
        let set = format!("{}_{fam}", t.name);
        let Some(s) = self.sets_terse(t)?.into_iter().find(|s| s.name == set) else {
            return Err(no_table(t));
        };
        if s.timeout.is_none() || !net.is_host() {
            return Ok(self.entries(t)?.into_iter().find(|e| e.net == *net));
        }
        let left = crate::netlink::Lookup::open(TABLE)
            .and_then(|mut l| l.get(&set, net.addr()))
            .map_err(|e| Error::Tool {
                says: crate::error::ToolSays::Failed,
                tool: format!("netlink: set {set}"),
                msg: crate::error::io_words(&e),
            })?;
        let now = (self.now)();
        Ok(left.map(|left| {
            let tzero = match (s.timeout, left) {
                (Some(to), Some(ms)) => tzero_of(now, to.saturating_mul(1000), ms),
                _ => now,
            };
            Entry {
                net: *net,
                tzero,
                packets: 0,
                bytes: 0,
                counted: false,
            }
        }))
    }

    fn entries(&mut self, t: &TableRef) -> Result<Vec<Entry>> {
        let now = (self.now)();
        let mut out = Vec::new();
        for s in self.family_sets(t)? {
            // Made in the listing's own memory (an entry is smaller than
            // an element): a set is never held twice.
            let mut v: Vec<Entry> = s.elems.into_iter().map(|e| entry_of(&e, now)).collect();
            if out.is_empty() {
                out = v;
            } else {
                out.append(&mut v);
            }
        }
        Ok(out)
    }

    /// The kernel's flush of each of the table's two sets, its deletions
    /// echoed: one transaction a set, whatever it holds, and exactly what
    /// it removed (a listing first, then deletes of what it listed, could
    /// miss what came between, or what a dump during a resize skipped).
    /// Not for sets without timeouts (allow lists hold ranges).
    fn counted(&mut self, counts: &[(String, u64)]) {
        self.counted = counts.iter().cloned().collect();
    }

    #[cfg(target_os = "linux")]
    fn clear(&mut self, t: &TableRef) -> Result<Option<crate::tables::Cleared>> {
        let sets = self.sets_terse(t)?;
        if sets.iter().any(|s| s.timeout.is_none()) {
            return Ok(None);
        }
        let now = (self.now)();
        let mut c = crate::tables::Cleared {
            entries: Vec::new(),
            whole: true,
        };
        for s in &sets {
            let (got, whole) =
                crate::netlink::flush_set(TABLE, &s.name).map_err(|e| Error::Tool {
                    says: crate::error::ToolSays::Failed,
                    tool: format!("netlink: flush of set {}", s.name),
                    msg: crate::error::io_words(&e),
                })?;
            c.whole &= whole;
            c.entries
                .extend(got.into_iter().map(|x| entry_of(&elem_of(s, x), now)));
        }
        Ok(Some(c))
    }

    fn table_stats(&mut self, anchor: &AnchorName) -> Result<Vec<TableStat>> {
        let Some((sets, rules)) = self.nft.listing_terse()? else {
            self.seen = None;
            return Err(Error::Table {
                table: String::new(),
                anchor: anchor.as_str().to_owned(),
                op: "nft list table",
                outcome: crate::error::Outcome::MissingAnchor,
                errno: 0,
            });
        };
        self.seen = Some((sets.iter().map(|s| s.name.clone()).collect(), rules));
        let mut counts = Vec::with_capacity(sets.len());
        let counted = std::mem::take(&mut self.counted);
        for s in &sets {
            counts.push(match counted.get(&s.name) {
                Some(n) => *n,
                None => self.count_of(s)?,
            });
        }
        self.full = sets
            .iter()
            .zip(&counts)
            .filter_map(|(s, n)| Some((s.name.clone(), s.size?, *n)))
            .filter(|(_, size, n)| *n >= *size)
            .map(|(name, size, _)| (name, size))
            .collect();
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        for (s, n) in sets.iter().zip(counts) {
            let base = s
                .name
                .strip_suffix("_4")
                .or_else(|| s.name.strip_suffix("_6"));
            if let Some(b) = base {
                *by.entry(b.to_owned()).or_default() += n;
            }
        }
        Ok(by
            .into_iter()
            .map(|(name, count)| TableStat {
                name,
                anchor: anchor.as_str().to_owned(),
                active: true,
                count,
                counters: None,
                packets: 0,
                tzero: 0,
            })
            .collect())
    }

    fn add(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize> {
        hosts_only(addrs)?;
        // Looked up one by one: an allow costs the same in a set of a
        // million as in an empty one.
        let before = self.present(t, addrs)?;
        let new: Vec<Net> = addrs
            .iter()
            .filter(|a| !before.contains(a))
            .copied()
            .collect();
        self.elements("add", t, &new)?;
        Ok(new.len())
    }

    fn delete(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize> {
        // Elements time out by themselves: delete only those still there.
        let present = self.present(t, addrs)?;
        self.elements("delete", t, &present)?;
        Ok(present.len())
    }

    /// Delete and add again in one transaction: a fresh timeout.
    fn renew(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize> {
        let present = self.present(t, addrs)?;
        if present.is_empty() {
            return Ok(0);
        }
        let sets = self.sets_terse(t)?;
        let mut script = String::new();
        for n in &present {
            let set = format!("{}{}", t.name, if n.addr().is_ipv6() { "_6" } else { "_4" });
            if sets.iter().any(|s| s.name == set) {
                script.push_str(&format!("delete element inet {TABLE} {set} {{ {n} }}\nadd element inet {TABLE} {set} {{ {n} }}\n"));
            }
        }
        self.nft.run(&["-f", "-"], Some(&script))?;
        Ok(present.len())
    }

    /// Put authorizations back with the time they had left (after the
    /// table was deleted and loaded again), in one transaction.
    fn add_timed(&mut self, t: &TableRef, entries: &[(Net, u64)]) -> Result<usize> {
        let sets = self.sets_terse(t)?;
        let mut script = String::new();
        let mut n = 0;
        for s in &sets {
            let v6 = s.name.ends_with("_6");
            let list: Vec<String> = entries
                .iter()
                .filter(|(a, left)| a.addr().is_ipv6() == v6 && a.is_host() && *left > 0)
                .map(|(a, left)| match s.timeout {
                    Some(to) => format!("{} timeout {to}s expires {}s", a.addr(), (*left).min(to)),
                    None => a.addr().to_string(),
                })
                .collect();
            if list.is_empty() {
                continue;
            }
            n += list.len();
            script.push_str(&format!(
                "add element inet {TABLE} {} {{ {} }}\n",
                s.name,
                list.join(", ")
            ));
        }
        if n > 0 {
            self.nft.run(&["-f", "-"], Some(&script))?;
        }
        Ok(n)
    }

    /// The sets come with the table (`pfknock load`).
    fn create(&mut self, _: &[(TableRef, TableFlags)]) -> Result<usize> {
        Ok(0)
    }

    fn caps(&self) -> crate::tables::Caps {
        crate::tables::Caps::NFT
    }

    fn full_sets(&self) -> Vec<(String, u64)> {
        self.full.clone()
    }

    fn pools(&mut self) -> Result<Vec<PoolUse>> {
        Ok(Vec::new())
    }

    /// Does the table still have every set and exactly the rules the
    /// config renders (a flushed chain, a deleted rule or set says no)?
    fn intact(&self, cfg: &Config) -> Option<bool> {
        let (sets, rules) = self.seen.as_ref()?;
        let want = crate::render::nft::build(cfg);
        Some(
            want.sets().all(|s| sets.contains(&s.name))
                && want.chains.len() == rules.len()
                && want
                    .chains
                    .iter()
                    .all(|c| rules.get(c.name.as_str()) == Some(&c.rules.len())),
        )
    }
}

/// An element of set `s` as the kernel told it (a dump, a flush's echo).
#[cfg(target_os = "linux")]
fn elem_of(s: &Set, (addr, timeout, left, counter): crate::netlink::CountedElement) -> Elem {
    let to_ms = timeout.or(s.timeout.map(|t| t.saturating_mul(1000)));
    let to = timeout.map(|ms| ms / 1000).or(s.timeout);
    Elem {
        net: Net::host(addr),
        timeout: to,
        // The seconds left that make its timeout less them its age to
        // the nearest second (`age_s`).
        expires: match (to, to_ms, left) {
            (Some(to), Some(to_ms), Some(left)) => Some(to.saturating_sub(age_s(to_ms, left))),
            _ => left.map(|ms| ms.div_ceil(1000)),
        },
        counter,
    }
}

/// When an element's timeout began (seconds), from `now` (seconds), its
/// timeout and the time it has left (ms), its age to the nearest second
/// (`age_s`).
#[cfg(target_os = "linux")]
fn tzero_of(now: i64, timeout_ms: u64, left_ms: u64) -> i64 {
    now - age_s(timeout_ms, left_ms) as i64
}

/// An element's age from its timeout and the time it has left (ms), to
/// the nearest second, a half up, as the daemon's event lines give ages
/// (`machine::age`): a revoke's, a flush's or an expire's audit line, and
/// `show`, say the same age as the lines before them.
#[cfg(target_os = "linux")]
fn age_s(timeout_ms: u64, left_ms: u64) -> u64 {
    (timeout_ms.saturating_sub(left_ms) + 500) / 1000
}

/// An element as an entry: stamped when its timeout began (its age is
/// the timeout less the time it has left).
fn entry_of(e: &Elem, now: i64) -> Entry {
    let tzero = match (e.timeout, e.expires) {
        (Some(to), Some(ex)) => now - to.saturating_sub(ex) as i64,
        _ => now,
    };
    let (packets, bytes) = e.counter.unwrap_or((0, 0));
    Entry {
        net: e.net,
        tzero,
        packets,
        bytes,
        counted: e.counter.is_some(),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// Ages to the nearest second, a half up: 1.4 s is 1 s, 1.5 and
    /// 1.7 s are 2 s (whole seconds since, as before, said 1 s); an
    /// element with more time left than its timeout (a clock step) is 0 s
    /// old. A listed element (`show`, `expire`, `flush`) is as old.
    #[test]
    fn an_elements_age_is_to_the_nearest_second() {
        let set = super::Set {
            name: "ssh_4".into(),
            timeout: Some(60),
            size: None,
            interval: false,
            elems: Vec::new(),
        };
        for (left, age) in [
            (58_600, 1),
            (58_500, 2),
            (58_300, 2),
            (60_000, 0),
            (61_000, 0),
        ] {
            assert_eq!(100 - super::tzero_of(100, 60_000, left), age, "{left}");
            // Listed (with its own timeout, or the set's), the same.
            for to in [Some(60_000), None] {
                let x = ("198.18.0.1".parse().unwrap(), to, Some(left), None);
                let e = super::entry_of(&super::elem_of(&set, x), 100);
                assert_eq!(100 - e.tzero, age, "{left} {to:?}");
            }
        }
    }
}
