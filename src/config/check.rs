//! Checking the whole config: the services together (names, ports and
//! ranges that must not meet), the `[[expire]]` tables, the global keys.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use toml::Spanned;

use super::*;
use crate::error::Result;
use crate::name::{AnchorName, ExpireMode, Port, Proto, TableName};
use crate::names;

pub(super) fn check(cx: &mut Ctx<'_>, raw: RawConfig) -> Result<Config> {
    let anchor = match &raw.anchor {
        Some(a) => cx.parse::<AnchorName>(a, "anchor")?,
        None => AnchorName::new(DEFAULT_ANCHOR).expect("default anchor"),
    };
    if raw.service.is_empty() && raw.expire.is_empty() {
        return Err(cx.err(0..0, "", "no [[service]] and no [[expire]]: nothing to do"));
    }
    let (services, tables, knock_owner) = all_services(cx, &raw)?;
    knock_ports_unprotected(cx, &raw, &services, &knock_owner)?;
    rotating_ranges_apart(cx, &raw, &services)?;
    shared_ports(cx, &raw, &services);
    let (facility, poll, nflog_group, log_burst) = globals(cx, &raw)?;
    let expires = expire_tables(cx, &raw, &anchor, &tables)?;
    let nft_include = nft_include(cx, &raw)?;
    let spa_user = super::spa::spa_user(cx, &raw)?;
    Ok(Config {
        anchor,
        facility,
        poll,
        unload: raw.unload.unwrap_or(false),
        nflog_group,
        log_burst,
        nft_include,
        spa_user,
        services,
        expires,
    })
}

/// Every table in the anchor, with the service that owns it.
type Owners<K> = BTreeMap<K, String>;

/// Each `[[service]]`, checked, and what no two may share: names, knock
/// ports, derived table and set names.
fn all_services(
    cx: &mut Ctx<'_>,
    raw: &RawConfig,
) -> Result<(Vec<Service>, Owners<TableName>, Owners<Port>)> {
    let mut services: Vec<Service> = Vec::new();
    let mut tables: Owners<TableName> = BTreeMap::new();
    let mut knock_owner: Owners<Port> = BTreeMap::new();
    let mut names_seen = names::Names::default();
    let mut service_names: std::collections::HashSet<String> = Default::default();
    for rs in &raw.service {
        let s = check_service(cx, rs.get_ref())?;
        let name_span = rs.get_ref().name.span();
        if !service_names.insert(s.name.clone()) {
            return Err(cx.err(
                name_span,
                "service.name",
                format!("duplicate service \"{}\"", s.name),
            ));
        }
        for (t, _) in s.tables() {
            tables.insert(t, s.name.clone());
        }
        // Knock and close ports alike: each answers with synproxy, and
        // counts for one service only.
        for (i, p) in s.knock.iter().chain(s.close.iter()).enumerate() {
            if let Some(other) = knock_owner.get(p) {
                let (key, span, what) = port_origin(rs.get_ref(), &s, i);
                let theirs = if services
                    .iter()
                    .any(|o| o.name == *other && o.close == Some(*p))
                {
                    "the close port"
                } else {
                    "a knock port"
                };
                return Err(cx.err(
                    span,
                    key,
                    format!("{what} port {p} is also {theirs} of service \"{other}\""),
                ));
            }
            knock_owner.insert(*p, s.name.clone());
        }
        services.push(s);
        let i = services.len() - 1;
        if let Some(c) = names_seen.add(i, &services[i]) {
            let rs = raw.service[c.later].get_ref();
            let (key, span) = match &rs.table {
                Some(t) => ("service.table", t.span()),
                None => ("service.name", rs.name.span()),
            };
            let kind = match c.space {
                names::Space::PfTables => "pf table",
                names::Space::NftSets => "nftables set",
            };
            let whose = if c.earlier == c.later {
                "its own".to_owned()
            } else {
                format!("service \"{}\"'s", services[c.earlier].name)
            };
            return Err(cx.err(
                span,
                key,
                format!(
                    "{kind} {} ({}) is also {whose} {}: choose another table name",
                    c.name,
                    c.what_later.describe(),
                    c.what_earlier.describe()
                ),
            ));
        }
    }
    Ok((services, tables, knock_owner))
}

/// Where port `i` of a service's knock ports, then its close port, was
/// given: key, span, and what it is.
fn port_origin(
    r: &RawService,
    s: &Service,
    i: usize,
) -> (&'static str, std::ops::Range<usize>, &'static str) {
    if i < s.knock.len() {
        ("service.knock", knock_span(r, i), "knock")
    } else {
        let span = r.close.as_ref().map(|c| c.span()).unwrap_or_default();
        ("service.close", span, "close")
    }
}

/// A knock port of one service must not be protected by another either:
/// the knock rule (synproxy, quick) would shadow the other's pass rule.
fn knock_ports_unprotected(
    cx: &mut Ctx<'_>,
    raw: &RawConfig,
    services: &[Service],
    knock_owner: &Owners<Port>,
) -> Result<()> {
    // Each TCP-protected range looks up the knock ports inside it (a map
    // of every knock port): linear in the services, not quadratic.
    for o in services.iter().filter(|o| o.proto.contains(&Proto::Tcp)) {
        for r in &o.protect {
            let inside = knock_owner
                .range(r.lo..=r.hi)
                .find(|(_, owner)| **owner != o.name);
            if let Some((p, owner)) = inside {
                let i = services
                    .iter()
                    .position(|x| x.name == *owner)
                    .expect("an owner is a service");
                let j = services[i]
                    .knock
                    .iter()
                    .chain(services[i].close.iter())
                    .position(|k| k == p)
                    .expect("its knock or close port");
                let (key, span, what) = port_origin(raw.service[i].get_ref(), &services[i], j);
                return Err(cx.err(
                    span,
                    key,
                    format!("{what} port {p} is protected by service \"{}\"", o.name),
                ));
            }
        }
    }

    Ok(())
}

/// Two services protecting one port: both pass rules stand before any
/// drop (render), so either service's knock opens it; a warning.
fn shared_ports(cx: &mut Ctx<'_>, raw: &RawConfig, services: &[Service]) {
    // Candidates first, by a sweep over the ranges sorted by their start
    // (linear where ranges rarely overlap), then the full test per pair.
    let mut ranges: Vec<(Port, Port, usize)> = services
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.protect.iter().map(move |r| (r.lo, r.hi, i)))
        .collect();
    ranges.sort();
    let mut pairs: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut open: Vec<(Port, usize)> = Vec::new();
    for (lo, hi, i) in ranges {
        open.retain(|(h, _)| *h >= lo);
        for (_, j) in &open {
            if *j != i {
                pairs.insert(((*j).max(i), (*j).min(i)));
            }
        }
        open.push((hi, i));
    }
    for (i, j) in pairs {
        let (s, o) = (&services[i], &services[j]);
        {
            let shared = s.protect.iter().find(|r| {
                o.protect.iter().any(|q| q.overlaps(r))
                    && s.proto.iter().any(|p| o.proto.contains(p))
                    && s.to.meets(&o.to)
            });
            if let Some(r) = shared {
                let span = raw.service[i].get_ref().protect.span();
                cx.warn(
                    span,
                    "service.protect",
                    format!(
                        "port {r} is also protected by service \"{}\": a knock on either opens it",
                        o.name
                    ),
                );
            }
        }
    }
}

/// The global keys: facility, poll, nflog_group, log_burst.
fn globals(cx: &mut Ctx<'_>, raw: &RawConfig) -> Result<(Facility, crate::name::Millis, u16, u32)> {
    let facility = cx.opt(&raw.facility, "facility", Facility::Auth)?;
    let poll = cx.opt(&raw.poll, "poll", DEFAULT_POLL)?;
    if poll < POLL_MIN || poll.0 > 3_600_000 {
        let span = raw.poll.as_ref().map(|p| p.span()).unwrap_or_default();
        return Err(cx.err(span, "poll", format!("{poll}: must be {POLL_MIN} to 1h")));
    }
    if let Some(p) = &raw.poll
        && poll.0 > 60_000
    {
        cx.warn(
            p.span(),
            "poll",
            format!(
                "{poll}: new authorizations are logged, and stale ones expired, up to {poll} late"
            ),
        );
    }

    let int = |v: &Option<Spanned<i64>>, key: &str, lo: i64, hi: i64, default: i64| match v {
        None => Ok(default),
        Some(x) if (lo..=hi).contains(x.get_ref()) => Ok(*x.get_ref()),
        Some(x) => Err(cx.err(
            x.span(),
            key,
            format!("{}: must be {lo} to {hi}", x.get_ref()),
        )),
    };
    let nflog_group = int(
        &raw.nflog_group,
        "nflog_group",
        0,
        65535,
        DEFAULT_NFLOG_GROUP.into(),
    )? as u16;
    let log_burst = int(
        &raw.log_burst,
        "log_burst",
        1,
        1_000_000,
        DEFAULT_LOG_BURST.into(),
    )? as u32;
    Ok((facility, poll, nflog_group, log_burst))
}

/// The `[[expire]]` tables: none a service's, none twice.
fn expire_tables(
    cx: &mut Ctx<'_>,
    raw: &RawConfig,
    anchor: &AnchorName,
    tables: &Owners<TableName>,
) -> Result<Vec<ExpireTable>> {
    let mut expires: Vec<ExpireTable> = Vec::new();
    for re in &raw.expire {
        let re = re.get_ref();
        let table: TableName = cx.parse::<TableName>(&re.table, "expire.table")?;
        let anchor_e = match &re.anchor {
            Some(a) => cx.parse::<AnchorName>(a, "expire.anchor")?,
            None => AnchorName::main(),
        };
        if anchor_e == *anchor && tables.contains_key(&table) {
            return Err(cx.err(
                re.table.span(),
                "expire.table",
                format!(
                    "table <{table}> in anchor {anchor} belongs to service \"{}\"",
                    tables[&table]
                ),
            ));
        }
        if expires
            .iter()
            .any(|e| e.table == table && e.anchor == anchor_e)
        {
            return Err(cx.err(
                re.table.span(),
                "expire.table",
                format!("table <{table}> in {anchor_e} is listed twice"),
            ));
        }
        let ttl = cx.opt(&re.ttl, "expire.ttl", DEFAULT_TTL)?;
        if ttl.0 == 0 {
            let span = re.ttl.as_ref().map(|t| t.span()).unwrap_or_default();
            return Err(cx.err(span, "expire.ttl", "must be at least 1s"));
        }
        let expire = cx.opt(&re.expire, "expire.expire", ExpireMode::Age)?;
        idle_here(cx, &re.expire, expire, "expire.expire")?;
        expires.push(ExpireTable {
            table,
            anchor: anchor_e,
            ttl,
            expire,
        });
    }
    Ok(expires)
}

/// `nft_include`: an absolute file path, if given.
fn nft_include(cx: &mut Ctx<'_>, raw: &RawConfig) -> Result<Option<PathBuf>> {
    Ok(match &raw.nft_include {
        None => None,
        Some(p) => {
            let text = p.get_ref();
            if !text.starts_with('/') || text.ends_with('/') || text.chars().any(char::is_control) {
                return Err(cx.err(
                    p.span(),
                    "nft_include",
                    format!(
                        "{}: must be an absolute file path",
                        crate::name::shown(text)
                    ),
                ));
            }
            Some(PathBuf::from(text))
        }
    })
}

/// A rotating service's range takes no other service's knock or
/// protected port, nor another rotating service's range.
pub(super) fn rotating_ranges_apart(
    cx: &mut Ctx<'_>,
    raw: &RawConfig,
    services: &[Service],
) -> Result<()> {
    for (i, s) in services.iter().enumerate() {
        let Some(r) = &s.rotate else { continue };
        let span = raw.service[i]
            .get_ref()
            .rotate
            .as_ref()
            .map(|x| x.get_ref().range.span())
            .unwrap_or_default();
        for o in services.iter().filter(|o| o.name != s.name) {
            let clash = if let Some(k) = o.knock.iter().find(|p| r.range.contains(**p)) {
                Some(format!("knock port {k} of service \"{}\"", o.name))
            } else if let Some(k) = o.close.filter(|p| r.range.contains(*p)) {
                Some(format!("close port {k} of service \"{}\"", o.name))
            } else if let Some(q) = o.rotate.as_ref().filter(|q| q.range.overlaps(&r.range)) {
                Some(format!(
                    "rotate range {} of service \"{}\"",
                    q.range.nft(),
                    o.name
                ))
            } else if o.proto.contains(&Proto::Tcp) {
                o.protect
                    .iter()
                    .find(|p| p.overlaps(&r.range))
                    .map(|p| format!("port {p}, protected by service \"{}\"", o.name))
            } else {
                None
            };
            if let Some(what) = clash {
                return Err(cx.err(
                    span,
                    "service.rotate.range",
                    format!("{} takes in {what}", r.range.nft()),
                ));
            }
        }
    }
    Ok(())
}

/// Every name derived from the table fits pf's 31 bytes.
pub(super) fn derived_names_fit(
    cx: &mut Ctx<'_>,
    r: &RawService,
    table: &TableName,
    knocks: usize,
) -> Result<()> {
    let (table_key, table_span) = table_origin(r);
    // Derived table names must fit pf's 31 bytes too.
    let suffixes = names::suffixes(knocks);
    for suf in &suffixes {
        let derived = format!("{table}{suf}");
        if derived.len() > crate::name::TABLE_NAME_MAX {
            let longest = suffixes.iter().map(String::len).max().unwrap_or(0);
            return Err(cx.err(
                table_span,
                table_key,
                format!(
                    "table <{derived}> would be {} bytes, pf allows at most {}: \
                     keep the table name to {} bytes",
                    derived.len(),
                    crate::name::TABLE_NAME_MAX,
                    crate::name::TABLE_NAME_MAX - longest
                ),
            ));
        }
    }

    Ok(())
}
