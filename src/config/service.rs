//! Checking one `[[service]]`: names, ports, protocols, knocks, rotation,
//! timing, sources, destination and size.
#![forbid(unsafe_code)]

use std::ops::Range;
use std::path::Path;

use super::*;
use crate::error::Result;
use crate::name::{ExpireMode, Family, IfName, Net, Port, PortRange, Proto, Rate, Secs, TableName};

/// One `[[service]]`, check by check; each names what it checks.
pub(super) fn check_service(cx: &mut Ctx<'_>, r: &RawService) -> Result<Service> {
    let (name, table) = service_names(cx, r)?;
    let protect = protected_ports(cx, r)?;
    let proto = protocols(cx, r)?;
    let knock = knock_ports(cx, r, &proto, &protect)?;
    let rotate = rotation(cx, r, &proto, &protect)?;
    let close = close_port(cx, r, &proto, &protect, &knock, rotate.as_ref())?;
    let spa = super::spa::spa(cx, r, &proto, &protect)?;
    let stages = rotate.as_ref().map_or(knock.len(), |r| r.ports);
    derived_names_fit(cx, r, &table, stages)?;
    let (rate, ttl, expire, window) = timing(cx, r, stages)?;
    let (family, from, allow) = sources(cx, r)?;
    let size = set_size(cx, r)?;
    let prefix6 = prefix6(cx, r)?;
    let to = destination(cx, r, family)?;
    let on = match &r.on {
        Some(o) => Some(cx.parse::<IfName>(o, "service.on")?),
        None => None,
    };
    if let Some(b) = &r.block
        && !*b.get_ref()
    {
        cx.warn(
            b.span(),
            "service.block",
            "false: on pf the anchor only passes, so a later pass rule in pf.conf opens \
             the protected ports to every host; the main ruleset must block them",
        );
    }

    Ok(Service {
        name,
        table,
        protect,
        proto,
        knock,
        knock_prev: Vec::new(),
        knock_next: Vec::new(),
        knock_later: Vec::new(),
        step_start: None,
        rotate,
        close,
        spa,
        rate,
        ttl,
        expire,
        window,
        from,
        allow,
        on,
        to,
        family,
        log: r.log.unwrap_or(true),
        block: r.block.as_ref().is_none_or(|b| *b.get_ref()),
        // Signed knocks alone renew by the next signed knock.
        renew: r.renew.unwrap_or(true) && (r.knock.is_some() || r.rotate.is_some()),
        size,
        prefix6,
        knock_lines: match (&r.knock, &r.rotate) {
            (Some(k), _) => k
                .get_ref()
                .iter()
                .map(|k| cx.line(k.span().start))
                .collect(),
            (None, Some(rot)) => vec![cx.line(rot.span().start); stages],
            (None, None) => Vec::new(),
        },
    })
}

/// The span and key the service's table name comes from.
pub(super) fn table_origin(r: &RawService) -> (&'static str, Range<usize>) {
    match &r.table {
        Some(t) => ("service.table", t.span()),
        None => ("service.name", r.name.span()),
    }
}

/// `name` and `table`: valid names that nftables takes too.
pub(super) fn service_names(cx: &mut Ctx<'_>, r: &RawService) -> Result<(String, TableName)> {
    let name_span = r.name.span();
    let name = TableName::new(r.name.get_ref())
        .map_err(|m| {
            cx.err(
                name_span.clone(),
                "service.name",
                m.replace("table name", "name"),
            )
        })?
        .to_string();
    let (table_key, table_span) = table_origin(r);
    let table = match &r.table {
        Some(t) => cx.parse::<TableName>(t, "service.table")?,
        None => TableName::new(&name).expect("checked above"),
    };
    // nftables set names start with a letter or '_'; pf takes more, but
    // one config renders to both. The service's name too: it names the
    // table by default, and stands in the rules' comments and log prefix.
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return Err(cx.err(
            name_span,
            "service.name",
            format!("\"{name}\" must start with a letter or '_'"),
        ));
    }
    if !table
        .as_str()
        .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
    {
        return Err(cx.err(
            table_span,
            table_key,
            format!(
                "\"{}\" must start with a letter or '_' (nftables set names do)",
                table
            ),
        ));
    }

    Ok((name, table))
}

/// `protect`: ports and ranges, none twice.
pub(super) fn protected_ports(cx: &mut Ctx<'_>, r: &RawService) -> Result<Vec<PortRange>> {
    let mut protect: Vec<PortRange> = Vec::new();
    if r.protect.get_ref().is_empty() {
        return Err(cx.err(r.protect.span(), "service.protect", "no ports to protect"));
    }
    for p in r.protect.get_ref() {
        let range = match p.get_ref() {
            IntOrStr::Int(n) => Port::new(*n).map(PortRange::single),
            IntOrStr::Str(s) => s.parse(),
        }
        .map_err(|m| cx.err(p.span(), "service.protect", m))?;
        if protect.iter().any(|o| o.overlaps(&range)) {
            return Err(cx.err(
                p.span(),
                "service.protect",
                format!("port {range} is listed twice"),
            ));
        }
        protect.push(range);
    }

    Ok(protect)
}

/// `proto`: tcp, udp or both, none twice.
pub(super) fn protocols(cx: &mut Ctx<'_>, r: &RawService) -> Result<Vec<Proto>> {
    let proto: Vec<Proto> = match &r.proto {
        None => vec![Proto::Tcp],
        Some(p) => {
            let list: Vec<&String> = match p.get_ref() {
                OneOrMany::One(s) => vec![s],
                OneOrMany::Many(v) => v.iter().collect(),
            };
            if list.is_empty() {
                return Err(cx.err(p.span(), "service.proto", "empty protocol list"));
            }
            let mut out = Vec::new();
            for s in list {
                let v: Proto = s
                    .parse()
                    .map_err(|m| cx.err(p.span(), "service.proto", m))?;
                if out.contains(&v) {
                    return Err(cx.err(p.span(), "service.proto", format!("{v} is listed twice")));
                }
                out.push(v);
            }
            out.sort();
            out
        }
    };

    Ok(proto)
}

/// `knock`: ports, none twice, none protected.
pub(super) fn knock_ports(
    cx: &mut Ctx<'_>,
    r: &RawService,
    proto: &[Proto],
    protect: &[PortRange],
) -> Result<Vec<Port>> {
    let mut knock: Vec<Port> = Vec::new();
    let list = match (&r.knock, &r.rotate) {
        (Some(k), Some(_)) => {
            return Err(cx.err(
                k.span(),
                "service.knock",
                "knock and rotate both given: rotate draws the knock ports",
            ));
        }
        (None, Some(_)) => return Ok(knock),
        // Signed knocks alone.
        (None, None) if r.spa.is_some() => return Ok(knock),
        (None, None) => {
            return Err(cx.err(
                r.name.span(),
                "service.knock",
                "no knock ports: give knock, rotate, or spa",
            ));
        }
        (Some(k), None) => k,
    };
    if list.get_ref().is_empty() {
        return Err(cx.err(list.span(), "service.knock", "no knock ports"));
    }
    for k in list.get_ref() {
        let p = Port::new(*k.get_ref()).map_err(|m| cx.err(k.span(), "service.knock", m))?;
        if knock.contains(&p) {
            return Err(cx.err(
                k.span(),
                "service.knock",
                format!("knock port {p} is listed twice"),
            ));
        }
        if proto.contains(&Proto::Tcp) && protect.iter().any(|r| r.contains(p)) {
            return Err(cx.err(
                k.span(),
                "service.knock",
                format!("knock port {p} is also a protected port"),
            ));
        }
        knock.push(p);
    }

    Ok(knock)
}

/// `close`: the port of the close knock; not a knock port, a protected
/// port or a port of the rotating range.
pub(super) fn close_port(
    cx: &mut Ctx<'_>,
    r: &RawService,
    proto: &[Proto],
    protect: &[PortRange],
    knock: &[Port],
    rotate: Option<&Rotate>,
) -> Result<Option<Port>> {
    let Some(c) = &r.close else {
        return Ok(None);
    };
    let p = Port::new(*c.get_ref()).map_err(|m| cx.err(c.span(), "service.close", m))?;
    let clash = if knock.contains(&p) {
        Some("is also a knock port".to_owned())
    } else if proto.contains(&Proto::Tcp) && protect.iter().any(|r| r.contains(p)) {
        Some("is also a protected port".to_owned())
    } else {
        rotate
            .filter(|r| r.range.contains(p))
            .map(|r| format!("is in the rotate range {}", r.range.nft()))
    };
    match clash {
        Some(why) => Err(cx.err(c.span(), "service.close", format!("close port {p} {why}"))),
        None => Ok(Some(p)),
    }
}

/// The span of knock port `i` of a service that lists them.
pub(super) fn knock_span(r: &RawService, i: usize) -> Range<usize> {
    r.knock
        .as_ref()
        .and_then(|k| k.get_ref().get(i).map(|p| p.span()))
        .unwrap_or_default()
}

/// The most knock ports `rotate` draws per step.
pub const ROTATE_PORTS_MAX: usize = 8;

/// `rotate`: a secret file, a range with room for two steps' ports apart
/// from the protected ones, a step of 5 s to 1 day.
pub(super) fn rotation(
    cx: &mut Ctx<'_>,
    r: &RawService,
    proto: &[Proto],
    protect: &[PortRange],
) -> Result<Option<Rotate>> {
    let Some(rot) = &r.rotate else {
        return Ok(None);
    };
    let rr = rot.get_ref();
    let range: PortRange = cx.parse(&rr.range, "service.rotate.range")?;
    let ports = match &rr.ports {
        None => 1,
        Some(p) => {
            let n = *p.get_ref();
            if !(1..=ROTATE_PORTS_MAX as i64).contains(&n) {
                return Err(cx.err(
                    p.span(),
                    "service.rotate.ports",
                    format!("{n}: must be 1 to {ROTATE_PORTS_MAX}"),
                ));
            }
            n as usize
        }
    };
    let step = cx.opt(&rr.step, "service.rotate.step", DEFAULT_STEP)?;
    if !(5..=86400).contains(&step.0) {
        let span = rr.step.as_ref().map(|s| s.span()).unwrap_or_default();
        return Err(cx.err(span, "service.rotate.step", "must be 5s to 1d"));
    }
    let width = u32::from(range.hi.get()) - u32::from(range.lo.get()) + 1;
    if width < 2 * ports as u32 {
        return Err(cx.err(
            rr.range.span(),
            "service.rotate.range",
            format!(
                "{}: {width} port(s), too few for {ports} knock port(s) in each of two steps",
                range.nft()
            ),
        ));
    }
    if proto.contains(&Proto::Tcp)
        && let Some(p) = protect.iter().find(|p| p.overlaps(&range))
    {
        return Err(cx.err(
            rr.range.span(),
            "service.rotate.range",
            format!("{} takes in protected port {p}", range.nft()),
        ));
    }
    if width < 1000 {
        cx.warn(
            rr.range.span(),
            "service.rotate.range",
            format!(
                "{}: {width} ports: one random knock in {} finds a port of the step",
                range.nft(),
                (width / (2 * ports as u32)).max(1)
            ),
        );
    }
    let raw_path = Path::new(rr.secret.get_ref());
    if rr.secret.get_ref().is_empty() {
        return Err(cx.err(rr.secret.span(), "service.rotate.secret", "an empty path"));
    }
    let secret = if raw_path.is_absolute() {
        raw_path.to_owned()
    } else {
        cx.file.parent().unwrap_or(Path::new(".")).join(raw_path)
    };
    Ok(Some(Rotate {
        secret,
        step,
        range,
        ports,
    }))
}

/// `rate`, `ttl`, `expire` and `window`.
pub(super) fn timing(
    cx: &mut Ctx<'_>,
    r: &RawService,
    knocks: usize,
) -> Result<(Rate, Secs, ExpireMode, Secs)> {
    let rate_default: Rate = DEFAULT_RATE.parse().expect("default rate");
    let rate = cx.opt(&r.rate, "service.rate", rate_default)?;
    if let Some(sp) = &r.rate {
        if rate.conns > 100 {
            cx.warn(
                sp.span(),
                "service.rate",
                format!(
                    "{rate}: a client must make {} connections per knock port",
                    rate.conns + 1
                ),
            );
        } else if rate.secs as u64 > 86400 {
            cx.warn(
                sp.span(),
                "service.rate",
                format!("{rate}: connections a day apart still add up to a knock"),
            );
        }
    }
    let ttl = cx.opt(&r.ttl, "service.ttl", DEFAULT_TTL)?;
    if ttl.0 == 0 {
        let span = r.ttl.as_ref().map(|t| t.span()).unwrap_or_default();
        return Err(cx.err(span, "service.ttl", "must be at least 1s"));
    }
    let expire = cx.opt(&r.expire, "service.expire", ExpireMode::Age)?;
    idle_here(cx, &r.expire, expire, "service.expire")?;
    let window = cx.opt(&r.window, "service.window", DEFAULT_WINDOW)?;
    if let Some(w) = &r.window {
        if window.0 == 0 {
            return Err(cx.err(w.span(), "service.window", "must be at least 1s"));
        }
        if knocks == 1 {
            cx.warn(
                w.span(),
                "service.window",
                "has no effect on a single knock port",
            );
        } else if window > ttl {
            cx.warn(
                w.span(),
                "service.window",
                format!("{window} is longer than ttl {ttl}"),
            );
        }
    }
    Ok((rate, ttl, expire, window))
}

/// `family`, `from` and `allow`: who may knock, who is always in.
pub(super) fn sources(cx: &mut Ctx<'_>, r: &RawService) -> Result<(Family, Vec<Net>, Vec<Net>)> {
    let family = cx.opt(&r.family, "service.family", Family::Any)?;

    // from: "any" alone, or addresses and networks.
    let mut from = Vec::new();
    if let Some(f) = &r.from {
        let items = f.get_ref();
        if items.is_empty() {
            return Err(cx.err(f.span(), "service.from", "empty list: nobody could knock"));
        }
        if items.iter().any(|i| i.get_ref() == "any") {
            if items.len() > 1 {
                return Err(cx.err(f.span(), "service.from", "\"any\" must stand alone"));
            }
        } else {
            from = cx.nets(&r.from, "service.from")?;
        }
    }
    let allow = cx.nets(&r.allow, "service.allow")?;
    for (key, list, raw) in [
        ("service.from", &from, &r.from),
        ("service.allow", &allow, &r.allow),
    ] {
        for (i, n) in list.iter().enumerate() {
            let why = match n.never_a_source() {
                Some(why) => format!("{n}: {why}"),
                None if !family.covers(n.af()) => {
                    format!("{n} is not an address of family {}", family_word(family))
                }
                None => continue,
            };
            let span = raw
                .as_ref()
                .map(|v| v.get_ref()[i].span())
                .unwrap_or_default();
            return Err(cx.err(span, key, why));
        }
    }
    Ok((family, from, allow))
}

/// `to`: "self" (default), "any", or the addresses and networks of the
/// hosts behind this one that the protected ports lead to.
pub(super) fn destination(cx: &mut Ctx<'_>, r: &RawService, family: Family) -> Result<Dest> {
    let Some(t) = &r.to else {
        return Ok(Dest::SelfHost);
    };
    let items: Vec<&String> = match t.get_ref() {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v.iter().collect(),
    };
    match items.as_slice() {
        [] => Err(cx.err(
            t.span(),
            "service.to",
            "empty list: the ports would lead nowhere",
        )),
        [one] if one.as_str() == "self" => Ok(Dest::SelfHost),
        [one] if one.as_str() == "any" => Ok(Dest::Any),
        _ => {
            let mut nets: Vec<Net> = Vec::new();
            for s in items {
                if s == "self" || s == "any" {
                    return Err(cx.err(
                        t.span(),
                        "service.to",
                        format!("\"{s}\" must stand alone"),
                    ));
                }
                let n: Net = s
                    .parse()
                    .map_err(|m: String| cx.err(t.span(), "service.to", m))?;
                if !family.covers(n.af()) {
                    return Err(cx.err(
                        t.span(),
                        "service.to",
                        format!("{n} is not an address of family {}", family_word(family)),
                    ));
                }
                if nets.iter().any(|o| {
                    o.range().0 <= n.range().1
                        && n.range().0 <= o.range().1
                        && o.addr().is_ipv6() == n.addr().is_ipv6()
                }) {
                    return Err(cx.err(
                        t.span(),
                        "service.to",
                        format!("{n} is listed twice or overlaps"),
                    ));
                }
                nets.push(n);
            }
            Ok(Dest::Nets(nets))
        }
    }
}

/// `size`: elements per nftables set.
pub(super) fn set_size(cx: &mut Ctx<'_>, r: &RawService) -> Result<u64> {
    Ok(match &r.size {
        None => DEFAULT_SIZE,
        Some(v) => {
            let n = *v.get_ref();
            if !(1..=SIZE_MAX as i64).contains(&n) {
                return Err(cx.err(
                    v.span(),
                    "service.size",
                    format!("must be 1 to {SIZE_MAX}, got {n}"),
                ));
            }
            n as u64
        }
    })
}

/// `prefix6`: the IPv6 prefix length knocks count per.
fn prefix6(cx: &mut Ctx<'_>, r: &RawService) -> Result<u8> {
    Ok(match &r.prefix6 {
        None => DEFAULT_PREFIX6,
        Some(v) => {
            let n = *v.get_ref();
            if !(1..=128).contains(&n) {
                return Err(cx.err(
                    v.span(),
                    "service.prefix6",
                    format!("must be a prefix length, 1 to 128, got {n}"),
                ));
            }
            n as u8
        }
    })
}

pub(super) fn family_word(f: Family) -> &'static str {
    f.word()
}
