//! nftables on Linux: load and unload `table inet pfknock`, and `Tables`
//! over its sets by running nft(8) (`nft -j` output read with serde_json).
//!
//! A pfknock table `<T>` is the sets `T_4` and `T_6`. The kernel expires
//! their elements itself (set timeouts) and refreshes them on a knock or on
//! traffic (`update`), so an entry's time stamp here is when it was last
//! added or refreshed: now - (timeout - expires).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::name::{AnchorName, Net};
use crate::render::nft::TABLE;
use crate::tables::{Entry, TableFlags, TableRef, TableStat, Tables};

/// How to run nft: `["nft"]`, or wrapped (`ip netns exec NS nft` in tests).
#[derive(Clone, Debug)]
pub struct Nft {
    pub argv: Vec<String>,
}

impl Default for Nft {
    fn default() -> Self {
        Nft {
            argv: vec!["nft".into()],
        }
    }
}

/// One element of a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elem {
    pub net: Net,
    /// The element's timeout and the seconds it has left (none for sets
    /// without timeouts).
    pub timeout: Option<u64>,
    pub expires: Option<u64>,
}

/// A set as `nft -j` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub timeout: Option<u64>,
    pub elems: Vec<Elem>,
}

impl Nft {
    fn run(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        let argv: Vec<&std::path::Path> = self.argv.iter().map(std::path::Path::new).collect();
        crate::tool::run("nft", &argv, args, input)
    }

    /// The sets of `table inet pfknock`, or `None` when the table is absent.
    pub fn sets(&self) -> Result<Option<Vec<Set>>> {
        match self.run(&["-j", "list", "table", "inet", TABLE], None) {
            Ok(text) => parse_sets(&text).map(Some),
            Err(Error::Tool { msg, .. }) if msg.contains("No such file or directory") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `nft -c -f -`: check only.
    pub fn check(&self, text: &str) -> Result<()> {
        self.run(&["-c", "-f", "-"], Some(text)).map(|_| ())
    }

    /// Replace the table in one transaction, carrying over the elements of
    /// every dynamic set the new table still has, with their age kept: an
    /// element aged `a` gets `timeout T expires T - a` under the new set
    /// timeout `T` (gone if that is not positive).
    pub fn load(&self, text: &str) -> Result<()> {
        let old = self.sets()?.unwrap_or_default();
        let new_timeouts = set_timeouts(text);
        let mut script = format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n{text}");
        for s in old {
            let Some(Some(t)) = new_timeouts.get(&s.name) else {
                continue;
            };
            let mut elems = Vec::new();
            for e in &s.elems {
                let (Some(et), Some(ex)) = (e.timeout.or(s.timeout), e.expires) else {
                    continue;
                };
                let age = et.saturating_sub(ex);
                if *t > age {
                    elems.push(format!("{} timeout {t}s expires {}s", e.net, t - age));
                }
            }
            if !elems.is_empty() {
                script.push_str(&format!(
                    "add element inet {TABLE} {} {{ {} }}\n",
                    s.name,
                    elems.join(", ")
                ));
            }
        }
        self.run(&["-f", "-"], Some(&script)).map(|_| ())
    }

    /// Delete the table, if it is there.
    pub fn unload(&self) -> Result<()> {
        self.run(
            &["-f", "-"],
            Some(&format!(
                "table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"
            )),
        )
        .map(|_| ())
    }
}

/// `set NAME { ...; timeout Ns; }` of a rendered table: name → timeout.
fn set_timeouts(text: &str) -> BTreeMap<String, Option<u64>> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("set "))
        .filter_map(|rest| {
            let (name, body) = rest.split_once(' ')?;
            let t = body
                .split(';')
                .find_map(|p| p.trim().strip_prefix("timeout "))
                .and_then(|v| v.trim_end_matches('s').parse().ok());
            Some((name.to_owned(), t))
        })
        .collect()
}

fn parse_sets(text: &str) -> Result<Vec<Set>> {
    let v: Value = serde_json::from_str(text).map_err(|e| Error::Tool {
        tool: "nft -j".into(),
        msg: format!("unreadable output: {e}"),
    })?;
    let mut out = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let Some(s) = item.get("set") else { continue };
        let mut set = Set {
            name: s["name"].as_str().unwrap_or_default().to_owned(),
            timeout: s["timeout"].as_u64(),
            elems: Vec::new(),
        };
        for e in s["elem"].as_array().into_iter().flatten() {
            let (val, timeout, expires) = match e.get("elem") {
                Some(inner) => (
                    &inner["val"],
                    inner["timeout"].as_u64(),
                    inner["expires"].as_u64(),
                ),
                None => (e, None, None),
            };
            let net = if let Some(a) = val.as_str() {
                a.parse::<Net>().ok()
            } else {
                let p = &val["prefix"];
                format!(
                    "{}/{}",
                    p["addr"].as_str().unwrap_or_default(),
                    p["len"].as_u64().unwrap_or(0)
                )
                .parse::<Net>()
                .ok()
            };
            if let Some(net) = net {
                set.elems.push(Elem {
                    net,
                    timeout: timeout.or(set.timeout),
                    expires,
                });
            }
        }
        out.push(set);
    }
    Ok(out)
}

/// `Tables` over the sets of `table inet pfknock`.
pub struct NftTables {
    pub nft: Nft,
    /// Wall clock, to turn `expires` into a time stamp.
    pub now: fn() -> i64,
}

impl NftTables {
    pub fn new(nft: Nft) -> Self {
        NftTables {
            nft,
            now: crate::now,
        }
    }

    fn family_sets(&self, t: &TableRef) -> Result<Vec<Set>> {
        let name = t.name.as_str();
        let Some(sets) = self.nft.sets()? else {
            return Err(no_table(t));
        };
        let mine: Vec<Set> = sets
            .into_iter()
            .filter(|s| s.name == format!("{name}_4") || s.name == format!("{name}_6"))
            .collect();
        if mine.is_empty() {
            return Err(no_table(t));
        }
        Ok(mine)
    }

    /// Those of `addrs` that are in the table now.
    fn present(&mut self, t: &TableRef, addrs: &[Net]) -> Result<Vec<Net>> {
        Ok(self
            .entries(t)?
            .iter()
            .map(|e| e.net)
            .filter(|n| addrs.contains(n))
            .collect())
    }

    /// Run one `nft -f` with an element command per address family.
    fn elements(&self, verb: &str, t: &TableRef, addrs: &[Net]) -> Result<()> {
        let sets = self.family_sets(t)?;
        let mut script = String::new();
        for (suffix, v6) in [("_4", false), ("_6", true)] {
            let list: Vec<String> = addrs
                .iter()
                .filter(|n| n.addr.is_ipv6() == v6)
                .map(|n| n.to_string())
                .collect();
            if list.is_empty() {
                continue;
            }
            let set = format!("{}{suffix}", t.name);
            if !sets.iter().any(|s| s.name == set) {
                return Err(Error::Usage(format!(
                    "{}: {} has no {} set (family of the service)",
                    list[0],
                    t,
                    if v6 { "IPv6" } else { "IPv4" }
                )));
            }
            script.push_str(&format!(
                "{verb} element inet {TABLE} {set} {{ {} }}\n",
                list.join(", ")
            ));
        }
        if script.is_empty() {
            return Ok(());
        }
        self.nft.run(&["-f", "-"], Some(&script)).map(|_| ())
    }
}

fn no_table(t: &TableRef) -> Error {
    Error::Tool {
        tool: "nft".into(),
        msg: format!("{t}: no such set in table inet {TABLE} (is it loaded? pfknock load)"),
    }
}

fn hosts_only(addrs: &[Net]) -> Result<()> {
    match addrs.iter().find(|n| !n.is_host()) {
        Some(n) => Err(Error::Usage(format!(
            "{n}: nftables sets of authorized hosts hold single addresses, not networks"
        ))),
        None => Ok(()),
    }
}

impl Tables for NftTables {
    fn entries(&mut self, t: &TableRef) -> Result<Vec<Entry>> {
        let now = (self.now)();
        let mut out = Vec::new();
        for s in self.family_sets(t)? {
            for e in s.elems {
                let tzero = match (e.timeout, e.expires) {
                    (Some(to), Some(ex)) => now - to.saturating_sub(ex) as i64,
                    _ => now,
                };
                out.push(Entry {
                    net: e.net,
                    tzero,
                    packets: 0,
                    bytes: 0,
                    counted: false,
                });
            }
        }
        Ok(out)
    }

    fn table_stats(&mut self, anchor: &AnchorName) -> Result<Vec<TableStat>> {
        let Some(sets) = self.nft.sets()? else {
            return Err(Error::Table {
                table: String::new(),
                anchor: anchor.as_str().to_owned(),
                op: "nft list table",
                errno: libc::ENOENT,
            });
        };
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        for s in sets {
            let base = s
                .name
                .strip_suffix("_4")
                .or_else(|| s.name.strip_suffix("_6"));
            if let Some(b) = base {
                *by.entry(b.to_owned()).or_default() += s.elems.len() as u64;
            }
        }
        Ok(by
            .into_iter()
            .map(|(name, count)| TableStat {
                name,
                anchor: anchor.as_str().to_owned(),
                flags: crate::pf::abi::PFR_TFLAG_ACTIVE | crate::pf::abi::PFR_TFLAG_PERSIST,
                count,
                packets: 0,
                tzero: 0,
            })
            .collect())
    }

    fn add(&mut self, t: &TableRef, addrs: &[Net]) -> Result<usize> {
        hosts_only(addrs)?;
        let before: Vec<Net> = self.entries(t)?.iter().map(|e| e.net).collect();
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
        let sets = self.family_sets(t)?;
        let mut script = String::new();
        for n in &present {
            let set = format!("{}{}", t.name, if n.addr.is_ipv6() { "_6" } else { "_4" });
            if sets.iter().any(|s| s.name == set) {
                script.push_str(&format!("delete element inet {TABLE} {set} {{ {n} }}\nadd element inet {TABLE} {set} {{ {n} }}\n"));
            }
        }
        self.nft.run(&["-f", "-"], Some(&script))?;
        Ok(present.len())
    }

    /// The sets come with the table (`pfknock load`).
    fn create(&mut self, _: &[(TableRef, TableFlags)]) -> Result<usize> {
        Ok(0)
    }

    fn refreshes_entries(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nft_json() {
        let j = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"table": {"family": "inet", "name": "pfknock"}},
          {"set": {"family": "inet", "name": "ssh_4", "table": "pfknock", "type": "ipv4_addr",
            "flags": ["timeout"], "timeout": 60,
            "elem": [{"elem": {"val": "198.18.0.2", "expires": 59}},
                     {"elem": {"val": "198.18.0.3", "timeout": 30, "expires": 19}}]}},
          {"set": {"family": "inet", "name": "ssh_allow_4", "table": "pfknock", "type": "ipv4_addr",
            "flags": ["interval"],
            "elem": ["198.51.100.7", {"prefix": {"addr": "203.0.113.0", "len": 24}}]}}]}"#;
        let s = parse_sets(j).unwrap();
        assert_eq!(
            s[0].elems[0],
            Elem {
                net: "198.18.0.2".parse().unwrap(),
                timeout: Some(60),
                expires: Some(59)
            }
        );
        assert_eq!(s[0].elems[1].timeout, Some(30));
        assert_eq!(s[1].elems[1].net, "203.0.113.0/24".parse().unwrap());
        assert_eq!(s[1].elems[0].expires, None);
    }

    #[test]
    fn finds_set_timeouts_in_rendered_text() {
        let t = set_timeouts(
            "table inet pfknock {\n\tset ssh_4 { type ipv4_addr; flags dynamic, timeout; timeout 60s; }\n\tset a_allow_4 { type ipv4_addr; flags interval; elements = { 1.2.3.4 }; }\n",
        );
        assert_eq!(t["ssh_4"], Some(60));
        assert_eq!(t["a_allow_4"], None);
    }
}
