//! Config → an nftables table, `inet pfknock`, for Linux.
//!
//! The same services as on pf, with the kernel's own tools. What counts as
//! a knock is what pf counts: a connection whose handshake the firewall
//! completed, from the address that completed it.
//!
//! * A knock port answers SYNs with `synproxy` (notrack'd in prerouting,
//!   as the kernel's synproxy recipe does), so the client's connect
//!   completes with nothing listening.
//! * The client's final ACK goes to `synproxy` too, which checks the SYN
//!   cookie it carries. A valid one makes the kernel send a SYN of its own,
//!   with the client's address as source, to the local port; that SYN
//!   enters the input hook on `lo` (nf_synproxy_core.c:
//!   synproxy_send_server_syn, sent with ip_local_out / ip6_local_out), and
//!   it is the only packet that is counted. An ACK with a bad cookie is
//!   dropped by `synproxy` itself, so bare ACKs, ACK scans, SYN floods and
//!   forged sources count nothing: only a host that saw our SYN-ACK can
//!   produce it. The local stack answers that SYN with a reset, which the
//!   kernel's synproxy hook puts into the client's sequence space, so the
//!   client's knock connection ends at once.
//! * The rate is a per-source token bucket in a dynamic meter set,
//!   `limit rate over 1/S burst N packets`: it trips on the (N+1)-th
//!   counted connect within S seconds, as `max-src-conn-rate N/S` reads
//!   (pfknock.8, RATES, says where pf's decaying estimator differs).
//! * A sequence chains stage sets (`<table>_s<k>_4`, timeout the window):
//!   every knock port answers everyone, and knock k counts only for hosts
//!   in stage k-1's set (and knock 1 only for hosts in `from`).
//! * A knock on a wrong port (a sequence's port out of order, a port of a
//!   rotating range that is not in force) resets the host's progress: it
//!   leaves the stage sets and meters and enters `<table>_hold_4` for the
//!   rate's window, in which none of its knocks count. Knocks on right
//!   ports end at an accept, so only wrong ones reach the reset rule.
//! * The last knock `update`s the authorized set (renewal), or `add`s it
//!   when `renew = false`. With `expire = "idle"`, packets of assured
//!   connections to the protected ports refresh it, and nothing else does.
//! * Counted or not, the synproxy'd SYN goes on to the local stack. When a
//!   meter or the authorized set is full, a knock is not counted and the
//!   protected port stays closed: the daemon logs the full set once, `show`
//!   says it, and `knock --verify` (implied by `knock -s`) reports it. (A
//!   rule cannot test whether its own set update succeeded: an element
//!   made with a `limit` is not yet visible to a lookup in the next rule
//!   on Linux 6.18, measured, so no verdict may depend on that.)
//! * The allow list is a constant interval set.
//! * The protected ports accept the authorized sets, then established
//!   connections (an expiry does not cut an open session), then drop;
//!   loopback is accepted before that.
//! * A packet meets the rules of knocks, signed knocks and protected
//!   ports only if it is to one of those ports: each kind is a chain that
//!   one rule, matching the ports of all services, jumps to
//!   (`input_rules`), so a packet to any other port costs the same at a
//!   thousand services as at one.
//! * Only the input hook and packets addressed to this host are touched:
//!   the prerouting rule that exempts knock SYNs from conntrack matches
//!   `fib daddr type local`, so forwarded traffic is left alone.
//!
//! `[[expire]]` tables are pf's and have no nftables counterpart.
#![forbid(unsafe_code)]

use std::fmt::Write;

use crate::config::{Config, Dest, Role, Service};
use crate::name::{ExpireMode, Net, PortRange, Proto, Rate, Secs};
use crate::names::{self, Object};

use crate::name::Af;

mod guard;
mod merge;
mod rules;
pub use guard::GUARD;
use merge::Merged;
pub use rules::LABEL;
use rules::*;

/// The nftables table pfknock owns.
pub const TABLE: &str = "pfknock";

/// The options every synproxy answer offers (the common Linux defaults).
const SYNPROXY: &str = "synproxy mss 1460 wscale 7 timestamp sack-perm";
/// A segment with SYN alone, or ACK alone, among these four flags.
const SYN: &str = "tcp flags & (fin | syn | rst | ack) == syn";
const ACK: &str = "tcp flags & (fin | syn | rst | ack) == ack";

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
    /// A flow to this host: the peer's address, its port, our port.
    fn flow_ty(self) -> &'static str {
        match self {
            Af::V4 => "ipv4_addr . inet_service . inet_service",
            Af::V6 => "ipv6_addr . inet_service . inet_service",
        }
    }
}

/// The families a service's rules cover.
pub fn families(s: &Service) -> Vec<Af> {
    s.family.afs()
}

/// A duration as nft(8) reads it: `1d2h3m4s5ms` (`name::format_ms`).
pub fn nft_time(ms: u64) -> String {
    crate::name::format_ms(u128::from(ms))
}

/// One set of the table, as the loader compares it with the kernel's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetDef {
    pub name: String,
    /// `ipv4_addr` or `ipv6_addr`.
    pub ty: &'static str,
    /// A constant interval set with these elements (the allow list), or
    /// a dynamic set with timeouts.
    pub elements: Option<Vec<String>>,
    /// Element timeout of a dynamic set.
    pub timeout: Option<Secs>,
    /// Most elements (dynamic sets).
    pub size: Option<u64>,
    /// Says what the set is; for a meter, its rate too, so that a changed
    /// rate makes a new meter (an element keeps the limit it was made with).
    pub comment: String,
    /// A set of flows (`address . source port . port`) that the loader
    /// fills with the connections to these ports open at load time, made
    /// anew at every load (`names::nft_kept_set`); `None` for a set of
    /// addresses.
    pub kept: Option<Vec<PortRange>>,
    /// Its elements count packets and bytes (the authorized hosts, for
    /// `show`).
    pub counter: bool,
}

impl SetDef {
    /// The body between `set NAME {` and `}`.
    pub fn body(&self) -> String {
        let mut b = format!("type {};", self.ty);
        if let Some(n) = self.size {
            let _ = write!(b, " size {n};");
        }
        match (&self.elements, &self.kept) {
            (Some(e), _) => {
                let _ = write!(b, " flags interval; elements = {{ {} }};", e.join(", "));
            }
            (None, Some(_)) => {}
            (None, None) => b.push_str(" flags dynamic, timeout;"),
        }
        if self.counter {
            b.push_str(" counter;");
        }
        if let Some(t) = self.timeout {
            let _ = write!(b, " timeout {};", nft_time(t.0.saturating_mul(1000)));
        }
        let _ = write!(b, " comment \"{}\";", self.comment);
        b
    }
}

/// One chain and its rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainDef {
    pub name: String,
    /// `type filter hook ... priority ...; policy accept;` for a base
    /// chain; empty for one that rules jump to.
    pub head: &'static str,
    pub rules: Vec<String>,
}

/// The whole table, in render order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDef {
    /// Per service: its header comment and its sets.
    pub services: Vec<(String, Vec<SetDef>)>,
    /// The sets of all services: the connections kept at load.
    pub shared: Vec<SetDef>,
    pub chains: Vec<ChainDef>,
    /// The chains of the guard table (`GUARD`), none when nothing is
    /// protected.
    pub guard: Vec<ChainDef>,
}

impl TableDef {
    pub fn sets(&self) -> impl Iterator<Item = &SetDef> {
        (self.services.iter().flat_map(|(_, s)| s.iter())).chain(&self.shared)
    }
}

/// The table as data: what `render` prints and the loader applies.
/// The prerouting rules (knock SYNs from other hosts are not tracked:
/// synproxy answers them) and the output rules: a local process may bind
/// an address that is not this host's (IPV6_FREEBIND needs no privilege)
/// and knock from it over loopback; its SYNs to this host's knock ports
/// never leave, so nothing counts them. synproxy's own SYN, sent for a
/// validated cookie, has no socket (`meta skuid` does not match it) and
/// passes.
fn untracked_and_local(cfg: &Config) -> (Vec<String>, Vec<String>) {
    // Each the same for every port it names: one rule an interface, and
    // one in all (`Merged`).
    let mut pre = Merged::default();
    let mut output = Merged::default();
    for s in &cfg.services {
        let ports = answering(s);
        if ports.is_empty() {
            continue;
        }
        let iif = match &s.on {
            Some(i) => format!("iifname \"{i}\""),
            None => "iifname != \"lo\"".to_owned(),
        };
        pre.add(
            format!("{iif} fib daddr type local tcp dport "),
            ports.clone(),
            format!(" {SYN} notrack"),
        );
        output.add(
            "fib daddr type local tcp dport ".into(),
            ports,
            " fib saddr type != local meta skuid >= 0 drop".into(),
        );
    }
    (pre.rules(), output.rules())
}

/// The input chain's rules. Each packet to this host meets only what
/// concerns it: the counting rules (`knocks`) only packets on loopback
/// to a knock port, as synproxy's SYNs come; the signed-knock rules
/// (`signed`) only datagrams to a signed-knock port; the protected
/// ports' rules (`protect`) only packets to a protected port. Each is a
/// chain of its own that one rule jumps to (`gate`), so what a packet to
/// any other port costs does not grow with the services (measured, a
/// connect to an unprotected port at 1,000 services: 2.6 ms with every
/// service's rules in line, 57 us so; 44 us with no table;
/// docs/nft-kernel.md). A chain ends without a verdict where none of its
/// rules gave one, and the packet goes on after the rule that jumped.
fn input_rules(cfg: &Config, chains: &mut Vec<ChainDef>) -> Vec<String> {
    let mut input = Vec::new();
    let mut count = Vec::new();
    for s in &cfg.services {
        count_rules(&mut count, chains, s, cfg.nflog_group);
    }
    let knock_ports = merge::joined(cfg.services.iter().flat_map(answering).collect());
    let to_knocks = format!(
        "iifname \"lo\" tcp dport {}",
        merge::ports_text(knock_ports)
    );
    gate(&mut input, chains, "knocks", to_knocks, count);
    // Loopback is never knocked nor blocked, as pf.conf's `set skip on lo0`.
    input.push("iifname \"lo\" accept".to_owned());
    let mut answers = Merged::default();
    for s in &cfg.services {
        knock_rules(&mut answers, s);
    }
    input.extend(answers.rules());
    let mut signed = Vec::new();
    for s in &cfg.services {
        spa_rules(&mut signed, s);
    }
    let spa_ports = cfg.services.iter().filter_map(|s| s.spa.as_ref());
    let spa_ports = spa_ports.map(|sp| PortRange::single(sp.port)).collect();
    let to_spa = format!("udp dport {}", merge::ports_text(merge::joined(spa_ports)));
    gate(&mut input, chains, "signed", to_spa, signed);
    let mut protect = Vec::new();
    for s in &cfg.services {
        protect_rules(&mut protect, s, Hook::Input);
    }
    protect.extend(kept_rules(cfg));
    protect.extend(tails(cfg, Hook::Input));
    let here = cfg.services.iter().filter(|s| {
        families(s)
            .into_iter()
            .any(|af| dest_match(s, Hook::Input, af).is_some())
    });
    let ports = merge::joined(here.flat_map(|s| s.protect.iter().copied()).collect());
    let to_protected = format!(
        "meta l4proto {{ tcp, udp }} th dport {}",
        merge::ports_text(ports)
    );
    gate(&mut input, chains, "protect", to_protected, protect);
    input
}

/// `rules` as a chain `name` that the rule `{to} jump {name}` in `out`
/// leads to; nothing where there is no rule.
fn gate(
    out: &mut Vec<String>,
    chains: &mut Vec<ChainDef>,
    name: &str,
    to: String,
    rules: Vec<String>,
) {
    if rules.is_empty() {
        return;
    }
    out.push(format!("{to} jump {name}"));
    chains.push(ChainDef {
        name: name.into(),
        head: "",
        rules,
    });
}

pub fn build(cfg: &Config) -> TableDef {
    let services = cfg
        .services
        .iter()
        .map(|s| (super::service_comment(s), service_sets(s)))
        .collect();

    let (pre, output) = untracked_and_local(cfg);

    // The chains rules jump to, before the base chains that jump to them.
    let mut chains = Vec::new();
    let input = input_rules(cfg, &mut chains);
    chains.extend([
        ChainDef {
            name: "prerouting".into(),
            head: "type filter hook prerouting priority raw; policy accept;",
            rules: pre,
        },
        ChainDef {
            name: "input".into(),
            head: "type filter hook input priority filter - 1; policy accept;",
            rules: input,
        },
        ChainDef {
            name: "output".into(),
            head: "type filter hook output priority filter - 1; policy accept;",
            rules: output,
        },
    ]);
    if forwards(cfg) {
        // Forwarded services (`to`): after DNAT, so by the destination the
        // packet is forwarded to; nothing else in the forward path.
        let mut fwd = Vec::new();
        for s in &cfg.services {
            protect_rules(&mut fwd, s, Hook::Forward);
        }
        fwd.extend(tails(cfg, Hook::Forward));
        chains.push(ChainDef {
            name: "forward".into(),
            head: FORWARD_HEAD,
            rules: fwd,
        });
    }
    TableDef {
        services,
        shared: kept_sets(cfg),
        chains,
        guard: guard::chains(cfg),
    }
}

/// Every service's `protect_tail` on a hook.
fn tails(cfg: &Config, hook: Hook) -> Vec<String> {
    let mut m = Merged::default();
    for s in &cfg.services {
        protect_tail(&mut m, s, hook);
    }
    m.rules()
}

/// The table when the knock rules are not in force (after `unload`, or
/// when nftables refused the full table): the protected ports accept the
/// allow list, loopback and established connections, and drop the rest,
/// as pf's main ruleset does when the anchor is empty. Fail closed.
pub fn build_closed(cfg: &Config) -> TableDef {
    let services = cfg
        .services
        .iter()
        .map(|s| {
            let sets = service_sets(s)
                .into_iter()
                .filter(|d| d.elements.is_some())
                .collect();
            (super::service_comment(s), sets)
        })
        .collect();
    let closed = |hook: Hook| {
        let mut out = Vec::new();
        for s in &cfg.services {
            let (iif, dport) = (iif(s), dport(s));
            for af in families(s) {
                let Some(to) = dest_match(s, hook, af) else {
                    continue;
                };
                if s.allow.iter().any(|n| n.af() == af) {
                    out.push(format!(
                        "{iif}{to}{dport} {} saddr @{} {} accept",
                        af.proto(),
                        set_of(s, Object::Table(Role::Allow), af),
                        rules::vouch()
                    ));
                }
            }
        }
        if hook == Hook::Input {
            out.extend(kept_rules(cfg));
        }
        out.extend(tails(cfg, hook));
        out
    };
    let mut input = vec!["iifname \"lo\" accept".to_owned()];
    input.extend(closed(Hook::Input));
    let mut chains = vec![ChainDef {
        name: "input".into(),
        head: "type filter hook input priority filter - 1; policy accept;",
        rules: input,
    }];
    if forwards(cfg) {
        chains.push(ChainDef {
            name: "forward".into(),
            head: FORWARD_HEAD,
            rules: closed(Hook::Forward),
        });
    }
    TableDef {
        services,
        shared: kept_sets(cfg),
        chains,
        guard: guard::chains(cfg),
    }
}

/// Render the table. `source` names the config file in the header comment.
pub fn render(cfg: &Config, source: &str) -> String {
    text(&build(cfg), cfg, source)
}

/// The closed table (`build_closed`) as text, for the include file after
/// `unload`.
pub fn render_closed(cfg: &Config, source: &str) -> String {
    text(&build_closed(cfg), cfg, source)
}

fn text(t: &TableDef, cfg: &Config, source: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# pfknock {}: table inet {TABLE} from {}",
        env!("CARGO_PKG_VERSION"),
        crate::name::comment_safe(source)
    );
    let _ = writeln!(o, "# load with: pfknock load (nft -f, one transaction)");
    if !cfg.expires.is_empty() {
        let _ = writeln!(
            o,
            "# [[expire]] tables are pf tables: nothing to render for nftables"
        );
    }
    let _ = writeln!(o, "table inet {TABLE} {{");
    for (comment, sets) in &t.services {
        let _ = writeln!(o, "\t{comment}");
        for s in sets {
            let _ = writeln!(o, "\tset {} {{ {} }}", s.name, s.body());
        }
    }
    if !t.shared.is_empty() {
        let _ = writeln!(o, "\t# all services");
        for s in &t.shared {
            let _ = writeln!(o, "\tset {} {{ {} }}", s.name, s.body());
        }
    }
    chains_text(&mut o, &t.chains);
    let _ = writeln!(o, "}}");
    if !t.guard.is_empty() {
        let _ = writeln!(
            o,
            "# closed to connections table inet {TABLE} did not let through, while it is gone"
        );
        let _ = writeln!(o, "table inet {GUARD} {{");
        chains_text(&mut o, &t.guard);
        let _ = writeln!(o, "}}");
    }
    o
}

fn chains_text(o: &mut String, chains: &[ChainDef]) {
    for c in chains {
        let _ = writeln!(o, "\tchain {} {{", c.name);
        if !c.head.is_empty() {
            let _ = writeln!(o, "\t\t{}", c.head);
        }
        for r in &c.rules {
            let _ = writeln!(o, "\t\t{r}");
        }
        let _ = writeln!(o, "\t}}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_refill_one_knock_per_window() {
        let r = |s: &str| limit(s.parse().unwrap());
        assert_eq!(r("5/15"), "limit rate over 4/minute burst 5 packets");
        assert_eq!(r("10/5"), "limit rate over 12/minute burst 10 packets");
        assert_eq!(r("3/1"), "limit rate over 1/second burst 3 packets");
        assert_eq!(r("3/7"), "limit rate over 86400/week burst 3 packets");
        assert_eq!(r("1/86400"), "limit rate over 1/day burst 1 packets");
        assert_eq!(r("2/13"), "limit rate over 46523/week burst 2 packets");
    }

    #[test]
    fn durations_in_parts_nft_can_read() {
        assert_eq!(nft_time(60_000), "1m");
        assert_eq!(nft_time(93_784_005), "1d2h3m4s5ms");
        assert_eq!(nft_time(520 * 7 * 86_400_000), "3640d");
        assert_eq!(nft_time(0), "0s");
    }
}
