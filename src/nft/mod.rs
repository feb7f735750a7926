//! nftables on Linux: load and unload `table inet pfknock` with nft(8),
//! changing only what changed in one transaction (`Nft`); `Tables` over
//! its sets (`tables`), read and changed over netlink; what nft prints,
//! read (`text`); the connections kept at load (`flows`); other tables that
//! would drop what pfknock opens (`neighbours`); conntrack(8) (`conntrack`).
//!
//! A pfknock table `<T>` is the sets `T_4` and `T_6`. The kernel expires
//! their elements itself (set timeouts) and refreshes them on a knock or on
//! traffic (`update`), so an entry's time stamp here is when it was last
//! added or refreshed: now - (timeout - expires).
#![forbid(unsafe_code)]

use crate::config::Config;
use crate::error::{Error, Result};
use crate::name::Net;
use crate::render::nft::{GUARD, TABLE};
use crate::render::nft::{SetDef, TableDef};

mod conntrack;
mod flows;
mod going;
mod neighbours;
mod tables;
mod text;

pub use conntrack::*;
use flows::*;
pub use going::Going;
use going::{counted, going_sets};
pub use neighbours::*;
pub use tables::*;
pub use text::*;

/// How to run nft: its absolute path (`lib::backend` finds it), or a
/// wrapper such as `ip netns exec NS nft` in benchmarks.
#[derive(Clone, Debug)]
pub struct Nft {
    pub argv: Vec<String>,
    /// The last `load` made anew a set it had asked the kernel to change
    /// in place (the kernel did not take the change): `remade`.
    pub remade: std::cell::Cell<bool>,
    /// The authorized sets the last `load` deleted, counted just before
    /// (`Going`); none where it failed.
    pub went: std::cell::RefCell<Vec<Going>>,
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
    /// It holds ranges (`flags interval`: an allow list).
    pub interval: bool,
    pub elems: Vec<Elem>,
}

impl Nft {
    fn run(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        let argv: Vec<&std::path::Path> = self.argv.iter().map(std::path::Path::new).collect();
        crate::tool::run("nft", &argv, args, input)
    }

    /// The sets of `table inet pfknock` without their elements, and the
    /// number of rules in each of its chains; `None` when the table is
    /// absent. On Linux from `-t list sets` and `list chains`, which read
    /// neither elements nor rules, and the rules counted over netlink
    /// (`netlink::Lookup::rule_counts`): at 250 services 45 ms, where the
    /// ruleset's listing, which nft makes text of every rule for, takes
    /// 0.6 s. Elsewhere from that listing (it reads no element either).
    pub fn listing_terse(&self) -> Result<Option<(Vec<Set>, RuleCounts)>> {
        #[cfg(target_os = "linux")]
        {
            let sets = parse_sets(&self.sets_listing()?)?;
            let chains = self.chains()?;
            // The table has either, whatever else it lost.
            if sets.is_empty() && chains.is_empty() {
                return Ok(None);
            }
            let counted = crate::netlink::Lookup::open(TABLE)
                .and_then(|mut l| l.rule_counts())
                .map_err(|e| Error::Tool {
                    says: crate::error::ToolSays::Failed,
                    tool: format!("netlink: rules of table inet {TABLE}"),
                    msg: crate::error::io_words(&e),
                })?;
            // Every chain, those without a rule at 0; a rule of a chain
            // made since the listing of chains, as it is counted.
            let mut rules: RuleCounts = chains.into_iter().map(|c| (c, 0)).collect();
            rules.extend(counted);
            Ok(Some((sets, rules)))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let text = self.run(&["-j", "-t", "list", "ruleset"], None)?;
            if !has_table(&text) {
                return Ok(None);
            }
            Ok(Some((parse_sets(&text)?, rule_counts(&text))))
        }
    }

    /// pfknock's sets (without their elements) and chains, and whether
    /// its table is there (it has either), from two listings that read
    /// neither elements nor rules: `-t list sets` and `list chains` (at
    /// 250 services 29 and 5 ms, where `-t list ruleset` takes 0.6 s: nft
    /// reads every rule for it; `-t list table` reads every element, 0.4 s
    /// at 60,000).
    fn defs(&self) -> Result<(Vec<KernelSet>, Vec<String>, bool)> {
        let (sets, _, _) = parse_defs(&self.sets_listing()?)?;
        let chains = self.chains()?;
        let had = !sets.is_empty() || !chains.is_empty();
        Ok((sets, chains, had))
    }

    /// The names of pfknock's chains: `nft -j list chains` (no rule read).
    fn chains(&self) -> Result<Vec<String>> {
        let (_, chains, _) = parse_defs(&self.run(&["-j", "list", "chains"], None)?)?;
        Ok(chains)
    }

    /// `nft -j -t list sets`: every set of the ruleset, without elements.
    pub fn sets_listing(&self) -> Result<String> {
        self.run(&["-j", "-t", "list", "sets"], None)
    }

    /// `nft -c -f -`: check only.
    pub fn check(&self, text: &str) -> Result<()> {
        self.run(&["-c", "-f", "-"], Some(text)).map(|_| ())
    }

    /// Bring `table inet pfknock` to what the config renders, in one
    /// transaction, changing only what changed: every chain is replaced
    /// (rules hold no state); a set whose definition is unchanged is left
    /// alone with its elements and their timers (so knock progress, meters
    /// and authorizations go on to the millisecond); a set that differs
    /// only in its timeout or size is changed in place, its elements
    /// untouched (each keeps the deadline it had: the new timeout is what
    /// a knock or renewal gets from then on), so the load's cost does not
    /// grow with the set and no knock can land in a set about to go (a
    /// meter only in its size, so that a knock under way counts on); any
    /// other changed set is made anew with the elements it had (an element
    /// aged `a` gets `timeout T expires T - a` under the new timeout `T`,
    /// gone if that is not positive; meters start empty, since their
    /// elements keep the rate they were made with); and a set the config
    /// no longer has is deleted.
    ///
    /// A kernel older than Linux 6.5 refuses or ignores a set changed in
    /// place; the set's definition is read back after the load, and where
    /// it is not what was asked the set is made anew as above.
    ///
    /// When nftables refuses the table and pfknock had none loaded, the
    /// closed table goes in instead (fail closed), and the error says so.
    pub fn load(&self, cfg: &Config) -> Result<()> {
        self.remade.set(false);
        self.went.take();
        let def = crate::render::nft::build(cfg);
        let first = self.plan(&def, true)?;
        // What it deletes of the authorizations, while they are there.
        let going = counted(&first.going);
        self.apply(cfg, &def, first)?;
        self.went.replace(going);
        Ok(())
    }

    /// `load`'s transaction, planned as `first`: a set it asked to change
    /// in place that the kernel did not take is made anew after it.
    fn apply(&self, cfg: &Config, def: &TableDef, first: Plan) -> Result<()> {
        let Plan {
            script,
            had,
            updated,
            ..
        } = first;
        let first = self.run(&["-f", "-"], Some(&script));
        let whole = match first {
            Ok(_) if updated.is_empty() => return Ok(()),
            // Changed in place as asked, or not (an older kernel).
            Ok(_) => !self.updated_as_asked(def, &updated)?,
            Err(_) if !updated.is_empty() => true,
            Err(e) if had => return Err(e),
            Err(e) => return Err(self.closed_instead(cfg, e)),
        };
        if !whole {
            return Ok(());
        }
        self.remade.set(true);
        let Plan { script, had, .. } = self.plan(def, false)?;
        match self.run(&["-f", "-"], Some(&script)) {
            Ok(_) => Ok(()),
            Err(e) if had => Err(e),
            Err(e) => Err(self.closed_instead(cfg, e)),
        }
    }

    /// Did the sets changed in place take their new definitions?
    fn updated_as_asked(&self, def: &TableDef, updated: &[String]) -> Result<bool> {
        let (have, _, _) = self.defs()?;
        Ok(updated.iter().all(|name| {
            let want = def.sets().find(|d| &d.name == name);
            let got = have.iter().find(|h| &h.name == name);
            matches!((got, want), (Some(h), Some(d)) if h.same_as(d))
        }))
    }

    /// nftables refused the table and none was loaded: load the closed
    /// one instead, and say so.
    fn closed_instead(&self, cfg: &Config, e: Error) -> Error {
        match self.close(cfg) {
            Ok(()) => Error::Other(format!(
                "{e}; loaded the closed table instead: the protected ports are \
                 closed to all but the allow list"
            )),
            Err(e2) => Error::Other(format!("{e}; the closed table failed too: {e2}")),
        }
    }

    /// Leave the table closed: knock rules, authorizations and meters go,
    /// the protected ports drop all but the allow list (`unload`).
    pub fn close(&self, cfg: &Config) -> Result<()> {
        let script = self.load_script(&crate::render::nft::build_closed(cfg))?;
        self.run(&["-f", "-"], Some(&script)).map(|_| ())
    }

    /// The `nft -f` script that brings the table to `def` in one
    /// transaction, a changed set made anew (`close`: no second try on a
    /// kernel that cannot change a set in place).
    pub fn load_script(&self, def: &TableDef) -> Result<String> {
        self.plan(def, false).map(|p| p.script)
    }

    /// The script of `load`, whether the table was there, the sets it
    /// changes in place (`in_place`; else those are made anew) and the
    /// authorized sets it deletes (`Plan`). The listing is terse (no
    /// elements): its cost does not grow with the authorizations, which a
    /// step of a rotating service loads anew.
    fn plan(&self, def: &TableDef, in_place: bool) -> Result<Plan> {
        let (have_sets, have_chains, had) = self.defs()?;
        let mut sc = format!("add table inet {TABLE}\n");
        // Every chain emptied before any is deleted: a chain that rules
        // jump to cannot go while they are there.
        for c in &have_chains {
            sc.push_str(&format!("flush chain inet {TABLE} {c}\n"));
        }
        for c in &have_chains {
            sc.push_str(&format!("delete chain inet {TABLE} {c}\n"));
        }
        let mut carry: Vec<(&SetDef, Vec<TimedElem>)> = Vec::new();
        let mut keep: Vec<&str> = Vec::new();
        let mut updated: Vec<String> = Vec::new();
        for h in &have_sets {
            match def.sets().find(|d| d.name == h.name) {
                Some(d) if h.same_as(d) => keep.push(&h.name),
                Some(d) if in_place && h.updatable(d) => {
                    // `add set` of a set that is there updates its
                    // timeout and size; its elements stay as they are.
                    sc.push_str(&format!(
                        "add set inet {TABLE} {} {{ {} }}\n",
                        d.name,
                        d.body()
                    ));
                    keep.push(&h.name);
                    updated.push(h.name.clone());
                }
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
        // The sockets open now, read once for every kept set made.
        let tcp = std::cell::OnceCell::new();
        for d in def.sets().filter(|d| !keep.contains(&d.name.as_str())) {
            add_set(&mut sc, d, &carry, &tcp);
        }
        add_chains(&mut sc, TABLE, &def.chains);
        // The guard holds nothing: made anew, in the same transaction.
        sc.push_str(&format!(
            "add table inet {GUARD}\ndelete table inet {GUARD}\n"
        ));
        if !def.guard.is_empty() {
            sc.push_str(&format!("add table inet {GUARD}\n"));
        }
        add_chains(&mut sc, GUARD, &def.guard);
        Ok(Plan {
            script: sc,
            had,
            updated,
            going: going_sets(&have_sets, def),
        })
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
        // The chains alone first (nft lists them without rules or sets),
        // then the rules of each other input chain: a listing of the
        // ruleset reads pfknock's own table too (0.55 s at 250 services).
        // A name nft's command line does not take as it is, or a listing
        // that fails: the whole ruleset, as before.
        let chains = self.run(&["-j", "list", "chains"], None)?;
        let by_chain = input_chains(&chains).and_then(|inputs| {
            let mut out = Vec::new();
            for [fam, table, name] in &inputs {
                let args = ["-j", "-t", "list", "chain", fam, table, name];
                out.extend(blocking_neighbours(&self.run(&args, None).ok()?, cfg));
            }
            Some(out)
        });
        if let Some(out) = by_chain {
            return Ok(out);
        }
        let text = self.run(&["-j", "-t", "list", "ruleset"], None)?;
        Ok(blocking_neighbours(&text, cfg))
    }

    /// Delete the table and its guard, if they are there: the protected
    /// ports are then as the rest of the ruleset has them (`unload
    /// --open`).
    pub fn unload(&self) -> Result<()> {
        self.run(
            &["-f", "-"],
            Some(&format!(
                "table inet {TABLE} {{}}\ndelete table inet {TABLE}\n\
                 table inet {GUARD} {{}}\ndelete table inet {GUARD}\n"
            )),
        )
        .map(|_| ())
    }
}

/// What `Nft::plan` found: the `nft -f` script, whether pfknock's table
/// was there, the sets changed in place, and the authorized sets deleted
/// as (set, service).
struct Plan {
    script: String,
    had: bool,
    updated: Vec<String>,
    going: Vec<(String, String)>,
}

/// The lines that make set `d`: the set, and the connections it keeps
/// (a kept set) or the elements `carry` holds for it, if any.
fn add_set(
    sc: &mut String,
    d: &SetDef,
    carry: &[(&SetDef, Vec<TimedElem>)],
    tcp: &std::cell::OnceCell<[(String, bool); 2]>,
) {
    sc.push_str(&format!(
        "add set inet {TABLE} {} {{ {} }}\n",
        d.name,
        d.body()
    ));
    let list = match &d.kept {
        Some(ports) => flows_of(tcp.get_or_init(proc_tcp), ports, d.ty.starts_with("ipv6")),
        None => carry
            .iter()
            .find(|(c, _)| c.name == d.name)
            .map(|(_, elems)| carried(d, elems))
            .unwrap_or_default(),
    };
    if !list.is_empty() {
        sc.push_str(&format!(
            "add element inet {TABLE} {} {{ {} }}\n",
            d.name,
            list.join(", ")
        ));
    }
}

/// `add chain` and `add rule` lines for chains of table inet `table`.
fn add_chains(sc: &mut String, table: &str, chains: &[crate::render::nft::ChainDef]) {
    for c in chains {
        if c.head.is_empty() {
            sc.push_str(&format!("add chain inet {table} {}\n", c.name));
        } else {
            sc.push_str(&format!(
                "add chain inet {table} {} {{ {} }}\n",
                c.name, c.head
            ));
        }
        for r in &c.rules {
            sc.push_str(&format!("add rule inet {table} {} {r}\n", c.name));
        }
    }
}

/// The elements a set made anew carries over, each timed from its start
/// with the set's timeout (those past it are left out), as nft elements.
fn carried(d: &SetDef, elems: &[TimedElem]) -> Vec<String> {
    let t = d.timeout.map_or(0, |t| t.0 * 1000);
    elems
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
        .collect()
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

    /// The connections kept at load: established ones to a protected
    /// port, of the family asked, each once though tcp6 lists an IPv4
    /// peer again (mapped); a busy server's 60,000 in the order listed.
    #[test]
    fn open_flows_are_each_kept_once_in_the_kernels_order() {
        if !cfg!(target_endian = "little") {
            return;
        }
        let head = "  sl  local_address rem_address   st\n";
        // 198.18.a.b:p -> us:22, established, as /proc/net/tcp writes it.
        let line = |i: u32, port: u16, st: &str| {
            let peer = u32::from_le_bytes([198, 18, (i >> 8) as u8, i as u8]);
            format!(
                "0: 0100007F:{port:04X} {peer:08X}:{:04X} {st} x\n",
                1024 + i % 60_000
            )
        };
        let mut v4 = String::from(head);
        for i in 0..60_000 {
            v4.push_str(&line(i, 22, "01"));
        }
        v4.push_str(&line(7, 22, "01"));
        v4.push_str(&line(8, 22, "0A"));
        v4.push_str(&line(9, 80, "01"));
        // 198.18.0.7 again, through an IPv6 socket (::ffff:198.18.0.7).
        let v6 = format!(
            "{head}0: 00000000000000000000000001000000:0016 0000000000000000FFFF0000070012C6:{:04X} 01 x\n",
            1024 + 7
        );
        let texts = [(v4, false), (v6, true)];
        let ssh = [crate::name::PortRange::single(
            crate::name::Port::new(22).unwrap(),
        )];
        let got = flows::flows_of(&texts, &ssh, false);
        assert_eq!(got.len(), 60_000);
        assert_eq!(got[0], "198.18.0.0 . 1024 . 22");
        assert_eq!(got[7], "198.18.0.7 . 1031 . 22");
        assert_eq!(got[59_999], "198.18.234.95 . 61023 . 22");
        assert!(flows::flows_of(&texts, &ssh, true).is_empty());
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
