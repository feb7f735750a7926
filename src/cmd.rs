//! The table commands: show, expire, allow, revoke, flush. Each works on
//! `&mut impl Tables` and touches only tables its config names.
#![forbid(unsafe_code)]

use std::fmt::Write;

use serde::Serialize;

use crate::catalogue::{Kind, Named, named_tables};
use crate::config::{Config, Role, Service};
use crate::error::{Error, Result};
use crate::name::{Af, ExpireMode, Net, Secs};
use crate::policy::{self, Expired};
use crate::tables::{Entry, TableRef, Tables};

/// The service named on the command line, or every service.
pub fn services<'a>(cfg: &'a Config, name: Option<&str>) -> Result<Vec<&'a Service>> {
    match name {
        None => Ok(cfg.services.iter().collect()),
        Some(n) => cfg
            .service(n)
            .map(|s| vec![s])
            .ok_or_else(|| unknown_service(cfg, n)),
    }
}

/// Exactly one service: the one named, or the only one there is.
pub fn one_service<'a>(cfg: &'a Config, name: Option<&str>) -> Result<&'a Service> {
    match (name, cfg.services.as_slice()) {
        (Some(n), _) => cfg.service(n).ok_or_else(|| unknown_service(cfg, n)),
        (None, [only]) => Ok(only),
        (None, []) => Err(Error::Usage("the config has no [[service]]".into())),
        (None, many) => Err(Error::Usage(format!(
            "the config has several services ({}): name one",
            many.iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn unknown_service(cfg: &Config, n: &str) -> Error {
    let names: Vec<&str> = cfg.services.iter().map(|s| s.name.as_str()).collect();
    Error::Usage(format!(
        "no service \"{}\" in the config (services: {})",
        crate::name::shown(n),
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    ))
}

// ---- show -------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    pub address: String,
    pub service: Option<String>,
    pub table: String,
    pub anchor: String,
    pub kind: &'static str,
    /// Seconds since the kernel inserted the entry, or, with `idle`, since
    /// it last refreshed it on traffic.
    pub age: u64,
    /// `age` is idle time: nftables refreshes an idle-expiry entry's timer
    /// on every packet of the session, so its stamp is the last one.
    pub idle: bool,
    pub ttl: Option<u64>,
    /// Seconds until it expires by age; none for idle expiry and for
    /// tables pfknock does not expire.
    pub left: Option<u64>,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
}

/// One table `show` lists, and its entries: what its rows are made from,
/// one at a time (`Listed::rows`), so that a set of a million is held once,
/// as entries, and never again as rows or text.
pub struct Listed {
    named: Named,
    entries: Vec<Entry>,
    by_age: bool,
    idle: bool,
}

impl Listed {
    /// How many entries it holds in each of its nftables sets (one a
    /// family), as listed.
    pub fn set_counts(&self) -> [(String, u64); 2] {
        let table = self.named.table.name.as_str();
        let v4 = self.entries.iter().filter(|e| e.net.af() == Af::V4).count() as u64;
        [
            (crate::names::nft_set_of(table, Af::V4), v4),
            (
                crate::names::nft_set_of(table, Af::V6),
                self.entries.len() as u64 - v4,
            ),
        ]
    }

    pub fn rows(&self, now: i64) -> impl Iterator<Item = Row> + '_ {
        self.entries.iter().map(move |e| {
            let mut r = row(&self.named, e, now, self.by_age);
            r.idle = self.idle;
            r
        })
    }
}

/// Who is authorized: the service tables (and `[[expire]]` tables when no
/// service is named); with `all`, stage, renewal and allow tables too.
pub fn show(
    cfg: &Config,
    t: &mut impl Tables,
    service: Option<&str>,
    all: bool,
    now: i64,
) -> Result<Vec<Row>> {
    Ok(show_tables(cfg, t, service, all)?
        .iter()
        .flat_map(|l| l.rows(now))
        .collect())
}

/// `show`'s tables, each listed once.
pub fn show_tables(
    cfg: &Config,
    t: &mut impl Tables,
    service: Option<&str>,
    all: bool,
) -> Result<Vec<Listed>> {
    services(cfg, service)?;
    let mut listed = Vec::new();
    for n in named_tables(cfg) {
        let wanted = match (&n.kind, service) {
            (Kind::Expire, None) => true,
            (Kind::Expire, Some(_)) => false,
            (Kind::Hold, _) => all && (service.is_none() || n.service.as_deref() == service),
            // The daemon empties it as it acts on it: nothing to show.
            (Kind::Close, _) => false,
            // No renewal table where the firewall renews by itself.
            (Kind::Service(Role::Renew), _) if t.caps().refreshes_entries => false,
            // pf's intake holds authorizations too: knocks the daemon has
            // not moved yet (or no daemon runs).
            (Kind::Service(role), _) => {
                (service.is_none() || n.service.as_deref() == service)
                    && (all || matches!(role, Role::Auth | Role::Renew))
            }
        };
        if !wanted {
            continue;
        }
        let Some(mut entries) = entries_of(t, &n)? else {
            continue;
        };
        let mut n = n;
        if n.kind == Kind::Service(Role::Renew) {
            let svc = n.service.as_deref().and_then(|s| cfg.service(s));
            n.ttl = svc.map(|s| s.ttl);
            if !all {
                // Each host once: one the authorized table holds is shown
                // from there.
                intake_only(&listed, &n, &mut entries);
                n.kind = Kind::Service(Role::Auth);
            }
        }
        let by_age = n.mode == ExpireMode::Age || t.caps().refreshes_entries;
        let idle = n.mode == ExpireMode::Idle && t.caps().refreshes_entries;
        listed.push(Listed {
            named: n,
            entries,
            by_age,
            idle,
        });
    }
    Ok(listed)
}

/// Keep of `entries` (intake `n`'s) the hosts that its service's
/// authorized table, listed before it, does not hold: one pass over that
/// listing, a set of the intake's hosts (a few) and none of its.
fn intake_only(listed: &[Listed], n: &Named, entries: &mut Vec<Entry>) {
    if entries.is_empty() {
        return;
    }
    let auth = listed
        .iter()
        .find(|l| l.named.service == n.service && l.named.kind == Kind::Service(Role::Auth));
    let Some(auth) = auth else { return };
    let mut mine: std::collections::HashSet<Net> = entries.iter().map(|e| e.net).collect();
    for e in &auth.entries {
        mine.remove(&e.net);
    }
    entries.retain(|e| mine.contains(&e.net));
}

/// `by_age`: the entry's time stamp is what its expiry counts from (always
/// for age expiry; for idle expiry where the firewall refreshes it).
fn row(n: &Named, e: &Entry, now: i64, by_age: bool) -> Row {
    let age = policy::age(now, e.tzero);
    let left = match n.ttl {
        Some(ttl) if by_age => Some(ttl.0.saturating_sub(age)),
        _ => None,
    };
    Row {
        address: e.net.to_string(),
        service: n.service.clone(),
        table: n.table.name.to_string(),
        anchor: n.table.anchor.as_str().to_owned(),
        kind: n.kind_word(),
        age,
        idle: false,
        ttl: n.ttl.map(|t| t.0),
        left,
        packets: e.counted.then_some(e.packets),
        bytes: e.counted.then_some(e.bytes),
    }
}

/// The entries of a named table; `None` for a hold table or an intake
/// the anchor does not have. A missing service table usually means the
/// anchor is not loaded, and the error says so.
fn entries_of(t: &mut impl Tables, n: &Named) -> Result<Option<Vec<Entry>>> {
    match t.entries(&n.table) {
        Ok(e) => Ok(Some(e)),
        // An anchor loaded by a pfknock without holds, or (with `renew =
        // false`) without an intake: nobody is held, nothing waits there.
        Err(e)
            if matches!(n.kind, Kind::Hold | Kind::Service(Role::Renew))
                && e.outcome().is_some_and(|o| o.is_missing()) =>
        {
            Ok(None)
        }
        Err(e) => Err(not_loaded(e, n)),
    }
}

fn not_loaded(e: Error, n: &Named) -> Error {
    match e {
        Error::Table {
            outcome: crate::error::Outcome::MissingTable,
            ..
        } if n.service.is_some() => {
            Error::Other(format!("{e} (is the anchor loaded? pfknock load)"))
        }
        e => e,
    }
}

/// The rows as an aligned table, or nothing when there are none.
pub fn format_rows(rows: &[Row]) -> String {
    let mut o = Vec::new();
    write_table(&mut o, || rows.iter().cloned()).expect("writing to memory");
    String::from_utf8(o).expect("UTF-8 cells")
}

const HEADER: [&str; 7] = [
    "ADDRESS", "SERVICE", "TABLE", "AGE", "LEFT", "PACKETS", "BYTES",
];

/// One row's cells, as the table shows them.
fn cells(r: &Row) -> [String; 7] {
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let secs = |v: Option<u64>| v.map_or("-".to_owned(), |v| Secs(v).to_string());
    let table = if r.anchor.is_empty() {
        r.table.clone()
    } else {
        format!("{}/{}", r.anchor, r.table)
    };
    [
        r.address.clone(),
        r.service.clone().unwrap_or_else(|| "-".into()),
        table,
        if r.idle {
            format!("{} idle", Secs(r.age))
        } else {
            Secs(r.age).to_string()
        },
        secs(r.left),
        opt(r.packets),
        opt(r.bytes),
    ]
}

/// The rows `rows()` makes, as an aligned table: one pass for the column
/// widths, one to write, so that no row is kept. Returns how many rows.
pub fn write_table<I: Iterator<Item = Row>>(
    w: &mut (impl std::io::Write + ?Sized),
    rows: impl Fn() -> I,
) -> std::io::Result<usize> {
    let mut widths = HEADER.map(str::len);
    let mut n = 0;
    for r in rows() {
        n += 1;
        for (w, c) in widths.iter_mut().zip(cells(&r)) {
            *w = (*w).max(c.len());
        }
    }
    if n == 0 {
        return Ok(0);
    }
    let mut line = |c: &[String; 7]| -> std::io::Result<()> {
        let mut l = String::new();
        for (i, cell) in c.iter().enumerate() {
            let _ = write!(l, "{cell:<w$}  ", w = widths[i]);
        }
        writeln!(w, "{}", l.trim_end())
    };
    line(&HEADER.map(str::to_owned))?;
    for r in rows() {
        line(&cells(&r))?;
    }
    Ok(n)
}

/// The rows as `serde_json::to_string_pretty` writes a list of them, one
/// row at a time.
pub fn write_json(
    w: &mut (impl std::io::Write + ?Sized),
    rows: impl Iterator<Item = Row>,
) -> std::io::Result<()> {
    let mut first = true;
    for r in rows {
        let text = serde_json::to_string_pretty(&r).map_err(std::io::Error::other)?;
        w.write_all(if first { b"[\n" } else { b",\n" })?;
        first = false;
        for (i, l) in text.lines().enumerate() {
            if i > 0 {
                w.write_all(b"\n")?;
            }
            write!(w, "  {l}")?;
        }
    }
    w.write_all(if first { b"[]\n" } else { b"\n]\n" })
}

// ---- expire -----------------------------------------------------------------

/// Which tables `expire` works on.
#[derive(Debug)]
pub enum Select<'a> {
    All,
    Service(&'a str),
    Table(TableRef),
}

#[derive(Debug)]
pub struct Report {
    pub table: TableRef,
    pub expired: Vec<Expired>,
    pub total: usize,
    pub deleted: usize,
    pub dry_run: bool,
}

impl Report {
    /// pfctl's count line, for the table as `place` names it (pf's
    /// `<ssh> in anchor pfknock`, nftables' `ssh in table inet pfknock`).
    pub fn count_line(&self, place: &str) -> String {
        let n = if self.dry_run {
            self.expired.len()
        } else {
            self.deleted
        };
        format!(
            "{place}: {n}/{} addresses expired{}.",
            self.total,
            if self.dry_run { " (dummy)" } else { "" }
        )
    }
}

/// The tables an `expire` command names, checked against the config.
pub fn expire_targets(cfg: &Config, sel: &Select<'_>) -> Result<Vec<Named>> {
    let all = named_tables(cfg);
    let sweepable = |n: &Named| n.ttl.is_some();
    match sel {
        Select::All => Ok(all.into_iter().filter(sweepable).collect()),
        Select::Service(s) => {
            services(cfg, Some(s))?;
            Ok(all
                .into_iter()
                .filter(|n| sweepable(n) && n.service.as_deref() == Some(*s))
                .collect())
        }
        Select::Table(t) => match all.into_iter().find(|n| n.table == *t) {
            Some(n) if sweepable(&n) => Ok(vec![n]),
            Some(n) => Err(Error::Usage(format!(
                "{t} is the {} table of service {}: pfknock does not expire it",
                n.kind_word(),
                n.service.unwrap_or_default()
            ))),
            None => Err(Error::Usage(format!("{t} is not a table of the config"))),
        },
    }
}

/// pf: each authorized table's intake (`T_renew`) before it, by age with
/// the service's ttl. It holds the knocks the daemon has not moved, and
/// every knock made while none runs: they expire as they would have from
/// the authorized table.
fn with_intakes(cfg: &Config, targets: Vec<Named>) -> Vec<Named> {
    let all = named_tables(cfg);
    let mut out = Vec::with_capacity(targets.len());
    for n in targets {
        if n.kind == Kind::Service(Role::Auth) {
            let intake = all
                .iter()
                .find(|x| x.kind == Kind::Service(Role::Renew) && x.service == n.service);
            if let Some(i) = intake {
                out.push(Named {
                    ttl: n.ttl,
                    mode: ExpireMode::Age,
                    ..i.clone()
                });
            }
        }
        out.push(n);
    }
    out
}

/// Expire the selected tables by age (like `pfctl -T expire`), or report
/// what would go with `dry_run`. Idle tables need `older_than`: only the
/// daemon measures idle time.
pub fn expire(
    cfg: &Config,
    t: &mut impl Tables,
    sel: &Select<'_>,
    older_than: Option<Secs>,
    dry_run: bool,
    now: i64,
) -> Result<Vec<Report>> {
    let mut targets = expire_targets(cfg, sel)?;
    // `--table` names one table, and only that one is touched.
    if !t.caps().refreshes_entries && !matches!(sel, Select::Table(_)) {
        targets = with_intakes(cfg, targets);
    }
    if older_than.is_none()
        && !t.caps().refreshes_entries
        && let Some(n) = targets.iter().find(|n| n.mode == ExpireMode::Idle)
    {
        return Err(Error::Usage(format!(
            "{}: expires by idle time, which only the daemon (pfknock run) measures: \
                 give --older-than to expire by age",
            n.table
        )));
    }
    let mut out = Vec::new();
    for n in targets {
        let ttl = older_than.or(n.ttl).expect("sweepable tables have a ttl");
        // A hold ends for everybody, allowed hosts too.
        let svc = n
            .service
            .as_deref()
            .and_then(|s| cfg.service(s))
            .filter(|_| n.kind != Kind::Hold);
        let Some(entries) = entries_of(t, &n)? else {
            continue;
        };
        // An empty intake is not worth a line.
        if entries.is_empty() && n.kind == Kind::Service(Role::Renew) {
            continue;
        }
        let d = policy::decide(
            &entries,
            ttl.0,
            now,
            |e| e.tzero,
            |net| svc.is_some_and(|s| s.allows(net)),
        );
        let nets: Vec<Net> = d.expire.iter().map(|x| x.net).collect();
        let deleted = if dry_run {
            0
        } else {
            t.delete(&n.table, &nets)?
        };
        out.push(Report {
            table: n.table,
            expired: d.expire,
            total: entries.len(),
            deleted,
            dry_run,
        });
    }
    Ok(out)
}

// ---- allow, revoke, flush ---------------------------------------------------

/// Authorize `addr` for a service now, as a knock would; an address already
/// authorized gets a fresh time stamp. Returns true when it was new.
pub fn allow(
    cfg: &Config,
    t: &mut impl Tables,
    addr: Net,
    service: Option<&str>,
) -> Result<(String, bool)> {
    let s = one_service(cfg, service)?;
    let table = TableRef::new(&cfg.anchor, &s.table);
    if t.add(&table, &[addr])? == 1 {
        return Ok((s.name.clone(), true));
    }
    t.renew(&table, &[addr])?;
    Ok((s.name.clone(), false))
}

/// What `revoke` took out of one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    pub table: TableRef,
    pub service: String,
    pub role: Role,
    /// Entries deleted (0 or 1).
    pub deleted: usize,
    /// The authorization's age when it was revoked (the authorized table
    /// only), and its ttl.
    pub age: Option<u64>,
    pub ttl: Option<Secs>,
}

/// Remove `addr` from the dynamic tables of the service (or of every
/// service): authorized, stage and renewal. An address on a service's allow
/// list cannot be revoked; that is refused before anything changes.
pub fn revoke(
    cfg: &Config,
    t: &mut impl Tables,
    addr: Net,
    service: Option<&str>,
    now: i64,
) -> Result<Vec<Revoked>> {
    let svcs = services(cfg, service)?;
    if let Some(s) = svcs.iter().find(|s| s.allows(&addr)) {
        return Err(Error::Other(format!(
            "{addr} is on the allow list of service {}: remove it from the config to revoke it",
            s.name
        )));
    }
    if !addr.is_host() && !t.caps().networks {
        return Err(Error::Usage(format!(
            "{}: revoke each host (pfknock show lists them)",
            crate::tables::hosts_only_words(&addr)
        )));
    }
    let mut out = Vec::new();
    for s in svcs {
        for (name, role) in removal_order(s) {
            if role == Role::Allow || (role == Role::Renew && t.caps().refreshes_entries) {
                continue;
            }
            let table = TableRef::new(&cfg.anchor, &name);
            // pf's intake holds authorizations too (knocks not moved yet).
            let authorizes = matches!(role, Role::Auth | Role::Renew);
            let age = if authorizes {
                t.entry(&table, &addr)?.map(|e| policy::age(now, e.tzero))
            } else {
                None
            };
            let deleted = t.delete(&table, &[addr])?;
            out.push(Revoked {
                table,
                service: s.name.clone(),
                role,
                deleted,
                age: age.filter(|_| deleted > 0),
                ttl: authorizes.then_some(s.ttl),
            });
        }
    }
    Ok(out)
}

/// A service's tables in the order a removal deletes from them: pf's
/// intake first, then the authorized table. The daemon moves a knock from
/// the intake by adding it to the authorized table first and taking it
/// back if the intake no longer held it (`tables::move_hosts`); against
/// that order, a removal that deleted from the authorized table first
/// could come between the add and the intake's delete and leave the host
/// in.
fn removal_order(s: &crate::config::Service) -> Vec<(crate::name::TableName, Role)> {
    let mut v = s.tables();
    v.sort_by_key(|(_, r)| *r != Role::Renew);
    v
}

/// What `flush` took out of one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flushed {
    pub table: TableRef,
    pub service: String,
    pub role: Role,
    /// The entries the table held, with their time stamps.
    pub entries: Vec<Entry>,
    /// How many of them the delete removed.
    pub deleted: usize,
    /// Were all the entries removed told? False when the kernel's flush
    /// removed more than it could tell back.
    pub whole: bool,
    pub ttl: Secs,
}

/// Listings a flush makes of one table at most, each of what the last
/// left.
const FLUSH_ROUNDS: usize = 4;

/// Empty the dynamic tables of the service (or of every service).
pub fn flush(cfg: &Config, t: &mut impl Tables, service: Option<&str>) -> Result<Vec<Flushed>> {
    let mut out = Vec::new();
    for s in services(cfg, service)? {
        for (name, role) in removal_order(s) {
            if role == Role::Allow || (role == Role::Renew && t.caps().refreshes_entries) {
                continue;
            }
            let table = TableRef::new(&cfg.anchor, &name);
            // One step of the kernel's where it has one, telling back
            // exactly what it removed.
            if let Some(c) = t.clear(&table)? {
                out.push(Flushed {
                    table,
                    service: s.name.clone(),
                    role,
                    deleted: c.entries.len(),
                    entries: c.entries,
                    whole: c.whole,
                    ttl: s.ttl,
                });
                continue;
            }
            // Elsewhere (pf; an nftables set without timeouts), listed
            // again until nothing is left: a listing can miss what was
            // added meanwhile (and one of an nftables set being resized
            // can come short); the next one, of what is left, is small.
            let mut entries = Vec::new();
            let mut deleted = 0;
            for _ in 0..FLUSH_ROUNDS {
                let got = t.entries(&table)?;
                if got.is_empty() {
                    break;
                }
                let nets: Vec<Net> = got.iter().map(|e| e.net).collect();
                deleted += t.delete(&table, &nets)?;
                entries.extend(got);
            }
            out.push(Flushed {
                table,
                service: s.name.clone(),
                role,
                entries,
                deleted,
                whole: true,
                ttl: s.ttl,
            });
        }
    }
    Ok(out)
}
