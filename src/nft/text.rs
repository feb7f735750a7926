//! What nft(8) prints, read: the table's set definitions, rule counts and
//! elements with their time left.
#![forbid(unsafe_code)]

use serde_json::Value;

use crate::error::{Error, Result};
use crate::name::Net;
use crate::render::nft::SetDef;
use crate::render::nft::TABLE;

use super::*;

/// A set as the kernel has it, from `nft -j -t list table` (no elements).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSet {
    pub name: String,
    pub ty: String,
    pub size: Option<u64>,
    pub interval: bool,
    pub timeout: Option<u64>,
    pub comment: String,
    /// Its elements count packets and bytes (`counter` in the set).
    pub counter: bool,
}

impl KernelSet {
    /// Would loading `d` leave this set as it is? Constant (allow) sets
    /// are always made anew: they hold no state.
    pub(super) fn same_as(&self, d: &SetDef) -> bool {
        d.elements.is_none()
            && d.kept.is_none()
            && self.counter == d.counter
            && !self.interval
            && self.ty == d.ty
            && self.size == d.size
            && self.timeout == d.timeout.map(|t| t.0)
            && self.comment == d.comment
    }

    /// Can loading `d` change this set in place: it differs only in its
    /// default timeout or its size, both of which the kernel updates
    /// without touching an element? nf_tables_newset on an existing set
    /// takes a new timeout since Linux 6.5 (commit 123b99619cca, "honor
    /// set timeout and garbage collection updates"); the size, as
    /// measured on 6.18 (a smaller size than the set holds keeps every
    /// element and refuses new ones). Neither is taken on trust: `load`
    /// reads the definition back and makes the set anew where it is not
    /// what was asked. A meter only in its size: its elements count each
    /// source's connections under the rate and window they were made with
    /// (its comment names the rate; its timeout is the window), so a
    /// meter whose rate or window changed is made anew, empty. One whose
    /// size alone changed keeps its counts, so that a knock under way
    /// when a reload changes `size` still counts (made anew, a host that
    /// had made two of its three connections had to start again).
    pub(super) fn updatable(&self, d: &SetDef) -> bool {
        let meter = d.comment.contains(": meter ");
        d.elements.is_none()
            && d.kept.is_none()
            && self.counter == d.counter
            && !self.interval
            && self.ty == d.ty
            && self.timeout.is_some() == d.timeout.is_some()
            && self.comment == d.comment
            && (!meter || self.timeout == d.timeout.map(|t| t.0))
    }
}

/// Would a load of `new`, over the set a load of `old` made, keep that
/// set's elements where they are: leave it as it is, or change its
/// timeout or size in place (`KernelSet::updatable`, on a kernel that
/// takes that: `changes_sets_in_place`)? Not where it is made anew.
pub fn keeps_elements(old: &SetDef, new: &SetDef) -> bool {
    let made = KernelSet {
        name: old.name.clone(),
        ty: old.ty.to_owned(),
        size: old.size,
        interval: old.elements.is_some(),
        timeout: old.timeout.map(|t| t.0),
        comment: old.comment.clone(),
        counter: old.counter,
    };
    old.elements.is_none()
        && old.kept.is_none()
        && old.name == new.name
        && (made.same_as(new) || made.updatable(new))
}

/// Does the running kernel change a set's timeout and size in place, its
/// elements untouched? Linux 6.5 and later (commit 123b99619cca for the
/// timeout, "permit update of set size" for the size, both in 6.5), by
/// its release (`/proc/sys/kernel/osrelease`); `load` reads the sets back
/// all the same (`Nft::remade`). See docs/nft-kernel.md.
pub fn changes_sets_in_place() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .is_ok_and(|r| release_at_least(&r, (6, 5)))
}

/// Is a kernel release (`6.18.44-fc-v1252`) at least `major.minor`?
fn release_at_least(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = release.trim().split(['.', '-']);
    let mut num = || parts.next().and_then(|p| p.parse::<u32>().ok());
    match (num(), num()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

/// The sets and chain names of `nft -j -t list table` output.
/// The sets and chains of `table inet pfknock` in a terse listing of the
/// ruleset, and whether the table is there.
pub(super) fn parse_defs(text: &str) -> Result<(Vec<KernelSet>, Vec<String>, bool)> {
    let v: Value = serde_json::from_str(text).map_err(|e| Error::Tool {
        says: crate::error::ToolSays::Failed,
        tool: "nft -j".into(),
        msg: format!("unreadable output: {e}"),
    })?;
    let (mut sets, mut chains, mut had) = (Vec::new(), Vec::new(), false);
    let ours = |o: &Value, name: &str| o["family"] == "inet" && o[name] == TABLE;
    for item in v["nftables"].as_array().into_iter().flatten() {
        if item.get("table").is_some_and(|t| ours(t, "name")) {
            had = true;
        }
        if let Some(c) = item.get("chain").filter(|c| ours(c, "table")) {
            chains.push(c["name"].as_str().unwrap_or_default().to_owned());
        }
        let Some(s) = item.get("set").filter(|s| ours(s, "table")) else {
            continue;
        };
        let flags: Vec<&str> = s["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        sets.push(KernelSet {
            name: s["name"].as_str().unwrap_or_default().to_owned(),
            ty: s["type"].as_str().unwrap_or_default().to_owned(),
            size: s["size"].as_u64(),
            interval: flags.contains(&"interval"),
            timeout: s["timeout"].as_u64(),
            comment: s["comment"].as_str().unwrap_or_default().to_owned(),
            counter: s["stmt"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x.get("counter").is_some())),
        });
    }
    Ok((sets, chains, had))
}

/// An element of a set with timeouts, its timers in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedElem {
    pub addr: String,
    pub timeout_ms: Option<u64>,
    pub expires_ms: Option<u64>,
}

/// nft's `1d2h3m4s5ms` in milliseconds (`name::parse_written_ms`).
pub(super) fn parse_ms(s: &str) -> Option<u64> {
    crate::name::parse_written_ms(s)
}

/// The elements of `nft list set` text output, with their timers (an
/// element without `timeout` has the set's).
pub(super) fn parse_timed(text: &str) -> Vec<TimedElem> {
    let set_timeout = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("timeout "))
        .find_map(parse_ms);
    let Some(start) = text.find("elements = {") else {
        return Vec::new();
    };
    let body = &text[start + "elements = {".len()..];
    let body = &body[..body.find('}').unwrap_or(body.len())];
    body.split(',')
        .filter_map(|item| {
            let mut w = item.split_whitespace();
            let addr = w.next()?.to_owned();
            let mut e = TimedElem {
                addr,
                timeout_ms: set_timeout,
                expires_ms: None,
            };
            while let Some(k) = w.next() {
                match k {
                    "timeout" => e.timeout_ms = w.next().and_then(parse_ms),
                    "expires" => e.expires_ms = w.next().and_then(parse_ms),
                    _ => {}
                }
            }
            Some(e)
        })
        .collect()
}

/// Rules per chain in `nft -j list` output (chains without rules count 0).
#[cfg(not(target_os = "linux"))]
pub(super) fn rule_counts(text: &str) -> RuleCounts {
    let v: Value = serde_json::from_str(text).unwrap_or_default();
    let mut out = std::collections::BTreeMap::new();
    let ours = |o: &Value| o["family"] == "inet" && o["table"] == TABLE;
    for item in v["nftables"].as_array().into_iter().flatten() {
        if let Some(c) = item.get("chain").filter(|c| ours(c)) {
            out.entry(c["name"].as_str().unwrap_or_default().to_owned())
                .or_insert(0);
        }
        if let Some(r) = item.get("rule").filter(|r| ours(r)) {
            *out.entry(r["chain"].as_str().unwrap_or_default().to_owned())
                .or_insert(0) += 1;
        }
    }
    out
}

/// Does a listing hold `table inet pfknock`?
#[cfg(not(target_os = "linux"))]
pub(super) fn has_table(text: &str) -> bool {
    let v: Value = serde_json::from_str(text).unwrap_or_default();
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|i| i["table"]["family"] == "inet" && i["table"]["name"] == TABLE)
}

pub(super) fn parse_sets(text: &str) -> Result<Vec<Set>> {
    let v: Value = serde_json::from_str(text).map_err(|e| Error::Tool {
        says: crate::error::ToolSays::Failed,
        tool: "nft -j".into(),
        msg: format!("unreadable output: {e}"),
    })?;
    let mut out = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let Some(s) = item
            .get("set")
            .filter(|s| s["family"] == "inet" && s["table"] == TABLE)
        else {
            continue;
        };
        let mut set = Set {
            name: s["name"].as_str().unwrap_or_default().to_owned(),
            timeout: s["timeout"].as_u64(),
            size: s["size"].as_u64(),
            interval: (s["flags"].as_array().into_iter().flatten()).any(|f| f == "interval"),
            elems: Vec::new(),
        };
        for e in s["elem"].as_array().into_iter().flatten() {
            let (val, timeout, expires, counter) = match e.get("elem") {
                Some(inner) => (
                    &inner["val"],
                    inner["timeout"].as_u64(),
                    inner["expires"].as_u64(),
                    inner["counter"]["packets"]
                        .as_u64()
                        .zip(inner["counter"]["bytes"].as_u64()),
                ),
                None => (e, None, None, None),
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
                    counter,
                });
            }
        }
        out.push(set);
    }
    Ok(out)
}

#[cfg(test)]
mod release_tests {
    use super::*;
    use crate::name::Secs;

    #[test]
    fn a_release_is_compared_by_major_then_minor() {
        assert!(release_at_least("6.18.44-fc-v1252\n", (6, 5)));
        assert!(release_at_least("6.5.0", (6, 5)));
        assert!(release_at_least("7.0-rc1", (6, 5)));
        assert!(!release_at_least("6.1.0-28-amd64", (6, 5)));
        assert!(!release_at_least("5.19.3", (6, 5)));
        assert!(!release_at_least("6", (6, 5)));
        assert!(!release_at_least("", (6, 5)));
    }

    fn auth(timeout: u64, size: u64, comment: &str) -> SetDef {
        SetDef {
            name: "ssh_4".into(),
            ty: "ipv4_addr",
            elements: None,
            timeout: Some(Secs(timeout)),
            size: Some(size),
            comment: comment.into(),
            kept: None,
            counter: true,
        }
    }

    #[test]
    fn a_set_keeps_its_elements_where_only_its_timeout_or_size_changed() {
        let old = auth(60, 65536, "ssh: authorized");
        assert!(keeps_elements(&old, &old));
        assert!(keeps_elements(&old, &auth(3600, 65536, "ssh: authorized")));
        assert!(keeps_elements(&old, &auth(60, 1 << 20, "ssh: authorized")));
        assert!(!keeps_elements(&old, &auth(60, 65536, "sshd: authorized")));
        let mut other = auth(60, 65536, "ssh: authorized");
        other.counter = false;
        assert!(!keeps_elements(&old, &other));
        other = auth(60, 65536, "ssh: authorized");
        other.ty = "ipv6_addr";
        assert!(!keeps_elements(&old, &other));
        other = auth(60, 65536, "ssh: authorized");
        other.name = "sshd_4".into();
        assert!(!keeps_elements(&old, &other));
        let meter = auth(15, 65536, "ssh: meter 1, rate 5/15");
        assert!(keeps_elements(&meter, &meter));
        assert!(!keeps_elements(
            &meter,
            &auth(30, 65536, "ssh: meter 1, rate 5/15")
        ));
        assert!(!keeps_elements(
            &meter,
            &auth(15, 65536, "ssh: meter 1, rate 6/15")
        ));
        // Its size alone, larger or smaller: its counts stay.
        for size in [262_144, 4096] {
            assert!(keeps_elements(
                &meter,
                &auth(15, size, "ssh: meter 1, rate 5/15")
            ));
        }
    }
}
