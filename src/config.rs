//! TOML text → checked `Config`.
//!
//! Parsing happens in two steps, as ntpd-rs does: serde reads the text into
//! raw structs that keep the span of every value (unknown keys are refused),
//! then `check` turns them into typed values, naming file, line and key in
//! every error.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Result};
use crate::name::{
    AnchorName, ExpireMode, Family, IfName, Net, Port, PortRange, Proto, Rate, Secs, TableName,
};
use crate::names;
pub use crate::schema::*;
pub use crate::trusted::{CONFIG_MAX, read_secret_file, read_trusted};

// ---- raw, as serde reads it -------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    anchor: Option<Spanned<String>>,
    facility: Option<Spanned<String>>,
    poll: Option<Spanned<String>>,
    unload: Option<bool>,
    nflog_group: Option<Spanned<i64>>,
    log_burst: Option<Spanned<i64>>,
    nft_include: Option<Spanned<String>>,
    #[serde(default)]
    service: Vec<Spanned<RawService>>,
    #[serde(default)]
    expire: Vec<Spanned<RawExpire>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    table: Option<Spanned<String>>,
    protect: Spanned<Vec<Spanned<IntOrStr>>>,
    proto: Option<Spanned<OneOrMany>>,
    knock: Option<Spanned<Vec<Spanned<i64>>>>,
    rotate: Option<Spanned<RawRotate>>,
    rate: Option<Spanned<String>>,
    ttl: Option<Spanned<String>>,
    expire: Option<Spanned<String>>,
    window: Option<Spanned<String>>,
    from: Option<Spanned<Vec<Spanned<String>>>>,
    allow: Option<Spanned<Vec<Spanned<String>>>>,
    on: Option<Spanned<String>>,
    to: Option<Spanned<OneOrMany>>,
    family: Option<Spanned<String>>,
    log: Option<bool>,
    block: Option<Spanned<bool>>,
    renew: Option<bool>,
    size: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRotate {
    secret: Spanned<String>,
    range: Spanned<String>,
    step: Option<Spanned<String>>,
    ports: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpire {
    table: Spanned<String>,
    anchor: Option<Spanned<String>>,
    ttl: Option<Spanned<String>>,
    expire: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrStr {
    Int(i64),
    Str(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

// ---- locating errors --------------------------------------------------------

/// 1-based line of a byte offset.
fn line_of(src: &str, byte: usize) -> usize {
    src[..byte.min(src.len())].matches('\n').count() + 1
}

/// The dotted key a byte offset belongs to, from the toml parser's own
/// spans (`DeTable::parse_recoverable` keeps a span for every key and
/// value, also around a syntax error): the path of keys whose key or value
/// contains the offset, through tables and arrays of tables
/// (`service.rate` for a value inside any `[[service]]`).
fn key_at(src: &str, byte: usize) -> String {
    use toml::de::{DeTable, DeValue};
    fn inside(r: &Range<usize>, byte: usize) -> bool {
        r.start <= byte && byte < r.end.max(r.start + 1)
    }
    // A key owns the rest of its line too: a syntax error after a
    // `[[header]]` or a `key =` belongs to that key.
    let key_line = |r: &Range<usize>, byte: usize| {
        let end = src[r.end.min(src.len())..]
            .find('\n')
            .map_or(src.len(), |i| r.end + i);
        r.start <= byte && byte <= end
    };
    // The key path below `v` that holds `byte`. (An array of tables'
    // element spans only its `[[header]]`: look into every element.)
    fn below(
        v: &DeValue<'_>,
        byte: usize,
        key_line: &dyn Fn(&Range<usize>, usize) -> bool,
    ) -> Option<Vec<String>> {
        match v {
            DeValue::Table(t) => find(t, byte, key_line),
            DeValue::Array(items) => items
                .iter()
                .find_map(|i| below(i.get_ref(), byte, key_line)),
            _ => None,
        }
    }
    fn find(
        t: &DeTable<'_>,
        byte: usize,
        key_line: &dyn Fn(&Range<usize>, usize) -> bool,
    ) -> Option<Vec<String>> {
        for (k, v) in t.iter() {
            let deeper = below(v.get_ref(), byte, key_line);
            if deeper.is_some() || key_line(&k.span(), byte) || inside(&v.span(), byte) {
                let mut p = vec![k.get_ref().to_string()];
                p.extend(deeper.unwrap_or_default());
                return Some(p);
            }
        }
        None
    }
    let (doc, _) = DeTable::parse_recoverable(src);
    find(doc.get_ref(), byte, &key_line)
        .unwrap_or_default()
        .join(".")
}

/// `s` without control characters, cut after `max` bytes with "…".
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = crate::name::no_controls(&s[..end]);
    if end < s.len() {
        out.push('…');
    }
    out
}

/// serde's words for Rust types, in the config's words.
fn plain(msg: &str) -> String {
    msg.replace('\n', " ")
        .trim()
        .replace("expected i64", "expected an integer")
        .replace("expected a boolean", "expected true or false")
        .replace("expected a sequence", "expected a list")
}

struct Ctx<'a> {
    file: &'a Path,
    warnings: Vec<Warning>,
    /// Where each line of `src` ends, for `line` (counting newlines from
    /// the start for every service made a large config quadratic).
    newlines: Vec<usize>,
}

impl Ctx<'_> {
    /// The 1-based line of a byte offset of `src`.
    fn line(&self, byte: usize) -> usize {
        self.newlines.partition_point(|&nl| nl < byte) + 1
    }

    /// An error at `span`; an empty span at 0 means the file as a whole.
    fn err(&self, span: Range<usize>, key: &str, msg: impl Into<String>) -> Error {
        Error::Config {
            file: self.file.to_owned(),
            line: if span == (0..0) {
                0
            } else {
                self.line(span.start)
            },
            key: key.to_owned(),
            msg: msg.into(),
        }
    }

    fn warn(&mut self, span: Range<usize>, key: &str, msg: impl Into<String>) {
        self.warnings.push(Warning {
            file: self.file.to_owned(),
            line: self.line(span.start),
            key: key.to_owned(),
            msg: msg.into(),
        });
    }

    fn parse<T: std::str::FromStr<Err = String>>(
        &self,
        v: &Spanned<String>,
        key: &str,
    ) -> Result<T> {
        v.get_ref().parse().map_err(|m| self.err(v.span(), key, m))
    }

    fn opt<T: std::str::FromStr<Err = String>>(
        &self,
        v: &Option<Spanned<String>>,
        key: &str,
        default: T,
    ) -> Result<T> {
        match v {
            Some(v) => self.parse(v, key),
            None => Ok(default),
        }
    }

    /// A list of addresses and networks, in O(n log n): no entry twice,
    /// and none inside another (nftables refuses overlapping intervals in
    /// a set, and pf would hold the smaller one for nothing). A list that
    /// covers every address of a family gets a warning that says so.
    fn nets(&mut self, v: &Option<Spanned<Vec<Spanned<String>>>>, key: &str) -> Result<Vec<Net>> {
        let Some(v) = v else { return Ok(Vec::new()) };
        let items = v.get_ref();
        let mut out: Vec<Net> = Vec::with_capacity(items.len());
        for item in items {
            out.push(self.parse(item, key)?);
        }
        // Sort positions by (family, first address, last address desc).
        let mut order: Vec<usize> = (0..out.len()).collect();
        let k = |i: usize| {
            let (lo, hi) = out[i].range();
            (out[i].addr.is_ipv6(), lo, std::cmp::Reverse(hi))
        };
        order.sort_by_key(|&i| k(i));
        // Sweep: the widest interval seen so far in this family.
        let mut cover: Option<usize> = None;
        for &i in &order {
            if let Some(c) = cover {
                let same_family = out[c].addr.is_ipv6() == out[i].addr.is_ipv6();
                if same_family && out[i].range().0 <= out[c].range().1 {
                    // Blame the one that comes later in the file.
                    let (first, later) = if c < i { (c, i) } else { (i, c) };
                    let msg = if out[first] == out[later] {
                        format!("{} is listed twice", out[later])
                    } else {
                        format!(
                            "{} overlaps {} (line {}): list each address once",
                            out[later],
                            out[first],
                            self.line(items[first].span().start)
                        )
                    };
                    return Err(self.err(items[later].span(), key, msg));
                }
                if !same_family || out[i].range().1 > out[c].range().1 {
                    cover = Some(i);
                }
            } else {
                cover = Some(i);
            }
        }
        // Disjoint and sorted: a family is covered when the intervals run
        // end to end from its first address to its last.
        for v6 in [false, true] {
            let fam: Vec<(u128, u128)> = order
                .iter()
                .filter(|&&i| out[i].addr.is_ipv6() == v6)
                .map(|&i| out[i].range())
                .collect();
            let last = if v6 { u128::MAX } else { u32::MAX as u128 };
            let runs = fam.first().is_some_and(|f| f.0 == 0)
                && fam
                    .windows(2)
                    .all(|w| w[0].1.checked_add(1) == Some(w[1].0))
                && fam.last().is_some_and(|l| l.1 == last);
            if runs {
                let what = if v6 { "IPv6" } else { "IPv4" };
                let why = if key.ends_with("allow") {
                    format!(
                        "covers every {what} address: the protected ports are open to all of them, for ever"
                    )
                } else {
                    format!("covers every {what} address: anyone may knock, as without from")
                };
                self.warn(v.span(), key, why);
            }
        }
        Ok(out)
    }
}

// ---- checking ---------------------------------------------------------------

impl Config {
    /// Read and check a config file (`read_trusted`: as root, only a file
    /// that root alone can change).
    /// Rotating services get the knock ports of now (`rotate::apply`).
    pub fn load(path: &Path) -> Result<(Config, Vec<Warning>)> {
        Config::load_at(path, crate::clock::now())
    }

    /// As `load`, with the knock ports of rotating services as of `now`.
    pub fn load_at(path: &Path, now: i64) -> Result<(Config, Vec<Warning>)> {
        let (mut cfg, warnings) = Config::read(path)?;
        crate::rotate::apply(&mut cfg, now)?;
        Ok((cfg, warnings))
    }

    /// As `load`, but without reading any secret: rotating services have
    /// no knock ports yet (for the client, which may hold other secrets).
    pub fn read(path: &Path) -> Result<(Config, Vec<Warning>)> {
        let text = read_trusted(path, crate::sys_unix::euid() == 0)?;
        Config::parse(&text, path)
    }

    /// Parse and check config text; `file` is only used in messages.
    pub fn parse(src: &str, file: &Path) -> Result<(Config, Vec<Warning>)> {
        let mut cx = Ctx {
            file,
            warnings: Vec::new(),
            newlines: src.match_indices('\n').map(|(i, _)| i).collect(),
        };
        let raw: RawConfig = toml::from_str(src).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            let line = e.span().map_or(0, |s| line_of(src, s.start));
            Error::Config {
                file: file.to_owned(),
                line,
                // Both may quote the input (an unknown key's name): escaped
                // and cut like every echoed value.
                key: crate::name::shown(&key_at(src, at)),
                msg: cut(&plain(e.message()), 400),
            }
        })?;
        let cfg = check(&mut cx, raw)?;
        Ok((cfg, cx.warnings))
    }

    /// The service with this name.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// Idle expiry watches per-entry counters, which need the table flag
/// PFR_TFLAG_COUNTERS; macOS's pf has none (xnu bsd/net/pfvar.h,
/// docs/pf-kernel.md "Counters"; `pf::abi::macos::LAYOUT` says so too).
/// nftables needs no such flag.
pub fn idle_supported(os: &str) -> bool {
    os != "macos"
}

fn idle_here(
    cx: &Ctx<'_>,
    raw: &Option<Spanned<String>>,
    mode: ExpireMode,
    key: &str,
) -> Result<()> {
    if mode == ExpireMode::Idle && !idle_supported(std::env::consts::OS) {
        let span = raw.as_ref().map(|t| t.span()).unwrap_or_default();
        return Err(cx.err(
            span,
            key,
            "expire = \"idle\" needs per-entry table counters, which this system's pf \
             does not have (no PFR_TFLAG_COUNTERS in xnu): use expire = \"age\"",
        ));
    }
    Ok(())
}

fn check(cx: &mut Ctx<'_>, raw: RawConfig) -> Result<Config> {
    let anchor = match &raw.anchor {
        Some(a) => cx.parse::<AnchorName>(a, "anchor")?,
        None => AnchorName::new(DEFAULT_ANCHOR).expect("default anchor"),
    };
    if raw.service.is_empty() && raw.expire.is_empty() {
        return Err(cx.err(0..0, "", "no [[service]] and no [[expire]]: nothing to do"));
    }

    let mut services: Vec<Service> = Vec::new();
    // Every table in the anchor, with the service that owns it.
    let mut tables: BTreeMap<TableName, String> = BTreeMap::new();
    let mut knock_owner: BTreeMap<Port, String> = BTreeMap::new();
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
        for (i, p) in s.knock.iter().enumerate() {
            if let Some(other) = knock_owner.get(p) {
                let span = knock_span(rs.get_ref(), i);
                return Err(cx.err(
                    span,
                    "service.knock",
                    format!("knock port {p} is also a knock port of service \"{other}\""),
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
            let kind = match c.backend {
                names::Backend::Pf => "pf table",
                names::Backend::Nft => "nftables set",
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
    // A knock port of one service must not be protected by another either:
    // the knock rule (synproxy, quick) would shadow the other's pass rule.
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
                    .position(|k| k == p)
                    .expect("its knock port");
                let span = knock_span(raw.service[i].get_ref(), j);
                return Err(cx.err(
                    span,
                    "service.knock",
                    format!("knock port {p} is protected by service \"{}\"", o.name),
                ));
            }
        }
    }

    rotating_ranges_apart(cx, &raw, &services)?;

    // Two services protecting one port: both pass rules stand before
    // any drop (render), so either service's knock opens it.
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

    let facility = cx.opt(&raw.facility, "facility", Facility::Auth)?;
    let poll = cx.opt(&raw.poll, "poll", DEFAULT_POLL)?;
    if poll.0 == 0 || poll.0 > 3600 {
        let span = raw.poll.as_ref().map(|p| p.span()).unwrap_or_default();
        return Err(cx.err(span, "poll", "must be 1s to 1h"));
    }
    if let Some(p) = &raw.poll
        && poll.0 > 60
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

    let mut expires: Vec<ExpireTable> = Vec::new();
    for re in &raw.expire {
        let re = re.get_ref();
        let table: TableName = cx.parse::<TableName>(&re.table, "expire.table")?;
        let anchor_e = match &re.anchor {
            Some(a) => cx.parse::<AnchorName>(a, "expire.anchor")?,
            None => AnchorName::main(),
        };
        if anchor_e == anchor && tables.contains_key(&table) {
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

    let nft_include = match &raw.nft_include {
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
    };

    Ok(Config {
        anchor,
        facility,
        poll,
        unload: raw.unload.unwrap_or(false),
        nflog_group,
        log_burst,
        nft_include,
        services,
        expires,
    })
}

/// One `[[service]]`, check by check; each names what it checks.
fn check_service(cx: &mut Ctx<'_>, r: &RawService) -> Result<Service> {
    let (name, table) = service_names(cx, r)?;
    let protect = protected_ports(cx, r)?;
    let proto = protocols(cx, r)?;
    let knock = knock_ports(cx, r, &proto, &protect)?;
    let rotate = rotation(cx, r, &proto, &protect)?;
    let stages = rotate.as_ref().map_or(knock.len(), |r| r.ports);
    derived_names_fit(cx, r, &table, stages)?;
    let (rate, ttl, expire, window) = timing(cx, r, stages)?;
    let (family, from, allow) = sources(cx, r)?;
    let size = set_size(cx, r)?;
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
        step_start: None,
        rotate,
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
        renew: r.renew.unwrap_or(true),
        size,
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
fn table_origin(r: &RawService) -> (&'static str, Range<usize>) {
    match &r.table {
        Some(t) => ("service.table", t.span()),
        None => ("service.name", r.name.span()),
    }
}

/// `name` and `table`: valid names that nftables takes too.
fn service_names(cx: &mut Ctx<'_>, r: &RawService) -> Result<(String, TableName)> {
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
fn protected_ports(cx: &mut Ctx<'_>, r: &RawService) -> Result<Vec<PortRange>> {
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
fn protocols(cx: &mut Ctx<'_>, r: &RawService) -> Result<Vec<Proto>> {
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
fn knock_ports(
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
        (None, None) => {
            return Err(cx.err(
                r.name.span(),
                "service.knock",
                "no knock ports: give knock, or rotate",
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

/// The span of knock port `i` of a service that lists them.
fn knock_span(r: &RawService, i: usize) -> Range<usize> {
    r.knock
        .as_ref()
        .and_then(|k| k.get_ref().get(i).map(|p| p.span()))
        .unwrap_or_default()
}

/// The most knock ports `rotate` draws per step.
pub const ROTATE_PORTS_MAX: usize = 8;

/// `rotate`: a secret file, a range with room for two steps' ports apart
/// from the protected ones, a step of 5 s to 1 day.
fn rotation(
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

/// A rotating service's range takes no other service's knock or
/// protected port, nor another rotating service's range.
fn rotating_ranges_apart(cx: &mut Ctx<'_>, raw: &RawConfig, services: &[Service]) -> Result<()> {
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
fn derived_names_fit(
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

/// `rate`, `ttl`, `expire` and `window`.
fn timing(
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
fn sources(cx: &mut Ctx<'_>, r: &RawService) -> Result<(Family, Vec<Net>, Vec<Net>)> {
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
            if family != Family::Any && n.family() != family {
                let span = raw
                    .as_ref()
                    .map(|v| v.get_ref()[i].span())
                    .unwrap_or_default();
                return Err(cx.err(
                    span,
                    key,
                    format!("{n} is not an address of family {}", family_word(family)),
                ));
            }
        }
    }
    Ok((family, from, allow))
}

/// `to`: "self" (default), "any", or the addresses and networks of the
/// hosts behind this one that the protected ports lead to.
fn destination(cx: &mut Ctx<'_>, r: &RawService, family: Family) -> Result<Dest> {
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
                if family != Family::Any && n.family() != family {
                    return Err(cx.err(
                        t.span(),
                        "service.to",
                        format!("{n} is not an address of family {}", family_word(family)),
                    ));
                }
                if nets.iter().any(|o| {
                    o.range().0 <= n.range().1
                        && n.range().0 <= o.range().1
                        && o.addr.is_ipv6() == n.addr.is_ipv6()
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
fn set_size(cx: &mut Ctx<'_>, r: &RawService) -> Result<u64> {
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

fn family_word(f: Family) -> &'static str {
    match f {
        Family::Any => "any",
        Family::Inet => "inet",
        Family::Inet6 => "inet6",
    }
}

/// Knock ports that a local socket listens on, from Linux's
/// `/proc/net/tcp` and `tcp6` texts: synproxy would hand every knock to that
/// listener as a real connection. One warning per port.
pub fn listened_knock_ports(cfg: &Config, file: &Path, proc_texts: &[String]) -> Vec<Warning> {
    let mut listening = BTreeSet::new();
    for text in proc_texts {
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            // sl local_address rem_address st ...; st 0A is LISTEN.
            if f.len() > 3
                && f[3] == "0A"
                && let Some(port) = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            {
                listening.insert(port);
            }
        }
    }
    let mut out = Vec::new();
    for s in &cfg.services {
        for (p, line) in s.knock.iter().zip(&s.knock_lines) {
            if listening.contains(&p.get()) {
                out.push(Warning {
                    file: file.to_owned(),
                    line: *line,
                    key: "service.knock".into(),
                    msg: format!(
                        "something listens on port {p}: a knock there reaches it as a connection; \
                         choose a free port"
                    ),
                });
            }
        }
    }
    out
}

/// Every table name the config owns or sweeps, with its anchor: the set that
/// the kernel commands are allowed to touch.
pub fn owned_tables(cfg: &Config) -> BTreeSet<(AnchorName, TableName)> {
    let mut s = BTreeSet::new();
    for svc in &cfg.services {
        for (t, _) in svc.tables() {
            s.insert((cfg.anchor.clone(), t));
        }
    }
    for e in &cfg.expires {
        s.insert((e.anchor.clone(), e.table.clone()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(Config, Vec<Warning>)> {
        Config::parse(s, Path::new("t.toml"))
    }

    #[test]
    fn defaults() {
        let (c, w) =
            parse("[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\n").unwrap();
        assert!(w.is_empty());
        assert_eq!(c.anchor.as_str(), "pfknock");
        let s = &c.services[0];
        assert_eq!(s.table.as_str(), "ssh");
        assert_eq!(s.rate.to_string(), "5/15");
        assert_eq!(s.ttl, Secs(60));
        assert_eq!(s.expire, ExpireMode::Age);
        assert!(!idle_supported("macos"), "no counters on macOS");
        for os in ["freebsd", "openbsd", "linux"] {
            assert!(idle_supported(os), "{os}");
        }
        assert_eq!(s.window, Secs(10));
        assert!(s.from.is_empty() && s.allow.is_empty());
        assert!(s.log && s.block && s.renew);
        assert_eq!(s.proto, vec![Proto::Tcp]);
        assert_eq!(s.hits(), 6);
    }

    #[test]
    fn finds_listening_knock_ports() {
        let (c, _) =
            parse("[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234,\n 1235]\n").unwrap();
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
                   0: 00000000:04D3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n   \
                   1: 0100007F:04D2 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n";
        let tcp6 = "  sl  local_address                         remote_address                        st\n   \
                    0: 00000000000000000000000000000000:04D2 00000000000000000000000000000000:0000 06\n";
        let w = listened_knock_ports(&c, Path::new("t.toml"), &[tcp.into(), tcp6.into()]);
        // 1235 listens; 1234 has only an established socket and a TIME_WAIT.
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(
            w[0].to_string(),
            "t.toml:5: service.knock: warning: something listens on port 1235: a knock there \
             reaches it as a connection; choose a free port"
        );
    }

    #[test]
    fn key_at_finds_header_and_key() {
        let src = "anchor = \"x\"\n[[service]]\nname = \"ssh\"\nrate = \"5\"\n";
        let at = src.find("\"5\"").unwrap();
        assert_eq!(key_at(src, at), "service.rate");
        assert_eq!(key_at(src, 2), "anchor");
    }

    #[test]
    fn errors_name_line_and_key() {
        let e =
            parse("[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\nrate = \"5\"\n")
                .unwrap_err()
                .to_string();
        assert_eq!(e, "t.toml:5: service.rate: expected N/S, got \"5\"");
        let e =
            parse("[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\ntll = \"6s\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            e.starts_with("t.toml:5: service.tll: unknown field `tll`"),
            "{e}"
        );
    }
}
