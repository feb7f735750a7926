//! Other tables' input chains that would drop what pfknock opens (`nft -j`
//! output, read with serde_json).
#![forbid(unsafe_code)]

use serde_json::Value;

use crate::config::Config;
use crate::name::PortRange;
use crate::render::nft::TABLE;

/// See `Nft::neighbours`.
pub fn blocking_neighbours(json: &str, cfg: &Config) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    let items: Vec<&Value> = v["nftables"].as_array().into_iter().flatten().collect();
    let mut ports: Vec<String> = Vec::new();
    for s in &cfg.services {
        ports.extend(s.all_knock_ports().iter().map(|p| p.to_string()));
        ports.extend(s.protect.iter().map(PortRange::nft));
    }
    let protected: Vec<u16> = cfg
        .services
        .iter()
        .flat_map(|s| s.protect.iter().flat_map(|r| r.lo.get()..=r.hi.get()))
        .collect();
    let mut out = Vec::new();
    for c in items.iter().filter_map(|i| i.get("chain")) {
        let Some((fam, table, name)) = other_input(c) else {
            continue;
        };
        let rules: Vec<&Value> = items
            .iter()
            .filter_map(|i| i.get("rule"))
            .filter(|r| r["family"] == fam && r["table"] == table && r["chain"] == name)
            .collect();
        let last_drops = rules.last().is_some_and(|r| {
            let e = r["expr"].as_array().map(Vec::as_slice).unwrap_or_default();
            e.len() == 1 && (e[0].get("drop").is_some() || e[0].get("reject").is_some())
        });

        if protected
            .iter()
            .all(|p| rules.iter().any(|r| accepts_tcp_port(r, *p)))
        {
            continue; // the remedy is in place
        }
        let why = if c["policy"].as_str() == Some("drop") {
            "drops by default (policy drop)"
        } else if last_drops {
            "ends with a rule that drops everything"
        } else {
            continue;
        };
        out.push(format!(
            "chain {fam} {table} {name} {why}: it runs on the input hook beside pfknock's \
             and closes what pfknock opens; add `tcp dport {{ {} }} accept` to it \
             (pfknock's chain has already dropped every host that did not knock)",
            ports.join(", ")
        ));
    }
    out
}

/// A chain of `nft -j` output that runs on the input hook of IPv4 or IPv6
/// in a table not pfknock's: (family, table, name).
fn other_input(c: &Value) -> Option<(&str, &str, &str)> {
    let (fam, table, name) = (
        c["family"].as_str()?,
        c["table"].as_str()?,
        c["name"].as_str()?,
    );
    let ours = fam == "inet" && (table == TABLE || table == crate::render::nft::GUARD);
    (c["hook"].as_str() == Some("input") && ["ip", "ip6", "inet"].contains(&fam) && !ours)
        .then_some((fam, table, name))
}

/// The chains of `nft -j list chains` output whose rules
/// `blocking_neighbours` reads (`other_input`), where each can be named
/// on nft's command line (a plain identifier); `None` where one cannot.
pub fn input_chains(json: &str) -> Option<Vec<[String; 3]>> {
    let v = serde_json::from_str::<Value>(json).ok()?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-./".contains(&b))
            && s.as_bytes()[0].is_ascii_alphabetic()
    };
    let mut out = Vec::new();
    for c in v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("chain"))
    {
        if let Some(names) = other_input(c) {
            let names = [names.0, names.1, names.2];
            if !names.iter().all(|n| plain(n)) {
                return None;
            }
            out.push(names.map(str::to_owned));
        }
    }
    Some(out)
}

/// Is `rule` exactly `tcp dport <port, set or range covering port> accept`?
pub(super) fn accepts_tcp_port(rule: &Value, port: u16) -> bool {
    let e = rule["expr"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let [m, v] = e else { return false };
    if v.get("accept").is_none() {
        return false;
    }
    let m = &m["match"];
    if m["left"]["payload"]["protocol"] != "tcp" || m["left"]["payload"]["field"] != "dport" {
        return false;
    }
    if !matches!(m["op"].as_str(), Some("==" | "in")) {
        return false;
    }
    let covers = |v: &Value| match (v.as_u64(), v.get("range")) {
        (Some(n), _) => n == port as u64,
        (None, Some(r)) => {
            let (lo, hi) = (r[0].as_u64().unwrap_or(1), r[1].as_u64().unwrap_or(0));
            (lo..=hi).contains(&(port as u64))
        }
        _ => false,
    };
    match m["right"].get("set") {
        Some(set) => set.as_array().into_iter().flatten().any(covers),
        None => covers(&m["right"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nft -j list chains` as nft 1.0.6 prints it: pfknock's own chains
    /// and the guard's are not neighbours, nor an output or forward
    /// chain, nor a bridge or arp one; an odd name asks for the whole
    /// ruleset instead.
    #[test]
    fn the_input_chains_of_other_tables_are_listed_one_by_one() {
        let chain = |fam: &str, table: &str, name: &str, hook: &str| {
            format!(
                r#"{{"chain": {{"family": "{fam}", "table": "{table}", "name": "{name}", "handle": 1, "type": "filter", "hook": "{hook}", "prio": 0, "policy": "accept"}}}}"#
            )
        };
        let listing = |chains: &[String]| {
            format!(
                r#"{{"nftables": [{{"metainfo": {{"version": "1.0.6"}}}}, {}]}}"#,
                chains.join(", ")
            )
        };
        let mut chains = vec![
            chain("inet", TABLE, "input", "input"),
            chain("inet", crate::render::nft::GUARD, "input", "input"),
            chain("ip", "filter", "INPUT", "input"),
            chain("ip6", "filter", "OUTPUT", "output"),
            chain("inet", "firewalld", "filter_INPUT", "input"),
            chain("bridge", "br", "input", "input"),
            chain("ip", "nat", "PREROUTING", "prerouting"),
        ];
        assert_eq!(
            input_chains(&listing(&chains)),
            Some(vec![
                ["ip", "filter", "INPUT"].map(str::to_owned),
                ["inet", "firewalld", "filter_INPUT"].map(str::to_owned),
            ])
        );
        chains.push(chain("ip", "my table", "input", "input"));
        assert_eq!(input_chains(&listing(&chains)), None);
        assert_eq!(input_chains("not json"), None);
        let none = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}]}"#;
        assert_eq!(input_chains(none), Some(Vec::new()));
    }
}
