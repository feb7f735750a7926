//! Config → pf anchor text, for `pfctl -a ANCHOR -f -`.
//!
//! Per service, in this order:
//!
//! * its tables, declared inside the anchor with `persist` (plus `counters`
//!   for idle expiry), the allow list as a `const` table with its addresses;
//! * the renewal rule: an authorized host that knocks the last port again is
//!   put into `<T_renew>`, since pf ignores an overload of an address that is
//!   already in the table (the daemon renews it); with `renew = false` the
//!   same rule passes it without counting, so it lands nowhere;
//! * the knock rules: `synproxy state (max-src-conn-rate N/S, overload <t>)`,
//!   stage k passing only from stage k-1's table, the last stage's into
//!   `<T_renew>` too: the intake, where the daemon finds what changed
//!   without listing `<T>`, and moves each new host into `<T>`;
//! * the pass rule from the authorized, intake (and allow) tables to the
//!   protected ports: a host is let in from its knock on, not from the
//!   daemon's move.
//!
//! Then, after every service's pass rules (so that a port two services
//! protect opens to either's hosts), each service's `block in quick` on its
//! protected ports (`block = true`, the default): the anchor itself closes
//! what it protects, and no `pass` later in pf.conf can reopen it.
//!
//! Dynamic tables never get `{ }` or `file` contents (a reload would empty
//! them), and no rule carries `flush`: a second knock must not cut the
//! user's open session.
#![forbid(unsafe_code)]

use std::fmt::Write;

use crate::config::{Config, Dest, Role, Service};
use crate::name::{Af, Family, PortRange, Proto};

/// Render the anchor. `source` names the config file in the header comment.
pub fn render(cfg: &Config, source: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# pfknock {}: anchor \"{}\" from {}",
        env!("CARGO_PKG_VERSION"),
        cfg.anchor.as_str(),
        crate::name::comment_safe(source)
    );
    let _ = writeln!(
        o,
        "# load with: pfctl -a {} -f -   (pf.conf needs: anchor \"{}\")",
        cfg.anchor.as_str(),
        cfg.anchor.as_str()
    );
    let mut blocks = Vec::new();
    for s in &cfg.services {
        o.push('\n');
        blocks.extend(service(&mut o, s));
    }
    if !blocks.is_empty() {
        let _ = writeln!(
            o,
            "\n# closed to every other host, whatever pf.conf passes after the anchor"
        );
        for b in blocks {
            o.push_str(&b);
        }
    }
    if !cfg.expires.is_empty() {
        o.push('\n');
        for e in &cfg.expires {
            let _ = writeln!(
                o,
                "# expire only: <{}> in {}, {} {}",
                e.table, e.anchor, e.expire, e.ttl
            );
        }
    }
    o
}

/// Write the service's tables and rules; return its block rule, which
/// goes after every service's pass rules.
fn service(o: &mut String, s: &Service) -> Option<String> {
    // Knocks are made to this host: `(self)` is every local address, kept
    // up to date by the kernel (pf_if.c, pfi_dynaddr_setup: "self" is the
    // group of all interfaces), so routed traffic is never synproxied,
    // counted, opened or blocked. `to = "any"` keeps the old `to any`.
    let here = match s.to {
        Dest::Any => "any",
        _ => "(self)",
    };
    let dest = match &s.to {
        Dest::SelfHost => "(self)".to_owned(),
        Dest::Any => "any".to_owned(),
        Dest::Nets(n) => list(n.iter().map(|x| x.to_string())),
    };
    let _ = writeln!(o, "{}", super::service_comment(s));
    tables_of(o, s);
    knocks(o, s, here);
    signed(o, s, here);
    protect(o, s, &dest)
}

/// The signed-knock port passes to the listener (whatever pf.conf says
/// after the anchor), from whoever may knock, with at most `SPA_STATES`
/// flows a source: a source that sends more is dropped by pf.
fn signed(o: &mut String, s: &Service, here: &str) {
    let Some(sp) = &s.spa else {
        return;
    };
    let who = if s.from.is_empty() {
        "any".to_owned()
    } else {
        list(s.from.iter().map(|n| n.to_string()))
    };
    let _ = writeln!(
        o,
        "{} proto udp from {who} to {here} port {} keep state (max-src-states {SPA_STATES})",
        head(s, "pass", false),
        sp.port
    );
}

/// The most signed-knock flows (source address and port) pf keeps for
/// one source address at a time.
const SPA_STATES: u32 = 16;

/// The service's tables: persist, with counters for idle expiry; the
/// allow list const.
fn tables_of(o: &mut String, s: &Service) {
    for (t, role) in s.tables() {
        match role {
            Role::Auth if s.expire == crate::name::ExpireMode::Idle => {
                let _ = writeln!(o, "table <{t}> persist counters");
            }
            Role::Allow => {
                let addrs: Vec<String> = s.allow.iter().map(|n| n.to_string()).collect();
                let _ = writeln!(o, "table <{t}> const {{ {} }}", addrs.join(", "));
            }
            _ => {
                let _ = writeln!(o, "table <{t}> persist");
            }
        }
    }
    for t in s.hold_table().into_iter().chain(s.close_table()) {
        let _ = writeln!(o, "table <{t}> persist");
    }
}

/// The start of a rule of the service: action, log, quick, interface,
/// family.
fn head(s: &Service, action: &str, log: bool) -> String {
    let mut h = format!("{action} in");
    if log {
        h.push_str(" log");
    }
    h.push_str(" quick");
    if let Some(i) = &s.on {
        let _ = write!(h, " on {i}");
    }
    if s.family != Family::Any {
        let _ = write!(h, " {}", s.family.word());
    }
    h
}

/// A knock port's rule: synproxy, and the overload that records a host
/// past the rate (none: the knock passes uncounted).
fn knock_rule(
    o: &mut String,
    s: &Service,
    here: &str,
    from: &str,
    port: &str,
    overload: Option<&str>,
) {
    // Knocks come from the wire: a connection a local process makes to
    // this host over lo0 never counts (as with pf.conf's `set skip on
    // lo0`; binding a foreign source needs root on the BSDs: IP_BINDANY,
    // SO_BINDANY).
    let mut h = head(s, "pass", s.log);
    if s.on.is_none() {
        h = h.replacen(" quick", " quick on ! lo0", 1);
    }
    let _ = match overload {
        Some(t) => writeln!(
            o,
            "{h} proto tcp from {from} to {here} port {port} synproxy state \
             (max-src-conn-rate {}, overload <{t}>)",
            s.rate
        ),
        None => writeln!(
            o,
            "{h} proto tcp from {from} to {here} port {port} synproxy state"
        ),
    };
}

/// Every knock port of every stage, in one list.
fn knock_ports(s: &Service) -> String {
    port_list(s, false)
}

/// Every knock port of every stage, and the close port if `close`.
fn port_list(s: &Service, close: bool) -> String {
    let mut all: Vec<u16> = (0..s.stages())
        .flat_map(|k| s.stage_ports(k))
        .chain(s.close.filter(|_| close))
        .map(|p| p.get())
        .collect();
    all.sort_unstable();
    all.dedup();
    list(all.into_iter().map(|p| p.to_string()))
}

/// Knocks that never count: from a link-local address, and from a host
/// held after a wrong knock (on `wrong`, every port a knock can be wrong
/// on).
fn kept_out(o: &mut String, s: &Service, here: &str, wrong: &str) {
    // A link-local address names a host on one link only, and a table
    // entry holds no interface: such a knock would open the port to the
    // same address on every link.
    if s.family.covers(Af::V6) {
        let mut h = head(s, "block", false);
        if s.family == Family::Any {
            h.push_str(" inet6");
        }
        let _ = writeln!(
            o,
            "{h} proto tcp from fe80::/10 to {here} port {}",
            port_list(s, true)
        );
    }
    // Where a knock can be wrong (another stage's port, a port of the
    // range that is not this step's): a held host's knocks count nothing
    // until the daemon ends the hold, after the rate's window.
    if let Some(t) = s.hold_table() {
        let _ = writeln!(
            o,
            "{} proto tcp from <{t}> to {here} port {wrong}",
            head(s, "block", false)
        );
    }
}

/// The knock rules, stage by stage, the renewal rule, link-local and held
/// hosts kept out, wrong knocks held, and a rotating range answering
/// alike.
fn knocks(o: &mut String, s: &Service, here: &str) {
    let n = s.stages();
    let stage = |k: usize| list(s.stage_ports(k).iter().map(|p| p.to_string()));
    let who = if s.from.is_empty() {
        "any".to_owned()
    } else {
        list(s.from.iter().map(|n| n.to_string()))
    };
    // A rotating service whose ports were never filled in knocks nowhere.
    if n > 0 && s.knock.len() >= n {
        let hold = s.hold_table();
        let wrong = s
            .rotate
            .as_ref()
            .map_or_else(|| knock_ports(s), |r| r.range.to_string());
        kept_out(o, s, here, &wrong);
        let last = stage(n - 1);
        let intake = s.renew_table();
        // Without `renew`, an authorized host knocking again passes
        // uncounted: in the intake it would get a fresh ttl where no
        // daemon runs.
        let renewal = s.renew.then_some(intake.as_str());
        knock_rule(o, s, here, &format!("<{}>", s.table), &last, renewal);
        // The later stages first (quick: the first rule that matches
        // decides). Near a boundary the last step's ports and the next's
        // are both in force and may meet: one port can be the next
        // step's second and the last step's first. A later stage's rule
        // takes only a host that has reached it, so either knock counts;
        // in the other order the first stage's rule would take them all.
        for k in (0..n).rev() {
            let p = stage(k);
            let from = if k == 0 {
                who.clone()
            } else {
                format!("<{}>", s.stage_table(k))
            };
            let into = if k + 1 == n {
                intake.clone()
            } else {
                s.stage_table(k + 1)
            };
            knock_rule(o, s, here, &from, &p, Some(into.as_str()));
        }
        // The close knock: a host past the rate goes into <T_close>, and
        // the daemon takes it out of the authorized hosts.
        if let (Some(c), Some(t)) = (s.close, s.close_table()) {
            knock_rule(o, s, here, &who, &c.to_string(), Some(t.as_str()));
        }
        // Whatever the rules above did not take is a wrong knock: counted
        // as knocks are, and a host past the rate is held (the daemon also
        // takes it out of the stage tables: its progress starts over).
        if let Some(t) = &hold {
            knock_rule(o, s, here, &who, &wrong, Some(t.as_str()));
        }
    }
    if let Some(r) = &s.rotate
        && (who != "any" || s.knock.len() < n || n == 0)
    {
        // The rest of the range answers as the knock ports do, so a scan
        // cannot tell which ports of the range this step's are.
        let _ = writeln!(
            o,
            "{} proto tcp from any to {here} port {} synproxy state",
            head(s, "pass", false),
            r.range
        );
    }
}

/// Who may reach the protected ports; the block after them, returned to
/// stand after every service's pass rules.
fn protect(o: &mut String, s: &Service, dest: &str) -> Option<String> {
    let mut sources = vec![format!("<{}>", s.table), format!("<{}>", s.renew_table())];
    if !s.allow.is_empty() {
        sources.push(format!("<{}>", s.allow_table()));
    }
    let proto = list(s.proto.iter().map(Proto::to_string));
    let ports = list(s.protect.iter().map(PortRange::to_string));
    let from = list(sources.into_iter());
    if s.expire == crate::name::ExpireMode::Idle && s.proto.contains(&Proto::Tcp) {
        // Idle expiry watches the entries' counters, and pf counts a packet
        // for a table entry only when its verdict is pass. Behind synproxy a
        // SYN gets PF_SYNPROXY_DROP until the handshake completes, so a
        // forged SYN from an authorized address keeps nothing alive; only
        // the packets of a real connection do.
        let _ = writeln!(
            o,
            "{} proto tcp from {from} to {dest} port {ports} synproxy state",
            head(s, "pass", s.log)
        );
        if s.proto.contains(&Proto::Udp) {
            let _ = writeln!(
                o,
                "{} proto udp from {from} to {dest} port {ports}",
                head(s, "pass", s.log)
            );
        }
    } else {
        let _ = writeln!(
            o,
            "{} proto {proto} from {from} to {dest} port {ports}",
            head(s, "pass", s.log)
        );
    }
    s.block.then(|| {
        format!(
            "{} proto {proto} from any to {dest} port {ports}\n",
            head(s, "block", false)
        )
    })
}

/// `x` for one item, `{ x, y }` for several.
fn list(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.len() == 1 {
        v.into_iter().next().unwrap_or_default()
    } else {
        format!("{{ {} }}", v.join(", "))
    }
}
