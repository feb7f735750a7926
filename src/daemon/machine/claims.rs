//! Removals pfknock's own commands noted (pf tells no one who deleted an
//! entry; see `daemon::notes` for the file): held for `KEEP` seconds or
//! until the entry is seen gone, so that the polls do not log a removal
//! the command logged already.
#![forbid(unsafe_code)]

use std::collections::HashMap;

use crate::name::Net;
use crate::tables::TableRef;

/// How long a note waits for its entry to be seen gone (seconds).
pub const KEEP: i64 = 10;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    anchor: String,
    table: String,
    /// None: every address.
    net: Option<Net>,
}

/// The notes held.
#[derive(Debug, Default)]
pub struct Claims {
    held: HashMap<Key, i64>,
}

impl Claims {
    /// Drop notes older than `KEEP`, then hold the lines of `text`
    /// (`anchor<TAB>table<TAB>address`, `*` for every address); a line of
    /// another shape is skipped.
    pub fn take(&mut self, text: &str, now: i64) {
        self.held.retain(|_, t| now - *t <= KEEP);
        for line in text.lines() {
            let mut f = line.split('\t');
            let (Some(anchor), Some(table), Some(addr), None) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            let net = if addr == "*" {
                None
            } else {
                match addr.parse::<Net>() {
                    Ok(n) => Some(n),
                    Err(_) => continue,
                }
            };
            let key = Key {
                anchor: anchor.to_owned(),
                table: table.to_owned(),
                net,
            };
            self.held.insert(key, now);
        }
    }

    /// Whether a command noted that it removes `net` from `t`; a
    /// per-address note is used up by the answer.
    pub fn claims(&mut self, t: &TableRef, net: &Net) -> bool {
        let mut k = Key {
            anchor: t.anchor.as_str().to_owned(),
            table: t.name.as_str().to_owned(),
            net: Some(*net),
        };
        if self.held.remove(&k).is_some() {
            return true;
        }
        k.net = None;
        self.held.contains_key(&k)
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::{AnchorName, TableName};

    fn t(name: &str) -> TableRef {
        TableRef::new(
            &AnchorName::new("pfknock").unwrap(),
            &TableName::new(name).unwrap(),
        )
    }

    #[test]
    fn notes_are_claimed_once_and_dropped_when_old() {
        let a: Net = "198.18.0.7".parse().unwrap();
        let b: Net = "198.18.0.8".parse().unwrap();
        let mut c = Claims::default();
        c.take(
            "pfknock\tssh\t198.18.0.7\npfknock\tssh_s1\t*\nbad line\npfknock\tssh\tnot-an-address\n",
            100,
        );
        assert!(c.claims(&t("ssh"), &a));
        assert!(!c.claims(&t("ssh"), &a), "a per-address note is used up");
        assert!(!c.claims(&t("ssh"), &b), "another address is not claimed");
        assert!(
            c.claims(&t("ssh_s1"), &a) && c.claims(&t("ssh_s1"), &b),
            "*"
        );
        assert!(!c.claims(&t("ssh_s2"), &a), "another table is not claimed");
        c.take("", 100 + KEEP);
        assert!(!c.is_empty(), "kept for KEEP seconds");
        c.take("", 100 + KEEP + 1);
        assert!(c.is_empty(), "old notes are dropped");
    }
}
