//! The verbs that change a table (`allow`, `revoke`, `flush`, `expire`),
//! one function each, run the same way by the command itself (no daemon
//! runs) and by a running daemon on the command's behalf (`control`): each
//! writes what the command prints, the audit lines and the changes it made
//! into a `Done`, and the caller prints, logs and follows them.
#![forbid(unsafe_code)]

use crate::cmd;
use crate::config::{Config, Role};
use crate::error::{Error, Result};
use crate::name::{self, Net, Secs};
use crate::tables::{TableRef, Tables};

/// A change a verb made to a table, for a daemon to follow without
/// logging it a second time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Added, or renewed to a fresh time stamp.
    Added(TableRef, Net),
    Removed(TableRef, Net),
    /// Every entry removed.
    Cleared(TableRef),
}

/// What a verb did: its standard output, its lines for standard error,
/// its audit lines (syslog), and its changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Done {
    pub stdout: String,
    pub stderr: Vec<String>,
    #[serde(skip)]
    pub audit: Vec<String>,
    #[serde(skip)]
    pub changes: Vec<Change>,
}

impl Done {
    fn out(&mut self, line: impl Into<String>) {
        self.stdout.push_str(&line.into());
        self.stdout.push('\n');
    }
    fn say(&mut self, line: impl Into<String>) {
        self.stderr.push(line.into());
    }
}

/// The parsed address of a command line.
pub fn address(s: &str) -> Result<Net> {
    s.parse().map_err(|m: String| Error::Usage(m))
}

/// How `expire` expires: by the configured ttl or `older_than`, and for
/// real or `dry_run`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExpireHow {
    pub older_than: Option<Secs>,
    pub dry_run: bool,
}

/// `pfknock expire`.
pub fn expire(
    cfg: &Config,
    t: &mut impl Tables,
    sel: &cmd::Select<'_>,
    how: ExpireHow,
    now: i64,
    by: &str,
    d: &mut Done,
) -> Result<()> {
    let ExpireHow {
        older_than,
        dry_run,
    } = how;
    for r in cmd::expire(cfg, t, sel, older_than, dry_run, now)? {
        for x in &r.expired {
            d.out(x.net.to_string());
            if !dry_run {
                d.audit.push(format!(
                    "expired {} table={} anchor={} age={} by {by}",
                    x.net,
                    r.table.name,
                    r.table.anchor.as_str(),
                    Secs(x.age)
                ));
                d.changes.push(Change::Removed(r.table.clone(), x.net));
            }
        }
        d.say(r.count_line(&shown(&r.table, t)));
    }
    Ok(())
}

/// `pfknock allow`.
pub fn allow(
    cfg: &Config,
    t: &mut impl Tables,
    addr: Net,
    service: Option<&str>,
    force: bool,
    by: &str,
    d: &mut Done,
) -> Result<()> {
    if let Some(why) = addr.never_a_source() {
        return Err(Error::Usage(format!("{addr}: {why}")));
    }
    if addr.prefix() == 0 && !force {
        return Err(Error::Usage(format!(
            "{addr} covers every {} address: the protected ports would be open to \
             all of them; give --force to allow it anyway",
            if addr.addr().is_ipv6() {
                "IPv6"
            } else {
                "IPv4"
            }
        )));
    }
    cmd::one_service(cfg, service)?;
    let (svc, new) = cmd::allow(cfg, t, addr, service)?;
    let s = cfg.service(&svc).expect("resolved");
    let table = TableRef::new(&cfg.anchor, &s.table);
    d.audit.push(format!(
        "{} {addr} service={svc} table={} anchor={} ttl={} by {by}",
        if new { "allowed" } else { "renewed" },
        s.table,
        cfg.anchor.as_str(),
        s.ttl
    ));
    d.changes.push(Change::Added(table.clone(), addr));
    if new {
        d.say(format!("{}: 1/1 addresses added.", shown(&table, t)));
    } else {
        d.say(format!(
            "{}: {addr} was authorized already: renewed.",
            shown(&table, t)
        ));
    }
    Ok(())
}

/// A table as the administrator knows it on this firewall: pf's
/// `<ssh> in anchor pfknock`, or nftables' `ssh in table inet pfknock`
/// (whose sets are ssh_4 and ssh_6).
fn shown(table: &TableRef, t: &impl Tables) -> String {
    if t.caps().refreshes_entries {
        format!("{} in table inet {}", table.name, crate::render::nft::TABLE)
    } else {
        table.to_string()
    }
}

/// `pfknock revoke`, without `--kill-states` (the caller cuts the states
/// after the tables changed).
pub fn revoke(
    cfg: &Config,
    t: &mut impl Tables,
    addr: Net,
    service: Option<&str>,
    now: i64,
    by: &str,
    d: &mut Done,
) -> Result<()> {
    let done = cmd::revoke(cfg, t, addr, service, now)?;
    let mut any = false;
    for r in &done {
        if r.deleted == 0 {
            continue;
        }
        d.say(format!(
            "{}: {}/1 addresses deleted.",
            shown(&r.table, t),
            r.deleted
        ));
        let mut extra = String::new();
        if let Some(a) = r.age {
            extra.push_str(&format!(" age={}", Secs(a)));
        }
        if let Some(ttl) = r.ttl {
            extra.push_str(&format!(" ttl={ttl}"));
        }
        d.audit.push(format!(
            "revoked {addr} service={} table={} anchor={}{extra} by {by}",
            r.service,
            r.table.name,
            r.table.anchor.as_str()
        ));
        d.changes.push(Change::Removed(r.table.clone(), addr));
        any = true;
    }
    if !any {
        d.say(format!("{addr}: not in any table of the config"));
    }
    Ok(())
}

/// `pfknock flush`: one audit line per authorization it ends (address,
/// service, age, ttl), one per stage or renewal table it empties.
pub fn flush(
    cfg: &Config,
    t: &mut impl Tables,
    service: Option<&str>,
    now: i64,
    by: &str,
    d: &mut Done,
) -> Result<()> {
    for f in cmd::flush(cfg, t, service)? {
        d.say(if f.whole {
            format!("{}: {} addresses deleted.", shown(&f.table, t), f.deleted)
        } else {
            format!(
                "{}: {} addresses deleted, and more that the kernel removed but could not tell \
                 back (its answer overflowed pfknock's socket).",
                shown(&f.table, t),
                f.deleted
            )
        });
        // pf's intake holds authorizations too (knocks not moved yet).
        if f.deleted > 0 && matches!(f.role, Role::Auth | Role::Renew) {
            for e in &f.entries {
                d.audit.push(format!(
                    "flushed {} service={} table={} anchor={} age={} ttl={} by {by}",
                    e.net,
                    f.service,
                    f.table.name,
                    f.table.anchor.as_str(),
                    Secs(crate::policy::age(now, e.tzero)),
                    f.ttl
                ));
            }
        } else if f.deleted > 0 {
            d.audit.push(format!(
                "flushed {} addresses service={} table={} anchor={} by {by}",
                f.deleted,
                f.service,
                f.table.name,
                f.table.anchor.as_str()
            ));
        }
        d.changes.push(Change::Cleared(f.table));
    }
    Ok(())
}

/// `--table T [--anchor A]`: a table the config names. Without an anchor,
/// the one table of that name the config has.
pub fn named_table(cfg: &Config, table: &str, anchor: Option<&str>) -> Result<TableRef> {
    use crate::name::{AnchorName, TableName};
    let name = TableName::new(table).map_err(Error::Usage)?;
    let anchor = anchor
        .map(|a| {
            if a.is_empty() {
                Ok(AnchorName::main())
            } else {
                AnchorName::new(a)
            }
        })
        .transpose()
        .map_err(Error::Usage)?;
    let found: Vec<TableRef> = crate::catalogue::named_tables(cfg)
        .into_iter()
        .map(|n| n.table)
        .filter(|t| t.name == name && anchor.as_ref().is_none_or(|a| *a == t.anchor))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::Usage(format!(
            "<{name}>{}: not a table of the config",
            anchor.map_or(String::new(), |a| format!(" in {a}"))
        ))),
        _ => Err(Error::Usage(format!(
            "<{name}> is in several anchors of the config: give --anchor"
        ))),
    }
}

/// The tables `expire` works on, from its options.
pub fn expire_selection<'a>(
    cfg: &Config,
    service: Option<&'a str>,
    table: Option<&str>,
    anchor: Option<&str>,
) -> Result<cmd::Select<'a>> {
    Ok(match (service, table) {
        (_, Some(t)) => cmd::Select::Table(named_table(cfg, t, anchor)?),
        (Some(s), None) => cmd::Select::Service(s),
        (None, None) => cmd::Select::All,
    })
}

/// After a load on pf: each table of the config's anchor that the config
/// no longer names (a service removed, its `table` renamed) and that still
/// holds entries is emptied, and said (stderr and audit). pf keeps such a
/// `persist` table with its entries where no rule reads them and nothing
/// expires them; named again later, it would let every one of them in
/// again. A table the config names is never touched.
pub fn empty_leftovers(cfg: &Config, t: &mut dyn Tables, by: &str, d: &mut Done) -> Result<()> {
    let named: std::collections::HashSet<TableRef> = (crate::catalogue::named_tables(cfg))
        .into_iter()
        .map(|n| n.table)
        .collect();
    for st in t.table_stats(&cfg.anchor)? {
        let Ok(name) = name::TableName::new(&st.name) else {
            continue;
        };
        let table = TableRef::new(&cfg.anchor, &name);
        if st.count == 0 || !st.active || named.contains(&table) {
            continue;
        }
        let nets: Vec<Net> = t.entries(&table)?.iter().map(|e| e.net).collect();
        let n = if nets.is_empty() {
            0
        } else {
            t.delete(&table, &nets)?
        };
        let line = format!(
            "table {table}, which the configuration no longer names, emptied by {by}: \
             {n} addresses went with it"
        );
        d.audit.push(line.clone());
        d.say(line);
        d.changes.push(Change::Cleared(table));
    }
    Ok(())
}

/// How many authorizations the config's tables hold, by the firewall's
/// counts: each service's authorized table and its intake (pf). `None`
/// where they cannot be read (nothing loaded).
pub fn authorizations(cfg: &Config, t: &mut dyn Tables) -> Option<u64> {
    use crate::catalogue::{Kind, named_tables};
    let auth: std::collections::HashSet<String> = (named_tables(cfg).into_iter())
        .filter(|n| matches!(n.kind, Kind::Service(Role::Auth | Role::Renew)))
        .filter(|n| n.table.anchor == cfg.anchor)
        .map(|n| n.table.name.to_string())
        .collect();
    let stats = t.table_stats(&cfg.anchor).ok()?;
    Some(
        (stats.iter().filter(|s| auth.contains(&s.name)))
            .map(|s| s.count)
            .sum(),
    )
}

/// What `unload` says of the authorizations that went with the anchor
/// (the daemon logs the same, and keeps it unloaded).
pub fn unloaded_line(cfg: &Config, open: bool, went: Option<u64>) -> String {
    let went = went.map_or("its authorizations".to_owned(), |n| {
        format!("{n} authorizations")
    });
    format!(
        "anchor {} unloaded by pfknock unload{}: {went} went with it",
        cfg.anchor.as_str(),
        if open { " --open" } else { "" }
    )
}

/// What `unload` tells, on nftables (where the table stays, closed).
pub fn unload_words(nft: bool, open: bool) -> Option<String> {
    (nft && !open).then(|| {
        format!(
            "table inet {}: closed: the protected ports take the allow list only \
             (unload --open deletes it)",
            crate::render::nft::TABLE
        )
    })
}

/// Print what a verb did, as the command does when no daemon runs.
pub fn print(d: &Done) -> Result<()> {
    crate::output::out(&d.stdout)?;
    for l in &d.stderr {
        crate::say!("{}", name::no_controls(l));
    }
    Ok(())
}
