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
        let (fam, table, name) = (
            c["family"].as_str().unwrap_or_default(),
            c["table"].as_str().unwrap_or_default(),
            c["name"].as_str().unwrap_or_default(),
        );
        if c["hook"].as_str() != Some("input")
            || !["ip", "ip6", "inet"].contains(&fam)
            || (fam == "inet" && (table == TABLE || table == crate::render::nft::GUARD))
        {
            continue;
        }
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
