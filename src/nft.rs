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

use crate::config::Config;
use crate::error::{Error, Result};
use crate::name::{AnchorName, Net, PortRange};
use crate::render::nft::TABLE;
use crate::render::nft::{SetDef, TableDef};
use crate::tables::{Entry, TableFlags, TableRef, TableStat, Tables};

/// How to run nft: its absolute path (`lib::backend` finds it), or a
/// wrapper such as `ip netns exec NS nft` in benchmarks.
#[derive(Clone, Debug)]
pub struct Nft {
    pub argv: Vec<String>,
}

/// One element of a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elem {
    pub net: Net,
    /// The element's timeout and the seconds it has left (none for sets
    /// without timeouts).
    pub timeout: Option<u64>,
    pub expires: Option<u64>,
    /// Packets and bytes, where the set counts them.
    pub counter: Option<(u64, u64)>,
}

/// A set as `nft -j` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub timeout: Option<u64>,
    pub size: Option<u64>,
    pub elems: Vec<Elem>,
}

impl Nft {
    fn run(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        let argv: Vec<&std::path::Path> = self.argv.iter().map(std::path::Path::new).collect();
        crate::tool::run("nft", &argv, args, input)
    }

    /// The sets of `table inet pfknock`, or `None` when the table is absent.
    pub fn sets(&self) -> Result<Option<Vec<Set>>> {
        Ok(self.listing()?.map(|(sets, _)| sets))
    }

    /// The sets of `table inet pfknock` and the number of rules in each of
    /// its chains, or `None` when the table is absent.
    pub fn listing(&self) -> Result<Option<(Vec<Set>, RuleCounts)>> {
        match self.run(&["-j", "list", "table", "inet", TABLE], None) {
            Ok(text) => Ok(Some((parse_sets(&text)?, rule_counts(&text)))),
            Err(Error::Tool { msg, .. }) if msg.contains("No such file or directory") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `nft -c -f -`: check only.
    pub fn check(&self, text: &str) -> Result<()> {
        self.run(&["-c", "-f", "-"], Some(text)).map(|_| ())
    }

    /// Bring `table inet pfknock` to what the config renders, in one
    /// transaction, changing only what changed: every chain is replaced
    /// (rules hold no state), a set whose definition is unchanged is left
    /// alone with its elements and their timers (so knock progress, meters
    /// and authorizations go on to the millisecond), a set whose
    /// definition changed is made anew with the elements it had (an
    /// element aged `a` gets `timeout T expires T - a` under the new
    /// timeout `T`, gone if that is not positive; meters start empty, since
    /// their elements keep the rate they were made with), and a set the
    /// config no longer has is deleted.
    ///
    /// When nftables refuses the table and pfknock had none loaded, the
    /// closed table goes in instead (fail closed), and the error says so.
    pub fn load(&self, cfg: &Config) -> Result<()> {
        let (script, had) = self.plan(&crate::render::nft::build(cfg))?;
        match self.run(&["-f", "-"], Some(&script)) {
            Ok(_) => Ok(()),
            Err(e) if had => Err(e),
            Err(e) => Err(match self.close(cfg) {
                Ok(()) => Error::Other(format!(
                    "{e}; loaded the closed table instead: the protected ports are \
                     closed to all but the allow list"
                )),
                Err(e2) => Error::Other(format!("{e}; the closed table failed too: {e2}")),
            }),
        }
    }

    /// Leave the table closed: knock rules, authorizations and meters go,
    /// the protected ports drop all but the allow list (`unload`).
    pub fn close(&self, cfg: &Config) -> Result<()> {
        let script = self.load_script(&crate::render::nft::build_closed(cfg))?;
        self.run(&["-f", "-"], Some(&script)).map(|_| ())
    }

    /// The `nft -f` script of `load`.
    pub fn load_script(&self, def: &TableDef) -> Result<String> {
        self.plan(def).map(|(script, _)| script)
    }

    /// The script of `load_script`, and whether the table was there. The
    /// listing is terse (no elements): its cost does not grow with the
    /// authorizations, which a step of a rotating service loads anew.
    fn plan(&self, def: &TableDef) -> Result<(String, bool)> {
        // `list table` reads every element from the kernel even when
        // terse (nft 1.1: 22 ms for 10k elements), `list ruleset -t` none.
        let (have_sets, have_chains, had) =
            parse_defs(&self.run(&["-j", "-t", "list", "ruleset"], None)?)?;
        let mut sc = format!("add table inet {TABLE}\n");
        for c in &have_chains {
            sc.push_str(&format!(
                "flush chain inet {TABLE} {c}\ndelete chain inet {TABLE} {c}\n"
            ));
        }
        let mut carry: Vec<(&SetDef, Vec<TimedElem>)> = Vec::new();
        let mut keep: Vec<&str> = Vec::new();
        for h in &have_sets {
            match def.sets().find(|d| d.name == h.name) {
                Some(d) if h.same_as(d) => keep.push(&h.name),
                Some(d) => {
                    if d.elements.is_none()
                        && d.kept.is_none()
                        && !h.interval
                        && !d.comment.contains(": meter ")
                    {
                        carry.push((d, self.timed_elements(&h.name)?));
                    }
                    sc.push_str(&format!("delete set inet {TABLE} {}\n", h.name));
                }
                None => sc.push_str(&format!("delete set inet {TABLE} {}\n", h.name)),
            }
        }
        for d in def.sets() {
            if keep.contains(&d.name.as_str()) {
                continue;
            }
            sc.push_str(&format!(
                "add set inet {TABLE} {} {{ {} }}\n",
                d.name,
                d.body()
            ));
            if let Some(ports) = &d.kept {
                let flows = open_flows(ports, d.ty.starts_with("ipv6"));
                if !flows.is_empty() {
                    sc.push_str(&format!(
                        "add element inet {TABLE} {} {{ {} }}\n",
                        d.name,
                        flows.join(", ")
                    ));
                }
                continue;
            }
            let Some((_, elems)) = carry.iter().find(|(c, _)| c.name == d.name) else {
                continue;
            };
            let t = d.timeout.map_or(0, |t| t.0 * 1000);
            let list: Vec<String> = elems
                .iter()
                .filter_map(|e| {
                    let age = e.timeout_ms?.saturating_sub(e.expires_ms?);
                    (t > age).then(|| {
                        format!(
                            "{} timeout {} expires {}",
                            e.addr,
                            crate::render::nft::nft_time(t),
                            crate::render::nft::nft_time(t - age)
                        )
                    })
                })
                .collect();
            if !list.is_empty() {
                sc.push_str(&format!(
                    "add element inet {TABLE} {} {{ {} }}\n",
                    d.name,
                    list.join(", ")
                ));
            }
        }
        for c in &def.chains {
            sc.push_str(&format!(
                "add chain inet {TABLE} {} {{ {} }}\n",
                c.name, c.head
            ));
            for r in &c.rules {
                sc.push_str(&format!("add rule inet {TABLE} {} {r}\n", c.name));
            }
        }
        Ok((sc, had))
    }

    /// A set's elements with their timers to the millisecond (`nft -j`
    /// rounds them to seconds; the text listing does not).
    fn timed_elements(&self, set: &str) -> Result<Vec<TimedElem>> {
        let text = self.run(&["list", "set", "inet", TABLE, set], None)?;
        Ok(parse_timed(&text))
    }

    /// Base chains of other tables on the input hook that would drop what
    /// pfknock lets through, each with the remedy, in words. An accept in
    /// one base chain does not stop the next one at the same hook, so a
    /// neighbour whose policy is drop (ufw, firewalld, a hand-written
    /// ruleset), or whose last rule drops everything, closes the protected
    /// ports whatever pfknock says.
    pub fn neighbours(&self, cfg: &Config) -> Result<Vec<String>> {
        let text = self.run(&["-j", "-t", "list", "ruleset"], None)?;
        Ok(blocking_neighbours(&text, cfg))
    }

    /// Delete the table, if it is there: the protected ports are then as
    /// the rest of the ruleset has them (`unload --open`).
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

/// The TCP connections to this host's `ports` that are established now,
/// as `peer . peer port . our port` elements of a kept set of one family
/// (from /proc/net/tcp and tcp6 of this network namespace; an IPv4 peer
/// of an IPv6 socket counts as IPv4).
fn open_flows(ports: &[crate::name::PortRange], v6: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (file, six) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for c in parse_proc_tcp(&text, six) {
            let peer = match c.peer {
                std::net::IpAddr::V6(a) => a
                    .to_ipv4_mapped()
                    .map_or(std::net::IpAddr::V6(a), std::net::IpAddr::V4),
                a => a,
            };
            let ours = ports
                .iter()
                .any(|r| r.lo.get() <= c.port && c.port <= r.hi.get());
            if c.established && ours && peer.is_ipv6() == v6 {
                let e = format!("{peer} . {} . {}", c.peer_port, c.port);
                if !out.contains(&e) {
                    out.push(e);
                }
            }
        }
    }
    out
}

/// One socket of /proc/net/tcp{,6}.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ProcTcp {
    port: u16,
    peer: std::net::IpAddr,
    peer_port: u16,
    established: bool,
}

/// The sockets of a /proc/net/tcp (or tcp6) text: `sl local rem st ...`,
/// addresses in hex as the kernel's 32-bit words in host order, ports in
/// hex; state 01 is ESTABLISHED (include/net/tcp_states.h). Lines that do
/// not read are skipped.
fn parse_proc_tcp(text: &str, v6: bool) -> Vec<ProcTcp> {
    fn endpoint(s: &str, v6: bool) -> Option<(std::net::IpAddr, u16)> {
        let (a, p) = s.split_once(':')?;
        let port = u16::from_str_radix(p, 16).ok()?;
        let words: Vec<u32> = (0..a.len() / 8)
            .map(|i| u32::from_str_radix(a.get(i * 8..i * 8 + 8)?, 16).ok())
            .collect::<Option<_>>()?;
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let ip = match (v6, bytes.len()) {
            (false, 4) => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
            (true, 16) => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
            _ => return None,
        };
        Some((ip, port))
    }
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (_, port) = endpoint(f.get(1)?, v6)?;
            let (peer, peer_port) = endpoint(f.get(2)?, v6)?;
            Some(ProcTcp {
                port,
                peer,
                peer_port,
                established: *f.get(3)? == "01",
            })
        })
        .collect()
}

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
    fn same_as(&self, d: &SetDef) -> bool {
        d.elements.is_none()
            && d.kept.is_none()
            && self.counter == d.counter
            && !self.interval
            && self.ty == d.ty
            && self.size == d.size
            && self.timeout == d.timeout.map(|t| t.0)
            && self.comment == d.comment
    }
}

/// The sets and chain names of `nft -j -t list table` output.
/// The sets and chains of `table inet pfknock` in a terse listing of the
/// ruleset, and whether the table is there.
fn parse_defs(text: &str) -> Result<(Vec<KernelSet>, Vec<String>, bool)> {
    let v: Value = serde_json::from_str(text).map_err(|e| Error::Tool {
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

/// nft's `1d2h3m4s5ms` in milliseconds.
fn parse_ms(s: &str) -> Option<u64> {
    let (mut total, mut num) = (0u64, String::new());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400_000,
            'h' => 3_600_000,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            'm' => 60_000,
            's' => 1000,
            _ => return None,
        };
        total = total.checked_add(num.parse::<u64>().ok()?.checked_mul(unit)?)?;
        num.clear();
    }
    num.is_empty().then_some(total)
}

/// The elements of `nft list set` text output, with their timers (an
/// element without `timeout` has the set's).
fn parse_timed(text: &str) -> Vec<TimedElem> {
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
            || (fam == "inet" && table == TABLE)
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
fn accepts_tcp_port(rule: &Value, port: u16) -> bool {
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

/// Delete the conntrack entries from `addr` to the protected ports of
/// `services` with conntrack(8), cutting open sessions: their next packet
/// meets the protected ports' rules as a new connection. Fails before
/// anything else is done when conntrack(8) is not installed.
pub fn kill_states(addr: &Net, services: &[&crate::config::Service]) -> Result<usize> {
    let exe = conntrack()?;
    let mut killed = 0;
    let fam = if addr.addr.is_ipv6() { "ipv6" } else { "ipv4" };
    let a = addr.to_string();
    for s in services {
        for proto in &s.proto {
            for r in &s.protect {
                for port in r.lo.get()..=r.hi.get() {
                    let p = port.to_string();
                    let args = [
                        "-D",
                        "-f",
                        fam,
                        "-s",
                        &a,
                        "-p",
                        &proto.to_string(),
                        "--dport",
                        &p,
                    ];
                    match crate::tool::run("conntrack", &[exe.as_path()], &args, None) {
                        Ok(_) => killed += 1,
                        // conntrack exits 1 when nothing matched.
                        Err(Error::Tool { msg, .. }) if msg.contains("0 flow entries") => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
    Ok(killed)
}

/// conntrack(8), or why there is none.
pub fn conntrack() -> Result<std::path::PathBuf> {
    crate::tool::find("conntrack").ok_or_else(|| {
        Error::Other(
            "conntrack(8) is not installed (Debian: apt install conntrack): \
             --kill-states needs it; nothing was changed"
                .into(),
        )
    })
}

/// Rules per chain name.
pub type RuleCounts = BTreeMap<String, usize>;

/// Rules per chain in `nft -j list` output (chains without rules count 0).
fn rule_counts(text: &str) -> RuleCounts {
    let v: Value = serde_json::from_str(text).unwrap_or_default();
    let mut out = BTreeMap::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        if let Some(c) = item.get("chain") {
            out.entry(c["name"].as_str().unwrap_or_default().to_owned())
                .or_insert(0);
        }
        if let Some(r) = item.get("rule") {
            *out.entry(r["chain"].as_str().unwrap_or_default().to_owned())
                .or_insert(0) += 1;
        }
    }
    out
}

fn parse_sets(text: &str) -> Result<Vec<Set>> {
    let v: Value = serde_json::from_str(text).map_err(|e| Error::Tool {
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

/// `Tables` over the sets of `table inet pfknock`.
pub struct NftTables {
    pub nft: Nft,
    /// Wall clock, to turn `expires` into a time stamp.
    pub now: fn() -> i64,
    /// Sets found at their size by the last `table_stats`.
    full: Vec<(String, u64)>,
    /// Set names and rules per chain at the last `table_stats`.
    seen: Option<(Vec<String>, RuleCounts)>,
}

impl NftTables {
    pub fn new(nft: Nft) -> Self {
        NftTables {
            nft,
            now: crate::clock::now,
            full: Vec::new(),
            seen: None,
        }
    }

    /// The table's two sets with their elements. The sets come from a
    /// terse listing (nft reads no element for it); on Linux the elements
    /// come straight from the kernel over netlink (a dump, no JSON), which
    /// keeps `show` and `expire` near 100 ms at 100k entries.
    fn family_sets(&self, t: &TableRef) -> Result<Vec<Set>> {
        let name = t.name.as_str();
        let terse = self.nft.run(&["-j", "-t", "list", "ruleset"], None)?;
        let mut mine: Vec<Set> = parse_sets(&terse)?
            .into_iter()
            .filter(|s| s.name == format!("{name}_4") || s.name == format!("{name}_6"))
            .collect();
        if mine.is_empty() {
            return Err(no_table(t));
        }
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
                tool: format!("netlink: set {}", s.name),
                msg: crate::error::io_words(&e),
            })?;
        Ok(got
            .into_iter()
            .map(|(addr, timeout, left, counter)| Elem {
                net: Net::host(addr),
                timeout: timeout.map(|ms| ms / 1000).or(s.timeout),
                expires: left.map(|ms| ms.div_ceil(1000)),
                counter,
            })
            .collect())
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

    /// Those of `addrs` that are in the table now.
    /// Which of `addrs` the table holds: a netlink lookup each for a few
    /// hosts, else one listing (a set dump costs the kernel O(n^2/chunk):
    /// nf_tables_dump_set walks the set from its start for every datagram,
    /// skipping what it sent).
    fn present(&mut self, t: &TableRef, addrs: &[Net]) -> Result<Vec<Net>> {
        #[cfg(target_os = "linux")]
        if addrs.len() <= FEW && addrs.iter().all(|n| n.is_host()) {
            let sets = self.sets_terse(t)?;
            let mut l = crate::netlink::Lookup::open(TABLE).map_err(|e| Error::Tool {
                tool: format!("netlink: table inet {TABLE}"),
                msg: crate::error::io_words(&e),
            })?;
            let mut out = Vec::new();
            for n in addrs {
                let set = format!("{}{}", t.name, if n.addr.is_ipv6() { "_6" } else { "_4" });
                if !sets.iter().any(|s| s.name == set) || out.contains(n) {
                    continue;
                }
                let got = l.get(&set, n.addr).map_err(|e| Error::Tool {
                    tool: format!("netlink: set {set}"),
                    msg: crate::error::io_words(&e),
                })?;
                if got.is_some() {
                    out.push(*n);
                }
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
    /// names, timeouts and sizes from the terse listing.
    fn sets_terse(&self, t: &TableRef) -> Result<Vec<Set>> {
        let name = t.name.as_str();
        let terse = self.nft.run(&["-j", "-t", "list", "ruleset"], None)?;
        let mine: Vec<Set> = parse_sets(&terse)?
            .into_iter()
            .filter(|s| s.name == format!("{name}_4") || s.name == format!("{name}_6"))
            .collect();
        if mine.is_empty() {
            return Err(no_table(t));
        }
        Ok(mine)
    }

    /// Run one `nft -f` with an element command per address family.
    /// Add or delete addresses, one set per family, in one commit each.
    /// On Linux over netlink in pfknock's own name (the daemon sees who
    /// committed it and leaves the log line to the command); elsewhere
    /// one `nft -f`.
    fn elements(&self, verb: &str, t: &TableRef, addrs: &[Net]) -> Result<()> {
        let sets = self.sets_terse(t)?;
        let mut todo: Vec<(String, Vec<Net>)> = Vec::new();
        for (suffix, v6) in [("_4", false), ("_6", true)] {
            let list: Vec<Net> = addrs
                .iter()
                .filter(|n| n.addr.is_ipv6() == v6)
                .copied()
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
                list.iter().map(|n| (n.addr, None)).collect();
            crate::netlink::change_elements(TABLE, set, verb == "add", &elems).map_err(|e| {
                // ENFILE is what the kernel answers for a set at its size.
                if e.raw_os_error() == Some(libc::ENFILE) {
                    full()
                } else {
                    Error::Tool {
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
                    Error::Tool { msg, .. } if msg.contains("Too many open files in system") => {
                        full()
                    }
                    e => e,
                })?;
        }
        Ok(())
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

/// Up to this many hosts are looked up one by one rather than listed.
#[cfg(target_os = "linux")]
const FEW: usize = 64;

impl Tables for NftTables {
    /// One element by a netlink lookup, not a listing: its age is the set's
    /// timeout less the time it has left (an element restored with its own
    /// remaining time reads as older than it is).
    #[cfg(target_os = "linux")]
    fn entry(&mut self, t: &TableRef, net: &Net) -> Result<Option<Entry>> {
        let fam = if net.addr.is_ipv4() { "4" } else { "6" };
        let set = format!("{}_{fam}", t.name);
        let Some(s) = self.sets_terse(t)?.into_iter().find(|s| s.name == set) else {
            return Err(no_table(t));
        };
        if s.timeout.is_none() || !net.is_host() {
            return Ok(self.entries(t)?.into_iter().find(|e| e.net == *net));
        }
        let left = crate::netlink::Lookup::open(TABLE)
            .and_then(|mut l| l.get(&set, net.addr))
            .map_err(|e| Error::Tool {
                tool: format!("netlink: set {set}"),
                msg: crate::error::io_words(&e),
            })?;
        let now = (self.now)();
        Ok(left.map(|left| {
            let tzero = match (s.timeout, left) {
                (Some(to), Some(ms)) => now - to.saturating_sub(ms.div_ceil(1000)) as i64,
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
            for e in s.elems {
                let tzero = match (e.timeout, e.expires) {
                    (Some(to), Some(ex)) => now - to.saturating_sub(ex) as i64,
                    _ => now,
                };
                let (packets, bytes) = e.counter.unwrap_or((0, 0));
                out.push(Entry {
                    net: e.net,
                    tzero,
                    packets,
                    bytes,
                    counted: e.counter.is_some(),
                });
            }
        }
        Ok(out)
    }

    fn table_stats(&mut self, anchor: &AnchorName) -> Result<Vec<TableStat>> {
        let Some((sets, rules)) = self.nft.listing()? else {
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
        self.full = sets
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.size?)))
            .filter(|(name, size)| {
                sets.iter()
                    .any(|s| s.name == *name && s.elems.len() as u64 >= *size)
            })
            .collect();
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
        let sets = self.sets_terse(t)?;
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
                .filter(|(a, left)| a.addr.is_ipv6() == v6 && a.is_host() && *left > 0)
                .map(|(a, left)| match s.timeout {
                    Some(to) => format!("{} timeout {to}s expires {}s", a.addr, (*left).min(to)),
                    None => a.addr.to_string(),
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
                    .all(|c| rules.get(c.name) == Some(&c.rules.len())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_net_tcp() {
        // x86_64 (little endian): 127.0.0.1:22 <- 198.18.1.2:41234,
        // established; a listener; a line that does not read.
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                  0: 0100007F:0016 020112C6:A112 01 00000000:00000000 00:00000000 00000000     0        0 1\n\
                  1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2\n\
                  2: garbage\n";
        if cfg!(target_endian = "little") {
            let got = parse_proc_tcp(v4, false);
            assert_eq!(got.len(), 2);
            assert_eq!(
                got[0],
                ProcTcp {
                    port: 22,
                    peer: "198.18.1.2".parse().unwrap(),
                    peer_port: 0xA112,
                    established: true
                }
            );
            assert!(!got[1].established);
            // fd00:1::2 as tcp6 writes it.
            let v6 = "header\n\
                      0: 00000000000000000000000001000000:0016 000000FD000000000000000002000000:C001 01 x\n";
            let got = parse_proc_tcp(v6, true);
            assert_eq!(got[0].peer, "fd00::2".parse::<std::net::IpAddr>().unwrap());
            assert_eq!((got[0].port, got[0].peer_port), (22, 0xC001));
        }
        assert!(parse_proc_tcp("", false).is_empty());
    }

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
                expires: Some(59),
                counter: None,
            }
        );
        assert_eq!(s[0].elems[1].timeout, Some(30));
        assert_eq!(s[1].elems[1].net, "203.0.113.0/24".parse().unwrap());
        assert_eq!(s[1].elems[0].expires, None);
    }

    #[test]
    fn reads_timers_to_the_millisecond() {
        assert_eq!(parse_ms("29s996ms"), Some(29_996));
        assert_eq!(parse_ms("1m30s"), Some(90_000));
        assert_eq!(parse_ms("1d2h3m4s5ms"), Some(93_784_005));
        assert_eq!(parse_ms("5x"), None);
        assert_eq!(parse_ms("12"), None);
        let text = "table inet pfknock {\n\tset ssh_4 {\n\t\ttype ipv4_addr\n\t\tsize 65536\n\
                    \t\tflags dynamic,timeout\n\t\ttimeout 1m\n\t\tcomment \"ssh: authorized\"\n\
                    \t\telements = { 198.18.0.5 timeout 1m30s expires 30s496ms,\n\t\t\t     \
                    fd00::2 expires 59s996ms }\n\t}\n}\n";
        assert_eq!(
            parse_timed(text),
            vec![
                TimedElem {
                    addr: "198.18.0.5".into(),
                    timeout_ms: Some(90_000),
                    expires_ms: Some(30_496)
                },
                TimedElem {
                    addr: "fd00::2".into(),
                    timeout_ms: Some(60_000),
                    expires_ms: Some(59_996)
                },
            ]
        );
        assert!(parse_timed("table inet pfknock {\n}\n").is_empty());
    }

    #[test]
    fn compares_kernel_sets_with_rendered_ones() {
        let j = r#"{"nftables": [{"table": {"family": "inet", "name": "pfknock"}},
          {"set": {"family": "inet", "name": "ssh_4", "table": "pfknock", "type": "ipv4_addr",
            "comment": "ssh: authorized", "size": 65536, "flags": ["timeout"], "timeout": 60}},
          {"set": {"family": "inet", "name": "ssh_allow_4", "table": "pfknock", "type": "ipv4_addr",
            "comment": "ssh: allow", "flags": ["interval"]}},
          {"chain": {"family": "inet", "table": "pfknock", "name": "input"}},
          {"table": {"family": "ip", "name": "other"}},
          {"set": {"family": "ip", "name": "ssh_6", "table": "other", "type": "ipv4_addr"}},
          {"chain": {"family": "ip", "table": "pfknock", "name": "not_ours"}}]}"#;
        let (sets, chains, had) = parse_defs(j).unwrap();
        assert!(had);
        assert_eq!(
            chains,
            vec!["input".to_owned()],
            "only table inet pfknock's"
        );
        assert_eq!(sets.len(), 2);
        let (_, _, had) =
            parse_defs(r#"{"nftables": [{"table": {"family": "ip", "name": "pfknock"}}]}"#)
                .unwrap();
        assert!(!had, "ip pfknock is not inet pfknock");
        let def = SetDef {
            name: "ssh_4".into(),
            ty: "ipv4_addr",
            elements: None,
            timeout: Some(crate::name::Secs(60)),
            size: Some(65536),
            comment: "ssh: authorized".into(),
            kept: None,
            counter: false,
        };
        assert!(sets[0].same_as(&def));
        for changed in [
            SetDef {
                timeout: Some(crate::name::Secs(61)),
                ..def.clone()
            },
            SetDef {
                size: Some(65535),
                ..def.clone()
            },
            SetDef {
                comment: "ssh: meter 1, rate 5/15".into(),
                ..def.clone()
            },
            SetDef {
                ty: "ipv6_addr",
                ..def.clone()
            },
        ] {
            assert!(!sets[0].same_as(&changed), "{changed:?}");
        }
        // Constant sets are always made anew.
        let allow = SetDef {
            name: "ssh_allow_4".into(),
            elements: Some(vec!["198.18.0.7".into()]),
            timeout: None,
            size: None,
            comment: "ssh: allow".into(),
            ..def
        };
        assert!(!sets[1].same_as(&allow));
    }
}
