//! What a load takes away with it: the authorized sets of
//! `table inet pfknock` that the new config no longer makes (a service
//! removed, a family it no longer takes, its `table` renamed), which the
//! load deletes with their elements (`Nft::load`). Counted just before, so
//! that `pfknock load` and the daemon's start can say how many
//! authorizations went (`Nft::went`).
#![forbid(unsafe_code)]

use super::KernelSet;
use crate::render::nft::TableDef;

/// An authorized set a load deletes: its name, its service (from the
/// comment the rendering gives it, "SERVICE: authorized"), and how many
/// elements the kernel held in it just before (`None`: not counted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Going {
    pub set: String,
    pub service: String,
    pub count: Option<u64>,
}

impl Going {
    /// What `pfknock load` says of it (as the daemon's reload does), or
    /// nothing where it held nothing.
    pub fn line(&self, by: &str) -> Option<String> {
        let went = match self.count {
            Some(0) => return None,
            Some(n) => format!("{n} authorizations"),
            None => "its authorizations".to_owned(),
        };
        Some(format!(
            "set {} of service {} deleted by {by}: {went} went with it",
            self.set, self.service
        ))
    }
}

/// `sets` (set, service), each counted by the kernel now (one request a
/// set).
pub(super) fn counted(sets: &[(String, String)]) -> Vec<Going> {
    (sets.iter())
        .map(|(set, service)| Going {
            set: set.clone(),
            service: service.clone(),
            count: count_now(set),
        })
        .collect()
}

/// Of the sets the kernel has, the authorized ones (comment
/// "SERVICE: authorized") that `def` does not make: (set, service).
pub(super) fn going_sets(have: &[KernelSet], def: &TableDef) -> Vec<(String, String)> {
    have.iter()
        .filter(|h| !def.sets().any(|d| d.name == h.name))
        .filter_map(|h| {
            let service = h.comment.strip_suffix(": authorized")?;
            Some((h.name.clone(), service.to_owned()))
        })
        .collect()
}

/// The kernel's count of a set of pfknock's table, over netlink.
#[cfg(target_os = "linux")]
fn count_now(set: &str) -> Option<u64> {
    let mut l = crate::netlink::Lookup::open(crate::render::nft::TABLE).ok()?;
    l.count(set).ok().map(|n| n as u64)
}

#[cfg(not(target_os = "linux"))]
fn count_now(_set: &str) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new("t.toml")).unwrap().0
    }

    /// What the kernel holds after loading `text` (its sets, as `nft -j`
    /// lists them, made from the rendering itself).
    fn loaded(text: &str) -> Vec<KernelSet> {
        let def = crate::render::nft::build(&config(text));
        def.sets()
            .map(|d| KernelSet {
                name: d.name.clone(),
                ty: String::new(),
                size: None,
                interval: false,
                timeout: None,
                comment: d.comment.clone(),
                counter: false,
            })
            .collect()
    }

    const SSH: &str = "[[service]]\nname = \"ssh\"\nprotect = [22]\nknock = [1234]\n";
    const WEB: &str = "[[service]]\nname = \"web\"\nprotect = [443]\nknock = [1235]\n\
                       table = \"www\"\n";

    #[test]
    fn a_load_deletes_the_authorized_sets_the_config_no_longer_makes() {
        let both = loaded(&format!("{SSH}{WEB}"));
        let only_ssh = crate::render::nft::build(&config(SSH));
        assert_eq!(
            going_sets(&both, &only_ssh),
            [
                ("www_4".to_owned(), "web".to_owned()),
                ("www_6".to_owned(), "web".to_owned())
            ],
            "the meters, kept and stage sets are not authorizations"
        );
        let inet = crate::render::nft::build(&config(&format!("{SSH}family = \"inet\"\n{WEB}")));
        assert_eq!(
            going_sets(&both, &inet),
            [("ssh_6".to_owned(), "ssh".to_owned())]
        );
        let same = crate::render::nft::build(&config(&format!("{SSH}{WEB}")));
        assert!(going_sets(&both, &same).is_empty());
        // The same sets, renamed: the old ones go.
        let renamed = config(&format!("{SSH}{}", WEB.replace("\"www\"", "\"web\"")));
        let renamed = crate::render::nft::build(&renamed);
        assert_eq!(going_sets(&both, &renamed).len(), 2);
    }

    #[test]
    fn the_line_says_how_many_went() {
        let g = Going {
            set: "web_4".into(),
            service: "web".into(),
            count: Some(2),
        };
        assert_eq!(
            g.line("pfknock load").as_deref(),
            Some("set web_4 of service web deleted by pfknock load: 2 authorizations went with it")
        );
        let none = Going {
            count: Some(0),
            ..g.clone()
        };
        assert_eq!(none.line("pfknock load"), None);
        let unknown = Going { count: None, ..g };
        assert!(
            unknown
                .line("x")
                .unwrap()
                .contains(": its authorizations went")
        );
    }
}
