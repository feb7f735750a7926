//! The guard: a second table, `inet pfknock_guard`, that keeps the
//! protected ports closed while pfknock's own table is not there to do it.
//!
//! Whoever deletes `table inet pfknock` (or its chain, or a rule of it),
//! with nft or a ruleset reload that does not include pfknock's file,
//! would otherwise leave the protected ports open to every host until the
//! daemon loads the table again (25 to 80 ms, measured). pfknock's rules
//! mark each connection they let through to a protected port with a
//! connection tracking label (`ct label set 127`); the guard, a base chain
//! of its own table right after pfknock's on the same hook, drops every
//! new connection to a protected port that carries no such label. With
//! pfknock's table in place the guard changes nothing; without it, the
//! protected ports are closed to everybody (established sessions go on)
//! until the daemon restores the table, which a deletion of the guard
//! itself also makes it do.
#![forbid(unsafe_code)]

use super::merge::Merged;
use super::rules::{Hook, LABEL, dest_match, forwards, iif, proto_dport};
use super::{ChainDef, families};
use crate::config::Config;

/// The guard's table.
pub const GUARD: &str = "pfknock_guard";

/// The guard's base chains, or none when no service protects anything.
pub fn chains(cfg: &Config) -> Vec<ChainDef> {
    if cfg.services.is_empty() {
        return Vec::new();
    }
    // The rules of all services that name the same interface,
    // destination and protocols as one (`Merged`): each drops what it
    // matches.
    let closed = |hook: Hook| {
        let mut out = Merged::default();
        for s in &cfg.services {
            let iif = iif(s);
            for af in families(s) {
                if let Some(to) = dest_match(s, hook, af) {
                    out.add(
                        format!("{iif}{to}{}", proto_dport(s)),
                        s.protect.iter().copied(),
                        " ct state new,invalid,untracked drop".into(),
                    );
                }
            }
        }
        out.rules()
    };
    let vouched = format!("ct label {LABEL} accept");
    let mut input = vec!["iifname \"lo\" accept".to_owned(), vouched.clone()];
    input.extend(closed(Hook::Input));
    let mut v = vec![ChainDef {
        name: "input".into(),
        head: "type filter hook input priority filter; policy accept;",
        rules: input,
    }];
    if forwards(cfg) {
        let mut fwd = vec![vouched];
        fwd.extend(closed(Hook::Forward));
        v.push(ChainDef {
            name: "forward".into(),
            head: "type filter hook forward priority filter; policy accept;",
            rules: fwd,
        });
    }
    v
}
