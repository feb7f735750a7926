//! The rules of one service, line by line: its sets, the counting and
//! answering of knocks, and who may reach its protected ports.
#![forbid(unsafe_code)]

use super::*;

/// The connection tracking label pfknock's rules give the connections
/// they let through to a protected port (the highest of the 128); the
/// guard's chains accept what carries it.
pub const LABEL: u8 = 127;

/// The statement that vouches for a connection, before an accept.
pub(super) fn vouch() -> String {
    format!("ct label set {LABEL}")
}

/// `limit rate over 1/S burst N packets`, the token bucket for pf's `N/S`:
/// N tokens, one back every S seconds. The unit is the smallest of second,
/// minute, hour, day and week that S divides; a week's rounding otherwise
/// (at most 1/604800 of S, since S is at most a week).
pub(super) fn limit(r: Rate) -> String {
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

pub(super) fn iif(s: &Service) -> String {
    s.on.as_ref()
        .map_or(String::new(), |i| format!("iifname \"{i}\" "))
}

pub(super) fn list(items: &[String]) -> String {
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

/// The networks of `list` that belong to a family, as text.
pub(super) fn nets_of(list: &[Net], af: Af) -> Vec<String> {
    list.iter()
        .filter(|n| n.af() == af)
        .map(|n| n.to_string())
        .collect()
}

/// The set of an object, for a family.
pub(super) fn set_of(s: &Service, o: Object, af: Af) -> String {
    names::nft_set(s, o, af).expect("an object with an nftables set")
}

/// The allow list's constant set of one family, if it has addresses of
/// that family.
fn allow_set(s: &Service, af: Af) -> Option<SetDef> {
    let elems = nets_of(&s.allow, af);
    (!elems.is_empty()).then(|| SetDef {
        name: set_of(s, Object::Table(Role::Allow), af),
        ty: af.ty(),
        elements: Some(elems),
        timeout: None,
        size: None,
        comment: format!("{}: allow", s.name),
        kept: None,
        counter: false,
    })
}

pub(super) fn service_sets(s: &Service) -> Vec<SetDef> {
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
        // Sets every source reaches (meters, holds, networks): larger.
        let wide = |d: SetDef| SetDef {
            size: Some(s.meter_size()),
            ..d
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
                Object::Table(Role::Allow) => v.extend(allow_set(s, af)),
                Object::Meter(k) => v.push(wide(dynset(
                    o,
                    Secs(s.rate.secs as u64),
                    format!("{}: meter {k}, rate {}", s.name, s.rate),
                ))),
                // A network's authorizations: at most ADMIT_BURST at once,
                // one more a minute (`admit`); held as long as the
                // authorizations they made.
                Object::Admit if af == Af::V6 => {
                    v.push(wide(dynset(o, s.ttl, format!("{}: per network", s.name))))
                }
                Object::Admit => {}
                // Counts close knocks as the knock meters count knocks.
                Object::Close => v.push(wide(dynset(
                    o,
                    Secs(s.rate.secs as u64),
                    format!("{}: meter close, rate {}", s.name, s.rate),
                ))),
                // A source's signed-knock datagrams (`spa_rules`).
                Object::Spa => v.push(wide(dynset(
                    o,
                    Secs(60),
                    format!("{}: signed knocks per source, {SPA_LIMIT}", s.name),
                ))),
                // As long as the meter remembers a knock: the rate's window.
                Object::Hold => v.push(wide(dynset(
                    o,
                    Secs(s.rate.secs as u64),
                    format!("{}: held back after a wrong knock", s.name),
                ))),
            }
        }
    }
    v
}

/// Who may knock on port k (0-based) of a family: `None` when nobody of
/// this family may, else a match (empty for anyone).
pub(super) fn knock_source(s: &Service, k: usize, af: Af) -> Option<String> {
    if k > 0 {
        let prev = set_of(s, Object::Table(Role::Stage(k)), af);
        return Some(format!("{} @{prev} ", key(s, af)));
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

/// Rules that count the SYN synproxy sends on for a validated cookie. A
/// rotating service's stages are counted in chains of their own
/// (`chains`), which each step's port jumps to in its time window: a step
/// loaded ahead costs one rule a stage, not a stage's counting rules.
pub(super) fn count_rules(
    out: &mut Vec<String>,
    chains: &mut Vec<ChainDef>,
    s: &Service,
    group: u16,
) {
    let n = s.stages();
    // A rotating service whose ports were never filled in counts nothing.
    if s.knock.len() < n {
        return;
    }
    if s.rotate.is_some() {
        // The later stages' ports first. Near a boundary three steps are
        // in force (the last, this one and the next), and the last's and
        // the next's ports may meet: one port can be the next step's
        // second and the last step's first. A later stage's chain counts
        // only a host that has reached it and lets any other go on to the
        // earlier stage's rule, so either knock counts; in the other
        // order the first stage's rule would take every knock on it.
        for k in (0..n).rev() {
            let name = names::stage_chain(s.table.as_str(), k);
            for (p, when) in stage_variants(s, k) {
                out.push(format!("{} jump {name}", counted_syn(&p, &when)));
            }
        }
        for k in 0..n {
            let mut rules = Vec::new();
            count_rule(&mut rules, s, group, k, "");
            chains.push(ChainDef {
                name: names::stage_chain(s.table.as_str(), k),
                head: "",
                rules,
            });
        }
    } else {
        for k in 0..n {
            for (p, when) in stage_variants(s, k) {
                count_rule(out, s, group, k, &counted_syn(&p, &when));
            }
        }
    }
    close_rules(out, s, group);
    reset_rules(out, s);
}

/// The close knock: past the rate on the close port, the host leaves the
/// authorized set (and its progress through a sequence starts over), and
/// the daemon learns of it from the log statement. A knock on the close
/// port ends here, counted or not: it is never a wrong knock.
fn close_rules(out: &mut Vec<String>, s: &Service, group: u16) {
    let Some(port) = s.close else {
        return;
    };
    let head = counted_syn(&port.to_string(), "");
    for af in families(s) {
        let Some(from) = knock_source(s, 0, af) else {
            continue;
        };
        let (ip, key) = (af.proto(), key(s, af));
        let stages: String = (1..s.stages())
            .map(|k| {
                let set = set_of(s, Object::Table(Role::Stage(k)), af);
                format!(" delete @{set} {{ {key} }}")
            })
            .collect();
        let meter = set_of(s, Object::Close, af);
        out.push(format!(
            "{head} {from}update @{meter} {{ {key} {} }} delete @{} {{ {ip} saddr }}{stages} \
             log group {group} prefix \"{}\"",
            limit(s.rate),
            set_of(s, Object::Table(Role::Auth), af),
            names::close_prefix(&s.name)
        ));
        // A close knock its full meter did not count, as for knock meters.
        out.push(format!(
            "{head} {from}{key} != @{meter} limit rate 1/second \
             log group {group} prefix \"{}\"",
            names::meter_full_prefix(&meter)
        ));
    }
    out.push(format!("{head} accept"));
}

/// The match of a synproxy'd SYN (see `count_rule`) to ports `p`.
fn counted_syn(p: &str, when: &str) -> String {
    format!("iifname \"lo\" tcp dport {p} {SYN} {when}ct state new fib saddr type != local")
}

/// A knock that reached this rule hit no port in force for its stage: a
/// port of the sequence out of order, or a port of a rotating range that
/// is not this step's, the last or the next. It resets the host's
/// progress (its stage sets and meters) and holds it back for the rate's
/// window, during which none of its knocks count. So a sweep of a range,
/// or the ports a scan found knocked in the wrong order, learns nothing
/// and opens nothing (pfknock(8), KNOCKS THAT FAIL). Knocks on right
/// ports were accepted above (`count_rule`) and never get here.
fn reset_rules(out: &mut Vec<String>, s: &Service) {
    if !s.has_wrong_ports() {
        return;
    }
    let head = counted_syn(&merge::ports_text(answering(s)), "");
    for af in families(s) {
        let key = key(s, af);
        let mut forget: Vec<String> = (1..s.stages())
            .map(|k| set_of(s, Object::Table(Role::Stage(k)), af))
            .collect();
        forget.extend((1..=s.stages()).map(|k| set_of(s, Object::Meter(k), af)));
        let deletes: String = forget
            .iter()
            .map(|set| format!(" delete @{set} {{ {key} }}"))
            .collect();
        out.push(format!(
            "{head} update @{} {{ {key} }}{deletes}",
            set_of(s, Object::Hold, af)
        ));
    }
}

/// The ports of stage k (0-based), each with the time it counts in: a
/// fixed knock always; a rotating one per step, from `rotate::lead` before
/// its step until the end of the step after it, so that the rules stop
/// counting by themselves if no daemon loads the next ones. The steps
/// loaded are the one before, this one and the `rotate::ahead` after it.
pub(super) fn stage_variants(s: &Service, k: usize) -> Vec<(String, String)> {
    let (Some(r), Some(start)) = (&s.rotate, s.step_start) else {
        let ports: Vec<String> = s.stage_ports(k).iter().map(|p| p.to_string()).collect();
        return vec![(list(&ports), String::new())];
    };
    let len = r.step.0 as i64;
    let lead = crate::rotate::lead(r.step.0);
    // Each step with how many steps from this one it is.
    let steps = [(-1, &s.knock_prev), (0, &s.knock)]
        .into_iter()
        .chain((1..).zip(&s.knock_later));
    steps
        .filter_map(|(j, ports)| {
            let p = ports.get(k)?;
            let (from, to) = (start + j * len - lead, start + (j + 2) * len);
            Some((
                p.to_string(),
                format!("meta time >= {from} meta time < {to} "),
            ))
        })
        .collect()
}

/// What a knock counts for, in the sets of knock progress (meters,
/// stages, holds): the source address, or for IPv6 its network of
/// `prefix6` bits, so that the addresses of one network cannot fill them.
pub(super) fn key(s: &Service, af: Af) -> String {
    match af {
        Af::V6 if s.prefix6 < 128 => {
            let mask = std::net::Ipv6Addr::from(u128::MAX << (128 - u32::from(s.prefix6)));
            format!("ip6 saddr & {mask}")
        }
        _ => format!("{} saddr", af.proto()),
    }
}

/// How many addresses of one IPv6 network the last knock may authorize at
/// once; one more each minute.
pub(super) const ADMIT_BURST: u32 = 16;

/// The statement before an IPv6 authorization that lets one network make
/// at most `ADMIT_BURST` of them at once, one more a minute: past that the
/// rule stops, so one network cannot fill the authorized set.
fn admit(s: &Service, af: Af) -> String {
    if s.prefix6 < 128 && af == Af::V6 {
        format!(
            "update @{} {{ {} limit rate 1/minute burst {ADMIT_BURST} packets }} ",
            set_of(s, Object::Admit, af),
            key(s, af)
        )
    } else {
        String::new()
    }
}

/// The counting rules of stage k after `head` (the port and its time,
/// `counted_syn`; empty in a stage's own chain, which the port jumped to),
/// for every family: count (and at the last stage authorize), say when a
/// full meter did not count, and end a knock on a right port.
pub(super) fn count_rule(out: &mut Vec<String>, s: &Service, group: u16, k: usize, head: &str) {
    let last = k + 1 == s.stages();
    let (into, verb, log) = stage_target(s, k, group);
    let head = if head.is_empty() {
        String::new()
    } else {
        format!("{head} ")
    };
    let mut rights: Vec<String> = Vec::new();
    for af in families(s) {
        let Some(from) = knock_source(s, k, af) else {
            continue;
        };
        let (ip, key) = (af.proto(), key(s, af));
        // A link-local address names a host on one link only: a knock
        // from fe80::1 on one link must not open the port to another
        // link's fe80::1 (the sets hold no interface).
        let from = match af {
            Af::V6 => format!("ip6 saddr != fe80::/10 {from}"),
            Af::V4 => from,
        };
        // A host held back after a wrong port counts nothing.
        let held = if s.has_wrong_ports() {
            format!("{key} != @{} ", set_of(s, Object::Hold, af))
        } else {
            String::new()
        };
        let meter = set_of(s, Object::Meter(k + 1), af);
        // Stages count per key; the authorized set holds addresses.
        let (admit, elem) = if last {
            (admit(s, af), format!("{ip} saddr"))
        } else {
            (String::new(), key.clone())
        };
        out.push(format!(
            "{head}{from}{held}update @{meter} {{ {key} {} }} {admit}{verb} @{} {{ {elem} }}{log}",
            limit(s.rate),
            set_of(s, into, af),
        ));
        // The update above puts every source into the meter, unless the
        // meter is full (nft_dynset: no room, the rule stops): a source
        // still not in it is a knock a full meter did not count. The
        // kernel says nothing else of it, so this says it to the daemon,
        // once a second at most.
        out.push(format!(
            "{head}{from}{held}{key} != @{meter} limit rate 1/second \
             log group {group} prefix \"{}\"",
            names::meter_full_prefix(&meter)
        ));
        rights.push(format!("{head}{from}accept"));
    }
    // A knock on a right port, counted or held back, ends here (after both
    // families' rules: one without a source match is either's); what goes
    // on is a wrong one (`reset_rules`).
    if s.has_wrong_ports() {
        let any = format!("{head}accept");
        if rights.contains(&any) {
            rights = vec![any];
        }
        out.extend(rights);
    }
}

/// Where a counted knock of stage k (0-based) goes: the next stage's set,
/// or at the last stage the authorized set, with the verb (`add` when a
/// new knock must not renew) and the nflog statement the daemon learns
/// of each authorization from (the kernel sends no notice of an element
/// added from the packet path).
fn stage_target(s: &Service, k: usize, group: u16) -> (Object, &'static str, String) {
    if k + 1 < s.stages() {
        return (Object::Table(Role::Stage(k + 1)), "update", String::new());
    }
    let verb = if s.renew { "update" } else { "add" };
    let log = format!(
        " log group {group} prefix \"{}\"",
        names::knock_prefix(&s.name)
    );
    (Object::Table(Role::Auth), verb, log)
}

/// How many signed-knock datagrams a source may send: past this the
/// kernel drops them before the listener reads them.
pub(super) const SPA_LIMIT: &str = "10/second burst 20 packets";

/// The signed-knock port: dropped past `SPA_LIMIT` a source, and from
/// whoever `from` leaves out; the rest goes on to the listener.
pub(super) fn spa_rules(out: &mut Vec<String>, s: &Service) {
    let Some(sp) = &s.spa else {
        return;
    };
    let iif = iif(s);
    for af in families(s) {
        let meter = set_of(s, Object::Spa, af);
        let nf = match af {
            Af::V4 => "ipv4",
            Af::V6 => "ipv6",
        };
        if !s.from.is_empty() {
            let nets = nets_of(&s.from, af);
            let only = if nets.is_empty() {
                String::new()
            } else {
                format!("{} saddr != {} ", af.proto(), list(&nets))
            };
            out.push(format!(
                "{iif}meta nfproto {nf} udp dport {} {only}drop",
                sp.port
            ));
        }
        out.push(format!(
            "{iif}meta nfproto {nf} udp dport {} update @{meter} {{ {} limit rate over {SPA_LIMIT} }} drop",
            sp.port,
            key(s, af)
        ));
    }
    if s.family != crate::name::Family::Any {
        out.push(format!("{iif}udp dport {} drop", sp.port));
    }
}

/// The ports that answer like knock ports: the knock ports, or a
/// rotating service's whole range, so that a scan cannot tell which
/// ports of the range this step's are. No two services share one
/// (`config::check`).
pub(super) fn answering(s: &Service) -> Vec<PortRange> {
    let mut v = match &s.rotate {
        Some(r) => vec![r.range],
        None => s.knock.iter().map(|p| PortRange::single(*p)).collect(),
    };
    v.extend(s.close.map(PortRange::single));
    v
}

/// The knock ports' answers to the outside, every service's in the same
/// three rules a set of rules (`Merged`): a port answers for one service
/// only, so no rule of one service's ports meets a packet to another's.
pub(super) fn knock_rules(out: &mut Merged, s: &Service) {
    let iif = iif(s);
    // Only what no connection of this host's own owns: a range may hold
    // the local ports of outgoing connections, whose replies are
    // established.
    let fresh = if s.rotate.is_some() {
        "ct state invalid,untracked,new "
    } else {
        ""
    };
    let ports = answering(s);
    // Every SYN is answered, whoever sends it and whatever stage it has
    // reached: a scan learns nothing of the order. Who counts is decided
    // when the handshake is complete (`count_rules`).
    let head = format!("{iif}tcp dport ");
    out.add(head.clone(), ports.clone(), format!(" {SYN} {SYNPROXY}"));
    out.add(
        head.clone(),
        ports.clone(),
        format!(" {ACK} ct state invalid,untracked,new {SYNPROXY}"),
    );
    out.add(head, ports, format!(" {fresh}reject with tcp reset"));
}

/// `tcp dport ...` (or udp, or both) of the protected ports.
pub(super) fn dport(s: &Service) -> String {
    format!("{}{}", proto_dport(s), merge::ports_text(s.protect.clone()))
}

/// What stands before the protected ports in `dport`.
pub(super) fn proto_dport(s: &Service) -> &'static str {
    if s.proto == [Proto::Tcp] {
        "tcp dport "
    } else if s.proto == [Proto::Udp] {
        "udp dport "
    } else {
        "meta l4proto { tcp, udp } th dport "
    }
}

/// Who may reach the protected ports. Every service's accepts stand
/// before any service's drop, so two services protecting one port both
/// open it.
/// The base chain a rule is for: packets to this host, or forwarded ones.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Hook {
    Input,
    Forward,
}

/// The destination match of a service's protected ports on a hook and
/// family: `None` where the hook has none of its destinations.
pub(super) fn dest_match(s: &Service, hook: Hook, af: Af) -> Option<String> {
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

pub(super) fn protect_rules(out: &mut Vec<String>, s: &Service, hook: Hook) {
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
        let vouch = vouch();
        out.push(format!("{iif}{dport} {ip} saddr @{set} {vouch} accept"));
        if s.allow.iter().any(|n| n.af() == af) {
            out.push(format!(
                "{iif}{dport} {ip} saddr @{} {vouch} accept",
                set_of(s, Object::Table(Role::Allow), af)
            ));
        }
    }
}

/// The connections that were open when the table was loaded: conntrack
/// may never have seen them (nothing used it before), so their next
/// packet is `ct state new` to it, and without these rules the drop would
/// cut an administrator's own ssh session. Only those exact flows, read
/// from the host's sockets at load into one set a family for all
/// services (`kept_sets`); a new connection is not one of them. A rule
/// for each interface the services name (`on`) and family, with those
/// services' ports, so a flow is taken only where its service would take
/// it; accepts, so their order among the other accepts changes nothing.
pub(super) fn kept_rules(cfg: &Config) -> Vec<String> {
    let mut m = Merged::default();
    for s in cfg.services.iter().filter(|s| s.keeps_flows()) {
        for af in families(s) {
            m.add(
                format!("{}tcp dport ", iif(s)),
                s.protect.iter().copied(),
                format!(
                    " {} saddr . tcp sport . tcp dport @{} {} accept",
                    af.proto(),
                    names::nft_kept_set(af),
                    vouch()
                ),
            );
        }
    }
    m.rules()
}

/// The sets `kept_rules` take the flows from, each with the ports the
/// loader reads the open connections to: a family's only where a service
/// of that family keeps flows. No size: a static set with a size is a
/// hash of that many buckets made at once (2 MB each for the default,
/// empty), where without one it grows with what the load puts in (Linux
/// 6.18: 0 KB empty; nft_set_hash.c).
pub(super) fn kept_sets(cfg: &Config) -> Vec<SetDef> {
    [Af::V4, Af::V6]
        .into_iter()
        .filter_map(|af| {
            let ports: Vec<PortRange> = (cfg.services.iter())
                .filter(|s| s.keeps_flows() && families(s).contains(&af))
                .flat_map(|s| s.protect.iter().copied())
                .collect();
            (!ports.is_empty()).then(|| SetDef {
                name: names::nft_kept_set(af).to_owned(),
                ty: af.flow_ty(),
                elements: None,
                timeout: None,
                size: None,
                comment: "connections open at load".to_owned(),
                kept: Some(merge::joined(ports)),
                counter: false,
            })
        })
        .collect()
}

/// An expiry does not cut an open session; everything else is dropped.
/// Every service's pair of rules does the same to what it matches, so
/// those of all services with the same interface, destination and
/// protocols are one pair (`Merged`): the verdict a packet meets is the
/// same, whichever pair matches it first.
pub(super) fn protect_tail(out: &mut Merged, s: &Service, hook: Hook) {
    let iif = iif(s);
    let mut tos: Vec<String> = families(s)
        .into_iter()
        .filter_map(|af| dest_match(s, hook, af))
        .collect();
    tos.dedup(); // "" for both families: one rule covers them
    for to in tos {
        let head = format!("{iif}{to}{}", proto_dport(s));
        let ports = s.protect.iter().copied();
        out.add(
            head.clone(),
            ports.clone(),
            " ct state established,related accept".into(),
        );
        out.add(head, ports, " drop".into());
    }
}

/// Does any service lead somewhere through the forward hook?
pub(super) fn forwards(cfg: &Config) -> bool {
    cfg.services.iter().any(|s| !matches!(s.to, Dest::SelfHost))
}

pub(super) const FORWARD_HEAD: &str =
    "type filter hook forward priority filter - 1; policy accept;";
