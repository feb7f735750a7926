//! The tables a config names, with what pfknock does to each: the one list
//! that the table commands and the daemon both work from, and the limit of
//! what either may touch.
#![forbid(unsafe_code)]

use crate::config::{Config, Role};
use crate::name::{ExpireMode, Secs};
use crate::tables::TableRef;

/// What a table is to pfknock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A service's role table.
    Service(Role),
    /// A service's hosts held back after a wrong knock (pf: the daemon
    /// takes them out of the stage tables and expires them after the
    /// rate's window; nftables does both in its rules).
    Hold,
    /// A service's hosts that knocked its close port (pf: the daemon takes
    /// them out of the authorized hosts and empties the table; nftables
    /// does it in its rules).
    Close,
    /// An `[[expire]]` table of a hand-written pf.conf.
    Expire,
}

/// A table the config names, with what pfknock does to it.
#[derive(Clone, Debug)]
pub struct Named {
    pub table: TableRef,
    pub service: Option<String>,
    pub kind: Kind,
    /// How long its entries live, for the tables pfknock expires.
    pub ttl: Option<Secs>,
    pub mode: ExpireMode,
}

impl Named {
    pub fn kind_word(&self) -> &'static str {
        match self.kind {
            Kind::Service(Role::Auth) => "authorized",
            Kind::Service(Role::Stage(_)) => "stage",
            Kind::Service(Role::Renew) => "renew",
            Kind::Service(Role::Allow) => "allow",
            Kind::Hold => "hold",
            Kind::Close => "close",
            Kind::Expire => "expire",
        }
    }
}

/// Every table the config names, services first, in config order.
pub fn named_tables(cfg: &Config) -> Vec<Named> {
    let mut v = Vec::new();
    for s in &cfg.services {
        for (name, role) in s.tables() {
            let (ttl, mode) = match role {
                Role::Auth => (Some(s.ttl), s.expire),
                Role::Stage(_) => (Some(s.window), ExpireMode::Age),
                Role::Renew | Role::Allow => (None, ExpireMode::Age),
            };
            v.push(Named {
                table: TableRef::new(&cfg.anchor, &name),
                service: Some(s.name.clone()),
                kind: Kind::Service(role),
                ttl,
                mode,
            });
        }
    }
    for s in &cfg.services {
        if let Some(t) = s.hold_table() {
            v.push(Named {
                table: TableRef::new(&cfg.anchor, &t),
                service: Some(s.name.clone()),
                kind: Kind::Hold,
                ttl: Some(Secs(u64::from(s.rate.secs))),
                mode: ExpireMode::Age,
            });
        }
    }
    for s in &cfg.services {
        if let Some(t) = s.close_table() {
            v.push(Named {
                table: TableRef::new(&cfg.anchor, &t),
                service: Some(s.name.clone()),
                kind: Kind::Close,
                ttl: None,
                mode: ExpireMode::Age,
            });
        }
    }
    for e in &cfg.expires {
        v.push(Named {
            table: TableRef::new(&e.anchor, &e.table),
            service: None,
            kind: Kind::Expire,
            ttl: Some(e.ttl),
            mode: e.expire,
        });
    }
    v
}
