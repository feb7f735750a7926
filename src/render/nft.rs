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
//! * Only the input hook and packets addressed to this host are touched:
//!   the prerouting rule that exempts knock SYNs from conntrack matches
//!   `fib daddr type local`, so forwarded traffic is left alone.
//!
//! `[[expire]]` tables are pf's and have no nftables counterpart.
#![forbid(unsafe_code)]

use std::fmt::Write;

use crate::config::{Config, Dest, Role, Service};
use crate::name::{ExpireMode, Family, Net, PortRange, Proto, Rate, Secs};
use crate::names::{self, Object};

pub use crate::names::Af;

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
    names::nft_set_of(table, af)
}

/// A duration as nft(8) reads it: `1d2h3m4s5ms`. nft refuses a number of
/// 100,000,000 or more in any one part (`timeout 100000000s` is "value too
/// large", measured with nft 1.0.6), so a long ttl must not be written in
/// seconds alone.
pub fn nft_time(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut n = ms;
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if n >= size {
            let _ = write!(out, "{}{unit}", n / size);
            n %= size;
        }
    }
    out
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
    /// anew at every load (`Object::Kept`); `None` for a set of addresses.
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

/// One base chain and its rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainDef {
    pub name: &'static str,
    /// `type filter hook ... priority ...; policy accept;`
    pub head: &'static str,
    pub rules: Vec<String>,
}

/// The whole table, in render order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDef {
    /// Per service: its header comment and its sets.
    pub services: Vec<(String, Vec<SetDef>)>,
    pub chains: Vec<ChainDef>,
}

impl TableDef {
    pub fn sets(&self) -> impl Iterator<Item = &SetDef> {
        self.services.iter().flat_map(|(_, s)| s.iter())
    }
}

/// `limit rate over 1/S burst N packets`, the token bucket for pf's `N/S`:
/// N tokens, one back every S seconds. The unit is the smallest of second,
/// minute, hour, day and week that S divides; a week's rounding otherwise
/// (at most 1/604800 of S, since S is at most a week).
fn limit(r: Rate) -> String {
    let s = r.secs as u64;
    let (rate, unit) = [
        (1, "second"),
        (60, "minute"),
        (3600, "hour"),
        (86400, "day"),
        (604800, "week"),
    ]
    .into_iter()
    .find(|(u, _)| u % s == 0)
    .map_or(((604800 / s).max(1), "week"), |(u, name)| (u / s, name));
    format!("limit rate over {rate}/{unit} burst {} packets", r.conns)
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

/// The networks of `list` that belong to a family, as text.
fn nets_of(list: &[Net], af: Af) -> Vec<String> {
    list.iter()
        .filter(|n| Af::of(n) == af)
        .map(|n| n.to_string())
        .collect()
}

/// The set of an object, for a family.
fn set_of(s: &Service, o: Object, af: Af) -> String {
    names::nft_set(s, o, af).expect("an object with an nftables set")
}

fn service_sets(s: &Service) -> Vec<SetDef> {
    let mut v = Vec::new();
    for af in families(s) {
        let dynset = |o: Object, t: Secs, comment: String| SetDef {
            name: set_of(s, o, af),
            ty: af.ty(),
            elements: None,
            timeout: Some(t),
            size: Some(s.size),
            comment,
            kept: None,
            counter: false,
        };
        for o in names::objects(s) {
            match o {
                Object::Table(Role::Auth) => v.push(SetDef {
                    counter: true,
                    ..dynset(o, s.ttl, format!("{}: authorized", s.name))
                }),
                Object::Table(Role::Stage(k)) => {
                    v.push(dynset(o, s.window, format!("{}: stage {k}", s.name)))
                }
                Object::Table(Role::Renew) => {}
                Object::Table(Role::Allow) => {
                    let elems = nets_of(&s.allow, af);
                    if !elems.is_empty() {
                        v.push(SetDef {
                            name: set_of(s, o, af),
                            ty: af.ty(),
                            elements: Some(elems),
                            timeout: None,
                            size: None,
                            comment: format!("{}: allow", s.name),
                            kept: None,
                            counter: false,
                        });
                    }
                }
                Object::Meter(k) => v.push(dynset(
                    o,
                    Secs(s.rate.secs as u64),
                    format!("{}: meter {k}, rate {}", s.name, s.rate),
                )),
                Object::Kept => v.push(SetDef {
                    name: set_of(s, o, af),
                    ty: af.flow_ty(),
                    elements: None,
                    timeout: None,
                    size: Some(s.size),
                    comment: format!("{}: kept at load", s.name),
                    kept: Some(s.protect.clone()),
                    counter: false,
                }),
            }
        }
    }
    v
}

/// Who may knock on port k (0-based) of a family: `None` when nobody of
/// this family may, else a match (empty for anyone).
fn knock_source(s: &Service, k: usize, af: Af) -> Option<String> {
    if k > 0 {
        let prev = set_of(s, Object::Table(Role::Stage(k)), af);
        return Some(format!("{} saddr @{prev} ", af.proto()));
    }
    if s.from.is_empty() {
        return Some(String::new());
    }
    let nets = nets_of(&s.from, af);
    if nets.is_empty() {
        None
    } else {
        Some(format!("{} saddr {} ", af.proto(), list(&nets)))
    }
}

/// Rules that count the SYN synproxy sends on for a validated cookie.
fn count_rules(out: &mut Vec<String>, s: &Service, group: u16) {
    let n = s.stages();
    // A rotating service whose ports were never filled in counts nothing.
    if s.knock.len() < n {
        return;
    }
    for k in 0..n {
        for (p, when) in stage_variants(s, k) {
            count_rule(out, s, group, k, &p, &when);
        }
    }
}

/// The ports of stage k (0-based), each with the time it counts in: a
/// fixed knock always; a rotating one per step, from `rotate::lead` before
/// its step until the end of the step after it, so that the rules stop
/// counting by themselves if no daemon loads the next ones.
fn stage_variants(s: &Service, k: usize) -> Vec<(String, String)> {
    let (Some(r), Some(start)) = (&s.rotate, s.step_start) else {
        let ports: Vec<String> = s.stage_ports(k).iter().map(|p| p.to_string()).collect();
        return vec![(list(&ports), String::new())];
    };
    let len = r.step.0 as i64;
    let lead = crate::rotate::lead(r.step.0);
    [
        (&s.knock_prev, start - len - lead, start + len),
        (&s.knock, start - lead, start + 2 * len),
        (&s.knock_next, start + len - lead, start + 3 * len),
    ]
    .into_iter()
    .filter_map(|(ports, from, to)| {
        let p = ports.get(k)?;
        Some((
            p.to_string(),
            format!("meta time >= {from} meta time < {to} "),
        ))
    })
    .collect()
}

/// One counting rule of stage k on ports `p`, in force `when`.
fn count_rule(out: &mut Vec<String>, s: &Service, group: u16, k: usize, p: &str, when: &str) {
    let n = s.stages();
    {
        // The synproxy'd SYN: on lo, from a source that is not ours.
        let head = format!(
            "iifname \"lo\" tcp dport {p} {SYN} {when}ct state new fib saddr type != local"
        );
        for af in families(s) {
            let Some(from) = knock_source(s, k, af) else {
                continue;
            };
            let into = if k + 1 == n {
                Object::Table(Role::Auth)
            } else {
                Object::Table(Role::Stage(k + 1))
            };
            let verb = if k + 1 == n && !s.renew {
                "add"
            } else {
                "update"
            };
            // The daemon learns of each authorization from this packet
            // (nfnetlink_log): the kernel sends no notice of an element
            // added from the packet path.
            let log = if k + 1 == n {
                format!(" log group {group} prefix \"pfknock {}: \"", s.name)
            } else {
                String::new()
            };
            let ip = af.proto();
            // A link-local address names a host on one link only: a knock
            // from fe80::1 on one link must not open the port to another
            // link's fe80::1 (the sets hold no interface).
            let from = match af {
                Af::V6 => format!("ip6 saddr != fe80::/10 {from}"),
                Af::V4 => from,
            };
            out.push(format!(
                "{head} {from}update @{} {{ {ip} saddr {} }} {verb} @{} {{ {ip} saddr }}{log}",
                set_of(s, Object::Meter(k + 1), af),
                limit(s.rate),
                set_of(s, into, af),
            ));
        }
    }
}

/// The ports that answer like knock ports: the knock ports, or a
/// rotating service's whole range, so that a scan cannot tell which
/// ports of the range this step's are.
fn answering(s: &Service) -> Vec<String> {
    match &s.rotate {
        Some(r) => vec![r.range.nft()],
        None => s.knock.iter().map(|p| p.to_string()).collect(),
    }
}

/// The knock ports' answers to the outside.
fn knock_rules(out: &mut Vec<String>, s: &Service) {
    let iif = iif(s);
    // Only what no connection of this host's own owns: a range may hold
    // the local ports of outgoing connections, whose replies are
    // established.
    let fresh = if s.rotate.is_some() {
        "ct state invalid,untracked,new "
    } else {
        ""
    };
    for p in &answering(s) {
        // Every SYN is answered, whoever sends it and whatever stage it
        // has reached: a scan learns nothing of the order. Who counts is
        // decided when the handshake is complete (`count_rules`).
        out.push(format!("{iif}tcp dport {p} {SYN} {SYNPROXY}"));
        out.push(format!(
            "{iif}tcp dport {p} {ACK} ct state invalid,untracked,new {SYNPROXY}"
        ));
        out.push(format!("{iif}tcp dport {p} {fresh}reject with tcp reset"));
    }
}

/// `tcp dport ...` (or udp, or both) of the protected ports.
fn dport(s: &Service) -> String {
    let ports: Vec<String> = s.protect.iter().map(PortRange::nft).collect();
    if s.proto == [Proto::Tcp] {
        format!("tcp dport {}", list(&ports))
    } else if s.proto == [Proto::Udp] {
        format!("udp dport {}", list(&ports))
    } else {
        format!("meta l4proto {{ tcp, udp }} th dport {}", list(&ports))
    }
}

/// Who may reach the protected ports. Every service's accepts stand
/// before any service's drop, so two services protecting one port both
/// open it.
/// The base chain a rule is for: packets to this host, or forwarded ones.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hook {
    Input,
    Forward,
}

/// The destination match of a service's protected ports on a hook and
/// family: `None` where the hook has none of its destinations.
fn dest_match(s: &Service, hook: Hook, af: Af) -> Option<String> {
    match (&s.to, hook) {
        (Dest::SelfHost | Dest::Any, Hook::Input) | (Dest::Any, Hook::Forward) => {
            Some(String::new())
        }
        (Dest::SelfHost, Hook::Forward) | (Dest::Nets(_), Hook::Input) => None,
        (Dest::Nets(n), Hook::Forward) => {
            let nets = nets_of(n, af);
            (!nets.is_empty()).then(|| format!("{} daddr {} ", af.proto(), list(&nets)))
        }
    }
}

fn protect_rules(out: &mut Vec<String>, s: &Service, hook: Hook) {
    let iif = iif(s);
    let dport = dport(s);
    for af in families(s) {
        let Some(to) = dest_match(s, hook, af) else {
            continue;
        };
        let dport = format!("{to}{dport}");
        let ip = af.proto();
        let set = set_of(s, Object::Table(Role::Auth), af);
        if s.expire == ExpireMode::Idle {
            // Only a connection whose handshake completed keeps an idle
            // authorization alive. `ct state established` alone is not
            // enough: it means "a reply was seen", and a forged SYN from an
            // authorized address earns one (our SYN-ACK, then the real
            // host's reset; measured). conntrack sets ASSURED only when the
            // final ACK of a handshake is valid (nf_conntrack_proto_tcp.c,
            // nf_conntrack_tcp_packet), which a blind forger cannot send.
            // Nor do a reset or a SYN: on a connection in TIME_WAIT (or
            // CLOSE) conntrack takes an RST, and a SYN it does not take as
            // a reopening, without checking the sequence number against
            // the window (nf_conntrack_proto_tcp.c, nf_conntrack_tcp_packet:
            // the RST and TCP_CONNTRACK_IGNORE cases), as part of the
            // assured connection; so one forged with an ended session's
            // 5-tuple would count as the client alive (measured: an RST
            // every 4 s kept a 20 s idle authorization 72 s; a SYN every
            // 0.5 s, as long as it went on). A live client sends neither
            // on an established connection; its other packets are checked
            // against the window, which a blind forger does not know.
            // And only while the connection is in TCP's ESTABLISHED state,
            // told by its timer (`ct expiration`: 5 days there by default,
            // nf_conntrack_tcp_timeout_established; at most 5 minutes in
            // every other state): on a connection being closed or closed
            // (FIN_WAIT, CLOSE_WAIT, TIME_WAIT, CLOSE) conntrack lets
            // packets that fail its window check pass as part of it
            // without marking them invalid, so a guessed ACK or data
            // segment with an ended session's 5-tuple would count
            // (measured: it did, for the CLOSE state's 10 s).
            //
            // One rule per protocol. (UDP has no flags, no window and no
            // such states: any packet with the flow's addresses and ports
            // counts; pfknock(8) says so.)
            let ports: Vec<String> = s.protect.iter().map(PortRange::nft).collect();
            for p in &s.proto {
                let (name, alive) = match p {
                    Proto::Tcp => ("tcp", " ct expiration > 10m tcp flags & (syn | rst) == 0"),
                    Proto::Udp => ("udp", ""),
                };
                out.push(format!(
                    "{iif}{to}{name} dport {} {ip} saddr @{set} ct state established ct status assured{alive} update @{set} {{ {ip} saddr }} accept",
                    list(&ports)
                ));
            }
        }
        out.push(format!("{iif}{dport} {ip} saddr @{set} accept"));
        if s.allow.iter().any(|n| Af::of(n) == af) {
            out.push(format!(
                "{iif}{dport} {ip} saddr @{} accept",
                set_of(s, Object::Table(Role::Allow), af)
            ));
        }
        kept_rule(out, s, hook, af);
    }
}

/// The connections that were open when the table was loaded: conntrack
/// may never have seen them (nothing used it before), so their next
/// packet is `ct state new` to it, and without this rule the drop would
/// cut an administrator's own ssh session. Only those exact flows, read
/// from the host's sockets at load; a new connection is not one of them.
fn kept_rule(out: &mut Vec<String>, s: &Service, hook: Hook, af: Af) {
    if hook == Hook::Input && s.keeps_flows() {
        out.push(format!(
            "{}{} saddr . tcp sport . tcp dport @{} accept",
            iif(s),
            af.proto(),
            set_of(s, Object::Kept, af)
        ));
    }
}

/// An expiry does not cut an open session; everything else is dropped.
fn protect_tail(out: &mut Vec<String>, s: &Service, hook: Hook) {
    let (iif, dport) = (iif(s), dport(s));
    let mut tos: Vec<String> = families(s)
        .into_iter()
        .filter_map(|af| dest_match(s, hook, af))
        .collect();
    tos.dedup(); // "" for both families: one rule covers them
    for to in tos {
        out.push(format!(
            "{iif}{to}{dport} ct state established,related accept"
        ));
        out.push(format!("{iif}{to}{dport} drop"));
    }
}

/// Does any service lead somewhere through the forward hook?
fn forwards(cfg: &Config) -> bool {
    cfg.services.iter().any(|s| !matches!(s.to, Dest::SelfHost))
}

const FORWARD_HEAD: &str = "type filter hook forward priority filter - 1; policy accept;";

/// The table as data: what `render` prints and the loader applies.
pub fn build(cfg: &Config) -> TableDef {
    let services = cfg
        .services
        .iter()
        .map(|s| (super::service_comment(s), service_sets(s)))
        .collect();

    let mut pre = Vec::new();
    for s in &cfg.services {
        let ports = answering(s);
        let iif = match &s.on {
            Some(i) => format!("iifname \"{i}\""),
            None => "iifname != \"lo\"".to_owned(),
        };
        pre.push(format!(
            "{iif} fib daddr type local tcp dport {} {SYN} notrack",
            list(&ports)
        ));
    }

    // A local process may bind an address that is not this host's
    // (IPV6_FREEBIND needs no privilege) and knock from it over loopback:
    // its SYNs to this host's knock ports never leave, so nothing counts
    // them. synproxy's own SYN, sent for a validated cookie, has no socket
    // (`meta skuid` does not match it) and passes.
    let mut output = Vec::new();
    for s in &cfg.services {
        output.push(format!(
            "fib daddr type local tcp dport {} fib saddr type != local meta skuid >= 0 drop",
            list(&answering(s))
        ));
    }

    let mut input = Vec::new();
    for s in &cfg.services {
        count_rules(&mut input, s, cfg.nflog_group);
    }
    // Loopback is never knocked nor blocked, as pf.conf's `set skip on lo0`.
    input.push("iifname \"lo\" accept".to_owned());
    for s in &cfg.services {
        knock_rules(&mut input, s);
    }
    for s in &cfg.services {
        protect_rules(&mut input, s, Hook::Input);
    }
    for s in &cfg.services {
        protect_tail(&mut input, s, Hook::Input);
    }
    let mut chains = vec![
        ChainDef {
            name: "prerouting",
            head: "type filter hook prerouting priority raw; policy accept;",
            rules: pre,
        },
        ChainDef {
            name: "input",
            head: "type filter hook input priority filter - 1; policy accept;",
            rules: input,
        },
        ChainDef {
            name: "output",
            head: "type filter hook output priority filter - 1; policy accept;",
            rules: output,
        },
    ];
    if forwards(cfg) {
        // Forwarded services (`to`): after DNAT, so by the destination the
        // packet is forwarded to; nothing else in the forward path.
        let mut fwd = Vec::new();
        for s in &cfg.services {
            protect_rules(&mut fwd, s, Hook::Forward);
        }
        for s in &cfg.services {
            protect_tail(&mut fwd, s, Hook::Forward);
        }
        chains.push(ChainDef {
            name: "forward",
            head: FORWARD_HEAD,
            rules: fwd,
        });
    }
    TableDef { services, chains }
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
                .filter(|d| d.elements.is_some() || d.kept.is_some())
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
                if s.allow.iter().any(|n| Af::of(n) == af) {
                    out.push(format!(
                        "{iif}{to}{dport} {} saddr @{} accept",
                        af.proto(),
                        set_of(s, Object::Table(Role::Allow), af)
                    ));
                }
                kept_rule(&mut out, s, hook, af);
            }
        }
        for s in &cfg.services {
            protect_tail(&mut out, s, hook);
        }
        out
    };
    let mut input = vec!["iifname \"lo\" accept".to_owned()];
    input.extend(closed(Hook::Input));
    let mut chains = vec![ChainDef {
        name: "input",
        head: "type filter hook input priority filter - 1; policy accept;",
        rules: input,
    }];
    if forwards(cfg) {
        chains.push(ChainDef {
            name: "forward",
            head: FORWARD_HEAD,
            rules: closed(Hook::Forward),
        });
    }
    TableDef { services, chains }
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
    for c in &t.chains {
        let _ = writeln!(o, "\tchain {} {{", c.name);
        let _ = writeln!(o, "\t\t{}", c.head);
        for r in &c.rules {
            let _ = writeln!(o, "\t\t{r}");
        }
        let _ = writeln!(o, "\t}}");
    }
    let _ = writeln!(o, "}}");
    o
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
