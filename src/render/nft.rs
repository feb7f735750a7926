//! Config → an nftables table, `inet pfknock`, for Linux.
//!
//! The same services as on pf, with the kernel's own tools:
//!
//! * authorized hosts are set elements with a timeout (the ttl), one set
//!   per family (`<table>_4`, `<table>_6`); the kernel expires them;
//! * a knock port answers SYNs with `synproxy`, as pf's `synproxy state`
//!   does, so the client's connect completes with nothing listening; the
//!   handshake's final ACK is what counts (a SYN-only scan never knocks),
//!   and is then answered with a reset, which ends the client's socket;
//! * the rate is a per-source `limit rate over ... burst N packets` in a
//!   dynamic meter set, which trips on the (N+1)-th completed connect in
//!   a burst and refills at N per S seconds, like pf's max-src-conn-rate;
//! * a sequence chains stage sets (`<table>_s<k>_4`, timeout the window):
//!   the knock on port k counts only from hosts in stage k-1's set;
//! * the last knock `update`s the authorized set, so a host that knocks
//!   again gets a fresh timeout (renewal); with `expire = "idle"`, traffic
//!   to the protected ports refreshes it too;
//! * the allow list is a constant interval set;
//! * the protected ports accept the authorized sets, then established
//!   connections (an expiry does not cut an open session), then drop;
//!   loopback is accepted before all of it.
//!
//! `[[expire]]` tables are pf's and have no nftables counterpart.
#![forbid(unsafe_code)]

use std::fmt::Write;

use crate::config::{Config, Role, Service};
use crate::name::{Family, Net, Proto, Rate, Secs};

/// The nftables table pfknock owns.
pub const TABLE: &str = "pfknock";

/// `ip`/`ipv4_addr`/`4` or `ip6`/`ipv6_addr`/`6`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Af {
    V4,
    V6,
}

impl Af {
    fn proto(self) -> &'static str {
        match self {
            Af::V4 => "ip",
            Af::V6 => "ip6",
        }
    }
    fn ty(self) -> &'static str {
        match self {
            Af::V4 => "ipv4_addr",
            Af::V6 => "ipv6_addr",
        }
    }
    pub fn suffix(self) -> &'static str {
        match self {
            Af::V4 => "_4",
            Af::V6 => "_6",
        }
    }
    fn of(n: &Net) -> Af {
        if n.addr.is_ipv4() { Af::V4 } else { Af::V6 }
    }
}

/// The families a service's rules cover.
pub fn families(s: &Service) -> Vec<Af> {
    match s.family {
        Family::Any => vec![Af::V4, Af::V6],
        Family::Inet => vec![Af::V4],
        Family::Inet6 => vec![Af::V6],
    }
}

/// The set behind a role table for one family.
pub fn set_name(table: &str, af: Af) -> String {
    format!("{table}{}", af.suffix())
}

/// `limit rate over R/unit burst N packets` for pf's `N/S`: the exact rate
/// in the coarsest unit that keeps it whole.
fn limit(r: Rate) -> String {
    let (n, s) = (r.conns as u64, r.secs as u64);
    let (rate, unit) = if n % s == 0 {
        (n / s, "second")
    } else if (60 * n) % s == 0 {
        (60 * n / s, "minute")
    } else if (3600 * n) % s == 0 {
        (3600 * n / s, "hour")
    } else {
        ((86400 * n).div_ceil(s), "day")
    };
    format!("limit rate over {rate}/{unit} burst {n} packets")
}

fn timeout(t: Secs) -> String {
    format!("{}s", t.0)
}

/// Render the table. `source` names the config file in the header comment.
pub fn render(cfg: &Config, source: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# pfknock {}: table inet {TABLE} from {source}",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(o, "# load with: pfknock load (nft -f, one transaction)");
    if !cfg.expires.is_empty() {
        let _ = writeln!(
            o,
            "# [[expire]] tables are pf tables: nothing to render for nftables"
        );
    }
    let _ = writeln!(o, "table inet {TABLE} {{");
    for s in &cfg.services {
        sets(&mut o, s);
    }
    let _ = writeln!(o, "\tchain prerouting {{");
    let _ = writeln!(
        o,
        "\t\ttype filter hook prerouting priority raw; policy accept;"
    );
    for s in &cfg.services {
        let ports: Vec<String> = s.knock.iter().map(|p| p.to_string()).collect();
        let _ = writeln!(
            o,
            "\t\t{}tcp dport {} tcp flags syn notrack",
            iif(s),
            list(&ports)
        );
    }
    let _ = writeln!(o, "\t}}");
    let _ = writeln!(o, "\tchain input {{");
    let _ = writeln!(
        o,
        "\t\ttype filter hook input priority filter - 1; policy accept;"
    );
    // Loopback is never knocked nor blocked, as pf.conf's `set skip on lo0`.
    let _ = writeln!(o, "\t\tiifname \"lo\" accept");
    for s in &cfg.services {
        rules(&mut o, s);
    }
    let _ = writeln!(o, "\t}}");
    let _ = writeln!(o, "}}");
    o
}

fn iif(s: &Service) -> String {
    s.on.as_ref()
        .map_or(String::new(), |i| format!("iifname \"{i}\" "))
}

fn list(items: &[String]) -> String {
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

fn sets(o: &mut String, s: &Service) {
    let _ = writeln!(o, "\t{}", super::service_comment(s));
    for af in families(s) {
        let dynset = |o: &mut String, name: &str, t: Secs| {
            let _ = writeln!(
                o,
                "\tset {} {{ type {}; flags dynamic, timeout; timeout {}; }}",
                set_name(name, af),
                af.ty(),
                timeout(t)
            );
        };
        for (t, role) in s.tables() {
            match role {
                Role::Auth => dynset(o, t.as_str(), s.ttl),
                Role::Stage(_) => dynset(o, t.as_str(), s.window),
                Role::Renew => {}
                Role::Allow => {
                    let elems: Vec<String> = s
                        .allow
                        .iter()
                        .filter(|n| Af::of(n) == af)
                        .map(|n| n.to_string())
                        .collect();
                    if !elems.is_empty() {
                        let _ = writeln!(
                            o,
                            "\tset {} {{ type {}; flags interval; elements = {{ {} }}; }}",
                            set_name(t.as_str(), af),
                            af.ty(),
                            elems.join(", ")
                        );
                    }
                }
            }
        }
        for k in 1..=s.knock.len() {
            dynset(o, &format!("{}_m{k}", s.table), Secs(s.rate.secs as u64));
        }
    }
}

fn rules(o: &mut String, s: &Service) {
    let iif = iif(s);
    let n = s.knock.len();
    let last_into = s.table.to_string();
    for (k, p) in s.knock.iter().enumerate() {
        let into = if k + 1 == n {
            last_into.clone()
        } else {
            s.stage_table(k + 1).to_string()
        };
        for af in families(s) {
            let from = if k == 0 {
                if s.from.is_empty() {
                    String::new()
                } else {
                    let nets: Vec<String> = s
                        .from
                        .iter()
                        .filter(|n| Af::of(n) == af)
                        .map(|n| n.to_string())
                        .collect();
                    if nets.is_empty() {
                        continue; // nobody of this family may knock
                    }
                    format!("{} saddr {} ", af.proto(), list(&nets))
                }
            } else {
                format!(
                    "{} saddr @{} ",
                    af.proto(),
                    set_name(s.stage_table(k).as_str(), af)
                )
            };
            // The last stage updates (and so renews) unless renewal is off.
            let verb = if k + 1 == n && !s.renew {
                "add"
            } else {
                "update"
            };
            let log = if k + 1 == n && s.log {
                format!(" log prefix \"pfknock {}: \"", s.name)
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "\t\t{iif}tcp dport {p} tcp flags & (fin | syn | rst | ack) == ack ct state invalid,untracked,new \
                 {from}update @{} {{ {} saddr {} }} {verb} @{} {{ {} saddr }}{log}",
                set_name(&format!("{}_m{}", s.table, k + 1), af),
                af.proto(),
                limit(s.rate),
                set_name(&into, af),
                af.proto()
            );
        }
        let _ = writeln!(
            o,
            "\t\t{iif}tcp dport {p} tcp flags syn synproxy mss 1460 wscale 7 timestamp sack-perm"
        );
        // Reset whatever else reaches the knock port: the handshake's ACK
        // once counted, and so the client's socket, which synproxy's zero
        // window would otherwise keep probing with ACKs that count again.
        let _ = writeln!(o, "\t\t{iif}tcp dport {p} reject with tcp reset");
    }

    let ports: Vec<String> = s
        .protect
        .iter()
        .map(|r| {
            if r.lo == r.hi {
                r.lo.to_string()
            } else {
                format!("{}-{}", r.lo, r.hi)
            }
        })
        .collect();
    let dport = if s.proto == [Proto::Tcp] {
        format!("tcp dport {}", list(&ports))
    } else if s.proto == [Proto::Udp] {
        format!("udp dport {}", list(&ports))
    } else {
        format!("meta l4proto {{ tcp, udp }} th dport {}", list(&ports))
    };
    let idle = s.expire == crate::name::ExpireMode::Idle;
    for af in families(s) {
        let set = set_name(s.table.as_str(), af);
        let refresh = if idle {
            format!("update @{set} {{ {} saddr }} ", af.proto())
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "\t\t{iif}{dport} {} saddr @{set} {refresh}accept",
            af.proto()
        );
        if s.allow.iter().any(|n| Af::of(n) == af) {
            let _ = writeln!(
                o,
                "\t\t{iif}{dport} {} saddr @{} accept",
                af.proto(),
                set_name(s.allow_table().as_str(), af)
            );
        }
    }
    let _ = writeln!(o, "\t\t{iif}{dport} ct state established,related accept");
    let _ = writeln!(o, "\t\t{iif}{dport} drop");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_keep_pf_rate() {
        let r = |s: &str| limit(s.parse().unwrap());
        assert_eq!(r("5/15"), "limit rate over 20/minute burst 5 packets");
        assert_eq!(r("10/5"), "limit rate over 2/second burst 10 packets");
        assert_eq!(r("3/7"), "limit rate over 37029/day burst 3 packets");
        assert_eq!(r("1/86400"), "limit rate over 1/day burst 1 packets");
    }
}
